//! The tokio shell around a node's runtime (`crate::node::runtime`): the one
//! task that owns it. It takes a request or a tick (then drains what else is
//! queued, so a burst of proposals becomes one `Ready`), hands them to the
//! runtime, and ends the turn. Everything else talks to the node through
//! `Request`s on the inbox and gets answers on oneshots; the runtime
//! publishes a `NodeStatus` on a watch channel after every turn.

use tokio::sync::{mpsc, watch};

use crate::node::runtime::{Runtime, Transport, Writer};

pub use crate::node::runtime::{describe, LogLine, NodeStatus, Reply, Request};

/// Requests taken into one turn at most, after the one that woke the task.
const MAX_BATCH: usize = 1024;

/// Runs `rt` until `shutdown` turns true, every request sender is gone, or
/// a write fails; then answers everything still waiting.
pub async fn run<W: Writer, T: Transport>(
    mut rt: Runtime<W, T>,
    mut inbox: mpsc::Receiver<Request>,
    tick: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            req = inbox.recv() => {
                let Some(req) = req else { break };
                rt.handle(req);
                for _ in 0..MAX_BATCH {
                    match inbox.try_recv() {
                        Ok(req) => rt.handle(req),
                        Err(_) => break,
                    }
                }
            }
            _ = ticker.tick() => rt.tick(),
        }
        rt.end_turn();
        if rt.failed().is_some() {
            break;
        }
    }
    rt.shut_down();
    rt.publish();
    // A writer blocked on a full inbox gives up once the inbox is gone.
    drop(inbox);
    if let Some(thread) = rt.writer_mut().close() {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}
