//! Reading held entries back from the segments: what a compaction keeps
//! (`DiskStore::save_snapshot` runs on the storage thread, where reading is
//! fine), and `read_back`, everything the files hold now.
//!
//! Every batch reached the file with `write(2)` (no userspace buffer: see
//! `fs::FsFile`), so a read sees every write so far, fsynced or not.
//! The held entries lie in the files in index order (`shape`), so replaying
//! the records from the start of the segment holding the first one wanted,
//! later records winning, gives them: the record of the entry held at
//! `first` drops whatever was read before it, and no record after it
//! touches an index below `first`. What is read is checked against the
//! shape (indexes and terms): a mismatch means the files changed under the
//! store, and is an error, never a wrong compaction.

use std::io;
use std::ops::RangeInclusive;

use bytes::Bytes;

use super::record::{self, Record};
use super::{segment, DiskStore};
use crate::node::raft::{Entry, LogIndex, Snapshot};
use crate::node::storage::fs::read_if_exists;
use crate::node::storage::snapshot::{self, SNAPSHOT_FILE};
use crate::node::storage::Stored;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl DiskStore {
    /// The held entries `range` (every index in it must be held), read back
    /// from the segment files.
    pub(super) fn read_entries(&self, range: RangeInclusive<LogIndex>) -> io::Result<Vec<Entry>> {
        let (first, last) = (*range.start(), *range.end());
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let (Some(from), Some(to)) = (self.shape.segment_of(first), self.shape.segment_of(last))
        else {
            panic!(
                "read invariant: entries {first}..={last} are held (log {}..={})",
                self.shape.snapshot_index() + 1,
                self.shape.last_index()
            );
        };
        let want = (last - first + 1) as usize;
        let mut out: Vec<Entry> = Vec::with_capacity(want);
        // The segments as recovery would replay them (in order, whatever
        // their numbers), from the one holding `first` to the one holding
        // `last`.
        let listing = segment::list(&*self.fs, &self.wal_dir)?;
        let held = listing
            .segments
            .iter()
            .filter(|(seq, _)| (from..=to).contains(seq));
        for (_, path) in held {
            let data = self
                .fs
                .read(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let data = Bytes::from(data);
            let scan = record::scan(&data).map_err(|c| {
                invalid(format!(
                    "{}: corrupt at byte offset {} when read back: {}",
                    path.display(),
                    c.offset,
                    c.reason
                ))
            })?;
            if let Some(torn) = scan.torn {
                return Err(invalid(format!(
                    "{}: torn record at byte offset {} when read back ({}): the store wrote whole records",
                    path.display(),
                    torn.offset,
                    torn.reason
                )));
            }
            for r in scan.records {
                let Record::Entry(e) = r else { continue };
                // An entry below `first`, or one that does not follow what
                // was read (its predecessors were overwritten), comes before
                // the record of the entry held at `first`, which drops
                // everything read before it: skip it.
                if e.index < first || e.index > last || e.index - first > out.len() as u64 {
                    continue;
                }
                out.truncate((e.index - first) as usize);
                // A copy: the segment's buffer is freed after its scan.
                out.push(Entry {
                    data: Bytes::copy_from_slice(&e.data),
                    ..e
                });
            }
        }
        let matches = out.len() == want
            && out.iter().enumerate().all(|(k, e)| {
                e.index == first + k as LogIndex && self.shape.term_at(e.index) == Some(e.term)
            });
        if !matches {
            let got: Vec<(LogIndex, u64)> = out.iter().map(|e| (e.index, e.term)).take(8).collect();
            return Err(invalid(format!(
                "{}: segments {from}..={to} do not hold the log's entries {first}..={last} when read back (read {} entries, starting {got:?}): the files changed under the store",
                self.wal_dir.display(),
                out.len()
            )));
        }
        Ok(out)
    }

    /// Everything the store holds now, read back from its files: the hard
    /// state, the snapshot file, and every entry after it. For tests and
    /// tools (a running node never needs it: the core holds its log).
    pub fn read_back(&self) -> io::Result<Stored> {
        let (index, term) = (self.shape.snapshot_index(), self.shape.snapshot_term());
        let snapshot = if index == 0 {
            Snapshot::default()
        } else {
            let path = self.dir.join(SNAPSHOT_FILE);
            let bytes = read_if_exists(&*self.fs, &path)?
                .ok_or_else(|| invalid(format!("{}: missing", path.display())))?;
            let s = snapshot::decode(Bytes::from(bytes))
                .map_err(|reason| invalid(format!("{}: {reason}", path.display())))?;
            if (s.index, s.term) != (index, term) {
                return Err(invalid(format!(
                    "{}: holds the snapshot at {} (term {}), the log starts after {index} (term {term})",
                    path.display(),
                    s.index,
                    s.term
                )));
            }
            s
        };
        Ok(Stored {
            hard_state: self.shape.hard_state(),
            snapshot,
            entries: self.read_entries(index + 1..=self.shape.last_index())?,
        })
    }
}
