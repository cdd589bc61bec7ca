//! A synchronous in-memory cluster of Raft cores for the paper tests
//! (`raft_paper.rs`) and the log-compaction tests (`raft_compaction.rs`):
//! messages are delivered, held back, dropped or replayed by hand, and each
//! node's driver is played exactly as the `Ready` contract says.
#![allow(dead_code)]

use std::collections::BTreeSet;

use bytes::Bytes;
use surfstore::node::raft::{
    Entry, HardState, LogIndex, Message, MessageBody, NodeId, Raft, RaftConfig, ReadState, Role,
    Snapshot, Term,
};

// ---------------------------------------------------------------------------
// A synchronous in-memory cluster.

pub fn config(id: NodeId, n: usize) -> RaftConfig {
    RaftConfig {
        id,
        members: (0..n as NodeId).collect(),
        election_ticks_min: 10,
        election_ticks_max: 20,
        heartbeat_ticks: 2,
        seed: 1000 + id,
        max_entries_per_message: 1000,
        max_bytes_per_message: 1 << 20,
        max_inflight: 4,
        pre_vote: false,
    }
}

pub fn entry(index: LogIndex, term: Term) -> Entry {
    Entry {
        term,
        index,
        data: Bytes::from(format!("{index}@t{term}")),
    }
}

/// A log of the given terms, index 1 first.
pub fn log_of(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(k, &t)| entry(k as u64 + 1, t))
        .collect()
}

pub fn hs(term: Term, commit: LogIndex) -> HardState {
    HardState {
        term,
        vote: None,
        commit,
    }
}

pub struct Cluster {
    pub nodes: Vec<Raft>,
    /// Per node: the store (hard state, snapshot, the log after it) and the
    /// applied entries (a snapshot's entries are replaced by `snapshot_marker`s).
    pub hard: Vec<HardState>,
    pub snaps: Vec<Snapshot>,
    pub logs: Vec<Vec<Entry>>,
    pub applied: Vec<Vec<Entry>>,
    pub reads: Vec<Vec<ReadState>>,
    /// Sent and not yet delivered, in send order.
    pub queue: Vec<Message>,
    /// Isolated nodes: messages to or from them are dropped on delivery.
    pub down: BTreeSet<NodeId>,
    next_ctx: u64,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        Cluster::with(
            (0..n as NodeId).map(|id| config(id, n)).collect(),
            vec![(HardState::default(), Vec::new()); n],
        )
    }

    pub fn with(configs: Vec<RaftConfig>, stores: Vec<(HardState, Vec<Entry>)>) -> Cluster {
        let nodes = configs
            .into_iter()
            .zip(&stores)
            .map(|(c, (h, l))| Raft::new(c, *h, Snapshot::default(), l.clone()).unwrap())
            .collect::<Vec<_>>();
        let n = nodes.len();
        let mut c = Cluster {
            nodes,
            hard: stores.iter().map(|s| s.0).collect(),
            snaps: vec![Snapshot::default(); n],
            logs: stores.into_iter().map(|s| s.1).collect(),
            applied: vec![Vec::new(); n],
            reads: vec![Vec::new(); n],
            queue: Vec::new(),
            down: BTreeSet::new(),
            next_ctx: 1,
        };
        for id in 0..n as NodeId {
            c.drain(id);
        }
        c
    }

    pub fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[id as usize]
    }

    /// Play the driver for node `id` until it has nothing more to do.
    pub fn drain(&mut self, id: NodeId) {
        let i = id as usize;
        while self.nodes[i].has_ready() {
            let rd = self.nodes[i].ready();
            if let Some(s) = &rd.snapshot {
                // An installed snapshot replaces the log and the state machine.
                self.logs[i].clear();
                self.snaps[i] = s.clone();
                self.applied[i] = (1..=s.index).map(snapshot_marker).collect();
            }
            if let Some(h) = rd.hard_state {
                self.hard[i] = h;
            }
            if let Some(first) = rd.entries.first() {
                let offset = self.snaps[i].index;
                self.logs[i].truncate((first.index - offset) as usize - 1);
                self.logs[i].extend(rd.entries.iter().cloned());
            }
            self.queue.extend(rd.messages.iter().cloned());
            self.applied[i].extend(rd.committed_entries.iter().cloned());
            self.reads[i].extend(rd.read_states.iter().copied());
            self.nodes[i].advance(rd);
        }
    }

    /// Node `id` snapshots its state machine at its applied index and
    /// compacts its log (store and core alike).
    pub fn compact(&mut self, id: NodeId) {
        let i = id as usize;
        let index = self.nodes[i].applied_index();
        let term = self.nodes[i].term_at(index).unwrap();
        let snap = Snapshot {
            index,
            term,
            data: Bytes::from(format!("state through {index}")),
        };
        let drop = (index - self.snaps[i].index) as usize;
        self.logs[i].drain(..drop);
        self.snaps[i] = snap.clone();
        self.nodes[i].compact(snap).unwrap();
    }

    /// Deliver one message now (ctx assigned for requests), then drain.
    pub fn deliver(&mut self, mut msg: Message) {
        if self.down.contains(&msg.to) || self.down.contains(&msg.from) {
            return;
        }
        if matches!(
            msg.body,
            MessageBody::AppendEntries { .. }
                | MessageBody::RequestVote { .. }
                | MessageBody::InstallSnapshot { .. }
        ) {
            msg.ctx = self.next_ctx;
            self.next_ctx += 1;
        }
        let to = msg.to;
        self.nodes[to as usize].step(msg).unwrap();
        self.drain(to);
    }

    /// Remove and return the queued messages matching `pred`.
    pub fn take(&mut self, pred: impl Fn(&Message) -> bool) -> Vec<Message> {
        let (taken, kept) = std::mem::take(&mut self.queue).into_iter().partition(pred);
        self.queue = kept;
        taken
    }

    /// Deliver queued messages matching `pred` (and the ones they cause,
    /// if those match too) until none are left.
    pub fn deliver_while(&mut self, pred: impl Fn(&Message) -> bool) -> usize {
        let mut n = 0;
        loop {
            let batch = self.take(&pred);
            if batch.is_empty() {
                return n;
            }
            for m in batch {
                n += 1;
                self.deliver(m);
            }
        }
    }

    pub fn deliver_all(&mut self) -> usize {
        self.deliver_while(|_| true)
    }

    pub fn tick(&mut self, id: NodeId) {
        self.nodes[id as usize].tick();
        self.drain(id);
    }

    /// Tick `id` alone until its election timer fires.
    pub fn campaign(&mut self, id: NodeId) {
        for _ in 0..100 {
            if self.node(id).role() != Role::Follower {
                return;
            }
            self.tick(id);
        }
        panic!("node {id} never campaigned");
    }

    /// Make `id` leader: campaign and deliver everything.
    pub fn elect(&mut self, id: NodeId) {
        self.campaign(id);
        self.deliver_all();
        assert_eq!(self.node(id).role(), Role::Leader, "node {id} should lead");
    }

    pub fn propose(&mut self, id: NodeId, data: &str) -> (LogIndex, Term) {
        let placed = self.nodes[id as usize]
            .propose(Bytes::from(data.to_string()))
            .unwrap();
        self.drain(id);
        placed
    }

    /// Propose `n` entries at leader `id`, named `prefix0`, `prefix1`, ...
    pub fn propose_n(&mut self, id: NodeId, prefix: &str, n: usize) {
        for k in 0..n {
            self.propose(id, &format!("{prefix}{k}"));
        }
    }

    /// One heartbeat round from leader `id`, delivered.
    pub fn heartbeat(&mut self, id: NodeId) {
        for _ in 0..self.node(id).config().heartbeat_ticks {
            self.tick(id);
        }
        self.deliver_all();
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|&i| self.node(i).role() == Role::Leader)
            .collect()
    }
}

pub fn is_append(m: &Message) -> bool {
    matches!(m.body, MessageBody::AppendEntries { .. })
}

pub fn is_reject(m: &Message) -> bool {
    matches!(
        m.body,
        MessageBody::AppendEntriesResponse { success: false, .. }
    )
}

pub fn append_commit(m: &Message) -> Option<LogIndex> {
    match m.body {
        MessageBody::AppendEntries { commit, .. } => Some(commit),
        _ => None,
    }
}

/// What an applied list holds for an entry that came in a snapshot.
pub fn snapshot_marker(index: LogIndex) -> Entry {
    Entry {
        term: 0,
        index,
        data: Bytes::from_static(b"(in a snapshot)"),
    }
}

pub fn data(n: &Raft, index: LogIndex) -> Bytes {
    n.entry(index).unwrap().data.clone()
}
