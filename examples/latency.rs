//! Measures, on an in-process 3-node loopback cluster with in-memory storage:
//! time from start to a stable leader, single-client `updatefile` latency
//! (sequential calls over one keep-alive XML-RPC connection, as a Python
//! client would make them), and time from a leader crash to a new leader.
//!
//!     cargo run --release --example latency [-- CALLS]

use std::time::{Duration, Instant};

use surfstore::node::{self, NodeOptions, Timing};
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn wait_leader(handles: &[surfstore::node::NodeHandle], except: Option<usize>) -> usize {
    let mut watches: Vec<_> = handles.iter().map(|h| h.watch()).collect();
    loop {
        let leaders: Vec<usize> = (0..handles.len())
            .filter(|&i| Some(i) != except && handles[i].status().is_leader())
            .collect();
        if let [l] = leaders[..] {
            return l;
        }
        // Wake on any status change.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut tasks = Vec::new();
        for w in watches.iter_mut() {
            let mut w = w.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = w.changed().await;
                let _ = tx.send(()).await;
            }));
        }
        rx.recv().await;
        for t in tasks {
            t.abort();
        }
    }
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let m = 3;
    let mut listeners = Vec::new();
    for _ in 0..m {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let (_shutdown, rx) = watch::channel(false);
    let started = Instant::now();
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let mut opts = NodeOptions::new(i as u64, addrs.clone());
        opts.timing = Timing::default();
        handles.push(node::start_on(opts, l, rx.clone()).await.unwrap().handle);
    }
    let leader = wait_leader(&handles, None).await;
    let to_leader = started.elapsed();

    let client = Client::new(&addrs[leader], Duration::from_secs(10));
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
    handles[leader].crash().await.unwrap();
    let new_leader = wait_leader(&handles, Some(leader)).await;
    let failover = t.elapsed();

    println!("setup: {m} nodes in one process, loopback, in-memory log, default timing (election 150-300 ms, heartbeat 50 ms)");
    println!(
        "start -> leader:               {:>8.1} ms",
        to_leader.as_secs_f64() * 1e3
    );
    println!(
        "updatefile x{calls} (1 client):   median {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "leader {leader} crash -> new leader {new_leader}: {:>8.1} ms",
        failover.as_secs_f64() * 1e3
    );
}
