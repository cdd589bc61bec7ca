//! The XML-RPC HTTP/1.1 server: accept loop, one task per connection, a
//! connection limit and a shutdown future, in the shape of mini-redis.
//!
//! Promises:
//! - `POST /RPC2` and `POST /` are XML-RPC calls, and any other method on
//!   them is 405 (`Allow: POST`); `GET` of another path is the handler's
//!   [`Handler::get`] page (`/health`, `/metrics`), else 404. Keep-alive, many
//!   connections at once.
//! - A body larger than [`ServerOptions::max_body_bytes`] is refused with 413
//!   before it is read (declared length) or as soon as it passes the limit
//!   (chunked); the connection is then closed, the rest never read.
//! - A body that is not a well-formed call gets HTTP 200 with fault 3
//!   (`BadRequest: ...`); the handler's faults are sent as faults. Every reply is
//!   `Content-Type: text/xml`.
//! - Nothing a peer sends can panic the server or stall other connections: slow
//!   headers time out, slow or truncated bodies only hold their own connection,
//!   and past [`ServerOptions::max_connections`] new peers wait in the kernel's
//!   accept queue until a slot frees.
//! - Memory held for requests is bounded. Per connection: one request at a
//!   time (HTTP/1.1; a pipelined request waits unread in the socket until the
//!   one before it is answered), its body at most `max_body_bytes`, and
//!   hyper's read buffer at most [`READ_BUFFER_BYTES`]. In total: the first
//!   [`FREE_BODY_BYTES`] of every body are free (so small calls, `ping`
//!   among them, are never held up), and every body byte past them takes a
//!   share of [`ServerOptions::max_inflight_bytes`], held until the answer is
//!   built. A body that finds the budget spent stops being read (its bytes
//!   wait in the kernel) until a share frees; if none frees within
//!   `body_read_timeout` it gets 503 and its connection is closed. So request
//!   bodies never hold more than `max_inflight_bytes + max_connections *
//!   FREE_BODY_BYTES` (the counters in [`ServerStats`] show it).
//! - When `shutdown` completes the listener is closed at once, idle connections
//!   are closed, and in-flight calls get [`ServerOptions::shutdown_grace`] to
//!   finish before their tasks are aborted.
//! - With [`ServerOptions::tls`] every connection is TLS (nothing else is
//!   served; see [`crate::tls::accept`]). The handshake runs in the
//!   connection's own task, holding its connection slot, and must finish
//!   within `header_read_timeout`; a failed or late one closes the
//!   connection and is logged at debug level only.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::{service_fn, HttpService};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::codec::{self, MethodCall, Reply};
use super::{Fault, Value};
use crate::auth::{self, Proof, Verifier};

/// The method table behind the server. Cloned once per request, so make it a
/// handle (an `Arc` or channel senders), not the state itself.
pub trait Handler: Clone + Send + Sync + 'static {
    fn call(
        &self,
        call: MethodCall,
        ctx: CallContext,
    ) -> impl Future<Output = Result<Value, Fault>> + Send;

    /// What the server calls: [`Handler::call`], unless the handler answers
    /// some calls with a value it has already encoded ([`Reply::Encoded`]).
    fn answer(
        &self,
        call: MethodCall,
        ctx: CallContext,
    ) -> impl Future<Output = Result<Reply, Fault>> + Send {
        async move { self.call(call, ctx).await.map(Reply::Value) }
    }

    /// A `GET` of `path` (not the XML-RPC path): the page, or `None` for 404.
    fn get(&self, path: &str) -> impl Future<Output = Option<Page>> + Send {
        let _ = path;
        async { None }
    }
}

/// A page a [`Handler`] serves to `GET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

/// What the server knows of a call besides the call itself.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The TCP peer (`None` when serving a stream that has none).
    pub peer: Option<SocketAddr>,
    /// What the request proved of the configured secrets
    /// ([`Proof::OPEN`] when none is configured).
    pub proof: Proof,
    /// The request's headers (moved out of the request, not copied).
    pub headers: HeaderMap,
}

impl CallContext {
    /// A call with no peer, no headers and no proof (tests, fuzzing).
    pub fn none() -> CallContext {
        CallContext {
            peer: None,
            proof: Proof::OPEN,
            headers: HeaderMap::new(),
        }
    }
}

/// The body bytes of each request that take no share of the in-flight budget.
pub const FREE_BODY_BYTES: usize = 64 << 10;

/// hyper's read buffer per connection (headers must fit in it).
pub const READ_BUFFER_BYTES: usize = 64 << 10;

/// Limits and timeouts. `Default` gives values fit for a SurfStore node.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Largest request body accepted; larger ones get 413. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Connections served at once; further peers wait to be accepted. Default 4096.
    pub max_connections: usize,
    /// Request body bytes past each body's first [`FREE_BODY_BYTES`] that
    /// all requests together may hold (being read or being handled); raised
    /// to `max_body_bytes` if smaller. Default 256 MiB.
    pub max_inflight_bytes: usize,
    /// Time allowed to receive a request's headers, counted from when the
    /// connection starts waiting for them, so it also closes keep-alive
    /// connections left idle this long. Default 30 s.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request's body once its headers are in; past
    /// it the request gets 408 and the connection is closed. Default 30 s.
    pub body_read_timeout: Duration,
    /// After shutdown, how long in-flight requests may run before their
    /// connections are dropped. Default 2 s.
    pub shutdown_grace: Duration,
    /// Bounds on parsing a call beyond its size (nesting depth).
    pub codec_limits: codec::Limits,
    /// The secrets requests are checked against (see [`crate::auth`]); the
    /// handler decides what each method needs. `None`: nothing is checked.
    pub auth: Option<Arc<Verifier>>,
    /// Counters the server keeps up to date; clone the `Arc` before passing
    /// the options in to watch them.
    pub stats: Arc<ServerStats>,
    /// Serve HTTPS only, with this (see [`crate::tls`]); `None`: plain HTTP.
    /// [`serve_connection`] ignores it.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 16 << 20,
            max_connections: 4096,
            max_inflight_bytes: 256 << 20,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
            codec_limits: codec::Limits::default(),
            auth: None,
            stats: Arc::default(),
            tls: None,
        }
    }
}

/// What the server has done so far; all counters only ever grow except `open`.
#[derive(Debug, Default)]
pub struct ServerStats {
    accepted: AtomicU64,
    open: AtomicUsize,
    requests: AtomicU64,
    inflight_bytes: AtomicUsize,
    peak_inflight_bytes: AtomicUsize,
    budget_waits: AtomicU64,
    budget_refusals: AtomicU64,
    malformed: AtomicU64,
}

impl ServerStats {
    /// TCP connections accepted since the server started.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// TCP connections being served right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
    /// HTTP requests received (any path, method or outcome).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Request body bytes held right now (read, not yet answered).
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes.load(Ordering::Relaxed)
    }
    /// The most request body bytes ever held at once.
    pub fn peak_inflight_bytes(&self) -> usize {
        self.peak_inflight_bytes.load(Ordering::Relaxed)
    }
    /// Times a body stopped being read because the in-flight budget was spent.
    pub fn budget_waits(&self) -> u64 {
        self.budget_waits.load(Ordering::Relaxed)
    }
    /// Requests refused with 503: no budget freed within `body_read_timeout`.
    pub fn budget_refusals(&self) -> u64 {
        self.budget_refusals.load(Ordering::Relaxed)
    }
    /// Request bodies that did not parse as a call (answered with fault 3).
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

/// The body bytes one request holds, and its share of the budget; both are
/// given back when it is dropped (after the answer is built).
struct Held {
    stats: Arc<ServerStats>,
    budget: Arc<Semaphore>,
    bytes: usize,
    share: Option<OwnedSemaphorePermit>,
    /// Waiting for a share right now (a timeout then is the budget's fault).
    waiting: bool,
}

impl Held {
    /// Accounts `n` more bytes, first taking the share past the free bytes
    /// (waiting for it while the budget is spent).
    async fn grow(&mut self, n: usize) {
        let free_left = FREE_BODY_BYTES.saturating_sub(self.bytes);
        let mut need = n.saturating_sub(free_left);
        while need > 0 {
            // A semaphore hands out at most u32::MAX permits at a time.
            let part = u32::try_from(need).unwrap_or(u32::MAX);
            need -= part as usize;
            let permit = match self.budget.clone().try_acquire_many_owned(part) {
                Ok(p) => p,
                Err(_) => {
                    self.stats.budget_waits.fetch_add(1, Ordering::Relaxed);
                    self.waiting = true;
                    let p = self
                        .budget
                        .clone()
                        .acquire_many_owned(part)
                        .await
                        .expect("the budget semaphore is never closed");
                    self.waiting = false;
                    p
                }
            };
            match &mut self.share {
                Some(share) => share.merge(permit),
                None => self.share = Some(permit),
            }
        }
        self.bytes += n;
        let now = self.stats.inflight_bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.stats
            .peak_inflight_bytes
            .fetch_max(now, Ordering::Relaxed);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stats
            .inflight_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Decrements `open` when a connection task ends, however it ends.
struct OpenGuard(Arc<ServerStats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves XML-RPC on `listener` until `shutdown` completes. Returns `Ok` after a
/// shutdown; accept errors (like running out of file descriptors) are logged
/// and retried with a backoff, never returned.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: H,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let (stop_tx, _) = watch::channel(());
    let mut conns = JoinSet::new();
    let http = http_builder(&opts);
    let limits = RequestLimits::new(&opts);
    let tls = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut backoff = Duration::from_millis(1);

    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot first, as mini-redis does: while the server is
        // full, new peers queue in the kernel rather than in our memory.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => unreachable!("the connection semaphore is never closed"),
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, ?backoff, "accept failed; retrying");
                    drop(permit);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(1);
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        opts.stats.accepted.fetch_add(1, Ordering::Relaxed);
        opts.stats.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenGuard(opts.stats.clone());

        let handler = handler.clone();
        let limits = limits.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            let limits = limits.clone();
            async move { Ok::<_, Infallible>(respond(req, handler, &limits, Some(peer)).await) }
        });
        let mut stop_rx = stop_tx.subscribe();
        let (http, tls) = (http.clone(), tls.clone());
        let handshake_timeout = opts.header_read_timeout;
        conns.spawn(async move {
            let _permit = permit;
            let _open = open;
            let Some(acceptor) = tls else {
                return drive(&http, stream, service, &mut stop_rx, peer).await;
            };
            let handshake = tokio::time::timeout(
                handshake_timeout,
                crate::tls::accept(&acceptor, stream),
            );
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    // Debug only: a port scan or a confused client would
                    // otherwise write a warning per attempt.
                    Ok(Err(e)) => {
                        debug!(%peer, "connection closed: {e}");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "connection closed: no TLS handshake within {handshake_timeout:?}");
                        return;
                    }
                },
                _ = stop_rx.changed() => return,
            };
            drive(&http, stream, service, &mut stop_rx, peer).await
        });
        // Reap finished connection tasks so the set does not grow forever.
        while let Some(done) = conns.try_join_next() {
            if let Err(e) = done {
                error!(error = %e, "connection task panicked");
            }
        }
    }

    drop(listener);
    let _ = stop_tx.send(());
    let drained = tokio::time::timeout(opts.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = conns.len(),
            "requests still running after the shutdown grace; dropping them"
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// Serves one accepted connection until it ends; after `stop` changes, the
/// connection closes if idle, else after the response in flight.
async fn drive<I, S>(
    http: &http1::Builder,
    io: I,
    service: S,
    stop: &mut watch::Receiver<()>,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = Parts>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The per-request settings every connection task shares.
struct RequestLimits {
    /// Permits: body bytes past the free ones (see the module promises).
    budget: Arc<Semaphore>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    codec_limits: codec::Limits,
    auth: Option<Arc<Verifier>>,
    stats: Arc<ServerStats>,
}

impl RequestLimits {
    fn new(opts: &ServerOptions) -> Arc<RequestLimits> {
        let budget = opts.max_inflight_bytes.max(opts.max_body_bytes);
        Arc::new(RequestLimits {
            budget: Arc::new(Semaphore::new(budget.min(Semaphore::MAX_PERMITS))),
            max_body_bytes: opts.max_body_bytes,
            body_read_timeout: opts.body_read_timeout,
            codec_limits: opts.codec_limits.clone(),
            auth: opts.auth.clone(),
            stats: opts.stats.clone(),
        })
    }
}

/// The HTTP/1.1 settings every connection is served with.
fn http_builder(opts: &ServerOptions) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(READ_BUFFER_BYTES)
        .keep_alive(true);
    http
}

/// Turns one HTTP request into one HTTP response; never fails, never panics.
async fn respond<H: Handler>(
    req: Request<Incoming>,
    handler: H,
    limits: &RequestLimits,
    peer: Option<SocketAddr>,
) -> Response<Parts> {
    limits.stats.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    if path != "/RPC2" && path != "/" && req.method() == Method::GET {
        if let Some(page) = handler.get(path).await {
            let mut resp = Response::new(Parts::one(page.body));
            *resp.status_mut() =
                StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(page.content_type));
            return resp;
        }
    }
    if path != "/RPC2" && path != "/" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: XML-RPC lives at POST /RPC2\n",
        );
    }
    if req.method() != Method::POST {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "XML-RPC calls are POSTed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }

    let (parts, body) = req.into_parts();
    // A declared Content-Length is known before a byte of the body is read.
    if body.size_hint().lower() > limits.max_body_bytes as u64 {
        return too_large(limits.max_body_bytes);
    }
    let mut held = Held {
        stats: limits.stats.clone(),
        budget: limits.budget.clone(),
        bytes: 0,
        share: None,
        waiting: false,
    };
    let read = read_body(Limited::new(body, limits.max_body_bytes), &mut held);
    let body = match tokio::time::timeout(limits.body_read_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(limits.max_body_bytes),
        Ok(Err(e)) => {
            // The peer broke off mid-body; nobody is left to read an answer.
            debug!(error = %e, "request body unreadable");
            return closing(plain(StatusCode::BAD_REQUEST, "unreadable request body\n"));
        }
        Err(_) if held.waiting => {
            limits.stats.budget_refusals.fetch_add(1, Ordering::Relaxed);
            return closing(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "server busy: too many request bytes in flight\n",
            ));
        }
        Err(_) => {
            return closing(plain(
                StatusCode::REQUEST_TIMEOUT,
                "request body too slow\n",
            ));
        }
    };

    let proof = match &limits.auth {
        Some(v) => v.verify(parts.headers.get(auth::HEADER), &body, SystemTime::now()),
        None => Proof::OPEN,
    };
    let outcome = match codec::parse_call_with(&body, &limits.codec_limits) {
        Ok(call) => {
            drop(body);
            let ctx = CallContext {
                peer,
                proof,
                headers: parts.headers,
            };
            handler.answer(call, ctx).await
        }
        Err(e) => {
            limits.stats.malformed.fetch_add(1, Ordering::Relaxed);
            Err(Fault::new(3, format!("BadRequest: {e}")))
        }
    };
    let body = match outcome {
        Ok(reply) => codec::response_body(reply),
        Err(fault) => {
            let mut out = Vec::with_capacity(256);
            codec::encode_fault(&fault, &mut out);
            vec![Bytes::from(out)]
        }
    };
    drop(held);
    xml(StatusCode::OK, body)
}

/// Reads the whole body, accounting the buffer it grows in `held` before
/// growing it (capacity, not length: a doubling buffer may hold twice what
/// it was sent), never past the declared length.
async fn read_body(
    mut body: Limited<Incoming>,
    held: &mut Held,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let declared = body.size_hint().exact().map(|n| n as usize);
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.is_empty() && body.is_end_stream() {
                held.grow(data.len()).await;
                return Ok(data);
            }
            let need = buf.len() + data.len();
            if need > buf.capacity() {
                let want = need.max(2 * buf.capacity());
                let cap = declared.map_or(want, |d| want.min(d.max(need)));
                held.grow(cap - buf.capacity()).await;
                buf.reserve_exact(cap - buf.len());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.into())
}

/// 413 with a fault-3 body too, so a client that reads bodies of errors learns
/// the limit; the rest of the request is never read, so the connection closes.
fn too_large(limit: usize) -> Response<Parts> {
    let fault = Fault::new(
        3,
        format!("BadRequest: request body larger than {limit} bytes"),
    );
    let mut out = Vec::with_capacity(256);
    codec::encode_fault(&fault, &mut out);
    closing(xml(StatusCode::PAYLOAD_TOO_LARGE, vec![Bytes::from(out)]))
}

fn xml(status: StatusCode, body: Vec<Bytes>) -> Response<Parts> {
    let mut resp = Response::new(Parts::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Parts> {
    let mut resp = Response::new(Parts::one(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A response body of whole parts, sent in order (one frame each) with an
/// exact length, so hyper writes a `Content-Length`: what a value written
/// in parts on several threads goes out as, without copying it together.
pub struct Parts {
    parts: std::collections::VecDeque<Bytes>,
    /// Bytes in `parts`.
    remaining: u64,
}

impl Parts {
    pub fn new(parts: Vec<Bytes>) -> Parts {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        Parts {
            parts: parts.into_iter().filter(|p| !p.is_empty()).collect(),
            remaining,
        }
    }

    pub fn one(body: Bytes) -> Parts {
        Parts::new(vec![body])
    }
}

impl Body for Parts {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let part = this.parts.pop_front().map(|p| {
            this.remaining -= p.len() as u64;
            Ok(hyper::body::Frame::data(p))
        });
        std::task::Poll::Ready(part)
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// Tells the peer (and hyper) this connection ends after the response.
fn closing(mut resp: Response<Parts>) -> Response<Parts> {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Serves one connection over any byte stream with the same HTTP settings
/// and request handling as [`serve`] (no connection limit or shutdown:
/// the caller owns the stream). The fuzzing entry point
/// (`crate::fuzzing::http_request` drives it over a `tokio::io::duplex`).
/// One difference: a peer may shut down its sending side and still read
/// the answers to what it sent (HTTP half-close), so a harness can send
/// its bytes, close, and read to the end.
/// Returns when the peer closes the stream or the connection fails.
pub async fn serve_connection<H, I>(io: I, handler: H, opts: &ServerOptions) -> hyper::Result<()>
where
    H: Handler,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = RequestLimits::new(opts);
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let limits = limits.clone();
        async move { Ok::<_, Infallible>(respond(req, handler, &limits, None).await) }
    });
    http_builder(opts)
        .half_close(true)
        .serve_connection(TokioIo::new(io), service)
        .await
}
