//! `surfstore bench` (what run-bench.sh execs): a closed-loop load generator
//! for our cluster and, with the same generator and client machinery, for
//! etcd's v3 JSON gateway, so that a comparison measures the servers.
//!
//! Each simulated client has its own keep-alive connections and one call in
//! flight: it sends, waits for the answer, sends the next (closed loop).
//! The run is a warm-up, then the measured window; only operations that
//! complete inside the window count, with their latency from the first
//! attempt to the answer that committed them (redirects and retries
//! included, as a client sees it). Failed attempts are counted apart, by
//! kind. See [`options::Workload`] for what each workload sends.

pub mod cli;
pub mod etcd;
pub mod http;
pub mod options;
pub mod ours;
pub mod procfs;
pub mod report;
pub mod run;
pub mod stats;
pub mod target;

use std::time::Duration;

pub use cli::{run_cli, BenchArgs};
pub use options::{BenchOptions, System, Workload};
pub use report::Report;
pub use run::run;

/// Why a run could not be made or had to stop.
#[derive(thiserror::Error, Debug)]
pub enum BenchError {
    #[error("{0}")]
    Args(String),
    #[error("cannot reach {target}: {why}")]
    Unreachable { target: String, why: String },
    #[error("no leader at {target} within {after:?} (last: {last})")]
    NoLeader {
        target: String,
        after: Duration,
        last: String,
    },
    #[error("cannot read the server processes: {0}")]
    Proc(#[from] procfs::ProcError),
    /// A call failed in a way retrying cannot fix.
    #[error("stopped: {kind}: {detail}")]
    Fatal { kind: String, detail: String },
    #[error("could not write the seed entries for the read workload: {0}")]
    Seed(String),
}
