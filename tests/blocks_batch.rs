//! Batched block traffic on real in-process nodes: `putblocks` (a client's
//! batch, answered with the hashes once a majority holds every block), the
//! node-to-node `storeBlocks` its pushes go out as, the pushers' coalescing
//! of concurrent puts, crashed followers, bad input from clients and peers,
//! and the fallback to `storeBlock` for a peer that predates `storeBlocks`.

mod common;

use common::wait_until;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fault_code, s, TestCluster};
use surfstore::node::blocks::hash_hex;
use surfstore::node::metrics::RpcCounters;
use surfstore::node::{self, NodeOptions};
use surfstore::xmlrpc::client::CallError;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions};
use surfstore::xmlrpc::{Fault, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// `n` distinct blocks of `len` bytes.
fn blocks(n: usize, len: usize, seed: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|b| {
            let tag = (seed as usize) << 20 | b;
            (0..len)
                .map(|i| (i.wrapping_mul(31) ^ tag.wrapping_mul(2_654_435_761)) as u8)
                .chain(tag.to_le_bytes())
                .collect()
        })
        .collect()
}

fn b64_array(blocks: &[Vec<u8>]) -> Value {
    Value::Array(blocks.iter().map(|b| Value::Base64(b.clone())).collect())
}

async fn holds(c: &TestCluster, i: usize, hash: &str) -> bool {
    c.handle(i).blocks().unwrap().store.has(hash).await
}

/// How many of `hashes` node `i` holds.
async fn held(c: &TestCluster, i: usize, hashes: &[String]) -> usize {
    let mut n = 0;
    for h in hashes {
        n += holds(c, i, h).await as usize;
    }
    n
}

/// Calls of `method` node `i` took from the network, and those of them it
/// answered without a fault.
fn received(c: &TestCluster, i: usize, method: &str) -> (u64, u64) {
    let rpc = &c.handle(i).metrics().unwrap().rpc;
    let slot = RpcCounters::slot(&format!("surfstore.{method}"));
    let calls = rpc.calls(slot);
    (calls, calls - rpc.faults(slot))
}

fn hashes_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v:?}"))
        .iter()
        .map(|h| h.as_str().expect("a hash string").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn putblocks_reaches_every_node_in_a_few_peer_calls() {
    let c = TestCluster::start(3).await;
    let data = blocks(200, 1024, 1);
    let want: Vec<String> = data.iter().map(|b| hash_hex(b)).collect();
    let r = c.call(0, "putblocks", &[b64_array(&data)]).await.unwrap();
    assert_eq!(hashes_of(&r), want, "the hashes, in order");
    // At the answer a majority holds every block.
    for h in &want {
        let mut n = 0;
        for i in 0..3 {
            n += holds(&c, i, h).await as usize;
        }
        assert!(n >= 2, "block {h} on {n} nodes at the answer");
    }
    // Then every node holds them all (the third push finishes behind).
    wait_until(
        "every node to hold the batch",
        Duration::from_secs(10),
        || async {
            for i in 0..3 {
                if held(&c, i, &want).await < want.len() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for i in 0..3 {
        for (h, d) in want.iter().zip(&data) {
            assert_eq!(
                c.call(i, "getblock", &[s(h)]).await.unwrap(),
                Value::Base64(d.clone()),
                "node {i}"
            );
        }
    }
    // 200 blocks went to each peer in one storeBlocks call (two, were one
    // retried), not 200 storeBlock calls.
    let service = c.handle(0).blocks().unwrap().clone();
    let pushed = wait_until("both peers' answers", Duration::from_secs(10), || async {
        let n = service.push_numbers();
        (n.blocks_pushed == 400).then_some(n)
    })
    .await;
    assert_eq!(pushed.single_calls, 0, "{pushed:?}");
    assert!((2..=4).contains(&pushed.batch_calls), "{pushed:?}");
    for i in [1, 2] {
        let (calls, ok) = received(&c, i, "storeBlocks");
        assert!(
            ok >= 1 && calls <= 2,
            "node {i}: {calls} storeBlocks, {ok} ok"
        );
        assert_eq!(received(&c, i, "storeBlock").0, 0, "node {i}");
    }
    // Putting the same batch again is idempotent and answers the same.
    let again = c.call(1, "putblocks", &[b64_array(&data)]).await.unwrap();
    assert_eq!(hashes_of(&again), want);
    // An empty batch is a batch.
    assert_eq!(
        c.call(0, "putblocks", &[Value::Array(vec![])])
            .await
            .unwrap(),
        Value::Array(vec![])
    );
}

/// Concurrent `putblock` calls share peer calls: while both peers are
/// crashed, the first pushes to each take its two in-flight slots (tried
/// again and again) and the rest wait in its queue; once the peers are
/// back, what waited goes out as one `storeBlocks` call per peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_putblocks_share_storeblocks_calls() {
    const N: usize = 40;
    let c = TestCluster::start_with(3, |o| o.blocks.put_timeout = Duration::from_secs(30)).await;
    for i in [1, 2] {
        c.call(i, "crash", &[]).await.unwrap();
    }
    let data = blocks(N, 1000, 2);
    let puts: Vec<_> = data
        .iter()
        .map(|d| {
            let client = c.clients[0].clone();
            let d = d.clone();
            tokio::spawn(
                async move { client.call("surfstore.putblock", &[Value::Base64(d)]).await },
            )
        })
        .collect();
    let service = c.handle(0).blocks().unwrap().clone();
    wait_until(
        "every push queued for both peers",
        Duration::from_secs(10),
        || async { (service.push_numbers().blocks_queued == 2 * N as u64).then_some(()) },
    )
    .await;
    assert_eq!(service.push_numbers().blocks_pushed, 0);
    for i in [1, 2] {
        c.call(i, "restore", &[]).await.unwrap();
    }
    for p in puts {
        assert_eq!(p.await.unwrap().unwrap(), Value::Bool(true));
    }
    let want: Vec<String> = data.iter().map(|b| hash_hex(b)).collect();
    wait_until(
        "every node to hold the blocks",
        Duration::from_secs(10),
        || async {
            for i in 1..3 {
                if held(&c, i, &want).await < N {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // Each peer stored the 40 blocks with at most 3 calls: the two that
    // waited in flight and one with everything queued behind them.
    for i in [1, 2] {
        let (_, ok) = received(&c, i, "storeBlocks");
        assert!((1..=3).contains(&ok), "node {i}: {ok} storeBlocks stored");
        assert_eq!(received(&c, i, "storeBlock").0, 0, "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn putblocks_needs_a_majority_of_live_nodes() {
    let put_timeout = Duration::from_millis(800);
    let c = TestCluster::start_with(3, |o| o.blocks.put_timeout = put_timeout).await;
    c.call(2, "crash", &[]).await.unwrap();
    // A crashed node answers fault 1 before looking at its arguments.
    for (m, p) in [
        ("putblocks", Value::Int(1)),
        ("storeBlocks", s("junk")),
        ("putblocks", b64_array(&blocks(1, 10, 0))),
    ] {
        let r = c.call(2, m, &[p]).await;
        assert_eq!(fault_code(&r), Some(1), "{m}: {r:?}");
    }
    let data = blocks(20, 500, 3);
    let want: Vec<String> = data.iter().map(|b| hash_hex(b)).collect();
    let r = c.call(0, "putblocks", &[b64_array(&data)]).await.unwrap();
    assert_eq!(hashes_of(&r), want);
    assert_eq!(held(&c, 1, &want).await, want.len());
    // Two of three crashed: no majority within the put timeout.
    c.call(1, "crash", &[]).await.unwrap();
    let started = Instant::now();
    let more = blocks(20, 500, 4);
    let r = c.call(0, "putblocks", &[b64_array(&more)]).await;
    let took = started.elapsed();
    assert_eq!(fault_code(&r), Some(5), "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("putblocks: 20 blocks are held by 1 of 3 nodes"),
        "{msg}"
    );
    assert!(
        took >= put_timeout && took < Duration::from_secs(5),
        "fault 5 after {took:?}"
    );
    // One peer back: the same batch goes through.
    c.call(1, "restore", &[]).await.unwrap();
    let r = c.call(0, "putblocks", &[b64_array(&more)]).await.unwrap();
    assert_eq!(hashes_of(&r).len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_batches_are_clear_faults_and_the_node_serves_on() {
    let c = TestCluster::start_with(3, |o| o.blocks.max_block_bytes = 1024).await;
    let bad = |r: &Result<Value, CallError>, want: &str| {
        assert_eq!(fault_code(r), Some(3), "{r:?}");
        let msg = r.as_ref().unwrap_err().to_string();
        assert!(msg.contains(want), "{msg} lacks {want:?}");
    };
    let ok = blocks(2, 1000, 5);
    let r = c.call(0, "putblocks", &[Value::Int(7)]).await;
    bad(&r, "must be an array, got int");
    let r = c.call(0, "putblocks", &[]).await;
    bad(
        &r,
        "putblocks expects (blocks:array of base64), got 0 arguments",
    );
    let mut list = b64_array(&ok);
    if let Value::Array(a) = &mut list {
        a.push(s("not base64"));
    }
    let r = c.call(0, "putblocks", &[list]).await;
    bad(&r, "blocks[2] is string");
    let mut big = ok.clone();
    big.push(vec![0; 1025]);
    let r = c.call(0, "putblocks", &[b64_array(&big)]).await;
    bad(&r, "blocks[2] is 1025 bytes, above the limit of 1024 bytes");
    // Nothing of a refused batch was stored.
    let want: Vec<String> = ok.iter().map(|b| hash_hex(b)).collect();
    assert_eq!(held(&c, 0, &want).await, 0);

    // storeBlocks is a peer call: a client without a member's identity
    // is refused; a member's bad batch is fault 3 and stores nothing.
    let r = c.call(0, "storeBlocks", &[b64_array(&ok)]).await;
    assert_eq!(fault_code(&r), Some(7), "{r:?}");
    let peer = c.peer_client(0, 1);
    let store = |params: Vec<Value>| {
        let peer = peer.clone();
        async move { peer.call("surfstore.storeBlocks", &params).await }
    };
    bad(
        &store(vec![b64_array(&big)]).await,
        "blocks[2] is 1025 bytes",
    );
    bad(
        &store(vec![Value::Array(vec![Value::Int(1)])]).await,
        "blocks[0] is int",
    );
    bad(
        &store(vec![Value::Array(vec![Value::Base64(vec![]); 65_537])]).await,
        "more than the 65536 one call may carry",
    );
    assert_eq!(held(&c, 0, &want).await, 0);
    // A body over the node's 16 MiB limit is refused at the door: the node
    // answers 413 from the Content-Length and closes, so a client still
    // writing the body may see its pipe broken before it reads the 413
    // (tests/http_server.rs reads the 413 itself, sending no body).
    let huge = Value::Array(vec![Value::Base64(vec![7; 1 << 20]); 13]);
    let r = store(vec![huge]).await;
    let refused = match &r {
        Err(CallError::Http(413)) => true,
        Err(CallError::Transport(m)) => m.contains("Broken pipe") || m.contains("reset"),
        _ => false,
    };
    assert!(refused, "{r:?}");
    // The node serves on, and a good batch from a member is stored.
    assert_eq!(c.call(0, "ping", &[]).await.unwrap(), Value::Bool(true));
    assert_eq!(
        store(vec![b64_array(&ok)]).await.unwrap(),
        Value::Bool(true)
    );
    assert_eq!(held(&c, 0, &want).await, 2);
    let r = c.call(0, "putblocks", &[b64_array(&ok)]).await.unwrap();
    assert_eq!(hashes_of(&r), want);
}

/// Blocks a crashed node missed reach it by repair once a file lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_missed_a_batch_repairs_it() {
    let mut c = TestCluster::start_with(3, |o| {
        o.blocks.maintenance_interval = Duration::from_millis(100)
    })
    .await;
    let l = c.leader().await;
    let lagging = (l + 1) % 3;
    c.call(lagging, "crash", &[]).await.unwrap();
    let data = blocks(30, 2000, 6);
    let r = c.call(l, "putblocks", &[b64_array(&data)]).await.unwrap();
    let hashes = hashes_of(&r);
    let list = Value::Array(hashes.iter().map(|h| s(h)).collect());
    let upd = [s("batch.bin"), Value::Int(1), list];
    assert_eq!(
        c.call(l, "updatefile", &upd).await.unwrap(),
        Value::Bool(true)
    );
    c.call(lagging, "restore", &[]).await.unwrap();
    wait_until(
        "the lagging node to hold the file's blocks",
        Duration::from_secs(15),
        || async { (held(&c, lagging, &hashes).await == hashes.len()).then_some(()) },
    )
    .await;
}

/// A member that predates `storeBlocks` (fault 4) is pushed with
/// `storeBlock`, and is not asked for `storeBlocks` again.
#[derive(Clone, Default)]
struct OldPeer {
    batch_calls: Arc<AtomicU64>,
    single_calls: Arc<AtomicU64>,
}

impl Handler for OldPeer {
    async fn call(&self, call: MethodCall, _ctx: CallContext) -> Result<Value, Fault> {
        match call.method.as_str() {
            "surfstore.storeBlock" => {
                self.single_calls.fetch_add(1, Ordering::Relaxed);
                Ok(Value::Bool(true))
            }
            "surfstore.storeBlocks" => {
                self.batch_calls.fetch_add(1, Ordering::Relaxed);
                Err(Fault::new(4, "NoSuchMethod: 'surfstore.storeBlocks'"))
            }
            other => Err(Fault::new(4, format!("NoSuchMethod: '{other}'"))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_peer_is_pushed_block_by_block() {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let (tx, rx) = watch::channel(false);
    let mut listeners = listeners.into_iter();
    let mut opts = NodeOptions::new(0, addrs.clone());
    opts.timing = common::fast_timing();
    let real = node::start_on(opts, listeners.next().unwrap(), rx.clone())
        .await
        .unwrap();
    let olds = [OldPeer::default(), OldPeer::default()];
    for (l, old) in listeners.zip(olds.clone()) {
        let mut rx = rx.clone();
        tokio::spawn(server::serve(
            l,
            old,
            ServerOptions::default(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
    }
    let client = surfstore::xmlrpc::client::Client::new(&addrs[0], Duration::from_secs(30));
    let data = blocks(10, 100, 7);
    let r = client
        .call("surfstore.putblocks", &[b64_array(&data)])
        .await
        .unwrap();
    assert_eq!(hashes_of(&r).len(), 10);
    // A majority answered; the other old peer gets its blocks behind.
    wait_until(
        "both old peers to take 10 blocks",
        Duration::from_secs(10),
        || async {
            olds.iter()
                .all(|o| o.single_calls.load(Ordering::Relaxed) == 10)
                .then_some(())
        },
    )
    .await;
    let more = blocks(5, 100, 8);
    client
        .call("surfstore.putblocks", &[b64_array(&more)])
        .await
        .unwrap();
    wait_until(
        "both old peers to take 15 blocks",
        Duration::from_secs(10),
        || async {
            olds.iter()
                .all(|o| o.single_calls.load(Ordering::Relaxed) == 15)
                .then_some(())
        },
    )
    .await;
    for o in &olds {
        assert_eq!(o.batch_calls.load(Ordering::Relaxed), 1, "asked once");
    }
    let pushed = real.handle.blocks().unwrap().push_numbers();
    assert_eq!(pushed.single_calls, 30, "{pushed:?}");
    drop(tx);
}

fn hashes_arg(hs: &[&String]) -> Value {
    Value::Array(hs.iter().map(|h| Value::String((*h).clone())).collect())
}

fn blocks_of(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|b| match b {
                Value::Base64(d) => d.clone(),
                other => panic!("getblocks answered {other:?} in its array"),
            })
            .collect(),
        other => panic!("getblocks answered {other:?}"),
    }
}

/// `getblocks`: the blocks in the order asked, fetched from a peer when this
/// node lacks one, a prefix of at most 8 MiB (so the client asks again),
/// and clear faults for bad hashes, unknown blocks and a crashed node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn getblocks_answers_in_order_fetches_what_it_lacks_and_stops_at_8_mib() {
    let c = TestCluster::start(3).await;
    let small = blocks(3, 1000, 7);
    let r = c.call(0, "putblocks", &[b64_array(&small)]).await.unwrap();
    let hs: Vec<String> = small.iter().map(|b| hash_hex(b)).collect();
    assert_eq!(hashes_of(&r), hs);
    // A block only node 1 holds (as if node 0 missed it).
    let lone = blocks(1, 500, 8).remove(0);
    let lone_hash = c
        .handle(1)
        .blocks()
        .unwrap()
        .store
        .put(lone.clone().into())
        .await
        .unwrap();
    assert!(!holds(&c, 0, &lone_hash).await);

    let got = c
        .call(
            0,
            "getblocks",
            &[hashes_arg(&[&hs[2], &lone_hash, &hs[0], &hs[2]])],
        )
        .await
        .unwrap();
    assert_eq!(
        blocks_of(&got),
        vec![
            small[2].clone(),
            lone.clone(),
            small[0].clone(),
            small[2].clone()
        ]
    );
    assert!(holds(&c, 0, &lone_hash).await, "a fetched block is kept");
    assert_eq!(
        blocks_of(&c.call(0, "getblocks", &[hashes_arg(&[])]).await.unwrap()),
        Vec::<Vec<u8>>::new()
    );

    // Three 4 MiB blocks: the answer stops after 8 MiB, the rest is asked
    // again.
    let big = blocks(3, (4 << 20) - 8, 9);
    for b in &big {
        c.call(0, "putblock", &[Value::Base64(b.clone())])
            .await
            .unwrap();
    }
    let bh: Vec<String> = big.iter().map(|b| hash_hex(b)).collect();
    let got = blocks_of(
        &c.call(1, "getblocks", &[hashes_arg(&[&bh[0], &bh[1], &bh[2]])])
            .await
            .unwrap(),
    );
    assert_eq!(got, big[..2].to_vec());
    let rest = blocks_of(
        &c.call(1, "getblocks", &[hashes_arg(&[&bh[2]])])
            .await
            .unwrap(),
    );
    assert_eq!(rest, big[2..].to_vec());

    // Bad input: fault 3 naming the position; nothing else changes.
    let bad = |r: &Result<Value, CallError>, want: &str| match r {
        Err(CallError::Fault(f)) if f.code == 3 && f.message.contains(want) => {}
        other => panic!("expected fault 3 with {want:?}, got {other:?}"),
    };
    let r = c
        .call(0, "getblocks", &[Value::Array(vec![s(&hs[0]), s("zz")])])
        .await;
    bad(&r, "hashlist[1] is \"zz\", not 64 lower-case hex digits");
    let r = c
        .call(0, "getblocks", &[Value::Array(vec![Value::Int(3)])])
        .await;
    bad(&r, "hashlist[0] is int");
    let r = c.call(0, "getblocks", &[s(&hs[0])]).await;
    bad(&r, "getblocks");
    let nobody = hash_hex(b"a block no node holds");
    let r = c
        .call(0, "getblocks", &[hashes_arg(&[&hs[0], &nobody])])
        .await;
    bad(&r, &nobody);
    // A crashed node answers fault 1 before looking at the arguments.
    c.call(2, "crash", &[]).await.unwrap();
    let r = c.call(2, "getblocks", &[Value::Int(1)]).await;
    assert_eq!(fault_code(&r), Some(1), "{r:?}");
    c.call(2, "restore", &[]).await.unwrap();
}
