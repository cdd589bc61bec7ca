//! Everything one node is (being assembled).

pub mod command;
pub mod error;
pub mod metadata;
pub mod peer_wire;
pub mod raft;
pub mod storage;
