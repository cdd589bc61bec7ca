//! The cluster's merged event feed: every node's `NodeEvent` broadcast
//! forwarded into one bounded channel, plus the one line format the headless
//! log and the dashboard share (`HH:MM:SS.mmm node N: what happened`, UTC).
//!
//! Nobody's correctness depends on events, so the feed drops rather than
//! blocks: a node's broadcast lagging, or the merged channel being full, turns
//! into a `Missed` count delivered with the next item that fits.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::node::events::NodeEvent;
use crate::node::raft::NodeId;

/// Items the merged channel holds before it starts dropping.
pub const FEED_CAPACITY: usize = 8192;

/// One thing the feed reports.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedItem {
    Event(NodeEvent),
    /// `count` events of node `node` were dropped (a slow or absent reader).
    Missed {
        node: NodeId,
        count: u64,
    },
}

/// The receiving end of the merged feed.
pub type Feed = mpsc::Receiver<FeedItem>;

pub(crate) fn channel() -> (mpsc::Sender<FeedItem>, Feed) {
    mpsc::channel(FEED_CAPACITY)
}

/// Forwards node `node`'s events into `tx` until the node's broadcast closes or
/// the feed's receiver is gone.
pub(crate) fn forward(
    node: NodeId,
    mut events: broadcast::Receiver<NodeEvent>,
    tx: mpsc::Sender<FeedItem>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut missed = 0u64;
        loop {
            let item = match events.recv().await {
                Ok(ev) => FeedItem::Event(ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    missed += n;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if missed > 0 {
                match tx.try_send(FeedItem::Missed {
                    node,
                    count: missed,
                }) {
                    Ok(()) => missed = 0,
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            match tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => missed += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    })
}

/// Wall-clock time of day in UTC as `HH:MM:SS.mmm`.
pub fn clock(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ms_of_day = since.as_millis() % 86_400_000;
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

impl fmt::Display for FeedItem {
    /// The headless log line: `HH:MM:SS.mmm node N: what happened`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedItem::Event(ev) => write!(f, "{} {ev}", clock(ev.at)),
            FeedItem::Missed { node, count } => write!(
                f,
                "{} node {node}: {count} event(s) not shown (the log fell behind)",
                clock(SystemTime::now())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_is_utc_time_of_day_with_millis() {
        let at = UNIX_EPOCH
            + Duration::from_millis(86_400_000 * 3 + 13 * 3_600_000 + 5 * 60_000 + 7_042);
        assert_eq!(clock(at), "13:05:07.042");
        assert_eq!(clock(UNIX_EPOCH), "00:00:00.000");
    }
}
