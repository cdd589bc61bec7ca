//! The vocabulary of the Raft core: ids, entries, messages, the hard state that
//! must survive restarts, the `Ready` batch the core hands to its driver, and the
//! status snapshot the driver publishes. Plain data, no behaviour.

use bytes::Bytes;

/// A node's id: its index in the config's member list (0..M).
pub type NodeId = u64;
pub type Term = u64;
pub type LogIndex = u64;

/// One log entry. `data` is opaque to the core; empty `data` is the no-op a new
/// leader appends at the start of its term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub data: Bytes,
}

/// The state machine as of log entry `index` (of term `term`): what replaces
/// the log prefix `1..=index` once it is compacted, and what a follower too far
/// behind is sent. `data` is opaque to the core (the driver's encoding of the
/// metadata map); `index == 0` means "no snapshot".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub index: LogIndex,
    pub term: Term,
    pub data: Bytes,
}

/// What Raft requires to be durable before a vote or an append ack is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    /// Asking for pre-votes (Raft thesis §9.6) before it raises its term: a
    /// node that could not win an election never disrupts the cluster.
    PreCandidate,
    Candidate,
    Leader,
}

/// A message between two cores. `ctx` is an opaque correlation number chosen by
/// the driver for requests it receives; a response copies the `ctx` of the
/// request it answers (the driver uses it to answer the right HTTP call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub ctx: u64,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Replication and heartbeat. `read_seq` is the leader's ReadIndex round
    /// number at send time; the response echoes it.
    AppendEntries {
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
        read_seq: u64,
    },
    /// `success`: the follower's log now matches the leader's through
    /// `match_index`. On rejection, `match_index` carries the rejected
    /// `prev_index` (so the leader can ignore stale rejections), and `conflict_index`/`conflict_term` are the
    /// fast back-off hint (first index of the conflicting term, or the
    /// follower's last index + 1 when its log is too short, with term 0).
    AppendEntriesResponse {
        success: bool,
        match_index: LogIndex,
        conflict_index: LogIndex,
        conflict_term: Term,
        read_seq: u64,
    },
    /// `transfer`: the candidate campaigns because the leader asked it to
    /// (`TimeoutNow`), so voters that still hear that leader vote anyway
    /// rather than refusing by the §4.2.3 lease rule (thesis §3.10).
    RequestVote {
        last_index: LogIndex,
        last_term: Term,
        transfer: bool,
    },
    RequestVoteResponse {
        granted: bool,
    },
    /// "Would you vote for me in `term`?" (thesis §9.6), sent in the term the
    /// pre-candidate would campaign in (its own + 1) without raising its own.
    /// Granting records nothing; the receiver's term does not move.
    PreVote {
        last_index: LogIndex,
        last_term: Term,
    },
    /// A granted pre-vote carries the term asked about; a refusal carries the
    /// responder's own term.
    PreVoteResponse {
        granted: bool,
    },
    /// The leader no longer holds the entries the follower needs: here is the
    /// state machine through `snapshot.index`. Answered with an
    /// `AppendEntriesResponse` (success, `match_index` = the index the
    /// follower's log now matches through).
    InstallSnapshot {
        snapshot: Snapshot,
    },
    /// Leadership transfer (thesis §3.10): the leader tells the successor
    /// it chose, once the successor's log matches its own, to start an
    /// election now, skipping its timer and pre-vote.
    TimeoutNow,
    /// `accepted`: the receiver started that election (it answers in its new
    /// term, so the old leader steps down on reading it).
    TimeoutNowResponse {
        accepted: bool,
    },
}

/// The exchange a message belongs to: a request and its response share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// AppendEntries or InstallSnapshot, answered by AppendEntriesResponse.
    Append,
    Vote,
    PreVote,
    TimeoutNow,
}

impl MessageBody {
    pub fn exchange(&self) -> Exchange {
        match self {
            MessageBody::AppendEntries { .. }
            | MessageBody::AppendEntriesResponse { .. }
            | MessageBody::InstallSnapshot { .. } => Exchange::Append,
            MessageBody::RequestVote { .. } | MessageBody::RequestVoteResponse { .. } => {
                Exchange::Vote
            }
            MessageBody::PreVote { .. } | MessageBody::PreVoteResponse { .. } => Exchange::PreVote,
            MessageBody::TimeoutNow | MessageBody::TimeoutNowResponse { .. } => {
                Exchange::TimeoutNow
            }
        }
    }

    pub fn is_response(&self) -> bool {
        matches!(
            self,
            MessageBody::AppendEntriesResponse { .. }
                | MessageBody::RequestVoteResponse { .. }
                | MessageBody::PreVoteResponse { .. }
                | MessageBody::TimeoutNowResponse { .. }
        )
    }
}

/// A linearizable read became safe: once the state machine has applied
/// `index`, the read identified by `ctx` may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: u64,
    pub index: LogIndex,
}

/// Role and leader, reported in a `Ready` when they change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub leader: Option<NodeId>,
}

/// Everything the core wants done. Two ways to drive it:
///
/// - **Synchronously**: persist `snapshot` (if any, and restore the state
///   machine from it), `hard_state` and `entries` (appending; an entry at an
///   index already stored replaces it and everything after it), then send
///   `messages`, apply `committed_entries`, serve `read_states`, then call
///   `advance`.
/// - **Asynchronously** (the node runtime): send the messages for which
///   [`Message::may_precede_persist`] holds at once, hand the writes to a
///   storage thread, apply `committed_entries` and serve `read_states` (they
///   only cover entries already durable), and once the writes of Ready
///   `number` (and of every earlier one) are durable, send the other messages
///   and call `on_persisted(number)`. Readies are numbered 1, 2, … in the
///   order they are handed out; writes must become durable in that order.
#[derive(Debug, Default)]
pub struct Ready {
    /// 1 for the first Ready a core hands out, then 2, 3, …
    pub number: u64,
    /// A snapshot received from the leader: persist it (replacing the log
    /// through its index) and load it into the state machine before anything
    /// else in this `Ready`; `committed_entries` continue after it.
    pub snapshot: Option<Snapshot>,
    /// The role/leader if it changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// The hard state if it changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// Entries to make durable before the messages that promise them leave.
    pub entries: Vec<Entry>,
    /// Whether the writes must be fsynced before anything that waits for
    /// them (etcd's MustSync): a snapshot, entries, or a new term or vote.
    /// A hard state whose only change is the commit index need not be: a
    /// commit index lost in a crash is learned again from the leader.
    pub must_sync: bool,
    /// Entries known committed (and durable here) not yet handed out,
    /// contiguous and in order.
    pub committed_entries: Vec<Entry>,
    /// Outgoing messages, in the order the core made them.
    pub messages: Vec<Message>,
    pub read_states: Vec<ReadState>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.entries.is_empty()
            && self.committed_entries.is_empty()
            && self.messages.is_empty()
            && self.read_states.is_empty()
    }

    /// Whether anything must be written to storage.
    pub fn has_writes(&self) -> bool {
        self.snapshot.is_some() || self.hard_state.is_some() || !self.entries.is_empty()
    }
}

impl Message {
    /// May this message leave before the sender's own writes of the same
    /// `Ready` are durable? Only a leader's replication requests may (Raft
    /// thesis §10.2.1: the leader writes its log in parallel with its
    /// followers, and counts itself toward a majority only once durable).
    /// Everything else promises state of the sender (a vote, an ack, a term)
    /// and waits.
    pub fn may_precede_persist(&self) -> bool {
        matches!(
            self.body,
            MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. }
        )
    }
}

/// Per-follower replication state, as seen by the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: NodeId,
    /// Highest index known replicated on the peer.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
}

/// A read-only snapshot of the core for dashboards and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub vote: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub last_index: LogIndex,
    pub last_term: Term,
    /// The log is compacted through here (0: never compacted).
    pub snapshot_index: LogIndex,
    pub commit_index: LogIndex,
    /// Last index handed out in `committed_entries` (what the driver applies).
    pub applied_index: LogIndex,
    /// Filled only on the leader, one per other member in id order.
    pub progress: Vec<PeerProgress>,
    /// Leader: the successor of a leadership transfer in progress.
    pub transferee: Option<NodeId>,
}
