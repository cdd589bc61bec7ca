//! The sync client facing bad input: a corrupt index (the line is named), a
//! missing base directory, a server that is down (all of which leave the
//! folder untouched), an unreadable file (listed and left alone; when not
//! run as root), and a server that offers file names reaching outside the
//! base directory (never written).

mod common;

use common::tmpdir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use surfstore::client::{sync, ClientError, SyncOptions};
use surfstore::node::blocks::hash_hex;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions};
use surfstore::xmlrpc::{Fault, Value};

fn opts(dir: &Path) -> SyncOptions {
    let mut o = SyncOptions::new(dir, 1024);
    o.retry_budget = Duration::from_secs(2);
    o.call_timeout = Duration::from_secs(2);
    o
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let d = std::fs::read(&p).unwrap_or_default();
            (p, d)
        })
        .collect()
}

fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn a_corrupt_index_names_its_line_and_changes_nothing() {
    let d = tmpdir("index");
    let h = hash_hex(b"x");
    std::fs::write(d.join("index.txt"), format!("a 1 {h}\nb one {h}\n")).unwrap();
    std::fs::write(d.join("a"), b"x").unwrap();
    let before = snapshot(&d);
    let e = sync(&dead_addr(), &opts(&d)).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ClientError::CorruptIndex { .. }), "{msg}");
    assert!(msg.contains("index.txt") && msg.contains("line 2"), "{msg}");
    assert_eq!(snapshot(&d), before);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_missing_base_directory_or_a_dead_server_is_refused() {
    let d = tmpdir("missing");
    let e = sync(&dead_addr(), &opts(&d.join("nope")))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::BaseDir { .. }), "{e}");
    std::fs::write(d.join("f"), b"data").unwrap();
    let before = snapshot(&d);
    let addr = dead_addr();
    let e = sync(&addr, &opts(&d)).await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&addr), "{e}");
    assert_eq!(
        snapshot(&d),
        before,
        "no index.txt written, nothing changed"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn an_unreadable_file_is_listed_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmpdir("unreadable");
    let f = d.join("secret");
    std::fs::write(&f, b"data").unwrap();
    std::fs::write(d.join("plain"), b"more").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&f).is_ok() {
        // Running as root: permissions do not stop reads; nothing to test.
        let _ = std::fs::remove_dir_all(&d);
        return;
    }
    let mut c = common::TestCluster::start(3).await;
    let l = c.leader().await;
    let addr = c.addrs[l].clone();
    let s = sync(&addr, &opts(&d)).await.unwrap();
    assert_eq!(s.uploaded, vec!["plain".to_owned()], "{s:?}");
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("secret") && p.contains("cannot be read")),
        "{s:?}"
    );
    // Not uploaded, and not taken for a delete on the next sync either.
    let s = sync(&addr, &opts(&d)).await.unwrap();
    assert!(s.deleted_remote.is_empty(), "{s:?}");
    assert!(f.exists());
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// A server that lies: its map names files outside the client's folder.
#[derive(Clone)]
struct Malicious {
    block: Vec<u8>,
    names: Vec<String>,
}

impl Handler for Malicious {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        let h = hash_hex(&self.block);
        match call.method.as_str() {
            "surfstore.members" => Ok(Value::Array(vec![])),
            "surfstore.getfileinfomap" => Ok(Value::Struct(
                self.names
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            Value::Array(vec![
                                Value::Int(1),
                                Value::Array(vec![Value::String(h.clone())]),
                            ]),
                        )
                    })
                    .collect(),
            )),
            "surfstore.getblock" => Ok(Value::Base64(self.block.clone())),
            "surfstore.hasblocks" => Ok(Value::Array(vec![])),
            m => Err(Fault::new(4, format!("NoSuchMethod: {m}"))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_names_from_the_server_never_leave_the_base_directory() {
    let root = tmpdir("malicious");
    let base = root.join("base");
    std::fs::create_dir_all(base.join("sub")).unwrap();
    // A symbolic link inside the folder must not be a way out either.
    std::os::unix::fs::symlink(&root, base.join("link")).unwrap();
    let outside = root.join("outside");
    let names: Vec<String> = [
        "../evil",
        "sub/../../evil2",
        &format!("{}", outside.display()),
        "link/evil3",
        "index.txt",
        "./dot",
        "ok.txt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Malicious {
        block: b"pwned".to_vec(),
        names,
    };
    tokio::spawn(server::serve(
        listener,
        handler,
        ServerOptions::default(),
        std::future::pending(),
    ));
    let s = sync(&addr, &opts(&base)).await.unwrap();
    assert_eq!(s.downloaded, vec!["ok.txt"]);
    assert_eq!(s.problems.len(), 6, "{:?}", s.problems);
    assert_eq!(std::fs::read(base.join("ok.txt")).unwrap(), b"pwned");
    for p in [
        root.join("evil"),
        root.join("evil2"),
        outside,
        root.join("evil3"),
        base.join("dot"),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    let index = std::fs::read_to_string(base.join("index.txt")).unwrap();
    assert!(
        index.starts_with("ok.txt 1 ") && index.lines().count() == 1,
        "{index}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
