//! What the runtime plugs in: where its writes go (`Writer`) and how its
//! messages travel (`Transport`). Production runs a storage thread
//! (`ThreadWriter`) and the per-peer senders (`PeerLanes`); memory stores
//! and the simulation write inline (`InlineWriter`) or on their own schedule.
//!
//! The writer contract: writes become durable in the order they are
//! submitted; a completion for `upto` covers every `Write::Ready` numbered
//! `<= upto`; after a failure nothing further is written.

use std::io;
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use super::request::Request;
use crate::node::metadata::MapView;
use crate::node::metrics::WalMetrics;
use crate::node::raft::{Entry, HardState, LogIndex, Message, Snapshot, Term};
use crate::node::storage::{LogStore, PreparedSnapshot, SnapshotPreparer};

/// One unit of work for the storage writer, in the runtime's order.
#[derive(Debug)]
pub enum Write {
    /// The writes of `Ready` number `number`: a snapshot from the leader
    /// (first), then the hard state and entries. `sync`: fsync before the
    /// completion (etcd's MustSync).
    Ready {
        number: u64,
        snapshot: Option<Snapshot>,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        sync: bool,
    },
    /// A local snapshot whose file was prepared off the runtime: make it the
    /// store's and drop the log it covers. Completes with the Ready number
    /// submitted before it.
    Compact {
        upto: u64,
        snapshot: Snapshot,
        prepared: Option<PreparedSnapshot>,
    },
}

/// A snapshot to make of the applied map at (`index`, `term`).
pub struct SnapshotJob {
    pub index: LogIndex,
    pub term: Term,
    pub view: MapView,
    pub started: std::time::Instant,
}

/// A prepared snapshot: the encoded map, and its file written (`Some`) when
/// the store keeps one.
pub type Prepared = (Snapshot, io::Result<Option<PreparedSnapshot>>);

pub trait Writer {
    /// Queue `write`. `Some(result)`: done already (inline writers), covering
    /// everything submitted so far. `None`: a `Request::Persisted` comes later.
    fn submit(&mut self, write: Write) -> Option<Result<(), String>>;
    /// Encode `job` and write its file. `Some`: done already. `None`: a
    /// `Request::SnapshotPrepared` comes later.
    fn prepare_snapshot(&mut self, job: SnapshotJob) -> Option<Prepared>;
    /// No more writes: a writer with a thread lets it finish and hands back
    /// its handle, so the shell can wait until the store is closed (its
    /// directory lock released) before it reports the node stopped.
    fn close(&mut self) -> Option<std::thread::JoinHandle<()>> {
        None
    }
}

pub trait Transport {
    /// Hand `msg` (a request of the core) to the sender for `msg.to`.
    fn send(&mut self, msg: Message);
}

/// Encodes the map of `job` and writes the snapshot file with `preparer`.
pub fn prepare(job: SnapshotJob, preparer: Option<&SnapshotPreparer>) -> Prepared {
    let snapshot = Snapshot {
        index: job.index,
        term: job.term,
        data: job.view.encode(),
    };
    let result = preparer.map(|p| p.prepare(&snapshot)).transpose();
    (snapshot, result)
}

/// Applies one write to `store`; `sync` is left to the caller (group
/// commit). Returns whether it must be synced and how many entries it wrote.
fn write_to<S: LogStore>(store: &mut S, write: Write) -> io::Result<(bool, usize)> {
    match write {
        Write::Ready {
            snapshot,
            hard_state,
            entries,
            sync,
            ..
        } => {
            if let Some(snapshot) = &snapshot {
                store.save_snapshot(snapshot, None)?;
            }
            store.write(hard_state, &entries)?;
            Ok((sync, entries.len()))
        }
        Write::Compact {
            snapshot, prepared, ..
        } => {
            store.save_snapshot(&snapshot, prepared)?;
            Ok((false, 0))
        }
    }
}

fn upto_of(write: &Write) -> u64 {
    match write {
        Write::Ready { number, .. } => *number,
        Write::Compact { upto, .. } => *upto,
    }
}

/// Writes on the caller's thread, at once: the memory store, tests, the
/// simulation's disks.
pub struct InlineWriter<S: LogStore> {
    pub store: S,
    preparer: Option<SnapshotPreparer>,
}

impl<S: LogStore> InlineWriter<S> {
    pub fn new(store: S) -> Self {
        let preparer = store.snapshot_preparer();
        InlineWriter { store, preparer }
    }
}

impl<S: LogStore> Writer for InlineWriter<S> {
    fn submit(&mut self, write: Write) -> Option<Result<(), String>> {
        let result = write_to(&mut self.store, write).and_then(|(sync, _)| {
            if sync {
                self.store.sync()
            } else {
                Ok(())
            }
        });
        Some(result.map_err(|e| e.to_string()))
    }

    fn prepare_snapshot(&mut self, job: SnapshotJob) -> Option<Prepared> {
        Some(prepare(job, self.preparer.as_ref()))
    }
}

/// Most writes one group commit takes from the queue.
const MAX_GROUP: usize = 1024;

/// The storage thread: owns the store, takes every queued write, writes
/// them all, fsyncs once if any of them must be synced, and reports the
/// highest Ready covered to the runtime's inbox. While one fsync runs, the
/// next group gathers in the queue. Snapshots are encoded and written on
/// tokio's blocking pool, so a large map never holds up the log. Each group
/// commit's fsync is timed, with the entries it covers, into the node's
/// [`WalMetrics`] when it has them (a store that never fsyncs is given none).
pub struct ThreadWriter {
    /// `None` once closed.
    tx: Option<std_mpsc::Sender<Write>>,
    thread: Option<std::thread::JoinHandle<()>>,
    preparer: Option<SnapshotPreparer>,
    inbox: mpsc::WeakSender<Request>,
}

impl ThreadWriter {
    /// Starts the thread for node `id`. `inbox` is where completions go
    /// (weak: the writer must not keep the runtime's inbox open).
    pub fn spawn<S: LogStore>(
        id: u64,
        mut store: S,
        inbox: &mpsc::Sender<Request>,
        metrics: Option<WalMetrics>,
    ) -> Self {
        let preparer = store.snapshot_preparer();
        let (tx, rx) = std_mpsc::channel::<Write>();
        let done = inbox.downgrade();
        let thread = std::thread::Builder::new()
            .name(format!("wal-{id}"))
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut upto = upto_of(&first);
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(w) => {
                                upto = upto.max(upto_of(&w));
                                group.push(w);
                            }
                            Err(_) => break,
                        }
                    }
                    let mut sync = false;
                    let mut entries = 0;
                    let mut result = Ok(());
                    for w in group {
                        match write_to(&mut store, w) {
                            Ok((s, n)) => {
                                sync |= s;
                                entries += n;
                            }
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    if result.is_ok() && sync {
                        let started = std::time::Instant::now();
                        result = store.sync();
                        if let (Ok(()), Some(m)) = (&result, &metrics) {
                            m.observe_fsync(started.elapsed().as_secs_f64(), entries);
                        }
                    }
                    let failed = result.is_err();
                    let Some(inbox) = done.upgrade() else { return };
                    let result = result.map_err(|e| e.to_string());
                    if inbox
                        .blocking_send(Request::Persisted { upto, result })
                        .is_err()
                        || failed
                    {
                        return;
                    }
                }
            })
            .expect("spawning the storage thread");
        ThreadWriter {
            tx: Some(tx),
            thread: Some(thread),
            preparer,
            inbox: inbox.downgrade(),
        }
    }
}

impl Writer for ThreadWriter {
    fn submit(&mut self, write: Write) -> Option<Result<(), String>> {
        let sent = self.tx.as_ref().map(|tx| tx.send(write));
        match sent {
            Some(Ok(())) => None,
            // The thread stopped after a failed write; the runtime already
            // knows (that failure was reported) and stops.
            _ => Some(Err("the storage thread has stopped".into())),
        }
    }

    fn close(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.tx = None;
        self.thread.take()
    }

    fn prepare_snapshot(&mut self, job: SnapshotJob) -> Option<Prepared> {
        let preparer = self.preparer.clone();
        let Some(inbox) = self.inbox.upgrade() else {
            // Every sender gone: the node is shutting down; nothing to do.
            return None;
        };
        tokio::task::spawn_blocking(move || {
            let started = job.started;
            let (snapshot, result) = prepare(job, preparer.as_ref());
            let _ = inbox.blocking_send(Request::SnapshotPrepared {
                snapshot,
                started,
                result,
            });
        });
        None
    }
}

/// Production transport: one sender task per peer (`crate::node::peers`).
pub struct PeerLanes {
    /// Indexed by peer id; `None` for this node itself.
    pub lanes: Vec<Option<crate::node::peers::PeerTx>>,
}

impl Transport for PeerLanes {
    fn send(&mut self, msg: Message) {
        if let Some(Some(tx)) = self.lanes.get(msg.to as usize) {
            // A stopped sender means the node is shutting down.
            let _ = tx.send(msg);
        }
    }
}
