//! Leadership transfer against the Raft thesis (§3.10), through the
//! production node runtime (`transferLeader`), with pre-vote and
//! check-quorum on as production runs them:
//!
//! "The prior leader sends its log entries to the target server … The
//! prior leader sends a TimeoutNow request to the target server. This
//! request has the same effect as the target server's election timer
//! firing … If the transfer does not complete within about one election
//! timeout, the prior leader aborts the transfer and resumes accepting
//! client requests."

mod raft_harness;

use raft_harness::*;
use surfstore::node::error::NodeError;
use surfstore::node::raft::{
    HardState, Message, MessageBody, NodeId, Raft, RaftConfig, Role, Snapshot,
};
use tokio::sync::oneshot::error::TryRecvError;

fn prod_config(id: NodeId, n: usize) -> RaftConfig {
    RaftConfig {
        pre_vote: true,
        check_quorum: true,
        ..config(id, n)
    }
}

fn cluster(n: usize) -> Cluster {
    Cluster::with(
        (0..n as NodeId).map(|id| prod_config(id, n)).collect(),
        vec![(HardState::default(), Vec::new()); n],
    )
}

/// The answer, which must have come.
fn answered<T: std::fmt::Debug>(a: &mut Answer<T>) -> Result<T, NodeError> {
    match a.try_recv() {
        Ok(r) => r,
        Err(e) => panic!("no answer yet ({e:?})"),
    }
}

fn pending<T>(a: &mut Answer<T>) -> bool {
    matches!(a.try_recv(), Err(TryRecvError::Empty))
}

/// A 3-node cluster led by 0, with `n` committed entries everywhere.
fn led_by_0(n: usize) -> Cluster {
    let mut c = cluster(3);
    c.elect(0);
    c.propose_n(0, "f", n);
    c.deliver_all();
    c
}

/// §3.10: the target is up to date, so TimeoutNow leaves at once; it
/// campaigns in the next term (no pre-vote round), the others grant it
/// although they heard the leader a moment ago, and the old leader steps
/// down and answers the call with the new leader's id once it hears it.
#[test]
fn transfer_to_an_up_to_date_follower_hands_over_in_one_election() {
    let mut c = led_by_0(3);
    let term = c.node(0).term();
    let mut answer = c.transfer(0, Some(1));
    let now: Vec<&Message> = c.queue.iter().filter(|m| m.from == 0).collect();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!((now[0].to, &now[0].body), (1, &MessageBody::TimeoutNow));
    assert_eq!(c.node(0).transferee(), Some(1));
    c.deliver_while(|m| matches!(m.body, MessageBody::TimeoutNow));
    assert_eq!(c.node(1).role(), Role::Candidate, "no pre-vote round first");
    assert_eq!(c.node(1).term(), term + 1);
    assert!(c
        .queue
        .iter()
        .any(|m| m.from == 1 && matches!(m.body, MessageBody::RequestVote { transfer: true, .. })));
    c.deliver_all();
    assert_eq!(c.leaders(), vec![1]);
    assert_eq!(c.node(1).term(), term + 1);
    assert_eq!(c.node(0).role(), Role::Follower);
    c.heartbeat(1);
    assert_eq!(answered(&mut answer), Ok(1));
    for n in 0..3 {
        assert_eq!(c.node(n).commit_index(), c.node(1).last_index());
        assert_eq!(c.map(n).len(), 3, "node {n} holds every file");
    }
}

/// §3.10: "The prior leader sends its log entries to the target server":
/// a target behind is caught up before TimeoutNow is sent, so it can win.
#[test]
fn a_lagging_target_is_caught_up_before_it_is_told_to_campaign() {
    let mut c = led_by_0(1);
    c.down.insert(2);
    c.propose_n(0, "late", 4);
    c.deliver_all();
    // What the shell reports for calls that got no answer.
    c.unreachable(0, 2);
    c.down.remove(&2);
    assert!(c.node(2).last_index() < c.node(0).last_index());
    let mut answer = c.transfer(0, Some(2));
    let first: Vec<&Message> = c.queue.iter().filter(|m| m.from == 0).collect();
    assert!(
        !first.is_empty()
            && first.iter().all(|m| m.to == 2
                && matches!(&m.body, MessageBody::AppendEntries { entries, .. } if !entries.is_empty())),
        "entries first, not TimeoutNow: {first:?}"
    );
    c.deliver_all();
    c.heartbeat(2);
    assert_eq!(c.leaders(), vec![2]);
    assert_eq!(answered(&mut answer), Ok(2));
    assert_eq!(c.map(2).len(), 5, "the new leader has every file");
}

/// §3.10: while a transfer is in progress the leader takes no new
/// proposals. Ours are held, not refused, and once the successor leads
/// they are answered NotLeader naming it, having never been appended.
#[test]
fn proposals_during_a_transfer_are_held_then_sent_to_the_new_leader() {
    let mut c = led_by_0(1);
    let last = c.node(0).last_index();
    let mut answer = c.transfer(0, Some(1));
    let mut held = c.propose_call(0, "during");
    assert!(pending(&mut held), "held, not refused");
    assert_eq!(c.node(0).last_index(), last, "not appended");
    c.deliver_all();
    c.heartbeat(1);
    assert_eq!(answered(&mut answer), Ok(1));
    assert_eq!(
        answered(&mut held),
        Err(NodeError::NotLeader(Some(member(1))))
    );
    assert!(c.map(1).version("during") == 0, "never applied");
}

/// A proposal the old leader took before the transfer is in the target's
/// log (it was caught up through it), so the new leader commits it and the
/// old leader answers the call when it applies the entry, with its real
/// outcome, rather than failing it as of unknown outcome.
#[test]
fn proposals_pending_at_the_handover_are_answered_by_their_apply() {
    let mut c = led_by_0(1);
    let mut before = c.propose_call(0, "before");
    let mut answer = c.transfer(0, Some(1));
    c.deliver_all();
    c.heartbeat(1);
    assert_eq!(answered(&mut answer), Ok(1));
    assert_eq!(answered(&mut before), Ok(true));
    assert_eq!(c.map(0).version("before"), 1);
    assert_eq!(c.map(1).version("before"), 1);
}

/// §3.10: "If the transfer does not complete within about one election
/// timeout, the prior leader aborts the transfer and resumes accepting
/// client requests." The target is unreachable; the call fails, the held
/// proposal is then appended and commits with the remaining majority.
#[test]
fn a_transfer_that_does_not_complete_in_an_election_timeout_is_given_up() {
    let mut c = led_by_0(1);
    c.down.insert(2);
    let term = c.node(0).term();
    let mut answer = c.transfer(0, Some(2));
    let mut held = c.propose_call(0, "held");
    let timeout = c.node(0).config().election_ticks_max as usize;
    for _ in 0..timeout {
        c.tick(0);
        c.tick(1);
        c.deliver_all();
    }
    assert_eq!(c.leaders(), vec![0]);
    assert_eq!(c.node(0).term(), term, "no election happened");
    assert_eq!(c.node(0).transferee(), None);
    match answered(&mut answer) {
        Err(NodeError::Unavailable(why)) => {
            assert!(why.contains("did not take over"), "{why}")
        }
        other => panic!("expected the transfer to fail, got {other:?}"),
    }
    c.deliver_all();
    assert_eq!(answered(&mut held), Ok(true));
    assert_eq!(c.map(1).version("held"), 1);
}

/// Without a target the most up-to-date follower that answered recently
/// is chosen; a transfer to ourselves is answered at once.
#[test]
fn without_a_target_the_most_up_to_date_follower_is_chosen() {
    let mut c = led_by_0(1);
    c.down.insert(1);
    c.propose_n(0, "g", 2);
    c.deliver_all();
    c.down.remove(&1);
    let mut to_self = c.transfer(0, Some(0));
    assert_eq!(answered(&mut to_self), Ok(0));
    assert_eq!(c.node(0).best_successor(), Some(2));
    let mut answer = c.transfer(0, None);
    c.deliver_all();
    c.heartbeat(2);
    assert_eq!(answered(&mut answer), Ok(2));
}

/// Only the leader can transfer: a follower answers NotLeader naming it.
#[test]
fn a_follower_refuses_transfer_naming_the_leader() {
    let mut c = led_by_0(1);
    let mut answer = c.transfer(1, Some(2));
    assert_eq!(
        answered(&mut answer),
        Err(NodeError::NotLeader(Some(member(0))))
    );
}

/// Leader 0's heartbeat to node 1.
fn heartbeat(term: u64) -> Message {
    empty_append(0, 1, term, 1)
}

fn core(id: NodeId, term: u64) -> Raft {
    Raft::new(
        prod_config(id, 3),
        hs(term, 0),
        Snapshot::default(),
        Vec::new(),
    )
    .unwrap()
}

/// §4.2.3 and §3.10 together: a follower that just heard its leader
/// refuses a plain RequestVote of a higher term, but grants one marked as
/// a transfer (the leader chose that candidate).
#[test]
fn a_transfer_vote_passes_the_lease_rule_a_plain_vote_does_not() {
    let vote = |transfer| Message {
        from: 2,
        to: 1,
        term: 4,
        ctx: 2,
        body: MessageBody::RequestVote {
            last_index: 0,
            last_term: 0,
            transfer,
        },
    };
    let mut n = core(1, 3);
    only_response(&mut n, heartbeat(3));
    let plain = only_response(&mut n, vote(false));
    assert_eq!(
        plain.body,
        MessageBody::RequestVoteResponse { granted: false }
    );
    assert_eq!(n.term(), 3, "the plain vote moved no term");
    let transfer = only_response(&mut n, vote(true));
    assert_eq!(
        transfer.body,
        MessageBody::RequestVoteResponse { granted: true }
    );
    assert_eq!(n.term(), 4);
}

/// A TimeoutNow from an old term is refused in ours and starts nothing; one
/// in our term from a node other than the leader we follow is refused as a
/// second leader.
#[test]
fn a_stale_or_foreign_timeout_now_starts_no_election() {
    let now = |from, term| Message {
        from,
        to: 1,
        term,
        ctx: 3,
        body: MessageBody::TimeoutNow,
    };
    let mut n = core(1, 5);
    let stale = only_response(&mut n, now(0, 4));
    assert_eq!(
        stale.body,
        MessageBody::TimeoutNowResponse { accepted: false }
    );
    assert_eq!((n.term(), n.role()), (5, Role::Follower));
    only_response(&mut n, heartbeat(5));
    assert!(
        n.step(now(2, 5)).is_err(),
        "node 2 is not the leader of term 5"
    );
    let rd = n.ready();
    assert_eq!(rd.messages.len(), 1);
    assert_eq!(
        rd.messages[0].body,
        MessageBody::TimeoutNowResponse { accepted: false }
    );
    n.advance(rd);
    assert_eq!((n.term(), n.role()), (5, Role::Follower));
    let ok = only_response(&mut n, now(0, 5));
    assert_eq!(ok.body, MessageBody::TimeoutNowResponse { accepted: true });
    assert_eq!((n.term(), n.role()), (6, Role::Candidate));
}

/// A NotLeader hint names only a leader heard from within an election
/// timeout: a follower cut off from it for longer says "leader unknown".
#[test]
fn not_leader_hints_name_only_a_recently_heard_leader() {
    let mut c = led_by_0(1);
    assert_eq!(
        c.try_propose(1, "x"),
        Err(NodeError::NotLeader(Some(member(0))))
    );
    let mut n = core(1, 2);
    only_response(&mut n, heartbeat(2));
    assert_eq!(n.known_leader(), Some(0));
    // Ticks below the randomized timeout but past the maximum cannot both
    // hold for a pre-vote core (it campaigns at its timeout and forgets the
    // leader); a core that has not timed out yet still names it.
    for _ in 0..n.config().election_ticks_min - 1 {
        n.tick();
    }
    assert_eq!(n.known_leader(), Some(0));
    for _ in 0..n.config().election_ticks_max {
        n.tick();
    }
    assert_eq!(n.known_leader(), None);
}
