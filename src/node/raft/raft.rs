//! `Raft`: one node's core. Owns the role (follower / candidate / leader), the
//! persistent state (term, vote, log) and everything volatile around it, and
//! the public API the driver calls. Deterministic: no clock, I/O or threads;
//! its only randomness comes from an RNG seeded by `RaftConfig::seed`.
//!
//! The work is split by job: `step.rs` receives messages, `replication.rs` is
//! the leader's side of log replication, commit and ReadIndex, `ready.rs`
//! hands output to the driver. This file holds the state and the role changes.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::bugs::SeededBugs;
use super::config::RaftConfig;
use super::election::{ElectionTimer, VoteResult, VoteTracker};
use super::error::RaftError;
use super::log::RaftLog;
use super::progress::Progress;
use super::read_only::ReadOnly;
use super::types::{
    Entry, HardState, LogIndex, Message, MessageBody, NodeId, PeerProgress, ReadState, Role,
    Snapshot, SoftState, Status, Term,
};

pub struct Raft {
    pub(super) cfg: RaftConfig,
    /// The other members, sorted.
    pub(super) peers: Vec<NodeId>,
    pub(super) term: Term,
    /// Who we voted for in `term`.
    pub(super) vote: Option<NodeId>,
    pub(super) role: Role,
    /// The leader of `term`, once known (always `Some(id)` on the leader).
    pub(super) leader: Option<NodeId>,
    pub(super) log: RaftLog,
    /// The latest snapshot (index 0: none), kept to send to followers that
    /// need compacted entries. `snapshot.index == log.snapshot_index()`.
    pub(super) snapshot: Snapshot,
    /// A snapshot received from the leader, not yet handed out in a `Ready`.
    pub(super) pending_snapshot: Option<Snapshot>,
    pub(super) rng: SmallRng,
    pub(super) election: ElectionTimer,
    /// Ticks since this core was created: the leader's clock for overdue acks.
    pub(super) now: u64,
    /// Leader: ticks since the last heartbeat round.
    pub(super) heartbeat_elapsed: u32,
    /// Candidate: votes of the current candidacy.
    pub(super) votes: VoteTracker,
    /// Leader: one entry per peer; empty otherwise.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    pub(super) read_only: ReadOnly,
    /// Outgoing messages, handed out (and cleared) by `ready()`.
    pub(super) msgs: Vec<Message>,
    pub(super) read_states: Vec<ReadState>,
    /// What the last `Ready` reported (or what storage held at start).
    pub(super) prev_hard: HardState,
    pub(super) prev_soft: SoftState,
    /// Number of the last `Ready` handed out.
    pub(super) ready_number: u64,
    /// Readies whose entries are not known durable yet: (number, last index,
    /// last term), in order.
    pub(super) unpersisted: std::collections::VecDeque<(u64, LogIndex, Term)>,
    /// Leader: entries or a commit index the followers have not been sent
    /// yet; `ready()` sends them (see `flush_broadcast`).
    pub(super) broadcast_pending: bool,
    /// Leader: ticks since the last check-quorum round.
    pub(super) quorum_check_elapsed: u32,
    /// Set when the leader stepped down for want of a majority; read (and
    /// cleared) by `take_quorum_lost`.
    pub(super) quorum_lost: bool,
    /// Leader: the successor of a leadership transfer in progress
    /// (`transfer_leader`); proposals are refused meanwhile.
    pub(super) transferee: Option<NodeId>,
    /// Leader: ticks since the transfer started; at an election timeout
    /// (`election_ticks_max`) it is given up.
    pub(super) transfer_elapsed: u32,
    /// Leader: `TimeoutNow` went to the transferee (it is sent once, when
    /// the transferee's log first matches ours).
    pub(super) timeout_now_sent: bool,
    /// Rules to break on purpose (the simulation's self-test); `NONE` unless
    /// `inject_bugs` was called, which production never does.
    pub(super) bugs: SeededBugs,
}

impl std::fmt::Debug for Raft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raft")
            .field("id", &self.cfg.id)
            .field("role", &self.role)
            .field("term", &self.term)
            .field("vote", &self.vote)
            .field("leader", &self.leader)
            .field("last_index", &self.log.last_index())
            .field("commit", &self.log.commit())
            .finish_non_exhaustive()
    }
}

impl Raft {
    /// Restore from what storage holds (no snapshot, an empty log and a
    /// default `HardState` for a fresh node). The log starts just after the
    /// snapshot (index 1 without one). The state machine is the snapshot's:
    /// the first `Ready` hands out every committed entry after it.
    pub fn new(
        config: RaftConfig,
        hard_state: HardState,
        snapshot: Snapshot,
        log: Vec<Entry>,
    ) -> Result<Raft, RaftError> {
        config.validate()?;
        if let Some(v) = hard_state.vote {
            if !config.members.contains(&v) {
                return Err(RaftError::InvalidStorage(format!(
                    "vote for {v}, which is not a member"
                )));
            }
        }
        let stored_hard_state = hard_state;
        let log = RaftLog::restore(snapshot.index, snapshot.term, log, hard_state.commit)?;
        // A commit below the snapshot (a crash before the hard state caught
        // up with an installed snapshot) is the snapshot's index.
        let mut hard_state = HardState {
            commit: log.commit(),
            ..hard_state
        };
        // A `Ready` is persisted entries first, then its hard state, so a
        // crash mid-write can keep entries of a term whose hard state was
        // lost. Nothing promised in that term was sent (persist comes before
        // send), so the node resumes in that term without a vote.
        if log.last_term() > hard_state.term {
            hard_state.term = log.last_term();
            hard_state.vote = None;
        }
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let election = ElectionTimer::new(
            config.election_ticks_min,
            config.election_ticks_max,
            &mut rng,
        );
        let mut peers: Vec<NodeId> = config
            .members
            .iter()
            .copied()
            .filter(|&m| m != config.id)
            .collect();
        peers.sort_unstable();
        Ok(Raft {
            peers,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            snapshot,
            pending_snapshot: None,
            rng,
            election,
            now: 0,
            heartbeat_elapsed: 0,
            votes: VoteTracker::default(),
            progress: BTreeMap::new(),
            read_only: ReadOnly::default(),
            msgs: Vec::new(),
            read_states: Vec::new(),
            // What storage holds: any lifting above is persisted by the
            // first `Ready`, before anything is sent in the new term.
            prev_hard: stored_hard_state,
            prev_soft: SoftState {
                role: Role::Follower,
                leader: None,
            },
            ready_number: 0,
            unpersisted: std::collections::VecDeque::new(),
            broadcast_pending: false,
            quorum_check_elapsed: 0,
            quorum_lost: false,
            transferee: None,
            transfer_elapsed: 0,
            timeout_now_sent: false,
            bugs: SeededBugs::NONE,
            cfg: config,
        })
    }

    /// One unit of logical time: followers and candidates count toward an
    /// election, the leader toward its next heartbeat round.
    pub fn tick(&mut self) {
        self.now += 1;
        match self.role {
            Role::Leader => {
                if self.cfg.check_quorum {
                    self.quorum_check_elapsed += 1;
                    if self.quorum_check_elapsed >= self.cfg.election_ticks_max {
                        self.quorum_check_elapsed = 0;
                        if !self.check_quorum_round() {
                            return;
                        }
                    }
                }
                if self.transferee.is_some() {
                    self.transfer_elapsed += 1;
                    if self.transfer_elapsed >= self.cfg.election_ticks_max {
                        // The successor did not take over within an
                        // election timeout: lead on (thesis §3.10).
                        self.end_transfer();
                    }
                }
                self.heartbeat_elapsed += 1;
                if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                    self.heartbeat_elapsed = 0;
                    self.heartbeat();
                }
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if self.election.tick() {
                    if self.cfg.pre_vote {
                        self.pre_campaign();
                    } else {
                        self.campaign();
                    }
                }
            }
        }
    }

    /// Leader only: append `data` in the current term and start replicating it
    /// at once. Returns where it went; it is committed when an entry with this
    /// (index, term) is handed out in `committed_entries`. Refused while a
    /// leadership transfer is in progress (`TransferInProgress`: nothing was
    /// appended, so the caller may hold the proposal and retry).
    pub fn propose(&mut self, data: Bytes) -> Result<(LogIndex, Term), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.known_leader(),
            });
        }
        if let Some(to) = self.transferee {
            return Err(RaftError::TransferInProgress { to });
        }
        let index = self.log.append_new(self.term, data);
        // Sent when the next `Ready` is taken: every proposal of one turn
        // travels in one AppendEntries per follower.
        self.broadcast_pending = true;
        // A single-node cluster commits in `advance`, once the entry is durable.
        Ok((index, self.term))
    }

    /// Leader only: start a ReadIndex round for read `ctx` (see `read_only.rs`).
    /// The confirming round is sent at once.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.known_leader(),
            });
        }
        let index = self.committed_own_term().then_some(self.log.commit());
        self.read_only.request(ctx, index);
        for peer in self.peers.clone() {
            self.send_empty(peer);
        }
        self.release_reads();
        Ok(())
    }

    /// Leader only: hand leadership to `to` (Raft thesis §3.10). New
    /// proposals are refused from now on; `to` is brought up to date, and
    /// once its log matches ours it is sent `TimeoutNow`, on which it starts
    /// an election at once that the other members grant even though they
    /// still hear us. Our term ends when we see its higher one. If it has
    /// not taken over within an election timeout, the transfer is given up
    /// and we lead on. A transfer to ourselves is a no-op; a new transfer
    /// replaces one in progress. `UnknownPeer` for a non-member.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.known_leader(),
            });
        }
        if to == self.cfg.id {
            return Ok(());
        }
        if !self.progress.contains_key(&to) {
            return Err(RaftError::UnknownPeer(to));
        }
        if self.transferee == Some(to) {
            return Ok(());
        }
        self.transferee = Some(to);
        self.transfer_elapsed = 0;
        self.timeout_now_sent = false;
        if !self.maybe_send_timeout_now(to) {
            self.send_append_all(to);
        }
        Ok(())
    }

    /// The successor of a transfer in progress, if any.
    pub fn transferee(&self) -> Option<NodeId> {
        self.transferee
    }

    /// The most up-to-date peer heard from since the last check-quorum
    /// round (ties: the lowest id), the natural successor for a transfer;
    /// `None` unless leader with such a peer.
    pub fn best_successor(&self) -> Option<NodeId> {
        self.progress
            .iter()
            .filter(|(_, pr)| pr.recent_active)
            .max_by_key(|(&id, pr)| (pr.match_index, std::cmp::Reverse(id)))
            .map(|(&id, _)| id)
    }

    /// The leader as far as clients should be told: one heard from within an
    /// election timeout (or ourselves). A follower cut off from its leader
    /// for longer names none, so clients try elsewhere rather than waiting
    /// on a node that may have lost its majority.
    pub fn known_leader(&self) -> Option<NodeId> {
        match self.role {
            Role::Leader => Some(self.cfg.id),
            _ => self
                .leader
                .filter(|_| self.election.elapsed() < self.cfg.election_ticks_max),
        }
    }

    /// The driver could not deliver to `peer` or got no answer: free its
    /// in-flight slots and probe again from `match_index + 1` (the next
    /// heartbeat sends the probe). Ignored unless leader; unknown peers ignored.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if let Some(pr) = self.progress.get_mut(&peer) {
            pr.become_probe();
        }
    }

    /// The driver learned that `peer` is alive but `crash()`ed (it answered
    /// fault 1 at once): it counts as heard from for check-quorum, so a
    /// leader whose majority is crashed keeps leading (and blocking, as the
    /// assignment requires) while a leader cut off by the network steps
    /// down. The request was not handled, so its slots are freed as for
    /// `report_unreachable`.
    pub fn report_crashed(&mut self, peer: NodeId) {
        if let Some(pr) = self.progress.get_mut(&peer) {
            pr.recent_active = true;
            pr.become_probe();
        }
    }

    /// Whether this node stepped down as leader for want of a majority since
    /// the last call (for the runtime's events and logs).
    pub fn take_quorum_lost(&mut self) -> bool {
        std::mem::take(&mut self.quorum_lost)
    }

    /// `peer` refused the snapshot we sent it (it does not decode there, or
    /// breaks one of its limits): its progress stays paused, heartbeats
    /// only, and the snapshot goes again one election timeout
    /// (`election_ticks_min`) later rather than at once, so a peer that
    /// keeps refusing costs one transfer per election timeout, not a
    /// stream (raft-rs `report_snapshot(Failure)`). Ignored unless leader
    /// with a snapshot on its way to `peer`.
    pub fn report_snapshot_failure(&mut self, peer: NodeId) {
        if let Some(pr) = self.progress.get_mut(&peer) {
            pr.snapshot_failure(self.now);
        }
    }

    /// The driver has made `snapshot` (the state machine as of an applied
    /// index) durable: drop the log through its index and keep it to send to
    /// followers that fall behind the compacted log. `Err` (and no change) if
    /// the index is not applied, not past the current snapshot, or the term
    /// is not the log's at that index.
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), RaftError> {
        self.log.compact(snapshot.index, snapshot.term)?;
        self.snapshot = snapshot;
        Ok(())
    }

    /// Simulated crash: stop leading or campaigning at once (follower in the
    /// same term with the same vote, log and commit), forget the leader, drop
    /// pending reads and any output not yet handed out (a crashed node sends
    /// nothing). The driver stops ticking and stepping until `restore`.
    pub fn crash(&mut self) {
        self.become_follower(self.term, None);
        self.msgs.clear();
        self.read_states.clear();
    }

    /// Back from a crash: a follower with a fresh randomized election timer.
    pub fn restore(&mut self) {
        self.become_follower(self.term, None);
    }

    /// Test-only: break the rules `bugs` names (see `bugs.rs`).
    pub fn inject_bugs(&mut self, bugs: SeededBugs) {
        self.bugs = bugs;
        self.log.apply_past_commit = bugs.apply_uncommitted;
    }

    pub fn bugs(&self) -> SeededBugs {
        self.bugs
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            snapshot_index: self.log.snapshot_index(),
            commit_index: self.log.commit(),
            applied_index: self.log.applied(),
            progress: self
                .progress
                .iter()
                .map(|(&id, pr)| PeerProgress {
                    id,
                    match_index: pr.match_index,
                    next_index: pr.next_index,
                })
                .collect(),
            transferee: self.transferee,
        }
    }

    /// The last `n` entries of the log.
    pub fn log_tail(&self, n: usize) -> Vec<Entry> {
        self.log.tail(n)
    }

    // Cheap accessors (the status snapshot allocates).
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit()
    }
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied()
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    /// The log is compacted through here (0: never).
    pub fn snapshot_index(&self) -> LogIndex {
        self.log.snapshot_index()
    }
    /// The term of the entry at `index`, if known (held or the snapshot's).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }
    /// The entry at `index`, if the log holds one.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }
    /// Leader: ReadIndex requests not yet released as `ReadState`s.
    pub fn pending_reads(&self) -> usize {
        self.read_only.pending_len()
    }
    pub fn config(&self) -> &RaftConfig {
        &self.cfg
    }

    pub(super) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit(),
        }
    }

    pub(super) fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
        }
    }

    pub(super) fn quorum(&self) -> usize {
        self.cfg.quorum()
    }

    /// Has this leader committed an entry of its own term (so its commit index
    /// covers everything committed before it was elected)?
    pub(super) fn committed_own_term(&self) -> bool {
        self.log.term(self.log.commit()) == Some(self.term)
    }

    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.cfg.id,
            to,
            term: self.term,
            ctx: 0,
            body,
        });
    }

    /// Answer `req` (same `ctx`) in our current term.
    pub(super) fn respond(&mut self, req: &Message, body: MessageBody) {
        self.respond_in(self.term, req, body);
    }

    /// Answer `req` in `term` (a granted pre-vote answers in the term asked
    /// about, which is not ours).
    pub(super) fn respond_in(&mut self, term: Term, req: &Message, body: MessageBody) {
        self.msgs.push(Message {
            from: self.cfg.id,
            to: req.from,
            term,
            ctx: req.ctx,
            body,
        });
    }

    /// Has a leader been heard from within the minimum election timeout (or
    /// are we it)? Then a candidate is ignored (thesis §4.2.3): a node cut
    /// off from the leader cannot depose it while a majority still follows.
    pub(super) fn in_lease(&self) -> bool {
        self.cfg.pre_vote
            && match self.role {
                Role::Leader => true,
                _ => self.leader.is_some() && self.election.elapsed() < self.cfg.election_ticks_min,
            }
    }

    /// Check-quorum round: did a majority (counting us) answer since the last
    /// one? If not, step down (followers then elect a leader they can
    /// reach); if so, start counting again. Returns whether we still lead.
    pub(super) fn check_quorum_round(&mut self) -> bool {
        let active = 1 + self.progress.values().filter(|p| p.recent_active).count();
        if active < self.quorum() {
            self.quorum_lost = true;
            self.become_follower(self.term, None);
            return false;
        }
        for pr in self.progress.values_mut() {
            pr.recent_active = false;
        }
        true
    }

    /// Become a follower in `term` (>= the current term; a higher term clears
    /// the vote). Drops all leader and candidate state.
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(
            term >= self.term,
            "invariant: the term never decreases ({} -> {term})",
            self.term
        );
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.election.reset(&mut self.rng);
        self.heartbeat_elapsed = 0;
        self.votes.clear();
        self.progress.clear();
        self.read_only.reset();
        self.end_transfer();
    }

    /// No transfer in progress any more (done, given up, or leadership lost).
    pub(super) fn end_transfer(&mut self) {
        self.transferee = None;
        self.transfer_elapsed = 0;
        self.timeout_now_sent = false;
    }

    /// Transfer in progress to `to` and its log matches ours: tell it to
    /// campaign now (once per transfer). Returns whether it was sent.
    pub(super) fn maybe_send_timeout_now(&mut self, to: NodeId) -> bool {
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|pr| pr.match_index == self.log.last_index());
        if self.transferee != Some(to) || self.timeout_now_sent || !caught_up {
            return false;
        }
        self.timeout_now_sent = true;
        self.send(to, MessageBody::TimeoutNow);
        true
    }

    /// Election timeout with pre-vote: ask whether a majority would vote
    /// for us in the next term, without raising ours (thesis §9.6). Only if
    /// it would do we campaign; a node that cannot win (cut off, or with a
    /// stale log) leaves every term alone.
    pub(super) fn pre_campaign(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.election.reset(&mut self.rng);
        self.heartbeat_elapsed = 0;
        self.progress.clear();
        self.read_only.reset();
        self.votes.clear();
        self.votes.record(self.cfg.id, true);
        if self.votes.result(self.quorum()) == VoteResult::Won {
            self.campaign();
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.peers.clone() {
            self.msgs.push(Message {
                from: self.cfg.id,
                to: peer,
                term: self.term + 1,
                ctx: 0,
                body: MessageBody::PreVote {
                    last_index,
                    last_term,
                },
            });
        }
    }

    /// Election timeout (or a won pre-vote): start a candidacy in the next term.
    pub(super) fn campaign(&mut self) {
        self.campaign_for(false);
    }

    /// Start a candidacy in the next term; `transfer`: because the leader
    /// asked (`TimeoutNow`), which the RequestVotes say.
    pub(super) fn campaign_for(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.cfg.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.election.reset(&mut self.rng);
        self.progress.clear();
        self.read_only.reset();
        self.votes.clear();
        self.votes.record(self.cfg.id, true);
        if self.votes.result(self.quorum()) == VoteResult::Won {
            self.become_leader();
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.peers.clone() {
            self.send(
                peer,
                MessageBody::RequestVote {
                    last_index,
                    last_term,
                    transfer,
                },
            );
        }
    }

    pub(super) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "invariant: only a candidate becomes leader"
        );
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.heartbeat_elapsed = 0;
        self.quorum_check_elapsed = 0;
        self.votes.clear();
        self.read_only.reset();
        self.end_transfer();
        let next = self.log.last_index() + 1;
        self.progress = self
            .peers
            .iter()
            .map(|&p| (p, Progress::new(next)))
            .collect();
        // The no-op that lets this leader commit (and learn the commit index).
        self.log.append_new(self.term, Bytes::new());
        for peer in self.peers.clone() {
            self.send_append_all(peer);
        }
    }
}
