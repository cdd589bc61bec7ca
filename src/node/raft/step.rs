//! Receiving messages: `Raft::step`. Checks the envelope and the contents
//! before touching any state, applies the term rules (a higher term makes us a
//! follower in it; a request from a lower term is rejected with our term, a
//! response from one is dropped), then handles the follower's side of
//! AppendEntries and RequestVote and the candidate's side of the vote count.
//!
//! InstallSnapshot (from the leader, when we need entries it has compacted)
//! is answered like an AppendEntries: a success whose `match_index` says how
//! far our log now matches. An AppendEntries whose `prev_index` is below our
//! own snapshot is cut to the part after it (the rest is committed here).
//!
//! Every AppendEntries, InstallSnapshot and RequestVote that passes the envelope check is
//! answered by exactly one response carrying its `ctx`, placed in the outbox and
//! so only sent after the vote or entries it promises are durable. A rejected
//! AppendEntries is answered with `match_index` = the rejected `prev_index`
//! (so the leader can discard stale rejections) plus the conflict hint.

use super::election::VoteResult;
use super::error::RaftError;
use super::raft::Raft;
use super::types::{LogIndex, Message, MessageBody, NodeId, Role};

impl Raft {
    /// Feed one message in. `Err` without any state change for a message not
    /// addressed to us or not from another member. A request whose contents are
    /// malformed (indexes that do not add up, an attempt to overwrite a
    /// committed entry, a second leader in our term) is answered with a
    /// rejection and reported as `Err(InvalidMessage)`, again changing nothing
    /// else; a malformed response is dropped with `Err(InvalidMessage)`.
    pub fn step(&mut self, msg: Message) -> Result<(), RaftError> {
        if msg.to != self.cfg.id {
            return Err(RaftError::Misaddressed {
                to: msg.to,
                id: self.cfg.id,
            });
        }
        if msg.from == self.cfg.id || !self.cfg.members.contains(&msg.from) {
            return Err(RaftError::UnknownPeer(msg.from));
        }
        if let Err(reason) = self.check_contents(&msg) {
            self.reject_request(&msg);
            return Err(RaftError::InvalidMessage {
                from: msg.from,
                reason,
            });
        }
        if msg.term > self.term {
            match msg.body {
                MessageBody::RequestVote {
                    transfer: false, ..
                }
                | MessageBody::PreVote { .. }
                    if self.in_lease() =>
                {
                    // §4.2.3: a leader is heard, so this candidate is cut off
                    // or stale. Refuse in our term, which stays as it is. A
                    // candidate the leader itself chose (`transfer`) is not.
                    self.refuse_vote(&msg);
                    return Ok(());
                }
                // Asking about, or granting, a future term moves no term.
                MessageBody::PreVote { .. } | MessageBody::PreVoteResponse { granted: true } => {
                    return self.step_current(msg);
                }
                _ => {}
            }
            let leader = matches!(
                msg.body,
                MessageBody::AppendEntries { .. }
                    | MessageBody::InstallSnapshot { .. }
                    | MessageBody::TimeoutNow
            )
            .then_some(msg.from);
            self.become_follower(msg.term, leader);
        } else if msg.term < self.term {
            // Stale: tell a requester our term (it will step down); drop responses.
            self.reject_request(&msg);
            return Ok(());
        }
        self.step_current(msg)
    }

    /// A message the term rules let through.
    fn step_current(&mut self, msg: Message) -> Result<(), RaftError> {
        if msg.term == self.term && self.role == Role::Leader {
            if let Some(pr) = self.progress.get_mut(&msg.from) {
                pr.recent_active = true;
            }
        }
        match msg.body {
            MessageBody::AppendEntries { .. } => self.handle_append_entries(&msg),
            MessageBody::InstallSnapshot { .. } => self.handle_install_snapshot(&msg),
            MessageBody::AppendEntriesResponse { .. } => self.handle_append_response(&msg),
            MessageBody::RequestVote { .. } => self.handle_request_vote(&msg),
            MessageBody::RequestVoteResponse { granted } => {
                self.handle_vote_response(msg.from, granted)
            }
            MessageBody::PreVote { .. } => self.handle_pre_vote(&msg),
            MessageBody::PreVoteResponse { granted } => {
                self.handle_pre_vote_response(&msg, granted)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(&msg),
            // Counted as contact above; the term it carries did the rest.
            MessageBody::TimeoutNowResponse { .. } => {}
        }
        Ok(())
    }

    /// Contents that no correct peer can send, checked before any state change.
    fn check_contents(&self, msg: &Message) -> Result<(), String> {
        match &msg.body {
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries,
                ..
            } => {
                if *prev_term > msg.term {
                    return Err(format!(
                        "prev_term {prev_term} is beyond the message term {}",
                        msg.term
                    ));
                }
                let mut term = *prev_term;
                for (k, e) in entries.iter().enumerate() {
                    if Some(e.index) != prev_index.checked_add(k as u64 + 1) {
                        return Err(format!(
                            "entry {k} has index {} after prev_index {prev_index}",
                            e.index
                        ));
                    }
                    if e.term < term || e.term > msg.term {
                        return Err(format!(
                            "entry {} has term {} (after term {term}, in term {})",
                            e.index, e.term, msg.term
                        ));
                    }
                    term = e.term;
                }
                if msg.term >= self.term {
                    if let Some(e) = entries
                        .iter()
                        .take_while(|e| e.index <= self.log.commit())
                        .find(|e| self.log.term(e.index).is_some_and(|t| t != e.term))
                    {
                        return Err(format!(
                            "entry {} (term {}) contradicts a committed entry",
                            e.index, e.term
                        ));
                    }
                }
                self.check_sole_leader(msg)
            }
            MessageBody::InstallSnapshot { snapshot } => {
                if snapshot.index == 0 || snapshot.term == 0 || snapshot.term > msg.term {
                    return Err(format!(
                        "snapshot at index {} of term {} in term {}",
                        snapshot.index, snapshot.term, msg.term
                    ));
                }
                if msg.term >= self.term
                    && snapshot.index <= self.log.commit()
                    && self
                        .log
                        .term(snapshot.index)
                        .is_some_and(|t| t != snapshot.term)
                {
                    return Err(format!(
                        "snapshot at {} (term {}) contradicts a committed entry",
                        snapshot.index, snapshot.term
                    ));
                }
                self.check_sole_leader(msg)
            }
            MessageBody::AppendEntriesResponse { match_index, .. } => {
                if msg.term == self.term
                    && self.role == Role::Leader
                    && *match_index > self.log.last_index()
                {
                    return Err(format!(
                        "answers about index {match_index} beyond our last index {}",
                        self.log.last_index()
                    ));
                }
                Ok(())
            }
            MessageBody::RequestVote { last_term, .. } | MessageBody::PreVote { last_term, .. } => {
                if *last_term > msg.term {
                    return Err(format!(
                        "last_term {last_term} is beyond the candidate's term {}",
                        msg.term
                    ));
                }
                Ok(())
            }
            MessageBody::TimeoutNow => self.check_sole_leader(msg),
            MessageBody::RequestVoteResponse { .. }
            | MessageBody::PreVoteResponse { .. }
            | MessageBody::TimeoutNowResponse { .. } => Ok(()),
        }
    }

    /// A leader's request in our term must come from the one leader we know.
    fn check_sole_leader(&self, msg: &Message) -> Result<(), String> {
        if msg.term == self.term {
            let other_leader = match self.role {
                Role::Leader => true,
                _ => self.leader.is_some_and(|l| l != msg.from),
            };
            if other_leader {
                return Err(format!("a second leader in term {}", msg.term));
            }
        }
        Ok(())
    }

    /// Answer a request we will not act on, in our own term. Responses: nothing.
    fn reject_request(&mut self, msg: &Message) {
        match &msg.body {
            MessageBody::InstallSnapshot { snapshot } => {
                let body = MessageBody::AppendEntriesResponse {
                    success: false,
                    match_index: snapshot.index,
                    conflict_index: 0,
                    conflict_term: 0,
                    read_seq: 0,
                };
                self.respond(msg, body);
            }
            MessageBody::AppendEntries {
                prev_index,
                read_seq,
                ..
            } => {
                let body = MessageBody::AppendEntriesResponse {
                    success: false,
                    match_index: *prev_index,
                    conflict_index: 0,
                    conflict_term: 0,
                    read_seq: *read_seq,
                };
                self.respond(msg, body);
            }
            MessageBody::RequestVote { .. } | MessageBody::PreVote { .. } => self.refuse_vote(msg),
            MessageBody::TimeoutNow => {
                self.respond(msg, MessageBody::TimeoutNowResponse { accepted: false })
            }
            _ => {}
        }
    }

    /// Refuse a vote or pre-vote, in our own term.
    fn refuse_vote(&mut self, msg: &Message) {
        let body = match msg.body {
            MessageBody::PreVote { .. } => MessageBody::PreVoteResponse { granted: false },
            _ => MessageBody::RequestVoteResponse { granted: false },
        };
        self.respond(msg, body);
    }

    /// AppendEntries from the leader of our term (Figure 2, receiver rules).
    fn handle_append_entries(&mut self, msg: &Message) {
        let MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            commit,
            read_seq,
        } = &msg.body
        else {
            unreachable!("dispatched on the body")
        };
        self.follow(msg.from);
        let offset = self.log.snapshot_index();
        let (prev_index, prev_term, entries) = if *prev_index < offset {
            // Our snapshot covers the start: everything through it is
            // committed, so only what follows it needs matching.
            let skip = (offset - prev_index) as usize;
            if skip >= entries.len() {
                self.ack_append(msg, self.log.commit(), *read_seq);
                return;
            }
            (offset, self.log.snapshot_term(), &entries[skip..])
        } else {
            (*prev_index, *prev_term, &entries[..])
        };
        let (prev_index, prev_term) = (&prev_index, &prev_term);
        if self.log.term(*prev_index) != Some(*prev_term) {
            let hint = self.log.conflict_hint(*prev_index);
            let body = MessageBody::AppendEntriesResponse {
                success: false,
                match_index: *prev_index,
                conflict_index: hint.index,
                conflict_term: hint.term,
                read_seq: *read_seq,
            };
            self.respond(msg, body);
            return;
        }
        let last_verified = self.log.append_after(*prev_index, entries);
        self.log.commit_to((*commit).min(last_verified));
        self.ack_append(msg, last_verified, *read_seq);
    }

    /// A leader of our term spoke: follow it and put off campaigning.
    fn follow(&mut self, leader: NodeId) {
        if matches!(self.role, Role::Candidate | Role::PreCandidate) {
            self.become_follower(self.term, Some(leader));
        } else {
            self.leader = Some(leader);
            self.election.reset(&mut self.rng);
        }
    }

    fn ack_append(&mut self, msg: &Message, match_index: LogIndex, read_seq: u64) {
        let body = MessageBody::AppendEntriesResponse {
            success: true,
            match_index,
            conflict_index: 0,
            conflict_term: 0,
            read_seq,
        };
        self.respond(msg, body);
    }

    /// InstallSnapshot from the leader of our term. A snapshot we are already
    /// past (committed) or whose last entry our log holds only moves the
    /// commit index; otherwise it replaces the log and the state machine
    /// (handed to the driver in the next `Ready`, before the ack leaves).
    fn handle_install_snapshot(&mut self, msg: &Message) {
        let MessageBody::InstallSnapshot { snapshot } = &msg.body else {
            unreachable!("dispatched on the body")
        };
        self.follow(msg.from);
        if snapshot.index <= self.log.commit() {
            self.ack_append(msg, self.log.commit(), 0);
            return;
        }
        if self.log.term(snapshot.index) == Some(snapshot.term) {
            self.log.commit_to(snapshot.index);
            self.ack_append(msg, snapshot.index, 0);
            return;
        }
        self.log.restore_snapshot(snapshot.index, snapshot.term);
        self.snapshot = snapshot.clone();
        self.pending_snapshot = Some(snapshot.clone());
        self.ack_append(msg, snapshot.index, 0);
    }

    /// RequestVote in our term: at most one vote per term, only for a candidate
    /// whose log is at least as up to date (5.4.1), and none once we follow a
    /// leader of this term.
    fn handle_request_vote(&mut self, msg: &Message) {
        let MessageBody::RequestVote {
            last_index,
            last_term,
            ..
        } = msg.body
        else {
            unreachable!("dispatched on the body")
        };
        let can_vote =
            self.vote == Some(msg.from) || (self.vote.is_none() && self.leader.is_none());
        let up_to_date =
            self.bugs.no_election_restriction || self.log.is_up_to_date(last_index, last_term);
        let granted = can_vote && up_to_date;
        if granted {
            self.vote = Some(msg.from);
            self.election.reset(&mut self.rng);
        }
        self.respond(msg, MessageBody::RequestVoteResponse { granted });
    }

    /// PreVote for a term at least ours (§9.6): granted to a candidate whose
    /// log is at least as up to date, if we could vote for it in that term:
    /// always for a later term (a pre-vote binds nothing), in our own term
    /// only as `handle_request_vote` would. Nothing is recorded.
    fn handle_pre_vote(&mut self, msg: &Message) {
        let MessageBody::PreVote {
            last_index,
            last_term,
        } = msg.body
        else {
            unreachable!("dispatched on the body")
        };
        let can_vote = msg.term > self.term
            || self.vote == Some(msg.from)
            || (self.vote.is_none() && self.leader.is_none());
        let up_to_date =
            self.bugs.no_election_restriction || self.log.is_up_to_date(last_index, last_term);
        if can_vote && up_to_date {
            self.respond_in(
                msg.term,
                msg,
                MessageBody::PreVoteResponse { granted: true },
            );
        } else {
            self.refuse_vote(msg);
        }
    }

    /// A pre-candidate counts grants for the term it asked about (ours + 1)
    /// and refusals from our term; a majority of grants starts the real
    /// campaign, a majority of refusals makes it a follower again.
    fn handle_pre_vote_response(&mut self, msg: &Message, granted: bool) {
        if self.role != Role::PreCandidate {
            return;
        }
        let asked = self.term + 1;
        if granted != (msg.term == asked) {
            return;
        }
        self.votes.record(msg.from, granted);
        if granted && self.bugs.double_vote {
            self.votes.extra_granted += 1;
        }
        match self.votes.result(self.quorum()) {
            VoteResult::Won => self.campaign(),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    /// TimeoutNow from the leader of our term (thesis §3.10): it chose us as
    /// its successor and our log matches its own, so campaign now, without
    /// pre-vote (the leader's own step-aside is the permission), marking
    /// the RequestVotes as a transfer so voters that still hear the leader
    /// grant them. Answered in the new term.
    fn handle_timeout_now(&mut self, msg: &Message) {
        self.campaign_for(true);
        self.respond(msg, MessageBody::TimeoutNowResponse { accepted: true });
    }

    fn handle_vote_response(&mut self, from: u64, granted: bool) {
        if self.role != Role::Candidate {
            return;
        }
        self.votes.record(from, granted);
        if granted && self.bugs.double_vote {
            self.votes.extra_granted += 1;
        }
        match self.votes.result(self.quorum()) {
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }
}
