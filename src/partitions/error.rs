//! The harness's one error enum. A scenario fails with [`PartitionError::Check`]
//! or [`PartitionError::Timeout`] (the cluster did not do what Raft promises),
//! or with the tester's own error (a call broke the contract, the history is
//! not linearizable); everything else is the harness failing to set up or
//! run, which is reported as such and never as a verdict on the cluster.

use std::time::Duration;

use crate::tester::{fmt, TesterError};

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// This machine cannot run the harness (not root, no `ip netns`, no
    /// `nft`); not a failure of the cluster.
    #[error("cannot run here: {0}")]
    Unavailable(String),

    /// A command the harness runs (`ip`, `nft`, a node) failed.
    #[error("`{command}` failed: {why}")]
    Command { command: String, why: String },

    /// Setting up files or processes failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },

    /// The cluster did not behave as the scenario asserts.
    #[error("{what}\n    expected: {expected}\n    observed: {observed}")]
    Check {
        what: String,
        expected: String,
        observed: String,
    },

    /// Something the scenario awaits did not happen within its bound.
    #[error("{what}: not within {}\n    expected: {expected}\n    observed: {observed}", fmt::duration(*bound))]
    Timeout {
        what: String,
        bound: Duration,
        expected: String,
        observed: String,
    },

    /// From the tester's workload or checker: a call broke the contract, or
    /// the history is not linearizable.
    #[error(transparent)]
    Tester(#[from] TesterError),

    /// A node process ended while the scenario ran.
    #[error("node {id} (pid {pid}) exited during the scenario: {status}; its log: {log}")]
    NodeExited {
        id: usize,
        pid: u32,
        status: String,
        log: String,
    },

    #[error("bad arguments: {0}")]
    Usage(String),

    /// SIGINT, SIGTERM or SIGHUP arrived; everything was cleaned up.
    #[error("stopped by {0}")]
    Interrupted(String),
}

impl PartitionError {
    pub fn check(
        what: impl Into<String>,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) -> PartitionError {
        PartitionError::Check {
            what: what.into(),
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> PartitionError {
        PartitionError::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, PartitionError>;
