//! `cluster::Cluster`, the library behind run-cluster.sh: every node on its
//! configured port, one merged event feed subscribed before the first
//! election, crash and restore through the handles seen in the feed and from
//! outside, a port in use refused with nothing left bound, and `shutdown`
//! freeing every port; and the shared partition filter: an isolated leader
//! steps down (check-quorum), the others elect, block calls fail fast over
//! cut links, healing brings the old leader back as a follower without
//! deposing anyone, and the nodes log each peer's reachability once per
//! transition.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use surfstore::cluster::{Cluster, ClusterError, ClusterOptions, Feed, FeedItem};
use surfstore::node::command::Hash;
use surfstore::node::events::EventKind;
use surfstore::node::raft::{NodeId, Role};
use surfstore::node::NodeStatus;
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

/// What a loaded 2-core machine may add to a Raft deadline counted in ticks
/// (the driver's ticks fall behind the wall clock when its task waits).
const SCHEDULING_SLACK: Duration = Duration::from_secs(1);

/// Waits on every node's status watch (no polling) until `pred` holds over
/// all statuses, for at most `timeout`.
async fn wait_statuses<T>(
    cluster: &Cluster,
    what: &str,
    timeout: Duration,
    mut pred: impl FnMut(&[NodeStatus]) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut changes = tokio::task::JoinSet::new();
        for h in cluster.handles() {
            let mut w = h.watch();
            w.mark_unchanged();
            changes.spawn(async move { w.changed().await.is_ok() });
        }
        let statuses: Vec<NodeStatus> = cluster.handles().iter().map(|h| h.status()).collect();
        if let Some(v) = pred(&statuses) {
            return v;
        }
        if tokio::time::timeout_at(deadline, changes.join_next())
            .await
            .is_err()
        {
            panic!("timed out after {timeout:?} waiting for {what}: {statuses:#?}");
        }
    }
}

/// Everything the process logs at INFO (one subscriber for the test binary).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log from byte `from` on.
fn log_since(from: usize) -> String {
    let buf = logs().lock().unwrap();
    String::from_utf8_lossy(&buf[from.min(buf.len())..]).into_owned()
}

/// What node `node` logged about the reachability of `peer` at `addr`, in
/// order: `false` for "unreachable", `true` for "reachable again", with the
/// line.
fn reachability(log: &str, node: NodeId, peer: NodeId, addr: &str) -> Vec<(bool, String)> {
    let about = format!("peer {peer} ({addr}) ");
    let field = format!("node={node} ");
    log.lines()
        .filter(|l| l.contains(&about) && l.contains(&field))
        .filter_map(|l| {
            if l.contains(&format!("{about}unreachable: ")) {
                Some((false, l.to_owned()))
            } else if l.contains(&format!("{about}reachable again")) {
                Some((true, l.to_owned()))
            } else {
                None
            }
        })
        .collect()
}

/// Once per transition: never the same state twice in a row, starting from
/// reachable.
fn assert_transitions(states: &[(bool, String)], who: &str) {
    let mut last = true;
    for (up, line) in states {
        assert_ne!(
            *up, last,
            "{who}: logged twice in a row: {line}\n{states:#?}"
        );
        last = *up;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_steps_down_and_rejoins_as_a_follower_when_healed() {
    let log_start = logs().lock().unwrap().len();
    let opts = options();
    let mut cluster = Cluster::start_loopback(3, &opts).await.unwrap();
    let addrs = cluster.members().to_vec();
    let mut feed = cluster.take_events().unwrap();
    let old = cluster.wait_for_leader(None).await;
    let term = cluster.handle(old).status().raft.term;
    let hashes = || vec![Hash::text("h1")];
    assert!(cluster
        .handle(old)
        .update_file("before.txt".into(), 1, hashes())
        .await
        .unwrap());

    // Isolated, the leader hears no majority: it steps down for that reason
    // (a cut link is no contact, unlike a crashed peer's fault 1), within two
    // election timeouts.
    let cut_at = Instant::now();
    assert!(cluster.partition().isolate(old));
    next_event(&mut feed, "the isolated leader's step-down", |n, k| {
        n == old && matches!(k, EventKind::QuorumLost { .. })
    })
    .await;
    let took = cut_at.elapsed();
    let bound = opts.timing.election_max * 2 + SCHEDULING_SLACK;
    assert!(
        took <= bound,
        "stepped down {took:?} after the cut; check-quorum allows 2 x {:?} (+{SCHEDULING_SLACK:?})",
        opts.timing.election_max
    );
    assert!(!cluster.handle(old).status().is_leader());

    // The other two elect a leader of a higher term and commit without it.
    let new = cluster.wait_for_leader(Some(old)).await;
    let new_term = cluster.handle(new).status().raft.term;
    assert!(new_term > term, "{new_term} > {term}");
    assert!(cluster
        .handle(new)
        .update_file("during.txt".into(), 1, hashes())
        .await
        .unwrap());
    let committed = cluster.handle(new).status().raft.commit_index;
    // Cut off, the old leader cannot raise its term (pre-vote) and lags.
    let s = cluster.handle(old).status();
    assert_eq!(s.raft.term, term, "{s:#?}");
    assert!(s.raft.applied_index < committed, "{s:#?}");

    // Block calls over cut links fail at once, as unanswered, not crashed.
    let blocks = cluster.handle(new).blocks().unwrap().clone();
    let hash = blocks.put(b"cut off".to_vec()).await.unwrap();
    let asked = Instant::now();
    let err = cluster
        .handle(old)
        .blocks()
        .unwrap()
        .get(&hash)
        .await
        .expect_err("no peer can be asked");
    assert!(err.to_string().contains("is cut (partition)"), "{err}");
    // Into a silent network, each call would wait out the block client's
    // timeout (5 s); over a cut link it fails at once.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    // Healed, the old leader follows the new one and catches up; nobody is
    // deposed (its pre-votes, if any, are refused: the others hear a leader).
    let healed_at = SystemTime::now();
    assert!(cluster.partition().heal_all());
    wait_statuses(
        &cluster,
        "the old leader following the new one",
        Duration::from_secs(10),
        |s| {
            let o = &s[old as usize].raft;
            (o.role == Role::Follower
                && o.leader == Some(new)
                && o.term == new_term
                && o.applied_index >= committed)
                .then_some(())
        },
    )
    .await;
    assert!(cluster
        .handle(new)
        .update_file("after.txt".into(), 1, hashes())
        .await
        .unwrap());
    let s = cluster.handle(new).status();
    assert!(s.is_leader() && s.raft.term == new_term, "{s:#?}");
    while let Ok(item) = feed.try_recv() {
        if let FeedItem::Event(ev) = item {
            let election = matches!(
                ev.kind,
                EventKind::ElectionStarted { .. }
                    | EventKind::LeaderElected { .. }
                    | EventKind::LeadershipLost { .. }
                    | EventKind::QuorumLost { .. }
            );
            assert!(!(election && ev.at >= healed_at), "after the heal: {ev}");
        }
    }

    // The logs: the isolated leader saw each peer's link cut; the new
    // leader saw the old one unreachable, then reachable again; each
    // transition logged once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = log_since(log_start);
        let seen = reachability(&log, new, old, &addrs[old as usize]);
        if seen.last().is_some_and(|(up, _)| *up) {
            assert_transitions(&seen, "the new leader about the old");
            assert!(
                seen.iter().any(|(up, l)| !up
                    && l.contains(&format!(
                        "the link from node {new} to node {old} is cut (partition)"
                    ))),
                "{seen:#?}"
            );
            // Its first loss may be a heartbeat's answer, cut on the way back.
            for peer in (0..3).filter(|&p| p != old) {
                let seen = reachability(&log, old, peer, &addrs[peer as usize]);
                assert_transitions(&seen, "the old leader");
                let (a, b) = (old.min(peer), old.max(peer));
                assert!(
                    seen.iter().any(|(up, l)| !up
                        && (l.contains(&format!("the link from node {a} to node {b} is cut"))
                            || l.contains(&format!("the link from node {b} to node {a} is cut")))),
                    "node {old} about {peer}: {seen:#?}\n{log}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {new} never logged node {old} reachable again: {seen:#?}\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.shutdown().await;
}
