//! Watching the nodes from the clients' namespace (which no cut touches):
//! [`NodeState`] is one `surfstore.status` answer, [`statuses`] asks every
//! node at once, and [`Monitor`] polls them all every 20 ms in the
//! background for the whole scenario, recording each node's role and term
//! changes and the first time each (leader, term) was seen. Leader changes
//! and term rises in a window are read from that record, so a scenario
//! never has to catch a short-lived leader with its own poll.
//!
//! A 20 ms poll can miss a leader that lasted less than that, but not the
//! term it raised: the term rise is recorded too, and is what the
//! no-disruption checks assert on alongside the leaders.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::xmlrpc::client::Client;
use crate::xmlrpc::Value;

/// How often the monitor polls every node.
pub const MONITOR_INTERVAL: Duration = Duration::from_millis(20);

/// One node's `surfstore.status`, the fields the harness reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// `leader`, `follower`, `pre-candidate` or `candidate`.
    pub role: String,
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<usize>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub files: u64,
}

impl NodeState {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }

    /// Parses a `surfstore.status` struct.
    pub fn parse(v: &Value) -> Option<NodeState> {
        let s = v.as_struct()?;
        let num = |k: &str| s.get(k).and_then(Value::as_i64);
        let unsigned = |k: &str| num(k).and_then(|n| u64::try_from(n).ok());
        Some(NodeState {
            role: s.get("role")?.as_str()?.to_owned(),
            term: unsigned("term")?,
            leader: num("leader").and_then(|l| usize::try_from(l).ok()),
            commit_index: unsigned("commit_index")?,
            applied_index: unsigned("applied_index")?,
            last_index: unsigned("last_index")?,
            files: unsigned("files")?,
        })
    }

    /// `leader t3 commit 120 applied 120`.
    pub fn brief(&self) -> String {
        format!(
            "{} t{} commit {} applied {}",
            self.role, self.term, self.commit_index, self.applied_index
        )
    }
}

/// `surfstore.status` of one node; `None` if it did not answer well.
pub async fn status(client: &Client) -> Option<NodeState> {
    match client.call("surfstore.status", &[]).await {
        Ok(v) => NodeState::parse(&v),
        Err(_) => None,
    }
}

/// Every node's status at once, in id order.
pub async fn statuses(clients: &[Client]) -> Vec<Option<NodeState>> {
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move { status(&c).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

/// A leader seen by the monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSeen {
    /// When first seen (since the scenario's clock started).
    pub at: Duration,
    pub node: usize,
    pub term: u64,
}

#[derive(Default)]
struct Record {
    latest: Vec<Option<NodeState>>,
    leaders: Vec<LeaderSeen>,
    /// `(when, node, term)` of every term change seen.
    terms: Vec<(Duration, usize, u64)>,
    /// Role and term changes in words, for the report.
    events: Vec<(Duration, String)>,
    polls: u64,
}

/// The background poller; stops when dropped.
pub struct Monitor {
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
}

impl Monitor {
    /// Starts polling `clients`; times are measured from `start`.
    pub fn start(clients: Vec<Client>, start: Instant) -> Monitor {
        let record = Arc::new(Mutex::new(Record {
            latest: vec![None; clients.len()],
            ..Record::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (record.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(MONITOR_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !s.load(Ordering::Relaxed) {
                ticker.tick().await;
                let now = statuses(&clients).await;
                let at = start.elapsed();
                let mut rec = r.lock().expect("monitor record");
                rec.polls += 1;
                for (i, st) in now.into_iter().enumerate() {
                    let Some(st) = st else { continue };
                    let before = rec.latest[i].clone();
                    if st.is_leader()
                        && !rec.leaders.iter().any(|l| l.node == i && l.term == st.term)
                    {
                        rec.leaders.push(LeaderSeen {
                            at,
                            node: i,
                            term: st.term,
                        });
                    }
                    match &before {
                        Some(b) if b.role == st.role && b.term == st.term => {}
                        _ => {
                            if before.as_ref().map(|b| b.term) != Some(st.term) {
                                rec.terms.push((at, i, st.term));
                            }
                            let was = before
                                .as_ref()
                                .map(|b| format!("{} t{}", b.role, b.term))
                                .unwrap_or_else(|| "?".into());
                            rec.events
                                .push((at, format!("node {i}: {was} -> {} t{}", st.role, st.term)));
                        }
                    }
                    rec.latest[i] = Some(st);
                }
            }
        });
        Monitor { record, stop }
    }

    /// Leaders first seen at or after `from` (and before `to`, if given).
    pub fn leaders_between(&self, from: Duration, to: Option<Duration>) -> Vec<LeaderSeen> {
        let rec = self.record.lock().expect("monitor record");
        rec.leaders
            .iter()
            .filter(|l| l.at >= from && to.is_none_or(|t| l.at < t))
            .cloned()
            .collect()
    }

    /// Every leader seen.
    pub fn leaders(&self) -> Vec<LeaderSeen> {
        self.record.lock().expect("monitor record").leaders.clone()
    }

    /// The highest term any node was seen in.
    pub fn max_term(&self) -> u64 {
        let rec = self.record.lock().expect("monitor record");
        rec.terms.iter().map(|t| t.2).max().unwrap_or(0)
    }

    /// Term changes seen at or after `from`: `(when, node, new term)`.
    pub fn term_changes_since(&self, from: Duration) -> Vec<(Duration, usize, u64)> {
        let rec = self.record.lock().expect("monitor record");
        rec.terms.iter().filter(|t| t.0 >= from).copied().collect()
    }

    /// Role and term changes at or after `from`, in words.
    pub fn events_since(&self, from: Duration) -> Vec<(Duration, String)> {
        let rec = self.record.lock().expect("monitor record");
        rec.events.iter().filter(|e| e.0 >= from).cloned().collect()
    }

    pub fn polls(&self) -> u64 {
        self.record.lock().expect("monitor record").polls
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn parses_a_status_answer() {
        let mut m = BTreeMap::new();
        m.insert("role".to_owned(), Value::from("leader"));
        m.insert("term".to_owned(), Value::Int(3));
        m.insert("leader".to_owned(), Value::Int(-1));
        m.insert("commit_index".to_owned(), Value::Int(10));
        m.insert("applied_index".to_owned(), Value::Int(9));
        m.insert("last_index".to_owned(), Value::I8(11));
        m.insert("files".to_owned(), Value::Int(2));
        let st = NodeState::parse(&Value::Struct(m.clone())).expect("parses");
        assert!(st.is_leader());
        assert_eq!((st.term, st.leader, st.last_index), (3, None, 11));
        assert_eq!(st.brief(), "leader t3 commit 10 applied 9");
        m.remove("term");
        assert_eq!(NodeState::parse(&Value::Struct(m)), None);
        assert_eq!(NodeState::parse(&Value::Int(1)), None);
    }
}
