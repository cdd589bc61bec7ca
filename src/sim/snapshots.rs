//! Snapshots in the simulation: the simulated state machine (the list of
//! applied entries) encoded as snapshot data, local compaction when a node has
//! applied `Plan::snapshot_every` entries past its snapshot, the store's
//! snapshot rule (the one `LogStore::save_snapshot` documents) and loading a
//! snapshot into a node's state machine (after an install or a reboot), which
//! is checked entry by entry against what the cluster committed.

use bytes::{BufMut, Bytes, BytesMut};

use super::checker::{violation, Violation};
use super::world::{SimNode, World};
use crate::node::raft::{Entry, LogIndex, NodeId, Snapshot};

/// The state machine through `entries.last()`: `[term u64][len u32][data]` per entry.
pub fn encode_state(entries: &[Entry]) -> Bytes {
    let mut out = BytesMut::new();
    for e in entries {
        out.put_u64_le(e.term);
        out.put_u32_le(e.data.len() as u32);
        out.put_slice(&e.data);
    }
    out.freeze()
}

/// The entries `1..=index` a snapshot's data holds.
pub fn decode_state(index: LogIndex, data: &Bytes) -> Result<Vec<Entry>, String> {
    let mut out = Vec::with_capacity(index as usize);
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(head) = data.get(pos..pos + 12) else {
            return Err(format!("truncated header at byte {pos}"));
        };
        let term = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        let Some(_) = data.get(pos + 12..pos + 12 + len) else {
            return Err(format!("truncated entry at byte {pos}"));
        };
        out.push(Entry {
            term,
            index: out.len() as LogIndex + 1,
            data: data.slice(pos + 12..pos + 12 + len),
        });
        pos += 12 + len;
    }
    if out.len() as LogIndex != index {
        return Err(format!("holds {} entries for index {index}", out.len()));
    }
    Ok(out)
}

/// The store's rule: drop the log through the snapshot, keeping what follows
/// if the log holds (index, term), else everything. Older snapshots: ignored.
pub fn store_snapshot(node: &mut SimNode, snap: &Snapshot) {
    if snap.index <= node.snapshot.index {
        return;
    }
    let pos = (snap.index - node.snapshot.index) as usize;
    let holds = node.log.get(pos - 1).is_some_and(|e| e.term == snap.term);
    if holds {
        node.log.drain(..pos);
    } else {
        node.log.clear();
    }
    node.snapshot = snap.clone();
}

impl World {
    /// Node `n` has applied far enough past its snapshot: snapshot its state
    /// machine, persist it and compact the core's log.
    pub(super) fn maybe_compact(&mut self, n: NodeId) -> Result<(), Violation> {
        let every = self.plan.snapshot_every;
        let node = &mut self.nodes[n as usize];
        let at = node.apply_cursor;
        if every == 0 || node.unadvanced.is_some() || at < node.snapshot.index + every {
            return Ok(());
        }
        // Let the checker see this node's commits before their entries go.
        let rafts: Vec<&crate::node::raft::Raft> = self.nodes.iter().map(|n| &n.raft).collect();
        self.checker.after_step(&rafts)?;
        let node = &mut self.nodes[n as usize];
        let Some(term) = node.raft.term_at(at) else {
            return violation(
                "applied entries are held",
                format!("node {n} applied {at} but knows no term for it"),
            );
        };
        let snap = Snapshot {
            index: at,
            term,
            data: encode_state(&node.applied[..at as usize]),
        };
        let batch = super::disk::Pending {
            snapshot: Some(snap.clone()),
            ..Default::default()
        };
        if !self.disk_write(n, batch)? {
            return Ok(()); // the node rebooted from its disk instead
        }
        let node = &mut self.nodes[n as usize];
        store_snapshot(node, &snap);
        if let Err(e) = node.raft.compact(snap) {
            return violation("compaction", format!("node {n} at {at}: {e}"));
        }
        self.counters.compactions += 1;
        self.log(|| format!("n{n} compacts through {at} (t{term})"));
        Ok(())
    }

    /// Node `n`'s state machine becomes `snap`'s: every entry in it must be
    /// what the cluster committed there, and agree with what `n` applied.
    pub(super) fn load_snapshot(&mut self, n: NodeId, snap: &Snapshot) -> Result<(), Violation> {
        let entries = match decode_state(snap.index, &snap.data) {
            Ok(e) => e,
            Err(e) => return violation("snapshot data", format!("node {n}: {e}")),
        };
        if entries.last().map(|e| e.term) != Some(snap.term) {
            return violation(
                "snapshot data",
                format!("node {n}: snapshot {} ends in another term", snap.index),
            );
        }
        self.checker.snapshot_loaded(n, &entries)?;
        let node = &mut self.nodes[n as usize];
        for e in entries {
            match node.applied.get(e.index as usize - 1) {
                Some(old) if *old != e => {
                    return violation(
                        "state machine safety",
                        format!("node {n}'s snapshot has another entry at {}", e.index),
                    )
                }
                Some(_) => {}
                None => node.applied.push(e),
            }
        }
        node.apply_cursor = snap.index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let entries: Vec<Entry> = (1..=5)
            .map(|i| Entry {
                term: i / 2 + 1,
                index: i,
                data: Bytes::from(format!("p{i}").repeat(i as usize)),
            })
            .collect();
        let data = encode_state(&entries);
        assert_eq!(decode_state(5, &data).unwrap(), entries);
        assert!(decode_state(4, &data).is_err());
        assert!(decode_state(5, &data.slice(..data.len() - 1)).is_err());
        assert_eq!(decode_state(0, &Bytes::new()).unwrap(), vec![]);
    }
}
