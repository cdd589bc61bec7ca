//! One sender task per peer: it takes the core's outgoing requests in order,
//! sends each as an XML-RPC call over one pooled keep-alive client, and feeds
//! the answer (or the failure) back to the driver. Requests to one peer leave in
//! the order the core made them; several may be queued (the core pipelines up
//! to its inflight limit), and a heartbeat queued behind newer messages is
//! dropped, since the newer message carries everything it would.
//!
//! `InstallSnapshot` requests take a lane of their own (a second task and
//! client per peer, started on the first snapshot), so a transfer of many
//! chunks never holds up the heartbeats that keep the follower from starting
//! an election. The lane sends one snapshot at a time, chunk by chunk; a newer
//! snapshot for the peer replaces the one being sent, which is abandoned.
//! Any failed chunk reports the peer unreachable; the last chunk's answer is
//! the core's response.
//!
//! A crashed (or stopped) node sends nothing: both lanes watch the node's
//! status, drop what is queued while it is crashed, and a transfer stops at
//! the next chunk.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::node::driver::{NodeStatus, Request};
use crate::node::peer_wire::{self, INSTALL_SNAPSHOT};
use crate::node::raft::{Message, MessageBody, NodeId};
use crate::xmlrpc::client::{CallError, Client};
use crate::xmlrpc::Value;

/// Snapshot bytes per `installSnapshot` call: as base64 in XML, about 1.4 MB
/// of body, well inside the server's 16 MiB limit and quick to answer.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Starts the sender for `peer`. `status` is the sending node's: nothing is
/// sent while it says crashed or failed.
pub fn spawn_sender(
    peer: NodeId,
    addr: &str,
    timeout: Duration,
    driver: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
) -> mpsc::UnboundedSender<Message> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Client::new(addr, timeout);
    let lane = SnapshotLane {
        peer,
        addr: addr.to_owned(),
        timeout,
        driver: driver.clone(),
        status: status.clone(),
        tx: None,
    };
    tokio::spawn(run(peer, client, lane, rx, driver, status));
    tx
}

/// A crashed or stopped node sends no RPC.
fn halted(status: &watch::Receiver<NodeStatus>) -> bool {
    let s = status.borrow();
    s.crashed || s.failed.is_some()
}

fn is_heartbeat(msg: &Message) -> bool {
    matches!(&msg.body, MessageBody::AppendEntries { entries, .. } if entries.is_empty())
}

fn is_snapshot(msg: &Message) -> bool {
    matches!(msg.body, MessageBody::InstallSnapshot { .. })
}

async fn run(
    peer: NodeId,
    client: Client,
    mut lane: SnapshotLane,
    mut rx: mpsc::UnboundedReceiver<Message>,
    driver: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
) {
    let mut queue = VecDeque::new();
    let mut route = |m: Message, queue: &mut VecDeque<Message>| {
        if is_snapshot(&m) {
            lane.send(m);
        } else {
            queue.push_back(m);
        }
    };
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(m) => route(m, &mut queue),
                None => return,
            }
        }
        while let Ok(m) = rx.try_recv() {
            route(m, &mut queue);
        }
        let Some(msg) = queue.pop_front() else {
            continue;
        };
        if halted(&status) {
            // Made before the crash; the core has forgotten them (and will
            // probe again after a restore).
            queue.clear();
            continue;
        }
        if is_heartbeat(&msg) && !queue.is_empty() {
            continue;
        }
        let Some(method) = peer_wire::method_for(&msg) else {
            continue;
        };
        let result = client.call(method, &[peer_wire::encode(&msg)]).await;
        if driver
            .send(answer(peer, &msg, method, result))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// What the driver is told about the call that carried `sent` to `peer`.
fn answer(peer: NodeId, sent: &Message, method: &str, result: Result<Value, CallError>) -> Request {
    match result {
        Ok(value) => match peer_wire::decode_response(method, &value) {
            Ok(resp) if resp.from == peer && resp.to == sent.from => Request::PeerResponse(resp),
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
        Err(e) => {
            tracing::debug!(peer, "{method} failed: {e}");
            Request::Unreachable(peer)
        }
    }
}

/// The snapshot lane of one peer, started on first use.
struct SnapshotLane {
    peer: NodeId,
    addr: String,
    timeout: Duration,
    driver: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
    /// `None` until the first snapshot; the lane's task ends when this drops.
    tx: Option<mpsc::UnboundedSender<Message>>,
}

impl SnapshotLane {
    fn send(&mut self, msg: Message) {
        let tx = self.tx.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let client = Client::new(&self.addr, self.timeout);
            tokio::spawn(run_snapshots(
                self.peer,
                client,
                rx,
                self.driver.clone(),
                self.status.clone(),
            ));
            tx
        });
        // A closed lane means the driver is gone; nothing is waiting for this.
        let _ = tx.send(msg);
    }
}

async fn run_snapshots(
    peer: NodeId,
    client: Client,
    mut rx: mpsc::UnboundedReceiver<Message>,
    driver: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
) {
    let mut next = None;
    loop {
        let mut msg = match next.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        // Only the newest snapshot is worth sending.
        while let Ok(newer) = rx.try_recv() {
            msg = newer;
        }
        tokio::select! {
            biased;
            newer = rx.recv() => match newer {
                Some(m) => {
                    tracing::debug!(peer, "snapshot superseded while being sent");
                    next = Some(m);
                }
                None => return,
            },
            answer = send_snapshot(peer, &client, &msg, &status) => {
                if driver.send(answer).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends `msg` (an `InstallSnapshot`) in chunks, one call at a time; the
/// driver's answer: the core's response or the peer unreachable.
async fn send_snapshot(
    peer: NodeId,
    client: &Client,
    msg: &Message,
    status: &watch::Receiver<NodeStatus>,
) -> Request {
    let chunks = peer_wire::snapshot_chunks(msg, SNAPSHOT_CHUNK_BYTES)
        .expect("lane invariant: only InstallSnapshot messages reach the snapshot lane");
    if let MessageBody::InstallSnapshot { snapshot } = &msg.body {
        if snapshot.data.len() as u64 > peer_wire::MAX_SNAPSHOT_BYTES {
            tracing::error!(
                peer,
                bytes = snapshot.data.len(),
                "snapshot exceeds the {} bytes a peer accepts",
                peer_wire::MAX_SNAPSHOT_BYTES
            );
        }
    }
    for chunk in chunks {
        if halted(status) {
            tracing::debug!(peer, "crashed: the snapshot transfer stops");
            return Request::Unreachable(peer);
        }
        let result = client
            .call(INSTALL_SNAPSHOT, &[peer_wire::encode_chunk(&chunk)])
            .await;
        if chunk.done {
            return answer(peer, msg, INSTALL_SNAPSHOT, result);
        }
        let ack = match result {
            Ok(value) => peer_wire::decode_chunk_ack(&value),
            Err(e) => {
                tracing::debug!(peer, offset = chunk.offset, "installSnapshot failed: {e}");
                return Request::Unreachable(peer);
            }
        };
        match ack {
            Ok(ack) if ack.from == peer && ack.to == msg.from && ack.received == chunk.end() => {}
            Ok(ack) => {
                tracing::warn!(
                    peer,
                    "chunk ack from {} to {} says {} bytes received, expected {}",
                    ack.from,
                    ack.to,
                    ack.received,
                    chunk.end()
                );
                return Request::Unreachable(peer);
            }
            Err(e) => {
                tracing::warn!(peer, "undecodable installSnapshot chunk answer: {e}");
                return Request::Unreachable(peer);
            }
        }
    }
    unreachable!("chunk invariant: the last chunk is done")
}
