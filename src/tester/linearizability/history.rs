//! The history of a concurrent workload, as its clients saw it, and its
//! projection onto single files.
//!
//! Every operation is recorded with its invocation time (taken just before the
//! request is sent) and its return time (just after the answer arrives), on one
//! monotonic clock, so real-time order in the history is real-time order in
//! the world. Outcomes are classified by what the answer proves:
//! - a value (`true`/`false`, a map): the operation took effect exactly so,
//!   somewhere between invocation and return;
//! - [`Outcome::NotExecuted`]: the node refused before proposing (fault 1
//!   `isCrashed`, fault 2 `NotLeader`, or no connection could be made), so
//!   the operation had no effect and is left out of the check;
//! - [`Outcome::Unknown`]: fault 5 `Unavailable`, a timeout or a broken
//!   connection: it may take effect at any time after its invocation, so it is
//!   checked with no return time at all (Porcupine's "infinite return").
//!
//! A `getfileinfomap` answer reads every file at once; projecting it onto each
//! file separately (P-compositionality, Herlihy & Wing) lets each file be
//! checked alone. That checks every file's register; it does not check that
//! one answer shows all files at the same instant.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use super::model::{FileOpKind, NO_HASH};
use crate::tester::fmt;
use crate::xmlrpc::Value;

/// Nanoseconds since the recorder started.
pub type Nanos = u64;

/// A file as a `getfileinfomap` answer shows it.
pub type FileInfo = (i64, Vec<Value>);

/// What a client asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Update {
        file: String,
        version: i64,
        hashlist: Vec<Value>,
    },
    ReadMap,
}

/// What a client learned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Not answered yet (the client has not finished the call).
    Pending,
    Updated(bool),
    Map(BTreeMap<String, FileInfo>),
    /// The answer does not say whether the operation took effect.
    Unknown(String),
    /// The answer proves the operation had no effect.
    NotExecuted(String),
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub client: usize,
    /// The node the call went to.
    pub node: usize,
    pub call: Call,
    pub invoke: Nanos,
    /// When the answer arrived; `None` while pending or when the outcome is unknown.
    pub ret: Option<Nanos>,
    pub outcome: Outcome,
}

impl Op {
    /// The operation in one line: `c2@n0 updatefile('f', 3, ['x']) -> True`.
    pub fn describe(&self) -> String {
        let call = match &self.call {
            Call::Update {
                file,
                version,
                hashlist,
            } => format!(
                "updatefile({}, {version}, {})",
                fmt::string(file),
                fmt::value(&Value::Array(hashlist.clone()))
            ),
            Call::ReadMap => "getfileinfomap()".to_owned(),
        };
        let outcome = match &self.outcome {
            Outcome::Pending => "(pending)".to_owned(),
            Outcome::Updated(b) => fmt::value(&Value::Bool(*b)),
            Outcome::Map(m) => map_text(m),
            Outcome::Unknown(why) => format!("unknown ({why})"),
            Outcome::NotExecuted(why) => format!("not executed ({why})"),
        };
        format!("c{}@n{} {call} -> {outcome}", self.client, self.node)
    }
}

fn map_text(m: &BTreeMap<String, FileInfo>) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(f, (v, h))| {
            format!(
                "{}: [{v}, {}]",
                fmt::string(f),
                fmt::value(&Value::Array(h.clone()))
            )
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// Records operations from many client tasks at once.
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// The clock every time in the history is read from.
    pub fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records the invocation of `call` (call this just before sending it).
    pub fn invoke(&self, client: usize, node: usize, call: Call) -> usize {
        let invoke = self.now();
        let mut ops = self.ops.lock().expect("recorder lock");
        ops.push(Op {
            client,
            node,
            call,
            invoke,
            ret: None,
            outcome: Outcome::Pending,
        });
        ops.len() - 1
    }

    /// Records the answer to operation `id` (call this just after it arrives).
    pub fn complete(&self, id: usize, outcome: Outcome) {
        let now = self.now();
        let mut ops = self.ops.lock().expect("recorder lock");
        let op = &mut ops[id];
        op.ret = match outcome {
            Outcome::Unknown(_) | Outcome::Pending => None,
            _ => Some(now),
        };
        op.outcome = outcome;
    }

    /// Everything recorded; operations still pending become unknown.
    pub fn history(&self) -> History {
        let mut ops = self.ops.lock().expect("recorder lock").clone();
        for op in &mut ops {
            if op.outcome == Outcome::Pending {
                op.outcome = Outcome::Unknown("still pending when the history was taken".into());
            }
        }
        History { ops }
    }
}

/// A finished history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub ops: Vec<Op>,
}

/// One operation of a single file's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOp {
    pub invoke: Nanos,
    /// `None`: unknown outcome, no return time.
    pub ret: Option<Nanos>,
    pub kind: FileOpKind,
    /// The index of the operation in the whole [`History`] it came from.
    pub source: usize,
}

/// One file's sub-history, ready for the checker.
#[derive(Clone, Debug, Default)]
pub struct FileHistory {
    pub file: String,
    pub ops: Vec<FileOp>,
    /// Interned hashlists, in Python notation: `hashes[id - 1]` is hash `id`.
    pub hashes: Vec<String>,
}

impl FileHistory {
    /// The hashlist behind an interned id, in Python notation.
    pub fn hash_text(&self, id: u32) -> &str {
        if id == NO_HASH {
            "-"
        } else {
            &self.hashes[id as usize - 1]
        }
    }
}

/// Interns hashlists of one file.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    texts: Vec<String>,
}

impl Interner {
    fn id(&mut self, hashlist: &[Value]) -> u32 {
        let text = fmt::value(&Value::Array(hashlist.to_vec()));
        if let Some(&id) = self.ids.get(&text) {
            return id;
        }
        self.texts.push(text.clone());
        let id = self.texts.len() as u32;
        self.ids.insert(text, id);
        id
    }
}

impl History {
    /// Operations in invocation order with their times, for printing.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many operations ended with an unknown outcome.
    pub fn unknown(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Unknown(_)))
            .count()
    }

    /// How many operations were refused without effect.
    pub fn not_executed(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::NotExecuted(_)))
            .count()
    }

    /// The sub-history of each of `files`: its updates, and every completed
    /// `getfileinfomap` read as a read of that file. Operations without effect
    /// and reads of unknown outcome (which constrain nothing) are left out.
    pub fn per_file(&self, files: &[String]) -> Vec<FileHistory> {
        let index: HashMap<&str, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        let mut out: Vec<FileHistory> = files
            .iter()
            .map(|f| FileHistory {
                file: f.clone(),
                ..FileHistory::default()
            })
            .collect();
        let mut interners: Vec<Interner> = files.iter().map(|_| Interner::default()).collect();
        for (source, op) in self.ops.iter().enumerate() {
            match (&op.call, &op.outcome) {
                (_, Outcome::NotExecuted(_)) | (_, Outcome::Pending) => {}
                (
                    Call::Update {
                        file,
                        version,
                        hashlist,
                    },
                    outcome,
                ) => {
                    let Some(&i) = index.get(file.as_str()) else {
                        continue;
                    };
                    let ok = match outcome {
                        Outcome::Updated(b) => Some(*b),
                        _ => None,
                    };
                    let hash = interners[i].id(hashlist);
                    out[i].ops.push(FileOp {
                        invoke: op.invoke,
                        ret: if ok.is_some() { op.ret } else { None },
                        kind: FileOpKind::Write {
                            version: *version,
                            hash,
                            ok,
                        },
                        source,
                    });
                }
                (Call::ReadMap, Outcome::Map(map)) => {
                    for (i, file) in files.iter().enumerate() {
                        let (version, hash) = match map.get(file) {
                            Some((v, h)) => (*v, interners[i].id(h)),
                            None => (0, NO_HASH),
                        };
                        out[i].ops.push(FileOp {
                            invoke: op.invoke,
                            ret: op.ret,
                            kind: FileOpKind::Read { version, hash },
                            source,
                        });
                    }
                }
                (Call::ReadMap, _) => {}
            }
        }
        for (h, interner) in out.iter_mut().zip(interners) {
            h.hashes = interner.texts;
        }
        out
    }
}

/// `v` with every `i8` that fits in 32 bits written as an `int`: to a Python
/// client both are `int`, so the tester does not tell them apart either.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::I8(i) => i32::try_from(*i).map_or(Value::I8(*i), Value::Int),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Struct(members) => Value::Struct(
            members
                .iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Parses a `getfileinfomap` answer into a map; `None` if it has another shape.
pub fn parse_map(v: &Value) -> Option<BTreeMap<String, FileInfo>> {
    let mut out = BTreeMap::new();
    for (name, info) in v.as_struct()? {
        let pair = info.as_array()?;
        if pair.len() != 2 {
            return None;
        }
        let version = pair[0].as_i64()?;
        let hashlist = pair[1].as_array()?.iter().map(normalize).collect();
        out.insert(name.clone(), (version, hashlist));
    }
    Some(out)
}
