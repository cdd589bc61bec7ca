//! A synchronous in-memory cluster for the paper tests (`raft_paper.rs`) and
//! the log-compaction tests (`raft_compaction.rs`). Each node is the
//! production node runtime (`surfstore::node::runtime::Runtime`, the Ready
//! loop `run-server.sh` and the simulation run), over a `MemStore` the tests
//! read and a transport whose requests the cluster queues; messages are
//! delivered, held back, dropped or replayed by hand.
//!
//! One turn of a node is what the runtime's shell does: a request or a tick,
//! then `end_turn`. After it the cluster queues, in order, the requests the
//! runtime sent, then the answers to the peer calls it answered in that turn
//! (a delivered request is a `Request::Peer` whose oneshot answer becomes a
//! queued response; a response goes in as `Request::PeerResponse`); and it
//! records the entries the runtime applied and the reads it answered.
//! Writes complete inline (durable at once) unless a test holds them.
//! Entry payloads are real `updatefile` commands (`command(name)`), so the
//! runtime applies them to its map and its snapshots hold that map.
#![allow(dead_code)]

mod plug;

use std::collections::BTreeSet;

use bytes::Bytes;
use surfstore::node::command::Command;
use surfstore::node::error::NodeError;
use surfstore::node::metadata::{MapView, Metadata};
use surfstore::node::raft::{
    Entry, HardState, LogIndex, Message, MessageBody, NodeId, Raft, RaftConfig, Role, Snapshot,
    Term,
};
use surfstore::node::runtime::{NodeStatus, Publisher, Request, Runtime};
use surfstore::node::storage::{MemStore, Stored};
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::sync::{broadcast, watch};

pub use plug::{MemWriter, Outbox};

pub type NodeRuntime = Runtime<MemWriter, Outbox>;

/// The answer to a call made through the runtime, once it comes.
pub type Answer<T> = oneshot::Receiver<Result<T, NodeError>>;

// ---------------------------------------------------------------------------
// Configs, entries, payloads.

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
        check_quorum: false,
    }
}

/// The address node `id` is known by (what `NotLeader` names).
pub fn member(id: NodeId) -> String {
    format!("n{id}")
}

/// The command a test proposes as `name`: `updatefile(name, 1, [])`.
pub fn command(name: &str) -> Command {
    Command::UpdateFile {
        filename: name.to_owned(),
        version: 1,
        hashlist: Vec::new(),
    }
}

/// The entry payload of `command(name)`.
pub fn payload(name: &str) -> Bytes {
    command(name).encode()
}

/// What an entry carries, as a test names it: the command's file name,
/// `(no-op)` for a new leader's empty entry, `(in a snapshot)` for a marker.
pub fn name_of(e: &Entry) -> String {
    if e.data.is_empty() {
        return "(no-op)".to_owned();
    }
    match Command::decode(&e.data) {
        Ok(Command::UpdateFile { filename, .. }) => filename,
        Err(_) => String::from_utf8_lossy(&e.data).into_owned(),
    }
}

/// The name of the entry at `index` in `n`'s log.
pub fn name_at(n: &Raft, index: LogIndex) -> String {
    name_of(n.entry(index).expect("the log holds the entry"))
}

pub fn entry(index: LogIndex, term: Term) -> Entry {
    Entry {
        term,
        index,
        data: payload(&format!("{index}@t{term}")),
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

/// What an applied list holds for an entry that came in a snapshot.
pub fn snapshot_marker(index: LogIndex) -> Entry {
    Entry {
        term: 0,
        index,
        data: Bytes::from_static(b"(in a snapshot)"),
    }
}

/// A read the runtime answered (`getfileinfomap`'s path: ReadIndex round,
/// then the map once applied through the read index). `ctx` is the test's
/// label for it; `answer` is the applied index of the map served, or why
/// the read was refused or failed.
#[derive(Debug, PartialEq)]
pub struct Read {
    pub ctx: u64,
    pub answer: Result<LogIndex, NodeError>,
}

impl Read {
    pub fn served(ctx: u64, applied_index: LogIndex) -> Read {
        Read {
            ctx,
            answer: Ok(applied_index),
        }
    }
}

// ---------------------------------------------------------------------------
// The cluster.

struct Node {
    rt: NodeRuntime,
    /// Peer calls delivered here and not answered yet, in delivery order.
    calls: Vec<oneshot::Receiver<Result<Message, NodeError>>>,
    /// Reads taken and not answered yet, with the test's label.
    reads: Vec<(u64, oneshot::Receiver<Result<MapView, NodeError>>)>,
}

/// A runtime for node `config.id` of `n`, started from `stored` as
/// `node::start_on` starts one: the map from the snapshot, the core from
/// the rest. No snapshot threshold: tests compact with `Cluster::compact`.
fn runtime(config: RaftConfig, stored: Stored, n: usize) -> NodeRuntime {
    let id = config.id;
    let metadata = if stored.snapshot.index > 0 {
        Metadata::from_snapshot(stored.snapshot.index, &stored.snapshot.data)
            .expect("a stored snapshot is a runtime's map")
    } else {
        Metadata::new()
    };
    let raft = Raft::new(
        config,
        stored.hard_state,
        stored.snapshot.clone(),
        stored.entries.clone(),
    )
    .expect("a valid config and store");
    let (status, _) = watch::channel(NodeStatus {
        raft: raft.status(),
        crashed: false,
        files: metadata.len(),
        failed: None,
    });
    let (events, _) = broadcast::channel(1);
    let mut rt = Runtime::new(
        id,
        (0..n as NodeId).map(member).collect(),
        raft,
        metadata,
        MemWriter::new(MemStore::from_parts(stored)),
        Outbox::default(),
        Publisher::new(id, status, events),
        0,
    );
    rt.observe_applies();
    rt
}

/// An AppendEntries without entries from `from` to `to` in `term`, anchored
/// at index 0 (a heartbeat of a leader whose log is empty or agreed).
pub fn empty_append(from: NodeId, to: NodeId, term: Term, ctx: u64) -> Message {
    Message {
        from,
        to,
        term,
        ctx,
        body: MessageBody::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            commit: 0,
            read_seq: 0,
        },
    }
}

/// Steps `msg` into the bare core `n` and returns the one response it
/// makes (a test of one rule on one core, without a cluster).
pub fn only_response(n: &mut Raft, msg: Message) -> Message {
    n.step(msg).unwrap();
    let rd = n.ready();
    let mut out: Vec<Message> = rd
        .messages
        .iter()
        .filter(|m| m.body.is_response())
        .cloned()
        .collect();
    n.advance(rd);
    assert_eq!(out.len(), 1, "exactly one response: {out:?}");
    out.pop().unwrap()
}

pub struct Cluster {
    nodes: Vec<Node>,
    /// Per node: every entry its runtime applied since it started, in order
    /// (a snapshot from the leader replaces the entries it covers by
    /// `snapshot_marker`s).
    pub applied: Vec<Vec<Entry>>,
    /// Per node: the reads it answered, in order.
    pub reads: Vec<Vec<Read>>,
    /// Sent and not yet delivered, in send order.
    pub queue: Vec<Message>,
    /// Isolated nodes: messages to or from them are dropped on delivery.
    pub down: BTreeSet<NodeId>,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        Cluster::with(
            (0..n as NodeId).map(|id| config(id, n)).collect(),
            vec![(HardState::default(), Vec::new()); n],
        )
    }

    /// Nodes with these configs, each started from a store holding a hard
    /// state and a log (no snapshot).
    pub fn with(configs: Vec<RaftConfig>, stores: Vec<(HardState, Vec<Entry>)>) -> Cluster {
        let n = configs.len();
        let nodes = configs
            .into_iter()
            .zip(stores)
            .map(|(c, (hard_state, entries))| Node {
                rt: runtime(
                    c,
                    Stored {
                        hard_state,
                        snapshot: Snapshot::default(),
                        entries,
                    },
                    n,
                ),
                calls: Vec::new(),
                reads: Vec::new(),
            })
            .collect();
        let mut c = Cluster {
            nodes,
            applied: vec![Vec::new(); n],
            reads: (0..n).map(|_| Vec::new()).collect(),
            queue: Vec::new(),
            down: BTreeSet::new(),
        };
        for id in 0..n as NodeId {
            c.end_turn(id);
        }
        c
    }

    pub fn node(&self, id: NodeId) -> &Raft {
        self.nodes[id as usize].rt.raft()
    }

    pub fn runtime(&self, id: NodeId) -> &NodeRuntime {
        &self.nodes[id as usize].rt
    }

    /// Node `id`'s applied map.
    pub fn map(&self, id: NodeId) -> &Metadata {
        self.runtime(id).metadata()
    }

    fn store(&self, id: NodeId) -> &MemStore {
        self.runtime(id).writer().store()
    }

    /// Node `id`'s stored log (the entries after its stored snapshot).
    pub fn log(&self, id: NodeId) -> &[Entry] {
        self.store(id).entries()
    }

    pub fn hard(&self, id: NodeId) -> HardState {
        self.store(id).hard_state()
    }

    pub fn snap(&self, id: NodeId) -> &Snapshot {
        self.store(id).snapshot()
    }

    /// The entries node `id` handed to its writer since the last call.
    pub fn take_written(&mut self, id: NodeId) -> Vec<Entry> {
        std::mem::take(&mut self.nodes[id as usize].rt.writer_mut().written)
    }

    /// Ends node `id`'s turn as the runtime's shell does, and collects what
    /// it sent, answered and applied.
    fn end_turn(&mut self, id: NodeId) {
        let i = id as usize;
        let Cluster {
            nodes,
            applied,
            reads,
            queue,
            ..
        } = self;
        let node = &mut nodes[i];
        node.rt.end_turn();
        queue.append(&mut node.rt.transport_mut().sent);
        node.calls.retain_mut(|answer| match answer.try_recv() {
            Err(TryRecvError::Empty) => true,
            Ok(Ok(response)) => {
                queue.push(response);
                false
            }
            Ok(Err(NodeError::BadRequest(e))) => {
                panic!("node {id} refused a request a test delivered: {e}")
            }
            // Crashed (or the call was dropped): no answer, as when lost.
            Ok(Err(_)) | Err(TryRecvError::Closed) => false,
        });
        node.reads.retain_mut(|(ctx, answer)| {
            let answer = match answer.try_recv() {
                Err(TryRecvError::Empty) => return true,
                Ok(result) => result.map(|view| view.applied_index),
                Err(TryRecvError::Closed) => panic!("node {id} dropped read {ctx} unanswered"),
            };
            reads[i].push(Read { ctx: *ctx, answer });
            false
        });
        let installed = std::mem::take(&mut node.rt.writer_mut().installs)
            .into_iter()
            .max();
        let newly = node.rt.take_applied();
        if let Some(s) = installed {
            // The snapshot is the state machine through `s`.
            applied[i] = (1..=s).map(snapshot_marker).collect();
            applied[i].extend(newly.into_iter().filter(|e| e.index > s));
        } else {
            applied[i].extend(newly);
        }
    }

    /// Node `id` handles `req`, then ends its turn.
    fn turn(&mut self, id: NodeId, req: Request) {
        self.nodes[id as usize].rt.handle(req);
        self.end_turn(id);
    }

    /// Deliver one message now (unless an end is down): a request as a peer
    /// call, whose answer is queued once the runtime gives it.
    pub fn deliver(&mut self, msg: Message) {
        if self.down.contains(&msg.to) || self.down.contains(&msg.from) {
            return;
        }
        let to = msg.to;
        if !msg.body.is_response() {
            let from = msg.from;
            let crashed = self.nodes[to as usize].rt.is_crashed();
            let (reply, answer) = oneshot::channel();
            self.nodes[to as usize].calls.push(answer);
            self.turn(to, Request::Peer { msg, reply });
            if crashed {
                // A crashed node answers fault 1 at once, as over HTTP.
                self.turn(from, Request::PeerCrashed(to));
            }
        } else {
            self.turn(to, Request::PeerResponse(msg));
        }
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
        self.nodes[id as usize].rt.tick();
        self.end_turn(id);
    }

    /// `times` rounds: every node ticks once, then everything is delivered.
    pub fn rounds(&mut self, times: usize) {
        for _ in 0..times {
            for id in 0..self.nodes.len() as NodeId {
                self.tick(id);
            }
            self.deliver_all();
        }
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

    /// `updatefile` at node `id` (`command(name)`), through the runtime's
    /// client path: where the entry went, or why the runtime refused it.
    pub fn try_propose(&mut self, id: NodeId, name: &str) -> Result<(LogIndex, Term), NodeError> {
        let (reply, mut answer) = oneshot::channel();
        let rt = &mut self.nodes[id as usize].rt;
        rt.handle(Request::Update {
            cmd: command(name),
            reply,
        });
        let placed = (rt.raft().last_index(), rt.raft().term());
        let refused = answer.try_recv().ok().and_then(Result::err);
        self.end_turn(id);
        match refused {
            Some(e) => Err(e),
            None => Ok(placed),
        }
    }

    pub fn propose(&mut self, id: NodeId, name: &str) -> (LogIndex, Term) {
        self.try_propose(id, name)
            .unwrap_or_else(|e| panic!("node {id} refused proposal {name:?}: {e}"))
    }

    /// Propose `n` entries at leader `id`, named `prefix0`, `prefix1`, ...
    pub fn propose_n(&mut self, id: NodeId, prefix: &str, n: usize) {
        for k in 0..n {
            self.propose(id, &format!("{prefix}{k}"));
        }
    }

    /// `updatefile` at node `id` through the runtime's client path; the
    /// receiver of its answer (held proposals answer later).
    pub fn propose_call(&mut self, id: NodeId, name: &str) -> Answer<bool> {
        let (reply, answer) = oneshot::channel();
        self.turn(
            id,
            Request::Update {
                cmd: command(name),
                reply,
            },
        );
        answer
    }

    /// `transferLeader(to)` at node `id`; the receiver of its answer.
    pub fn transfer(&mut self, id: NodeId, to: Option<NodeId>) -> Answer<NodeId> {
        let (reply, answer) = oneshot::channel();
        self.turn(id, Request::TransferLeader { to, reply });
        answer
    }

    /// `getfileinfomap` at node `id`, labelled `ctx`; its answer shows up in
    /// `reads[id]` when the runtime gives it.
    pub fn read(&mut self, id: NodeId, ctx: u64) {
        let (reply, answer) = oneshot::channel();
        self.nodes[id as usize].reads.push((ctx, answer));
        self.turn(id, Request::ReadMap { reply });
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

    /// The shell reports that `peer` answered node `id` with fault 1.
    pub fn crashed_answer(&mut self, id: NodeId, peer: NodeId) {
        self.turn(id, Request::PeerCrashed(peer));
    }

    /// The shell reports that `peer` did not answer node `id`.
    pub fn unreachable(&mut self, id: NodeId, peer: NodeId) {
        self.turn(id, Request::Unreachable(peer));
    }

    /// Simulated failure (`surfstore.crash`): the node keeps its state.
    pub fn crash(&mut self, id: NodeId) {
        let (reply, _) = oneshot::channel();
        self.turn(id, Request::Crash { reply });
    }

    pub fn restore(&mut self, id: NodeId) {
        let (reply, _) = oneshot::channel();
        self.turn(id, Request::Restore { reply });
    }

    /// Node `id` snapshots its applied map and compacts its log (store and
    /// core alike), through the runtime.
    pub fn compact(&mut self, id: NodeId) {
        assert!(
            self.nodes[id as usize].rt.snapshot_now(),
            "node {id} has nothing to snapshot"
        );
        self.end_turn(id);
    }

    /// Node `id`'s writes wait from now on until `release_writes`.
    pub fn hold_writes(&mut self, id: NodeId) {
        self.nodes[id as usize].rt.writer_mut().hold();
    }

    /// Node `id`'s held writes complete (in order) and the runtime hears it.
    pub fn release_writes(&mut self, id: NodeId) {
        let rt = &mut self.nodes[id as usize].rt;
        match rt.writer_mut().release() {
            Some((upto, result)) => self.turn(id, Request::Persisted { upto, result }),
            None => self.end_turn(id),
        }
    }

    /// Node `id`'s process restarts from what its store holds: writes not
    /// completed are lost, calls pending on it go unanswered, and its state
    /// machine starts over from the stored snapshot.
    pub fn restart(&mut self, id: NodeId) {
        let stored = self.store(id).load();
        self.restart_from(id, stored);
    }

    /// Node `id` restarts from `stored` (e.g. a new, empty disk).
    pub fn restart_from(&mut self, id: NodeId, stored: Stored) {
        let i = id as usize;
        let config = self.node(id).config().clone();
        let snapshot = stored.snapshot.index;
        self.nodes[i] = Node {
            rt: runtime(config, stored, self.nodes.len()),
            calls: Vec::new(),
            reads: Vec::new(),
        };
        self.applied[i] = (1..=snapshot).map(snapshot_marker).collect();
        self.end_turn(id);
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
