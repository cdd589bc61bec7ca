//! `run-ctl.sh` against three real nodes: `members`, `transfer-leader`,
//! `crash`/`restore`, and `status` with one member crashed and one stopped
//! (their rows say so, the rest prints, exit 1), as a table and as JSON.

mod procs;

use std::ffi::OsStr;
use std::process::Output;
use std::time::Duration;

use procs::*;
use surfstore::xmlrpc::Value;

const PORTS: [u16; 3] = [9890, 9891, 9892];

/// `run-ctl.sh` with the members from the config the harness wrote (a
/// stopped node cannot be the one asked for them).
fn ctl(nodes: &Nodes, args: &[&str]) -> Output {
    let config = nodes.dir.join("config.txt");
    let mut all: Vec<&OsStr> = vec!["--config".as_ref(), config.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    run_ctl(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_moves_and_shows_the_cluster() {
    // On disk, so `status` has bytes on disk to report.
    let data = std::env::temp_dir().join(format!("surfstore-ctl-data-{}", std::process::id()));
    let dirs: Vec<_> = (0..3).map(|i| data.join(format!("node{i}"))).collect();
    let mut nodes = Nodes::start_on_disk("ctl", &PORTS, &dirs);
    let cs = clients(&PORTS);
    let leader = wait_for_leader(&cs).await;

    let m = ctl(&nodes, &["members"]);
    assert_eq!(m.status.code(), Some(0), "{}", out(&m));
    assert_eq!(
        String::from_utf8_lossy(&m.stdout),
        "0  localhost:9890\n1  localhost:9891\n2  localhost:9892\n"
    );

    let s = ctl(&nodes, &["status"]);
    assert_eq!(s.status.code(), Some(0), "all healthy: {}", out(&s));
    assert!(
        out(&s).lines().next().unwrap().contains("BLOCKS  DISK"),
        "{}",
        out(&s)
    );

    // Blocks held and bytes on disk: two blocks put through the leader.
    for data in [vec![1u8; 3000], vec![2u8; 5000]] {
        cs[leader]
            .call("surfstore.putblock", &[Value::Base64(data)])
            .await
            .unwrap();
    }
    let j = ctl(&nodes, &["-w", "json", "status"]);
    assert_eq!(j.status.code(), Some(0), "{}", out(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    let l = &v[leader];
    assert_eq!(l["blocks"], 2, "{l}");
    assert_eq!(l["block_bytes"], 8000, "{l}");
    assert_eq!(l["in_memory"], false, "{l}");
    let disk = l["disk_bytes"].as_i64().unwrap();
    // The blocks, and a log holding at least the leader's entries.
    assert!(disk > 8000, "{l}");

    let to = (leader + 1) % 3;
    let t = ctl(&nodes, &["transfer-leader", &to.to_string()]);
    assert_eq!(t.status.code(), Some(0), "{}", out(&t));
    assert!(
        out(&t).contains(&format!("from member {leader} to member {to}")),
        "{}",
        out(&t)
    );
    assert_eq!(wait_for_leader(&cs).await, to);
    let bad = ctl(&nodes, &["transfer-leader", "9"]);
    assert_eq!(bad.status.code(), Some(2), "{}", out(&bad));

    // One follower crashed through ctl, the other stopped for good.
    let crashed = (to + 1) % 3;
    let stopped = (to + 2) % 3;
    let c = ctl(&nodes, &["crash", &crashed.to_string()]);
    assert_eq!(c.status.code(), Some(0), "{}", out(&c));
    let s = status(&cs[crashed]).await.unwrap();
    assert_eq!(field(&s, "crashed"), &Value::Bool(true));
    signal(nodes.pid(stopped), "KILL");
    nodes.wait(stopped, Duration::from_secs(10));

    let s = ctl(&nodes, &["status"]);
    let text = String::from_utf8_lossy(&s.stdout).into_owned();
    assert_eq!(
        s.status.code(),
        Some(1),
        "a member is not healthy: {}",
        out(&s)
    );
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[0].starts_with("ID  ADDRESS"), "{text}");
    assert!(
        rows[1 + to].contains("leader") && rows[1 + to].ends_with("ok"),
        "{text}"
    );
    assert!(rows[1 + crashed].ends_with("crashed"), "{text}");
    assert!(rows[1 + stopped].contains("unreachable"), "{text}");

    let j = ctl(&nodes, &["-w", "json", "status"]);
    assert_eq!(j.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[to]["role"], "leader");
    assert_eq!(v[to]["healthy"], true);
    assert_eq!(v[crashed]["health"], "crashed");
    assert_eq!(v[stopped]["term"], serde_json::Value::Null);

    let r = ctl(&nodes, &["restore", &crashed.to_string()]);
    assert_eq!(r.status.code(), Some(0), "{}", out(&r));
    let s = status(&cs[crashed]).await.unwrap();
    assert_eq!(field(&s, "crashed"), &Value::Bool(false));
    drop(nodes);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn ctl_without_a_reachable_member_says_so_and_exits_2() {
    let o = run_ctl(["--endpoint", "localhost:9893", "status"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("localhost:9893"), "{err}");
}
