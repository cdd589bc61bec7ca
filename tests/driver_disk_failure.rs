//! A failed disk write takes the node down cleanly: the driver task ends
//! instead of panicking, the call that was waiting gets fault 5 naming the
//! failure, the status says `failed`, nothing the failed write promised is
//! sent, and later calls are refused rather than hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use surfstore::node::command::Command;
use surfstore::node::driver::{self, NodeStatus, Request};
use surfstore::node::metadata::Metadata;
use surfstore::node::raft::{Entry, HardState, Raft, RaftConfig, Snapshot};
use surfstore::node::runtime::io::{InlineWriter, PeerLanes};
use surfstore::node::runtime::{Publisher, Runtime};
use surfstore::node::storage::{LogStore, PreparedSnapshot, SnapshotPreparer};
use surfstore::node::NodeError;

/// A store whose writes succeed `ok_writes` times, then fail like a full disk.
struct FailingStore {
    ok_writes: Arc<AtomicUsize>,
}

impl LogStore for FailingStore {
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn write(&mut self, _hs: Option<HardState>, _entries: &[Entry]) -> std::io::Result<()> {
        let left = self.ok_writes.load(Ordering::SeqCst);
        if left == 0 {
            return Err(std::io::Error::other("No space left on device (injected)"));
        }
        self.ok_writes.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
    fn save_snapshot(
        &mut self,
        _s: &Snapshot,
        _p: Option<PreparedSnapshot>,
    ) -> std::io::Result<()> {
        Ok(())
    }
    fn snapshot_preparer(&self) -> Option<SnapshotPreparer> {
        None
    }
}

fn config() -> RaftConfig {
    RaftConfig {
        id: 0,
        members: vec![0],
        election_ticks_min: 2,
        election_ticks_max: 4,
        heartbeat_ticks: 1,
        seed: 7,
        max_entries_per_message: 64,
        max_bytes_per_message: 1 << 20,
        max_inflight: 4,
        pre_vote: true,
        check_quorum: true,
    }
}

fn update(name: &str) -> Command {
    Command::UpdateFile {
        filename: name.into(),
        version: 1,
        hashlist: Vec::new(),
    }
}

#[tokio::test]
async fn a_failed_write_stops_the_node_and_fails_the_waiting_call() {
    let ok_writes = Arc::new(AtomicUsize::new(usize::MAX));
    let store = FailingStore {
        ok_writes: ok_writes.clone(),
    };
    let raft = Raft::new(
        config(),
        HardState::default(),
        Snapshot::default(),
        Vec::new(),
    )
    .unwrap();
    let (status_tx, mut status) = watch::channel(NodeStatus {
        raft: raft.status(),
        crashed: false,
        files: 0,
        failed: None,
    });
    let (events, mut events_rx) = broadcast::channel(64);
    let (tx, rx) = mpsc::channel(64);
    let rt = Runtime::new(
        0,
        vec!["127.0.0.1:1".into()],
        raft,
        Metadata::new(),
        InlineWriter::new(store),
        PeerLanes { lanes: vec![None] },
        Publisher::new(0, status_tx, events),
        0,
    );
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let task = tokio::spawn(driver::run(rt, rx, Duration::from_millis(5), shutdown));
    // A single node elects itself; a first write succeeds.
    status
        .wait_for(|s| s.is_leader())
        .await
        .expect("the driver runs");
    let (reply, answer) = oneshot::channel();
    tx.send(Request::Update {
        cmd: update("a"),
        reply,
    })
    .await
    .unwrap();
    assert!(answer.await.unwrap().unwrap(), "a fresh file is created");

    // The disk fills up: the next write fails.
    ok_writes.store(0, Ordering::SeqCst);
    let (reply, answer) = oneshot::channel();
    tx.send(Request::Update {
        cmd: update("b"),
        reply,
    })
    .await
    .unwrap();
    let err = answer.await.expect("answered, not dropped").unwrap_err();
    match &err {
        NodeError::Unavailable(msg) => {
            assert!(msg.contains("No space left on device"), "{msg}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let failed = status
        .wait_for(|s| s.failed.is_some())
        .await
        .unwrap()
        .failed
        .clone()
        .unwrap();
    assert!(failed.contains("writing the log failed"), "{failed}");
    assert!(
        !status.borrow().is_leader(),
        "a failed node is nobody's leader"
    );
    // The task ended by itself, without a panic.
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the driver stops")
        .expect("no panic");
    // Later calls are refused at once, never left hanging.
    let (reply, answer) = oneshot::channel();
    let sent = tx.send(Request::Update {
        cmd: update("c"),
        reply,
    });
    assert!(sent.await.is_err() || answer.await.is_err());
    let mut saw_failed = false;
    while let Ok(ev) = events_rx.try_recv() {
        saw_failed |= ev.to_string().contains("STOPPED");
    }
    assert!(saw_failed, "a Failed event was published");
}
