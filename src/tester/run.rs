//! The runner: checks the cluster is up, runs the selected scenarios one at a
//! time (each in its own task, so a panic is a failure, not a crash of the
//! tester, and with a hard time limit), restores whatever a scenario left
//! crashed, checks the cluster is healthy at the end, and tombstones the
//! files the run created (so sync clients of the cluster see deletes, not
//! the tester's hash lists).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::error::TesterError;
use super::linearizability::history::parse_map;
use super::options::Options;
use super::report::{Failure, Reporter, RunReport, ScenarioReport};
use super::scenarios::{self, Ctx};
use super::{fmt, poll};
use crate::xmlrpc::Value;

/// Runs `selected` against `cluster`, naming every file with `tag` (see
/// [`run_tag`]). `Err` only when the cluster cannot be reached at all;
/// scenario failures are in the report.
pub async fn run(
    cluster: Cluster,
    opts: Options,
    selected: Vec<&'static str>,
    connect_timeout: Duration,
    reporter: Reporter,
    tag: String,
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
    let cleanup = tombstone_run_files(&cluster, &tag, opts.leader_bound * 2).await;
    Ok(RunReport {
        members: cluster.members().to_vec(),
        seed: opts.seed,
        tag,
        scenarios: reports,
        took: started.elapsed(),
        health,
        cleanup,
    })
}

/// Tombstones (`updatefile(name, version+1, ["0"])`) every live file whose
/// name starts with `{tag}-`, the files this run created, so a sync client
/// pointed at the cluster afterwards deletes them rather than meeting hash
/// lists that name no blocks. Best effort: one pass on the leader found
/// within `bound`; `Ok` says how many were tombstoned, `Err` what was not.
pub async fn tombstone_run_files(
    cluster: &Cluster,
    tag: &str,
    bound: Duration,
) -> Result<String, String> {
    let (l, _) = cluster
        .one_leader(bound)
        .await
        .map_err(|e| format!("no leader to tombstone on: {e}"))?;
    let answer = cluster.call(l, "getfileinfomap", &[]).await;
    let map = answer.as_ref().ok().and_then(parse_map).ok_or_else(|| {
        format!(
            "getfileinfomap on {}: {}",
            cluster.name(l),
            fmt::outcome(&answer)
        )
    })?;
    let tombstone = vec![Value::String("0".into())];
    let prefix = format!("{tag}-");
    let mut done = 0usize;
    let mut failed = Vec::new();
    for (name, (version, hashes)) in map {
        if !name.starts_with(&prefix) || hashes == tombstone {
            continue;
        }
        let params = scenarios::update_params(&name, version + 1, &tombstone);
        match cluster.call(l, "updatefile", &params).await {
            Ok(Value::Bool(true)) => done += 1,
            other => failed.push(format!("{name:?} ({})", fmt::outcome(&other))),
        }
    }
    let files = |n: usize| format!("{n} file{}", if n == 1 { "" } else { "s" });
    if failed.is_empty() {
        Ok(format!(
            "tombstoned the {} this run created ({prefix}*)",
            files(done)
        ))
    } else {
        Err(format!(
            "tombstoned {} of {} this run created ({prefix}*); not: {}",
            done,
            files(done + failed.len()),
            failed.join(", ")
        ))
    }
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
pub fn run_tag(seed: u64) -> String {
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
