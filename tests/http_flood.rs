//! A flood of connections each sending a huge body slowly (headers declaring
//! 4 MiB, then 1 MiB at once, then nothing) against the XML-RPC server with a
//! 4 MiB in-flight budget: the bodies stop being read once the budget is
//! spent, the bytes held stay within the budget plus each request's free
//! bytes (`ServerStats`, not wall time or RSS), a `ping` on a fresh
//! connection is still answered at once, and a body that never gets a share
//! is refused with 503 after the body timeout (one that got its share but is
//! still incomplete then gets 408).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::server::{
    self, CallContext, Handler, ServerOptions, ServerStats, FREE_BODY_BYTES,
};
use surfstore::xmlrpc::{Fault, Value};

const FLOOD: usize = 16;
const BUDGET: usize = 4 << 20;
const SENT: usize = 1 << 20;

#[derive(Clone)]
struct Pong;

impl Handler for Pong {
    async fn call(&self, _: MethodCall, _: CallContext) -> Result<Value, Fault> {
        Ok(Value::Bool(true))
    }
}

/// Polls the server's counters until `f` holds (they change as the server
/// reads; there is no event to await from outside it).
async fn until(stats: &ServerStats, what: &str, f: impl Fn(&ServerStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f(stats) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_slow_bodies_holds_bounded_memory_and_ping_still_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stats = Arc::new(ServerStats::default());
    let opts = ServerOptions {
        max_body_bytes: BUDGET,
        max_inflight_bytes: BUDGET,
        body_read_timeout: Duration::from_secs(3),
        stats: stats.clone(),
        ..ServerOptions::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, Pong, opts, async move {
        let _ = stop_rx.await;
    }));

    let head = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {BUDGET}\r\n\r\n"
    );
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let writer = tokio::spawn(async move {
            // The kernel takes what the server does not read; a write that
            // cannot finish just waits (the test ends it).
            let _ = s.write_all(&vec![b' '; SENT]).await;
            s
        });
        flood.push(writer);
    }
    // Every request is in, and the budget is spent: most bodies wait.
    until(&stats, "the flood to exhaust the budget", |s| {
        s.requests() == FLOOD as u64 && s.budget_waits() >= (FLOOD - BUDGET / SENT) as u64
    })
    .await;
    let bound = BUDGET + FLOOD * FREE_BODY_BYTES;
    assert!(stats.inflight_bytes() <= bound, "{stats:?}");

    // A call on a fresh connection is answered while the flood holds.
    let ping = Client::new(&addr, Duration::from_secs(2));
    assert_eq!(
        ping.call("surfstore.ping", &[]).await.unwrap(),
        Value::Bool(true)
    );
    assert!(stats.peak_inflight_bytes() <= bound, "{stats:?}");
    // FLOOD MiB were sent; the server holds at most the bound of them.
    assert!(FLOOD * SENT > bound);

    // Past the body timeout every flood request is answered and closed: 408
    // if it had its share and was just slow, 503 if it was still waiting
    // for one (which of the two depends on timing; the counters agree).
    let (mut slow, mut refused) = (0, 0);
    for w in flood {
        let mut s = w.await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 408") {
            slow += 1;
        } else if answer.starts_with(b"HTTP/1.1 503") {
            refused += 1;
        } else {
            panic!("unexpected answer {:?}", String::from_utf8_lossy(&answer));
        }
    }
    assert_eq!(slow + refused, FLOOD);
    assert_eq!(stats.budget_refusals(), refused as u64, "{stats:?}");
    until(&stats, "every byte given back", |s| s.inflight_bytes() == 0).await;
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
