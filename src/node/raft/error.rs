//! The core's one error enum. Everything a caller of the Raft core can be told
//! went wrong, by who can act on it: `NotLeader` (retry at the named leader),
//! bad input (`UnknownPeer`, `Misaddressed`, `InvalidMessage`: log and drop),
//! and setup mistakes (`InvalidConfig`, `InvalidStorage`: fatal at startup;
//! `Compaction`: the driver asked for an impossible snapshot).
//! An `Err` from the core never leaves it in a changed state, except that a
//! malformed *request* is still answered with a rejection (see `Raft::step`).

use super::types::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// Proposals and reads go to the leader; `leader` is this node's best guess.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// A leadership transfer to `to` is in progress: the proposal was not
    /// taken (nothing appended); it may be retried once the transfer ends.
    #[error("leadership is being transferred to node {to}")]
    TransferInProgress { to: NodeId },
    #[error("invalid raft config: {0}")]
    InvalidConfig(String),
    /// A message from (or a report about) a node that is not a member.
    #[error("unknown peer {0}")]
    UnknownPeer(NodeId),
    /// A message whose `to` is not this node.
    #[error("message addressed to node {to}, but this is node {id}")]
    Misaddressed { to: NodeId, id: NodeId },
    /// A message whose contents contradict themselves or committed state.
    #[error("invalid message from node {from}: {reason}")]
    InvalidMessage { from: NodeId, reason: String },
    /// `Raft::new` was handed a log/hard state that cannot have been written by Raft.
    #[error("inconsistent storage: {0}")]
    InvalidStorage(String),
    /// `Raft::compact` was asked for an index it cannot snapshot at.
    #[error("cannot compact the log: {0}")]
    Compaction(String),
}
