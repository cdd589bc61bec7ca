//! Measures the sync client against an in-process 3-node loopback cluster
//! (default timing, blocks in memory unless `--disk`, which gives each node a
//! temporary data directory so every block is fsynced before it counts):
//! upload and download throughput of one file of MIB MiB (random bytes) at
//! block sizes 4 KiB and 1 MiB, each on a fresh cluster, then the time to
//! re-sync an unchanged folder of FILES 1 KiB files.
//!
//!     cargo run --release --example client_bench [-- MIB FILES [--disk]]
//!
//! Defaults: MIB=256, FILES=10000. One client, 16 block transfers in flight.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use surfstore::client::{sync, SyncOptions};
use surfstore::cluster::{Cluster, ClusterOptions};

/// A loopback cluster and the data directory it owns (removed on drop).
struct Bench {
    /// Held so the nodes keep running until the bench is dropped.
    _cluster: Cluster,
    addrs: Vec<String>,
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
    let dir = disk.then(|| tmp("cluster"));
    let opts = ClusterOptions {
        seed: Some(99),
        data_dir: dir.clone(),
        ..Default::default()
    };
    let cluster = Cluster::start_loopback(3, &opts).await.unwrap();
    cluster.wait_for_leader(None).await;
    let addrs = cluster.members().to_vec();
    Bench {
        _cluster: cluster,
        addrs,
        dir,
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "surfstore-bench-{tag}-{:016x}",
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let disk = args.iter().any(|a| a == "--disk");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let mib = nums.first().copied().unwrap_or(256);
    let files = nums.get(1).copied().unwrap_or(10_000);
    println!(
        "3 nodes, loopback, in-process, blocks {}; 1 client, 16 transfers in flight",
        if disk { "on disk (fsync)" } else { "in memory" }
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut data = vec![0u8; mib << 20];
    rng.fill(&mut data[..]);
    for bs in [4096usize, 1 << 20] {
        let c = cluster(disk).await;
        let (a, b) = (tmp("a"), tmp("b"));
        std::fs::write(a.join("big.bin"), &data).unwrap();
        let t = Instant::now();
        let s = sync(&c.addrs[0], &SyncOptions::new(&a, bs)).await.unwrap();
        let up = t.elapsed();
        assert_eq!(s.uploaded.len(), 1);
        let t = Instant::now();
        let s = sync(&c.addrs[1], &SyncOptions::new(&b, bs)).await.unwrap();
        let down = t.elapsed();
        assert_eq!(s.downloaded.len(), 1);
        assert!(std::fs::read(b.join("big.bin")).unwrap() == data);
        println!(
            "{mib} MiB file, block {:>7} B: upload {:>7.1} MiB/s ({:.2} s), download {:>7.1} MiB/s ({:.2} s)",
            bs,
            mib_s(data.len(), up),
            up.as_secs_f64(),
            mib_s(data.len(), down),
            down.as_secs_f64()
        );
        let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
    }
    drop(data);

    let c = cluster(disk).await;
    let d = tmp("many");
    for i in 0..files {
        let mut f = vec![0u8; 1024];
        rng.fill(&mut f[..]);
        std::fs::write(d.join(format!("f{i:05}.txt")), f).unwrap();
    }
    let opts = SyncOptions::new(&d, 4096);
    let t = Instant::now();
    let s = sync(&c.addrs[0], &opts).await.unwrap();
    let first = t.elapsed();
    assert_eq!(s.uploaded.len(), files);
    let t = Instant::now();
    let s = sync(&c.addrs[0], &opts).await.unwrap();
    let again = t.elapsed();
    assert!(s.uploaded.is_empty() && s.downloaded.is_empty());
    println!(
        "{files} files of 1 KiB: first sync {:.2} s, re-sync unchanged {:.3} s",
        first.as_secs_f64(),
        again.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&d);
}
