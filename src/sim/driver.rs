//! The simulated node driver: drains a core's `Ready`s exactly as the
//! contract says (persist a received snapshot and load it into the state
//! machine, persist hard state and entries, then send the messages,
//! then apply committed entries and serve read states, then `advance`,
//! sometimes late) and checks the contract while doing so: entries extend the
//! store, nothing is sent before what it promises is durable, requests use
//! ctx 0, every request gets exactly one answer, committed entries come once
//! and in order, and only durable entries are applied.

use rand::Rng;

use super::checker::{violation, Violation};
use super::trace;
use super::world::World;
use crate::node::raft::{MessageBody, NodeId};

impl World {
    /// The driver loop for node `n`: drain its `Ready`s. If a request with
    /// `expect = (ctx, requester, is_vote)` was just stepped, exactly one
    /// response with that ctx must come out.
    pub(super) fn process_ready(
        &mut self,
        n: NodeId,
        expect: Option<(u64, NodeId, bool)>,
    ) -> Result<(), Violation> {
        let mut answers = 0;
        let mut rounds = 0;
        if let Some(rd) = self.nodes[n as usize].unadvanced.take() {
            self.nodes[n as usize].raft.advance(rd);
        }
        while self.nodes[n as usize].raft.has_ready() {
            rounds += 1;
            if rounds > 16 {
                return violation(
                    "Ready settles",
                    format!("node {n} still has a Ready after {rounds} rounds"),
                );
            }
            let node = &mut self.nodes[n as usize];
            let rd = node.raft.ready();
            if rd.is_empty() {
                return violation(
                    "has_ready is honest",
                    format!("node {n}: has_ready() but an empty Ready"),
                );
            }
            if let Some(ss) = rd.soft_state {
                let term = node.raft.term();
                self.log(|| format!("n{n} is {:?} in t{term} (leader {:?})", ss.role, ss.leader));
            }
            // 1. Persist: the real log first (if this run has disks), then the
            // model store it must match.
            if self.nodes[n as usize].disk.is_some() {
                let batch = super::disk::Pending {
                    snapshot: rd.snapshot.clone(),
                    hard_state: rd.hard_state,
                    entries: rd.entries.clone(),
                };
                if !self.disk_write(n, batch)? {
                    // The node stopped and came back from its disk: this
                    // Ready is void, nothing it promised was sent.
                    return self.process_ready(n, None);
                }
            }
            if let Some(snap) = &rd.snapshot {
                let node = &mut self.nodes[n as usize];
                if snap.index <= node.snapshot.index || snap.index <= node.apply_cursor {
                    return violation(
                        "snapshots move forward",
                        format!(
                            "node {n} was handed snapshot {} with snapshot {} and applied {}",
                            snap.index, node.snapshot.index, node.apply_cursor
                        ),
                    );
                }
                super::snapshots::store_snapshot(node, snap);
                self.counters.snapshots_installed += 1;
                self.log(|| format!("n{n} installs snapshot {} (t{})", snap.index, snap.term));
                self.load_snapshot(n, snap)?;
            }
            let node = &mut self.nodes[n as usize];
            if let Some(hs) = rd.hard_state {
                if hs.term < node.hard_state.term {
                    return violation(
                        "term never decreases",
                        format!("node {n}: {:?} -> {hs:?}", node.hard_state),
                    );
                }
                node.hard_state = hs;
            }
            let offset = node.snapshot.index;
            if let Some(first) = rd.entries.first() {
                let last = offset + node.log.len() as u64;
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
                node.log.truncate((first.index - offset) as usize - 1);
                node.log.extend(rd.entries.iter().cloned());
                self.checker
                    .persisted(n, &rd.entries, &node.snapshot, &node.log)?;
            }
            let store_last = offset + node.log.len() as u64;
            if node.hard_state.commit > store_last {
                return violation(
                    "durable before send",
                    format!(
                        "node {n} persisted commit {} with the log ending at {store_last}",
                        node.hard_state.commit,
                    ),
                );
            }
            // 2. Send.
            self.checker
                .before_send(n, &rd.messages, &node.hard_state, store_last)?;
            for m in &rd.messages {
                let is_request = matches!(
                    m.body,
                    MessageBody::AppendEntries { .. } | MessageBody::RequestVote { .. }
                );
                if is_request && m.ctx != 0 {
                    return violation("core requests use ctx 0", trace::msg(m));
                }
                if let Some((ctx, to, vote)) = expect {
                    if m.ctx == ctx && !is_request {
                        let right_kind =
                            vote == matches!(m.body, MessageBody::RequestVoteResponse { .. });
                        if m.to != to || !right_kind {
                            return violation(
                                "one response per request",
                                format!("wrong response {}", trace::msg(m)),
                            );
                        }
                        answers += 1;
                    }
                }
            }
            let up = !self.nodes[n as usize].crashed;
            for m in rd.messages.iter().cloned() {
                let to_up = !self.nodes[m.to as usize].crashed;
                let copies = self
                    .net
                    .send(m.clone(), self.tick, up && to_up, &mut self.rng);
                self.log(|| format!("send{}  {}", ["X", " ", "2"][copies], trace::msg(&m)));
            }
            // 3. Apply.
            let node = &mut self.nodes[n as usize];
            for e in &rd.committed_entries {
                if e.index != node.apply_cursor + 1 {
                    return violation(
                        "committed entries in order, once",
                        format!(
                            "node {n} was handed {} after applying {}",
                            e.index, node.apply_cursor
                        ),
                    );
                }
                let held = e
                    .index
                    .checked_sub(node.snapshot.index + 1)
                    .and_then(|k| node.log.get(k as usize));
                if held != Some(e) {
                    return violation(
                        "applied entries are durable",
                        format!("node {n} applies {} not in its store", e.index),
                    );
                }
                node.apply_cursor = e.index;
                if e.index as usize <= node.applied.len() {
                    if node.applied[e.index as usize - 1] != *e {
                        return violation(
                            "state machine safety",
                            format!("node {n} re-applied a different {}", e.index),
                        );
                    }
                } else {
                    node.applied.push(e.clone());
                }
                self.checker.applied(n, e)?;
            }
            if node.apply_cursor != node.raft.applied_index() {
                return violation(
                    "status().applied_index is what was handed out",
                    format!(
                        "node {n}: {} vs {}",
                        node.raft.applied_index(),
                        node.apply_cursor
                    ),
                );
            }
            if let (Some(a), Some(b)) = (rd.committed_entries.first(), rd.committed_entries.last())
            {
                let (a, b) = (a.index, b.index);
                self.log(|| format!("n{n} applies {a}..={b}"));
            }
            let commit = self.nodes[n as usize].raft.commit_index();
            for rs in &rd.read_states {
                self.checker.read_served(n, rs, commit)?;
                self.log(|| format!("n{n} read ctx={} ready at index {}", rs.ctx, rs.index));
            }
            // Sometimes the driver is slow to call advance(): the core must
            // cope with steps in between (and must not count the entries as
            // durable on the leader until then).
            if self.rng.gen_bool(0.1) {
                self.nodes[n as usize].unadvanced = Some(rd);
                break;
            }
            self.nodes[n as usize].raft.advance(rd);
            self.maybe_compact(n)?;
        }
        if let Some((ctx, to, _)) = expect {
            if answers != 1 {
                return violation(
                    "one response per request",
                    format!("node {n} answered request ctx {ctx} from {to} {answers} times"),
                );
            }
        }
        Ok(())
    }
}
