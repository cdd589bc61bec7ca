//! The sync client against a real in-process 3-node cluster: byte-exact round
//! trips through two base directories, edits, deletes and re-creation, a
//! conflict (the loser's copy kept), a leader crash mid-upload, and
//! `run-client.sh` itself.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::tmpdir;
use common::TestCluster;
use rand::SeedableRng;
use surfstore::client::{sync, Summary, SyncOptions};
use surfstore::node::blocks::hash_hex;
use surfstore::node::command::parse_sha256_hex;
use surfstore::xmlrpc::Value;

const BS: usize = 4096;

fn opts(dir: &Path) -> SyncOptions {
    let mut o = SyncOptions::new(dir, BS);
    o.retry_budget = Duration::from_secs(30);
    o
}

async fn run(c: &TestCluster, node: usize, dir: &Path) -> Summary {
    let s = sync(&c.addrs[node], &opts(dir))
        .await
        .expect("sync succeeds");
    assert!(s.problems.is_empty(), "problems: {:?}", s.problems);
    s
}

/// Every synced file under `dir` (the index and conflict copies included).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::folder_contents(dir, false)
}

fn random_bytes(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<u8> {
    common::random_bytes(rng, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_of_every_size_round_trip_byte_exact() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("a"), tmpdir("b"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let sizes = [
        ("empty", 0),
        ("one-byte", 1),
        ("one-block", BS),
        ("block-plus-one", BS + 1),
        ("several MiB.bin", 3 * 1024 * 1024 + 17),
        ("sub/dir/nested.txt", 100),
        ("spaces and 100%.txt", 10),
    ];
    for (name, n) in sizes {
        let p = a.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, random_bytes(&mut rng, n)).unwrap();
    }
    // A repeated block is stored and sent once.
    std::fs::write(a.join("repeats"), vec![7u8; 4 * BS]).unwrap();

    let s = run(&c, 0, &a).await;
    assert_eq!(s.uploaded.len(), sizes.len() + 1);
    let s = run(&c, 1, &b).await;
    assert_eq!(s.downloaded.len(), sizes.len() + 1);
    assert_eq!(contents(&a), contents(&b));

    // An unchanged folder syncs to nothing.
    let s = run(&c, 2, &a).await;
    assert_eq!(
        (s.uploaded.len(), s.downloaded.len(), s.blocks_uploaded),
        (0, 0, 0)
    );
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_deletes_and_recreation_propagate() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("a"), tmpdir("b"));
    std::fs::write(a.join("f.txt"), b"version one").unwrap();
    run(&c, 0, &a).await;
    run(&c, 0, &b).await;
    assert_eq!(std::fs::read(b.join("f.txt")).unwrap(), b"version one");

    // Edit on A.
    std::fs::write(a.join("f.txt"), vec![1u8; 3 * BS + 5]).unwrap();
    assert_eq!(run(&c, 1, &a).await.uploaded, vec!["f.txt"]);
    assert_eq!(run(&c, 2, &b).await.downloaded, vec!["f.txt"]);
    assert_eq!(contents(&a), contents(&b));
    assert!(std::fs::read_to_string(a.join("index.txt"))
        .unwrap()
        .starts_with("f.txt 2 "));

    // Delete on A: a tombstone, then B deletes.
    std::fs::remove_file(a.join("f.txt")).unwrap();
    assert_eq!(run(&c, 0, &a).await.deleted_remote, vec!["f.txt"]);
    assert_eq!(run(&c, 0, &b).await.deleted_local, vec!["f.txt"]);
    assert!(!b.join("f.txt").exists());
    assert_eq!(
        std::fs::read_to_string(b.join("index.txt")).unwrap(),
        "f.txt 3 0\n"
    );

    // Re-created on B after the delete: version 4 reaches A.
    std::fs::write(b.join("f.txt"), b"back again").unwrap();
    assert_eq!(run(&c, 0, &b).await.uploaded, vec!["f.txt"]);
    assert_eq!(run(&c, 0, &a).await.downloaded, vec!["f.txt"]);
    assert_eq!(std::fs::read(a.join("f.txt")).unwrap(), b"back again");
    assert!(std::fs::read_to_string(a.join("index.txt"))
        .unwrap()
        .starts_with("f.txt 4 "));
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_keeps_the_losers_copy() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("a"), tmpdir("b"));
    std::fs::write(a.join("doc"), b"base").unwrap();
    run(&c, 0, &a).await;
    run(&c, 0, &b).await;
    std::fs::write(a.join("doc"), b"A's edit").unwrap();
    std::fs::write(b.join("doc"), b"B's edit").unwrap();
    run(&c, 0, &a).await;
    let s = run(&c, 1, &b).await;
    assert_eq!(
        s.conflicts,
        vec![("doc".to_owned(), "doc.conflict-2".to_owned())]
    );
    assert_eq!(std::fs::read(b.join("doc")).unwrap(), b"A's edit");
    assert_eq!(
        std::fs::read(b.join("doc.conflict-2")).unwrap(),
        b"B's edit"
    );
    // The kept copy is an ordinary new file from then on.
    assert_eq!(run(&c, 1, &b).await.uploaded, vec!["doc.conflict-2"]);
    run(&c, 2, &a).await;
    assert_eq!(contents(&a), contents(&b));

    // A local delete against a remote edit: the remote edit comes back.
    std::fs::remove_file(a.join("doc")).unwrap();
    std::fs::write(b.join("doc"), b"B again").unwrap();
    run(&c, 0, &b).await;
    let s = run(&c, 0, &a).await;
    assert!(s.conflicts.is_empty());
    assert_eq!(std::fs::read(a.join("doc")).unwrap(), b"B again");
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_survives_a_leader_crash_mid_upload() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let (a, b) = (tmpdir("a"), tmpdir("b"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let data = random_bytes(&mut rng, 1024 * BS);
    std::fs::write(a.join("big"), &data).unwrap();
    let addr = c.addrs[l].clone();
    let o = opts(&a);
    let upload = tokio::spawn(async move { sync(&addr, &o).await });
    // Crash the leader once part of the file has reached it.
    let blocks = c.handle(l).blocks().unwrap().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while blocks.store.list().await.unwrap().len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upload never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!upload.is_finished(), "the crash must land mid-upload");
    c.handle(l).crash().await.unwrap();
    let s = upload
        .await
        .unwrap()
        .expect("the sync rides through the failover");
    assert_eq!(s.uploaded, vec!["big"]);
    let s = sync(&c.addrs[(l + 1) % 3], &opts(&b)).await.unwrap();
    assert_eq!(s.downloaded, vec!["big"]);
    assert_eq!(std::fs::read(b.join("big")).unwrap(), data);
    c.handle(l).restore().await.unwrap();
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_client_sh_syncs_and_fails_clearly() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-client.sh");
    let bin = env!("CARGO_BIN_EXE_surfstore");
    let (a, b) = (tmpdir("a"), tmpdir("b"));
    std::fs::write(a.join("hello.txt"), b"hello, world\n").unwrap();
    let client = |addr: String, dir: PathBuf| {
        let script = script.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .arg(script)
                .arg(addr)
                .arg(dir)
                .arg("4096")
                .env("SURFSTORE_BIN", bin)
                .output()
                .unwrap()
        })
    };
    let out = client(c.addrs[2].clone(), a.clone()).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("uploaded hello.txt"));
    let out = client(c.addrs[0].clone(), b.clone()).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(b.join("hello.txt")).unwrap(),
        b"hello, world\n"
    );

    // A server that is down: a clear message, a non-zero exit, nothing touched.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let before = contents(&b);
    let out = client(dead_addr.clone(), b.clone()).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the cluster at") && err.contains(&dead_addr),
        "{err}"
    );
    assert_eq!(contents(&b), before);

    // A base directory that does not exist.
    let out = client(c.addrs[0].clone(), a.join("nope")).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("base directory"),
        "{out:?}"
    );
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_refuses_names_a_client_could_not_write_safely() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let upd = |name: &str| {
        [
            Value::String(name.to_owned()),
            Value::Int(1),
            Value::Array(vec![Value::String("0".into())]),
        ]
    };
    for bad in [
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "./a",
        "a/",
        "index.txt",
        "a\nb",
        "a\rb",
    ] {
        let r = c.call(l, "updatefile", &upd(bad)).await;
        assert_eq!(common::fault_code(&r), Some(3), "{bad:?}: {r:?}");
    }
    for good in [
        "sub/index.txt",
        "d\u{ed}r/\u{fc}n\u{ef} <&>\"' \u{1F600} \t x.txt",
        "..a",
        "a..b",
    ] {
        let r = c.call(l, "updatefile", &upd(good)).await;
        assert_eq!(r.unwrap(), Value::Bool(true), "{good:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_listed_by_raw_sha256_digests_downloads() {
    // What a Python client does with `hashlib.sha256(block).digest()`: the
    // hash list holds base64 digests, not hex strings.
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let blocks = [vec![1u8; BS], vec![2u8; 100]];
    let mut hashes = Vec::new();
    for b in &blocks {
        let put = c.call(l, "putblock", &[Value::Base64(b.clone())]).await;
        assert_eq!(put.unwrap(), Value::Bool(true));
        let digest = parse_sha256_hex(&hash_hex(b)).unwrap();
        hashes.push(Value::Base64(digest.to_vec()));
    }
    let upd = [
        Value::String("py.bin".into()),
        Value::Int(1),
        Value::Array(hashes),
    ];
    assert_eq!(
        c.call(l, "updatefile", &upd).await.unwrap(),
        Value::Bool(true)
    );
    let dir = tmpdir("digests");
    run(&c, l, &dir).await;
    assert_eq!(
        std::fs::read(dir.join("py.bin")).unwrap(),
        blocks.concat(),
        "the file is its blocks, in order"
    );
    // Unchanged since: a second sync uploads and downloads nothing.
    let again = run(&c, l, &dir).await;
    assert_eq!((again.blocks_uploaded, again.blocks_downloaded), (0, 0));
    let _ = std::fs::remove_dir_all(&dir);
}
