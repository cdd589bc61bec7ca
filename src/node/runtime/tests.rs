//! The runtime's ordering promises, driven by hand: a writer that completes
//! only when told, a transport that records what leaves.

use tokio::sync::{broadcast, oneshot, watch};

use super::io::{Prepared, SnapshotJob};
use super::*;
use crate::node::raft::{MessageBody, RaftConfig, Snapshot};

/// Holds every write until the test completes it.
#[derive(Default)]
struct HeldWriter {
    writes: Vec<Write>,
}

impl Writer for HeldWriter {
    fn submit(&mut self, write: Write) -> Option<Result<(), String>> {
        self.writes.push(write);
        None
    }
    fn prepare_snapshot(&mut self, job: SnapshotJob) -> Option<Prepared> {
        Some(io::prepare(job, None))
    }
}

#[derive(Default)]
struct Recorder {
    sent: Vec<Message>,
}

impl Transport for Recorder {
    fn send(&mut self, msg: Message) {
        self.sent.push(msg);
    }
}

type Rt = Runtime<HeldWriter, Recorder>;

fn runtime(id: NodeId, n: usize) -> Rt {
    let config = RaftConfig {
        id,
        members: (0..n as NodeId).collect(),
        election_ticks_min: 3,
        election_ticks_max: 3,
        heartbeat_ticks: 1,
        seed: 11,
        max_entries_per_message: 64,
        max_bytes_per_message: 1 << 20,
        max_inflight: 4,
        pre_vote: false,
        check_quorum: false,
    };
    let raft = Raft::new(
        config,
        HardState::default(),
        Snapshot::default(),
        Vec::new(),
    )
    .unwrap();
    let (status, _) = watch::channel(NodeStatus {
        raft: raft.status(),
        crashed: false,
        files: 0,
        failed: None,
    });
    let (events, _) = broadcast::channel(16);
    let members = (0..n).map(|i| format!("127.0.0.1:{}", 1 + i)).collect();
    Runtime::new(
        id,
        members,
        raft,
        Metadata::new(),
        HeldWriter::default(),
        Recorder::default(),
        Publisher::new(id, status, events),
        0,
    )
}

/// Completes every write submitted so far.
fn complete(rt: &mut Rt) {
    let upto = rt.raft().last_ready();
    rt.writer_mut().writes.clear();
    rt.handle(Request::Persisted {
        upto,
        result: Ok(()),
    });
    rt.end_turn();
}

fn update(name: &str) -> Command {
    Command::UpdateFile {
        filename: name.into(),
        version: 1,
        hashlist: Vec::new(),
    }
}

/// A single node ticks until it leads, its writes completed as they come.
fn lead_alone(rt: &mut Rt) {
    while rt.raft().role() != Role::Leader {
        rt.tick();
        rt.end_turn();
        complete(rt);
    }
    complete(rt);
}

/// Ticks node 0 of 3 into candidacy, lets its vote become durable, and
/// grants it node 1's vote.
fn elect(rt: &mut Rt) {
    while rt.raft().role() != Role::Candidate {
        rt.tick();
        rt.end_turn();
    }
    assert!(
        rt.transport_mut().sent.is_empty(),
        "RequestVote waits for the candidate's own vote to be durable"
    );
    complete(rt);
    let term = rt.raft().term();
    assert!(rt
        .transport_mut()
        .sent
        .iter()
        .any(|m| matches!(m.body, MessageBody::RequestVote { .. })));
    rt.handle(Request::PeerResponse(Message {
        from: 1,
        to: 0,
        term,
        ctx: 0,
        body: MessageBody::RequestVoteResponse { granted: true },
    }));
    rt.end_turn();
    assert_eq!(rt.raft().role(), Role::Leader);
}

#[test]
fn a_single_node_answers_only_after_its_write_is_durable() {
    let mut rt = runtime(0, 1);
    lead_alone(&mut rt);
    let (reply, mut answer) = oneshot::channel();
    rt.handle(Request::Update {
        cmd: update("a"),
        reply,
    });
    rt.end_turn();
    assert!(
        !rt.writer_mut().writes.is_empty(),
        "the entry was handed to the writer"
    );
    assert!(
        answer.try_recv().is_err(),
        "no answer while the leader's own entry is not durable (it is the whole majority)"
    );
    assert_eq!(rt.raft().commit_index(), 1, "only the no-op is committed");
    complete(&mut rt);
    assert!(answer.try_recv().unwrap().unwrap());
}

#[test]
fn the_leader_sends_before_its_write_and_counts_itself_after() {
    let mut rt = runtime(0, 3);
    elect(&mut rt);
    complete(&mut rt); // the no-op
    let ack = |rt: &mut Rt, from: NodeId, index| {
        let term = rt.raft().term();
        rt.handle(Request::PeerResponse(Message {
            from,
            to: 0,
            term,
            ctx: 0,
            body: MessageBody::AppendEntriesResponse {
                success: true,
                match_index: index,
                conflict_index: 0,
                conflict_term: 0,
                read_seq: 0,
            },
        }));
        rt.end_turn();
    };
    ack(&mut rt, 1, 1);
    assert_eq!(rt.raft().commit_index(), 1);
    complete(&mut rt); // the new commit index
    rt.transport_mut().sent.clear();

    let (reply, mut answer) = oneshot::channel();
    rt.handle(Request::Update {
        cmd: update("a"),
        reply,
    });
    rt.end_turn();
    let pending = rt.writer_mut().writes.len();
    assert_eq!(pending, 1, "entry 2 is being written");
    let carried = rt.transport_mut().sent.iter().any(|m| {
        matches!(&m.body, MessageBody::AppendEntries { entries, .. } if entries.iter().any(|e| e.index == 2))
    });
    assert!(
        carried,
        "AppendEntries with entry 2 left before the leader's own write completed"
    );

    // One follower holds it; the leader's copy is not durable: no majority.
    ack(&mut rt, 1, 2);
    assert_eq!(
        rt.raft().commit_index(),
        1,
        "the leader does not count an entry it has not made durable"
    );
    assert!(answer.try_recv().is_err());
    complete(&mut rt);
    assert_eq!(rt.raft().commit_index(), 2);
    assert!(answer.try_recv().unwrap().unwrap());
}

#[test]
fn the_proposals_of_one_turn_travel_in_one_append_per_follower() {
    let mut rt = runtime(0, 3);
    elect(&mut rt);
    complete(&mut rt);
    let term = rt.raft().term();
    for from in [1, 2] {
        rt.handle(Request::PeerResponse(Message {
            from,
            to: 0,
            term,
            ctx: 0,
            body: MessageBody::AppendEntriesResponse {
                success: true,
                match_index: 1,
                conflict_index: 0,
                conflict_term: 0,
                read_seq: 0,
            },
        }));
    }
    rt.end_turn();
    complete(&mut rt);
    rt.transport_mut().sent.clear();
    let mut answers = Vec::new();
    for k in 0..10 {
        let (reply, answer) = oneshot::channel();
        rt.handle(Request::Update {
            cmd: update(&format!("f{k}")),
            reply,
        });
        answers.push(answer);
    }
    rt.end_turn();
    let sent = &rt.transport_mut().sent;
    assert_eq!(sent.len(), 2, "one AppendEntries per follower: {sent:?}");
    for m in sent {
        let MessageBody::AppendEntries { entries, .. } = &m.body else {
            panic!("not an append: {m:?}")
        };
        let indexes: Vec<_> = entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (2..=11).collect::<Vec<_>>());
    }
    assert_eq!(rt.writer_mut().writes.len(), 1, "and one write");
}

#[test]
fn a_commit_only_ready_is_written_without_fsync() {
    let mut rt = runtime(1, 3);
    // Node 1 follows leader 0: entries 1..=2 arrive, then a heartbeat that
    // only moves its commit index.
    let append = |rt: &mut Rt, prev, entries: Vec<Entry>, commit| {
        let (reply, answer) = oneshot::channel();
        rt.handle(Request::Peer {
            msg: Message {
                from: 0,
                to: 1,
                term: 1,
                ctx: 0,
                body: MessageBody::AppendEntries {
                    prev_index: prev,
                    prev_term: if prev == 0 { 0 } else { 1 },
                    entries,
                    commit,
                    read_seq: 0,
                },
            },
            reply,
        });
        rt.end_turn();
        answer
    };
    let entry = |index| Entry {
        term: 1,
        index,
        data: update(&format!("f{index}")).encode(),
    };
    let mut first = append(&mut rt, 0, vec![entry(1), entry(2)], 0);
    assert!(
        first.try_recv().is_err(),
        "the ack waits for the entries to be durable"
    );
    let syncs: Vec<bool> = rt
        .writer_mut()
        .writes
        .iter()
        .map(|w| matches!(w, Write::Ready { sync: true, .. }))
        .collect();
    assert_eq!(syncs, vec![true], "new entries and a new term are fsynced");
    complete(&mut rt);
    assert!(first.try_recv().unwrap().is_ok());

    let mut second = append(&mut rt, 2, Vec::new(), 2);
    let writes = std::mem::take(&mut rt.writer_mut().writes);
    match &writes[..] {
        [Write::Ready {
            sync: false,
            hard_state: Some(hs),
            entries,
            ..
        }] => {
            assert_eq!(hs.commit, 2);
            assert!(entries.is_empty());
        }
        other => panic!("expected one commit-only write without fsync, got {other:?}"),
    }
    let upto = rt.raft().last_ready();
    rt.handle(Request::Persisted {
        upto,
        result: Ok(()),
    });
    rt.end_turn();
    assert!(second.try_recv().unwrap().is_ok());
    assert_eq!(
        rt.metadata().applied_index(),
        2,
        "committed entries are applied"
    );
}

#[test]
fn a_failed_write_sends_nothing_it_promised_and_fails_the_waiting_calls() {
    let mut rt = runtime(1, 3);
    let (reply, mut answer) = oneshot::channel();
    rt.handle(Request::Peer {
        msg: Message {
            from: 0,
            to: 1,
            term: 1,
            ctx: 0,
            body: MessageBody::RequestVote {
                last_index: 0,
                last_term: 0,
                transfer: false,
            },
        },
        reply,
    });
    rt.end_turn();
    assert!(answer.try_recv().is_err(), "the vote waits for its write");
    let upto = rt.raft().last_ready();
    rt.handle(Request::Persisted {
        upto,
        result: Err("No space left on device (injected)".into()),
    });
    rt.end_turn();
    assert!(rt.failed().unwrap().contains("No space left on device"));
    match answer.try_recv() {
        Ok(Err(NodeError::Crashed(1))) => {}
        other => panic!("the vote is never granted, the call is failed: {other:?}"),
    }
}

#[test]
fn snapshot_now_compacts_at_the_applied_index_and_refuses_when_nothing_is_new() {
    let mut rt = runtime(0, 1);
    assert!(!rt.snapshot_now(), "nothing applied yet");
    lead_alone(&mut rt);
    let (reply, mut answer) = oneshot::channel();
    rt.handle(Request::Update {
        cmd: update("a"),
        reply,
    });
    rt.end_turn();
    complete(&mut rt);
    assert!(answer.try_recv().unwrap().unwrap());
    let applied = rt.metadata().applied_index();
    assert_eq!(applied, 2, "the no-op and the update");
    assert_eq!(
        rt.raft().snapshot_index(),
        0,
        "threshold 0: never by itself"
    );

    assert!(rt.snapshot_now());
    assert_eq!(rt.raft().snapshot_index(), applied, "the core compacted");
    let term = rt.raft().term();
    let compacts = |rt: &Rt| -> Vec<Snapshot> {
        rt.writer()
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Compact { snapshot, .. } => Some(snapshot.clone()),
                Write::Ready { .. } => None,
            })
            .collect()
    };
    match &compacts(&rt)[..] {
        [snapshot] => {
            assert_eq!((snapshot.index, snapshot.term), (applied, term));
            let map = Metadata::from_snapshot(snapshot.index, &snapshot.data).unwrap();
            assert_eq!(map.version("a"), 1, "the snapshot is the applied map");
        }
        other => panic!("expected one snapshot written, got {other:?}"),
    }
    assert!(!rt.snapshot_now(), "nothing applied past the snapshot");
    assert_eq!(compacts(&rt).len(), 1);
}
