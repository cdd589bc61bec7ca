//! What a run prints: the setup, committed ops/s, latency percentiles,
//! failed attempts by kind and CPU per committed op, as text or JSON.

use std::time::Duration;

use serde_json::json;

use super::options::Workload;
use super::stats::{Histogram, Tally};

/// How the run was set up, as far as the bench can see it.
#[derive(Clone, Debug)]
pub struct Setup {
    /// `surfstore` or `etcd`.
    pub system: &'static str,
    pub endpoints: Vec<String>,
    /// Cluster members.
    pub nodes: usize,
    pub leader_at_start: String,
    pub leader_at_end: String,
    /// How often the clients' shared leader guess moved during the run.
    pub leader_switches: u64,
    /// From the servers' command lines (`--pids`), else `unknown`.
    pub storage: String,
    pub fsync: String,
    /// CPUs of this machine.
    pub cores: usize,
    pub payload: usize,
    pub clients: usize,
    pub workload: Workload,
    pub read_percent: u8,
    /// Entries one read returned before the run (read workloads).
    pub entries_read: Option<u64>,
    pub warmup: Duration,
    pub duration: Duration,
    pub pids: Vec<u32>,
    pub seed: u64,
}

/// CPU time used during the measured window.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    /// Summed over the `--pids` processes; `None` without them.
    pub server: Option<Duration>,
    /// This process (the load generator).
    pub bench: Duration,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub setup: Setup,
    /// What the clients measured inside the window.
    pub tally: Tally,
    pub cpu: CpuUse,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Rounded to 3 decimals, so JSON stays readable.
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn latency_json(h: &Histogram) -> serde_json::Value {
    json!({
        "min": r3(ms(h.min())),
        "mean": r3(ms(h.mean())),
        "p50": r3(ms(h.quantile(0.5))),
        "p90": r3(ms(h.quantile(0.9))),
        "p99": r3(ms(h.quantile(0.99))),
        "p999": r3(ms(h.quantile(0.999))),
        "max": r3(ms(h.max())),
    })
}

impl Report {
    /// Operations committed inside the window.
    pub fn ops(&self) -> u64 {
        self.tally.all().count()
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops() as f64 / self.setup.duration.as_secs_f64()
    }

    pub fn errors(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    /// CPU µs per committed op of `cpu`, or `None` when nothing committed.
    fn per_op(&self, cpu: Duration) -> Option<f64> {
        let ops = self.ops();
        (ops > 0).then(|| cpu.as_secs_f64() * 1e6 / ops as f64)
    }

    pub fn server_cpu_us_per_op(&self) -> Option<f64> {
        self.cpu.server.and_then(|c| self.per_op(c))
    }

    pub fn bench_cpu_us_per_op(&self) -> Option<f64> {
        self.per_op(self.cpu.bench)
    }

    fn workload_text(&self) -> String {
        let s = &self.setup;
        match s.workload {
            Workload::Mix => format!("mix ({}% reads)", s.read_percent),
            w => w.name().to_owned(),
        }
    }

    pub fn json(&self) -> String {
        let s = &self.setup;
        let by_kind: serde_json::Map<String, serde_json::Value> = self
            .tally
            .latency
            .iter()
            .map(|(k, h)| {
                (
                    k.name().to_owned(),
                    json!({
                        "ops": h.count(),
                        "ops_per_sec": r3(h.count() as f64 / s.duration.as_secs_f64()),
                        "latency_ms": latency_json(h),
                    }),
                )
            })
            .collect();
        let v = json!({
            "setup": {
                "system": s.system,
                "endpoints": s.endpoints,
                "nodes": s.nodes,
                "leader_at_start": s.leader_at_start,
                "leader_at_end": s.leader_at_end,
                "leader_switches": s.leader_switches,
                "storage": s.storage,
                "fsync": s.fsync,
                "cores": s.cores,
                "payload_bytes": s.payload,
                "clients": s.clients,
                "workload": s.workload.name(),
                "read_percent": s.read_percent,
                "entries_read": s.entries_read,
                "warmup_s": s.warmup.as_secs_f64(),
                "duration_s": s.duration.as_secs_f64(),
                "pids": s.pids,
                "seed": s.seed,
            },
            "ops": self.ops(),
            "ops_per_sec": r3(self.ops_per_sec()),
            "latency_ms": latency_json(&self.tally.all()),
            "by_kind": by_kind,
            "errors": self.tally.errors,
            "errors_total": self.errors(),
            "server_cpu_s": self.cpu.server.map(|c| r3(c.as_secs_f64())),
            "server_cpu_us_per_op": self.server_cpu_us_per_op().map(r3),
            "bench_cpu_s": r3(self.cpu.bench.as_secs_f64()),
            "bench_cpu_us_per_op": self.bench_cpu_us_per_op().map(r3),
        });
        v.to_string()
    }

    pub fn text(&self) -> String {
        let s = &self.setup;
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line(format!(
            "target:   {} · {} nodes ({}) · leader {}",
            s.system,
            s.nodes,
            s.endpoints.join(", "),
            s.leader_at_start
        ));
        line(format!(
            "setup:    storage {} · fsync {} · {} cores on this machine · payload {} B · {} clients (closed loop, one keep-alive connection each)",
            s.storage, s.fsync, s.cores, s.payload, s.clients
        ));
        let entries = s
            .entries_read
            .map(|n| format!(" · a read returned {n} entries before the run"))
            .unwrap_or_default();
        line(format!(
            "run:      {} · warm-up {:.1} s, measured {:.1} s · seed {}{entries}",
            self.workload_text(),
            s.warmup.as_secs_f64(),
            s.duration.as_secs_f64(),
            s.seed
        ));
        let row = |name: &str, h: &Histogram| {
            format!(
                "{name:<8}  {:>9} ops {:>10.1} ops/s   latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                h.count(),
                h.count() as f64 / s.duration.as_secs_f64(),
                ms(h.quantile(0.5)),
                ms(h.quantile(0.9)),
                ms(h.quantile(0.99)),
                ms(h.quantile(0.999)),
                ms(h.max()),
            )
        };
        line(row("committed", &self.tally.all()));
        if self.tally.latency.len() > 1 {
            for (k, h) in &self.tally.latency {
                line(row(&format!("  {}", k.name()), h));
            }
        }
        if self.tally.errors.is_empty() {
            line("errors:   none".into());
        } else {
            let kinds: Vec<String> = self
                .tally
                .errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            line(format!(
                "errors:   {} failed attempts ({})",
                self.errors(),
                kinds.join(", ")
            ));
        }
        if s.leader_switches > 0 || s.leader_at_end != s.leader_at_start {
            line(format!(
                "leader:   {} at the end; the clients' leader guess moved {} times",
                s.leader_at_end, s.leader_switches
            ));
        }
        let per_op = |x: Option<f64>| x.map_or("–".to_owned(), |v| format!("{v:.1}"));
        match self.cpu.server {
            Some(c) => line(format!(
                "cpu:      servers {:.2} s = {} µs per committed op (summed over pids {:?}) · bench {:.2} s = {} µs/op",
                c.as_secs_f64(),
                per_op(self.server_cpu_us_per_op()),
                s.pids,
                self.cpu.bench.as_secs_f64(),
                per_op(self.bench_cpu_us_per_op()),
            )),
            None => line(format!(
                "cpu:      bench {:.2} s = {} µs per committed op (give --pids for the servers')",
                self.cpu.bench.as_secs_f64(),
                per_op(self.bench_cpu_us_per_op()),
            )),
        }
        out
    }
}
