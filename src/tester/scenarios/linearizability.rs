//! `linearizability`: `--clients` clients run the random read-modify-write
//! workload on `--files` files for `--duration`, while the nemesis crashes
//! and restores nodes (a minority at a time, the leader included). Then
//! everything is restored, one more read is taken from the leader (so a
//! write lost in the chaos shows), and the history is checked per file by
//! the Wing–Gong/Porcupine search. A failure prints the offending sub-history
//! and the nemesis' actions.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::nemesis;
use super::workload::{self, Shared};
use super::Ctx;
use crate::tester::error::{Result, TesterError};
use crate::tester::fmt;
use crate::tester::linearizability::{self as lin, Call, FileVerdict, Outcome, Recorder};

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = ctx.cluster.clone();
    let opts = ctx.opts.clone();
    let l = ctx.leader().await?;
    let files: Vec<String> = (0..opts.files.max(1))
        .map(|i| ctx.file(&format!("lin-{i}")))
        .collect();
    let recorder = Arc::new(Recorder::new());
    let shared = Arc::new(Shared {
        cluster: c.clone(),
        recorder: recorder.clone(),
        files: files.clone(),
        leader_hint: AtomicUsize::new(l),
        stop: AtomicBool::new(false),
        think: opts.think,
    });

    ctx.step(format!(
        "{} clients on {} files for {}, nemesis every ~{}",
        opts.clients,
        files.len(),
        fmt::duration(opts.duration),
        fmt::duration(opts.nemesis_interval)
    ));
    let clients: Vec<_> = (0..opts.clients.max(1))
        .map(|id| {
            let rng = ctx.rng(&format!("client-{id}"));
            tokio::spawn(workload::client(shared.clone(), id, rng))
        })
        .collect();
    let nemesis_stop = Arc::new(AtomicBool::new(false));
    let nemesis = tokio::spawn(nemesis::run(
        c.clone(),
        recorder.clone(),
        opts.nemesis_interval,
        ctx.rng("nemesis"),
        nemesis_stop.clone(),
    ));

    // Aborts the tasks if this scenario is cancelled or fails early.
    struct Stop(Arc<Shared>, Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.stop.store(true, Ordering::Relaxed);
            self.1.store(true, Ordering::Relaxed);
        }
    }
    let stop = Stop(shared.clone(), nemesis_stop.clone());

    tokio::time::sleep(opts.duration).await;
    nemesis_stop.store(true, Ordering::Relaxed);
    ctx.step("stopping the nemesis and restoring");
    let log = nemesis
        .await
        .map_err(|e| TesterError::Panicked(e.to_string()))??;
    shared.stop.store(true, Ordering::Relaxed);
    ctx.step("waiting for the clients to finish");
    let mut violation = None;
    for task in clients {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => violation = violation.or(Some(e)),
            Err(e) => violation = violation.or(Some(TesterError::Panicked(e.to_string()))),
        }
    }
    drop(stop);
    if let Some(e) = violation {
        return Err(e);
    }

    // One last read, after everything is back: a lost write shows here.
    ctx.step("final read");
    let final_leader = ctx.leader().await?;
    shared.stop.store(false, Ordering::Relaxed);
    shared.leader_hint.store(final_leader, Ordering::Relaxed);
    let final_read = tokio::time::timeout(
        opts.leader_bound + c.rpc_timeout(),
        workload::perform(&shared, opts.clients, Call::ReadMap),
    )
    .await;
    shared.stop.store(true, Ordering::Relaxed);
    match final_read {
        Ok(Ok(Some(Outcome::Map(_)))) => {}
        Ok(Err(e)) => return Err(e),
        Ok(Ok(other)) => {
            return Err(TesterError::check(
                "the final surfstore.getfileinfomap() after every node was restored",
                "the map",
                format!("{other:?}"),
            ))
        }
        Err(_) => {
            return Err(TesterError::Timeout {
                what: "the final surfstore.getfileinfomap()".into(),
                bound: opts.leader_bound + c.rpc_timeout(),
                expected: "the map".into(),
                observed: "no answer".into(),
            })
        }
    }

    let history = recorder.history();
    let updates = history
        .ops
        .iter()
        .filter(|o| matches!(o.call, Call::Update { .. }))
        .count();
    let wins = history
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Updated(true))
        .count();
    let crashes = log.iter().filter(|(_, a)| a.starts_with("crash")).count();
    ctx.note(format!(
        "{} calls ({} updates, {wins} True), {} unknown, {} refused without effect; nemesis: {crashes} crashes",
        history.len(),
        updates,
        history.unknown(),
        history.not_executed()
    ));
    if wins == 0 {
        return Err(TesterError::check(
            format!(
                "{} clients' updatefile calls over {}",
                opts.clients,
                fmt::duration(opts.duration)
            ),
            "some updates succeed",
            format!("none of {updates} returned True"),
        ));
    }

    ctx.step(format!("checking {} operations", history.len()));
    let budget = opts.check_budget;
    let checked_files = files.clone();
    let history = Arc::new(history);
    let h = history.clone();
    let report = tokio::task::spawn_blocking(move || lin::check_files(&h, &checked_files, budget))
        .await
        .map_err(|e| TesterError::Panicked(e.to_string()))?;
    let per_file: usize = report.files.iter().map(|f| f.ops).sum();
    ctx.note(format!(
        "checked {per_file} per-file operations in {} ({:.0} ops/s)",
        fmt::duration(report.took),
        report.ops_per_second()
    ));
    let nemesis_text = || {
        let mut s = String::from("nemesis actions:");
        for (t, action) in &log {
            s.push_str(&format!("\n  [{t:>10.6} s] {action}"));
        }
        s
    };
    for f in &report.files {
        match &f.verdict {
            FileVerdict::Linearizable => {}
            FileVerdict::Illegal(why) => {
                return Err(TesterError::NotLinearizable {
                    explanation: format!("{why}\n{}", nemesis_text()),
                })
            }
            FileVerdict::TimedOut => {
                return Err(TesterError::Undecided {
                    budget,
                    detail: format!(
                        "file {:?}: {} operations ({} of unknown outcome); rerun with a shorter --duration, fewer --clients or more --files",
                        f.file, f.ops, f.unknown
                    ),
                })
            }
        }
    }
    Ok(())
}
