//! A pipelining XML-RPC client over one TCP connection, or one TLS
//! connection when the [`Transport`] carries a TLS configuration: HTTP/1.1
//! requests are written back to back without waiting for answers, and the
//! answers are read in the order the requests were sent (RFC 9112 §9.3.2;
//! hyper's http1 server, ours, answers pipelined requests one by one, in
//! order).
//!
//! Promises:
//! - [`Connection::push_call`] only appends to a write buffer; the caller
//!   decides how many calls are outstanding. Nothing here allocates beyond
//!   the calls pushed and one response being read (over TLS, rustls also
//!   buffers at most its 64 KiB of records not yet taken by the kernel).
//! - [`Writer::write_some`] and [`Reader::next_response`] are cancel safe (a
//!   `select!` may drop them and call again without losing or repeating a
//!   byte), so one task can write, read and watch timers at once.
//! - What is pushed reaches the kernel while [`Writer::wants_write`] is
//!   polled with `write_some`: over TLS a write may leave records in rustls
//!   that only a flush sends, and `wants_write` stays true until it has.
//! - A response is refused (and the connection is then unusable) when its
//!   head passes [`MAX_HEAD_BYTES`], its body passes the reader's limit, it is
//!   not `HTTP/1.x` with a `Content-Length`, or it uses chunked encoding
//!   (the server never sends it): a peer cannot make the reader buffer without
//!   bound or panic.
//! - A response that says `Connection: close` ends the connection after it:
//!   the next read reports [`PipelineError::Closed`].

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
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

/// The byte stream under a connection: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// The sending half: a buffer of encoded requests not yet taken by the kernel.
pub struct Writer {
    stream: WriteHalf<Box<dyn Stream>>,
    host: String,
    transport: Transport,
    /// Bytes pushed and not yet written; `buf[pos..]` is still to go.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes were written since the last flush: over TLS they may still be
    /// records in rustls rather than in the kernel.
    flush_due: bool,
}

/// The receiving half: reads responses in order.
pub struct Reader {
    stream: ReadHalf<Box<dyn Stream>>,
    buf: BytesMut,
    max_body: usize,
    /// The server said `Connection: close`, or the stream ended.
    closed: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("host", &self.host)
            .field("unwritten", &self.unwritten())
            .field("flush_due", &self.flush_due)
            .finish()
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("buffered", &self.buf.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) within `timeout`, with `TCP_NODELAY`,
    /// and with TLS when `transport` says so (the handshake within the same
    /// `timeout`; the certificate must name `addr`'s host). Response bodies
    /// over `max_body` bytes are refused. Each request goes with the headers
    /// `transport` adds.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        max_body: usize,
        transport: &Transport,
    ) -> Result<Connection, PipelineError> {
        let open = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| PipelineError::Connect(format!("{addr}: {e}")))?;
            tcp.set_nodelay(true)?;
            let stream: Box<dyn Stream> = match &transport.tls {
                None => Box::new(tcp),
                Some(config) => Box::new(
                    crate::tls::connect(config, addr, tcp)
                        .await
                        .map_err(|e| PipelineError::Connect(format!("{addr}: TLS: {e}")))?,
                ),
            };
            Ok::<_, PipelineError>(stream)
        };
        let stream = match tokio::time::timeout(timeout, open).await {
            Ok(stream) => stream?,
            Err(_) => {
                return Err(PipelineError::Connect(format!(
                    "{addr}: no connection within {timeout:?}"
                )))
            }
        };
        Ok(Connection::over(stream, addr, max_body, transport))
    }

    /// A connection over an open stream to `addr`.
    fn over(
        stream: Box<dyn Stream>,
        addr: &str,
        max_body: usize,
        transport: &Transport,
    ) -> Connection {
        let (read, write) = tokio::io::split(stream);
        Connection {
            writer: Writer {
                stream: write,
                host: addr.to_owned(),
                transport: transport.clone(),
                buf: Vec::new(),
                pos: 0,
                flush_due: false,
            },
            reader: Reader {
                stream: read,
                buf: BytesMut::with_capacity(8 << 10),
                max_body,
                closed: false,
            },
        }
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

    /// Bytes pushed and not yet handed to the stream (over TLS, to rustls).
    pub fn unwritten(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Something pushed has not reached the kernel yet: bytes in the buffer,
    /// or (over TLS) records rustls holds until a flush.
    pub fn wants_write(&self) -> bool {
        self.unwritten() > 0 || self.flush_due
    }

    /// Writes some of what is pushed, or once all of it is written, flushes
    /// it; pending while the socket cannot take any. Cancel safe: bytes
    /// count as written once the stream has taken them (a TCP socket takes
    /// them only when it can; rustls's `poll_write` reports every byte it
    /// took, and takes none when it is pending), and a flush cut short is
    /// simply due again.
    pub async fn write_some(&mut self) -> Result<(), PipelineError> {
        if self.unwritten() > 0 {
            let n = self.stream.write(&self.buf[self.pos..]).await?;
            if n == 0 {
                return Err(PipelineError::Closed);
            }
            self.pos += n;
            self.flush_due = true;
            if self.pos < self.buf.len() {
                return Ok(());
            }
            // Release a large body at once, not at the next push.
            self.buf = Vec::new();
            self.pos = 0;
        }
        if self.flush_due {
            self.stream.flush().await?;
            self.flush_due = false;
        }
        Ok(())
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

    /// A TLS client stream and its server end, over an in-memory pipe that
    /// holds `pipe` bytes.
    async fn tls_pair(
        pipe: usize,
    ) -> (
        tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
        tokio_rustls::server::TlsStream<tokio::io::DuplexStream>,
    ) {
        let g = crate::tls::cert::generate(&crate::tls::cert::names(&[]), 1).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "surfstore-pipeline-tls-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        crate::tls::cert::write(&dir, &g, false).unwrap();
        let (server, _) =
            crate::tls::server_config(&dir.join("node.pem"), &dir.join("node-key.pem")).unwrap();
        let client = crate::tls::client_config(&dir.join("ca.pem")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (near, far) = tokio::io::duplex(pipe);
        let name = crate::tls::server_name("localhost").unwrap();
        let connect = tokio_rustls::TlsConnector::from(client).connect(name, near);
        let accept = tokio_rustls::TlsAcceptor::from(server).accept(far);
        let (c, s) = tokio::join!(connect, accept);
        (c.unwrap(), s.unwrap())
    }

    #[tokio::test]
    async fn over_tls_a_written_call_is_flushed_before_the_writer_is_done() {
        let (client, mut server) = tls_pair(4 << 10).await;
        let mut conn = Connection::over(
            Box::new(client),
            "localhost:1",
            1 << 20,
            &Transport::default(),
        );
        // Smaller than rustls's buffer, larger than the pipe: one write hands
        // it all to rustls, which can send only what the pipe holds.
        let size = conn
            .writer
            .push_call("m", &[Value::String("z".repeat(30 << 10))]);
        // The flush cannot finish while nobody reads: cut it short.
        let cut_short = tokio::time::timeout(Duration::from_millis(50), conn.writer.write_some());
        assert!(cut_short.await.is_err(), "the pipe cannot hold it all");
        assert_eq!(conn.writer.unwritten(), 0, "rustls took every byte");
        assert!(conn.writer.wants_write(), "but has not sent them all");
        // The peer reads while the writer finishes; a cancelled flush is
        // simply due again.
        let read = tokio::spawn(async move {
            let mut got = vec![0u8; size];
            server.read_exact(&mut got).await.map(|_| got)
        });
        let mut cut = 0;
        while conn.writer.wants_write() {
            tokio::select! {
                biased;
                _ = tokio::task::yield_now(), if cut < 3 => cut += 1,
                w = conn.writer.write_some() => w.unwrap(),
            }
        }
        let got = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the whole request arrives")
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("POST /RPC2 HTTP/1.1\r\n"),
            "{}",
            &text[..40]
        );
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let call = codec::parse_call(&got[end..]).unwrap();
        assert_eq!(call.params, [Value::String("z".repeat(30 << 10))]);
    }

    #[test]
    fn head_end_is_found_only_when_complete() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
    }
}
