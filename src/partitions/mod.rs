//! `surfstore partitions`: real network partitions against five real node
//! processes, with the tester's linearizability workload running through
//! them, and Raft's promises under partitions asserted scenario by
//! scenario.
//!
//! The network (`net.rs`): every node in a network namespace of its own,
//! one namespace for the clients, all joined by a Linux bridge that lives
//! in a namespace too, on 10.213.47.0/24, which exists nowhere else. Names
//! carry `surfpart-<pid>`, so runs never collide. A cut (`cuts.rs`) is a
//! set of node pairs; `net.rs` turns it into nftables rules inside the node
//! namespaces that silently drop the other side's packets on input, so
//! calls time out as on a real network.
//!
//! **Clients are never cut.** Isolating a node cuts it from the other nodes
//! only; the clients' namespace reaches every node throughout. So the
//! workload keeps calling an isolated leader (its calls block until it
//! steps down, then get fault 5, an unknown outcome the checker handles),
//! and the harness can read every node's `surfstore.status` at any time,
//! which is how step-down times, terms and leaders are measured.
//!
//! The two sides (`outer.rs`, `inner.rs`): the outer process (root
//! namespace) makes the namespaces and, per scenario, starts five fresh
//! `run-server.sh` nodes in theirs, then re-execs this binary inside the
//! clients' namespace (`ip netns exec <prefix>-cl surfstore partitions
//! --inner NAME …`). The inner side runs the workload
//! (`tester::scenarios::workload`, history in the tester's `Recorder`),
//! applies the cuts itself (`ip netns exec <prefix>-n<i> nft …`), polls
//! status, reads the nodes' VmRSS from `/proc`, and at the end checks the
//! history with the tester's checker. It writes `result.json`; the outer
//! side prints the summary and removes everything (see `outer.rs` for the
//! cleanup guarantees).
//!
//! Asserted (`scenarios.rs` says which scenario asserts what):
//! - no acknowledged write lost, and the history linearizable;
//! - every node converges after the heal (same commit and applied index,
//!   the same version of every file by `tester_getversion`);
//! - a leader left without a majority steps down (`status` role not
//!   `leader`) within 2 × 300 ms + one 10 ms tick of losing it, plus the
//!   polling slack measured each time (from the send of the last poll that
//!   still saw it lead to the answer of the first that did not; a 5 ms poll,
//!   typically 6–15 ms); the majority elects a leader within 3 s;
//! - no leader change and no term change when an isolated follower returns
//!   (nor during a leader↔follower link cut, a bridge cut, or cuts that
//!   move the leader's majority to other followers, where the leader can
//!   reach a majority throughout), and no term rise on a node that is cut off
//!   (pre-vote);
//! - no node's VmRSS grows by more than `--rss-bound-mib` over a cut.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); without them it prints
//! `partitions: skipped: <why>` and exits 3.

pub mod cuts;
pub mod error;
pub mod inner;
pub mod monitor;
pub mod net;
pub mod nodes;
pub mod outer;
pub mod report;
pub mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use crate::tester::cli::parse_duration;

pub use error::PartitionError;
pub use outer::EXIT_UNAVAILABLE;

/// Cluster size.
pub const NODES: usize = 5;

#[derive(clap::Args, Clone, Debug)]
pub struct PartitionsArgs {
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Run only these scenarios (repeat or separate with commas).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Hold every scenario's cut this long (flapping: flap this long),
    /// instead of the short form's few seconds (`60s`, `2.5s`, `800ms`).
    #[arg(long, value_parser = parse_duration, conflicts_with = "long")]
    pub duration: Option<Duration>,
    /// The long form: isolated follower, link and bridge cuts 30 s,
    /// flapping 60 s, the leader's cuts 10 s.
    #[arg(long)]
    pub long: bool,
    /// Seed of every random choice (followers, flapping cuts, workload); random if omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent clients of the workload.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Files the workload spreads over.
    #[arg(long, default_value_t = 3)]
    pub files: usize,
    /// The nodes' --snapshot-threshold: with a short log, what the memory
    /// check sees is what a partition costs rather than the log's length,
    /// and a node cut off for more entries catches up by installSnapshot.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub snapshot_threshold: u64,
    /// Most a node's VmRSS may grow over one cut, in MiB.
    #[arg(long, default_value_t = 4)]
    pub rss_bound_mib: u64,
    /// Keep the run directory (config, data directories, node logs) even
    /// when every scenario passed.
    #[arg(long)]
    pub keep_dir: bool,

    /// (Internal: the clients' side of one scenario, run by the harness
    /// itself inside the clients' namespace.)
    #[arg(long, hide = true, value_name = "SCENARIO")]
    pub inner: Option<String>,
    #[arg(long, hide = true)]
    pub run_dir: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub ns_prefix: Option<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub node_pids: Vec<u32>,
    #[arg(long, hide = true)]
    pub hold_ms: Option<u64>,
}

impl PartitionsArgs {
    /// How long scenario `s` holds its cut.
    pub fn hold(&self, s: &scenarios::Scenario) -> Duration {
        match (self.duration, self.long) {
            (Some(d), _) => d,
            (None, true) => s.long,
            (None, false) => s.short,
        }
    }
}

/// Runs what `args` asks; the process exit code (0 passed, 1 a scenario
/// failed, 2 the harness could not run, 3 this machine cannot run it,
/// 130 stopped by a signal).
pub fn run_cli(args: &PartitionsArgs) -> i32 {
    if args.list {
        for s in &scenarios::ALL {
            println!(
                "{:<21} short {:>4.0} s, long {:>3.0} s  {}",
                s.name,
                s.short.as_secs_f64(),
                s.long.as_secs_f64(),
                s.about
            );
        }
        return 0;
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    if let Some(name) = &args.inner {
        return run_inner(args, name, seed);
    }
    let mut chosen = Vec::new();
    if args.only.is_empty() {
        chosen.extend(scenarios::ALL.iter());
    } else {
        for name in &args.only {
            match scenarios::find(name) {
                Some(s) => chosen.push(s),
                None => {
                    eprintln!(
                        "partitions: no scenario {name:?} (see --list: {})",
                        scenarios::ALL
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    return 2;
                }
            }
        }
    }
    outer::run(args, chosen, seed)
}

fn run_inner(args: &PartitionsArgs, name: &str, seed: u64) -> i32 {
    let missing = |what: &str| {
        eprintln!("partitions --inner: missing {what}");
        2
    };
    let Some(scenario) = scenarios::find(name) else {
        return missing("a known scenario");
    };
    let Some(dir) = args.run_dir.clone() else {
        return missing("--run-dir");
    };
    let Some(prefix) = args.ns_prefix.clone() else {
        return missing("--ns-prefix");
    };
    if args.node_pids.len() != NODES {
        return missing("--node-pids (five)");
    }
    inner::run(inner::Setup {
        scenario,
        dir,
        names: net::Names { prefix },
        pids: args.node_pids.clone(),
        hold: args.hold_ms.map_or(scenario.short, Duration::from_millis),
        seed,
        clients: args.clients,
        files: args.files,
        rss_bound_kb: args.rss_bound_mib.saturating_mul(1024),
    })
}
