//! Leadership transfer as the runtime sees it (the core does the protocol,
//! `Raft::transfer_leader`): the `transferLeader` calls waiting for their
//! outcome, the proposals held while a transfer is in progress, and what
//! the events and logs say about it.
//!
//! While the core is handing leadership over it refuses proposals
//! (`TransferInProgress`: nothing appended). They are held here, not
//! failed: once the transfer ends they are proposed again if this node
//! still leads, or answered `NotLeader` naming the new leader as soon as it
//! is heard (so a client's one retry lands on the right node). Held calls
//! are bounded ([`MAX_HELD`]); past that they are refused at once.
//!
//! Every wait has a deadline in ticks of the Raft clock, so nothing here
//! waits forever on a successor that never shows up.

use std::collections::VecDeque;

use crate::node::command::Command;
use crate::node::raft::{NodeId, Term};

use super::request::Reply;

/// Proposals held during one transfer, at most.
pub const MAX_HELD: usize = 65_536;

/// A `transferLeader` call waiting for its outcome.
pub struct Waiter {
    pub to: NodeId,
    /// Tick by which it is answered, whatever happened.
    pub deadline: u64,
    pub reply: Reply<NodeId>,
}

#[derive(Default)]
pub struct Transfers {
    /// Ticks of the Raft clock since the runtime started.
    pub now: u64,
    /// The transfer in progress as of the last turn (the core's transferee).
    pub current: Option<(NodeId, Term)>,
    /// This node stepped down during a transfer to this successor; the
    /// event is emitted once it is heard leading (or the deadline passes).
    pub handed_to: Option<(NodeId, u64)>,
    pub waiters: Vec<Waiter>,
    /// Proposals refused by the core during the transfer, in arrival order.
    pub held: VecDeque<(Command, Reply<bool>)>,
    /// Tick by which held proposals are answered if no leader is heard.
    pub held_deadline: u64,
    /// `Quiesce` calls, answered once no proposal waits.
    pub quiescing: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Transfers {
    /// Whether there is anything to settle at the end of a turn.
    pub fn busy(&self) -> bool {
        self.current.is_some()
            || self.handed_to.is_some()
            || !self.waiters.is_empty()
            || !self.held.is_empty()
            || !self.quiescing.is_empty()
    }
}
