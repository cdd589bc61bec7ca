//! What a simulated node's runtime plugs in. `SimWriter` queues every write
//! (`submit` returns `None`: durability is asynchronous, as on the storage
//! thread) and holds the node's model store, which only completed writes
//! change; the world completes queued writes in order at random later steps
//! (`World::complete_writes`). `SimTransport` collects the requests the
//! runtime sends; the world moves them into its lossy network.

use std::collections::{BTreeMap, VecDeque};

use crate::node::raft::{Entry, HardState, LogIndex, Message, NodeId, Snapshot, Term};
use crate::node::runtime::io::{self, Prepared, SnapshotJob, Transport, Write, Writer};
use crate::node::storage::Stored;

use super::disk::SimDisk;

/// What the node's completed writes hold: its durable state. `log` holds
/// the entries after `snapshot.index` (index 0: no snapshot).
#[derive(Clone, Debug, Default)]
pub struct ModelStore {
    pub hard_state: HardState,
    /// The hard state as of the last synced write (a commit-only write is
    /// not fsynced, so a power cut may take the disk back to this commit).
    pub synced_hard_state: HardState,
    pub snapshot: Snapshot,
    pub log: Vec<Entry>,
    /// Every vote ever durable here, by term (a message of an earlier term
    /// may leave after a later term is durable: it waited for its own write,
    /// and the writes after it completed with it).
    pub votes: BTreeMap<Term, NodeId>,
    /// The longest the durable log has been in each term: an append ack of
    /// a term reports at most this (an ack waits for its write; writes
    /// after it, in a later term, may truncate the log before it leaves).
    pub last_by_term: BTreeMap<Term, LogIndex>,
}

impl ModelStore {
    pub fn last_index(&self) -> LogIndex {
        self.snapshot.index + self.log.len() as LogIndex
    }

    /// The entry at `index`, if the store holds it.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        index
            .checked_sub(self.snapshot.index + 1)
            .and_then(|k| self.log.get(k as usize))
    }

    /// The store's snapshot rule (the one `LogStore::save_snapshot`
    /// documents): drop the log through the snapshot, keeping what follows
    /// if the log holds (index, term), else everything. Older: ignored.
    pub fn save_snapshot(&mut self, snap: &Snapshot) {
        if snap.index <= self.snapshot.index {
            return;
        }
        let holds = self.entry(snap.index).is_some_and(|e| e.term == snap.term);
        if holds {
            let pos = (snap.index - self.snapshot.index) as usize;
            self.log.drain(..pos);
        } else {
            self.log.clear();
        }
        self.snapshot = snap.clone();
    }

    /// What a restarting node is built from.
    pub fn stored(&self) -> Stored {
        Stored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.log.clone(),
        }
    }
}

/// The writes of one node: queued until the world completes them.
#[derive(Default)]
pub struct SimWriter {
    pub store: ModelStore,
    /// In disk runs: the real write-ahead log on a simulated disk, written
    /// before the model store (which it must always match after recovery).
    pub disk: Option<SimDisk>,
    /// Submitted, not yet completed, in order.
    pub queue: VecDeque<Write>,
    /// Indexes of the snapshots from the leader that the runtime installed
    /// (seen at submit: the map is replaced in the same turn), not yet
    /// noted by the world.
    pub installs: Vec<LogIndex>,
}

impl Writer for SimWriter {
    fn submit(&mut self, write: Write) -> Option<Result<(), String>> {
        if let Write::Ready {
            snapshot: Some(s), ..
        } = &write
        {
            self.installs.push(s.index);
        }
        self.queue.push_back(write);
        None
    }

    /// The snapshot file is written inline (on the simulated disk, whose
    /// faults may fail it); its `Compact` write then queues like any other.
    fn prepare_snapshot(&mut self, job: SnapshotJob) -> Option<Prepared> {
        let preparer = self.disk.as_ref().and_then(|d| d.preparer());
        Some(io::prepare(job, preparer.as_ref()))
    }
}

/// The requests a node's runtime sent during one step.
#[derive(Default)]
pub struct SimTransport {
    pub out: Vec<Message>,
}

impl Transport for SimTransport {
    fn send(&mut self, msg: Message) {
        self.out.push(msg);
    }
}
