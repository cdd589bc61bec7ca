//! The per-peer senders: everything between the driver handing over a Raft
//! request for a peer and the answer (or the failure) coming back to it.
//!
//! Each peer has two lanes:
//! - the **message lane** ([`lane`]): AppendEntries and RequestVote go
//!   through a bounded queue with a replacement policy ([`queue`]) and leave
//!   in order over one HTTP/1.1 connection, up to `max_inflight` calls
//!   pipelined on it; contiguous queued batches are joined into one call. The
//!   sender is the flow control: nothing more leaves while `max_inflight`
//!   calls are unanswered, and what the core makes meanwhile waits in the
//!   queue, where a newer heartbeat, probe or vote request replaces an older
//!   one. A follower that stops answering therefore costs the leader one
//!   queue (bounded in messages and bytes) and one connection, however long
//!   it is silent;
//! - the **snapshot lane** ([`snapshot`]): `InstallSnapshot` transfers, on a
//!   connection of their own, so a transfer of many chunks never holds up the
//!   heartbeats that keep the follower from starting an election. Only the
//!   newest snapshot is kept. While the message lane finds the peer silent,
//!   a transfer waits to start, and it starts on a fresh connection when
//!   the peer answers again, so a healed link carries it at once rather
//!   than after TCP's backoff.
//!
//! A crashed (or stopped) node sends nothing: both lanes check the node's
//! status before every call and drop what is queued while it is crashed.
//!
//! A [`NetFilter`] ([`partition`]) can cut links, as `run-cluster.sh`'s
//! dashboard does: a request over a cut link is dropped before it leaves and
//! an answer over one is dropped when it arrives, and the peer is reported
//! unreachable (never crashed: a cut link is no contact), at once and then at
//! most once per timeout, as a silent network would make the lane report it.
//! A `run-server.sh` node's filter is open.
//!
//! The message lane logs at INFO, once per transition and not per call, when
//! a peer becomes unreachable (calls time out, connections are refused or
//! lost, or the link is cut) and when it answers again.
//!
//! The numbers of each peer (queued messages and bytes, calls in flight, last
//! round trip) are kept in a [`PeerStats`] that the node handle reads.

mod lane;
pub mod partition;
pub mod queue;
mod snapshot;
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::node::driver::{NodeStatus, Request};
use crate::node::raft::{Message, MessageBody, NodeId};
use crate::xmlrpc::client::Transport;

pub use partition::{Cuts, LinkCut, NetFilter, Partition};
pub use queue::{Limits, Pushed, Queue};
pub use snapshot::SNAPSHOT_CHUNK_BYTES;
pub use stats::{PeerNumbers, PeerStats, PeerTable};

/// How one peer's sender behaves.
#[derive(Clone, Debug)]
pub struct SenderOptions {
    /// A call unanswered this long counts as lost: the peer is reported
    /// unreachable (the call stays on the connection; a late answer is still
    /// delivered).
    pub timeout: Duration,
    /// Most calls unanswered on the connection (the core's `--max-inflight`).
    pub max_inflight: usize,
    /// Joined batches stay under this many bytes (the core's
    /// `max_bytes_per_message`).
    pub max_call_bytes: usize,
    pub queue: Limits,
    /// What goes with each call: this node's identity and, with a cluster
    /// secret, its proof.
    pub transport: Transport,
    /// The sending node (for the network filter and the logs).
    pub node: NodeId,
    /// Which calls may leave and which answers arrive; open by default.
    pub net: NetFilter,
}

impl SenderOptions {
    /// The sender of a node whose core pipelines `max_inflight` batches of
    /// up to `max_bytes_per_message` bytes: the queue holds up to four
    /// pipelines' worth of batches, and no more than two full batches' worth
    /// of bytes (plus 1 MiB), so one probe of the largest size always fits.
    pub fn new(timeout: Duration, max_inflight: usize, max_bytes_per_message: usize) -> Self {
        let max_inflight = max_inflight.max(1);
        SenderOptions {
            timeout,
            max_inflight,
            max_call_bytes: max_bytes_per_message.max(1),
            queue: Limits {
                max_msgs: 4 * max_inflight + 2,
                max_bytes: 2 * max_bytes_per_message + (1 << 20),
            },
            transport: Transport::default(),
            node: 0,
            net: NetFilter::open(),
        }
    }
}

/// The driver's end of one peer's sender: hands requests over without
/// waiting. Dropping it stops the sender.
#[derive(Debug)]
pub struct PeerTx {
    shared: Arc<Shared>,
    snapshots: watch::Sender<Option<Message>>,
}

/// The sender task is gone (the node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the sender of peer {0} has stopped")]
pub struct SenderGone(pub NodeId);

/// What the driver and the sender task share.
#[derive(Debug)]
struct Shared {
    peer: NodeId,
    queue: Mutex<Queue>,
    /// Woken on every push (a permit is kept if the sender is busy).
    wake: Notify,
    /// The `PeerTx` was dropped, or the lane ended (the driver is gone).
    closed: AtomicBool,
    /// The message lane finds the peer silent (no answer for a timeout, or
    /// no connection); the snapshot lane holds transfers meanwhile.
    silent: watch::Sender<bool>,
    stats: Arc<PeerStats>,
}

impl Shared {
    /// The queue; a panic elsewhere while holding it leaves plain data,
    /// which stays usable.
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, q: &Queue) {
        self.stats.set_queued(q.len(), q.bytes());
    }
}

impl PeerTx {
    /// Queues `msg` for the peer under the queue's policy (it may replace
    /// older messages, or be dropped); an `InstallSnapshot` goes to the
    /// snapshot lane, replacing any snapshot not yet started. Never waits.
    pub fn send(&self, msg: Message) -> Result<(), SenderGone> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(SenderGone(self.shared.peer));
        }
        if matches!(msg.body, MessageBody::InstallSnapshot { .. }) {
            return self
                .snapshots
                .send(Some(msg))
                .map_err(|_| SenderGone(self.shared.peer));
        }
        let pushed = {
            let mut q = self.shared.queue();
            let pushed = q.push(msg);
            self.shared.publish(&q);
            pushed
        };
        match pushed {
            Pushed::Queued { replaced } => self.shared.stats.add_replaced(replaced),
            Pushed::Stale => self.shared.stats.add_replaced(1),
            Pushed::Overflow => self.shared.stats.add_overflowed(),
        }
        self.shared.wake.notify_one();
        Ok(())
    }
}

impl Drop for PeerTx {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }
}

/// Starts both lanes of `peer` at `addr`. `status` is the sending node's:
/// nothing is sent while it says crashed or failed. Returns the driver's end
/// and the peer's numbers.
pub fn spawn_sender(
    peer: NodeId,
    addr: &str,
    opts: SenderOptions,
    driver: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
) -> (PeerTx, Arc<PeerStats>) {
    let stats = Arc::new(PeerStats::new(peer, addr));
    let shared = Arc::new(Shared {
        peer,
        queue: Mutex::new(Queue::new(opts.queue)),
        wake: Notify::new(),
        closed: AtomicBool::new(false),
        silent: watch::Sender::new(false),
        stats: stats.clone(),
    });
    let (snap_tx, snap_rx) = watch::channel(None);
    tokio::spawn(snapshot::run(
        snapshot::Route {
            node: opts.node,
            peer,
            addr: addr.to_owned(),
            net: opts.net.clone(),
            silent: shared.silent.subscribe(),
        },
        opts.timeout,
        opts.transport.clone(),
        stats.clone(),
        snap_rx,
        driver.clone(),
        status.clone(),
    ));
    tokio::spawn(lane::Lane::new(peer, addr, opts, shared.clone(), driver, status).run());
    (
        PeerTx {
            shared,
            snapshots: snap_tx,
        },
        stats,
    )
}

/// A crashed or stopped node sends no RPC.
fn halted(status: &watch::Receiver<NodeStatus>) -> bool {
    let s = status.borrow();
    s.crashed || s.failed.is_some()
}

/// What the driver is told about the call that carried a request from
/// `from` to `peer`: the response, or the peer unreachable when the answer
/// is missing, undecodable or claims the wrong route.
fn answer(
    peer: NodeId,
    from: NodeId,
    method: &str,
    result: Result<crate::xmlrpc::Value, crate::xmlrpc::client::CallError>,
    stats: &PeerStats,
) -> Request {
    use crate::node::error::{FAULT_NOT_PEER, FAULT_UNAUTHORIZED};
    // An answer clears a refusal; a lost call says nothing either way.
    let refusal = match &result {
        Ok(_) => Some(None),
        Err(crate::xmlrpc::client::CallError::Fault(f))
            if f.code == FAULT_UNAUTHORIZED || f.code == FAULT_NOT_PEER =>
        {
            Some(Some(f))
        }
        _ => None,
    };
    if let Some(refusal) = refusal.filter(|r| stats.note_refusal(r.map_or(0, |f| f.code))) {
        match refusal {
            Some(f) => tracing::warn!(
                peer,
                "peer {peer} ({}) refuses our calls until this changes: {}",
                stats.addr,
                f.message
            ),
            None => tracing::info!(peer, "peer {peer} accepts our calls again"),
        }
    }
    match result {
        Ok(value) => match crate::node::peer_wire::decode_response(method, &value) {
            Ok(resp) if resp.from == peer && resp.to == from => Request::PeerResponse(resp),
            Ok(resp) => {
                tracing::warn!(
                    peer,
                    "response claims to be from {} to {}",
                    resp.from,
                    resp.to
                );
                Request::Unreachable(peer)
            }
            Err(e) => {
                tracing::warn!(peer, "undecodable {method} response: {e}");
                Request::Unreachable(peer)
            }
        },
        Err(crate::xmlrpc::client::CallError::Fault(f))
            if f.code == crate::node::error::FAULT_IS_CRASHED =>
        {
            Request::PeerCrashed(peer)
        }
        Err(e) => {
            tracing::debug!(peer, "{method} failed: {e}");
            Request::Unreachable(peer)
        }
    }
}
