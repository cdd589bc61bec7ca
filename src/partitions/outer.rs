//! The harness's root side (`surfstore partitions`): checks the machine,
//! builds the namespaces, and for each scenario starts five fresh nodes,
//! runs the inner side in the clients' namespace, stops the nodes and reads
//! the scenario's `result.json`; then prints the summary and removes
//! everything it made.
//!
//! Cleanup is by ownership: the nodes and the inner process are held by
//! guards that stop them (by PID) when dropped, and [`Net`] deletes the
//! namespaces when dropped, after them; so a `?`, a panic, or a signal
//! (SIGINT, SIGTERM and SIGHUP are caught, the inner side is stopped, and
//! the loop unwinds) all end the same way. Only SIGKILL of this process
//! escapes; then the nodes still get SIGTERM from the kernel
//! (`PR_SET_PDEATHSIG`) and `ip netns list | grep surfpart-` names the
//! namespaces to delete by hand. The run directory (config, data, node
//! logs) is removed after a passing run and kept, with its path printed,
//! after a failure or with `--keep-dir`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{PartitionError, Result};
use super::net::{self, Names, Net};
use super::nodes::{self, Launch, Nodes};
use super::report::{range_ms, Report};
use super::scenarios::Scenario;
use super::{PartitionsArgs, NODES};

/// Exit code when this machine cannot run the harness.
pub const EXIT_UNAVAILABLE: i32 = 3;

/// The inner process; stopped (SIGTERM, then SIGKILL) when dropped.
struct InnerGuard(Child);

impl Drop for InnerGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            nodes::signal(self.0.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while let Ok(None) = self.0.try_wait() {
                if Instant::now() >= deadline {
                    let _ = self.0.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.0.wait();
        }
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP from now on; the number of the last
/// one caught (0: none) is in the returned cell.
fn catch_signals() -> Result<Arc<AtomicI32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let caught = Arc::new(AtomicI32::new(0));
    let cell = caught.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            let kinds = [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ];
            let mut streams = Vec::new();
            for k in kinds {
                match signal(k) {
                    Ok(s) => streams.push((k.as_raw_value(), s)),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
            let _ = ready_tx.send(Ok(()));
            let [(a, sa), (b, sb), (c, sc)] = &mut streams[..] else {
                return;
            };
            loop {
                let got = tokio::select! {
                    _ = sa.recv() => *a,
                    _ = sb.recv() => *b,
                    _ = sc.recv() => *c,
                };
                cell.store(got, Ordering::SeqCst);
            }
        });
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(caught),
        Ok(Err(e)) => Err(PartitionError::Usage(format!("cannot catch signals: {e}"))),
        Err(_) => Err(PartitionError::Usage("the signal thread ended".into())),
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// Runs the selected scenarios; the exit code.
pub fn run(args: &PartitionsArgs, scenarios: Vec<&'static Scenario>, seed: u64) -> i32 {
    let names = Names::for_pid(std::process::id());
    if let Err(why) = net::preflight(&names) {
        println!("partitions: skipped: {why}");
        return EXIT_UNAVAILABLE;
    }
    warn_about_stale_namespaces();
    let signals = match catch_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("partitions: {e}");
            return 2;
        }
    };
    let dir = std::env::temp_dir().join(&names.prefix);
    let mut keep = args.keep_dir;
    let code = match run_all(args, &scenarios, seed, &names, &dir, &signals) {
        Ok(reports) => {
            print_summary(&reports);
            let failed = reports.iter().filter(|r| !r.passed()).count();
            if failed > 0 {
                keep = true;
                println!("partitions: {failed} of {} scenarios FAILED", reports.len());
                1
            } else {
                println!("partitions: all {} scenarios passed", reports.len());
                0
            }
        }
        Err(PartitionError::Interrupted(sig)) => {
            println!("partitions: stopped by {sig}; everything it started was stopped and removed");
            130
        }
        Err(e) => {
            keep = true;
            println!("partitions: {e}");
            2
        }
    };
    // Net and the nodes are gone by now (dropped in run_all): check.
    match net::namespaces_with(&format!("{}-", names.prefix)) {
        Ok(left) if left.is_empty() => {
            println!("partitions: no namespace named {}-* remains", names.prefix)
        }
        Ok(left) => println!("partitions: namespaces left behind: {}", left.join(" ")),
        Err(e) => println!("partitions: cannot list namespaces: {e}"),
    }
    if keep {
        println!("partitions: run directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

/// Names the namespaces a killed run (SIGKILL: its PID is gone) left
/// behind; deleting them is left to the operator, who may want a look.
fn warn_about_stale_namespaces() {
    let Ok(all) = net::namespaces_with(net::PREFIX) else {
        return;
    };
    let stale: Vec<String> = all
        .into_iter()
        .filter(|ns| {
            let pid = ns[net::PREFIX.len()..].split('-').next().unwrap_or("");
            pid.parse::<u32>()
                .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
        })
        .collect();
    if !stale.is_empty() {
        println!(
            "partitions: namespaces of a run that was killed remain (delete them with `ip netns delete NAME`): {}",
            stale.join(" ")
        );
    }
}

fn run_all(
    args: &PartitionsArgs,
    scenarios: &[&'static Scenario],
    seed: u64,
    names: &Names,
    dir: &Path,
    signals: &AtomicI32,
) -> Result<Vec<Report>> {
    let exe = std::env::current_exe().map_err(|e| PartitionError::io("finding this binary", e))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| PartitionError::io(format!("creating {}", dir.display()), e))?;
    let config = dir.join("config.txt");
    let mut text = format!("M: {NODES}\n");
    for i in 0..NODES {
        text.push_str(&format!("metadata{i}: {}\n", net::node_addr(i)));
    }
    std::fs::write(&config, text)
        .map_err(|e| PartitionError::io(format!("writing {}", config.display()), e))?;

    let net = Net::create(names.clone(), NODES)?;
    println!(
        "partitions: {NODES} nodes at {}..{} ({}), clients at {} in {}; namespaces {}",
        net::node_addr(0),
        net::node_addr(NODES - 1),
        net::SUBNET,
        net::CLIENT_IP,
        names.client(),
        net.created().join(" ")
    );
    let launcher = match nodes::run_server_script() {
        Some(s) => format!("{} with SURFSTORE_BIN={}", s.display(), exe.display()),
        None => format!("{} server", exe.display()),
    };
    println!(
        "partitions: nodes run as `ip netns exec NS {launcher} CONFIG ID --data-dir DIR --fsync never --snapshot-threshold {}`, default timing; run directory {}; seed {seed}",
        args.snapshot_threshold,
        dir.display()
    );

    let mut reports = Vec::new();
    for (k, s) in scenarios.iter().enumerate() {
        if let Some(sig) = caught(signals) {
            return Err(PartitionError::Interrupted(sig));
        }
        let hold = args.hold(s);
        println!(
            "\n== {} ({}/{}): {}\n   cut held {:.1} s",
            s.name,
            k + 1,
            scenarios.len(),
            s.about,
            hold.as_secs_f64()
        );
        let report = run_one(args, s, hold, seed, names, dir, &config, &exe, signals)?;
        reports.push(report);
    }
    drop(net);
    Ok(reports)
}

fn caught(signals: &AtomicI32) -> Option<String> {
    match signals.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(signal_name(sig)),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    args: &PartitionsArgs,
    s: &'static Scenario,
    hold: Duration,
    seed: u64,
    names: &Names,
    dir: &Path,
    config: &Path,
    exe: &Path,
    signals: &AtomicI32,
) -> Result<Report> {
    let sdir = dir.join(s.name);
    let _ = std::fs::remove_dir_all(&sdir);
    std::fs::create_dir_all(&sdir)
        .map_err(|e| PartitionError::io(format!("creating {}", sdir.display()), e))?;
    let started = Instant::now();
    let mut nodes = Nodes::start(&Launch {
        names,
        config,
        dir: &sdir,
        exe,
        nodes: NODES,
        snapshot_threshold: args.snapshot_threshold,
    })?;
    let pids = nodes.pids();
    println!(
        "   nodes started: pids {} (logs {}/node<i>.log)",
        pids.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
        sdir.display()
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &names.client()])
        .arg(exe)
        .arg("partitions")
        .arg("--inner")
        .arg(s.name)
        .arg("--run-dir")
        .arg(&sdir)
        .arg("--ns-prefix")
        .arg(&names.prefix)
        .arg("--node-pids")
        .arg(
            pids.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
        .arg("--hold-ms")
        .arg(hold.as_millis().to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--clients")
        .arg(args.clients.to_string())
        .arg("--files")
        .arg(args.files.to_string())
        .arg("--rss-bound-mib")
        .arg(args.rss_bound_mib.to_string())
        .stdin(Stdio::null());
    nodes::detach_from_terminal(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| PartitionError::io("starting the inner side", e))?;
    println!(
        "   inner side (workload, cuts, checks): pid {} in {}",
        child.id(),
        names.client()
    );
    let mut inner = InnerGuard(child);
    let deadline = Instant::now() + hold + Duration::from_secs(120);
    let mut failure: Option<String> = None;
    loop {
        if let Some(sig) = caught(signals) {
            drop(inner);
            nodes.stop();
            return Err(PartitionError::Interrupted(sig));
        }
        match inner.0.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => {
                failure = Some(format!("cannot wait for the inner side: {e}"));
                break;
            }
        }
        if let Err(e) = nodes.check() {
            failure = Some(e.to_string());
            break;
        }
        if Instant::now() >= deadline {
            failure = Some(format!(
                "the scenario did not finish within {:.0} s",
                (hold + Duration::from_secs(120)).as_secs_f64()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(inner);
    nodes.stop();
    let logs = nodes.logs();
    drop(nodes);
    let mut report = Report::read(&sdir.join("result.json")).unwrap_or_else(|| Report {
        scenario: s.name.to_owned(),
        failure: Some("the inner side wrote no result".into()),
        elapsed: started.elapsed(),
        ..Report::default()
    });
    if let Some(f) = failure {
        println!("  verdict: FAIL ({}): {f}", s.name);
        report.failure = Some(f);
    }
    if !report.passed() {
        for log in logs {
            println!("   {}:\n{}", log.display(), nodes::tail(&log, 6));
        }
    }
    Ok(report)
}

/// One line per scenario.
fn print_summary(reports: &[Report]) {
    println!(
        "\n{:<21} {:<7} {:>13} {:>14} {:>16} {:>11} {:>17} {:>9} {:>7}",
        "scenario",
        "verdict",
        "acked (cut)",
        "leader changes",
        "step-down",
        "new leader",
        "max RSS growth",
        "converge",
        "time"
    );
    for r in reports {
        let changes = format!(
            "{} ({} after)",
            r.leader_changes, r.leader_changes_after_heal
        );
        let rss = match r.max_rss_growth_kb() {
            Some(g) => format!("{g:+} kB/{:.0} s", r.rss_over.as_secs_f64()),
            None => "-".into(),
        };
        println!(
            "{:<21} {:<7} {:>13} {:>14} {:>16} {:>11} {:>17} {:>9} {:>6.1}s",
            r.scenario,
            if r.passed() { "PASS" } else { "FAIL" },
            format!("{} ({})", r.acked_total, r.acked_during_cuts),
            changes,
            r.step_down_text(),
            range_ms(&r.new_leader_ms),
            rss,
            r.converge_ms.map_or("-".into(), |c| format!("{c:.0} ms")),
            r.elapsed.as_secs_f64()
        );
    }
}

/// Where a run keeps its files (for the test's messages).
pub fn run_dir(pid: u32) -> PathBuf {
    std::env::temp_dir().join(Names::for_pid(pid).prefix)
}
