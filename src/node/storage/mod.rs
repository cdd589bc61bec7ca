//! Where a node's Raft log and hard state live. The driver persists each
//! `Ready`'s hard state and entries here before sending the messages that
//! promise them (votes, append acks) and before the core counts the leader's
//! own entries toward a majority (`advance` runs after `persist`).
//!
//! Two stores sit behind the one trait: `Volatile` (the assignment's
//! behaviour, `--in-memory`: the core's log is the only copy) and `DiskStore`, a write-ahead log of checksummed
//! records (it keeps no copy of the log either: the entries are in the core
//! and on disk) in append-only segment files under the node's data directory,
//! with the state machine's snapshot beside it (`snapshot`). Both reach the
//! disk through the `fs::FileSystem` trait: `RealFs`, or the simulation's
//! crashable `SimFs`.

pub mod backup;
pub mod fs;
pub mod mem;
pub mod meta;
pub mod snapshot;
pub mod volatile;
pub mod wal;

pub use fs::{CrashMode, FileSystem, RealFs, SimFs};
pub use mem::MemStore;
pub use meta::{ClusterMeta, MetaError};
pub use snapshot::{PreparedSnapshot, SnapshotPreparer};
pub use volatile::Volatile;
pub use wal::{DiskOptions, DiskStore, FsyncPolicy, Recovery, WalError, WalStats};

use crate::node::raft::{Entry, HardState, Snapshot};

/// What a store holds when it is opened: what a restarting node hands to the
/// core. A store gives it out once, at open (`DiskStore::open` in
/// `Recovery::loaded`; `Volatile` starts empty), and keeps no copy: from then
/// on the core holds the log and the store only writes it.
/// Invariant: `entries` start at `snapshot.index + 1` and are contiguous
/// (`snapshot.index == 0`: no snapshot, the log starts at 1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

pub trait LogStore: Send + 'static {
    /// Writes `hard_state` (if any) and `entries`; they are durable once
    /// `sync` returns. An entry at an index already stored replaces it and
    /// everything after it. Several writes may share one `sync` (group
    /// commit).
    fn write(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()>;
    /// Makes every write so far durable (under the store's fsync policy).
    fn sync(&mut self) -> std::io::Result<()>;
    /// `write` then `sync`.
    fn persist(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()> {
        self.write(hard_state, entries)?;
        self.sync()
    }
    /// Makes `snapshot` durable and the start of the log: entries through
    /// `snapshot.index` are dropped; if the log holds (`index`, `term`) the
    /// entries after it are kept (local compaction), otherwise every entry is
    /// discarded (a snapshot installed from the leader over a log that
    /// conflicts or is too short). An older snapshot than the one held is
    /// ignored. `prepared` is the snapshot already written off the driver
    /// task by `SnapshotPreparer::prepare` (then only the cheap steps remain).
    fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        prepared: Option<PreparedSnapshot>,
    ) -> std::io::Result<()>;
    /// A `Send` handle that can write a snapshot's file (temp file + fsync)
    /// on another thread; `None` when there is nothing slow to do (memory).
    fn snapshot_preparer(&self) -> Option<SnapshotPreparer>;
}

/// A node's store, chosen at start: memory or a data directory.
pub enum AnyStore {
    Mem(Volatile),
    Disk(Box<DiskStore>),
}

impl LogStore for AnyStore {
    fn write(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()> {
        match self {
            AnyStore::Mem(s) => s.write(hard_state, entries),
            AnyStore::Disk(s) => s.write(hard_state, entries),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match self {
            AnyStore::Mem(s) => s.sync(),
            AnyStore::Disk(s) => s.sync(),
        }
    }

    fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        prepared: Option<PreparedSnapshot>,
    ) -> std::io::Result<()> {
        match self {
            AnyStore::Mem(s) => s.save_snapshot(snapshot, prepared),
            AnyStore::Disk(s) => s.save_snapshot(snapshot, prepared),
        }
    }

    fn snapshot_preparer(&self) -> Option<SnapshotPreparer> {
        match self {
            AnyStore::Mem(s) => s.snapshot_preparer(),
            AnyStore::Disk(s) => s.snapshot_preparer(),
        }
    }
}
