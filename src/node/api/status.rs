//! `surfstore.status`: what an operator asks of one node, as one struct:
//! its Raft state from the published `NodeStatus` and, for each other member,
//! the numbers of this node's sender to it (queue, calls in flight, last
//! round trip). Any node answers, also while crashed; nothing here asks the
//! driver, so a busy or stuck driver does not hold it up.

use std::collections::BTreeMap;
use std::path::Path;

use super::{no_args, NodeHandle};
use crate::node::error::NodeError;
use crate::node::raft::Role;
use crate::xmlrpc::Value;

/// An int when it fits in 32 bits (what every XML-RPC client reads), `i8`
/// otherwise.
fn int(v: u64) -> Value {
    i32::try_from(v).map_or(Value::I8(v.min(i64::MAX as u64) as i64), Value::Int)
}

/// `-1` for "none", else the number.
fn id_or_none(v: Option<u64>) -> Value {
    v.map_or(Value::Int(-1), int)
}

/// Bytes in the files of data directory `dir` besides the blocks: the
/// write-ahead log's segments, the snapshot, the hard state and metadata
/// (a few files; the blocks are counted as they come and go instead).
/// Files that vanish while it looks (a segment compacted away) count 0.
fn log_bytes(dir: &Path) -> u64 {
    fn files(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
    files(dir) + files(&dir.join("wal"))
}

pub(super) async fn status(node: &NodeHandle, params: Vec<Value>) -> Result<Value, NodeError> {
    no_args("status", params)?;
    // A handful of stats, off the async workers.
    let log = match node.data_dir() {
        Some(dir) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || log_bytes(&dir))
                .await
                .ok()
        }
        None => None,
    };
    let held = node.blocks().map(|b| b.store.held()).unwrap_or_default();
    let st = node.status();
    let r = &st.raft;
    let role = match r.role {
        Role::Leader => "leader",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Follower => "follower",
    };
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    put("id", int(node.id));
    put(
        "cluster",
        Value::String(node.cluster_id().unwrap_or_default()),
    );
    put("refused_peer_calls", int(node.refused_peer_calls()));
    put("role", Value::String(role.into()));
    put("term", int(r.term));
    put("leader", id_or_none(r.leader));
    put("transferring_to", id_or_none(r.transferee));
    put("commit_index", int(r.commit_index));
    put("applied_index", int(r.applied_index));
    put("last_index", int(r.last_index));
    put("snapshot_index", int(r.snapshot_index));
    put("files", int(st.files as u64));
    put("blocks", int(held.blocks));
    put("block_bytes", int(held.bytes));
    // On disk: the blocks' bytes and the log's files; -1 in memory.
    put(
        "disk_bytes",
        log.map_or(Value::Int(-1), |log| int(log + held.bytes)),
    );
    put("crashed", Value::Bool(st.crashed));
    put(
        "failed",
        Value::String(st.failed.clone().unwrap_or_default()),
    );
    let peers = node
        .peer_numbers()
        .into_iter()
        .map(|p| {
            let match_index = r
                .progress
                .iter()
                .find(|pr| pr.id == p.id)
                .map(|pr| pr.match_index);
            let mut m = BTreeMap::new();
            let mut put = |k: &str, v: Value| {
                m.insert(k.to_owned(), v);
            };
            put("id", int(p.id));
            put("addr", Value::String(p.addr));
            put("queued_msgs", int(p.queued_msgs));
            put("queued_bytes", int(p.queued_bytes));
            put("inflight", int(p.inflight));
            put("rtt_us", int(p.rtt_us));
            put("calls", int(p.calls));
            put("replaced", int(p.replaced));
            put("overflowed", int(p.overflowed));
            put("match_index", id_or_none(match_index));
            put("refused_with", Value::Int(p.refused_with));
            Value::Struct(m)
        })
        .collect();
    put("peers", Value::Array(peers));
    Ok(Value::Struct(out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{broadcast, mpsc, watch};

    use super::*;
    use crate::node::driver::NodeStatus;
    use crate::node::peers::{PeerStats, PeerTable};
    use crate::node::raft::{PeerProgress, Status};
    use crate::xmlrpc::codec::MethodCall;

    fn raft_status() -> Status {
        Status {
            id: 1,
            role: Role::Leader,
            term: 7,
            vote: Some(1),
            leader: Some(1),
            last_index: 12,
            last_term: 7,
            snapshot_index: 3,
            commit_index: 11,
            applied_index: 10,
            transferee: None,
            progress: vec![PeerProgress {
                id: 0,
                match_index: 9,
                next_index: 10,
            }],
        }
    }

    #[tokio::test]
    async fn status_reports_the_node_and_its_peers_even_while_crashed() {
        let (_status_tx, status_rx) = watch::channel(NodeStatus {
            raft: raft_status(),
            crashed: true,
            files: 4,
            failed: None,
        });
        // No driver behind the channel: status never asks it.
        let (req_tx, _req_rx) = mpsc::channel(1);
        let (events, _) = broadcast::channel(1);
        let table: PeerTable = vec![
            Arc::new(PeerStats::new(0, "h:1")),
            Arc::new(PeerStats::new(2, "h:3")),
        ]
        .into();
        let members: Arc<[String]> = vec!["h:1".into(), "h:2".into(), "h:3".into()].into();
        let node = NodeHandle::new(1, members, req_tx, status_rx, events).with_peer_stats(table);
        let v = node
            .dispatch(MethodCall {
                method: "surfstore.status".into(),
                params: vec![],
            })
            .await
            .unwrap();
        let Value::Struct(s) = v else {
            panic!("not a struct: {v:?}")
        };
        assert_eq!(s["role"], Value::String("leader".into()));
        assert_eq!(s["term"], Value::Int(7));
        assert_eq!(s["leader"], Value::Int(1));
        assert_eq!(s["commit_index"], Value::Int(11));
        assert_eq!(s["applied_index"], Value::Int(10));
        assert_eq!(s["last_index"], Value::Int(12));
        assert_eq!(s["snapshot_index"], Value::Int(3));
        assert_eq!(s["crashed"], Value::Bool(true));
        assert_eq!(s["failed"], Value::String(String::new()));
        // No block store and no data directory.
        assert_eq!(s["blocks"], Value::Int(0));
        assert_eq!(s["block_bytes"], Value::Int(0));
        assert_eq!(s["disk_bytes"], Value::Int(-1));
        let Value::Array(peers) = &s["peers"] else {
            panic!("peers is not an array")
        };
        assert_eq!(peers.len(), 2);
        let Value::Struct(p0) = &peers[0] else {
            panic!()
        };
        assert_eq!(p0["addr"], Value::String("h:1".into()));
        assert_eq!(p0["match_index"], Value::Int(9));
        for k in ["queued_msgs", "queued_bytes", "inflight", "rtt_us"] {
            assert_eq!(p0[k], Value::Int(0), "{k}");
        }
        let Value::Struct(p2) = &peers[1] else {
            panic!()
        };
        assert_eq!(p2["match_index"], Value::Int(-1), "no progress known");

        let err = node
            .dispatch(MethodCall {
                method: "surfstore.status".into(),
                params: vec![Value::Int(1)],
            })
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::BadRequest(_)), "{err:?}");
    }

    #[test]
    fn log_bytes_counts_the_log_and_snapshot_files_but_not_the_blocks() {
        let dir = std::env::temp_dir().join(format!("surfstore-status-{}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("wal")).unwrap();
        std::fs::create_dir_all(dir.join("blocks").join("ab")).unwrap();
        std::fs::write(dir.join("snapshot"), [0u8; 1000]).unwrap();
        std::fs::write(dir.join("hardstate"), [0u8; 24]).unwrap();
        std::fs::write(dir.join("wal").join("00000001.wal"), [0u8; 4096]).unwrap();
        std::fs::write(dir.join("wal").join("00000002.wal"), [0u8; 100]).unwrap();
        std::fs::write(dir.join("blocks").join("ab").join("abcd"), [0u8; 7777]).unwrap();
        assert_eq!(log_bytes(&dir), 1000 + 24 + 4096 + 100);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(log_bytes(&dir), 0, "a missing directory holds nothing");
    }
}
