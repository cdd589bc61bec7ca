//! What the user sees: a live progress line per scenario (redrawn in place on
//! a terminal, one final line otherwise), failure details, the summary table
//! and the machine-readable JSON report.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::TesterError;
use super::fmt;

/// The outcome of one scenario.
#[derive(Clone, Debug)]
pub struct ScenarioReport {
    pub name: &'static str,
    pub passed: bool,
    pub took: Duration,
    /// Observations (measured times, leaders seen).
    pub notes: Vec<String>,
    pub failure: Option<Failure>,
}

/// Why a scenario failed: the whole message, and its parts.
#[derive(Clone, Debug)]
pub struct Failure {
    pub message: String,
    pub call: String,
    pub expected: String,
    pub observed: String,
}

impl From<&TesterError> for Failure {
    fn from(e: &TesterError) -> Failure {
        let (call, expected, observed) = e.parts();
        Failure {
            message: e.to_string(),
            call,
            expected,
            observed,
        }
    }
}

/// The outcome of a whole run.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub members: Vec<String>,
    pub seed: u64,
    /// Prefix of the files this run created.
    pub tag: String,
    pub scenarios: Vec<ScenarioReport>,
    pub took: Duration,
    /// The cluster at the end: `Ok(description)` when every node is up and
    /// there is one leader.
    pub health: Result<String, String>,
    /// The files this run created, tombstoned at the end (best effort, so
    /// it does not decide `passed`): what was done, or what was not.
    pub cleanup: Result<String, String>,
}

impl RunReport {
    /// True when every scenario passed and the cluster was left healthy.
    pub fn passed(&self) -> bool {
        self.health.is_ok() && self.scenarios.iter().all(|s| s.passed)
    }

    /// The report of scenario `name`, if it ran.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioReport> {
        self.scenarios.iter().find(|s| s.name == name)
    }
}

/// Where progress goes, and whether it is a terminal (lines redrawn in place).
#[derive(Clone)]
pub struct Reporter {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    live: bool,
}

impl Reporter {
    pub fn new(out: Box<dyn Write + Send>, live: bool) -> Reporter {
        Reporter {
            out: Arc::new(Mutex::new(out)),
            live,
        }
    }

    /// A reporter that prints nothing (tests).
    pub fn silent() -> Reporter {
        Reporter::new(Box::new(std::io::sink()), false)
    }

    pub fn line(&self, text: &str) {
        let mut out = self.out.lock().expect("output lock");
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Redraws the progress line of a running scenario (terminals only).
    pub fn progress(&self, index: usize, total: usize, name: &str, elapsed: Duration, step: &str) {
        if !self.live {
            return;
        }
        let mut out = self.out.lock().expect("output lock");
        let mut step = step.to_owned();
        if step.chars().count() > 70 {
            step = step.chars().take(67).collect::<String>() + "...";
        }
        let _ = write!(
            out,
            "\r\x1b[2K  ....  [{index:>2}/{total}] {name:<16} {:>7.1} s  {step}",
            elapsed.as_secs_f64()
        );
        let _ = out.flush();
    }

    /// Replaces the progress line with the scenario's result.
    pub fn finished(&self, r: &ScenarioReport) {
        let mut out = self.out.lock().expect("output lock");
        if self.live {
            let _ = write!(out, "\r\x1b[2K");
        }
        let verdict = if r.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "  {verdict}  {:<16} {:>8}  {}",
            r.name,
            fmt::duration(r.took),
            r.notes.first().map(String::as_str).unwrap_or("")
        );
        for note in r.notes.iter().skip(1) {
            let _ = writeln!(out, "        {:<16} {:>8}  {note}", "", "");
        }
        if let Some(f) = &r.failure {
            for line in f.message.lines() {
                let _ = writeln!(out, "        {line}");
            }
        }
        let _ = out.flush();
    }
}

/// The summary table and the verdict line.
pub fn summary(r: &RunReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "\n  {:<16} {:<6} {:>8}  {}\n",
        "scenario", "result", "time", "notes"
    ));
    for sc in &r.scenarios {
        s.push_str(&format!(
            "  {:<16} {:<6} {:>8}  {}\n",
            sc.name,
            if sc.passed { "PASS" } else { "FAIL" },
            fmt::duration(sc.took),
            sc.notes.first().map(String::as_str).unwrap_or("")
        ));
    }
    let failed = r.scenarios.iter().filter(|s| !s.passed).count();
    s.push_str(&format!(
        "\n  {} of {} scenarios passed, {failed} failed, in {} (seed {})\n",
        r.scenarios.len() - failed,
        r.scenarios.len(),
        fmt::duration(r.took),
        r.seed
    ));
    match &r.health {
        Ok(h) => s.push_str(&format!("  cluster left healthy: {h}\n")),
        Err(h) => s.push_str(&format!("  cluster NOT healthy at exit: {h}\n")),
    }
    match &r.cleanup {
        Ok(c) => s.push_str(&format!("  {c}\n")),
        Err(c) => s.push_str(&format!("  could not clean up: {c}\n")),
    }
    s
}

/// The report as JSON (one object; strings escaped by hand).
pub fn json(r: &RunReport) -> String {
    let mut s = String::from("{");
    s.push_str(&format!("\"passed\":{},", r.passed()));
    s.push_str(&format!("\"seed\":{},", r.seed));
    s.push_str(&format!("\"tag\":{},", json_str(&r.tag)));
    s.push_str(&format!(
        "\"members\":[{}],",
        r.members
            .iter()
            .map(|m| json_str(m))
            .collect::<Vec<_>>()
            .join(",")
    ));
    s.push_str(&format!("\"duration_s\":{:.3},", r.took.as_secs_f64()));
    match &r.health {
        Ok(h) => s.push_str(&format!("\"healthy\":true,\"health\":{},", json_str(h))),
        Err(h) => s.push_str(&format!("\"healthy\":false,\"health\":{},", json_str(h))),
    }
    match &r.cleanup {
        Ok(c) => s.push_str(&format!("\"cleaned_up\":true,\"cleanup\":{},", json_str(c))),
        Err(c) => s.push_str(&format!(
            "\"cleaned_up\":false,\"cleanup\":{},",
            json_str(c)
        )),
    }
    s.push_str("\"scenarios\":[");
    for (i, sc) in r.scenarios.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"name\":{},\"status\":\"{}\",\"duration_s\":{:.3},\"notes\":[{}],\"failure\":",
            json_str(sc.name),
            if sc.passed { "pass" } else { "fail" },
            sc.took.as_secs_f64(),
            sc.notes
                .iter()
                .map(|n| json_str(n))
                .collect::<Vec<_>>()
                .join(",")
        ));
        match &sc.failure {
            None => s.push_str("null"),
            Some(f) => s.push_str(&format!(
                "{{\"message\":{},\"call\":{},\"expected\":{},\"observed\":{}}}",
                json_str(&f.message),
                json_str(&f.call),
                json_str(&f.expected),
                json_str(&f.observed)
            )),
        }
        s.push('}');
    }
    s.push_str("]}");
    s
}

/// A JSON string literal.
pub fn json_str(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_everything_json_requires() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn json_report_shape() {
        let r = RunReport {
            members: vec!["h:1".into()],
            seed: 7,
            tag: "t".into(),
            scenarios: vec![ScenarioReport {
                name: "basics",
                passed: false,
                took: Duration::from_millis(1500),
                notes: vec!["n".into()],
                failure: Some(Failure {
                    message: "m".into(),
                    call: "c".into(),
                    expected: "e".into(),
                    observed: "o".into(),
                }),
            }],
            took: Duration::from_secs(2),
            health: Ok("ok".into()),
            cleanup: Ok("c".into()),
        };
        assert_eq!(
            json(&r),
            r#"{"passed":false,"seed":7,"tag":"t","members":["h:1"],"duration_s":2.000,"healthy":true,"health":"ok","cleaned_up":true,"cleanup":"c","scenarios":[{"name":"basics","status":"fail","duration_s":1.500,"notes":["n"],"failure":{"message":"m","call":"c","expected":"e","observed":"o"}}]}"#
        );
    }
}
