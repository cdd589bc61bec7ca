//! What one scenario measured and decided: written by the inner side as
//! `result.json` in the scenario's directory, read back by the outer side
//! for the summary table. Every number says what it counts.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value as Json};

/// One node's resident memory over one cut.
#[derive(Clone, Debug, PartialEq)]
pub struct Rss {
    pub node: usize,
    /// VmRSS at the start and at the end of the cut, in kB.
    pub before_kb: u64,
    pub after_kb: u64,
}

impl Rss {
    pub fn growth_kb(&self) -> i64 {
        self.after_kb as i64 - self.before_kb as i64
    }
}

/// A scenario's numbers and verdict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub scenario: String,
    /// `+1.204 s node 2 | nodes 0,1,3,4`, one per cut applied (heals included).
    pub cuts: Vec<String>,
    /// `updatefile` calls answered True, in the whole run.
    pub acked_total: usize,
    /// Of which answered while a cut was in place.
    pub acked_during_cuts: usize,
    /// Leaders first seen after the baseline leader (each a new (node, term)).
    pub leader_changes: usize,
    /// Of which first seen after the last heal.
    pub leader_changes_after_heal: usize,
    /// Highest term seen minus the baseline leader's term.
    pub term_rise: u64,
    /// Old leader step-down times after losing its majority, ms (each with
    /// its polling slack).
    pub step_downs_ms: Vec<(f64, f64)>,
    /// Time from the cut to a new leader on the majority side, ms.
    pub new_leader_ms: Vec<f64>,
    /// Memory over the cut (the flapping scenario: over all of it).
    pub rss: Vec<Rss>,
    /// Length of the cut the memory was measured over.
    pub rss_over: Duration,
    /// Time from the heal (and the workload's stop) to every node applying
    /// the same index and holding the same versions, ms.
    pub converge_ms: Option<f64>,
    /// Calls in the history, and of unknown outcome.
    pub ops: usize,
    pub unknown: usize,
    /// Wall time of the scenario (nodes already running).
    pub elapsed: Duration,
    /// `None`: passed; else why it failed.
    pub failure: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    pub fn to_json(&self) -> Json {
        json!({
            "scenario": self.scenario,
            "cuts": self.cuts,
            "acked_total": self.acked_total,
            "acked_during_cuts": self.acked_during_cuts,
            "leader_changes": self.leader_changes,
            "leader_changes_after_heal": self.leader_changes_after_heal,
            "term_rise": self.term_rise,
            "step_downs_ms": self.step_downs_ms.iter().map(|(t, s)| json!([t, s])).collect::<Vec<_>>(),
            "new_leader_ms": self.new_leader_ms,
            "rss": self.rss.iter().map(|r| json!([r.node, r.before_kb, r.after_kb])).collect::<Vec<_>>(),
            "rss_over_ms": self.rss_over.as_millis() as u64,
            "converge_ms": self.converge_ms,
            "ops": self.ops,
            "unknown": self.unknown,
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "failure": self.failure,
        })
    }

    /// Reads a report back; `None` if `j` is not one.
    pub fn from_json(j: &Json) -> Option<Report> {
        let u = |k: &str| j.get(k).and_then(Json::as_u64);
        let floats = |k: &str| -> Vec<f64> {
            j.get(k)
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_f64).collect())
                .unwrap_or_default()
        };
        Some(Report {
            scenario: j.get("scenario")?.as_str()?.to_owned(),
            cuts: j
                .get("cuts")?
                .as_array()?
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            acked_total: u("acked_total")? as usize,
            acked_during_cuts: u("acked_during_cuts")? as usize,
            leader_changes: u("leader_changes")? as usize,
            leader_changes_after_heal: u("leader_changes_after_heal")? as usize,
            term_rise: u("term_rise")?,
            step_downs_ms: j
                .get("step_downs_ms")?
                .as_array()?
                .iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                .collect(),
            new_leader_ms: floats("new_leader_ms"),
            rss: j
                .get("rss")?
                .as_array()?
                .iter()
                .filter_map(|r| {
                    Some(Rss {
                        node: r.get(0)?.as_u64()? as usize,
                        before_kb: r.get(1)?.as_u64()?,
                        after_kb: r.get(2)?.as_u64()?,
                    })
                })
                .collect(),
            rss_over: Duration::from_millis(u("rss_over_ms")?),
            converge_ms: j.get("converge_ms").and_then(Json::as_f64),
            ops: u("ops")? as usize,
            unknown: u("unknown")? as usize,
            elapsed: Duration::from_millis(u("elapsed_ms")?),
            failure: j.get("failure").and_then(Json::as_str).map(str::to_owned),
        })
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, format!("{:#}\n", self.to_json()))
    }

    pub fn read(path: &Path) -> Option<Report> {
        let text = std::fs::read_to_string(path).ok()?;
        Report::from_json(&serde_json::from_str(&text).ok()?)
    }

    /// `312 ms` / `298–330 ms` / `-`.
    pub fn step_down_text(&self) -> String {
        range_ms(&self.step_downs_ms.iter().map(|s| s.0).collect::<Vec<_>>())
    }

    /// The largest VmRSS growth of any node, kB.
    pub fn max_rss_growth_kb(&self) -> Option<i64> {
        self.rss.iter().map(Rss::growth_kb).max()
    }
}

/// `312 ms`, `298–330 ms`, or `-` for none.
pub fn range_ms(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "-".into()
    } else if (hi - lo).abs() < 0.5 {
        format!("{lo:.0} ms")
    } else {
        format!("{lo:.0}–{hi:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let r = Report {
            scenario: "split-3-2".into(),
            cuts: vec!["+1.000 s {0,1} | {2,3,4}".into()],
            acked_total: 900,
            acked_during_cuts: 300,
            leader_changes: 1,
            leader_changes_after_heal: 0,
            term_rise: 1,
            step_downs_ms: vec![(312.4, 7.0)],
            new_leader_ms: vec![480.0],
            rss: vec![Rss {
                node: 0,
                before_kb: 9000,
                after_kb: 9100,
            }],
            rss_over: Duration::from_secs(2),
            converge_ms: Some(40.0),
            ops: 2000,
            unknown: 12,
            elapsed: Duration::from_millis(6500),
            failure: None,
        };
        assert_eq!(Report::from_json(&r.to_json()), Some(r.clone()));
        assert_eq!(r.step_down_text(), "312 ms");
        assert_eq!(r.max_rss_growth_kb(), Some(100));
        let failed = Report {
            failure: Some("why".into()),
            converge_ms: None,
            ..r
        };
        assert_eq!(Report::from_json(&failed.to_json()), Some(failed));
        assert_eq!(range_ms(&[300.0, 410.0]), "300–410 ms");
        assert_eq!(range_ms(&[]), "-");
    }
}
