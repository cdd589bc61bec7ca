//! Shared harness for tests that run real nodes in-process on loopback ports:
//! start M nodes, wait on their status watches (events, not sleeps), talk to
//! them over real XML-RPC with the pooled client.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use surfstore::node::{self, NodeHandle, NodeOptions, NodeStatus, RunningNode, Timing};
use surfstore::xmlrpc::client::{CallError, Client};
use surfstore::xmlrpc::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub struct TestCluster {
    pub nodes: Vec<RunningNode>,
    pub addrs: Vec<String>,
    pub clients: Vec<Client>,
    changes: mpsc::UnboundedReceiver<()>,
    _shutdown: watch::Sender<bool>,
}

/// A fresh directory under the temp dir, named for `tag` and a random
/// suffix (the caller removes it).
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "surfstore-test-{tag}-{:016x}",
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn fast_timing() -> Timing {
    Timing {
        tick: Duration::from_millis(5),
        election_min: Duration::from_millis(100),
        election_max: Duration::from_millis(200),
        heartbeat: Duration::from_millis(25),
        peer_timeout: Duration::from_millis(500),
    }
}

impl TestCluster {
    pub async fn start(m: usize) -> TestCluster {
        Self::start_with(m, |_| {}).await
    }

    /// Like [`TestCluster::start`], with each node's options changed by `tune`.
    pub async fn start_with(m: usize, tune: impl Fn(&mut NodeOptions)) -> TestCluster {
        let mut listeners = Vec::new();
        for _ in 0..m {
            listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback"),
            );
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (change_tx, changes) = mpsc::unbounded_channel();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut opts = NodeOptions::new(i as u64, addrs.clone());
            opts.timing = fast_timing();
            opts.seed = 1000 + i as u64;
            tune(&mut opts);
            let node = node::start_on(opts, listener, shutdown_rx.clone())
                .await
                .expect("node starts");
            let mut w = node.handle.watch();
            let tx = change_tx.clone();
            tokio::spawn(async move {
                while w.changed().await.is_ok() {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            });
            nodes.push(node);
        }
        let clients = addrs
            .iter()
            .map(|a| Client::new(a, Duration::from_secs(30)))
            .collect();
        TestCluster {
            nodes,
            addrs,
            clients,
            changes,
            _shutdown: shutdown_tx,
        }
    }

    pub fn handle(&self, i: usize) -> &NodeHandle {
        &self.nodes[i].handle
    }

    pub fn statuses(&self) -> Vec<NodeStatus> {
        self.nodes.iter().map(|n| n.handle.status()).collect()
    }

    /// Waits (on status changes) until `pred` holds over all statuses.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&[NodeStatus]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = pred(&self.statuses()) {
                return v;
            }
            match tokio::time::timeout_at(deadline, self.changes.recv()).await {
                Ok(Some(())) => {}
                _ => panic!(
                    "timed out after {timeout:?} waiting for {what}: {:#?}",
                    self.statuses()
                ),
            }
        }
    }

    /// The single live leader whose term every live node has reached.
    pub async fn leader(&mut self) -> usize {
        self.wait_for("a single leader", Duration::from_secs(10), |s| {
            let leaders: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_leader()).collect();
            match leaders[..] {
                [l] if s
                    .iter()
                    .all(|n| n.crashed || n.raft.leader == Some(l as u64)) =>
                {
                    Some(l)
                }
                _ => None,
            }
        })
        .await
    }

    /// Waits until node `i` has applied at least `index`.
    pub async fn applied(&mut self, i: usize, index: u64) {
        self.wait_for(
            &format!("node {i} to apply {index}"),
            Duration::from_secs(10),
            |s| (s[i].raft.applied_index >= index).then_some(()),
        )
        .await
    }

    /// A client for node `to` that sends what member `member` sends with
    /// its peer calls (its identity headers), so a test can play a peer.
    pub fn peer_client(&self, to: usize, member: usize) -> Client {
        member_client(&self.addrs, to, member)
    }

    pub async fn call(&self, i: usize, method: &str, params: &[Value]) -> Result<Value, CallError> {
        self.clients[i]
            .call(&format!("surfstore.{method}"), params)
            .await
    }
}

/// A client for `members[to]` carrying member `member`'s identity headers.
pub fn member_client(members: &[String], to: usize, member: usize) -> Client {
    let transport = surfstore::node::identity::Identity::playing(member as u64, members);
    Client::with_transport(&members[to], Duration::from_secs(30), transport)
}

pub fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

pub fn fault_code(r: &Result<Value, CallError>) -> Option<i32> {
    match r {
        Err(CallError::Fault(f)) => Some(f.code),
        _ => None,
    }
}

/// Every file under `dir` by its name relative to `dir`, with its bytes
/// (`index.txt` at the root left out when `without_index`).
pub fn folder_contents(
    dir: &std::path::Path,
    without_index: bool,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !(without_index && rel == "index.txt") {
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// `n` random bytes from `rng`.
pub fn random_bytes(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<u8> {
    use rand::Rng;
    let mut v = vec![0u8; n];
    rng.fill(&mut v[..]);
    v
}

/// Polls `f` every 20 ms until it gives a value, failing the test after
/// `timeout` with `what` (for conditions no watch channel announces, like
/// a block arriving on a node's disk).
pub async fn wait_until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
