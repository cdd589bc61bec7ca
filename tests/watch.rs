//! `waitForChanges` against a real in-process 3-node cluster over loopback
//! XML-RPC (answers at once when behind, wakes on another client's
//! `updatefile` and not before, times out, refuses on a follower, with bad
//! arguments and past its waiter bound, wakes with a fault on a crash), and
//! `client --watch`: two real client processes keeping two folders in step,
//! also through a leader crash.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fault_code, s, tmpdir, TestCluster};
use surfstore::node::api::wait_for_changes::{Changes, MAX_WAITERS};
use surfstore::xmlrpc::client::CallError;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::Value;

const BIN: &str = env!("CARGO_BIN_EXE_surfstore");

async fn wait(
    c: &TestCluster,
    node: usize,
    since: i64,
    timeout: i64,
) -> Result<Changes, CallError> {
    let v = c
        .call(
            node,
            "waitForChanges",
            &[Value::I8(since), Value::I8(timeout)],
        )
        .await?;
    Ok(Changes::from_value(&v).expect("a well-formed answer"))
}

async fn update(c: &TestCluster, node: usize, name: &str, version: i32) {
    let r = c
        .call(
            node,
            "updatefile",
            &[s(name), Value::Int(version), Value::Array(vec![s("h")])],
        )
        .await
        .expect("updatefile answers");
    assert_eq!(r, Value::Bool(true), "{name} v{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_changes_answers_wakes_times_out_and_refuses() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let follower = (l + 1) % 3;

    // Nothing written yet: the counter is 0, a zero timeout answers at once.
    let now = wait(&c, l, 0, 0).await.unwrap();
    assert_eq!(
        now,
        Changes {
            index: 0,
            changed: false
        }
    );

    // An acknowledged write is past `since` at once, with its index.
    update(&c, l, "a", 1).await;
    let first = wait(&c, l, 0, 30).await.unwrap();
    assert!(first.changed && first.index > 0, "{first:?}");
    // Asking from the counter itself waits; a refused update (version rule)
    // changes nothing, so it times out.
    let refused = c
        .call(
            l,
            "updatefile",
            &[s("a"), Value::Int(1), Value::Array(vec![])],
        )
        .await
        .unwrap();
    assert_eq!(refused, Value::Bool(false));
    let started = Instant::now();
    let quiet = wait(&c, l, first.index as i64, 1).await.unwrap();
    assert_eq!(
        quiet,
        Changes {
            index: first.index,
            changed: false
        }
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A waiter wakes on another client's write, and not before it.
    let waiter = {
        let client = c.clients[l].clone();
        let since = first.index as i64;
        tokio::spawn(async move {
            client
                .call(
                    "surfstore.waitForChanges",
                    &[Value::I8(since), Value::Int(30)],
                )
                .await
        })
    };
    // The waiter is parked (counted) before the write is made.
    let feed_waiting = || c.handle(l).wait_for_changes_waiting();
    let deadline = Instant::now() + Duration::from_secs(10);
    while feed_waiting() == 0 {
        assert!(Instant::now() < deadline, "the waiter never parked");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!waiter.is_finished(), "answered before any change");
    let written = Instant::now();
    let other = surfstore::xmlrpc::client::Client::new(&c.addrs[l], Duration::from_secs(10));
    let r = other
        .call(
            "surfstore.updatefile",
            &[s("b"), Value::Int(1), Value::Array(vec![s("h")])],
        )
        .await;
    assert_eq!(r.unwrap(), Value::Bool(true));
    let woke = Changes::from_value(&waiter.await.unwrap().unwrap()).unwrap();
    assert!(woke.changed && woke.index > first.index, "{woke:?}");
    assert!(written.elapsed() < Duration::from_secs(10));
    // The map read after the answer shows the change.
    let map = c.call(l, "getfileinfomap", &[]).await.unwrap();
    assert!(map.as_struct().unwrap().contains_key("b"), "{map:?}");

    // Followers redirect to the leader.
    let r = wait(&c, follower, 0, 0).await;
    let Err(CallError::Fault(f)) = &r else {
        panic!("a follower answered {r:?}")
    };
    assert_eq!(f.code, 2);
    assert!(f.message.contains(&c.addrs[l]), "{}", f.message);

    // Bad arguments: fault 3; a timeout past the limit is clamped, not refused.
    for bad in [
        vec![Value::Int(0), Value::Int(-1)],
        vec![Value::Int(-5), Value::Int(0)],
        vec![Value::Int(0), s("10")],
        vec![Value::Int(0)],
    ] {
        let r = c.call(l, "waitForChanges", &bad).await;
        assert_eq!(fault_code(&r), Some(3), "{bad:?}: {r:?}");
    }
    let clamped = wait(&c, l, 0, 1_000_000).await.unwrap();
    assert!(clamped.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_the_leader_wakes_its_waiters_with_a_fault() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let client = c.clients[l].clone();
        waiters.push(tokio::spawn(async move {
            let r = client
                .call("surfstore.waitForChanges", &[Value::Int(0), Value::Int(60)])
                .await;
            (r, Instant::now())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.handle(l).wait_for_changes_waiting() < 3 {
        assert!(Instant::now() < deadline, "the waiters never parked");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let crashed_at = Instant::now();
    c.call(l, "crash", &[]).await.unwrap();
    for w in waiters {
        let (r, at) = w.await.unwrap();
        assert_eq!(fault_code(&r), Some(1), "{r:?}");
        assert!(at.duration_since(crashed_at) < Duration::from_secs(5));
    }
    // A new leader serves waiters; the crashed node refuses them.
    let r = c
        .call(l, "waitForChanges", &[Value::Int(0), Value::Int(0)])
        .await;
    assert_eq!(fault_code(&r), Some(1), "{r:?}");
    let l2 = c.leader().await;
    assert_ne!(l2, l);
    let answer = wait(&c, l2, 0, 0).await.unwrap();
    assert!(!answer.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_waiters_than_the_bound_get_fault_5() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let node = c.handle(l).clone();
    let call = |since: i64, timeout: i64| MethodCall {
        method: "surfstore.waitForChanges".into(),
        params: vec![Value::I8(since), Value::I8(timeout)],
    };
    let mut parked = Vec::new();
    for _ in 0..MAX_WAITERS {
        let node = node.clone();
        let call = call(0, 60);
        parked.push(tokio::spawn(async move { node.dispatch(call).await }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.wait_for_changes_waiting() < MAX_WAITERS {
        assert!(
            Instant::now() < deadline,
            "{} parked",
            node.wait_for_changes_waiting()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let over = node.dispatch(call(0, 0)).await.unwrap_err();
    assert_eq!(over.code(), 5, "{over}");
    // A change answers every parked waiter, and the slots come back.
    update(&c, l, "wake", 1).await;
    for p in parked {
        let v = p.await.unwrap().unwrap();
        assert!(Changes::from_value(&v).unwrap().changed);
    }
    assert_eq!(node.wait_for_changes_waiting(), 0);
    assert!(node.dispatch(call(0, 0)).await.is_ok());
}

/// A `client --watch` process, stopped with SIGTERM (and required to exit
/// 0) by [`Watching::stop`], killed if the test fails first.
struct Watching {
    child: Option<Child>,
}

impl Watching {
    fn start(addr: &str, dir: &Path) -> Watching {
        let child = Command::new(BIN)
            .args([
                "client",
                addr,
                dir.to_str().unwrap(),
                "4096",
                "--watch",
                "--quiet",
            ])
            .args(["--retry", "30s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the client starts");
        Watching { child: Some(child) }
    }

    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on the pid of a child this test started and has
        // not waited for (so the pid is still ours).
        let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(r, 0, "SIGTERM sent");
        let status = child.wait().unwrap();
        assert!(status.success(), "--watch exited with {status} on SIGTERM");
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits (polling the folder, 10 s at most) until `dir/name` holds
/// `want` (`None`: is gone); returns how long it took.
async fn converge(dir: &Path, name: &str, want: Option<&[u8]>) -> Duration {
    let start = Instant::now();
    let path = dir.join(name);
    loop {
        let now = std::fs::read(&path).ok();
        if now.as_deref() == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} did not become {:?} within 10 s (is {:?})",
            path.display(),
            want.map(String::from_utf8_lossy),
            now.as_deref().map(String::from_utf8_lossy)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `data` to `dir/name` in place, as most tools do.
fn save(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Create, edit and delete in `from`, each awaited in `to`.
async fn round_trip(from: &Path, to: &Path, tag: &str) -> Vec<Duration> {
    let name = format!("{tag}.txt");
    let mut took = Vec::new();
    save(from, &name, format!("{tag} one").as_bytes());
    took.push(converge(to, &name, Some(format!("{tag} one").as_bytes())).await);
    save(from, &name, format!("{tag} two, longer").as_bytes());
    took.push(converge(to, &name, Some(format!("{tag} two, longer").as_bytes())).await);
    std::fs::remove_file(from.join(&name)).unwrap();
    took.push(converge(to, &name, None).await);
    took
}

fn dirs(tag: &str) -> (PathBuf, PathBuf) {
    (tmpdir(&format!("{tag}-a")), tmpdir(&format!("{tag}-b")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watching_clients_keep_two_folders_in_step() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let (a, b) = dirs("watch");
    let wa = Watching::start(&c.addrs[l], &a);
    let wb = Watching::start(&c.addrs[(l + 1) % 3], &b);
    let mut took = round_trip(&a, &b, "from-a").await;
    took.extend(round_trip(&b, &a, "from-b").await);
    // A file in a new directory, both ways at once.
    std::fs::create_dir_all(a.join("sub/deeper")).unwrap();
    save(&a.join("sub/deeper"), "x", b"x");
    save(&b, "y", b"y");
    took.push(converge(&b, "sub/deeper/x", Some(b"x")).await);
    took.push(converge(&a, "y", Some(b"y")).await);
    println!(
        "watch convergence (3 in-process nodes, loopback, 2 --watch clients, target 1 s): {}",
        took.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    wa.stop();
    wb.stop();
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_clients_follow_a_new_leader_after_a_crash() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let (a, b) = dirs("watch-crash");
    // Both start on the leader, so both long polls are parked there.
    let wa = Watching::start(&c.addrs[l], &a);
    let wb = Watching::start(&c.addrs[l], &b);
    let before = round_trip(&a, &b, "before").await;
    c.call(l, "crash", &[]).await.unwrap();
    let l2 = c.leader().await;
    assert_ne!(l, l2);
    let mut after = round_trip(&a, &b, "after").await;
    after.extend(round_trip(&b, &a, "back").await);
    println!(
        "watch convergence across a leader crash (node {l} crashed, node {l2} leads): before {}; after {}",
        before.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
        after.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    c.call(l, "restore", &[]).await.unwrap();
    wa.stop();
    wb.stop();
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
