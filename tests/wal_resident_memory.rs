//! The write-ahead log keeps no copy of the log in memory: measured with a
//! counting global allocator (live heap bytes), not with the store's own
//! accounting. 16 MiB of entries are written (the caller drops its copies),
//! overwritten in part and compacted; the store's heap stays under 1 MiB
//! throughout. At reopen, the log is handed out once and, once the caller
//! drops it, the open store holds under 1 MiB again.
//!
//! (One test in this binary, so no other test allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use surfstore::node::raft::{Entry, HardState, Snapshot};
use surfstore::node::storage::{ClusterMeta, DiskOptions, DiskStore, FsyncPolicy, LogStore};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const PAYLOAD: usize = 16 << 10;
const ENTRIES: u64 = 1024;
/// What the store may hold whatever the log's size (its shape, its write
/// buffer, file handles, paths).
const LIMIT: isize = 1 << 20;

fn batch(first: u64, n: u64, term: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|index| Entry {
            term,
            index,
            data: Bytes::from(vec![(index % 251) as u8; PAYLOAD]),
        })
        .collect()
}

#[test]
fn the_store_holds_no_copy_of_the_log() {
    let dir = std::env::temp_dir().join(format!("surfstore-wal-resident-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meta = ClusterMeta {
        id: 0,
        members: vec!["localhost:9800".into()],
    };
    let opts = DiskOptions {
        fsync: FsyncPolicy::Never,
        ..DiskOptions::default()
    };
    let base = live();
    let (mut store, rec) = DiskStore::open(&dir, &meta, opts.clone()).unwrap();
    drop(rec);
    let mut most = 0;
    let mut next = 1;
    while next <= ENTRIES {
        let b = batch(next, 16, 1);
        store
            .persist(
                Some(HardState {
                    term: 1,
                    vote: Some(0),
                    commit: next,
                }),
                &b,
            )
            .unwrap();
        drop(b);
        next += 16;
        most = most.max(live() - base);
    }
    // A new leader overwrites the last 100 entries.
    let from = next - 100;
    let b = batch(from, 50, 2);
    store.persist(None, &b).unwrap();
    drop(b);
    most = most.max(live() - base);
    let last = from + 49;
    assert_eq!(store.last_index(), last);
    let written = (store.last_index() as usize) * PAYLOAD;
    assert!(written >= 15 << 20, "{written}");
    assert!(
        most < LIMIT,
        "the store's heap grew by {most} bytes while the log held {written} bytes of entries"
    );

    // Compaction reads the kept half back, rewrites it, and keeps none of it.
    let at = store.last_index() / 2;
    let snapshot = Snapshot {
        index: at,
        term: 1,
        data: Bytes::from_static(b"map"),
    };
    store.save_snapshot(&snapshot, None).unwrap();
    let after = live() - base;
    assert!(after < LIMIT, "{after} bytes after the compaction");
    assert_eq!((store.snapshot_index(), store.last_index()), (at, last));
    drop(store);

    // Reopen: the log is handed out once, and not kept.
    let (store, rec) = DiskStore::open(&dir, &meta, opts).unwrap();
    let loaded = rec.loaded;
    let want: Vec<(u64, u64)> = (at + 1..=last)
        .map(|i| (i, if i < from { 1 } else { 2 }))
        .collect();
    let got: Vec<(u64, u64)> = loaded.entries.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(got, want);
    assert_eq!(loaded.snapshot, snapshot);
    assert!(loaded
        .entries
        .iter()
        .all(|e| *e.data == vec![(e.index % 251) as u8; PAYLOAD]));
    let with_log = live() - base;
    drop(loaded);
    let without = live() - base;
    assert!(
        with_log - without >= (want.len() * PAYLOAD) as isize,
        "the handed-out log was {} bytes",
        with_log - without
    );
    assert!(
        without < LIMIT,
        "{without} bytes held by the reopened store"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
