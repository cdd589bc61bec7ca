//! The network-partition harness (`surfstore partitions`, `src/partitions/`)
//! end to end: five real nodes in network namespaces, cuts made with
//! nftables, the tester's linearizability workload through them.
//!
//! - `short_form_passes_every_scenario`: the short form of every scenario
//!   must pass (its assertions are the harness's: step-down within 2
//!   election timeouts, no leader or term change when a cut-off follower
//!   returns or while the leader keeps its majority, convergence after the
//!   heal, no acknowledged write lost, a linearizable history, bounded
//!   memory), and afterwards no namespace `surfpart-<pid>-*` and none of
//!   its node processes may remain.
//! - `sigterm_mid_cut_removes_everything`: SIGTERM while a cut is in place;
//!   the harness must exit 130 having stopped every process and deleted
//!   every namespace it made.
//!
//! Needs root, `ip netns` and nftables; installs nftables with apt-get when
//! `nft` is missing. Elsewhere each test prints `skipped: <why>` and passes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The two tests must not run at once: each starts five nodes and a workload
/// on a 2-core machine, and their timing assertions would feel it.
static SERIAL: Mutex<()> = Mutex::new(());

const BIN: &str = env!("CARGO_BIN_EXE_surfstore");

/// Why this machine cannot run the harness, if it cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root (ip netns and nftables need root)".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "`ip netns list` fails: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Some(format!("no `ip` command (iproute2): {e}")),
    }
    if !has_nft() {
        install_nftables();
    }
    if !has_nft() {
        return Some(
            "nftables is not installed and `apt-get install -y nftables` did not install it".into(),
        );
    }
    None
}

fn has_nft() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `apt-get install -y nftables`, after `apt-get update` if the first try fails.
fn install_nftables() {
    eprintln!("nft is missing: installing nftables with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "nftables"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdout(Stdio::null())
            .status();
        install();
    }
}

/// A running harness: its output lines arrive on `lines` (and are echoed).
struct Harness {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Harness {
    fn start(args: &[&str]) -> Harness {
        let mut child = Command::new(BIN)
            .arg("partitions")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("surfstore partitions starts");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Harness {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads output until a line contains `needle`; panics after `bound`.
    fn wait_for_line(&mut self, needle: &str, bound: Duration) -> String {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    self.stop();
                    panic!("no line containing {needle:?} within {bound:?}");
                }
            }
        }
    }

    /// Waits for the harness to exit (stopping it after `bound`); its exit
    /// code and every output line.
    fn finish(&mut self, bound: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + bound;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The reader thread ends at EOF; take what is left.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return (status.code(), self.seen.clone());
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!("surfstore partitions did not finish within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, so the harness cleans up, then waits for it.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Namespaces of run `pid` still present.
fn namespaces_left(pid: u32) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let prefix = format!("surfpart-{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// PIDs printed on `nodes started: pids …` and `inner side …: pid …` lines.
fn pids_started(lines: &[String]) -> Vec<u32> {
    let mut pids = Vec::new();
    for l in lines {
        if let Some(rest) = l.split("nodes started: pids ").nth(1) {
            let list = rest.split_whitespace().next().unwrap_or("");
            pids.extend(list.split(',').filter_map(|p| p.parse::<u32>().ok()));
        }
        if let Some(rest) = l.split("inner side (workload, cuts, checks): pid ").nth(1) {
            pids.extend(
                rest.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// Fails if a process the run started is still alive: a live PID whose
/// command line names the run's directory or namespaces (a PID reused by
/// some other process since does not count).
fn assert_processes_gone(harness_pid: u32, pids: &[u32]) {
    let tag = format!("surfpart-{harness_pid}");
    for &p in pids {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(&tag),
            "process {p} of the run is still alive: {cmdline}"
        );
    }
}

/// The scenarios of the default set, in order.
const SCENARIOS: [&str; 7] = [
    "leader-isolated",
    "split-3-2",
    "follower-isolated",
    "leader-follower-link",
    "bridge",
    "flapping",
    "majority-moves",
];

#[test]
fn short_form_passes_every_scenario() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = unavailable() {
        println!("skipped: {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let mut h = Harness::start(&[]);
    let pid = h.pid();
    let (code, lines) = h.finish(Duration::from_secs(180));
    let took = started.elapsed();
    eprintln!("short form took {:.1} s", took.as_secs_f64());
    let text = lines.join("\n");
    for name in SCENARIOS {
        assert!(
            text.contains(&format!("verdict: PASS ({name} in")),
            "scenario {name} did not pass; see the output above"
        );
    }
    assert_eq!(code, Some(0), "surfstore partitions exit code");
    assert!(text.contains(&format!("all {} scenarios passed", SCENARIOS.len())));
    assert_eq!(
        namespaces_left(pid),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let pids = pids_started(&lines);
    assert_eq!(
        pids.len(),
        6 * SCENARIOS.len(),
        "5 nodes and an inner side per scenario: {pids:?}"
    );
    assert_processes_gone(pid, &pids);
    assert!(
        !std::env::temp_dir()
            .join(format!("surfpart-{pid}"))
            .exists(),
        "the run directory of a passing run is removed"
    );
}

#[test]
fn sigterm_mid_cut_removes_everything() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = unavailable() {
        println!("skipped: {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let mut h = Harness::start(&["--only", "follower-isolated", "--duration", "60s"]);
    let pid = h.pid();
    h.wait_for_line("cut: node", Duration::from_secs(60));
    assert!(
        !namespaces_left(pid).is_empty(),
        "the namespaces exist while the cut is in place"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let (code, lines) = h.finish(Duration::from_secs(30));
    assert_eq!(code, Some(130), "exit code after SIGTERM");
    assert!(
        lines.iter().any(|l| l.contains("stopped by SIGTERM")),
        "the harness says why it stopped"
    );
    assert_eq!(
        namespaces_left(pid),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let pids = pids_started(&lines);
    assert_eq!(pids.len(), 6, "5 nodes and the inner side: {pids:?}");
    assert_processes_gone(pid, &pids);
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("surfpart-{pid}")));
}
