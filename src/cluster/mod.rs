//! All M nodes of a config in one process, each a set of tokio tasks listening
//! on its real address, built by the very same `node::start_on` that
//! `run-server.sh` uses, so outside clients cannot tell the difference.
//!
//! Promises:
//! - [`Cluster::start`] binds every address before starting any node: a port in
//!   use is a [`ClusterError::Bind`] naming the address, and nothing is left
//!   running or bound.
//! - Every node's event broadcast is subscribed right after the node starts
//!   (before its first election timeout can fire), merged into one [`Feed`]
//!   that [`Cluster::take_events`] hands out once. The feed is bounded: when
//!   nobody reads it, or a reader falls behind, items are dropped and counted
//!   (a [`FeedItem::Missed`]), never buffered without limit.
//! - [`Cluster::shutdown`] stops every node and returns once their drivers and
//!   HTTP servers have ended, so the ports are free. Dropping a `Cluster`
//!   without it still tells every node to stop, but does not wait.
//! - Every node's peer calls go through one shared [`Partition`]
//!   ([`Cluster::partition`]): cutting a link there silences it both ways
//!   for the Raft lanes and the block calls alike, as a network partition
//!   would (a killed and restarted node keeps its links as they were).

pub mod feed;
pub mod headless;
pub mod launch;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::node::peers::{NetFilter, Partition};
use crate::node::raft::NodeId;
use crate::node::{self, NodeHandle, NodeOptions, RunningNode, StartError, Timing};
use crate::xmlrpc::server::ServerOptions;

pub use feed::{Feed, FeedItem};

/// How long `shutdown` waits for one node's HTTP server to finish its
/// in-flight calls (the server's own grace is 2 s; this bounds it again).
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// What every node of the cluster is started with.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub timing: Timing,
    /// Node i's core RNG is seeded with `seed + i`; random per node when `None`.
    pub seed: Option<u64>,
    /// Most AppendEntries in flight to one follower.
    pub max_inflight: usize,
    pub server: ServerOptions,
    /// Node i keeps its write-ahead log in `data_dir/node<i>`; `None` keeps
    /// every node in memory.
    pub data_dir: Option<std::path::PathBuf>,
    pub fsync: crate::node::storage::FsyncPolicy,
    /// Snapshot and compact every this many applied entries (0: never).
    pub snapshot_threshold: u64,
    /// The cluster and client secrets every node asks calls for.
    pub keys: crate::auth::Keys,
    /// TLS for every node (one certificate naming every member's host).
    pub tls: Option<crate::tls::NodeTls>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            timing: Timing::default(),
            seed: None,
            max_inflight: 4,
            server: ServerOptions::default(),
            data_dir: None,
            fsync: crate::node::storage::FsyncPolicy::Always,
            snapshot_threshold: crate::node::DEFAULT_SNAPSHOT_THRESHOLD,
            keys: crate::auth::Keys::default(),
            tls: None,
        }
    }
}

/// Why a cluster did not start. Whatever the variant, nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot listen on {addr}: {source}{}", bind_hint(.source))]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Timing(StartError),
    #[error("node {0} keeps its log in memory: a kill would lose it, so there is nothing to restart from (start without --in-memory)")]
    InMemory(NodeId),
    #[error("{members} member(s) but {listeners} listener(s)")]
    ListenerCount { members: usize, listeners: usize },
    #[error("node {id} ({addr}): {source}")]
    Start {
        id: NodeId,
        addr: String,
        source: StartError,
    },
}

/// Node `id`'s data directory under a cluster's base directory.
pub fn node_dir(base: &std::path::Path, id: NodeId) -> std::path::PathBuf {
    base.join(format!("node{id}"))
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => " (is another run-cluster.sh or run-server.sh using it?)",
        std::io::ErrorKind::AddrNotAvailable => " (the host is not an address of this machine)",
        _ => "",
    }
}

/// M running nodes and the means to stop them.
pub struct Cluster {
    members: Vec<String>,
    /// `nodes[i]` is member i. Emptied by `shutdown`.
    nodes: Vec<RunningNode>,
    /// `shutdowns[i]` stops node i (all of them: the whole cluster).
    shutdowns: Vec<watch::Sender<bool>>,
    /// What node i was started with (a kill restarts it with the same).
    options: Vec<NodeOptions>,
    feed: Option<Feed>,
    feed_tx: tokio::sync::mpsc::Sender<FeedItem>,
    /// `forwarders[i]` relays node i's events into the feed.
    forwarders: Vec<JoinHandle<()>>,
    /// The links every node's peer calls go through.
    partition: Arc<Partition>,
}

impl Cluster {
    /// Binds every member's address, then starts every node on it.
    pub async fn start(
        config: &ClusterConfig,
        opts: &ClusterOptions,
    ) -> Result<Cluster, ClusterError> {
        opts.timing.validate().map_err(ClusterError::Timing)?;
        let mut listeners = Vec::with_capacity(config.members.len());
        for addr in &config.members {
            // On error the listeners bound so far are dropped, freeing them.
            let listener =
                TcpListener::bind(addr.as_str())
                    .await
                    .map_err(|source| ClusterError::Bind {
                        addr: addr.clone(),
                        source,
                    })?;
            listeners.push(listener);
        }
        Cluster::start_on(config.members.clone(), listeners, opts).await
    }

    /// Like `start`, on listeners already bound (`listeners[i]` for
    /// `members[i]`; tests bind port 0 and name the ports they got).
    pub async fn start_on(
        members: Vec<String>,
        listeners: Vec<TcpListener>,
        opts: &ClusterOptions,
    ) -> Result<Cluster, ClusterError> {
        opts.timing.validate().map_err(ClusterError::Timing)?;
        if members.len() != listeners.len() {
            return Err(ClusterError::ListenerCount {
                members: members.len(),
                listeners: listeners.len(),
            });
        }
        let (feed_tx, feed) = feed::channel();
        let partition = Arc::new(Partition::new(members.len()));
        let mut cluster = Cluster {
            members: members.clone(),
            nodes: Vec::with_capacity(members.len()),
            shutdowns: Vec::with_capacity(members.len()),
            options: Vec::with_capacity(members.len()),
            feed: Some(feed),
            feed_tx: feed_tx.clone(),
            forwarders: Vec::with_capacity(members.len()),
            partition: partition.clone(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut node_opts = NodeOptions::new(i as u64, members.clone());
            node_opts.timing = opts.timing.clone();
            node_opts.max_inflight = opts.max_inflight;
            node_opts.server = opts.server.clone();
            node_opts.data_dir = opts.data_dir.as_ref().map(|d| node_dir(d, i as u64));
            node_opts.fsync = opts.fsync;
            node_opts.snapshot_threshold = opts.snapshot_threshold;
            node_opts.cluster_key = opts.keys.cluster.clone();
            node_opts.client_key = opts.keys.client.clone();
            node_opts.tls = opts.tls.clone();
            node_opts.net = NetFilter::new(partition.clone());
            if let Some(seed) = opts.seed {
                node_opts.seed = seed.wrapping_add(i as u64);
            }
            let (shutdown, shutdown_rx) = watch::channel(false);
            cluster.shutdowns.push(shutdown);
            cluster.options.push(node_opts.clone());
            match node::start_on(node_opts, listener, shutdown_rx).await {
                Ok(running) => {
                    // Before the first election timeout: no event is missed.
                    let events = running.handle.events();
                    cluster
                        .forwarders
                        .push(feed::forward(i as u64, events, feed_tx.clone()));
                    cluster.nodes.push(running);
                }
                Err(source) => {
                    cluster.shutdown().await;
                    return Err(ClusterError::Start {
                        id: i as u64,
                        addr: members[i].clone(),
                        source,
                    });
                }
            }
        }
        Ok(cluster)
    }

    /// Binds `m` listeners on 127.0.0.1 port 0 and starts a cluster on them
    /// (benchmarks and tests that need no fixed ports).
    pub async fn start_loopback(m: usize, opts: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let mut listeners = Vec::with_capacity(m);
        let mut members = Vec::with_capacity(m);
        for _ in 0..m {
            let listener =
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|source| ClusterError::Bind {
                        addr: "127.0.0.1:0".into(),
                        source,
                    })?;
            let addr = listener.local_addr().map_err(|source| ClusterError::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            })?;
            members.push(addr.to_string());
            listeners.push(listener);
        }
        Cluster::start_on(members, listeners, opts).await
    }

    /// Waits, on the nodes' status watches (no polling), until exactly one
    /// live node other than `except` is leader, and returns it.
    pub async fn wait_for_leader(&self, except: Option<NodeId>) -> NodeId {
        loop {
            // Subscribe before looking, so no change between the two is missed.
            let mut changes = tokio::task::JoinSet::new();
            for n in &self.nodes {
                let mut w = n.handle.watch();
                w.mark_unchanged();
                changes.spawn(async move { w.changed().await.is_ok() });
            }
            let leaders: Vec<NodeId> = self
                .nodes
                .iter()
                .map(|n| n.handle.status())
                .filter(|s| s.is_leader() && Some(s.raft.id) != except)
                .map(|s| s.raft.id)
                .collect();
            if let [l] = leaders[..] {
                return l;
            }
            // Every watch closed means every node stopped: nothing will change.
            let mut alive = false;
            while let Some(r) = changes.join_next().await {
                if matches!(r, Ok(true)) {
                    alive = true;
                    break;
                }
            }
            assert!(alive, "cluster stopped while waiting for a leader");
        }
    }

    /// Every member's `host:port` from the config, in id order.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// M, the number of nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false for a started cluster; here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every node keeps its log in a data directory, so
    /// [`Cluster::kill_and_restart`] has something to restart it from
    /// (false under `--in-memory`).
    pub fn restartable(&self) -> bool {
        self.options.iter().all(|o| o.data_dir.is_some())
    }

    /// The nodes serve HTTPS only (they were started with TLS).
    pub fn serves_tls(&self) -> bool {
        self.options.first().is_some_and(|o| o.tls.is_some())
    }

    /// The address each node actually listens on, in id order.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// A handle on every node, in id order (cheap clones).
    pub fn handles(&self) -> Vec<NodeHandle> {
        self.nodes.iter().map(|n| n.handle.clone()).collect()
    }

    /// Node `id`'s handle.
    ///
    /// # Panics
    /// If `id` is not a member.
    pub fn handle(&self, id: NodeId) -> &NodeHandle {
        &self.nodes[id as usize].handle
    }

    /// The live node that believes it leads in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .map(|n| n.handle.status())
            .filter(|s| s.is_leader())
            .max_by_key(|s| s.raft.term)
            .map(|s| s.raft.id)
    }

    /// The links between the nodes: cut one here and the nodes' calls over
    /// it go unanswered (`isolate`, `cut_link`, `heal_all`, …).
    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// The merged event feed of every node; `None` after the first call.
    pub fn take_events(&mut self) -> Option<Feed> {
        self.feed.take()
    }

    /// Stops every node and waits until their drivers and servers have ended
    /// (the listening sockets are closed when this returns).
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        for s in &self.shutdowns {
            let _ = s.send(true);
        }
        for node in self.nodes.drain(..) {
            stop_node(node).await;
        }
        for f in self.forwarders.drain(..) {
            f.abort();
        }
    }

    /// A real crash and recovery of node `id`: its tasks are stopped and
    /// everything it held in memory is dropped; then a new node is started
    /// on the same address from its data directory alone. Returns the new
    /// node's handle. Refused for a cluster kept in memory (there would be
    /// nothing to recover from).
    pub async fn kill_and_restart(&mut self, id: NodeId) -> Result<NodeHandle, ClusterError> {
        let i = id as usize;
        let opts = self.options[i].clone();
        let addr = self.members[i].clone();
        if opts.data_dir.is_none() {
            return Err(ClusterError::InMemory(id));
        }
        let _ = self.shutdowns[i].send(true);
        let (shutdown, shutdown_rx) = watch::channel(false);
        self.shutdowns[i] = shutdown;
        // Its event stream ends with it; a new forwarder follows the new node.
        self.forwarders[i].abort();
        let placeholder = stopped_placeholder(&self.nodes[i]);
        let old = std::mem::replace(&mut self.nodes[i], placeholder);
        stop_node(old).await;
        let listener = TcpListener::bind(self.nodes[i].addr)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let running = node::start_on(opts, listener, shutdown_rx)
            .await
            .map_err(|source| ClusterError::Start { id, addr, source })?;
        self.forwarders[i] = feed::forward(id, running.handle.events(), self.feed_tx.clone());
        let handle = running.handle.clone();
        self.nodes[i] = running;
        Ok(handle)
    }
}

/// Waits for a stopped node's driver and server to end (the server gets
/// `SERVER_STOP_TIMEOUT` to finish its in-flight calls, then is aborted).
async fn stop_node(node: RunningNode) {
    let _ = node.driver.await;
    let mut server = node.server;
    if tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut server)
        .await
        .is_err()
    {
        server.abort();
        let _ = server.await;
    }
}

/// Stands in for a node while it is being restarted: same handle and
/// address, tasks already finished.
fn stopped_placeholder(node: &RunningNode) -> RunningNode {
    RunningNode {
        handle: node.handle.clone(),
        addr: node.addr,
        driver: tokio::spawn(async {}),
        server: tokio::spawn(async { Ok(()) }),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &self.shutdowns {
            let _ = s.send(true);
        }
        for f in &self.forwarders {
            f.abort();
        }
    }
}
