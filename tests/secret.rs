//! The optional secrets against real `run-server.sh` processes.
//! - With `--secret-file` (ports 9840-9842): the nodes elect and replicate
//!   (their peer calls are signed); unsigned or wrongly signed
//!   `appendEntries`, `requestVote`, `installSnapshot`, `storeBlock` and
//!   `crash` get fault 6 and change nothing; client calls stay open; a
//!   signed `crash` works once and its replay is refused; the tester given
//!   the secret passes; Python's stdlib client signs with the README's
//!   transport.
//! - With `--client-secret-file` too (ports 9843-9845): unsigned client
//!   calls get fault 6, calls signed with the client secret work but not
//!   admin calls, and `run-client.sh --client-secret-file` syncs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use surfstore::auth::Key;
use surfstore::xmlrpc::client::{CallError, Client, Transport};
use surfstore::xmlrpc::Value;

mod procs;
use procs::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const CLUSTER_SECRET: &str = "cluster-secret-for-the-test-0123456789";
const CLIENT_SECRET: &str = "client-secret-for-the-test-9876543210";

fn secret_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (f, s) in [
        ("cluster.key", CLUSTER_SECRET),
        ("client.key", CLIENT_SECRET),
    ] {
        std::fs::write(dir.join(f), format!("{s}\n")).unwrap();
        let mut p = std::fs::metadata(dir.join(f)).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o600);
        std::fs::set_permissions(dir.join(f), p).unwrap();
    }
    dir
}

fn signed(port: u16, secret: &str) -> Client {
    let key = Arc::new(Key::from_secret(secret.as_bytes(), "test"));
    Client::with_transport(
        &format!("localhost:{port}"),
        Duration::from_secs(5),
        Transport::signed(Some(key)),
    )
}

fn code(r: &Result<Value, CallError>) -> Option<i32> {
    r.as_ref().err().and_then(|e| e.fault()).map(|f| f.code)
}

fn peer_struct(from: usize, to: usize) -> Value {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("from", from),
        ("to", to),
        ("term", 99),
        ("last_index", 0),
        ("last_term", 0),
    ] {
        m.insert(k.to_owned(), Value::I8(v as i64));
    }
    Value::Struct(m)
}

async fn update(c: &Client, name: &str, version: i32) -> Result<Value, CallError> {
    c.call(
        "surfstore.updatefile",
        &[
            Value::String(name.into()),
            Value::Int(version),
            Value::Array(vec![Value::String(format!("h{version}"))]),
        ],
    )
    .await
}

fn run_script(script: &str, args: &[&str]) -> std::process::Output {
    Command::new(format!("{REPO}/{script}"))
        .args(args)
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
        .stdin(Stdio::null())
        .output()
        .expect("the script runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_secret_locks_peer_and_admin_calls_only() {
    const PORTS: [u16; 3] = [9840, 9841, 9842];
    let keys = secret_dir("secret-a");
    let key = keys.join("cluster.key");
    let args = ["--secret-file".to_owned(), key.display().to_string()];
    let _nodes = Nodes::start("secret-a", &PORTS, &args, "warn", Stdio::null);
    let open = clients(&PORTS);
    let leader = wait_for_leader(&open).await;
    // Client calls need no proof, and the cluster replicates.
    assert_eq!(
        update(&open[leader], "a.txt", 1).await.unwrap(),
        Value::Bool(true)
    );
    let before: Vec<Value> = {
        let mut v = Vec::new();
        for c in &open {
            v.push(status(c).await.unwrap());
        }
        v
    };
    let follower = (leader + 1) % 3;
    let wrong = signed(PORTS[follower], "a-wrong-secret-of-enough-length");
    for c in [&open[follower], &wrong] {
        let member = member_client(&PORTS, follower, leader);
        for (m, p) in [
            ("appendEntries", peer_struct(leader, follower)),
            ("requestVote", peer_struct(leader, follower)),
            ("timeoutNow", peer_struct(leader, follower)),
            ("installSnapshot", peer_struct(leader, follower)),
            ("storeBlock", Value::Base64(vec![1, 2, 3])),
            ("readBlock", Value::String("00".repeat(32))),
        ] {
            for client in [c, &member] {
                let r = client
                    .call(&format!("surfstore.{m}"), std::slice::from_ref(&p))
                    .await;
                assert_eq!(code(&r), Some(6), "{m}: {r:?}");
                let text = r.unwrap_err().to_string();
                assert!(
                    text.contains("Unauthorized") && text.contains("cluster secret"),
                    "{text}"
                );
            }
        }
        let r = c.call("surfstore.crash", &[]).await;
        assert_eq!(code(&r), Some(6), "{r:?}");
        let r = c.call("surfstore.transferLeader", &[]).await;
        assert_eq!(code(&r), Some(6), "transferLeader: {r:?}");
        // The map in one call is an admin's, not a client's.
        let r = c.call("surfstore.backup", &[]).await;
        assert_eq!(code(&r), Some(6), "backup: {r:?}");
    }
    // Nothing changed: same terms, no node crashed.
    for (i, c) in open.iter().enumerate() {
        let s = status(c).await.unwrap();
        assert_eq!(int(&s, "term"), int(&before[i], "term"), "node {i}");
        assert_eq!(field(&s, "crashed"), &Value::Bool(false), "node {i}");
    }
    // A signed crash works; the same signed request sent again does not.
    let admin = signed(PORTS[follower], CLUSTER_SECRET);
    assert_eq!(
        admin.call("surfstore.crash", &[]).await.unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        admin.call("surfstore.restore", &[]).await.unwrap(),
        Value::Bool(true)
    );
    let replay = Python::replay_crash(PORTS[follower], CLUSTER_SECRET);
    assert!(
        replay.contains("first: True") && replay.contains("replay: 6"),
        "{replay}"
    );
    // Python's stdlib client with the README's signing transport.
    let py = Python::signed_calls(PORTS[leader], CLUSTER_SECRET);
    assert!(
        py.contains("crash unsigned: 6") && py.contains("isCrashed signed: False"),
        "{py}"
    );

    // The tester with the secret passes its crash scenario; without it the
    // crash is refused.
    let leader_addr = format!("localhost:{}", PORTS[leader]);
    let key_s = key.display().to_string();
    let out = run_script(
        "run-tester.sh",
        &[
            &leader_addr,
            "--secret-file",
            &key_s,
            "--only",
            "crashed-state",
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tester with the secret failed:\n{text}"
    );
    let out = run_script("run-tester.sh", &[&leader_addr, "--only", "crashed-state"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("Unauthorized"),
        "tester without the secret:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_locks_client_calls_too() {
    const PORTS: [u16; 3] = [9843, 9844, 9845];
    let keys = secret_dir("secret-b");
    let (cluster_key, client_key) = (keys.join("cluster.key"), keys.join("client.key"));
    let args = [
        "--secret-file".to_owned(),
        cluster_key.display().to_string(),
        "--client-secret-file".to_owned(),
        client_key.display().to_string(),
    ];
    let _nodes = Nodes::start("secret-b", &PORTS, &args, "warn", Stdio::null);
    let admins: Vec<Client> = PORTS.iter().map(|&p| signed(p, CLUSTER_SECRET)).collect();
    let leader = wait_for_leader(&admins).await;
    let open = Client::new(
        &format!("localhost:{}", PORTS[leader]),
        Duration::from_secs(5),
    );
    for (m, p) in [
        ("getfileinfomap", vec![]),
        ("ping", vec![]),
        ("members", vec![]),
    ] {
        let r = open.call(&format!("surfstore.{m}"), &p).await;
        assert_eq!(code(&r), Some(6), "{m}: {r:?}");
        assert!(r.unwrap_err().to_string().contains("client secret"));
    }
    // (A tombstone, so the sync below has no block to fetch for it.)
    let tombstone = [
        Value::String("b.txt".into()),
        Value::Int(1),
        Value::Array(vec![Value::String("0".into())]),
    ];
    let r = open.call("surfstore.updatefile", &tombstone).await;
    assert_eq!(code(&r), Some(6), "{r:?}");
    let client = signed(PORTS[leader], CLIENT_SECRET);
    let r = client.call("surfstore.updatefile", &tombstone).await;
    assert_eq!(r.unwrap(), Value::Bool(true));
    let r = client.call("surfstore.crash", &[]).await;
    assert_eq!(code(&r), Some(6), "{r:?}");
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("proved only the client secret"));

    // The sync client with the client secret uploads a folder.
    let base = keys.join("folder");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("hello.txt"), "hello, locked cluster\n").unwrap();
    let leader_addr = format!("localhost:{}", PORTS[leader]);
    let base_s = base.display().to_string();
    let key_s = client_key.display().to_string();
    let out = run_script(
        "run-client.sh",
        &[
            &leader_addr,
            &base_s,
            "4096",
            "--client-secret-file",
            &key_s,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let map = client.call("surfstore.getfileinfomap", &[]).await.unwrap();
    let Value::Struct(m) = map else {
        panic!("{map:?}")
    };
    assert!(m.contains_key("hello.txt"), "{m:?}");
    // Without the secret the sync fails, saying why.
    let out = run_script("run-client.sh", &[&leader_addr, &base_s, "4096"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&keys);
}

/// Python's stdlib client, signing with the transport the README shows.
struct Python;

impl Python {
    fn run(code: &str) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "{}\n{code}",
                include_str!("../scripts/surfstore_auth.py")
            ))
            .output()
            .expect("python3 runs");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }

    fn signed_calls(port: u16, secret: &str) -> String {
        Python::run(&format!(
            r#"
import xmlrpc.client
url = "http://localhost:{port}/RPC2"
try:
    xmlrpc.client.ServerProxy(url).surfstore.crash()
except xmlrpc.client.Fault as f:
    print("crash unsigned:", f.faultCode)
p = xmlrpc.client.ServerProxy(url, transport=SignedTransport(b"{secret}"))
print("isCrashed signed:", p.surfstore.isCrashed())
"#
        ))
    }

    /// Sends one signed crash twice, byte for byte, then restores.
    fn replay_crash(port: u16, secret: &str) -> String {
        Python::run(&format!(
            r#"
import http.client, xmlrpc.client
body = xmlrpc.client.dumps((), "surfstore.crash").encode()
headers = {{"Content-Type": "text/xml", "X-SurfStore-Auth": sign(b"{secret}", body)}}
def send():
    c = http.client.HTTPConnection("localhost", {port})
    c.request("POST", "/RPC2", body, headers)
    return c.getresponse().read()
def result(raw):
    try:
        return xmlrpc.client.loads(raw)[0][0]
    except xmlrpc.client.Fault as f:
        return f.faultCode
print("first:", result(send()))
print("replay:", result(send()))
p = xmlrpc.client.ServerProxy("http://localhost:{port}/RPC2", transport=SignedTransport(b"{secret}"))
print("restore:", p.surfstore.restore())
"#
        ))
    }
}
