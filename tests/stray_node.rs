//! Issue 11's misconfigured-node experiment against real processes: a
//! healthy 3-node cluster (ports 9830-9832) beside
//! - a stray node started from a config that names another port for member
//!   0 and the real addresses of members 1 and 2 (it listens on 9833 and
//!   campaigns against the healthy nodes), and
//! - a stray 5-member cluster (9834, the healthy node 9831 as its member
//!   1, 9835-9837), whose four live members elect leaders among themselves;
//!   the test pauses each leader until one with id 0 or 2 (ids the healthy
//!   cluster also has) leads in a term past the healthy one. It then sends
//!   9831 AppendEntries "from 0 (or 2) to 1" in that higher term: without
//!   the identity check, 9831 adopts the term and deposes the healthy
//!   leader.
//!
//! Every peer call of theirs is refused (fault 7, another cluster id) before
//! it reaches a core: no healthy term or leader moves, the cluster keeps
//! writing, and each offender is logged once, not once per message.

use std::time::{Duration, Instant};

use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

mod procs;
use procs::*;

const HEALTHY: [u16; 3] = [9830, 9831, 9832];
const FILE: &str = "stray.txt";
/// The live members of the stray cluster, in the order of their ports
/// 9834-9837 (member 1 is the healthy 9831).
const STRAY_IDS: [usize; 4] = [0, 2, 3, 4];

/// (term, leader) of every healthy node.
async fn terms(clients: &[Client]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for c in clients {
        let s = status(c).await.expect("a healthy node answers status");
        out.push((int(&s, "term"), int(&s, "leader")));
    }
    out
}

fn lines_with(path: &std::path::Path, what: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_nodes_cause_no_term_or_leader_change() {
    let healthy = Nodes::start_members(
        "stray-healthy",
        &members(&HEALTHY),
        &[0, 1, 2],
        &[],
        "warn",
        &|i, dir| Nodes::log_file(dir, &format!("node{i}.err")),
    );
    let clients = clients(&HEALTHY);
    let leader = wait_for_leader(&clients).await;
    for v in 1..=5 {
        update(&clients[leader], FILE, v).await;
    }
    let before = terms(&clients).await;
    assert!(
        before
            .iter()
            .all(|&(t, l)| t == before[0].0 && l == leader as i64),
        "{before:?}"
    );

    let lone_members: Vec<String> = ["localhost:9833", "localhost:9831", "localhost:9832"]
        .map(String::from)
        .to_vec();
    let lone = Nodes::start_members("stray-lone", &lone_members, &[0], &[], "warn", &|_, dir| {
        Nodes::log_file(dir, "lone.err")
    });
    let other_members: Vec<String> = [9834, 9831, 9835, 9836, 9837]
        .map(|p| format!("localhost:{p}"))
        .to_vec();
    let other = Nodes::start_members(
        "stray-other",
        &other_members,
        &STRAY_IDS,
        &[],
        "warn",
        &|i, dir| Nodes::log_file(dir, &format!("other{i}.err")),
    );
    let strays = procs::clients(&[9834, 9835, 9836, 9837]);
    // Pause each stray leader until another is elected (then let it go on
    // as a follower), until one with an id the healthy cluster has leads in
    // a term past the healthy one.
    let healthy_term = before[0].0;
    let lone_client = &procs::clients(&[9833])[0];
    let calls_to = |s: &Value, addr: &str| -> (i64, i64) {
        let Value::Array(peers) = field(s, "peers") else {
            panic!("no peers in {s:?}")
        };
        let p = peers
            .iter()
            .find(|p| field(p, "addr") == &Value::String(addr.into()))
            .unwrap_or_else(|| panic!("no peer {addr} in {s:?}"));
        (int(p, "calls"), int(p, "refused_with"))
    };
    // The stray cluster is young: a leader found here may still be deposed
    // by a stray election (a split vote at start). Then the search starts
    // over; only the healthy side must never move.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (stray_leader, lone_status) = 'search: loop {
        let stray_l = loop {
            let l = wait_for_leader(&strays).await;
            // Role and term from one answer: the leader found may have been
            // deposed since (its later term would then be its successor's).
            let Some(s) = status(&strays[l]).await else {
                continue;
            };
            if field(&s, "role") != &Value::String("leader".into()) {
                continue;
            }
            let term = int(&s, "term");
            if term > healthy_term + 1 && [0, 2].contains(&STRAY_IDS[l]) {
                break l;
            }
            signal(other.pid(l), "STOP");
            let deadline = Instant::now() + Duration::from_secs(20);
            'elected: loop {
                for (i, c) in strays.iter().enumerate() {
                    if i == l {
                        continue;
                    }
                    if let Some(s) = status(c).await {
                        if field(&s, "role") == &Value::String("leader".into())
                            && int(&s, "term") > term
                        {
                            break 'elected;
                        }
                    }
                }
                if Instant::now() > deadline {
                    let mut seen = Vec::new();
                    for (i, c) in strays.iter().enumerate().filter(|&(i, _)| i != l) {
                        let s = status(c).await.map(|s| {
                            (
                                field(&s, "role").clone(),
                                int(&s, "term"),
                                int(&s, "leader"),
                            )
                        });
                        seen.push((i, s));
                    }
                    panic!(
                        "no new stray leader within 20 s after pausing {l} (term {term}): {seen:?}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            signal(other.pid(l), "CONT");
        };

        // Wait until the stray leader has sent 9831 20 calls in its term and
        // the lone stray has called each healthy node it knows 3 times.
        let base = calls_to(&status(&strays[stray_l]).await.unwrap(), "localhost:9831").0;
        loop {
            assert_eq!(
                terms(&clients).await,
                before,
                "a healthy term or leader moved"
            );
            let stray_leader = status(&strays[stray_l])
                .await
                .expect("the stray leader answers");
            if field(&stray_leader, "role") != &Value::String("leader".into()) {
                continue 'search;
            }
            let sent = calls_to(&stray_leader, "localhost:9831").0 - base;
            let lone_status = status(lone_client).await;
            let lone_sent = lone_status.as_ref().map(|s| {
                let a = calls_to(s, "localhost:9831").0;
                let b = calls_to(s, "localhost:9832").0;
                a.min(b)
            });
            if sent >= 20 && lone_sent >= Some(3) {
                break 'search (stray_leader, lone_status.unwrap());
            }
            assert!(
            Instant::now() < deadline,
            "the strays did not call the healthy nodes within 60 s (stray leader sent {sent}, lone {lone_sent:?})"
        );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(
        terms(&clients).await,
        before,
        "a healthy term or leader moved"
    );
    // The strays see the healthy nodes refuse them as not peers.
    assert_eq!(
        calls_to(&stray_leader, "localhost:9831").1,
        7,
        "{stray_leader:?}"
    );
    assert_eq!(
        calls_to(&lone_status, "localhost:9832").1,
        7,
        "{lone_status:?}"
    );
    let refused = int(&status(&clients[1]).await.unwrap(), "refused_peer_calls");
    assert!(refused >= 20, "node 1 refused only {refused} calls");

    // Nothing moved on the healthy side, and it keeps writing.
    assert_eq!(
        terms(&clients).await,
        before,
        "a healthy term or leader moved"
    );
    for v in 6..=10 {
        update(&clients[leader], FILE, v).await;
    }
    assert_eq!(
        terms(&clients).await,
        before,
        "a healthy term or leader moved"
    );

    // One warning per offender on the healthy nodes, however many calls.
    let warned = lines_with(&healthy.dir.join("node1.err"), "refusing peer calls");
    // At most one per sender: the lone stray and the four stray members.
    assert!(
        (2..=5).contains(&warned.len()),
        "{} warnings for {refused} refused calls: {warned:#?}",
        warned.len()
    );
    assert!(
        warned.iter().any(|l| l.contains("it comes from cluster")),
        "{warned:#?}"
    );
    // The lone stray was told, once per peer that refuses it.
    let told = lines_with(&lone.dir.join("lone.err"), "refuses our calls");
    assert!((1..=2).contains(&told.len()), "{told:#?}");
    drop(other);
}
