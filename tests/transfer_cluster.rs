//! Leadership transfer between real `run-server.sh` processes:
//! - a leader stopped with SIGTERM hands leadership to a follower before it
//!   exits (one election, started by the transfer: the term rises by one),
//!   exits 0, and no write acknowledged under load is lost; its log says so
//!   in plain text (stderr is a file: no ANSI escapes);
//! - `transferLeader(id)` moves leadership where asked and answers with the
//!   new leader; without an id the most up-to-date follower is chosen; a
//!   follower refuses naming the leader; a non-member id is fault 3; a
//!   crashed target never takes over, so the call fails after an election
//!   timeout and the leader leads on, still taking writes.

mod procs;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procs::*;
use surfstore::xmlrpc::client::{CallError, Client};
use surfstore::xmlrpc::Value;

fn code<T>(r: &Result<T, CallError>) -> Option<i32> {
    match r {
        Err(CallError::Fault(f)) => Some(f.code),
        _ => None,
    }
}

/// A writer of new files `prefix-N`, following NotLeader hints, until
/// `stop`; every name acknowledged (true) goes into `acked`.
async fn writer(
    ports: Vec<u16>,
    prefix: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let cs = clients(&ports);
    let mut at = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("{prefix}-{n}");
        let args = [
            Value::String(name.clone()),
            Value::Int(1),
            Value::Array(vec![Value::String("h".into())]),
        ];
        match cs[at].call("surfstore.updatefile", &args).await {
            Ok(Value::Bool(true)) => {
                acked.lock().unwrap().push(name);
                n += 1;
            }
            Ok(other) => panic!("a new file {name} answered {other:?}"),
            Err(CallError::Fault(f)) if f.code == 2 => {
                at = ports
                    .iter()
                    .position(|p| f.message.ends_with(&format!(":{p}")))
                    .unwrap_or((at + 1) % ports.len());
                if !f.message.contains("leader is") {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Err(_) => {
                n += 1;
                at = (at + 1) % ports.len();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn term_of(c: &Client) -> i64 {
    int(&status(c).await.expect("status"), "term")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_hands_off_and_loses_no_write() {
    const PORTS: [u16; 3] = [9880, 9881, 9882];
    let mut nodes = Nodes::start_members(
        "transfer-sigterm",
        &members(&PORTS),
        &[0, 1, 2],
        &[],
        "info",
        &|i, dir| Nodes::log_file(dir, &format!("node{i}.log")),
    );
    let cs = clients(&PORTS);
    let leader = wait_for_leader(&cs).await;
    let term = term_of(&cs[leader]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            tokio::spawn(writer(
                PORTS.to_vec(),
                format!("sigterm-{w}"),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    wait_until("writes before the stop", Duration::from_secs(10), || {
        acked.lock().unwrap().len() >= 100
    })
    .await;
    signal(nodes.pid(leader), "TERM");
    let exit = nodes.wait(leader, Duration::from_secs(10));
    assert!(exit.success(), "the stopped leader exits 0: {exit:?}");
    let before = acked.lock().unwrap().len();
    let others: Vec<Client> = clients(&PORTS)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, c)| c)
        .collect();
    let successor = wait_for_leader(&others).await;
    assert_eq!(
        term_of(&others[successor]).await,
        term + 1,
        "one election, the transfer's"
    );
    wait_until("writes after the stop", Duration::from_secs(10), || {
        acked.lock().unwrap().len() >= before + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let map = others[successor]
        .call("surfstore.getfileinfomap", &[])
        .await
        .expect("getfileinfomap");
    let Value::Struct(files) = map else {
        panic!("not a map: {map:?}")
    };
    let have: BTreeSet<&String> = files.keys().collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.iter().filter(|n| !have.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let log = std::fs::read_to_string(nodes.dir.join(format!("node{leader}.log"))).unwrap();
    assert!(
        log.contains("stopping: handed leadership to node"),
        "the log says what the stop did:\n{log}"
    );
    assert!(
        !log.contains('\x1b'),
        "no ANSI escapes in a log file:\n{log}"
    );
    assert!(
        log.contains("elected leader") && log.contains("term="),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leader_moves_leadership_where_asked() {
    const PORTS: [u16; 3] = [9883, 9884, 9885];
    let _nodes = Nodes::start("transfer-call", &PORTS, &[], "warn", Stdio::null);
    let cs = clients(&PORTS);
    let leader = wait_for_leader(&cs).await;
    let term = term_of(&cs[leader]).await;
    let to = (leader + 1) % 3;

    let r = cs[to]
        .call("surfstore.transferLeader", &[Value::Int(to as i32)])
        .await;
    assert_eq!(code(&r), Some(2), "a follower refuses: {r:?}");
    assert!(
        r.unwrap_err()
            .to_string()
            .contains(&format!("localhost:{}", PORTS[leader])),
        "naming the leader"
    );
    let r = cs[leader]
        .call("surfstore.transferLeader", &[Value::Int(7)])
        .await;
    assert_eq!(code(&r), Some(3), "not a member: {r:?}");

    let r = cs[leader]
        .call("surfstore.transferLeader", &[Value::Int(to as i32)])
        .await
        .expect("transfer");
    assert_eq!(r, Value::Int(to as i32));
    let s = status(&cs[to]).await.unwrap();
    assert_eq!(field(&s, "role"), &Value::String("leader".into()));
    assert_eq!(int(&s, "term"), term + 1);

    // No id: the most up-to-date follower.
    let r = cs[to]
        .call("surfstore.transferLeader", &[])
        .await
        .expect("transfer");
    let chosen = r.as_i64().expect("an id") as usize;
    assert_ne!(chosen, to);
    assert_eq!(wait_for_leader(&cs).await, chosen);

    // A crashed target never takes over: the call fails after an election
    // timeout and the leader leads on, taking writes.
    let target = (chosen + 1) % 3;
    cs[target].call("surfstore.crash", &[]).await.unwrap();
    let term = term_of(&cs[chosen]).await;
    let r = cs[chosen]
        .call("surfstore.transferLeader", &[Value::Int(target as i32)])
        .await;
    assert_eq!(code(&r), Some(5), "{r:?}");
    assert!(
        r.unwrap_err().to_string().contains("did not take over"),
        "says why"
    );
    let s = status(&cs[chosen]).await.unwrap();
    assert_eq!(field(&s, "role"), &Value::String("leader".into()));
    assert_eq!(int(&s, "term"), term);
    assert_eq!(int(&s, "transferring_to"), -1);
    update(&cs[chosen], "after-failed-transfer", 1).await;
    cs[target].call("surfstore.restore", &[]).await.unwrap();
}
