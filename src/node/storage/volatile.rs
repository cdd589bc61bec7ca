//! `Volatile`: the store of a node run `--in-memory` (the assignment's
//! behaviour). The Raft core already holds the log, the hard state and the
//! snapshot in memory, and they survive `crash()` there; nothing survives the
//! process. So this store keeps no second copy: every write succeeds at once
//! and a start finds nothing (`Stored::default()`).

use super::{LogStore, PreparedSnapshot, SnapshotPreparer};
use crate::node::raft::{Entry, HardState, Snapshot};

#[derive(Clone, Copy, Debug, Default)]
pub struct Volatile;

impl LogStore for Volatile {
    fn write(&mut self, _: Option<HardState>, _: &[Entry]) -> std::io::Result<()> {
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn save_snapshot(&mut self, _: &Snapshot, _: Option<PreparedSnapshot>) -> std::io::Result<()> {
        Ok(())
    }

    fn snapshot_preparer(&self) -> Option<SnapshotPreparer> {
        None
    }
}
