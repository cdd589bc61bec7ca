//! What the on-disk store tests share: a fresh scratch directory per test and
//! thread, the cluster identity they claim, entries whose data names them,
//! the segment files a directory holds, and what a store holds.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{segment, DiskStore, Recovery};
use crate::node::raft::Entry;
use crate::node::storage::{ClusterMeta, RealFs, Stored};

/// A fresh, empty directory under the system temp dir for test `name`.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "surfstore-wal-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn meta() -> ClusterMeta {
    ClusterMeta {
        id: 0,
        members: vec!["localhost:9001".into(), "localhost:9002".into()],
    }
}

pub fn e(term: u64, index: u64) -> Entry {
    Entry {
        term,
        index,
        data: Bytes::from(format!("entry {index} of term {term}")),
    }
}

/// The segment files under `dir/wal`, in order.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    segment::list(&RealFs, &dir.join("wal"))
        .unwrap()
        .segments
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// What a store just opened hands to the core, checked against what its
/// files hold read back through its shape (they must agree).
pub fn loaded(s: &DiskStore, rec: Recovery) -> Stored {
    assert_eq!(
        s.read_back().expect("read back"),
        rec.loaded,
        "what open hands out is what the files hold"
    );
    rec.loaded
}

/// What a store holds now, read back from its files.
pub fn held(s: &DiskStore) -> Stored {
    s.read_back().expect("read back")
}
