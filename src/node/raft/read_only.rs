//! ReadIndex (Raft thesis 6.4): linearizable reads without writing the log.
//!
//! A read gets the next round number (`seq`); every AppendEntries the leader
//! sends carries the latest round number and every response echoes it, so a
//! response with `read_seq >= seq` proves the follower still accepted this
//! leader's term after the read arrived. A read is released (becomes a
//! `ReadState`) once a quorum, counting the leader, has acknowledged its round
//! AND its index is known: the commit index at request time if the leader had
//! already committed an entry of its own term, otherwise the commit index at the
//! moment it first does. Reads are released in request order. Everything here
//! is dropped when the node stops being leader.

use std::collections::{BTreeMap, VecDeque};

use super::types::{LogIndex, NodeId, ReadState};

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    seq: u64,
    /// `None` until the leader has committed an entry of its term.
    index: Option<LogIndex>,
}

#[derive(Debug, Default)]
pub struct ReadOnly {
    /// Last round number issued. Never decreases, across terms too.
    seq: u64,
    /// Highest round each peer has acknowledged in the current term.
    acked: BTreeMap<NodeId, u64>,
    pending: VecDeque<PendingRead>,
}

impl ReadOnly {
    /// The round number to put in an outgoing AppendEntries.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Forget acks and pending reads (new leadership, or leadership lost).
    pub fn reset(&mut self) {
        self.acked.clear();
        self.pending.clear();
    }

    /// Queue a read; returns its round number.
    pub fn request(&mut self, ctx: u64, index: Option<LogIndex>) -> u64 {
        self.seq += 1;
        self.pending.push_back(PendingRead {
            ctx,
            seq: self.seq,
            index,
        });
        self.seq
    }

    /// A response from `peer` in the current term echoed `seq`.
    pub fn ack(&mut self, peer: NodeId, seq: u64) {
        let a = self.acked.entry(peer).or_insert(0);
        *a = (*a).max(seq);
    }

    /// The leader has committed an entry of its own term: reads waiting for
    /// that get today's commit index.
    pub fn fill_index(&mut self, commit: LogIndex) {
        for r in self.pending.iter_mut().filter(|r| r.index.is_none()) {
            r.index = Some(commit);
        }
    }

    /// Pop the reads that are safe now, oldest first. `quorum` counts the leader.
    pub fn release(&mut self, quorum: usize) -> Vec<ReadState> {
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            let Some(index) = front.index else { break };
            let acks = 1 + self.acked.values().filter(|&&s| s >= front.seq).count();
            if acks < quorum {
                break;
            }
            out.push(ReadState {
                ctx: front.ctx,
                index,
            });
            self.pending.pop_front();
        }
        out
    }

    /// Reads waiting for their round or for the leader's first commit.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_quorum_acks_of_a_later_round() {
        let mut ro = ReadOnly::default();
        ro.ack(1, 0);
        let seq = ro.request(7, Some(3));
        assert_eq!(seq, 1);
        assert!(
            ro.release(2).is_empty(),
            "ack of an older round does not count"
        );
        ro.ack(1, 1);
        assert_eq!(ro.release(2), vec![ReadState { ctx: 7, index: 3 }]);
        assert_eq!(ro.pending_len(), 0);
    }

    #[test]
    fn waits_for_own_term_commit_and_keeps_order() {
        let mut ro = ReadOnly::default();
        ro.request(1, None);
        ro.request(2, None);
        ro.ack(1, 2);
        ro.ack(2, 2);
        assert!(ro.release(3).is_empty());
        ro.fill_index(9);
        ro.request(3, Some(10));
        let out = ro.release(3);
        assert_eq!(
            out,
            vec![
                ReadState { ctx: 1, index: 9 },
                ReadState { ctx: 2, index: 9 }
            ]
        );
        ro.ack(2, 3);
        assert_eq!(ro.release(2), vec![ReadState { ctx: 3, index: 10 }]);
    }

    #[test]
    fn single_node_needs_no_acks() {
        let mut ro = ReadOnly::default();
        ro.request(5, Some(1));
        assert_eq!(ro.release(1).len(), 1);
    }
}
