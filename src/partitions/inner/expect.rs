//! The assertions a scenario makes while it runs, read from the history
//! (writes acknowledged), the monitor (leaders and terms seen) or a fresh
//! status of every node; each failure names what was expected and what
//! was observed.

use std::time::Duration;

use super::Run;
use crate::partitions::error::{PartitionError, Result};

impl Run {
    /// Fails unless some write was acknowledged between `from` and now.
    pub fn expect_progress(&self, from: Duration, what: &str) -> Result<usize> {
        let k = self.acked(from, None);
        self.say(format!(
            "{k} writes acknowledged since +{:.3} s",
            from.as_secs_f64()
        ));
        if k == 0 {
            return Err(PartitionError::check(
                what,
                "some updatefile answered True",
                format!(
                    "none between +{:.3} s and +{:.3} s",
                    from.as_secs_f64(),
                    self.t().as_secs_f64()
                ),
            ));
        }
        Ok(k)
    }

    /// Fails if a leader was first seen, or a node entered a term above
    /// `term`, at or after `since`.
    pub fn expect_no_disruption(&self, since: Duration, term: u64, what: &str) -> Result<()> {
        let leaders = self.monitor.leaders_between(since, None);
        let raised: Vec<_> = self
            .monitor
            .term_changes_since(since)
            .into_iter()
            .filter(|t| t.2 > term)
            .collect();
        if leaders.is_empty() && raised.is_empty() {
            return Ok(());
        }
        let mut observed = Vec::new();
        for l in &leaders {
            observed.push(format!(
                "node {} led term {} (first seen +{:.3} s)",
                l.node,
                l.term,
                l.at.as_secs_f64()
            ));
        }
        for (at, node, t) in &raised {
            observed.push(format!(
                "node {node} entered term {t} at +{:.3} s",
                at.as_secs_f64()
            ));
        }
        for (at, e) in self.monitor.events_since(since) {
            observed.push(format!("  +{:.3} s {e}", at.as_secs_f64()));
        }
        Err(PartitionError::check(
            what,
            format!(
                "no new leader and no term above {term} since +{:.3} s",
                since.as_secs_f64()
            ),
            observed.join("\n      "),
        ))
    }

    /// Fails unless every node in `nodes` is in `term` now.
    pub async fn expect_terms(&self, nodes: &[usize], term: u64, what: &str) -> Result<()> {
        let all = self.statuses().await;
        let wrong: Vec<String> = nodes
            .iter()
            .filter(|&&i| all[i].as_ref().is_none_or(|s| s.term != term))
            .map(|&i| match &all[i] {
                Some(s) => format!("node {i} is in term {} ({})", s.term, s.role),
                None => format!("node {i} did not answer status"),
            })
            .collect();
        if wrong.is_empty() {
            let roles: Vec<String> = nodes
                .iter()
                .filter_map(|&i| {
                    all[i]
                        .as_ref()
                        .map(|s| format!("node {i} {} t{}", s.role, s.term))
                })
                .collect();
            self.say(format!("terms unchanged: {}", roles.join(", ")));
            return Ok(());
        }
        Err(PartitionError::check(
            what,
            format!("still term {term}"),
            wrong.join("; "),
        ))
    }
}
