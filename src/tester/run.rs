//! The runner: checks the cluster is up, runs the selected scenarios one at a
//! time (each in its own task, so a panic is a failure, not a crash of the
//! tester, and with a hard time limit), restores whatever a scenario left
//! crashed, and checks the cluster is healthy at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::error::TesterError;
use super::options::Options;
use super::report::{Failure, Reporter, RunReport, ScenarioReport};
use super::scenarios::{self, Ctx};
use super::{fmt, poll};
use crate::xmlrpc::Value;

/// Runs `selected` against `cluster`. `Err` only when the cluster cannot be
/// reached at all; scenario failures are in the report.
pub async fn run(
    cluster: Cluster,
    opts: Options,
    selected: Vec<&'static str>,
    connect_timeout: Duration,
    reporter: Reporter,
) -> Result<RunReport, TesterError> {
    let started = Instant::now();
    let m = cluster.len();
    // Every node must answer before anything is judged.
    poll::until(
        "every node to answer ping()",
        "True from every member",
        connect_timeout,
        || async {
            let answers = cluster.call_all("ping", &[]).await;
            let silent: Vec<String> = answers
                .iter()
                .enumerate()
                .filter(|(_, r)| !matches!(r, Ok(Value::Bool(true))))
                .map(|(i, r)| format!("{}: {}", cluster.name(i), fmt::outcome(r)))
                .collect();
            if silent.is_empty() {
                Ok(())
            } else {
                Err(silent.join("; "))
            }
        },
    )
    .await
    .map_err(|e| TesterError::Discovery(e.to_string()))?;

    let tag = run_tag(opts.seed);
    reporter.line(&format!(
        "surfstore tester: {m} node{} ({}), seed {}, files prefixed {tag}",
        if m == 1 { "" } else { "s" },
        cluster.members().join(", "),
        opts.seed
    ));
    // A node left crashed (say, by a tester killed with SIGKILL) would fail
    // every scenario for the wrong reason: bring it back first.
    let crashed: Vec<usize> = cluster
        .call_all("isCrashed", &[])
        .await
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Ok(Value::Bool(true))))
        .map(|(i, _)| i)
        .collect();
    for &i in &crashed {
        cluster.restore(i).await?;
    }
    if !crashed.is_empty() {
        reporter.line(&format!(
            "  restored {} (crashed before the tester started)",
            cluster.names(&crashed)
        ));
    }
    // Some leader, so the first scenario does not time its wait from a cold
    // start. How many leaders there are is for `basics` to judge.
    poll::until(
        "a node to answer isLeader() True",
        "a leader",
        connect_timeout,
        || async {
            if cluster.leaders().await.is_empty() {
                Err("no node says it is leader".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await
    .map_err(|e| TesterError::Discovery(e.to_string()))?;

    let ctx = Arc::new(Ctx::new(cluster.clone(), opts.clone(), tag.clone()));
    let all = scenarios::all();
    let chosen: Vec<_> = all.iter().filter(|s| selected.contains(&s.name)).collect();
    let mut reports = Vec::new();
    for (k, scenario) in chosen.iter().enumerate() {
        ctx.take_notes();
        ctx.step("starting");
        let t = Instant::now();
        let limit = scenario_limit(&opts);
        let mut task = tokio::spawn((scenario.run)(ctx.clone()));
        let step = ctx.step_text();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let result = loop {
            tokio::select! {
                joined = &mut task => break match joined {
                    Ok(r) => r,
                    Err(e) => Err(TesterError::Panicked(panic_text(e))),
                },
                _ = tick.tick() => {
                    if t.elapsed() > limit {
                        task.abort();
                        break Err(TesterError::Timeout {
                            what: format!("scenario {}", scenario.name),
                            bound: limit,
                            expected: "the scenario finishes".into(),
                            observed: format!("still at: {}", step.lock().expect("step lock")),
                        });
                    }
                    let text = step.lock().expect("step lock").clone();
                    reporter.progress(k + 1, chosen.len(), scenario.name, t.elapsed(), &text);
                }
            }
        };
        let mut notes = ctx.take_notes();
        // Whatever happened, nothing the scenario crashed stays crashed.
        let leftover = cluster.crashed_by_tester();
        let mut result = result;
        match cluster.restore_all(opts.leader_bound).await {
            Ok(_) if leftover.is_empty() => {}
            Ok(nodes) => notes.push(format!(
                "restored {} after the scenario",
                cluster.names(&nodes)
            )),
            Err(e) => {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        let report = ScenarioReport {
            name: scenario.name,
            passed: result.is_ok(),
            took: t.elapsed(),
            notes,
            failure: result.as_ref().err().map(Failure::from),
        };
        reporter.finished(&report);
        reports.push(report);
    }

    let health = health(&cluster, &opts).await;
    Ok(RunReport {
        members: cluster.members().to_vec(),
        seed: opts.seed,
        tag,
        scenarios: reports,
        took: started.elapsed(),
        health,
    })
}

/// The longest any scenario may run before it is stopped and failed.
fn scenario_limit(opts: &Options) -> Duration {
    opts.duration
        + opts.check_budget * (opts.files as u32 + 1)
        + opts.catchup_bound * 4
        + opts.leader_bound * 4
        + Duration::from_secs(30)
}

/// Every node up, none crashed, one leader.
async fn health(cluster: &Cluster, opts: &Options) -> Result<String, String> {
    if let Err(e) = cluster.restore_all(opts.leader_bound).await {
        return Err(e.to_string());
    }
    let crashed: Vec<usize> = cluster
        .call_all("isCrashed", &[])
        .await
        .iter()
        .enumerate()
        .filter(|(_, r)| !matches!(r, Ok(Value::Bool(false))))
        .map(|(i, _)| i)
        .collect();
    if !crashed.is_empty() {
        return Err(format!("crashed or silent: {}", cluster.names(&crashed)));
    }
    match cluster.one_leader(opts.leader_bound * 2).await {
        Ok((l, _)) => Ok(format!(
            "all {} nodes up, leader {}",
            cluster.len(),
            cluster.name(l)
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A prefix unique to this run: the seed and the start time.
fn run_tag(seed: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "tester-{seed}-{:x}",
        (nanos as u64) ^ u64::from(std::process::id())
    )
}

fn panic_text(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "cancelled".into();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}
