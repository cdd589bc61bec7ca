//! The knobs every scenario reads: time bounds and workload sizes, from the
//! command line ([`super::cli::TesterArgs`]) or set directly by tests.

use std::time::Duration;

/// Bounds and sizes. Every bound is how long a property may take to hold
/// before the scenario fails; every wait reports the time it actually took.
#[derive(Clone, Debug)]
pub struct Options {
    /// A new leader must be elected within this (after a crash, or to start).
    pub leader_bound: Duration,
    /// Every live node must apply a committed write within this.
    pub replication_bound: Duration,
    /// A restored node must catch up within this.
    pub catchup_bound: Duration,
    /// How long blocked calls are watched to make sure they stay blocked.
    pub block_check: Duration,
    /// How long the one leader must stay the one leader.
    pub stable: Duration,
    /// How long the linearizability workload runs.
    pub duration: Duration,
    /// Concurrent clients of the linearizability workload.
    pub clients: usize,
    /// Files the linearizability workload spreads over.
    pub files: usize,
    /// Concurrent writers per round of the races scenario.
    pub racers: usize,
    /// Rounds (versions) of the races scenario.
    pub rounds: usize,
    /// Mean time between nemesis actions; zero turns the nemesis off.
    pub nemesis_interval: Duration,
    /// Time budget of the linearizability checker, per file.
    pub check_budget: Duration,
    /// Pause between a workload client's operations (0..=think, uniform).
    pub think: Duration,
    /// Seed of every random choice the tester makes.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            leader_bound: Duration::from_secs(2),
            replication_bound: Duration::from_secs(1),
            catchup_bound: Duration::from_secs(3),
            block_check: Duration::from_secs(1),
            stable: Duration::from_millis(500),
            duration: Duration::from_secs(10),
            clients: 4,
            files: 3,
            racers: 8,
            rounds: 5,
            nemesis_interval: Duration::from_millis(500),
            check_budget: Duration::from_secs(30),
            think: Duration::from_millis(4),
            seed: 0,
        }
    }
}
