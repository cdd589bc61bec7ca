//! The shared state of a fake cluster and its bugs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::xmlrpc::Value;

/// The deliberate bugs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// A correct cluster.
    None,
    /// `updatefile` applies whatever version it is given.
    IgnoresVersionRule,
    /// Followers never apply anything (their `tester_getversion` stays 0).
    NeverReplicates,
    /// `crash` answers True and changes nothing.
    CrashDoesNothing,
    /// The node after the leader also says it is leader.
    TwoLeaders,
    /// `getfileinfomap` answers from a copy [`STALE_BY`] old.
    StaleReads,
    /// `updatefile` moves the change counter (waking `waitForChanges`)
    /// [`APPLY_LAG`] before the write is applied and acknowledged.
    WakesBeforeApply,
    /// `waitForChanges` sits out its whole timeout, then answers truly.
    SleepsOutTimeout,
}

/// How far behind the counter [`Bug::WakesBeforeApply`] applies a write.
pub const APPLY_LAG: Duration = Duration::from_millis(100);

/// How old the map behind [`Bug::StaleReads`] answers is.
pub const STALE_BY: Duration = Duration::from_millis(300);

/// How long after the leader crashes a new one is "elected".
pub const ELECTION_DELAY: Duration = Duration::from_millis(150);

/// How long after a restore a node has caught up.
pub const CATCHUP_DELAY: Duration = Duration::from_millis(50);

pub type FileMap = BTreeMap<String, (i64, Vec<Value>)>;

pub struct Shared {
    pub state: Mutex<State>,
    /// Woken on every crash, restore and election (blocked calls re-check).
    pub changed: Notify,
    /// The map change counter of `waitForChanges`: writes applied so far.
    pub counter: tokio::sync::watch::Sender<u64>,
}

pub struct State {
    pub addrs: Vec<String>,
    pub bug: Bug,
    pub leader: Option<usize>,
    pub crashed: Vec<bool>,
    /// The committed map.
    pub truth: FileMap,
    /// What each node has applied.
    pub applied: Vec<FileMap>,
    /// `(when, map)` after each write, for stale reads.
    pub snapshots: VecDeque<(Instant, FileMap)>,
}

impl State {
    pub fn new(addrs: Vec<String>, bug: Bug) -> State {
        let m = addrs.len();
        State {
            addrs,
            bug,
            leader: Some(0),
            crashed: vec![false; m],
            truth: FileMap::new(),
            applied: vec![FileMap::new(); m],
            snapshots: VecDeque::new(),
        }
    }

    pub fn m(&self) -> usize {
        self.addrs.len()
    }

    pub fn majority_up(&self) -> bool {
        let up = self.crashed.iter().filter(|c| !**c).count();
        up > self.m() / 2
    }

    pub fn is_leader(&self, id: usize) -> bool {
        if self.crashed[id] {
            return false;
        }
        match self.leader {
            Some(l) if l == id => true,
            Some(l) if self.bug == Bug::TwoLeaders => id == (l + 1) % self.m(),
            _ => false,
        }
    }

    /// Applies a committed write to the truth and every live node.
    pub fn commit(&mut self, file: &str, version: i64, hashlist: Vec<Value>) -> bool {
        let current = self.truth.get(file).map_or(0, |(v, _)| *v);
        if version != current + 1 && self.bug != Bug::IgnoresVersionRule {
            return false;
        }
        self.truth
            .insert(file.to_owned(), (version, hashlist.clone()));
        for id in 0..self.m() {
            let replicate = self.bug != Bug::NeverReplicates || Some(id) == self.leader;
            if !self.crashed[id] && replicate {
                self.applied[id].insert(file.to_owned(), (version, hashlist.clone()));
            }
        }
        if self.bug == Bug::StaleReads {
            let now = Instant::now();
            self.snapshots.push_back((now, self.truth.clone()));
            // Keep only what a stale read can still need.
            while self.snapshots.len() > 1 && now.duration_since(self.snapshots[1].0) > STALE_BY {
                self.snapshots.pop_front();
            }
        }
        true
    }

    /// Whether `updatefile(file, version)` would apply now.
    pub fn would_apply(&self, file: &str, version: i64) -> bool {
        let current = self.truth.get(file).map_or(0, |(v, _)| *v);
        version == current + 1 || self.bug == Bug::IgnoresVersionRule
    }

    /// The map a read on the leader answers with.
    pub fn read(&self) -> FileMap {
        if self.bug != Bug::StaleReads {
            return self.truth.clone();
        }
        let cutoff = Instant::now().checked_sub(STALE_BY);
        self.snapshots
            .iter()
            .rev()
            .find(|(t, _)| cutoff.is_some_and(|c| *t <= c))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// A node catches up with the truth (after a restore).
    pub fn catch_up(&mut self, id: usize) {
        if !self.crashed[id] && (self.bug != Bug::NeverReplicates || Some(id) == self.leader) {
            self.applied[id] = self.truth.clone();
        }
    }

    /// Elects the first live node after `after`, if a majority is up.
    pub fn elect(&mut self, after: usize) {
        if self.leader.is_some() || !self.majority_up() {
            return;
        }
        let m = self.m();
        if let Some(id) = (1..=m).map(|k| (after + k) % m).find(|&i| !self.crashed[i]) {
            self.leader = Some(id);
            self.applied[id] = self.truth.clone();
        }
    }
}
