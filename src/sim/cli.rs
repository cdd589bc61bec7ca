//! `surfstore sim`: run many seeds (in parallel, one seed per job at a time),
//! print progress and a summary, and list every failing seed with the command
//! that replays it; or replay one seed with `--seed N [--trace]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::options::{FaultMix, SimOptions};
use super::run::{run_seed, SimFailure, SimStats};
use crate::node::raft::SeededBugs;

/// The first seed of the seeded-bug self-test.
pub const BUG_START: u64 = 0;

/// Each seeded bug, and within how many seeds from `BUG_START` (mixes
/// drawn per seed) the simulation catches it. `--help` states these.
pub const BUG_BOUNDS: [(&str, u64); 5] = [
    ("ack-before-persist", 5),
    ("no-election-restriction", 20),
    ("double-vote", 30),
    ("read-without-quorum", 100),
    ("apply-uncommitted", 5),
];

#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Replay exactly this seed (with --trace: print every step).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print a step-by-step trace (with --seed).
    #[arg(long)]
    pub trace: bool,
    /// Cluster size (default: 3 or 5, drawn per seed).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Ticks of the chaos phase.
    #[arg(long, default_value_t = SimOptions::default().ticks)]
    pub ticks: u64,
    /// Fault mix: calm, lossy, crash, partition, reboot, chaos, churn, isolate (the leader
    /// cut off for long stretches), disk (the real WAL on a power-losing disk), transfer (leadership handed
    /// to random nodes at random times)
    /// (default: drawn per seed).
    #[arg(long)]
    pub mix: Option<String>,
    /// Liveness bound after healing, in ticks (default: 30 election timeouts plus a
    /// worst-case round trip per entry past the oldest snapshot).
    #[arg(long)]
    pub heal_ticks: Option<u64>,
    /// Worker threads (default: available CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Switch on a seeded bug (test-only) to see the checks catch it. From seed 0 with
    /// mixes drawn per seed, each is caught within: ack-before-persist 5 seeds,
    /// no-election-restriction 20, double-vote 30, read-without-quorum 100,
    /// apply-uncommitted 5 (tests/raft_sim.rs holds the simulation to these).
    #[arg(long, value_name = "NAME")]
    pub bug: Option<String>,
}

impl SimArgs {
    pub fn options(&self) -> SimOptions {
        SimOptions {
            nodes: self.nodes,
            mix: self.mix.clone(),
            ticks: self.ticks,
            heal_ticks: self.heal_ticks,
            trace: self.trace && self.seed.is_some(),
            bug: self.bug.clone(),
        }
    }
}

/// Run what `args` asks; returns the process exit code (0: every seed passed).
pub fn run_cli(args: &SimArgs) -> i32 {
    if let Some(m) = &args.mix {
        if FaultMix::by_name(m).is_none() {
            eprintln!(
                "unknown --mix {m:?}; known: {}",
                FaultMix::names().join(", ")
            );
            return 2;
        }
    }
    if let Some(b) = &args.bug {
        if SeededBugs::named(b).is_none() {
            eprintln!(
                "unknown --bug {b:?}; known: {}",
                SeededBugs::NAMES.join(", ")
            );
            return 2;
        }
    }
    let opts = args.options();
    if let Some(seed) = args.seed {
        return match run_seed(seed, &opts) {
            Ok(stats) => {
                outln!("seed {seed}: ok\n{stats}");
                0
            }
            Err(f) => {
                outln!("{f}");
                1
            }
        };
    }
    let (stats, failures, elapsed) = run_many(args.start, args.seeds, &opts, args.jobs, true);
    outln!(
        "sim: {} seeds ({}..{}) in {:.1}s: {} passed, {} failed",
        args.seeds,
        args.start,
        args.start + args.seeds,
        elapsed,
        args.seeds - failures.len() as u64,
        failures.len()
    );
    outln!("{stats}");
    for f in &failures {
        outln!("FAIL {f}");
    }
    i32::from(!failures.is_empty())
}

/// Run `count` seeds from `start` on `jobs` threads. Returns the summed stats
/// of passing runs, the failures sorted by seed, and the wall time in seconds.
pub fn run_many(
    start: u64,
    count: u64,
    opts: &SimOptions,
    jobs: Option<usize>,
    progress: bool,
) -> (SimStats, Vec<SimFailure>, f64) {
    let began = Instant::now();
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let total = Mutex::new(SimStats::default());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= count {
                    break;
                }
                match run_seed(start + k, opts) {
                    Ok(st) => total.lock().expect("no poisoning").add(&st),
                    Err(f) => {
                        if progress {
                            eprintln!("FAIL {f}");
                        }
                        failures.lock().expect("no poisoning").push(f);
                    }
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if progress && (d.is_multiple_of((count / 10).max(1)) || d == count) {
                    eprintln!(
                        "sim: {d}/{count} seeds, {:.1}s",
                        began.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("no poisoning");
    failures.sort_by_key(|f| f.seed);
    let stats = total.into_inner().expect("no poisoning");
    (stats, failures, began.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Args;

    fn help() -> String {
        SimArgs::augment_args(clap::Command::new("sim"))
            .render_long_help()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn help_states_every_bug_bound_and_lists_every_mix() {
        let text = help();
        for (i, (bug, within)) in BUG_BOUNDS.iter().enumerate() {
            let stated = if i == 0 {
                format!("{bug} {within} seeds")
            } else {
                format!("{bug} {within}")
            };
            assert!(text.contains(&stated), "--help lacks {stated:?}: {text}");
            assert!(SeededBugs::named(bug).is_some());
        }
        assert_eq!(BUG_BOUNDS.len(), SeededBugs::NAMES.len());
        for mix in FaultMix::names() {
            assert!(text.contains(mix), "--help lacks the {mix} mix");
        }
    }
}
