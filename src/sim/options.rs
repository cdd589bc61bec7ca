//! What one simulated run looks like: cluster size, the fault mix, the core
//! parameters and the phase lengths. Anything not fixed by `SimOptions` is
//! drawn from the run's seed, so a seed alone names a run.

use rand::rngs::SmallRng;
use rand::Rng;

/// Fault probabilities and network behaviour of one run. Rates are per tick.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultMix {
    pub name: &'static str,
    /// Probability that a message is silently dropped when sent.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Delays are uniform in `1..=max_delay` ticks (so messages reorder).
    pub max_delay: u64,
    pub crash: f64,
    /// Probability, after each step, of crashing whichever node leads.
    pub crash_leader: f64,
    pub restore: f64,
    /// Restart from storage: the core is rebuilt from its persisted hard
    /// state and log (memory lost), then re-applies from index 1.
    pub reboot: f64,
    pub partition: f64,
    pub heal: f64,
    /// Partitions only ever isolate the leader, and last until healed (a
    /// deposed leader that clients still talk to: the stale-read scenario).
    pub isolate_leader: bool,
    /// Probability per tick of arming a disk fault (runs with a disk only).
    pub disk_fault: f64,
    /// Probability per tick of asking the leader to hand leadership to a
    /// random other node (`transferLeader`).
    pub transfer: f64,
    pub propose: f64,
    pub read: f64,
}

impl FaultMix {
    pub const ALL: [FaultMix; 10] = [
        FaultMix::named("calm", 0.0, 0.0, 2, 0.0, 0.0, 0.0, 0.0),
        FaultMix::named("lossy", 0.2, 0.1, 4, 0.0, 0.0, 0.0, 0.0),
        FaultMix::named("crash", 0.02, 0.02, 3, 0.02, 0.05, 0.0, 0.0),
        FaultMix::named("partition", 0.02, 0.02, 3, 0.0, 0.0, 0.0, 0.03),
        FaultMix::named("reboot", 0.05, 0.05, 3, 0.0, 0.0, 0.02, 0.0),
        FaultMix {
            transfer: 0.01,
            ..FaultMix::named("chaos", 0.1, 0.05, 4, 0.01, 0.04, 0.01, 0.02)
        },
        FaultMix {
            crash_leader: 0.02,
            restore: 0.3,
            ..FaultMix::named("churn", 0.05, 0.02, 3, 0.0, 0.0, 0.0, 0.0)
        },
        FaultMix {
            heal: 0.015,
            isolate_leader: true,
            ..FaultMix::named("isolate", 0.02, 0.02, 3, 0.0, 0.0, 0.0, 0.02)
        },
        FaultMix {
            disk_fault: 0.03,
            ..FaultMix::named("disk", 0.05, 0.02, 3, 0.01, 0.1, 0.02, 0.01)
        },
        FaultMix {
            transfer: 0.04,
            ..FaultMix::named("transfer", 0.03, 0.02, 3, 0.005, 0.05, 0.005, 0.005)
        },
    ];

    #[allow(clippy::too_many_arguments)]
    const fn named(
        name: &'static str,
        loss: f64,
        duplicate: f64,
        max_delay: u64,
        crash: f64,
        restore: f64,
        reboot: f64,
        partition: f64,
    ) -> FaultMix {
        FaultMix {
            name,
            loss,
            duplicate,
            max_delay,
            crash,
            crash_leader: 0.0,
            restore,
            reboot,
            partition,
            heal: partition * 1.5,
            isolate_leader: false,
            disk_fault: 0.0,
            transfer: 0.0,
            propose: 0.4,
            read: 0.15,
        }
    }

    pub fn by_name(name: &str) -> Option<FaultMix> {
        FaultMix::ALL.iter().find(|m| m.name == name).cloned()
    }

    pub fn names() -> Vec<&'static str> {
        FaultMix::ALL.iter().map(|m| m.name).collect()
    }
}

/// Options for `run_seed`. `None` fields are drawn from the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// Cluster size; `None`: 3 or 5.
    pub nodes: Option<usize>,
    /// Fault mix name (see `FaultMix::ALL`); `None`: drawn per seed.
    pub mix: Option<String>,
    /// Ticks of the chaos phase.
    pub ticks: u64,
    /// Liveness bound after healing, in ticks; `None`: 30 election timeouts
    /// plus one worst-case round trip per entry past the oldest snapshot.
    pub heal_ticks: Option<u64>,
    /// Print a step-by-step trace to stdout.
    pub trace: bool,
    /// A seeded bug to switch on (one of `SeededBugs::NAMES`): the
    /// self-test that the checks fire.
    pub bug: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: None,
            mix: None,
            ticks: 300,
            heal_ticks: None,
            trace: false,
            bug: None,
        }
    }
}

/// The fully resolved parameters of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub nodes: usize,
    pub mix: FaultMix,
    pub ticks: u64,
    /// `None`: derived at heal time (see `SimOptions::heal_ticks`).
    pub heal_ticks: Option<u64>,
    pub election_ticks_min: u32,
    pub election_ticks_max: u32,
    pub heartbeat_ticks: u32,
    pub max_entries_per_message: usize,
    pub max_bytes_per_message: usize,
    pub max_inflight: usize,
    /// Compact a node's log once it has applied this many entries past its
    /// snapshot (0: never compact).
    pub snapshot_every: u64,
    /// Nodes write the real write-ahead log to a simulated disk with
    /// segments of this size; `None`: the model store only.
    pub disk_segment_bytes: Option<u64>,
    /// The cores run pre-vote and ignore candidates while they hear a
    /// leader (production's setting); off in a quarter of the runs, so the
    /// plain algorithm stays covered.
    pub pre_vote: bool,
    /// Leaders step down without a majority (production's setting); off in
    /// a quarter of the runs.
    pub check_quorum: bool,
}

impl Plan {
    pub fn resolve(opts: &SimOptions, rng: &mut SmallRng) -> Result<Plan, String> {
        // Draw everything first so a seed means the same run whatever is overridden.
        let nodes = if rng.gen_bool(0.5) { 3 } else { 5 };
        let mix = FaultMix::ALL[rng.gen_range(0..FaultMix::ALL.len())].clone();
        let election_ticks_min = rng.gen_range(10..=16);
        let election_ticks_max = election_ticks_min + rng.gen_range(6..=16);
        let heartbeat_ticks = rng.gen_range(2..=4);
        let max_entries_per_message = rng.gen_range(1..=8);
        let max_bytes_per_message = rng.gen_range(8..=160);
        let max_inflight = rng.gen_range(1..=4);
        let snapshot_every = if rng.gen_bool(0.3) {
            0
        } else {
            rng.gen_range(2..=24)
        };
        let disk = rng.gen_bool(0.5);
        let segment_bytes = rng.gen_range(256..=8192);
        let pre_vote = rng.gen_bool(0.75);
        let check_quorum = rng.gen_bool(0.75);
        let nodes = opts.nodes.unwrap_or(nodes);
        if nodes == 0 {
            return Err("--nodes must be at least 1".into());
        }
        let mix = match &opts.mix {
            None => mix,
            Some(name) => FaultMix::by_name(name).ok_or_else(|| {
                format!(
                    "unknown mix {name:?} (known: {})",
                    FaultMix::names().join(", ")
                )
            })?,
        };
        let disk_segment_bytes = (disk || mix.name == "disk").then_some(segment_bytes);
        Ok(Plan {
            nodes,
            mix,
            ticks: opts.ticks,
            heal_ticks: opts.heal_ticks,
            election_ticks_min,
            election_ticks_max,
            heartbeat_ticks,
            max_entries_per_message,
            max_bytes_per_message,
            max_inflight,
            snapshot_every,
            disk_segment_bytes,
            pre_vote,
            check_quorum,
        })
    }
}
