//! The rolling-restart number of README "Leadership transfer": the longest
//! gap between two acknowledged writes while all 3 nodes of a cluster are
//! restarted one by one, each stopped and started again, under a steady
//! write load.
//!
//! Each round does it twice on the same cluster, same load:
//! - `SIGTERM`: the way an operator stops a node. A leader hands
//!   leadership to its most up-to-date follower first (`transferLeader`),
//!   lets the calls it took finish, then exits.
//! - `SIGKILL`: the peer in the same run, what a stop costs without the
//!   hand-off: the followers wait out an election timeout (150–300 ms),
//!   hold a pre-vote and an election, and the clients find the new leader.
//!
//! The load: `--clients` (default 4) writers, each a keep-alive XML-RPC
//! connection making sequential `updatefile` calls of new files, following
//! NotLeader hints and moving to the next node when one refuses or drops
//! the connection (5 ms pause after a full round of refusals). A write
//! counts when `updatefile` returns true. The gap is measured over the
//! acknowledgements of all writers together, from the first stop to the
//! last node's restart and catch-up; each node is restarted once it has
//! exited, and the next one stopped once the restarted one has caught up
//! with the leader's commit index and 500 ms have passed.
//!
//!     cargo build --release && cargo run --release --example rolling_restart [-- ROUNDS [CLIENTS]]
//!
//! Nodes: `target/release/surfstore server`, on disk with `--fsync always`
//! (the default), ports 9873–9875, data in a temporary directory removed at
//! the end. Prints per round the longest gap for each way of stopping and
//! their ratio, then the range over the rounds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surfstore::xmlrpc::client::{CallError, Client};
use surfstore::xmlrpc::Value;

const PORTS: [u16; 3] = [9873, 9874, 9875];
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn addr(i: usize) -> String {
    format!("127.0.0.1:{}", PORTS[i])
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/release/examples/rolling_restart -> target/release/surfstore
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("examples dir")
        .join("surfstore");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release` first",
        bin.display()
    );
    bin
}

struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("cluster.txt");
        let mut text = format!("M: {}\n", PORTS.len());
        for i in 0..PORTS.len() {
            text.push_str(&format!("metadata{i}: {}\n", addr(i)));
        }
        std::fs::write(&config, text).unwrap();
        let mut c = Cluster {
            bin: binary(),
            dir: dir.to_owned(),
            config,
            children: (0..PORTS.len()).map(|_| None).collect(),
        };
        for i in 0..PORTS.len() {
            c.spawn(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{i}.log")))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("server")
            .arg(&self.config)
            .arg(i.to_string())
            .arg("--data-dir")
            .arg(self.dir.join(format!("node{i}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting a node");
        self.children[i] = Some(child);
    }

    /// Stops node `i` with `signal` and waits for it to exit.
    fn stop(&mut self, i: usize, signal: &str) {
        let mut child = self.children[i].take().expect("running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
        child.wait().expect("waiting for the node");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("ROLLING_KEEP").is_some() {
            eprintln!("kept {} (ROLLING_KEEP)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn field(v: &Value, name: &str) -> Option<i64> {
    v.as_struct()?.get(name)?.as_i64()
}

/// The leader and its commit index, as the nodes say.
async fn leader_commit(clients: &[Client]) -> Option<(usize, i64)> {
    for (i, c) in clients.iter().enumerate() {
        if let Ok(s) = c.call("surfstore.status", &[]).await {
            let role = s
                .as_struct()
                .and_then(|m| m.get("role"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if role.as_deref() == Some("leader") {
                return Some((i, field(&s, "commit_index")?));
            }
        }
    }
    None
}

/// Waits until node `i` answers and has applied the leader's commit index.
async fn caught_up(clients: &[Client], i: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "node {i} did not catch up in 30 s"
        );
        if let Some((_, commit)) = leader_commit(clients).await {
            if let Ok(s) = clients[i].call("surfstore.status", &[]).await {
                if field(&s, "applied_index").is_some_and(|a| a >= commit) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One writer: new files, one call at a time, following the leader.
async fn writer(w: usize, id: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Vec<Instant>>>) {
    let clients: Vec<Client> = (0..PORTS.len())
        .map(|i| Client::new(&addr(i), CALL_TIMEOUT))
        .collect();
    let mut at = w % PORTS.len();
    let mut refused_in_a_row = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("rolling-{id}-{n}");
        let params = [
            Value::String(name),
            Value::Int(1),
            Value::Array(vec![Value::String("h".into())]),
        ];
        match clients[at].call("surfstore.updatefile", &params).await {
            Ok(Value::Bool(true)) => {
                acks.lock().unwrap().push(Instant::now());
                refused_in_a_row = 0;
                n += 1;
            }
            Ok(other) => panic!("updatefile of a new file answered {other:?}"),
            Err(CallError::Fault(f)) if f.code == 2 => {
                let hint = f
                    .message
                    .strip_prefix("NotLeader: leader is ")
                    .and_then(|a| {
                        (0..PORTS.len()).find(|&i| a.ends_with(&format!(":{}", PORTS[i])))
                    });
                at = hint.unwrap_or((at + 1) % PORTS.len());
                refused_in_a_row += 1;
            }
            Err(_) => {
                // Unknown outcome (fault 5) or no connection: next node,
                // and a new file name (the old one may have been applied).
                n += 1;
                at = (at + 1) % PORTS.len();
                refused_in_a_row += 1;
            }
        }
        if refused_in_a_row >= PORTS.len() {
            refused_in_a_row = 0;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Restarts every node once, stopping each with `signal`, under load;
/// returns the longest gap between acknowledged writes, and the writes.
async fn rolling(
    cluster: &mut Cluster,
    signal: &str,
    round: usize,
    writers: usize,
) -> (Duration, usize) {
    let status: Vec<Client> = (0..PORTS.len())
        .map(|i| Client::new(&addr(i), Duration::from_millis(500)))
        .collect();
    for i in 0..PORTS.len() {
        caught_up(&status, i).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            // Names new in every run: a file that exists answers false.
            let id = format!("{round}-{signal}-{w}");
            tokio::spawn(writer(w, id, stop.clone(), acks.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    // Each node once: a follower not restarted yet while there is one, else
    // whoever leads (the leader changes as nodes restart, so a round stops
    // both followers and leaders).
    let mut done: Vec<usize> = Vec::new();
    for _ in 0..PORTS.len() {
        let (leader, _) = leader_commit(&status).await.expect("a leader");
        let left: Vec<usize> = (0..PORTS.len()).filter(|i| !done.contains(i)).collect();
        let i = left
            .iter()
            .copied()
            .find(|&i| i != leader)
            .unwrap_or(left[0]);
        cluster.stop(i, signal);
        cluster.spawn(i);
        done.push(i);
        caught_up(&status, i).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut acks = acks.lock().unwrap().clone();
    acks.sort();
    let window: Vec<Instant> = acks
        .into_iter()
        .filter(|&t| t >= started && t <= ended)
        .collect();
    let mut longest = Duration::ZERO;
    let mut prev = started;
    for &t in &window {
        longest = longest.max(t - prev);
        prev = t;
    }
    longest = longest.max(ended - prev);
    (longest, window.len())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let writers: usize = args.next().map_or(4, |a| a.parse().expect("CLIENTS"));
    let dir = std::env::temp_dir().join(format!("surfstore-rolling-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = Cluster::start(&dir);
    let mut term_gaps = Vec::new();
    let mut kill_gaps = Vec::new();
    println!("rolling restart of 3 nodes (--fsync always), {writers} writers; longest gap between acknowledged writes");
    for round in 1..=rounds {
        let (term, term_writes) = rt.block_on(rolling(&mut cluster, "TERM", round, writers));
        let (kill, kill_writes) = rt.block_on(rolling(&mut cluster, "KILL", round, writers));
        println!(
            "round {round}: SIGTERM (hand-off) {:>6.1} ms over {term_writes} writes | SIGKILL (election) {:>6.1} ms over {kill_writes} writes | ratio {:.2}",
            ms(term),
            ms(kill),
            ms(term) / ms(kill)
        );
        term_gaps.push(term);
        kill_gaps.push(kill);
    }
    let range = |v: &[Duration]| {
        let lo = v.iter().min().copied().unwrap_or_default();
        let hi = v.iter().max().copied().unwrap_or_default();
        format!("{:.1}–{:.1} ms", ms(lo), ms(hi))
    };
    println!(
        "over {rounds} rounds: SIGTERM {} (target ≤ 100 ms), SIGKILL {}",
        range(&term_gaps),
        range(&kill_gaps)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
