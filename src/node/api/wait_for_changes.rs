//! `waitForChanges(since, timeout_s)`: a long poll on the map change
//! counter, for sync clients that keep a folder in step (`client --watch`).
//!
//! The counter is the log index of the last applied entry that changed the
//! map (an `updatefile` that applied), or the index of the snapshot the map
//! was loaded from, whichever is later. Every node computes it from the
//! same log, so it is the same on all of them but for a node that loaded a
//! snapshot, whose counter may be ahead (a spurious wake, never a missed
//! change: any later change has an index past every snapshot). The runtime
//! publishes it on a `watch` channel at apply (`Runtime::map_changes`).
//!
//! Promises (leader only; elsewhere fault 2 naming the leader, like
//! `getfileinfomap`):
//! - The answer `{index, changed}` comes after a ReadIndex barrier, the one
//!   `getfileinfomap` uses, taken both when the call starts and before it
//!   answers. So an `updatefile` acknowledged before the call started with
//!   an index past `since` makes it answer `changed: true` at once, and a
//!   `getfileinfomap` started after the answer shows every change up to
//!   `index`. `changed` is `index > since`.
//! - Without a change, it answers `changed: false` with the counter once
//!   `timeout_s` (clamped to 0..=60; negative or not an int: fault 3) has
//!   passed; `waitForChanges(0, 0)` tells a client the current counter.
//! - A crash (`crash()`) of the node answers fault 1 at once, a lost
//!   leadership or a shutdown fault 5, not at the timeout.
//! - A waiting call holds no worker and polls nothing: it is a future
//!   parked on the counter's and the status's watch channels. At most
//!   [`MAX_WAITERS`] wait on one node; one more gets fault 5.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::args::Args;
use super::NodeHandle;
use crate::node::driver::{NodeStatus, Request};
use crate::node::error::NodeError;
use crate::xmlrpc::Value;

/// Calls that may wait on one node at once.
pub const MAX_WAITERS: usize = 4096;
/// The longest wait a call may ask for, in seconds; longer asks are clamped.
pub const MAX_TIMEOUT_S: i64 = 60;

/// What a node's `waitForChanges` waits on: the runtime's counter and the
/// count of calls waiting. Clones share the count.
#[derive(Clone)]
pub struct ChangeFeed {
    counter: watch::Receiver<u64>,
    waiting: Arc<AtomicUsize>,
}

impl ChangeFeed {
    pub fn new(counter: watch::Receiver<u64>) -> Self {
        ChangeFeed {
            counter,
            waiting: Arc::default(),
        }
    }

    /// Calls waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The counter as this node has applied it (no barrier).
    pub fn current(&self) -> u64 {
        *self.counter.borrow()
    }

    /// A slot among the [`MAX_WAITERS`], given back when dropped.
    fn slot(&self) -> Result<Slot, NodeError> {
        let taken = self.waiting.fetch_add(1, Ordering::AcqRel);
        if taken >= MAX_WAITERS {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(NodeError::Unavailable(format!(
                "waitForChanges: {MAX_WAITERS} calls already wait on this node; try again later"
            )));
        }
        Ok(Slot(self.waiting.clone()))
    }
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer: the counter at the final barrier, and whether it is past
/// `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changes {
    pub index: u64,
    pub changed: bool,
}

impl Changes {
    pub fn value(self) -> Value {
        let mut out = BTreeMap::new();
        out.insert("index".to_owned(), super::int_value(self.index as i64));
        out.insert("changed".to_owned(), Value::Bool(self.changed));
        Value::Struct(out)
    }

    /// Reads an answer (the client and the tester use this).
    pub fn from_value(v: &Value) -> Result<Changes, String> {
        let s = v
            .as_struct()
            .ok_or_else(|| format!("waitForChanges answered {}, not a struct", v.type_name()))?;
        let index = match s.get("index") {
            Some(Value::Int(i)) => i64::from(*i),
            Some(Value::I8(i)) => *i,
            other => return Err(format!("waitForChanges: index is {other:?}, not an int")),
        };
        let changed = match s.get("changed") {
            Some(Value::Bool(b)) => *b,
            other => {
                return Err(format!(
                    "waitForChanges: changed is {other:?}, not a boolean"
                ))
            }
        };
        let index = u64::try_from(index)
            .map_err(|_| format!("waitForChanges: index {index} is negative"))?;
        Ok(Changes { index, changed })
    }
}

/// `(since:int, timeout_s:int)`, checked: `since` at least 0, `timeout_s`
/// at least 0 and clamped to [`MAX_TIMEOUT_S`].
pub(super) fn args(params: Vec<Value>) -> Result<(u64, Duration), NodeError> {
    let mut args = Args::new("waitForChanges", "(since:int, timeout_s:int)", params);
    let since = args.next_int("since")?;
    let since = u64::try_from(since).map_err(|_| args.bad("since", "is negative"))?;
    let timeout = args.next_int("timeout_s")?;
    if timeout < 0 {
        return Err(args.bad("timeout_s", "is negative"));
    }
    args.finish()?;
    Ok((
        since,
        Duration::from_secs(timeout.min(MAX_TIMEOUT_S) as u64),
    ))
}

impl NodeHandle {
    /// `waitForChanges` calls waiting on this node now.
    pub fn wait_for_changes_waiting(&self) -> usize {
        self.changes.as_ref().map_or(0, ChangeFeed::waiting)
    }

    /// `waitForChanges` (see the module's promises).
    pub async fn wait_for_changes(
        &self,
        since: u64,
        timeout: Duration,
    ) -> Result<Changes, NodeError> {
        let Some(feed) = &self.changes else {
            return Err(NodeError::NoSuchMethod(
                "'surfstore.waitForChanges': this node keeps no change counter".into(),
            ));
        };
        let _slot = feed.slot()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut counter = feed.counter.clone();
        let mut status = self.watch();
        self.read_barrier().await?;
        if *counter.borrow_and_update() <= since && !timeout.is_zero() {
            // Seen the status after the barrier: a change of role since
            // then wakes the wait below.
            status.borrow_and_update();
            self.still_leading(&status.borrow())?;
            loop {
                tokio::select! {
                    moved = counter.changed() => {
                        moved.map_err(|_| NodeError::Unavailable("node shutting down".into()))?;
                        if *counter.borrow_and_update() > since {
                            break;
                        }
                    }
                    moved = status.changed() => {
                        moved.map_err(|_| NodeError::Unavailable("node shutting down".into()))?;
                        self.still_leading(&status.borrow_and_update())?;
                    }
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.read_barrier().await?;
        }
        let index = *counter.borrow();
        Ok(Changes {
            index,
            changed: index > since,
        })
    }

    /// The ReadIndex barrier of `getfileinfomap`: returns once this node
    /// has confirmed it leads and applied through the commit index it had
    /// when asked; the counter then covers every acknowledged change.
    async fn read_barrier(&self) -> Result<(), NodeError> {
        let view = self.ask(|reply| Request::ReadMap { reply }).await??;
        drop(view);
        Ok(())
    }

    /// Why a wait must end now, if it must.
    fn still_leading(&self, st: &NodeStatus) -> Result<(), NodeError> {
        if st.crashed {
            return Err(NodeError::Crashed(self.id));
        }
        if let Some(why) = &st.failed {
            return Err(NodeError::Unavailable(format!("node stopped: {why}")));
        }
        if !st.is_leader() {
            return Err(NodeError::Unavailable(
                "waitForChanges: leadership lost while the call waited".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(params: Vec<Value>) -> Result<(u64, Duration), NodeError> {
        args(params)
    }

    #[test]
    fn arguments_are_checked_and_the_timeout_clamped() {
        assert_eq!(
            call(vec![Value::Int(3), Value::Int(5)]).unwrap(),
            (3, Duration::from_secs(5))
        );
        assert_eq!(
            call(vec![Value::I8(1 << 40), Value::I8(1 << 40)]).unwrap(),
            (1 << 40, Duration::from_secs(60))
        );
        for bad in [
            vec![Value::Int(0), Value::Int(-1)],
            vec![Value::Int(-1), Value::Int(1)],
            vec![Value::Int(0), Value::String("5".into())],
            vec![Value::Int(0)],
            vec![Value::Int(0), Value::Int(1), Value::Int(2)],
        ] {
            let e = call(bad.clone()).unwrap_err();
            assert_eq!(
                e.code(),
                crate::node::error::FAULT_BAD_REQUEST,
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn answers_go_out_and_come_back() {
        for c in [
            Changes {
                index: 0,
                changed: false,
            },
            Changes {
                index: 1 << 40,
                changed: true,
            },
        ] {
            assert_eq!(Changes::from_value(&c.value()).unwrap(), c);
        }
        assert!(Changes::from_value(&Value::Int(1)).is_err());
    }

    #[test]
    fn the_slots_are_bounded_and_given_back() {
        let (_tx, rx) = watch::channel(0);
        let feed = ChangeFeed::new(rx);
        let slots: Vec<_> = (0..MAX_WAITERS).map(|_| feed.slot().unwrap()).collect();
        let e = feed.slot().err().unwrap();
        assert_eq!(e.code(), crate::node::error::FAULT_UNAVAILABLE);
        drop(slots);
        assert_eq!(feed.waiting(), 0);
        assert!(feed.slot().is_ok());
    }
}
