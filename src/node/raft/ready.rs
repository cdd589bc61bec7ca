//! Handing output to the driver: `has_ready`, `ready`, `advance` (a
//! synchronous driver) or `on_persisted` (an asynchronous one).
//!
//! Contract (see `types::Ready`): the driver persists `snapshot` (and loads
//! it into the state machine), `hard_state` and `entries`, then sends `messages`, then applies `committed_entries` and
//! serves `read_states`, then calls `advance`. Because every vote and every
//! append ack is created after the state it promises and is only ever handed
//! out in a `Ready` that also carries (or follows) that state, nothing is
//! promised before it is durable. Each committed entry is handed out exactly
//! once, in order; it counts as applied from then on.

use super::raft::Raft;
use super::types::{Ready, Role};

impl Raft {
    pub fn has_ready(&self) -> bool {
        (self.broadcast_pending && self.role == Role::Leader)
            || self.pending_snapshot.is_some()
            || !self.msgs.is_empty()
            || !self.read_states.is_empty()
            || self.log.has_unstable()
            || self.log.has_committed_to_apply()
            || self.hard_state() != self.prev_hard
            || self.soft_state() != self.prev_soft
    }

    pub fn ready(&mut self) -> Ready {
        self.flush_broadcast();
        let soft = self.soft_state();
        let hard = self.hard_state();
        self.ready_number += 1;
        let number = self.ready_number;
        let entries = if self.log.has_unstable() {
            self.log.take_unstable()
        } else {
            Vec::new()
        };
        if let Some(last) = entries.last() {
            self.unpersisted.push_back((number, last.index, last.term));
        }
        let snapshot = self.pending_snapshot.take();
        let must_sync = snapshot.is_some()
            || !entries.is_empty()
            || hard.term != self.prev_hard.term
            || hard.vote != self.prev_hard.vote;
        let ready = Ready {
            number,
            snapshot,
            soft_state: (soft != self.prev_soft).then_some(soft),
            hard_state: (hard != self.prev_hard).then_some(hard),
            entries,
            must_sync,
            committed_entries: self.log.take_committed(),
            messages: std::mem::take(&mut self.msgs),
            read_states: std::mem::take(&mut self.read_states),
        };
        self.prev_soft = soft;
        self.prev_hard = hard;
        ready
    }

    /// A synchronous driver has done everything `ready` asked: its writes
    /// are durable, which may let a leader commit (and so produce a new
    /// `Ready`).
    pub fn advance(&mut self, ready: Ready) {
        self.on_persisted(ready.number);
    }

    /// The writes of every `Ready` through `number` are durable. Entries
    /// since overwritten (a follower's conflicting suffix) do not count.
    pub fn on_persisted(&mut self, number: u64) {
        let mut last = None;
        while let Some(&(n, index, term)) = self.unpersisted.front() {
            if n > number {
                break;
            }
            self.unpersisted.pop_front();
            last = Some((index, term));
        }
        if let Some((index, term)) = last {
            self.log.persisted_to(index, term);
        }
        if self.role == Role::Leader && self.maybe_commit() {
            self.on_commit_advanced();
        }
    }

    /// The number of the last `Ready` handed out.
    pub fn last_ready(&self) -> u64 {
        self.ready_number
    }
}
