//! `DiskStore`: the log and hard state in a write-ahead log under a node's
//! data directory, and the state machine's snapshot beside it.
//!
//! Layout of `DIR`:
//! - `cluster`: the member list and node id this directory belongs to (`meta`)
//! - `LOCK`: held (advisory lock) while a process uses the directory
//! - `snapshot`: the latest snapshot (`storage::snapshot`), if any
//! - `wal/<seq>.wal`: segments of records (`record`, `segment`), replayed in
//!   order
//!
//! `write` appends one batch (entries, then the hard state) with one
//! `write(2)`; `sync` makes every batch since the last one durable with one
//! `fdatasync` under `FsyncPolicy::Always` (nothing if nothing was written).
//! The node's storage thread writes every `Ready` queued while the last
//! fsync ran and then syncs once (group commit); a `Ready` that only moves
//! the commit index is written but needs no sync of its own.
//! Entries go before the hard state so a torn batch never leaves a commit
//! index pointing past the log.
//!
//! `save_snapshot` reads the entries it keeps back from the segments
//! (`read`), makes the snapshot file durable, then compacts: a new segment
//! headed by [hard state, base marker, retained entries] is written, fsynced
//! and renamed into place, and every older segment is deleted. Both steps are
//! fsynced whatever the `FsyncPolicy` (they are rare, and deleting segments
//! on the strength of unsynced data would lose them).
//!
//! The store holds no entry data in memory: only the log's shape (`shape`:
//! hard state, snapshot index and term, last index, and runs of terms and
//! segments) and a write buffer of at most `BUF_KEEP` bytes between writes.
//! The entries live in the core and on disk; what a restarting core gets is
//! handed out once, by `open` (`Recovery::loaded`).
//!
//! `open` recovers (`recover`): it replays the segments from the last
//! compaction on, truncates a torn tail of the last one (with a warning),
//! finishes a compaction a crash interrupted, and refuses corruption
//! anywhere else with the file and offset.
//!
//! After any I/O error the store is failed: the files may hold part of a
//! batch, so every later call returns an error and the node must restart
//! (recovery sorts out what is durable).

mod read;
pub mod record;
mod recover;
pub mod segment;
mod shape;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::fs::{DirLock, FileSystem, FsFile, RealFs};
use super::meta::{ClusterMeta, MetaError};
use super::snapshot::{PreparedSnapshot, SnapshotPreparer};
use super::{LogStore, Stored};
use crate::node::raft::{Entry, HardState, LogIndex, Snapshot, Term};
use shape::LogShape;

/// When `persist` forces data to the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before `persist` returns: acknowledged writes survive power
    /// loss.
    #[default]
    Always,
    /// Leave it to the OS: survives a process crash (kill -9), not power loss.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!(
                "fsync policy {other:?}: expected `always` or `never`"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DiskOptions {
    pub fsync: FsyncPolicy,
    /// A new segment is started once the current one passes this size.
    pub segment_bytes: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt write-ahead log at byte offset {offset}: {reason}; refusing to start (the damage is before the tail, so acknowledged writes may be lost)")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: unreadable snapshot file: {reason}; refusing to start (the log it replaced is gone)")]
    Snapshot { path: PathBuf, reason: String },
    #[error("data directory {dir} is in use by another process (lock {dir}/LOCK is held)")]
    Locked { dir: PathBuf },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `open` found: the log, for the core, and a report for the startup
/// log line and for tests.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// What the store holds, for the restarting core. The store keeps no
    /// copy: this is the only one (move it out).
    pub loaded: Stored,
    /// Segments replayed (from the last compaction on).
    pub segments: usize,
    pub records: usize,
    /// Entries held after the snapshot.
    pub entries: u64,
    /// The snapshot the log starts after (0: none).
    pub snapshot_index: LogIndex,
    /// Time to read and check the snapshot file.
    pub snapshot_took: Duration,
    /// A torn tail that was cut off: file, offset, why.
    pub truncated: Option<(PathBuf, u64, String)>,
    /// Segments a compaction had made obsolete and a crash left; removed.
    pub obsolete_segments: usize,
    /// The snapshot file was installed but its marker never written (a crash
    /// inside `save_snapshot`); `open` applied it and compacted.
    pub finished_snapshot: bool,
    pub took: Duration,
}

/// Counters since open (the benchmark reads them to show group commit).
#[derive(Clone, Copy, Debug, Default)]
pub struct WalStats {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    pub compactions: u64,
}

pub struct DiskStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    wal_dir: PathBuf,
    opts: DiskOptions,
    /// The segment being appended to, its sequence number and size.
    file: Box<dyn FsFile>,
    seq: u64,
    size: u64,
    /// What the log holds, without the entries' data. Invariant: it is what
    /// replaying the segments gives (recovery checks it; `read_entries`
    /// checks the entries it reads against it).
    shape: LogShape,
    /// Scratch space for a batch or a compaction segment; its capacity is cut
    /// back to `BUF_KEEP` after each use.
    buf: Vec<u8>,
    stats: WalStats,
    preparer: SnapshotPreparer,
    /// Set by the first I/O error; then every call fails (restart to recover).
    failed: Option<String>,
    /// Bytes were written to the current segment since its last fsync.
    unsynced: bool,
    /// Held for the store's lifetime; the OS drops it if the process dies.
    _lock: DirLock,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.dir)
            .field("seq", &self.seq)
            .field("size", &self.size)
            .field("snapshot_index", &self.shape.snapshot_index())
            .field("last_index", &self.shape.last_index())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl DiskStore {
    /// Opens (creating if needed) the data directory `dir` for node
    /// `meta.id` of `meta.members`, and recovers what it holds.
    pub fn open(
        dir: &Path,
        meta: &ClusterMeta,
        opts: DiskOptions,
    ) -> Result<(DiskStore, Recovery), WalError> {
        Self::open_in(Arc::new(RealFs), dir, meta, opts)
    }

    /// `open`, on the file system `fs` (the simulation's `SimFs`).
    pub fn open_in(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        meta: &ClusterMeta,
        opts: DiskOptions,
    ) -> Result<(DiskStore, Recovery), WalError> {
        recover::open(fs, dir, meta, opts)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn last_index(&self) -> LogIndex {
        self.shape.last_index()
    }

    pub fn snapshot_index(&self) -> LogIndex {
        self.shape.snapshot_index()
    }

    pub fn hard_state(&self) -> HardState {
        self.shape.hard_state()
    }

    /// The term of the entry at `index` (the snapshot's for its own index),
    /// `None` when the log does not hold it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.shape.term_at(index)
    }

    /// Heap bytes the store holds besides its file handles: the log's shape
    /// and the write buffer. It does not grow with the entries' data: a few
    /// words per term and per segment in the log, plus at most `BUF_KEEP`.
    pub fn resident_bytes(&self) -> usize {
        self.shape.heap_bytes() + self.buf.capacity()
    }

    pub fn stats(&self) -> WalStats {
        self.stats
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(io::Error::other(format!(
                "{}: store failed after an earlier I/O error ({why}); restart to recover",
                self.dir.display()
            ))),
        }
    }

    /// Records the first I/O error: the files' state is unknown from here on.
    fn fail(&mut self, e: io::Error) -> io::Error {
        if self.failed.is_none() {
            tracing::error!(dir = %self.dir.display(), error = %e, "write-ahead log I/O failed; the store refuses further writes");
            self.failed = Some(e.to_string());
        }
        e
    }

    fn sync_file(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.stats.fsyncs += 1;
        self.unsynced = false;
        Ok(())
    }

    /// Starts the next segment because the current one is full, and puts
    /// its head before the pending batch in `buf`. The head repeats the hard
    /// state and the log's start, so that segments before a compaction can
    /// be deleted without losing them.
    fn roll(&mut self) -> io::Result<()> {
        if self.opts.fsync == FsyncPolicy::Always {
            self.sync_file()?;
        }
        let seq = self.seq + 1;
        let path = self.wal_dir.join(segment::name(seq));
        let start = self.shape.snapshot_index();
        let marker = (start > 0).then_some(record::Marker {
            index: start,
            term: self.shape.snapshot_term(),
            base: false,
        });
        let mut head = Vec::new();
        encode_head(&mut head, self.shape.hard_state(), marker);
        self.file = self.fs.open_append(&path)?;
        self.fs.sync_dir(&self.wal_dir)?;
        self.seq = seq;
        self.size = 0;
        self.buf.splice(0..0, head);
        Ok(())
    }

    /// Replaces the log by a new segment holding [hard state, base marker
    /// (`index`, `term`), `retained`] (the entries the snapshot keeps),
    /// durably, then deletes every older segment. The shape is not touched
    /// (the caller applies the snapshot to it and relocates its entries).
    fn compact(&mut self, index: LogIndex, term: Term, retained: &[Entry]) -> io::Result<()> {
        let seq = self.seq + 1;
        self.buf.clear();
        let marker = record::Marker {
            index,
            term,
            base: true,
        };
        encode_head(&mut self.buf, self.shape.hard_state(), Some(marker));
        for e in retained {
            record::encode_entry(&mut self.buf, e);
        }
        let tmp = self.wal_dir.join(segment::temp_name(seq));
        let path = self.wal_dir.join(segment::name(seq));
        {
            let mut f = self.fs.create(&tmp)?;
            f.write_all(&self.buf)?;
            f.sync_data()?;
            self.stats.fsyncs += 1;
        }
        self.fs.rename(&tmp, &path)?;
        self.fs.sync_dir(&self.wal_dir)?;
        self.file = self.fs.open_append(&path)?;
        self.seq = seq;
        self.size = self.buf.len() as u64;
        self.stats.bytes += self.buf.len() as u64;
        self.stats.compactions += 1;
        self.trim_buf();
        let old = segment::list(&*self.fs, &self.wal_dir)?.segments;
        let mut removed = 0;
        for (s, p) in old {
            if s < seq {
                self.fs.remove_file(&p)?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.fs.sync_dir(&self.wal_dir)?;
        }
        Ok(())
    }

    fn persist_io(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> io::Result<()> {
        self.buf.clear();
        for e in entries {
            record::encode_entry(&mut self.buf, e);
        }
        if let Some(hs) = &hard_state {
            record::encode_hard_state(&mut self.buf, hs);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let records = entries.len() as u64 + hard_state.is_some() as u64;
        if self.size > 0 && self.size + self.buf.len() as u64 > self.opts.segment_bytes {
            self.roll()?;
        }
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.stats.batches += 1;
        self.stats.records += records;
        self.stats.bytes += self.buf.len() as u64;
        self.unsynced = true;
        self.trim_buf();
        Ok(())
    }

    /// Gives back the memory of a large batch or compaction: the buffer
    /// keeps at most `BUF_KEEP` bytes of capacity between writes.
    fn trim_buf(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(BUF_KEEP);
    }

    /// The snapshot file step and the WAL step of `save_snapshot`, for a
    /// snapshot newer than the one held; `retained`: the entries it keeps.
    fn save_snapshot_io(
        &mut self,
        snapshot: &Snapshot,
        prepared: PreparedSnapshot,
        retained: &[Entry],
    ) -> io::Result<()> {
        self.preparer.install(prepared)?;
        self.compact(snapshot.index, snapshot.term, retained)
    }
}

/// The write buffer's capacity kept between writes (a batch or compaction
/// larger than this allocates for itself and gives it back).
pub const BUF_KEEP: usize = 256 << 10;

/// Appends a segment head to `out`: the hard state (its commit raised to the
/// marker's index: what a snapshot holds is committed) and the marker.
fn encode_head(out: &mut Vec<u8>, mut hs: HardState, marker: Option<record::Marker>) {
    if let Some(m) = marker {
        hs.commit = hs.commit.max(m.index);
    }
    record::encode_hard_state(out, &hs);
    if let Some(m) = marker {
        record::encode_marker(out, &m);
    }
}

impl LogStore for DiskStore {
    fn sync(&mut self) -> io::Result<()> {
        self.check_failed()?;
        if self.unsynced && self.opts.fsync == FsyncPolicy::Always {
            self.sync_file().map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    fn write(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> io::Result<()> {
        self.check_failed()?;
        if let Some(first) = entries.first() {
            let start = self.shape.snapshot_index();
            assert!(
                first.index > start && first.index <= self.last_index() + 1,
                "log contiguity invariant: persisting index {} after last {} (snapshot {start})",
                first.index,
                self.last_index()
            );
        }
        self.persist_io(hard_state, entries)
            .map_err(|e| self.fail(e))?;
        if let Some(hs) = hard_state {
            self.shape.set_hard_state(hs);
        }
        // The batch went to the segment current after a roll.
        self.shape.append(entries, self.seq);
        Ok(())
    }

    fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        prepared: Option<PreparedSnapshot>,
    ) -> io::Result<()> {
        self.check_failed()?;
        if let Some(p) = &prepared {
            assert_eq!(
                (p.index(), p.term()),
                (snapshot.index, snapshot.term),
                "prepared snapshot invariant: the prepared file is the snapshot being saved"
            );
        }
        if !self.shape.is_newer(snapshot.index) {
            if let Some(p) = prepared {
                // Not worth failing over: open removes stray temp files.
                let _ = self.preparer.discard(p);
            }
            return Ok(());
        }
        // Nothing is installed yet when reading or preparing fails: no need
        // to fail the store (open removes a stray temp file).
        let kept = self.shape.retained(snapshot.index, snapshot.term);
        let retained = match self.read_entries(kept) {
            Ok(r) => r,
            Err(e) => {
                if let Some(p) = prepared {
                    let _ = self.preparer.discard(p);
                }
                return Err(e);
            }
        };
        let prepared = match prepared {
            Some(p) => p,
            None => self.preparer.prepare(snapshot)?,
        };
        self.save_snapshot_io(snapshot, prepared, &retained)
            .map_err(|e| self.fail(e))?;
        tracing::info!(
            dir = %self.dir.display(),
            index = snapshot.index,
            term = snapshot.term,
            bytes = snapshot.data.len(),
            retained = retained.len(),
            "saved a snapshot and compacted the log"
        );
        self.shape.apply_snapshot(snapshot.index, snapshot.term);
        self.shape.relocate(self.seq);
        Ok(())
    }

    fn snapshot_preparer(&self) -> Option<SnapshotPreparer> {
        Some(self.preparer.clone())
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
