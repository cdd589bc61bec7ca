//! Linearizability checking of SurfStore histories: the recorded history and
//! its per-file projection ([`history`]), the version-register model
//! ([`model`]), the Wing–Gong/Lowe/Porcupine search ([`checker`]) and the
//! offending sub-history of a failure ([`explain`]).
//!
//! [`check_files`] checks each file alone (P-compositionality): a history of
//! independent registers is linearizable iff each register's is.

pub mod checker;
pub mod explain;
pub mod history;
pub mod model;

use std::time::{Duration, Instant};

pub use checker::{SearchStats, Verdict};
pub use explain::Explanation;
pub use history::{Call, History, Outcome, Recorder};

/// The verdict for one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub file: String,
    /// Operations in the file's sub-history (updates of it, reads of all).
    pub ops: usize,
    /// Of which with an unknown outcome.
    pub unknown: usize,
    pub verdict: FileVerdict,
    pub stats: SearchStats,
    pub took: Duration,
}

#[derive(Clone, Debug)]
pub enum FileVerdict {
    Linearizable,
    Illegal(Box<Explanation>),
    /// The search ran out of time: undecided.
    TimedOut,
}

/// The verdict for a whole history.
#[derive(Clone, Debug)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub took: Duration,
}

impl Report {
    pub fn linearizable(&self) -> bool {
        self.files
            .iter()
            .all(|f| matches!(f.verdict, FileVerdict::Linearizable))
    }

    /// Operations checked per second of search, over all files.
    pub fn ops_per_second(&self) -> f64 {
        let ops: usize = self.files.iter().map(|f| f.ops).sum();
        ops as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Checks the sub-history of each of `files`, each within `budget`.
pub fn check_files(history: &History, files: &[String], budget: Duration) -> Report {
    let started = Instant::now();
    let reports = history
        .per_file(files)
        .into_iter()
        .map(|fh| {
            let t = Instant::now();
            let (verdict, stats) =
                checker::check(&fh.ops, model::State::ABSENT, Some(t + budget), true);
            let verdict = match verdict {
                Verdict::Linearizable => FileVerdict::Linearizable,
                Verdict::TimedOut => FileVerdict::TimedOut,
                Verdict::Illegal(stuck) => {
                    FileVerdict::Illegal(Box::new(explain::explain(history, &fh, &stuck)))
                }
            };
            FileReport {
                file: fh.file.clone(),
                ops: fh.ops.len(),
                unknown: fh.ops.iter().filter(|o| o.ret.is_none()).count(),
                verdict,
                stats,
                took: t.elapsed(),
            }
        })
        .collect();
    Report {
        files: reports,
        took: started.elapsed(),
    }
}
