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
//! - proposals: an applied payload sits exactly where `propose` said it would;
//! - linearizable reads: a `ReadState` index is at least every index committed
//!   anywhere before the read was requested;
//! - durability before send: a granted vote, a vote request, an append ack and
//!   any message in a term leave only once that term/vote/entry is persisted.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::node::raft::{
    Entry, HardState, LogIndex, Message, MessageBody, NodeId, Raft, ReadState, Role, Snapshot, Term,
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
    /// Payload -> (index, term) returned by `propose`.
    promises: HashMap<Bytes, (LogIndex, Term)>,
    /// Payloads seen applied, with their index: committed and acknowledged.
    pub acked: Vec<(LogIndex, Bytes)>,
    acked_set: HashMap<Bytes, ()>,
    /// Read ctx -> (node asked, minimum acceptable index).
    reads: BTreeMap<u64, (NodeId, LogIndex)>,
    pub reads_served: u64,
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

    /// Messages node `n` is about to send, given what its store holds now.
    pub fn before_send(
        &self,
        n: NodeId,
        msgs: &[Message],
        hs: &HardState,
        store_last: LogIndex,
    ) -> Result<(), Violation> {
        const INV: &str = "durable before send";
        for m in msgs {
            if m.term > hs.term {
                return violation(
                    INV,
                    format!(
                        "node {n} sends in term {} but persisted term {}",
                        m.term, hs.term
                    ),
                );
            }
            match &m.body {
                MessageBody::RequestVote { .. } if hs.term != m.term || hs.vote != Some(n) => {
                    return violation(
                        INV,
                        format!(
                            "node {n} asks for votes in term {} with persisted {hs:?}",
                            m.term
                        ),
                    );
                }
                MessageBody::RequestVoteResponse { granted: true }
                    if hs.term != m.term || hs.vote != Some(m.to) =>
                {
                    return violation(
                        INV,
                        format!(
                            "node {n} grants its term-{} vote to {} with persisted {hs:?}",
                            m.term, m.to
                        ),
                    );
                }
                MessageBody::AppendEntriesResponse {
                    success: true,
                    match_index,
                    ..
                } if *match_index > store_last => {
                    return violation(
                        INV,
                        format!(
                            "node {n} acks index {match_index} with its store ending at {store_last}"
                        ),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Node `n`'s state machine was loaded from a snapshot holding `entries`
    /// (1..=k): each must be what the cluster committed and applied there.
    pub fn snapshot_loaded(&mut self, n: NodeId, entries: &[Entry]) -> Result<(), Violation> {
        let k = entries.len() as u64;
        if k > self.commit_len() {
            return violation(
                "snapshots hold committed entries",
                format!(
                    "node {n} loaded a snapshot through {k}, but only {} are committed",
                    self.commit_len()
                ),
            );
        }
        for e in entries {
            let c = &self.committed[e.index as usize - 1];
            if c.term != e.term || c.data != e.data {
                return violation(
                    "state machine safety",
                    format!(
                        "node {n} loaded ({}, {:?}) at {} from a snapshot; the cluster committed (term {}, {:?})",
                        e.term, e.data, e.index, c.term, c.data
                    ),
                );
            }
            self.applied(n, e)?;
        }
        let verified = &mut self.verified_commit[n as usize];
        *verified = (*verified).max(k);
        Ok(())
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
        match self.promises.get(&e.data) {
            None => violation("no invented entries", format!("node {n} applied {:?}, which nobody proposed", e.data)),
            Some(&(pi, pt)) if (pi, pt) != (e.index, e.term) => violation(
                "proposal placement",
                format!(
                    "{:?} was proposed at ({pi}, term {pt}) but node {n} applied it at ({}, term {})",
                    e.data, e.index, e.term
                ),
            ),
            Some(_) => {
                if self.acked_set.insert(e.data.clone(), ()).is_none() {
                    self.acked.push((e.index, e.data.clone()));
                }
                Ok(())
            }
        }
    }

    pub fn promised(&mut self, payload: Bytes, index: LogIndex, term: Term) {
        self.promises.insert(payload, (index, term));
    }

    pub fn read_requested(&mut self, ctx: u64, n: NodeId) {
        let min = self.commit_len();
        self.reads.insert(ctx, (n, min));
    }

    pub fn read_served(
        &mut self,
        n: NodeId,
        rs: &ReadState,
        commit: LogIndex,
    ) -> Result<(), Violation> {
        const INV: &str = "linearizable reads";
        let Some((asked, min)) = self.reads.remove(&rs.ctx) else {
            return violation(
                INV,
                format!("node {n} released read ctx {} twice or unasked", rs.ctx),
            );
        };
        if asked != n {
            return violation(
                INV,
                format!("read {} asked at node {asked} released by node {n}", rs.ctx),
            );
        }
        if rs.index < min {
            return violation(
                INV,
                format!(
                    "node {n} released read {} at index {} but index {min} was committed before it was requested",
                    rs.ctx, rs.index
                ),
            );
        }
        if rs.index > commit {
            return violation(
                INV,
                format!(
                    "node {n} released read {} at {} beyond its commit {commit}",
                    rs.ctx, rs.index
                ),
            );
        }
        self.reads_served += 1;
        Ok(())
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
            let Some(e) = raft.entry(i) else {
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
