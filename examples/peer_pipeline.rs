//! What the per-peer senders' pipelining and joining buy: `updatefile`
//! throughput of an in-process 3-node loopback cluster at 1 and 64 clients,
//! with `--max-inflight 1` (stop-and-wait: one AppendEntries call at a time
//! per follower) against the default 4 (pipelined on one connection,
//! contiguous queued batches joined), in memory and on disk with every log
//! write fsynced. Also printed: AppendEntries calls the leader made per
//! committed entry (summed over both followers; below 2 means batches were
//! joined or entries batched by the core).
//!
//!     cargo run --release --example peer_pipeline [-- SECONDS [DIR]]
//!
//! SECONDS per run after 1 s of warm-up (default 3); DIR is scratch space for
//! the on-disk runs (default target/peer-pipeline-bench), removed at the end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surfstore::cluster::{Cluster, ClusterOptions};
use surfstore::node::storage::FsyncPolicy;
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

struct Run {
    rate: f64,
    calls_per_entry: f64,
}

async fn run(data: Option<&Path>, max_inflight: usize, clients: usize, secs: u64) -> Run {
    let mut opts = ClusterOptions {
        max_inflight,
        ..Default::default()
    };
    if let Some(dir) = data {
        let _ = std::fs::remove_dir_all(dir);
        opts.data_dir = Some(dir.to_owned());
        opts.fsync = FsyncPolicy::Always;
    }
    let cluster = Cluster::start_loopback(3, &opts).await.unwrap();
    let leader = cluster.wait_for_leader(None).await as usize;
    let handle = cluster.handles()[leader].clone();
    let addr = cluster.members()[leader].clone();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = Client::new(&addr, Duration::from_secs(10));
        let (done, stop) = (done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let params = [
                    Value::String(format!("c{c}-f{k}")),
                    Value::Int(1),
                    Value::Array(vec![Value::String("h1".into()), Value::String("h2".into())]),
                ];
                k += 1;
                let r = client.call("surfstore.updatefile", &params).await;
                assert_eq!(
                    r.ok(),
                    Some(Value::Bool(true)),
                    "no election in a bench run"
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = || handle.peer_numbers().iter().map(|p| p.calls).sum::<u64>();
    let (n0, c0, i0) = (
        done.load(Ordering::Relaxed),
        calls(),
        handle.status().raft.commit_index,
    );
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (n1, c1, i1) = (
        done.load(Ordering::Relaxed),
        calls(),
        handle.status().raft.commit_index,
    );
    let rate = (n1 - n0) as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    cluster.shutdown().await;
    Run {
        rate,
        calls_per_entry: (c1 - c0) as f64 / (i1 - i0).max(1) as f64,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(3, |s| s.parse().expect("SECONDS"));
    let dir = args.next().map_or_else(
        || PathBuf::from("target/peer-pipeline-bench"),
        PathBuf::from,
    );
    println!(
        "3 nodes in one process, loopback, default timing; each call an updatefile of a new \
         file with 2 hashes; {secs} s per run after 1 s warm-up; cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| storage | clients | max_inflight | updatefile/s | AppendEntries calls per entry |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, data) in [
        ("memory", None),
        ("disk, fsync always", Some(dir.as_path())),
    ] {
        for clients in [1, 64] {
            for max_inflight in [1, 4] {
                let r = run(data, max_inflight, clients, secs).await;
                println!(
                    "| {name} | {clients} | {max_inflight} | {:.0} | {:.2} |",
                    r.rate, r.calls_per_entry
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
