//! A deterministic in-memory simulation of a whole cluster, driven by a
//! seeded RNG: N nodes, each the production node runtime
//! (`crate::node::runtime`) over simulated storage whose writes complete
//! asynchronously at random later steps (in disk runs, the real WAL on a
//! power-losing `SimFs`), a network with seeded loss, duplication, delay and
//! reordering, crashes (`Request::Crash`/`Restore`), reboots from storage,
//! partitions (minority, no majority, leader isolated, one-way links), and
//! clients calling `updatefile` and `getfileinfomap` through the runtime's
//! client path. The Raft safety invariants are checked after every step;
//! then everything heals, liveness is required, and what the clients saw is
//! judged (linearizable, acknowledged writes kept, every call answered). A
//! seed names a run exactly; a failure prints the command that replays it
//! with a step trace. Seeded bugs (`--bug`) show that the checks fire.
//!
//! Used by `tests/raft_sim.rs` and by `surfstore sim` (`run_cli`).

/// `println!` that ignores a closed stdout (e.g. `--trace | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod checker;
mod cli;
mod clients;
mod disk;
mod network;
mod node;
mod options;
mod run;
mod snapshots;
mod trace;
mod world;
mod writer;

pub use cli::{run_cli, run_many, SimArgs, BUG_BOUNDS, BUG_START};
pub use options::{FaultMix, SimOptions};
pub use run::{replay_command, run_seed, SimFailure, SimStats};
