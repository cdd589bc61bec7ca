//! The snapshot file `DIR/snapshot`: the state machine as of a log index,
//! which replaces the log prefix through that index.
//!
//! Format (integers little-endian):
//! `magic "SURFSNAP" | version: u32 (1) | index: u64 | term: u64 |
//! data_len: u64 | data (data_len bytes) | crc: u32`, where `crc` is the
//! CRC-32 (IEEE, `crc32fast`) of everything before it.
//!
//! It is replaced atomically: written to a temp file `DIR/snapshot.I-T.tmp`
//! and fsynced (`SnapshotPreparer::prepare`, which may run on another
//! thread), then renamed over `DIR/snapshot` and the directory fsynced
//! (`SnapshotPreparer::install`). A crash leaves the old file or the whole
//! new one, never a partial one; a stray temp file is removed at open.
//! Snapshots are fsynced whatever the `FsyncPolicy`: they are rare, and
//! compaction deletes the log they replace.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::fs::FileSystem;
use crate::node::raft::{LogIndex, Snapshot, Term};

pub const SNAPSHOT_FILE: &str = "snapshot";
const MAGIC: &[u8; 8] = b"SURFSNAP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8;
const CRC_LEN: usize = 4;

/// Whether `name` is a temp file a `prepare` left (to remove at open).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with("snapshot.") && name.ends_with(".tmp")
}

fn header(snap: &Snapshot) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&snap.index.to_le_bytes());
    h[20..28].copy_from_slice(&snap.term.to_le_bytes());
    h[28..36].copy_from_slice(&(snap.data.len() as u64).to_le_bytes());
    h
}

/// The bytes of the snapshot file for `snap`.
pub fn encode(snap: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + snap.data.len() + CRC_LEN);
    out.extend_from_slice(&header(snap));
    out.extend_from_slice(&snap.data);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a snapshot file back; `Err` says what is wrong with it.
pub fn decode(bytes: Bytes) -> Result<Snapshot, String> {
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(format!(
            "{} bytes, shorter than the {}-byte header and checksum",
            bytes.len(),
            HEADER_LEN + CRC_LEN
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(format!("bad magic {:?} (not a snapshot file)", &bytes[..8]));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("format version {version}, expected {VERSION}"));
    }
    let data_len = u64_at(28);
    let want = (HEADER_LEN + CRC_LEN) as u64;
    if want.checked_add(data_len) != Some(bytes.len() as u64) {
        return Err(format!(
            "header says {data_len} data bytes, the file holds {}",
            bytes.len() - HEADER_LEN - CRC_LEN
        ));
    }
    let end = bytes.len() - CRC_LEN;
    let crc = u32::from_le_bytes(bytes[end..].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..end]) != crc {
        return Err("bad checksum".into());
    }
    Ok(Snapshot {
        index: u64_at(12),
        term: u64_at(20),
        data: bytes.slice(HEADER_LEN..end),
    })
}

/// A snapshot written to its durable temp file, waiting to be renamed into
/// place by `save_snapshot`. Dropped unused, the temp file stays until the
/// next open removes it.
#[derive(Debug)]
#[must_use = "pass it to save_snapshot"]
pub struct PreparedSnapshot {
    index: LogIndex,
    term: Term,
    tmp: PathBuf,
}

impl PreparedSnapshot {
    pub fn index(&self) -> LogIndex {
        self.index
    }
    pub fn term(&self) -> Term {
        self.term
    }
}

/// Writes snapshot files for one data directory; cheap to clone, `Send`, so
/// the slow part (writing and fsyncing the data) can run off the driver task
/// (`tokio::task::spawn_blocking`).
#[derive(Clone, Debug)]
pub struct SnapshotPreparer {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
}

impl SnapshotPreparer {
    pub(crate) fn new(fs: Arc<dyn FileSystem>, dir: &Path) -> Self {
        SnapshotPreparer {
            fs,
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    /// Writes `snap` to a temp file in the data directory and fsyncs it.
    pub fn prepare(&self, snap: &Snapshot) -> io::Result<PreparedSnapshot> {
        let tmp = self
            .dir
            .join(format!("{SNAPSHOT_FILE}.{}-{}.tmp", snap.index, snap.term));
        let head = header(snap);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&snap.data);
        let mut f = self.fs.create(&tmp)?;
        f.write_all(&head)?;
        f.write_all(&snap.data)?;
        f.write_all(&crc.finalize().to_le_bytes())?;
        f.sync_data()?;
        Ok(PreparedSnapshot {
            index: snap.index,
            term: snap.term,
            tmp,
        })
    }

    /// Makes a prepared snapshot the directory's snapshot file, durably
    /// (rename over `DIR/snapshot`, fsync `DIR`). Only `save_snapshot` (and
    /// tests of the crash between this and the WAL marker) call it.
    pub(crate) fn install(&self, prepared: PreparedSnapshot) -> io::Result<()> {
        self.fs.rename(&prepared.tmp, &self.path())?;
        self.fs.sync_dir(&self.dir)
    }

    /// Removes a prepared snapshot that will not be installed.
    pub(crate) fn discard(&self, prepared: PreparedSnapshot) -> io::Result<()> {
        self.fs.remove_file(&prepared.tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            index: 7,
            term: 3,
            data: Bytes::from_static(b"state machine"),
        }
    }

    #[test]
    fn round_trip() {
        let s = snap();
        assert_eq!(decode(Bytes::from(encode(&s))), Ok(s));
        let empty = Snapshot::default();
        assert_eq!(decode(Bytes::from(encode(&empty))), Ok(empty));
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let bytes = encode(&snap());
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            assert!(decode(Bytes::from(b)).is_err(), "flip at {at}");
        }
        for cut in 0..bytes.len() {
            assert!(
                decode(Bytes::copy_from_slice(&bytes[..cut])).is_err(),
                "cut at {cut}"
            );
        }
    }
}
