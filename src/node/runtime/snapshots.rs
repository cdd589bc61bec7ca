//! Snapshots: once `threshold` entries are applied past the last snapshot,
//! a copy-on-write view of the map is taken here (a few hundred reference
//! counts), encoded and its file written by the writer off the runtime, and
//! when that is done the store and the core drop the covered log (one
//! snapshot in flight at a time). A snapshot installed by the leader arrives
//! in a `Ready` and replaces the map at once; its file is written with that
//! Ready's writes, before the ack leaves. `snapshot_now` takes one at once,
//! whatever the threshold.

use super::io::{SnapshotJob, Transport, Write, Writer};
use super::Runtime;
use crate::node::events::EventKind;
use crate::node::metadata::Metadata;
use crate::node::raft::Snapshot;
use crate::node::storage::PreparedSnapshot;

/// When and how a runtime snapshots.
pub struct Snapshots {
    /// Snapshot once this many entries are applied past the last one (0: never).
    threshold: u64,
    /// A snapshot is being encoded and written off the runtime.
    in_flight: bool,
}

impl Snapshots {
    pub fn new(threshold: u64) -> Self {
        Snapshots {
            threshold,
            in_flight: false,
        }
    }
}

impl<W: Writer, T: Transport> Runtime<W, T> {
    pub(super) fn maybe_snapshot(&mut self) {
        let threshold = self.snapshots.threshold;
        if threshold == 0 || self.metadata.applied_index() < self.raft.snapshot_index() + threshold
        {
            return;
        }
        self.start_snapshot();
    }

    /// Snapshots the applied map now, whatever the threshold (the Raft-paper
    /// harness compacts at the moment a test chooses; the threshold does it
    /// otherwise). `false`, and nothing started, when nothing is applied past
    /// the last snapshot, a snapshot is already in flight or the node failed.
    /// With a writer that prepares and writes inline (`InlineWriter`) the log
    /// is compacted before this returns; otherwise once the writer reports.
    pub fn snapshot_now(&mut self) -> bool {
        if self.metadata.applied_index() <= self.raft.snapshot_index() {
            return false;
        }
        self.start_snapshot()
    }

    /// Starts a snapshot of the applied map (past the last snapshot).
    fn start_snapshot(&mut self) -> bool {
        if self.snapshots.in_flight || self.failed.is_some() {
            return false;
        }
        let applied = self.metadata.applied_index();
        debug_assert_eq!(applied, self.raft.applied_index());
        let Some(term) = self.raft.term_at(applied) else {
            return false;
        };
        self.snapshots.in_flight = true;
        let job = SnapshotJob {
            index: applied,
            term,
            view: self.metadata.view(),
            started: std::time::Instant::now(),
        };
        let started = job.started;
        if let Some((snapshot, result)) = self.writer.prepare_snapshot(job) {
            self.on_snapshot_prepared(snapshot, started, result);
        }
        true
    }

    pub(super) fn on_snapshot_prepared(
        &mut self,
        snapshot: Snapshot,
        started: std::time::Instant,
        result: std::io::Result<Option<PreparedSnapshot>>,
    ) {
        self.snapshots.in_flight = false;
        match result {
            Ok(prepared) => self.finish_snapshot(snapshot, prepared, started),
            Err(e) => self.fail(format!(
                "writing the snapshot at index {} failed: {e}",
                snapshot.index
            )),
        }
    }

    /// The snapshot's file is durable (or there is none to write): the
    /// writer makes it the store's snapshot and drops the covered log, in
    /// order with the log writes; the core compacts now (its log is memory).
    fn finish_snapshot(
        &mut self,
        snapshot: Snapshot,
        prepared: Option<PreparedSnapshot>,
        started: std::time::Instant,
    ) {
        if self.failed.is_some() {
            return;
        }
        // A snapshot from the leader may have got there first; the store then
        // ignores this older one (and removes its prepared file).
        let newer = snapshot.index > self.raft.snapshot_index();
        let (index, bytes) = (snapshot.index, snapshot.data.len());
        let write = Write::Compact {
            upto: self.raft.last_ready(),
            snapshot: snapshot.clone(),
            prepared,
        };
        if let Some(Err(e)) = self.writer.submit(write) {
            self.fail(format!("saving the snapshot at index {index} failed: {e}"));
            return;
        }
        if !newer {
            return;
        }
        if let Err(e) = self.raft.compact(snapshot) {
            panic!("compaction invariant: a snapshot of the applied map must compact: {e}");
        }
        tracing::info!(
            node = self.id,
            index,
            bytes,
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "snapshot taken; log compacted"
        );
        self.publisher
            .emit(EventKind::SnapshotTaken { index, bytes });
    }

    /// The leader sent a snapshot past our log: load the map from it (the
    /// writes of its Ready persist it; entries after it are applied on top).
    pub(super) fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let started = std::time::Instant::now();
        let metadata = Metadata::from_snapshot(snapshot.index, &snapshot.data).map_err(|e| {
            format!(
                "the snapshot at index {} from the leader is undecodable: {e}",
                snapshot.index
            )
        })?;
        self.metadata = metadata;
        if let Some(feed) = &self.block_feed {
            feed.replaced();
        }
        // Which changes the snapshot holds is not known: count them all as
        // of its index (a waiter may wake for nothing, but never misses one).
        self.map_changes.send_if_modified(|c| {
            let was = *c;
            *c = was.max(snapshot.index);
            *c != was
        });
        tracing::info!(
            node = self.id,
            index = snapshot.index,
            bytes = snapshot.data.len(),
            files = self.metadata.len(),
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "installed a snapshot from the leader"
        );
        self.publisher.emit(EventKind::SnapshotInstalled {
            index: snapshot.index,
            bytes: snapshot.data.len(),
        });
        Ok(())
    }
}
