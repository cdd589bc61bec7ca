//! The tester: drives a live cluster through failures as a client would and
//! says, scenario by scenario, whether it keeps the contract of API.md.
//!
//! - [`cli`]: `surfstore tester HOST:PORT [flags]`, exit codes;
//! - [`run`]: preflight, one task per scenario, restore, final health check;
//! - [`cluster`]: discovery, leader finding, crash/restore that is undone;
//! - [`scenarios`]: one file per scenario, plus the workload and nemesis;
//! - [`linearizability`]: history, model, checker, explanation;
//! - [`report`]: progress line, summary table, JSON;
//! - [`fake`]: in-process fake clusters with switchable bugs, which the tests
//!   use to show each scenario fails on the bug it is meant to catch.

pub mod cli;
pub mod cluster;
pub mod error;
pub mod fake;
pub mod fmt;
pub mod linearizability;
pub mod options;
pub mod poll;
pub mod report;
pub mod run;
pub mod scenarios;

pub use cli::{run as run_cli, run_async, TesterArgs};
pub use error::TesterError;
pub use options::Options;
pub use report::{Reporter, RunReport};
