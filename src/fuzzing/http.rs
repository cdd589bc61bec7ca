//! The HTTP front as a fuzz target: raw bytes go into the server's own
//! connection handling ([`serve_connection`]) over an in-memory duplex, and
//! what comes back must be well-formed HTTP/1.1 responses whose XML bodies
//! decode. Behind the server sits an echo method table, so a generated call
//! sent as a well-formed request must come back as itself.

use std::cell::RefCell;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::gen::Gen;
use super::same_value;
use crate::xmlrpc::codec::{self, MethodCall};
use crate::xmlrpc::server::{serve_connection, CallContext, Handler, ServerOptions};
use crate::xmlrpc::{Fault, Value};

/// Answers every call with `[method, params...]`, and a fault for `fault`.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        if call.method == "fault" {
            return Err(Fault::new(1, "asked for a fault"));
        }
        let mut out = vec![Value::String(call.method)];
        out.extend(call.params);
        Ok(Value::Array(out))
    }
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// What one response held.
#[derive(Debug)]
struct Response {
    status: u16,
    xml: bool,
    body: Vec<u8>,
}

/// Sends `input` on one connection, closes the sending side, and returns
/// every byte the server wrote before it closed.
fn exchange(input: &[u8]) -> Vec<u8> {
    RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime")
        });
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(64 << 10);
            let opts = ServerOptions {
                max_body_bytes: 64 << 10,
                header_read_timeout: Duration::from_secs(5),
                body_read_timeout: Duration::from_secs(5),
                ..ServerOptions::default()
            };
            let conn = tokio::spawn(async move {
                // An error is how a connection with a bad request ends.
                let _ = serve_connection(server, Echo, &opts).await;
            });
            let (mut rd, mut wr) = tokio::io::split(client);
            let send = async {
                // The server may close first (413, a bad request line).
                let _ = wr.write_all(input).await;
                let _ = wr.shutdown().await;
            };
            let mut out = Vec::new();
            let recv = rd.read_to_end(&mut out);
            let (_, read) = tokio::join!(send, recv);
            read.expect("reading from an in-memory duplex");
            conn.await.expect("the connection task does not panic");
            out
        })
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits the server's output into responses; panics if it is not a
/// sequence of HTTP/1.1 responses each with a `Content-Length`.
/// `bodiless`: responses to HEAD carry a length but no body, so with HEAD
/// in the input only the first status line is checked.
fn responses(mut out: &[u8], bodiless: bool) -> Vec<Response> {
    let mut all = Vec::new();
    while !out.is_empty() {
        let head_end = find(out, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("a response without a header end: {out:?}"));
        let head = std::str::from_utf8(&out[..head_end]).expect("response headers are UTF-8");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            // hyper answers an HTTP/1.0 request in HTTP/1.0.
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut len = None;
        let mut xml = false;
        for line in lines {
            let (name, value) = line.split_once(": ").expect("a header line");
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = Some(value.parse::<usize>().expect("a length")),
                "content-type" => xml = value == "text/xml",
                _ => {}
            }
        }
        if bodiless {
            all.push(Response {
                status,
                xml,
                body: Vec::new(),
            });
            break;
        }
        // An interim `100 Continue` has no body.
        let len = if (100..200).contains(&status) {
            0
        } else {
            len.unwrap_or_else(|| panic!("no content-length in {head:?}"))
        };
        let body_start = head_end + 4;
        assert!(out.len() >= body_start + len, "a truncated response body");
        all.push(Response {
            status,
            xml,
            body: out[body_start..body_start + len].to_vec(),
        });
        out = &out[body_start + len..];
    }
    all
}

/// Raw bytes as a connection's input: every response is well-formed, has a
/// status the server promises, and an XML body decodes. Then a generated
/// call, sent as one well-formed request, comes back echoed.
pub fn http_request(data: &[u8]) {
    let head = find(data, b"HEAD").is_some();
    for r in responses(&exchange(data), head) {
        if head {
            break;
        }
        assert!(
            matches!(
                r.status,
                100 | 200 | 400 | 404 | 405 | 408 | 413 | 417 | 431 | 500 | 501 | 505
            ),
            "unexpected status {}",
            r.status
        );
        if r.xml && r.status != 100 {
            let _ = codec::parse_response(&r.body)
                .unwrap_or_else(|e| panic!("the server's XML reply does not parse: {e}"));
        }
    }

    let mut g = Gen::new(data);
    let value = g.value(3);
    if !super::xml_chars(&value) {
        return;
    }
    let method = if g.u8().is_multiple_of(8) {
        "fault"
    } else {
        "echo"
    };
    let mut body = Vec::new();
    codec::encode_call(method, std::slice::from_ref(&value), &mut body);
    let mut req = Vec::new();
    if g.bool() {
        req.extend_from_slice(
            format!(
                "POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(&body);
    } else {
        req.extend_from_slice(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        for chunk in body.chunks(usize::from(g.u8()).max(1)) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
    }
    let got = responses(&exchange(&req), false);
    assert_eq!(got.len(), 1, "one request, one response: {got:?}");
    assert_eq!(
        (got[0].status, got[0].xml),
        (200, true),
        "a call gets 200 text/xml"
    );
    let answer = codec::parse_response(&got[0].body).expect("the reply parses");
    if method == "fault" {
        assert_eq!(
            answer,
            Err(Fault::new(1, "asked for a fault")),
            "fault passes through"
        );
    } else {
        let want = Value::Array(vec![Value::String("echo".into()), value]);
        assert!(
            matches!(&answer, Ok(v) if same_value(v, &want)),
            "echo round-trip through HTTP: {answer:?}"
        );
    }
}
