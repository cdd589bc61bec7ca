//! What a node publishes: its `NodeStatus` on a watch channel after every
//! turn, its events on a broadcast channel, and the stall detector that
//! reports calls blocked for lack of a majority.

use tokio::sync::{broadcast, watch};

use crate::node::events::{EventKind, NodeEvent};
use crate::node::raft::{NodeId, Role, Status};

/// What the node publishes after every turn (dashboards and tests read this,
/// never the core).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    pub raft: Status,
    pub crashed: bool,
    /// Files in the applied map.
    pub files: usize,
    /// The node stopped for good (a disk write failed): why.
    pub failed: Option<String>,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        !self.crashed && self.failed.is_none() && self.raft.role == Role::Leader
    }
}

/// The status and event channels of one node.
pub struct Publisher {
    pub id: NodeId,
    status: watch::Sender<NodeStatus>,
    events: broadcast::Sender<NodeEvent>,
}

impl Publisher {
    pub fn new(
        id: NodeId,
        status: watch::Sender<NodeStatus>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        Publisher { id, status, events }
    }

    /// Publishes `status` if it differs from the last one.
    pub fn publish(&self, status: NodeStatus) {
        self.status.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        });
    }

    pub fn has_listeners(&self) -> bool {
        self.events.receiver_count() > 0
    }

    pub fn emit(&self, kind: EventKind) {
        if self.has_listeners() {
            let _ = self.events.send(NodeEvent {
                node: self.id,
                at: std::time::SystemTime::now(),
                kind,
            });
        }
    }
}

/// Reports `Blocked` when calls wait on the leader for an election timeout
/// with none answered, and `Unblocked` when answers flow again.
pub struct StallWatch {
    /// Calls answered so far; the detector watches it move.
    pub answered: u64,
    answered_at_last_tick: u64,
    /// Ticks the leader has had calls waiting and none answered.
    stalled_ticks: u32,
    /// Ticks of stall after which `Blocked` is reported (an election timeout).
    block_after_ticks: u32,
    blocked: bool,
}

impl StallWatch {
    pub fn new(block_after_ticks: u32) -> Self {
        StallWatch {
            answered: 0,
            answered_at_last_tick: 0,
            stalled_ticks: 0,
            block_after_ticks: block_after_ticks.max(1),
            blocked: false,
        }
    }

    /// One tick: `waiting` calls are pending on a node in `role`.
    pub fn tick(&mut self, role: Role, waiting: usize) -> Option<EventKind> {
        let mut event = None;
        if role != Role::Leader || waiting == 0 || self.answered != self.answered_at_last_tick {
            self.stalled_ticks = 0;
        } else {
            self.stalled_ticks += 1;
            if self.stalled_ticks == self.block_after_ticks && !self.blocked {
                self.blocked = true;
                event = Some(EventKind::Blocked { waiting });
            }
        }
        if self.blocked && (self.answered != self.answered_at_last_tick || role != Role::Leader) {
            self.blocked = false;
            event = Some(EventKind::Unblocked);
        }
        self.answered_at_last_tick = self.answered;
        event
    }
}
