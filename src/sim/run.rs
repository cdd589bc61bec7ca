//! One seeded run: a chaos phase (faults, client calls, ticks, writes
//! completing), then a heal phase that must show liveness: all links up,
//! every node restored, no loss; within a bound (see
//! `SimOptions::heal_ticks`) a single leader must exist and a fresh
//! `updatefile` must be acknowledged and applied on every node. Then the
//! run settles (no new calls) until every call is answered and every node
//! has applied everything committed, and what the clients saw is judged
//! (`clients.rs`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::checker::{violation, Violation};
use super::clients::ClientStats;
use super::options::{Plan, SimOptions};
use super::world::World;
use crate::node::raft::{NodeId, Role, SeededBugs};

/// What one run (or many, summed) exercised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub runs: u64,
    pub ticks: u64,
    pub steps: u64,
    pub leaders_elected: u64,
    pub max_term: u64,
    pub committed: u64,
    /// The clients' calls, their answers, and what the checker judged.
    pub clients: ClientStats,
    pub writes_completed: u64,
    pub crashes: u64,
    pub restores: u64,
    pub reboots: u64,
    pub partitions: u64,
    pub compactions: u64,
    pub snapshots_installed: u64,
    pub disk_faults: u64,
    pub disk_recoveries: u64,
    pub unreachable_reports: u64,
    /// Leadership transfers asked for, and completed (answered with the
    /// successor asked for).
    pub transfers: u64,
    pub transfers_done: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub messages_duplicated: u64,
    /// Ticks the heal phase needed (summed; see `max_heal_ticks`).
    pub heal_ticks: u64,
    pub max_heal_ticks: u64,
}

impl SimStats {
    pub fn add(&mut self, o: &SimStats) {
        self.runs += o.runs;
        self.ticks += o.ticks;
        self.steps += o.steps;
        self.leaders_elected += o.leaders_elected;
        self.max_term = self.max_term.max(o.max_term);
        self.committed += o.committed;
        self.clients.add(&o.clients);
        self.writes_completed += o.writes_completed;
        self.crashes += o.crashes;
        self.restores += o.restores;
        self.reboots += o.reboots;
        self.transfers += o.transfers;
        self.transfers_done += o.transfers_done;
        self.partitions += o.partitions;
        self.compactions += o.compactions;
        self.snapshots_installed += o.snapshots_installed;
        self.disk_faults += o.disk_faults;
        self.disk_recoveries += o.disk_recoveries;
        self.unreachable_reports += o.unreachable_reports;
        self.messages_sent += o.messages_sent;
        self.messages_dropped += o.messages_dropped;
        self.messages_duplicated += o.messages_duplicated;
        self.heal_ticks += o.heal_ticks;
        self.max_heal_ticks = self.max_heal_ticks.max(o.max_heal_ticks);
    }
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "runs {}, ticks {}, steps {}",
            self.runs, self.ticks, self.steps
        )?;
        writeln!(
            f,
            "leaders elected {} (max term {})",
            self.leaders_elected, self.max_term
        )?;
        writeln!(
            f,
            "updatefile {} (true {}, false {}, unknown {}, refused {}), entries committed {}",
            self.clients.updates,
            self.clients.updates_true,
            self.clients.updates_false,
            self.clients.updates_unknown,
            self.clients.updates_refused,
            self.committed
        )?;
        writeln!(
            f,
            "getfileinfomap {} (served {}); linearizability checked over {} file operations",
            self.clients.reads, self.clients.reads_served, self.clients.ops_checked
        )?;
        writeln!(
            f,
            "writes completed {}, unreachable reports {}",
            self.writes_completed, self.unreachable_reports
        )?;
        writeln!(
            f,
            "crashes {}, restores {}, reboots {}, partitions {}",
            self.crashes, self.restores, self.reboots, self.partitions
        )?;
        writeln!(
            f,
            "leadership transfers {} (completed {})",
            self.transfers, self.transfers_done
        )?;
        writeln!(
            f,
            "log compactions {}, snapshots installed {}",
            self.compactions, self.snapshots_installed
        )?;
        writeln!(
            f,
            "disk faults {}, recoveries from a simulated disk {}",
            self.disk_faults, self.disk_recoveries
        )?;
        writeln!(
            f,
            "messages sent {}, dropped {}, duplicated {}",
            self.messages_sent, self.messages_dropped, self.messages_duplicated
        )?;
        write!(
            f,
            "heal to committed-everywhere: mean {:.1} ticks, max {}",
            self.heal_ticks as f64 / self.runs.max(1) as f64,
            self.max_heal_ticks
        )
    }
}

/// A failed run: which seed, where, what broke, and how to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub tick: u64,
    pub invariant: String,
    pub detail: String,
    pub replay: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at step {} (tick {}): invariant `{}` violated: {}\n    replay: {}",
            self.seed, self.step, self.tick, self.invariant, self.detail, self.replay
        )
    }
}

impl std::error::Error for SimFailure {}

/// The command that replays `seed` with `opts` and prints its trace.
pub fn replay_command(seed: u64, opts: &SimOptions) -> String {
    let mut cmd = format!("cargo run --release -- sim --seed {seed} --trace");
    if let Some(n) = opts.nodes {
        cmd += &format!(" --nodes {n}");
    }
    if let Some(m) = &opts.mix {
        cmd += &format!(" --mix {m}");
    }
    if opts.ticks != SimOptions::default().ticks {
        cmd += &format!(" --ticks {}", opts.ticks);
    }
    if let Some(h) = opts.heal_ticks {
        cmd += &format!(" --heal-ticks {h}");
    }
    if let Some(b) = &opts.bug {
        cmd += &format!(" --bug {b}");
    }
    cmd
}

/// Run one seed. Same seed and options => the same run, step for step.
pub fn run_seed(seed: u64, opts: &SimOptions) -> Result<SimStats, SimFailure> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let fail = |step, tick, invariant: &str, detail: String| SimFailure {
        seed,
        step,
        tick,
        invariant: invariant.to_string(),
        detail,
        replay: replay_command(seed, opts),
    };
    let plan = Plan::resolve(opts, &mut rng).map_err(|e| fail(0, 0, "valid options", e))?;
    let bugs = match &opts.bug {
        None => SeededBugs::NONE,
        Some(name) => SeededBugs::named(name).ok_or_else(|| {
            fail(
                0,
                0,
                "valid options",
                format!(
                    "unknown bug {name:?} (known: {})",
                    SeededBugs::NAMES.join(", ")
                ),
            )
        })?,
    };
    if opts.trace {
        outln!("seed {seed}: {plan:?} bugs {bugs:?}");
    }
    let mut world = World::new(seed, plan, bugs, rng, opts.trace);
    let outcome = catch_unwind(AssertUnwindSafe(|| run_world(&mut world)));
    let (step, tick) = (world.counters.steps, world.tick);
    match outcome {
        Ok(Ok(heal_ticks)) => Ok(stats(&world, heal_ticks)),
        Ok(Err(v)) => Err(fail(step, tick, v.invariant, v.detail)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(fail(step, tick, "no panics", msg))
        }
    }
}

fn stats(w: &World, heal_ticks: u64) -> SimStats {
    let c = &w.clients.stats;
    SimStats {
        runs: 1,
        ticks: w.tick,
        steps: w.counters.steps,
        leaders_elected: w.checker.leaders_elected(),
        max_term: w.checker.max_term(),
        committed: w.checker.commit_len(),
        clients: c.clone(),
        writes_completed: w.counters.writes_completed,
        crashes: w.counters.crashes,
        restores: w.counters.restores,
        reboots: w.counters.reboots,
        partitions: w.counters.partitions,
        compactions: w.counters.compactions,
        snapshots_installed: w.counters.snapshots_installed,
        disk_faults: w.counters.disk_faults,
        disk_recoveries: w.counters.disk_recoveries,
        unreachable_reports: w.counters.unreachable_reports,
        transfers: w.counters.transfers,
        transfers_done: w.counters.transfers_done,
        messages_sent: w.net.stats.sent,
        messages_dropped: w.net.stats.dropped,
        messages_duplicated: w.net.stats.duplicated,
        heal_ticks,
        max_heal_ticks: heal_ticks,
    }
}

/// Returns the ticks the heal phase took.
fn run_world(w: &mut World) -> Result<u64, Violation> {
    for _ in 0..w.plan.ticks {
        faults(w)?;
        if w.rng.gen_bool(w.plan.mix.propose) {
            w.client_call(true)?;
        }
        if w.rng.gen_bool(w.plan.mix.read) {
            w.client_call(false)?;
        }
        w.run_tick()?;
    }
    let heal_ticks = heal(w)?;
    settle(w)?;
    w.check_clients()?;
    Ok(heal_ticks)
}

fn faults(w: &mut World) -> Result<(), Violation> {
    let mix = w.plan.mix.clone();
    if w.rng.gen_bool(mix.crash) {
        let live = w.live();
        if live.len() > 1 {
            let n = *live.choose(&mut w.rng).expect("non-empty");
            w.crash(n)?;
        }
    }
    if w.rng.gen_bool(mix.restore) {
        if let Some(&n) = w.crashed().choose(&mut w.rng) {
            w.restore(n)?;
        }
    }
    if w.rng.gen_bool(mix.reboot) {
        let n = w.rng.gen_range(0..w.nodes.len()) as NodeId;
        w.reboot(n)?;
    }
    if mix.transfer > 0.0 && w.rng.gen_bool(mix.transfer) {
        if let Some(l) = w.leader() {
            let others: Vec<NodeId> = (0..w.nodes.len() as NodeId).filter(|&p| p != l).collect();
            if let Some(&to) = others.choose(&mut w.rng) {
                w.transfer(l, to)?;
            }
        }
    }
    w.poll_transfers()?;
    if w.plan.disk_segment_bytes.is_some() && w.rng.gen_bool(mix.disk_fault) {
        w.arm_disk_fault();
    }
    if mix.isolate_leader {
        if w.nodes.len() >= 3 && !w.net.is_partitioned() && w.rng.gen_bool(mix.partition) {
            isolate_leader(w)?;
        } else if w.net.is_partitioned() && w.rng.gen_bool(mix.heal) {
            w.partition("heal".into(), |net| net.heal())?;
        }
    } else if w.nodes.len() >= 3 && w.rng.gen_bool(mix.partition) {
        partition(w)?;
    } else if w.net.is_partitioned() && w.rng.gen_bool(mix.heal) {
        w.partition("heal".into(), |net| net.heal())?;
    }
    Ok(())
}

/// Cut the leader (or a random node) off from every other node.
fn isolate_leader(w: &mut World) -> Result<(), Violation> {
    let n = w.nodes.len();
    let l = w
        .leader()
        .map_or_else(|| w.rng.gen_range(0..n), |l| l as usize);
    let mut group = vec![0; n];
    group[l] = 1;
    w.partition(format!("leader {l} isolated"), |net| net.partition(&group))
}

fn partition(w: &mut World) -> Result<(), Violation> {
    let n = w.nodes.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut w.rng);
    match w.rng.gen_range(0..4) {
        0 => {
            let k = w.rng.gen_range(1..=(n - 1) / 2);
            let mut group = vec![0; n];
            order[..k].iter().for_each(|&i| group[i] = 1);
            w.partition(format!("minority {group:?}"), |net| net.partition(&group))
        }
        1 => {
            let mut group = vec![0; n];
            order
                .iter()
                .enumerate()
                .for_each(|(k, &i)| group[i] = k % 3);
            w.partition(format!("no majority {group:?}"), |net| {
                net.partition(&group)
            })
        }
        2 => isolate_leader(w),
        _ => {
            let mut cuts = Vec::new();
            for a in 0..n as NodeId {
                for b in 0..n as NodeId {
                    if a != b && w.rng.gen_bool(0.3) {
                        cuts.push((a, b));
                    }
                }
            }
            w.partition(format!("one-way cuts {cuts:?}"), |net| {
                net.heal();
                cuts.iter().for_each(|&(a, b)| net.set_cut(a, b, true));
            })
        }
    }
}

/// Heal everything, then require progress within `heal_ticks`.
fn heal(w: &mut World) -> Result<u64, Violation> {
    w.log(|| "HEAL: all links up, all nodes restored, no loss or duplication".into());
    w.plan.mix.crash_leader = 0.0;
    w.partition("heal".into(), |net| {
        net.heal();
        net.loss = 0.0;
        net.duplicate = 0.0;
    })?;
    for n in w.crashed() {
        w.restore(n)?;
    }
    let bound = heal_bound(w);
    let start = w.tick;
    let deadline = start + bound;
    let mut probe: Option<(String, u64)> = None;
    while w.tick < deadline {
        w.run_tick()?;
        if let Some(l) = w.leader() {
            let term = w.nodes[l as usize].raft().term();
            // A new probe once the last one is answered (or given up on)
            // without being acknowledged, or leadership changed.
            let good = probe
                .as_ref()
                .is_some_and(|(f, t)| *t == term && w.probe_acked(f));
            if !good && w.clients.probe_idle() {
                let file = w.probe(l)?;
                probe = Some((file, term));
            }
        }
        if let Some((file, _)) = &probe {
            let everywhere = w.nodes.iter().all(|n| n.rt.metadata().version(file) == 1);
            let leaders = w
                .nodes
                .iter()
                .filter(|n| n.raft().role() == Role::Leader)
                .count();
            if everywhere && leaders == 1 && w.probe_acked(file) {
                w.log(|| format!("HEALED after {} ticks", w.tick - start));
                return Ok(w.tick - start);
            }
        }
    }
    violation(
        "liveness after heal",
        format!(
            "no single leader with a fresh updatefile acknowledged and applied everywhere within {bound} ticks: {}",
            cluster_state(w)
        ),
    )
}

/// Liveness bound: elections settle within a few dozen timeouts; then a
/// lagging node may need one round trip per entry after its snapshot (a
/// probe can back off to the start of a follower's log, batches can be
/// capped at one entry per message, and an ack waits for the follower's
/// write, which completes a tick or so later).
fn heal_bound(w: &World) -> u64 {
    let last = w
        .nodes
        .iter()
        .map(|n| n.raft().last_index())
        .max()
        .unwrap_or(0);
    let base = w
        .nodes
        .iter()
        .map(|n| n.raft().snapshot_index())
        .min()
        .unwrap_or(0);
    let round_trip = 2 * w.plan.mix.max_delay + 4;
    w.plan
        .heal_ticks
        .unwrap_or(30 * u64::from(w.plan.election_ticks_max) + (last - base) * round_trip)
}

/// No new calls: run until every call is answered and every node has
/// applied everything committed (within the heal bound again).
fn settle(w: &mut World) -> Result<(), Violation> {
    let deadline = w.tick + heal_bound(w);
    loop {
        let commit = w.checker.commit_len();
        let applied_all = w.nodes.iter().all(|n| {
            n.raft().applied_index() >= commit
                && n.raft().applied_index() == n.raft().commit_index()
        });
        let same = w
            .nodes
            .windows(2)
            .all(|p| p[0].raft().applied_index() == p[1].raft().applied_index());
        if w.clients.waiting() == 0 && applied_all && same {
            return Ok(());
        }
        if w.tick >= deadline {
            // What is left unanswered is named by the client checks.
            if w.clients.waiting() > 0 {
                return w.check_clients();
            }
            return violation(
                "committed entries are applied everywhere",
                format!("after settling: {}", cluster_state(w)),
            );
        }
        w.run_tick()?;
    }
}

fn cluster_state(w: &World) -> String {
    let state: Vec<String> = w
        .nodes
        .iter()
        .map(|n| {
            let s = n.raft().status();
            format!(
                "n{} {:?} t{} leader {:?} last {} commit {} applied {}",
                s.id, s.role, s.term, s.leader, s.last_index, s.commit_index, s.applied_index
            )
        })
        .collect();
    state.join("; ")
}
