//! `GET /metrics`: one node's numbers in the OpenMetrics text format
//! (`prometheus-client`), on the node's own XML-RPC port.
//!
//! Promises:
//! - One [`Registry`] per node, built at start ([`NodeMetrics::new`]); no
//!   global state, so the M nodes of `run-cluster.sh` in one process each
//!   report their own numbers.
//! - Most numbers are read at scrape time from what the node already keeps
//!   (the published `NodeStatus`, the peer senders' [`PeerTable`], the HTTP
//!   server's [`ServerStats`], the block store's held counts): a scrape costs
//!   the hot paths nothing and never asks the driver.
//! - The few numbers counted where they happen are `prometheus-client`
//!   atomics kept in fixed structs ([`RaftCounters`], [`RpcCounters`]): one
//!   relaxed add, no allocation, no lock. The two WAL histograms take a short
//!   mutex once per group commit, on the storage thread, never on a tokio
//!   worker.
//! - Every label set is bounded: `method` is one of [`METHODS`] or `other`
//!   (a client cannot grow memory by inventing names), `code` one of the
//!   fault codes or `other`, `peer` a member id, `role` one of four.
//! - A scrape never fails: an encoding error (none is expected; the sink is
//!   a `String`) becomes a 500 page that says so.

mod collect;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use crate::node::blocks::BlockStore;
use crate::node::driver::NodeStatus;
use crate::node::peers::PeerTable;
use crate::xmlrpc::server::{Page, ServerStats};

/// The `Content-Type` of what [`NodeMetrics::page`] serves.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What every metric name starts with (`surfstore_term`, ...).
pub const PREFIX: &str = "surfstore";

/// The XML-RPC methods counted under their own `method` label (without the
/// `surfstore.` prefix). Any other name is counted as `other`. Add a method
/// here when `NodeHandle::dispatch_from` learns it.
pub const METHODS: [&str; 27] = [
    "ping",
    "getfileinfomap",
    "updatefile",
    "tester_getversion",
    "isLeader",
    "isleader",
    "members",
    "crash",
    "restore",
    "transferLeader",
    "status",
    "backup",
    "isCrashed",
    "iscrashed",
    "appendEntries",
    "requestVote",
    "timeoutNow",
    "installSnapshot",
    "getblock",
    "putblock",
    "hasblocks",
    "storeBlock",
    "readBlock",
    "storeBlocks",
    "putblocks",
    "getblocks",
    "waitForChanges",
];

/// The label of every method name not in [`METHODS`].
pub const OTHER: &str = "other";

/// Fault codes counted under their own `code` label (`crate::node::error`);
/// any other code is counted as `other`.
const FAULT_CODES: usize = 8;

/// Counted by the runtime where things happen (plain atomics; cloning
/// shares them). A runtime that is not a node's (the simulation, the paper
/// tests) keeps its own unregistered set.
#[derive(Clone, Debug, Default)]
pub struct RaftCounters {
    /// Proposals the core took as leader (each is one log entry).
    pub proposals: Counter,
    /// Committed entries applied to this node's map (no-op entries included).
    pub commits: Counter,
    /// Elections this node started (it became a candidate; pre-votes that
    /// failed do not count).
    pub elections: Counter,
    /// Times this node learned of a leader other than the last one it knew.
    pub leader_changes: Counter,
}

/// The storage thread's group commits (`runtime::io::ThreadWriter`).
#[derive(Clone, Debug)]
pub struct WalMetrics {
    /// How long each fsync of the write-ahead log took, in seconds.
    pub fsync_seconds: Histogram,
    /// Log entries each fsync made durable (a group commit's batch).
    pub fsync_entries: Histogram,
}

impl Default for WalMetrics {
    fn default() -> Self {
        WalMetrics {
            // 50 µs .. ~1.6 s.
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 1 .. 8192 entries.
            fsync_entries: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        }
    }
}

impl WalMetrics {
    /// One fsync that took `seconds` and covered `entries` log entries.
    pub fn observe_fsync(&self, seconds: f64, entries: usize) {
        self.fsync_seconds.observe(seconds);
        self.fsync_entries.observe(entries as f64);
    }
}

/// XML-RPC calls and faults by method, as fixed arrays: the method's slot is
/// found by a scan of [`METHODS`] (no allocation), `other` being the last.
#[derive(Debug)]
pub struct RpcCounters {
    calls: [Counter; METHODS.len() + 1],
    /// `faults[method][code]`, codes 1..=7 at their number, `other` at 0.
    faults: [[Counter; FAULT_CODES]; METHODS.len() + 1],
}

impl Default for RpcCounters {
    fn default() -> Self {
        RpcCounters {
            calls: std::array::from_fn(|_| Counter::default()),
            faults: std::array::from_fn(|_| std::array::from_fn(|_| Counter::default())),
        }
    }
}

impl RpcCounters {
    /// The slot of wire method name `method` (`surfstore.updatefile`).
    pub fn slot(method: &str) -> usize {
        method
            .strip_prefix("surfstore.")
            .and_then(|m| METHODS.iter().position(|k| *k == m))
            .unwrap_or(METHODS.len())
    }

    /// The label of slot `slot`.
    pub fn label(slot: usize) -> &'static str {
        METHODS.get(slot).copied().unwrap_or(OTHER)
    }

    /// A call of the method in `slot` arrived.
    pub fn call(&self, slot: usize) {
        self.calls[slot.min(METHODS.len())].inc();
    }

    /// The call of the method in `slot` was answered with fault `code`.
    pub fn fault(&self, slot: usize, code: i32) {
        let code = usize::try_from(code)
            .ok()
            .filter(|c| (1..FAULT_CODES).contains(c))
            .unwrap_or(0);
        self.faults[slot.min(METHODS.len())][code].inc();
    }

    /// Calls so far of the method in `slot`.
    pub fn calls(&self, slot: usize) -> u64 {
        self.calls.get(slot).map_or(0, Counter::get)
    }

    /// Faults so far of the method in `slot`, all codes.
    pub fn faults(&self, slot: usize) -> u64 {
        self.faults
            .get(slot)
            .map_or(0, |codes| codes.iter().map(Counter::get).sum())
    }
}

/// What the registry reads at scrape time besides its own counters.
pub struct Sources {
    pub status: watch::Receiver<NodeStatus>,
    pub peers: PeerTable,
    pub server: Arc<ServerStats>,
    pub blocks: Option<BlockStore>,
}

/// One node's metrics: the registry `GET /metrics` encodes, and the
/// counters the node's parts update.
pub struct NodeMetrics {
    registry: Registry,
    pub raft: RaftCounters,
    pub wal: WalMetrics,
    pub rpc: Arc<RpcCounters>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// A registry over `sources` and fresh counters.
    pub fn new(sources: Sources) -> NodeMetrics {
        let raft = RaftCounters::default();
        let wal = WalMetrics::default();
        let rpc = Arc::new(RpcCounters::default());
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "proposals",
            "Proposals this node took as leader (one log entry each)",
            raft.proposals.clone(),
        );
        registry.register(
            "commits",
            "Committed log entries applied to this node's map",
            raft.commits.clone(),
        );
        registry.register(
            "elections",
            "Elections this node started as a candidate",
            raft.elections.clone(),
        );
        registry.register(
            "leader_changes",
            "Times this node learned of a leader other than the last one it knew",
            raft.leader_changes.clone(),
        );
        registry.register_with_unit(
            "wal_fsync",
            "Duration of each fsync of the write-ahead log (group commit)",
            Unit::Seconds,
            wal.fsync_seconds.clone(),
        );
        registry.register(
            "wal_fsync_entries",
            "Log entries made durable by each fsync of the write-ahead log",
            wal.fsync_entries.clone(),
        );
        registry.register_collector(Box::new(collect::Scrape {
            sources,
            rpc: rpc.clone(),
        }));
        NodeMetrics {
            registry,
            raft,
            wal,
            rpc,
        }
    }

    /// The whole exposition, ending in `# EOF`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 << 10);
        text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// `GET /metrics`.
    pub fn page(&self) -> Page {
        match self.encode() {
            Ok(body) => Page {
                status: 200,
                content_type: CONTENT_TYPE,
                body: body.into(),
            },
            Err(e) => Page {
                status: 500,
                content_type: "text/plain; charset=utf-8",
                body: format!("encoding the metrics failed: {e}\n").into(),
            },
        }
    }
}
