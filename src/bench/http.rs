//! A keep-alive HTTP/1.1 JSON client for etcd's v3 gateway, built like
//! [`crate::xmlrpc::client::Client`] (the same hyper-util pooled client,
//! `TCP_NODELAY`, the same idle timeout, a deadline on every call), so a
//! comparison between the two servers uses the same client machinery.
//!
//! One `JsonClient` per simulated client and endpoint: a closed-loop client
//! has one call in flight, so its pool holds one connection.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::xmlrpc::client::{chain, pooled_http, MAX_RESPONSE_BYTES};

/// Why a POST produced no HTTP answer.
#[derive(thiserror::Error, Debug)]
pub enum HttpError {
    /// No connection could be made; the request was not delivered.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed during the exchange.
    #[error("transport error: {0}")]
    Transport(String),
    #[error("no answer within the timeout")]
    Timeout,
}

#[derive(Clone)]
pub struct JsonClient {
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port` without a trailing slash.
    base: String,
    timeout: Duration,
}

impl JsonClient {
    /// A client for `base` (`http://host:port`), checked to be a usable URL.
    pub fn new(base: &str, timeout: Duration) -> Result<JsonClient, String> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("bad endpoint `{base}`: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!("bad endpoint `{base}`: expected http://host:port"));
        }
        let http = pooled_http(timeout);
        Ok(JsonClient {
            http,
            base,
            timeout,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs `body` (JSON) to `path` and returns the status and the body.
    pub async fn post(&self, path: &str, body: Bytes) -> Result<(u16, Bytes), HttpError> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| HttpError::Connect(format!("bad path {path}: {e}")))?;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                if e.is_connect() {
                    HttpError::Connect(chain(&e))
                } else {
                    HttpError::Transport(chain(&e))
                }
            })?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::Transport(chain(&*e)))?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout),
        }
    }
}
