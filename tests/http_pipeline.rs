//! The pipelining client against the real hyper server: calls written back to
//! back on one connection are answered in the order they were sent, even when
//! the first is the slowest; a fault does not end the connection; one
//! connection carries them all; an oversized or malformed answer ends the
//! connection with an error, never a panic.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use surfstore::xmlrpc::client::CallError;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::pipeline::{Connection, PipelineError};
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions};
use surfstore::xmlrpc::{Fault, Value};

const TIMEOUT: Duration = Duration::from_secs(5);

/// `slow(ms, tag)` answers `tag` after `ms`; `fault` faults.
#[derive(Clone)]
struct Slow;

impl Handler for Slow {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        match call.method.as_str() {
            "fault" => Err(Fault::new(3, "BadRequest: asked for")),
            _ => {
                let ms = call.params.first().and_then(Value::as_i64).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                Ok(call.params.get(1).cloned().unwrap_or(Value::Nil))
            }
        }
    }
}

#[tokio::test]
async fn pipelined_calls_are_answered_in_order_on_one_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let opts = ServerOptions::default();
    let stats = opts.stats.clone();
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, Slow, opts, async move {
        let _ = stop_rx.await;
    }));

    let mut conn = Connection::connect(&addr, TIMEOUT, 1 << 20, &Default::default())
        .await
        .unwrap();
    // The first call is the slowest: a server answering out of order, or a
    // client matching answers wrongly, would show here.
    let delays = [80, 40, 0, 20, 0];
    for (tag, ms) in delays.iter().enumerate() {
        if tag == 2 {
            conn.writer.push_call("fault", &[]);
        } else {
            conn.writer
                .push_call("slow", &[Value::Int(*ms), Value::Int(tag as i32)]);
        }
    }
    while conn.writer.wants_write() {
        conn.writer.write_some().await.unwrap();
    }
    for tag in 0..delays.len() {
        let answer = tokio::time::timeout(TIMEOUT, conn.reader.next_response())
            .await
            .expect("answered")
            .expect("the connection goes on");
        if tag == 2 {
            assert!(
                matches!(&answer, Err(CallError::Fault(f)) if f.code == 3),
                "{answer:?}"
            );
        } else {
            assert_eq!(answer.unwrap(), Value::Int(tag as i32), "answer {tag}");
        }
    }
    assert_eq!(stats.accepted(), 1, "one connection carried every call");
    assert_eq!(stats.requests(), delays.len() as u64);
    let _ = stop.send(());
}

/// A fake server that answers every request with `reply`.
async fn fake(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(reply).await;
        let _ = s.shutdown().await;
        // Keep the socket until the client is done reading.
        let _ = s.read(&mut buf).await;
    });
    addr
}

/// What a bad answer must be refused as.
type Expect = fn(&PipelineError) -> bool;

#[tokio::test]
async fn bad_answers_end_the_connection_with_an_error() {
    let cases: [(&'static [u8], Expect); 4] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
            |e| matches!(e, PipelineError::TooLarge(99999999, _)),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            |e| matches!(e, PipelineError::Malformed(_)),
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", |e| {
            matches!(e, PipelineError::Malformed(_))
        }),
        (b"", |e| matches!(e, PipelineError::Closed)),
    ];
    for (reply, expected) in cases {
        let addr = fake(reply).await;
        let mut conn = Connection::connect(&addr, TIMEOUT, 1 << 20, &Default::default())
            .await
            .unwrap();
        conn.writer.push_call("x", &[]);
        while conn.writer.wants_write() {
            conn.writer.write_some().await.unwrap();
        }
        let err = tokio::time::timeout(TIMEOUT, conn.reader.next_response())
            .await
            .expect("an answer or an error")
            .expect_err("not a value");
        assert!(
            expected(&err),
            "{:?}: {err:?}",
            String::from_utf8_lossy(reply)
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = Connection::connect(&addr, TIMEOUT, 1 << 20, &Default::default())
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, PipelineError::Connect(_)), "{err:?}");
}
