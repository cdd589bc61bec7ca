//! Measures, on an in-process 3-node loopback cluster with in-memory storage:
//! time from start to a stable leader, single-client `updatefile` latency
//! (sequential calls over one keep-alive XML-RPC connection, as a Python
//! client would make them), and time from a leader crash to a new leader.
//!
//!     cargo run --release --example latency [-- CALLS]

use std::time::{Duration, Instant};

use surfstore::cluster::{Cluster, ClusterOptions};
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let started = Instant::now();
    let cluster = Cluster::start_loopback(3, &ClusterOptions::default())
        .await
        .unwrap();
    let leader = cluster.wait_for_leader(None).await;
    let to_leader = started.elapsed();

    let client = Client::new(&cluster.members()[leader as usize], Duration::from_secs(10));
    let mut lat = Vec::with_capacity(calls);
    for i in 0..calls {
        let params = [
            Value::String(format!("f{}", i % 100)),
            Value::Int((i / 100 + 1) as i32),
            Value::Array(vec![Value::String("h".into())]),
        ];
        let t = Instant::now();
        let r = client.call("surfstore.updatefile", &params).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(r, Value::Bool(true));
    }
    lat.sort();

    let t = Instant::now();
    cluster.handle(leader).crash().await.unwrap();
    let new_leader = cluster.wait_for_leader(Some(leader)).await;
    let failover = t.elapsed();

    println!("setup: 3 nodes in one process, loopback, in-memory log, default timing (election 150-300 ms, heartbeat 50 ms)");
    println!("start -> leader:               {:>8.1} ms", ms(to_leader));
    println!(
        "updatefile x{calls} (1 client):   median {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(lat[lat.len() - 1])
    );
    println!(
        "leader {leader} crash -> new leader {new_leader}: {:>8.1} ms",
        ms(failover)
    );
    cluster.shutdown().await;
}
