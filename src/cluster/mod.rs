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

pub mod feed;
pub mod headless;
pub mod launch;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
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
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            timing: Timing::default(),
            seed: None,
            max_inflight: 4,
            server: ServerOptions::default(),
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
    #[error("{members} member(s) but {listeners} listener(s)")]
    ListenerCount { members: usize, listeners: usize },
    #[error("node {id} ({addr}): {source}")]
    Start {
        id: NodeId,
        addr: String,
        source: StartError,
    },
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
    shutdown: watch::Sender<bool>,
    feed: Option<Feed>,
    forwarders: Vec<JoinHandle<()>>,
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
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (feed_tx, feed) = feed::channel();
        let mut cluster = Cluster {
            members: members.clone(),
            nodes: Vec::with_capacity(members.len()),
            shutdown,
            feed: Some(feed),
            forwarders: Vec::with_capacity(members.len()),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut node_opts = NodeOptions::new(i as u64, members.clone());
            node_opts.timing = opts.timing.clone();
            node_opts.max_inflight = opts.max_inflight;
            node_opts.server = opts.server.clone();
            if let Some(seed) = opts.seed {
                node_opts.seed = seed.wrapping_add(i as u64);
            }
            match node::start_on(node_opts, listener, shutdown_rx.clone()).await {
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
        let _ = self.shutdown.send(true);
        for node in self.nodes.drain(..) {
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
        for f in self.forwarders.drain(..) {
            f.abort();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for f in &self.forwarders {
            f.abort();
        }
    }
}
