//! Issue 11's attack against a real cluster: three `run-server.sh` processes
//! (in memory, ports 9820-9822). One unauthenticated `installSnapshot` of
//! five junk bytes, claiming to come from the leader in a much higher term,
//! used to make a follower exit. Now a call without a member's identity
//! headers is refused with fault 7 before it is read, and one that carries
//! them (an attacker who read the config file) with fault 3 naming what is
//! wrong with the snapshot. Neither changes anything: no node stops, no term
//! moves, no election happens, and the cluster keeps writing and converging.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use surfstore::xmlrpc::client::CallError;

mod procs;
use procs::*;
use surfstore::xmlrpc::Value;

const PORTS: [u16; 3] = [9820, 9821, 9822];
const FILE: &str = "junk.txt";

/// The attack: one chunk that is the whole "snapshot", `data` junk.
fn junk_chunk(from: usize, to: usize, data: &[u8]) -> Value {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("from", from as i64),
        ("to", to as i64),
        ("term", 50),
        ("index", 100),
        ("snap_term", 50),
        ("offset", 0),
        ("total", data.len() as i64),
    ] {
        m.insert(k.to_string(), Value::Int(v as i32));
    }
    m.insert("data".into(), Value::Base64(data.to_vec()));
    m.insert("done".into(), Value::Bool(true));
    Value::Struct(m.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_snapshot_is_refused_and_the_cluster_keeps_writing() {
    let _nodes = Nodes::start("junk-snapshot", &PORTS, &[], "warn", Stdio::null);
    let clients = clients(&PORTS);
    let leader = wait_for_leader(&clients).await;
    for v in 1..=5 {
        update(&clients[leader], FILE, v).await;
    }
    let term = int(&status(&clients[leader]).await.unwrap(), "term");

    // The attack on both followers, and (claiming a follower sent it) on the
    // leader; then a flipped-bit real snapshot header and an empty one.
    for (to, stranger) in clients.iter().enumerate() {
        let from = if to == leader {
            (leader + 1) % 3
        } else {
            leader
        };
        let err = stranger
            .call(
                "surfstore.installSnapshot",
                &[junk_chunk(from, to, b"\x01")],
            )
            .await
            .expect_err("a stranger's snapshot was accepted");
        assert_eq!(err.fault().map(|f| f.code), Some(7), "{err:?}");
        let c = &member_client(&PORTS, to, from);
        for (data, why) in [
            (&b"\x01\x02\x03\x04\x05"[..], "bad magic"),
            (b"SFSM\x03\0\0\0\0\0\0\0\0\0\0\0\0", "CRC mismatch"),
            (b"", "truncated"),
        ] {
            let err = c
                .call("surfstore.installSnapshot", &[junk_chunk(from, to, data)])
                .await
                .expect_err("a junk snapshot was accepted");
            let CallError::Fault(f) = &err else {
                panic!("node {to} answered {err:?}, not a fault");
            };
            assert_eq!(f.code, 3, "{f:?}");
            assert!(
                f.message.contains("snapshot 100 (term 50) from node")
                    && f.message.contains("refused, nothing changed")
                    && f.message.contains(why),
                "{}",
                f.message
            );
        }
    }

    // Every node still serves, none failed, and no term moved.
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(
            c.call("surfstore.ping", &[]).await.unwrap(),
            Value::Bool(true)
        );
        let s = status(c).await.expect("status answers");
        assert_eq!(
            field(&s, "failed"),
            &Value::String(String::new()),
            "node {i}"
        );
        assert_eq!(int(&s, "term"), term, "node {i}'s term moved");
    }

    // The cluster keeps writing, every node converges, with no election.
    for v in 6..=20 {
        update(&clients[leader], FILE, v).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in &clients {
        loop {
            let got = c
                .call("surfstore.tester_getversion", &[Value::String(FILE.into())])
                .await
                .ok()
                .and_then(|v| v.as_i64());
            if got == Some(20) {
                break;
            }
            assert!(Instant::now() < deadline, "a node stuck at {got:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let s = status(&clients[leader]).await.unwrap();
    assert_eq!(field(&s, "role"), &Value::String("leader".into()));
    assert_eq!(int(&s, "term"), term, "an election happened");
}
