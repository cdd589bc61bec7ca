//! The dashboard's one event stream: a frame tick, terminal input, stop
//! signals, the cluster's merged node events, and the outcomes of actions,
//! all merged into one channel the runtime reads in order.

use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEvent};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::launch::Signals;
use crate::cluster::{Feed, FeedItem};
use crate::node::driver::LogLine;
use crate::node::raft::{LogIndex, NodeId, Term};
use crate::tui::app::Tone;

/// Frame period: the dashboard redraws at least this often (10 fps).
pub const TICK: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub enum AppEvent {
    /// Time to refresh the statuses from the watches and draw a frame.
    Tick,
    Key(KeyEvent),
    /// The terminal changed size: draw at once.
    Resize,
    Feed(FeedItem),
    /// The outcome of an action (a write's result, a failed crash…).
    Note {
        node: Option<NodeId>,
        text: String,
        tone: Tone,
    },
    /// Node `node`'s log tail, fetched while its log ended at `at`.
    LogTail {
        node: NodeId,
        at: (LogIndex, Term),
        lines: Vec<LogLine>,
    },
    /// A stop signal arrived (its name), or terminal input ended.
    Quit(String),
}

/// The merged stream; its tasks stop when it is dropped.
pub struct Events {
    rx: mpsc::UnboundedReceiver<AppEvent>,
    tx: mpsc::UnboundedSender<AppEvent>,
    tasks: Vec<JoinHandle<()>>,
}

impl Events {
    /// Starts merging ticks every `tick`, terminal input, `signals` and `feed`.
    pub fn start(tick: Duration, mut signals: Signals, feed: Option<Feed>) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let input_tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut input = EventStream::new();
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let event = tokio::select! {
                    _ = ticks.tick() => AppEvent::Tick,
                    signal = signals.recv() => AppEvent::Quit(signal.to_owned()),
                    input = input.next() => match input {
                        Some(Ok(TermEvent::Key(key))) => AppEvent::Key(key),
                        Some(Ok(TermEvent::Resize(..))) => AppEvent::Resize,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => AppEvent::Quit(format!("terminal input failed: {e}")),
                        None => AppEvent::Quit("terminal input ended".to_owned()),
                    },
                };
                let last = matches!(event, AppEvent::Quit(_));
                if input_tx.send(event).is_err() || last {
                    return;
                }
            }
        }));
        if let Some(mut feed) = feed {
            let feed_tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(item) = feed.recv().await {
                    if feed_tx.send(AppEvent::Feed(item)).is_err() {
                        return;
                    }
                }
            }));
        }
        Events { rx, tx, tasks }
    }

    /// Where actions report their outcomes.
    pub fn sender(&self) -> mpsc::UnboundedSender<AppEvent> {
        self.tx.clone()
    }

    /// The next event; never `None` while `self` holds a sender.
    pub async fn next(&mut self) -> AppEvent {
        self.rx
            .recv()
            .await
            .expect("Events holds a sender, so the channel stays open")
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
