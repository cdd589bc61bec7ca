//! The Raft core: a pure, deterministic state machine (no clock, socket, file,
//! thread or tokio). Ticks, messages and proposals in; a `Ready` out.
//!
//! `types` is the shared vocabulary; `Raft` (in `raft.rs`, with `step.rs`,
//! `replication.rs` and `ready.rs`) is the node; `log`, `progress`,
//! `election` and `read_only` are its parts; `config` and `error` its edges.

pub mod bugs;
mod config;
mod election;
mod error;
mod log;
mod progress;
#[allow(clippy::module_inception)]
mod raft;
mod read_only;
mod ready;
mod replication;
mod step;
pub mod types;

pub use bugs::SeededBugs;
pub use config::RaftConfig;
pub use error::RaftError;
pub use raft::Raft;
pub use types::*;
