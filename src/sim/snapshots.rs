//! Snapshots in the simulation are the runtime's own (the encoded metadata
//! map, taken every `Plan::snapshot_every` applied entries, and installed
//! from the leader). Every snapshot a node stores, taken or installed, is
//! checked here against the reference: the map made by applying, in order,
//! the entries the cluster applied through the snapshot's index.

use std::collections::HashMap;

use bytes::Bytes;

use super::checker::{violation, Violation};
use super::world::World;
use crate::node::command::Command;
use crate::node::metadata::Metadata;
use crate::node::raft::{LogIndex, NodeId, Snapshot, Term};

/// The map the entries `1..=entries.len()` make, applied in order.
pub fn replay(entries: &[(Term, Bytes)]) -> Metadata {
    let mut m = Metadata::new();
    for (k, (_, data)) in entries.iter().enumerate() {
        let index = k as LogIndex + 1;
        match Command::decode(data) {
            Ok(cmd) if !data.is_empty() => {
                m.apply(index, &cmd);
            }
            _ => m.mark_applied(index),
        }
    }
    m
}

/// Reference snapshot bytes by index, computed once each.
#[derive(Default)]
pub struct References {
    by_index: HashMap<LogIndex, Bytes>,
}

impl World {
    /// Node `n` stores `snap`: its map must decode and be the reference map
    /// at its index, and its term the term the cluster applied there.
    pub(super) fn check_snapshot(&mut self, n: NodeId, snap: &Snapshot) -> Result<(), Violation> {
        if let Err(e) = Metadata::from_snapshot(snap.index, &snap.data) {
            return violation(
                "snapshot data",
                format!("node {n}: snapshot {}: {e}", snap.index),
            );
        }
        let Some(prefix) = self.checker.applied_through(snap.index) else {
            return violation(
                "snapshots hold applied entries",
                format!(
                    "node {n} stores a snapshot through {}, past what any node applied",
                    snap.index
                ),
            );
        };
        if prefix.last().map(|(t, _)| *t) != Some(snap.term) {
            return violation(
                "state machine safety",
                format!(
                    "node {n}'s snapshot at {} has another term than the entry applied there",
                    snap.index
                ),
            );
        }
        let want = self
            .references
            .by_index
            .entry(snap.index)
            .or_insert_with(|| replay(prefix).encode_snapshot());
        if *want != snap.data {
            return violation(
                "state machine safety",
                format!(
                    "node {n}'s snapshot at {} is not the map the applied entries make",
                    snap.index
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_applies_commands_and_skips_no_ops() {
        let cmd = |v: i64| Command::UpdateFile {
            filename: "a".into(),
            version: v,
            hashlist: Vec::new(),
        };
        let entries = vec![
            (1, Bytes::new()),
            (1, cmd(1).encode()),
            (2, cmd(3).encode()),
            (2, cmd(2).encode()),
        ];
        let m = replay(&entries);
        assert_eq!(m.applied_index(), 4);
        assert_eq!(m.version("a"), 2);
    }
}
