//! One fake node's method table, over the shared [`State`].

use std::sync::Arc;
use std::time::Duration;

use super::state::{Bug, Shared, State, APPLY_LAG, CATCHUP_DELAY, ELECTION_DELAY};
use crate::node::api::wait_for_changes::{Changes, MAX_TIMEOUT_S};
use crate::xmlrpc::codec::MethodCall;
use crate::xmlrpc::server::{CallContext, Handler};
use crate::xmlrpc::{Fault, Value};

#[derive(Clone)]
pub struct FakeNode {
    pub id: usize,
    pub shared: Arc<Shared>,
}

fn crashed_fault(id: usize) -> Fault {
    Fault::new(1, format!("isCrashed: fake node {id} is crashed"))
}

fn bad(msg: &str) -> Fault {
    Fault::new(3, format!("BadRequest: {msg}"))
}

impl FakeNode {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("fake state")
    }

    fn crashed(&self) -> bool {
        let s = self.lock();
        s.crashed[self.id]
    }

    /// Refuses a leader-only call on a crashed node or a follower.
    fn leader_only(&self, s: &State) -> Result<(), Fault> {
        if s.crashed[self.id] {
            return Err(crashed_fault(self.id));
        }
        if !s.is_leader(self.id) {
            return Err(Fault::new(
                2,
                match s.leader {
                    Some(l) => format!("NotLeader: leader is {}", s.addrs[l]),
                    None => "NotLeader: leader unknown".to_owned(),
                },
            ));
        }
        Ok(())
    }

    /// Waits until a majority is up, while this node stays the leader; runs
    /// `f` under the lock then. Fault 5 if the node stopped leading meanwhile.
    async fn with_majority<T>(&self, f: impl Fn(&mut State) -> T) -> Result<T, Fault> {
        {
            let s = self.lock();
            self.leader_only(&s)?;
        }
        loop {
            let notified = self.shared.changed.notified();
            {
                let mut s = self.lock();
                if !s.is_leader(self.id) {
                    return Err(Fault::new(
                        5,
                        "Unavailable: leadership lost while the call was pending",
                    ));
                }
                if s.majority_up() {
                    return Ok(f(&mut s));
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }

    /// `waitForChanges(since, timeout_s)`: the answer once the counter is
    /// past `since` or the timeout passed (under [`Bug::SleepsOutTimeout`],
    /// always after the timeout); fault 5 if leadership is lost meanwhile.
    async fn wait_for_changes(&self, p: &[Value]) -> Result<Value, Fault> {
        let (Some(since), Some(timeout), 2) = (
            p.first().and_then(Value::as_i64),
            p.get(1).and_then(Value::as_i64),
            p.len(),
        ) else {
            return Err(bad("waitForChanges(since, timeout_s)"));
        };
        let (Ok(since), Ok(timeout)) = (u64::try_from(since), u64::try_from(timeout)) else {
            return Err(bad("waitForChanges: negative argument"));
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(timeout.min(MAX_TIMEOUT_S as u64));
        self.with_majority(|_| ()).await?;
        let mut counter = self.shared.counter.subscribe();
        if self.lock().bug == Bug::SleepsOutTimeout {
            tokio::time::sleep_until(deadline).await;
        }
        loop {
            let notified = self.shared.changed.notified();
            if *counter.borrow_and_update() > since {
                break;
            }
            tokio::select! {
                _ = counter.changed() => {}
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
            let s = self.lock();
            self.leader_only(&s)?;
        }
        self.with_majority(|_| ()).await?;
        let index = *counter.borrow();
        Ok(Changes {
            index,
            changed: index > since,
        }
        .value())
    }

    fn schedule(&self, delay: Duration, f: impl FnOnce(&mut State) + Send + 'static) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            f(&mut shared.state.lock().expect("fake state"));
            shared.changed.notify_waiters();
        });
    }

    async fn dispatch(&self, call: MethodCall) -> Result<Value, Fault> {
        let name = call
            .method
            .strip_prefix("surfstore.")
            .ok_or_else(|| Fault::new(4, format!("NoSuchMethod: {}", call.method)))?;
        let p = call.params;
        match name {
            "ping" => Ok(Value::Bool(true)),
            "members" => Ok(Value::Array(
                self.lock()
                    .addrs
                    .iter()
                    .map(|a| Value::from(a.as_str()))
                    .collect(),
            )),
            "isLeader" | "isleader" => Ok(Value::Bool(self.lock().is_leader(self.id))),
            "isCrashed" | "iscrashed" => Ok(Value::Bool(self.crashed())),
            "tester_getversion" => {
                let Some(Value::String(f)) = p.first() else {
                    return Err(bad("tester_getversion(filename)"));
                };
                let s = self.lock();
                Ok(Value::Int(
                    s.applied[self.id].get(f).map_or(0, |(v, _)| *v as i32),
                ))
            }
            "crash" => {
                let mut s = self.lock();
                if s.bug != Bug::CrashDoesNothing && !s.crashed[self.id] {
                    s.crashed[self.id] = true;
                    if s.leader == Some(self.id) {
                        s.leader = None;
                        let id = self.id;
                        self.schedule(ELECTION_DELAY, move |s| s.elect(id));
                    }
                }
                drop(s);
                self.shared.changed.notify_waiters();
                Ok(Value::Bool(true))
            }
            "restore" => {
                let mut s = self.lock();
                if s.crashed[self.id] {
                    s.crashed[self.id] = false;
                    let id = self.id;
                    self.schedule(CATCHUP_DELAY, move |s| s.catch_up(id));
                    if s.leader.is_none() {
                        self.schedule(ELECTION_DELAY, move |s| s.elect(id));
                    }
                }
                drop(s);
                self.shared.changed.notify_waiters();
                Ok(Value::Bool(true))
            }
            "appendEntries" | "requestVote" => {
                if self.crashed() {
                    Err(crashed_fault(self.id))
                } else {
                    Err(bad("fake nodes do not speak Raft"))
                }
            }
            "updatefile" => {
                let (Some(Value::String(f)), Some(v), Some(Value::Array(h))) =
                    (p.first(), p.get(1).and_then(Value::as_i64), p.get(2))
                else {
                    return Err(bad("updatefile(filename, version, hashlist)"));
                };
                let (f, h) = (f.clone(), h.clone());
                let bug = self.lock().bug;
                if bug == Bug::WakesBeforeApply
                    && self.with_majority(|s| s.would_apply(&f, v)).await?
                {
                    self.shared.counter.send_modify(|c| *c += 1);
                    tokio::time::sleep(APPLY_LAG).await;
                    return self
                        .with_majority(move |s| s.commit(&f, v, h.clone()))
                        .await
                        .map(Value::Bool);
                }
                let counter = &self.shared.counter;
                self.with_majority(move |s| {
                    let applied = s.commit(&f, v, h.clone());
                    if applied && bug != Bug::WakesBeforeApply {
                        counter.send_modify(|c| *c += 1);
                    }
                    applied
                })
                .await
                .map(Value::Bool)
            }
            "waitForChanges" => self.wait_for_changes(&p).await,
            "getfileinfomap" => {
                let map = self.with_majority(|s| s.read()).await?;
                Ok(Value::Struct(
                    map.into_iter()
                        .map(|(f, (v, h))| {
                            (f, Value::Array(vec![Value::Int(v as i32), Value::Array(h)]))
                        })
                        .collect(),
                ))
            }
            _ => Err(Fault::new(4, format!("NoSuchMethod: {}", call.method))),
        }
    }
}

impl Handler for FakeNode {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        self.dispatch(call).await
    }
}
