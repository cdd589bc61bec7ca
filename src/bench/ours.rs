//! Our cluster as the bench drives it: the members learnt from any node
//! (`members`), the leader found with `isLeader` and followed through
//! `NotLeader` hints, crashes and failovers; calls over
//! [`crate::xmlrpc::client::Client`], one per member per simulated client.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::target::{Attempt, Failure, LeaderGuess, Op, Then};
use super::BenchError;
use crate::node::error::{
    FAULT_BAD_REQUEST, FAULT_IS_CRASHED, FAULT_NOT_LEADER, FAULT_NO_SUCH_METHOD, FAULT_UNAVAILABLE,
};
use crate::xmlrpc::client::{CallError, Client};
use crate::xmlrpc::Value;

/// How often `connect` asks every member `isLeader` while none is.
const LEADER_POLL: Duration = Duration::from_millis(50);

/// The cluster: its members, the shared leader guess and the payload.
#[derive(Clone)]
pub struct Ours {
    members: Arc<[String]>,
    leader: Arc<LeaderGuess>,
    timeout: Duration,
    /// The hash list of every `updatefile`: one string of `payload` characters.
    hashlist: Value,
}

impl Ours {
    /// Learns the members from `addr` and waits (polling `isLeader`, at most
    /// `connect_timeout`) until one of them leads.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        connect_timeout: Duration,
        payload: usize,
    ) -> Result<Ours, BenchError> {
        let first = Client::new(addr, timeout);
        let members: Vec<String> = match first.call("surfstore.members", &[]).await {
            Ok(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Ok(other) => {
                return Err(BenchError::Unreachable {
                    target: addr.to_owned(),
                    why: format!("members answered {other:?}, expected an array of host:port"),
                })
            }
            Err(e) => {
                return Err(BenchError::Unreachable {
                    target: addr.to_owned(),
                    why: e.to_string(),
                })
            }
        };
        if members.is_empty() {
            return Err(BenchError::Unreachable {
                target: addr.to_owned(),
                why: "members answered an empty list".into(),
            });
        }
        let probe_timeout = timeout.min(Duration::from_secs(1));
        let probes: Vec<Client> = members
            .iter()
            .map(|m| Client::new(m, probe_timeout))
            .collect();
        let deadline = Instant::now() + connect_timeout;
        let leader = loop {
            let mut last = String::new();
            let mut found = None;
            for (i, c) in probes.iter().enumerate() {
                match c.call("surfstore.isLeader", &[]).await {
                    Ok(Value::Bool(true)) => {
                        found = Some(i);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => last = format!("{}: {e}", members[i]),
                }
            }
            if let Some(i) = found {
                break i;
            }
            if Instant::now() + LEADER_POLL > deadline {
                return Err(BenchError::NoLeader {
                    target: addr.to_owned(),
                    after: connect_timeout,
                    last,
                });
            }
            tokio::time::sleep(LEADER_POLL).await;
        };
        Ok(Ours {
            leader: Arc::new(LeaderGuess::new(leader, members.len())),
            members: members.into(),
            timeout,
            hashlist: Value::Array(vec![Value::String(payload_text(payload))]),
        })
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    pub fn leader(&self) -> String {
        self.members[self.leader.get()].clone()
    }

    pub fn switches(&self) -> u64 {
        self.leader.switches()
    }

    /// A simulated client: its own client (own connection pool) per member.
    pub fn session(&self) -> OursSession {
        OursSession {
            clients: self
                .members
                .iter()
                .map(|m| Client::new(m, self.timeout))
                .collect(),
            cluster: self.clone(),
        }
    }
}

/// `n` characters of hex-like text (what a hash list holds).
pub fn payload_text(n: usize) -> String {
    "0123456789abcdef".chars().cycle().take(n).collect()
}

pub struct OursSession {
    cluster: Ours,
    /// `clients[i]` talks to member i.
    clients: Vec<Client>,
}

impl OursSession {
    pub async fn attempt(&mut self, op: Op<'_>) -> Attempt {
        let guess = &self.cluster.leader;
        let i = guess.get();
        let result = match op {
            Op::Write { key, version } => {
                let params = [
                    Value::String(key.to_owned()),
                    Value::Int(version),
                    self.cluster.hashlist.clone(),
                ];
                self.clients[i].call("surfstore.updatefile", &params).await
            }
            Op::Read => self.clients[i].call("surfstore.getfileinfomap", &[]).await,
        };
        let at = &self.cluster.members[i];
        match (op, result) {
            (Op::Write { .. }, Ok(Value::Bool(true))) => Ok(0),
            (Op::Write { key, version }, Ok(Value::Bool(false))) => Err(Failure::new(
                "rejected (updatefile false)",
                format!("{at}: updatefile({key:?}, {version}) answered false"),
                Then::RetryNow,
            )
            .fresh_key()),
            (Op::Read, Ok(Value::Struct(map))) => Ok(map.len() as u64),
            (_, Ok(other)) => Err(Failure::new(
                "unexpected answer",
                format!("{at}: unexpected answer {other:?}"),
                Then::Fatal,
            )),
            (_, Err(CallError::Fault(f))) => Err(match f.code {
                FAULT_NOT_LEADER => {
                    let hint = f
                        .message
                        .split_once("leader is ")
                        .and_then(|(_, l)| self.cluster.members.iter().position(|m| m == l.trim()));
                    match hint {
                        Some(l) if l != i => {
                            guess.switch(i, l);
                            Failure::new("fault 2 NotLeader", f.message, Then::RetryNow)
                        }
                        _ => {
                            // No leader known yet (an election is on): try the next.
                            guess.next(i);
                            Failure::new("fault 2 NotLeader", f.message, Then::Backoff)
                        }
                    }
                }
                FAULT_IS_CRASHED => {
                    guess.next(i);
                    Failure::new("fault 1 isCrashed", f.message, Then::RetryNow)
                }
                FAULT_UNAVAILABLE => {
                    Failure::new("fault 5 Unavailable", f.message, Then::Backoff).fresh_key()
                }
                FAULT_BAD_REQUEST | FAULT_NO_SUCH_METHOD => Failure::new(
                    format!("fault {}", f.code),
                    format!("{at}: {f}"),
                    Then::Fatal,
                ),
                code => Failure::new(format!("fault {code}"), f.message, Then::Backoff).fresh_key(),
            }),
            (_, Err(CallError::Connect(e))) => {
                guess.next(i);
                Err(Failure::new(
                    "connect",
                    format!("{at}: {e}"),
                    Then::RetryNow,
                ))
            }
            (_, Err(CallError::Timeout)) => {
                guess.next(i);
                Err(Failure::new(
                    "timeout",
                    format!("{at}: no answer within {:?}", self.cluster.timeout),
                    Then::Backoff,
                )
                .fresh_key())
            }
            (_, Err(CallError::Transport(e))) => {
                guess.next(i);
                Err(Failure::new("transport", format!("{at}: {e}"), Then::Backoff).fresh_key())
            }
            (_, Err(e @ (CallError::Http(_) | CallError::Decode(_)))) => Err(Failure::new(
                match e {
                    CallError::Http(s) => format!("HTTP {s}"),
                    _ => "bad response".to_owned(),
                },
                format!("{at}: {e}"),
                Then::Fatal,
            )),
        }
    }
}
