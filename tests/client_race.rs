//! The sync client when its `updatefile` loses a race (the server answers
//! `false`: someone else committed that version between the client's read of
//! the map and its update), against a scripted fake server: the remote
//! version wins and the local copy is kept aside; and when the refused update
//! had in fact been applied (its answer lost in a failover), the client
//! recognises its own content and adopts it without a conflict.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surfstore::client::{sync, SyncOptions};
use surfstore::node::blocks::hash_hex;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions};
use surfstore::xmlrpc::{Fault, Value};

/// Answers the first `getfileinfomap` with `before`, every later one with
/// `after`; `updatefile` always answers false; blocks come from `blocks`.
#[derive(Clone)]
struct Scripted {
    before: Value,
    after: Value,
    reads: Arc<AtomicUsize>,
    blocks: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Handler for Scripted {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        match call.method.as_str() {
            "surfstore.members" => Ok(Value::Array(vec![])),
            "surfstore.getfileinfomap" => Ok(if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
                self.before.clone()
            } else {
                self.after.clone()
            }),
            "surfstore.updatefile" => Ok(Value::Bool(false)),
            "surfstore.hasblocks" => Ok(Value::Array(vec![])),
            "surfstore.putblock" => {
                if let Some(Value::Base64(b)) = call.params.first() {
                    self.blocks.lock().unwrap().push(b.clone());
                }
                Ok(Value::Bool(true))
            }
            "surfstore.getblock" => {
                let want = call.params[0].as_str().unwrap_or_default().to_owned();
                self.blocks
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|b| hash_hex(b) == want)
                    .map(|b| Value::Base64(b.clone()))
                    .ok_or_else(|| Fault::new(3, "no such block"))
            }
            m => Err(Fault::new(4, format!("NoSuchMethod: {m}"))),
        }
    }
}

fn entry(version: i32, data: &[u8]) -> Value {
    Value::Array(vec![
        Value::Int(version),
        Value::Array(vec![Value::String(hash_hex(data))]),
    ])
}

fn map(name: &str, v: Value) -> Value {
    Value::Struct([(name.to_owned(), v)].into_iter().collect())
}

async fn serve(h: Scripted) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(server::serve(
        l,
        h,
        ServerOptions::default(),
        std::future::pending(),
    ));
    addr
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("surfstore-race-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(d: &PathBuf) -> SyncOptions {
    let mut o = SyncOptions::new(d, 1024);
    o.retry_budget = Duration::from_secs(2);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_race_keeps_the_local_copy() {
    let d = tmpdir();
    std::fs::write(d.join("f"), b"mine").unwrap();
    let theirs = b"theirs".to_vec();
    let addr = serve(Scripted {
        before: Value::Struct(Default::default()),
        after: map("f", entry(1, &theirs)),
        reads: Arc::default(),
        blocks: Arc::new(Mutex::new(vec![theirs.clone()])),
    })
    .await;
    let s = sync(&addr, &opts(&d)).await.unwrap();
    assert_eq!(
        s.conflicts,
        vec![("f".to_owned(), "f.conflict-1".to_owned())]
    );
    assert_eq!(std::fs::read(d.join("f")).unwrap(), theirs);
    assert_eq!(std::fs::read(d.join("f.conflict-1")).unwrap(), b"mine");
    let index = std::fs::read_to_string(d.join("index.txt")).unwrap();
    assert_eq!(index, format!("f 1 {}\n", hash_hex(&theirs)));
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_update_that_was_applied_is_adopted() {
    let d = tmpdir();
    std::fs::write(d.join("f"), b"mine").unwrap();
    let addr = serve(Scripted {
        before: Value::Struct(Default::default()),
        after: map("f", entry(1, b"mine")),
        reads: Arc::default(),
        blocks: Arc::default(),
    })
    .await;
    let s = sync(&addr, &opts(&d)).await.unwrap();
    assert!(s.conflicts.is_empty(), "{s:?}");
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"mine");
    assert!(!d.join("f.conflict-1").exists());
    let index = std::fs::read_to_string(d.join("index.txt")).unwrap();
    assert_eq!(index, format!("f 1 {}\n", hash_hex(b"mine")));
    let _ = std::fs::remove_dir_all(&d);
}
