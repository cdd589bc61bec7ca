//! What the world does around one node's runtime: collecting what a step
//! made it emit (requests into the network, answers to peer calls, applied
//! entries) and checking each against the node's durable state; completing
//! its queued writes, in order, on the model store and the simulated disk;
//! and restarting it from its store after a power cut or a failed write,
//! exactly as `crate::node::start_on` builds a node.

use std::mem;

use rand::Rng;

use super::checker::{violation, Violation};
use super::disk::{check_recovered, Pending};
use super::trace;
use super::world::World;
use super::writer::{ModelStore, SimWriter};
use crate::node::error::NodeError;
use crate::node::metadata::Metadata;
use crate::node::raft::{NodeId, Raft};
use crate::node::runtime::io::Write;
use crate::node::runtime::Request;
use crate::node::storage::CrashMode;

impl World {
    /// Everything node `n` emitted in the step just taken.
    pub(super) fn collect(&mut self, n: NodeId) -> Result<(), Violation> {
        if let Some(why) = self.nodes[n as usize].rt.failed().map(str::to_owned) {
            if self.nodes[n as usize].rt.writer_mut().disk.is_none() {
                return violation(
                    "a node stops only on a disk fault",
                    format!("node {n} without a disk stopped: {why}"),
                );
            }
            // A snapshot file could not be written: the node stops; it is
            // restarted from its disk, as an operator would.
            self.counters.disk_faults += 1;
            self.log(|| format!("n{n} stopped (failed write); it reboots"));
            return self.restart_node(n, None);
        }
        self.send_requests(n)?;
        self.send_answers(n)?;
        self.check_applied(n)
    }

    /// The requests the runtime handed its transport: each must be backed
    /// by what the node's completed writes hold.
    fn send_requests(&mut self, n: NodeId) -> Result<(), Violation> {
        let node = &mut self.nodes[n as usize];
        let out = mem::take(&mut node.rt.transport_mut().out);
        if out.is_empty() {
            return Ok(());
        }
        if node.crashed() {
            return violation(
                "a crashed node sends nothing",
                format!("node {n} sent {}", trace::msg(&out[0])),
            );
        }
        let store = &node.rt.writer_mut().store;
        self.checker.before_send(n, &out, store)?;
        for m in out {
            if m.ctx != 0 {
                return violation("core requests use ctx 0", trace::msg(&m));
            }
            let copies = self.net.send(m.clone(), self.tick, true, &mut self.rng);
            self.log(|| format!("send{}  {}", ["X", " ", "2"][copies], trace::msg(&m)));
        }
        Ok(())
    }

    /// Answers to peer calls that are out now: one per call, of the right
    /// kind, to the caller, and only once what it promises is durable.
    fn send_answers(&mut self, n: NodeId) -> Result<(), Violation> {
        let calls = mem::take(&mut self.nodes[n as usize].calls);
        let mut still = Vec::with_capacity(calls.len());
        for mut call in calls {
            match call.answer.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => still.push(call),
                Ok(Ok(m)) => {
                    if m.to != call.from
                        || m.from != n
                        || !m.body.is_response()
                        || m.body.exchange() != call.exchange
                    {
                        return violation(
                            "one response per request",
                            format!(
                                "node {n} answered a call from {} with {}",
                                call.from,
                                trace::msg(&m)
                            ),
                        );
                    }
                    let store = &self.nodes[n as usize].rt.writer_mut().store;
                    self.checker
                        .before_send(n, std::slice::from_ref(&m), store)?;
                    let copies = self.net.send(m.clone(), self.tick, true, &mut self.rng);
                    self.log(|| format!("answer{} {}", ["X", " ", "2"][copies], trace::msg(&m)));
                }
                // Crashed: the caller gets fault 1 at once (alive, for
                // check-quorum). Failed or a bad request: a fault or a
                // timeout, and it reports the peer unreachable.
                Ok(Err(NodeError::Crashed(_))) => self.report_crashed_answer(call.from, n),
                Ok(Err(_)) | Err(_) => self.maybe_report_unreachable(call.from, n),
            }
        }
        self.nodes[n as usize].calls = still;
        Ok(())
    }

    /// The entries node `n` applied: in order and once since it booted (a
    /// snapshot from the leader moves the cursor), durable in its store,
    /// and what every other node applied there.
    fn check_applied(&mut self, n: NodeId) -> Result<(), Violation> {
        let node = &mut self.nodes[n as usize];
        let applied = node.rt.take_applied();
        let mut installs = mem::take(&mut node.rt.writer_mut().installs);
        let mut cursor = node.apply_cursor;
        for e in &applied {
            if e.index != cursor + 1 {
                match installs
                    .iter()
                    .position(|&s| s + 1 == e.index && s >= cursor)
                {
                    Some(k) => {
                        installs.remove(k);
                    }
                    None => {
                        return violation(
                            "committed entries in order, once",
                            format!("node {n} applied {} after {cursor}", e.index),
                        )
                    }
                }
            }
            let store = &node.rt.writer_mut().store;
            if e.index > store.snapshot.index && store.entry(e.index) != Some(e) {
                return violation(
                    "applied entries are durable",
                    format!("node {n} applied {} not in its store", e.index),
                );
            }
            cursor = e.index;
        }
        if let Some(&s) = installs.iter().max() {
            if s < cursor {
                return violation(
                    "snapshots move forward",
                    format!("node {n} installed a snapshot at {s} after applying {cursor}"),
                );
            }
            cursor = s;
        }
        node.apply_cursor = cursor;
        let (map, core) = (
            node.rt.metadata().applied_index(),
            node.raft().applied_index(),
        );
        if map != cursor || core != cursor {
            return violation(
                "the map applied what the core handed out",
                format!("node {n}: map at {map}, core at {core}, handed out through {cursor}"),
            );
        }
        for e in &applied {
            self.checker.applied(n, e)?;
        }
        Ok(())
    }

    /// Step: node `n`'s storage completes the oldest of its queued writes
    /// (one or several, in order), then the runtime hears they are durable.
    pub fn complete_writes(&mut self, n: NodeId) -> Result<(), Violation> {
        self.begin_step();
        let queued = self.nodes[n as usize].rt.writer_mut().queue.len();
        let k = self.rng.gen_range(1..=queued);
        let mut upto = 0;
        for _ in 0..k {
            let writer = self.nodes[n as usize].rt.writer_mut();
            let write = writer.queue.pop_front().expect("k <= queued");
            upto = upto.max(match &write {
                Write::Ready { number, .. } => *number,
                Write::Compact { upto, .. } => *upto,
            });
            let compact = matches!(write, Write::Compact { .. });
            let pending = Pending::of(&write);
            if let Some(disk) = writer.disk.as_mut() {
                if let Err(e) = disk.write(write) {
                    self.counters.disk_faults += 1;
                    self.log(|| format!("DISK FAULT n{n}: {e}; the node stops and reboots"));
                    let rt = &mut self.nodes[n as usize].rt;
                    rt.handle(Request::Persisted {
                        upto,
                        result: Err(e),
                    });
                    rt.end_turn();
                    if rt.failed().is_none() {
                        return violation(
                            "a failed write stops the node",
                            format!("node {n} is still running"),
                        );
                    }
                    // The calls it failed are answered; nothing it promised left.
                    self.send_requests(n)?;
                    self.send_answers(n)?;
                    self.restart_node(n, Some(&pending))?;
                    return self.end_step(Some(n));
                }
            }
            self.store_completed(n, &pending, compact)?;
        }
        self.counters.writes_completed += k as u64;
        let rt = &mut self.nodes[n as usize].rt;
        rt.handle(Request::Persisted {
            upto,
            result: Ok(()),
        });
        rt.end_turn();
        self.end_step(Some(n))
    }

    /// A completed write reaches node `n`'s model store, checked on the way.
    fn store_completed(&mut self, n: NodeId, p: &Pending, compact: bool) -> Result<(), Violation> {
        if let Some(snap) = &p.snapshot {
            let store = &self.nodes[n as usize].rt.writer_mut().store;
            if !compact && snap.index <= store.snapshot.index {
                return violation(
                    "snapshots move forward",
                    format!(
                        "node {n} was handed snapshot {} with snapshot {}",
                        snap.index, store.snapshot.index
                    ),
                );
            }
            self.check_snapshot(n, snap)?;
            if compact {
                self.counters.compactions += 1;
            } else {
                self.counters.snapshots_installed += 1;
            }
            self.log(|| format!("n{n} stores snapshot {} (t{})", snap.index, snap.term));
            self.nodes[n as usize].store().save_snapshot(snap);
        }
        let store = self.nodes[n as usize].store();
        if let Some(hs) = p.hard_state {
            if hs.term < store.hard_state.term {
                return violation(
                    "term never decreases",
                    format!("node {n}: {:?} -> {hs:?}", store.hard_state),
                );
            }
            store.hard_state = hs;
            if let Some(v) = hs.vote {
                store.votes.insert(hs.term, v);
            }
        }
        if p.sync {
            store.synced_hard_state = store.hard_state;
        }
        if let Some(first) = p.entries.first() {
            let (offset, last) = (store.snapshot.index, store.last_index());
            if first.index <= offset || first.index > last + 1 {
                return violation(
                    "Ready.entries extend the store",
                    format!(
                        "node {n}: entries start at {} but the store holds {}..={last}",
                        first.index,
                        offset + 1
                    ),
                );
            }
            store.log.truncate((first.index - offset) as usize - 1);
            store.log.extend(p.entries.iter().cloned());
            let store = &self.nodes[n as usize].rt.writer_mut().store;
            self.checker
                .persisted(n, &p.entries, &store.snapshot, &store.log)?;
        }
        let store = self.nodes[n as usize].store();
        let (term, last) = (store.hard_state.term, store.last_index());
        let longest = store.last_by_term.entry(term).or_insert(0);
        *longest = (*longest).max(last);
        if store.hard_state.commit > store.last_index() {
            return violation(
                "commit within the durable log",
                format!(
                    "node {n} persisted commit {} with the log ending at {}",
                    store.hard_state.commit,
                    store.last_index()
                ),
            );
        }
        Ok(())
    }

    /// Arms a fault on a random node's disk: within the next few write or
    /// fsync points, one fails, or the power goes out for good (until the
    /// node reboots).
    pub(super) fn arm_disk_fault(&mut self) {
        let n = self.rng.gen_range(0..self.nodes.len());
        let stop = self.rng.gen_bool(0.5);
        let ahead = self.rng.gen_range(0..6);
        if let Some(disk) = self.nodes[n].rt.writer_mut().disk.as_ref() {
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

    /// Node `n`'s process restarts: memory lost, and the writes not yet
    /// completed with it (calls pending on it are dropped unanswered). With
    /// a disk, the power is cut first (a random `CrashMode`) and the store
    /// is what recovery reads back, checked against what the node had made
    /// durable (`pending`: a write that failed, which may be partly there).
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
        let writer = self.nodes[n as usize].rt.writer_mut();
        let mut store = mem::take(&mut writer.store);
        let mut disk = writer.disk.take();
        if let Some(d) = disk.as_mut() {
            let got = match d.crash_and_recover(mode) {
                Ok(s) => s,
                Err(e) => return violation("recovery", format!("node {n}: {e}")),
            };
            if let Err(e) = check_recovered(&store, pending, &got) {
                return violation(
                    "acknowledged writes survive a crash",
                    format!("node {n} after {mode:?}: {e}"),
                );
            }
            store = ModelStore {
                hard_state: got.hard_state,
                synced_hard_state: got.hard_state,
                snapshot: got.snapshot,
                log: got.entries,
                votes: std::mem::take(&mut store.votes),
                last_by_term: std::mem::take(&mut store.last_by_term),
            };
            self.counters.disk_recoveries += 1;
        }
        store.synced_hard_state = store.hard_state;
        if let Some(v) = store.hard_state.vote {
            // Recovery may keep part of a failed write: its vote is durable now.
            store.votes.insert(store.hard_state.term, v);
        }
        let (term, last) = (store.hard_state.term, store.last_index());
        let longest = store.last_by_term.entry(term).or_insert(0);
        *longest = (*longest).max(last);
        let stored = store.stored();
        self.log(|| {
            format!(
                "REBOOT n{n} from {:?} + snapshot at {} + {} entries",
                stored.hard_state,
                stored.snapshot.index,
                stored.entries.len()
            )
        });
        // As `start_on`: the map from the snapshot, the core from the rest.
        let metadata = if stored.snapshot.index > 0 {
            match Metadata::from_snapshot(stored.snapshot.index, &stored.snapshot.data) {
                Ok(m) => m,
                Err(e) => return violation("storage restores", format!("node {n}: {e}")),
            }
        } else {
            Metadata::new()
        };
        let boot = self.nodes[n as usize].boots + 1;
        let snapshot_index = stored.snapshot.index;
        let raft = match Raft::new(
            self.config(n, boot),
            stored.hard_state,
            stored.snapshot,
            stored.entries,
        ) {
            Ok(r) => r,
            Err(e) => return violation("storage restores", format!("node {n}: {e}")),
        };
        let writer = SimWriter {
            store,
            disk,
            ..SimWriter::default()
        };
        let rt = self.runtime(n, raft, metadata, writer);
        self.checker.rebooted(n, rt.raft().commit_index());
        let node = &mut self.nodes[n as usize];
        node.rt = rt;
        node.boots = boot;
        node.apply_cursor = snapshot_index;
        // The callers of the dropped peer calls time out.
        for call in mem::take(&mut node.calls) {
            self.maybe_report_unreachable(call.from, n);
        }
        Ok(())
    }
}
