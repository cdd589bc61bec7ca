//! The cluster under test, as a client sees it: its members (from
//! `surfstore.members` or a config file), one pooled client per node, leader
//! finding, and crash/restore that is always undone.
//!
//! Promises:
//! - Every node the tester crashes is recorded until it is restored;
//!   [`Cluster::restore_all`] restores all of them, and a [`CrashGuard`]
//!   dropped without [`CrashGuard::restore`] (an early `?`, a panic, a
//!   cancelled scenario) starts their restore at once. The runner calls
//!   `restore_all` after every scenario and before exiting, so the cluster is
//!   left as it was found whatever happened.
//! - Every call is bounded by the client's timeout; nothing here waits forever.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::error::TesterError;
use super::{fmt, poll};
use crate::xmlrpc::client::{CallError, Client, Transport};
use crate::xmlrpc::Value;

/// A handle on the cluster; clones share clients and the crash record.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port` of every node, in id order.
    members: Vec<String>,
    clients: Vec<Client>,
    rpc_timeout: Duration,
    /// What goes with every call (the secret's proof, when given).
    transport: Transport,
    /// Nodes this tester crashed and has not restored yet.
    crashed: Mutex<BTreeSet<usize>>,
}

impl Cluster {
    /// A cluster of `members` (no call is made).
    pub fn new(members: Vec<String>, rpc_timeout: Duration, transport: Transport) -> Cluster {
        let clients = members
            .iter()
            .map(|a| Client::with_transport(a, rpc_timeout, transport.clone()))
            .collect();
        Cluster {
            inner: Arc::new(Inner {
                members,
                clients,
                rpc_timeout,
                transport,
                crashed: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Finds the members: from `config` if given, else by asking `addr` for
    /// `surfstore.members` (retrying until `connect_timeout`, so the tester
    /// can be started together with the cluster).
    pub async fn discover(
        addr: &str,
        config: Option<&Path>,
        rpc_timeout: Duration,
        connect_timeout: Duration,
        transport: Transport,
    ) -> Result<Cluster, TesterError> {
        if let Some(path) = config {
            let cfg = crate::config::load(path)?;
            return Ok(Cluster::new(cfg.members, rpc_timeout, transport));
        }
        let client = Client::with_transport(
            addr,
            rpc_timeout.min(Duration::from_secs(2)),
            transport.clone(),
        );
        let what = format!("{addr} to answer surfstore.members()");
        let (members, _) = poll::until(
            &what,
            "a list of host:port strings",
            connect_timeout,
            || async {
                let r = client.call("surfstore.members", &[]).await;
                match &r {
                    Ok(Value::Array(items)) => {
                        let members: Option<Vec<String>> = items
                            .iter()
                            .map(|v| v.as_str().map(str::to_owned))
                            .collect();
                        match members {
                            Some(m) if !m.is_empty() => Ok(m),
                            _ => Err(fmt::outcome(&r)),
                        }
                    }
                    _ => Err(fmt::outcome(&r)),
                }
            },
        )
        .await
        .map_err(|e| TesterError::Discovery(e.to_string()))?;
        Ok(Cluster::new(members, rpc_timeout, transport))
    }

    /// M.
    pub fn len(&self) -> usize {
        self.inner.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.members.is_empty()
    }

    pub fn members(&self) -> &[String] {
        &self.inner.members
    }

    /// `host:port` of node `i`.
    pub fn addr(&self, i: usize) -> &str {
        &self.inner.members[i]
    }

    /// `node 2 (localhost:9003)`.
    pub fn name(&self, i: usize) -> String {
        format!("node {i} ({})", self.inner.members[i])
    }

    /// The id of the node at `addr`, if it is a member.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.inner.members.iter().position(|m| m == addr)
    }

    /// The most followers that may be down while a majority stays up:
    /// floor((M-1)/2).
    pub fn minority(&self) -> usize {
        (self.len().saturating_sub(1)) / 2
    }

    pub fn rpc_timeout(&self) -> Duration {
        self.inner.rpc_timeout
    }

    /// The shared pooled client of node `i`.
    pub fn client(&self, i: usize) -> &Client {
        &self.inner.clients[i]
    }

    /// A separate client for node `i` with its own connections and timeout
    /// (for calls expected to block, or to race from distinct connections).
    pub fn fresh_client(&self, i: usize, timeout: Duration) -> Client {
        Client::with_transport(
            &self.inner.members[i],
            timeout,
            self.inner.transport.clone(),
        )
    }

    /// `surfstore.<method>(params)` on node `i`.
    pub async fn call(&self, i: usize, method: &str, params: &[Value]) -> Result<Value, CallError> {
        self.inner.clients[i]
            .call(&format!("surfstore.{method}"), params)
            .await
    }

    /// The same call on every node at once; answers in id order.
    pub async fn call_all(&self, method: &str, params: &[Value]) -> Vec<Result<Value, CallError>> {
        let mut set = JoinSet::new();
        for i in 0..self.len() {
            let c = self.clone();
            let (method, params) = (method.to_owned(), params.to_vec());
            set.spawn(async move { (i, c.call(i, &method, &params).await) });
        }
        let mut out: Vec<Option<Result<Value, CallError>>> =
            (0..self.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            let (i, r) = joined.expect("call tasks do not panic");
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.expect("every node answered"))
            .collect()
    }

    /// The nodes whose `isLeader` answers true right now.
    pub async fn leaders(&self) -> Vec<usize> {
        self.call_all("isLeader", &[])
            .await
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(Value::Bool(true))))
            .map(|(i, _)| i)
            .collect()
    }

    /// Waits until exactly one node says it is leader; returns it and how
    /// long that took.
    pub async fn one_leader(&self, bound: Duration) -> Result<(usize, Duration), TesterError> {
        poll::until(
            "exactly one node answers isLeader() True",
            "one leader",
            bound,
            || async {
                match self.leaders().await[..] {
                    [l] => Ok(l),
                    [] => Err("no node says it is leader".to_owned()),
                    ref many => Err(format!(
                        "{} nodes say they are leader: {}",
                        many.len(),
                        self.names(many)
                    )),
                }
            },
        )
        .await
    }

    /// `node 1 (a:1), node 3 (a:3)`.
    pub fn names(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|&i| self.name(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Crashes node `i` (and records it); the guard restores it.
    pub async fn crash(&self, i: usize) -> Result<CrashGuard, TesterError> {
        self.crash_many(&[i]).await
    }

    /// Crashes every node in `nodes`, recording each before its call so an
    /// unanswered crash is still restored.
    pub async fn crash_many(&self, nodes: &[usize]) -> Result<CrashGuard, TesterError> {
        let mut guard = CrashGuard {
            cluster: self.clone(),
            nodes: Vec::new(),
        };
        for &i in nodes {
            self.inner.crashed.lock().expect("crash record").insert(i);
            guard.nodes.push(i);
            let r = self.call(i, "crash", &[]).await;
            if !matches!(r, Ok(Value::Bool(true))) {
                return Err(TesterError::check(
                    format!("{} on {}", fmt::call("crash", &[]), self.name(i)),
                    "True",
                    fmt::outcome(&r),
                ));
            }
        }
        Ok(guard)
    }

    /// Restores node `i` and forgets it was crashed.
    pub async fn restore(&self, i: usize) -> Result<(), TesterError> {
        let r = self.call(i, "restore", &[]).await;
        if matches!(r, Ok(Value::Bool(true))) {
            self.inner.crashed.lock().expect("crash record").remove(&i);
            Ok(())
        } else {
            Err(TesterError::check(
                format!("{} on {}", fmt::call("restore", &[]), self.name(i)),
                "True",
                fmt::outcome(&r),
            ))
        }
    }

    /// Nodes crashed by the tester and not restored yet.
    pub fn crashed_by_tester(&self) -> Vec<usize> {
        self.inner
            .crashed
            .lock()
            .expect("crash record")
            .iter()
            .copied()
            .collect()
    }

    /// Restores every node the tester crashed, retrying each for up to
    /// `bound`; returns the nodes restored.
    pub async fn restore_all(&self, bound: Duration) -> Result<Vec<usize>, TesterError> {
        let nodes = self.crashed_by_tester();
        let deadline = Instant::now() + bound;
        for &i in &nodes {
            loop {
                match self.restore(i).await {
                    Ok(()) => break,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(poll::POLL_INTERVAL).await,
                }
            }
        }
        Ok(nodes)
    }
}

/// Crashed nodes to restore. [`CrashGuard::restore`] restores them and
/// reports failures; dropping the guard instead starts their restore in the
/// background (and the runner's `restore_all` finishes the job).
#[must_use = "dropping the guard restores the nodes at once"]
pub struct CrashGuard {
    cluster: Cluster,
    nodes: Vec<usize>,
}

impl CrashGuard {
    pub fn nodes(&self) -> &[usize] {
        &self.nodes
    }

    /// Restores every node of the guard.
    pub async fn restore(mut self) -> Result<(), TesterError> {
        let nodes = std::mem::take(&mut self.nodes);
        for i in nodes {
            self.cluster.restore(i).await?;
        }
        Ok(())
    }
}

impl Drop for CrashGuard {
    fn drop(&mut self) {
        if self.nodes.is_empty() {
            return;
        }
        let nodes = std::mem::take(&mut self.nodes);
        let cluster = self.cluster.clone();
        let restore = async move {
            for i in nodes {
                let _ = cluster.restore(i).await;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(restore);
            }
            Err(_) => {
                // No runtime to spawn on (it is being torn down): restore from
                // a thread of our own, with fresh clients, and wait for it.
                let members = self.cluster.members().to_vec();
                let timeout = self.cluster.rpc_timeout();
                let transport = self.cluster.inner.transport.clone();
                let crashed = self.cluster.crashed_by_tester();
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        for i in crashed {
                            let c = Client::with_transport(&members[i], timeout, transport.clone());
                            let _ = c.call("surfstore.restore", &[]).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}
