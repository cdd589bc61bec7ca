//! Segment files: the write-ahead log is a sequence of append-only files
//! `DIR/wal/<seq>.wal` (seq zero-padded to 20 digits so names sort in order).
//! Only the last one is ever written; a new one is started when the current
//! one passes the segment size.

use std::fs;
use std::path::{Path, PathBuf};

pub const SUFFIX: &str = ".wal";

pub fn name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// The segments in `wal_dir`, in order. Files that are not segments are
/// ignored (a stray editor backup must not stop a node).
pub fn list(wal_dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(wal_dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some(stem) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}
