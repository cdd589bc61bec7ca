//! `installSnapshot` as the method table serves it, against a fake driver
//! that answers every `InstallSnapshot` with success.

use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};

use super::*;
use crate::node::command::{Command, Hash};
use crate::node::driver::NodeStatus;
use crate::node::peer_wire::{snapshot_chunks, MAX_SNAPSHOT_BYTES};
use crate::node::raft::{MessageBody, Role, Snapshot, Status};
use crate::xmlrpc::codec::MethodCall;

const ME: NodeId = 1;

fn status(crashed: bool) -> NodeStatus {
    NodeStatus {
        raft: Status {
            id: ME,
            role: Role::Follower,
            term: 9,
            vote: None,
            leader: Some(0),
            last_index: 0,
            last_term: 0,
            snapshot_index: 0,
            commit_index: 0,
            applied_index: 0,
            transferee: None,
            progress: Vec::new(),
        },
        crashed,
        files: 0,
        failed: None,
    }
}

struct Fake {
    handle: NodeHandle,
    status: watch::Sender<NodeStatus>,
    /// Every message the driver was asked to step.
    seen: mpsc::UnboundedReceiver<Message>,
}

/// Node 1 of 3, with a driver that answers `Request::Peer` with success.
fn node() -> Fake {
    let (req_tx, mut req_rx) = mpsc::channel(16);
    let (status_tx, status_rx) = watch::channel(status(false));
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(req) = req_rx.recv().await {
            if let Request::Peer { msg, reply } = req {
                let MessageBody::InstallSnapshot { snapshot } = &msg.body else {
                    panic!("unexpected {msg:?}");
                };
                let resp = Message {
                    from: msg.to,
                    to: msg.from,
                    term: msg.term,
                    ctx: msg.ctx,
                    body: MessageBody::AppendEntriesResponse {
                        success: true,
                        match_index: snapshot.index,
                        conflict_index: 0,
                        conflict_term: 0,
                        read_seq: 0,
                    },
                };
                let _ = seen_tx.send(msg);
                let _ = reply.send(Ok(resp));
            }
        }
    });
    let members: Arc<[String]> = vec!["a:1".into(), "b:2".into(), "c:3".into()].into();
    let (events, _) = broadcast::channel(4);
    Fake {
        handle: NodeHandle::new(ME, members, req_tx, status_rx, events),
        status: status_tx,
        seen,
    }
}

/// A metadata snapshot of exactly `len` bytes (at least 39): one file whose
/// one hash is `len - 39` bytes of base64.
fn map_bytes(len: usize) -> Bytes {
    let mut m = Metadata::new();
    let hash = Hash::Bytes((0..len - 39).map(|i| (i % 253) as u8).collect());
    m.apply(
        1,
        &Command::UpdateFile {
            filename: "f".into(),
            version: 1,
            hashlist: vec![hash],
        },
    );
    let data = m.encode_snapshot();
    assert_eq!(data.len(), len);
    data
}

fn snapshot_msg(index: LogIndex, len: usize) -> Message {
    junk_msg(index, map_bytes(len))
}

fn junk_msg(index: LogIndex, data: Bytes) -> Message {
    Message {
        from: 0,
        to: ME,
        term: 9,
        ctx: 0,
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot {
                index,
                term: 8,
                data,
            },
        },
    }
}

fn chunks(msg: &Message, size: usize) -> Vec<Value> {
    snapshot_chunks(msg, size)
        .unwrap()
        .map(|c| peer_wire::encode_chunk(&c))
        .collect()
}

async fn call(h: &NodeHandle, params: Vec<Value>) -> Result<Value, NodeError> {
    h.dispatch(MethodCall {
        method: peer_wire::INSTALL_SNAPSHOT.into(),
        params,
    })
    .await
}

async fn received(h: &NodeHandle, chunk: &Value) -> u64 {
    let v = call(h, vec![chunk.clone()]).await.unwrap();
    let ack = peer_wire::decode_chunk_ack(&v).unwrap();
    assert_eq!((ack.from, ack.to), (ME, 0));
    ack.received
}

async fn finish(f: &mut Fake, chunk: &Value, want: &Message) {
    let v = call(&f.handle, vec![chunk.clone()]).await.unwrap();
    let resp = peer_wire::decode_response(peer_wire::INSTALL_SNAPSHOT, &v).unwrap();
    assert_eq!((resp.from, resp.to), (ME, 0));
    let seen = f.seen.recv().await.unwrap();
    assert_eq!(Message { ctx: 0, ..seen }, *want);
}

fn bad_request(r: Result<Value, NodeError>) -> String {
    match r {
        Err(e @ NodeError::BadRequest(_)) => e.to_string(),
        other => panic!("expected a BadRequest, got {other:?}"),
    }
}

#[tokio::test]
async fn chunks_are_joined_and_the_whole_snapshot_goes_to_the_driver() {
    let mut f = node();
    let msg = snapshot_msg(77, 10_000);
    let c = chunks(&msg, 3000);
    assert_eq!(c.len(), 4);
    for (i, chunk) in c[..3].iter().enumerate() {
        assert_eq!(received(&f.handle, chunk).await, 3000 * (i as u64 + 1));
    }
    finish(&mut f, &c[3], &msg).await;
    // The buffer is gone: continuing is refused.
    let e = bad_request(call(&f.handle, vec![c[1].clone()]).await);
    assert!(e.contains("expected offset 0, got offset 3000"), "{e}");
}

#[tokio::test]
async fn a_single_chunk_goes_straight_through() {
    let mut f = node();
    let msg = snapshot_msg(5, 100);
    finish(&mut f, &chunks(&msg, 1 << 20)[0], &msg).await;
}

#[tokio::test]
async fn a_snapshot_that_is_not_a_map_is_fault_3_and_never_reaches_the_driver() {
    let mut f = node();
    let mut flipped = map_bytes(10_000).to_vec();
    flipped[5000] ^= 1;
    let cases: [(Bytes, &str); 4] = [
        // The attack of issue 11: five junk bytes in one chunk.
        (Bytes::from_static(b"\x01\x02\x03\x04\x05"), "bad magic"),
        (Bytes::new(), "truncated"),
        (flipped.into(), "CRC mismatch"),
        (map_bytes(10_000).slice(..9_000), "CRC mismatch"),
    ];
    for (data, why) in cases {
        let msg = junk_msg(100, data);
        for size in [1 << 20, 3000] {
            let c = chunks(&msg, size);
            for chunk in &c[..c.len() - 1] {
                received(&f.handle, chunk).await;
            }
            let e = bad_request(call(&f.handle, vec![c[c.len() - 1].clone()]).await);
            assert!(
                e.contains("installSnapshot: snapshot 100 (term 8) from node 0 refused")
                    && e.contains(why),
                "{e}"
            );
        }
    }
    assert!(
        f.seen.try_recv().is_err(),
        "a bad snapshot reached the driver"
    );
    // The node still takes a good one, which the driver sees first.
    let msg = snapshot_msg(101, 5000);
    let c = chunks(&msg, 3000);
    assert_eq!(received(&f.handle, &c[0]).await, 3000);
    finish(&mut f, &c[1], &msg).await;
}

#[tokio::test]
async fn crashed_answers_fault_1_before_any_argument_check_and_drops_the_buffer() {
    let f = node();
    let msg = snapshot_msg(77, 10_000);
    let c = chunks(&msg, 3000);
    assert_eq!(received(&f.handle, &c[0]).await, 3000);
    f.status.send_replace(status(true));
    for params in [vec![], vec![Value::Int(1)], vec![c[1].clone()]] {
        let e = call(&f.handle, params).await.unwrap_err();
        assert_eq!(e, NodeError::Crashed(ME));
        assert_eq!(e.code(), crate::node::error::FAULT_IS_CRASHED);
    }
    f.status.send_replace(status(false));
    let e = bad_request(call(&f.handle, vec![c[1].clone()]).await);
    assert!(e.contains("expected offset 0, got offset 3000"), "{e}");
}

#[tokio::test]
async fn an_out_of_order_chunk_is_fault_3_and_leaves_the_buffer() {
    let mut f = node();
    let msg = snapshot_msg(77, 10_000);
    let c = chunks(&msg, 3000);
    assert_eq!(received(&f.handle, &c[0]).await, 3000);
    let e = bad_request(call(&f.handle, vec![c[2].clone()]).await);
    assert!(
        e.contains("installSnapshot") && e.contains("expected offset 3000, got offset 6000"),
        "{e}"
    );
    // A chunk already received is out of order too.
    assert_eq!(received(&f.handle, &c[1]).await, 6000);
    let e = bad_request(call(&f.handle, vec![c[1].clone()]).await);
    assert!(e.contains("expected offset 6000, got offset 3000"), "{e}");
    // Offset 0 starts over, and a chunk of another transfer does not disturb it.
    assert_eq!(received(&f.handle, &c[0]).await, 3000);
    let other = chunks(&snapshot_msg(78, 10_000), 3000);
    let e = bad_request(call(&f.handle, vec![other[1].clone()]).await);
    assert!(
        e.contains("snapshot 78") && e.contains("expected offset 0"),
        "{e}"
    );
    for (i, chunk) in c[1..3].iter().enumerate() {
        assert_eq!(received(&f.handle, chunk).await, 3000 * (i as u64 + 2));
    }
    finish(&mut f, &c[3], &msg).await;
}

#[tokio::test]
async fn offset_0_starts_over_with_a_newer_snapshot() {
    let mut f = node();
    let old = chunks(&snapshot_msg(50, 10_000), 3000);
    assert_eq!(received(&f.handle, &old[0]).await, 3000);
    assert_eq!(received(&f.handle, &old[1]).await, 6000);
    let msg = snapshot_msg(60, 7000);
    let new = chunks(&msg, 3000);
    assert_eq!(received(&f.handle, &new[0]).await, 3000);
    let e = bad_request(call(&f.handle, vec![old[2].clone()]).await);
    assert!(e.contains("snapshot 50"), "{e}");
    assert_eq!(received(&f.handle, &new[1]).await, 6000);
    finish(&mut f, &new[2], &msg).await;
}

#[tokio::test]
async fn oversized_and_misrouted_chunks_are_fault_3() {
    let f = node();
    let mut chunk = chunks(&junk_msg(5, Bytes::from_static(&[7; 10])), 4)[0].clone();
    let set = |c: &mut Value, k: &str, v: u64| {
        if let Value::Struct(s) = c {
            s.insert(k.into(), Value::I8(v as i64));
        }
    };
    set(&mut chunk, "total", MAX_SNAPSHOT_BYTES + 1);
    let e = bad_request(call(&f.handle, vec![chunk.clone()]).await);
    assert!(e.contains("'total'"), "{e}");
    set(&mut chunk, "total", 10);
    set(&mut chunk, "to", 2);
    let e = bad_request(call(&f.handle, vec![chunk.clone()]).await);
    assert!(e.contains("from 0 to 2 reached node 1"), "{e}");
    set(&mut chunk, "to", ME);
    set(&mut chunk, "from", ME);
    bad_request(call(&f.handle, vec![chunk.clone()]).await);
    set(&mut chunk, "from", 3);
    bad_request(call(&f.handle, vec![chunk.clone()]).await);
    set(&mut chunk, "from", 0);
    assert_eq!(received(&f.handle, &chunk).await, 4);
    let e = bad_request(call(&f.handle, vec![Value::Int(3)]).await);
    assert!(e.contains("struct"), "{e}");
}

#[test]
fn a_one_chunk_snapshot_is_not_copied() {
    let msg = snapshot_msg(5, 100);
    let chunk = snapshot_chunks(&msg, 1000).unwrap().next().unwrap();
    let ptr = chunk.data.as_ptr();
    let mut slot = None;
    let Ok(Progress::Complete(m)) = accept(&mut slot, chunk, Instant::now()) else {
        panic!("not complete");
    };
    let MessageBody::InstallSnapshot { snapshot } = m.body else {
        unreachable!()
    };
    assert_eq!(snapshot.data.as_ptr(), ptr);
    assert!(slot.is_none());
}

#[test]
fn a_transfer_expires_timeout_after_its_last_chunk() {
    let msg = snapshot_msg(5, 100);
    let mut c = snapshot_chunks(&msg, 40).unwrap();
    let t0 = Instant::now();
    let timeout = Duration::from_secs(30);
    let mut slot = None;
    assert_eq!(expire(&mut slot, t0, timeout), Expiry::Empty);
    accept(&mut slot, c.next().unwrap(), t0).unwrap();
    let t1 = t0 + Duration::from_secs(20);
    assert_eq!(expire(&mut slot, t1, timeout), Expiry::Due(t0 + timeout));
    accept(&mut slot, c.next().unwrap(), t1).unwrap();
    // 40 s after the start, but 20 s after the last chunk: alive.
    let t2 = t1 + Duration::from_secs(20);
    assert_eq!(expire(&mut slot, t2, timeout), Expiry::Due(t1 + timeout));
    assert_eq!(expire(&mut slot, t1 + timeout, timeout), Expiry::Dropped);
    assert!(slot.is_none());
}

/// The sweeper drops an abandoned transfer on tokio's paused clock (it
/// jumps to the next timer whenever every task waits, so no real time
/// passes), and a transfer that keeps receiving chunks is left alone.
#[tokio::test(start_paused = true)]
async fn an_abandoned_transfer_is_dropped_by_the_sweeper() {
    let f = node();
    let mut dropped = f.handle.snapshot_assembly.dropped();
    let msg = snapshot_msg(77, 10_000);
    let c = chunks(&msg, 3000);
    let start = Instant::now();
    assert_eq!(received(&f.handle, &c[0]).await, 3000);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(received(&f.handle, &c[1]).await, 6000);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(received(&f.handle, &c[2]).await, 9000);
    let last_chunk = Instant::now();
    assert_eq!(*dropped.borrow(), 0);
    // Without a sweeper the paused clock jumps to this hour and the test fails.
    tokio::time::timeout(Duration::from_secs(3600), dropped.changed())
        .await
        .expect("the abandoned transfer was never dropped")
        .unwrap();
    assert_eq!(*dropped.borrow(), 1);
    assert_eq!(last_chunk - start, Duration::from_secs(40));
    assert!(Instant::now() - last_chunk >= ABANDONED_TRANSFER_TIMEOUT);
    let e = bad_request(call(&f.handle, vec![c[3].clone()]).await);
    assert!(e.contains("expected offset 0, got offset 9000"), "{e}");
    // A new transfer starts a new sweep, which ends with it.
    assert_eq!(received(&f.handle, &c[0]).await, 3000);
    assert!(f.handle.snapshot_assembly.lock().sweeping);
}
