//! Simulated clients: they call `updatefile` and `getfileinfomap` through
//! the runtime's real client path (`Request::Update` / `Request::ReadMap`)
//! on the node they think leads (learned from `NotLeader`), sometimes on
//! another, one call at a time each, choosing versions as a real client
//! does (mostly what they last saw + 1, sometimes stale or ahead). Every
//! call goes into a history in the tester's form (invoke, return, outcome;
//! fault 5 and a call dropped by a reboot are unknown outcomes), on a
//! logical clock, so real-time order in the history is step order.
//!
//! A map returned must be applied at least through every index committed
//! anywhere before the read was sent (ReadIndex's promise, seen from the
//! client). At the end of a run (healed and settled) the history must be
//! linearizable (the tester's checker, `crate::tester::linearizability`),
//! every acknowledged `updatefile` must be in every node's final map, and
//! no call may be left unanswered.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::checker::{violation, Violation};
use super::options::Plan;
use super::world::World;
use crate::node::api::hash_value;
use crate::node::command::Command;
use crate::node::command::Hash;
use crate::node::error::NodeError;
use crate::node::metadata::MapView;
use crate::node::raft::{LogIndex, NodeId};
use crate::node::runtime::Request;
use crate::tester::linearizability::checker::{self, Verdict};
use crate::tester::linearizability::history::{Call, History, Op, Outcome};
use crate::tester::linearizability::{explain, model};
use crate::xmlrpc::Value;

/// The simulated clients send string hashes, as the tester does; the
/// command holds them typed.
fn sim_hash(v: &Value) -> Hash {
    match v {
        Value::String(s) => Hash::text(s.as_str()),
        other => unreachable!("simulated clients send only string hashes, not {other:?}"),
    }
}

enum Answer {
    Update(oneshot::Receiver<Result<bool, NodeError>>),
    /// With the highest index committed anywhere when the read was sent:
    /// the map must be applied at least that far (ReadIndex's promise).
    Read(oneshot::Receiver<Result<MapView, NodeError>>, LogIndex),
}

struct Waiting {
    op: usize,
    answer: Answer,
    /// The tick the call was made.
    since: u64,
}

struct Client {
    /// The node this client believes leads.
    leader: NodeId,
    /// The versions this client last saw, by file.
    known: BTreeMap<String, i64>,
    /// The files it writes.
    files: Vec<String>,
    waiting: Option<Waiting>,
}

/// What the clients did, summed over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub updates: u64,
    pub updates_true: u64,
    pub updates_false: u64,
    pub updates_unknown: u64,
    pub updates_refused: u64,
    pub reads: u64,
    pub reads_served: u64,
    pub histories_checked: u64,
    pub ops_checked: u64,
}

impl ClientStats {
    pub fn add(&mut self, o: &ClientStats) {
        self.updates += o.updates;
        self.updates_true += o.updates_true;
        self.updates_false += o.updates_false;
        self.updates_unknown += o.updates_unknown;
        self.updates_refused += o.updates_refused;
        self.reads += o.reads;
        self.reads_served += o.reads_served;
        self.histories_checked += o.histories_checked;
        self.ops_checked += o.ops_checked;
    }
}

pub struct Clients {
    clients: Vec<Client>,
    /// Calls their client gave up on (their outcome is unknown to it); they
    /// must still be answered (or dropped by a reboot) by the end.
    abandoned: Vec<Waiting>,
    /// Ticks a client waits for an answer before giving up.
    timeout: u64,
    pub ops: Vec<Op>,
    /// The logical clock of the history: every invoke and return ticks it.
    clock: u64,
    next_hash: u64,
    pub stats: ClientStats,
}

/// The heal phase's probes come from this client (the last).
const PROBE: usize = 3;

impl Clients {
    pub fn new(plan: &Plan) -> Clients {
        let clients = (0..=PROBE)
            .map(|c| Client {
                leader: (c % plan.nodes) as NodeId,
                known: BTreeMap::new(),
                files: if c == PROBE {
                    Vec::new()
                } else {
                    vec![format!("c{c}.txt"), "shared.txt".to_owned()]
                },
                waiting: None,
            })
            .collect();
        Clients {
            clients,
            abandoned: Vec::new(),
            timeout: 4 * u64::from(plan.election_ticks_max),
            ops: Vec::new(),
            clock: 0,
            next_hash: 0,
            stats: ClientStats::default(),
        }
    }

    fn now(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Calls not answered yet.
    pub fn waiting(&self) -> usize {
        self.clients.iter().filter(|c| c.waiting.is_some()).count() + self.abandoned.len()
    }

    pub fn probe_idle(&self) -> bool {
        self.clients[PROBE].waiting.is_none()
    }

    fn complete(&mut self, op: usize, outcome: Outcome) {
        let now = self.now();
        let o = &mut self.ops[op];
        o.ret = match outcome {
            Outcome::Unknown(_) | Outcome::Pending => None,
            _ => Some(now),
        };
        o.outcome = outcome;
    }
}

/// Where a `NotLeader` fault points.
fn named_leader(addr: &Option<String>) -> Option<NodeId> {
    addr.as_deref()?.strip_prefix("sim:")?.parse().ok()
}

impl World {
    /// Step: an idle client calls `updatefile` (`update`) or `getfileinfomap`.
    pub fn client_call(&mut self, update: bool) -> Result<(), Violation> {
        self.begin_step();
        let idle: Vec<usize> = (0..PROBE)
            .filter(|&c| self.clients.clients[c].waiting.is_none())
            .collect();
        let Some(&c) = idle.choose(&mut self.rng) else {
            return self.end_step(None);
        };
        let target = if self.rng.gen_bool(0.8) {
            self.clients.clients[c].leader
        } else {
            self.rng.gen_range(0..self.nodes.len()) as NodeId
        };
        let call = if update {
            let client = &self.clients.clients[c];
            let file = client.files.choose(&mut self.rng).expect("files").clone();
            let known = client.known.get(&file).copied().unwrap_or(0);
            let version = match self.rng.gen_range(0..10) {
                0 => self.rng.gen_range(0..=known),
                1 => known + 2,
                _ => known + 1,
            };
            self.clients.next_hash += 1;
            let hashlist = (0..self.rng.gen_range(0..=2))
                .map(|k| Value::String(format!("h{}.{k}", self.clients.next_hash)))
                .collect();
            Call::Update {
                file,
                version,
                hashlist,
            }
        } else {
            Call::ReadMap
        };
        self.issue(c, target, call, true)?;
        self.end_step(None)
    }

    /// Client `c` sends `call` to `target`; a `NotLeader` naming another
    /// node is followed once (`redirect`).
    fn issue(
        &mut self,
        c: usize,
        target: NodeId,
        call: Call,
        redirect: bool,
    ) -> Result<(), Violation> {
        let invoke = self.clients.now();
        let op = self.clients.ops.len();
        self.clients.ops.push(Op {
            client: c,
            node: target as usize,
            call: call.clone(),
            invoke,
            ret: None,
            outcome: Outcome::Pending,
        });
        let rt = &mut self.nodes[target as usize].rt;
        let answer = match &call {
            Call::Update {
                file,
                version,
                hashlist,
            } => {
                self.clients.stats.updates += 1;
                let cmd = Command::UpdateFile {
                    filename: file.clone(),
                    version: *version,
                    hashlist: hashlist.iter().map(sim_hash).collect(),
                };
                self.checker.proposed(cmd.encode());
                let (reply, rx) = oneshot::channel();
                rt.handle(Request::Update { cmd, reply });
                Answer::Update(rx)
            }
            Call::ReadMap => {
                self.clients.stats.reads += 1;
                let (reply, rx) = oneshot::channel();
                rt.handle(Request::ReadMap { reply });
                Answer::Read(rx, self.checker.commit_len())
            }
        };
        rt.end_turn();
        self.log(|| {
            format!(
                "client {c} -> n{target}: {}",
                self.clients.ops[op].describe()
            )
        });
        let since = self.tick;
        self.clients.clients[c].waiting = Some(Waiting { op, answer, since });
        self.collect(target)?;
        if let Some(leader) = self.poll_client(c)? {
            if redirect && leader != target {
                self.issue(c, leader, call, false)?;
            }
        }
        Ok(())
    }

    /// Polls every client's call; a client that has waited too long gives
    /// up (the outcome is unknown to it) and tries another node next.
    pub(super) fn poll_clients(&mut self) -> Result<(), Violation> {
        for c in 0..self.clients.clients.len() {
            self.poll_client(c)?;
            let timeout = self.clients.timeout;
            let client = &mut self.clients.clients[c];
            if client
                .waiting
                .as_ref()
                .is_some_and(|w| w.since + timeout <= self.tick)
            {
                let w = client.waiting.take().expect("checked");
                client.leader = self.rng.gen_range(0..self.nodes.len()) as NodeId;
                let op = w.op;
                self.clients.abandoned.push(w);
                self.clients
                    .complete(op, Outcome::Unknown("the client timed out".into()));
            }
        }
        self.clients.abandoned.retain_mut(|w| match &mut w.answer {
            Answer::Update(rx) => matches!(rx.try_recv(), Err(TryRecvError::Empty)),
            Answer::Read(rx, _) => matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        });
        Ok(())
    }

    /// Takes client `c`'s answer if it is out. `Some(leader)`: it was a
    /// `NotLeader` naming `leader`.
    fn poll_client(&mut self, c: usize) -> Result<Option<NodeId>, Violation> {
        let Some(w) = self.clients.clients[c].waiting.as_mut() else {
            return Ok(None);
        };
        let op = w.op;
        let answer = match &mut w.answer {
            Answer::Update(rx) => match rx.try_recv() {
                Err(TryRecvError::Empty) => return Ok(None),
                Ok(Ok(b)) => Ok(Ok(Outcome::Updated(b))),
                Ok(Err(e)) => Ok(Err(e)),
                Err(TryRecvError::Closed) => Err(()),
            },
            Answer::Read(rx, min) => match rx.try_recv() {
                Err(TryRecvError::Empty) => return Ok(None),
                Ok(Ok(view)) => {
                    if view.applied_index < *min {
                        return violation(
                            "linearizable reads",
                            format!(
                                "{} answered with the map applied through {}, but {min} was committed before it was sent",
                                self.clients.ops[op].describe(),
                                view.applied_index
                            ),
                        );
                    }
                    Ok(Ok(Outcome::Map(
                        view.files()
                            .map(|(f, i)| {
                                let hashes = i.hashlist.iter().map(hash_value).collect();
                                (f.clone(), (i.version, hashes))
                            })
                            .collect(),
                    )))
                }
                Ok(Err(e)) => Ok(Err(e)),
                Err(TryRecvError::Closed) => Err(()),
            },
        };
        self.clients.clients[c].waiting = None;
        let is_update = matches!(self.clients.ops[op].call, Call::Update { .. });
        let mut redirect = None;
        let outcome = match answer {
            Ok(Ok(outcome)) => outcome,
            Err(()) => Outcome::Unknown("dropped unanswered: the node restarted".into()),
            Ok(Err(NodeError::Unavailable(why))) => Outcome::Unknown(why),
            Ok(Err(NodeError::NotLeader(addr))) => {
                redirect = named_leader(&addr);
                Outcome::NotExecuted(format!("NotLeader {addr:?}"))
            }
            Ok(Err(NodeError::Crashed(id))) => Outcome::NotExecuted(format!("node {id} crashed")),
            Ok(Err(e)) => {
                return violation(
                    "a correct call is taken",
                    format!("{} -> {e}", self.clients.ops[op].describe()),
                )
            }
        };
        let stats = &mut self.clients.stats;
        let client = &mut self.clients.clients[c];
        match (&outcome, &self.clients.ops[op].call) {
            (Outcome::Updated(b), Call::Update { file, version, .. }) => {
                if *b {
                    stats.updates_true += 1;
                    client.known.insert(file.clone(), *version);
                } else {
                    stats.updates_false += 1;
                }
            }
            (Outcome::Map(map), _) => {
                stats.reads_served += 1;
                for (f, (v, _)) in map {
                    client.known.insert(f.clone(), *v);
                }
            }
            (Outcome::Unknown(_), _) => {
                if is_update {
                    stats.updates_unknown += 1;
                }
                let n = self.nodes.len() as NodeId;
                client.leader = self.rng.gen_range(0..n);
            }
            (Outcome::NotExecuted(_), _) => {
                if is_update {
                    stats.updates_refused += 1;
                }
                let n = self.nodes.len() as NodeId;
                client.leader = redirect.unwrap_or_else(|| self.rng.gen_range(0..n));
            }
            _ => {}
        }
        self.clients.complete(op, outcome);
        let op = &self.clients.ops[op];
        self.log(|| format!("client {c} <- {}", op.describe()));
        Ok(redirect)
    }

    /// The heal phase's probe: a fresh file written at `leader`. Returns its name.
    pub(super) fn probe(&mut self, leader: NodeId) -> Result<String, Violation> {
        self.begin_step();
        let file = format!("probe-{}.txt", self.clients.ops.len());
        let call = Call::Update {
            file: file.clone(),
            version: 1,
            hashlist: vec![Value::String("probe".into())],
        };
        self.issue(PROBE, leader, call, false)?;
        self.end_step(None)?;
        Ok(file)
    }

    /// Whether the probe on `file` was acknowledged.
    pub(super) fn probe_acked(&self, file: &str) -> bool {
        self.clients.ops.iter().any(|o| {
            matches!(&o.call, Call::Update { file: f, .. } if f == file)
                && o.outcome == Outcome::Updated(true)
        })
    }

    /// The end-of-run checks on what clients saw (see the module comment).
    pub(super) fn check_clients(&mut self) -> Result<(), Violation> {
        let unanswered: Vec<String> = self
            .clients
            .clients
            .iter()
            .filter_map(|c| c.waiting.as_ref())
            .chain(&self.clients.abandoned)
            .map(|w| self.clients.ops[w.op].describe())
            .collect();
        if !unanswered.is_empty() {
            return violation(
                "every call is answered",
                format!(
                    "left unanswered after the final settle: {}",
                    unanswered.join("; ")
                ),
            );
        }
        for op in &self.clients.ops {
            let Call::Update {
                file,
                version,
                hashlist,
            } = &op.call
            else {
                continue;
            };
            if op.outcome != Outcome::Updated(true) {
                continue;
            }
            for (n, node) in self.nodes.iter().enumerate() {
                let kept = node.rt.metadata().get(file).is_some_and(|i| {
                    i.version > *version
                        || (i.version == *version
                            && i.hashlist
                                .iter()
                                .map(hash_value)
                                .eq(hashlist.iter().cloned()))
                });
                if !kept {
                    return violation(
                        "acknowledged updates are kept",
                        format!(
                            "node {n}'s final map has {:?} for {file:?}; acknowledged: {}",
                            node.rt
                                .metadata()
                                .get(file)
                                .map(|i| (i.version, &i.hashlist)),
                            op.describe()
                        ),
                    );
                }
            }
        }
        self.check_linearizable()
    }

    fn check_linearizable(&mut self) -> Result<(), Violation> {
        let history = History {
            ops: std::mem::take(&mut self.clients.ops),
        };
        let mut files: Vec<String> = history
            .ops
            .iter()
            .filter_map(|o| match &o.call {
                Call::Update { file, .. } => Some(file.clone()),
                Call::ReadMap => None,
            })
            .collect();
        files.sort();
        files.dedup();
        let mut result = Ok(());
        for fh in history.per_file(&files) {
            self.clients.stats.histories_checked += 1;
            self.clients.stats.ops_checked += fh.ops.len() as u64;
            let (verdict, _) = checker::check(&fh.ops, model::State::ABSENT, None, false);
            if let Verdict::Illegal(_) = verdict {
                let (verdict, _) = checker::check(&fh.ops, model::State::ABSENT, None, true);
                let why = match verdict {
                    Verdict::Illegal(stuck) => explain::explain(&history, &fh, &stuck).to_string(),
                    other => format!("{other:?} on the second search"),
                };
                result = violation("linearizability", why);
                break;
            }
        }
        self.clients.ops = history.ops;
        result
    }
}
