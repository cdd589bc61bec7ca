//! The in-process cluster's real crash: `Cluster::kill_and_restart` drops a
//! node's memory and starts it again from its data directory alone (what the
//! dashboard's `k` does). Its applied map comes back from the write-ahead
//! log, it rejoins, and writes go on; a cluster kept in memory refuses.
//! With a small snapshot threshold, a follower crashed while the leader
//! compacts its log catches up through `installSnapshot` over the wire, and
//! comes back from its snapshot file after a kill.

mod common;

use std::time::Duration;

use surfstore::cluster::{Cluster, ClusterError, ClusterOptions};
use surfstore::node::command::Hash;
use surfstore::node::events::EventKind;
use surfstore::node::storage::FsyncPolicy;
use surfstore::node::{NodeHandle, NodeStatus};
use tokio::net::TcpListener;

fn options(data_dir: Option<std::path::PathBuf>) -> ClusterOptions {
    ClusterOptions {
        timing: common::fast_timing(),
        seed: Some(11),
        data_dir,
        ..Default::default()
    }
}

async fn start(data_dir: Option<std::path::PathBuf>) -> Cluster {
    start_with(options(data_dir)).await
}

async fn start_with(opts: ClusterOptions) -> Cluster {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let members = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    Cluster::start_on(members, listeners, &opts).await.unwrap()
}

/// Waits on node's status watch (an event) until `pred` holds.
async fn wait_for(h: &NodeHandle, pred: impl Fn(&NodeStatus) -> bool) {
    let mut w = h.watch();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !pred(&w.borrow_and_update()) {
            w.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; status {:?}", h.status()));
}

/// Waits until `h` has applied version 1 of `name`: checked again after
/// every status change (an applied entry changes the status).
async fn wait_for_version(h: &NodeHandle, name: &str) {
    let mut w = h.watch();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            w.borrow_and_update();
            if h.get_version(name.to_owned()).await.unwrap() == 1 {
                return;
            }
            w.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} never applied; status {:?}", h.status()));
}

async fn leader(c: &Cluster) -> NodeHandle {
    let l = tokio::time::timeout(Duration::from_secs(20), c.wait_for_leader(None))
        .await
        .expect("a leader within 20 s");
    c.handle(l).clone()
}

/// Creates `name` (or, after a failed attempt whose outcome is unknown,
/// `name-again`...); returns the name written.
async fn write(c: &Cluster, name: &str) -> String {
    let mut name = name.to_owned();
    loop {
        let l = leader(c).await;
        match l.update_file(name.clone(), 1, vec![Hash::text("h")]).await {
            Ok(true) => return name,
            Ok(false) => panic!("fresh file {name} refused"),
            // Leadership moved while the call was pending: the outcome is
            // unknown, so try again under a new name on the new leader.
            Err(_) => name.push_str("-again"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_comes_back_from_its_data_directory() {
    let dir = std::env::temp_dir().join(format!("surfstore-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = start(Some(dir.clone())).await;
    let mut before = Vec::new();
    for k in 0..20 {
        before.push(write(&c, &format!("before-{k}")).await);
    }
    // Kill the leader: the hardest case (it holds the most recent state).
    let victim = leader(&c).await.id;
    let applied_before = c.handle(victim).status().raft.applied_index;
    let h = c.kill_and_restart(victim).await.unwrap();
    // The new node starts from disk: nothing applied until the log replays.
    wait_for(&h, |s| {
        s.raft.applied_index >= applied_before && s.files >= 20
    })
    .await;
    assert!(!h.status().crashed);
    for k in 0..20 {
        write(&c, &format!("after-{k}")).await;
    }
    // It rejoins and follows the new writes too.
    let last = leader(&c).await.status().raft.commit_index;
    wait_for(&h, |s| s.raft.applied_index >= last && s.files >= 40).await;
    assert_eq!(h.get_version(before[0].clone()).await.unwrap(), 1);
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_cluster_refuses_a_kill() {
    let mut c = start(None).await;
    let err = match c.kill_and_restart(1).await {
        Ok(_) => panic!("an in-memory node was killed and restarted"),
        Err(e) => e,
    };
    assert!(matches!(err, ClusterError::InMemory(1)), "{err}");
    assert!(err.to_string().contains("in memory"), "{err}");
    // Node 1 is untouched.
    assert!(c.handle(1).status().raft.id == 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_crashed_while_the_leader_compacts_catches_up_through_install_snapshot() {
    let dir = std::env::temp_dir().join(format!("surfstore-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = ClusterOptions {
        snapshot_threshold: 100,
        fsync: FsyncPolicy::Never,
        ..options(Some(dir.clone()))
    };
    let mut c = start_with(opts).await;
    let first = write(&c, "first").await;
    let l = leader(&c).await;
    let f = c.handle((l.id + 1) % 3).clone();
    f.crash().await.unwrap();
    let f_last = f.status().raft.last_index;
    let mut written = Vec::new();
    for k in 0..450 {
        written.push(write(&c, &format!("while-crashed-{k}")).await);
    }
    // Every live node compacted past what the crashed follower holds.
    let l = leader(&c).await;
    wait_for(&l, |s| s.raft.snapshot_index > f_last + 300).await;
    assert!(
        dir.join(format!("node{}", l.id)).join("snapshot").exists(),
        "the leader's snapshot file is on disk"
    );
    let mut events = f.events();
    f.restore().await.unwrap();
    // The last write is applied last: once it is there, all of them are.
    wait_for_version(&f, &written[449]).await;
    let st = f.status();
    assert!(
        st.raft.snapshot_index > f_last + 300,
        "the follower's log starts at the leader's snapshot ({st:?})"
    );
    let mut installed = false;
    while let Ok(ev) = events.try_recv() {
        installed |= matches!(ev.kind, EventKind::SnapshotInstalled { .. });
    }
    assert!(installed, "the follower installed the leader's snapshot");
    assert!(st.files >= 451, "{st:?}");
    assert_eq!(f.get_version(written[0].clone()).await.unwrap(), 1);
    assert_eq!(f.get_version(first).await.unwrap(), 1);
    // It follows the log again after the snapshot...
    let after = write(&c, "after").await;
    wait_for_version(&f, &after).await;
    let last = f.status().raft.applied_index;
    // ...and a kill brings it back from its snapshot file and log alone.
    let h = c.kill_and_restart(f.id).await.unwrap();
    let restarted = h.status();
    assert!(
        restarted.raft.snapshot_index > f_last + 300 && restarted.files >= 300,
        "restarted with the map from its snapshot: {restarted:?}"
    );
    wait_for(&h, |s| s.raft.applied_index >= last && s.files >= 452).await;
    assert_eq!(h.get_version(after).await.unwrap(), 1);
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
