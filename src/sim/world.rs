//! The simulated cluster. `World` holds N nodes, each the production node
//! `Runtime` over a `SimWriter` (its model store, and in disk runs the real
//! WAL on a `SimFs`) and a `SimTransport`, plus the network, the clients
//! and the checker. Every public method here is one *step* (a tick, a
//! delivery, a write completing, a client call, a fault), after which what
//! the stepped node emitted is collected and checked (`node.rs`) and the
//! cluster-wide invariants are checked.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::{broadcast, oneshot, watch};

use super::checker::{violation, Checker, Violation};
use super::clients::Clients;
use super::network::Network;
use super::options::Plan;
use super::trace;
use super::writer::{ModelStore, SimTransport, SimWriter};
use crate::node::error::NodeError;
use crate::node::metadata::Metadata;
use crate::node::raft::{Exchange, LogIndex, Message, NodeId, Raft, RaftConfig, Role, SeededBugs};
use crate::node::runtime::{NodeStatus, Publisher, Request, Runtime};

pub type SimRuntime = Runtime<SimWriter, SimTransport>;

/// A peer call a node took and has not answered yet.
pub struct PeerCall {
    pub from: NodeId,
    pub exchange: Exchange,
    pub answer: oneshot::Receiver<Result<Message, NodeError>>,
}

pub struct SimNode {
    pub rt: SimRuntime,
    pub boots: u64,
    pub calls: Vec<PeerCall>,
    /// Last index applied since the runtime was (re)built.
    pub apply_cursor: LogIndex,
}

impl SimNode {
    pub fn crashed(&self) -> bool {
        self.rt.is_crashed()
    }

    pub fn raft(&self) -> &Raft {
        self.rt.raft()
    }

    pub fn store(&mut self) -> &mut ModelStore {
        &mut self.rt.writer_mut().store
    }
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub steps: u64,
    pub crashes: u64,
    pub restores: u64,
    pub reboots: u64,
    pub partitions: u64,
    pub compactions: u64,
    pub snapshots_installed: u64,
    pub disk_faults: u64,
    pub disk_recoveries: u64,
    pub writes_completed: u64,
    pub unreachable_reports: u64,
    /// `transferLeader` calls made, and answered with the new leader.
    pub transfers: u64,
    pub transfers_done: u64,
}

pub struct World {
    pub seed: u64,
    pub plan: Plan,
    pub bugs: SeededBugs,
    pub rng: SmallRng,
    pub tick: u64,
    pub nodes: Vec<SimNode>,
    pub net: Network,
    pub checker: Checker,
    pub clients: Clients,
    pub counters: Counters,
    pub trace: bool,
    /// `Unreachable` reports due: (tick, to the node, about the peer).
    /// `true`: the peer answered fault 1 (`crash()`ed, but alive).
    pub unreachable: Vec<(u64, NodeId, NodeId, bool)>,
    pub references: super::snapshots::References,
    /// Transfers asked for and not answered yet: (leader, successor, answer).
    pub transfers: Vec<(NodeId, NodeId, TransferAnswer)>,
}

type TransferAnswer = oneshot::Receiver<Result<NodeId, NodeError>>;

/// A core's RNG seed: distinct per seed, node and boot.
fn core_seed(seed: u64, node: NodeId, boot: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (node << 32)
        ^ boot.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Member addresses as the runtime names them (in `NotLeader`).
pub fn member(n: NodeId) -> String {
    format!("sim:{n}")
}

impl World {
    pub fn new(seed: u64, plan: Plan, bugs: SeededBugs, rng: SmallRng, trace: bool) -> World {
        let n = plan.nodes;
        let mut w = World {
            seed,
            net: Network::new(n, plan.mix.loss, plan.mix.duplicate, plan.mix.max_delay),
            checker: Checker::new(n),
            clients: Clients::new(&plan),
            plan,
            bugs,
            rng,
            tick: 0,
            nodes: Vec::new(),
            counters: Counters::default(),
            trace,
            unreachable: Vec::new(),
            references: Default::default(),
            transfers: Vec::new(),
        };
        for id in 0..n as NodeId {
            let writer = SimWriter {
                disk: w
                    .plan
                    .disk_segment_bytes
                    .map(|bytes| super::disk::SimDisk::new(id, n, bytes)),
                ..SimWriter::default()
            };
            let raft = Raft::new(
                w.config(id, 0),
                Default::default(),
                Default::default(),
                Vec::new(),
            )
            .expect("the sim's config is valid");
            let rt = w.runtime(id, raft, Metadata::new(), writer);
            w.nodes.push(SimNode {
                rt,
                boots: 0,
                calls: Vec::new(),
                apply_cursor: 0,
            });
        }
        w
    }

    pub(super) fn config(&self, id: NodeId, boot: u64) -> RaftConfig {
        let p = &self.plan;
        RaftConfig {
            id,
            members: (0..p.nodes as NodeId).collect(),
            election_ticks_min: p.election_ticks_min,
            election_ticks_max: p.election_ticks_max,
            heartbeat_ticks: p.heartbeat_ticks,
            seed: core_seed(self.seed, id, boot),
            max_entries_per_message: p.max_entries_per_message,
            max_bytes_per_message: p.max_bytes_per_message,
            max_inflight: p.max_inflight,
            pre_vote: p.pre_vote,
            check_quorum: p.check_quorum,
        }
    }

    /// A node's runtime, as `crate::node::start_on` builds it.
    pub(super) fn runtime(
        &self,
        id: NodeId,
        raft: Raft,
        metadata: Metadata,
        writer: SimWriter,
    ) -> SimRuntime {
        let (status, _) = watch::channel(NodeStatus {
            raft: raft.status(),
            crashed: false,
            files: metadata.len(),
            failed: None,
        });
        let (events, _) = broadcast::channel(1);
        let members = (0..self.plan.nodes as NodeId).map(member).collect();
        let mut rt = Runtime::new(
            id,
            members,
            raft,
            metadata,
            writer,
            SimTransport::default(),
            Publisher::new(id, status, events),
            self.plan.snapshot_every,
        );
        rt.inject_bugs(self.bugs);
        rt.observe_applies();
        rt
    }

    pub fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            outln!("t{:<5} #{:<6} {}", self.tick, self.counters.steps, what());
        }
    }

    pub fn live(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|&n| !self.nodes[n as usize].crashed())
            .collect()
    }

    pub fn crashed(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|&n| self.nodes[n as usize].crashed())
            .collect()
    }

    /// The leader of the highest term any live node leads, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.crashed() && n.raft().role() == Role::Leader)
            .max_by_key(|(_, n)| n.raft().term())
            .map(|(i, _)| i as NodeId)
    }

    pub(super) fn begin_step(&mut self) {
        self.counters.steps += 1;
    }

    /// After a step on node `n`: collect and check what it emitted, then
    /// the cluster-wide invariants.
    pub(super) fn end_step(&mut self, n: Option<NodeId>) -> Result<(), Violation> {
        if let Some(n) = n {
            self.collect(n)?;
        }
        self.poll_clients()?;
        let rafts: Vec<&Raft> = self.nodes.iter().map(|n| n.raft()).collect();
        self.checker.after_step(&rafts)
    }

    /// Step: node `n`'s clock ticks.
    pub fn tick_node(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        let rt = &mut self.nodes[n as usize].rt;
        let before = rt.raft().role();
        rt.tick();
        rt.end_turn();
        let after = rt.raft().role();
        if before != after {
            self.log(|| format!("n{n} tick: {before:?} -> {after:?}"));
        }
        self.end_step(Some(n))
    }

    /// Step: the network delivers `msg` (dropped if the sender is down or
    /// the link is cut by now). A request is a peer call on the receiver,
    /// answered on a oneshot; a response goes to the requester's runtime.
    pub fn deliver(&mut self, msg: Message) -> Result<(), Violation> {
        self.begin_step();
        let (from, to) = (msg.from, msg.to);
        let is_request = !msg.body.is_response();
        if self.nodes[from as usize].crashed() || !self.net.link_up(from, to) {
            self.net.stats.dropped += 1;
            self.log(|| format!("drop    {}", trace::msg(&msg)));
            if is_request {
                self.maybe_report_unreachable(from, to);
            }
            return self.end_step(None);
        }
        self.net.stats.delivered += 1;
        self.log(|| format!("deliver {}", trace::msg(&msg)));
        let node = &mut self.nodes[to as usize];
        if is_request {
            let exchange = msg.body.exchange();
            let (reply, answer) = oneshot::channel();
            node.rt.handle(Request::Peer { msg, reply });
            node.calls.push(PeerCall {
                from,
                exchange,
                answer,
            });
        } else {
            node.rt.handle(Request::PeerResponse(msg));
        }
        node.rt.end_turn();
        self.end_step(Some(to))
    }

    /// The production sender reports a request that got no answer; here
    /// only sometimes (a silent loss is the other case the core must cope
    /// with), a few ticks later.
    pub(super) fn maybe_report_unreachable(&mut self, requester: NodeId, peer: NodeId) {
        if self.rng.gen_bool(0.3) {
            let due = self.tick + self.rng.gen_range(1..=4);
            self.unreachable.push((due, requester, peer, false));
        }
    }

    /// A crashed node answered a request of `requester` with fault 1: the
    /// requester hears it a tick or two later, unless the answer is lost on
    /// a cut link (then it is a missing answer, as in production).
    pub(super) fn report_crashed_answer(&mut self, requester: NodeId, peer: NodeId) {
        if self.net.link_up(peer, requester) && self.rng.gen_bool(0.9) {
            let due = self.tick + self.rng.gen_range(1..=2);
            self.unreachable.push((due, requester, peer, true));
        } else {
            self.maybe_report_unreachable(requester, peer);
        }
    }

    /// Step: `to` learns that a request to `peer` got no answer, or (with
    /// `crashed`) that `peer` answered it with fault 1.
    fn report_unreachable(
        &mut self,
        to: NodeId,
        peer: NodeId,
        crashed: bool,
    ) -> Result<(), Violation> {
        self.begin_step();
        self.counters.unreachable_reports += 1;
        let what = if crashed { "crashed" } else { "unreachable" };
        self.log(|| format!("n{to} hears n{peer} is {what}"));
        let rt = &mut self.nodes[to as usize].rt;
        rt.handle(if crashed {
            Request::PeerCrashed(peer)
        } else {
            Request::Unreachable(peer)
        });
        rt.end_turn();
        self.end_step(Some(to))
    }

    /// Step: node `n` crashes (state kept; it takes nothing until restored).
    pub fn crash(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        self.counters.crashes += 1;
        self.log(|| format!("CRASH n{n}"));
        let rt = &mut self.nodes[n as usize].rt;
        let (reply, mut done) = oneshot::channel();
        rt.handle(Request::Crash { reply });
        rt.end_turn();
        if done.try_recv().is_err() {
            return violation("crash is answered", format!("node {n}"));
        }
        if rt.raft().role() != Role::Follower || rt.raft().leader().is_some() {
            return violation(
                "crash semantics",
                format!("node {n} is not a leaderless follower after crash"),
            );
        }
        self.end_step(Some(n))
    }

    /// Step: the leader `n` is asked to hand leadership to `to`. The answer
    /// comes later (`poll_transfers`): the successor's id once `n` hears
    /// it lead, or a fault if it did not take over.
    pub fn transfer(&mut self, n: NodeId, to: NodeId) -> Result<(), Violation> {
        self.begin_step();
        self.counters.transfers += 1;
        self.log(|| format!("TRANSFER n{n} -> n{to}"));
        let rt = &mut self.nodes[n as usize].rt;
        let (reply, answer) = oneshot::channel();
        rt.handle(Request::TransferLeader {
            to: Some(to),
            reply,
        });
        rt.end_turn();
        self.transfers.push((n, to, answer));
        self.end_step(Some(n))
    }

    /// Collects the answers of transfers: one that says done must name
    /// the successor asked for, and that node must have led (in a term
    /// above the one the transfer started in).
    pub fn poll_transfers(&mut self) -> Result<(), Violation> {
        let mut left = Vec::new();
        for (n, to, mut answer) in std::mem::take(&mut self.transfers) {
            match answer.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => left.push((n, to, answer)),
                Ok(Ok(led)) => {
                    if led != to {
                        return violation(
                            "transfer answers",
                            format!("node {n} was asked for {to} and answered {led}"),
                        );
                    }
                    self.counters.transfers_done += 1;
                }
                Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {}
            }
        }
        self.transfers = left;
        Ok(())
    }

    /// Step: node `n` comes back from a crash.
    pub fn restore(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        self.counters.restores += 1;
        self.log(|| format!("RESTORE n{n}"));
        let rt = &mut self.nodes[n as usize].rt;
        let (reply, mut done) = oneshot::channel();
        rt.handle(Request::Restore { reply });
        rt.end_turn();
        if done.try_recv().is_err() {
            return violation("restore is answered", format!("node {n}"));
        }
        self.end_step(Some(n))
    }

    /// Step: node `n` loses power and restarts from its store.
    pub fn reboot(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        self.counters.reboots += 1;
        self.restart_node(n, None)?;
        self.end_step(Some(n))
    }

    /// Step: the partition changes.
    pub fn partition(
        &mut self,
        describe: String,
        apply: impl FnOnce(&mut Network),
    ) -> Result<(), Violation> {
        self.begin_step();
        self.counters.partitions += 1;
        self.log(|| format!("PARTITION {describe}"));
        apply(&mut self.net);
        self.end_step(None)
    }

    /// Messages due now, one tick per live node, the due `Unreachable`
    /// reports and, on nodes with writes queued, sometimes a completion,
    /// in random order.
    pub fn run_tick(&mut self) -> Result<(), Violation> {
        self.tick += 1;
        enum Ev {
            Tick(NodeId),
            Msg(Message),
            Complete(NodeId),
            Unreachable(NodeId, NodeId, bool),
        }
        let mut evs: Vec<Ev> = self
            .net
            .take_due(self.tick, &mut self.rng)
            .into_iter()
            .map(Ev::Msg)
            .collect();
        evs.extend(self.live().into_iter().map(Ev::Tick));
        // Each node gets one or two chances a tick to complete writes, so
        // several Readies are often outstanding at once.
        for n in 0..self.nodes.len() as NodeId {
            for _ in 0..self.rng.gen_range(1..=2) {
                evs.push(Ev::Complete(n));
            }
        }
        let now = self.tick;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unreachable)
            .into_iter()
            .partition(|(t, _, _, _)| *t <= now);
        self.unreachable = later;
        evs.extend(
            due.into_iter()
                .map(|(_, to, peer, crashed)| Ev::Unreachable(to, peer, crashed)),
        );
        evs.shuffle(&mut self.rng);
        for ev in evs {
            match ev {
                Ev::Tick(n) if !self.nodes[n as usize].crashed() => self.tick_node(n)?,
                Ev::Tick(_) => {}
                Ev::Msg(m) => self.deliver(m)?,
                Ev::Complete(n) => {
                    if !self.nodes[n as usize].rt.writer_mut().queue.is_empty()
                        && self.rng.gen_bool(0.6)
                    {
                        self.complete_writes(n)?;
                    }
                }
                Ev::Unreachable(to, peer, crashed) => self.report_unreachable(to, peer, crashed)?,
            }
            // Leader churn strikes between any two steps, e.g. between an ack
            // and the next batch.
            if self.plan.mix.crash_leader > 0.0 && self.rng.gen_bool(self.plan.mix.crash_leader) {
                if let Some(l) = self.leader() {
                    self.crash(l)?;
                }
            }
        }
        Ok(())
    }
}
