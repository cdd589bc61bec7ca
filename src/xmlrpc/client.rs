//! The XML-RPC client: one node's address, a pool of idle keep-alive HTTP/1.1
//! connections to it, and a deadline on every call.
//!
//! Promises:
//! - A call reuses an idle pooled connection when there is one; a new TCP
//!   connection (with `TCP_NODELAY`) is opened only when all are busy.
//!   Clones share the pool, so clone a `Client` rather than making another.
//! - Every call finishes within the timeout given to [`Client::new`], with the
//!   value, the peer's fault, or a [`CallError`] saying which layer failed.
//! - Idle connections are dropped after [`POOL_IDLE_TIMEOUT`], before the
//!   server's own idle cutoff (its 30 s header timeout) can race a reuse.
//! - With a TLS configuration in its [`Transport`], every call is `https://`
//!   and the server's certificate must chain to the configured CAs and name
//!   the host called; a failed handshake is a [`CallError::Connect`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::codec::{self, CodecError};
use super::{Fault, Value};
use crate::auth;

/// What goes with every request to a server besides the call: a proof of a
/// secret, fixed headers (a node's identity on its peer calls), and TLS.
/// `Default` is the assignment's open client over plain HTTP.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Signs each request body (the `X-SurfStore-Auth` header).
    pub key: Option<Arc<auth::Key>>,
    /// Sent as they are with each request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Call over HTTPS, verifying servers with this (see [`crate::tls`]);
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Transport {
    /// A transport that signs with `key`, when there is one.
    pub fn signed(key: Option<Arc<auth::Key>>) -> Transport {
        Transport {
            key,
            ..Transport::default()
        }
    }

    /// The same, over HTTPS when `tls` is given.
    pub fn with_tls(self, tls: Option<Arc<rustls::ClientConfig>>) -> Transport {
        Transport { tls, ..self }
    }

    /// The headers for one request with `body`, in order, for writers that
    /// build requests by hand.
    pub fn headers_for(&self, body: &[u8]) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        let proof = self.key.as_ref().map(|k| (auth::HEADER, k.sign_now(body)));
        self.headers.iter().cloned().chain(proof)
    }
}
/// How long an unused pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest response body accepted (a `getblock` answer is a few MiB).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Why a call did not produce a value.
#[derive(thiserror::Error, Debug)]
pub enum CallError {
    /// The server answered with an XML-RPC fault.
    #[error("{0}")]
    Fault(Fault),
    /// No connection could be made (refused, unreachable, bad address); the
    /// request was certainly not delivered.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed while the call was under way; it may or may not
    /// have been executed.
    #[error("transport error: {0}")]
    Transport(String),
    /// No complete answer within the client's timeout; the call may or may not
    /// have been executed.
    #[error("no answer within the timeout")]
    Timeout,
    /// The server answered with an HTTP status other than 200.
    #[error("HTTP status {0}")]
    Http(u16),
    /// The server's 200 answer was not a well-formed XML-RPC response.
    #[error("bad response: {0}")]
    Decode(CodecError),
}

impl CallError {
    /// The fault, if the server answered with one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            CallError::Fault(f) => Some(f),
            _ => None,
        }
    }
}

/// A pooled keep-alive XML-RPC client for one server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: Pool,
    /// `http://host:port/RPC2` (`https` with TLS), or why `addr` could not
    /// make one.
    uri: Result<Uri, String>,
    timeout: Duration,
    transport: Transport,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.uri {
            Ok(uri) => uri.to_string(),
            Err(e) => e.clone(),
        };
        f.debug_struct("Client")
            .field("uri", &target)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client for the server at `addr` (`host:port`). Each call, including
    /// connecting if needed, is bounded by `timeout`. An unusable address is
    /// reported by every call as [`CallError::Connect`].
    pub fn new(addr: &str, timeout: Duration) -> Client {
        Client::with_transport(addr, timeout, Transport::default())
    }

    /// Like [`Client::new`], sending what `transport` says with each call.
    pub fn with_transport(addr: &str, timeout: Duration, transport: Transport) -> Client {
        let scheme = if transport.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let uri = format!("{scheme}://{addr}/RPC2")
            .parse::<Uri>()
            .map_err(|e| format!("bad address `{addr}`: {e}"))
            .and_then(|uri| match uri.port_u16() {
                Some(_) => Ok(uri),
                None => Err(format!("bad address `{addr}`: expected host:port")),
            });
        let http = match &transport.tls {
            None => Pool::Plain(pooled_http(timeout)),
            Some(tls) => Pool::Tls(pooled_https(timeout, tls)),
        };
        Client {
            http,
            uri,
            timeout,
            transport,
        }
    }

    /// Calls `method(params...)` and waits for the answer.
    pub async fn call(&self, method: &str, params: &[Value]) -> Result<Value, CallError> {
        let uri = self.uri.clone().map_err(CallError::Connect)?;
        let mut body = Vec::with_capacity(256);
        codec::encode_call(method, params, &mut body);
        let body = Bytes::from(body);
        let (t, timeout) = (&self.transport, self.timeout);
        let posted = match &self.http {
            Pool::Plain(http) => post(http, uri, "text/xml", body, t, timeout).await,
            Pool::Tls(http) => post(http, uri, "text/xml", body, t, timeout).await,
        };
        let (status, body) = posted.map_err(|e| match e {
            PostError::Connect(e) => CallError::Connect(e),
            PostError::Transport(e) => CallError::Transport(e),
            PostError::Timeout => CallError::Timeout,
        })?;
        if status != hyper::StatusCode::OK {
            if status == hyper::StatusCode::BAD_REQUEST
                && body.as_ref() == crate::tls::PLAIN_HTTP_REFUSAL.as_bytes()
            {
                // Not delivered: a TLS port passes no plain request on.
                return Err(CallError::Connect(
                    "the node serves HTTPS only (call it with --tls-ca FILE, the cluster's CA)"
                        .into(),
                ));
            }
            return Err(CallError::Http(status.as_u16()));
        }
        match codec::parse_response(&body) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(fault)) => Err(CallError::Fault(fault)),
            Err(e) => Err(CallError::Decode(e)),
        }
    }
}

/// The pooled HTTP client both the XML-RPC client and the bench use.
pub type HttpClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// The same over TLS (HTTPS only).
pub type HttpsClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A [`Client`]'s connections: plain or TLS, as its transport says.
#[derive(Clone)]
enum Pool {
    Plain(HttpClient),
    Tls(HttpsClient),
}

/// Why a POST got no complete HTTP answer.
#[derive(thiserror::Error, Debug)]
pub enum PostError {
    /// No connection could be made; the request was not delivered.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed during the exchange.
    #[error("transport error: {0}")]
    Transport(String),
    #[error("no answer within the timeout")]
    Timeout,
}

/// POSTs `body` as `content_type` to `uri` and returns the status and the
/// whole answer body (at most [`MAX_RESPONSE_BYTES`]), all within `timeout`,
/// with the headers `transport` adds.
pub async fn post<C>(
    http: &hyper_util::client::legacy::Client<C, Full<Bytes>>,
    uri: Uri,
    content_type: &'static str,
    body: Bytes,
    transport: &Transport,
    timeout: Duration,
) -> Result<(hyper::StatusCode, Bytes), PostError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let extra: Vec<_> = transport.headers_for(&body).collect();
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in extra {
        headers.insert(name, value);
    }
    let exchange = async {
        let resp = http.request(req).await.map_err(|e| {
            if e.is_connect() {
                PostError::Connect(chain(&e))
            } else {
                PostError::Transport(chain(&e))
            }
        })?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| PostError::Transport(chain(&*e)))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(PostError::Timeout),
    }
}

/// A pooled keep-alive HTTP/1.1 client: `TCP_NODELAY`, connects bounded by
/// `timeout`, idle connections dropped after [`POOL_IDLE_TIMEOUT`]. The
/// XML-RPC client and the benchmark's JSON client both use it, so they
/// measure servers alike.
pub fn pooled_http(timeout: Duration) -> HttpClient {
    pool_builder().build(tcp_connector(timeout))
}

/// [`pooled_http`] over TLS: `https://` URIs only, servers verified with
/// `tls` (HTTP/1.1, no ALPN: the servers speak nothing else). The connect
/// bound covers TCP; the handshake counts against the call's timeout.
pub fn pooled_https(timeout: Duration, tls: &Arc<rustls::ClientConfig>) -> HttpsClient {
    let mut tcp = tcp_connector(timeout);
    tcp.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(rustls::ClientConfig::clone(tls))
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    pool_builder().build(connector)
}

fn tcp_connector(timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    connector
}

fn pool_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new());
    builder
}

/// An error and its causes, `outer: inner: innermost` (hyper's own messages
/// are terse; the cause is usually the interesting part).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}
