//! The scrape-time half of `/metrics`: a `prometheus-client` collector that
//! reads what the node already keeps (its published status, its peer
//! senders' numbers, its HTTP server's and block store's counts) each time
//! it is scraped, and the fixed arrays of XML-RPC counters.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{RpcCounters, Sources, FAULT_CODES, METHODS};
use crate::node::raft::Role;

pub(super) struct Scrape {
    pub sources: Sources,
    pub rpc: Arc<RpcCounters>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

const ROLES: [(Role, &str); 4] = [
    (Role::Follower, "follower"),
    (Role::PreCandidate, "pre-candidate"),
    (Role::Candidate, "candidate"),
    (Role::Leader, "leader"),
];

/// Saturates instead of wrapping: a gauge is an `i64`.
fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.raft(&mut enc)?;
        self.peers(&mut enc)?;
        self.rpc(&mut enc)?;
        self.store_and_server(&mut enc)
    }
}

impl Scrape {
    fn raft(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        // Copy out what is needed: the watch's lock is held only this long.
        let (r, crashed, failed, files) = {
            let st = self.sources.status.borrow();
            let r = &st.raft;
            (
                (
                    r.role,
                    r.term,
                    r.commit_index,
                    r.applied_index,
                    r.last_index,
                    r.snapshot_index,
                ),
                st.crashed,
                st.failed.is_some(),
                st.files,
            )
        };
        let (role, term, commit, applied, last, snapshot) = r;
        gauge(enc, "term", "Current Raft term of this node", i(term))?;
        {
            let mut m = enc.encode_descriptor(
                "role",
                "Raft role of this node: 1 for the role it has, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for (r, name) in ROLES {
                let labels = [("role", name)];
                ConstGauge::new(i64::from(r == role)).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            enc,
            "crashed",
            "1 while this node plays crashed (surfstore.crash), else 0",
            i64::from(crashed),
        )?;
        gauge(
            enc,
            "failed",
            "1 once this node stopped for good (a disk write failed), else 0",
            i64::from(failed),
        )?;
        gauge(
            enc,
            "commit_index",
            "Highest log index known committed",
            i(commit),
        )?;
        gauge(
            enc,
            "applied_index",
            "Highest log index applied to the map",
            i(applied),
        )?;
        gauge(
            enc,
            "last_index",
            "Index of the last entry in the log",
            i(last),
        )?;
        gauge(
            enc,
            "snapshot_index",
            "Index the log is compacted through (0: never compacted)",
            i(snapshot),
        )?;
        gauge(
            enc,
            "apply_lag",
            "Committed entries not yet applied (commit_index - applied_index)",
            i(commit.saturating_sub(applied)),
        )?;
        gauge(enc, "files", "Files in the applied map", i(files as u64))
    }

    fn peers(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let peers: Vec<_> = self.sources.peers.iter().map(|p| p.numbers()).collect();
        {
            let mut m = enc.encode_descriptor(
                "peer_rtt",
                "Round trip of the last answered call to the peer (absent before one)",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for p in peers.iter().filter(|p| p.rtt_us > 0) {
                let labels = [("peer", p.id)];
                ConstGauge::new(p.rtt_us as f64 / 1e6).encode(m.encode_family(&labels)?)?;
            }
        }
        let gauges: [(
            &str,
            &str,
            Option<&Unit>,
            fn(&crate::node::peers::PeerNumbers) -> u64,
        ); 3] = [
            (
                "peer_inflight",
                "Calls to the peer written and not yet answered",
                None,
                |p| p.inflight,
            ),
            (
                "peer_queued",
                "Bytes of requests waiting to be sent to the peer",
                Some(&Unit::Bytes),
                |p| p.queued_bytes,
            ),
            (
                "peer_queued_messages",
                "Requests waiting to be sent to the peer",
                None,
                |p| p.queued_msgs,
            ),
        ];
        for (name, help, unit, get) in gauges {
            let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
            for p in &peers {
                let labels = [("peer", p.id)];
                ConstGauge::new(i(get(p))).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "peer_calls",
                "Calls sent to the peer (a joined batch counts once)",
                None,
                MetricType::Counter,
            )?;
            for p in &peers {
                let labels = [("peer", p.id)];
                ConstCounter::new(p.calls).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "peer_dropped",
            "Requests to the peer dropped: replaced by a newer one or stale (replaced), or refused at the queue's bound (overflow)",
            None,
            MetricType::Counter,
        )?;
        for p in &peers {
            for (reason, v) in [("replaced", p.replaced), ("overflow", p.overflowed)] {
                let labels = [("peer", p.id.to_string()), ("reason", reason.to_owned())];
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn rpc(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        {
            let mut m = enc.encode_descriptor(
                "rpc_calls",
                "XML-RPC calls received from the network, by method (unknown names: other)",
                None,
                MetricType::Counter,
            )?;
            for slot in 0..=METHODS.len() {
                let labels = [("method", RpcCounters::label(slot))];
                ConstCounter::new(self.rpc.calls(slot)).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "rpc_faults",
            "XML-RPC calls answered with a fault, by method and fault code (only those seen)",
            None,
            MetricType::Counter,
        )?;
        for slot in 0..=METHODS.len() {
            for code in 0..FAULT_CODES {
                let v = self.rpc.faults[slot][code].get();
                if v == 0 {
                    continue;
                }
                let code = if code == 0 {
                    "other".to_owned()
                } else {
                    code.to_string()
                };
                let labels = [
                    ("method", RpcCounters::label(slot).to_owned()),
                    ("code", code),
                ];
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn store_and_server(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if let Some(store) = &self.sources.blocks {
            let held = store.held();
            gauge(
                enc,
                "blocks",
                "Blocks held in this node's block store",
                i(held.blocks),
            )?;
            let m = enc.encode_descriptor(
                "block",
                "Bytes of the blocks held in this node's block store",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?;
            ConstGauge::new(i(held.bytes)).encode(m)?;
        }
        let s = &self.sources.server;
        gauge(
            enc,
            "http_connections_open",
            "TCP connections the XML-RPC server serves now",
            i(s.open() as u64),
        )?;
        counter(
            enc,
            "http_connections",
            "TCP connections the XML-RPC server accepted",
            s.accepted(),
        )?;
        counter(
            enc,
            "http_requests",
            "HTTP requests received (any path, method or outcome)",
            s.requests(),
        )?;
        counter(
            enc,
            "http_malformed_calls",
            "XML-RPC request bodies that did not parse as a call (answered with fault 3)",
            s.malformed(),
        )
    }
}
