//! Log compaction (Raft paper, section 7): a node snapshots its state
//! machine and drops the covered log; a leader sends its snapshot to a
//! follower that needs compacted entries; a follower installs it over a log
//! that is short or conflicts, or only moves its commit index when its log
//! already holds the snapshot's last entry; a restart starts from a snapshot.
//! Clusters run the node runtime (`raft_harness`), which snapshots its map
//! when told (`Cluster::compact`); the core's own contract for a crafted
//! `InstallSnapshot`, a restart and `compact` is tested on a single `Raft`.

mod raft_harness;

use bytes::Bytes;
use raft_harness::*;
use surfstore::node::raft::{
    HardState, Message, MessageBody, NodeId, Raft, RaftError, Role, Snapshot,
};
use surfstore::node::storage::Stored;

fn is_install(m: &Message) -> bool {
    matches!(m.body, MessageBody::InstallSnapshot { .. })
}

fn snap(index: u64, term: u64) -> Snapshot {
    Snapshot {
        index,
        term,
        data: Bytes::from(format!("state through {index}")),
    }
}

fn install(from: NodeId, to: NodeId, term: u64, s: Snapshot) -> Message {
    Message {
        from,
        to,
        term,
        ctx: 77,
        body: MessageBody::InstallSnapshot { snapshot: s },
    }
}

/// The single response `n` produced for ctx 77, as (success, match_index).
fn ack_of(rd_msgs: &[Message]) -> (bool, u64) {
    let acks: Vec<(bool, u64)> = rd_msgs
        .iter()
        .filter(|m| m.ctx == 77)
        .map(|m| match m.body {
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                ..
            } => (success, match_index),
            ref other => panic!("unexpected answer {other:?}"),
        })
        .collect();
    assert_eq!(acks.len(), 1, "exactly one answer: {rd_msgs:?}");
    acks[0]
}

/// A leader that compacted keeps replicating to followers that are caught
/// up: they never need the snapshot.
#[test]
fn compacting_the_leader_does_not_disturb_caught_up_followers() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.propose_n(0, "a", 10);
    c.deliver_all();
    let applied = c.node(0).applied_index();
    c.compact(0);
    assert_eq!(c.node(0).snapshot_index(), applied);
    assert_eq!(c.node(0).status().snapshot_index, applied);
    assert!(c.node(0).entry(applied).is_none(), "compacted");
    let (index, _) = c.propose(0, "after");
    assert!(c.take(is_install).is_empty(), "nobody needs the snapshot");
    c.deliver_all();
    for f in 1..3 {
        assert_eq!(c.node(f).commit_index(), index);
        assert_eq!(name_at(c.node(f), index), "after");
    }
}

/// "The leader must occasionally send snapshots to followers that lag
/// behind": a follower that was away while the leader compacted gets the
/// snapshot, installs it, and then follows the log as usual.
#[test]
fn a_follower_behind_the_compacted_log_catches_up_through_the_snapshot() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.down.insert(2);
    c.propose_n(0, "b", 20);
    c.deliver_all();
    let s = c.node(0).applied_index();
    c.compact(0);
    c.down.remove(&2);
    // The next heartbeat finds node 2 needs entries the leader no longer has.
    c.heartbeat(0);
    let installed = c.snap(2).clone();
    assert_eq!(installed.index, s, "node 2 stored the leader's snapshot");
    assert_eq!(&installed, c.snap(0));
    assert_eq!(c.node(2).snapshot_index(), s);
    assert!(c.node(2).commit_index() >= s);
    assert_eq!(c.applied[2].len() as u64, c.node(2).applied_index());
    assert_eq!(c.map(2).version("b19"), 1, "the map is the snapshot's");
    let (index, _) = c.propose(0, "then the log");
    c.deliver_all();
    assert_eq!(c.node(2).commit_index(), index);
    assert_eq!(name_at(c.node(2), index), "then the log");
    assert_eq!(
        name_of(c.applied[2].last().unwrap()),
        "then the log",
        "entries after the snapshot are applied on top of it"
    );
    assert_eq!(c.map(2).version("then the log"), 1);
}

/// A snapshot past a follower's commit whose last entry the follower lacks
/// (or holds with another term) replaces the whole log, and the ack leaves in
/// the same `Ready` as the snapshot to persist.
#[test]
fn install_over_a_conflicting_log_replaces_it() {
    let mut f = Raft::new(
        config(1, 3),
        hs(3, 1),
        Snapshot::default(),
        log_of(&[1, 1, 2, 2]),
    )
    .unwrap();
    f.step(install(0, 1, 3, snap(3, 3))).unwrap();
    let rd = f.ready();
    assert_eq!(rd.snapshot, Some(snap(3, 3)));
    assert_eq!(ack_of(&rd.messages), (true, 3));
    assert!(rd.committed_entries.is_empty(), "the snapshot is the state");
    f.advance(rd);
    let st = f.status();
    assert_eq!(
        (
            st.snapshot_index,
            st.last_index,
            st.last_term,
            st.commit_index
        ),
        (3, 3, 3, 3)
    );
    assert_eq!(f.applied_index(), 3);
    assert_eq!(f.leader(), Some(0));
}

/// A follower whose log holds the snapshot's last entry keeps its log and
/// only commits through it; one already past it acks with its commit.
#[test]
fn install_matching_or_behind_the_log_only_commits() {
    let mut f = Raft::new(
        config(1, 3),
        hs(1, 1),
        Snapshot::default(),
        log_of(&[1, 1, 1, 1]),
    )
    .unwrap();
    f.step(install(0, 1, 1, snap(3, 1))).unwrap();
    let rd = f.ready();
    assert!(rd.snapshot.is_none());
    assert_eq!(ack_of(&rd.messages), (true, 3));
    assert_eq!(rd.committed_entries.len(), 3, "1..=3 now committed");
    f.advance(rd);
    assert_eq!((f.last_index(), f.commit_index()), (4, 3));

    f.step(install(0, 1, 1, snap(2, 1))).unwrap();
    let rd = f.ready();
    assert!(rd.snapshot.is_none());
    assert_eq!(
        ack_of(&rd.messages),
        (true, 3),
        "acked with the commit index"
    );
}

/// An AppendEntries that starts inside the follower's snapshot is matched
/// from the snapshot on (everything before it is committed there).
#[test]
fn append_entries_reaching_into_the_snapshot_is_cut_at_it() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.propose_n(0, "c", 6);
    c.deliver_all();
    c.compact(1);
    let s = c.node(1).snapshot_index();
    // Three more that node 1 does not get yet.
    c.propose_n(0, "late", 3);
    c.take(|m| m.to == 1);
    let term = c.node(0).term();
    let last = c.node(0).last_index();
    assert_eq!(last, s + 3);
    let leader_log: Vec<_> = (2..=last)
        .map(|i| c.node(0).entry(i).cloned().unwrap())
        .collect();
    // prev_index 1 is inside node 1's snapshot.
    let msg = Message {
        from: 0,
        to: 1,
        term,
        ctx: 0,
        body: MessageBody::AppendEntries {
            prev_index: 1,
            prev_term: c.node(0).term_at(1).unwrap(),
            entries: leader_log.clone(),
            commit: c.node(0).commit_index(),
            read_seq: 0,
        },
    };
    let acks = |c: &mut Cluster| -> Vec<(bool, u64)> {
        c.take(|m| m.from == 1)
            .into_iter()
            .filter_map(|m| match m.body {
                MessageBody::AppendEntriesResponse {
                    success,
                    match_index,
                    ..
                } => Some((success, match_index)),
                _ => None,
            })
            .collect()
    };
    c.take_written(1);
    c.deliver(msg.clone());
    assert_eq!(
        acks(&mut c),
        vec![(true, last)],
        "matched after the snapshot, appended"
    );
    let written: Vec<u64> = c.take_written(1).iter().map(|e| e.index).collect();
    assert_eq!(
        written,
        (s + 1..=last).collect::<Vec<_>>(),
        "only the entries after the snapshot are new"
    );
    assert_eq!(c.log(1), &leader_log[(s - 1) as usize..]);
    // Entirely inside the snapshot: acked with the commit index.
    let inside = Message {
        body: MessageBody::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            entries: vec![c.node(0).entry(1).cloned().unwrap()],
            commit: 0,
            read_seq: 0,
        },
        ..msg
    };
    c.deliver(inside);
    let commit = c.node(1).commit_index();
    assert_eq!(acks(&mut c), vec![(true, commit)]);
    assert!(c.take_written(1).is_empty(), "nothing rewritten");
}

/// A restarted node starts from its snapshot: the state machine is the
/// snapshot's, and only committed entries after it are handed out.
#[test]
fn restart_from_a_snapshot_and_the_log_after_it() {
    let after: Vec<_> = (6..=8).map(|i| entry(i, 2)).collect();
    let mut n = Raft::new(config(1, 3), hs(2, 7), snap(5, 1), after).unwrap();
    assert_eq!(n.applied_index(), 5);
    assert_eq!(n.snapshot_index(), 5);
    assert_eq!(n.term_at(5), Some(1));
    assert_eq!(n.term_at(4), None, "compacted");
    let rd = n.ready();
    let handed: Vec<u64> = rd.committed_entries.iter().map(|e| e.index).collect();
    assert_eq!(handed, vec![6, 7]);
    // A commit below the snapshot (hard state written before it) is lifted.
    let n = Raft::new(config(1, 3), hs(2, 0), snap(5, 1), Vec::new()).unwrap();
    assert_eq!(n.commit_index(), 5);
    // A log that does not start right after the snapshot is refused.
    let gap = vec![entry(7, 2)];
    assert!(matches!(
        Raft::new(config(1, 3), hs(2, 0), snap(5, 1), gap),
        Err(RaftError::InvalidStorage(_))
    ));
}

/// `compact` refuses what it cannot honour and changes nothing then.
#[test]
fn compact_refuses_unapplied_stale_or_mismatched_snapshots() {
    let mut n = Raft::new(
        config(0, 3),
        hs(1, 2),
        Snapshot::default(),
        log_of(&[1, 1, 1]),
    )
    .unwrap();
    let rd = n.ready();
    assert_eq!(rd.committed_entries.len(), 2);
    n.advance(rd);
    let applied = n.applied_index();
    assert_eq!(applied, 2);
    let term = 1;
    assert!(n.compact(snap(applied + 1, term)).is_err(), "not applied");
    assert!(n.compact(snap(applied, term + 1)).is_err(), "wrong term");
    assert_eq!(n.snapshot_index(), 0);
    n.compact(snap(applied, term)).unwrap();
    assert!(
        n.compact(snap(applied, term)).is_err(),
        "not past the snapshot"
    );
    assert_eq!(n.snapshot_index(), applied);
}

/// A snapshot lost on the way is sent again: at once after the driver reports
/// the follower unreachable, and otherwise once it is overdue. Heartbeats keep
/// flowing meanwhile, so the follower does not campaign.
#[test]
fn a_lost_snapshot_is_sent_again() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.down.insert(2);
    c.propose_n(0, "d", 5);
    c.deliver_all();
    c.compact(0);
    c.down.remove(&2);
    let heartbeat_ticks = c.node(0).config().heartbeat_ticks;
    let round = |c: &mut Cluster| {
        for _ in 0..heartbeat_ticks {
            c.tick(0);
        }
    };
    round(&mut c);
    assert_eq!(c.take(is_install).len(), 1, "sent, then lost");
    c.unreachable(0, 2);
    round(&mut c);
    assert_eq!(c.take(is_install).len(), 1, "resent after unreachable");
    // Lost again, and no report: only heartbeats until it is overdue.
    let mut resent = 0;
    for _ in 0..30 {
        round(&mut c);
        resent += c.take(is_install).len();
        let beats: Vec<Message> = c.take(|m| is_append(m) && m.to == 2);
        assert!(!beats.is_empty(), "heartbeats keep flowing");
        for b in beats {
            c.deliver(b);
        }
        c.take(|m| m.to == 0);
        c.tick(2);
        assert_eq!(c.node(2).role(), Role::Follower, "never campaigns");
    }
    assert_eq!(resent, 0, "not overdue within 60 ticks");
    for _ in 0..200 {
        c.tick(0);
    }
    let resent = c.take(is_install);
    assert!(!resent.is_empty(), "resent once overdue");
    for m in resent {
        c.deliver(m);
    }
    c.deliver_all();
    assert_eq!(c.node(2).snapshot_index(), c.node(0).snapshot_index());
}

/// A leader elected from a snapshot (its log compacted on every node) still
/// brings a wiped follower back.
#[test]
fn a_new_leader_sends_its_own_snapshot() {
    let mut c = Cluster::new(3);
    c.elect(0);
    c.propose_n(0, "e", 8);
    c.deliver_all();
    c.heartbeat(0);
    for id in 0..2 {
        c.compact(id);
    }
    // Node 2 loses everything (a new disk).
    let term = c.node(0).term();
    c.restart_from(
        2,
        Stored {
            hard_state: HardState {
                term,
                ..HardState::default()
            },
            ..Stored::default()
        },
    );
    assert!(c.log(2).is_empty() && c.applied[2].is_empty() && c.map(2).is_empty());
    c.down.insert(0);
    c.campaign(1);
    c.deliver_all();
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.snap(2), c.snap(1), "node 2 got node 1's snapshot");
    assert_eq!(c.map(2).len(), 8, "and the map in it");
    let (index, _) = c.propose(1, "new era");
    c.deliver_all();
    assert_eq!(c.node(2).commit_index(), index);
}
