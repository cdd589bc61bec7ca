//! `MemStore`: the log, hard state and snapshot in memory. `DiskStore`'s
//! recovery replays the write-ahead log into one and hands its contents to
//! the restarting core (the store keeps none of it); tests use it as the
//! model store. (A node run `--in-memory` uses `Volatile`, which keeps no
//! copy of the core's log.)

use super::{LogStore, PreparedSnapshot, SnapshotPreparer, Stored};
use crate::node::raft::{Entry, HardState, LogIndex, Snapshot, Term};

/// The log, hard state and snapshot in memory.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    hard_state: HardState,
    /// The log is compacted through `snapshot.index` (0: never compacted).
    snapshot: Snapshot,
    /// Invariant: `entries[i].index == snapshot.index + 1 + i`.
    entries: Vec<Entry>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding what was recovered from elsewhere (the WAL).
    /// Invariant, checked: entries follow the snapshot contiguously.
    pub fn from_parts(stored: Stored) -> Self {
        let Stored {
            hard_state,
            snapshot,
            entries,
        } = stored;
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                snapshot.index + 1 + i as LogIndex,
                "log contiguity invariant: recovered entry {i} after snapshot {}",
                snapshot.index
            );
        }
        MemStore {
            hard_state,
            snapshot,
            entries,
        }
    }

    pub fn last_index(&self) -> LogIndex {
        self.snapshot.index + self.entries.len() as LogIndex
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What the store holds, as a copy (entries share their data).
    pub fn load(&self) -> Stored {
        Stored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// What the store holds, moved out.
    pub fn into_stored(self) -> Stored {
        Stored {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            entries: self.entries,
        }
    }

    /// The term of the entry at `index` (the snapshot's for its own index),
    /// `None` when the log does not hold it (compacted away or past the end).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        let i = index.checked_sub(self.snapshot.index + 1)?;
        self.entries.get(i as usize).map(|e| e.term)
    }

    /// Whether a snapshot at (`index`, `term`) would replace what is held
    /// (it is newer than the held snapshot).
    pub fn is_newer(&self, index: LogIndex) -> bool {
        index > self.snapshot.index
    }

    /// The entries a snapshot at (`index`, `term`) keeps: those after it if
    /// the log holds (`index`, `term`), none otherwise.
    pub fn retained_after(&self, index: LogIndex, term: Term) -> &[Entry] {
        if index >= self.snapshot.index && self.term_at(index) == Some(term) {
            &self.entries[(index - self.snapshot.index) as usize..]
        } else {
            &[]
        }
    }

    /// Applies the snapshot rule (see `LogStore::save_snapshot`); `false`
    /// when `snapshot` is not newer than the one held and was ignored. The
    /// hard state's commit index is raised to at least `snapshot.index`
    /// (what a snapshot holds is committed).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> bool {
        if !self.is_newer(snapshot.index) {
            return false;
        }
        let keep = self.retained_after(snapshot.index, snapshot.term).len();
        self.entries.drain(..self.entries.len() - keep);
        self.hard_state.commit = self.hard_state.commit.max(snapshot.index);
        self.snapshot = snapshot;
        true
    }
}

impl LogStore for MemStore {
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()> {
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.snapshot.index && first.index <= self.last_index() + 1,
                "log contiguity invariant: persisting index {} after last {} (snapshot {})",
                first.index,
                self.last_index(),
                self.snapshot.index
            );
            self.entries
                .truncate((first.index - self.snapshot.index - 1) as usize);
            self.entries.extend_from_slice(entries);
        }
        Ok(())
    }

    fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        prepared: Option<PreparedSnapshot>,
    ) -> std::io::Result<()> {
        assert!(
            prepared.is_none(),
            "snapshot preparer invariant: MemStore hands out no preparer"
        );
        self.apply_snapshot(snapshot.clone());
        Ok(())
    }

    fn snapshot_preparer(&self) -> Option<SnapshotPreparer> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            data: Bytes::new(),
        }
    }

    fn snap(index: u64, term: u64) -> Snapshot {
        Snapshot {
            index,
            term,
            data: Bytes::from(format!("state at {index}")),
        }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote: None,
            commit,
        }
    }

    #[test]
    fn overwrite_truncates_the_suffix() {
        let mut s = MemStore::new();
        s.persist(None, &[e(1, 1), e(1, 2), e(1, 3)]).unwrap();
        s.persist(Some(hs(2, 1)), &[e(2, 2)]).unwrap();
        let st = s.load();
        assert_eq!(st.hard_state.term, 2);
        assert_eq!(st.entries, vec![e(1, 1), e(2, 2)]);
        assert_eq!(st.snapshot, Snapshot::default());
    }

    #[test]
    fn compaction_keeps_the_entries_after_the_snapshot() {
        let mut s = MemStore::new();
        s.persist(Some(hs(2, 3)), &[e(1, 1), e(1, 2), e(2, 3), e(2, 4)])
            .unwrap();
        s.save_snapshot(&snap(2, 1), None).unwrap();
        let st = s.load();
        assert_eq!(st.snapshot, snap(2, 1));
        assert_eq!(st.entries, vec![e(2, 3), e(2, 4)]);
        assert_eq!(st.hard_state, hs(2, 3));
        assert_eq!(s.term_at(2), Some(1));
        assert_eq!(s.term_at(1), None);
        assert_eq!(s.term_at(4), Some(2));
        assert_eq!(s.term_at(5), None);
        // Appending and overwriting continue at the offset.
        s.persist(None, &[e(3, 4), e(3, 5)]).unwrap();
        assert_eq!(s.load().entries, vec![e(2, 3), e(3, 4), e(3, 5)]);
        s.persist(None, &[e(4, 3)]).unwrap();
        assert_eq!(s.load().entries, vec![e(4, 3)]);
        assert_eq!(s.last_index(), 3);
        // Compacting through the last entry leaves an empty log after it.
        s.save_snapshot(&snap(3, 4), None).unwrap();
        assert_eq!(s.load().entries, vec![]);
        assert_eq!(s.last_index(), 3);
        s.persist(None, &[e(4, 4)]).unwrap();
        assert_eq!(s.load().entries, vec![e(4, 4)]);
    }

    #[test]
    fn install_over_a_conflicting_or_short_log_discards_it() {
        let mut s = MemStore::new();
        s.persist(Some(hs(1, 1)), &[e(1, 1), e(1, 2), e(1, 3)])
            .unwrap();
        // The leader's entry 2 has term 2: ours conflicts.
        s.save_snapshot(&snap(2, 2), None).unwrap();
        let st = s.load();
        assert_eq!((st.snapshot.index, st.entries.len()), (2, 0));
        assert_eq!(st.hard_state.commit, 2, "commit raised to the snapshot");
        // Past the end of the log.
        s.save_snapshot(&snap(9, 3), None).unwrap();
        assert_eq!(s.last_index(), 9);
        assert_eq!(s.term_at(9), Some(3));
        s.persist(None, &[e(3, 10)]).unwrap();
        assert_eq!(s.load().entries, vec![e(3, 10)]);
    }

    #[test]
    fn an_older_or_equal_snapshot_is_ignored() {
        let mut s = MemStore::new();
        s.persist(None, &[e(1, 1), e(1, 2), e(1, 3)]).unwrap();
        s.save_snapshot(&snap(2, 1), None).unwrap();
        let before = s.load();
        s.save_snapshot(&snap(1, 1), None).unwrap();
        s.save_snapshot(&snap(2, 5), None).unwrap();
        assert_eq!(s.load(), before);
    }

    #[test]
    fn from_parts_round_trips_and_checks_contiguity() {
        let st = Stored {
            hard_state: hs(3, 5),
            snapshot: snap(4, 2),
            entries: vec![e(3, 5), e(3, 6)],
        };
        assert_eq!(MemStore::from_parts(st.clone()).load(), st);
        assert_eq!(MemStore::from_parts(st.clone()).into_stored(), st);
        let bad = Stored {
            entries: vec![e(3, 6)],
            ..st
        };
        assert!(std::panic::catch_unwind(|| MemStore::from_parts(bad)).is_err());
    }
}
