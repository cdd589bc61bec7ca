//! Every node's VmRSS (`/proc/PID/status`, read on a blocking thread) at
//! the start and at the end of a cut, and the bound on its growth.

use super::Run;
use crate::bench::procfs;
use crate::partitions::error::{PartitionError, Result};
use crate::partitions::report::Rss;

impl Run {
    async fn read_rss(&self) -> Result<Vec<u64>> {
        let pids = self.pids.clone();
        tokio::task::spawn_blocking(move || {
            pids.iter()
                .map(|&p| procfs::vm_rss_kb(p))
                .collect::<std::result::Result<Vec<u64>, _>>()
        })
        .await
        .map_err(|e| PartitionError::Usage(format!("the /proc task failed: {e}")))?
        .map_err(|e| PartitionError::Usage(e.to_string()))
    }

    /// Reads every node's VmRSS at the start of a cut.
    pub async fn rss_start(&mut self) -> Result<()> {
        let kb = self.read_rss().await?;
        self.rss_start = Some((self.t(), kb));
        Ok(())
    }

    /// Reads every node's VmRSS at the end of the cut and fails if one grew
    /// by more than the bound.
    pub async fn rss_end(&mut self) -> Result<()> {
        let Some((t0, before)) = self.rss_start.take() else {
            return Ok(());
        };
        let after = self.read_rss().await?;
        let over = self.t().saturating_sub(t0);
        self.report.rss = (0..self.n)
            .map(|i| Rss {
                node: i,
                before_kb: before[i],
                after_kb: after[i],
            })
            .collect();
        self.report.rss_over = over;
        let text: Vec<String> = self
            .report
            .rss
            .iter()
            .map(|r| {
                format!(
                    "n{} {} -> {} ({:+})",
                    r.node,
                    r.before_kb,
                    r.after_kb,
                    r.growth_kb()
                )
            })
            .collect();
        self.say(format!(
            "VmRSS kB over the {:.1} s cut: {}",
            over.as_secs_f64(),
            text.join(", ")
        ));
        if let Some(r) = self
            .report
            .rss
            .iter()
            .find(|r| r.growth_kb() > self.rss_bound_kb as i64)
        {
            return Err(PartitionError::check(
                format!(
                    "node {}'s VmRSS (pid {}) over the {:.1} s cut",
                    r.node,
                    self.pids[r.node],
                    over.as_secs_f64()
                ),
                format!(
                    "growth below {} kB: what a node holds must not grow with the length of a partition",
                    self.rss_bound_kb
                ),
                format!("{} kB -> {} kB ({:+} kB)", r.before_kb, r.after_kb, r.growth_kb()),
            ));
        }
        Ok(())
    }
}
