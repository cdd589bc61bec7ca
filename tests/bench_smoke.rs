//! `surfstore bench` against a real 3-node cluster in this process (loopback,
//! logs in memory): it produces numbers, finds the leader from a follower,
//! and follows a leader change during the run. No timing is asserted.

use std::time::Duration;

use surfstore::bench::{self, BenchOptions, System, Workload};
use surfstore::cluster::{Cluster, ClusterOptions};

fn options(addr: &str, clients: usize, duration: Duration) -> BenchOptions {
    let mut o = BenchOptions::new(System::Surfstore);
    o.addr = Some(addr.to_owned());
    o.clients = clients;
    o.duration = duration;
    o.warmup = Duration::from_millis(200);
    o.seed = 7;
    o
}

async fn cluster() -> Cluster {
    let opts = ClusterOptions {
        seed: Some(41),
        ..Default::default()
    };
    Cluster::start_loopback(3, &opts)
        .await
        .expect("cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_two_clients_produce_numbers() {
    let c = cluster().await;
    let leader = c.wait_for_leader(None).await as usize;
    let follower = (leader + 1) % 3;
    let mut o = options(&c.members()[follower], 2, Duration::from_secs(2));
    o.workload = Workload::Mix;
    o.pids = vec![std::process::id()];
    let report = bench::run(&o).await.expect("the bench runs");

    assert!(report.ops() > 0, "no op committed: {}", report.text());
    let all = report.tally.all();
    let (p50, p99, max) = (all.quantile(0.5), all.quantile(0.99), all.max());
    assert!(p50 > Duration::ZERO && p50 <= p99 && p99 <= max);
    assert_eq!(report.setup.leader_at_start, c.members()[leader]);
    assert_eq!(report.setup.nodes, 3);
    assert_eq!(report.setup.entries_read, Some(10), "the seeded map");

    let v: serde_json::Value = serde_json::from_str(&report.json()).expect("JSON parses");
    assert_eq!(v["ops"].as_u64(), Some(report.ops()));
    assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0);
    let lat = &v["latency_ms"];
    let q = |k: &str| {
        lat[k]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{k}: {v}"))
    };
    assert!(q("p50") <= q("p90") && q("p90") <= q("p99"));
    assert!(q("p99") <= q("p999") && q("p999") <= q("max"));
    for kind in ["read", "write"] {
        assert!(
            v["by_kind"][kind]["ops"].as_u64().unwrap() > 0,
            "{kind}: {v}"
        );
    }
    assert_eq!(v["setup"]["clients"].as_u64(), Some(2));
    assert_eq!(v["setup"]["payload_bytes"].as_u64(), Some(64));
    assert_eq!(v["setup"]["workload"].as_str(), Some("mix"));
    assert_eq!(v["setup"]["system"].as_str(), Some("surfstore"));
    assert!(v["errors"].is_object() && v["errors_total"].is_u64());
    // The "servers" are this test process: it certainly used CPU.
    assert!(v["server_cpu_us_per_op"].as_f64().unwrap() > 0.0, "{v}");
    assert!(report.text().contains("ops/s"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_follows_a_leader_crash() {
    let c = cluster().await;
    let leader = c.wait_for_leader(None).await;
    let mut o = options(&c.members()[0], 4, Duration::from_secs(3));
    o.warmup = Duration::ZERO;
    o.workload = Workload::Update;
    let run = tokio::spawn(async move { bench::run(&o).await });

    // Once the bench is writing, crash the leader.
    let mut status = c.handle(leader).watch();
    status
        .wait_for(|s| s.raft.applied_index >= 100)
        .await
        .expect("the leader runs");
    c.handle(leader).crash().await.expect("crash");
    let new_leader = c.wait_for_leader(Some(leader)).await;
    let applied_at_failover = c.handle(new_leader).status().raft.applied_index;

    let report = run
        .await
        .unwrap()
        .expect("the bench runs through the crash");
    assert_eq!(report.setup.leader_at_start, c.members()[leader as usize]);
    // Where the clients ended up is where the cluster's leader is now.
    let now = c.leader().expect("a leader after the run");
    assert_ne!(now, leader);
    assert_eq!(report.setup.leader_at_end, c.members()[now as usize]);
    assert!(report.setup.leader_switches >= 1);
    assert!(
        report.errors() > 0,
        "the crash cost no attempt? {}",
        report.text()
    );
    // Writes went on through the new leader (beyond its no-op entry).
    let applied_after = c.handle(new_leader).status().raft.applied_index;
    assert!(
        applied_after > applied_at_failover + 1,
        "no write after the failover: {applied_at_failover} -> {applied_after}\n{}",
        report.text()
    );
    c.shutdown().await;
}

/// `client_bench` (the sync client's measures against issue 14's targets)
/// at small sizes, on disk with fsync: every measure runs, checks its own
/// outcome (every file uploaded, the download byte-exact, the re-sync
/// moving nothing) and prints a number beside its target. No timing is
/// asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_bench_smoke_runs_every_measure() {
    use surfstore::client::bench::{self as cbench, BenchOptions as ClientBench};
    let o = ClientBench {
        disk: true,
        files: 40,
        mib: 1,
        resync_files: 60,
        parallel: 8,
    };
    let mut rows = Vec::new();
    let measures = cbench::run(&o, |m| rows.push(cbench::row(m)))
        .await
        .expect("the client bench runs");
    assert_eq!(measures.len(), 4, "{rows:?}");
    for m in &measures {
        assert!(m.value.is_finite() && m.value > 0.0, "{m:?}");
    }
    let table = cbench::table(&o, &measures);
    for want in [
        "first sync, 40 files",
        "upload, 1 file of 1 MiB",
        "download",
        "re-sync unchanged, 60 files",
    ] {
        assert!(table.contains(want), "{want:?} missing from\n{table}");
    }
    println!("{table}");
}
