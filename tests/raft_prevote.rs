//! Disruption prevention against the Raft thesis: pre-vote (§9.6) and the
//! rule that a node hearing a leader ignores candidates (§4.2.3). The cores
//! run with `pre_vote` on, as production runs them; the paper tests
//! (`raft_paper.rs`) keep the plain algorithm of Figure 2.

mod raft_harness;

use raft_harness::*;
use surfstore::node::raft::{
    HardState, Message, MessageBody, NodeId, Raft, RaftConfig, Role, Snapshot,
};

fn pv_config(id: NodeId, n: usize) -> RaftConfig {
    RaftConfig {
        pre_vote: true,
        ..config(id, n)
    }
}

fn pv_cluster(n: usize) -> Cluster {
    Cluster::with(
        (0..n as NodeId).map(|id| pv_config(id, n)).collect(),
        vec![(HardState::default(), Vec::new()); n],
    )
}

/// Tick every node in `ids` once, `times` times.
fn tick_all(c: &mut Cluster, ids: &[NodeId], times: usize) {
    for _ in 0..times {
        for &id in ids {
            c.tick(id);
        }
    }
}

/// One raw core of a 3-node cluster, with pre-vote, in `term`.
fn core(id: NodeId, term: u64) -> Raft {
    Raft::new(
        pv_config(id, 3),
        hs(term, 0),
        Snapshot::default(),
        Vec::new(),
    )
    .unwrap()
}

fn pre_vote(from: NodeId, to: NodeId, term: u64, last_index: u64, last_term: u64) -> Message {
    Message {
        from,
        to,
        term,
        ctx: 7,
        body: MessageBody::PreVote {
            last_index,
            last_term,
        },
    }
}

/// §9.6: "a candidate would first ask other servers whether its log was up
/// to date enough to get their vote. Only if the candidate believed it could
/// get votes from a majority of the cluster would it increment its term."
/// With no leader, a pre-vote round comes first and the election that
/// follows raises the term exactly once.
#[test]
fn election_is_preceded_by_a_pre_vote_round() {
    let mut c = pv_cluster(3);
    c.campaign(0);
    assert_eq!(c.node(0).role(), Role::PreCandidate);
    assert_eq!(c.node(0).term(), 0, "a pre-candidate keeps its term");
    let pre: Vec<&Message> = c.queue.iter().filter(|m| m.from == 0).collect();
    assert_eq!(pre.len(), 2);
    assert!(pre
        .iter()
        .all(|m| m.term == 1 && matches!(m.body, MessageBody::PreVote { .. })));
    c.deliver_all();
    assert_eq!(c.node(0).role(), Role::Leader);
    assert_eq!(c.node(0).term(), 1);
    for v in 1..3 {
        assert_eq!(c.node(v).term(), 1);
        assert_eq!(c.hard(v).vote, Some(0));
    }
}

/// §9.6: a server cut off from the cluster "will not be able to increment
/// its term" — however long it is partitioned — and when it returns it does
/// not depose the leader a majority still follows.
#[test]
fn an_isolated_follower_never_raises_its_term_and_rejoins_quietly() {
    let mut c = pv_cluster(3);
    c.elect(0);
    c.propose(0, "a");
    c.deliver_all();
    let term = c.node(0).term();
    c.down.insert(2);
    // 20 election timeouts of isolation, with the leader heartbeating.
    c.rounds(400);
    assert_eq!(
        c.node(2).term(),
        term,
        "the isolated node's term did not move"
    );
    assert_eq!(c.node(2).role(), Role::PreCandidate);
    c.down.remove(&2);
    tick_all(&mut c, &[0, 1, 2], 30);
    c.deliver_all();
    assert_eq!(c.leaders(), vec![0], "the leader was not deposed");
    assert_eq!(c.node(0).term(), term);
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).leader(), Some(0));
    assert_eq!(c.log(2), c.log(0), "it caught up");
}

/// Without pre-vote the same isolation raises the term every timeout and
/// the return deposes the leader: what the rule above prevents.
#[test]
fn without_pre_vote_the_same_isolation_deposes_the_leader() {
    let mut c = Cluster::new(3);
    c.elect(0);
    let term = c.node(0).term();
    c.down.insert(2);
    c.rounds(400);
    assert!(c.node(2).term() > term + 10);
    c.down.remove(&2);
    tick_all(&mut c, &[0, 1, 2], 30);
    c.deliver_all();
    assert!(c.node(0).term() > term, "the leader's term was pushed up");
}

/// §4.2.3: "if a server receives a RequestVote request within the minimum
/// election timeout of hearing from a current leader, it does not update
/// its term or grant its vote." The refusal is in the follower's own term.
#[test]
fn a_follower_hearing_its_leader_ignores_a_higher_term_request_vote() {
    let mut c = pv_cluster(3);
    c.elect(0);
    c.heartbeat(0);
    let term = c.node(1).term();
    let last = c.node(1).last_index();
    let rv = Message {
        from: 2,
        to: 1,
        term: term + 5,
        ctx: 9,
        body: MessageBody::RequestVote {
            last_index: last,
            last_term: term,
            transfer: false,
        },
    };
    c.deliver(rv);
    assert_eq!(c.node(1).term(), term, "term unchanged");
    assert_eq!(c.hard(1).vote, Some(0), "vote unchanged");
    let refusal = c.take(|m| m.from == 1 && m.to == 2);
    assert_eq!(refusal.len(), 1);
    assert_eq!(refusal[0].term, term);
    assert_eq!(
        refusal[0].body,
        MessageBody::RequestVoteResponse { granted: false }
    );
    // Once the leader has been silent for the minimum election timeout, the
    // same request is heard (a higher term makes it a follower there).
    for _ in 0..c.node(1).config().election_ticks_min {
        c.tick(1);
    }
    c.queue.clear();
    let rv2 = Message {
        from: 2,
        to: 1,
        term: term + 5,
        ctx: 10,
        body: MessageBody::RequestVote {
            last_index: last,
            last_term: term,
            transfer: false,
        },
    };
    c.deliver(rv2);
    assert_eq!(c.node(1).term(), term + 5);
    assert_eq!(c.hard(1).vote, Some(2));
}

/// §4.2.3 applies to PreVote too, and the leader itself refuses both.
#[test]
fn a_leader_and_its_followers_refuse_pre_votes() {
    let mut c = pv_cluster(3);
    c.elect(0);
    c.heartbeat(0);
    let term = c.node(0).term();
    let last = c.node(0).last_index();
    for to in [0, 1] {
        c.deliver(pre_vote(2, to, term + 1, last, term));
        let r = c.take(|m| m.from == to && m.to == 2);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].body, MessageBody::PreVoteResponse { granted: false });
        assert_eq!(r[0].term, term);
        assert_eq!(c.node(to).term(), term);
    }
    assert_eq!(c.leaders(), vec![0]);
}

/// A granted pre-vote answers in the term asked about and changes nothing
/// on the voter: no term, no vote, no reset of its own election timer.
#[test]
fn granting_a_pre_vote_records_nothing() {
    let mut n = core(1, 3);
    let r = only_response(&mut n, pre_vote(2, 1, 4, 0, 0));
    assert_eq!(r.body, MessageBody::PreVoteResponse { granted: true });
    assert_eq!(r.term, 4, "a grant carries the term asked about");
    assert_eq!(r.ctx, 7);
    assert_eq!(n.term(), 3);
    assert_eq!(n.status().vote, None);
    let rd = n.ready();
    assert_eq!(rd.hard_state, None, "nothing to persist");
    n.advance(rd);
    // A real vote for another candidate in term 4 is still free to give.
    let rv = Message {
        from: 0,
        to: 1,
        term: 4,
        ctx: 8,
        body: MessageBody::RequestVote {
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    };
    let r = only_response(&mut n, rv);
    assert_eq!(r.body, MessageBody::RequestVoteResponse { granted: true });
}

/// The election restriction (§5.4.1) holds for pre-votes: a candidate whose
/// log is behind is refused, so it never starts an election it cannot win.
#[test]
fn a_pre_vote_from_a_stale_log_is_refused() {
    let mut n = Raft::new(
        pv_config(1, 3),
        hs(2, 0),
        Snapshot::default(),
        log_of(&[1, 2]),
    )
    .unwrap();
    let r = only_response(&mut n, pre_vote(2, 1, 3, 1, 1));
    assert_eq!(r.body, MessageBody::PreVoteResponse { granted: false });
    assert_eq!(r.term, 2);
    let r = only_response(&mut n, pre_vote(2, 1, 3, 2, 2));
    assert_eq!(r.body, MessageBody::PreVoteResponse { granted: true });
}

/// A pre-vote for a term below the receiver's is refused in the receiver's
/// term, and the pre-candidate learns that term (as a follower).
#[test]
fn a_stale_pre_candidate_learns_the_term_from_a_refusal() {
    let mut newer = core(1, 7);
    let refusal = only_response(&mut newer, pre_vote(2, 1, 4, 0, 0));
    assert_eq!(refusal.term, 7);
    assert_eq!(
        refusal.body,
        MessageBody::PreVoteResponse { granted: false }
    );
    let mut c = pv_cluster(3);
    c.campaign(2);
    assert_eq!(c.node(2).role(), Role::PreCandidate);
    c.queue.clear();
    c.deliver(Message { ctx: 0, ..refusal });
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).term(), 7);
}

/// A majority of refusals ends the pre-candidacy with the term unchanged; a
/// pre-candidate that hears a leader of its term follows it.
#[test]
fn a_refused_pre_candidate_returns_to_follower_in_its_term() {
    let mut c = pv_cluster(3);
    c.elect(0);
    c.heartbeat(0);
    let term = c.node(0).term();
    // Node 2 alone times out (its link from the leader is slow); the leader
    // and node 1 refuse.
    c.campaign(2);
    assert_eq!(c.node(2).role(), Role::PreCandidate);
    c.deliver_while(|m| m.to == 2 || m.from == 2);
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).term(), term);
    assert_eq!(c.node(2).leader(), None);
    // It times out again; this time the leader's heartbeat reaches it first.
    c.campaign(2);
    c.queue.clear();
    c.heartbeat(0);
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).leader(), Some(0));
    assert_eq!(c.leaders(), vec![0]);
    assert_eq!(c.node(0).term(), term);
}

/// When the leader really is gone, the others' leases run out, a pre-vote
/// succeeds, and one new term elects the next leader.
#[test]
fn a_lost_leader_is_replaced_in_the_next_term() {
    let mut c = pv_cluster(5);
    c.elect(0);
    c.heartbeat(0);
    let term = c.node(0).term();
    c.down.insert(0);
    let others = [1, 2, 3, 4];
    for _ in 0..100 {
        tick_all(&mut c, &others, 1);
        c.deliver_all();
        if others.iter().any(|&id| c.node(id).role() == Role::Leader) {
            break;
        }
    }
    let new: Vec<NodeId> = c.leaders().into_iter().filter(|&l| l != 0).collect();
    assert_eq!(new.len(), 1, "one new leader: {new:?}");
    assert_eq!(c.node(new[0]).term(), term + 1);
}
