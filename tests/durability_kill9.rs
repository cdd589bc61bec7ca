//! Real processes, real crashes: three `run-server.sh` nodes with data
//! directories under concurrent writers, killed with SIGKILL mid-write and
//! restarted from their directories. Every write a client saw acknowledged
//! (`updatefile` returned true) must be in every node's applied map after the
//! restart. Snapshots are taken every 50 entries, so nodes also restart from
//! snapshot files and catch up through `installSnapshot`. Also: a data
//! directory refuses a different cluster config.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

const BIN: &str = env!("CARGO_BIN_EXE_surfstore");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const M: usize = 3;
/// Small enough that a node killed for 100 writes falls behind the leader's
/// compacted log and must be sent a snapshot.
const SNAPSHOT_EVERY: usize = 50;

/// One cluster run at a time: they share the machine's two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    addrs: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "surfstore-durability-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let listeners: Vec<_> = (0..M)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        drop(listeners);
        let config = dir.join("config.txt");
        let mut text = format!("M: {M}\n");
        for (i, a) in addrs.iter().enumerate() {
            text.push_str(&format!("metadata{i}: {a}\n"));
        }
        std::fs::write(&config, text).unwrap();
        Cluster {
            dir,
            config,
            addrs,
            children: (0..M).map(|_| None).collect(),
        }
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("data/node{i}"))
    }

    /// `run-server.sh CONFIG i --data-dir DIR/data/node<i>`, output appended
    /// to `node<i>.log`.
    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{i}.log")))
            .unwrap();
        let child = Command::new(Path::new(REPO).join("run-server.sh"))
            .arg(&self.config)
            .arg(i.to_string())
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--election-min-ms", "300", "--election-max-ms", "600"])
            // Snapshots and compactions happen between (and during) kills.
            .args(["--snapshot-threshold", &SNAPSHOT_EVERY.to_string()])
            .env("SURFSTORE_BIN", BIN)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// SIGKILL: no shutdown path runs, nothing is flushed.
    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn logs(&self) -> String {
        (0..M)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.join(format!("node{i}.log")))
                    .unwrap_or_default();
                format!("--- node{i}.log ---\n{log}")
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..M {
            self.kill9(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// Writers: each `updatefile`s fresh files (version 1) on whichever node is
/// leader, recording the ones acknowledged with `true`, until `stop`.
async fn writers(
    addrs: Vec<String>,
    n: usize,
    tag: &'static str,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for w in 0..n {
        let clients: Vec<Client> = addrs
            .iter()
            .map(|a| Client::new(a, Duration::from_secs(2)))
            .collect();
        let acked = acked.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut k = 0u64;
            let mut node = w % clients.len();
            while !stop.load(Ordering::Relaxed) {
                let name = format!("{tag}-w{w}-{k}");
                k += 1;
                let hashes = Value::Array(vec![s("h1"), s("h2")]);
                match clients[node]
                    .call("surfstore.updatefile", &[s(&name), Value::Int(1), hashes])
                    .await
                {
                    Ok(Value::Bool(true)) => acked.lock().unwrap().push(name),
                    Ok(other) => panic!("updatefile of a fresh file answered {other:?}"),
                    Err(_) => {
                        // Not the leader, unreachable, or outcome unknown:
                        // none of these is an acknowledgement. Try the next node.
                        node = (node + 1) % clients.len();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Waits until every node's applied map holds every acknowledged file.
async fn all_present(c: &Cluster, acked: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    let clients: Vec<Client> = c
        .addrs
        .iter()
        .map(|a| Client::new(a, Duration::from_secs(2)))
        .collect();
    let mut missing: Vec<(usize, String)> = (0..M)
        .flat_map(|i| acked.iter().map(move |f| (i, f.clone())))
        .collect();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for (i, f) in missing {
            match clients[i]
                .call("surfstore.tester_getversion", &[s(&f)])
                .await
            {
                Ok(Value::Int(1)) => {}
                _ => still.push((i, f)),
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "{} acknowledged writes missing after restart, e.g. {:?}\n{}",
                missing.len(),
                &missing[..missing.len().min(5)],
                c.logs()
            );
        }
        // Followers learn the commit index from the next heartbeat.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn distinct(acked: &[String]) -> usize {
    acked.iter().collect::<HashSet<_>>().len()
}

/// Waits for `n` acknowledged writes (progress is an event the writers make).
async fn wait_for_acks(acked: &Mutex<Vec<String>>, n: usize, c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "no progress\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_every_node_mid_write_loses_no_acknowledged_write() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::new("all");
    for i in 0..M {
        c.start(i);
    }
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writers(
        c.addrs.clone(),
        8,
        "all",
        acked.clone(),
        stop.clone(),
    ));
    wait_for_acks(&acked, 300, &c).await;
    // Kill every node while the writers are still going.
    for i in 0..M {
        c.kill9(i);
    }
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(distinct(&acked), acked.len());
    for i in 0..M {
        c.start(i);
    }
    all_present(&c, &acked, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_killed_repeatedly_while_the_others_serve() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::new("one");
    for i in 0..M {
        c.start(i);
    }
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writers(
        c.addrs.clone(),
        4,
        "one",
        acked.clone(),
        stop.clone(),
    ));
    let mut target = 100;
    for round in 0..4 {
        wait_for_acks(&acked, target, &c).await;
        // Alternate between whatever node and node 0, so leaders die too.
        let victim = round % M;
        c.kill9(victim);
        target = acked.lock().unwrap().len() + 100;
        wait_for_acks(&acked, target, &c).await;
        c.start(victim);
        target = acked.lock().unwrap().len() + 100;
    }
    wait_for_acks(&acked, target, &c).await;
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    all_present(&c, &acked, Duration::from_secs(30)).await;
    // Each victim missed 100 writes while the others compacted every 50.
    let logs: String = (0..M)
        .map(|i| std::fs::read_to_string(c.dir.join(format!("node{i}.log"))).unwrap())
        .collect();
    assert!(
        logs.contains("installed a snapshot from the leader"),
        "a restarted node caught up through installSnapshot"
    );
    assert!(logs.contains("snapshot taken; log compacted"));
}

#[test]
fn a_data_dir_refuses_another_cluster() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let c = Cluster::new("mismatch");
    let dir = c.data_dir(0);
    // Claim the directory for node 0 of this config (a node that cannot
    // reach a quorum still starts and claims it); stop it.
    let mut first = Command::new(BIN)
        .arg("server")
        .arg(&c.config)
        .arg("0")
        .arg("--data-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The node logs its recovery once the directory is claimed.
    let stderr = std::io::BufReader::new(first.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(stderr) {
        let line = line.unwrap();
        let done = line.contains("recovered the write-ahead log");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(dir.join("cluster").exists(), "no claim: {seen:#?}");
    first.kill().unwrap();
    first.wait().unwrap();

    // Another config (a different port for member 2) on the same directory.
    let other = c.dir.join("other.txt");
    let text = std::fs::read_to_string(&c.config).unwrap();
    let changed = text.replace(&c.addrs[2], "127.0.0.1:1");
    std::fs::write(&other, changed).unwrap();
    for (config, id) in [(&other, "0"), (&c.config, "1")] {
        let out = Command::new(BIN)
            .arg("server")
            .arg(config)
            .arg(id)
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "started on a foreign data dir: {err}"
        );
        assert!(err.contains("refusing to mix"), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
}

/// Writes three entries into node 0's log of `c` directly through the store;
/// returns the segment file and where the second record starts.
fn seed_wal(c: &Cluster) -> (PathBuf, u64) {
    use surfstore::node::raft::Entry;
    use surfstore::node::storage::{ClusterMeta, DiskOptions, DiskStore, LogStore};
    let meta = ClusterMeta {
        id: 0,
        members: c.addrs.clone(),
    };
    let (mut store, _) = DiskStore::open(&c.data_dir(0), &meta, DiskOptions::default()).unwrap();
    let entry = |index| Entry {
        term: 1,
        index,
        data: bytes::Bytes::new(),
    };
    store.persist(None, &[entry(1)]).unwrap();
    let second = store.stats().bytes;
    store.persist(None, &[entry(2)]).unwrap();
    store.persist(None, &[entry(3)]).unwrap();
    drop(store);
    let seg = c.data_dir(0).join("wal").join(format!("{:020}.wal", 1));
    assert!(seg.exists());
    (seg, second)
}

/// The log line without its colour escapes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Starts `server CONFIG 0` on node 0's data dir and reads its stderr until
/// it has recovered (then kills it) or exited; (exited ok?, stderr).
fn start_and_read(c: &Cluster) -> (Option<bool>, String) {
    let mut child = Command::new(BIN)
        .arg("server")
        .arg(&c.config)
        .arg("0")
        .arg("--data-dir")
        .arg(c.data_dir(0))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    for line in std::io::BufRead::lines(stderr) {
        let line = strip_ansi(&line.unwrap());
        text.push_str(&line);
        text.push('\n');
        if line.contains("recovered the write-ahead log") {
            child.kill().unwrap();
            child.wait().unwrap();
            return (None, text);
        }
    }
    (Some(child.wait().unwrap().success()), text)
}

#[test]
fn a_torn_tail_is_truncated_with_a_warning_and_corruption_refuses_to_start() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let c = Cluster::new("corrupt");
    let (seg, second) = seed_wal(&c);

    // A partial record at the end: what a crash mid-write leaves.
    let good = std::fs::read(&seg).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(&good[second as usize..second as usize + 11]);
    std::fs::write(&seg, &torn).unwrap();
    let (exited, err) = start_and_read(&c);
    assert_eq!(exited, None, "did not start: {err}");
    assert!(
        err.contains("torn record") && err.contains("truncating"),
        "{err}"
    );
    assert!(err.contains("entries=3"), "{err}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        good,
        "the tail was not cut off"
    );

    // A flipped bit in the second of three records: refused, file and offset named.
    let mut bad = good.clone();
    bad[second as usize + 8] ^= 0x01;
    std::fs::write(&seg, &bad).unwrap();
    let (exited, err) = start_and_read(&c);
    assert_eq!(exited, Some(false), "started on a corrupt log: {err}");
    assert!(err.contains(&seg.display().to_string()), "{err}");
    assert!(err.contains(&format!("byte offset {second}")), "{err}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        bad,
        "a corrupt log was modified"
    );
}
