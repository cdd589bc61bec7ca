//! The Raft core: a pure, deterministic state machine (no clock, socket, file,
//! thread or tokio). Ticks, messages and proposals in; a `Ready` out.

pub mod types;

pub use types::*;
