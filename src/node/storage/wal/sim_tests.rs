//! DiskStore on `SimFs`: a scripted run (persists, segment rolls, a
//! compaction, installs over a conflicting and a short log) stopped at every
//! write and fsync point, crashed in every mode, and reopened: everything
//! acknowledged is there, what is there is a consistent log, and recovery
//! leaves it durable. Also: injected I/O errors surface as `Err`, never as a
//! panic, and a store that saw one refuses further writes.

use super::*;
use crate::node::storage::fs::{CrashMode, SimFs};
use crate::node::storage::{MemStore, Stored};
use bytes::Bytes;

use super::test_support::{held, loaded};

fn meta() -> ClusterMeta {
    ClusterMeta {
        id: 2,
        members: vec!["a:1".into(), "b:1".into(), "c:1".into()],
    }
}

fn opts() -> DiskOptions {
    DiskOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 160,
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/data/n2")
}

fn e(term: u64, index: u64) -> Entry {
    Entry {
        term,
        index,
        data: Bytes::from(format!("e{index}t{term}")),
    }
}

fn hs(term: u64, commit: u64) -> Option<HardState> {
    Some(HardState {
        term,
        vote: Some(0),
        commit,
    })
}

fn snap(index: u64, term: u64) -> Snapshot {
    Snapshot {
        index,
        term,
        data: Bytes::from(format!("machine@{index}")),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Persist(Option<HardState>, Vec<Entry>),
    /// The snapshot, and whether it is prepared first (the driver's path).
    Snapshot(Snapshot, bool),
}

fn script() -> Vec<Op> {
    use Op::*;
    vec![
        Persist(hs(1, 0), vec![e(1, 1), e(1, 2), e(1, 3)]),
        Persist(hs(1, 2), vec![e(1, 4)]),
        Persist(None, vec![e(1, 5), e(1, 6)]),
        // A new leader overwrites the uncommitted suffix.
        Persist(hs(2, 4), vec![e(2, 5), e(2, 6), e(2, 7)]),
        // Local compaction, prepared off the driver.
        Snapshot(snap(4, 1), true),
        Persist(hs(2, 7), vec![e(2, 8)]),
        Persist(None, vec![e(2, 9), e(2, 10)]),
        // An install over a conflicting log (our 9 has term 2).
        Snapshot(snap(9, 3), false),
        Persist(hs(3, 9), vec![e(3, 10), e(3, 11)]),
        // An install past the end of the log.
        Snapshot(snap(20, 3), true),
        Persist(hs(3, 20), vec![e(3, 21), e(3, 22)]),
        // Compaction keeping one entry, then an overwrite of it.
        Snapshot(snap(21, 3), false),
        Persist(hs(4, 21), vec![e(4, 22), e(4, 23)]),
        Persist(hs(4, 23), vec![]),
    ]
}

fn apply(m: &mut MemStore, op: &Op) {
    match op {
        Op::Persist(h, es) => m.persist(*h, es).unwrap(),
        Op::Snapshot(s, _) => m.save_snapshot(s, None).unwrap(),
    }
}

/// The states a crash during `pending` may leave: `acked`, then every
/// whole-record prefix of the pending operation.
fn allowed(acked: &MemStore, pending: Option<&Op>) -> Vec<Stored> {
    let mut out = vec![acked.load()];
    let mut m = acked.clone();
    match pending {
        None => {}
        Some(Op::Persist(h, es)) => {
            for en in es {
                m.persist(None, std::slice::from_ref(en)).unwrap();
                out.push(m.load());
            }
            if h.is_some() {
                m.persist(*h, &[]).unwrap();
                out.push(m.load());
            }
        }
        Some(op @ Op::Snapshot(..)) => {
            apply(&mut m, op);
            out.push(m.load());
        }
    }
    out
}

fn open(fs: &SimFs) -> Result<(DiskStore, Recovery), WalError> {
    DiskStore::open_in(Arc::new(fs.clone()), &dir(), &meta(), opts())
}

/// Runs the script until the first error; returns what was acknowledged
/// and the operation that failed (none if all succeeded or open failed).
fn run(fs: &SimFs, script: &[Op]) -> (MemStore, Option<Op>) {
    run_checked(fs, script, false)
}

/// `run`; with `check`, after every operation what the files hold (read
/// back through the store's shape) must be what was acknowledged.
fn run_checked(fs: &SimFs, script: &[Op], check: bool) -> (MemStore, Option<Op>) {
    let mut acked = MemStore::new();
    let Ok((mut s, _)) = open(fs) else {
        return (acked, None);
    };
    for op in script {
        let r = match op {
            Op::Persist(h, es) => s.persist(*h, es),
            Op::Snapshot(sn, prepare) => {
                let prepared = match prepare {
                    true => s.snapshot_preparer().unwrap().prepare(sn).map(Some),
                    false => Ok(None),
                };
                prepared.and_then(|p| s.save_snapshot(sn, p))
            }
        };
        if r.is_err() {
            if let Op::Persist(..) = op {
                // A failed store refuses everything after.
                assert!(s.persist(hs(9, 0), &[]).is_err());
            }
            return (acked, Some(op.clone()));
        }
        apply(&mut acked, op);
        if check {
            assert_eq!(held(&s), acked.load(), "after {op:?}");
        }
    }
    (acked, None)
}

/// A log any node may restart from: contiguous after the snapshot, terms
/// never decreasing, commit within the log.
fn check_consistent(st: &Stored, ctx: &str) {
    let mut term = st.snapshot.term;
    for (i, en) in st.entries.iter().enumerate() {
        assert_eq!(en.index, st.snapshot.index + 1 + i as u64, "{ctx}: gap");
        assert!(en.term >= term, "{ctx}: term decreases at {}", en.index);
        term = en.term;
    }
    let last = st.snapshot.index + st.entries.len() as u64;
    assert!(
        st.hard_state.commit <= last && st.hard_state.commit >= st.snapshot.index,
        "{ctx}: commit {} outside [{}, {last}]",
        st.hard_state.commit,
        st.snapshot.index
    );
}

fn modes(k: u64) -> Vec<CrashMode> {
    let mut m = vec![CrashMode::LoseUnsynced, CrashMode::KeepAll];
    m.extend((0..6).map(|i| CrashMode::Torn(k.wrapping_mul(0x9E37_79B9) ^ i)));
    m
}

#[test]
fn the_script_runs_clean_and_reopens_the_same() {
    let fs = SimFs::new();
    let script = script();
    let (acked, pending) = run_checked(&fs, &script, true);
    assert!(pending.is_none());
    let want = acked.load();
    assert_eq!(want.snapshot, snap(21, 3));
    assert_eq!(want.entries, vec![e(4, 22), e(4, 23)]);
    fs.crash(CrashMode::LoseUnsynced);
    let (s, rec) = open(&fs).unwrap();
    assert_eq!(loaded(&s, rec.clone()), want);
    assert_eq!(rec.snapshot_index, 21);
}

#[test]
fn crash_at_every_write_and_fsync_point_in_every_mode_loses_nothing_acknowledged() {
    let script = script();
    let total = {
        let fs = SimFs::new();
        run(&fs, &script);
        fs.points()
    };
    assert!(total > 60, "{total} points");
    let mut states = std::collections::BTreeSet::new();
    for k in 0..=total {
        for mode in modes(k) {
            let ctx = format!("stop at point {k}/{total}, {mode:?}");
            let fs = SimFs::new();
            fs.stop_at(k);
            let (acked, pending) = run(&fs, &script);
            fs.crash(mode);
            let (s, rec) = open(&fs).unwrap_or_else(|err| panic!("{ctx}: reopen: {err}"));
            let got = loaded(&s, rec);
            let ok = allowed(&acked, pending.as_ref());
            assert!(
                ok.contains(&got),
                "{ctx}: pending {pending:?}\nrecovered {got:?}\nacked {:?}",
                acked.load()
            );
            check_consistent(&got, &ctx);
            states.insert(format!("{got:?}"));
            // Recovery left what it read durable: another power loss
            // changes nothing, and the log goes on.
            drop(s);
            fs.crash(CrashMode::LoseUnsynced);
            let (mut s, rec) = open(&fs).unwrap_or_else(|err| panic!("{ctx}: 2nd reopen: {err}"));
            assert_eq!(loaded(&s, rec), got, "{ctx}: second crash");
            let next = e(9, s.last_index() + 1);
            s.persist(hs(9, got.hard_state.commit), std::slice::from_ref(&next))
                .unwrap();
            drop(s);
            fs.crash(CrashMode::LoseUnsynced);
            let (s, rec) = open(&fs).unwrap_or_else(|err| panic!("{ctx}: 3rd reopen: {err}"));
            assert_eq!(
                loaded(&s, rec).entries.last(),
                Some(&next),
                "{ctx}: appended"
            );
        }
    }
    assert!(states.len() >= 15, "only {} distinct states", states.len());
}

#[test]
fn an_injected_error_at_any_point_is_an_err_never_a_panic() {
    let script = script();
    let total = {
        let fs = SimFs::new();
        run(&fs, &script);
        fs.points()
    };
    for k in 0..total {
        let ctx = format!("fault at point {k}/{total}");
        let fs = SimFs::new();
        fs.fail_at(k);
        let (acked, pending) = run(&fs, &script);
        // The process goes on: a fresh open sees the page cache.
        let (s, rec) = open(&fs).unwrap_or_else(|err| panic!("{ctx}: reopen: {err}"));
        let got = loaded(&s, rec);
        assert!(
            allowed(&acked, pending.as_ref()).contains(&got),
            "{ctx}: pending {pending:?}, recovered {got:?}"
        );
        check_consistent(&got, &ctx);
    }
}

#[test]
fn a_crash_during_recovery_is_recovered_too() {
    // A torn tail to truncate and a snapshot installed without its marker:
    // recovery writes (truncate, compaction); stop it at each point.
    let script = script();
    let base = SimFs::new();
    let (acked, _) = run(&base, &script[..11]);
    let want = {
        let mut m = acked.clone();
        m.save_snapshot(&snap(22, 3), None).unwrap();
        m.load()
    };
    {
        let (s, _) = open(&base).unwrap();
        let p = s.snapshot_preparer().unwrap();
        let prepared = p.prepare(&snap(22, 3)).unwrap();
        p.install(prepared).unwrap();
    }
    let wal = dir().join("wal");
    let segs = segment::list(&base, &wal).unwrap().segments;
    let tail = &segs.last().unwrap().1;
    let mut bytes = base.contents(tail).unwrap();
    let mut torn = Vec::new();
    record::encode_entry(&mut torn, &e(3, 23));
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    base.overwrite(tail, &bytes);
    base.crash(CrashMode::KeepAll);
    let start = base.points();
    let recovery_points = {
        let fs = clone_fs(&base);
        let (s, rec) = open(&fs).unwrap();
        assert!(rec.finished_snapshot && rec.truncated.is_some());
        assert_eq!(loaded(&s, rec), want);
        fs.points() - start
    };
    for k in 0..recovery_points {
        for mode in modes(k) {
            let fs = clone_fs(&base);
            fs.stop_at(start + k);
            assert!(open(&fs).is_err());
            fs.crash(mode);
            let (s, rec) = open(&fs).unwrap();
            assert_eq!(
                loaded(&s, rec),
                want,
                "recovery stopped at point {k}, {mode:?}"
            );
        }
    }
}

fn clone_fs(fs: &SimFs) -> SimFs {
    fs.deep_clone()
}
