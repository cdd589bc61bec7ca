//! What a node reports as it thinks: elections, votes, leadership, crashes,
//! commits, calls blocked for lack of a majority. Sent on a broadcast channel
//! for dashboards and headless logs; nobody's correctness depends on them, so
//! a slow listener just misses some (the channel lags), and a node with no
//! listener builds none.

use std::fmt;
use std::time::SystemTime;

use crate::node::raft::{LogIndex, NodeId, Term};

#[derive(Clone, Debug, PartialEq)]
pub struct NodeEvent {
    pub node: NodeId,
    pub at: SystemTime,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// This node's election timer fired: it asks for pre-votes for `term`
    /// (its own + 1) before raising its term.
    PreVoteStarted {
        term: Term,
    },
    /// A majority refused this node's pre-vote for `term` (a leader is
    /// still heard, or its log is behind): its term stays as it was.
    PreVoteRefused {
        term: Term,
    },
    /// This node became a candidate.
    ElectionStarted {
        term: Term,
    },
    /// This node granted its vote.
    VoteGranted {
        candidate: NodeId,
        term: Term,
    },
    /// This node won an election.
    LeaderElected {
        term: Term,
    },
    /// This leader heard from no majority for an election timeout (a
    /// partition, not `crash()`: crashed nodes still answer) and stepped down.
    QuorumLost {
        term: Term,
    },
    /// This node was leader and is not any more.
    LeadershipLost {
        term: Term,
    },
    /// This leader started handing leadership to `to` (thesis §3.10).
    TransferStarted {
        to: NodeId,
        term: Term,
    },
    /// `to` did not take over within an election timeout: this node
    /// leads on.
    TransferAborted {
        to: NodeId,
        term: Term,
    },
    /// This former leader heard `to` lead in `term`: the transfer is done.
    LeadershipTransferred {
        to: NodeId,
        term: Term,
    },
    /// The leader `from` chose this node as its successor (TimeoutNow): it
    /// campaigns at once.
    TakingOver {
        from: NodeId,
        term: Term,
    },
    Crashed,
    Restored,
    /// The leader applied a committed entry (`what` describes it).
    Committed {
        index: LogIndex,
        term: Term,
        what: String,
    },
    /// Calls have waited on this leader for a whole election timeout without
    /// the commit index moving: no majority is answering.
    Blocked {
        waiting: usize,
    },
    /// Commits flow again after `Blocked`.
    Unblocked,
    /// This node snapshotted its map at `index` and compacted its log.
    SnapshotTaken {
        index: LogIndex,
        bytes: usize,
    },
    /// This node's log and map were replaced by the leader's snapshot.
    SnapshotInstalled {
        index: LogIndex,
        bytes: usize,
    },
    /// A disk write failed; the node stopped for good.
    Failed {
        reason: String,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::PreVoteStarted { term } => write!(f, "asking for pre-votes for term {term}"),
            EventKind::PreVoteRefused { term } => {
                write!(f, "pre-vote for term {term} refused: term unchanged")
            }
            EventKind::ElectionStarted { term } => write!(f, "election started for term {term}"),
            EventKind::VoteGranted { candidate, term } => {
                write!(f, "voted for node {candidate} in term {term}")
            }
            EventKind::LeaderElected { term } => write!(f, "became leader of term {term}"),
            EventKind::LeadershipLost { term } => write!(f, "lost leadership (term {term})"),
            EventKind::QuorumLost { term } => {
                write!(
                    f,
                    "no majority heard for an election timeout: stepping down (term {term})"
                )
            }
            EventKind::TransferStarted { to, term } => {
                write!(f, "handing leadership to node {to} (term {term})")
            }
            EventKind::TransferAborted { to, term } => write!(
                f,
                "node {to} did not take over within an election timeout: leading on (term {term})"
            ),
            EventKind::LeadershipTransferred { to, term } => {
                write!(f, "leadership transferred to node {to} (term {term})")
            }
            EventKind::TakingOver { from, term } => write!(
                f,
                "asked by leader {from} to take over: campaigning now (term {term})"
            ),
            EventKind::Crashed => write!(f, "crashed"),
            EventKind::Restored => write!(f, "restored"),
            EventKind::Committed { index, term, what } => {
                write!(f, "committed #{index} (term {term}): {what}")
            }
            EventKind::Blocked { waiting } => {
                write!(f, "{waiting} call(s) blocked waiting for a majority")
            }
            EventKind::Unblocked => write!(f, "majority back: blocked calls proceed"),
            EventKind::SnapshotTaken { index, bytes } => {
                write!(f, "snapshot at #{index} ({bytes} bytes); log compacted")
            }
            EventKind::SnapshotInstalled { index, bytes } => {
                write!(
                    f,
                    "installed the leader's snapshot at #{index} ({bytes} bytes)"
                )
            }
            EventKind::Failed { reason } => write!(f, "STOPPED: {reason}"),
        }
    }
}

impl fmt::Display for NodeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}", self.node, self.kind)
    }
}
