//! One sender task per peer: it takes the core's outgoing requests in order,
//! sends each as an XML-RPC call over one pooled keep-alive client, and feeds
//! the answer (or the failure) back to the driver. Requests to one peer leave in
//! the order the core made them; several may be queued (the core pipelines up
//! to its inflight limit), and a heartbeat queued behind newer messages is
//! dropped, since the newer message carries everything it would.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::node::driver::Request;
use crate::node::peer_wire;
use crate::node::raft::{Message, MessageBody, NodeId};
use crate::xmlrpc::client::Client;

pub fn spawn_sender(
    peer: NodeId,
    addr: &str,
    timeout: Duration,
    driver: mpsc::Sender<Request>,
) -> mpsc::UnboundedSender<Message> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Client::new(addr, timeout);
    tokio::spawn(run(peer, client, rx, driver));
    tx
}

fn is_heartbeat(msg: &Message) -> bool {
    matches!(&msg.body, MessageBody::AppendEntries { entries, .. } if entries.is_empty())
}

async fn run(
    peer: NodeId,
    client: Client,
    mut rx: mpsc::UnboundedReceiver<Message>,
    driver: mpsc::Sender<Request>,
) {
    let mut queue = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(m) => queue.push_back(m),
                None => return,
            }
        }
        while let Ok(m) = rx.try_recv() {
            queue.push_back(m);
        }
        let msg = queue.pop_front().expect("queue is non-empty");
        if is_heartbeat(&msg) && !queue.is_empty() {
            continue;
        }
        let Some(method) = peer_wire::method_for(&msg) else {
            continue;
        };
        let answer = match client.call(method, &[peer_wire::encode(&msg)]).await {
            Ok(value) => match peer_wire::decode_response(method, &value) {
                Ok(resp) if resp.from == peer && resp.to == msg.from => Request::PeerResponse(resp),
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
        };
        if driver.send(answer).await.is_err() {
            return;
        }
    }
}
