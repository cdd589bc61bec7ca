//! Measures small-block uploads on an in-process 3-node loopback cluster
//! (default timing; by default every node has a temporary data directory, so
//! every block is fsynced before it counts; `--memory` keeps blocks in
//! memory): N blocks of SIZE bytes sent with `putblock` one by one (16 calls
//! in flight) against the same count sent with `putblocks` in batches of
//! BATCH (4 calls in flight), each on a fresh cluster, one client, all calls
//! to the leader. Prints blocks/s of both, their ratio, and the peer calls
//! the leader's pushers made.
//!
//!     cargo run --release --example putblocks_bench [-- N SIZE BATCH [--memory]]
//!
//! Defaults: N=10000, SIZE=1024, BATCH=256.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surfstore::cluster::{Cluster, ClusterOptions};
use surfstore::node::blocks::replication::PushNumbers;
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

/// A loopback cluster and the data directory it owns (removed on drop).
struct Bench {
    cluster: Cluster,
    leader: usize,
    dir: Option<PathBuf>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

async fn cluster(disk: bool) -> Bench {
    let dir = disk.then(|| {
        let d = std::env::temp_dir().join(format!(
            "surfstore-bench-putblocks-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let opts = ClusterOptions {
        seed: Some(99),
        data_dir: dir.clone(),
        ..Default::default()
    };
    let cluster = Cluster::start_loopback(3, &opts).await.unwrap();
    let leader = cluster.wait_for_leader(None).await as usize;
    Bench {
        cluster,
        leader,
        dir,
    }
}

impl Bench {
    fn client(&self) -> Client {
        Client::new(
            &self.cluster.members()[self.leader],
            Duration::from_secs(60),
        )
    }

    fn pushed(&self) -> PushNumbers {
        self.cluster
            .handle(self.leader as u64)
            .blocks()
            .unwrap()
            .push_numbers()
    }
}

/// `n` distinct blocks of `size` bytes (a counter in the first bytes).
fn blocks(n: usize, size: usize) -> Arc<Vec<Vec<u8>>> {
    let seed = rand::random::<u64>();
    Arc::new(
        (0..n)
            .map(|i| {
                let mut b = vec![0u8; size.max(16)];
                b[..8].copy_from_slice(&(i as u64).to_le_bytes());
                b[8..16].copy_from_slice(&seed.to_le_bytes());
                b.truncate(size.max(16));
                b
            })
            .collect(),
    )
}

/// Sends `jobs` units of work with `inflight` tasks; each task takes the
/// next unit from a shared counter and `send`s it.
async fn run<F, Fut>(jobs: usize, inflight: usize, send: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..inflight)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs {
                        return;
                    }
                    send(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let disk = !args.iter().any(|a| a == "--memory");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = nums.first().copied().unwrap_or(10_000);
    let size = nums.get(1).copied().unwrap_or(1024);
    let batch = nums.get(2).copied().unwrap_or(256).max(1);
    println!(
        "3 nodes, loopback, in-process, blocks {}; {n} blocks of {size} bytes; 1 client",
        if disk { "on disk (fsync)" } else { "in memory" }
    );

    let one = {
        let b = cluster(disk).await;
        let data = blocks(n, size);
        let client = b.client();
        let took = run(n, 16, move |i| {
            let (client, data) = (client.clone(), data.clone());
            async move {
                let r = client
                    .call("surfstore.putblock", &[Value::Base64(data[i].clone())])
                    .await;
                assert_eq!(r.unwrap(), Value::Bool(true));
            }
        })
        .await;
        let rate = n as f64 / took.as_secs_f64();
        println!(
            "putblock,  16 in flight:      {took:>8.2?}  {rate:>9.0} blocks/s  pushers: {:?}",
            b.pushed()
        );
        rate
    };

    let many = {
        let b = cluster(disk).await;
        let data = blocks(n, size);
        let client = b.client();
        let calls = n.div_ceil(batch);
        let took = run(calls, 4, move |c| {
            let (client, data) = (client.clone(), data.clone());
            async move {
                let part = &data[c * batch..((c + 1) * batch).min(data.len())];
                let list = Value::Array(part.iter().map(|d| Value::Base64(d.clone())).collect());
                let r = client.call("surfstore.putblocks", &[list]).await.unwrap();
                assert_eq!(r.as_array().map(<[Value]>::len), Some(part.len()));
            }
        })
        .await;
        let rate = n as f64 / took.as_secs_f64();
        println!(
            "putblocks, {batch} a call, 4 in flight: {took:>8.2?}  {rate:>9.0} blocks/s  pushers: {:?}",
            b.pushed()
        );
        rate
    };
    println!("putblocks / putblock: {:.1}x", many / one);
}
