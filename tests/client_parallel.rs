//! The sync client moving many files at once (`--parallel`): hundreds of
//! files up from one folder and down into another through a real 3-node
//! cluster, byte-identical with the right versions; two clients editing
//! overlapping files at the same moment, resolved by the conflict policy
//! with nothing lost; `--parallel 1` and the refusal of `--parallel 0`; and,
//! against a fake server, blocks batched into `putblocks` calls, and the
//! fall back to `putblock` when a server answers `putblocks` with fault 4.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{tmpdir, TestCluster};
use rand::{Rng, SeedableRng};
use surfstore::client::sync::uploader::{BATCHES_IN_FLIGHT, BATCH_BLOCKS};
use surfstore::client::{sync, ConflictPolicy, Summary, SyncOptions};
use surfstore::node::blocks::hash_hex;
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions};
use surfstore::xmlrpc::{Fault, Value};

const BIN: &str = env!("CARGO_BIN_EXE_surfstore");
const BS: usize = 4096;

fn opts(dir: &Path, parallel: usize) -> SyncOptions {
    let mut o = SyncOptions::new(dir, BS);
    o.retry_budget = Duration::from_secs(30);
    o.parallel = parallel;
    o
}

async fn run(addr: &str, o: &SyncOptions) -> Summary {
    let s = sync(addr, o).await.expect("sync succeeds");
    assert!(s.problems.is_empty(), "problems: {:?}", s.problems);
    s
}

/// Every file under `dir` but `index.txt`, by its synced name.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::folder_contents(dir, true)
}

/// name -> version, from a folder's `index.txt`.
fn versions(dir: &Path) -> BTreeMap<String, i64> {
    std::fs::read_to_string(dir.join("index.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut w = l.split(' ');
            let name = w.next().unwrap().to_owned();
            (name, w.next().unwrap().parse().unwrap())
        })
        .collect()
}

fn bytes(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<u8> {
    common::random_bytes(rng, n)
}

fn sorted(v: &[String]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_files_go_up_and_down_in_parallel() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("par-a"), tmpdir("par-b"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for i in 0..500 {
        let name = if i % 5 == 0 {
            format!("dir{}/f{i:03}", i % 7)
        } else {
            format!("f{i:03}")
        };
        let p = a.join(&name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let n = rng.gen_range(0..3 * BS);
        std::fs::write(p, bytes(&mut rng, n)).unwrap();
    }
    for (name, n) in [
        ("big/one.bin", 40 * BS + 1),
        ("big/two.bin", (1 << 20) + 3),
        ("big/three.bin", 300 * BS),
    ] {
        std::fs::create_dir_all(a.join(name).parent().unwrap()).unwrap();
        std::fs::write(a.join(name), bytes(&mut rng, n)).unwrap();
    }
    // The same blocks in two files are sent once.
    std::fs::write(a.join("same-1"), vec![9u8; 8 * BS]).unwrap();
    std::fs::write(a.join("same-2"), vec![9u8; 8 * BS]).unwrap();

    let s = run(&c.addrs[0], &opts(&a, 16)).await;
    assert_eq!(s.uploaded.len(), 505);
    assert!(sorted(&s.uploaded), "names in order");
    let names: Vec<String> = s.actions.iter().map(|a| a.name.clone()).collect();
    assert!(sorted(&names), "messages in name order");
    let s = run(&c.addrs[1], &opts(&b, 16)).await;
    assert_eq!(s.downloaded.len(), 505);
    assert!(sorted(&s.downloaded));
    assert_eq!(contents(&a), contents(&b), "byte-identical trees");
    assert_eq!(versions(&a), versions(&b));
    assert!(versions(&b).values().all(|&v| v == 1));
    assert_eq!(
        std::fs::read(a.join("index.txt")).unwrap(),
        std::fs::read(b.join("index.txt")).unwrap()
    );

    // Edits and deletes on B come back to A at version 2; the rest stays.
    for i in (0..500).step_by(10) {
        let name = if i % 5 == 0 {
            format!("dir{}/f{i:03}", i % 7)
        } else {
            format!("f{i:03}")
        };
        if i % 20 == 0 {
            std::fs::remove_file(b.join(&name)).unwrap();
        } else {
            std::fs::write(b.join(&name), bytes(&mut rng, 2 * BS + i)).unwrap();
        }
    }
    std::fs::write(b.join("big/two.bin"), bytes(&mut rng, 3 * BS)).unwrap();
    let s = run(&c.addrs[2], &opts(&b, 16)).await;
    assert_eq!((s.uploaded.len(), s.deleted_remote.len()), (26, 25));
    let s = run(&c.addrs[0], &opts(&a, 16)).await;
    assert_eq!((s.downloaded.len(), s.deleted_local.len()), (26, 25));
    assert_eq!(contents(&a), contents(&b));
    let v = versions(&a);
    assert_eq!(v, versions(&b));
    assert_eq!(v.values().filter(|&&v| v == 2).count(), 51);
    assert_eq!(v["f001"], 1);

    // Nothing more to do, from either side.
    for d in [&a, &b] {
        let s = run(&c.addrs[1], &opts(d, 16)).await;
        assert!(s.actions.is_empty(), "{:?}", s.actions);
        assert_eq!(s.blocks_uploaded + s.blocks_downloaded, 0);
    }
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_editing_the_same_files_at_once_lose_nothing() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("both-a"), tmpdir("both-b"));
    for i in 0..60 {
        std::fs::write(a.join(format!("doc{i:02}")), format!("base {i}")).unwrap();
    }
    run(&c.addrs[0], &opts(&a, 8)).await;
    run(&c.addrs[1], &opts(&b, 8)).await;
    // Both edit docs 0..40 (overlapping), each also its own new files.
    for i in 0..40 {
        std::fs::write(a.join(format!("doc{i:02}")), format!("A's edit {i}")).unwrap();
        std::fs::write(b.join(format!("doc{i:02}")), format!("B's edit {i}")).unwrap();
    }
    for i in 0..10 {
        std::fs::write(a.join(format!("a-only{i}")), format!("a {i}")).unwrap();
        std::fs::write(b.join(format!("b-only{i}")), format!("b {i}")).unwrap();
    }
    let (oa, ob) = (opts(&a, 8), opts(&b, 8));
    let (sa, sb) = tokio::join!(run(&c.addrs[0], &oa), run(&c.addrs[1], &ob));
    // Every overlapping file was won by exactly one side; the loser kept
    // its copy (the library's default policy, keep).
    for i in 0..40 {
        let name = format!("doc{i:02}");
        let won_a = sa.uploaded.contains(&name);
        let won_b = sb.uploaded.contains(&name);
        assert!(won_a != won_b, "{name}: a {won_a}, b {won_b}");
        let loser = if won_a { &sb } else { &sa };
        assert!(
            loser.conflicts.iter().any(|(n, _)| *n == name),
            "{name}: {:?}",
            loser.conflicts
        );
    }
    // Two more rounds carry the conflict copies; then both folders agree.
    for _ in 0..2 {
        run(&c.addrs[0], &oa).await;
        run(&c.addrs[1], &ob).await;
    }
    let (ca, cb) = (contents(&a), contents(&b));
    assert_eq!(ca, cb);
    assert_eq!(versions(&a), versions(&b));
    for i in 0..40 {
        let name = format!("doc{i:02}");
        let mut kept: Vec<&[u8]> = ca
            .iter()
            .filter(|(n, _)| **n == name || n.starts_with(&format!("{name}.conflict-")))
            .map(|(_, d)| d.as_slice())
            .collect();
        kept.sort();
        let (ea, eb) = (format!("A's edit {i}"), format!("B's edit {i}"));
        assert_eq!(
            kept,
            [ea.as_bytes(), eb.as_bytes()],
            "{name}: both edits kept"
        );
    }
    assert_eq!(ca.keys().filter(|n| n.contains("-only")).count(), 20);

    // Under cloud the loser's edits are dropped, each to the winner's.
    let mut ca_opts = opts(&a, 8);
    ca_opts.conflicts = ConflictPolicy::Cloud;
    let mut cb_opts = opts(&b, 8);
    cb_opts.conflicts = ConflictPolicy::Cloud;
    for i in 40..60 {
        std::fs::write(a.join(format!("doc{i:02}")), format!("A2 {i}")).unwrap();
        std::fs::write(b.join(format!("doc{i:02}")), format!("B2 {i}")).unwrap();
    }
    let (sa, sb) = tokio::join!(run(&c.addrs[0], &ca_opts), run(&c.addrs[1], &cb_opts));
    assert_eq!(sa.uploaded.len() + sb.uploaded.len(), 20);
    assert_eq!(sa.dropped.len() + sb.dropped.len(), 20);
    assert!(sa.conflicts.is_empty() && sb.conflicts.is_empty());
    run(&c.addrs[0], &ca_opts).await;
    run(&c.addrs[1], &cb_opts).await;
    assert_eq!(contents(&a), contents(&b));
    for i in 40..60 {
        let got = std::fs::read(a.join(format!("doc{i:02}"))).unwrap();
        assert!(
            got == format!("A2 {i}").as_bytes() || got == format!("B2 {i}").as_bytes(),
            "doc{i}"
        );
    }
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_file_at_a_time_still_works_and_zero_is_refused() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("one-a"), tmpdir("one-b"));
    for i in 0..20 {
        std::fs::write(a.join(format!("g{i}")), vec![i as u8; i * 1000]).unwrap();
    }
    let s = run(&c.addrs[0], &opts(&a, 1)).await;
    assert_eq!(s.uploaded.len(), 20);
    let s = run(&c.addrs[2], &opts(&b, 1)).await;
    assert_eq!(s.downloaded.len(), 20);
    assert_eq!(contents(&a), contents(&b));

    // From the command line, too; 0 is a usage error on one line.
    std::fs::write(a.join("cli.txt"), b"from the command line").unwrap();
    let out = Command::new(BIN)
        .args(["client", &c.addrs[1], a.to_str().unwrap(), "4096"])
        .args(["--parallel", "1", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = Command::new(BIN)
        .args(["client", &c.addrs[1], a.to_str().unwrap(), "4096"])
        .args(["--parallel", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--parallel"), "{stderr}");
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

/// A SurfStore server in memory, with or without `putblocks`, counting the
/// calls it gets.
#[derive(Clone, Default)]
struct Fake {
    putblocks: bool,
    map: Arc<Mutex<BTreeMap<String, (i64, Vec<Value>)>>>,
    blocks: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Fake {
    fn count(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

impl Handler for Fake {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        let method = call.method.trim_start_matches("surfstore.").to_owned();
        *self
            .calls
            .lock()
            .unwrap()
            .entry(method.clone())
            .or_default() += 1;
        let p = &call.params;
        let bad = || Fault::new(3, "bad arguments");
        match method.as_str() {
            "members" => Ok(Value::Array(vec![])),
            "getfileinfomap" => Ok(Value::Struct(
                self.map
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(n, (v, h))| {
                        let entry = vec![Value::I8(*v), Value::Array(h.clone())];
                        (n.clone(), Value::Array(entry))
                    })
                    .collect(),
            )),
            "updatefile" => {
                let name = p.first().and_then(Value::as_str).ok_or_else(bad)?;
                let v = p.get(1).and_then(Value::as_i64).ok_or_else(bad)?;
                let h = p.get(2).and_then(Value::as_array).ok_or_else(bad)?;
                let mut map = self.map.lock().unwrap();
                let cur = map.get(name).map_or(0, |e| e.0);
                if v != cur + 1 {
                    return Ok(Value::Bool(false));
                }
                map.insert(name.to_owned(), (v, h.to_vec()));
                Ok(Value::Bool(true))
            }
            "hasblocks" => {
                let list = p.first().and_then(Value::as_array).ok_or_else(bad)?;
                let blocks = self.blocks.lock().unwrap();
                Ok(Value::Array(
                    list.iter()
                        .filter(|h| h.as_str().is_some_and(|h| blocks.contains_key(h)))
                        .cloned()
                        .collect(),
                ))
            }
            "putblock" => {
                let Some(Value::Base64(b)) = p.first() else {
                    return Err(bad());
                };
                self.blocks.lock().unwrap().insert(hash_hex(b), b.clone());
                Ok(Value::Bool(true))
            }
            "putblocks" if self.putblocks => {
                let list = p.first().and_then(Value::as_array).ok_or_else(bad)?;
                let mut out = Vec::new();
                let mut blocks = self.blocks.lock().unwrap();
                for b in list {
                    let Value::Base64(b) = b else {
                        return Err(bad());
                    };
                    out.push(Value::String(hash_hex(b)));
                    blocks.insert(hash_hex(b), b.clone());
                }
                Ok(Value::Array(out))
            }
            "getblock" => {
                let h = p.first().and_then(Value::as_str).ok_or_else(bad)?;
                self.blocks
                    .lock()
                    .unwrap()
                    .get(h)
                    .map(|b| Value::Base64(b.clone()))
                    .ok_or_else(|| Fault::new(3, "no such block"))
            }
            m => Err(Fault::new(4, format!("NoSuchMethod: surfstore.{m}"))),
        }
    }
}

async fn serve(h: Fake) -> String {
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

/// A folder of 30 files of 3 blocks and one of 3000 blocks (1 KiB blocks).
fn blocks_folder(tag: &str) -> (std::path::PathBuf, usize) {
    let d = tmpdir(tag);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..30 {
        std::fs::write(d.join(format!("s{i:02}")), bytes(&mut rng, 3 * 1024)).unwrap();
    }
    std::fs::write(d.join("large"), bytes(&mut rng, 3000 * 1024)).unwrap();
    (d, 30 * 3 + 3000)
}

fn fake_opts(d: &Path) -> SyncOptions {
    let mut o = SyncOptions::new(d, 1024);
    o.retry_budget = Duration::from_secs(5);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_go_in_putblocks_batches() {
    let fake = Fake {
        putblocks: true,
        ..Fake::default()
    };
    let addr = serve(fake.clone()).await;
    let (d, blocks) = blocks_folder("batch");
    let s = run(&addr, &fake_opts(&d)).await;
    assert_eq!((s.uploaded.len(), s.blocks_uploaded), (31, blocks));
    assert_eq!(fake.blocks.lock().unwrap().len(), blocks);
    assert_eq!(fake.count("putblock"), 0, "every batch had several blocks");
    // The large file alone needs 3 batches of at most 1024 blocks; the small
    // files share batches, so there are fewer calls than files.
    let calls = fake.count("putblocks");
    assert!(
        calls >= blocks.div_ceil(BATCH_BLOCKS) && calls <= 3 + 30,
        "{calls} putblocks calls"
    );
    assert_eq!(fake.count("hasblocks"), calls, "one hasblocks per batch");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_putblocks_gets_putblock_per_block() {
    let fake = Fake::default();
    let addr = serve(fake.clone()).await;
    let (d, blocks) = blocks_folder("old");
    let s = run(&addr, &fake_opts(&d)).await;
    assert_eq!((s.uploaded.len(), s.blocks_uploaded), (31, blocks));
    // Fault 4 once per batch already under way when the first came back,
    // then never again.
    let tries = fake.count("putblocks");
    assert!(
        (1..=BATCHES_IN_FLIGHT).contains(&tries),
        "{tries} putblocks calls"
    );
    assert_eq!(fake.count("putblock"), blocks);
    assert_eq!(fake.blocks.lock().unwrap().len(), blocks);

    // And the files come back whole.
    let e = tmpdir("old-down");
    let s = run(&addr, &fake_opts(&e)).await;
    assert_eq!(s.downloaded.len(), 31);
    assert_eq!(contents(&d), contents(&e));
    // It lacks getblocks too: asked, refused, then one getblock per block.
    assert!(fake.count("getblocks") >= 1);
    assert_eq!(fake.count("getblock"), blocks);
    let _ = (std::fs::remove_dir_all(&d), std::fs::remove_dir_all(&e));
}
