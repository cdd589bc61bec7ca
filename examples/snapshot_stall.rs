//! What taking snapshots of a large map costs the clients: an in-process
//! 3-node loopback cluster (logs in memory, default timing) is loaded with
//! FILES files by 64 concurrent clients, then one client makes sequential
//! `updatefile` calls for SECONDS while the nodes snapshot every 10,000
//! entries; its latency (median, p99, max) is printed next to the same run
//! with snapshots off, and the number of snapshots the leader took meanwhile.
//!
//!     cargo run --release --example snapshot_stall [-- FILES SECONDS]
//!
//! Defaults: 100,000 files, 5 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use surfstore::cluster::{Cluster, ClusterOptions};
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

fn update(name: String) -> [Value; 3] {
    [
        Value::String(name),
        Value::Int(1),
        Value::Array(vec![
            Value::String(format!("{:064x}", 1)),
            Value::String(format!("{:064x}", 2)),
        ]),
    ]
}

struct Run {
    p50: Duration,
    p99: Duration,
    max: Duration,
    calls: usize,
    snapshots: u64,
    /// Calls that failed because leadership moved (retried at the new leader).
    failed: usize,
}

async fn run(files: usize, secs: u64, snapshot_threshold: u64) -> Run {
    let opts = ClusterOptions {
        snapshot_threshold,
        ..Default::default()
    };
    let cluster = Cluster::start_loopback(3, &opts).await.unwrap();
    let leader = cluster.wait_for_leader(None).await;
    let addr = cluster.members()[leader as usize].clone();
    // Load the map: 64 clients, each its own keep-alive connection.
    let per = files.div_ceil(64);
    let mut load = Vec::new();
    for c in 0..64 {
        let client = Arc::new(Client::new(&addr, Duration::from_secs(30)));
        load.push(tokio::spawn(async move {
            for k in 0..per {
                let r = client
                    .call("surfstore.updatefile", &update(format!("load-{c}-{k}")))
                    .await
                    .expect("a stable leader while loading");
                assert_eq!(r, Value::Bool(true));
            }
        }));
    }
    for t in load {
        t.await.unwrap();
    }
    let mut leader = cluster.wait_for_leader(None).await;
    let mut client = Client::new(&cluster.members()[leader as usize], Duration::from_secs(30));
    let mut last_snapshot = cluster.handle(leader).status().raft.snapshot_index;
    let mut lat = Vec::new();
    let started = Instant::now();
    let (mut snapshots, mut failed) = (0, 0);
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let name = format!("timed-{}-{failed}", lat.len());
        match client.call("surfstore.updatefile", &update(name)).await {
            Ok(r) => {
                lat.push(t.elapsed());
                assert_eq!(r, Value::Bool(true));
            }
            Err(e) => {
                // Leadership moved: the call's fate is unknown; count it and
                // go on at the new leader (under a fresh name).
                eprintln!("  (call failed: {e})");
                failed += 1;
                leader = cluster.wait_for_leader(None).await;
                client = Client::new(&cluster.members()[leader as usize], Duration::from_secs(30));
            }
        }
        let now = cluster.handle(leader).status().raft.snapshot_index;
        if now != last_snapshot {
            snapshots += 1;
            last_snapshot = now;
        }
    }
    cluster.shutdown().await;
    lat.sort_unstable();
    Run {
        p50: lat[lat.len() / 2],
        p99: lat[lat.len() * 99 / 100],
        max: *lat.last().unwrap(),
        calls: lat.len(),
        snapshots,
        failed,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    println!(
        "3 nodes in one process over loopback, logs in memory, {} cores; map of {files} files, then 1 client for {secs} s:",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (name, threshold) in [
        ("snapshots off          ", 0),
        ("snapshot every 10,000  ", 10_000),
    ] {
        let r = run(files, secs, threshold).await;
        println!(
            "  {name} updatefile median {:.3} ms  p99 {:.3} ms  max {:.1} ms  ({} calls, {} failed over a leader change; the leader took {} snapshots meanwhile)",
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.calls,
            r.failed,
            r.snapshots
        );
    }
}
