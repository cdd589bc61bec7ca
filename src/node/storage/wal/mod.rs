//! `DiskStore`: the log and hard state in a write-ahead log under a node's
//! data directory.
//!
//! Layout of `DIR`:
//! - `cluster`: the member list and node id this directory belongs to (`meta`)
//! - `LOCK`: held (advisory lock) while a process uses the directory
//! - `wal/<seq>.wal`: segments of records (`record`), replayed in order
//!
//! `persist` writes one batch (entries, then the hard state) with one
//! `write` and, under `FsyncPolicy::Always`, one `fdatasync`: the driver calls
//! it once per `Ready`, and a `Ready` carries everything proposed or received
//! since the previous one, so one fsync covers a whole burst (group commit).
//! Entries go before the hard state so a torn batch never leaves a commit
//! index pointing past the log.
//!
//! `open` recovers: it replays every segment, truncates a torn tail of the
//! last one (with a warning) and refuses corruption anywhere else with the
//! file and offset.

pub mod record;
pub mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::meta::{sync_dir, ClusterMeta, MetaError};
use super::{LogStore, MemStore};
use crate::node::raft::{Entry, HardState, LogIndex};

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

/// What `open` found, for the startup log line and for tests.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    pub segments: usize,
    pub records: usize,
    pub entries: u64,
    /// A torn tail that was cut off: file, offset, why.
    pub truncated: Option<(PathBuf, u64, String)>,
    pub took: Duration,
}

/// Counters since open (the benchmark reads them to show group commit).
#[derive(Clone, Copy, Debug, Default)]
pub struct WalStats {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub fsyncs: u64,
}

pub struct DiskStore {
    dir: PathBuf,
    wal_dir: PathBuf,
    opts: DiskOptions,
    /// The segment being appended to, its sequence number and size.
    file: File,
    seq: u64,
    size: u64,
    /// Mirrors what the log holds (what `load` hands to a restarting core).
    mirror: MemStore,
    buf: Vec<u8>,
    stats: WalStats,
    /// Held for the store's lifetime; the OS drops it if the process dies.
    _lock: File,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.dir)
            .field("seq", &self.seq)
            .field("size", &self.size)
            .field("last_index", &self.mirror.last_index())
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
        let started = Instant::now();
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(WalError::Locked {
                    dir: dir.to_owned(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        meta.claim(dir)?;
        let wal_dir = dir.join("wal");
        if !wal_dir.exists() {
            fs::create_dir_all(&wal_dir).map_err(io(&wal_dir))?;
            sync_dir(dir).map_err(io(dir))?;
        }
        let segments = segment::list(&wal_dir).map_err(io(&wal_dir))?;
        let mut rec = Recovery {
            segments: segments.len(),
            ..Default::default()
        };
        let mut hard_state = HardState::default();
        let mut entries: Vec<Entry> = Vec::new();
        let mut tail_size = 0;
        for (k, (_, path)) in segments.iter().enumerate() {
            let is_last = k + 1 == segments.len();
            let data = Bytes::from(fs::read(path).map_err(io(path))?);
            let scan = record::scan(&data).map_err(|c| WalError::Corrupt {
                path: path.clone(),
                offset: c.offset as u64,
                reason: c.reason,
            })?;
            if let Some(torn) = &scan.torn {
                if !is_last {
                    return Err(WalError::Corrupt {
                        path: path.clone(),
                        offset: torn.offset as u64,
                        reason: format!("{} in a segment that is not the last", torn.reason),
                    });
                }
                tracing::warn!(
                    file = %path.display(),
                    offset = torn.offset,
                    dropped_bytes = data.len() - scan.valid_len,
                    "write-ahead log ends in a torn record ({}); truncating it",
                    torn.reason
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io(path))?;
                f.set_len(scan.valid_len as u64).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
                rec.truncated = Some((path.clone(), torn.offset as u64, torn.reason.clone()));
            }
            rec.records += scan.records.len();
            for (r, off) in scan.records.into_iter().zip(scan.offsets) {
                match r {
                    record::Record::HardState(hs) => hard_state = hs,
                    record::Record::Entry(e) => {
                        let last = entries.len() as LogIndex;
                        if e.index == 0 || e.index > last + 1 {
                            return Err(WalError::Corrupt {
                                path: path.clone(),
                                offset: off as u64,
                                reason: format!(
                                    "entry {} does not follow the log (last index {last})",
                                    e.index
                                ),
                            });
                        }
                        entries.truncate((e.index - 1) as usize);
                        entries.push(e);
                    }
                }
            }
            if is_last {
                tail_size = scan.valid_len as u64;
            }
        }
        let (seq, path) = match segments.last() {
            Some((seq, path)) => (*seq, path.clone()),
            None => (1, wal_dir.join(segment::name(1))),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if segments.is_empty() {
            sync_dir(&wal_dir).map_err(io(&wal_dir))?;
        }
        rec.entries = entries.len() as u64;
        rec.took = started.elapsed();
        Ok((
            DiskStore {
                dir: dir.to_owned(),
                wal_dir,
                opts,
                file,
                seq,
                size: tail_size,
                mirror: MemStore::from_parts(hard_state, entries),
                buf: Vec::new(),
                stats: WalStats::default(),
                _lock: lock,
            },
            rec,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn last_index(&self) -> LogIndex {
        self.mirror.last_index()
    }

    pub fn stats(&self) -> WalStats {
        self.stats
    }

    fn roll(&mut self) -> std::io::Result<()> {
        if self.opts.fsync == FsyncPolicy::Always {
            self.file.sync_data()?;
        }
        let seq = self.seq + 1;
        let path = self.wal_dir.join(segment::name(seq));
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.wal_dir)?;
        self.seq = seq;
        self.size = 0;
        Ok(())
    }
}

impl LogStore for DiskStore {
    fn persist(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()> {
        if let Some(first) = entries.first() {
            assert!(
                first.index >= 1 && first.index <= self.last_index() + 1,
                "log contiguity invariant: persisting index {} after last {}",
                first.index,
                self.last_index()
            );
        }
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
        if self.size > 0 && self.size + self.buf.len() as u64 > self.opts.segment_bytes {
            self.roll()?;
        }
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.stats.batches += 1;
        self.stats.records += entries.len() as u64 + hard_state.is_some() as u64;
        self.stats.bytes += self.buf.len() as u64;
        if self.opts.fsync == FsyncPolicy::Always {
            self.file.sync_data()?;
            self.stats.fsyncs += 1;
        }
        self.mirror.persist(hard_state, entries)
    }

    fn load(&self) -> (HardState, Vec<Entry>) {
        self.mirror.load()
    }
}

#[cfg(test)]
mod tests;
