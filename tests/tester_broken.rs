//! The tester can fail: each scenario is run against in-process fake clusters
//! with one deliberate bug each (ignores the version rule, never replicates,
//! crash does nothing, two leaders, stale reads) and must fail on the bug it
//! is aimed at, with the call, the expected and the observed value in the
//! report. The same fake without a bug passes every scenario, so the failures
//! are the bugs' doing, not the fake's.

use clap::Parser;
use surfstore::tester::fake::{Bug, FakeCluster};
use surfstore::tester::report::RunReport;
use surfstore::tester::{run_async, Reporter, TesterArgs};

/// Runs the tester on a fresh fake cluster of `m` nodes with `bug`.
async fn tester_on(bug: Bug, m: usize, only: &[&str]) -> (i32, RunReport, FakeCluster) {
    let fake = FakeCluster::start(m, bug)
        .await
        .expect("fake cluster starts");
    let mut argv: Vec<String> = [
        "tester",
        fake.addrs[1 % m].as_str(),
        "--seed",
        "7",
        "--duration",
        "1500ms",
        "--leader-bound",
        "1s",
        "--block-check",
        "400ms",
        "--stable",
        "200ms",
        "--nemesis-interval",
        "150ms",
        "--connect-timeout",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !only.is_empty() {
        argv.push("--only".into());
        argv.push(only.join(","));
    }
    let args = TesterArgs::try_parse_from(argv).expect("valid flags");
    let (code, report) = run_async(&args, Reporter::silent()).await;
    let report = report.expect("the tester ran its scenarios");
    for i in 0..m {
        assert!(!fake.crashed(i), "node {i} left crashed by the tester");
    }
    (code, report, fake)
}

fn describe(r: &RunReport) -> String {
    let mut s = surfstore::tester::report::summary(r);
    for sc in &r.scenarios {
        if let Some(f) = &sc.failure {
            s.push_str(&format!("--- {}:\n{}\n", sc.name, f.message));
        }
    }
    s
}

/// Asserts scenario `name` failed, and returns its failure text.
fn failed(r: &RunReport, name: &str) -> String {
    let sc = r
        .scenario(name)
        .unwrap_or_else(|| panic!("{name} did not run:\n{}", describe(r)));
    assert!(
        !sc.passed,
        "{name} passed on a broken cluster:\n{}",
        describe(r)
    );
    let f = sc.failure.as_ref().expect("a failed scenario says why");
    println!("--- {name} failed as it should:\n{}\n", f.message);
    assert!(
        !f.observed.is_empty(),
        "{name}: no observed value:\n{}",
        f.message
    );
    f.message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_fake_passes_every_scenario() {
    let (code, r, _fake) = tester_on(Bug::None, 5, &[]).await;
    assert_eq!(r.scenarios.len(), 11, "{}", describe(&r));
    assert!(r.passed(), "{}", describe(&r));
    assert_eq!(code, 0);
    let json = surfstore::tester::report::json(&r);
    assert!(json.starts_with("{\"passed\":true,"), "{json}");
    assert_eq!(json.matches("\"status\":\"pass\"").count(), 11, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_three_node_fake_passes_too() {
    let (code, r, _fake) = tester_on(Bug::None, 3, &[]).await;
    assert!(r.passed(), "{}", describe(&r));
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_the_version_rule_fails_versions_races_and_linearizability() {
    let (code, r, _fake) = tester_on(
        Bug::IgnoresVersionRule,
        5,
        &["versions", "races", "linearizability"],
    )
    .await;
    assert_eq!(code, 1);
    let v = failed(&r, "versions");
    assert!(
        v.contains("surfstore.updatefile(") && v.contains("expected: False"),
        "{v}"
    );
    let races = failed(&r, "races");
    assert!(
        races.contains("exactly one True") && races.contains("8 True"),
        "{races}"
    );
    let lin = failed(&r, "linearizability");
    assert!(
        lin.contains("not linearizable") && lin.contains("no place for"),
        "{lin}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_never_replicates_fails_replication() {
    let (code, r, _fake) = tester_on(Bug::NeverReplicates, 5, &["replication"]).await;
    assert_eq!(code, 1);
    let f = failed(&r, "replication");
    assert!(f.contains("tester_getversion") && f.contains(": 0"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_that_does_nothing_fails_the_crash_scenarios() {
    let (code, r, _fake) = tester_on(
        Bug::CrashDoesNothing,
        5,
        &["crashed-state", "minority-crash", "leader-crash"],
    )
    .await;
    assert_eq!(code, 1);
    let f = failed(&r, "crashed-state");
    assert!(f.contains("isCrashed"), "{f}");
    let f = failed(&r, "minority-crash");
    assert!(f.contains("surfstore.isCrashed()"), "{f}");
    failed(&r, "leader-crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leaders_fail_basics() {
    let (code, r, _fake) = tester_on(Bug::TwoLeaders, 5, &["basics"]).await;
    assert_eq!(code, 1);
    let f = failed(&r, "basics");
    assert!(f.contains("2 nodes say they are leader"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_fail_linearizability() {
    let (code, r, _fake) = tester_on(Bug::StaleReads, 5, &["linearizability"]).await;
    assert_eq!(code, 1);
    let f = failed(&r, "linearizability");
    assert!(
        f.contains("getfileinfomap()") && f.contains("no place for"),
        "{f}"
    );
    println!("{f}");
}

/// Seeded bug: the change counter moves before the write is applied, so
/// the map read after a wake-up lacks the write, and the next call (its
/// `since` already past the write) never reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_before_apply_fails_watch() {
    let (code, r, _fake) = tester_on(Bug::WakesBeforeApply, 5, &["watch"]).await;
    assert_eq!(code, 1);
    let f = failed(&r, "watch");
    assert!(f.contains("waitForChanges"), "{f}");
    println!("{f}");
}

/// Seeded bug: `waitForChanges` sits out its timeout although a change
/// acknowledged before the call is past `since`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_sleeps_out_its_timeout_fails_watch() {
    let (code, r, _fake) = tester_on(Bug::SleepsOutTimeout, 5, &["watch"]).await;
    assert_eq!(code, 1);
    let f = failed(&r, "watch");
    assert!(
        f.contains("waitForChanges") && f.contains("before the 2s timeout"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_scenario_name_is_refused() {
    let args = TesterArgs::try_parse_from(["tester", "127.0.0.1:1", "--only", "nope"]).unwrap();
    let (code, report) = run_async(&args, Reporter::silent()).await;
    assert_eq!(code, 2);
    assert!(report.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_exit_code_2() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let args = TesterArgs::try_parse_from(["tester", addr.as_str(), "--connect-timeout", "300ms"])
        .unwrap();
    let (code, report) = run_async(&args, Reporter::silent()).await;
    assert_eq!(code, 2);
    assert!(report.is_err());
}
