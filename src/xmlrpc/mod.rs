//! XML-RPC: the value model, the codec on quick-xml, the hyper HTTP server and
//! the pooled keep-alive client.

pub mod client;
pub mod codec;
pub mod server;
pub mod value;

pub use value::{Fault, Value};
