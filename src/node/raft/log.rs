//! `RaftLog`: the in-memory log of one core and the four cursors over it.
//!
//! The log may start after a snapshot: entries `1..=offset` are compacted
//! (the state machine as of `offset` replaces them; only `offset_term`, the
//! term of entry `offset`, is kept, so the entry after it can still be
//! matched).
//!
//! Promises (checked; a violation panics naming the invariant):
//! - `entries[k].index == offset + k + 1`; terms never decrease along the
//!   log (starting from `offset_term`);
//! - `offset <= applied <= commit <= last_index` (`applied` = last index
//!   handed out in `Ready.committed_entries` or covered by a snapshot), and
//!   `commit` never decreases;
//! - a committed entry is never truncated;
//! - `persisted < unstable <= last_index + 1`: entries below `unstable` have
//!   been handed out in `Ready.entries`; entries through `persisted` were also
//!   `advance()`d, i.e. are durable. Truncation pulls both cursors back.

use bytes::Bytes;

use super::error::RaftError;
use super::types::{Entry, LogIndex, Term};

#[derive(Debug)]
pub struct RaftLog {
    /// The last compacted index (0: nothing compacted) and its term.
    offset: LogIndex,
    offset_term: Term,
    /// `entries[k].index == offset + k + 1`.
    entries: Vec<Entry>,
    /// Highest index known committed. `applied <= commit <= last_index()`.
    commit: LogIndex,
    /// Last index handed out for applying.
    applied: LogIndex,
    /// First index not yet handed out in `Ready.entries`.
    unstable: LogIndex,
    /// Last index known durable. `persisted < unstable`.
    persisted: LogIndex,
    /// The seeded `apply-uncommitted` bug: hand out durable entries past
    /// the commit index. Always `false` outside the simulation's self-test.
    pub(super) apply_past_commit: bool,
}

/// Why an AppendEntries could not be matched, as the follower reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConflictHint {
    /// First index of `term` in the follower's log, or its last index + 1.
    pub index: LogIndex,
    /// The follower's term at the rejected `prev_index`, or 0 if it has no entry there.
    pub term: Term,
}

impl RaftLog {
    /// A log restored from storage: everything in it is durable; nothing
    /// after the snapshot (`offset`, `offset_term`) is applied yet.
    pub fn restore(
        offset: LogIndex,
        offset_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
    ) -> Result<RaftLog, RaftError> {
        if (offset == 0) != (offset_term == 0) {
            return Err(RaftError::InvalidStorage(format!(
                "snapshot at index {offset} has term {offset_term}"
            )));
        }
        let mut prev_term = offset_term;
        for (k, e) in entries.iter().enumerate() {
            if e.index != offset + k as u64 + 1 {
                return Err(RaftError::InvalidStorage(format!(
                    "entry at position {k} has index {} (the log starts at {} and is contiguous)",
                    e.index,
                    offset + 1
                )));
            }
            if e.term == 0 || e.term < prev_term {
                return Err(RaftError::InvalidStorage(format!(
                    "entry {} has term {} after term {prev_term}",
                    e.index, e.term
                )));
            }
            prev_term = e.term;
        }
        let last = offset + entries.len() as u64;
        if commit > last {
            return Err(RaftError::InvalidStorage(format!(
                "commit {commit} is beyond the last log index {last}"
            )));
        }
        Ok(RaftLog {
            offset,
            offset_term,
            entries,
            commit: commit.max(offset),
            applied: offset,
            unstable: last + 1,
            persisted: last,
            apply_past_commit: false,
        })
    }

    pub fn last_index(&self) -> LogIndex {
        self.offset + self.entries.len() as u64
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// The last compacted index (the snapshot's index; 0 if none).
    pub fn snapshot_index(&self) -> LogIndex {
        self.offset
    }

    pub fn snapshot_term(&self) -> Term {
        self.offset_term
    }

    /// The term at `index`: known for the snapshot's index (0 before any
    /// snapshot) and every entry held; `None` when compacted or beyond.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held (not compacted, not beyond the end).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index - self.offset) as usize - 1)
    }

    /// Position of `index` in `entries` (`offset < index`).
    fn pos(&self, index: LogIndex) -> usize {
        debug_assert!(index > self.offset);
        (index - self.offset) as usize - 1
    }

    pub fn commit(&self) -> LogIndex {
        self.commit
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    pub fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// Section 5.4.1: is a log ending at (`last_index`, `last_term`) at least
    /// as up to date as this one?
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Leader: append a new entry at the end; returns its index.
    pub fn append_new(&mut self, term: Term, data: Bytes) -> LogIndex {
        assert!(
            term >= self.last_term(),
            "invariant: log terms never decrease (appending term {term} after {})",
            self.last_term()
        );
        let index = self.last_index() + 1;
        self.entries.push(Entry { term, index, data });
        index
    }

    /// The first entry of `entries` that is missing here or has another
    /// term (compacted entries are committed, so they never conflict).
    pub fn find_conflict(&self, entries: &[Entry]) -> Option<LogIndex> {
        entries
            .iter()
            .find(|e| e.index > self.offset && self.term(e.index) != Some(e.term))
            .map(|e| e.index)
    }

    /// Follower: the leader's entries follow `prev_index`, which the caller has
    /// verified matches. Keeps every entry that agrees, truncates at the first
    /// conflict and appends the rest. Returns the last index the message
    /// verified (`prev_index + entries.len()`).
    pub fn append_after(&mut self, prev_index: LogIndex, entries: &[Entry]) -> LogIndex {
        let last_new = prev_index + entries.len() as u64;
        if let Some(conflict) = self.find_conflict(entries) {
            assert!(
                conflict > self.commit,
                "invariant: committed entries are never truncated (conflict at {conflict}, commit {})",
                self.commit
            );
            let keep = self.pos(conflict);
            if keep < self.entries.len() {
                self.entries.truncate(keep);
                self.unstable = self.unstable.min(conflict);
                self.persisted = self.persisted.min(conflict - 1);
            }
            let skip = (conflict - entries[0].index) as usize;
            self.entries.extend_from_slice(&entries[skip..]);
        }
        last_new
    }

    /// Follower: the hint sent back when `prev_index` does not match.
    pub fn conflict_hint(&self, prev_index: LogIndex) -> ConflictHint {
        match self.term(prev_index) {
            None => ConflictHint {
                index: self.last_index() + 1,
                term: 0,
            },
            Some(term) => ConflictHint {
                index: self.first_index_of_term(term),
                term,
            },
        }
    }

    /// First index holding `term` (terms are non-decreasing, so they form
    /// one run), or the snapshot's index if the run starts there.
    fn first_index_of_term(&self, term: Term) -> LogIndex {
        if self.offset > 0 && term <= self.offset_term {
            return self.offset;
        }
        self.offset + self.entries.partition_point(|e| e.term < term) as u64 + 1
    }

    /// Last index holding `term`, if any (the snapshot's index counts).
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let n = self.entries.partition_point(|e| e.term <= term);
        if n > 0 && self.entries[n - 1].term == term {
            return Some(self.offset + n as u64);
        }
        (n == 0 && self.offset > 0 && self.offset_term == term).then_some(self.offset)
    }

    /// Entries from `from` on, at most `max_entries` and `max_bytes` of data,
    /// but at least one entry if any exists.
    /// Empty if `from` is compacted or beyond the end.
    pub fn slice(&self, from: LogIndex, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        if from <= self.offset || from > self.last_index() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in &self.entries[self.pos(from)..] {
            if out.len() >= max_entries
                || (!out.is_empty() && bytes.saturating_add(e.data.len()) > max_bytes)
            {
                break;
            }
            bytes = bytes.saturating_add(e.data.len());
            out.push(e.clone());
        }
        out
    }

    /// Raise the commit index (never lowers it).
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.commit {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "invariant: commit <= last_index (commit_to {index}, last {})",
            self.last_index()
        );
        self.commit = index;
        true
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable <= self.last_index()
    }

    /// Hand out the entries not yet given to the driver for persisting.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.pos(self.unstable);
        self.unstable = self.last_index() + 1;
        self.entries[from..].to_vec()
    }

    /// The driver made everything through (`index`, `term`) durable. Ignored if
    /// the log has since changed at `index` (the driver will be handed the
    /// replacement in a later `Ready`).
    pub fn persisted_to(&mut self, index: LogIndex, term: Term) {
        if index < self.unstable && self.term(index) == Some(term) && index > self.persisted {
            self.persisted = index;
        }
    }

    /// Only durable entries are applied: on a follower the commit index
    /// can run ahead of what its own disk holds.
    fn applicable(&self) -> LogIndex {
        if self.apply_past_commit {
            return self.persisted.min(self.last_index()).max(self.applied);
        }
        self.commit.min(self.persisted.max(self.applied))
    }

    pub fn has_committed_to_apply(&self) -> bool {
        self.applied < self.applicable()
    }

    /// Hand out the committed and durable entries not yet handed out; they
    /// count as applied.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        assert!(
            self.applied <= self.commit || self.apply_past_commit,
            "invariant: applied <= commit (applied {}, commit {})",
            self.applied,
            self.commit
        );
        let upto = self.applicable();
        if self.apply_past_commit && upto.min(self.last_index()) <= self.applied {
            return Vec::new();
        }
        let (from, to) = (
            (self.applied - self.offset) as usize,
            (upto - self.offset) as usize,
        );
        let out = self.entries[from..to].to_vec();
        self.applied = upto;
        out
    }

    /// The state machine was snapshotted at (`index`, `term`) (applied, so
    /// committed and held): drop the entries through it. `Err`, changing
    /// nothing, unless `index` is applied, past the current snapshot, and of
    /// `term` here.
    pub fn compact(&mut self, index: LogIndex, term: Term) -> Result<(), RaftError> {
        if index <= self.offset {
            return Err(RaftError::Compaction(format!(
                "index {index} is not past the current snapshot at {}",
                self.offset
            )));
        }
        if index > self.applied {
            return Err(RaftError::Compaction(format!(
                "index {index} is not applied yet (applied {})",
                self.applied
            )));
        }
        let held = self.term(index).expect("offset < index <= applied <= last");
        if held != term {
            return Err(RaftError::Compaction(format!(
                "snapshot at {index} has term {term}, the log has term {held}"
            )));
        }
        self.entries.drain(..self.pos(index) + 1);
        self.offset = index;
        self.offset_term = term;
        self.unstable = self.unstable.max(index + 1);
        self.persisted = self.persisted.max(index);
        Ok(())
    }

    /// A snapshot at (`index`, `term`) from the leader, past our commit,
    /// whose entry our log does not hold: the log is replaced by it (empty
    /// after `index`), committed and applied through `index`.
    pub fn restore_snapshot(&mut self, index: LogIndex, term: Term) {
        assert!(
            index > self.commit && self.term(index) != Some(term),
            "invariant: a snapshot replaces the log only past commit {} and on a mismatch at {index}",
            self.commit
        );
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.commit = index;
        self.applied = index;
        self.unstable = index + 1;
        self.persisted = index;
    }

    /// The last `n` entries.
    pub fn tail(&self, n: usize) -> Vec<Entry> {
        let from = self.entries.len().saturating_sub(n);
        self.entries[from..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(terms: &[Term]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(k, &term)| Entry {
                term,
                index: k as u64 + 1,
                data: Bytes::from(format!("e{}", k + 1)),
            })
            .collect()
    }

    fn at(index: LogIndex, term: Term) -> Entry {
        Entry {
            term,
            index,
            data: Bytes::from(format!("x{index}t{term}")),
        }
    }

    #[test]
    fn restore_validates() {
        assert!(RaftLog::restore(0, 0, ents(&[1, 1, 2]), 3).is_ok());
        assert!(RaftLog::restore(0, 0, ents(&[1, 1, 2]), 4).is_err());
        assert!(RaftLog::restore(0, 0, ents(&[2, 1]), 0).is_err());
        assert!(RaftLog::restore(0, 0, vec![at(2, 1)], 0).is_err());
        let log = RaftLog::restore(0, 0, ents(&[1, 2]), 1).unwrap();
        assert_eq!((log.persisted(), log.applied(), log.commit()), (2, 0, 1));
        assert!(!log.has_unstable());
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = RaftLog::restore(0, 0, ents(&[1, 2, 2]), 0).unwrap();
        assert!(log.is_up_to_date(1, 3));
        assert!(log.is_up_to_date(3, 2));
        assert!(log.is_up_to_date(4, 2));
        assert!(!log.is_up_to_date(2, 2));
        assert!(!log.is_up_to_date(9, 1));
    }

    #[test]
    fn append_after_keeps_matching_and_truncates_conflicts() {
        let mut log = RaftLog::restore(0, 0, ents(&[1, 1, 1, 1]), 1).unwrap();
        // A stale, shorter message that agrees must not truncate anything.
        assert_eq!(log.append_after(1, &[at(2, 1)]), 2);
        assert_eq!(log.last_index(), 4);
        // A conflict at 3 replaces 3.. and rewinds the cursors.
        assert_eq!(log.append_after(2, &[at(3, 2)]), 3);
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.persisted(), 2);
        assert_eq!(log.take_unstable(), vec![at(3, 2)]);
    }

    #[test]
    #[should_panic(expected = "committed entries are never truncated")]
    fn truncating_committed_panics() {
        let mut log = RaftLog::restore(0, 0, ents(&[1, 1]), 2).unwrap();
        log.append_after(1, &[at(2, 2)]);
    }

    #[test]
    fn conflict_hints() {
        let log = RaftLog::restore(0, 0, ents(&[1, 2, 2, 2, 3]), 0).unwrap();
        assert_eq!(log.conflict_hint(9), ConflictHint { index: 6, term: 0 });
        assert_eq!(log.conflict_hint(4), ConflictHint { index: 2, term: 2 });
        assert_eq!(log.conflict_hint(5), ConflictHint { index: 5, term: 3 });
        assert_eq!(log.last_index_of_term(2), Some(4));
        assert_eq!(log.last_index_of_term(4), None);
        assert_eq!(log.last_index_of_term(0), None);
    }

    #[test]
    fn slice_respects_caps_but_sends_one() {
        let mut log = RaftLog::restore(0, 0, Vec::new(), 0).unwrap();
        for n in [10usize, 10, 100, 1] {
            log.append_new(1, Bytes::from(vec![0u8; n]));
        }
        assert_eq!(log.slice(1, 10, 1000).len(), 4);
        assert_eq!(log.slice(1, 2, 1000).len(), 2);
        assert_eq!(log.slice(1, 10, 20).len(), 2);
        assert_eq!(log.slice(3, 10, 5).len(), 1, "always at least one entry");
        assert!(log.slice(5, 10, 10).is_empty());
    }

    #[test]
    fn persistence_and_apply_cursors() {
        let mut log = RaftLog::restore(0, 0, Vec::new(), 0).unwrap();
        log.append_new(1, Bytes::new());
        log.append_new(1, Bytes::new());
        assert!(log.has_unstable());
        let handed = log.take_unstable();
        assert_eq!(handed.len(), 2);
        assert_eq!(log.persisted(), 0, "not durable until advanced");
        log.persisted_to(2, 9); // wrong term: ignored
        assert_eq!(log.persisted(), 0);
        log.persisted_to(2, 1);
        assert_eq!(log.persisted(), 2);
        assert!(log.commit_to(1));
        assert!(!log.commit_to(1));
        assert_eq!(log.take_committed().len(), 1);
        assert!(!log.has_committed_to_apply());
        assert_eq!(log.tail(1)[0].index, 2);
    }
}
