//! The invariants a simulated run must never break, checked incrementally after
//! every step (so a violation names the step that caused it):
//!
//! - election safety: at most one leader per term, over the whole history;
//! - log matching: an (index, term) pair always carries the same data and
//!   follows the same previous term, so equal pairs mean equal prefixes;
//! - leader completeness: an entry committed in term t is in the log of every
//!   leader of a term above t;
//! - state machine safety: nodes never commit or apply different entries at
//!   one index; commit never decreases; applied <= commit;
//! - no invented entries: every applied command is one a client sent;
//! - durability before send: a granted vote, a vote request, an append ack and
//!   any message in a term leave only once that term/vote/entry is persisted.
//!
//! What clients see (linearizability, acknowledged writes kept, every call
//! answered once) is checked in `clients.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use super::writer::ModelStore;
use crate::node::raft::{
    Entry, LogIndex, Message, MessageBody, NodeId, Raft, Role, Snapshot, Term,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

pub fn violation<T>(invariant: &'static str, detail: String) -> Result<T, Violation> {
    Err(Violation { invariant, detail })
}

#[derive(Debug)]
struct Committed {
    term: Term,
    data: Bytes,
    /// Upper bound of the term in which it was committed (the committing
    /// node's term when the commit was first seen).
    commit_term: Term,
}

#[derive(Debug, Default)]
pub struct Checker {
    /// Term -> the one node that led it.
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> (data, term of the previous entry).
    pairs: HashMap<(LogIndex, Term), (Bytes, Term)>,
    /// Globally committed entries; index i at `[i - 1]`.
    committed: Vec<Committed>,
    /// Per node: committed entries compared with `committed` through here.
    verified_commit: Vec<LogIndex>,
    /// Per node: last commit index seen.
    last_commit: Vec<LogIndex>,
    /// Globally applied entries (term, data); index i at `[i - 1]`.
    applied: Vec<(Term, Bytes)>,
    /// Every command a client sent, encoded as the log carries it.
    proposed: HashSet<Bytes>,
}

impl Checker {
    pub fn new(nodes: usize) -> Checker {
        Checker {
            verified_commit: vec![0; nodes],
            last_commit: vec![0; nodes],
            ..Checker::default()
        }
    }

    pub fn leaders_elected(&self) -> u64 {
        self.leaders.len() as u64
    }

    pub fn max_term(&self) -> Term {
        self.leaders.keys().next_back().copied().unwrap_or(0)
    }

    /// Highest index known committed anywhere.
    pub fn commit_len(&self) -> LogIndex {
        self.committed.len() as u64
    }

    /// `entries` were just written to node `n`'s store, whose log is now
    /// `store` (the entries after `snap`).
    pub fn persisted(
        &mut self,
        n: NodeId,
        entries: &[Entry],
        snap: &Snapshot,
        store: &[Entry],
    ) -> Result<(), Violation> {
        for e in entries {
            let prev_term = if e.index == snap.index + 1 {
                snap.term
            } else {
                store[(e.index - snap.index) as usize - 2].term
            };
            match self.pairs.get(&(e.index, e.term)) {
                None => {
                    self.pairs
                        .insert((e.index, e.term), (e.data.clone(), prev_term));
                }
                Some((data, pt)) if *data == e.data && *pt == prev_term => {}
                Some((data, pt)) => {
                    return violation(
                        "log matching",
                        format!(
                            "node {n} stored entry ({}, term {}) = {:?} after term {prev_term}; \
                             elsewhere it is {:?} after term {pt}",
                            e.index, e.term, e.data, data
                        ),
                    )
                }
            }
        }
        Ok(())
    }

    /// Messages node `n` is about to send, given what its completed writes
    /// hold (`store`): the term, the vote a request or grant relies on, and
    /// the entries an ack reports.
    pub fn before_send(
        &self,
        n: NodeId,
        msgs: &[Message],
        store: &ModelStore,
    ) -> Result<(), Violation> {
        const INV: &str = "durable before send";
        let hs = &store.hard_state;
        for m in msgs {
            // A pre-vote carries the term asked about, one past the sender's
            // own; a granted pre-vote, the term it was asked about, and it
            // promises nothing.
            let own_term = match m.body {
                MessageBody::PreVote { .. } => m.term.saturating_sub(1),
                MessageBody::PreVoteResponse { granted: true } => continue,
                _ => m.term,
            };
            if own_term > hs.term {
                return violation(
                    INV,
                    format!(
                        "node {n} sends in term {} but persisted term {}",
                        m.term, hs.term
                    ),
                );
            }
            let voted = store.votes.get(&m.term).copied();
            match &m.body {
                MessageBody::RequestVote { .. } if voted != Some(n) => {
                    return violation(
                        INV,
                        format!(
                            "node {n} asks for votes in term {} with persisted {hs:?} (its durable vote in that term: {voted:?})",
                            m.term
                        ),
                    );
                }
                MessageBody::RequestVoteResponse { granted: true } if voted != Some(m.to) => {
                    return violation(
                        INV,
                        format!(
                            "node {n} grants its term-{} vote to {} with persisted {hs:?} (its durable vote in that term: {voted:?})",
                            m.term, m.to
                        ),
                    );
                }
                MessageBody::AppendEntriesResponse {
                    success: true,
                    match_index,
                    ..
                } if *match_index > store.last_by_term.get(&m.term).copied().unwrap_or(0) => {
                    return violation(
                        INV,
                        format!(
                            "node {n} acks index {match_index} in term {} with its store ending at {} (at most {:?} in that term)",
                            m.term,
                            store.last_index(),
                            store.last_by_term.get(&m.term)
                        ),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The globally applied entries `1..=k`, if all are known.
    pub fn applied_through(&self, k: LogIndex) -> Option<&[(Term, Bytes)]> {
        self.applied.get(..k as usize)
    }

    /// A client sent the command `encoded`.
    pub fn proposed(&mut self, encoded: Bytes) {
        self.proposed.insert(encoded);
    }

    /// Node `n` restarted with `commit` from its store: its commit may be
    /// lower than before (the commit index is volatile; a commit-only write
    /// is not fsynced), and is watched from there on.
    pub fn rebooted(&mut self, n: NodeId, commit: LogIndex) {
        self.last_commit[n as usize] = commit;
        let verified = &mut self.verified_commit[n as usize];
        *verified = (*verified).min(commit);
    }

    /// Node `n` applied `e` (possibly again, after a reboot).
    pub fn applied(&mut self, n: NodeId, e: &Entry) -> Result<(), Violation> {
        let i = e.index as usize;
        if i <= self.applied.len() {
            let (term, data) = &self.applied[i - 1];
            if *term != e.term || *data != e.data {
                return violation(
                    "state machine safety",
                    format!(
                        "node {n} applied (term {}, {:?}) at {i}; another node applied (term {term}, {data:?})",
                        e.term, e.data
                    ),
                );
            }
        } else if i == self.applied.len() + 1 {
            self.applied.push((e.term, e.data.clone()));
        } else {
            return violation(
                "applied in order",
                format!(
                    "node {n} applied index {i} past the global {}",
                    self.applied.len()
                ),
            );
        }
        if e.data.is_empty() {
            return Ok(()); // a leader's no-op
        }
        if self.proposed.contains(&e.data) {
            Ok(())
        } else {
            violation(
                "no invented entries",
                format!("node {n} applied {:?}, which no client sent", e.data),
            )
        }
    }

    /// The whole-cluster checks, after every step. `rebooted` nodes may have
    /// rebuilt their core, but never from less than what they had persisted.
    pub fn after_step(&mut self, nodes: &[&Raft]) -> Result<(), Violation> {
        for (n, raft) in nodes.iter().enumerate() {
            let n = n as NodeId;
            let (commit, applied) = (raft.commit_index(), raft.applied_index());
            if applied > commit {
                return violation(
                    "applied <= commit",
                    format!("node {n}: applied {applied} > commit {commit}"),
                );
            }
            if commit < self.last_commit[n as usize] {
                return violation(
                    "commit never decreases",
                    format!(
                        "node {n}: commit {commit} after {}",
                        self.last_commit[n as usize]
                    ),
                );
            }
            self.last_commit[n as usize] = commit;
            if raft.role() == Role::Leader {
                self.check_leader(n, raft)?;
            }
        }
        for (n, raft) in nodes.iter().enumerate() {
            self.check_commits(n as NodeId, raft, nodes)?;
        }
        Ok(())
    }

    fn check_leader(&mut self, n: NodeId, raft: &Raft) -> Result<(), Violation> {
        let term = raft.term();
        match self.leaders.get(&term) {
            Some(&l) if l == n => return Ok(()),
            Some(&l) => {
                return violation(
                    "election safety",
                    format!("nodes {l} and {n} both led term {term}"),
                )
            }
            None => {
                self.leaders.insert(term, n);
            }
        }
        for (k, c) in self.committed.iter().enumerate() {
            if c.commit_term < term {
                Self::has_committed(n, raft, k as u64 + 1, c)?;
            }
        }
        Ok(())
    }

    fn has_committed(
        n: NodeId,
        raft: &Raft,
        index: LogIndex,
        c: &Committed,
    ) -> Result<(), Violation> {
        if index < raft.snapshot_index() {
            return Ok(()); // in its snapshot, checked when it was loaded or taken
        }
        if index == raft.snapshot_index() && raft.term_at(index) == Some(c.term) {
            return Ok(());
        }
        match raft.entry(index) {
            Some(e) if e.term == c.term => Ok(()),
            other => violation(
                "leader completeness",
                format!(
                    "leader {n} of term {} lacks entry {index} (term {}, committed by term {}); it has {:?}",
                    raft.term(),
                    c.term,
                    c.commit_term,
                    other.map(|e| e.term)
                ),
            ),
        }
    }

    fn check_commits(&mut self, n: NodeId, raft: &Raft, nodes: &[&Raft]) -> Result<(), Violation> {
        let commit = raft.commit_index();
        while (self.committed.len() as u64) < commit {
            let i = self.committed.len() as u64 + 1;
            // The runtime compacts in the turn it applies: a compacted
            // entry was applied, and the world fed it to `applied` first.
            let compacted = (i <= raft.snapshot_index())
                .then(|| self.applied.get(i as usize - 1))
                .flatten()
                .map(|(term, data)| Entry {
                    term: *term,
                    index: i,
                    data: data.clone(),
                });
            let Some(e) = raft.entry(i).cloned().or(compacted) else {
                return violation(
                    "commits come from held entries",
                    format!(
                        "node {n} has commit {commit} but no entry {i} (snapshot at {}), and no node committed {i} before",
                        raft.snapshot_index()
                    ),
                );
            };
            let c = Committed {
                term: e.term,
                data: e.data.clone(),
                commit_term: raft.term(),
            };
            for (l, leader) in nodes.iter().enumerate() {
                if leader.role() == Role::Leader && leader.term() > c.commit_term {
                    Self::has_committed(l as NodeId, leader, i, &c)?;
                }
            }
            self.committed.push(c);
        }
        let verified = &mut self.verified_commit[n as usize];
        // Entries in a snapshot were checked when it was loaded or taken.
        *verified = (*verified).max(raft.snapshot_index().min(commit));
        while *verified < commit {
            let i = *verified + 1;
            let c = &self.committed[i as usize - 1];
            match raft.entry(i) {
                Some(e) if e.term == c.term && e.data == c.data => *verified = i,
                other => {
                    return violation(
                        "state machine safety",
                        format!(
                        "node {n} committed {:?} at {i}; another node committed (term {}, {:?})",
                        other.map(|e| (e.term, e.data.clone())),
                        c.term,
                        c.data
                    ),
                    )
                }
            }
        }
        Ok(())
    }
}
