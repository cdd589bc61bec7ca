//! A deterministic in-memory simulation of a whole Raft cluster, driven by a
//! seeded RNG: N cores, a network with seeded loss, duplication, delay and
//! reordering, crashes (`crash()`/`restore()`), reboots from storage,
//! partitions (minority, no majority, leader isolated, one-way links), random
//! proposals and ReadIndex reads. The harness plays the node driver and checks
//! the Raft safety invariants after every step, then heals everything and
//! requires liveness. A seed names a run exactly; a failure prints the command
//! that replays it with a step trace.
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
mod disk;
mod driver;
mod network;
mod options;
mod run;
mod snapshots;
mod trace;
mod world;

pub use cli::{run_cli, run_many, SimArgs};
pub use options::{FaultMix, SimOptions};
pub use run::{replay_command, run_seed, SimFailure, SimStats};
