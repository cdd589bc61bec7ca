//! `installSnapshot` over real HTTP: a peer sender (`node::peers`) on one side,
//! a node's method table (`NodeHandle`) served by the XML-RPC server on the
//! other, each with a fake driver the test controls. Checks that a snapshot
//! crosses in chunks and arrives whole, that heartbeats keep flowing while a
//! transfer waits, that a newer snapshot replaces one being sent, and that a
//! failed transfer reports the peer unreachable.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use surfstore::node::command::{Command, Hash};
use surfstore::node::driver::{NodeStatus, Reply, Request};
use surfstore::node::metadata::Metadata;
use surfstore::node::raft::{Message, MessageBody, NodeId, Role, Snapshot, Status};
use surfstore::node::{peer_wire, peers, NodeHandle};
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions, ServerStats};
use surfstore::xmlrpc::{Fault, Value};

const LEADER: NodeId = 0;
const FOLLOWER: NodeId = 1;
const WAIT: Duration = Duration::from_secs(10);

fn status(crashed: bool) -> NodeStatus {
    NodeStatus {
        raft: Status {
            id: FOLLOWER,
            role: Role::Follower,
            term: 7,
            vote: None,
            leader: Some(LEADER),
            last_index: 0,
            last_term: 0,
            snapshot_index: 0,
            commit_index: 0,
            applied_index: 0,
            transferee: None,
            progress: Vec::new(),
        },
        crashed,
        files: 0,
        failed: None,
    }
}

fn success(to_req: &Message, match_index: u64) -> Message {
    Message {
        from: to_req.to,
        to: to_req.from,
        term: to_req.term,
        ctx: to_req.ctx,
        body: MessageBody::AppendEntriesResponse {
            success: true,
            match_index,
            conflict_index: 0,
            conflict_term: 0,
            read_seq: 0,
        },
    }
}

/// The follower: its method table on a real port, with a driver that answers
/// `appendEntries` at once and hands every whole `InstallSnapshot` to the test.
struct Follower {
    addr: String,
    status: watch::Sender<NodeStatus>,
    snapshots: mpsc::UnboundedReceiver<(Message, Reply<Message>)>,
    stats: Arc<ServerStats>,
    _stop: oneshot::Sender<()>,
}

async fn follower() -> Follower {
    let (req_tx, mut req_rx) = mpsc::channel(64);
    let (status_tx, status_rx) = watch::channel(status(false));
    let (snap_tx, snapshots) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(req) = req_rx.recv().await {
            let Request::Peer { msg, reply } = req else {
                continue;
            };
            match &msg.body {
                MessageBody::AppendEntries { prev_index, .. } => {
                    let resp = success(&msg, *prev_index);
                    let _ = reply.send(Ok(resp));
                }
                MessageBody::InstallSnapshot { .. } => {
                    let _ = snap_tx.send((msg, reply));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let members: Arc<[String]> = vec!["127.0.0.1:1".into(), addr.clone()].into();
    let (events, _) = broadcast::channel(4);
    let handle = NodeHandle::new(FOLLOWER, members, req_tx, status_rx, events);
    let stats = Arc::new(ServerStats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = ServerOptions {
        stats: stats.clone(),
        ..Default::default()
    };
    tokio::spawn(server::serve(listener, handle, opts, async {
        let _ = stopped.await;
    }));
    Follower {
        addr,
        status: status_tx,
        snapshots,
        stats,
        _stop: stop,
    }
}

/// The leader's side: a peer sender to `addr`, and what it tells its driver.
fn sender(addr: &str) -> (peers::PeerTx, mpsc::Receiver<Request>) {
    let (tx, rx, _) = sender_with_status(addr);
    (tx, rx)
}

/// Like `sender`, with the leader's status (not crashed) under the test's control.
fn sender_with_status(
    addr: &str,
) -> (
    peers::PeerTx,
    mpsc::Receiver<Request>,
    watch::Sender<NodeStatus>,
) {
    let (driver_tx, driver_rx) = mpsc::channel(64);
    let (status_tx, status_rx) = watch::channel(status(false));
    let opts = peers::SenderOptions::new(Duration::from_secs(5), 4, 4 << 20);
    let (tx, _stats) = peers::spawn_sender(FOLLOWER, addr, opts, driver_tx, status_rx);
    (tx, driver_rx, status_tx)
}

/// A metadata snapshot: the empty map for `len` 0, else a map of one file
/// whose one base64 hash makes it `len.max(39)` bytes.
fn map_bytes(len: usize) -> bytes::Bytes {
    let mut m = Metadata::new();
    if len > 0 {
        let len = len.max(39);
        let hash = Hash::Bytes((0..len - 39).map(|i| (i * 31 % 256) as u8).collect());
        let cmd = Command::UpdateFile {
            filename: "f".into(),
            version: 1,
            hashlist: vec![hash],
        };
        m.apply(1, &cmd);
    }
    m.encode_snapshot()
}

fn snapshot(index: u64, len: usize) -> Message {
    with_data(index, map_bytes(len))
}

fn with_data(index: u64, data: bytes::Bytes) -> Message {
    Message {
        from: LEADER,
        to: FOLLOWER,
        term: 7,
        ctx: 0,
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot {
                index,
                term: 6,
                data,
            },
        },
    }
}

fn heartbeat(prev_index: u64) -> Message {
    Message {
        from: LEADER,
        to: FOLLOWER,
        term: 7,
        ctx: 0,
        body: MessageBody::AppendEntries {
            prev_index,
            prev_term: 6,
            entries: Vec::new(),
            commit: 0,
            read_seq: 0,
        },
    }
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("nothing within the wait")
        .expect("channel closed")
}

async fn told(rx: &mut mpsc::Receiver<Request>) -> Request {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the driver was told nothing")
        .expect("channel closed")
}

fn match_index(req: Request) -> u64 {
    match req {
        Request::PeerResponse(Message {
            from: FOLLOWER,
            to: LEADER,
            body: MessageBody::AppendEntriesResponse { match_index, .. },
            ..
        }) => match_index,
        other => panic!("expected a response from the follower, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_crosses_in_chunks_and_arrives_whole() {
    let mut f = follower().await;
    let (tx, mut driver) = sender(&f.addr);
    // 3.5 chunks.
    let msg = snapshot(1 << 33, peers::SNAPSHOT_CHUNK_BYTES * 7 / 2);
    tx.send(msg.clone()).unwrap();
    let (got, reply) = next(&mut f.snapshots).await;
    assert_eq!(got, msg);
    assert_eq!(f.stats.requests(), 4, "one call per chunk");
    reply.send(Ok(success(&got, 1 << 33))).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 1 << 33);

    // The empty map is one call.
    let empty = snapshot(9, 0);
    tx.send(empty.clone()).unwrap();
    let (got, reply) = next(&mut f.snapshots).await;
    assert_eq!(got, empty);
    reply.send(Ok(success(&got, 9))).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 9);
    assert_eq!(f.stats.requests(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_flow_while_a_snapshot_waits_for_its_answer() {
    let mut f = follower().await;
    let (tx, mut driver) = sender(&f.addr);
    tx.send(snapshot(50, peers::SNAPSHOT_CHUNK_BYTES * 2))
        .unwrap();
    tx.send(heartbeat(41)).unwrap();
    // The snapshot's last call is held; the heartbeat is answered meanwhile.
    let (got, reply) = next(&mut f.snapshots).await;
    assert_eq!(match_index(told(&mut driver).await), 41);
    tx.send(heartbeat(42)).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 42);
    reply.send(Ok(success(&got, 50))).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_snapshot_replaces_the_one_being_sent() {
    let mut f = follower().await;
    let (tx, mut driver) = sender(&f.addr);
    tx.send(snapshot(50, 1000)).unwrap();
    let (old, _held) = next(&mut f.snapshots).await;
    assert!(
        matches!(old.body, MessageBody::InstallSnapshot { ref snapshot } if snapshot.index == 50)
    );
    let newer = snapshot(60, peers::SNAPSHOT_CHUNK_BYTES + 1);
    tx.send(newer.clone()).unwrap();
    let (got, reply) = next(&mut f.snapshots).await;
    assert_eq!(got, newer);
    reply.send(Ok(success(&got, 60))).unwrap();
    // The abandoned transfer reports nothing, not even a failure.
    assert_eq!(match_index(told(&mut driver).await), 60);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), driver.recv())
            .await
            .is_err(),
        "the abandoned snapshot was reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_chunk_reports_the_peer_unreachable() {
    let f = follower().await;
    let (tx, mut driver) = sender(&f.addr);
    f.status.send_replace(status(true));
    tx.send(snapshot(50, peers::SNAPSHOT_CHUNK_BYTES * 2))
        .unwrap();
    assert!(matches!(
        told(&mut driver).await,
        Request::Unreachable(FOLLOWER)
    ));
    // Restored, the next snapshot goes through on the same lane.
    f.status.send_replace(status(false));
    let mut f = f;
    tx.send(snapshot(51, 10)).unwrap();
    let (got, reply) = next(&mut f.snapshots).await;
    reply.send(Ok(success(&got, 51))).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 51);
}

/// The follower's side refuses a snapshot that is not a map (fault 3) before
/// its driver sees it, and the sender reports it refused, not unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_follower_cannot_decode_is_reported_refused() {
    let mut f = follower().await;
    let (tx, mut driver) = sender(&f.addr);
    let mut junk = map_bytes(peers::SNAPSHOT_CHUNK_BYTES * 2).to_vec();
    junk[100] ^= 0xff;
    for data in [bytes::Bytes::from_static(b"junk!"), junk.into()] {
        tx.send(with_data(50, data)).unwrap();
        assert!(matches!(
            told(&mut driver).await,
            Request::SnapshotRefused(FOLLOWER)
        ));
    }
    assert!(
        f.snapshots.try_recv().is_err(),
        "the driver saw a bad snapshot"
    );
    // A good one still goes through on the same lane.
    tx.send(snapshot(51, 10)).unwrap();
    let (got, reply) = next(&mut f.snapshots).await;
    reply.send(Ok(success(&got, 51))).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_listener_reports_the_peer_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (tx, mut driver) = sender(&addr);
    tx.send(snapshot(50, 10)).unwrap();
    assert!(matches!(
        told(&mut driver).await,
        Request::Unreachable(FOLLOWER)
    ));
}

/// A server that answers every call with the same value.
#[derive(Clone)]
struct Answers(Value);

impl Handler for Answers {
    async fn call(&self, _: MethodCall, _: CallContext) -> Result<Value, Fault> {
        Ok(self.0.clone())
    }
}

async fn serve_answers(v: Value) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(
        listener,
        Answers(v),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_chunk_answer_reports_the_peer_unreachable() {
    let ack = |from: i64, received: i64| {
        let mut m = std::collections::BTreeMap::new();
        m.insert("from".to_owned(), Value::I8(from));
        m.insert("to".to_owned(), Value::I8(0));
        m.insert("received".to_owned(), Value::I8(received));
        Value::Struct(m)
    };
    let chunk = peers::SNAPSHOT_CHUNK_BYTES as i64;
    for answer in [
        Value::Bool(true),
        ack(1, chunk - 1),
        ack(2, chunk),
        ack(1, chunk), // right for the first chunk, not a response for the last
    ] {
        let (addr, _stop) = serve_answers(answer.clone()).await;
        let (tx, mut driver) = sender(&addr);
        tx.send(snapshot(50, peers::SNAPSHOT_CHUNK_BYTES * 2))
            .unwrap();
        assert!(
            matches!(told(&mut driver).await, Request::Unreachable(FOLLOWER)),
            "{answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_chunk_form_is_served_too() {
    // What `peer_wire::encode` makes of an InstallSnapshot: one whole chunk.
    let mut f = follower().await;
    let msg = snapshot(5, 100);
    let client = Client::new(&f.addr, WAIT);
    let params = [peer_wire::encode(&msg)];
    let answer = tokio::spawn(async move {
        client
            .call(peer_wire::INSTALL_SNAPSHOT, &params)
            .await
            .unwrap()
    });
    let (got, reply) = next(&mut f.snapshots).await;
    assert_eq!(got, msg);
    reply.send(Ok(success(&got, 5))).unwrap();
    let v = answer.await.unwrap();
    let resp = peer_wire::decode_response(peer_wire::INSTALL_SNAPSHOT, &v).unwrap();
    assert_eq!(resp, success(&msg, 5));
}

/// A crashed leader sends no chunk of a snapshot (the transfer reports the
/// peer unreachable at once); after a restore calls flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_sends_no_snapshot_chunk() {
    let mut f = follower().await;
    let (tx, mut driver, leader) = sender_with_status(&f.addr);
    leader.send_modify(|s| s.crashed = true);
    tx.send(snapshot(60, peers::SNAPSHOT_CHUNK_BYTES * 2))
        .unwrap();
    assert!(matches!(
        told(&mut driver).await,
        Request::Unreachable(FOLLOWER)
    ));
    // Restored: the next heartbeat is the first call the follower sees.
    leader.send_modify(|s| s.crashed = false);
    tx.send(heartbeat(42)).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 42);
    assert_eq!(f.stats.requests(), 1, "nothing was sent while crashed");
    tx.send(snapshot(61, 10)).unwrap();
    let (got, reply) = next(&mut f.snapshots).await;
    reply.send(Ok(success(&got, 61))).unwrap();
    assert_eq!(match_index(told(&mut driver).await), 61);
}
