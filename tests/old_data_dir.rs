//! A data directory written by the first version (hash lists stored as tagged
//! `xmlrpc::Value`s, snapshot format 1) loads into the typed map: every hash
//! comes back over XML-RPC with the type it was sent with. A value that
//! version could hold but a hash cannot be is an error naming the entry (a
//! log entry is skipped, on every node alike, and described; a snapshot
//! refuses to start, naming the file), never a panic.
//!
//! The old bytes are written here by hand, tag for tag as the first version
//! encoded them (`encode_value` of commit 30ced2b).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use surfstore::node::raft::{Entry, HardState, Snapshot};
use surfstore::node::storage::{ClusterMeta, DiskOptions, DiskStore, LogStore};
use surfstore::node::{self, NodeHandle, NodeOptions, RunningNode, StartError};
use surfstore::xmlrpc::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The first version's encoding of the values its method table let into a
/// hash list (int, i8, string), plus base64 and a double (tags 5 and 4),
/// which it could encode too.
fn old_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(0);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::I8(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::String(s) => {
            out.push(3);
            old_str(s, out);
        }
        Value::Double(d) => {
            out.push(4);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Base64(b) => {
            out.push(5);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        other => panic!("the test writes no {other:?}"),
    }
}

fn old_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn old_hashes(hashes: &[Value], out: &mut Vec<u8>) {
    out.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
    for h in hashes {
        old_value(h, out);
    }
}

/// The first version's `updatefile` log entry.
fn old_command(name: &str, version: i64, hashes: &[Value]) -> Bytes {
    let mut out = vec![1];
    old_str(name, &mut out);
    out.extend_from_slice(&version.to_le_bytes());
    old_hashes(hashes, &mut out);
    out.into()
}

/// The first version's snapshot (format 1) of `files`, sorted by name.
fn old_snapshot(files: &[(&str, i64, Vec<Value>)]) -> Bytes {
    let mut out = b"SFSM\x01".to_vec();
    out.extend_from_slice(&(files.len() as u64).to_le_bytes());
    for (name, version, hashes) in files {
        old_str(name, &mut out);
        out.extend_from_slice(&version.to_le_bytes());
        old_hashes(hashes, &mut out);
    }
    out.into()
}

fn tmpdir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "surfstore-old-{tag}-{:016x}",
        rand::random::<u64>()
    ))
}

fn hex(byte: u8) -> Value {
    Value::String(format!("{byte:02x}").repeat(32))
}

/// Writes a one-node store: `snapshot` at index 2 (term 1), then `entries` as
/// indexes 3.., all committed.
async fn write_store(dir: &Path, snapshot: Bytes, entries: &[Bytes]) -> (TcpListener, ClusterMeta) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let meta = ClusterMeta {
        id: 0,
        members: vec![listener.local_addr().unwrap().to_string()],
    };
    let (mut store, _) = DiskStore::open(dir, &meta, DiskOptions::default()).unwrap();
    let last = 2 + entries.len() as u64;
    let entries: Vec<Entry> = entries
        .iter()
        .enumerate()
        .map(|(i, data)| Entry {
            term: 1,
            index: 3 + i as u64,
            data: data.clone(),
        })
        .collect();
    let hs = HardState {
        term: 1,
        vote: Some(0),
        commit: last,
    };
    let snap = Snapshot {
        index: 2,
        term: 1,
        data: snapshot,
    };
    store.save_snapshot(&snap, None).unwrap();
    store.persist(Some(hs), &entries).unwrap();
    (listener, meta)
}

async fn start(
    dir: &Path,
    listener: TcpListener,
    meta: ClusterMeta,
) -> (Result<RunningNode, StartError>, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    let mut opts = NodeOptions::new(0, meta.members);
    opts.data_dir = Some(dir.to_path_buf());
    opts.snapshot_threshold = 0;
    (node::start_on(opts, listener, rx).await, tx)
}

async fn wait_leader_applied(handle: &NodeHandle, index: u64) {
    let mut w = handle.watch();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            {
                let s = w.borrow_and_update();
                if s.is_leader() && s.raft.applied_index >= index {
                    return;
                }
            }
            w.changed().await.unwrap();
        }
    })
    .await
    .expect("the node leads and applies within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_data_directory_loads_with_every_hash_typed_as_sent() {
    let dir = tmpdir("loads");
    let in_snapshot = vec![hex(0xab), Value::String("0".into()), Value::Int(-4)];
    let in_log = vec![
        Value::I8(1 << 40),
        Value::I8(3),
        Value::String("H".repeat(64)),
        hex(0x01),
        Value::Base64(vec![0xcd; 32]),
    ];
    let entries = [
        old_command("log.txt", 1, &in_log),
        old_command(
            "bad.txt",
            1,
            &[Value::String("x".into()), Value::Double(1.5)],
        ),
        old_command("snap.txt", 3, &[Value::String("h3".into())]),
    ];
    let snapshot = old_snapshot(&[("snap.txt", 2, in_snapshot)]);
    let (listener, meta) = write_store(&dir, snapshot, &entries).await;
    let (running, _stop) = start(&dir, listener, meta).await;
    let running = running.expect("the old directory loads");
    let h = &running.handle;
    wait_leader_applied(h, 5).await;

    let map = h.file_info_map().await.unwrap();
    let map = map.as_struct().unwrap();
    assert_eq!(
        map.get("log.txt"),
        Some(&Value::Array(vec![Value::Int(1), Value::Array(in_log)]))
    );
    assert_eq!(
        map.get("snap.txt"),
        Some(&Value::Array(vec![
            Value::Int(3),
            Value::Array(vec![Value::String("h3".into())])
        ])),
        "the log entry after the snapshot applied on top of it"
    );
    assert!(!map.contains_key("bad.txt"), "{map:?}");
    // The entry a hash list cannot hold is named, with what is wrong in it.
    let tail = h.log_tail(10).await.unwrap();
    let bad = tail
        .iter()
        .find(|l| l.index == 4)
        .expect("entry 4 is in the log");
    assert_eq!(
        bad.command,
        "undecodable: hash 1 (at byte 30) is a double, which a hash list cannot hold \
         (only strings, ints and base64)"
    );
    // And the node goes on taking writes.
    let v = h
        .update_file("bad.txt".into(), 1, Vec::new())
        .await
        .unwrap();
    assert!(v, "bad.txt was never applied, so version 1 creates it");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_snapshot_holding_no_hash_refuses_to_start_naming_it() {
    let dir = tmpdir("refuses");
    let snapshot = old_snapshot(&[
        ("a.txt", 1, vec![hex(0x11)]),
        ("b.txt", 1, vec![Value::Int(1), Value::Double(2.5)]),
    ]);
    let (listener, meta) = write_store(&dir, snapshot, &[]).await;
    let (running, _stop) = start(&dir, listener, meta).await;
    let err = match running {
        Ok(_) => panic!("a snapshot with a double in a hash list started"),
        Err(e) => e.to_string(),
    };
    let file = dir.join("snapshot").display().to_string();
    assert!(err.contains(&file), "{err}");
    assert!(
        err.ends_with(
            "the metadata map of the snapshot at index 2 does not decode: file \"b.txt\": \
             hash 1 (at byte 129) is a double, which a hash list cannot hold (only strings, \
             ints and base64)"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
