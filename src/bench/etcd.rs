//! etcd as the bench drives it, through its v3 JSON gateway (grpc-gateway,
//! keys and values base64 in JSON): a write is `POST /v3/kv/put`, a read is
//! `POST /v3/kv/range` over every key (linearizable, etcd's default).
//!
//! Calls go to the leader, found with `POST /v3/maintenance/status` on every
//! endpoint (the one whose `header.member_id` is the `leader` it reports).
//! A follower would forward a put to the leader itself, adding a hop that
//! our cluster's clients never take; so after a failed call the session asks
//! again, and a leader change is followed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::time::Instant;

use super::http::{HttpError, JsonClient};
use super::ours::payload_text;
use super::target::{Attempt, Failure, LeaderGuess, Op, Then};
use super::BenchError;

const LEADER_POLL: Duration = Duration::from_millis(50);

/// `range` over every key: `key` and `range_end` both `"\0"`.
const RANGE_ALL: &str = r#"{"key":"AA==","range_end":"AA=="}"#;

#[derive(Clone)]
pub struct Etcd {
    endpoints: Arc<[String]>,
    /// Cluster members, from `/v3/cluster/member/list`.
    members: usize,
    leader: Arc<LeaderGuess>,
    timeout: Duration,
    /// The value of every put, base64.
    value_b64: Arc<str>,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A uint64 as grpc-gateway writes it (a JSON string) or as a number.
fn id_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The index of the endpoint that says it is the leader, if any does.
async fn find_leader(clients: &[JsonClient]) -> Result<usize, String> {
    let mut last = String::from("no endpoint reports a leader");
    for (i, c) in clients.iter().enumerate() {
        match c
            .post("/v3/maintenance/status", Bytes::from_static(b"{}"))
            .await
        {
            Ok((200, body)) => {
                let v: serde_json::Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        last = format!("{}: status is not JSON: {e}", c.base());
                        continue;
                    }
                };
                let me = id_of(&v["header"]["member_id"]);
                let leader = id_of(&v["leader"]);
                if me.is_some() && me == leader {
                    return Ok(i);
                }
            }
            Ok((status, body)) => {
                last = format!(
                    "{}: status answered HTTP {status}: {}",
                    c.base(),
                    String::from_utf8_lossy(&body)
                )
            }
            Err(e) => last = format!("{}: {e}", c.base()),
        }
    }
    Err(last)
}

impl Etcd {
    /// Checks the endpoints and waits (at most `connect_timeout`) for one
    /// of them to report itself leader.
    pub async fn connect(
        endpoints: &[String],
        timeout: Duration,
        connect_timeout: Duration,
        payload: usize,
    ) -> Result<Etcd, BenchError> {
        if endpoints.is_empty() {
            return Err(BenchError::Args(
                "--target etcd needs --endpoints http://host:port,...".into(),
            ));
        }
        let probe_timeout = timeout.min(Duration::from_secs(1));
        let probes = clients(endpoints, probe_timeout)?;
        let deadline = Instant::now() + connect_timeout;
        let leader = loop {
            match find_leader(&probes).await {
                Ok(i) => break i,
                Err(last) if Instant::now() + LEADER_POLL > deadline => {
                    return Err(BenchError::NoLeader {
                        target: endpoints.join(","),
                        after: connect_timeout,
                        last,
                    })
                }
                Err(_) => tokio::time::sleep(LEADER_POLL).await,
            }
        };
        let members = match probes[leader]
            .post("/v3/cluster/member/list", Bytes::from_static(b"{}"))
            .await
        {
            Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["members"].as_array().map(Vec::len))
                .unwrap_or(endpoints.len()),
            _ => endpoints.len(),
        };
        Ok(Etcd {
            endpoints: endpoints.into(),
            members,
            leader: Arc::new(LeaderGuess::new(leader, endpoints.len())),
            timeout,
            value_b64: b64(payload_text(payload).as_bytes()).into(),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn members(&self) -> usize {
        self.members
    }

    pub fn leader(&self) -> String {
        self.endpoints[self.leader.get()].clone()
    }

    pub fn switches(&self) -> u64 {
        self.leader.switches()
    }

    pub fn session(&self) -> EtcdSession {
        EtcdSession {
            clients: clients(&self.endpoints, self.timeout)
                .expect("endpoints were checked by Etcd::connect"),
            cluster: self.clone(),
            rediscover: false,
        }
    }
}

fn clients(endpoints: &[String], timeout: Duration) -> Result<Vec<JsonClient>, BenchError> {
    endpoints
        .iter()
        .map(|e| JsonClient::new(e, timeout).map_err(BenchError::Args))
        .collect()
}

/// A gRPC status code's name, for the error kinds.
fn grpc_code_name(code: i64) -> &'static str {
    match code {
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        13 => "Internal",
        14 => "Unavailable",
        _ => "",
    }
}

pub struct EtcdSession {
    cluster: Etcd,
    clients: Vec<JsonClient>,
    /// Ask every endpoint for the leader before the next attempt.
    rediscover: bool,
}

impl EtcdSession {
    pub async fn attempt(&mut self, op: Op<'_>) -> Attempt {
        let guess = &self.cluster.leader;
        if self.rediscover {
            self.rediscover = false;
            if let Ok(l) = find_leader(&self.clients).await {
                guess.switch(guess.get(), l);
            }
        }
        let i = guess.get();
        let client = &self.clients[i];
        let at = client.base().to_owned();
        let (path, body) = match op {
            Op::Write { key, .. } => (
                "/v3/kv/put",
                Bytes::from(format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    b64(key.as_bytes()),
                    self.cluster.value_b64
                )),
            ),
            Op::Read => ("/v3/kv/range", Bytes::from_static(RANGE_ALL.as_bytes())),
        };
        let failure = match client.post(path, body).await {
            Ok((200, body)) => {
                let v: Result<serde_json::Value, _> = serde_json::from_slice(&body);
                return match v {
                    Ok(v) if v.get("header").is_some() => Ok(match op {
                        Op::Read => v["count"]
                            .as_str()
                            .and_then(|c| c.parse().ok())
                            .or_else(|| v["count"].as_u64())
                            .unwrap_or(0),
                        Op::Write { .. } => 0,
                    }),
                    _ => Err(Failure::new(
                        "unexpected answer",
                        format!("{at}{path}: {}", String::from_utf8_lossy(&body)),
                        Then::Fatal,
                    )),
                };
            }
            Ok((status, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let text = String::from_utf8_lossy(&body).into_owned();
                match v["code"].as_i64() {
                    Some(code @ (3 | 8)) => Failure::new(
                        format!("etcd code {code} {}", grpc_code_name(code)),
                        format!("{at}{path}: HTTP {status}: {text}"),
                        Then::Fatal,
                    ),
                    Some(code) => {
                        self.rediscover = true;
                        Failure::new(
                            format!("etcd code {code} {}", grpc_code_name(code))
                                .trim_end()
                                .to_owned(),
                            format!("{at}{path}: HTTP {status}: {text}"),
                            Then::Backoff,
                        )
                    }
                    None if status >= 500 => {
                        self.rediscover = true;
                        Failure::new(
                            format!("HTTP {status}"),
                            format!("{at}{path}: {text}"),
                            Then::Backoff,
                        )
                    }
                    None => Failure::new(
                        format!("HTTP {status}"),
                        format!("{at}{path}: {text}"),
                        Then::Fatal,
                    ),
                }
            }
            Err(e) => {
                self.rediscover = true;
                let (kind, then) = match e {
                    HttpError::Connect(_) => {
                        guess.next(i);
                        ("connect", Then::RetryNow)
                    }
                    HttpError::Timeout => ("timeout", Then::Backoff),
                    HttpError::Transport(_) => ("transport", Then::Backoff),
                };
                Failure::new(kind, format!("{at}{path}: {e}"), then)
            }
        };
        Err(failure.fresh_key())
    }
}
