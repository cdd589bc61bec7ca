//! The cluster as the sync client sees it: the members learnt from any one
//! node (`members`), the leader found by asking (`isLeader`) and by following
//! `NotLeader` redirects, and every call retried through crashes and failovers
//! with a bounded backoff until the retry budget runs out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::ClientError;
use crate::node::error::{
    FAULT_BAD_REQUEST, FAULT_NOT_LEADER, FAULT_NO_SUCH_METHOD, FAULT_UNAUTHORIZED,
};
use crate::xmlrpc::client::{CallError, Client, Transport};
use crate::xmlrpc::Value;

/// Where calls go; cheap to clone (clones share the leader guess).
#[derive(Clone)]
pub struct Remote {
    members: Arc<[String]>,
    clients: Arc<[Client]>,
    /// The member believed to lead (an index into `members`).
    leader: Arc<AtomicUsize>,
    /// How long one call may keep retrying before it gives up.
    budget: Duration,
}

impl Remote {
    /// Learns the cluster from `addr`. Fails at once when `addr` does not answer.
    pub async fn connect(
        addr: &str,
        call_timeout: Duration,
        budget: Duration,
        transport: &Transport,
    ) -> Result<Remote, ClientError> {
        let first = Client::with_transport(addr, call_timeout, transport.clone());
        let members = match first.call("surfstore.members", &[]).await {
            Ok(Value::Array(a)) => {
                let m: Vec<String> = a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if m.is_empty() {
                    vec![addr.to_owned()]
                } else {
                    m
                }
            }
            Ok(_) | Err(CallError::Fault(_)) => vec![addr.to_owned()],
            Err(e) => {
                return Err(ClientError::Unreachable {
                    addr: addr.to_owned(),
                    why: e.to_string(),
                })
            }
        };
        let start = members.iter().position(|m| m == addr).unwrap_or(0);
        let clients: Vec<Client> = members
            .iter()
            .map(|m| {
                if m == addr {
                    first.clone()
                } else {
                    Client::with_transport(m, call_timeout, transport.clone())
                }
            })
            .collect();
        Ok(Remote {
            members: members.into(),
            clients: clients.into(),
            leader: Arc::new(AtomicUsize::new(start)),
            budget,
        })
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Calls `method` on the leader, following redirects and retrying through
    /// failures until the budget is spent.
    pub async fn leader_call(&self, method: &str, params: &[Value]) -> Result<Value, ClientError> {
        self.retrying(method, params, true).await
    }

    /// Calls `method` on any live node (block methods), preferring the leader.
    pub async fn any_call(&self, method: &str, params: &[Value]) -> Result<Value, ClientError> {
        self.retrying(method, params, false).await
    }

    async fn retrying(
        &self,
        method: &str,
        params: &[Value],
        needs_leader: bool,
    ) -> Result<Value, ClientError> {
        let full = format!("surfstore.{method}");
        let deadline = Instant::now() + self.budget;
        let mut backoff = Duration::from_millis(20);
        let mut tried_in_round = 0usize;
        let mut last;
        loop {
            let i = self.leader.load(Ordering::Relaxed) % self.members.len();
            match self.clients[i].call(&full, params).await {
                Ok(v) => return Ok(v),
                // Retrying cannot change these answers (a missing secret
                // is missing on every node).
                Err(CallError::Fault(f)) if f.code == FAULT_NO_SUCH_METHOD => {
                    return Err(ClientError::NoSuchMethod {
                        what: format!("{method} on {}", self.members[i]),
                        why: f.message,
                    })
                }
                Err(CallError::Fault(f))
                    if [FAULT_BAD_REQUEST, FAULT_UNAUTHORIZED].contains(&f.code) =>
                {
                    return Err(ClientError::Refused {
                        what: format!("{method} on {}", self.members[i]),
                        why: f.message,
                    })
                }
                Err(CallError::Fault(f)) if needs_leader && f.code == FAULT_NOT_LEADER => {
                    let named = f
                        .message
                        .rsplit("leader is ")
                        .next()
                        .filter(|_| f.message.contains("leader is "))
                        .and_then(|l| self.members.iter().position(|m| m == l.trim()));
                    let next = named.unwrap_or((i + 1) % self.members.len());
                    self.leader.store(next, Ordering::Relaxed);
                    last = format!("{}: {}", self.members[i], f.message);
                    if named.is_some() && next != i {
                        // A fresh redirect: follow it without waiting.
                        continue;
                    }
                }
                Err(e) => {
                    last = format!("{}: {e}", self.members[i]);
                    if matches!(e, CallError::Fault(ref f) if f.code == crate::node::error::FAULT_UNAVAILABLE)
                    {
                        // The node is alive but the outcome is unknown or it
                        // lacks a majority: stay, wait, try again.
                    } else {
                        self.leader
                            .store((i + 1) % self.members.len(), Ordering::Relaxed);
                    }
                }
            }
            tried_in_round += 1;
            if tried_in_round < self.members.len() && !needs_leader {
                continue;
            }
            if Instant::now() + backoff > deadline {
                return Err(ClientError::GaveUp {
                    what: method.to_owned(),
                    after: self.budget,
                    last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            if tried_in_round >= self.members.len() {
                tried_in_round = 0;
            }
        }
    }
}
