//! The tester's one error enum. A scenario fails with one of these; each says
//! what was called, what was expected and what was observed, so the report
//! alone is enough to reproduce the finding by hand.

use std::time::Duration;

use crate::config::ConfigError;
use crate::tester::fmt;

#[derive(Debug, thiserror::Error)]
pub enum TesterError {
    /// A call answered, but not as the contract says.
    #[error("{call}\n    expected: {expected}\n    observed: {observed}")]
    Check {
        call: String,
        expected: String,
        observed: String,
    },

    /// A bounded wait ran out.
    #[error("{what}: not within {}\n    expected: {expected}\n    observed: {observed}", fmt::duration(*bound))]
    Timeout {
        what: String,
        bound: Duration,
        expected: String,
        observed: String,
    },

    /// The recorded history has no linearization.
    #[error("the history is not linearizable\n{explanation}")]
    NotLinearizable { explanation: String },

    /// The checker could not decide in its time budget.
    #[error("the linearizability check did not finish within {}: {detail}", fmt::duration(*budget))]
    Undecided { budget: Duration, detail: String },

    /// The scenario cannot run on this cluster (e.g. too few nodes); not a bug.
    #[error("cannot run: {0}")]
    Unsupported(String),

    /// The scenario task panicked (a tester bug, reported rather than hidden).
    #[error("the scenario panicked: {0}")]
    Panicked(String),

    /// The cluster could not be found or reached at all.
    #[error("cannot reach the cluster: {0}")]
    Discovery(String),

    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("bad arguments: {0}")]
    Usage(String),
}

impl TesterError {
    /// A contract violation: `call` answered `observed` where `expected` was due.
    pub fn check(
        call: impl Into<String>,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) -> TesterError {
        TesterError::Check {
            call: call.into(),
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    /// The (call, expected, observed) triple, for the JSON report.
    pub fn parts(&self) -> (String, String, String) {
        match self {
            TesterError::Check {
                call,
                expected,
                observed,
            } => (call.clone(), expected.clone(), observed.clone()),
            TesterError::Timeout {
                what,
                bound,
                expected,
                observed,
            } => (
                format!("{what} (bound {})", fmt::duration(*bound)),
                expected.clone(),
                observed.clone(),
            ),
            TesterError::NotLinearizable { explanation } => (
                "the recorded history".to_owned(),
                "a linearizable history (per-file version registers)".to_owned(),
                explanation.clone(),
            ),
            other => (String::new(), String::new(), other.to_string()),
        }
    }
}

pub type Result<T, E = TesterError> = std::result::Result<T, E>;
