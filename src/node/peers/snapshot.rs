//! The snapshot lane of one peer: `InstallSnapshot` transfers, one at a
//! time, chunk by chunk, over a client of their own (so a transfer of many
//! chunks never holds up the heartbeats of the message lane). The lane keeps
//! one snapshot: a newer snapshot for the peer replaces one not yet started,
//! and the one being sent is abandoned for it. A chunk the peer refuses with
//! fault 3 (the snapshot does not decode there, or breaks a limit) reports
//! the snapshot refused, so the core pauses before sending it again; any
//! other failed chunk reports the peer unreachable; the last chunk's answer
//! is the core's response. A crashed node stops a transfer at the next chunk.
//! A chunk over a link the [`NetFilter`] cuts is not sent (nor its answer
//! delivered): the transfer fails after the timeout as a lost call would,
//! holding no connection meanwhile, and the peer is reported unreachable.
//! While the message lane finds the peer silent, a snapshot waits (a newer
//! one replaces it) and starts on a fresh client once the peer answers
//! again, so a healed link carries it at once, not after TCP's
//! retransmission backoff of a connection or a connect made during the cut.
//! A transfer under way goes on (a follower busy installing a large
//! snapshot may leave heartbeats unanswered for a while); a chunk lost in a
//! cut fails at its timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{answer, halted, NetFilter, PeerStats};
use crate::node::driver::{NodeStatus, Request};
use crate::node::error::{FAULT_BAD_REQUEST, FAULT_NOT_PEER, FAULT_UNAUTHORIZED};
use crate::node::peer_wire::{self, INSTALL_SNAPSHOT};
use crate::node::raft::{Message, MessageBody, NodeId};
use crate::xmlrpc::client::{CallError, Client, Transport};

/// Snapshot bytes per `installSnapshot` call: as base64 in XML, about 1.4 MB
/// of body, well inside the server's 16 MiB limit and quick to answer.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Who sends to whom, and through which filter.
pub(super) struct Route {
    /// The sending node.
    pub node: NodeId,
    pub peer: NodeId,
    pub addr: String,
    pub net: NetFilter,
    /// Whether the message lane finds the peer silent.
    pub silent: watch::Receiver<bool>,
}

/// Runs the lane until the driver's end is dropped. `slot` holds the newest
/// snapshot handed over (a watch channel: one value, the newest).
pub(super) async fn run(
    route: Route,
    timeout: Duration,
    transport: Transport,
    stats: Arc<PeerStats>,
    mut slot: watch::Receiver<Option<Message>>,
    driver: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
) {
    let (peer, addr) = (route.peer, route.addr.clone());
    let mut silent = route.silent.clone();
    // The client (and its connections) is made for the first snapshot, and
    // again after the peer was silent (a connection of the old one may be
    // waiting on TCP's retransmission backoff).
    let mut client = None;
    loop {
        if slot.changed().await.is_err() {
            return;
        }
        let Some(mut msg) = slot.borrow_and_update().clone() else {
            continue;
        };
        loop {
            // Held while the peer is silent: sent into a cut, it would wait
            // for TCP's backoff after the heal. A newer one replaces it.
            if *silent.borrow() {
                client = None;
            }
            tokio::select! {
                biased;
                newer = slot.changed() => {
                    if newer.is_err() {
                        return;
                    }
                    let Some(m) = slot.borrow_and_update().clone() else { break };
                    msg = m;
                    continue;
                }
                heard = async { silent.wait_for(|s| !*s).await.map(|_| ()) } => {
                    if heard.is_err() {
                        return;
                    }
                }
            }
            let sender = client
                .get_or_insert_with(|| Client::with_transport(&addr, timeout, transport.clone()));
            tokio::select! {
                biased;
                newer = slot.changed() => {
                    if newer.is_err() {
                        return;
                    }
                    let Some(m) = slot.borrow_and_update().clone() else { break };
                    tracing::debug!(peer, "snapshot superseded while being sent");
                    msg = m;
                }
                answer = send_snapshot(&route, sender, timeout, &msg, &status, &stats) => {
                    if driver.send(answer).await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Sends `msg` (an `InstallSnapshot`) in chunks, one call at a time; the
/// driver's answer: the core's response or the peer unreachable.
async fn send_snapshot(
    route: &Route,
    client: &Client,
    timeout: Duration,
    msg: &Message,
    status: &watch::Receiver<NodeStatus>,
    stats: &PeerStats,
) -> Request {
    let peer = route.peer;
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
        if let Err(cut) = route.net.check_call(route.node, peer) {
            // As a call into a silent network: no answer within the timeout.
            tracing::debug!(peer, offset = chunk.offset, "installSnapshot: {cut}");
            tokio::time::sleep(timeout).await;
            return Request::Unreachable(peer);
        }
        let result = client
            .call(INSTALL_SNAPSHOT, &[peer_wire::encode_chunk(&chunk)])
            .await;
        if !route.net.passes(peer, route.node) {
            // The answer is lost on the way back (the link was cut meanwhile).
            return Request::Unreachable(peer);
        }
        if let Err(CallError::Fault(f)) = &result {
            if [FAULT_BAD_REQUEST, FAULT_UNAUTHORIZED, FAULT_NOT_PEER].contains(&f.code) {
                tracing::warn!(
                    peer,
                    offset = chunk.offset,
                    "peer refused our snapshot: {}",
                    f.message
                );
                return Request::SnapshotRefused(peer);
            }
        }
        if chunk.done {
            return answer(peer, msg.from, INSTALL_SNAPSHOT, result, stats);
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
