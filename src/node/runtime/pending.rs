//! The calls a node has taken and not answered yet: proposals waiting to be
//! applied, reads waiting for their ReadIndex round and then for the apply
//! cursor, and peer calls waiting for the core's response. Each is answered
//! exactly once: by its outcome, or by `fail_all`.

use std::collections::{BTreeMap, HashMap};

use super::request::Reply;
use crate::node::error::NodeError;
use crate::node::metadata::MapView;
use crate::node::raft::{LogIndex, Message, NodeId, Term};

#[derive(Default)]
pub struct Pending {
    /// Proposals waiting to be applied: index -> (term proposed in, reply).
    pub updates: BTreeMap<LogIndex, (Term, Reply<bool>)>,
    /// Reads waiting for their ReadIndex round, by ctx.
    pub reads: HashMap<u64, Reply<MapView>>,
    /// Reads whose round succeeded, waiting for `applied >= index`.
    pub ready_reads: Vec<(LogIndex, Reply<MapView>)>,
    /// Peer calls waiting for the core's response, by ctx.
    pub responders: HashMap<u64, Reply<Message>>,
    next_ctx: u64,
}

impl Pending {
    pub fn take_ctx(&mut self) -> u64 {
        self.next_ctx += 1;
        self.next_ctx
    }

    /// Client calls waiting (the stall detector counts them).
    pub fn client_calls(&self) -> usize {
        self.updates.len() + self.reads.len() + self.ready_reads.len()
    }

    /// Answers every waiting client call with `err()`, and every peer call
    /// with "crashed" (the caller treats it as no answer).
    pub fn fail_all(&mut self, me: NodeId, err: impl Fn() -> NodeError) {
        for (_, (_, reply)) in std::mem::take(&mut self.updates) {
            let _ = reply.send(Err(err()));
        }
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(err()));
        }
        for (_, reply) in self.ready_reads.drain(..) {
            let _ = reply.send(Err(err()));
        }
        for (_, reply) in self.responders.drain() {
            let _ = reply.send(Err(NodeError::Crashed(me)));
        }
    }

    /// Fails the reads still waiting for their ReadIndex round (a leader
    /// that stepped down cannot finish them); proposals stay, to be
    /// answered when their entries apply here (see `fail_updates`).
    pub fn fail_unconfirmed_reads(&mut self, err: impl Fn() -> NodeError) {
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(err()));
        }
    }

    /// Fails every proposal still waiting to apply.
    pub fn fail_updates(&mut self, err: impl Fn() -> NodeError) {
        for (_, (_, reply)) in std::mem::take(&mut self.updates) {
            let _ = reply.send(Err(err()));
        }
    }

    /// Entry (`index`, `term`) was applied with `result` (`None`: it was a
    /// no-op or undecodable). Answers the proposal made for it, and every
    /// proposal below it, which was overwritten and will never apply.
    /// Returns how many were answered.
    pub fn applied(&mut self, index: LogIndex, term: Term, result: Option<bool>) -> u64 {
        let mut answered = 0;
        while let Some(pending) = self.updates.first_entry() {
            if *pending.key() > index {
                break;
            }
            let (at, (proposed_in, reply)) = pending.remove_entry();
            answered += 1;
            let outcome = if at == index && proposed_in == term {
                Ok(result.unwrap_or(false))
            } else {
                Err(NodeError::Unavailable(
                    "the proposal was overwritten by a new leader".into(),
                ))
            };
            let _ = reply.send(outcome);
        }
        answered
    }

    /// Serves the reads whose index is applied (all from one view of the
    /// map, taken only if some read is due). Returns how many.
    pub fn serve_reads(&mut self, applied: LogIndex, view: impl FnOnce() -> MapView) -> u64 {
        if !self.ready_reads.iter().any(|(i, _)| *i <= applied) {
            return 0;
        }
        let map = view();
        let mut served = 0;
        let mut i = 0;
        while i < self.ready_reads.len() {
            if self.ready_reads[i].0 <= applied {
                let (_, reply) = self.ready_reads.swap_remove(i);
                served += 1;
                let _ = reply.send(Ok(map.clone()));
            } else {
                i += 1;
            }
        }
        served
    }
}
