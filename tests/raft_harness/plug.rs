//! What each harness node's runtime plugs in. `MemWriter` is the runtime's
//! `InlineWriter` over a `MemStore` (the tests read the store: hard state,
//! snapshot, log), and can hold writes back until the test completes them,
//! to show what waits for durability. `Outbox` keeps what the runtime sends
//! until the cluster moves it into its queue.

use surfstore::node::raft::{Entry, LogIndex, Message};
use surfstore::node::runtime::io::{InlineWriter, Prepared, SnapshotJob, Transport, Write, Writer};
use surfstore::node::storage::MemStore;

pub struct MemWriter {
    inline: InlineWriter<MemStore>,
    /// `Some` while writes are held: submitted, not yet written, in order.
    held: Option<Vec<Write>>,
    /// Indexes of the snapshots from a leader handed to the writer (the
    /// runtime loads each into its map in the same turn), not yet seen by
    /// the cluster.
    pub installs: Vec<LogIndex>,
    /// Every entry handed to the writer, in order, until a test takes them.
    pub written: Vec<Entry>,
}

impl MemWriter {
    pub fn new(store: MemStore) -> MemWriter {
        MemWriter {
            inline: InlineWriter::new(store),
            held: None,
            installs: Vec::new(),
            written: Vec::new(),
        }
    }

    pub fn store(&self) -> &MemStore {
        &self.inline.store
    }

    /// From now on writes wait until `release`.
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Stops holding and writes everything held, in order. Returns what the
    /// runtime must hear (`Request::Persisted`): the last Ready covered and
    /// the outcome; `None` if nothing was held.
    pub fn release(&mut self) -> Option<(u64, Result<(), String>)> {
        let held = self.held.take().filter(|h| !h.is_empty())?;
        let mut upto = 0;
        for write in held {
            upto = upto.max(match &write {
                Write::Ready { number, .. } => *number,
                Write::Compact { upto, .. } => *upto,
            });
            if let Some(Err(e)) = self.inline.submit(write) {
                return Some((upto, Err(e)));
            }
        }
        Some((upto, Ok(())))
    }
}

impl Writer for MemWriter {
    fn submit(&mut self, write: Write) -> Option<Result<(), String>> {
        if let Write::Ready {
            snapshot, entries, ..
        } = &write
        {
            self.installs.extend(snapshot.as_ref().map(|s| s.index));
            self.written.extend(entries.iter().cloned());
        }
        match &mut self.held {
            Some(held) => {
                held.push(write);
                None
            }
            None => self.inline.submit(write),
        }
    }

    fn prepare_snapshot(&mut self, job: SnapshotJob) -> Option<Prepared> {
        self.inline.prepare_snapshot(job)
    }
}

/// The requests a runtime sent since the cluster last looked, in order.
#[derive(Default)]
pub struct Outbox {
    pub sent: Vec<Message>,
}

impl Transport for Outbox {
    fn send(&mut self, msg: Message) {
        self.sent.push(msg);
    }
}
