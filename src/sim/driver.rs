//! The simulated node driver: drains a core's `Ready`s exactly as the
//! contract says (persist hard state and entries, then send the messages,
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
            let node = &mut self.nodes[n as usize];
            // 1. Persist.
            if let Some(hs) = rd.hard_state {
                if hs.term < node.hard_state.term {
                    return violation(
                        "term never decreases",
                        format!("node {n}: {:?} -> {hs:?}", node.hard_state),
                    );
                }
                node.hard_state = hs;
            }
            if let Some(first) = rd.entries.first() {
                if first.index == 0 || first.index > node.log.len() as u64 + 1 {
                    return violation(
                        "Ready.entries extend the store",
                        format!(
                            "node {n}: entries start at {} but the store ends at {}",
                            first.index,
                            node.log.len()
                        ),
                    );
                }
                node.log.truncate(first.index as usize - 1);
                node.log.extend(rd.entries.iter().cloned());
                self.checker.persisted(n, &rd.entries, &node.log)?;
            }
            if node.hard_state.commit > node.log.len() as u64 {
                return violation(
                    "durable before send",
                    format!(
                        "node {n} persisted commit {} with {} entries",
                        node.hard_state.commit,
                        node.log.len()
                    ),
                );
            }
            // 2. Send.
            self.checker
                .before_send(n, &rd.messages, &node.hard_state, &node.log)?;
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
                if node.log.get(e.index as usize - 1) != Some(e) {
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
