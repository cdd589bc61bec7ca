//! A pipelining XML-RPC client over one TCP connection: HTTP/1.1 requests are
//! written back to back without waiting for answers, and the answers are read
//! in the order the requests were sent (RFC 9112 §9.3.2; hyper's http1 server,
//! ours, answers pipelined requests one by one, in order).
//!
//! Promises:
//! - [`Connection::push_call`] only appends to a write buffer; the caller
//!   decides how many calls are outstanding. Nothing here allocates beyond
//!   the calls pushed and one response being read.
//! - [`Writer::write_some`] and [`Reader::next_response`] are cancel safe (a
//!   `select!` may drop them and call again without losing or repeating a
//!   byte), so one task can write, read and watch timers at once.
//! - A response is refused (and the connection is then unusable) when its
//!   head passes [`MAX_HEAD_BYTES`], its body passes the reader's limit, it is
//!   not `HTTP/1.x` with a `Content-Length`, or it uses chunked encoding
//!   (the server never sends it): a peer cannot make the reader buffer without
//!   bound or panic.
//! - A response that says `Connection: close` ends the connection after it:
//!   the next read reports [`PipelineError::Closed`].

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::client::{CallError, Transport};
use super::codec;
use super::Value;

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 << 10;

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("response body of {0} bytes is over the {1}-byte limit")]
    TooLarge(usize, usize),
}

/// One HTTP/1.1 connection to an XML-RPC server, split so that writing and
/// reading can proceed at the same time.
#[derive(Debug)]
pub struct Connection {
    pub writer: Writer,
    pub reader: Reader,
}

/// The sending half: a buffer of encoded requests not yet taken by the kernel.
#[derive(Debug)]
pub struct Writer {
    stream: OwnedWriteHalf,
    host: String,
    transport: Transport,
    /// Bytes pushed and not yet written; `buf[pos..]` is still to go.
    buf: Vec<u8>,
    pos: usize,
}

/// The receiving half: reads responses in order.
#[derive(Debug)]
pub struct Reader {
    stream: OwnedReadHalf,
    buf: BytesMut,
    max_body: usize,
    /// The server said `Connection: close`, or the stream ended.
    closed: bool,
}

impl Connection {
    /// Connects to `addr` (`host:port`) within `timeout`, with `TCP_NODELAY`.
    /// Response bodies over `max_body` bytes are refused. Each request goes
    /// with the headers `transport` adds.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        max_body: usize,
        transport: &Transport,
    ) -> Result<Connection, PipelineError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(PipelineError::Connect(format!("{addr}: {e}"))),
            Err(_) => {
                return Err(PipelineError::Connect(format!(
                    "{addr}: no connection within {timeout:?}"
                )))
            }
        };
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Connection {
            writer: Writer {
                stream: write,
                host: addr.to_owned(),
                transport: transport.clone(),
                buf: Vec::new(),
                pos: 0,
            },
            reader: Reader {
                stream: read,
                buf: BytesMut::with_capacity(8 << 10),
                max_body,
                closed: false,
            },
        })
    }
}

impl Writer {
    /// Appends the HTTP request of `method(params...)`; returns its size in
    /// bytes.
    pub fn push_call(&mut self, method: &str, params: &[Value]) -> usize {
        let mut body = Vec::with_capacity(256);
        codec::encode_call(method, params, &mut body);
        let mut head = format!(
            "POST /RPC2 HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in self.transport.headers_for(&body) {
            head.push_str(name.as_str());
            head.push_str(": ");
            // Header values are visible ASCII (they were made from strings).
            head.push_str(value.to_str().unwrap_or_default());
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(head.as_bytes());
        self.buf.extend_from_slice(&body);
        head.len() + body.len()
    }

    /// Bytes pushed and not yet handed to the kernel.
    pub fn unwritten(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Writes some of what is pushed; pending while the socket cannot take
    /// any. Cancel safe: bytes count as written only once the kernel has them.
    pub async fn write_some(&mut self) -> Result<(), PipelineError> {
        loop {
            if self.unwritten() == 0 {
                return Ok(());
            }
            self.stream.writable().await?;
            match self.stream.try_write(&self.buf[self.pos..]) {
                Ok(0) => return Err(PipelineError::Closed),
                Ok(n) => {
                    self.pos += n;
                    if self.pos == self.buf.len() {
                        // Release a large body at once, not at the next push.
                        self.buf = Vec::new();
                        self.pos = 0;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One response as read off the wire.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: Bytes,
}

impl Reader {
    /// The next response, decoded: the call's value or why it has none
    /// (`Err` inside: the server answered, with a fault or a non-200 status or
    /// an undecodable body; the connection goes on). The outer `Err` means the
    /// connection is finished. Cancel safe.
    pub async fn next_response(&mut self) -> Result<Result<Value, CallError>, PipelineError> {
        let raw = self.next_raw().await?;
        if raw.status != 200 {
            return Ok(Err(CallError::Http(raw.status)));
        }
        Ok(match codec::parse_response(&raw.body) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(fault)) => Err(CallError::Fault(fault)),
            Err(e) => Err(CallError::Decode(e)),
        })
    }

    async fn next_raw(&mut self) -> Result<RawResponse, PipelineError> {
        loop {
            if let Some(resp) = self.parse()? {
                return Ok(resp);
            }
            if self.closed {
                return Err(PipelineError::Closed);
            }
            // read_buf is cancel safe: data read is in `buf` or not read.
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                self.closed = true;
                if self.buf.is_empty() {
                    return Err(PipelineError::Closed);
                }
                return Err(PipelineError::Malformed(format!(
                    "connection closed inside a response ({} bytes buffered)",
                    self.buf.len()
                )));
            }
        }
    }

    /// A complete response from the front of the buffer, if there is one.
    fn parse(&mut self) -> Result<Option<RawResponse>, PipelineError> {
        let Some(head_len) = find_head_end(&self.buf) else {
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(PipelineError::Malformed(format!(
                    "response head over {MAX_HEAD_BYTES} bytes"
                )));
            }
            return Ok(None);
        };
        let head = parse_head(&self.buf[..head_len])?;
        if head.content_length > self.max_body {
            return Err(PipelineError::TooLarge(head.content_length, self.max_body));
        }
        let total = head_len + head.content_length;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(head_len);
        let body = self.buf.split_to(head.content_length).freeze();
        if head.close {
            self.closed = true;
        }
        Ok(Some(RawResponse {
            status: head.status,
            body,
        }))
    }
}

/// Index just past the `\r\n\r\n` that ends the head, if it is buffered.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

struct Head {
    status: u16,
    content_length: usize,
    close: bool,
}

fn parse_head(head: &[u8]) -> Result<Head, PipelineError> {
    let bad = |m: String| Err(PipelineError::Malformed(m));
    let Ok(text) = std::str::from_utf8(head) else {
        return bad("response head is not UTF-8".into());
    };
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if !matches!(version, Some("HTTP/1.1") | Some("HTTP/1.0")) {
        return bad(format!("status line {status_line:?}"));
    }
    let Some(status) = code
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
    else {
        return bad(format!("status line {status_line:?}"));
    };
    let mut content_length = None;
    let mut close = version == Some("HTTP/1.0");
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return bad(format!("header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if content_length.is_none_or(|m| m == n) => content_length = Some(n),
                _ => return bad(format!("Content-Length {value:?}")),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return bad(format!("Transfer-Encoding {value:?} is not supported"));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    let Some(content_length) = content_length else {
        return bad("no Content-Length".into());
    };
    Ok(Head {
        status,
        content_length,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, PipelineError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn heads_are_parsed_and_checked() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-type: text/xml\r\n\r\n")
            .unwrap();
        assert_eq!((h.status, h.content_length, h.close), (200, 12, false));
        let h = head(
            "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((h.status, h.content_length, h.close), (413, 0, true));
        for bad in [
            "HTTP/2 200 OK\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 abc OK\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        ] {
            assert!(
                matches!(head(bad), Err(PipelineError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn head_end_is_found_only_when_complete() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
    }
}
