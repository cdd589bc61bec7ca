//! `cluster::Cluster`, the library behind run-cluster.sh: every node on its
//! configured port, one merged event feed subscribed before the first
//! election, crash and restore through the handles seen in the feed and from
//! outside, a port in use refused with nothing left bound, and `shutdown`
//! freeing every port.

mod common;

use std::path::Path;
use std::time::Duration;

use surfstore::cluster::{Cluster, ClusterError, ClusterOptions, Feed, FeedItem};
use surfstore::node::events::EventKind;
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

fn free_addrs(m: usize) -> Vec<String> {
    let probes: Vec<std::net::TcpListener> = (0..m)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    probes
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

fn config(addrs: &[String]) -> surfstore::config::ClusterConfig {
    let mut text = format!("M: {}\n", addrs.len());
    for (i, a) in addrs.iter().enumerate() {
        text.push_str(&format!("metadata{i}: {a}\n"));
    }
    surfstore::config::parse(&text, Path::new("test.txt")).unwrap()
}

fn options() -> ClusterOptions {
    ClusterOptions {
        timing: common::fast_timing(),
        seed: Some(7),
        ..Default::default()
    }
}

/// The next feed event satisfying `pred` (skipping others).
async fn next_event(
    feed: &mut Feed,
    what: &str,
    pred: impl Fn(u64, &EventKind) -> bool,
) -> (u64, EventKind) {
    let wait = async {
        loop {
            match feed.recv().await {
                Some(FeedItem::Event(ev)) if pred(ev.node, &ev.kind) => return (ev.node, ev.kind),
                Some(_) => {}
                None => panic!("the feed closed while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} in the feed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_on_its_ports_reports_events_and_shuts_down() {
    let addrs = free_addrs(3);
    let mut cluster = Cluster::start(&config(&addrs), &options()).await.unwrap();
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.members(), &addrs[..]);
    let mut feed = cluster.take_events().expect("the feed is handed out once");
    assert!(cluster.take_events().is_none());

    // The first election is in the feed: it was subscribed before it began.
    let (candidate, _) = next_event(&mut feed, "an election", |_, k| {
        matches!(k, EventKind::ElectionStarted { term: 1 })
    })
    .await;
    let (leader, _) = next_event(&mut feed, "a leader", |_, k| {
        matches!(k, EventKind::LeaderElected { .. })
    })
    .await;
    assert!(candidate < 3 && leader < 3);

    // Outside clients reach every node on its configured port.
    let clients: Vec<Client> = addrs
        .iter()
        .map(|a| Client::new(a, Duration::from_secs(10)))
        .collect();
    for c in &clients {
        assert_eq!(
            c.call("surfstore.ping", &[]).await.unwrap(),
            Value::Bool(true)
        );
    }

    // A crash through the handle is what `isCrashed` reports from outside,
    // and one over XML-RPC is in the feed like one through the handle.
    let leader = leader as usize;
    cluster.handle(leader as u64).crash().await.unwrap();
    assert_eq!(
        clients[leader]
            .call("surfstore.isCrashed", &[])
            .await
            .unwrap(),
        Value::Bool(true)
    );
    next_event(&mut feed, "the crash", |n, k| {
        n == leader as u64 && *k == EventKind::Crashed
    })
    .await;
    clients[leader]
        .call("surfstore.restore", &[])
        .await
        .unwrap();
    next_event(&mut feed, "the restore", |n, k| {
        n == leader as u64 && *k == EventKind::Restored
    })
    .await;
    assert!(!cluster.handle(leader as u64).status().crashed);

    cluster.shutdown().await;
    for a in &addrs {
        assert!(
            std::net::TcpListener::bind(a).is_ok(),
            "{a} still bound after shutdown"
        );
    }
}

#[tokio::test]
async fn a_port_in_use_is_refused_and_nothing_stays_bound() {
    let mut addrs = free_addrs(2);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    addrs.insert(1, taken_addr.clone());
    match Cluster::start(&config(&addrs), &options()).await {
        Err(e @ ClusterError::Bind { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&taken_addr) && msg.contains("in use"), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started on a port in use"),
    }
    for a in [&addrs[0], &addrs[2]] {
        assert!(std::net::TcpListener::bind(a).is_ok(), "{a} left bound");
    }
}

#[tokio::test]
async fn bad_timing_is_refused_before_anything_listens() {
    let addrs = free_addrs(1);
    let mut opts = options();
    opts.timing.heartbeat = Duration::from_millis(500);
    match Cluster::start(&config(&addrs), &opts).await {
        Err(e @ ClusterError::Timing(_)) => assert!(e.to_string().contains("heartbeat"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started with a heartbeat above the election timeout"),
    }
    assert!(std::net::TcpListener::bind(&addrs[0]).is_ok());
}
