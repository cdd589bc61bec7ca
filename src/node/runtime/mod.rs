//! The node runtime: the one owner of a node's Raft core and metadata map,
//! and the only code that turns the core's `Ready`s into I/O. It is written
//! once and run by `run-server.sh` and `run-cluster.sh` (inside
//! the tokio shell in `driver.rs`, with the storage thread and the peer
//! senders), by the simulation (with simulated disks, a lossy network
//! and a tick clock) and by the Raft-paper tests' in-memory clusters
//! (`tests/raft_harness/`). It never blocks, sleeps or reads a clock to decide
//! anything: the shell feeds it requests and ticks, and it answers through
//! oneshots, the `Writer` and the `Transport`.
//!
//! One `Ready`, asynchronously (Raft thesis §10.2.1; raft-rs
//! `on_persist_ready`):
//! 1. the leader's replication messages leave at once;
//! 2. the writes (a snapshot from the leader, hard state, entries) go to the
//!    `Writer`, fsynced only when they must be (a new term, vote or
//!    entries), and the other messages (votes, acks) wait for them;
//! 3. committed entries (only ever durable ones) are applied, answering the
//!    proposals they complete, and reads whose index is applied are served;
//! 4. when the writer reports Ready `n` durable, the messages waiting for it
//!    leave and the core learns it (`on_persisted`), which may commit.
//!
//! A failed write takes the node down cleanly: nothing promised by it
//! leaves, every waiting call is failed, the status says `failed`, and the
//! shell stops.

pub mod io;
mod pending;
pub mod request;
mod snapshots;
pub mod status;
mod transfer;

use std::collections::VecDeque;

use crate::node::blocks::refs::MapFeed;
use crate::node::command::Command;
use crate::node::error::NodeError;
use crate::node::events::EventKind;
use crate::node::metadata::Metadata;
use crate::node::metrics::RaftCounters;
use crate::node::peer_wire;
use crate::node::raft::{
    Entry, HardState, Message, MessageBody, NodeId, Raft, RaftError, Ready, Role, SeededBugs, Term,
};

pub use io::{Transport, Write, Writer};
pub use request::{describe, LogLine, Reply, Request};
pub use status::{NodeStatus, Publisher};

use pending::Pending;
use snapshots::Snapshots;
use status::StallWatch;
use transfer::{Transfers, Waiter, MAX_HELD};

/// Writes submitted and not yet durable, at most: past this the runtime
/// takes no new `Ready` (the core gathers everything into the next one).
pub const MAX_OUTSTANDING_WRITES: usize = 64;

pub struct Runtime<W: Writer, T: Transport> {
    id: NodeId,
    members: Vec<String>,
    raft: Raft,
    metadata: Metadata,
    writer: W,
    transport: T,
    crashed: bool,
    pending: Pending,
    /// Numbers of the Readies whose writes were submitted and are not yet
    /// reported durable, increasing.
    outstanding: VecDeque<u64>,
    /// Messages waiting for the writes of every Ready through their number.
    waiting: VecDeque<(u64, Vec<Message>)>,
    /// Role, term and vote as of the last Ready (for the events).
    role: Role,
    term: Term,
    vote: Option<NodeId>,
    publisher: Publisher,
    stall: StallWatch,
    snapshots: Snapshots,
    /// Set when a write failed; the shell then stops.
    failed: Option<String>,
    /// Leadership transfers: calls waiting on one, proposals held during one.
    transfers: Transfers,
    /// Ticks this non-leader has had proposals waiting (made while it led
    /// and kept through a transfer); they are failed after two election
    /// timeouts if their entries have not applied by then.
    orphan_ticks: u32,
    /// Every entry applied, kept for the simulation's checker when it asked
    /// (`observe_applies`); `None` (nothing kept) in production.
    applied_log: Option<Vec<Entry>>,
    /// What `/metrics` counts here (proposals, commits, elections, leader
    /// changes); unregistered unless `with_metrics` gave the node's.
    counters: RaftCounters,
    /// The last leader this node knew of, for `counters.leader_changes`.
    known_leader: Option<NodeId>,
    /// Told what each applied entry did to the blocks the map references
    /// (the block store's repair and collection); `None` tells no one.
    block_feed: Option<MapFeed>,
    /// The map change counter (`waitForChanges`): the log index of the last
    /// applied entry that changed the map, or of the snapshot the map was
    /// loaded from, whichever is later. Published at apply, before the reads
    /// of the same turn are served, so a read's answer never runs ahead of it.
    map_changes: tokio::sync::watch::Sender<u64>,
}

impl<W: Writer, T: Transport> Runtime<W, T> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        members: Vec<String>,
        raft: Raft,
        metadata: Metadata,
        writer: W,
        transport: T,
        publisher: Publisher,
        snapshot_threshold: u64,
    ) -> Self {
        let role = raft.role();
        let term = raft.term();
        let vote = raft.status().vote;
        let stall = StallWatch::new(raft.config().election_ticks_max);
        let metadata_index = metadata.applied_index();
        Runtime {
            id,
            members,
            raft,
            metadata,
            writer,
            transport,
            crashed: false,
            pending: Pending::default(),
            outstanding: VecDeque::new(),
            waiting: VecDeque::new(),
            role,
            term,
            vote,
            publisher,
            stall,
            snapshots: Snapshots::new(snapshot_threshold),
            failed: None,
            transfers: Transfers::default(),
            orphan_ticks: 0,
            applied_log: None,
            counters: RaftCounters::default(),
            known_leader: None,
            block_feed: None,
            map_changes: tokio::sync::watch::Sender::new(metadata_index),
        }
    }

    /// A receiver of the map change counter (see `map_changes`).
    pub fn map_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.map_changes.subscribe()
    }

    /// This runtime, telling `feed` what the applied entries change in the
    /// blocks the map references.
    pub fn with_block_feed(mut self, feed: MapFeed) -> Self {
        self.block_feed = Some(feed);
        self
    }

    /// This runtime, counting into `counters` (the node's `/metrics`).
    pub fn with_metrics(mut self, counters: RaftCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Test-only: break the Raft rules `bugs` names (the simulation's
    /// self-test; production never calls this).
    pub fn inject_bugs(&mut self, bugs: SeededBugs) {
        self.raft.inject_bugs(bugs);
    }

    /// Keep every entry applied from now on, for `take_applied` (the
    /// simulation checks them against what the cluster committed).
    pub fn observe_applies(&mut self) {
        self.applied_log.get_or_insert_with(Vec::new);
    }

    /// The entries applied since the last call (with `observe_applies`).
    pub fn take_applied(&mut self) -> Vec<Entry> {
        self.applied_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            raft: self.raft.status(),
            crashed: self.crashed,
            files: self.metadata.len(),
            failed: self.failed.clone(),
        }
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn is_crashed(&self) -> bool {
        self.crashed
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The writer, to read (tests inspect what its store holds).
    pub fn writer(&self) -> &W {
        &self.writer
    }

    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// One tick of the Raft clock.
    pub fn tick(&mut self) {
        if self.crashed || self.failed.is_some() {
            return;
        }
        self.raft.tick();
        self.transfers.now += 1;
        if self.role != Role::Leader && !self.pending.updates.is_empty() {
            self.orphan_ticks += 1;
            if self.orphan_ticks > 2 * self.raft.config().election_ticks_max {
                self.pending.fail_updates(|| {
                    NodeError::Unavailable(
                        "leadership moved while the call was pending and its entry was not heard applied"
                            .into(),
                    )
                });
            }
        } else {
            self.orphan_ticks = 0;
        }
        let waiting = self.pending.client_calls();
        if let Some(event) = self.stall.tick(self.role, waiting) {
            self.publisher.emit(event);
        }
    }

    /// Ends a turn (after a batch of requests or a tick): drains the core's
    /// Readies, starts a snapshot if one is due, publishes the status.
    pub fn end_turn(&mut self) {
        self.process_ready();
        if self.transfers.busy() {
            self.settle_transfers();
            self.process_ready();
        }
        self.maybe_snapshot();
        self.publish();
    }

    pub fn publish(&self) {
        self.publisher.publish(self.status());
    }

    /// The shell is stopping: answer everything still waiting.
    pub fn shut_down(&mut self) {
        self.fail_transfers(|| NodeError::Unavailable("node shutting down".into()));
        let why = self.failed.clone();
        self.pending.fail_all(self.id, || match &why {
            Some(e) => NodeError::Unavailable(format!("node stopped: {e}")),
            None => NodeError::Unavailable("node shutting down".into()),
        });
    }

    /// Storage failed: stop for good. Nothing the failed write promised has
    /// left (its messages wait for it), the waiting calls are failed, and
    /// the status tells everyone why.
    fn fail(&mut self, what: String) {
        if self.failed.is_some() {
            return;
        }
        tracing::error!(node = self.id, "{what}; stopping the node");
        self.publisher.emit(EventKind::Failed {
            reason: what.clone(),
        });
        self.failed = Some(what);
        self.waiting.clear();
        self.shut_down();
    }

    fn leader_addr(&self, leader: Option<NodeId>) -> Option<String> {
        leader.and_then(|l| self.members.get(l as usize).cloned())
    }

    fn not_leader(&self, err: RaftError) -> NodeError {
        match err {
            RaftError::NotLeader { leader } => NodeError::NotLeader(self.leader_addr(leader)),
            RaftError::UnknownPeer(id) => {
                NodeError::BadRequest(format!("node {id} is not another member"))
            }
            other => NodeError::Unavailable(other.to_string()),
        }
    }

    /// Why a client call cannot be taken now, if it cannot.
    fn refuse(&self) -> Option<NodeError> {
        if let Some(e) = &self.failed {
            return Some(NodeError::Unavailable(format!("node stopped: {e}")));
        }
        self.crashed.then_some(NodeError::Crashed(self.id))
    }

    pub fn handle(&mut self, req: Request) {
        match req {
            Request::Update { cmd, reply } => {
                if let Some(e) = self.refuse() {
                    let _ = reply.send(Err(e));
                    return;
                }
                match self.raft.propose(cmd.encode()) {
                    Ok((index, term)) => {
                        self.counters.proposals.inc();
                        self.pending.updates.insert(index, (term, reply));
                    }
                    Err(RaftError::TransferInProgress { .. })
                        if self.transfers.held.len() < MAX_HELD =>
                    {
                        if self.transfers.held.is_empty() {
                            self.transfers.held_deadline = self.transfers.now
                                + 2 * u64::from(self.raft.config().election_ticks_max);
                        }
                        self.transfers.held.push_back((cmd, reply));
                    }
                    Err(RaftError::TransferInProgress { to }) => {
                        let _ = reply.send(Err(NodeError::Unavailable(format!(
                            "leadership is being handed to node {to} and {MAX_HELD} calls already wait for it"
                        ))));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.not_leader(e)));
                    }
                }
            }
            Request::ReadMap { reply } => {
                if let Some(e) = self.refuse() {
                    let _ = reply.send(Err(e));
                    return;
                }
                let ctx = self.pending.take_ctx();
                match self.raft.read_index(ctx) {
                    Ok(()) => {
                        self.pending.reads.insert(ctx, reply);
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
                if self.crashed || self.failed.is_some() {
                    let _ = reply.send(Err(NodeError::Crashed(self.id)));
                    return;
                }
                if matches!(msg.body, MessageBody::TimeoutNow) {
                    tracing::info!(
                        node = self.id,
                        term = msg.term,
                        "leader {} chose this node as its successor: campaigning now",
                        msg.from
                    );
                    self.publisher.emit(EventKind::TakingOver {
                        from: msg.from,
                        term: msg.term + 1,
                    });
                }
                let ctx = self.pending.take_ctx();
                msg.ctx = ctx;
                self.pending.responders.insert(ctx, reply);
                if let Err(e) = self.raft.step(msg) {
                    if let Some(reply) = self.pending.responders.remove(&ctx) {
                        let _ = reply.send(Err(NodeError::BadRequest(e.to_string())));
                    }
                }
            }
            Request::PeerResponse(msg) => {
                if !self.crashed && self.failed.is_none() {
                    if let Err(e) = self.raft.step(msg) {
                        tracing::warn!(node = self.id, "dropping bad peer response: {e}");
                    }
                }
            }
            Request::Unreachable(peer) => {
                if !self.crashed && self.failed.is_none() {
                    self.raft.report_unreachable(peer);
                }
            }
            Request::PeerCrashed(peer) => {
                if !self.crashed && self.failed.is_none() {
                    self.raft.report_crashed(peer);
                }
            }
            Request::SnapshotRefused(peer) => {
                if !self.crashed && self.failed.is_none() {
                    tracing::warn!(node = self.id, peer, "peer refused our snapshot");
                    self.raft.report_snapshot_failure(peer);
                }
            }
            Request::TransferLeader { to, reply } => self.transfer_leader(to, reply),
            Request::Quiesce { reply } => self.transfers.quiescing.push(reply),
            Request::Crash { reply } => {
                self.crash();
                self.publish();
                let _ = reply.send(());
            }
            Request::Restore { reply } => {
                if self.crashed {
                    self.crashed = false;
                    self.raft.restore();
                    tracing::info!(node = self.id, "restored");
                    self.publisher.emit(EventKind::Restored);
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
            Request::Persisted { upto, result } => self.on_persisted(upto, result),
            Request::SnapshotPrepared {
                snapshot,
                started,
                result,
            } => self.on_snapshot_prepared(snapshot, started, result),
        }
    }

    fn crash(&mut self) {
        if self.crashed {
            return;
        }
        self.crashed = true;
        self.fail_transfers(|| NodeError::Unavailable("the node crashed".into()));
        self.raft.crash();
        self.pending.fail_all(self.id, || {
            NodeError::Unavailable("the node crashed".into())
        });
        tracing::info!(node = self.id, "crashed");
        if self.role == Role::Leader {
            self.publisher
                .emit(EventKind::LeadershipLost { term: self.term });
        }
        self.role = Role::Follower;
        self.publisher.emit(EventKind::Crashed);
    }

    /// The writer finished every write through Ready `upto`.
    fn on_persisted(&mut self, upto: u64, result: Result<(), String>) {
        if let Err(e) = result {
            self.fail(format!("writing the log failed: {e}"));
            return;
        }
        while self.outstanding.front().is_some_and(|&n| n <= upto) {
            self.outstanding.pop_front();
        }
        self.release_waiting();
        self.raft.on_persisted(upto);
    }

    /// Sends the messages whose writes are all durable now. A crashed node
    /// sends nothing (what it made before the crash is forgotten, as the
    /// core forgot it).
    fn release_waiting(&mut self) {
        let durable_below = self.outstanding.front().copied().unwrap_or(u64::MAX);
        while self
            .waiting
            .front()
            .is_some_and(|(n, _)| *n < durable_below)
        {
            let (_, msgs) = self.waiting.pop_front().expect("checked");
            if self.crashed {
                continue;
            }
            for msg in msgs {
                self.send(msg);
            }
        }
    }

    /// Drains the core's Readies (a crashed node's wait for restore).
    fn process_ready(&mut self) {
        while !self.crashed
            && self.failed.is_none()
            && self.outstanding.len() < MAX_OUTSTANDING_WRITES
            && self.raft.has_ready()
        {
            let rd = self.raft.ready();
            self.handle_ready(rd);
        }
        let applied = self.metadata.applied_index();
        let metadata = &self.metadata;
        self.stall.answered += self.pending.serve_reads(applied, || metadata.view());
    }

    fn handle_ready(&mut self, mut rd: Ready) {
        self.note_roles(&rd);
        if let Some(snapshot) = &rd.snapshot {
            if let Err(e) = self.install_snapshot(snapshot) {
                self.fail(e);
                return;
            }
        }
        // 1. The leader's replication requests leave at once.
        let unsafe_acks = self.raft.bugs().ack_before_persist;
        let (now, later): (Vec<Message>, Vec<Message>) = std::mem::take(&mut rd.messages)
            .into_iter()
            .partition(|m| unsafe_acks || m.may_precede_persist());
        for msg in now {
            self.send(msg);
        }
        // 2. The writes; everything else waits for them.
        if rd.has_writes() {
            self.outstanding.push_back(rd.number);
            let write = Write::Ready {
                number: rd.number,
                snapshot: rd.snapshot.take(),
                hard_state: rd.hard_state,
                entries: std::mem::take(&mut rd.entries),
                sync: rd.must_sync,
            };
            if !later.is_empty() {
                self.waiting.push_back((rd.number, later));
            }
            if let Some(result) = self.writer.submit(write) {
                self.on_persisted(rd.number, result);
                if self.failed.is_some() {
                    return;
                }
            }
        } else if !later.is_empty() {
            self.waiting.push_back((rd.number, later));
            self.release_waiting();
        }
        // 3. Apply (only durable entries are handed out) and note reads.
        for entry in &rd.committed_entries {
            self.apply(entry);
        }
        for rs in &rd.read_states {
            if let Some(reply) = self.pending.reads.remove(&rs.ctx) {
                self.pending.ready_reads.push((rs.index, reply));
            }
        }
    }

    /// Role, term and vote changes: events, and failing the calls pending
    /// on a leader that lost leadership (their outcome is unknown).
    fn note_roles(&mut self, rd: &Ready) {
        let term = rd.hard_state.map_or(self.term, |hs: HardState| hs.term);
        if let Some(ss) = rd.soft_state {
            if self.role == Role::Leader && ss.role != Role::Leader && self.raft.take_quorum_lost()
            {
                tracing::info!(
                    node = self.id,
                    term = self.term,
                    "no majority heard from for an election timeout: stepping down"
                );
                self.publisher
                    .emit(EventKind::QuorumLost { term: self.term });
            }
            if self.role == Role::Leader && ss.role != Role::Leader {
                if let Some((to, _)) = self.transfers.current.take() {
                    // Handed over: the proposals are in the successor's log
                    // (it had all of ours) and apply here as it commits them.
                    self.pending.fail_unconfirmed_reads(|| {
                        NodeError::Unavailable(
                            "leadership was handed over while the read was pending".into(),
                        )
                    });
                    self.transfers.handed_to = Some((
                        to,
                        self.transfers.now + 2 * u64::from(self.raft.config().election_ticks_max),
                    ));
                } else {
                    self.pending.fail_all(self.id, || {
                        NodeError::Unavailable("leadership lost while the call was pending".into())
                    });
                }
                tracing::info!(node = self.id, term = self.term, "no longer the leader");
                self.publisher
                    .emit(EventKind::LeadershipLost { term: self.term });
            }
            if ss.role == Role::Leader && self.role != Role::Leader {
                tracing::info!(node = self.id, term, "elected leader");
                self.publisher.emit(EventKind::LeaderElected { term });
            }
        }
        let role = rd.soft_state.map_or(self.role, |ss| ss.role);
        if role == Role::PreCandidate && self.role != Role::PreCandidate {
            tracing::info!(
                node = self.id,
                term,
                "election timeout: asking for pre-votes"
            );
            self.publisher
                .emit(EventKind::PreVoteStarted { term: term + 1 });
        }
        if let Some(leader) = rd.soft_state.and_then(|ss| ss.leader) {
            if self.known_leader != Some(leader) {
                self.known_leader = Some(leader);
                self.counters.leader_changes.inc();
            }
        }
        let heard_leader = rd.soft_state.is_some_and(|ss| ss.leader.is_some());
        if self.role == Role::PreCandidate
            && role == Role::Follower
            && term == self.term
            && !heard_leader
        {
            tracing::info!(node = self.id, term, "pre-vote refused by a majority");
            self.publisher
                .emit(EventKind::PreVoteRefused { term: term + 1 });
        }
        if role == Role::Candidate && (self.role != Role::Candidate || term != self.term) {
            self.counters.elections.inc();
            tracing::info!(node = self.id, term, "campaigning: asking for votes");
            self.publisher.emit(EventKind::ElectionStarted { term });
        }
        if role != self.role || term != self.term {
            let leader = rd.soft_state.and_then(|ss| ss.leader);
            tracing::info!(node = self.id, term, ?role, ?leader, "role or term changed");
        }
        if let Some(hs) = rd.hard_state {
            if let Some(candidate) = hs.vote {
                if candidate != self.id && (term != self.term || self.vote != hs.vote) {
                    tracing::info!(node = self.id, term, "voted for node {candidate}");
                    self.publisher
                        .emit(EventKind::VoteGranted { candidate, term });
                }
            }
            self.vote = hs.vote;
        }
        self.role = role;
        self.term = term;
    }

    /// `transferLeader`: start the core's transfer and wait for its outcome
    /// (see `settle_transfers`).
    fn transfer_leader(&mut self, to: Option<NodeId>, reply: Reply<NodeId>) {
        if let Some(e) = self.refuse() {
            let _ = reply.send(Err(e));
            return;
        }
        if self.raft.role() != Role::Leader {
            let leader = self.raft.known_leader();
            let _ = reply.send(Err(self.not_leader(RaftError::NotLeader { leader })));
            return;
        }
        let Some(to) = to.or_else(|| self.raft.best_successor()) else {
            let _ = reply.send(Err(NodeError::Unavailable(
                "no follower answered within the last election timeout: nobody to hand leadership to"
                    .into(),
            )));
            return;
        };
        if to == self.id {
            let _ = reply.send(Ok(to));
            return;
        }
        if let Err(e) = self.raft.transfer_leader(to) {
            let _ = reply.send(Err(self.not_leader(e)));
            return;
        }
        if self.transfers.current.map(|(t, _)| t) != Some(to) {
            tracing::info!(
                node = self.id,
                term = self.term,
                "handing leadership to node {to}"
            );
            self.publisher.emit(EventKind::TransferStarted {
                to,
                term: self.term,
            });
        }
        self.transfers.current = Some((to, self.term));
        let deadline = self.transfers.now + 3 * u64::from(self.raft.config().election_ticks_max);
        self.transfers.waiters.push(Waiter {
            to,
            deadline,
            reply,
        });
    }

    /// After a turn: a transfer that ended (given up, or done once the
    /// successor is heard leading) answers its waiters and releases the
    /// proposals held meanwhile.
    fn settle_transfers(&mut self) {
        let leading = self.raft.role() == Role::Leader;
        let transferee = self.raft.transferee();
        if let Some((to, term)) = self.transfers.current {
            if leading && transferee != Some(to) {
                // Given up by the core (or replaced, which sets `current`).
                tracing::warn!(
                    node = self.id,
                    term,
                    "node {to} did not take over within an election timeout: leading on"
                );
                self.publisher.emit(EventKind::TransferAborted { to, term });
                self.transfers.current = None;
            }
        }
        let heard = self.raft.known_leader().filter(|&l| l != self.id);
        if let Some((to, deadline)) = self.transfers.handed_to {
            if let Some(leader) = heard {
                let term = self.raft.term();
                if leader == to {
                    tracing::info!(node = self.id, term, "leadership transferred to node {to}");
                    self.publisher
                        .emit(EventKind::LeadershipTransferred { to, term });
                }
                self.transfers.handed_to = None;
            } else if self.transfers.now >= deadline || leading {
                self.transfers.handed_to = None;
            }
        }
        let now = self.transfers.now;
        let current = self.transfers.current.map(|(t, _)| t);
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.transfers.waiters) {
            let outcome = if leading && current == Some(w.to) && now < w.deadline {
                keep.push(w);
                continue;
            } else if leading {
                Err(NodeError::Unavailable(format!(
                    "node {} did not take over within an election timeout; node {} still leads",
                    w.to, self.id
                )))
            } else if let Some(leader) = heard {
                if leader == w.to {
                    Ok(leader)
                } else {
                    Err(NodeError::Unavailable(format!(
                        "node {leader} took over instead of node {}",
                        w.to
                    )))
                }
            } else if now < w.deadline {
                keep.push(w);
                continue;
            } else {
                Err(NodeError::Unavailable(format!(
                    "this node stepped down for node {} but no leader was heard since",
                    w.to
                )))
            };
            let _ = w.reply.send(outcome);
        }
        self.transfers.waiters = keep;
        if self.pending.updates.is_empty() && self.transfers.held.is_empty() {
            for reply in self.transfers.quiescing.drain(..) {
                let _ = reply.send(());
            }
        }
        if !self.transfers.held.is_empty() && transferee.is_none() {
            if leading {
                for (cmd, reply) in std::mem::take(&mut self.transfers.held) {
                    self.handle(Request::Update { cmd, reply });
                }
            } else if heard.is_some() || now >= self.transfers.held_deadline {
                let hint = self.leader_addr(heard);
                for (_, reply) in std::mem::take(&mut self.transfers.held) {
                    let _ = reply.send(Err(NodeError::NotLeader(hint.clone())));
                }
            }
        }
    }

    /// Answers every transfer waiter and held proposal with `err()`.
    fn fail_transfers(&mut self, err: impl Fn() -> NodeError) {
        for w in std::mem::take(&mut self.transfers.waiters) {
            let _ = w.reply.send(Err(err()));
        }
        for (_, reply) in std::mem::take(&mut self.transfers.held) {
            let _ = reply.send(Err(err()));
        }
        self.transfers.current = None;
        self.transfers.handed_to = None;
        self.transfers.quiescing.clear();
    }

    /// A request goes to its peer's sender; a response answers the HTTP
    /// call that carried the request.
    fn send(&mut self, msg: Message) {
        if peer_wire::method_for(&msg).is_none() {
            if let Some(reply) = self.pending.responders.remove(&msg.ctx) {
                let _ = reply.send(Ok(msg));
            }
            return;
        }
        self.transport.send(msg);
    }

    fn apply(&mut self, entry: &Entry) {
        self.counters.commits.inc();
        if let Some(log) = &mut self.applied_log {
            log.push(entry.clone());
        }
        let result = if entry.data.is_empty() {
            self.metadata.mark_applied(entry.index);
            None
        } else {
            match Command::decode(&entry.data) {
                Ok(cmd) => {
                    let Command::UpdateFile {
                        filename, hashlist, ..
                    } = &cmd;
                    // The entry this one replaces, only when someone listens.
                    let old = self
                        .block_feed
                        .as_ref()
                        .map(|_| self.metadata.get(filename).cloned());
                    let applied = self.metadata.apply(entry.index, &cmd);
                    if let (true, Some(feed), Some(old)) = (applied, &self.block_feed, old) {
                        feed.file_changed(entry.index, old.as_ref(), hashlist);
                    }
                    if applied {
                        self.map_changes.send_replace(entry.index);
                    }
                    Some(applied)
                }
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
        if self.role == Role::Leader && self.publisher.has_listeners() && !entry.data.is_empty() {
            let outcome = match result {
                Some(true) => "applied",
                Some(false) => "refused (version rule)",
                None => "skipped",
            };
            self.publisher.emit(EventKind::Committed {
                index: entry.index,
                term: entry.term,
                what: format!("{} -> {outcome}", describe(&entry.data)),
            });
        }
        self.stall.answered += self.pending.applied(entry.index, entry.term, result);
    }
}

#[cfg(test)]
mod tests;
