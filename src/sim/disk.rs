//! The real write-ahead log in the simulation, on a file system that loses
//! power (`SimFs`). In runs with `Plan::disk`, every completed write is
//! written to a `DiskStore` (fsync as the runtime asks: not for a
//! commit-only write; small segments, so rolls and compactions happen)
//! through the production `InlineWriter`, before the model store is
//! updated. A reboot cuts the power (all unsynced data lost, a torn prefix
//! kept, or the page cache kept) and recovers the node from the disk alone;
//! a disk fault (a write or fsync failing, or the power going out
//! mid-write) fails the write, the runtime stops the way the real node
//! does, and the node reboots the same way.
//!
//! After every recovery the disk must hold exactly what the node had made
//! durable (everything it could have acknowledged), plus at most part of the
//! one write that failed; the Raft invariants are then checked as usual
//! from there on.

use std::path::PathBuf;
use std::sync::Arc;

use super::writer::ModelStore;
use crate::node::raft::{Entry, HardState, LogIndex, NodeId, Snapshot};
use crate::node::runtime::io::{InlineWriter, Write, Writer};
use crate::node::storage::{
    ClusterMeta, CrashMode, DiskOptions, DiskStore, FsyncPolicy, LogStore, SimFs, SnapshotPreparer,
    Stored,
};

/// One node's disk and the store open on it.
pub struct SimDisk {
    pub fs: SimFs,
    dir: PathBuf,
    meta: ClusterMeta,
    opts: DiskOptions,
    writer: InlineWriter<DiskStore>,
}

/// What a write carries for the store (a write whose completion failed:
/// what the disk may hold part of).
#[derive(Clone, Debug, Default)]
pub struct Pending {
    pub snapshot: Option<Snapshot>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub sync: bool,
}

impl Pending {
    pub fn of(write: &Write) -> Pending {
        match write {
            Write::Ready {
                snapshot,
                hard_state,
                entries,
                sync,
                ..
            } => Pending {
                snapshot: snapshot.clone(),
                hard_state: *hard_state,
                entries: entries.clone(),
                sync: *sync,
            },
            Write::Compact { snapshot, .. } => Pending {
                snapshot: Some(snapshot.clone()),
                sync: true,
                ..Pending::default()
            },
        }
    }
}

impl SimDisk {
    pub fn new(n: NodeId, nodes: usize, segment_bytes: u64) -> SimDisk {
        let fs = SimFs::new();
        let dir = PathBuf::from(format!("/node{n}"));
        let meta = ClusterMeta {
            id: n,
            members: (0..nodes).map(|i| format!("sim:{i}")).collect(),
        };
        let opts = DiskOptions {
            fsync: FsyncPolicy::Always,
            segment_bytes,
        };
        let (store, _) = DiskStore::open_in(Arc::new(fs.clone()), &dir, &meta, opts.clone())
            .expect("a fresh simulated disk opens");
        SimDisk {
            fs,
            dir,
            meta,
            opts,
            writer: InlineWriter::new(store),
        }
    }

    pub fn preparer(&self) -> Option<SnapshotPreparer> {
        self.writer.store.snapshot_preparer()
    }

    /// Completes `write` as the storage thread does (the same code).
    pub fn write(&mut self, write: Write) -> Result<(), String> {
        self.writer
            .submit(write)
            .expect("the inline writer completes at once")
    }

    /// Power cut in `mode`, then recovery from what the disk kept.
    pub fn crash_and_recover(&mut self, mode: CrashMode) -> Result<Stored, String> {
        self.fs.crash(mode);
        let (store, rec) = DiskStore::open_in(
            Arc::new(self.fs.clone()),
            &self.dir,
            &self.meta,
            self.opts.clone(),
        )
        .map_err(|e| format!("recovery failed after {mode:?}: {e}"))?;
        self.writer = InlineWriter::new(store);
        Ok(rec.loaded)
    }
}

/// What recovery found must be what the node made durable, plus at most part
/// of `pending` (the write whose completion failed). A commit written
/// without fsync may be lost: the recovered commit may be anything from the
/// last synced one up.
pub fn check_recovered(
    node: &ModelStore,
    pending: Option<&Pending>,
    got: &Stored,
) -> Result<(), String> {
    let p = pending.cloned().unwrap_or_default();
    // Recovery lifts the commit to the snapshot's index.
    let lifted = |hs: HardState| HardState {
        commit: hs.commit.max(got.snapshot.index),
        ..hs
    };
    let (durable, synced) = (lifted(node.hard_state), lifted(node.synced_hard_state));
    let hs_ok = |want: HardState, low: HardState| {
        got.hard_state.term == want.term
            && got.hard_state.vote == want.vote
            && (low.commit..=want.commit).contains(&got.hard_state.commit)
    };
    let pending_hs = p.hard_state.map(lifted);
    if !hs_ok(durable, synced) && !pending_hs.is_some_and(|want| hs_ok(want, synced)) {
        return Err(format!(
            "hard state {:?} is neither the durable {:?} (synced {:?}) nor the pending {:?}",
            got.hard_state, node.hard_state, node.synced_hard_state, p.hard_state
        ));
    }
    let new_snapshot = p.snapshot.as_ref() == Some(&got.snapshot) && got.snapshot != node.snapshot;
    if got.snapshot != node.snapshot && !new_snapshot {
        return Err(format!(
            "snapshot at {} (term {}) is neither the durable one at {} nor a pending one",
            got.snapshot.index, got.snapshot.term, node.snapshot.index
        ));
    }
    for e in &got.entries {
        let pending_e = p.entries.iter().find(|x| x.index == e.index);
        let durable_e = node.entry(e.index);
        if Some(e) != pending_e && Some(e) != durable_e {
            return Err(format!(
                "entry {} (term {}) is neither the durable {:?} nor a pending one",
                e.index,
                e.term,
                durable_e.map(|x| x.term)
            ));
        }
    }
    // Nothing durable may be missing, except what the pending write replaces.
    let durable_last = node.last_index();
    let must_keep = if new_snapshot {
        got.snapshot.index
    } else {
        p.entries
            .first()
            .map_or(durable_last, |f| durable_last.min(f.index - 1))
    };
    let got_last = got.snapshot.index + got.entries.len() as LogIndex;
    if got_last < must_keep {
        return Err(format!(
            "the log ends at {got_last}, but entries through {must_keep} were durable"
        ));
    }
    Ok(())
}
