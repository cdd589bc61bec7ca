//! A keep-alive HTTP/1.1 JSON client for etcd's v3 gateway, built like
//! [`crate::xmlrpc::client::Client`] (the same hyper-util pooled client,
//! `TCP_NODELAY`, the same idle timeout, a deadline on every call), so a
//! comparison between the two servers uses the same client machinery.
//!
//! One `JsonClient` per simulated client and endpoint: a closed-loop client
//! has one call in flight, so its pool holds one connection.

use std::time::Duration;

use bytes::Bytes;
use hyper::Uri;

use crate::xmlrpc::client::{pooled_http, post, HttpClient, Transport};

/// Why a POST produced no HTTP answer (the XML-RPC client's reasons).
pub use crate::xmlrpc::client::PostError as HttpError;

#[derive(Clone)]
pub struct JsonClient {
    http: HttpClient,
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
        let (status, body) = post(
            &self.http,
            uri,
            "application/json",
            body,
            &Transport::default(),
            self.timeout,
        )
        .await?;
        Ok((status.as_u16(), body))
    }
}
