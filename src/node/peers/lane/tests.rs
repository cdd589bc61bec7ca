//! The lane against a fake peer on loopback that can be cut and paused.
//!
//! A cut blackholes every open connection for good (as TCP retransmission
//! backoff does to a connection after a long cut: it delivers again only
//! seconds after the heal) and closes the listener, so connects are refused
//! until the heal reopens it on the same port. A pause holds every call
//! until the resume, and the kernel still accepts connections, as with a
//! SIGSTOPped process.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::node::driver::{NodeStatus, Request};
use crate::node::peer_wire;
use crate::node::peers::{spawn_sender, SenderOptions};
use crate::node::raft::{HardState, Message, MessageBody, Raft, RaftConfig, Snapshot};
use crate::xmlrpc::codec::MethodCall;
use crate::xmlrpc::server::{serve_connection, CallContext, Handler, ServerOptions};
use crate::xmlrpc::{Fault, Value};

const TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Default)]
struct State {
    /// Connections accepted before the last cut never answer.
    cuts: AtomicU64,
    paused: AtomicBool,
    resumed: tokio::sync::Notify,
    accepted: AtomicUsize,
}

#[derive(Clone)]
struct FakePeer {
    state: Arc<State>,
    /// `state.cuts` when this connection was accepted.
    born: u64,
}

impl Handler for FakePeer {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        loop {
            let resumed = self.state.resumed.notified();
            if !self.state.paused.load(Ordering::SeqCst) {
                break;
            }
            resumed.await;
        }
        if self.state.cuts.load(Ordering::SeqCst) != self.born {
            std::future::pending::<()>().await;
        }
        let msg = peer_wire::decode_request(&call.method, &call.params)
            .map_err(|e| Fault::new(4, format!("{e}")))?;
        let MessageBody::AppendEntries { prev_index, .. } = msg.body else {
            return Err(Fault::new(4, "appendEntries only"));
        };
        Ok(peer_wire::encode(&Message {
            from: msg.to,
            to: msg.from,
            term: msg.term,
            ctx: 0,
            body: MessageBody::AppendEntriesResponse {
                success: true,
                match_index: prev_index,
                conflict_index: 0,
                conflict_term: 0,
                read_seq: 0,
            },
        }))
    }
}

fn listen(port: u16) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    socket.listen(64).unwrap()
}

/// Serves on `listener` until aborted.
fn accept_loop(listener: TcpListener, state: Arc<State>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            state.accepted.fetch_add(1, Ordering::SeqCst);
            let peer = FakePeer {
                state: state.clone(),
                born: state.cuts.load(Ordering::SeqCst),
            };
            tokio::spawn(async move {
                let _ = serve_connection(stream, peer, &ServerOptions::default()).await;
            });
        }
    })
}

fn heartbeat(seq: u64) -> Message {
    Message {
        from: 0,
        to: 1,
        term: 1,
        ctx: 0,
        body: MessageBody::AppendEntries {
            prev_index: seq,
            prev_term: 1,
            entries: Vec::new(),
            commit: 0,
            read_seq: 0,
        },
    }
}

struct Rig {
    state: Arc<State>,
    port: u16,
    server: Option<tokio::task::JoinHandle<()>>,
    driver: mpsc::Receiver<Request>,
    _status: watch::Sender<NodeStatus>,
    _sender: tokio::task::JoinHandle<()>,
}

impl Rig {
    /// A lane to a fake peer, sent a heartbeat every 20 ms.
    fn start() -> Rig {
        let state = Arc::new(State::default());
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let server = accept_loop(listener, state.clone());
        let raft = Raft::new(
            RaftConfig {
                id: 0,
                members: vec![0, 1],
                election_ticks_min: 3,
                election_ticks_max: 3,
                heartbeat_ticks: 1,
                seed: 1,
                max_entries_per_message: 64,
                max_bytes_per_message: 1 << 20,
                max_inflight: 4,
                pre_vote: false,
                check_quorum: false,
            },
            HardState::default(),
            Snapshot::default(),
            Vec::new(),
        )
        .unwrap();
        let (status_tx, status_rx) = watch::channel(NodeStatus {
            raft: raft.status(),
            crashed: false,
            files: 0,
            failed: None,
        });
        let (driver_tx, driver) = mpsc::channel(1024);
        let (tx, _stats) = spawn_sender(
            1,
            &format!("127.0.0.1:{port}"),
            SenderOptions::new(TIMEOUT, 4, 1 << 20),
            driver_tx,
            status_rx,
        );
        let sender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for seq in 1.. {
                tick.tick().await;
                if tx.send(heartbeat(seq)).is_err() {
                    return;
                }
            }
        });
        Rig {
            state,
            port,
            server: Some(server),
            driver,
            _status: status_tx,
            _sender: sender,
        }
    }

    /// Waits for the next request to the driver that `want` picks.
    async fn next(&mut self, what: &str, want: impl Fn(&Request) -> bool) -> Instant {
        let limit = Duration::from_secs(20);
        let found = tokio::time::timeout(limit, async {
            loop {
                let req = self.driver.recv().await.expect("the lane is running");
                if want(&req) {
                    return Instant::now();
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} within {limit:?}"))
    }

    async fn answer(&mut self) -> Instant {
        self.next("answer", |r| matches!(r, Request::PeerResponse(_)))
            .await
    }

    fn cut(&mut self) {
        self.state.cuts.fetch_add(1, Ordering::SeqCst);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    async fn heal(&mut self) {
        // The aborted accept loop drops its listener when the task is
        // reaped; wait for the port to be free.
        let listener = loop {
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            if socket
                .bind(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
                .is_ok()
            {
                break socket.listen(64).unwrap();
            }
            tokio::task::yield_now().await;
        };
        self.server = Some(accept_loop(listener, self.state.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_link_is_used_at_once_not_after_the_old_connection_recovers() {
    let mut rig = Rig::start();
    rig.answer().await;
    rig.cut();
    let cut = Instant::now();
    rig.next("unreachable report", |r| {
        matches!(r, Request::Unreachable(1))
    })
    .await;
    // A cut of three timeouts: the connection the lane had is blackholed
    // for good, and every connect meanwhile is refused.
    tokio::time::sleep_until(cut + TIMEOUT * 3).await;
    while rig.driver.try_recv().is_ok() {}
    rig.heal().await;
    let healed = Instant::now();
    let answered = rig.answer().await;
    let took = answered - healed;
    // A dial every 50 ms: the first answer comes a dial interval and a round
    // trip after the heal. Waiting for the old connection (given up after
    // ABANDON_AFTER timeouts) would take 5 x 400 ms from the cut, 800 ms
    // after the heal.
    assert!(
        took < Duration::from_millis(400),
        "first answer {took:?} after the heal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_peer_costs_a_connection_per_timeout_and_its_late_answers_arrive() {
    let mut rig = Rig::start();
    rig.answer().await;
    rig.state.paused.store(true, Ordering::SeqCst);
    let before = rig.state.accepted.load(Ordering::SeqCst);
    let paused = Instant::now();
    rig.next("unreachable report", |r| {
        matches!(r, Request::Unreachable(1))
    })
    .await;
    let pause = TIMEOUT * 6;
    tokio::time::sleep_until(paused + pause).await;
    let dialed = rig.state.accepted.load(Ordering::SeqCst) - before;
    while rig.driver.try_recv().is_ok() {}
    rig.state.paused.store(false, Ordering::SeqCst);
    rig.state.resumed.notify_waiters();
    let resumed = Instant::now();
    let answered = rig.answer().await;
    // One connection per timeout after the first: 6 in the pause, 7 with
    // jitter
    // (a dial per heartbeat would be 120).
    assert!(
        (1..=7).contains(&dialed),
        "{dialed} connections in a pause of {pause:?}"
    );
    // The calls held in the pause are answered at once on resume.
    assert!(
        answered - resumed < TIMEOUT,
        "first answer {:?} after the resume",
        answered - resumed
    );
}
