//! The pooled client against the real server and against fake servers that
//! misbehave: reuse, faults, timeouts, refused connections, bad answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use surfstore::xmlrpc::client::{CallError, Client};
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions, ServerStats};
use surfstore::xmlrpc::{Fault, Value};

const LIMIT: Duration = Duration::from_secs(10);

/// Echoes its params as an array; `fault` faults; `slow(ms)` sleeps first.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        match call.method.as_str() {
            "fault" => Err(Fault::new(2, "NotLeader: leader is localhost:9002")),
            "slow" => {
                let ms = call.params.first().and_then(Value::as_i64).unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                Ok(Value::Array(call.params))
            }
            _ => Ok(Value::Array(call.params)),
        }
    }
}

/// A running echo server; stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    _stop: oneshot::Sender<()>,
}

async fn start(opts: ServerOptions) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = opts.stats.clone();
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, Echo, opts, async move {
        let _ = stop_rx.await;
    }));
    TestServer {
        addr,
        stats,
        _stop: stop,
    }
}

/// A fake server that answers every connection's first request with `reply`
/// verbatim (or, if `reply` is empty, closes without answering).
async fn fake_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read until the end of the request headers (bodies are small
                // and arrive with them on loopback).
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A port on 127.0.0.1 that nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn sequential_calls_reuse_one_connection() {
    let srv = start(ServerOptions::default()).await;
    let c = Client::new(&srv.addr.to_string(), LIMIT);
    for i in 0..100 {
        let v = c
            .call("echo", &[Value::Int(i), Value::from("x")])
            .await
            .unwrap();
        assert_eq!(v, Value::Array(vec![Value::Int(i), Value::from("x")]));
    }
    // Clones share the pool.
    let c2 = c.clone();
    assert!(c2.call("echo", &[]).await.is_ok());
    assert_eq!(
        srv.stats.accepted(),
        1,
        "every call should reuse the first connection"
    );
    assert_eq!(srv.stats.requests(), 101);
}

#[tokio::test]
async fn concurrent_calls_open_connections_then_reuse_them() {
    let srv = start(ServerOptions::default()).await;
    let c = Client::new(&srv.addr.to_string(), LIMIT);
    for _round in 0..5 {
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.call("slow", &[Value::Int(50), Value::Int(i)]).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    }
    let accepted = srv.stats.accepted();
    assert!(
        (1..=10).contains(&accepted),
        "{accepted} connections for 10 at a time"
    );
}

#[tokio::test]
async fn localhost_name_works() {
    let srv = start(ServerOptions::default()).await;
    let c = Client::new(&format!("localhost:{}", srv.addr.port()), LIMIT);
    assert_eq!(
        c.call("echo", &[Value::Bool(true)]).await.unwrap(),
        Value::Array(vec![Value::Bool(true)])
    );
}

#[tokio::test]
async fn a_fault_is_a_fault() {
    let srv = start(ServerOptions::default()).await;
    let c = Client::new(&srv.addr.to_string(), LIMIT);
    let err = c.call("fault", &[]).await.unwrap_err();
    assert_eq!(
        err.fault(),
        Some(&Fault::new(2, "NotLeader: leader is localhost:9002"))
    );
    // The connection survives a fault.
    assert!(c.call("echo", &[]).await.is_ok());
    assert_eq!(srv.stats.accepted(), 1);
}

#[tokio::test]
async fn times_out_on_a_slow_server() {
    let srv = start(ServerOptions::default()).await;
    let c = Client::new(&srv.addr.to_string(), Duration::from_millis(200));
    let t = Instant::now();
    let err = c.call("slow", &[Value::Int(5_000)]).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // The client is still usable afterwards.
    assert!(c.call("echo", &[]).await.is_ok());
}

#[tokio::test]
async fn closed_port_is_a_quick_connect_error() {
    let addr = closed_port().await;
    let c = Client::new(&addr.to_string(), LIMIT);
    let t = Instant::now();
    let err = c.call("echo", &[]).await.unwrap_err();
    assert!(matches!(err, CallError::Connect(_)), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_bad_address_is_a_connect_error() {
    for addr in ["nonsense", "", "host:port", "a b:1"] {
        let err = Client::new(addr, LIMIT)
            .call("echo", &[])
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Connect(_)), "{addr}: {err:?}");
    }
}

#[tokio::test]
async fn a_non_200_status_is_http() {
    let srv = start(ServerOptions {
        max_body_bytes: 512,
        ..Default::default()
    })
    .await;
    let c = Client::new(&srv.addr.to_string(), LIMIT);
    let err = c
        .call("echo", &[Value::from("x".repeat(1000))])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Http(413)), "{err:?}");
    // The refused request closed its connection; the next call opens another.
    assert!(c.call("echo", &[]).await.is_ok());
}

#[tokio::test]
async fn a_garbage_answer_is_decode() {
    let addr = fake_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 9\r\n\r\nnot xml!!",
    )
    .await;
    let err = Client::new(&addr.to_string(), LIMIT)
        .call("echo", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn a_hang_up_is_transport() {
    let addr = fake_server(b"").await;
    let err = Client::new(&addr.to_string(), LIMIT)
        .call("echo", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn a_truncated_answer_is_transport() {
    let addr = fake_server(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n<?xml").await;
    let err = Client::new(&addr.to_string(), LIMIT)
        .call("echo", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn reconnects_after_the_server_closes_an_idle_connection() {
    // The server's header timeout closes idle keep-alive connections; the
    // pool must notice and dial again rather than fail the next call.
    let opts = ServerOptions {
        header_read_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let srv = start(opts).await;
    let c = Client::new(&srv.addr.to_string(), LIMIT);
    assert!(c.call("echo", &[]).await.is_ok());
    // Wait (on the server's own count) until it has dropped the connection.
    let t = Instant::now();
    while srv.stats.open() != 0 {
        assert!(
            t.elapsed() < LIMIT,
            "the server never closed the idle connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(c.call("echo", &[]).await.is_ok());
    assert_eq!(srv.stats.accepted(), 2);
}

/// 1000 sequential echo calls on one pooled connection; prints median and p99.
/// Run with `cargo test --release --test http_client -- --nocapture latency`.
#[tokio::test]
async fn latency_of_sequential_echo_calls() {
    let srv = start(ServerOptions::default()).await;
    let c = Client::new(&srv.addr.to_string(), LIMIT);
    let params = [
        Value::from("a.txt"),
        Value::Int(1),
        Value::Array(vec![Value::from("h"); 4]),
    ];
    for _ in 0..100 {
        c.call("echo", &params).await.unwrap();
    }
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        c.call("echo", &params).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    let median = samples[500];
    let p99 = samples[990];
    println!(
        "1000 sequential echo calls, 1 client, loopback, {} profile: median {median:?}, p99 {p99:?}",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    assert!(median < Duration::from_millis(20), "median {median:?}");
    assert_eq!(srv.stats.accepted(), 1);
}
