//! Check-quorum (Raft thesis §6.2): a leader that hears from no majority for
//! an election timeout steps down, so a leader cut off in a minority stops
//! claiming leadership and its pending calls fail with fault 5. A node that
//! is `crash()`ed still answers (fault 1), and counts as heard from: with a
//! crashed majority the leader keeps leading and its calls keep blocking, as
//! the assignment requires.

mod raft_harness;

use raft_harness::*;
use surfstore::node::raft::{HardState, NodeId, RaftConfig, Role};
use surfstore::node::NodeError;

fn cq_cluster(n: usize) -> Cluster {
    Cluster::with(
        (0..n as NodeId)
            .map(|id| RaftConfig {
                pre_vote: true,
                check_quorum: true,
                ..config(id, n)
            })
            .collect(),
        vec![(HardState::default(), Vec::new()); n],
    )
}

#[test]
fn a_leader_cut_off_from_its_majority_steps_down_within_two_election_timeouts() {
    let mut c = cq_cluster(3);
    c.elect(0);
    c.heartbeat(0);
    let term = c.node(0).term();
    let timeout = c.node(0).config().election_ticks_max as usize;
    let pending = c.try_propose(0, "lost").expect("accepted by the leader");
    let _ = pending;
    c.down.insert(0);
    let mut stepped_down_after = None;
    for t in 1..=2 * timeout {
        c.tick(0);
        c.deliver_all();
        if c.node(0).role() != Role::Leader {
            stepped_down_after = Some(t);
            break;
        }
    }
    let t = stepped_down_after.expect("the cut-off leader stepped down");
    assert!(t <= 2 * timeout, "within two election timeouts ({t} ticks)");
    assert_eq!(c.node(0).term(), term, "stepping down moves no term");
    assert_eq!(c.node(0).leader(), None, "and it names no leader");
    assert!(
        matches!(c.try_propose(0, "after"), Err(NodeError::NotLeader(None))),
        "a write to it is refused with no leader named"
    );
}

#[test]
fn a_leader_that_hears_its_followers_never_steps_down() {
    let mut c = cq_cluster(3);
    c.elect(0);
    let timeout = c.node(0).config().election_ticks_max as usize;
    c.rounds(10 * timeout);
    assert_eq!(c.leaders(), vec![0]);
}

#[test]
fn one_follower_is_enough_for_a_leader_of_three() {
    let mut c = cq_cluster(3);
    c.elect(0);
    let term = c.node(0).term();
    let timeout = c.node(0).config().election_ticks_max as usize;
    c.down.insert(2);
    c.rounds(10 * timeout);
    assert_eq!(c.node(0).role(), Role::Leader);
    assert_eq!(c.node(0).term(), term);
}

/// The assignment's blocking: with a majority `crash()`ed (answering fault 1
/// at once), the leader stays leader for any length of time, the write
/// waits, and it commits once a node is restored.
#[test]
fn a_crashed_majority_keeps_the_leader_leading_and_the_write_blocked() {
    let mut c = cq_cluster(3);
    c.elect(0);
    c.heartbeat(0);
    let term = c.node(0).term();
    let timeout = c.node(0).config().election_ticks_max as usize;
    c.crash(1);
    c.crash(2);
    let (index, _) = c.propose(0, "waits");
    c.rounds(10 * timeout);
    assert_eq!(c.node(0).role(), Role::Leader, "still leading");
    assert_eq!(c.node(0).term(), term);
    assert!(
        c.node(0).commit_index() < index,
        "and the write still waits"
    );
    c.restore(1);
    c.rounds(timeout);
    assert_eq!(c.node(0).role(), Role::Leader);
    assert!(c.node(0).commit_index() >= index, "committed once restored");
}

/// The same majority silent instead (a partition, a dead host): the leader
/// steps down, and the side with the majority elects a new one.
#[test]
fn a_silent_majority_makes_the_leader_step_down_and_the_majority_side_elects() {
    let mut c = cq_cluster(5);
    c.elect(0);
    c.heartbeat(0);
    let term = c.node(0).term();
    let timeout = c.node(0).config().election_ticks_max as usize;
    // 0 and 1 on one side, 2, 3 and 4 on the other.
    for _ in 0..4 * timeout {
        for id in 0..5 {
            c.tick(id);
        }
        c.deliver_while(|m| (m.from < 2) == (m.to < 2));
        c.take(|m| (m.from < 2) != (m.to < 2));
    }
    assert_ne!(
        c.node(0).role(),
        Role::Leader,
        "the minority leader stepped down"
    );
    let majority_leaders: Vec<NodeId> = c.leaders().into_iter().filter(|&l| l >= 2).collect();
    assert_eq!(majority_leaders.len(), 1, "one leader on the majority side");
    assert!(c.node(majority_leaders[0]).term() > term);
    assert!(c.leaders().iter().all(|&l| l >= 2), "and only there");
}
