//! A follower that stops answering must not cost the leader memory: three
//! `run-server.sh` processes (in memory, ports 9710-9712), a writer doing
//! `updatefile` continuously, one follower SIGSTOPped for 30 s. While it is
//! stopped, every `surfstore.status` of the leader must show that follower's
//! queue at no more than 3 messages and 1 MiB (a probe, a heartbeat, a vote
//! request at most; without the replacement policy the leader queues a new
//! probe of the whole backlog every heartbeat, 20 a second). After SIGCONT
//! the follower must catch up (`tester_getversion`) with no election (the
//! leader's term and role unchanged).
//!
//! `SILENT_FOLLOWER_SECS=180 cargo test --release --test silent_follower --
//! --nocapture` runs the 3-minute version and prints the leader's VmRSS
//! before and after the stop.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use surfstore::xmlrpc::Value;

mod procs;
use procs::*;

const PORTS: [u16; 3] = [9710, 9711, 9712];
const MAX_QUEUED_MSGS: i64 = 3;
const MAX_QUEUED_BYTES: i64 = 1 << 20;
const FILE: &str = "silent.txt";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Polls until `f` holds, or panics after `limit` saying `what`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_costs_the_leader_a_bounded_queue_and_no_election() {
    let stop_secs: u64 = std::env::var("SILENT_FOLLOWER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let args: Vec<String> = std::env::var("SILENT_FOLLOWER_ARGS")
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let log = std::env::var("SILENT_FOLLOWER_LOG").unwrap_or_else(|_| "warn".into());
    let nodes = Nodes::start("silent-follower", &PORTS, &args, &log, Stdio::inherit);
    let clients = clients(&PORTS);
    // A leader, and both followers caught up with it.
    let leader = wait_for_leader(&clients).await;
    let follower = (leader + 1) % 3;
    let before = status(&clients[leader]).await.unwrap();
    let term = int(&before, "term");

    // The writer: one updatefile after another through the leader, paced at
    // most 200 a second, until told to stop; it reports the last version.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let wc = clients[leader].clone();
    let writer = tokio::spawn(async move {
        let mut version = 0i64;
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        while !*stop_rx.borrow_and_update() {
            tokio::select! {
                _ = pace.tick() => {}
                _ = stop_rx.changed() => break,
            }
            let args = [
                Value::String(FILE.into()),
                Value::Int(version as i32 + 1),
                Value::Array(vec![Value::String("h".into())]),
            ];
            match wc.call("surfstore.updatefile", &args).await {
                Ok(Value::Bool(true)) => version += 1,
                other => panic!("updatefile v{} failed: {other:?}", version + 1),
            }
        }
        version
    });
    // Writes flow to every node before the stop.
    wait_until(
        Duration::from_secs(10),
        "the follower applying writes",
        || {
            let c = clients[follower].clone();
            async move {
                matches!(c.call("surfstore.tester_getversion", &[Value::String(FILE.into())]).await,
                Ok(v) if v.as_i64().unwrap_or(0) >= 50)
            }
        },
    )
    .await;

    let leader_pid = nodes.pid(leader);
    let rss_before = rss_kib(leader_pid);
    let applied_at_stop = int(&status(&clients[leader]).await.unwrap(), "applied_index");
    signal(nodes.pid(follower), "STOP");
    let stopped = Instant::now();
    let mut max_msgs = 0;
    let mut max_bytes = 0;
    let mut polls = 0;
    while stopped.elapsed() < Duration::from_secs(stop_secs) {
        let s = status(&clients[leader])
            .await
            .expect("the leader answers status during the stop");
        assert_eq!(int(&s, "term"), term, "no election during the stop");
        let Value::Array(peers) = field(&s, "peers") else {
            panic!("peers is not an array")
        };
        let p = peers
            .iter()
            .find(|p| int(p, "id") == follower as i64)
            .expect("the stopped follower is listed");
        let (msgs, bytes) = (int(p, "queued_msgs"), int(p, "queued_bytes"));
        max_msgs = max_msgs.max(msgs);
        max_bytes = max_bytes.max(bytes);
        assert!(
            msgs <= MAX_QUEUED_MSGS && bytes <= MAX_QUEUED_BYTES,
            "after {:?} of silence the leader queues {msgs} messages, {bytes} bytes for the stopped follower",
            stopped.elapsed()
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during = status(&clients[leader]).await.unwrap();
    let written_during_stop = int(&during, "applied_index") - applied_at_stop;
    let rss_after = rss_kib(leader_pid);
    signal(nodes.pid(follower), "CONT");
    stop_tx.send(true).unwrap();
    let last = writer.await.expect("the writer never failed");
    println!(
        "stopped {stop_secs} s: {written_during_stop} entries committed meanwhile ({:.0}/s); \
         peer queue at most {max_msgs} msgs / {max_bytes} bytes over {polls} polls; \
         leader VmRSS {rss_before} kB -> {rss_after} kB ({:+} kB)",
        written_during_stop as f64 / stop_secs as f64,
        rss_after as i64 - rss_before as i64
    );
    assert!(
        written_during_stop >= 10 * stop_secs as i64,
        "the writer kept committing with two of three nodes ({written_during_stop} entries)"
    );

    // The follower catches up, and nobody started an election.
    let fc = clients[follower].clone();
    wait_until(Duration::from_secs(20), "the follower catching up", || {
        let fc = fc.clone();
        async move {
            matches!(fc.call("surfstore.tester_getversion", &[Value::String(FILE.into())]).await,
                Ok(v) if v.as_i64() == Some(last))
        }
    })
    .await;
    let mut terms = BTreeMap::new();
    for (i, c) in clients.iter().enumerate() {
        terms.insert(i, int(&status(c).await.unwrap(), "term"));
    }
    assert!(
        terms.values().all(|&t| t == term),
        "no election: every node still in term {term}: {terms:?}"
    );
    let after = status(&clients[leader]).await.unwrap();
    assert_eq!(field(&after, "role"), &Value::String("leader".into()));
    drop(nodes);
}
