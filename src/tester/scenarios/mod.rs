//! The scenarios, one file each, and what they share: [`Ctx`] (the cluster,
//! the options, the writes acknowledged so far, the live step text) and
//! checking helpers that turn a wrong answer into a precise
//! [`TesterError::Check`].
//!
//! Every scenario starts by waiting for one leader (so it does not inherit
//! the previous scenario's election), names its files with the run's tag (so
//! runs never see each other's files), and restores every node it crashes.

pub mod basics;
pub mod crashed_state;
pub mod followers;
pub mod leader_crash;
pub mod linearizability;
pub mod majority_crash;
pub mod minority_crash;
pub mod nemesis;
pub mod races;
pub mod replication;
pub mod versions;
pub mod watch;
pub mod workload;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cluster::Cluster;
use super::error::{Result, TesterError};
use super::linearizability::history::{normalize, parse_map, FileInfo};
use super::options::Options;
use super::{fmt, poll};
use crate::xmlrpc::client::CallError;
use crate::xmlrpc::{Fault, Value};

/// What a scenario runs as.
pub type ScenarioFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// One scenario of the tester.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(Arc<Ctx>) -> ScenarioFuture,
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "basics",
            about: "ping every node, exactly one stable leader, `members` the same on every node",
            run: |c| Box::pin(basics::run(c)),
        },
        Scenario {
            name: "versions",
            about: "version rules: create, next, stale, skipped, tombstone, unknown file is 0, hashlists round-trip",
            run: |c| Box::pin(versions::run(c)),
        },
        Scenario {
            name: "followers",
            about: "followers refuse updatefile/getfileinfomap with NotLeader naming the leader, without effect",
            run: |c| Box::pin(followers::run(c)),
        },
        Scenario {
            name: "replication",
            about: "every node applies a committed write within the replication bound",
            run: |c| Box::pin(replication::run(c)),
        },
        Scenario {
            name: "minority-crash",
            about: "crash floor((M-1)/2) followers: writes go on, crashed nodes stay behind with their state, then catch up",
            run: |c| Box::pin(minority_crash::run(c)),
        },
        Scenario {
            name: "leader-crash",
            about: "crash the leader: a new one within the bound, no committed write lost, the old one rejoins and catches up",
            run: |c| Box::pin(leader_crash::run(c)),
        },
        Scenario {
            name: "majority-crash",
            about: "crash a majority: updatefile and getfileinfomap block, then complete correctly after restore",
            run: |c| Box::pin(majority_crash::run(c)),
        },
        Scenario {
            name: "crashed-state",
            about: "a crashed node: appendEntries/requestVote give isCrashed; tester_getversion, isCrashed and friends still answer",
            run: |c| Box::pin(crashed_state::run(c)),
        },
        Scenario {
            name: "races",
            about: "N clients update one file at the same version at once: exactly one wins each version",
            run: |c| Box::pin(races::run(c)),
        },
        Scenario {
            name: "linearizability",
            about: "a random concurrent read-modify-write workload under crash/restore, checked for linearizability",
            run: |c| Box::pin(linearizability::run(c)),
        },
        Scenario {
            name: "watch",
            about: "waitForChanges: a change acknowledged before the call wakes it at once, and the map read after an answer shows what it counted",
            run: |c| Box::pin(watch::run(c)),
        },
    ]
}

/// Everything a scenario may use.
pub struct Ctx {
    pub cluster: Cluster,
    pub opts: Options,
    /// Prefix of every file this run creates (unique per run).
    pub tag: String,
    /// Every update this run got `True` for, latest per file (the
    /// linearizability workload's files excepted): what must never be lost.
    ledger: Mutex<BTreeMap<String, FileInfo>>,
    /// What the running scenario is doing now (the live progress line).
    step: Arc<Mutex<String>>,
    /// Observations worth reporting (times measured, leaders seen).
    notes: Mutex<Vec<String>>,
    /// Incidental observations, reported after `notes`.
    asides: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn new(cluster: Cluster, opts: Options, tag: String) -> Ctx {
        Ctx {
            cluster,
            opts,
            tag,
            ledger: Mutex::new(BTreeMap::new()),
            step: Arc::new(Mutex::new(String::new())),
            notes: Mutex::new(Vec::new()),
            asides: Mutex::new(Vec::new()),
        }
    }

    /// The text of the current step, shared with the progress line.
    pub fn step_text(&self) -> Arc<Mutex<String>> {
        self.step.clone()
    }

    /// Sets what the scenario is doing now.
    pub fn step(&self, text: impl Into<String>) {
        *self.step.lock().expect("step lock") = text.into();
    }

    /// Adds an observation to the scenario's report.
    pub fn note(&self, text: impl Into<String>) {
        self.notes.lock().expect("notes lock").push(text.into());
    }

    /// Adds an incidental observation, listed after the notes.
    pub fn aside(&self, text: impl Into<String>) {
        self.asides.lock().expect("notes lock").push(text.into());
    }

    /// Takes the notes (then the asides) gathered since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        let mut notes = std::mem::take(&mut *self.notes.lock().expect("notes lock"));
        notes.append(&mut self.asides.lock().expect("notes lock"));
        notes
    }

    /// A random generator for `purpose`, derived from the run's seed, so
    /// `--seed` reproduces every choice the tester makes.
    pub fn rng(&self, purpose: &str) -> rand::rngs::SmallRng {
        use rand::SeedableRng;
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in purpose.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        rand::rngs::SmallRng::seed_from_u64(self.opts.seed ^ h)
    }

    /// `n` distinct nodes from `pool`, chosen with `rng`.
    pub fn pick(&self, rng: &mut rand::rngs::SmallRng, pool: &[usize], n: usize) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let mut chosen: Vec<usize> = pool.choose_multiple(rng, n).copied().collect();
        chosen.sort_unstable();
        chosen
    }

    /// A file name private to this run.
    pub fn file(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    /// The acknowledged writes so far.
    pub fn ledger(&self) -> BTreeMap<String, FileInfo> {
        self.ledger.lock().expect("ledger lock").clone()
    }

    /// The single leader, waiting up to the leader bound for one.
    pub async fn leader(&self) -> Result<usize> {
        self.step("waiting for one leader");
        let (l, took) = self.cluster.one_leader(self.opts.leader_bound).await?;
        if took > Duration::from_millis(50) {
            self.aside(format!(
                "waited {} for a leader ({})",
                fmt::duration(took),
                self.cluster.name(l)
            ));
        }
        Ok(l)
    }

    /// `node i: surfstore.method(params)` for messages.
    pub fn describe(&self, i: usize, method: &str, params: &[Value]) -> String {
        format!("{} on {}", fmt::call(method, params), self.cluster.name(i))
    }

    pub async fn call(
        &self,
        i: usize,
        method: &str,
        params: &[Value],
    ) -> std::result::Result<Value, CallError> {
        self.cluster.call(i, method, params).await
    }

    /// Calls and requires exactly `expected`.
    pub async fn expect(
        &self,
        i: usize,
        method: &str,
        params: &[Value],
        expected: Value,
    ) -> Result<()> {
        let r = self.call(i, method, params).await;
        match &r {
            Ok(v) if normalize(v) == normalize(&expected) => Ok(()),
            _ => Err(TesterError::check(
                self.describe(i, method, params),
                fmt::value(&expected),
                fmt::outcome(&r),
            )),
        }
    }

    /// Calls and requires a fault with `code` whose message passes `accept`
    /// (described by `expected`).
    pub async fn expect_fault(
        &self,
        i: usize,
        method: &str,
        params: &[Value],
        code: i32,
        expected: &str,
        accept: impl Fn(&str) -> bool,
    ) -> Result<Fault> {
        let r = self.call(i, method, params).await;
        match r {
            Err(CallError::Fault(f)) if f.code == code && accept(&f.message) => Ok(f),
            other => Err(TesterError::check(
                self.describe(i, method, params),
                expected,
                fmt::outcome(&other),
            )),
        }
    }

    /// `updatefile(file, version, hashlist)` on node `i`, requiring the answer
    /// `expected` (`why` says why that is the right answer). A `True` answer
    /// goes into the ledger.
    pub async fn update(
        &self,
        i: usize,
        file: &str,
        version: i64,
        hashlist: Vec<Value>,
        expected: bool,
        why: &str,
    ) -> Result<()> {
        let params = update_params(file, version, &hashlist);
        let r = self.call(i, "updatefile", &params).await;
        if let Ok(Value::Bool(true)) = r {
            self.record(file, version, hashlist);
        }
        match r {
            Ok(Value::Bool(b)) if b == expected => Ok(()),
            other => Err(TesterError::check(
                self.describe(i, "updatefile", &params),
                format!("{} ({why})", fmt::value(&Value::Bool(expected))),
                fmt::outcome(&other),
            )),
        }
    }

    /// Notes an acknowledged write.
    pub fn record(&self, file: &str, version: i64, hashlist: Vec<Value>) {
        self.ledger
            .lock()
            .expect("ledger lock")
            .insert(file.to_owned(), (version, hashlist));
    }

    /// `getfileinfomap()` on node `i`, parsed.
    pub async fn read_map(&self, i: usize) -> Result<BTreeMap<String, FileInfo>> {
        let r = self.call(i, "getfileinfomap", &[]).await;
        match r.as_ref().ok().and_then(parse_map) {
            Some(m) => Ok(m),
            None => Err(TesterError::check(
                self.describe(i, "getfileinfomap", &[]),
                "a struct {filename: [version, hashlist]}",
                fmt::outcome(&r),
            )),
        }
    }

    /// Requires `map` (read on node `i`) to hold every acknowledged write.
    pub fn check_ledger(&self, i: usize, map: &BTreeMap<String, FileInfo>) -> Result<()> {
        for (file, info) in self.ledger() {
            if map.get(&file) != Some(&info) {
                return Err(TesterError::check(
                    self.describe(i, "getfileinfomap", &[]),
                    format!(
                        "every acknowledged write, e.g. {}: {}",
                        fmt::string(&file),
                        info_text(Some(&info))
                    ),
                    format!("{}: {}", fmt::string(&file), info_text(map.get(&file))),
                ));
            }
        }
        Ok(())
    }

    /// `tester_getversion(file)` on node `i`, or what it answered instead.
    pub async fn version_on(&self, i: usize, file: &str) -> std::result::Result<i64, String> {
        let r = self.call(i, "tester_getversion", &[file.into()]).await;
        match &r {
            Ok(v) => v.as_i64().ok_or_else(|| fmt::outcome(&r)),
            Err(_) => Err(fmt::outcome(&r)),
        }
    }

    /// Waits until every node in `nodes` reports `version` of `file`; returns
    /// the time it took.
    pub async fn wait_version(
        &self,
        what: &str,
        nodes: &[usize],
        file: &str,
        version: i64,
        bound: Duration,
    ) -> Result<Duration> {
        self.step(what.to_owned());
        let (_, took) = poll::until(
            what,
            &format!(
                "tester_getversion({}) == {version} on {}",
                fmt::string(file),
                self.cluster.names(nodes)
            ),
            bound,
            || async {
                let mut seen = Vec::new();
                for &i in nodes {
                    let v = self.version_on(i, file).await;
                    if v != Ok(version) {
                        seen.push(format!(
                            "{}: {}",
                            self.cluster.name(i),
                            v.map_or_else(|e| e, |v| v.to_string())
                        ));
                    }
                }
                if seen.is_empty() {
                    Ok(())
                } else {
                    Err(seen.join("; "))
                }
            },
        )
        .await?;
        Ok(took)
    }
}

/// `[file, version, hashlist]` as XML-RPC parameters.
pub fn update_params(file: &str, version: i64, hashlist: &[Value]) -> Vec<Value> {
    vec![
        Value::String(file.to_owned()),
        i32::try_from(version).map_or(Value::I8(version), Value::Int),
        Value::Array(hashlist.to_vec()),
    ]
}

/// A hashlist of strings.
pub fn hashes(items: &[&str]) -> Vec<Value> {
    items
        .iter()
        .map(|s| Value::String((*s).to_owned()))
        .collect()
}

/// `[3, ['h']]` or `absent`.
pub fn info_text(info: Option<&FileInfo>) -> String {
    match info {
        Some((v, h)) => format!("[{v}, {}]", fmt::value(&Value::Array(h.clone()))),
        None => "absent".to_owned(),
    }
}

/// Nodes other than `except`, in id order.
pub fn others(m: usize, except: &[usize]) -> Vec<usize> {
    (0..m).filter(|i| !except.contains(i)).collect()
}
