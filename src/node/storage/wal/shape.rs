//! `LogShape`: what the write-ahead log holds, without the entries' data:
//! the hard state, the snapshot's (index, term), the last index, the term of
//! every held entry and the segment it was last written to, both as runs (a
//! few words per term and per segment, however many entries the log holds).
//! `DiskStore` keeps one instead of a copy of the log; the entries themselves
//! are only on disk, and compaction reads the ones it keeps back from the
//! segments (`DiskStore::read_entries`).
//!
//! Its rules are `MemStore`'s (an entry at an index already held replaces it
//! and everything after it; a snapshot keeps the entries after it only if the
//! log holds its (index, term)), so recovery replays the segments into both
//! and checks that they agree.
//!
//! Why a segment run is enough to find an entry: writing entry `i` drops
//! every entry after it, so the entry held at `i + 1` was written after the
//! one held at `i`. The held entries lie in the files in index order, and the
//! segment of each is non-decreasing in its index.

use crate::node::raft::{Entry, HardState, LogIndex, Term};

/// Segment sequence numbers (`segment::name`).
pub type Seq = u64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogShape {
    hard_state: HardState,
    /// The log starts after (`snapshot_index`, `snapshot_term`); (0, 0): no
    /// snapshot, the log starts at 1.
    snapshot_index: LogIndex,
    snapshot_term: Term,
    /// Invariant: `last_index >= snapshot_index`; entries
    /// `snapshot_index + 1 ..= last_index` are held.
    last_index: LogIndex,
    /// (first index, term) runs over the held entries. Invariant: empty iff
    /// no entry is held; else the first starts at `snapshot_index + 1`, the
    /// first indexes increase and stay `<= last_index`, and neighbouring runs
    /// differ in term.
    terms: Vec<(LogIndex, Term)>,
    /// (first index, segment) runs: where each held entry was last written.
    /// The same invariants as `terms`, with the segments increasing.
    segments: Vec<(LogIndex, Seq)>,
}

/// Drops the runs that start after `last` (the entries after it are gone).
fn truncate_runs<T>(runs: &mut Vec<(LogIndex, T)>, last: LogIndex) {
    let keep = runs.partition_point(|&(first, _)| first <= last);
    runs.truncate(keep);
}

/// Drops what `runs` say about entries up to `through` (a snapshot covers
/// them): the run holding `through + 1` then starts there.
fn drop_runs_through<T: Copy>(runs: &mut Vec<(LogIndex, T)>, through: LogIndex) {
    // The runs starting at or before `through + 1`: the last of them holds it.
    let upto = runs.partition_point(|&(first, _)| first <= through + 1);
    if upto == 0 {
        return;
    }
    runs.drain(..upto - 1);
    runs[0].0 = through + 1;
}

/// Appends `v` for the entries from `first` on (the runs end before `first`).
fn push_run<T: PartialEq>(runs: &mut Vec<(LogIndex, T)>, first: LogIndex, v: T) {
    if runs.last().is_none_or(|(_, last)| *last != v) {
        runs.push((first, v));
    }
}

/// The value of the run holding `index` (the caller checked it is held).
fn run_at<T: Copy>(runs: &[(LogIndex, T)], index: LogIndex) -> T {
    let i = runs.partition_point(|&(first, _)| first <= index);
    assert!(i > 0, "log shape invariant: the runs cover entry {index}");
    runs[i - 1].1
}

impl LogShape {
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    pub fn snapshot_term(&self) -> Term {
        self.snapshot_term
    }

    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    /// The term of the entry at `index` (the snapshot's for its own index),
    /// `None` when the log does not hold it (compacted away or past the end).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index {
            return None;
        }
        Some(run_at(&self.terms, index))
    }

    /// The segment the entry at `index` was last written to (`None`: not
    /// held).
    pub fn segment_of(&self, index: LogIndex) -> Option<Seq> {
        (index > self.snapshot_index && index <= self.last_index)
            .then(|| run_at(&self.segments, index))
    }

    /// Whether a snapshot at `index` is newer than the one held.
    pub fn is_newer(&self, index: LogIndex) -> bool {
        index > self.snapshot_index
    }

    /// The indexes of the entries a snapshot at (`index`, `term`) keeps:
    /// those after it if the log holds (`index`, `term`), none otherwise.
    pub fn retained(&self, index: LogIndex, term: Term) -> std::ops::RangeInclusive<LogIndex> {
        if index >= self.snapshot_index && self.term_at(index) == Some(term) {
            index + 1..=self.last_index
        } else {
            // Empty.
            index + 1..=index
        }
    }

    /// Records that `entries` (contiguous, the first at most one past the
    /// end and after the snapshot) were written to segment `seq`: each
    /// replaces the entry at its index and every entry after it.
    pub fn append(&mut self, entries: &[Entry], seq: Seq) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index > self.snapshot_index && first.index <= self.last_index + 1,
            "log contiguity invariant: persisting index {} after last {} (snapshot {})",
            first.index,
            self.last_index,
            self.snapshot_index
        );
        truncate_runs(&mut self.terms, first.index - 1);
        truncate_runs(&mut self.segments, first.index - 1);
        if let Some(&(last_seg_first, last_seg)) = self.segments.last() {
            assert!(
                last_seg <= seq,
                "log shape invariant: entry {} written to segment {seq}, before segment {last_seg} that holds entry {last_seg_first}",
                first.index
            );
        }
        push_run(&mut self.segments, first.index, seq);
        for (k, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                first.index + k as LogIndex,
                "log contiguity invariant: a batch of entries from {} skips to {}",
                first.index,
                e.index
            );
            push_run(&mut self.terms, e.index, e.term);
        }
        self.last_index = first.index + entries.len() as LogIndex - 1;
    }

    /// Applies the snapshot rule (see `LogStore::save_snapshot`); `false`
    /// when it is not newer than the one held and was ignored. The commit
    /// index is raised to at least `index` (what a snapshot holds is
    /// committed).
    pub fn apply_snapshot(&mut self, index: LogIndex, term: Term) -> bool {
        if !self.is_newer(index) {
            return false;
        }
        if self.retained(index, term).is_empty() {
            self.terms.clear();
            self.segments.clear();
            self.last_index = index;
        } else {
            drop_runs_through(&mut self.terms, index);
            drop_runs_through(&mut self.segments, index);
        }
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.snapshot_index = index;
        self.snapshot_term = term;
        true
    }

    /// Every held entry now lies in segment `seq` (a compaction rewrote them).
    pub fn relocate(&mut self, seq: Seq) {
        self.segments.clear();
        if self.last_index > self.snapshot_index {
            self.segments.push((self.snapshot_index + 1, seq));
        }
    }

    /// Heap bytes held (the runs' capacity).
    pub fn heap_bytes(&self) -> usize {
        self.terms.capacity() * std::mem::size_of::<(LogIndex, Term)>()
            + self.segments.capacity() * std::mem::size_of::<(LogIndex, Seq)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn es(term: Term, indexes: std::ops::RangeInclusive<LogIndex>) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                term,
                index,
                data: Bytes::new(),
            })
            .collect()
    }

    #[test]
    fn runs_follow_appends_overwrites_and_snapshots() {
        let mut s = LogShape::default();
        s.append(&es(1, 1..=5), 1);
        s.append(&es(2, 6..=8), 1);
        s.append(&es(2, 9..=9), 2);
        assert_eq!(s.last_index(), 9);
        assert_eq!(s.terms, vec![(1, 1), (6, 2)]);
        assert_eq!(s.segments, vec![(1, 1), (9, 2)]);
        assert_eq!(
            (s.term_at(5), s.term_at(6), s.term_at(10)),
            (Some(1), Some(2), None)
        );
        // An overwrite at 4 drops 4.. and starts a run in the current segment.
        s.append(&es(3, 4..=4), 3);
        assert_eq!(s.last_index(), 4);
        assert_eq!(s.terms, vec![(1, 1), (4, 3)]);
        assert_eq!(s.segments, vec![(1, 1), (4, 3)]);
        assert_eq!(
            (s.segment_of(3), s.segment_of(4), s.segment_of(5)),
            (Some(1), Some(3), None)
        );
        // Compaction through 3 keeps 4 and starts the runs after 3.
        assert_eq!(s.retained(3, 1), 4..=4);
        assert!(s.apply_snapshot(3, 1));
        assert_eq!(s.terms, vec![(4, 3)]);
        assert_eq!(s.segments, vec![(4, 3)]);
        assert_eq!(
            (s.term_at(3), s.term_at(2), s.segment_of(3)),
            (Some(1), None, None)
        );
        assert_eq!(s.hard_state().commit, 3);
        // An older or equal snapshot is ignored.
        assert!(!s.apply_snapshot(3, 9));
        assert!(!s.apply_snapshot(2, 1));
        // One through the last entry leaves no runs.
        assert!(s.apply_snapshot(4, 3));
        assert_eq!((s.terms.len(), s.segments.len(), s.last_index()), (0, 0, 4));
        s.append(&es(3, 5..=6), 4);
        assert_eq!(s.retained(5, 3), 6..=6);
    }

    #[test]
    fn a_conflicting_or_short_log_is_discarded_by_a_snapshot() {
        let mut s = LogShape::default();
        s.append(&es(1, 1..=6), 1);
        assert!(s.retained(4, 2).is_empty());
        assert!(s.apply_snapshot(4, 2));
        assert_eq!(
            (s.last_index(), s.terms.len(), s.term_at(4)),
            (4, 0, Some(2))
        );
        assert!(s.apply_snapshot(20, 3));
        assert_eq!(
            (s.last_index(), s.segments.len(), s.term_at(20)),
            (20, 0, Some(3))
        );
        s.append(&es(3, 21..=21), 1);
        assert_eq!(s.terms, vec![(21, 3)]);
    }

    #[test]
    fn a_gap_or_a_write_into_the_snapshot_panics_naming_the_invariant() {
        let mut s = LogShape::default();
        s.append(&es(1, 1..=3), 1);
        let gap = std::panic::catch_unwind(|| s.clone().append(&es(1, 5..=5), 1));
        assert!(gap.is_err());
        let mut snapped = s.clone();
        snapped.apply_snapshot(2, 1);
        let into = std::panic::catch_unwind(move || snapped.append(&es(1, 2..=2), 1));
        assert!(into.is_err());
        let mut skip = es(1, 4..=5);
        skip[1].index = 7;
        assert!(std::panic::catch_unwind(move || s.append(&skip, 1)).is_err());
    }
}
