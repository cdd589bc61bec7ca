//! The encoder's output, line by line: names, types, units, labels, the
//! histogram layout and the closing `# EOF`; and that a hostile client's
//! method names cannot add series.

use std::sync::Arc;

use tokio::sync::watch;

use super::*;
use crate::node::blocks::BlockStore;
use crate::node::peers::PeerStats;
use crate::node::raft::{Role, Status};

fn status() -> NodeStatus {
    NodeStatus {
        raft: Status {
            id: 1,
            role: Role::Leader,
            term: 7,
            vote: Some(1),
            leader: Some(1),
            last_index: 12,
            last_term: 7,
            snapshot_index: 3,
            commit_index: 11,
            applied_index: 9,
            transferee: None,
            progress: Vec::new(),
        },
        crashed: false,
        files: 4,
        failed: None,
    }
}

fn metrics(blocks: Option<BlockStore>) -> (NodeMetrics, watch::Sender<NodeStatus>) {
    let (tx, rx) = watch::channel(status());
    let peers: PeerTable = vec![
        Arc::new(PeerStats::new(0, "127.0.0.1:1")),
        Arc::new(PeerStats::new(2, "127.0.0.1:3")),
    ]
    .into();
    let m = NodeMetrics::new(Sources {
        status: rx,
        peers,
        server: Arc::new(ServerStats::default()),
        blocks,
    });
    (m, tx)
}

fn lines(m: &NodeMetrics) -> Vec<String> {
    m.encode().unwrap().lines().map(str::to_owned).collect()
}

fn has(lines: &[String], want: &str) {
    assert!(
        lines.iter().any(|l| l == want),
        "no line {want:?} in:\n{}",
        lines.join("\n")
    );
}

#[tokio::test]
async fn raft_state_is_gauges_and_the_role_is_one_of_four() {
    let store = BlockStore::memory();
    store.put(Arc::from(&b"hello"[..])).await.unwrap();
    let (m, tx) = metrics(Some(store));
    let l = lines(&m);
    for want in [
        "# HELP surfstore_term Current Raft term of this node",
        "# TYPE surfstore_term gauge",
        "surfstore_term 7",
        "# TYPE surfstore_role gauge",
        "surfstore_role{role=\"follower\"} 0",
        "surfstore_role{role=\"pre-candidate\"} 0",
        "surfstore_role{role=\"candidate\"} 0",
        "surfstore_role{role=\"leader\"} 1",
        "surfstore_commit_index 11",
        "surfstore_applied_index 9",
        "surfstore_last_index 12",
        "surfstore_snapshot_index 3",
        "surfstore_apply_lag 2",
        "surfstore_files 4",
        "surfstore_crashed 0",
        "surfstore_failed 0",
        "surfstore_blocks 1",
        "# TYPE surfstore_block_bytes gauge",
        "# UNIT surfstore_block_bytes bytes",
        "surfstore_block_bytes 5",
        "surfstore_peer_inflight{peer=\"0\"} 0",
        "surfstore_peer_queued_bytes{peer=\"2\"} 0",
        "surfstore_peer_dropped_total{peer=\"2\",reason=\"overflow\"} 0",
        "surfstore_http_connections_open 0",
        "surfstore_http_requests_total 0",
    ] {
        has(&l, want);
    }
    // No call answered yet: no round trip to report.
    assert!(!l
        .iter()
        .any(|l| l.starts_with("surfstore_peer_rtt_seconds{")));
    assert_eq!(l.last().map(String::as_str), Some("# EOF"));

    // Read at scrape time: a new status shows in the next scrape.
    let mut st = status();
    st.raft.role = Role::Follower;
    st.raft.term = 8;
    st.crashed = true;
    tx.send(st).unwrap();
    let l = lines(&m);
    has(&l, "surfstore_term 8");
    has(&l, "surfstore_role{role=\"leader\"} 0");
    has(&l, "surfstore_role{role=\"follower\"} 1");
    has(&l, "surfstore_crashed 1");
}

#[test]
fn counters_end_in_total_and_histograms_have_cumulative_buckets() {
    let (m, _tx) = metrics(None);
    m.raft.proposals.inc_by(3);
    m.raft.commits.inc();
    m.raft.elections.inc();
    m.raft.leader_changes.inc();
    m.wal.observe_fsync(0.000_3, 5);
    m.wal.observe_fsync(0.002, 1);
    let l = lines(&m);
    for want in [
        "# TYPE surfstore_proposals counter",
        "surfstore_proposals_total 3",
        "surfstore_commits_total 1",
        "surfstore_elections_total 1",
        "surfstore_leader_changes_total 1",
        "# TYPE surfstore_wal_fsync_seconds histogram",
        "# UNIT surfstore_wal_fsync_seconds seconds",
        "surfstore_wal_fsync_seconds_count 2",
        "surfstore_wal_fsync_seconds_bucket{le=\"0.0002\"} 0",
        "surfstore_wal_fsync_seconds_bucket{le=\"0.0004\"} 1",
        "surfstore_wal_fsync_seconds_bucket{le=\"0.0032\"} 2",
        "surfstore_wal_fsync_seconds_bucket{le=\"+Inf\"} 2",
        "# TYPE surfstore_wal_fsync_entries histogram",
        "surfstore_wal_fsync_entries_sum 6.0",
        "surfstore_wal_fsync_entries_count 2",
        "surfstore_wal_fsync_entries_bucket{le=\"1.0\"} 1",
        "surfstore_wal_fsync_entries_bucket{le=\"4.0\"} 1",
        "surfstore_wal_fsync_entries_bucket{le=\"8.0\"} 2",
    ] {
        has(&l, want);
    }
    // No block store: no block lines at all.
    assert!(!l.iter().any(|l| l.contains("surfstore_block")));
}

#[test]
fn every_sample_follows_its_help_and_type_and_names_are_unique() {
    let (m, _tx) = metrics(Some(BlockStore::memory()));
    m.rpc.fault(RpcCounters::slot("surfstore.updatefile"), 2);
    let text = m.encode().unwrap();
    let mut families: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(
                !families.iter().any(|(n, _)| *n == name),
                "family {name} twice"
            );
            current = Some((name, String::new()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            let cur = current.as_mut().expect("TYPE after HELP");
            assert_eq!(cur.0, name);
            cur.1 = ty.to_owned();
            families.push(cur.clone());
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
        } else {
            let (name, ty) = current.as_ref().expect("a sample inside a family");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let sample = series.split('{').next().unwrap();
            let suffixes: &[&str] = match ty.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                "histogram" => &["_sum", "_count", "_bucket"],
                other => panic!("type {other}"),
            };
            assert!(
                suffixes.iter().any(|s| sample == format!("{name}{s}")),
                "{line} is not a sample of {ty} {name}"
            );
            assert!(value.parse::<f64>().is_ok(), "{line}: value");
            assert!(name.starts_with("surfstore_"), "{name}");
        }
    }
    assert!(text.ends_with("# EOF\n"));
    assert!(families.len() > 25, "{families:?}");
}

#[test]
fn unknown_method_names_share_one_label() {
    let (m, _tx) = metrics(None);
    let before = m.encode().unwrap().lines().count();
    for i in 0..10_000 {
        let slot = RpcCounters::slot(&format!("surfstore.made_up_{i}"));
        m.rpc.call(slot);
        m.rpc.fault(slot, 4);
    }
    for name in ["no.prefix", "", "surfstore.", "surfstore.UPDATEFILE"] {
        let slot = RpcCounters::slot(name);
        assert_eq!(RpcCounters::label(slot), OTHER, "{name:?}");
        m.rpc.call(slot);
    }
    let slot = RpcCounters::slot("surfstore.updatefile");
    assert_eq!(RpcCounters::label(slot), "updatefile");
    m.rpc.call(slot);
    // A code outside the known ones goes under `other` too.
    m.rpc.fault(slot, 99);
    let text = m.encode().unwrap();
    let l: Vec<String> = text.lines().map(str::to_owned).collect();
    has(&l, "surfstore_rpc_calls_total{method=\"other\"} 10004");
    has(&l, "surfstore_rpc_calls_total{method=\"updatefile\"} 1");
    has(&l, "surfstore_rpc_calls_total{method=\"ping\"} 0");
    has(
        &l,
        "surfstore_rpc_faults_total{method=\"other\",code=\"4\"} 10000",
    );
    has(
        &l,
        "surfstore_rpc_faults_total{method=\"updatefile\",code=\"other\"} 1",
    );
    // Two fault series appeared; nothing else grew.
    assert_eq!(l.len(), before + 2);
}

#[test]
fn the_page_is_openmetrics() {
    let (m, _tx) = metrics(None);
    let page = m.page();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(page.body.ends_with(b"# EOF\n"));
}
