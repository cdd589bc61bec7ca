//! The clients' side of one scenario, run inside the clients' namespace
//! (`ip netns exec <prefix>-cl surfstore partitions --inner NAME …`): the
//! tester's linearizability workload against the five nodes, the cuts
//! (`ip netns exec <prefix>-n<i> nft …`, from here), the [`Monitor`], and
//! every assertion. [`Run`] is what a scenario in `scenarios.rs` is written
//! with: each method either measures and logs a step or returns the
//! [`PartitionError`] that fails the scenario, naming what was expected and
//! what was observed.
//!
//! Every wait is a poll with a deadline, except the two fixed lengths a
//! scenario is about: how long a cut is held, and the observation window
//! after a heal (`SETTLE`) in which a returning node would disrupt the
//! leader if it were going to (the monitor records any election in it).
//!
//! After the scenario (pass or fail) the cuts are healed and the workload
//! stopped; `result.json` in the scenario's directory carries the numbers
//! to the outer side.
//!
//! Here: setup, the cuts, and the waits (step-down, new leader, catch-up);
//! `inner/expect.rs`: the assertions made while the scenario runs;
//! `inner/memory.rs`: VmRSS over a cut; `inner/finish.rs`: the end of a
//! scenario, its shared checks and its report.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;

mod expect;
mod finish;
mod memory;

use super::cuts::Cut;
use super::error::{PartitionError, Result};
use super::monitor::{self, Monitor, NodeState};
use super::net::{self, Names};
use super::report::Report;
use super::scenarios::{self, Scenario};
use crate::tester::cluster::Cluster;
use crate::tester::linearizability::{Outcome, Recorder};
use crate::tester::scenarios::workload::{self, Shared};
use crate::tester::TesterError;
use crate::xmlrpc::client::{Client, Transport};

/// Election timeout upper bound the nodes run with (their default).
pub const ELECTION_MAX: Duration = Duration::from_millis(300);
/// The Raft clock's tick (the nodes' default): check-quorum counts ticks.
pub const TICK: Duration = Duration::from_millis(10);
/// A leader that loses its majority must step down within this (plus the
/// polling slack measured each time): two election timeouts and a tick.
pub const STEP_DOWN_BOUND: Duration = Duration::from_millis(2 * 300 + 10);
/// The majority side must elect a leader within this of the cut.
pub const NEW_LEADER_BOUND: Duration = Duration::from_secs(3);
/// The observation window after a heal.
pub const SETTLE: Duration = Duration::from_millis(1500);
/// Every node must apply the same log within this of the workload's stop.
pub const CONVERGE_BOUND: Duration = Duration::from_secs(15);
/// The step-down poll's interval.
const STEP_DOWN_POLL: Duration = Duration::from_millis(5);
/// Per-call timeout of the workload's calls.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Acknowledged writes the workload must make before the first cut.
const WARM_UP_WRITES: usize = 20;

/// What the outer side tells the inner side.
pub struct Setup {
    pub scenario: &'static Scenario,
    /// The scenario's directory (its `result.json` goes there).
    pub dir: PathBuf,
    pub names: Names,
    /// The node processes, in id order (for their VmRSS).
    pub pids: Vec<u32>,
    /// How long the scenario holds its cut (flapping: the whole phase).
    pub hold: Duration,
    pub seed: u64,
    pub clients: usize,
    pub files: usize,
    pub rss_bound_kb: u64,
}

/// Runs one scenario; the process exit code (0 passed, 1 failed, 2 could
/// not run).
pub fn run(setup: Setup) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("partitions: cannot start the tokio runtime: {e}");
            return 2;
        }
    };
    let started = Instant::now();
    let mut report = rt.block_on(async {
        let mut run = Run::new(&setup);
        let outcome = scenarios::run(setup.scenario, &mut run, setup.hold).await;
        run.conclude(outcome).await
    });
    report.elapsed = started.elapsed();
    let path = setup.dir.join("result.json");
    if let Err(e) = report.write(&path) {
        eprintln!("partitions: cannot write {}: {e}", path.display());
        return 2;
    }
    match &report.failure {
        None => {
            println!(
                "  verdict: PASS ({} in {:.1} s)",
                setup.scenario.name,
                report.elapsed.as_secs_f64()
            );
            0
        }
        Some(why) => {
            println!("  verdict: FAIL ({}): {why}", setup.scenario.name);
            1
        }
    }
}

/// One scenario's cluster, workload, monitor and measurements.
pub struct Run {
    pub n: usize,
    names: Names,
    pids: Vec<u32>,
    cluster: Cluster,
    /// Clients for status polls (short timeout), apart from the workload's.
    status: Vec<Client>,
    recorder: Arc<Recorder>,
    monitor: Monitor,
    files: Vec<String>,
    clients: usize,
    seed: u64,
    shared: Option<Arc<Shared>>,
    tasks: Vec<tokio::task::JoinHandle<std::result::Result<(), TesterError>>>,
    /// The leader when the workload had warmed up: what "no leader change" compares with.
    baseline: Option<(usize, NodeState)>,
    /// When the baseline was taken.
    baseline_at: Duration,
    /// The cut in place and since when (`None`: everything connected).
    cut: Option<(Cut, Duration)>,
    /// Every finished cut: (from, to).
    cut_windows: Vec<(Duration, Duration)>,
    last_heal: Option<Duration>,
    rss_start: Option<(Duration, Vec<u64>)>,
    rss_bound_kb: u64,
    report: Report,
}

impl Run {
    fn new(s: &Setup) -> Run {
        let n = s.pids.len();
        let members: Vec<String> = (0..n).map(net::node_addr).collect();
        let status: Vec<Client> = members
            .iter()
            .map(|a| Client::new(a, Duration::from_secs(1)))
            .collect();
        let recorder = Arc::new(Recorder::new());
        let monitor = Monitor::start(status.clone(), recorder.start());
        Run {
            n,
            names: s.names.clone(),
            pids: s.pids.clone(),
            cluster: Cluster::new(members, RPC_TIMEOUT, Transport::default()),
            status,
            recorder,
            monitor,
            files: (0..s.files.max(1)).map(|i| format!("part-{i}")).collect(),
            clients: s.clients.max(1),
            seed: s.seed,
            shared: None,
            tasks: Vec::new(),
            baseline: None,
            baseline_at: Duration::ZERO,
            cut: None,
            cut_windows: Vec::new(),
            last_heal: None,
            rss_start: None,
            rss_bound_kb: s.rss_bound_kb,
            report: Report {
                scenario: s.scenario.name.to_owned(),
                ..Report::default()
            },
        }
    }

    /// Time on the history's clock.
    pub fn t(&self) -> Duration {
        Duration::from_nanos(self.recorder.now())
    }

    /// Prints one timestamped line of the scenario's log.
    pub fn say(&self, text: impl AsRef<str>) {
        println!("  {:>7.3} s  {}", self.t().as_secs_f64(), text.as_ref());
    }

    /// A random generator for `purpose`, from the run's seed.
    pub fn rng(&self, purpose: u64) -> SmallRng {
        SmallRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ purpose)
    }

    /// Heals everything, waits for one leader, starts the workload, waits
    /// for it to make writes, and takes the baseline: the leader (and its
    /// state) that no-disruption checks compare with.
    pub async fn begin(&mut self) -> Result<(usize, NodeState)> {
        // A run before this one may have died mid-cut: start from no cut.
        self.apply(Cut::none(self.n), &[]).await?;
        self.report.cuts.clear();
        self.last_heal = None;
        let (l, st) = self.one_leader(Duration::from_secs(10)).await?;
        self.say(format!(
            "node {l} leads term {}; starting {} clients on {} files",
            st.term,
            self.clients,
            self.files.len()
        ));
        let shared = Arc::new(Shared {
            cluster: self.cluster.clone(),
            recorder: self.recorder.clone(),
            files: self.files.clone(),
            leader_hint: AtomicUsize::new(l),
            stop: AtomicBool::new(false),
            think: Duration::from_millis(4),
        });
        for id in 0..self.clients {
            let rng = self.rng(1000 + id as u64);
            self.tasks
                .push(tokio::spawn(workload::client(shared.clone(), id, rng)));
        }
        self.shared = Some(shared);
        let from = self.t();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.acked(from, None) < WARM_UP_WRITES {
            if Instant::now() >= deadline {
                return Err(PartitionError::Timeout {
                    what: "the workload's first writes, before any cut".into(),
                    bound: Duration::from_secs(10),
                    expected: format!("{WARM_UP_WRITES} updatefile calls answered True"),
                    observed: format!("{}", self.acked(from, None)),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (l, st) = self.one_leader(Duration::from_secs(5)).await?;
        self.baseline = Some((l, st.clone()));
        self.baseline_at = self.t();
        self.say(format!(
            "baseline: node {l} leads term {}, commit {}; {} writes acknowledged so far",
            st.term,
            st.commit_index,
            self.acked(Duration::ZERO, None)
        ));
        Ok((l, st))
    }

    /// Waits until every node answers, exactly one says it leads, and all
    /// are in its term.
    pub async fn one_leader(&self, bound: Duration) -> Result<(usize, NodeState)> {
        let start = Instant::now();
        loop {
            let all = monitor::statuses(&self.status).await;
            let leaders: Vec<usize> = (0..self.n)
                .filter(|&i| all[i].as_ref().is_some_and(NodeState::is_leader))
                .collect();
            if let [l] = leaders[..] {
                if let Some(st) = all[l].clone() {
                    if all
                        .iter()
                        .all(|s| s.as_ref().is_some_and(|s| s.term == st.term))
                    {
                        return Ok((l, st));
                    }
                }
            }
            if start.elapsed() >= bound {
                return Err(PartitionError::Timeout {
                    what: "one leader that every node follows".into(),
                    bound,
                    expected: "every node answers status, exactly one leads, all in its term"
                        .into(),
                    observed: describe(&all),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every node's status now.
    pub async fn statuses(&self) -> Vec<Option<NodeState>> {
        monitor::statuses(&self.status).await
    }

    /// Puts `cut` in place (replacing the one before; an empty cut heals),
    /// node namespaces in `first` first. Returns when each node's rules
    /// were in place, per node: a node in `first` stops hearing the nodes
    /// it is cut from at its time (it drops their packets itself).
    pub async fn apply(&mut self, cut: Cut, first: &[usize]) -> Result<Vec<Duration>> {
        let mut order: Vec<usize> = first.to_vec();
        order.extend((0..self.n).filter(|i| !first.contains(i)));
        let names = self.names.clone();
        let start = self.recorder.start();
        let n = self.n;
        let rules = cut.clone();
        let t0 = self.t();
        let times = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
            let mut times = vec![Duration::ZERO; n];
            for i in order {
                let blocked: Vec<Ipv4Addr> =
                    rules.blocked_for(i).into_iter().map(net::node_ip).collect();
                net::set_cut(&names.node(i), &blocked)?;
                times[i] = start.elapsed();
            }
            Ok(times)
        })
        .await
        .map_err(|e| PartitionError::Usage(format!("the nft task failed: {e}")))??;
        let done = times.iter().copied().max().unwrap_or(t0);
        let effective = first.iter().map(|&i| times[i]).min().unwrap_or(done);
        if let Some((_, since)) = self.cut.take() {
            self.cut_windows.push((since, effective));
        }
        let what = if cut.is_empty() {
            self.last_heal = Some(done);
            format!("heal: {}", cut.label())
        } else {
            format!("cut: {}", cut.label())
        };
        self.say(format!(
            "{what} (nft rules in place on all {} nodes {:.0} ms after the first)",
            self.n,
            (done.saturating_sub(t0)).as_secs_f64() * 1e3
        ));
        self.report
            .cuts
            .push(format!("+{:.3} s {}", effective.as_secs_f64(), cut.label()));
        if !cut.is_empty() {
            self.cut = Some((cut, effective));
        }
        Ok(times)
    }

    /// Heals every cut; returns when the last rule was gone.
    pub async fn heal(&mut self) -> Result<Duration> {
        let times = self.apply(Cut::none(self.n), &[]).await?;
        Ok(times.into_iter().max().unwrap_or_default())
    }

    /// The cut in place.
    pub fn current_cut(&self) -> Option<&Cut> {
        self.cut.as_ref().map(|(c, _)| c)
    }

    /// Waits until `node`, which led when it lost its majority at `t_cut`,
    /// says it no longer leads; fails as soon as a poll sent later than
    /// [`STEP_DOWN_BOUND`] after the cut still finds it leading. The time
    /// reported is from the cut to the answer of the first poll that found
    /// it stepped down; its slack is from the send of the poll before it
    /// (which still saw a leader) to that answer.
    pub async fn await_step_down(&mut self, node: usize, t_cut: Duration) -> Result<Duration> {
        let mut prev_sent = t_cut;
        let heard = self.current_cut().map_or(self.n, |c| c.heard_by(node));
        let label = self
            .current_cut()
            .map_or("nothing cut".to_owned(), |c| c.label().to_owned());
        loop {
            let sent = self.t();
            let st = monitor::status(&self.status[node]).await;
            let got = self.t();
            match st {
                Some(st) if !st.is_leader() => {
                    let took = got.saturating_sub(t_cut);
                    let slack = got.saturating_sub(prev_sent);
                    self.report.step_downs_ms.push((ms(took), ms(slack)));
                    self.say(format!(
                        "node {node} stepped down ({} t{}) {:.0} ms after losing its majority (polling slack {:.0} ms; bound {} ms + slack)",
                        st.role,
                        st.term,
                        ms(took),
                        ms(slack),
                        STEP_DOWN_BOUND.as_millis()
                    ));
                    return Ok(took);
                }
                Some(st) if sent.saturating_sub(t_cut) > STEP_DOWN_BOUND => {
                    return Err(PartitionError::check(
                        format!(
                            "node {node}, leader of term {}, after the cut {label} left it hearing {heard} of {} nodes (itself included) at +{:.3} s",
                            st.term,
                            self.n,
                            t_cut.as_secs_f64()
                        ),
                        format!(
                            "it steps down within 2 election timeouts (2 × {} ms) + one {} ms tick",
                            ELECTION_MAX.as_millis(),
                            TICK.as_millis()
                        ),
                        format!(
                            "it still said leader (term {}, commit {}) to a status poll sent {:.0} ms after the cut",
                            st.term,
                            st.commit_index,
                            ms(sent.saturating_sub(t_cut))
                        ),
                    ));
                }
                Some(_) => prev_sent = sent,
                None if got.saturating_sub(t_cut) > Duration::from_secs(5) => {
                    return Err(PartitionError::Timeout {
                        what: format!("node {node}'s status after it lost its majority"),
                        bound: Duration::from_secs(5),
                        expected: "an answer".into(),
                        observed: "no answer to status".into(),
                    });
                }
                None => {}
            }
            tokio::time::sleep(STEP_DOWN_POLL).await;
        }
    }

    /// Waits for a leader among `among` in a term above `above`, first seen
    /// (by the monitor, which polls all along, so the time does not wait
    /// for a step-down measured meanwhile) after `t_cut`; returns it, its
    /// term, and when it was first seen.
    pub async fn await_new_leader(
        &mut self,
        among: &[usize],
        above: u64,
        t_cut: Duration,
    ) -> Result<(usize, u64, Duration)> {
        loop {
            let found = self
                .monitor
                .leaders_between(t_cut, None)
                .into_iter()
                .find(|l| among.contains(&l.node) && l.term > above);
            if let Some(l) = found {
                let took = l.at.saturating_sub(t_cut);
                self.report.new_leader_ms.push(ms(took));
                self.say(format!(
                    "node {} leads term {} on the majority side, first seen {:.0} ms after the cut (monitor polls every {} ms)",
                    l.node,
                    l.term,
                    ms(took),
                    monitor::MONITOR_INTERVAL.as_millis()
                ));
                return Ok((l.node, l.term, l.at));
            }
            if self.t().saturating_sub(t_cut) > NEW_LEADER_BOUND {
                return Err(PartitionError::Timeout {
                    what: format!("a new leader among nodes {among:?} after the cut"),
                    bound: NEW_LEADER_BOUND,
                    expected: format!("one of them leads a term above {above}"),
                    observed: describe(&self.statuses().await),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sleeps until `t` on the scenario's clock (the length of a cut).
    pub async fn hold_until(&self, t: Duration) {
        let now = self.t();
        if t > now {
            tokio::time::sleep(t - now).await;
        }
    }

    /// The observation window after a heal.
    pub async fn settle(&self) {
        self.say(format!(
            "watching for {:.1} s with the workload running",
            SETTLE.as_secs_f64()
        ));
        tokio::time::sleep(SETTLE).await;
    }

    /// `updatefile` calls answered True between `from` and `to` (now if `None`).
    pub fn acked(&self, from: Duration, to: Option<Duration>) -> usize {
        let (from, to) = (nanos(from), to.map_or(u64::MAX, nanos));
        let h = self.recorder.history();
        h.ops
            .iter()
            .filter(|o| o.outcome == Outcome::Updated(true))
            .filter(|o| o.ret.is_some_and(|r| r >= from && r <= to))
            .count()
    }

    /// Waits until `node` has applied what `leader` had committed when asked.
    pub async fn await_caught_up(&self, node: usize, leader: usize) -> Result<Duration> {
        let start = self.t();
        let target = monitor::status(&self.status[leader])
            .await
            .map_or(0, |s| s.commit_index);
        loop {
            let st = monitor::status(&self.status[node]).await;
            if st.as_ref().is_some_and(|s| s.applied_index >= target) {
                let took = self.t().saturating_sub(start);
                self.say(format!(
                    "node {node} applied through {target} (the leader's commit at the heal) {:.0} ms after it",
                    ms(took)
                ));
                return Ok(took);
            }
            if self.t().saturating_sub(start) > CONVERGE_BOUND {
                return Err(PartitionError::Timeout {
                    what: format!("node {node} catching up after the heal"),
                    bound: CONVERGE_BOUND,
                    expected: format!("applied_index >= {target}"),
                    observed: st.map_or("no answer".into(), |s| s.brief()),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `n0 leader t2 commit 5 applied 5, n1 ?, …`.
pub fn describe(all: &[Option<NodeState>]) -> String {
    all.iter()
        .enumerate()
        .map(|(i, s)| match s {
            Some(s) => format!("n{i} {}", s.brief()),
            None => format!("n{i} no answer"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}
