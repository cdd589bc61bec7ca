//! Everything one node is, used alike by `run-server.sh` and the in-process cluster.

pub mod raft;
