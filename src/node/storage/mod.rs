//! Where a node's Raft log and hard state live. The driver persists each
//! `Ready`'s hard state and entries here before sending the messages that
//! promise them (votes, append acks) and before the core counts the leader's
//! own entries toward a majority (`advance` runs after `persist`).
//!
//! Two stores sit behind the one trait: `MemStore` (the assignment's
//! behaviour, `--in-memory`) and `DiskStore`, a write-ahead log of checksummed
//! records in append-only segment files under the node's data directory.

pub mod mem;
pub mod meta;
pub mod wal;

pub use mem::MemStore;
pub use meta::{ClusterMeta, MetaError};
pub use wal::{DiskOptions, DiskStore, FsyncPolicy, Recovery, WalError, WalStats};

use crate::node::raft::{Entry, HardState};

pub trait LogStore: Send + 'static {
    /// Makes `hard_state` (if any) and `entries` durable. An entry at an index
    /// already stored replaces it and everything after it. When this returns
    /// `Ok`, everything passed is durable (under the store's fsync policy).
    fn persist(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()>;
    /// What a restarting node hands to the core.
    fn load(&self) -> (HardState, Vec<Entry>);
}

/// A node's store, chosen at start: memory or a data directory.
pub enum AnyStore {
    Mem(MemStore),
    Disk(DiskStore),
}

impl LogStore for AnyStore {
    fn persist(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()> {
        match self {
            AnyStore::Mem(s) => s.persist(hard_state, entries),
            AnyStore::Disk(s) => s.persist(hard_state, entries),
        }
    }

    fn load(&self) -> (HardState, Vec<Entry>) {
        match self {
            AnyStore::Mem(s) => s.load(),
            AnyStore::Disk(s) => s.load(),
        }
    }
}
