//! The node processes of one scenario: member i runs in namespace
//! `<prefix>-n<i>` as `ip netns exec NS run-server.sh CONFIG i --data-dir
//! DIR/node<i> --fsync never` (the repository's script with
//! `SURFSTORE_BIN` set to this binary, so nothing is rebuilt; without the
//! script, this binary's `server` subcommand, which is what the script
//! execs), with `--snapshot-threshold` as the harness is told (1000 by
//! default). `ip netns exec` and the script both exec, so the PID we spawn is
//! the node's own: the one we signal and whose `/proc/PID/status` we read.
//!
//! Promises:
//! - Only processes spawned here are signalled, by their PID; [`Nodes`]'s
//!   drop stops every one still running (SIGTERM, then SIGKILL after 5 s)
//!   and reaps it.
//! - Each node is its own process group, so a Ctrl-C on the terminal
//!   reaches only the harness, which then stops the nodes in order; and
//!   each gets SIGTERM from the kernel if the harness dies without cleaning
//!   up (`PR_SET_PDEATHSIG`; spawned from the main thread, since the
//!   signal follows the spawning thread).
//! - Default timing (election 150–300 ms, heartbeat 50 ms, tick 10 ms,
//!   peer timeout 1 s); the log is on disk without fsync: the write-ahead
//!   log's code runs, but no test here cuts the power.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::{PartitionError, Result};
use super::net::Names;

/// What starting the nodes needs.
pub struct Launch<'a> {
    pub names: &'a Names,
    pub config: &'a Path,
    /// Where data directories and logs go (`node<i>/`, `node<i>.log`).
    pub dir: &'a Path,
    /// This binary (the node and the inner side are both it).
    pub exe: &'a Path,
    pub nodes: usize,
    /// Their `--snapshot-threshold`.
    pub snapshot_threshold: u64,
}

struct NodeProc {
    id: usize,
    child: Child,
    log: PathBuf,
    /// Reaped already.
    done: bool,
}

/// The running nodes; dropping stops them.
pub struct Nodes {
    procs: Vec<NodeProc>,
}

/// The repository's `run-server.sh`, when this binary was built from a
/// checkout that still has it.
pub fn run_server_script() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-server.sh");
    p.is_file().then_some(p)
}

/// Makes `cmd` its own process group and ties it to our life.
pub fn detach_from_terminal(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes one async-signal-safe syscall (prctl), touching no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Nodes {
    /// Starts every node and waits (up to 10 s) until each PID is the node
    /// binary itself (the exec chain done).
    pub fn start(l: &Launch) -> Result<Nodes> {
        let mut nodes = Nodes { procs: Vec::new() };
        let script = run_server_script();
        for i in 0..l.nodes {
            let log = l.dir.join(format!("node{i}.log"));
            let file = std::fs::File::create(&log)
                .map_err(|e| PartitionError::io(format!("creating {}", log.display()), e))?;
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &l.names.node(i)]);
            match &script {
                Some(s) => {
                    cmd.arg(s).env("SURFSTORE_BIN", l.exe);
                }
                None => {
                    cmd.arg(l.exe).arg("server");
                }
            }
            cmd.arg(l.config)
                .arg(i.to_string())
                .arg("--data-dir")
                .arg(l.dir.join(format!("node{i}")))
                .args(["--fsync", "never"])
                .arg("--snapshot-threshold")
                .arg(l.snapshot_threshold.to_string())
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .current_dir(l.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(file));
            detach_from_terminal(&mut cmd);
            let child = cmd
                .spawn()
                .map_err(|e| PartitionError::io(format!("starting node {i}"), e))?;
            nodes.procs.push(NodeProc {
                id: i,
                child,
                log,
                done: false,
            });
        }
        let want: String = l
            .exe
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(15).collect())
            .unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0..nodes.procs.len() {
            let pid = nodes.procs[i].child.id();
            loop {
                nodes.check()?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == want {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(PartitionError::check(
                        format!("node {i} (pid {pid}) to exec {want}"),
                        format!("/proc/{pid}/comm = {want}"),
                        format!("{:?}", comm.trim()),
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(nodes)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.child.id()).collect()
    }

    pub fn logs(&self) -> Vec<PathBuf> {
        self.procs.iter().map(|p| p.log.clone()).collect()
    }

    /// `Err` naming the first node that has exited.
    pub fn check(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if p.done {
                continue;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                p.done = true;
                return Err(PartitionError::NodeExited {
                    id: p.id,
                    pid: p.child.id(),
                    status: status.to_string(),
                    log: format!("{}\n{}", p.log.display(), tail(&p.log, 8)),
                });
            }
        }
        Ok(())
    }

    /// Stops every node still running: SIGTERM, up to 5 s to exit, then
    /// SIGKILL. Returns how many were stopped.
    pub fn stop(&mut self) -> usize {
        let mut stopped = 0;
        for p in &mut self.procs {
            if !p.done {
                signal(p.child.id(), libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for p in &mut self.procs {
            if p.done {
                continue;
            }
            loop {
                match p.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            p.done = true;
            stopped += 1;
        }
        stopped
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `sig` to `pid` (a process we spawned and have not reaped).
pub fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; the pid is one of
        // our own unreaped children, so it cannot name another process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The last `n` lines of a log file, indented.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
