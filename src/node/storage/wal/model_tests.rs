//! DiskStore against `MemStore` as the model, property-style: random
//! appends, overwrites that truncate the log, hard states, local compactions
//! (prepared or not), installs over a conflicting or short log and older
//! snapshots, on `SimFs` with small segments (so rolls happen between
//! compactions). After every step the store's shape and what its files hold
//! (read back through the shape, as a compaction reads what it keeps) must be
//! the model's; a compaction keeps exactly the model's entries; a power cut
//! and reopen give the model. And the store's resident memory does not grow
//! with the entries it holds.

use super::*;
use crate::node::storage::fs::{CrashMode, SimFs};
use crate::node::storage::MemStore;
use bytes::Bytes;
use proptest::prelude::*;

use super::test_support::{held, loaded, meta, tmp};

fn opts(segment_bytes: u64) -> DiskOptions {
    DiskOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes,
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// `n` entries of term `term` from a first index `at` picks among
    /// snapshot + 1 ..= last + 1 (below the end: an overwrite), with a hard
    /// state if `hs` (its commit `hs` past the snapshot).
    Append {
        at: u16,
        n: u8,
        term: u8,
        size: u16,
        hs: Option<u8>,
    },
    HardState(u8),
    /// A local snapshot at a held index (`at` picks it) with its term.
    Compact {
        at: u16,
        prepare: bool,
    },
    /// A snapshot from the leader whose term conflicts at a held index, or
    /// past the end of the log.
    Install {
        at: u16,
        past_end: bool,
    },
    /// A snapshot older than (or at) the one held: ignored.
    Older {
        at: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (any::<u16>(), 0..8u8, 1..5u8, 0..400u16, proptest::option::of(0..4u8))
            .prop_map(|(at, n, term, size, hs)| Step::Append { at, n, term, size, hs }),
        1 => (0..4u8).prop_map(Step::HardState),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(at, prepare)| Step::Compact { at, prepare }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(at, past_end)| Step::Install { at, past_end }),
        1 => any::<u16>().prop_map(|at| Step::Older { at }),
    ]
}

fn hard_state(m: &MemStore, term: u8, commit_past: u8) -> HardState {
    HardState {
        term: term as u64 + 1,
        vote: Some(term as u64 % 3),
        commit: (m.snapshot().index + commit_past as u64).min(m.last_index().max(1)),
    }
}

/// Entry data naming its index, term and the step that wrote it, so an
/// overwrite with an equal term is still told apart.
fn entry(index: u64, term: u64, step: usize, size: u16) -> Entry {
    let mut data = format!("{index}/{term}/{step}:").into_bytes();
    data.resize(data.len() + size as usize, (index % 251) as u8);
    Entry {
        term,
        index,
        data: Bytes::from(data),
    }
}

fn snap(index: u64, term: u64) -> Snapshot {
    Snapshot {
        index,
        term,
        data: Bytes::from(format!("map through {index} (term {term})")),
    }
}

/// Applies `step` to the model and the store; `Some` with the snapshot a
/// compaction made (to check what it kept).
fn apply(s: &mut DiskStore, m: &mut MemStore, k: usize, step: &Step) -> Option<Snapshot> {
    let (start, last) = (m.snapshot().index, m.last_index());
    match *step {
        Step::Append {
            at,
            n,
            term,
            size,
            hs,
        } => {
            let first = start + 1 + at as u64 % (last - start + 1);
            let entries: Vec<Entry> = (0..n as u64)
                .map(|i| entry(first + i, term as u64, k, size))
                .collect();
            let hs = hs.map(|c| hard_state(m, term, c));
            s.persist(hs, &entries).unwrap();
            m.persist(hs, &entries).unwrap();
            None
        }
        Step::HardState(c) => {
            let hs = hard_state(m, c, c);
            s.persist(Some(hs), &[]).unwrap();
            m.persist(Some(hs), &[]).unwrap();
            None
        }
        Step::Compact { at, prepare } => {
            if last == start {
                return None;
            }
            let index = start + 1 + at as u64 % (last - start);
            let sn = snap(index, m.term_at(index).unwrap());
            let prepared = prepare.then(|| s.snapshot_preparer().unwrap().prepare(&sn).unwrap());
            s.save_snapshot(&sn, prepared).unwrap();
            m.save_snapshot(&sn, None).unwrap();
            Some(sn)
        }
        Step::Install { at, past_end } => {
            let sn = if past_end || last == start {
                snap(last + 1 + at as u64 % 5, 9)
            } else {
                let index = start + 1 + at as u64 % (last - start);
                snap(index, m.term_at(index).unwrap() + 1)
            };
            s.save_snapshot(&sn, None).unwrap();
            m.save_snapshot(&sn, None).unwrap();
            None
        }
        Step::Older { at } => {
            let index = at as u64 % (start + 1);
            let sn = snap(index, 1);
            let p = s.snapshot_preparer().unwrap().prepare(&sn).unwrap();
            s.save_snapshot(&sn, Some(p)).unwrap();
            m.save_snapshot(&sn, None).unwrap();
            None
        }
    }
}

fn check_shape(s: &DiskStore, m: &MemStore, ctx: &str) {
    assert_eq!(s.last_index(), m.last_index(), "{ctx}: last index");
    assert_eq!(s.snapshot_index(), m.snapshot().index, "{ctx}: snapshot");
    assert_eq!(s.hard_state(), m.hard_state(), "{ctx}: hard state");
    for i in m.snapshot().index.saturating_sub(1)..=m.last_index() + 1 {
        assert_eq!(s.term_at(i), m.term_at(i), "{ctx}: term at {i}");
    }
}

fn run_steps(steps: &[Step], segment_bytes: u64) {
    let fs = SimFs::new();
    let dir = PathBuf::from("/model");
    let open = || DiskStore::open_in(Arc::new(fs.clone()), &dir, &meta(), opts(segment_bytes));
    let (mut s, _) = open().unwrap();
    let mut m = MemStore::new();
    for (k, st) in steps.iter().enumerate() {
        let ctx = format!("step {k} {st:?}");
        let compacted = apply(&mut s, &mut m, k, st);
        check_shape(&s, &m, &ctx);
        let got = held(&s);
        assert_eq!(got, m.load(), "{ctx}: the files hold the model");
        if let Some(sn) = compacted {
            // Exactly the entries after the snapshot, read back from the
            // segments, went into the compaction's segment.
            let kept: Vec<u64> = got.entries.iter().map(|e| e.index).collect();
            let want: Vec<u64> = (sn.index + 1..=m.last_index()).collect();
            assert_eq!(kept, want, "{ctx}: retained");
        }
    }
    drop(s);
    fs.crash(CrashMode::LoseUnsynced);
    let (s, rec) = open().unwrap();
    check_shape(&s, &m, "reopened");
    assert_eq!(loaded(&s, rec), m.load(), "reopened after a power cut");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn disk_store_matches_the_model_store(
        steps in proptest::collection::vec(step(), 1..60),
        segment_bytes in prop_oneof![Just(120u64), Just(600), Just(1 << 20)],
    ) {
        run_steps(&steps, segment_bytes);
    }
}

/// A fixed history the property may not draw: compaction after many
/// appends and truncations spread over many segments.
#[test]
fn compaction_after_truncations_across_segments_keeps_the_right_entries() {
    let mut steps = Vec::new();
    for round in 0..30u16 {
        steps.push(Step::Append {
            at: u16::MAX,
            n: 7,
            term: (round / 6 + 1) as u8,
            size: 90,
            hs: Some(1),
        });
        // Back up over part of what was just written (a new leader's
        // overwrite): `at` picks a first index inside the log.
        steps.push(Step::Append {
            at: round * 37,
            n: 3,
            term: (round / 6 + 2) as u8,
            size: 40,
            hs: None,
        });
        if round % 7 == 6 {
            steps.push(Step::Compact {
                at: round * 11,
                prepare: round % 2 == 0,
            });
        }
    }
    run_steps(&steps, 300);
}

/// The store keeps no entry data: with 16 MiB of entries in the log, it
/// holds a few words of shape and a write buffer of at most `BUF_KEEP`; a
/// batch or a compaction larger than that gives its memory back.
#[test]
fn resident_bytes_do_not_grow_with_the_log() {
    let dir = tmp("resident");
    let opts = DiskOptions {
        fsync: FsyncPolicy::Never,
        ..DiskOptions::default()
    };
    let (mut s, _) = DiskStore::open(&dir, &meta(), opts.clone()).unwrap();
    let mut m = MemStore::new();
    let payload = 4096;
    let mut next = 1;
    let mut most = 0;
    let mut k = 0;
    while m.entries().iter().map(|e| e.data.len()).sum::<usize>() < 16 << 20 {
        // Batches of 1 to 16 entries; every tenth backs up over 5 entries.
        let n = 1 + k % 16;
        let first = if k % 10 == 9 { next - 5 } else { next };
        let batch: Vec<Entry> = (first..first + n as u64)
            .map(|i| entry(i, 1 + k as u64 / 50, k, payload))
            .collect();
        s.persist(None, &batch).unwrap();
        m.persist(None, &batch).unwrap();
        next = first + n as u64;
        most = most.max(s.resident_bytes());
        k += 1;
    }
    let held_bytes: usize = m.entries().iter().map(|e| e.data.len()).sum();
    assert!(held_bytes >= 16 << 20);
    assert!(
        most <= BUF_KEEP + (16 << 10),
        "{most} resident bytes with {held_bytes} bytes of entries in the log"
    );
    // One 4 MiB batch: its buffer is given back.
    let big: Vec<Entry> = (next..next + 1024)
        .map(|i| entry(i, 9, k, payload))
        .collect();
    s.persist(None, &big).unwrap();
    m.persist(None, &big).unwrap();
    assert!(
        s.resident_bytes() <= BUF_KEEP + (4 << 10),
        "{}",
        s.resident_bytes()
    );
    // A compaction keeping half the log (8 MiB read back and rewritten).
    let at = m.last_index() / 2;
    let sn = snap(at, m.term_at(at).unwrap());
    s.save_snapshot(&sn, None).unwrap();
    m.save_snapshot(&sn, None).unwrap();
    assert!(
        s.resident_bytes() <= BUF_KEEP + (4 << 10),
        "{}",
        s.resident_bytes()
    );
    assert_eq!(held(&s), m.load());
    drop(s);
    let (s, rec) = DiskStore::open(&dir, &meta(), opts).unwrap();
    assert_eq!(rec.loaded, m.load());
    drop(rec);
    assert!(s.resident_bytes() <= 4 << 10, "{}", s.resident_bytes());
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a compaction reads back is checked against the shape: segments
/// changed under the store (here an entry rewritten with another term) are
/// an error naming the directory, and nothing is installed.
#[test]
fn a_compaction_over_segments_changed_under_the_store_fails_and_installs_nothing() {
    let fs = SimFs::new();
    let dir = PathBuf::from("/changed");
    let (mut s, _) =
        DiskStore::open_in(Arc::new(fs.clone()), &dir, &meta(), opts(1 << 20)).unwrap();
    let log: Vec<Entry> = (1..=10).map(|i| entry(i, 1, 0, 10)).collect();
    s.persist(None, &log).unwrap();
    let seg = dir.join("wal").join(segment::name(1));
    let mut forged = Vec::new();
    for e in &log {
        let term = if e.index == 8 { 2 } else { e.term };
        record::encode_entry(&mut forged, &Entry { term, ..e.clone() });
    }
    fs.overwrite(&seg, &forged);
    let err = s.save_snapshot(&snap(5, 1), None).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(
        err.to_string().contains("/changed/wal") && err.to_string().contains("changed under"),
        "{err}"
    );
    assert_eq!(s.snapshot_index(), 0);
    assert!(
        fs.contents(&dir.join("snapshot")).is_none(),
        "nothing installed"
    );
    assert_eq!(
        segment::list(&fs, &dir.join("wal")).unwrap().segments.len(),
        1
    );
}
