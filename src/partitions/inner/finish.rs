//! The end of a scenario: the workload stopped, one more read from the
//! leader, then the checks every scenario shares (convergence, no
//! acknowledged write lost, a linearizable history), and the report's
//! numbers, whether the scenario passed or not.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{ms, nanos, Run, CONVERGE_BOUND, RPC_TIMEOUT};
use crate::partitions::error::{PartitionError, Result};
use crate::partitions::report::Report;
use crate::tester::linearizability::history::FileInfo;
use crate::tester::linearizability::{self as lin, Call, FileVerdict, History, Outcome};
use crate::tester::scenarios::workload;
use crate::tester::{fmt, TesterError};
use crate::xmlrpc::Value;

impl Run {
    /// Stops the workload; `Err` if a client saw an answer that breaks the contract.
    async fn stop_workload(&mut self) -> Result<()> {
        if let Some(s) = &self.shared {
            s.stop.store(true, Ordering::Relaxed);
        }
        let mut first = None;
        for task in std::mem::take(&mut self.tasks) {
            match tokio::time::timeout(RPC_TIMEOUT + Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => first = first.or(Some(PartitionError::Tester(e))),
                Ok(Err(e)) => {
                    first = first.or(Some(PartitionError::Tester(TesterError::Panicked(
                        e.to_string(),
                    ))))
                }
                Err(_) => {
                    first = first.or(Some(PartitionError::Timeout {
                        what: "a workload client to stop".into(),
                        bound: RPC_TIMEOUT + Duration::from_secs(5),
                        expected: "its last call answered or timed out".into(),
                        observed: "still running".into(),
                    }))
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Stops the workload, reads the map once more from the leader (into the
    /// history), then checks: every node converges on it, no acknowledged
    /// write is lost, and the history is linearizable.
    pub async fn finish(&mut self) -> Result<()> {
        self.say("stopping the workload");
        self.stop_workload().await?;
        let (leader, _) = self.one_leader(Duration::from_secs(5)).await?;
        let Some(shared) = self.shared.clone() else {
            return Err(PartitionError::Usage("finish before begin".into()));
        };
        shared.stop.store(false, Ordering::Relaxed);
        shared.leader_hint.store(leader, Ordering::Relaxed);
        let read = tokio::time::timeout(
            RPC_TIMEOUT * 2,
            workload::perform(&shared, self.clients, Call::ReadMap),
        )
        .await;
        shared.stop.store(true, Ordering::Relaxed);
        let map = match read {
            Ok(Ok(Some(Outcome::Map(m)))) => m,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(other)) => {
                return Err(PartitionError::check(
                    format!("the final getfileinfomap() on node {leader} after the heal"),
                    "the map",
                    format!("{other:?}"),
                ))
            }
            Err(_) => {
                return Err(PartitionError::Timeout {
                    what: format!("the final getfileinfomap() on node {leader}"),
                    bound: RPC_TIMEOUT * 2,
                    expected: "the map".into(),
                    observed: "no answer".into(),
                })
            }
        };
        let t_stop = self.t();
        self.await_convergence(&map, t_stop).await?;
        let history = self.recorder.history();
        self.check_acknowledged(&history, &map)?;
        self.check_linearizable(history).await
    }

    /// Waits until every node has applied the same commit index and holds
    /// the final map's version of every file (`tester_getversion`).
    async fn await_convergence(
        &mut self,
        map: &BTreeMap<String, FileInfo>,
        from: Duration,
    ) -> Result<()> {
        loop {
            let all = self.statuses().await;
            let mut problems = Vec::new();
            let commits: Vec<Option<(u64, u64)>> = all
                .iter()
                .map(|s| s.as_ref().map(|s| (s.commit_index, s.applied_index)))
                .collect();
            let first = commits.first().copied().flatten();
            let same = commits.iter().all(|c| c.is_some() && *c == first)
                && first.is_some_and(|(c, a)| c == a);
            if !same {
                problems.push(format!(
                    "(commit, applied) per node: {}",
                    commits
                        .iter()
                        .map(|c| c.map_or("?".into(), |(c, a)| format!("({c}, {a})")))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            for f in &self.files {
                let want = map.get(f).map_or(0, |(v, _)| *v);
                let got = self
                    .cluster
                    .call_all("tester_getversion", &[Value::String(f.clone())])
                    .await;
                let versions: Vec<Option<i64>> = got
                    .iter()
                    .map(|r| r.as_ref().ok().and_then(Value::as_i64))
                    .collect();
                if versions.iter().any(|v| *v != Some(want)) {
                    problems.push(format!(
                        "{f}: final map v{want}, tester_getversion per node {}",
                        versions
                            .iter()
                            .map(|v| v.map_or("?".into(), |v| v.to_string()))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
            }
            let took = self.t().saturating_sub(from);
            if problems.is_empty() {
                self.report.converge_ms = Some(ms(took));
                let (c, _) = first.unwrap_or_default();
                let versions: Vec<String> = self
                    .files
                    .iter()
                    .map(|f| format!("{f} v{}", map.get(f).map_or(0, |(v, _)| *v)))
                    .collect();
                self.say(format!(
                    "converged {:.0} ms after the final read: every node committed and applied {c}, and holds {}",
                    ms(took),
                    versions.join(", ")
                ));
                return Ok(());
            }
            if took > CONVERGE_BOUND {
                return Err(PartitionError::Timeout {
                    what: "every node converging after the heal".into(),
                    bound: CONVERGE_BOUND,
                    expected: "the same commit and applied index on every node, and the final map's versions".into(),
                    observed: problems.join("; "),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every `updatefile` answered True is in the final map (versions only
    /// grow, so the file's final version is at least the acknowledged one).
    fn check_acknowledged(
        &self,
        history: &History,
        map: &BTreeMap<String, FileInfo>,
    ) -> Result<()> {
        for op in &history.ops {
            if let (Call::Update { file, version, .. }, Outcome::Updated(true)) =
                (&op.call, &op.outcome)
            {
                let now = map.get(file).map_or(0, |(v, _)| *v);
                if now < *version {
                    return Err(PartitionError::check(
                        format!(
                            "an acknowledged write: {} (answered at +{:.3} s)",
                            op.describe(),
                            op.ret.unwrap_or(0) as f64 / 1e9
                        ),
                        format!(
                            "{} at version {version} or later in the final map",
                            fmt::string(file)
                        ),
                        format!("version {now}: the write was lost"),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn check_linearizable(&mut self, history: History) -> Result<()> {
        self.report.ops = history.len();
        self.report.unknown = history.unknown();
        let files = self.files.clone();
        let budget = Duration::from_secs(30);
        let h = Arc::new(history);
        let hh = h.clone();
        let report = tokio::task::spawn_blocking(move || lin::check_files(&hh, &files, budget))
            .await
            .map_err(|e| PartitionError::Tester(TesterError::Panicked(e.to_string())))?;
        self.say(format!(
            "history: {} calls ({} of unknown outcome, {} refused without effect), checked in {}",
            h.len(),
            h.unknown(),
            h.not_executed(),
            fmt::duration(report.took)
        ));
        for f in &report.files {
            match &f.verdict {
                FileVerdict::Linearizable => {}
                FileVerdict::Illegal(why) => {
                    return Err(TesterError::NotLinearizable {
                        explanation: format!("{why}\ncuts:\n  {}", self.report.cuts.join("\n  ")),
                    }
                    .into())
                }
                FileVerdict::TimedOut => {
                    return Err(TesterError::Undecided {
                        budget,
                        detail: format!(
                            "file {:?}: {} operations ({} of unknown outcome)",
                            f.file, f.ops, f.unknown
                        ),
                    }
                    .into())
                }
            }
        }
        self.say("linearizable, and no acknowledged write lost");
        Ok(())
    }

    /// After the scenario: heal and stop the workload if it failed midway,
    /// and fill in the numbers.
    pub(super) async fn conclude(&mut self, outcome: Result<()>) -> Report {
        if let Err(e) = &outcome {
            self.say(format!("FAILED: {e}"));
            if self.cut.is_some() {
                let _ = self.heal().await;
            }
            let _ = self.stop_workload().await;
        }
        if let Some((_, since)) = self.cut.take() {
            self.cut_windows.push((since, self.t()));
        }
        let history = self.recorder.history();
        let in_cut = |r: u64| {
            self.cut_windows
                .iter()
                .any(|&(a, b)| r >= nanos(a) && r <= nanos(b))
        };
        self.report.acked_total = history
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Updated(true))
            .count();
        self.report.acked_during_cuts = history
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Updated(true))
            .filter(|o| o.ret.is_some_and(in_cut))
            .count();
        if self.report.ops == 0 {
            self.report.ops = history.len();
            self.report.unknown = history.unknown();
        }
        if let Some((_, base)) = &self.baseline {
            let changes = self.monitor.leaders_between(self.baseline_at, None);
            self.report.leader_changes = changes.len();
            self.report.leader_changes_after_heal = self
                .last_heal
                .map_or(0, |h| changes.iter().filter(|l| l.at >= h).count());
            self.report.term_rise = self.monitor.max_term().saturating_sub(base.term);
        }
        let seen: Vec<String> = self
            .monitor
            .leaders()
            .iter()
            .map(|l| format!("n{} t{} +{:.2}s", l.node, l.term, l.at.as_secs_f64()))
            .collect();
        self.say(format!("leaders seen (first seen): {}", seen.join(", ")));
        self.say(format!(
            "writes acknowledged: {} ({} while cut); leader changes: {} ({} after the last heal); term rise {}; {} monitor polls",
            self.report.acked_total,
            self.report.acked_during_cuts,
            self.report.leader_changes,
            self.report.leader_changes_after_heal,
            self.report.term_rise,
            self.monitor.polls()
        ));
        self.report.failure = outcome.err().map(|e| e.to_string());
        self.report.clone()
    }
}
