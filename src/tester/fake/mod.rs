//! Fake in-process clusters for testing the tester: M XML-RPC listeners
//! sharing one in-memory state that plays the API.md contract without Raft
//! (one global map, instant replication to live nodes, a deterministic
//! "election" a little after the leader crashes), with a switch for each bug
//! the tester must catch. [`Bug::None`] is a correct cluster, which must pass
//! every scenario; each other variant must fail the scenario aimed at it.

mod node;
mod state;

use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::xmlrpc::server::{serve, ServerOptions};

pub use state::Bug;
use state::Shared;

/// A running fake cluster; dropping it stops its listeners.
pub struct FakeCluster {
    /// `127.0.0.1:port` of every fake node.
    pub addrs: Vec<String>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl FakeCluster {
    /// Starts `m` fake nodes on loopback ports with `bug`; node 0 leads.
    pub async fn start(m: usize, bug: Bug) -> std::io::Result<FakeCluster> {
        let mut listeners = Vec::new();
        for _ in 0..m {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.to_string()))
            .collect::<Result<_, _>>()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(addrs.clone(), bug)),
            changed: tokio::sync::Notify::new(),
            counter: tokio::sync::watch::Sender::new(0),
        });
        let (shutdown, rx) = watch::channel(false);
        for (id, listener) in listeners.into_iter().enumerate() {
            let handler = node::FakeNode {
                id,
                shared: shared.clone(),
            };
            let mut rx = rx.clone();
            tokio::spawn(serve(
                listener,
                handler,
                ServerOptions::default(),
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
            ));
        }
        Ok(FakeCluster {
            addrs,
            shared,
            shutdown,
        })
    }

    /// Whether node `i` is crashed right now (as the fake believes).
    pub fn crashed(&self, i: usize) -> bool {
        self.shared.state.lock().expect("fake state").crashed[i]
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
