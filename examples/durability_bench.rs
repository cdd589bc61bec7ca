//! The durability numbers of README.md "Durability", on this machine:
//! 1. fsync latency of the disk under DIR (4 KiB append + fdatasync);
//! 2. `updatefile` throughput of an in-process 3-node loopback cluster with
//!    the log in memory, on disk with `--fsync=never`, and on disk with
//!    `--fsync=always`, at 1 and 64 concurrent clients (each client a
//!    keep-alive XML-RPC connection to the leader making sequential calls;
//!    each call creates a new file with a 2-hash hashlist);
//! 3. restart time of a node whose log holds 100,000 `updatefile` entries:
//!    recovering the write-ahead log, and start until all 100,000 files are
//!    back in the applied map;
//! 4. restart time of a node holding a snapshot of a 100,000-file map (and an
//!    empty log after it): recovering the store (reading and checking the
//!    snapshot file) and start until the map is loaded; plus how long
//!    encoding that map as a snapshot and writing its file take.
//!
//!     cargo run --release --example durability_bench [-- SECONDS [DIR]]
//!
//! SECONDS per throughput run (default 5); DIR is scratch space on the disk
//! to measure (default target/durability-bench), removed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surfstore::cluster::{Cluster, ClusterOptions};
use surfstore::node::command::{Command, Hash};
use surfstore::node::metadata::Metadata;
use surfstore::node::raft::{Entry, HardState, Snapshot};
use surfstore::node::storage::{ClusterMeta, DiskOptions, DiskStore, FsyncPolicy, LogStore};
use surfstore::node::{self, NodeHandle, NodeOptions};
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn fsync_latency(dir: &Path) -> (Duration, Duration) {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![7u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..200 {
        f.write_all(&block).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let _ = std::fs::remove_file(&path);
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

async fn wait_for(handle: &NodeHandle, pred: impl Fn(&node::NodeStatus) -> bool) {
    let mut w = handle.watch();
    while !pred(&w.borrow_and_update()) {
        w.changed().await.unwrap();
    }
}

/// Starts a 3-node loopback cluster; `None` storage = memory.
async fn cluster(data: Option<(&Path, FsyncPolicy)>) -> Cluster {
    let mut opts = ClusterOptions::default();
    if let Some((dir, fsync)) = data {
        opts.data_dir = Some(dir.to_owned());
        opts.fsync = fsync;
    }
    Cluster::start_loopback(3, &opts).await.unwrap()
}

/// (updates per second, calls that failed because leadership moved).
async fn throughput(data: Option<(&Path, FsyncPolicy)>, clients: usize, secs: u64) -> (f64, u64) {
    let cluster = cluster(data).await;
    let addrs = cluster.members().to_vec();
    let leader = cluster.wait_for_leader(None).await as usize;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let clients: Vec<Client> = addrs
            .iter()
            .map(|a| Client::new(a, Duration::from_secs(10)))
            .collect();
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut k, mut node) = (0, leader);
            while !stop.load(Ordering::Relaxed) {
                let params = [
                    Value::String(format!("c{c}-f{k}")),
                    Value::Int(1),
                    Value::Array(vec![Value::String("h1".into()), Value::String("h2".into())]),
                ];
                k += 1;
                match clients[node].call("surfstore.updatefile", &params).await {
                    Ok(r) => {
                        assert_eq!(r, Value::Bool(true));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    // Leadership moved (an election under load): count it
                    // and look for the new leader.
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        node = (node + 1) % clients.len();
                    }
                }
            }
        }));
    }
    // Warm up for a second, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = done.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let n = done.load(Ordering::Relaxed) - before;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    cluster.shutdown().await;
    (rate, failed)
}

/// Writes a one-node log of `n` committed `updatefile` entries, then times
/// recovery and a full start (applied map rebuilt).
async fn restart(dir: &Path, n: u64) -> (Duration, Duration, u64) {
    let (listener, meta) = one_node().await;
    let node_dir = dir.join("restart");
    let bytes;
    {
        let (mut store, _) = DiskStore::open(&node_dir, &meta, DiskOptions::default()).unwrap();
        let mut batch = Vec::new();
        for i in 1..=n {
            let cmd = Command::UpdateFile {
                filename: format!("file-{i:06}.txt"),
                version: 1,
                hashlist: vec![Hash::text(format!("{:064x}", i))],
            };
            batch.push(Entry {
                term: 1,
                index: i,
                data: cmd.encode(),
            });
            if batch.len() == 1000 || i == n {
                let hs = HardState {
                    term: 1,
                    vote: Some(0),
                    commit: i,
                };
                store.persist(Some(hs), &batch).unwrap();
                batch.clear();
            }
        }
        bytes = store.stats().bytes;
    }
    let t = Instant::now();
    let (store, rec) = DiskStore::open(&node_dir, &meta, DiskOptions::default()).unwrap();
    let recover = t.elapsed();
    assert_eq!(rec.entries, n);
    assert_eq!(rec.loaded.entries.len() as u64, n);
    drop(store);

    let start = time_start(listener, meta, &node_dir, n).await;
    (recover, start, bytes)
}

/// A one-node cluster on a loopback port: its listener and identity.
async fn one_node() -> (TcpListener, ClusterMeta) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let meta = ClusterMeta {
        id: 0,
        members: vec![listener.local_addr().unwrap().to_string()],
    };
    (listener, meta)
}

/// Starts the node from `node_dir` and times it until all `n` files are in
/// its map, then stops it.
async fn time_start(listener: TcpListener, meta: ClusterMeta, node_dir: &Path, n: u64) -> Duration {
    let (tx, rx) = watch::channel(false);
    let mut opts = NodeOptions::new(0, meta.members);
    opts.data_dir = Some(node_dir.to_owned());
    // Measure loading what is stored, not a snapshot taken on the way.
    opts.snapshot_threshold = 0;
    let t = Instant::now();
    let running = node::start_on(opts, listener, rx).await.unwrap();
    wait_for(&running.handle, |s| s.files as u64 == n).await;
    let start = t.elapsed();
    let _ = tx.send(true);
    let _ = running.driver.await;
    start
}

/// What `restart_from_snapshot` measured.
struct SnapshotRestart {
    bytes: usize,
    encode: Duration,
    write: Duration,
    recover: Duration,
    start: Duration,
}

/// Writes a one-node store holding only a snapshot of an `n`-file map, then
/// times recovery and a full start (map loaded from the snapshot).
async fn restart_from_snapshot(dir: &Path, n: u64) -> SnapshotRestart {
    let (listener, meta) = one_node().await;
    let node_dir = dir.join("restart-snapshot");
    let mut map = Metadata::new();
    for i in 1..=n {
        let cmd = Command::UpdateFile {
            filename: format!("file-{i:06}.txt"),
            version: 1,
            hashlist: vec![
                Hash::text(format!("{:064x}", i)),
                Hash::text(format!("{:064x}", i + n)),
            ],
        };
        map.apply(i, &cmd);
    }
    let t = Instant::now();
    let data = map.encode_snapshot();
    let encode = t.elapsed();
    let snap = Snapshot {
        index: n,
        term: 1,
        data,
    };
    let bytes = snap.data.len();
    let write;
    {
        let (mut store, _) = DiskStore::open(&node_dir, &meta, DiskOptions::default()).unwrap();
        let hs = HardState {
            term: 1,
            vote: Some(0),
            commit: n,
        };
        store.persist(Some(hs), &[]).unwrap();
        let t = Instant::now();
        store.save_snapshot(&snap, None).unwrap();
        write = t.elapsed();
    }
    let t = Instant::now();
    let (store, rec) = DiskStore::open(&node_dir, &meta, DiskOptions::default()).unwrap();
    let recover = t.elapsed();
    assert_eq!(rec.loaded.snapshot.index, n);
    drop(store);

    let start = time_start(listener, meta, &node_dir, n).await;
    SnapshotRestart {
        bytes,
        encode,
        write,
        recover,
        start,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = PathBuf::from(args.next().unwrap_or("target/durability-bench".into()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "machine: {} cores; scratch dir {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.display()
    );
    let (p50, p99) = fsync_latency(&dir);
    println!(
        "fsync (4 KiB append + fdatasync, x200): median {:.3} ms  p99 {:.3} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!("updatefile throughput, 3 nodes in one process over loopback, {secs} s per run:");
    for clients in [1, 64] {
        for (name, data) in [
            ("in-memory     ", None),
            ("--fsync=never ", Some(FsyncPolicy::Never)),
            ("--fsync=always", Some(FsyncPolicy::Always)),
        ] {
            let run_dir = dir.join(format!("tp-{clients}-{}", name.trim()));
            let (rate, failed) =
                throughput(data.map(|f| (run_dir.as_path(), f)), clients, secs).await;
            let note = if failed > 0 {
                format!("  ({failed} calls failed over a leader change)")
            } else {
                String::new()
            };
            println!("  {name}  {clients:>2} client(s): {rate:>8.0} updates/s{note}");
            let _ = std::fs::remove_dir_all(&run_dir);
        }
    }
    let n = 100_000;
    let (recover, start, bytes) = restart(&dir, n).await;
    println!(
        "restart with {n} entries in the log ({:.1} MiB): WAL recovery {:.0} ms; start until all {n} files are applied {:.0} ms",
        bytes as f64 / (1 << 20) as f64,
        recover.as_secs_f64() * 1e3,
        start.as_secs_f64() * 1e3
    );
    let r = restart_from_snapshot(&dir, n).await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "restart with a snapshot of {n} files ({:.1} MiB): store recovery {:.0} ms; start until the map is loaded {:.0} ms (taking it: encode {:.0} ms, write + fsync + rename {:.0} ms)",
        r.bytes as f64 / (1 << 20) as f64,
        ms(r.recover),
        ms(r.start),
        ms(r.encode),
        ms(r.write)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
