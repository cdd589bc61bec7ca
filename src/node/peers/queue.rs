//! The queue of one peer's outgoing Raft requests (AppendEntries and
//! RequestVote) that have not left yet, and its replacement policy. Plain
//! data, no tokio: the sender task and the driver share it behind a mutex.
//!
//! Promises (each one is a message Raft can lose without harm, so dropping it
//! is safe; the newest message of its kind carries everything the dropped one
//! would):
//! - A message from an older term than one queued is dropped, and a message
//!   of a newer term drops every queued message of older terms (a RequestVote
//!   from an older term never leaves).
//! - At most one heartbeat (an AppendEntries without entries) and one
//!   RequestVote are queued: a newer one replaces the older. A heartbeat that
//!   reaches the front with a newer AppendEntries behind it is dropped (the
//!   newer one carries a commit index and ReadIndex round at least as new).
//! - An AppendEntries with entries starting at or before a queued one's
//!   (`prev_index <=`) replaces that one and every entries-bearing message
//!   queued after it: it is a probe, or a restart after a rejection, and the
//!   leader has forgotten what those carried. Batches the leader pipelines are
//!   contiguous (each starts where the previous ends), so they are kept, and
//!   [`Queue::pop`] joins contiguous ones into one call.
//! - The bound: entries-bearing messages are refused once the queue holds
//!   `max_msgs` messages or would pass `max_bytes`. A refused message is
//!   dropped and [`Queue::take_overflow`] then says so once, so the sender
//!   reports the peer unreachable and the leader falls back to one probe at a
//!   time (what etcd does when a peer's buffer is full). A heartbeat or a
//!   RequestVote is always taken (one each, about a hundred bytes), so the
//!   queue never holds more than `max_bytes` plus those two.

use std::collections::VecDeque;

use crate::node::raft::{LogIndex, Message, MessageBody, Term};

/// Bytes counted for a message besides its entries' data.
pub const MESSAGE_OVERHEAD: usize = 128;
/// Bytes counted per entry besides its data (index, term, length prefix).
pub const ENTRY_OVERHEAD: usize = 24;

/// The queue's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most messages queued.
    pub max_msgs: usize,
    /// Most bytes queued (as counted by [`message_bytes`]).
    pub max_bytes: usize,
}

/// What the leader's memory holds for a queued message: its entries' data
/// plus a fixed overhead per entry and per message.
pub fn message_bytes(msg: &Message) -> usize {
    match &msg.body {
        MessageBody::AppendEntries { entries, .. } => {
            MESSAGE_OVERHEAD
                + entries
                    .iter()
                    .map(|e| e.data.len() + ENTRY_OVERHEAD)
                    .sum::<usize>()
        }
        _ => MESSAGE_OVERHEAD,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Heartbeat,
    /// An AppendEntries with entries after `prev`.
    Entries {
        prev: LogIndex,
    },
    Vote,
    Other,
}

fn kind(msg: &Message) -> Kind {
    match &msg.body {
        MessageBody::AppendEntries { entries, .. } if entries.is_empty() => Kind::Heartbeat,
        MessageBody::AppendEntries { prev_index, .. } => Kind::Entries { prev: *prev_index },
        // A pre-vote carries the term it asks about, one past the sender's;
        // the sender's next request is a vote or pre-vote of a term at least
        // that, so the term rule below never drops what follows it.
        MessageBody::RequestVote { .. } | MessageBody::PreVote { .. } => Kind::Vote,
        _ => Kind::Other,
    }
}

/// What [`Queue::push`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; `replaced` older messages were dropped for it.
    Queued { replaced: usize },
    /// Dropped: its term is older than a queued message's.
    Stale,
    /// Dropped: the queue is at its bound.
    Overflow,
}

#[derive(Debug)]
struct Queued {
    msg: Message,
    bytes: usize,
}

/// One peer's queued requests, oldest first.
#[derive(Debug)]
pub struct Queue {
    limits: Limits,
    items: VecDeque<Queued>,
    /// Sum of `items[..].bytes`.
    bytes: usize,
    /// A message was refused at the bound since the last `take_overflow`.
    overflow: bool,
}

impl Queue {
    pub fn new(limits: Limits) -> Queue {
        Queue {
            limits,
            items: VecDeque::new(),
            bytes: 0,
            overflow: false,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes queued, as counted by [`message_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a message was refused at the bound since the last call.
    pub fn take_overflow(&mut self) -> bool {
        std::mem::take(&mut self.overflow)
    }

    /// Drops everything (the node crashed: the core forgot what it sent).
    /// Returns how many messages were dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        self.bytes = 0;
        n
    }

    fn newest_term(&self) -> Option<Term> {
        self.items.iter().map(|q| q.msg.term).max()
    }

    /// Removes the queued messages `drop` selects; returns how many.
    fn remove_where(&mut self, mut drop: impl FnMut(&Queued) -> bool) -> usize {
        let before = self.items.len();
        let mut freed = 0;
        self.items.retain(|q| {
            let d = drop(q);
            if d {
                freed += q.bytes;
            }
            !d
        });
        self.bytes -= freed;
        before - self.items.len()
    }

    /// Queues `msg` under the policy of the module comment.
    pub fn push(&mut self, msg: Message) -> Pushed {
        if self.newest_term().is_some_and(|t| msg.term < t) {
            return Pushed::Stale;
        }
        let term = msg.term;
        let mut replaced = self.remove_where(|q| q.msg.term < term);
        let k = kind(&msg);
        replaced += match k {
            Kind::Heartbeat => self.remove_where(|q| kind(&q.msg) == Kind::Heartbeat),
            Kind::Vote => self.remove_where(|q| kind(&q.msg) == Kind::Vote),
            Kind::Entries { prev } => {
                // The first queued batch this one restarts at or before, and
                // every batch after it.
                let first = self
                    .items
                    .iter()
                    .position(|q| matches!(kind(&q.msg), Kind::Entries { prev: p } if p >= prev));
                match first {
                    Some(first) => {
                        let mut i = 0;
                        self.remove_where(|q| {
                            let after = i >= first;
                            i += 1;
                            after && matches!(kind(&q.msg), Kind::Entries { .. })
                        })
                    }
                    None => 0,
                }
            }
            Kind::Other => 0,
        };
        let bytes = message_bytes(&msg);
        if matches!(k, Kind::Entries { .. })
            && (self.items.len() >= self.limits.max_msgs
                || self.bytes + bytes > self.limits.max_bytes)
        {
            self.overflow = true;
            return Pushed::Overflow;
        }
        self.bytes += bytes;
        self.items.push_back(Queued { msg, bytes });
        Pushed::Queued { replaced }
    }

    /// The next message to send, with contiguous entries-bearing messages
    /// behind it joined into it while the call stays under `max_call_bytes`
    /// (as counted by [`message_bytes`]). Returns the message and how many
    /// queued messages it was made of; heartbeats dropped on the way (a newer
    /// AppendEntries behind them) are counted in `skipped`.
    pub fn pop(&mut self, max_call_bytes: usize) -> Option<Popped> {
        let mut skipped = 0;
        loop {
            let front = self.items.pop_front()?;
            self.bytes -= front.bytes;
            let newer_append_behind = self
                .items
                .iter()
                .any(|q| matches!(q.msg.body, MessageBody::AppendEntries { .. }));
            if kind(&front.msg) == Kind::Heartbeat && newer_append_behind {
                skipped += 1;
                continue;
            }
            let mut msg = front.msg;
            let mut size = front.bytes;
            let mut joined = 1;
            while let Some(next) = self.items.front() {
                if size + next.bytes - MESSAGE_OVERHEAD > max_call_bytes
                    || !continues(&msg, &next.msg)
                {
                    break;
                }
                let next = self.items.pop_front().expect("front checked");
                self.bytes -= next.bytes;
                size += next.bytes - MESSAGE_OVERHEAD;
                join(&mut msg, next.msg);
                joined += 1;
            }
            return Some(Popped {
                msg,
                joined,
                skipped,
            });
        }
    }
}

/// A message taken off the queue.
#[derive(Debug)]
pub struct Popped {
    pub msg: Message,
    /// Queued messages joined into `msg` (1: none joined).
    pub joined: usize,
    /// Heartbeats dropped before it.
    pub skipped: usize,
}

/// Does `next` carry the entries right after `msg`'s, in the same term?
fn continues(msg: &Message, next: &Message) -> bool {
    let (
        MessageBody::AppendEntries { entries, .. },
        MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries: next_entries,
            ..
        },
    ) = (&msg.body, &next.body)
    else {
        return false;
    };
    match entries.last() {
        Some(last) => {
            !next_entries.is_empty()
                && next.term == msg.term
                && last.index == *prev_index
                && last.term == *prev_term
        }
        None => false,
    }
}

/// Appends `next`'s entries to `msg` (checked by `continues`); the joined
/// message carries the newer commit index and ReadIndex round.
fn join(msg: &mut Message, next: Message) {
    let (
        MessageBody::AppendEntries {
            entries,
            commit,
            read_seq,
            ..
        },
        MessageBody::AppendEntries {
            entries: more,
            commit: next_commit,
            read_seq: next_seq,
            ..
        },
    ) = (&mut msg.body, next.body)
    else {
        unreachable!("join invariant: both messages are AppendEntries (checked by continues)")
    };
    entries.extend(more);
    *commit = (*commit).max(next_commit);
    *read_seq = (*read_seq).max(next_seq);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::node::raft::Entry;

    const LIMITS: Limits = Limits {
        max_msgs: 8,
        max_bytes: 64 << 10,
    };

    fn append(term: Term, prev: LogIndex, n: u64, data_len: usize) -> Message {
        let entries = (prev + 1..=prev + n)
            .map(|index| Entry {
                term,
                index,
                data: Bytes::from(vec![b'x'; data_len]),
            })
            .collect();
        Message {
            from: 0,
            to: 1,
            term,
            ctx: 0,
            body: MessageBody::AppendEntries {
                prev_index: prev,
                prev_term: if prev == 0 { 0 } else { term },
                entries,
                commit: prev,
                read_seq: prev,
            },
        }
    }

    fn heartbeat(term: Term, commit: LogIndex) -> Message {
        let mut m = append(term, commit, 0, 0);
        if let MessageBody::AppendEntries { read_seq, .. } = &mut m.body {
            *read_seq = commit;
        }
        m
    }

    fn vote(term: Term) -> Message {
        Message {
            from: 0,
            to: 1,
            term,
            ctx: 0,
            body: MessageBody::RequestVote {
                last_index: 3,
                last_term: 1,
                transfer: false,
            },
        }
    }

    fn entries_of(m: &Message) -> (LogIndex, usize) {
        match &m.body {
            MessageBody::AppendEntries {
                prev_index,
                entries,
                ..
            } => (*prev_index, entries.len()),
            other => panic!("not an append: {other:?}"),
        }
    }

    #[test]
    fn a_newer_heartbeat_or_vote_replaces_the_queued_one() {
        let mut q = Queue::new(LIMITS);
        assert_eq!(q.push(heartbeat(1, 1)), Pushed::Queued { replaced: 0 });
        for c in 2..100 {
            assert_eq!(q.push(heartbeat(1, c)), Pushed::Queued { replaced: 1 });
        }
        assert_eq!((q.len(), q.bytes()), (1, MESSAGE_OVERHEAD));
        let p = q.pop(1 << 20).unwrap();
        assert_eq!(p.msg, heartbeat(1, 99), "the newest heartbeat leaves");

        let mut q = Queue::new(LIMITS);
        for _ in 0..416 {
            q.push(vote(5));
        }
        assert_eq!(q.len(), 1, "416 vote requests are one");
    }

    #[test]
    fn older_terms_are_dropped() {
        let mut q = Queue::new(LIMITS);
        q.push(append(2, 0, 3, 10));
        q.push(heartbeat(2, 3));
        assert_eq!(
            q.push(vote(3)),
            Pushed::Queued { replaced: 2 },
            "a candidate of term 3 drops what it sent as leader of term 2"
        );
        assert_eq!(q.push(vote(2)), Pushed::Stale);
        assert_eq!(q.push(heartbeat(1, 0)), Pushed::Stale);
        assert_eq!(q.push(vote(4)), Pushed::Queued { replaced: 1 });
        assert_eq!(q.pop(1 << 20).unwrap().msg, vote(4));
        assert!(q.pop(1 << 20).is_none());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn a_probe_replaces_older_probes_from_the_same_or_a_later_point() {
        let mut q = Queue::new(LIMITS);
        // A silent follower in probe state: every heartbeat the leader sends
        // a probe from the same point, with more entries each time.
        for n in 1..=500 {
            q.push(append(1, 10, n, 100));
        }
        assert_eq!(q.len(), 1);
        assert_eq!(entries_of(&q.pop(1 << 20).unwrap().msg), (10, 500));

        // A restart from an earlier point drops every batch after it.
        q.push(append(1, 10, 5, 10));
        q.push(append(1, 15, 5, 10));
        q.push(heartbeat(1, 12));
        assert_eq!(q.push(append(1, 7, 3, 10)), Pushed::Queued { replaced: 2 });
        assert_eq!(q.len(), 2, "the heartbeat stays, the batches go");
        let p = q.pop(1 << 20).unwrap();
        assert_eq!(
            p.skipped, 1,
            "the heartbeat is older than the probe behind it"
        );
        assert_eq!(entries_of(&p.msg), (7, 3));
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn contiguous_batches_are_kept_and_joined_up_to_the_call_size() {
        let mut q = Queue::new(LIMITS);
        for b in 0..4 {
            assert_eq!(
                q.push(append(1, b * 2, 2, 100)),
                Pushed::Queued { replaced: 0 }
            );
        }
        q.push(heartbeat(1, 8));
        let batch = message_bytes(&append(1, 0, 2, 100));
        let p = q
            .pop(MESSAGE_OVERHEAD + 3 * (batch - MESSAGE_OVERHEAD))
            .unwrap();
        assert_eq!(p.joined, 3);
        assert_eq!(entries_of(&p.msg), (0, 6));
        match &p.msg.body {
            MessageBody::AppendEntries {
                entries,
                commit,
                read_seq,
                ..
            } => {
                let idx: Vec<_> = entries.iter().map(|e| e.index).collect();
                assert_eq!(idx, vec![1, 2, 3, 4, 5, 6]);
                assert_eq!((*commit, *read_seq), (4, 4), "the newest batch's");
            }
            _ => unreachable!(),
        }
        let p = q.pop(1 << 20).unwrap();
        assert_eq!((entries_of(&p.msg), p.joined, p.skipped), ((6, 2), 1, 0));
        assert_eq!(q.pop(1 << 20).unwrap().msg, heartbeat(1, 8));
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn batches_with_a_gap_are_not_joined() {
        let mut q = Queue::new(LIMITS);
        q.push(append(1, 0, 2, 10));
        q.push(append(1, 3, 2, 10));
        assert_eq!(q.pop(1 << 20).unwrap().joined, 1);
    }

    #[test]
    fn the_bound_refuses_batches_and_says_so_once() {
        let mut q = Queue::new(Limits {
            max_msgs: 8,
            max_bytes: 10_000,
        });
        let batch = message_bytes(&append(1, 0, 10, 200)); // 2,368 bytes
        for b in 0..4 {
            assert_eq!(
                q.push(append(1, b * 10, 10, 200)),
                Pushed::Queued { replaced: 0 }
            );
        }
        assert_eq!(q.bytes(), 4 * batch);
        assert_eq!(q.push(append(1, 40, 10, 200)), Pushed::Overflow, "bytes");
        assert!(q.take_overflow());
        assert!(!q.take_overflow(), "said once");
        assert_eq!(q.bytes(), 4 * batch, "the refused batch is not kept");
        // Heartbeats and votes still go in past the bound.
        assert_eq!(q.push(heartbeat(1, 40)), Pushed::Queued { replaced: 0 });
        assert!(q.bytes() > 10_000 - batch);
        // And a probe from the start replaces every batch, so it fits again.
        assert_eq!(
            q.push(append(1, 0, 40, 200)),
            Pushed::Queued { replaced: 4 }
        );
        assert_eq!(q.len(), 2);

        let mut q = Queue::new(Limits {
            max_msgs: 2,
            max_bytes: 1 << 20,
        });
        q.push(append(1, 0, 1, 1));
        q.push(append(1, 1, 1, 1));
        assert_eq!(q.push(append(1, 2, 1, 1)), Pushed::Overflow, "count");
    }

    #[test]
    fn clear_empties_the_queue() {
        let mut q = Queue::new(LIMITS);
        q.push(append(1, 0, 3, 10));
        q.push(heartbeat(1, 0));
        assert_eq!(q.clear(), 2);
        assert_eq!((q.len(), q.bytes()), (0, 0));
    }
}
