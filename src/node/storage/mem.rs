//! `MemStore`: the log and hard state in memory. State survives the simulated
//! `crash()` (the core keeps running in the same process), not a process exit.

use super::LogStore;
use crate::node::raft::{Entry, HardState, LogIndex};

/// The in-memory store: the assignment's behaviour (state survives `crash()`,
/// not a process restart).
#[derive(Debug, Default)]
pub struct MemStore {
    hard_state: HardState,
    /// Invariant: `entries[i].index == i + 1`.
    entries: Vec<Entry>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding what was recovered from elsewhere (the WAL).
    /// Invariant, checked: `entries[i].index == i + 1`.
    pub fn from_parts(hard_state: HardState, entries: Vec<Entry>) -> Self {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                i as LogIndex + 1,
                "log contiguity invariant: recovered entry {i}"
            );
        }
        MemStore {
            hard_state,
            entries,
        }
    }

    pub fn last_index(&self) -> LogIndex {
        self.entries.len() as LogIndex
    }
}

impl LogStore for MemStore {
    fn persist(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> std::io::Result<()> {
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        if let Some(first) = entries.first() {
            assert!(
                first.index >= 1 && first.index <= self.last_index() + 1,
                "log contiguity invariant: persisting index {} after last {}",
                first.index,
                self.last_index()
            );
            self.entries.truncate((first.index - 1) as usize);
            self.entries.extend_from_slice(entries);
        }
        Ok(())
    }

    fn load(&self) -> (HardState, Vec<Entry>) {
        (self.hard_state, self.entries.clone())
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

    #[test]
    fn overwrite_truncates_the_suffix() {
        let mut s = MemStore::new();
        s.persist(None, &[e(1, 1), e(1, 2), e(1, 3)]).unwrap();
        s.persist(
            Some(HardState {
                term: 2,
                vote: Some(1),
                commit: 1,
            }),
            &[e(2, 2)],
        )
        .unwrap();
        let (hs, log) = s.load();
        assert_eq!(hs.term, 2);
        assert_eq!(log, vec![e(1, 1), e(2, 2)]);
    }
}
