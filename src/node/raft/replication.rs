//! The leader's side of log replication: building AppendEntries (batched up to
//! the caps, pipelined in replicate state, one probe at a time otherwise),
//! heartbeats, handling responses with fast back-off, advancing the commit
//! index (Figure 8: only by counting replicas of a current-term entry, the
//! leader counting itself only for durable entries), telling followers about a
//! new commit at once, and releasing ReadIndex reads.
//!
//! Liveness without loss reports: a lost batch is noticed when the next one is
//! rejected (a gap), and a lost tail by the heartbeat: a follower that has owed
//! an ack for `election_ticks_min` ticks (longer than any round trip Raft can
//! live with) is re-probed from `match_index + 1`. A lost probe is resent on
//! every heartbeat.
//!
//! A follower that needs entries the leader has compacted gets the leader's
//! snapshot instead (`send_snapshot`); its progress pauses until the snapshot
//! is acknowledged, reported unreachable, or overdue (`snapshot_stall_ticks`).

use super::progress::ProgressState;
use super::raft::Raft;
use super::types::{LogIndex, Message, MessageBody, NodeId, Role};

impl Raft {
    /// Send one batch of entries to `to` if its progress allows and there is
    /// something to send. Returns whether a message went out.
    pub(super) fn send_append(&mut self, to: NodeId) -> bool {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if pr.is_paused(self.cfg.max_inflight) || pr.next_index > last {
            return false;
        }
        let prev_index = pr.next_index - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            // Compacted: only the snapshot can bring this follower forward.
            self.send_snapshot(to);
            return true;
        };
        let entries = self.log.slice(
            pr.next_index,
            self.cfg.max_entries_per_message,
            self.cfg.max_bytes_per_message,
        );
        let last_sent = entries
            .last()
            .expect("slice is non-empty below last_index")
            .index;
        let commit = self.log.commit();
        let pr = self.progress.get_mut(&to).expect("checked above");
        pr.sent_entries(last_sent, self.now);
        pr.commit_sent = pr.commit_sent.max(commit.min(last_sent));
        let read_seq = self.read_only.seq();
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries,
                commit,
                read_seq,
            },
        );
        true
    }

    /// Send our snapshot to `to` and pause its progress until it is acked.
    pub(super) fn send_snapshot(&mut self, to: NodeId) {
        assert!(
            self.snapshot.index > 0 && self.snapshot.index == self.log.snapshot_index(),
            "invariant: a compacted log has its snapshot at hand"
        );
        let pr = self.progress.get_mut(&to).expect("checked by the caller");
        pr.become_snapshot(self.snapshot.index, self.now);
        let snapshot = self.snapshot.clone();
        self.send(to, MessageBody::InstallSnapshot { snapshot });
    }

    /// Send batches to `to` until its progress pauses or it is caught up.
    pub(super) fn send_append_all(&mut self, to: NodeId) -> usize {
        let mut n = 0;
        while self.send_append(to) {
            n += 1;
        }
        n
    }

    /// An AppendEntries without entries: heartbeat, commit notice, ReadIndex
    /// round. Anchored at `match_index` in replicate state (so it cannot be
    /// rejected while batches are in flight), at the probe point in probe
    /// state, and at the snapshot's index while a snapshot is on its way (it
    /// keeps the follower from campaigning; a rejection is ignored). An
    /// anchor that is compacted means the follower needs the snapshot.
    pub(super) fn send_empty(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get(&to) else {
            return;
        };
        let prev_index = match pr.state {
            ProgressState::Replicate => pr.match_index,
            ProgressState::Probe => pr.next_index - 1,
            ProgressState::Snapshot => self.log.snapshot_index(),
        };
        let Some(prev_term) = self.log.term(prev_index) else {
            self.send_snapshot(to);
            return;
        };
        let commit = self.log.commit();
        let pr = self.progress.get_mut(&to).expect("checked above");
        pr.commit_sent = pr.commit_sent.max(commit.min(prev_index));
        let read_seq = self.read_only.seq();
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries: Vec::new(),
                commit,
                read_seq,
            },
        );
    }

    /// Every `heartbeat_ticks`: one AppendEntries to every follower.
    pub(super) fn heartbeat(&mut self) {
        let stall_ticks = u64::from(self.cfg.election_ticks_min);
        let snapshot_stall_ticks = self.snapshot_stall_ticks();
        for peer in self.peers.clone() {
            let pr = self
                .progress
                .get_mut(&peer)
                .expect("invariant: a leader tracks every peer");
            if pr.is_stalled(self.now, stall_ticks, snapshot_stall_ticks) {
                // Something was lost on the way: resend from match_index + 1.
                pr.become_probe();
            }
            if pr.state == ProgressState::Probe {
                pr.probe_sent = false;
                if self.send_append(peer) {
                    continue;
                }
            }
            self.send_empty(peer);
        }
    }

    /// A response to one of our AppendEntries, in our term.
    pub(super) fn handle_append_response(&mut self, msg: &Message) {
        let MessageBody::AppendEntriesResponse {
            success,
            match_index,
            conflict_index,
            conflict_term,
            read_seq,
        } = msg.body
        else {
            unreachable!("dispatched on the body")
        };
        if self.role != Role::Leader {
            return;
        }
        let from = msg.from;
        self.read_only.ack(from, read_seq);
        let last = self.log.last_index();
        let pr = self
            .progress
            .get_mut(&from)
            .expect("invariant: a leader tracks every peer");
        if success {
            let updated = pr.maybe_update(match_index, self.now);
            if pr.state == ProgressState::Probe && (updated || match_index == pr.match_index) {
                pr.become_replicate();
            }
            if updated && self.maybe_commit() {
                self.on_commit_advanced();
            }
            if self.maybe_send_timeout_now(from) {
                self.release_reads();
                return;
            }
            self.send_append_all(from);
            let pr = &self.progress[&from];
            if self.log.commit().min(pr.match_index) > pr.commit_sent {
                self.send_empty(from);
            }
        } else {
            // On a rejection `match_index` carries the rejected `prev_index`
            // (etcd's reject index), which tells a current rejection from a
            // stale one. Fast back-off: skip the follower's whole conflicting
            // term, or to its end when its log is short.
            let hint = if conflict_term == 0 {
                conflict_index
            } else {
                self.log
                    .last_index_of_term(conflict_term)
                    .map_or(conflict_index, |i| i + 1)
            };
            let hint = hint.clamp(1, last + 1);
            let pr = self.progress.get_mut(&from).expect("checked above");
            if pr.maybe_decrease(match_index, hint) {
                self.send_append_all(from);
            }
        }
        self.release_reads();
    }

    /// How long a snapshot may go unacknowledged before it is sent again: ten
    /// election timeouts (a large map takes many chunks to transfer).
    pub(super) fn snapshot_stall_ticks(&self) -> u64 {
        10 * u64::from(self.cfg.election_ticks_max)
    }

    /// Raise the commit index to the highest current-term index a quorum
    /// (counting our own durable entries) holds. Returns whether it moved.
    pub(super) fn maybe_commit(&mut self) -> bool {
        debug_assert_eq!(self.role, Role::Leader);
        let mut matches: Vec<LogIndex> = self.progress.values().map(|p| p.match_index).collect();
        matches.push(self.log.persisted());
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[self.quorum() - 1];
        candidate > self.log.commit()
            && self.log.term(candidate) == Some(self.term)
            && self.log.commit_to(candidate)
    }

    /// The commit index moved: tell every follower with the next `Ready`,
    /// not at the next heartbeat, and serve reads that were waiting for it.
    pub(super) fn on_commit_advanced(&mut self) {
        if self.committed_own_term() {
            self.read_only.fill_index(self.log.commit());
        }
        self.broadcast_pending = true;
        self.release_reads();
    }

    /// Sends what proposals and commit advances since the last `Ready` left
    /// for the followers: new entries as far as each one's progress allows,
    /// else a commit notice to a follower that does not know the commit of
    /// entries it holds. Done once per `Ready`, so a burst of proposals or
    /// acks costs one message per follower, not one per event.
    pub(super) fn flush_broadcast(&mut self) {
        if !std::mem::take(&mut self.broadcast_pending) || self.role != Role::Leader {
            return;
        }
        let commit = self.log.commit();
        for peer in self.peers.clone() {
            if self.send_append_all(peer) == 0 {
                let pr = &self.progress[&peer];
                if commit.min(pr.match_index) > pr.commit_sent {
                    self.send_empty(peer);
                }
            }
        }
    }

    pub(super) fn release_reads(&mut self) {
        if self.role == Role::Leader {
            let quorum = if self.bugs.read_without_quorum {
                1
            } else {
                self.quorum()
            };
            let released = self.read_only.release(quorum);
            self.read_states.extend(released);
        }
    }
}
