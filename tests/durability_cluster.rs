//! The in-process cluster's real crash: `Cluster::kill_and_restart` drops a
//! node's memory and starts it again from its data directory alone (what the
//! dashboard's `k` does). Its applied map comes back from the write-ahead
//! log, it rejoins, and writes go on; a cluster kept in memory refuses.

use std::time::Duration;

use surfstore::cluster::{Cluster, ClusterError, ClusterOptions};
use surfstore::node::{NodeHandle, NodeStatus, Timing};
use surfstore::xmlrpc::Value;
use tokio::net::TcpListener;

fn options(data_dir: Option<std::path::PathBuf>) -> ClusterOptions {
    ClusterOptions {
        timing: Timing {
            tick: Duration::from_millis(5),
            election_min: Duration::from_millis(100),
            election_max: Duration::from_millis(200),
            heartbeat: Duration::from_millis(25),
            peer_timeout: Duration::from_millis(500),
        },
        seed: Some(11),
        data_dir,
        ..Default::default()
    }
}

async fn start(data_dir: Option<std::path::PathBuf>) -> Cluster {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let members = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    Cluster::start_on(members, listeners, &options(data_dir))
        .await
        .unwrap()
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

async fn leader(c: &Cluster) -> NodeHandle {
    for h in c.handles() {
        wait_for(&h, |s| s.raft.leader.is_some()).await;
    }
    loop {
        if let Some(l) = c.leader() {
            return c.handle(l).clone();
        }
        let h = c.handle(0).clone();
        wait_for(&h, |s| s.raft.leader.is_some()).await;
        tokio::task::yield_now().await;
    }
}

async fn write(c: &Cluster, name: &str) {
    let mut name = name.to_owned();
    loop {
        let l = leader(c).await;
        match l
            .update_file(name.clone(), 1, vec![Value::String("h".into())])
            .await
        {
            Ok(true) => return,
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
    for k in 0..20 {
        write(&c, &format!("before-{k}")).await;
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
    assert_eq!(h.get_version("before-0".into()).await.unwrap(), 1);
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
