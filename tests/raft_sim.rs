//! Whole-cluster simulation over many seeds: 3 and 5 nodes, each the
//! production node runtime, every fault mix, the Raft invariants checked
//! after every step, liveness after healing, and what clients saw judged at
//! the end (linearizable, acknowledged updates kept, every call answered).
//! A failure names the seed, the step and the invariant, and prints the
//! command that replays it with a trace
//! (`cargo run --release -- sim --seed N --trace`). Each seeded bug must be
//! caught within a stated number of seeds, and the same seeds pass without it.
//!
//! The long soak is `#[ignore]`d:
//! `SIM_SEEDS=20000 cargo test --release --test raft_sim -- --ignored --nocapture`.

use surfstore::sim::{run_cli, run_many, run_seed, FaultMix, SimArgs, SimOptions, SimStats};
use surfstore::sim::{BUG_BOUNDS, BUG_START};

/// Seeds per (mix, cluster size) in the default test run.
const SEEDS: u64 = 100;

fn run(start: u64, count: u64, opts: &SimOptions) -> SimStats {
    let (stats, failures, _) = run_many(start, count, opts, Some(1), false);
    if !failures.is_empty() {
        let all: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        panic!(
            "{} of {count} seeds failed:\n{}",
            failures.len(),
            all.join("\n")
        );
    }
    assert_eq!(stats.runs, count);
    stats
}

fn mix(name: &str) -> SimStats {
    mix_with(name, 10)
}

/// Runs `name` on 3 and 5 nodes; each run must have `per_run` updatefile
/// calls acknowledged `true` on average.
fn mix_with(name: &str, per_run: u64) -> SimStats {
    let mut total = SimStats::default();
    for nodes in [3, 5] {
        let opts = SimOptions {
            nodes: Some(nodes),
            mix: Some(name.to_string()),
            ..SimOptions::default()
        };
        let s = run(1000 * nodes as u64, SEEDS, &opts);
        // Every run elects, commits and serves reads, or the test proves nothing.
        assert!(s.leaders_elected >= s.runs, "{name}/{nodes}: {s}");
        assert!(
            s.clients.updates_true >= s.runs * per_run,
            "{name}/{nodes}: {s}"
        );
        assert!(s.clients.updates_false > 0, "{name}/{nodes}: {s}");
        assert!(s.clients.reads_served > 0, "{name}/{nodes}: {s}");
        assert!(
            s.clients.ops_checked > s.clients.updates_true,
            "{name}/{nodes}: {s}"
        );
        assert!(s.committed >= s.clients.updates_true);
        assert!(s.writes_completed > 0);
        total.add(&s);
    }
    println!("mix {name}:\n{total}");
    total
}

#[test]
fn calm() {
    let s = mix("calm");
    assert_eq!(s.messages_dropped, 0);
}

#[test]
fn lossy() {
    let s = mix("lossy");
    assert!(s.messages_dropped > s.messages_sent / 10, "{s}");
    assert!(s.messages_duplicated > 0, "{s}");
}

#[test]
fn crash() {
    let s = mix("crash");
    assert!(s.crashes >= s.runs && s.restores > 0, "{s}");
}

#[test]
fn partition() {
    let s = mix("partition");
    assert!(s.partitions >= 3 * s.runs, "{s}");
    assert!(
        s.leaders_elected >= 2 * s.runs,
        "partitions force re-elections: {s}"
    );
}

#[test]
fn reboot() {
    let s = mix("reboot");
    assert!(s.reboots >= s.runs, "{s}");
}

/// A leader cut off from every other node for long stretches while clients
/// keep calling it: the stale-leader scenario.
#[test]
fn isolate() {
    let s = mix("isolate");
    assert!(s.partitions >= s.runs, "{s}");
    assert!(
        s.clients.updates_unknown > 0,
        "calls on the deposed leader: {s}"
    );
}

#[test]
fn chaos() {
    let s = mix("chaos");
    assert!(s.crashes > 0 && s.reboots > 0 && s.partitions > 0 && s.messages_dropped > 0);
}

/// The leader crashes between any two steps: few entries commit (writes
/// complete asynchronously, so a leader often dies before its entry is
/// durable on a majority), but each run still acknowledges one on average.
#[test]
fn churn() {
    let s = mix_with("churn", 1);
    assert!(s.crashes >= 5 * s.runs, "{s}");
    assert!(s.leaders_elected >= 5 * s.runs, "{s}");
}

/// The real write-ahead log on disks that lose power: reboots cut the power
/// (unsynced data lost, torn, or kept), writes and fsyncs fail, the power
/// goes out mid-write; every recovery must hold what the node had made
/// durable, and the invariants hold from there on. Snapshots are taken and
/// installed along the way.
#[test]
fn disk() {
    let s = mix("disk");
    assert!(s.disk_faults >= s.runs, "{s}");
    assert!(s.disk_recoveries >= 2 * s.runs, "{s}");
    assert!(s.compactions > 0 && s.snapshots_installed > 0, "{s}");
}

/// Leadership transfers asked of the leader at random times, to random
/// nodes, over a lossy network with crashes: most complete (the successor
/// leads, the answer names it), none breaks an invariant, and no
/// acknowledged write is lost (the checker judges every history).
#[test]
fn transfer() {
    let s = mix("transfer");
    assert!(s.transfers >= 5 * s.runs, "{s}");
    assert!(s.transfers_done >= s.transfers / 3, "{s}");
    assert!(s.clients.updates_true > 0, "{s}");
}

/// Log compaction across the seeds: nodes snapshot and compact, and nodes
/// that fall behind a compacted log catch up through installed snapshots.
#[test]
fn snapshots_are_taken_and_installed() {
    let s = run(20_000, 300, &SimOptions::default());
    assert!(s.compactions >= s.runs, "{s}");
    assert!(s.snapshots_installed >= s.runs / 10, "{s}");
}

/// Seeds choose their own size and mix, as `surfstore sim` does by default.
#[test]
fn drawn_per_seed() {
    let s = run(0, 300, &SimOptions::default());
    assert!(s.crashes > 0 && s.reboots > 0 && s.partitions > 0);
    println!("drawn per seed:\n{s}");
}

/// Long runs: backlogs build up under chaos and must still drain after healing.
#[test]
fn long_runs() {
    let opts = SimOptions {
        ticks: 1500,
        ..SimOptions::default()
    };
    let s = run(9000, 40, &opts);
    assert!(s.clients.updates_true > 40 * 100, "{s}");
    println!("long runs:\n{s}");
}

#[test]
fn every_mix_is_covered() {
    let names = FaultMix::names();
    for m in [
        "calm",
        "lossy",
        "crash",
        "partition",
        "reboot",
        "chaos",
        "churn",
        "isolate",
        "disk",
        "transfer",
    ] {
        assert!(names.contains(&m), "{m} has no test");
    }
    assert_eq!(names.len(), 10, "a new mix needs a test here");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 4, 77] {
        let opts = SimOptions::default();
        assert_eq!(run_seed(seed, &opts), run_seed(seed, &opts));
    }
}

/// The failure path works: with no time to heal, liveness must fail, and the
/// report names the seed, the invariant and the replay command.
#[test]
fn failures_name_seed_invariant_and_replay() {
    let opts = SimOptions {
        heal_ticks: Some(0),
        ticks: 5,
        ..SimOptions::default()
    };
    let f = run_seed(42, &opts).unwrap_err();
    let text = f.to_string();
    assert_eq!(f.seed, 42);
    assert_eq!(f.invariant, "liveness after heal");
    assert!(text.contains("seed 42"), "{text}");
    assert!(
        text.contains("cargo run --release -- sim --seed 42 --trace --ticks 5 --heal-ticks 0"),
        "{text}"
    );
}

/// The soak: many seeds through `run_cli`, exactly as `surfstore sim` runs
/// them. `SIM_SEEDS` (default 20000), `SIM_START`, `SIM_MIX`, `SIM_NODES`,
/// `SIM_TICKS`.
#[test]
#[ignore]
fn soak_through_run_cli() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let args = SimArgs {
        seeds: env("SIM_SEEDS").map_or(20_000, |v| v.parse().unwrap()),
        start: env("SIM_START").map_or(0, |v| v.parse().unwrap()),
        seed: None,
        trace: false,
        nodes: env("SIM_NODES").map(|v| v.parse().unwrap()),
        ticks: env("SIM_TICKS").map_or(SimOptions::default().ticks, |v| v.parse().unwrap()),
        mix: env("SIM_MIX"),
        heal_ticks: None,
        jobs: None,
        bug: env("SIM_BUG"),
    };
    assert_eq!(run_cli(&args), 0, "some seeds failed (listed above)");
}

/// Runs seeds from `BUG_START` with `bug` until one fails; it must fail
/// within the bound `surfstore sim --help` states, on the named invariant,
/// and the same seeds must pass without the bug.
fn caught(bug: &str, invariant: &str) {
    let (_, within) = BUG_BOUNDS
        .iter()
        .find(|(b, _)| *b == bug)
        .copied()
        .expect("every bug has a stated bound");
    let buggy = SimOptions {
        bug: Some(bug.to_string()),
        ..SimOptions::default()
    };
    let failure = (BUG_START..BUG_START + within)
        .find_map(|seed| run_seed(seed, &buggy).err())
        .unwrap_or_else(|| panic!("{bug} was not caught within {within} seeds"));
    println!("{bug}: {failure}");
    assert_eq!(failure.invariant, invariant, "{failure}");
    assert!(
        failure.replay.contains(&format!("--bug {bug}")),
        "{failure}"
    );
    let seeds = failure.seed - BUG_START + 1;
    run(BUG_START, seeds, &SimOptions::default());
}

#[test]
fn bug_ack_before_persist_is_caught() {
    caught("ack-before-persist", "durable before send");
}

#[test]
fn bug_no_election_restriction_is_caught() {
    caught("no-election-restriction", "leader completeness");
}

#[test]
fn bug_double_vote_is_caught() {
    caught("double-vote", "election safety");
}

#[test]
fn bug_read_without_quorum_is_caught() {
    caught("read-without-quorum", "linearizable reads");
}

#[test]
fn bug_apply_uncommitted_is_caught() {
    caught("apply-uncommitted", "applied <= commit");
}

/// Every seeded bug has a bound (stated in `surfstore sim --help`, which
/// `cli.rs` tests) and a test above.
#[test]
fn every_bug_has_a_bound_and_a_test() {
    let names: Vec<&str> = BUG_BOUNDS.iter().map(|(b, _)| *b).collect();
    assert_eq!(
        names,
        [
            "ack-before-persist",
            "no-election-restriction",
            "double-vote",
            "read-without-quorum",
            "apply-uncommitted"
        ]
    );
}

#[test]
fn an_unknown_bug_is_refused() {
    let opts = SimOptions {
        bug: Some("no-such-bug".into()),
        ..SimOptions::default()
    };
    let f = run_seed(1, &opts).unwrap_err();
    assert_eq!(f.invariant, "valid options");
    assert!(f.detail.contains("ack-before-persist"), "{f}");
}
