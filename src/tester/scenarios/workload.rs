//! The clients of the linearizability scenario: each loops until told to
//! stop, doing a `getfileinfomap` alone or a read-modify-write (read, then
//! `updatefile` of one file at the version it saw + 1; sometimes a stale or
//! skipped version, sometimes a tombstone), recording every call in the
//! [`Recorder`].
//!
//! Clients follow leadership as a real client must: on `NotLeader` naming a
//! leader they retry there; on `NotLeader` without one, `isCrashed` or a
//! refused connection they try the next node after a short pause. Each of
//! those answers proves the call had no effect, so it is recorded as not
//! executed; fault 5, timeouts and broken connections are recorded as of
//! unknown outcome. Any other answer breaks the contract and stops the
//! workload with an error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::tester::cluster::Cluster;
use crate::tester::error::{Result, TesterError};
use crate::tester::fmt;
use crate::tester::linearizability::history::{parse_map, Call, FileInfo, Outcome, Recorder};
use crate::xmlrpc::client::CallError;
use crate::xmlrpc::Value;

use std::collections::BTreeMap;

/// What all clients share.
pub struct Shared {
    pub cluster: Cluster,
    pub recorder: Arc<Recorder>,
    pub files: Vec<String>,
    /// Where clients send calls first (the last leader anyone heard of).
    pub leader_hint: AtomicUsize,
    pub stop: AtomicBool,
    /// Pause between operations: uniform in 0..=think.
    pub think: Duration,
}

/// What one answer means for the history and for where to go next.
enum Next {
    Done(Outcome),
    /// No effect; retry at this node (after a pause when `pause`).
    Retry {
        at: usize,
        pause: bool,
        why: String,
    },
}

/// Runs one client until `stop`; `Err` only for an answer that breaks the contract.
pub async fn client(shared: Arc<Shared>, id: usize, mut rng: SmallRng) -> Result<()> {
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let think = shared.think.as_micros() as u64;
        if think > 0 {
            tokio::time::sleep(Duration::from_micros(rng.gen_range(0..=think))).await;
        }
        let Some(map) = read(&shared, id).await? else {
            continue;
        };
        if rng.gen_bool(0.25) {
            continue; // a read on its own
        }
        let file = shared.files[rng.gen_range(0..shared.files.len())].clone();
        let current = map.get(&file).map_or(0, |(v, _)| *v);
        let version = match rng.gen_range(0..100) {
            0..=5 => current,     // stale
            6..=8 => current + 2, // skips one
            _ => current + 1,
        };
        n += 1;
        let hashlist = if rng.gen_range(0..100) < 5 {
            vec![Value::from("0")] // tombstone
        } else {
            vec![Value::String(format!("c{id}-{n}")), Value::Int(n as i32)]
        };
        let call = Call::Update {
            file,
            version,
            hashlist,
        };
        perform(&shared, id, call).await?;
    }
    Ok(())
}

/// A `getfileinfomap`; `None` when its outcome is unknown.
async fn read(shared: &Shared, id: usize) -> Result<Option<BTreeMap<String, FileInfo>>> {
    match perform(shared, id, Call::ReadMap).await? {
        Some(Outcome::Map(m)) => Ok(Some(m)),
        _ => Ok(None),
    }
}

/// Sends `call` until some node executes it (or its outcome is unknown),
/// recording every attempt. `None` when stopped before it was executed.
pub async fn perform(shared: &Shared, id: usize, call: Call) -> Result<Option<Outcome>> {
    let m = shared.cluster.len();
    loop {
        let node = shared.leader_hint.load(Ordering::Relaxed) % m;
        let (method, params) = match &call {
            Call::Update {
                file,
                version,
                hashlist,
            } => ("updatefile", super::update_params(file, *version, hashlist)),
            Call::ReadMap => ("getfileinfomap", Vec::new()),
        };
        let op = shared.recorder.invoke(id, node, call.clone());
        let answer = shared.cluster.call(node, method, &params).await;
        match classify(shared, node, &call, &answer) {
            Ok(Next::Done(outcome)) => {
                shared.recorder.complete(op, outcome.clone());
                return Ok(Some(outcome));
            }
            Ok(Next::Retry { at, pause, why }) => {
                shared.recorder.complete(op, Outcome::NotExecuted(why));
                let _ = shared.leader_hint.compare_exchange(
                    node,
                    at,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if shared.stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                if pause {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err(e) => {
                shared
                    .recorder
                    .complete(op, Outcome::Unknown("broke the contract".into()));
                return Err(e);
            }
        }
    }
}

fn classify(
    shared: &Shared,
    node: usize,
    call: &Call,
    answer: &std::result::Result<Value, CallError>,
) -> Result<Next> {
    let m = shared.cluster.len();
    let next = (node + 1) % m;
    let violation = |expected: &str| {
        let (method, params) = match call {
            Call::Update {
                file,
                version,
                hashlist,
            } => ("updatefile", super::update_params(file, *version, hashlist)),
            Call::ReadMap => ("getfileinfomap", Vec::new()),
        };
        TesterError::check(
            format!(
                "{} on {}",
                fmt::call(method, &params),
                shared.cluster.name(node)
            ),
            expected.to_owned(),
            fmt::outcome(answer),
        )
    };
    Ok(match (call, answer) {
        (Call::Update { .. }, Ok(Value::Bool(b))) => Next::Done(Outcome::Updated(*b)),
        (Call::Update { .. }, Ok(_)) => return Err(violation("True or False")),
        (Call::ReadMap, Ok(v)) => match parse_map(v) {
            Some(map) => Next::Done(Outcome::Map(map)),
            None => return Err(violation("a struct {filename: [version, hashlist]}")),
        },
        (_, Err(CallError::Fault(f))) => match f.code {
            1 => Next::Retry {
                at: next,
                pause: true,
                why: "isCrashed".into(),
            },
            2 => match leader_named(&shared.cluster, &f.message) {
                Some(at) if at != node => Next::Retry {
                    at,
                    pause: false,
                    why: format!("NotLeader, leader {}", shared.cluster.addr(at)),
                },
                _ => Next::Retry {
                    at: next,
                    pause: true,
                    why: "NotLeader, leader unknown".into(),
                },
            },
            5 => Next::Done(Outcome::Unknown(format!("fault 5: {}", f.message))),
            _ => return Err(violation("an answer, or fault 1, 2 or 5")),
        },
        (_, Err(CallError::Connect(e))) => Next::Retry {
            at: next,
            pause: true,
            why: format!("cannot connect: {e}"),
        },
        (_, Err(e)) => Next::Done(Outcome::Unknown(e.to_string())),
    })
}

/// The member named in `NotLeader: leader is host:port`, if any.
fn leader_named(cluster: &Cluster, message: &str) -> Option<usize> {
    let named = message.split("leader is ").nth(1)?.trim();
    let named = named.split_whitespace().next()?;
    cluster.index_of(named)
}
