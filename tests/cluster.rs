//! Real nodes on real loopback ports, in-process: the whole API table over
//! XML-RPC, crash/restore, majority-down blocking, leadership loss, bad input.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{fault_code, s, TestCluster};
use surfstore::xmlrpc::client::CallError;
use surfstore::xmlrpc::Value;

fn arr(v: Vec<Value>) -> Value {
    Value::Array(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_api_table() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let f = (l + 1) % 3;

    for i in 0..3 {
        assert_eq!(c.call(i, "ping", &[]).await.unwrap(), Value::Bool(true));
        let members = c.call(i, "members", &[]).await.unwrap();
        assert_eq!(members, arr(c.addrs.iter().map(|a| s(a)).collect()));
        assert_eq!(
            c.call(i, "isLeader", &[]).await.unwrap(),
            Value::Bool(i == l)
        );
        assert_eq!(
            c.call(i, "isleader", &[]).await.unwrap(),
            Value::Bool(i == l)
        );
        assert_eq!(
            c.call(i, "isCrashed", &[]).await.unwrap(),
            Value::Bool(false)
        );
    }

    // Version rules, through the leader.
    let upd = |name: &str, v: i32, h: Vec<Value>| vec![s(name), Value::Int(v), arr(h)];
    assert_eq!(
        c.call(l, "tester_getversion", &[s("a")]).await.unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        c.call(l, "updatefile", &upd("a", 1, vec![s("h1")]))
            .await
            .unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        c.call(l, "updatefile", &upd("a", 1, vec![s("x")]))
            .await
            .unwrap(),
        Value::Bool(false)
    );
    assert_eq!(
        c.call(l, "updatefile", &upd("a", 3, vec![s("x")]))
            .await
            .unwrap(),
        Value::Bool(false)
    );
    assert_eq!(
        c.call(l, "updatefile", &upd("a", 2, vec![Value::Int(7)]))
            .await
            .unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        c.call(l, "updatefile", &upd("t", 1, vec![s("0")]))
            .await
            .unwrap(),
        Value::Bool(true)
    );
    let map = c.call(l, "getfileinfomap", &[]).await.unwrap();
    let mut want = BTreeMap::new();
    want.insert(
        "a".to_owned(),
        arr(vec![Value::Int(2), arr(vec![Value::Int(7)])]),
    );
    want.insert("t".to_owned(), arr(vec![Value::Int(1), arr(vec![s("0")])]));
    assert_eq!(map, Value::Struct(want));

    // Followers refuse leader-only calls, naming the leader.
    let r = c.call(f, "updatefile", &upd("b", 1, vec![])).await;
    assert_eq!(fault_code(&r), Some(2), "{r:?}");
    assert!(format!("{r:?}").contains(&c.addrs[l]), "{r:?}");
    assert_eq!(fault_code(&c.call(f, "getfileinfomap", &[]).await), Some(2));

    // Every node applies; tester_getversion reads each node's own map.
    let last = c.handle(l).status().raft.applied_index;
    for i in 0..3 {
        c.applied(i, last).await;
        assert_eq!(
            c.call(i, "tester_getversion", &[s("a")]).await.unwrap(),
            Value::Int(2)
        );
    }

    // The block store refuses what cannot be a block hash.
    assert_eq!(fault_code(&c.call(l, "getblock", &[s("h")]).await), Some(3));

    // The crashed state.
    assert_eq!(c.call(f, "crash", &[]).await.unwrap(), Value::Bool(true));
    assert_eq!(c.call(f, "crash", &[]).await.unwrap(), Value::Bool(true));
    assert_eq!(
        c.call(f, "isCrashed", &[]).await.unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        c.call(f, "iscrashed", &[]).await.unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        c.call(f, "isLeader", &[]).await.unwrap(),
        Value::Bool(false)
    );
    assert_eq!(c.call(f, "ping", &[]).await.unwrap(), Value::Bool(true));
    assert_eq!(
        c.call(f, "members", &[])
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(fault_code(&c.call(f, "getfileinfomap", &[]).await), Some(1));
    assert_eq!(
        fault_code(&c.call(f, "updatefile", &upd("a", 3, vec![])).await),
        Some(1)
    );
    assert_eq!(fault_code(&c.call(f, "getblock", &[s("h")]).await), Some(1));
    // Peer calls: isCrashed before any argument check.
    assert_eq!(fault_code(&c.call(f, "appendEntries", &[]).await), Some(1));
    assert_eq!(
        fault_code(&c.call(f, "requestVote", &[s("junk")]).await),
        Some(1)
    );
    assert_eq!(
        c.call(l, "updatefile", &upd("a", 3, vec![s("h3")]))
            .await
            .unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        c.call(f, "tester_getversion", &[s("a")]).await.unwrap(),
        Value::Int(2),
        "a crashed node stays behind"
    );
    assert_eq!(c.call(f, "restore", &[]).await.unwrap(), Value::Bool(true));
    assert_eq!(
        c.call(f, "isCrashed", &[]).await.unwrap(),
        Value::Bool(false)
    );
    let last = c.handle(l).status().raft.applied_index;
    c.applied(f, last).await;
    assert_eq!(
        c.call(f, "tester_getversion", &[s("a")]).await.unwrap(),
        Value::Int(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_down_blocks_then_completes() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    for &f in &followers {
        c.handle(f).crash().await.unwrap();
    }
    let h = c.handle(l).clone();
    let mut update = tokio::spawn(async move { h.update_file("x".into(), 1, vec![]).await });
    let h = c.handle(l).clone();
    let mut read = tokio::spawn(async move { h.file_info_map().await });
    // Blocking is the absence of an answer: watch for one over many heartbeats.
    let window = common::fast_timing().heartbeat * 20;
    assert!(
        tokio::time::timeout(window, &mut update).await.is_err(),
        "updatefile must block"
    );
    assert!(
        tokio::time::timeout(window, &mut read).await.is_err(),
        "getfileinfomap must block"
    );
    assert!(
        c.handle(l).status().is_leader(),
        "the leader does not step down for lack of answers"
    );
    c.handle(followers[0]).restore().await.unwrap();
    assert_eq!(update.await.unwrap(), Ok(true));
    assert!(read.await.unwrap().is_ok());
    let map = c.handle(l).file_info_map().await.unwrap();
    assert!(map.as_struct().unwrap().contains_key("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_pending_on_a_leader_that_crashes_gets_unavailable() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    for f in (0..3).filter(|&i| i != l) {
        c.handle(f).crash().await.unwrap();
    }
    let client = c.clients[l].clone();
    let pending = tokio::spawn(async move {
        client
            .call(
                "surfstore.updatefile",
                &[s("p"), Value::Int(1), Value::Array(vec![])],
            )
            .await
    });
    // The call is in the driver once the leader's log grows past its no-op.
    let before = c.handle(l).status().raft.last_index;
    c.wait_for(
        "the proposal to reach the leader's log",
        Duration::from_secs(5),
        |st| (st[l].raft.last_index > before).then_some(()),
    )
    .await;
    c.handle(l).crash().await.unwrap();
    let r = pending.await.unwrap();
    assert_eq!(fault_code(&r), Some(5), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_fault_and_changes_nothing() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    c.call(
        l,
        "updatefile",
        &[s("keep"), Value::Int(1), arr(vec![s("k")])],
    )
    .await
    .unwrap();
    let before = c.call(l, "getfileinfomap", &[]).await.unwrap();
    let last_before = c.handle(l).status().raft.last_index;
    let cases: Vec<(&str, Vec<Value>, i32)> = vec![
        ("updatefile", vec![], 3),
        ("updatefile", vec![s("keep"), Value::Int(2)], 3),
        ("updatefile", vec![s("keep"), s("2"), arr(vec![])], 3),
        (
            "updatefile",
            vec![Value::Int(1), Value::Int(2), arr(vec![])],
            3,
        ),
        (
            "updatefile",
            vec![s("keep"), Value::Int(2), s("notalist")],
            3,
        ),
        (
            "updatefile",
            vec![s("keep"), Value::Int(2), arr(vec![arr(vec![])])],
            3,
        ),
        ("updatefile", vec![s(""), Value::Int(1), arr(vec![])], 3),
        (
            "updatefile",
            vec![s("bell\u{7}"), Value::Int(1), arr(vec![])],
            3,
        ),
        (
            "updatefile",
            vec![s("ok"), Value::Int(1), arr(vec![s("\u{1}")])],
            3,
        ),
        (
            "updatefile",
            vec![s("keep"), Value::Int(2), arr(vec![]), Value::Nil],
            3,
        ),
        (
            "updatefile",
            vec![
                s("keep"),
                Value::Int(2),
                arr(vec![s("h"), Value::Double(1.0)]),
            ],
            3,
        ),
        (
            "updatefile",
            vec![s("keep"), Value::Int(2), arr(vec![Value::Bool(true)])],
            3,
        ),
        (
            "updatefile",
            vec![s("keep"), Value::Int(2), arr(vec![Value::Nil])],
            3,
        ),
        (
            "updatefile",
            vec![
                s("keep"),
                Value::Int(2),
                arr(vec![Value::Struct(BTreeMap::new())]),
            ],
            3,
        ),
        ("tester_getversion", vec![], 3),
        ("tester_getversion", vec![Value::Int(1)], 3),
        ("ping", vec![Value::Int(1)], 3),
        ("getfileinfomap", vec![s("x")], 3),
        ("nosuch", vec![], 4),
    ];
    for (method, params, code) in cases {
        let r = c.call(l, method, &params).await;
        assert_eq!(fault_code(&r), Some(code), "{method}{params:?} -> {r:?}");
    }
    let r = c.clients[l].call("ping", &[]).await;
    assert_eq!(
        fault_code(&r),
        Some(4),
        "methods live under surfstore.: {r:?}"
    );
    // Peer calls without a member's identity headers are refused (fault 7)
    // before their arguments are read; from a member, malformed ones get
    // fault 3.
    let peer = (l + 1) % 3;
    let member = c.peer_client(l, peer);
    for (method, params) in [
        ("appendEntries", vec![]),
        ("appendEntries", vec![s("x")]),
        ("requestVote", vec![Value::Struct(BTreeMap::new())]),
    ] {
        let r = c.call(l, method, &params).await;
        assert_eq!(fault_code(&r), Some(7), "{method}{params:?} -> {r:?}");
        let r = member.call(&format!("surfstore.{method}"), &params).await;
        assert_eq!(fault_code(&r), Some(3), "{method}{params:?} -> {r:?}");
    }
    // A forged vote request from a non-member is refused, not counted; so
    // is one that claims to be from another member than its headers.
    let forged = |from: i64| {
        let mut m = BTreeMap::new();
        for k in ["from", "to", "term", "last_index", "last_term"] {
            m.insert(k.to_owned(), Value::I8(1));
        }
        m.insert("from".to_owned(), Value::I8(from));
        m.insert("to".to_owned(), Value::I8(l as i64));
        Value::Struct(m)
    };
    let r = member.call("surfstore.requestVote", &[forged(99)]).await;
    assert_eq!(fault_code(&r), Some(3), "{r:?}");
    let other = ((l + 2) % 3) as i64;
    let r = member.call("surfstore.requestVote", &[forged(other)]).await;
    assert_eq!(fault_code(&r), Some(7), "{r:?}");
    let text = r.unwrap_err().to_string();
    assert!(
        text.contains(&format!(
            "member {peer} sent a message that claims to be from {other}"
        )),
        "{text}"
    );
    assert_eq!(c.call(l, "getfileinfomap", &[]).await.unwrap(), before);
    assert_eq!(
        c.handle(l).status().raft.last_index,
        last_before,
        "no entry was proposed"
    );
    assert!(c.handle(l).status().is_leader());
}

/// The fault's text, or a panic naming what came instead.
fn fault_text(r: Result<Value, CallError>) -> String {
    match r {
        Err(CallError::Fault(f)) if f.code == 3 => f.message,
        other => panic!("expected fault 3, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_method_the_argument_and_the_signature() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    const SIG: &str = "(filename:string, version:int, hashlist:array)";
    let cases: Vec<(&str, Vec<Value>, String)> = vec![
        (
            "updatefile",
            vec![s("f"), s("one"), arr(vec![])],
            format!("updatefile: argument 2 (version) must be an int, got string; expects {SIG}"),
        ),
        (
            "updatefile",
            vec![s("f"), Value::Int(1)],
            format!("updatefile expects {SIG}, got 2 arguments"),
        ),
        (
            "updatefile",
            vec![s("f"), Value::Int(1), arr(vec![]), Value::Nil],
            format!("updatefile expects {SIG}, got 4 arguments"),
        ),
        (
            "updatefile",
            vec![s("f"), Value::Int(1), arr(vec![s("h"), Value::Double(0.5)])],
            format!(
                "updatefile: argument 3 (hashlist) may hold strings, ints and base64, \
                 but hashlist[1] is double; expects {SIG}"
            ),
        ),
        (
            "updatefile",
            vec![s("f"), Value::Int(1), arr(vec![s("\u{1}")])],
            format!(
                "updatefile: argument 3 (hashlist) hashlist[0] contains U+0001, \
                 which XML 1.0 cannot carry; expects {SIG}"
            ),
        ),
        (
            "tester_getversion",
            vec![Value::Int(1)],
            "tester_getversion: argument 1 (filename) must be a string, got int; \
             expects (filename:string)"
                .to_owned(),
        ),
        (
            "ping",
            vec![Value::Int(1)],
            "ping expects no arguments, got 1 argument".to_owned(),
        ),
    ];
    for (method, params, want) in cases {
        let got = fault_text(c.call(l, method, &params).await);
        assert_eq!(got, format!("BadRequest: {want}"), "{method}{params:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_lists_come_back_with_their_types_from_every_leader() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let digest: Vec<u8> = (0..32).map(|i| i * 7).collect();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let hashes = vec![
        s(&hex),
        s(&hex.to_uppercase()),
        s("0"),
        s(""),
        Value::Int(-1),
        Value::Int(i32::MAX),
        Value::I8(1 << 40),
        Value::I8(7),
        Value::Base64(digest),
        Value::Base64(Vec::new()),
    ];
    let params = [s("typed"), Value::Int(1), arr(hashes.clone())];
    assert_eq!(
        c.call(l, "updatefile", &params).await.unwrap(),
        Value::Bool(true)
    );
    let mut want = BTreeMap::new();
    want.insert("typed".to_owned(), arr(vec![Value::Int(1), arr(hashes)]));
    let want = Value::Struct(want);
    assert_eq!(c.call(l, "getfileinfomap", &[]).await.unwrap(), want);
    // A follower's map was built from the replicated command: crash the leader
    // and read it from the next one.
    let last = c.handle(l).status().raft.applied_index;
    for i in 0..3 {
        c.applied(i, last).await;
    }
    c.call(l, "crash", &[]).await.unwrap();
    let next = c.leader().await;
    assert_ne!(next, l);
    assert_eq!(c.call(next, "getfileinfomap", &[]).await.unwrap(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_the_story_of_a_failover() {
    use surfstore::node::events::{EventKind, NodeEvent};
    let mut c = TestCluster::start(3).await;
    let old = c.leader().await;
    // Merge every node's event stream into one channel.
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<NodeEvent>();
    for i in 0..3 {
        let mut sub = c.handle(i).events();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(e) = sub.recv().await {
                assert_eq!(e.node, i as u64, "an event names the node that sent it");
                if tx.send(e).is_err() {
                    return;
                }
            }
        });
    }
    c.handle(old).crash().await.unwrap();
    let new = c.leader().await;
    assert_ne!(new, old);
    let h = c.handle(new).clone();
    assert_eq!(h.update_file("story".into(), 1, vec![]).await, Ok(true));
    for f in (0..3).filter(|&i| i != new) {
        c.handle(f).crash().await.unwrap();
    }
    let h2 = h.clone();
    let blocked_call = tokio::spawn(async move { h2.update_file("story".into(), 2, vec![]).await });

    // Collect until the new leader reports the blocked call.
    let mut seen: Vec<(u64, EventKind)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|(n, k)| *n == new as u64 && matches!(k, EventKind::Blocked { .. }))
    {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => seen.push((e.node, e.kind)),
            _ => panic!("no Blocked event from node {new}: {seen:#?}"),
        }
    }
    let has = |node: usize, pred: &dyn Fn(&EventKind) -> bool| {
        seen.iter().any(|(n, k)| *n == node as u64 && pred(k))
    };
    assert!(has(old, &|k| matches!(k, EventKind::Crashed)), "{seen:#?}");
    assert!(
        has(old, &|k| matches!(k, EventKind::LeadershipLost { .. })),
        "{seen:#?}"
    );
    assert!(
        has(new, &|k| matches!(k, EventKind::ElectionStarted { .. })),
        "{seen:#?}"
    );
    assert!(
        has(new, &|k| matches!(k, EventKind::LeaderElected { .. })),
        "{seen:#?}"
    );
    let voter = (0..3).find(|&i| i != new && i != old).unwrap();
    assert!(
        has(
            voter,
            &|k| matches!(k, EventKind::VoteGranted { candidate, .. } if *candidate == new as u64)
        ),
        "{seen:#?}"
    );
    assert!(
        has(
            new,
            &|k| matches!(k, EventKind::Committed { what, .. } if what.contains("story"))
        ),
        "{seen:#?}"
    );
    for f in (0..3).filter(|&i| i != new) {
        c.handle(f).restore().await.unwrap();
    }
    assert_eq!(blocked_call.await.unwrap(), Ok(true));
    let tail = h.log_tail(3).await.unwrap();
    assert!(tail.iter().any(|l| l.command.contains("story")), "{tail:?}");
}
