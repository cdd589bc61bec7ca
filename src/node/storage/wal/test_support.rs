//! What the on-disk store tests share: a fresh scratch directory per test and
//! thread, the cluster identity they claim, and entries whose data names them.

use std::path::PathBuf;

use bytes::Bytes;

use crate::node::raft::Entry;
use crate::node::storage::ClusterMeta;

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
