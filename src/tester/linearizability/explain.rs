//! Turns an illegal verdict into a short sub-history a person can read.
//!
//! The search reports its deepest partial linearization and the operation it
//! could not get past (X). The explanation starts from the state after all but
//! the last `j` operations of that prefix and keeps only what could matter to
//! X: those `j` operations plus every operation invoked before X returned. The
//! ones still running when X returned are made optional (writes become of
//! unknown outcome, reads are dropped), so the window can only be more
//! permissive than the history it came from. `j` starts where the window
//! includes the write that set the state the search was stuck in, and doubles
//! until the window alone is not linearizable; that window is printed,
//! checked, as the offending sub-history. If no window fails on its own, the
//! context around X is printed instead, marked as unverified.

use std::time::Instant;

use super::checker::{self, Stuck, Verdict};
use super::history::{FileHistory, FileOp, History};
use super::model::{FileOpKind, State};

/// A window of one file's history shown to be non-linearizable (or, when
/// `verified` is false, the context where the search got stuck).
#[derive(Clone, Debug)]
pub struct Explanation {
    pub file: String,
    /// The state the window starts from, in words.
    pub start: String,
    /// How many operations the search linearized before the window.
    pub before: usize,
    /// The window's operations, by invocation time, one per line.
    pub lines: Vec<String>,
    /// The line of the operation the search could not get past.
    pub stuck: String,
    pub verified: bool,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "file {:?}: {} after the first {} operation(s) linearized, {}:",
            self.file,
            self.start,
            self.before,
            if self.verified {
                "these cannot be linearized"
            } else {
                "the search got stuck here (window not verified on its own)"
            }
        )?;
        for line in &self.lines {
            writeln!(f, "  {line}")?;
        }
        write!(f, "  no place for: {}", self.stuck)
    }
}

/// Explains why `fh` is not linearizable, given the stuck point of a search.
pub fn explain(history: &History, fh: &FileHistory, stuck: &Stuck) -> Explanation {
    let x = &fh.ops[stuck.op];
    let horizon = x.ret.unwrap_or(u64::MAX);
    let mut in_prefix = vec![false; fh.ops.len()];
    for &i in &stuck.prefix {
        in_prefix[i] = true;
    }
    // Start with the window reaching back to the operation that set the
    // state the search was in, so the window shows where that state came from.
    let mut j = last_change(fh, &stuck.prefix).map_or(0, |pos| stuck.prefix.len() - pos);
    loop {
        let keep_from = stuck.prefix.len().saturating_sub(j);
        let (start, before) = state_after(fh, &stuck.prefix[..keep_from]);
        let mut window: Vec<usize> = stuck.prefix[keep_from..].to_vec();
        // Operations of unknown outcome that can no longer do anything from
        // the window's start state cannot matter to it.
        window.extend((0..fh.ops.len()).filter(|&i| {
            let op = &fh.ops[i];
            !in_prefix[i]
                && op.invoke <= horizon
                && !(op.ret.is_none() && super::model::spent(start, &op.kind))
        }));
        window.sort_by_key(|&i| (fh.ops[i].invoke, i));
        let sub: Vec<FileOp> = window
            .iter()
            .filter_map(|&i| optional_after(fh.ops[i], horizon))
            .collect();
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        let (verdict, _) = checker::check(&sub, start, Some(deadline), false);
        let verified = matches!(verdict, Verdict::Illegal(_));
        if verified || keep_from == 0 {
            return Explanation {
                file: fh.file.clone(),
                start: describe_state(fh, start),
                before,
                lines: window.iter().map(|&i| line(history, fh, i)).collect(),
                stuck: line(history, fh, stuck.op),
                verified,
            };
        }
        j = if j == 0 { 1 } else { j * 2 };
    }
}

/// The position in `prefix` of the last operation that changed the state.
fn last_change(fh: &FileHistory, prefix: &[usize]) -> Option<usize> {
    let mut s = State::ABSENT;
    let mut last = None;
    for (pos, &i) in prefix.iter().enumerate() {
        let next = super::model::step(s, &fh.ops[i].kind).unwrap_or(s);
        if next != s {
            last = Some(pos);
        }
        s = next;
    }
    last
}

/// The state after applying `prefix` (a valid linearization) from absence.
fn state_after(fh: &FileHistory, prefix: &[usize]) -> (State, usize) {
    let mut s = State::ABSENT;
    for &i in prefix {
        s = super::model::step(s, &fh.ops[i].kind).unwrap_or(s);
    }
    (s, prefix.len())
}

/// The operation as seen from `horizon`: one still running then is optional.
fn optional_after(op: FileOp, horizon: u64) -> Option<FileOp> {
    match op.ret {
        Some(r) if r <= horizon => Some(op),
        _ => match op.kind {
            FileOpKind::Read { .. } => None,
            FileOpKind::Write { version, hash, .. } => Some(FileOp {
                ret: None,
                kind: FileOpKind::Write {
                    version,
                    hash,
                    ok: None,
                },
                ..op
            }),
        },
    }
}

fn describe_state(fh: &FileHistory, s: State) -> String {
    if s.version == 0 {
        "starting from the file absent".to_owned()
    } else {
        format!(
            "starting from version {} with hashlist {}",
            s.version,
            fh.hash_text(s.hash)
        )
    }
}

/// `[  1.234567 s ..  1.235012 s] c2@n0 updatefile('f', 3, ['x']) -> True`
fn line(history: &History, fh: &FileHistory, i: usize) -> String {
    let op = &fh.ops[i];
    let secs = |n: u64| n as f64 / 1e9;
    let ret = match op.ret {
        Some(r) => format!("{:>10.6} s", secs(r)),
        None => format!("{:>12}", "never"),
    };
    format!(
        "[{:>10.6} s .. {ret}] {}",
        secs(op.invoke),
        history.ops[op.source].describe()
    )
}
