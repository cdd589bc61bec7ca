//! XML-RPC: the value model, the codec on quick-xml, the hyper HTTP server and
//! the pooled keep-alive client, and a pipelining client for one connection.

pub mod client;
pub mod codec;
pub mod pipeline;
pub mod server;
pub mod value;

pub use value::{Fault, Value};
