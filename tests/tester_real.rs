//! The full tester against real clusters, the way a user runs it:
//! `run-tester.sh HOST:PORT` against 5 `run-server.sh` processes, and against
//! one `run-cluster.sh --headless` process. Every scenario must pass and the
//! tester must exit 0 (with nodes compacting their logs every 25 entries, so
//! crashed nodes catch up through snapshots). The scripts exec the binary this test build produced
//! (SURFSTORE_BIN), so no second cargo build starts. Processes are killed by a
//! guard, also when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_surfstore");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const M: usize = 5;
/// Nodes snapshot and compact every 25 entries, so the tester's crash
/// scenarios run over compacted logs and snapshot installs too.
const SNAPSHOT_EVERY: &str = "25";

/// The two tests start 5 nodes each; one at a time keeps a 2-core machine
/// from missing election timeouts.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A scratch directory and the processes started in it; dropping it stops
/// them (SIGTERM, then SIGKILL) and removes the directory.
struct Procs {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Procs {
    fn new(name: &str) -> Procs {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("surfstore-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Procs {
            dir,
            children: Vec::new(),
        }
    }

    /// Writes a config of M free loopback ports; returns its path and addresses.
    fn config(&self) -> (PathBuf, Vec<String>) {
        let listeners: Vec<_> = (0..M)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
            .collect();
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| format!("127.0.0.1:{}", l.local_addr().unwrap().port()))
            .collect();
        drop(listeners);
        let mut text = format!("M: {M}\n\n");
        for (i, a) in addrs.iter().enumerate() {
            text.push_str(&format!("metadata{i}: {a}\n"));
        }
        let path = self.dir.join("config.txt");
        std::fs::write(&path, text).expect("write config");
        (path, addrs)
    }

    /// Starts `script args...` from the repo with its output in `log`.
    fn spawn(&mut self, script: &str, args: &[&str], log: &str) {
        let out = std::fs::File::create(self.dir.join(log)).expect("log file");
        let child = Command::new(Path::new(REPO).join(script))
            .args(args)
            .env("SURFSTORE_BIN", BIN)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        self.children.push(child);
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    s.push_str(&format!("--- {} (tail)\n", p.display()));
                    for line in tail.into_iter().rev() {
                        s.push_str(line);
                        s.push('\n');
                    }
                }
            }
        }
        s
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &self.children {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs run-tester.sh against `addr` and checks every scenario passed.
fn tester_passes(procs: &Procs, addr: &str) {
    let out_path = procs.dir.join("tester.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut tester = Command::new(Path::new(REPO).join("run-tester.sh"))
        .args([addr, "--duration", "5s", "--seed", "42", "--json"])
        .env("SURFSTORE_BIN", BIN)
        .current_dir(&procs.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(std::fs::File::create(procs.dir.join("tester-progress.log")).unwrap())
        .spawn()
        .expect("start run-tester.sh");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = tester.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = tester.kill();
            panic!("the tester did not finish in 180 s\n{}", procs.logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let json = std::fs::read_to_string(&out_path).unwrap();
    let scenarios = json.matches("\"status\":").count();
    let passed = json.matches("\"status\":\"pass\"").count();
    assert!(
        status.success() && scenarios == 11 && passed == 11 && json.contains("\"healthy\":true"),
        "tester exit {status}, {passed} of {scenarios} scenarios passed:\n{json}\n{}",
        procs.logs()
    );
}

#[test]
fn the_tester_passes_five_run_server_processes() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut procs = Procs::new("tester-real");
    let (config, addrs) = procs.config();
    let config = config.to_str().unwrap().to_owned();
    for i in 0..M {
        procs.spawn(
            "run-server.sh",
            &[
                &config,
                &i.to_string(),
                "--snapshot-threshold",
                SNAPSHOT_EVERY,
            ],
            &format!("node{i}.log"),
        );
    }
    tester_passes(&procs, &addrs[2]);
}

#[test]
fn the_tester_passes_run_cluster_headless() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut procs = Procs::new("tester-headless");
    let (config, addrs) = procs.config();
    let config = config.to_str().unwrap().to_owned();
    procs.spawn(
        "run-cluster.sh",
        &[
            &config,
            "--headless",
            "--snapshot-threshold",
            SNAPSHOT_EVERY,
        ],
        "cluster.log",
    );
    tester_passes(&procs, &addrs[0]);
}
