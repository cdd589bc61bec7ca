//! The simulated cluster. `World` holds N cores, each with an in-memory store
//! (hard state + log) and an applied list (its state machine), the network
//! and the checker. Every public method here is one *step* (a tick, a
//! delivery, a client call, a fault), after which the invariants are checked;
//! `driver.rs` plays the node driver for the core that was stepped.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::checker::{violation, Checker, Violation};
use super::network::Network;
use super::options::Plan;
use super::trace;
use crate::node::raft::{
    Entry, HardState, LogIndex, Message, MessageBody, NodeId, Raft, RaftConfig, RaftError, Ready,
    Role, Snapshot, Term,
};

pub struct SimNode {
    pub raft: Raft,
    /// The store: what survives a reboot. `log` holds the entries after
    /// `snapshot.index` (index 0: no snapshot).
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub log: Vec<Entry>,
    /// The state machine: entries applied, index i at `[i - 1]`.
    pub applied: Vec<Entry>,
    /// Last index applied since the core was (re)built.
    pub apply_cursor: u64,
    pub crashed: bool,
    pub boots: u64,
    /// A `Ready` that was persisted, sent and applied but whose `advance` the
    /// driver has not called yet (it is called before the next `ready()`).
    pub unadvanced: Option<Ready>,
    /// In `Plan::disk` runs: the real write-ahead log on a simulated disk,
    /// written before the model store above (which it must always match).
    pub disk: Option<super::disk::SimDisk>,
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub steps: u64,
    pub proposals: u64,
    pub proposals_accepted: u64,
    pub reads: u64,
    pub crashes: u64,
    pub restores: u64,
    pub reboots: u64,
    pub partitions: u64,
    pub compactions: u64,
    pub snapshots_installed: u64,
    pub disk_faults: u64,
    pub disk_recoveries: u64,
}

pub struct World {
    pub seed: u64,
    pub plan: Plan,
    pub rng: SmallRng,
    pub tick: u64,
    pub nodes: Vec<SimNode>,
    pub net: Network,
    pub checker: Checker,
    pub counters: Counters,
    pub trace: bool,
    next_payload: u64,
    next_read_ctx: u64,
    next_request_ctx: u64,
}

/// A core's RNG seed: distinct per seed, node and boot.
fn core_seed(seed: u64, node: NodeId, boot: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (node << 32)
        ^ boot.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

impl World {
    pub fn new(seed: u64, plan: Plan, rng: SmallRng, trace: bool) -> World {
        let n = plan.nodes;
        let mut w = World {
            seed,
            net: Network::new(n, plan.mix.loss, plan.mix.duplicate, plan.mix.max_delay),
            checker: Checker::new(n),
            plan,
            rng,
            tick: 0,
            nodes: Vec::new(),
            counters: Counters::default(),
            trace,
            next_payload: 0,
            next_read_ctx: 0,
            next_request_ctx: 0,
        };
        for id in 0..n as NodeId {
            let raft = Raft::new(
                w.config(id, 0),
                HardState::default(),
                Snapshot::default(),
                Vec::new(),
            )
            .expect("the sim's config is valid");
            w.nodes.push(SimNode {
                raft,
                hard_state: HardState::default(),
                snapshot: Snapshot::default(),
                log: Vec::new(),
                applied: Vec::new(),
                apply_cursor: 0,
                crashed: false,
                boots: 0,
                unadvanced: None,
                disk: w
                    .plan
                    .disk_segment_bytes
                    .map(|bytes| super::disk::SimDisk::new(id, n, bytes)),
            });
        }
        w
    }

    fn config(&self, id: NodeId, boot: u64) -> RaftConfig {
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
        }
    }

    pub fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            outln!("t{:<5} #{:<6} {}", self.tick, self.counters.steps, what());
        }
    }

    pub fn live(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|&n| !self.nodes[n as usize].crashed)
            .collect()
    }

    pub fn crashed(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|&n| self.nodes[n as usize].crashed)
            .collect()
    }

    /// The leader of the highest term any live node leads, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.crashed && n.raft.role() == Role::Leader)
            .max_by_key(|(_, n)| n.raft.term())
            .map(|(i, _)| i as NodeId)
    }

    fn begin_step(&mut self) {
        self.counters.steps += 1;
    }

    fn end_step(&mut self) -> Result<(), Violation> {
        let rafts: Vec<&Raft> = self.nodes.iter().map(|n| &n.raft).collect();
        self.checker.after_step(&rafts)
    }

    /// Step: node `n`'s clock ticks.
    pub fn tick_node(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        let before = self.nodes[n as usize].raft.role();
        self.nodes[n as usize].raft.tick();
        let after = self.nodes[n as usize].raft.role();
        if before != after {
            self.log(|| format!("n{n} tick: {before:?} -> {after:?}"));
        }
        self.process_ready(n, None)?;
        self.end_step()
    }

    /// Step: the network delivers `msg` (dropped if an endpoint is down or
    /// the link is cut by now).
    pub fn deliver(&mut self, mut msg: Message) -> Result<(), Violation> {
        self.begin_step();
        let (from, to) = (msg.from, msg.to);
        if self.nodes[to as usize].crashed
            || self.nodes[from as usize].crashed
            || !self.net.link_up(from, to)
        {
            self.net.stats.dropped += 1;
            self.log(|| format!("drop    {}", trace::msg(&msg)));
            return self.end_step();
        }
        self.net.stats.delivered += 1;
        let expect = match msg.body {
            MessageBody::AppendEntries { .. } | MessageBody::RequestVote { .. } => {
                self.next_request_ctx += 1;
                msg.ctx = self.next_request_ctx;
                Some((
                    msg.ctx,
                    from,
                    matches!(msg.body, MessageBody::RequestVote { .. }),
                ))
            }
            _ => None,
        };
        self.log(|| format!("deliver {}", trace::msg(&msg)));
        if let Err(e) = self.nodes[to as usize].raft.step(msg) {
            return violation(
                "correct messages are accepted",
                format!("node {to} refused a message: {e}"),
            );
        }
        self.process_ready(to, expect)?;
        self.end_step()
    }

    /// Step: a client proposes a fresh payload at a random live node,
    /// following one NotLeader redirect.
    pub fn propose(&mut self) -> Result<(), Violation> {
        self.begin_step();
        let live = self.live();
        if let Some(&first) = live.choose(&mut self.rng) {
            let payload = self.fresh_payload();
            self.propose_at(first, payload)?;
        }
        self.end_step()
    }

    /// Step: propose `payload` at node `n` only. Returns where it went.
    pub fn propose_exactly_at(
        &mut self,
        n: NodeId,
        payload: Bytes,
    ) -> Result<Option<(LogIndex, Term)>, Violation> {
        self.begin_step();
        self.counters.proposals += 1;
        let placed = match self.nodes[n as usize].raft.propose(payload.clone()) {
            Ok(placed) => placed,
            Err(_) => return self.end_step().map(|_| None),
        };
        self.accepted(n, payload, placed)?;
        self.end_step()?;
        Ok(Some(placed))
    }

    pub fn fresh_payload(&mut self) -> Bytes {
        self.next_payload += 1;
        let pad = self.rng.gen_range(0..48);
        Bytes::from(format!(
            "s{}p{}:{}",
            self.seed,
            self.next_payload,
            "x".repeat(pad)
        ))
    }

    fn accepted(
        &mut self,
        n: NodeId,
        payload: Bytes,
        (index, term): (LogIndex, Term),
    ) -> Result<(), Violation> {
        self.counters.proposals_accepted += 1;
        self.log(|| format!("propose at n{n}: {payload:?} -> ({index}, t{term})"));
        self.checker.promised(payload, index, term);
        self.process_ready(n, None)
    }

    /// Propose `payload` at `n`, or at the leader it names.
    fn propose_at(&mut self, n: NodeId, payload: Bytes) -> Result<(), Violation> {
        self.counters.proposals += 1;
        let mut target = n;
        for attempt in 0..2 {
            let raft = &mut self.nodes[target as usize].raft;
            match raft.propose(payload.clone()) {
                Ok(placed) => return self.accepted(target, payload, placed),
                Err(RaftError::NotLeader { leader }) => {
                    if leader != raft.leader() {
                        return violation(
                            "NotLeader names the leader",
                            format!("node {target} said {leader:?}"),
                        );
                    }
                    match leader {
                        Some(l) if attempt == 0 && !self.nodes[l as usize].crashed => target = l,
                        _ => return Ok(()),
                    }
                }
                Err(e) => return violation("propose errors", format!("node {target}: {e}")),
            }
        }
        Ok(())
    }

    /// Step: a client asks a random live node for a linearizable read.
    pub fn read(&mut self) -> Result<(), Violation> {
        self.begin_step();
        let live = self.live();
        if let Some(&first) = live.choose(&mut self.rng) {
            self.next_read_ctx += 1;
            let ctx = self.next_read_ctx;
            let mut target = first;
            for attempt in 0..2 {
                match self.nodes[target as usize].raft.read_index(ctx) {
                    Ok(()) => {
                        self.counters.reads += 1;
                        self.checker.read_requested(ctx, target);
                        self.log(|| format!("read_index at n{target} ctx={ctx}"));
                        self.process_ready(target, None)?;
                        break;
                    }
                    Err(RaftError::NotLeader { leader: Some(l) })
                        if attempt == 0 && !self.nodes[l as usize].crashed =>
                    {
                        target = l
                    }
                    Err(RaftError::NotLeader { .. }) => break,
                    Err(e) => return violation("read_index errors", format!("node {target}: {e}")),
                }
            }
        }
        self.end_step()
    }

    /// Step: node `n` crashes (memory kept; no ticks, no messages).
    pub fn crash(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        self.counters.crashes += 1;
        self.log(|| format!("CRASH n{n}"));
        self.nodes[n as usize].crashed = true;
        self.nodes[n as usize].raft.crash();
        if self.nodes[n as usize].raft.role() != Role::Follower
            || self.nodes[n as usize].raft.leader().is_some()
        {
            return violation(
                "crash semantics",
                format!("node {n} is not a leaderless follower after crash()"),
            );
        }
        self.process_ready(n, None)?;
        self.end_step()
    }

    /// Step: node `n` comes back from a crash.
    pub fn restore(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        self.counters.restores += 1;
        self.log(|| format!("RESTORE n{n}"));
        self.nodes[n as usize].crashed = false;
        self.nodes[n as usize].raft.restore();
        self.process_ready(n, None)?;
        self.end_step()
    }

    /// Step: node `n` restarts from its store, losing its memory (with a
    /// disk: the power is cut first, see `disk.rs`).
    pub fn reboot(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        self.counters.reboots += 1;
        self.restart_node(n, None)?;
        self.process_ready(n, None)?;
        self.end_step()
    }

    /// A new core for node `n` from its store; the state machine restarts
    /// from the store's snapshot.
    pub(super) fn rebuild_core(&mut self, n: NodeId) -> Result<(), Violation> {
        let node = &self.nodes[n as usize];
        let boot = node.boots + 1;
        let cfg = self.config(n, boot);
        let raft = match Raft::new(
            cfg,
            node.hard_state,
            node.snapshot.clone(),
            node.log.clone(),
        ) {
            Ok(r) => r,
            Err(e) => return violation("storage restores", format!("node {n}: {e}")),
        };
        self.log(|| {
            format!(
                "REBOOT n{n} from {:?} + snapshot at {} + {} entries",
                node.hard_state,
                node.snapshot.index,
                node.log.len()
            )
        });
        let snap = node.snapshot.clone();
        let node = &mut self.nodes[n as usize];
        node.raft = raft;
        node.boots = boot;
        node.apply_cursor = 0;
        node.crashed = false;
        node.unadvanced = None;
        if snap.index > 0 {
            self.load_snapshot(n, &snap)?;
        }
        Ok(())
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
        self.end_step()
    }

    /// Messages due now plus one tick per live node, in random order.
    pub fn run_tick(&mut self) -> Result<(), Violation> {
        self.tick += 1;
        enum Ev {
            Tick(NodeId),
            Msg(Message),
        }
        let mut evs: Vec<Ev> = self
            .net
            .take_due(self.tick, &mut self.rng)
            .into_iter()
            .map(Ev::Msg)
            .collect();
        evs.extend(self.live().into_iter().map(Ev::Tick));
        evs.shuffle(&mut self.rng);
        for ev in evs {
            match ev {
                Ev::Tick(n) if !self.nodes[n as usize].crashed => self.tick_node(n)?,
                Ev::Tick(_) => {}
                Ev::Msg(m) => self.deliver(m)?,
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
