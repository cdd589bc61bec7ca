//! Everything one node is, used alike by `run-server.sh` (one node per process)
//! and the in-process cluster: the Raft core, the metadata state machine, the
//! driver task that owns them, the peer senders and the XML-RPC method table.

pub mod api;
pub mod blocks;
pub mod command;
pub mod driver;
pub mod error;
pub mod events;
pub mod identity;
pub mod metadata;
pub mod metrics;
pub mod peer_wire;
pub mod peers;
pub mod raft;
pub mod runtime;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

pub use api::NodeHandle;
pub use driver::NodeStatus;
pub use error::NodeError;

use crate::auth;
use crate::node::identity::Identity;
use crate::node::metadata::Metadata;
use crate::node::metrics::NodeMetrics;
use crate::node::raft::{Raft, RaftConfig};
use crate::node::runtime::io::{InlineWriter, PeerLanes, ThreadWriter};
use crate::node::runtime::{Publisher, Runtime};
use crate::node::storage::{AnyStore, ClusterMeta, DiskOptions, DiskStore, Stored, Volatile};
use crate::xmlrpc::client::Transport;
use crate::xmlrpc::server::{self, ServerOptions, ServerStats};

/// Raft timing, in wall-clock terms; the driver turns it into ticks.
#[derive(Clone, Debug)]
pub struct Timing {
    /// One core tick.
    pub tick: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    pub heartbeat: Duration,
    /// How long a peer call may take before it counts as unanswered.
    pub peer_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            tick: Duration::from_millis(10),
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
            peer_timeout: Duration::from_millis(1000),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("timing: {0}")]
    Timing(String),
    #[error("raft config: {0}")]
    Raft(#[from] raft::RaftError),
    #[error("block store: {0}")]
    Blocks(#[from] blocks::BlockError),
    #[error("storage: {0}")]
    Storage(#[from] storage::WalError),
    #[error("storage: {0}")]
    Snapshot(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(Box<crate::tls::TlsError>),
}

impl From<crate::tls::TlsError> for StartError {
    fn from(e: crate::tls::TlsError) -> Self {
        StartError::Tls(Box::new(e))
    }
}

impl Timing {
    fn ticks(&self, d: Duration) -> u32 {
        (d.as_micros() / self.tick.as_micros().max(1)).min(u32::MAX as u128) as u32
    }

    /// Checks the timing makes sense for Raft: heartbeats well inside the
    /// election timeout, a real randomization range, ticks finer than both.
    pub fn validate(&self) -> Result<(), StartError> {
        let err = |m: String| Err(StartError::Timing(m));
        if self.tick.is_zero() {
            return err("tick must be positive".into());
        }
        if self.election_min > self.election_max {
            return err(format!(
                "election timeout min {:?} is above max {:?}",
                self.election_min, self.election_max
            ));
        }
        if self.heartbeat.is_zero() || self.heartbeat >= self.election_min {
            return err(format!(
                "heartbeat {:?} must be positive and below the election timeout {:?}",
                self.heartbeat, self.election_min
            ));
        }
        if self.ticks(self.heartbeat) < 1 {
            return err(format!(
                "tick {:?} is coarser than the heartbeat",
                self.tick
            ));
        }
        Ok(())
    }
}

/// Entries applied between two snapshots unless configured otherwise.
pub const DEFAULT_SNAPSHOT_THRESHOLD: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: u64,
    /// Every member's `host:port` in id order.
    pub members: Vec<String>,
    pub timing: Timing,
    /// Seeds the core's RNG (election timeouts); defaults to something per-run.
    pub seed: u64,
    /// How the node's HTTP server serves; its `stats` are not used: each
    /// node counts its own connections (`/metrics` reports them), also when
    /// several nodes are started with clones of one `ServerOptions`.
    pub server: ServerOptions,
    pub max_entries_per_message: usize,
    pub max_bytes_per_message: usize,
    pub max_inflight: usize,
    /// Where this node keeps what must survive a restart; `None` keeps
    /// everything in memory (the assignment's behaviour).
    pub data_dir: Option<std::path::PathBuf>,
    /// With a `data_dir`: whether the write-ahead log is fsynced before
    /// anything it holds is acknowledged.
    pub fsync: storage::FsyncPolicy,
    /// Block size limit, garbage-collection grace, repair cadence.
    pub blocks: blocks::BlockOptions,
    /// Snapshot the map and compact the log every this many applied entries
    /// (0: never).
    pub snapshot_threshold: u64,
    /// The cluster secret (`--secret-file`): peer and admin calls must
    /// prove it, and this node signs its own peer calls with it.
    pub cluster_key: Option<Arc<auth::Key>>,
    /// The client secret (`--client-secret-file`): client calls must prove
    /// it (or the cluster secret).
    pub client_key: Option<Arc<auth::Key>>,
    /// TLS (`--tls-cert`, `--tls-key`, `--tls-ca`): serve HTTPS only and call
    /// the peers over HTTPS; `None`: plain HTTP both ways.
    pub tls: Option<crate::tls::NodeTls>,
    /// Which of this node's peer calls (Raft lanes, block calls) may go
    /// through: open for `run-server.sh`; `run-cluster.sh` shares one
    /// [`peers::Partition`] among its nodes to cut links.
    pub net: peers::NetFilter,
}

impl NodeOptions {
    pub fn new(id: u64, members: Vec<String>) -> Self {
        NodeOptions {
            id,
            members,
            timing: Timing::default(),
            seed: rand::random(),
            server: ServerOptions::default(),
            max_entries_per_message: 4096,
            max_bytes_per_message: 4 << 20,
            max_inflight: 4,
            data_dir: None,
            fsync: storage::FsyncPolicy::Always,
            blocks: blocks::BlockOptions::default(),
            snapshot_threshold: DEFAULT_SNAPSHOT_THRESHOLD,
            cluster_key: None,
            client_key: None,
            tls: None,
            net: peers::NetFilter::open(),
        }
    }

    fn raft_config(&self) -> RaftConfig {
        RaftConfig {
            id: self.id,
            members: (0..self.members.len() as u64).collect(),
            election_ticks_min: self.timing.ticks(self.timing.election_min),
            election_ticks_max: self.timing.ticks(self.timing.election_max),
            heartbeat_ticks: self.timing.ticks(self.timing.heartbeat),
            seed: self.seed,
            max_entries_per_message: self.max_entries_per_message,
            max_bytes_per_message: self.max_bytes_per_message,
            max_inflight: self.max_inflight,
            pre_vote: true,
            check_quorum: true,
        }
    }
}

/// A node that is listening and running. Dropping it does not stop it; turn
/// the shutdown watch to true (or drop its sender) to stop.
pub struct RunningNode {
    pub handle: NodeHandle,
    pub addr: std::net::SocketAddr,
    pub driver: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds the node's address, then starts its driver, peer senders and HTTP server.
pub async fn start(
    opts: NodeOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<RunningNode, StartError> {
    let addr = opts
        .members
        .get(opts.id as usize)
        .cloned()
        .ok_or_else(|| StartError::Timing(format!("id {} is not a member", opts.id)))?;
    if let Some(tls) = &opts.tls {
        // Before binding, so the certificate is named even when the host is
        // not this machine's (`start_on` checks again, for callers that
        // bind themselves).
        tls.check_serves(&addr)?;
    }
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    start_on(opts, listener, shutdown).await
}

/// Like `start`, on an already bound listener (tests bind port 0 first).
pub async fn start_on(
    opts: NodeOptions,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<RunningNode, StartError> {
    opts.timing.validate()?;
    let config = opts.raft_config();
    config.validate()?;
    if let Some(tls) = &opts.tls {
        // Peers call this node by its config file's host; refuse now what
        // each of them would refuse at every handshake.
        let member = &opts.members[opts.id as usize];
        tls.check_serves(member)?;
    }
    let (store, stored) = open_store(&opts)?;
    let metadata = if stored.snapshot.index > 0 {
        Metadata::from_snapshot(stored.snapshot.index, &stored.snapshot.data).map_err(|e| {
            let file = opts.data_dir.as_ref().map_or_else(
                || "the in-memory snapshot".to_owned(),
                |d| d.join("snapshot").display().to_string(),
            );
            StartError::Snapshot(format!(
                "{file}: the metadata map of the snapshot at index {} does not decode: {e}",
                stored.snapshot.index
            ))
        })?
    } else {
        Metadata::new()
    };
    let raft = Raft::new(config, stored.hard_state, stored.snapshot, stored.entries)?;
    // A disk store counts the blocks it holds as it opens.
    let block_store = {
        let dir = opts.data_dir.clone();
        tokio::task::spawn_blocking(move || blocks::BlockStore::open(dir.as_deref()))
            .await
            .map_err(|e| blocks::BlockError::Io(format!("opening the block store: {e}")))??
    };

    let (status_tx, status_rx) = watch::channel(NodeStatus {
        raft: raft.status(),
        crashed: false,
        files: metadata.len(),
        failed: None,
    });
    let (req_tx, req_rx) = mpsc::channel(4096);
    let members: Arc<[String]> = opts.members.clone().into();
    // Resolving the members' hosts may block on DNS.
    let identity = {
        let (id, members) = (opts.id, members.clone());
        tokio::task::spawn_blocking(move || Identity::new(id, members))
            .await
            .map_err(|e| StartError::Timing(format!("resolving the members' hosts: {e}")))?
    };
    let identity = Arc::new(identity);
    let transport = Transport {
        key: opts.cluster_key.clone(),
        headers: identity.headers(),
        tls: opts.tls.as_ref().map(|t| t.client.clone()),
    };
    let mut sender = peers::SenderOptions::new(
        opts.timing.peer_timeout,
        opts.max_inflight,
        opts.max_bytes_per_message,
    );
    sender.transport = transport.clone();
    sender.node = opts.id;
    sender.net = opts.net.clone();
    let (peers, peer_stats): (Vec<_>, Vec<_>) = opts
        .members
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            if i as u64 == opts.id {
                return (None, None);
            }
            let (tx, stats) = peers::spawn_sender(
                i as u64,
                addr,
                sender.clone(),
                req_tx.clone(),
                status_rx.clone(),
            );
            (Some(tx), Some(stats))
        })
        .unzip();
    let peer_stats: peers::PeerTable = peer_stats.into_iter().flatten().collect();
    let server_stats = Arc::new(ServerStats::default());
    let node_metrics = Arc::new(NodeMetrics::new(metrics::Sources {
        status: status_rx.clone(),
        peers: peer_stats.clone(),
        server: server_stats.clone(),
        blocks: Some(block_store.clone()),
    }));
    let (events, _) = broadcast::channel(1024);
    let block_feed = blocks::refs::MapFeed::new();
    let lanes = PeerLanes { lanes: peers };
    let publisher = Publisher::new(opts.id, status_tx, events.clone());
    let (id, tick, threshold) = (opts.id, opts.timing.tick, opts.snapshot_threshold);
    let members_v = opts.members.clone();
    let (map_changes, driver) = match store {
        // Memory writes are instant: no thread.
        store @ AnyStore::Mem(_) => {
            let rt = Runtime::new(
                id,
                members_v,
                raft,
                metadata,
                InlineWriter::new(store),
                lanes,
                publisher,
                threshold,
            )
            .with_metrics(node_metrics.raft.clone())
            .with_block_feed(block_feed.clone());
            (
                rt.map_changes(),
                tokio::spawn(driver::run(rt, req_rx, tick, shutdown.clone())),
            )
        }
        store @ AnyStore::Disk(_) => {
            // Under `--fsync never` nothing is fsynced: nothing to time.
            let wal =
                (opts.fsync == storage::FsyncPolicy::Always).then(|| node_metrics.wal.clone());
            let writer = ThreadWriter::spawn(id, store, &req_tx, wal);
            let rt = Runtime::new(
                id, members_v, raft, metadata, writer, lanes, publisher, threshold,
            )
            .with_metrics(node_metrics.raft.clone())
            .with_block_feed(block_feed.clone());
            (
                rt.map_changes(),
                tokio::spawn(driver::run(rt, req_rx, tick, shutdown.clone())),
            )
        }
    };
    let block_service = blocks::BlockService::new(
        opts.id,
        members.clone(),
        block_store,
        opts.blocks.clone(),
        opts.timing.peer_timeout,
        transport,
        status_rx.clone(),
    )
    .with_net(opts.net.clone());
    let verifier = auth::Verifier::new(
        opts.cluster_key.as_deref().cloned(),
        opts.client_key.as_deref().cloned(),
    )
    .map(Arc::new);
    let handle = NodeHandle::new(opts.id, members, req_tx, status_rx, events)
        .with_map_changes(map_changes)
        .with_blocks(block_service.clone())
        .with_data_dir(opts.data_dir.as_deref())
        .with_peer_stats(peer_stats)
        .with_identity(identity)
        .with_auth(verifier.clone())
        .with_metrics(node_metrics);
    tokio::spawn(blocks::repair::run(
        block_service,
        handle.clone(),
        block_feed,
        shutdown.clone(),
    ));
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: "listener".into(),
        source,
    })?;
    let mut sd = shutdown;
    let server_opts = ServerOptions {
        auth: verifier,
        stats: server_stats,
        tls: match &opts.tls {
            Some(tls) => Some(tls.server.clone()),
            None => opts.server.tls.clone(),
        },
        ..opts.server.clone()
    };
    let server = tokio::spawn(server::serve(
        listener,
        handle.clone(),
        server_opts,
        async move {
            let _ = sd.wait_for(|s| *s).await;
        },
    ));
    Ok(RunningNode {
        handle,
        addr,
        driver,
        server,
    })
}

/// The node's log store: memory, or the write-ahead log in `data_dir`,
/// recovered; and what it holds, for the core (a restarted node replays its
/// committed entries into the metadata map from the first `Ready` on).
fn open_store(opts: &NodeOptions) -> Result<(AnyStore, Stored), StartError> {
    let Some(dir) = &opts.data_dir else {
        return Ok((AnyStore::Mem(Volatile), Stored::default()));
    };
    let meta = ClusterMeta {
        id: opts.id,
        members: opts.members.clone(),
    };
    let disk = DiskOptions {
        fsync: opts.fsync,
        ..Default::default()
    };
    let (store, rec) = DiskStore::open(dir, &meta, disk)?;
    tracing::info!(
        node = opts.id,
        dir = %dir.display(),
        segments = rec.segments,
        entries = rec.entries,
        fsync = ?opts.fsync,
        took_ms = rec.took.as_secs_f64() * 1e3,
        "recovered the write-ahead log"
    );
    Ok((AnyStore::Disk(Box::new(store)), rec.loaded))
}
