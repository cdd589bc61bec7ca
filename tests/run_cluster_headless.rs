//! `surfstore cluster CONFIG --headless` as a process: the event log on
//! stdout, real XML-RPC on every configured port, a clean exit 0 on SIGTERM
//! with every port closed; and the start-up errors (a port in use, a bad
//! config, bad timing, no terminal for the dashboard) refused before anything
//! runs, with a message and a non-zero exit.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

const BIN: &str = env!("CARGO_BIN_EXE_surfstore");

/// A private temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "surfstore-run-cluster-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `m` loopback addresses that were free a moment ago.
fn free_addrs(m: usize) -> Vec<String> {
    let probes: Vec<TcpListener> = (0..m)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    probes
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

fn config_text(addrs: &[String]) -> String {
    let mut text = format!("M: {}\n", addrs.len());
    for (i, a) in addrs.iter().enumerate() {
        text.push_str(&format!("metadata{i}: {a}\n"));
    }
    text
}

fn all_free(addrs: &[String]) -> bool {
    addrs.iter().all(|a| TcpListener::bind(a).is_ok())
}

/// A running `surfstore cluster --headless`, killed on drop if still alive.
struct Headless {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Headless {
    fn start(config: &PathBuf) -> Headless {
        let mut child = Command::new(BIN)
            .arg("cluster")
            .arg(config)
            .arg("--headless")
            .arg("--in-memory")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Headless {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stdout lines until one satisfies `pred`; returns it.
    fn wait_line(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {what} within {timeout:?}; stdout so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit (it was asked to) and returns its status.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The rest of stdout, now that it is closed.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {timeout:?} after the signal; stdout:\n{}",
                self.seen.join("\n")
            );
            // An exit is not an event we can await without a pidfd; poll it.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn leader_node(line: &str) -> u64 {
    // "HH:MM:SS.mmm node 2: became leader of term 1"
    line.split_whitespace()
        .nth(2)
        .and_then(|n| n.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("no node id in {line:?}"))
}

#[test]
fn headless_logs_elections_serves_xmlrpc_and_exits_0_on_sigterm() {
    let dir = TempDir::new("headless");
    let addrs = free_addrs(3);
    let config = dir.file("cluster.txt", &config_text(&addrs));
    let mut cluster = Headless::start(&config);

    for (i, a) in addrs.iter().enumerate() {
        cluster.wait_line("a listening line", Duration::from_secs(20), |l| {
            l == format!("node {i} listening on {a} ({a})")
        });
    }
    let election = cluster.wait_line("an election", Duration::from_secs(20), |l| {
        l.contains("election started for term")
    });
    assert!(
        election.as_bytes()[2] == b':' && election.as_bytes()[8] == b'.',
        "timestamped HH:MM:SS.mmm: {election}"
    );
    let elected = cluster.wait_line("a leader", Duration::from_secs(20), |l| {
        l.contains("became leader of term")
    });
    assert!(leader_node(&elected) < 3, "{elected}");

    // Outside clients talk to it as to separate processes. An `updatefile`
    // answered `true` was applied by a leader, which logs the commit.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let clients: Vec<Client> = addrs
            .iter()
            .map(|a| Client::new(a, Duration::from_secs(10)))
            .collect();
        let members = clients[0].call("surfstore.members", &[]).await.unwrap();
        let want: Vec<Value> = addrs.iter().map(|a| Value::String(a.clone())).collect();
        assert_eq!(members, Value::Array(want));
        let params = [
            Value::String("headless.txt".into()),
            Value::Int(1),
            Value::Array(vec![Value::String("h1".into())]),
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        'write: loop {
            for c in &clients {
                if let Ok(v) = c.call("surfstore.updatefile", &params).await {
                    assert_eq!(v, Value::Bool(true));
                    break 'write;
                }
            }
            assert!(Instant::now() < deadline, "no node accepted the write");
            // Between elections no one is leader; the next round asks again.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let committed = cluster.wait_line("the commit", Duration::from_secs(20), |l| {
        l.contains("committed") && l.contains("headless.txt")
    });
    assert!(committed.contains("-> applied"), "{committed}");

    cluster.signal("TERM");
    let status = cluster.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{}",
        cluster.seen.join("\n")
    );
    assert!(
        cluster.seen.iter().any(|l| l.contains("received SIGTERM")),
        "{:?}",
        cluster.seen
    );
    assert!(
        cluster
            .seen
            .last()
            .unwrap()
            .starts_with("stopped 3 node(s)"),
        "{:?}",
        cluster.seen
    );
    assert!(all_free(&addrs), "ports still bound after exit");
}

#[test]
fn sigint_stops_it_cleanly_too() {
    let dir = TempDir::new("sigint");
    let addrs = free_addrs(1);
    let config = dir.file("one.txt", &config_text(&addrs));
    let mut cluster = Headless::start(&config);
    cluster.wait_line("a leader", Duration::from_secs(20), |l| {
        l.contains("became leader of term 1")
    });
    cluster.signal("INT");
    assert_eq!(cluster.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert!(all_free(&addrs));
}

/// Runs `surfstore cluster ARGS` to completion; (success, stderr).
fn run_to_end(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("cluster")
        .args(args)
        .arg("--in-memory")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (status.success(), stderr)
}

#[test]
fn a_port_in_use_is_named_and_nothing_stays_bound() {
    let dir = TempDir::new("inuse");
    let mut addrs = free_addrs(2);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    addrs.push(taken_addr.clone());
    let config = dir.file("busy.txt", &config_text(&addrs));
    for headless in [true, false] {
        let mut args = vec![config.as_os_str()];
        if headless {
            args.push("--headless".as_ref());
        }
        let (ok, err) = run_to_end(&args);
        assert!(!ok, "started on a port in use");
        if headless {
            assert!(
                err.contains(&format!("cannot listen on {taken_addr}")) && err.contains("in use"),
                "{err}"
            );
        } else {
            // Without a terminal the dashboard is refused even earlier.
            assert!(err.contains("--headless"), "{err}");
        }
        assert!(all_free(&addrs[..2]), "the other ports were left bound");
    }
    drop(taken);
}

#[test]
fn config_and_timing_errors_are_refused_before_starting() {
    let dir = TempDir::new("errors");
    let bad = dir.file(
        "bad.txt",
        "M: 2\nmetadata0: 127.0.0.1:1\nmetadata1 127.0.0.1:2\n",
    );
    let (ok, err) = run_to_end(&[bad.as_os_str(), "--headless".as_ref()]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");

    let (ok, err) = run_to_end(&["/nonexistent/cluster.txt".as_ref(), "--headless".as_ref()]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/cluster.txt") && err.contains("cannot read"),
        "{err}"
    );

    let good = dir.file("good.txt", &config_text(&free_addrs(1)));
    let (ok, err) = run_to_end(&[
        good.as_os_str(),
        "--headless".as_ref(),
        "--heartbeat-ms".as_ref(),
        "500".as_ref(),
    ]);
    assert!(!ok);
    assert!(err.contains("timing") && err.contains("heartbeat"), "{err}");
}
