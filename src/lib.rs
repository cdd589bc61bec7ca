//! SurfStore-on-Raft: a Raft-replicated SurfStore metadata service speaking
//! XML-RPC over HTTP. One node code, run one per process (`server`) or, later,
//! all M in one process.

pub mod auth;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod duration;
pub mod fuzzing;
pub mod logs;
pub mod node;
pub mod partitions;
pub mod sim;
pub mod tester;
pub mod tls;
pub mod tui;
pub mod xmlrpc;
