//! `Progress`: what the leader knows and has in flight for one follower.
//!
//! Three states, as in etcd: `Probe` (one AppendEntries at a time, searching
//! for the point where the logs agree; entered on becoming leader, after a
//! rejection, after `report_unreachable`, and when an ack is overdue, see
//! `is_stalled`), `Replicate` (the logs agree through `match_index`; up to
//! `max_inflight` batches are pipelined) and `Snapshot` (the entries the
//! follower needs are compacted: an InstallSnapshot is on its way and nothing
//! else is sent until it is acknowledged, reported unreachable or overdue). Only the leader's own bookkeeping
//! lives here: safety never depends on it, since the follower checks every
//! message. Stale, duplicate and reordered responses may arrive in any order;
//! every update below is written to be harmless for them.
//!
//! Invariants: `match_index < next_index`; `inflight` holds increasing last
//! indexes of unacknowledged batches, all `> match_index`.

use std::collections::VecDeque;

use super::types::LogIndex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to match the leader's log. Never decreases.
    pub match_index: LogIndex,
    /// Next index to send. `match_index < next_index`.
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// Probe: a probe is outstanding; wait for its answer or the next heartbeat.
    pub probe_sent: bool,
    /// Snapshot: the index of the snapshot being sent.
    pub pending_snapshot: LogIndex,
    /// Snapshot: the follower refused it (`snapshot_failure`); it is sent
    /// again after the short stall timeout instead of the snapshot one.
    pub snapshot_refused: bool,
    /// Replicate: last index of each unacknowledged batch, increasing.
    pub inflight: VecDeque<LogIndex>,
    /// Replicate: the leader tick since which an ack has been owed (the last
    /// progress, or the send that started the current pipeline).
    pub waiting_since: u64,
    /// The highest commit the follower could have learned from what we sent
    /// (min of the carried commit and the last index the message verified).
    pub commit_sent: LogIndex,
    /// Heard from (an answer, or the news that it is `crash()`ed) since the
    /// leader's last check-quorum round; a new leader starts out trusting.
    pub recent_active: bool,
}

impl Progress {
    /// A fresh leader knows nothing: probe from just past its own last index.
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            snapshot_refused: false,
            inflight: VecDeque::new(),
            waiting_since: 0,
            commit_sent: 0,
            recent_active: true,
        }
    }

    /// A snapshot at `index` was sent at leader tick `now`.
    pub fn become_snapshot(&mut self, index: LogIndex, now: u64) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = index;
        self.snapshot_refused = false;
        self.probe_sent = false;
        self.inflight.clear();
        self.waiting_since = now;
    }

    /// The follower refused the snapshot at leader tick `now`: stay paused
    /// (heartbeats only), and let `is_stalled` send it again after the short
    /// timeout (a pause, not a resend at every heartbeat).
    pub fn snapshot_failure(&mut self, now: u64) {
        if self.state == ProgressState::Snapshot {
            self.snapshot_refused = true;
            self.waiting_since = now;
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// May another batch of entries be sent now?
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot => true,
        }
    }

    /// A batch ending at `last` was sent at leader tick `now`.
    pub fn sent_entries(&mut self, last: LogIndex, now: u64) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => unreachable!("a paused progress sends no entries"),
            ProgressState::Replicate => {
                debug_assert!(last >= self.next_index);
                if self.inflight.is_empty() {
                    self.waiting_since = now;
                }
                self.next_index = last + 1;
                self.inflight.push_back(last);
            }
        }
    }

    /// A success response (at leader tick `now`) says the follower matches
    /// through `index`. Returns whether `match_index` advanced. A follower
    /// that now holds the pending snapshot goes back to probing (from just
    /// past it).
    pub fn maybe_update(&mut self, index: LogIndex, now: u64) -> bool {
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index + 1);
        self.waiting_since = now;
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        if self.state == ProgressState::Snapshot && index >= self.pending_snapshot {
            self.become_probe();
        }
        true
    }

    /// Replicate: batches are in flight and no ack has come for `timeout`
    /// ticks, so one was probably lost (the network does not say). The caller
    /// falls back to probing from `match_index + 1`.
    /// A snapshot is overdue after `snapshot_timeout` ticks, or `timeout`
    /// ticks after the follower refused it.
    pub fn is_stalled(&self, now: u64, timeout: u64, snapshot_timeout: u64) -> bool {
        let waited = now.saturating_sub(self.waiting_since);
        match self.state {
            ProgressState::Replicate => !self.inflight.is_empty() && waited >= timeout,
            ProgressState::Snapshot if self.snapshot_refused => waited >= timeout,
            ProgressState::Snapshot => waited >= snapshot_timeout,
            ProgressState::Probe => false,
        }
    }

    /// A rejection of the AppendEntries whose `prev_index` was `rejected`;
    /// `hint` is where the conflict hint says to resume. Returns whether the
    /// rejection was current (then the caller sends a new probe).
    pub fn maybe_decrease(&mut self, rejected: LogIndex, hint: LogIndex) -> bool {
        match self.state {
            // Rejections of the heartbeats sent meanwhile say nothing new.
            ProgressState::Snapshot => return false,
            ProgressState::Replicate => {
                if rejected <= self.match_index {
                    return false; // stale: answers something older than what is acked
                }
                self.become_probe();
            }
            ProgressState::Probe => {
                if rejected + 1 != self.next_index {
                    return false; // stale: not the outstanding probe
                }
            }
        }
        self.next_index = hint.min(rejected).max(self.match_index + 1);
        self.probe_sent = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut pr = Progress::new(5);
        assert!(!pr.is_paused(4));
        pr.sent_entries(7, 0);
        assert!(pr.is_paused(4));
        assert_eq!(
            pr.next_index, 5,
            "probe does not advance next optimistically"
        );
    }

    #[test]
    fn replicate_pipelines_up_to_the_cap() {
        let mut pr = Progress::new(1);
        pr.become_replicate();
        pr.sent_entries(2, 10);
        pr.sent_entries(4, 11);
        assert!(pr.is_paused(2));
        assert_eq!(pr.next_index, 5);
        assert!(
            pr.is_stalled(15, 5, 50),
            "no ack for 5 ticks since the pipeline started"
        );
        assert!(pr.maybe_update(2, 14));
        assert!(!pr.is_paused(2));
        assert!(!pr.is_stalled(15, 5, 50));
        assert!(!pr.maybe_update(2, 15), "duplicate ack changes nothing");
        assert!(!pr.maybe_update(1, 15), "stale ack changes nothing");
        assert_eq!(pr.match_index, 2);
        assert!(pr.is_stalled(19, 5, 50));
        assert!(pr.maybe_update(4, 20));
        assert!(pr.inflight.is_empty());
        assert!(!pr.is_stalled(99, 5, 50), "nothing owed");
    }

    #[test]
    fn rejections_in_replicate_fall_back_to_probe_unless_stale() {
        let mut pr = Progress::new(1);
        pr.become_replicate();
        pr.maybe_update(5, 0);
        pr.sent_entries(8, 0);
        assert!(!pr.maybe_decrease(3, 1), "rejection below match is stale");
        assert_eq!(pr.state, ProgressState::Replicate);
        assert!(pr.maybe_decrease(6, 2));
        assert_eq!(pr.state, ProgressState::Probe);
        assert_eq!(pr.next_index, 6, "never below match + 1");
    }

    #[test]
    fn snapshot_pauses_until_acked_then_probes_past_it() {
        let mut pr = Progress::new(3);
        pr.become_snapshot(40, 7);
        assert!(pr.is_paused(4));
        assert!(!pr.maybe_decrease(2, 1), "heartbeat rejections are ignored");
        assert_eq!(pr.state, ProgressState::Snapshot);
        assert!(!pr.is_stalled(56, 5, 50));
        assert!(
            pr.is_stalled(57, 5, 50),
            "overdue after the snapshot timeout"
        );
        assert!(pr.maybe_update(10, 8), "an older ack still counts");
        assert_eq!(pr.state, ProgressState::Snapshot);
        assert!(pr.maybe_update(40, 9));
        assert_eq!(pr.state, ProgressState::Probe);
        assert_eq!(pr.next_index, 41);
        assert!(!pr.is_paused(4));
    }

    #[test]
    fn a_refused_snapshot_is_retried_after_the_short_timeout() {
        let mut pr = Progress::new(10);
        pr.become_snapshot(20, 100);
        assert!(!pr.is_stalled(110, 5, 50));
        pr.snapshot_failure(110);
        assert!(pr.is_paused(4), "a refused snapshot sends no entries");
        assert!(!pr.is_stalled(114, 5, 50));
        assert!(pr.is_stalled(115, 5, 50));
        // Sending the snapshot again forgets the refusal.
        pr.become_snapshot(20, 115);
        assert!(!pr.is_stalled(125, 5, 50));
        // A refusal outside snapshot state (a stale report) changes nothing.
        let mut probe = Progress::new(10);
        probe.snapshot_failure(1);
        assert_eq!(probe.state, ProgressState::Probe);
        assert!(!probe.snapshot_refused);
    }

    #[test]
    fn probe_only_accepts_the_answer_to_the_outstanding_probe() {
        let mut pr = Progress::new(10);
        pr.sent_entries(10, 0);
        assert!(!pr.maybe_decrease(5, 3));
        assert!(pr.maybe_decrease(9, 4));
        assert_eq!(pr.next_index, 4);
        assert!(!pr.is_paused(1));
        assert!(!pr.maybe_decrease(9, 4), "duplicate rejection is stale now");
        assert!(pr.maybe_decrease(3, 30));
        assert_eq!(
            pr.next_index, 3,
            "a hint never moves past the rejected index"
        );
    }
}
