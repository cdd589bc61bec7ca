//! The sync client's manners (issue 14 item 5), against a real in-process
//! 3-node cluster (`common::TestCluster`, loopback ports the OS picks):
//! clients with different block sizes never move or re-version unchanged
//! content; remote entries whose hash lists name no blocks are skipped with
//! one warning and never created; both conflict policies; `.surfignore`;
//! directories emptied by remote deletes removed; symbolic links and FIFOs
//! listed and left alone; a block size over the server's limit refused before
//! anything moves; and the tester tombstoning the files it created.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use common::tmpdir;
use common::TestCluster;
use rand::{Rng, SeedableRng};
use surfstore::client::content::block_hashes;
use surfstore::client::{
    report, sync, ClientArgs, ClientError, ConflictPolicy, Summary, SyncOptions,
};
use surfstore::xmlrpc::Value;

const SMALL: usize = 4096;
const LARGE: usize = 4 << 20;
const BIN: &str = env!("CARGO_BIN_EXE_surfstore");

fn opts(dir: &Path, bs: usize) -> SyncOptions {
    let mut o = SyncOptions::new(dir, bs);
    o.retry_budget = Duration::from_secs(30);
    o
}

async fn run_with(c: &TestCluster, o: &SyncOptions) -> Summary {
    let s = sync(&c.addrs[0], o).await.expect("sync succeeds");
    assert!(s.problems.is_empty(), "problems: {:?}", s.problems);
    s
}

async fn run(c: &TestCluster, dir: &Path, bs: usize) -> Summary {
    run_with(c, &opts(dir, bs)).await
}

/// The leader's map: name -> (version, hash list as text).
async fn map(c: &TestCluster, l: usize) -> BTreeMap<String, (i64, Vec<String>)> {
    let v = c.call(l, "getfileinfomap", &[]).await.unwrap();
    v.as_struct()
        .unwrap()
        .iter()
        .map(|(name, info)| {
            let pair = info.as_array().unwrap();
            let hashes = pair[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| match h {
                    Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .collect();
            (name.clone(), (pair[0].as_i64().unwrap(), hashes))
        })
        .collect()
}

async fn update(c: &TestCluster, l: usize, name: &str, version: i32, hashes: &[&str]) {
    let params = [
        Value::String(name.into()),
        Value::Int(version),
        Value::Array(hashes.iter().map(|h| Value::String((*h).into())).collect()),
    ];
    assert_eq!(
        c.call(l, "updatefile", &params).await.unwrap(),
        Value::Bool(true),
        "updatefile({name}, {version})"
    );
}

/// Every file under `dir` (relative names), the index included.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

fn moved_nothing(s: &Summary) -> bool {
    s.actions.is_empty()
        && (
            s.blocks_uploaded,
            s.blocks_downloaded,
            s.bytes_uploaded,
            s.bytes_downloaded,
        ) == (0, 0, 0, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_with_different_block_sizes_never_ping_pong() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let (a, cc) = (tmpdir("a4k"), tmpdir("c4m"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut data = vec![0u8; 9 * (1 << 20) + 5];
    rng.fill(&mut data[..]);
    std::fs::write(a.join("big.bin"), &data).unwrap();

    let s = run(&c, &a, SMALL).await;
    assert_eq!(report::lines(&s)[0], "uploaded big.bin (v1, new here)");
    let s = run(&c, &cc, LARGE).await;
    assert_eq!(
        report::lines(&s)[0],
        "downloaded big.bin (v1, new remotely)"
    );
    assert_eq!(std::fs::read(cc.join("big.bin")).unwrap(), data);
    for round in 0..3 {
        for (dir, bs) in [(&a, SMALL), (&cc, LARGE)] {
            let s = run(&c, dir, bs).await;
            assert!(moved_nothing(&s), "round {round}, block size {bs}: {s:?}");
        }
    }
    assert_eq!(map(&c, l).await["big.bin"].0, 1, "no version was bumped");
    let index = std::fs::read_to_string(cc.join("index.txt")).unwrap();
    assert_eq!(
        index,
        format!("big.bin 1 {}\n", block_hashes(&data, LARGE).join(" ")),
        "the index keeps this client's own block size"
    );

    // What an older client left behind: C's index holding A's 4 KiB list.
    std::fs::write(
        cc.join("index.txt"),
        format!("big.bin 1 {}\n", block_hashes(&data, SMALL).join(" ")),
    )
    .unwrap();
    let s = run(&c, &cc, LARGE).await;
    assert!(moved_nothing(&s), "{s:?}");
    assert_eq!(
        std::fs::read_to_string(cc.join("index.txt")).unwrap(),
        index
    );

    // The same content re-uploaded at the other block size (an older client
    // bumping it without an edit): adopted, nothing fetched.
    for block in data.chunks(LARGE) {
        let put = c
            .call(l, "putblock", &[Value::Base64(block.to_vec())])
            .await;
        assert_eq!(put.unwrap(), Value::Bool(true));
    }
    let big: Vec<String> = block_hashes(&data, LARGE);
    let refs: Vec<&str> = big.iter().map(String::as_str).collect();
    update(&c, l, "big.bin", 2, &refs).await;
    for (dir, bs) in [(&a, SMALL), (&cc, LARGE)] {
        let s = run(&c, dir, bs).await;
        assert!(moved_nothing(&s), "block size {bs}: {s:?}");
        assert!(std::fs::read_to_string(dir.join("index.txt"))
            .unwrap()
            .starts_with("big.bin 2 "));
    }

    // A new folder that already holds the file, at a third block size: no
    // conflict, no transfer.
    let d = tmpdir("d1m");
    std::fs::write(d.join("big.bin"), &data).unwrap();
    let s = run(&c, &d, 1 << 20).await;
    assert!(moved_nothing(&s) && s.conflicts.is_empty(), "{s:?}");
    assert_eq!(files(&d), ["big.bin", "index.txt"]);
    assert_eq!(map(&c, l).await["big.bin"].0, 2);

    // A real edit still goes through, whichever side makes it.
    data[7] ^= 1;
    std::fs::write(cc.join("big.bin"), &data).unwrap();
    assert_eq!(run(&c, &cc, LARGE).await.uploaded, ["big.bin"]);
    let s = run(&c, &a, SMALL).await;
    assert_eq!(
        report::lines(&s)[0],
        "downloaded big.bin (v3, changed remotely)"
    );
    assert_eq!(std::fs::read(a.join("big.bin")).unwrap(), data);
    assert!(moved_nothing(&run(&c, &cc, LARGE).await));
    assert!(moved_nothing(&run(&c, &a, SMALL).await));
    for dir in [a, cc, d] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hash_lists_of_other_tools_are_skipped_with_one_warning() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let (a, b) = (tmpdir("junk-a"), tmpdir("junk-b"));
    std::fs::write(a.join("real.txt"), b"real").unwrap();
    std::fs::write(a.join("gone.txt"), b"soon gone").unwrap();
    run(&c, &a, SMALL).await;
    run(&c, &b, SMALL).await;
    update(&c, l, "junk", 1, &["h1"]).await;
    let ints = [
        Value::String("ints".into()),
        Value::Int(1),
        Value::Array(vec![Value::Int(1), Value::Int(2)]),
    ];
    assert_eq!(
        c.call(l, "updatefile", &ints).await.unwrap(),
        Value::Bool(true)
    );
    // A tombstone is still a delete.
    update(&c, l, "gone.txt", 2, &["0"]).await;
    std::fs::write(a.join("new.txt"), b"new").unwrap();
    run(&c, &a, SMALL).await;

    let s = run(&c, &b, SMALL).await;
    assert_eq!(s.downloaded, ["new.txt"]);
    assert_eq!(s.deleted_local, ["gone.txt"]);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].contains("2 files")
            && s.warnings[0].contains("\"ints\"")
            && s.warnings[0].contains("\"junk\""),
        "{}",
        s.warnings[0]
    );
    assert!(report::lines(&s).last().unwrap().ends_with(", 1 warning"));
    assert_eq!(files(&b), ["index.txt", "new.txt", "real.txt"]);
    assert!(!std::fs::read_to_string(b.join("index.txt"))
        .unwrap()
        .contains("junk"));

    // The command line: exit 0, the warning once on stderr, the count in the summary.
    let out = Command::new(BIN)
        .args(["client", c.addrs[1].as_str(), b.to_str().unwrap(), "4096"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(stdout.contains("1 warning"), "{stdout}");
    assert_eq!(files(&b), ["index.txt", "new.txt", "real.txt"]);

    // A file of the user's under a foreign name is not synced: exit 1.
    std::fs::write(b.join("junk"), b"mine").unwrap();
    let s = sync(&c.addrs[0], &opts(&b, SMALL)).await.unwrap();
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert_eq!(std::fs::read(b.join("junk")).unwrap(), b"mine");
    assert_eq!(map(&c, l).await["junk"], (1, vec!["h1".to_owned()]));
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicts_go_the_clouds_way_under_either_policy() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("conf-a"), tmpdir("conf-b"));
    std::fs::write(a.join("doc"), b"base").unwrap();
    run(&c, &a, SMALL).await;
    run(&c, &b, SMALL).await;

    // keep: the local copy is kept aside.
    std::fs::write(a.join("doc"), b"A1").unwrap();
    std::fs::write(b.join("doc"), b"B1").unwrap();
    run(&c, &a, SMALL).await;
    let mut keep = opts(&b, SMALL);
    keep.conflicts = ConflictPolicy::Keep;
    let s = run_with(&c, &keep).await;
    assert_eq!(
        s.conflicts,
        [("doc".to_owned(), "doc.conflict-2".to_owned())]
    );
    assert!(s.dropped.is_empty());
    assert_eq!(std::fs::read(b.join("doc")).unwrap(), b"A1");
    assert_eq!(std::fs::read(b.join("doc.conflict-2")).unwrap(), b"B1");
    std::fs::remove_file(b.join("doc.conflict-2")).unwrap();
    run(&c, &b, SMALL).await;

    // cloud: the local change is dropped, no extra file.
    std::fs::write(a.join("doc"), b"A2").unwrap();
    std::fs::write(b.join("doc"), b"B2").unwrap();
    run(&c, &a, SMALL).await;
    let mut cloud = opts(&b, SMALL);
    cloud.conflicts = ConflictPolicy::Cloud;
    let s = run_with(&c, &cloud).await;
    assert!(s.conflicts.is_empty(), "{s:?}");
    assert_eq!(s.dropped, ["doc"]);
    let lines = report::lines(&s);
    assert!(
        lines[0].starts_with("conflict on doc:") && lines[0].contains("dropped"),
        "{lines:?}"
    );
    assert_eq!(std::fs::read(b.join("doc")).unwrap(), b"A2");
    assert_eq!(files(&b), ["doc", "index.txt"]);
    assert!(moved_nothing(&run(&c, &b, SMALL).await));

    // The command line's default is cloud.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }
    let args = Cli::try_parse_from(["client", "h:1", "/tmp", "4096"]).unwrap();
    assert_eq!(args.client.conflicts, ConflictPolicy::Cloud);
    let args =
        Cli::try_parse_from(["client", "h:1", "/tmp", "4096", "--conflicts", "keep"]).unwrap();
    assert_eq!(args.client.conflicts, ConflictPolicy::Keep);
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn surfignore_keeps_names_out_both_ways() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let (a, b) = (tmpdir("ign-a"), tmpdir("ign-b"));
    std::fs::write(a.join("old.log"), b"synced before the rules").unwrap();
    run(&c, &a, SMALL).await;

    std::fs::write(a.join(".surfignore"), b"*.log\nbuild/\n").unwrap();
    std::fs::write(a.join("secret.log"), b"secret").unwrap();
    std::fs::create_dir_all(a.join("build")).unwrap();
    std::fs::write(a.join("build/out.bin"), b"out").unwrap();
    std::fs::write(a.join("keep.txt"), b"keep").unwrap();
    std::fs::remove_file(a.join("old.log")).unwrap();
    let s = run(&c, &a, SMALL).await;
    assert_eq!(s.uploaded, [".surfignore", "keep.txt"]);
    assert!(
        s.deleted_remote.is_empty(),
        "an ignored local delete is not sent"
    );
    assert_eq!(s.ignored, ["build/", "old.log", "secret.log"]);
    let m = map(&c, l).await;
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        [".surfignore", "keep.txt", "old.log"]
    );
    assert_eq!(m["old.log"].0, 1);

    // Another client with the same rules does not fetch ignored names.
    std::fs::copy(a.join(".surfignore"), b.join(".surfignore")).unwrap();
    let s = run(&c, &b, SMALL).await;
    assert_eq!(s.downloaded, ["keep.txt"]);
    assert_eq!(files(&b), [".surfignore", "index.txt", "keep.txt"]);
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn directories_emptied_by_remote_deletes_are_removed() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    let (a, b) = (tmpdir("dirs-a"), tmpdir("dirs-b"));
    for f in ["a/b/c/f.txt", "a/keep/g.txt", "x/y/z.txt"] {
        std::fs::create_dir_all(a.join(f).parent().unwrap()).unwrap();
        std::fs::write(a.join(f), f.as_bytes()).unwrap();
    }
    std::fs::write(b.join(".surfignore"), b"*.tmp\n").unwrap();
    run(&c, &a, SMALL).await;
    run(&c, &b, SMALL).await;
    // An ignored file keeps its directory.
    std::fs::write(b.join("x/scratch.tmp"), b"scratch").unwrap();
    std::fs::remove_file(a.join("a/b/c/f.txt")).unwrap();
    std::fs::remove_file(a.join("x/y/z.txt")).unwrap();
    let s = run(&c, &a, SMALL).await;
    let lines = report::lines(&s);
    assert!(
        lines.contains(&"deleted a/b/c/f.txt remotely (v2, deleted here)".to_owned()),
        "{lines:?}"
    );
    let s = run(&c, &b, SMALL).await;
    assert_eq!(s.deleted_local, ["a/b/c/f.txt", "x/y/z.txt"]);
    assert_eq!(s.removed_dirs, ["a/b/c", "a/b", "x/y"]);
    assert_eq!(
        report::lines(&s)[0],
        "deleted a/b/c/f.txt here (v2, deleted remotely)"
    );
    assert!(b.join("a/keep/g.txt").exists() && b.join("x/scratch.tmp").exists());
    assert!(!b.join("a/b").exists() && !b.join("x/y").exists());
    assert!(b.exists());
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn symlinks_and_fifos_are_listed_once_and_left_alone() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let a = tmpdir("special");
    let outside = tmpdir("outside");
    std::fs::write(outside.join("target.txt"), b"outside").unwrap();
    std::fs::write(a.join("plain.txt"), b"plain").unwrap();
    std::fs::write(a.join("was-a-file"), b"a file first").unwrap();
    run(&c, &a, SMALL).await;

    std::fs::remove_file(a.join("was-a-file")).unwrap();
    std::os::unix::fs::symlink(outside.join("target.txt"), a.join("was-a-file")).unwrap();
    std::os::unix::fs::symlink(&outside, a.join("dirlink")).unwrap();
    let fifo = std::ffi::CString::new(a.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let s = run(&c, &a, SMALL).await;
    assert!(moved_nothing(&s), "{s:?}");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    let w = &s.warnings[0];
    assert!(w.starts_with("skipped 3 entries:"), "{w}");
    for part in [
        "\"dirlink\" (symbolic link, not followed)",
        "\"pipe\" (FIFO)",
        "\"was-a-file\" (symbolic link, not followed)",
    ] {
        assert!(w.contains(part), "{w}");
    }
    let m = map(&c, l).await;
    assert_eq!(m.keys().collect::<Vec<_>>(), ["plain.txt", "was-a-file"]);
    assert_eq!(m["was-a-file"].0, 1, "not deleted remotely");
    assert_eq!(
        std::fs::read(outside.join("target.txt")).unwrap(),
        b"outside"
    );
    let _ = (
        std::fs::remove_dir_all(&a),
        std::fs::remove_dir_all(&outside),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_size_over_the_limit_is_refused_before_anything_moves() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let a = tmpdir("too-big");
    std::fs::write(a.join("f"), vec![1u8; 100]).unwrap();
    let blocks = c.handle(l).blocks().unwrap().clone();

    // Over the server's --max-block-bytes (4 MiB by default), from the command line.
    let out = Command::new(BIN)
        .args([
            "client",
            c.addrs[l].as_str(),
            a.to_str().unwrap(),
            (LARGE + 1).to_string().as_str(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("block size {} is too large", LARGE + 1)),
        "{stderr}"
    );
    assert!(stderr.contains("4194304"), "{stderr}");

    // Under a lower limit the client was told of, and over what a putblock
    // body can carry at all.
    let mut o = opts(&a, 2048);
    o.max_block_bytes = 1024;
    let e = sync(&c.addrs[l], &o).await.unwrap_err();
    assert!(
        matches!(e, ClientError::BlockTooLarge { size: 2048, .. }),
        "{e}"
    );
    let mut o = opts(&a, 13 << 20);
    o.max_block_bytes = 64 << 20;
    let e = sync(&c.addrs[l], &o).await.unwrap_err();
    assert!(e.to_string().contains("request limit"), "{e}");

    assert_eq!(files(&a), ["f"], "no index written");
    assert!(map(&c, l).await.is_empty(), "nothing uploaded");
    assert!(
        blocks.store.list().await.unwrap().is_empty(),
        "no block sent"
    );
    // The limit itself is fine.
    let s = run(&c, &a, LARGE).await;
    assert_eq!(s.uploaded, ["f"]);
    let _ = std::fs::remove_dir_all(&a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tester_tombstones_the_files_it_created() {
    let mut c = TestCluster::start(3).await;
    let l = c.leader().await;
    let args = surfstore::tester::TesterArgs::try_parse_from([
        "tester",
        c.addrs[l].as_str(),
        "--only",
        "versions",
        "--seed",
        "5",
    ])
    .unwrap();
    let (code, report) =
        surfstore::tester::run_async(&args, surfstore::tester::Reporter::silent()).await;
    let report = report.expect("the tester ran");
    assert_eq!(code, 0, "{}", surfstore::tester::report::summary(&report));
    let cleanup = report.cleanup.clone().expect("cleanup succeeded");
    assert!(cleanup.starts_with("tombstoned the "), "{cleanup}");
    assert!(surfstore::tester::report::summary(&report).contains(&cleanup));
    let m = map(&c, l).await;
    let mine: Vec<_> = m
        .iter()
        .filter(|(n, _)| n.starts_with(&report.tag))
        .collect();
    assert!(mine.len() >= 4, "{m:?}");
    for (name, info) in &mine {
        assert_eq!(info.1, ["0"], "{name} is not a tombstone");
    }
    // A client pointed at the cluster afterwards creates nothing, warns of nothing.
    let d = tmpdir("after-tester");
    let s = run(&c, &d, SMALL).await;
    assert!(s.warnings.is_empty() && s.actions.is_empty(), "{s:?}");
    assert_eq!(files(&d), ["index.txt"]);
    let _ = std::fs::remove_dir_all(&d);
}
