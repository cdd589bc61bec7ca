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

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::cuts::Cut;
use super::error::{PartitionError, Result};
use super::monitor::{self, Monitor, NodeState};
use super::net::{self, Names};
use super::report::{Report, Rss};
use super::scenarios::{self, Scenario};
use crate::bench::procfs;
use crate::tester::cluster::Cluster;
use crate::tester::linearizability::{self as lin, Call, FileVerdict, History, Outcome, Recorder};
use crate::tester::scenarios::workload::{self, Shared};
use crate::tester::{fmt, TesterError};
use crate::xmlrpc::client::{Client, Transport};
use crate::xmlrpc::Value;

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

    /// Fails unless some write was acknowledged between `from` and now.
    pub fn expect_progress(&self, from: Duration, what: &str) -> Result<usize> {
        let k = self.acked(from, None);
        self.say(format!(
            "{k} writes acknowledged since +{:.3} s",
            from.as_secs_f64()
        ));
        if k == 0 {
            return Err(PartitionError::check(
                what,
                "some updatefile answered True",
                format!(
                    "none between +{:.3} s and +{:.3} s",
                    from.as_secs_f64(),
                    self.t().as_secs_f64()
                ),
            ));
        }
        Ok(k)
    }

    /// Fails if a leader was first seen, or a node entered a term above
    /// `term`, at or after `since`.
    pub fn expect_no_disruption(&self, since: Duration, term: u64, what: &str) -> Result<()> {
        let leaders = self.monitor.leaders_between(since, None);
        let raised: Vec<_> = self
            .monitor
            .term_changes_since(since)
            .into_iter()
            .filter(|t| t.2 > term)
            .collect();
        if leaders.is_empty() && raised.is_empty() {
            return Ok(());
        }
        let mut observed = Vec::new();
        for l in &leaders {
            observed.push(format!(
                "node {} led term {} (first seen +{:.3} s)",
                l.node,
                l.term,
                l.at.as_secs_f64()
            ));
        }
        for (at, node, t) in &raised {
            observed.push(format!(
                "node {node} entered term {t} at +{:.3} s",
                at.as_secs_f64()
            ));
        }
        for (at, e) in self.monitor.events_since(since) {
            observed.push(format!("  +{:.3} s {e}", at.as_secs_f64()));
        }
        Err(PartitionError::check(
            what,
            format!(
                "no new leader and no term above {term} since +{:.3} s",
                since.as_secs_f64()
            ),
            observed.join("\n      "),
        ))
    }

    /// Fails unless every node in `nodes` is in `term` now.
    pub async fn expect_terms(&self, nodes: &[usize], term: u64, what: &str) -> Result<()> {
        let all = self.statuses().await;
        let wrong: Vec<String> = nodes
            .iter()
            .filter(|&&i| all[i].as_ref().is_none_or(|s| s.term != term))
            .map(|&i| match &all[i] {
                Some(s) => format!("node {i} is in term {} ({})", s.term, s.role),
                None => format!("node {i} did not answer status"),
            })
            .collect();
        if wrong.is_empty() {
            let roles: Vec<String> = nodes
                .iter()
                .filter_map(|&i| {
                    all[i]
                        .as_ref()
                        .map(|s| format!("node {i} {} t{}", s.role, s.term))
                })
                .collect();
            self.say(format!("terms unchanged: {}", roles.join(", ")));
            return Ok(());
        }
        Err(PartitionError::check(
            what,
            format!("still term {term}"),
            wrong.join("; "),
        ))
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

    async fn read_rss(&self) -> Result<Vec<u64>> {
        let pids = self.pids.clone();
        tokio::task::spawn_blocking(move || {
            pids.iter()
                .map(|&p| procfs::vm_rss_kb(p))
                .collect::<std::result::Result<Vec<u64>, _>>()
        })
        .await
        .map_err(|e| PartitionError::Usage(format!("the /proc task failed: {e}")))?
        .map_err(|e| PartitionError::Usage(e.to_string()))
    }

    /// Reads every node's VmRSS at the start of a cut.
    pub async fn rss_start(&mut self) -> Result<()> {
        let kb = self.read_rss().await?;
        self.rss_start = Some((self.t(), kb));
        Ok(())
    }

    /// Reads every node's VmRSS at the end of the cut and fails if one grew
    /// by more than the bound.
    pub async fn rss_end(&mut self) -> Result<()> {
        let Some((t0, before)) = self.rss_start.take() else {
            return Ok(());
        };
        let after = self.read_rss().await?;
        let over = self.t().saturating_sub(t0);
        self.report.rss = (0..self.n)
            .map(|i| Rss {
                node: i,
                before_kb: before[i],
                after_kb: after[i],
            })
            .collect();
        self.report.rss_over = over;
        let text: Vec<String> = self
            .report
            .rss
            .iter()
            .map(|r| {
                format!(
                    "n{} {} -> {} ({:+})",
                    r.node,
                    r.before_kb,
                    r.after_kb,
                    r.growth_kb()
                )
            })
            .collect();
        self.say(format!(
            "VmRSS kB over the {:.1} s cut: {}",
            over.as_secs_f64(),
            text.join(", ")
        ));
        if let Some(r) = self
            .report
            .rss
            .iter()
            .find(|r| r.growth_kb() > self.rss_bound_kb as i64)
        {
            return Err(PartitionError::check(
                format!(
                    "node {}'s VmRSS (pid {}) over the {:.1} s cut",
                    r.node,
                    self.pids[r.node],
                    over.as_secs_f64()
                ),
                format!(
                    "growth below {} kB: what a node holds must not grow with the length of a partition",
                    self.rss_bound_kb
                ),
                format!("{} kB -> {} kB ({:+} kB)", r.before_kb, r.after_kb, r.growth_kb()),
            ));
        }
        Ok(())
    }

    /// Stops the workload; `Err` if a client saw an answer that breaks the contract.
    async fn stop_workload(&mut self) -> Result<()> {
        if let Some(s) = &self.shared {
            s.stop.store(true, Ordering::Relaxed);
        }
        let mut first = None;
        for task in std::mem::take(&mut self.tasks) {
            match tokio::time::timeout(RPC_TIMEOUT + Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => first = first.or(Some(PartitionError::Tester(e))),
                Ok(Err(e)) => {
                    first = first.or(Some(PartitionError::Tester(TesterError::Panicked(
                        e.to_string(),
                    ))))
                }
                Err(_) => {
                    first = first.or(Some(PartitionError::Timeout {
                        what: "a workload client to stop".into(),
                        bound: RPC_TIMEOUT + Duration::from_secs(5),
                        expected: "its last call answered or timed out".into(),
                        observed: "still running".into(),
                    }))
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Stops the workload, reads the map once more from the leader (into the
    /// history), then checks: every node converges on it, no acknowledged
    /// write is lost, and the history is linearizable.
    pub async fn finish(&mut self) -> Result<()> {
        self.say("stopping the workload");
        self.stop_workload().await?;
        let (leader, _) = self.one_leader(Duration::from_secs(5)).await?;
        let Some(shared) = self.shared.clone() else {
            return Err(PartitionError::Usage("finish before begin".into()));
        };
        shared.stop.store(false, Ordering::Relaxed);
        shared.leader_hint.store(leader, Ordering::Relaxed);
        let read = tokio::time::timeout(
            RPC_TIMEOUT * 2,
            workload::perform(&shared, self.clients, Call::ReadMap),
        )
        .await;
        shared.stop.store(true, Ordering::Relaxed);
        let map = match read {
            Ok(Ok(Some(Outcome::Map(m)))) => m,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(other)) => {
                return Err(PartitionError::check(
                    format!("the final getfileinfomap() on node {leader} after the heal"),
                    "the map",
                    format!("{other:?}"),
                ))
            }
            Err(_) => {
                return Err(PartitionError::Timeout {
                    what: format!("the final getfileinfomap() on node {leader}"),
                    bound: RPC_TIMEOUT * 2,
                    expected: "the map".into(),
                    observed: "no answer".into(),
                })
            }
        };
        let t_stop = self.t();
        self.await_convergence(&map, t_stop).await?;
        let history = self.recorder.history();
        self.check_acknowledged(&history, &map)?;
        self.check_linearizable(history).await
    }

    /// Waits until every node has applied the same commit index and holds
    /// the final map's version of every file (`tester_getversion`).
    async fn await_convergence(
        &mut self,
        map: &std::collections::BTreeMap<String, lin::history::FileInfo>,
        from: Duration,
    ) -> Result<()> {
        loop {
            let all = self.statuses().await;
            let mut problems = Vec::new();
            let commits: Vec<Option<(u64, u64)>> = all
                .iter()
                .map(|s| s.as_ref().map(|s| (s.commit_index, s.applied_index)))
                .collect();
            let first = commits.first().copied().flatten();
            let same = commits.iter().all(|c| c.is_some() && *c == first)
                && first.is_some_and(|(c, a)| c == a);
            if !same {
                problems.push(format!(
                    "(commit, applied) per node: {}",
                    commits
                        .iter()
                        .map(|c| c.map_or("?".into(), |(c, a)| format!("({c}, {a})")))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            for f in &self.files {
                let want = map.get(f).map_or(0, |(v, _)| *v);
                let got = self
                    .cluster
                    .call_all("tester_getversion", &[Value::String(f.clone())])
                    .await;
                let versions: Vec<Option<i64>> = got
                    .iter()
                    .map(|r| r.as_ref().ok().and_then(Value::as_i64))
                    .collect();
                if versions.iter().any(|v| *v != Some(want)) {
                    problems.push(format!(
                        "{f}: final map v{want}, tester_getversion per node {}",
                        versions
                            .iter()
                            .map(|v| v.map_or("?".into(), |v| v.to_string()))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
            }
            let took = self.t().saturating_sub(from);
            if problems.is_empty() {
                self.report.converge_ms = Some(ms(took));
                let (c, _) = first.unwrap_or_default();
                let versions: Vec<String> = self
                    .files
                    .iter()
                    .map(|f| format!("{f} v{}", map.get(f).map_or(0, |(v, _)| *v)))
                    .collect();
                self.say(format!(
                    "converged {:.0} ms after the final read: every node committed and applied {c}, and holds {}",
                    ms(took),
                    versions.join(", ")
                ));
                return Ok(());
            }
            if took > CONVERGE_BOUND {
                return Err(PartitionError::Timeout {
                    what: "every node converging after the heal".into(),
                    bound: CONVERGE_BOUND,
                    expected: "the same commit and applied index on every node, and the final map's versions".into(),
                    observed: problems.join("; "),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every `updatefile` answered True is in the final map (versions only
    /// grow, so the file's final version is at least the acknowledged one).
    fn check_acknowledged(
        &self,
        history: &History,
        map: &std::collections::BTreeMap<String, lin::history::FileInfo>,
    ) -> Result<()> {
        for op in &history.ops {
            if let (Call::Update { file, version, .. }, Outcome::Updated(true)) =
                (&op.call, &op.outcome)
            {
                let now = map.get(file).map_or(0, |(v, _)| *v);
                if now < *version {
                    return Err(PartitionError::check(
                        format!(
                            "an acknowledged write: {} (answered at +{:.3} s)",
                            op.describe(),
                            op.ret.unwrap_or(0) as f64 / 1e9
                        ),
                        format!(
                            "{} at version {version} or later in the final map",
                            fmt::string(file)
                        ),
                        format!("version {now}: the write was lost"),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn check_linearizable(&mut self, history: History) -> Result<()> {
        self.report.ops = history.len();
        self.report.unknown = history.unknown();
        let files = self.files.clone();
        let budget = Duration::from_secs(30);
        let h = Arc::new(history);
        let hh = h.clone();
        let report = tokio::task::spawn_blocking(move || lin::check_files(&hh, &files, budget))
            .await
            .map_err(|e| PartitionError::Tester(TesterError::Panicked(e.to_string())))?;
        self.say(format!(
            "history: {} calls ({} of unknown outcome, {} refused without effect), checked in {}",
            h.len(),
            h.unknown(),
            h.not_executed(),
            fmt::duration(report.took)
        ));
        for f in &report.files {
            match &f.verdict {
                FileVerdict::Linearizable => {}
                FileVerdict::Illegal(why) => {
                    return Err(TesterError::NotLinearizable {
                        explanation: format!("{why}\ncuts:\n  {}", self.report.cuts.join("\n  ")),
                    }
                    .into())
                }
                FileVerdict::TimedOut => {
                    return Err(TesterError::Undecided {
                        budget,
                        detail: format!(
                            "file {:?}: {} operations ({} of unknown outcome)",
                            f.file, f.ops, f.unknown
                        ),
                    }
                    .into())
                }
            }
        }
        self.say("linearizable, and no acknowledged write lost");
        Ok(())
    }

    /// After the scenario: heal and stop the workload if it failed midway,
    /// and fill in the numbers.
    async fn conclude(&mut self, outcome: Result<()>) -> Report {
        if let Err(e) = &outcome {
            self.say(format!("FAILED: {e}"));
            if self.cut.is_some() {
                let _ = self.heal().await;
            }
            let _ = self.stop_workload().await;
        }
        if let Some((_, since)) = self.cut.take() {
            self.cut_windows.push((since, self.t()));
        }
        let history = self.recorder.history();
        let in_cut = |r: u64| {
            self.cut_windows
                .iter()
                .any(|&(a, b)| r >= nanos(a) && r <= nanos(b))
        };
        self.report.acked_total = history
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Updated(true))
            .count();
        self.report.acked_during_cuts = history
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Updated(true))
            .filter(|o| o.ret.is_some_and(in_cut))
            .count();
        if self.report.ops == 0 {
            self.report.ops = history.len();
            self.report.unknown = history.unknown();
        }
        if let Some((_, base)) = &self.baseline {
            let changes = self.monitor.leaders_between(self.baseline_at, None);
            self.report.leader_changes = changes.len();
            self.report.leader_changes_after_heal = self
                .last_heal
                .map_or(0, |h| changes.iter().filter(|l| l.at >= h).count());
            self.report.term_rise = self.monitor.max_term().saturating_sub(base.term);
        }
        let seen: Vec<String> = self
            .monitor
            .leaders()
            .iter()
            .map(|l| format!("n{} t{} +{:.2}s", l.node, l.term, l.at.as_secs_f64()))
            .collect();
        self.say(format!("leaders seen (first seen): {}", seen.join(", ")));
        self.say(format!(
            "writes acknowledged: {} ({} while cut); leader changes: {} ({} after the last heal); term rise {}; {} monitor polls",
            self.report.acked_total,
            self.report.acked_during_cuts,
            self.report.leader_changes,
            self.report.leader_changes_after_heal,
            self.report.term_rise,
            self.monitor.polls()
        ));
        self.report.failure = outcome.err().map(|e| e.to_string());
        self.report.clone()
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
