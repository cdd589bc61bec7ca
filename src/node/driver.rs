//! The one tokio task that owns a node's Raft core and metadata map. Everyone
//! else talks to it through `Request`s on an mpsc channel and gets answers on
//! oneshots; it publishes a `NodeStatus` on a watch channel after every turn.
//!
//! One turn: take a request or a tick (then drain what else is queued, so a
//! burst of proposals becomes one batch), then run the Ready loop: persist hard
//! state and entries, send messages (responses to the HTTP calls waiting on
//! them, requests to the peer senders), apply committed entries and answer the
//! proposals they complete, serve reads whose index is applied, `advance`.
//!
//! Snapshots: once `snapshot_threshold` entries are applied past the last
//! snapshot, a copy-on-write view of the metadata map is taken, encoded and
//! its file written off this task (`spawn_blocking`), and when that is done
//! the store and the core drop the covered log (one snapshot in flight at a
//! time). A snapshot installed by
//! the leader arrives in a `Ready` and replaces the map.
//!
//! A failed disk write takes the node down cleanly: nothing promised by the
//! failed `Ready` leaves, every waiting call is failed, the status says
//! `failed`, and the task ends (`run-server.sh` then exits non-zero).

use std::collections::{BTreeMap, HashMap};

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::node::command::Command;
use crate::node::error::NodeError;
use crate::node::events::{EventKind, NodeEvent};
use crate::node::metadata::{MapView, Metadata};
use crate::node::peer_wire;
use crate::node::raft::{
    Entry, LogIndex, Message, NodeId, Raft, RaftError, Ready, Role, Snapshot, Status, Term,
};
use crate::node::storage::{LogStore, PreparedSnapshot};

/// Replies travel on oneshots; a dropped receiver (the client hung up) is fine.
pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// What the rest of the process may ask of the driver.
#[derive(Debug)]
pub enum Request {
    /// `updatefile`: answered with the apply result once committed and applied.
    Update {
        cmd: Command,
        reply: Reply<bool>,
    },
    /// `getfileinfomap`: answered after a ReadIndex round with a view of the
    /// applied map (turned into a `Value` by the caller, off this task).
    ReadMap {
        reply: Reply<MapView>,
    },
    /// A view of this node's applied map as it is now, crashed or not (the
    /// block store's repair reads it).
    LocalMap {
        reply: oneshot::Sender<MapView>,
    },
    /// `tester_getversion`: this node's applied map, crashed or not.
    GetVersion {
        filename: String,
        reply: oneshot::Sender<i64>,
    },
    /// An `appendEntries` / `requestVote` received from a peer; answered with the
    /// core's response once what it promises is persisted.
    Peer {
        msg: Message,
        reply: Reply<Message>,
    },
    /// The answer to a request this node sent.
    PeerResponse(Message),
    /// A request this node sent to `peer` got no answer.
    Unreachable(NodeId),
    Crash {
        reply: oneshot::Sender<()>,
    },
    Restore {
        reply: oneshot::Sender<()>,
    },
    /// The last `n` log entries, described (for the dashboard).
    LogTail {
        n: usize,
        reply: oneshot::Sender<Vec<LogLine>>,
    },
    /// A snapshot was encoded, and its file written (`Some`; `None`: the
    /// store has no file to write), off the driver task, or that failed.
    SnapshotPrepared {
        snapshot: Snapshot,
        started: std::time::Instant,
        result: std::io::Result<Option<PreparedSnapshot>>,
    },
}

/// One log entry as the dashboard shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub index: LogIndex,
    pub term: Term,
    pub command: String,
}

/// A human description of an entry's payload.
pub fn describe(data: &[u8]) -> String {
    if data.is_empty() {
        return "no-op (new leader)".to_owned();
    }
    match Command::decode(data) {
        Ok(Command::UpdateFile {
            filename,
            version,
            hashlist,
        }) => {
            let n = hashlist.len();
            let plural = if n == 1 { "" } else { "es" };
            format!("updatefile {filename:?} v{version} ({n} hash{plural})")
        }
        Err(e) => format!("undecodable: {e}"),
    }
}

/// What the node publishes after every turn (dashboards and tests read this,
/// never the core).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    pub raft: Status,
    pub crashed: bool,
    /// Files in the applied map.
    pub files: usize,
    /// The node stopped for good (a disk write failed): why.
    pub failed: Option<String>,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        !self.crashed && self.failed.is_none() && self.raft.role == Role::Leader
    }
}

/// When and how a driver snapshots.
struct Snapshots {
    /// Snapshot once this many entries are applied past the last one.
    threshold: u64,
    /// Where `SnapshotPrepared` comes back (weak: the driver must not keep
    /// its own inbox open).
    inbox: mpsc::WeakSender<Request>,
    /// A snapshot is being encoded and written off this task.
    in_flight: bool,
}

pub struct Driver<S: LogStore> {
    id: NodeId,
    members: Vec<String>,
    raft: Raft,
    store: S,
    metadata: Metadata,
    crashed: bool,
    /// Channels to the per-peer sender tasks, indexed by id (None for self).
    peers: Vec<Option<crate::node::peers::PeerTx>>,
    /// Proposals waiting to be applied: index -> (term proposed in, reply).
    pending_updates: BTreeMap<LogIndex, (Term, Reply<bool>)>,
    /// Reads waiting for their ReadIndex round, by ctx.
    pending_reads: HashMap<u64, Reply<MapView>>,
    /// Reads whose round succeeded, waiting for `applied >= index`.
    ready_reads: Vec<(LogIndex, Reply<MapView>)>,
    /// Peer calls waiting for the core's response, by ctx.
    responders: HashMap<u64, Reply<Message>>,
    next_ctx: u64,
    role: Role,
    term: Term,
    vote: Option<NodeId>,
    status: watch::Sender<NodeStatus>,
    events: broadcast::Sender<NodeEvent>,
    /// Calls answered so far; the stall detector watches it move.
    answered: u64,
    answered_at_last_tick: u64,
    /// Ticks the leader has had calls waiting and none answered.
    stalled_ticks: u32,
    /// Ticks of stall after which `Blocked` is reported (an election timeout).
    block_after_ticks: u32,
    blocked: bool,
    /// `None`: this driver never snapshots.
    snapshots: Option<Snapshots>,
    /// Set when a disk write failed; the run loop then ends.
    failed: Option<String>,
}

impl<S: LogStore> Driver<S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        members: Vec<String>,
        raft: Raft,
        metadata: Metadata,
        store: S,
        peers: Vec<Option<crate::node::peers::PeerTx>>,
        status: watch::Sender<NodeStatus>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        let role = raft.role();
        let term = raft.term();
        let block_after_ticks = raft.config().election_ticks_max.max(1);
        let vote = raft.status().vote;
        Driver {
            id,
            members,
            raft,
            store,
            metadata,
            crashed: false,
            peers,
            pending_updates: BTreeMap::new(),
            pending_reads: HashMap::new(),
            ready_reads: Vec::new(),
            responders: HashMap::new(),
            next_ctx: 1,
            role,
            term,
            vote,
            status,
            events,
            answered: 0,
            answered_at_last_tick: 0,
            stalled_ticks: 0,
            block_after_ticks,
            blocked: false,
            snapshots: None,
            failed: None,
        }
    }

    /// Snapshot every `threshold` applied entries (0: never). `inbox` is the
    /// sender of the requests this driver will run on: a finished snapshot
    /// comes back through it.
    pub fn with_snapshots(mut self, threshold: u64, inbox: &mpsc::Sender<Request>) -> Self {
        self.snapshots = (threshold > 0).then(|| Snapshots {
            threshold,
            inbox: inbox.downgrade(),
            in_flight: false,
        });
        self
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            raft: self.raft.status(),
            crashed: self.crashed,
            files: self.metadata.len(),
            failed: self.failed.clone(),
        }
    }

    /// Runs until `shutdown` turns true or every request sender is gone.
    pub async fn run(
        mut self,
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
                    self.handle(req);
                    // Batch whatever else is queued into this turn.
                    for _ in 0..1024 {
                        match inbox.try_recv() {
                            Ok(req) => self.handle(req),
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => {
                    if !self.crashed {
                        self.raft.tick();
                        self.watch_for_stall();
                    }
                }
            }
            self.process_ready();
            self.maybe_snapshot();
            self.publish();
            if self.failed.is_some() {
                break;
            }
        }
        let why = self.failed.clone();
        self.fail_pending(|| match &why {
            Some(e) => NodeError::Unavailable(format!("node stopped: {e}")),
            None => NodeError::Unavailable("node shutting down".into()),
        });
    }

    /// Storage failed: stop for good. Nothing the failed write promised has
    /// left (persist comes before send), the waiting calls are failed by the
    /// run loop, and the status tells everyone why.
    fn fail(&mut self, what: String) {
        tracing::error!(node = self.id, "{what}; stopping the node");
        self.emit(EventKind::Failed {
            reason: what.clone(),
        });
        self.failed = Some(what);
    }

    /// Start a snapshot when enough is applied past the last one: take a
    /// view of the map here (it is the state as of `applied`; a few hundred
    /// reference counts), encode it and write the file on a blocking thread,
    /// finish when `SnapshotPrepared` comes back.
    fn maybe_snapshot(&mut self) {
        let applied = self.metadata.applied_index();
        let Some(snaps) = self.snapshots.as_mut() else {
            return;
        };
        if snaps.in_flight
            || self.failed.is_some()
            || applied < self.raft.snapshot_index() + snaps.threshold
        {
            return;
        }
        debug_assert_eq!(applied, self.raft.applied_index());
        let Some(term) = self.raft.term_at(applied) else {
            return;
        };
        // Every sender gone: the node is shutting down.
        let Some(inbox) = snaps.inbox.upgrade() else {
            return;
        };
        snaps.in_flight = true;
        let started = std::time::Instant::now();
        let view = self.metadata.view();
        let preparer = self.store.snapshot_preparer();
        tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot {
                index: applied,
                term,
                data: view.encode(),
            };
            let result = preparer.map(|p| p.prepare(&snapshot)).transpose();
            let _ = inbox.blocking_send(Request::SnapshotPrepared {
                snapshot,
                started,
                result,
            });
        });
    }

    /// The snapshot's file is durable (or there is none to write): make it
    /// the store's snapshot and drop the covered log.
    fn finish_snapshot(
        &mut self,
        snapshot: Snapshot,
        started: std::time::Instant,
        prepared: Option<PreparedSnapshot>,
    ) {
        // A snapshot from the leader may have got there first; the store then
        // ignores this older one (and removes its prepared file).
        let newer = snapshot.index > self.raft.snapshot_index();
        if let Err(e) = self.store.save_snapshot(&snapshot, prepared) {
            self.fail(format!(
                "saving the snapshot at index {} failed: {e}",
                snapshot.index
            ));
            return;
        }
        if !newer {
            return;
        }
        let (index, bytes) = (snapshot.index, snapshot.data.len());
        if let Err(e) = self.raft.compact(snapshot) {
            panic!("compaction invariant: a snapshot of the applied map must compact: {e}");
        }
        tracing::info!(
            node = self.id,
            index,
            bytes,
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "snapshot taken; log compacted"
        );
        self.emit(EventKind::SnapshotTaken { index, bytes });
    }

    fn publish(&self) {
        let status = self.status();
        self.status.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        });
    }

    fn emit(&self, kind: EventKind) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(NodeEvent {
                node: self.id,
                at: std::time::SystemTime::now(),
                kind,
            });
        }
    }

    /// Reports `Blocked` when calls wait on the leader for an election timeout
    /// with none answered, and `Unblocked` when answers flow again.
    fn watch_for_stall(&mut self) {
        let waiting =
            self.pending_updates.len() + self.pending_reads.len() + self.ready_reads.len();
        if self.role != Role::Leader || waiting == 0 || self.answered != self.answered_at_last_tick
        {
            self.stalled_ticks = 0;
        } else {
            self.stalled_ticks += 1;
            if self.stalled_ticks == self.block_after_ticks && !self.blocked {
                self.blocked = true;
                self.emit(EventKind::Blocked { waiting });
            }
        }
        if self.blocked
            && (self.answered != self.answered_at_last_tick || self.role != Role::Leader)
        {
            self.blocked = false;
            self.emit(EventKind::Unblocked);
        }
        self.answered_at_last_tick = self.answered;
    }

    fn leader_addr(&self, leader: Option<NodeId>) -> Option<String> {
        leader.and_then(|l| self.members.get(l as usize).cloned())
    }

    fn not_leader(&self, err: RaftError) -> NodeError {
        match err {
            RaftError::NotLeader { leader } => NodeError::NotLeader(self.leader_addr(leader)),
            other => NodeError::Unavailable(other.to_string()),
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Update { cmd, reply } => {
                if self.crashed {
                    let _ = reply.send(Err(NodeError::Crashed(self.id)));
                    return;
                }
                match self.raft.propose(cmd.encode()) {
                    Ok((index, term)) => {
                        self.pending_updates.insert(index, (term, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.not_leader(e)));
                    }
                }
            }
            Request::ReadMap { reply } => {
                if self.crashed {
                    let _ = reply.send(Err(NodeError::Crashed(self.id)));
                    return;
                }
                let ctx = self.take_ctx();
                match self.raft.read_index(ctx) {
                    Ok(()) => {
                        self.pending_reads.insert(ctx, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.not_leader(e)));
                    }
                }
            }
            Request::LocalMap { reply } => {
                let _ = reply.send(self.metadata.view());
            }
            Request::GetVersion { filename, reply } => {
                let _ = reply.send(self.metadata.version(&filename));
            }
            Request::Peer { mut msg, reply } => {
                if self.crashed {
                    let _ = reply.send(Err(NodeError::Crashed(self.id)));
                    return;
                }
                let ctx = self.take_ctx();
                msg.ctx = ctx;
                self.responders.insert(ctx, reply);
                if let Err(e) = self.raft.step(msg) {
                    if let Some(reply) = self.responders.remove(&ctx) {
                        let _ = reply.send(Err(NodeError::BadRequest(e.to_string())));
                    }
                }
            }
            Request::PeerResponse(msg) => {
                if !self.crashed {
                    if let Err(e) = self.raft.step(msg) {
                        tracing::warn!(node = self.id, "dropping bad peer response: {e}");
                    }
                }
            }
            Request::Unreachable(peer) => {
                if !self.crashed {
                    self.raft.report_unreachable(peer);
                }
            }
            Request::Crash { reply } => {
                if !self.crashed {
                    self.crashed = true;
                    self.raft.crash();
                    self.fail_pending(|| NodeError::Unavailable("the node crashed".into()));
                    tracing::info!(node = self.id, "crashed");
                    if self.role == Role::Leader {
                        self.emit(EventKind::LeadershipLost { term: self.term });
                    }
                    self.role = Role::Follower;
                    self.emit(EventKind::Crashed);
                }
                self.publish();
                let _ = reply.send(());
            }
            Request::LogTail { n, reply } => {
                let lines = self
                    .raft
                    .log_tail(n)
                    .iter()
                    .map(|e| LogLine {
                        index: e.index,
                        term: e.term,
                        command: describe(&e.data),
                    })
                    .collect();
                let _ = reply.send(lines);
            }
            Request::SnapshotPrepared {
                snapshot,
                started,
                result,
            } => {
                if let Some(snaps) = self.snapshots.as_mut() {
                    snaps.in_flight = false;
                }
                match result {
                    Ok(prepared) => self.finish_snapshot(snapshot, started, prepared),
                    Err(e) => self.fail(format!(
                        "writing the snapshot at index {} failed: {e}",
                        snapshot.index
                    )),
                }
            }
            Request::Restore { reply } => {
                if self.crashed {
                    self.crashed = false;
                    self.raft.restore();
                    tracing::info!(node = self.id, "restored");
                    self.emit(EventKind::Restored);
                }
                self.publish();
                let _ = reply.send(());
            }
        }
    }

    fn take_ctx(&mut self) -> u64 {
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        ctx
    }

    /// Answers every waiting client and peer call with `err()`.
    fn fail_pending(&mut self, err: impl Fn() -> NodeError) {
        for (_, (_, reply)) in std::mem::take(&mut self.pending_updates) {
            let _ = reply.send(Err(err()));
        }
        for (_, reply) in self.pending_reads.drain() {
            let _ = reply.send(Err(err()));
        }
        for (_, reply) in self.ready_reads.drain(..) {
            let _ = reply.send(Err(err()));
        }
        for (_, reply) in self.responders.drain() {
            let _ = reply.send(Err(NodeError::Crashed(self.id)));
        }
    }

    fn process_ready(&mut self) {
        // A crashed node does nothing: its pending Ready waits for restore.
        while !self.crashed && self.failed.is_none() && self.raft.has_ready() {
            let mut rd = self.raft.ready();
            if let Err(e) = self.handle_ready(&mut rd) {
                self.fail(e);
                return;
            }
            self.raft.advance(rd);
        }
        self.serve_ready_reads();
    }

    /// `Err`: a disk write failed, and nothing after it was done.
    fn handle_ready(&mut self, rd: &mut Ready) -> Result<(), String> {
        if let Some(snapshot) = &rd.snapshot {
            self.install_snapshot(snapshot)?;
        }
        let term = rd.hard_state.map_or(self.term, |hs| hs.term);
        if let Some(ss) = rd.soft_state {
            if self.role == Role::Leader && ss.role != Role::Leader {
                self.fail_pending(|| {
                    NodeError::Unavailable("leadership lost while the call was pending".into())
                });
                self.emit(EventKind::LeadershipLost { term: self.term });
            }
            if ss.role == Role::Leader && self.role != Role::Leader {
                self.emit(EventKind::LeaderElected { term });
            }
        }
        let role = rd.soft_state.map_or(self.role, |ss| ss.role);
        if role == Role::Candidate && (self.role != Role::Candidate || term != self.term) {
            self.emit(EventKind::ElectionStarted { term });
        }
        if let Some(hs) = rd.hard_state {
            if let Some(candidate) = hs.vote {
                if candidate != self.id && (term != self.term || self.vote != hs.vote) {
                    self.emit(EventKind::VoteGranted { candidate, term });
                }
            }
            self.vote = hs.vote;
        }
        self.role = role;
        self.term = term;
        if rd.hard_state.is_some() || !rd.entries.is_empty() {
            // Nothing promised by this Ready may leave unless this succeeds:
            // without durable state the node must not vote or ack.
            self.store
                .persist(rd.hard_state, &rd.entries)
                .map_err(|e| format!("writing the log failed: {e}"))?;
        }
        for msg in std::mem::take(&mut rd.messages) {
            self.send(msg);
        }
        for entry in &rd.committed_entries {
            self.apply(entry);
        }
        for rs in &rd.read_states {
            if let Some(reply) = self.pending_reads.remove(&rs.ctx) {
                self.ready_reads.push((rs.index, reply));
            }
        }
        Ok(())
    }

    /// The leader sent a snapshot past our log: persist it, then load the
    /// map from it (entries after it are applied on top).
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let started = std::time::Instant::now();
        let metadata = Metadata::from_snapshot(snapshot.index, &snapshot.data).map_err(|e| {
            format!(
                "the snapshot at index {} from the leader is undecodable: {e}",
                snapshot.index
            )
        })?;
        self.store
            .save_snapshot(snapshot, None)
            .map_err(|e| format!("saving the installed snapshot failed: {e}"))?;
        self.metadata = metadata;
        tracing::info!(
            node = self.id,
            index = snapshot.index,
            bytes = snapshot.data.len(),
            files = self.metadata.len(),
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "installed a snapshot from the leader"
        );
        self.emit(EventKind::SnapshotInstalled {
            index: snapshot.index,
            bytes: snapshot.data.len(),
        });
        Ok(())
    }

    fn send(&mut self, msg: Message) {
        if peer_wire::method_for(&msg).is_none() {
            // A response: it answers the HTTP call that carried the request.
            if let Some(reply) = self.responders.remove(&msg.ctx) {
                let _ = reply.send(Ok(msg));
            }
            return;
        }
        if let Some(Some(tx)) = self.peers.get(msg.to as usize) {
            let _ = tx.send(msg);
        }
    }

    fn apply(&mut self, entry: &Entry) {
        let result = if entry.data.is_empty() {
            self.metadata.mark_applied(entry.index);
            None
        } else {
            match Command::decode(&entry.data) {
                Ok(cmd) => Some(self.metadata.apply(entry.index, &cmd)),
                Err(e) => {
                    // Every node decodes the same bytes the same way, so
                    // skipping is deterministic; a proposal never makes this.
                    tracing::error!(
                        node = self.id,
                        index = entry.index,
                        "undecodable entry skipped: {e}"
                    );
                    self.metadata.mark_applied(entry.index);
                    None
                }
            }
        };
        if self.role == Role::Leader && self.events.receiver_count() > 0 && !entry.data.is_empty() {
            let outcome = match result {
                Some(true) => "applied",
                Some(false) => "refused (version rule)",
                None => "skipped",
            };
            self.emit(EventKind::Committed {
                index: entry.index,
                term: entry.term,
                what: format!("{} -> {outcome}", describe(&entry.data)),
            });
        }
        // Anything pending below this index was overwritten and will never apply.
        while let Some(entry_pending) = self.pending_updates.first_entry() {
            if *entry_pending.key() > entry.index {
                break;
            }
            let (index, (term, reply)) = entry_pending.remove_entry();
            self.answered += 1;
            let outcome = if index == entry.index && term == entry.term {
                Ok(result.unwrap_or(false))
            } else {
                Err(NodeError::Unavailable(
                    "the proposal was overwritten by a new leader".into(),
                ))
            };
            let _ = reply.send(outcome);
        }
    }

    fn serve_ready_reads(&mut self) {
        if self.ready_reads.is_empty() {
            return;
        }
        let applied = self.metadata.applied_index();
        let mut map = None;
        let mut i = 0;
        while i < self.ready_reads.len() {
            if self.ready_reads[i].0 <= applied {
                let (_, reply) = self.ready_reads.swap_remove(i);
                self.answered += 1;
                let value = map.get_or_insert_with(|| self.metadata.view()).clone();
                let _ = reply.send(Ok(value));
            } else {
                i += 1;
            }
        }
    }
}
