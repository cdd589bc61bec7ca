//! The real write-ahead log in the simulation, on a file system that loses
//! power (`SimFs`). In runs with `Plan::disk`, every node's `Ready`s are
//! written to a `DiskStore` (fsync always, small segments, so rolls and
//! compactions happen) before the model store is updated and anything is
//! sent. A reboot cuts the power (all unsynced data lost, a torn prefix kept,
//! or the page cache kept) and recovers the node from the disk alone; a disk
//! fault (a write or fsync failing, or the power going out mid-write) stops
//! the node the way the real driver does and reboots it the same way.
//!
//! After every recovery the disk must hold exactly what the node had made
//! durable (everything it could have acknowledged), plus at most part of the
//! one batch whose write failed; the Raft invariants are then checked as
//! usual from there on.

use std::path::PathBuf;
use std::sync::Arc;

use rand::Rng;

use super::checker::{violation, Violation};
use super::world::{SimNode, World};
use crate::node::raft::{Entry, HardState, LogIndex, NodeId, Snapshot};
use crate::node::storage::{
    ClusterMeta, CrashMode, DiskOptions, DiskStore, FsyncPolicy, LogStore, SimFs, Stored,
};

/// One node's disk and the store open on it.
pub struct SimDisk {
    pub fs: SimFs,
    dir: PathBuf,
    meta: ClusterMeta,
    opts: DiskOptions,
    store: DiskStore,
}

/// A batch whose write failed: what the disk may hold part of.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    pub snapshot: Option<Snapshot>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
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
            store,
        }
    }

    /// Writes a batch as the driver does: the snapshot first, then the hard
    /// state and entries.
    pub fn write(&mut self, p: &Pending) -> std::io::Result<()> {
        if let Some(s) = &p.snapshot {
            self.store.save_snapshot(s, None)?;
        }
        if p.hard_state.is_some() || !p.entries.is_empty() {
            self.store.persist(p.hard_state, &p.entries)?;
        }
        Ok(())
    }

    /// Power cut in `mode`, then recovery from what the disk kept.
    fn crash_and_recover(&mut self, mode: CrashMode) -> Result<Stored, String> {
        self.fs.crash(mode);
        let (store, _) = DiskStore::open_in(
            Arc::new(self.fs.clone()),
            &self.dir,
            &self.meta,
            self.opts.clone(),
        )
        .map_err(|e| format!("recovery failed after {mode:?}: {e}"))?;
        self.store = store;
        Ok(self.store.load())
    }
}

/// The model store's entry at `index`, if it holds one.
fn model_entry(node: &SimNode, index: LogIndex) -> Option<&Entry> {
    index
        .checked_sub(node.snapshot.index + 1)
        .and_then(|k| node.log.get(k as usize))
}

/// What recovery found must be what the node made durable, plus at most part
/// of `pending` (the batch whose write failed).
fn check_recovered(node: &SimNode, pending: Option<&Pending>, got: &Stored) -> Result<(), String> {
    let p = pending.cloned().unwrap_or_default();
    // Recovery lifts the commit to the snapshot's index.
    let lifted = |hs: HardState| HardState {
        commit: hs.commit.max(got.snapshot.index),
        ..hs
    };
    if got.hard_state != lifted(node.hard_state) && p.hard_state.map(lifted) != Some(got.hard_state)
    {
        return Err(format!(
            "hard state {:?} is neither the durable {:?} nor the pending {:?}",
            got.hard_state, node.hard_state, p.hard_state
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
        let durable_e = model_entry(node, e.index);
        if Some(e) != pending_e && Some(e) != durable_e {
            return Err(format!(
                "entry {} (term {}) is neither the durable {:?} nor a pending one",
                e.index,
                e.term,
                durable_e.map(|x| x.term)
            ));
        }
    }
    // Nothing durable may be missing, except what the pending batch replaces.
    let durable_last = node.snapshot.index + node.log.len() as LogIndex;
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

impl World {
    /// Writes `p` to node `n`'s disk, if it has one. `false`: the write
    /// failed and the node was rebooted from its disk (the batch is void).
    pub(super) fn disk_write(&mut self, n: NodeId, p: Pending) -> Result<bool, Violation> {
        let Some(disk) = self.nodes[n as usize].disk.as_mut() else {
            return Ok(true);
        };
        match disk.write(&p) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.counters.disk_faults += 1;
                self.log(|| format!("DISK FAULT n{n}: {e}; the node stops and reboots"));
                self.restart_node(n, Some(&p))?;
                Ok(false)
            }
        }
    }

    /// Arms a fault on a random node's disk: within the next few write or
    /// fsync points, one fails, or the power goes out for good (until the
    /// node reboots).
    pub(super) fn arm_disk_fault(&mut self) {
        let n = self.rng.gen_range(0..self.nodes.len());
        let stop = self.rng.gen_bool(0.5);
        let ahead = self.rng.gen_range(0..6);
        if let Some(disk) = self.nodes[n].disk.as_ref() {
            let k = disk.fs.points() + ahead;
            if stop {
                disk.fs.stop_at(k);
            } else {
                disk.fs.fail_at(k);
            }
            self.log(|| {
                let what = if stop { "power cut" } else { "failure" };
                format!("disk {what} armed on n{n} at point {k}")
            });
        }
    }

    /// Node `n`'s process restarts: memory lost. With a disk, the power is
    /// cut first (a random `CrashMode`) and the store is what recovery reads
    /// back, checked against what the node had made durable (`pending`: a
    /// batch whose write failed, which may be partly there).
    pub(super) fn restart_node(
        &mut self,
        n: NodeId,
        pending: Option<&Pending>,
    ) -> Result<(), Violation> {
        let mode = match self.rng.gen_range(0..3) {
            0 => CrashMode::LoseUnsynced,
            1 => CrashMode::Torn(self.rng.gen()),
            _ => CrashMode::KeepAll,
        };
        let node = &mut self.nodes[n as usize];
        if let Some(disk) = node.disk.as_mut() {
            let got = match disk.crash_and_recover(mode) {
                Ok(s) => s,
                Err(e) => return violation("recovery", format!("node {n}: {e}")),
            };
            if let Err(e) = check_recovered(node, pending, &got) {
                return violation(
                    "acknowledged writes survive a crash",
                    format!("node {n} after {mode:?}: {e}"),
                );
            }
            node.hard_state = got.hard_state;
            node.snapshot = got.snapshot;
            node.log = got.entries;
            self.counters.disk_recoveries += 1;
        }
        self.rebuild_core(n)
    }
}
