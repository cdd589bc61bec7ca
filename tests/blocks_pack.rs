//! The disk block store's pack files: group commit, reopen, crash points
//! (a pack cut at every byte of the last batch, a byte flipped at every
//! position of it, compaction interrupted before and after its copies are
//! fsynced), compaction, corruption, and the old one-file-per-block layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use surfstore::node::blocks::pack::record::HEADER_LEN;
use surfstore::node::blocks::{hash_hex, BlockError, BlockStore, Held, PackOptions};

struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        let p = std::env::temp_dir().join(format!(
            "surfstore-pack-{tag}-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn block(n: usize, seed: u64) -> Arc<[u8]> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn packs_dir(d: &Path) -> PathBuf {
    d.join("blocks").join("packs")
}

fn only_pack(d: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(packs_dir(d))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

fn small_packs(max: u64) -> PackOptions {
    PackOptions {
        max_pack_bytes: max,
        ..PackOptions::default()
    }
}

/// Checks `held` against what `list` and `get` say, and returns the blocks.
async fn contents(store: &BlockStore) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for (h, _) in store.list().await.unwrap() {
        let data = store.get(&h).await.unwrap().expect("a listed block reads");
        assert_eq!(hash_hex(&data), h, "a block reads back as its hash");
        out.insert(h, data.to_vec());
    }
    let bytes = out.values().map(|d| d.len() as u64).sum();
    assert_eq!(
        store.held(),
        Held {
            blocks: out.len() as u64,
            bytes
        }
    );
    out
}

#[tokio::test]
async fn put_many_get_and_reopen_across_packs() {
    let dir = TmpDir::new("reopen");
    let blocks: Vec<Arc<[u8]>> = (0..40).map(|i| block(100 + i * 37, i as u64)).collect();
    {
        let store = BlockStore::disk_with(&dir.0, small_packs(2048)).unwrap();
        // Four a batch: a batch goes whole into one pack, so they roll over.
        let mut hashes = Vec::new();
        for four in blocks.chunks(4) {
            hashes.extend(store.put_many(four.to_vec()).await.unwrap());
        }
        let want: Vec<String> = blocks.iter().map(|b| hash_hex(b)).collect();
        assert_eq!(hashes, want);
        assert_eq!(store.sync_stats().batches, 10);
        // Again, plus one new: only the new one is appended.
        let before = store.sync_stats().records;
        let mut again = blocks.clone();
        again.push(block(10, 999));
        store.put_many(again).await.unwrap();
        assert_eq!(store.sync_stats().records, before + 1);
        assert!(
            store.packs().unwrap().usage().len() > 3,
            "packs rolled over"
        );
        assert_eq!(contents(&store).await.len(), 41);
    }
    let store = BlockStore::disk_with(&dir.0, small_packs(2048)).unwrap();
    let got = contents(&store).await;
    assert_eq!(got.len(), 41);
    for b in &blocks {
        assert_eq!(got[&hash_hex(b)], &b[..]);
    }
    assert!(store.has(&hash_hex(&blocks[3])).await);
    assert!(!store.has(&hash_hex(b"nope")).await);
    assert!(matches!(
        store.get("xyz").await,
        Err(BlockError::BadHash(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_puts_in_flight_share_one_fsync() {
    let dir = TmpDir::new("group");
    let store = BlockStore::disk(&dir.0).unwrap();
    let hold = store.packs().unwrap().hold_writer();
    let puts: Vec<_> = (0..64)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.put(block(1024, i)).await })
        })
        .collect();
    // The writer takes the first put and waits at the hold; the other 63
    // queue behind it. Wait for all 64 to be handed over (an event, polled).
    while store.sync_stats().submitted < 64 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(store.sync_stats().batches, 0, "nothing written while held");
    drop(hold);
    for p in puts {
        p.await.unwrap().unwrap();
    }
    let s = store.sync_stats();
    assert_eq!((s.ops, s.records), (64, 64));
    assert_eq!(s.batches, 1, "64 puts in flight, one fsync: {s:?}");
    assert_eq!(store.held().blocks, 64);
}

/// A store with batch A acknowledged and batch B written after it, the
/// pack's bytes, where B starts, and each B record's end.
async fn two_batches(dir: &Path) -> (Vec<Arc<[u8]>>, Vec<Arc<[u8]>>, Vec<u8>, u64, Vec<u64>) {
    let a: Vec<Arc<[u8]>> = [0usize, 10, 100, 300]
        .iter()
        .enumerate()
        .map(|(i, n)| block(*n, i as u64))
        .collect();
    let b: Vec<Arc<[u8]>> = [50usize, 1, 200]
        .iter()
        .enumerate()
        .map(|(i, n)| block(*n, 100 + i as u64))
        .collect();
    let store = BlockStore::disk(dir).unwrap();
    store.put_many(a.clone()).await.unwrap();
    let start = std::fs::metadata(only_pack(dir)).unwrap().len();
    store.put_many(b.clone()).await.unwrap();
    assert_eq!(store.sync_stats().batches, 2);
    drop(store);
    let bytes = std::fs::read(only_pack(dir)).unwrap();
    let mut ends = Vec::new();
    let mut at = start;
    for blk in &b {
        at += (HEADER_LEN + blk.len()) as u64;
        ends.push(at);
    }
    assert_eq!(at, bytes.len() as u64);
    (a, b, bytes, start, ends)
}

/// Reopens a pack holding `bytes`; checks A whole, and B's block `i`
/// present (exactly) iff `present(i)`; then that the store writes and
/// reopens cleanly.
async fn check_reopen(
    dir: &Path,
    bytes: &[u8],
    a: &[Arc<[u8]>],
    b: &[Arc<[u8]>],
    present: impl Fn(usize) -> bool,
    what: &str,
) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(packs_dir(dir)).unwrap();
    std::fs::write(packs_dir(dir).join("00000001.pack"), bytes).unwrap();
    let extra = block(77, 4242);
    {
        let store = BlockStore::disk(dir).unwrap();
        let got = contents(&store).await;
        for blk in a {
            assert_eq!(
                got.get(&hash_hex(blk)).map(|v| &v[..]),
                Some(&blk[..]),
                "{what}: acked block"
            );
        }
        for (i, blk) in b.iter().enumerate() {
            let h = hash_hex(blk);
            assert_eq!(
                got.contains_key(&h),
                present(i),
                "{what}: block {i} of the cut batch"
            );
        }
        assert_eq!(
            got.len(),
            a.len() + (0..b.len()).filter(|i| present(*i)).count()
        );
        store.put(extra.clone()).await.unwrap();
    }
    let store = BlockStore::disk(dir).unwrap();
    let got = contents(&store).await;
    assert_eq!(
        got[&hash_hex(&extra)],
        &extra[..],
        "{what}: written after the reopen"
    );
}

#[tokio::test]
async fn a_pack_cut_at_every_byte_of_the_last_batch_keeps_what_was_acknowledged() {
    let dir = TmpDir::new("cut");
    let (a, b, bytes, start, ends) = two_batches(&dir.0).await;
    let work = dir.0.join("work");
    for cut in start..=bytes.len() as u64 {
        check_reopen(
            &work,
            &bytes[..cut as usize],
            &a,
            &b,
            |i| ends[i] <= cut,
            &format!("cut at {cut}"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_byte_flipped_anywhere_in_the_last_batch_cuts_it_there() {
    let dir = TmpDir::new("flip");
    let (a, b, bytes, start, ends) = two_batches(&dir.0).await;
    let work = dir.0.join("work");
    for at in start..bytes.len() as u64 {
        let mut bad = bytes.clone();
        bad[at as usize] ^= 0x41;
        // The record holding the flipped byte and every one after it go.
        check_reopen(
            &work,
            &bad,
            &a,
            &b,
            |i| ends[i] <= at,
            &format!("flip at {at}"),
        )
        .await;
    }
    // Zeros after the last record (a power loss extending the file).
    let mut zeros = bytes.clone();
    zeros.extend_from_slice(&[0u8; 100]);
    check_reopen(&work, &zeros, &a, &b, |_| true, "zeros after the end").await;
}

/// Fills sealed packs, removes every block but each third, and returns the
/// store, the kept blocks and the removed ones.
async fn half_dead(dir: &Path) -> (BlockStore, Vec<Arc<[u8]>>, Vec<Arc<[u8]>>) {
    let store = BlockStore::disk_with(dir, small_packs(4096)).unwrap();
    let blocks: Vec<Arc<[u8]>> = (0..30)
        .map(|i| block(300 + i * 11, 500 + i as u64))
        .collect();
    for b in &blocks {
        store.put(b.clone()).await.unwrap();
    }
    let (mut keep, mut gone) = (Vec::new(), Vec::new());
    for (i, b) in blocks.into_iter().enumerate() {
        if i % 3 == 0 {
            keep.push(b);
        } else {
            store.remove(&hash_hex(&b)).await.unwrap();
            gone.push(b);
        }
    }
    (store, keep, gone)
}

#[tokio::test]
async fn compaction_reclaims_half_dead_packs_and_keeps_every_live_block() {
    let dir = TmpDir::new("compact");
    let (store, keep, gone) = half_dead(&dir.0).await;
    let before = store.packs().unwrap().usage();
    assert!(before.len() >= 3, "{before:?}");
    let mut rounds = 0;
    loop {
        let s = store.compact(1 << 20).await.unwrap();
        if s == Default::default() {
            break;
        }
        rounds += 1;
        assert!(rounds < 50, "compaction ends");
    }
    let after = store.packs().unwrap().usage();
    for p in &after {
        assert!(
            p.active || p.live * 2 > p.bytes,
            "no sealed pack half dead: {after:?}"
        );
    }
    let on_disk: u64 = after.iter().map(|p| p.bytes).sum();
    assert!(
        on_disk < before.iter().map(|p| p.bytes).sum(),
        "space reclaimed"
    );
    let got = contents(&store).await;
    assert_eq!(got.len(), keep.len());
    for b in &keep {
        assert_eq!(got[&hash_hex(b)], &b[..]);
    }
    drop(store);
    // A reopen: the live blocks, and removed ones only where their record
    // survived (garbage again, collected again by gc).
    let store = BlockStore::disk_with(&dir.0, small_packs(4096)).unwrap();
    let got = contents(&store).await;
    for b in &keep {
        assert_eq!(got[&hash_hex(b)], &b[..]);
    }
    assert!(
        got.len() < keep.len() + gone.len(),
        "compacted packs stay gone"
    );
}

#[tokio::test]
async fn a_bounded_round_copies_part_of_a_pack_and_deletes_it_when_empty() {
    let dir = TmpDir::new("budget");
    let (store, keep, _) = half_dead(&dir.0).await;
    let first = store.compact(1).await.unwrap();
    assert_eq!(
        first.copied_records, 1,
        "a budget below one record copies one"
    );
    assert_eq!(first.deleted_packs, 0);
    while store.compact(1).await.unwrap() != Default::default() {}
    let got = contents(&store).await;
    assert_eq!(got.len(), keep.len());
}

/// Compaction of the first sealed pack, with the files before and after.
struct Compacted {
    keep: Vec<Arc<[u8]>>,
    old_name: String,
    old_bytes: Vec<u8>,
    active_name: String,
    active_before: u64,
    active_after: Vec<u8>,
}

async fn compact_one(dir: &Path) -> Compacted {
    let (store, keep, _) = half_dead(dir).await;
    let usage = store.packs().unwrap().usage();
    let active = usage.iter().find(|p| p.active).unwrap().clone();
    let old_all: HashMap<String, Vec<u8>> = usage
        .iter()
        .map(|p| {
            (
                p.path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p.path).unwrap(),
            )
        })
        .collect();
    let s = store.compact(u64::MAX).await.unwrap();
    assert!(s.deleted_packs >= 1 && s.copied_records >= 1, "{s:?}");
    let after = store.packs().unwrap().usage();
    let deleted: Vec<String> = old_all
        .keys()
        .filter(|n| {
            !after
                .iter()
                .any(|p| p.path.file_name().unwrap().to_string_lossy() == **n)
        })
        .cloned()
        .collect();
    assert_eq!(deleted.len(), 1, "one pack compacted: {deleted:?}");
    let old_name = deleted[0].clone();
    // The copies went in one batch to the active pack (a new one if they
    // did not fit the old).
    let now_active = after.iter().find(|p| p.active).unwrap().clone();
    let active_before = if now_active.id == active.id {
        active.bytes
    } else {
        0
    };
    drop(store);
    Compacted {
        keep,
        old_bytes: old_all[&old_name].clone(),
        old_name,
        active_name: now_active
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        active_before,
        active_after: std::fs::read(&now_active.path).unwrap(),
    }
}

async fn check_live(dir: &Path, keep: &[Arc<[u8]>], what: &str) {
    let store = BlockStore::disk_with(dir, small_packs(4096)).unwrap();
    let got = contents(&store).await;
    for b in keep {
        assert_eq!(
            got.get(&hash_hex(b)).map(|v| &v[..]),
            Some(&b[..]),
            "{what}"
        );
    }
    // Compaction finishes what the crash interrupted.
    while store.compact(u64::MAX).await.unwrap() != Default::default() {}
    let got = contents(&store).await;
    for b in keep {
        assert_eq!(
            got.get(&hash_hex(b)).map(|v| &v[..]),
            Some(&b[..]),
            "{what}, compacted"
        );
    }
}

#[tokio::test]
async fn a_crash_after_the_copies_are_fsynced_but_before_the_old_pack_goes_loses_nothing() {
    let dir = TmpDir::new("copied");
    let c = compact_one(&dir.0).await;
    // The old pack is still there: every live block is in two packs.
    std::fs::write(packs_dir(&dir.0).join(&c.old_name), &c.old_bytes).unwrap();
    check_live(&dir.0, &c.keep, "old pack left behind").await;
}

#[tokio::test]
async fn a_crash_before_the_copies_are_fsynced_loses_nothing_at_any_cut() {
    let dir = TmpDir::new("copying");
    let c = compact_one(&dir.0).await;
    let snapshot = dir.0.join("snapshot");
    std::fs::create_dir_all(&snapshot).unwrap();
    for e in std::fs::read_dir(packs_dir(&dir.0)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), snapshot.join(e.file_name())).unwrap();
    }
    std::fs::write(snapshot.join(&c.old_name), &c.old_bytes).unwrap();
    let work = dir.0.join("work");
    for cut in c.active_before..=c.active_after.len() as u64 {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(packs_dir(&work)).unwrap();
        for e in std::fs::read_dir(&snapshot).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), packs_dir(&work).join(e.file_name())).unwrap();
        }
        std::fs::write(
            packs_dir(&work).join(&c.active_name),
            &c.active_after[..cut as usize],
        )
        .unwrap();
        check_live(&work, &c.keep, &format!("copies cut at {cut}")).await;
    }
}

#[tokio::test]
async fn corruption_in_a_sealed_pack_is_skipped_and_never_served() {
    let dir = TmpDir::new("corrupt");
    let blocks: Vec<Arc<[u8]>> = (0..20).map(|i| block(200, 900 + i)).collect();
    {
        let store = BlockStore::disk_with(&dir.0, small_packs(2048)).unwrap();
        for b in &blocks {
            store.put(b.clone()).await.unwrap();
        }
        assert_eq!(store.packs().unwrap().usage().len(), 3);
    }
    let rec = HEADER_LEN + 200;
    let flip = |name: &str, at: usize| {
        let path = packs_dir(&dir.0).join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 8 * rec, "a sealed pack holds eight records");
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
    };
    // The second record's header in the first pack; the data of the
    // eleventh block (the third record of the second pack).
    flip("00000001.pack", rec + 6);
    flip("00000002.pack", 2 * rec + HEADER_LEN + 17);
    let store = BlockStore::disk_with(&dir.0, small_packs(2048)).unwrap();
    let (h1, h10) = (hash_hex(&blocks[1]), hash_hex(&blocks[10]));
    assert!(
        !store.has(&h1).await,
        "a record behind a bad header is skipped"
    );
    assert_eq!(store.get(&h1).await.unwrap(), None);
    // A sealed pack's data is checked on read: an error, never the bytes,
    // and the block is no longer held (repair fetches it from a peer).
    assert!(store.has(&h10).await);
    assert!(matches!(store.get(&h10).await, Err(BlockError::Io(_))));
    assert!(!store.has(&h10).await);
    for (i, b) in blocks.iter().enumerate() {
        if i != 1 && i != 10 {
            assert_eq!(
                &store.get(&hash_hex(b)).await.unwrap().unwrap()[..],
                &b[..],
                "block {i}"
            );
        }
    }
    assert_eq!(contents(&store).await.len(), 18);
}

#[tokio::test]
async fn old_loose_block_files_are_moved_into_packs() {
    let dir = TmpDir::new("old");
    let root = dir.0.join("blocks");
    let blocks: Vec<Arc<[u8]>> = (0..20).map(|i| block(10 + i * 50, 77 + i as u64)).collect();
    for b in &blocks {
        let h = hash_hex(b);
        std::fs::create_dir_all(root.join(&h[..2])).unwrap();
        std::fs::write(root.join(&h[..2]).join(&h), b).unwrap();
    }
    // A leftover temporary file and a file whose bytes are not its name.
    let h0 = hash_hex(&blocks[0]);
    std::fs::write(root.join(&h0[..2]).join(format!(".{h0}.tmp-00ff")), b"half").unwrap();
    let liar = hash_hex(b"what it claims");
    std::fs::create_dir_all(root.join(&liar[..2])).unwrap();
    std::fs::write(root.join(&liar[..2]).join(&liar), b"something else").unwrap();
    for _ in 0..2 {
        let store = BlockStore::disk(&dir.0).unwrap();
        let got = contents(&store).await;
        assert_eq!(got.len(), blocks.len());
        for b in &blocks {
            assert_eq!(got[&hash_hex(b)], &b[..]);
        }
        assert!(!store.has(&liar).await);
    }
    let left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut want = vec!["packs".to_owned(), liar[..2].to_owned()];
    want.sort();
    let mut left = left;
    left.sort();
    assert_eq!(left, want, "only the packs and the unprovable file remain");
}
