//! The Raft core against the paper, one test per sentence or figure, in the
//! style of etcd's `raft_paper_test.go`: whole clusters run synchronously in
//! memory (each node the production node runtime, `raft_harness`), with
//! messages delivered, held back, dropped or replayed by hand. Tests of the
//! core's own contract (what one `Ready` carries, how `step` answers a
//! crafted message, what `Raft::new` accepts) drive a single `Raft` by hand.

mod raft_harness;

use raft_harness::*;
use surfstore::node::error::NodeError;
use surfstore::node::raft::{
    Entry, HardState, LogIndex, Message, MessageBody, NodeId, Raft, RaftConfig, RaftError, Role,
    Snapshot,
};

// ---------------------------------------------------------------------------
// 5.2 Leader election

/// "Election Safety: at most one leader can be elected in a given term."
/// Two candidates in the same term split the three other votes; each voter
/// grants one vote per term.
#[test]
fn election_safety_at_most_one_leader_per_term() {
    let mut c = Cluster::new(5);
    c.campaign(0);
    c.campaign(1);
    assert_eq!(c.node(0).term(), c.node(1).term());
    let term = c.node(0).term();
    c.deliver_all();
    let leaders: Vec<NodeId> = c
        .leaders()
        .into_iter()
        .filter(|&l| c.node(l).term() == term)
        .collect();
    assert!(
        leaders.len() <= 1,
        "two leaders in term {term}: {leaders:?}"
    );
    for v in 2..5 {
        let vote = c.hard(v).vote;
        assert!(
            vote == Some(0) || vote == Some(1),
            "voter {v} voted {vote:?}"
        );
    }
}

/// A voter grants at most one vote per term, first come first served, and
/// repeats the same answer to the same candidate.
#[test]
fn one_vote_per_term() {
    let mut n = Raft::new(
        config(2, 3),
        HardState::default(),
        Snapshot::default(),
        Vec::new(),
    )
    .unwrap();
    let rv = |from, ctx| Message {
        from,
        to: 2,
        term: 1,
        ctx,
        body: MessageBody::RequestVote {
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    };
    let granted = |n: &mut Raft, m| {
        n.step(m).unwrap();
        let rd = n.ready();
        let r = rd.messages.iter().find_map(|m| match m.body {
            MessageBody::RequestVoteResponse { granted } => Some(granted),
            _ => None,
        });
        n.advance(rd);
        r.unwrap()
    };
    assert!(granted(&mut n, rv(0, 1)));
    assert!(!granted(&mut n, rv(1, 2)));
    assert!(
        granted(&mut n, rv(0, 3)),
        "a retried request gets the same vote"
    );
}

/// "Raft uses randomized election timeouts to ensure that split votes are
/// rare and that they are resolved quickly."
#[test]
fn split_votes_resolve() {
    let mut c = Cluster::new(3);
    for id in 0..3 {
        c.campaign(id);
    }
    c.deliver_all();
    assert!(
        c.leaders().is_empty(),
        "everyone voted for itself: no leader"
    );
    let split_term = c.node(0).term();
    let mut ticks = 0;
    while c.leaders().is_empty() {
        ticks += 1;
        assert!(ticks < 200, "split vote never resolved");
        for id in 0..3 {
            c.tick(id);
        }
        c.deliver_all();
    }
    let l = c.leaders()[0];
    assert!(c.node(l).term() > split_term);
    assert_eq!(c.leaders().len(), 1);
}

/// 5.4.1 "the voter denies its vote if its own log is more up-to-date than
/// that of the candidate" (last term first, then length). The voter still
/// adopts the candidate's higher term.
#[test]
fn election_restriction_denies_votes_to_stale_logs() {
    let voter_log = log_of(&[1, 2, 2]);
    let vote = |last_index, last_term| {
        let mut n = Raft::new(
            config(1, 3),
            hs(2, 0),
            Snapshot::default(),
            voter_log.clone(),
        )
        .unwrap();
        n.step(Message {
            from: 0,
            to: 1,
            term: 5,
            ctx: 9,
            body: MessageBody::RequestVote {
                last_index,
                last_term,
                transfer: false,
            },
        })
        .unwrap();
        assert_eq!(n.term(), 5, "a higher term is adopted even when denying");
        let rd = n.ready();
        match rd.messages[..] {
            [Message {
                ctx: 9,
                body: MessageBody::RequestVoteResponse { granted },
                ..
            }] => granted,
            _ => panic!("expected one vote response, got {:?}", rd.messages),
        }
    };
    assert!(!vote(9, 1), "older last term loses even with a longer log");
    assert!(!vote(2, 2), "same last term, shorter log");
    assert!(vote(3, 2), "same last term, same length");
    assert!(vote(1, 3), "newer last term wins even with a shorter log");
}

// ---------------------------------------------------------------------------
// 5.3 Log replication

/// "If an existing entry conflicts with a new one (same index but different
/// terms), delete the existing entry and all that follow it"; entries that
/// agree are kept, so a stale shorter message truncates nothing.
#[test]
fn log_matching_conflicting_suffix_is_truncated() {
    let mut f = Raft::new(
        config(1, 3),
        hs(3, 1),
        Snapshot::default(),
        log_of(&[1, 1, 2, 2]),
    )
    .unwrap();
    let append = |ctx, prev_index, prev_term, entries: Vec<Entry>| Message {
        from: 0,
        to: 1,
        term: 3,
        ctx,
        body: MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            commit: 1,
            read_seq: 0,
        },
    };
    // The leader's log is [1, 1, 3, 3, 3].
    f.step(append(1, 2, 1, vec![entry(3, 3), entry(4, 3), entry(5, 3)]))
        .unwrap();
    let rd = f.ready();
    assert_eq!(
        rd.entries,
        vec![entry(3, 3), entry(4, 3), entry(5, 3)],
        "the conflicting suffix 3.. is replaced"
    );
    assert!(matches!(
        rd.messages[0].body,
        MessageBody::AppendEntriesResponse {
            success: true,
            match_index: 5,
            ..
        }
    ));
    f.advance(rd);
    // A delayed, shorter copy agrees with what is there: nothing is cut.
    f.step(append(2, 2, 1, vec![entry(3, 3)])).unwrap();
    let rd = f.ready();
    assert!(rd.entries.is_empty());
    assert!(matches!(
        rd.messages[0].body,
        MessageBody::AppendEntriesResponse {
            success: true,
            match_index: 3,
            ..
        }
    ));
    assert_eq!(f.last_index(), 5);
    // A prev that does not match is rejected with the fast back-off hint.
    f.step(append(3, 5, 2, Vec::new())).unwrap();
    let rd = f.ready();
    assert!(matches!(
        rd.messages[0].body,
        MessageBody::AppendEntriesResponse {
            success: false,
            conflict_index: 3,
            conflict_term: 3,
            ..
        }
    ));
}

/// "The leader keeps track of the highest index it knows to be committed, and
/// it includes that index in future AppendEntries RPCs": here at once, in the
/// Ready right after the commit, without waiting for a heartbeat.
#[test]
fn commit_is_passed_to_followers_promptly() {
    let mut c = Cluster::new(3);
    c.elect(0);
    let (index, _) = c.propose(0, "x");
    // Replicate and return the acks, without any tick.
    for m in c.take(is_append) {
        c.deliver(m);
    }
    for m in c.take(|m| m.to == 0) {
        c.deliver(m);
    }
    assert_eq!(c.node(0).commit_index(), index);
    let notices: Vec<Message> = c.take(is_append);
    for f in 1..3 {
        assert!(
            notices
                .iter()
                .any(|m| m.to == f && append_commit(m) == Some(index)),
            "no prompt commit notice to {f}: {notices:?}"
        );
    }
    for m in notices {
        c.deliver(m);
    }
    for f in 1..3 {
        assert_eq!(c.node(f).commit_index(), index);
        assert_eq!(name_of(c.applied[f as usize].last().unwrap()), "x");
    }
}

/// A follower commits only what the message verified: min(leader commit,
/// last index the message matched), never entries it might not share.
#[test]
fn follower_commit_is_capped_by_what_the_message_verified() {
    let mut f = Raft::new(
        config(1, 3),
        hs(2, 0),
        Snapshot::default(),
        log_of(&[1, 1, 1, 1]),
    )
    .unwrap();
    f.step(Message {
        from: 0,
        to: 1,
        term: 2,
        ctx: 1,
        body: MessageBody::AppendEntries {
            prev_index: 2,
            prev_term: 1,
            entries: Vec::new(),
            commit: 10,
            read_seq: 0,
        },
    })
    .unwrap();
    assert_eq!(f.commit_index(), 2);
}

/// Entries are batched up to the caps (always at least one) and pipelined up
/// to `max_inflight` batches per follower in replicate state.
#[test]
fn batching_and_pipelining_respect_the_caps() {
    let n = 3;
    // Three small entries fit the byte cap (the entry cap binds); the big one
    // alone is above it.
    let small = payload("p00").len();
    let cap = 3 * small + 4;
    let big = "big".repeat(20);
    assert!(payload(&big).len() > cap);
    let configs = (0..n as NodeId)
        .map(|id| RaftConfig {
            max_entries_per_message: 3,
            max_bytes_per_message: cap,
            max_inflight: 2,
            ..config(id, n)
        })
        .collect();
    let mut c = Cluster::with(configs, vec![(HardState::default(), Vec::new()); n]);
    c.elect(0);
    c.heartbeat(0);
    for k in 0..20 {
        c.propose(0, &format!("p{k:02}"));
    }
    c.propose(0, &big);
    let to1: Vec<Message> = c.queue.iter().filter(|m| m.to == 1).cloned().collect();
    assert_eq!(to1.len(), 2, "two batches in flight, then paused");
    for m in &to1 {
        let MessageBody::AppendEntries { entries, .. } = &m.body else {
            panic!()
        };
        let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
        assert!(!entries.is_empty() && entries.len() <= 3 && bytes <= cap);
    }
    c.deliver_all();
    let last = c.node(0).last_index();
    for f in 1..3 {
        assert_eq!(c.node(f).last_index(), last);
        assert_eq!(
            c.node(f).entry(last).unwrap().data,
            payload(&big),
            "an entry above the byte cap still goes, alone"
        );
    }
}

/// The leader probes a follower far behind with fast back-off: a rejection
/// carries the follower's conflicting term and its first index, so the leader
/// skips whole terms instead of one entry per round trip.
#[test]
fn follower_far_behind_catches_up_in_few_round_trips() {
    let mut leader_log = vec![1; 10];
    leader_log.extend(vec![3; 100]);
    let mut stale_log = vec![1; 10];
    stale_log.extend(vec![2; 100]);
    for (follower_log, max_rejects) in [(stale_log, 1), (vec![1; 10], 1)] {
        let stores = vec![
            (hs(3, 10), log_of(&leader_log)),
            (hs(3, 10), log_of(&follower_log)),
            (hs(3, 10), log_of(&leader_log)),
        ];
        let mut c = Cluster::with((0..3).map(|id| config(id, 3)).collect(), stores);
        c.campaign(0);
        let mut rejects = 0;
        let mut appends_to_1 = 0;
        for _ in 0..50 {
            let batch = std::mem::take(&mut c.queue);
            if batch.is_empty() {
                break;
            }
            for m in batch {
                rejects += usize::from(m.from == 1 && is_reject(&m));
                appends_to_1 += usize::from(m.to == 1 && is_append(&m));
                c.deliver(m);
            }
        }
        assert_eq!(c.node(0).role(), Role::Leader);
        assert_eq!(c.log(1), c.log(0), "the follower caught up");
        assert!(
            rejects <= max_rejects,
            "{rejects} rejections (naive back-off would need ~100)"
        );
        assert!(
            appends_to_1 <= 4,
            "{appends_to_1} AppendEntries to catch up"
        );
    }
}

/// A leader never learns about lost messages, yet it must not stall: once an
/// ack is overdue (no progress for election_ticks_min ticks), a heartbeat
/// resends from match_index + 1.
#[test]
fn silently_lost_appends_are_resent_on_heartbeat() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.heartbeat(0);
    let (index, _) = c.propose(0, "lost");
    let lost = c.take(|m| m.to == 2);
    assert_eq!(lost.len(), 1);
    c.deliver_all();
    assert_eq!(c.node(0).commit_index(), index, "committed with node 1");
    assert!(c.node(2).last_index() < index);
    let cfg = c.node(0).config().clone();
    let mut ticks = 0;
    while c.node(2).last_index() < index {
        c.tick(0);
        c.deliver_all();
        ticks += 1;
        assert!(
            ticks <= cfg.election_ticks_min + cfg.heartbeat_ticks,
            "not resent after {ticks} ticks"
        );
    }
    c.heartbeat(0);
    assert_eq!(c.node(2).commit_index(), index);
}

/// `report_unreachable` frees the pipeline and the next heartbeat probes again.
#[test]
fn report_unreachable_releases_inflight_and_probes() {
    let configs = (0..3).map(|id| RaftConfig {
        max_inflight: 1,
        ..config(id, 3)
    });
    let mut c = Cluster::with(
        configs.collect(),
        vec![(HardState::default(), Vec::new()); 3],
    );
    c.elect(0);
    c.heartbeat(0);
    c.propose(0, "a");
    let lost = c.take(|m| m.to == 2 && is_append(m));
    assert_eq!(lost.len(), 1);
    let (idx_b, _) = c.propose(0, "b");
    assert!(
        c.queue.iter().all(|m| m.to != 2),
        "the single in-flight slot to node 2 is taken"
    );
    c.unreachable(0, 2);
    c.deliver_all();
    c.heartbeat(0);
    assert_eq!(c.node(2).last_index(), idx_b);
    let st = c.node(0).status();
    assert_eq!(
        st.progress.iter().find(|p| p.id == 2).unwrap().match_index,
        idx_b
    );
}

/// Responses can arrive twice, late, or out of order; none of that may move
/// match_index backwards, double-count an ack, or corrupt a follower's log.
#[test]
fn duplicate_and_reordered_messages_are_harmless() {
    let configs = (0..3).map(|id| RaftConfig {
        max_entries_per_message: 1,
        ..config(id, 3)
    });
    let mut c = Cluster::with(
        configs.collect(),
        vec![(HardState::default(), Vec::new()); 3],
    );
    c.elect(0);
    c.heartbeat(0);
    c.propose_n(0, "v", 4);
    // Appends to node 1 arrive in reverse order, each twice.
    let mut appends = c.take(|m| m.to == 1 && is_append(m));
    appends.reverse();
    let dup = appends.clone();
    for m in appends.into_iter().chain(dup) {
        c.deliver(m);
    }
    // Responses from node 1 come back reversed and duplicated too.
    let mut resps = c.take(|m| m.from == 1);
    resps.reverse();
    let dup = resps.clone();
    let last = c.node(0).last_index();
    for m in resps.into_iter().chain(dup) {
        c.deliver(m);
        let p = c.node(0).status().progress[0];
        assert!(p.match_index <= last && p.next_index > p.match_index);
    }
    c.deliver_all();
    c.heartbeat(0);
    c.heartbeat(0);
    for f in 0..3 {
        assert_eq!(c.log(f as NodeId), c.log(0));
        assert_eq!(c.node(f as NodeId).commit_index(), last);
        let applied: Vec<LogIndex> = c.applied[f].iter().map(|e| e.index).collect();
        assert_eq!(
            applied,
            (1..=last).collect::<Vec<_>>(),
            "each applied once, in order"
        );
    }
    let p = c.node(0).status().progress;
    assert!(p.iter().all(|p| p.match_index == last));
}

// ---------------------------------------------------------------------------
// 5.4 Safety

/// Figure 8: "a leader cannot immediately conclude that an entry from a
/// previous term is committed once it is stored on a majority". S1 (here 0)
/// leads term 4 and gets its term-2 entry onto a majority; it must not commit
/// it, because S5 (here 4, holding a term-3 entry at that index) can still be
/// elected and overwrite it.
#[test]
fn figure_8_old_term_entries_are_not_committed_by_counting() {
    let n = 5;
    let stores = vec![
        (hs(3, 1), log_of(&[1, 2])),
        (hs(3, 1), log_of(&[1, 2])),
        (hs(3, 1), log_of(&[1])),
        (hs(3, 1), log_of(&[1])),
        (hs(3, 1), log_of(&[1, 3])),
    ];
    let configs = (0..n as NodeId)
        .map(|id| RaftConfig {
            max_entries_per_message: 1,
            ..config(id, n)
        })
        .collect();
    let mut c = Cluster::with(configs, stores);
    c.down.insert(4);
    c.campaign(0);
    c.deliver_while(|m| !is_append(m));
    assert_eq!(c.node(0).role(), Role::Leader);
    assert_eq!(c.node(0).term(), 4);
    // Node 1 never hears from the leader; nodes 2 and 3 get entry 2 (term 2)
    // but not the leader's no-op at 3. The probes (prev 2) are rejected...
    for m in c.take(is_append) {
        if m.to == 2 || m.to == 3 {
            c.deliver(m);
        }
    }
    c.deliver_while(|m| m.to == 0);
    // ...so the leader backs off and sends entry 2 alone (one entry per message).
    for m in c.take(is_append) {
        let MessageBody::AppendEntries { entries, .. } = &m.body else {
            unreachable!()
        };
        assert_eq!(entries, &log_of(&[1, 2])[1..]);
        c.deliver(m);
    }
    c.deliver_while(|m| m.to == 0);
    // The acks make the leader send its no-op; those messages are lost.
    assert!(!c.take(is_append).is_empty());
    assert_eq!(c.log(2), log_of(&[1, 2]));
    assert_eq!(c.log(3), log_of(&[1, 2]));
    assert_eq!(
        c.node(0).commit_index(),
        1,
        "entry 2 (term 2) is on 4 of 5 nodes but must not be committed by counting"
    );
    // S1 crashes; S5 wins term 5 with votes from 1, 2, 3 and overwrites index 2.
    c.queue.clear();
    c.crash(0);
    c.down.insert(0);
    c.down.remove(&4);
    c.campaign(4); // term 4: everyone already voted for node 0
    c.deliver_all();
    c.elect(4);
    assert_eq!(c.node(4).term(), 5);
    c.heartbeat(4);
    for f in 1..5 {
        assert_eq!(c.node(f).entry(2).unwrap().term, 3, "node {f}");
    }
    // S1 comes back and is brought in line; nobody ever applied the term-2 entry.
    c.restore(0);
    c.down.remove(&0);
    c.heartbeat(4);
    assert_eq!(c.log(0)[1].term, 3);
    assert!(c
        .applied
        .iter()
        .flatten()
        .all(|e| e.index != 2 || e.term == 3));
}

/// Figure 8 (e): once the leader's own-term entry is on a majority, both it
/// and the earlier entries are committed, and S5 can no longer win.
#[test]
fn figure_8_committing_a_current_term_entry_commits_the_prefix() {
    let n = 5;
    let stores = vec![
        (hs(3, 1), log_of(&[1, 2])),
        (hs(3, 1), log_of(&[1, 2])),
        (hs(3, 1), log_of(&[1])),
        (hs(3, 1), log_of(&[1])),
        (hs(3, 1), log_of(&[1, 3])),
    ];
    let mut c = Cluster::with((0..n as NodeId).map(|id| config(id, n)).collect(), stores);
    c.down.insert(4);
    c.elect(0);
    assert_eq!(
        c.node(0).commit_index(),
        3,
        "the no-op at 3 commits 2 with it"
    );
    c.crash(0);
    c.down.insert(0);
    c.down.remove(&4);
    c.campaign(4);
    c.deliver_all();
    assert_ne!(
        c.node(4).role(),
        Role::Leader,
        "the election restriction stops S5"
    );
}

/// "Leader Completeness": a stale leader that was partitioned away steps down
/// when it hears the new term, and its uncommitted entries are overwritten by
/// the new leader's.
#[test]
fn stale_leader_rejoining_steps_down_and_loses_uncommitted_entries() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.propose(0, "committed");
    c.deliver_all();
    let committed = c.node(0).commit_index();
    // Partition the leader away; it keeps accepting proposals it cannot commit.
    c.down.insert(0);
    let (stale_index, _) = c.propose(0, "doomed");
    c.propose(0, "doomed too");
    c.deliver_all();
    c.elect(1);
    let (_, new_term) = c.propose(1, "new");
    c.deliver_all();
    assert_eq!(
        c.node(1).entry(stale_index).unwrap().term,
        new_term,
        "index reused"
    );
    assert_eq!(
        c.node(0).role(),
        Role::Leader,
        "no check-quorum: it still thinks it leads"
    );
    assert_eq!(c.node(0).commit_index(), committed);
    // Heal: the old leader hears term 2 and steps down.
    c.down.remove(&0);
    c.heartbeat(1);
    c.heartbeat(1);
    assert_eq!(c.node(0).role(), Role::Follower);
    assert_eq!(c.node(0).term(), new_term);
    assert_eq!(c.node(0).leader(), Some(1));
    assert_eq!(c.log(0), c.log(1));
    assert_eq!(name_at(c.node(0), stale_index + 1), "new");
    assert!(c.applied[0]
        .iter()
        .all(|e| !name_of(e).starts_with("doomed")));
}

// ---------------------------------------------------------------------------
// Read-only queries (thesis 6.4, ReadIndex)

/// A read is served only after a heartbeat round started after the request
/// is acknowledged by a majority: acks from an earlier round do not count.
#[test]
fn read_index_requires_a_majority_round_after_the_request() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.heartbeat(0);
    // Start a heartbeat round and hold its responses.
    c.tick(0);
    c.tick(0);
    c.deliver_while(is_append);
    let old_acks = c.take(|m| m.to == 0);
    assert_eq!(old_acks.len(), 2);
    c.read(0, 7);
    let round: Vec<Message> = c.take(|m| m.from == 0 && is_append(m));
    assert_eq!(round.len(), 2, "the confirming round goes out at once");
    for m in old_acks {
        c.deliver(m);
    }
    assert!(
        c.reads[0].is_empty(),
        "acks of an older round prove nothing"
    );
    // Isolated from the followers: no majority, no read, however long.
    c.down.insert(1);
    c.down.insert(2);
    for m in round.clone() {
        c.deliver(m);
    }
    for _ in 0..20 {
        c.heartbeat(0);
    }
    assert!(c.reads[0].is_empty());
    // One follower answers: leader + 1 of 3 is a majority.
    c.down.remove(&1);
    c.deliver(round[0].clone());
    c.deliver_while(|m| m.to == 0);
    let commit = c.node(0).commit_index();
    assert_eq!(
        c.reads[0],
        vec![Read::served(7, commit)],
        "served from the map applied through the commit index"
    );
}

/// A new leader does not know the commit index until it commits an entry of
/// its own term: reads wait for that, then get the commit index at that time.
#[test]
fn read_index_requires_a_current_term_commit() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.propose(0, "a");
    c.deliver_all();
    c.campaign(1);
    c.deliver_while(|m| !is_append(m));
    assert_eq!(c.node(1).role(), Role::Leader);
    let noop = c.node(1).last_index();
    c.take(is_append); // the no-op does not get out yet
    c.read(1, 1);
    // Heartbeats are acknowledged, but they carry no entries: no own-term commit.
    c.deliver_while(|m| {
        append_commit(m).is_none_or(|_| match &m.body {
            MessageBody::AppendEntries { entries, .. } => entries.is_empty(),
            _ => true,
        })
    });
    assert!(
        c.reads[1].is_empty(),
        "no read before the leader commits in its term"
    );
    assert!(c.node(1).commit_index() < noop);
    c.heartbeat(1);
    assert_eq!(c.node(1).commit_index(), noop);
    assert_eq!(c.reads[1], vec![Read::served(1, noop)]);
}

/// A single-node cluster confirms reads immediately (once it has committed
/// in its term, which its first advance does).
#[test]
fn read_index_single_node_is_immediate() {
    let mut c = Cluster::new(1);
    c.campaign(0);
    assert_eq!(c.node(0).role(), Role::Leader);
    let (i, _) = c.propose(0, "solo");
    assert_eq!(c.node(0).commit_index(), i);
    c.read(0, 3);
    assert_eq!(c.reads[0], vec![Read::served(3, i)]);
}

#[test]
fn read_index_on_a_follower_is_not_leader() {
    let mut c = Cluster::new(3);
    c.elect(2);
    c.read(0, 1);
    assert_eq!(
        c.reads[0],
        vec![Read {
            ctx: 1,
            answer: Err(NodeError::NotLeader(Some(member(2))))
        }]
    );
}

// ---------------------------------------------------------------------------
// The API edges

/// Proposals go to the leader; followers say who that is.
#[test]
fn proposals_on_non_leaders_return_not_leader_naming_the_leader() {
    let mut c = Cluster::new(3);
    assert_eq!(c.try_propose(1, "x"), Err(NodeError::NotLeader(None)));
    c.elect(0);
    c.heartbeat(0);
    for f in 1..3 {
        assert_eq!(
            c.try_propose(f, "x"),
            Err(NodeError::NotLeader(Some(member(0))))
        );
    }
    assert!(c.try_propose(0, "x").is_ok());
}

/// crash(): at once a leaderless follower with the same term, vote, log and
/// commit, pending reads dropped (failed back to the caller), nothing more
/// sent however long it ticks, proposals refused. restore(): a follower that
/// campaigns after a fresh randomized timeout.
#[test]
fn crash_and_restore_semantics() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.propose(0, "kept");
    c.deliver_all();
    c.read(0, 5);
    let before = c.node(0).status();
    let queued = c.queue.len();
    c.crash(0);
    let after = c.node(0).status();
    assert_eq!(after.role, Role::Follower);
    assert_eq!(after.leader, None);
    assert_eq!(
        (after.term, after.vote, after.last_index, after.commit_index),
        (
            before.term,
            before.vote,
            before.last_index,
            before.commit_index
        )
    );
    assert_eq!(c.node(0).pending_reads(), 0);
    assert_eq!(
        c.reads[0],
        vec![Read {
            ctx: 5,
            answer: Err(NodeError::Unavailable("the node crashed".into()))
        }]
    );
    let status = c.runtime(0).status();
    assert!(status.crashed && !status.is_leader());
    for _ in 0..3 * config(0, 3).election_ticks_max {
        c.tick(0);
    }
    assert_eq!(c.queue.len(), queued, "a crashed node sends nothing");
    assert_eq!(c.node(0).role(), Role::Follower, "nor campaigns");
    assert_eq!(c.try_propose(0, "x"), Err(NodeError::Crashed(0)));
    c.queue.clear();
    c.down.insert(0);
    c.elect(1);
    c.down.remove(&0);
    c.restore(0);
    assert_eq!(c.node(0).role(), Role::Follower);
    c.heartbeat(1);
    assert_eq!(c.node(0).leader(), Some(1));
    assert_eq!(c.log(0), c.log(1));
    // Without a leader a restored node campaigns within election_ticks_max.
    let mut lone = Cluster::new(3);
    lone.crash(2);
    lone.restore(2);
    for _ in 0..20 {
        lone.tick(2);
    }
    assert_eq!(lone.node(2).role(), Role::Candidate);
}

/// Every AppendEntries and RequestVote gets exactly one response carrying its
/// ctx, including a stale-term one (rejected with our term).
#[test]
fn every_request_gets_exactly_one_response_with_its_ctx() {
    let mut n = Raft::new(config(1, 3), hs(5, 0), Snapshot::default(), Vec::new()).unwrap();
    let bodies = [
        (
            4,
            MessageBody::AppendEntries {
                prev_index: 0,
                prev_term: 0,
                entries: Vec::new(),
                commit: 0,
                read_seq: 3,
            },
        ),
        (
            4,
            MessageBody::RequestVote {
                last_index: 9,
                last_term: 4,
                transfer: false,
            },
        ),
        (
            5,
            MessageBody::AppendEntries {
                prev_index: 7,
                prev_term: 5,
                entries: Vec::new(),
                commit: 0,
                read_seq: 4,
            },
        ),
        (
            6,
            MessageBody::RequestVote {
                last_index: 0,
                last_term: 0,
                transfer: false,
            },
        ),
    ];
    for (k, (term, body)) in bodies.into_iter().enumerate() {
        let ctx = 100 + k as u64;
        n.step(Message {
            from: 0,
            to: 1,
            term,
            ctx,
            body,
        })
        .unwrap();
        let rd = n.ready();
        let answers: Vec<&Message> = rd.messages.iter().filter(|m| m.ctx == ctx).collect();
        assert_eq!(answers.len(), 1, "request {k}: {:?}", rd.messages);
        assert_eq!(answers[0].to, 0);
        assert_eq!(answers[0].term, n.term());
        n.advance(rd);
    }
    let stale = empty_append(0, 1, 1, 77);
    n.step(stale).unwrap();
    let rd = n.ready();
    assert!(matches!(
        rd.messages[..],
        [Message {
            ctx: 77,
            term: 6,
            body: MessageBody::AppendEntriesResponse { success: false, .. },
            ..
        }]
    ));
}

/// Votes and append acks are only ever handed out in a Ready together with
/// (or after) the hard state and entries they promise; and the leader does
/// not count its own entry as replicated until its write is durable.
#[test]
fn acks_and_votes_leave_only_with_the_state_they_promise() {
    let mut f = Raft::new(
        config(1, 3),
        HardState::default(),
        Snapshot::default(),
        Vec::new(),
    )
    .unwrap();
    f.step(Message {
        from: 0,
        to: 1,
        term: 1,
        ctx: 1,
        body: MessageBody::RequestVote {
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    })
    .unwrap();
    let rd = f.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(0),
            commit: 0
        })
    );
    assert!(matches!(
        rd.messages[..],
        [Message {
            body: MessageBody::RequestVoteResponse { granted: true },
            ..
        }]
    ));
    f.advance(rd);
    f.step(Message {
        from: 0,
        to: 1,
        term: 1,
        ctx: 2,
        body: MessageBody::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            entries: vec![entry(1, 1)],
            commit: 0,
            read_seq: 0,
        },
    })
    .unwrap();
    let rd = f.ready();
    assert_eq!(rd.entries, vec![entry(1, 1)]);
    assert!(matches!(
        rd.messages[..],
        [Message {
            body: MessageBody::AppendEntriesResponse {
                success: true,
                match_index: 1,
                ..
            },
            ..
        }]
    ));
    f.advance(rd);

    // Leader side, through the runtime: the append leaves before the
    // leader's own write, but one follower ack is not a majority while that
    // write is not durable.
    let mut c = Cluster::new(3);
    c.elect(0);
    c.heartbeat(0);
    c.hold_writes(0);
    let (x, _) = c.propose(0, "x");
    assert!(c.log(0).iter().all(|e| e.index < x), "not written yet");
    let to1 = c.take(|m| m.to == 1 && is_append(m));
    assert_eq!(to1.len(), 1, "the append left before the leader's write");
    c.take(|m| m.to == 2); // lost
    for m in to1 {
        c.deliver(m);
    }
    assert_eq!(c.deliver_while(|m| m.to == 0 && m.from == 1), 1);
    assert!(c.node(0).commit_index() < x, "own entry not durable yet");
    c.release_writes(0);
    assert_eq!(c.log(0).last().map(|e| e.index), Some(x));
    assert_eq!(c.node(0).commit_index(), x, "durable now: leader + node 1");
    // ...and the follower holding it hears at once, in the same turn. Node 2
    // lost the entry: a commit notice would tell it nothing (it commits only
    // what it holds); the heartbeat re-sends the entry once its ack is overdue.
    assert!(
        c.queue
            .iter()
            .any(|m| m.to == 1 && append_commit(m) == Some(x)),
        "no commit notice to 1: {:?}",
        c.queue
    );
    assert!(
        c.queue.iter().all(|m| m.to != 2),
        "nothing useful to tell node 2 yet: {:?}",
        c.queue
    );
}

/// Bad input never panics: unknown senders, misaddressed and malformed
/// messages are refused with an error and change nothing.
#[test]
fn bad_input_is_refused_without_state_change() {
    let mut n = Raft::new(config(1, 3), hs(2, 1), Snapshot::default(), log_of(&[1, 2])).unwrap();
    let before = n.status();
    let msg = |from, to, term, body| Message {
        from,
        to,
        term,
        ctx: 1,
        body,
    };
    let ae = |prev_index, prev_term, entries| MessageBody::AppendEntries {
        prev_index,
        prev_term,
        entries,
        commit: 0,
        read_seq: 0,
    };
    assert_eq!(
        n.step(msg(9, 1, 3, ae(0, 0, vec![]))),
        Err(RaftError::UnknownPeer(9))
    );
    assert_eq!(
        n.step(msg(1, 1, 3, ae(0, 0, vec![]))),
        Err(RaftError::UnknownPeer(1))
    );
    assert!(matches!(
        n.step(msg(0, 2, 3, ae(0, 0, vec![]))),
        Err(RaftError::Misaddressed { .. })
    ));
    let malformed = [
        ae(0, 0, vec![entry(2, 3)]),              // index gap
        ae(1, 1, vec![entry(2, 4)]),              // entry term beyond message term
        ae(1, 3, vec![entry(2, 2), entry(3, 1)]), // terms decrease
        ae(0, 0, vec![entry(1, 3)]),              // overwrites committed entry 1
    ];
    for body in malformed {
        let r = n.step(msg(0, 1, 3, body.clone()));
        assert!(
            matches!(r, Err(RaftError::InvalidMessage { .. })),
            "{body:?}: {r:?}"
        );
    }
    assert!(matches!(
        n.step(msg(
            0,
            1,
            3,
            MessageBody::RequestVote {
                last_index: 1,
                last_term: 7,
                transfer: false,
            }
        )),
        Err(RaftError::InvalidMessage { .. })
    ));
    assert_eq!(n.status(), before, "nothing changed");
    assert_eq!(n.log_tail(5), log_of(&[1, 2]));
    // Malformed requests are still answered (rejections), so callers hear back.
    let rd = n.ready();
    assert!(rd.messages.iter().all(|m| matches!(
        m.body,
        MessageBody::AppendEntriesResponse { success: false, .. }
            | MessageBody::RequestVoteResponse { granted: false }
    )));
    assert_eq!(rd.messages.len(), 5);
    // Bad storage and config are errors too.
    assert!(matches!(
        Raft::new(config(0, 3), hs(1, 5), Snapshot::default(), log_of(&[1])),
        Err(RaftError::InvalidStorage(_))
    ));
    assert!(matches!(
        Raft::new(
            config(7, 3),
            HardState::default(),
            Snapshot::default(),
            Vec::new()
        ),
        Err(RaftError::InvalidConfig(_))
    ));
}

/// A node restarted from its store is the same node: it re-applies the
/// committed prefix from index 1 and rejoins.
#[test]
fn restart_from_storage_replays_committed_entries() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.propose_n(0, "r", 5);
    c.deliver_all();
    c.heartbeat(0);
    let commit = c.node(2).commit_index();
    assert!(commit >= 6);
    let before = c.applied[2].clone();
    c.restart(2);
    assert_eq!(
        c.applied[2], before,
        "the committed prefix is handed out again"
    );
    assert_eq!(c.node(2).status().applied_index, commit);
    assert_eq!(c.map(2).applied_index(), commit);
    assert_eq!(c.map(2).len(), 5, "the map is rebuilt from the log");
    c.propose(0, "after");
    c.deliver_all();
    assert_eq!(c.log(2), c.log(0));
}

/// Same seed and same inputs give the same outputs.
#[test]
fn deterministic_given_the_seed() {
    let run = || {
        let mut c = Cluster::new(5);
        let mut trace = Vec::new();
        for round in 0..200 {
            for id in 0..5 {
                c.tick(id);
            }
            if round % 7 == 0 {
                if let Some(&l) = c.leaders().first() {
                    c.propose(l, &format!("d{round}"));
                }
            }
            trace.extend(c.queue.iter().map(|m| format!("{m:?}")));
            c.deliver_all();
        }
        let logs: Vec<Vec<Entry>> = (0..5).map(|id| c.log(id).to_vec()).collect();
        (trace, logs)
    };
    assert_eq!(run(), run());
}

/// A crash in the middle of persisting a `Ready` can keep its entries and
/// lose its hard state (entries are written first). The node resumes in the
/// entries' term with no vote, and persists that before sending anything.
#[test]
fn restart_with_entries_past_the_stored_term_resumes_in_their_term() {
    let stored = HardState {
        term: 2,
        vote: Some(2),
        commit: 1,
    };
    let mut n = Raft::new(
        config(1, 3),
        stored,
        Snapshot::default(),
        log_of(&[1, 2, 4]),
    )
    .unwrap();
    assert_eq!(n.term(), 4);
    assert_eq!(n.status().vote, None, "no vote in a term it never voted in");
    let rd = n.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 4,
            vote: None,
            commit: 1
        }),
        "the lifted term is persisted by the first Ready"
    );
}
