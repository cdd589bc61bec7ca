//! Per-peer sender numbers, shared between a peer's sender task (which
//! writes them) and the node handle (which reads them for `surfstore.status`).
//! Plain atomics: a reader sees each number as it was at some moment, not all
//! of them at one moment.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::node::raft::NodeId;

/// One peer's numbers, as the sender keeps them.
#[derive(Debug)]
pub struct PeerStats {
    pub id: NodeId,
    pub addr: String,
    queued_msgs: AtomicU64,
    queued_bytes: AtomicU64,
    inflight: AtomicU64,
    /// Round trip of the last answered call, in microseconds (0: none yet).
    rtt_us: AtomicU64,
    calls: AtomicU64,
    replaced: AtomicU64,
    overflowed: AtomicU64,
    /// The fault code of the peer's last refusal of our calls as not
    /// authorized or not a peer (0: it answers).
    refusal: AtomicI32,
}

/// Every other member's numbers, in id order.
pub type PeerTable = Arc<[Arc<PeerStats>]>;

/// A copy of one peer's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerNumbers {
    pub id: NodeId,
    pub addr: String,
    /// Requests waiting to be sent.
    pub queued_msgs: u64,
    /// Their size, as counted by `queue::message_bytes`.
    pub queued_bytes: u64,
    /// Calls written and not answered (nor given up).
    pub inflight: u64,
    /// Round trip of the last answered call, in microseconds (0: none yet).
    pub rtt_us: u64,
    /// Calls sent so far (joined batches count once).
    pub calls: u64,
    /// Requests dropped because a newer one replaced them, or because their
    /// term was over.
    pub replaced: u64,
    /// Requests refused at the queue's bound.
    pub overflowed: u64,
    /// The fault code the peer last refused our calls with (6
    /// `Unauthorized`, 7 `NotPeer`); 0 while it accepts them.
    pub refused_with: i32,
}

impl PeerStats {
    pub fn new(id: NodeId, addr: &str) -> PeerStats {
        PeerStats {
            id,
            addr: addr.to_owned(),
            queued_msgs: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            refusal: AtomicI32::new(0),
        }
    }

    /// Records that the peer answered a call (`code` 0) or refused it with
    /// fault `code`; true when that differs from the call before, so a
    /// refusal is logged once, not once per heartbeat.
    pub fn note_refusal(&self, code: i32) -> bool {
        self.refusal.swap(code, Ordering::Relaxed) != code
    }

    pub fn numbers(&self) -> PeerNumbers {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PeerNumbers {
            id: self.id,
            addr: self.addr.clone(),
            queued_msgs: get(&self.queued_msgs),
            queued_bytes: get(&self.queued_bytes),
            inflight: get(&self.inflight),
            rtt_us: get(&self.rtt_us),
            calls: get(&self.calls),
            replaced: get(&self.replaced),
            overflowed: get(&self.overflowed),
            refused_with: self.refusal.load(Ordering::Relaxed),
        }
    }

    pub(super) fn set_queued(&self, msgs: usize, bytes: usize) {
        self.queued_msgs.store(msgs as u64, Ordering::Relaxed);
        self.queued_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn set_inflight(&self, n: usize) {
        self.inflight.store(n as u64, Ordering::Relaxed);
    }

    pub(super) fn set_rtt(&self, rtt: std::time::Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.rtt_us.store(us, Ordering::Relaxed);
    }

    pub(super) fn add_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn add_replaced(&self, n: usize) {
        self.replaced.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn add_overflowed(&self) {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
    }
}
