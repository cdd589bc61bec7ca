//! Segment files: the write-ahead log is a sequence of append-only files
//! `DIR/wal/<seq>.wal` (seq zero-padded to 20 digits so names sort in order).
//! Only the last one is ever appended to. A new one is started when the
//! current one passes the segment size (its head: the hard state and a marker
//! for the log's start), or by a compaction (its head: the hard state, a base
//! marker and every retained entry; written as `<seq>.wal.tmp`, fsynced and
//! renamed into place, so a visible compaction segment is whole).

use std::path::{Path, PathBuf};

use crate::node::storage::fs::FileSystem;

pub const SUFFIX: &str = ".wal";
pub const TEMP_SUFFIX: &str = ".wal.tmp";

pub fn name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

pub fn temp_name(seq: u64) -> String {
    format!("{seq:020}{TEMP_SUFFIX}")
}

/// What `list` finds in a WAL directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// (seq, path), in order.
    pub segments: Vec<(u64, PathBuf)>,
    /// Temp files an interrupted compaction left.
    pub temps: Vec<PathBuf>,
}

/// The segments in `wal_dir`, in order, and the temp files an interrupted
/// compaction left. Other files are ignored (a stray editor backup must not
/// stop a node).
pub fn list(fs: &dyn FileSystem, wal_dir: &Path) -> std::io::Result<Listing> {
    let mut out = Vec::new();
    let mut temps = Vec::new();
    for name in fs.list_dir(wal_dir)? {
        if name.ends_with(TEMP_SUFFIX) {
            temps.push(wal_dir.join(&name));
            continue;
        }
        let Some(stem) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((seq, wal_dir.join(&name)));
        }
    }
    out.sort();
    temps.sort();
    Ok(Listing {
        segments: out,
        temps,
    })
}
