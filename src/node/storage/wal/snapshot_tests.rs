//! DiskStore snapshots: compaction, install over a conflicting log, older
//! snapshots, the crash between the snapshot file and its marker, obsolete
//! segments, refused snapshot files, and a crash at every byte of a log with
//! compaction and segment heads.

use super::*;
use crate::node::storage::snapshot::SNAPSHOT_FILE;
use crate::node::storage::{MemStore, Stored};
use bytes::Bytes;
use std::fs;

use super::test_support::{e, held, loaded, meta, segment_paths};

fn tmp(name: &str) -> PathBuf {
    super::test_support::tmp(&format!("snap-{name}"))
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: Some(1),
        commit,
    }
}

fn snap(index: u64, term: u64) -> Snapshot {
    Snapshot {
        index,
        term,
        data: Bytes::from(format!("state machine through {index}")),
    }
}

fn small() -> DiskOptions {
    DiskOptions {
        segment_bytes: 200,
        ..Default::default()
    }
}

fn open(dir: &Path) -> (DiskStore, Recovery) {
    DiskStore::open(dir, &meta(), small()).unwrap()
}

/// Reopens `dir` and checks it holds `want`; returns the recovery report.
fn reopen_holds(dir: &Path, want: &Stored) -> Recovery {
    let (s, rec) = open(dir);
    assert_eq!(&loaded(&s, rec.clone()), want);
    rec
}

#[test]
fn compaction_drops_old_segments_and_reopen_gives_the_same_log() {
    let dir = tmp("compact");
    let want;
    {
        let (mut s, _) = open(&dir);
        for i in 1..=40 {
            s.persist(Some(hs(1, i - 1)), &[e(1, i)]).unwrap();
        }
        assert!(segment_paths(&dir).len() > 5);
        s.save_snapshot(&snap(30, 1), None).unwrap();
        assert_eq!(segment_paths(&dir).len(), 1, "older segments deleted");
        want = held(&s);
        assert_eq!(want.snapshot, snap(30, 1));
        assert_eq!(want.entries, (31..=40).map(|i| e(1, i)).collect::<Vec<_>>());
        assert_eq!(want.hard_state, hs(1, 39));
    }
    let rec = reopen_holds(&dir, &want);
    assert_eq!((rec.snapshot_index, rec.entries, rec.segments), (30, 10, 1));
    assert!(!rec.finished_snapshot && rec.truncated.is_none());
    // Appending continues (and rolls segments whose heads carry the marker).
    let want = {
        let (mut s, _) = open(&dir);
        for i in 41..=60 {
            s.persist(Some(hs(2, i - 1)), &[e(2, i)]).unwrap();
        }
        held(&s)
    };
    assert!(segment_paths(&dir).len() > 3);
    reopen_holds(&dir, &want);
    // A second compaction through the last entry keeps nothing after it.
    let want = {
        let (mut s, _) = open(&dir);
        let p = s
            .snapshot_preparer()
            .unwrap()
            .prepare(&snap(60, 2))
            .unwrap();
        s.save_snapshot(&snap(60, 2), Some(p)).unwrap();
        assert_eq!(held(&s).entries, vec![]);
        s.persist(None, &[e(3, 61)]).unwrap();
        held(&s)
    };
    assert_eq!(segment_paths(&dir).len(), 1);
    let rec = reopen_holds(&dir, &want);
    assert_eq!(rec.snapshot_index, 60);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn install_over_a_conflicting_or_short_log_discards_it() {
    let dir = tmp("install");
    let want = {
        let (mut s, _) = open(&dir);
        s.persist(
            Some(hs(1, 2)),
            &(1..=6).map(|i| e(1, i)).collect::<Vec<_>>(),
        )
        .unwrap();
        // The leader's entry 4 has term 2: ours conflict.
        s.save_snapshot(&snap(4, 2), None).unwrap();
        let st = held(&s);
        assert_eq!((st.snapshot.index, st.entries.len()), (4, 0));
        assert_eq!(st.hard_state.commit, 4, "commit raised to the snapshot");
        s.persist(None, &[e(2, 5)]).unwrap();
        held(&s)
    };
    reopen_holds(&dir, &want);
    // Past the end of the log.
    let want = {
        let (mut s, _) = open(&dir);
        s.save_snapshot(&snap(20, 3), None).unwrap();
        assert_eq!(s.last_index(), 20);
        s.persist(Some(hs(3, 20)), &[e(3, 21)]).unwrap();
        held(&s)
    };
    assert_eq!(want.entries, vec![e(3, 21)]);
    reopen_holds(&dir, &want);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_older_snapshot_is_ignored_and_its_temp_file_removed() {
    let dir = tmp("older");
    let want = {
        let (mut s, _) = open(&dir);
        s.persist(None, &(1..=6).map(|i| e(1, i)).collect::<Vec<_>>())
            .unwrap();
        s.save_snapshot(&snap(4, 1), None).unwrap();
        let want = held(&s);
        let p = s.snapshot_preparer().unwrap().prepare(&snap(3, 1)).unwrap();
        s.save_snapshot(&snap(3, 1), Some(p)).unwrap();
        s.save_snapshot(&snap(4, 1), None).unwrap();
        assert_eq!(held(&s), want);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            4,
            "cluster LOCK snapshot wal"
        );
        want
    };
    reopen_holds(&dir, &want);
    let _ = fs::remove_dir_all(&dir);
}

/// The crash inside `save_snapshot` after the file is installed and before
/// its marker: reopening applies the file by the snapshot rule.
fn crash_window(name: &str, log: &[Entry], s_at: Snapshot, want_entries: Vec<Entry>) {
    let dir = tmp(name);
    {
        let (mut s, _) = open(&dir);
        s.persist(Some(hs(1, 1)), log).unwrap();
        let p = s.snapshot_preparer().unwrap();
        let prepared = p.prepare(&s_at).unwrap();
        p.install(prepared).unwrap();
    }
    let want = Stored {
        hard_state: hs(1, s_at.index),
        snapshot: s_at.clone(),
        entries: want_entries,
    };
    let rec = reopen_holds(&dir, &want);
    assert!(rec.finished_snapshot, "{name}");
    assert_eq!(segment_paths(&dir).len(), 1, "{name}: compacted");
    let rec = reopen_holds(&dir, &want);
    assert!(!rec.finished_snapshot, "{name}: the marker is now durable");
    // The log goes on after the snapshot.
    let next = s_at.index + 1;
    {
        let (mut s, _) = open(&dir);
        s.persist(None, &[e(5, next)]).unwrap();
    }
    let (s, rec) = open(&dir);
    assert_eq!(loaded(&s, rec).entries.last(), Some(&e(5, next)), "{name}");
    drop(s);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn crash_between_snapshot_file_and_marker_compaction() {
    let log: Vec<Entry> = (1..=30).map(|i| e(1, i)).collect();
    crash_window("window-compact", &log, snap(25, 1), log[25..].to_vec());
}

#[test]
fn crash_between_snapshot_file_and_marker_install_over_conflict() {
    let log: Vec<Entry> = (1..=30).map(|i| e(1, i)).collect();
    crash_window("window-conflict", &log, snap(25, 2), vec![]);
}

#[test]
fn crash_between_snapshot_file_and_marker_install_past_the_end() {
    let log: Vec<Entry> = (1..=3).map(|i| e(1, i)).collect();
    crash_window("window-short", &log, snap(25, 2), vec![]);
}

#[test]
fn segments_left_by_a_crash_after_compaction_are_removed() {
    let dir = tmp("obsolete");
    let want = {
        let (mut s, _) = open(&dir);
        for i in 1..=20 {
            s.persist(Some(hs(1, i - 1)), &[e(1, i)]).unwrap();
        }
        let old: Vec<(PathBuf, Vec<u8>)> = segment_paths(&dir)
            .into_iter()
            .map(|p| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        s.save_snapshot(&snap(15, 1), None).unwrap();
        // The crash came before the deletions reached the disk.
        for (p, b) in &old {
            fs::write(p, b).unwrap();
        }
        held(&s)
    };
    let n = segment_paths(&dir).len();
    let rec = reopen_holds(&dir, &want);
    assert_eq!((rec.obsolete_segments, rec.segments), (n - 1, 1));
    assert_eq!(segment_paths(&dir).len(), 1);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_snapshot_file_is_refused_naming_it() {
    let dir = tmp("badsnap");
    {
        let (mut s, _) = open(&dir);
        s.persist(None, &(1..=6).map(|i| e(1, i)).collect::<Vec<_>>())
            .unwrap();
        s.save_snapshot(&snap(4, 1), None).unwrap();
    }
    let path = dir.join(SNAPSHOT_FILE);
    let good = fs::read(&path).unwrap();
    for at in [0, 9, 15, 30, good.len() / 2, good.len() - 1] {
        let mut b = good.clone();
        b[at] ^= 0x20;
        fs::write(&path, &b).unwrap();
        let err = DiskStore::open(&dir, &meta(), small()).unwrap_err();
        assert!(
            matches!(&err, WalError::Snapshot { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    fs::write(&path, &good[..good.len() - 3]).unwrap();
    assert!(matches!(
        DiskStore::open(&dir, &meta(), small()),
        Err(WalError::Snapshot { .. })
    ));
    // A missing snapshot file under a marker is refused too.
    fs::remove_file(&path).unwrap();
    let err = DiskStore::open(&dir, &meta(), small()).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { .. }) && err.to_string().contains(SNAPSHOT_FILE),
        "{err}"
    );
    fs::write(&path, &good).unwrap();
    // A stray temp file (a prepare a crash interrupted) is removed.
    fs::write(dir.join("snapshot.9-1.tmp"), b"half a snap").unwrap();
    let (s, rec) = open(&dir);
    assert_eq!(loaded(&s, rec).snapshot, snap(4, 1));
    assert!(!dir.join("snapshot.9-1.tmp").exists());
    drop(s);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_gap_after_the_snapshot_is_refused_naming_file_and_offset() {
    let dir = tmp("gap");
    {
        let (mut s, _) = open(&dir);
        s.persist(None, &(1..=6).map(|i| e(1, i)).collect::<Vec<_>>())
            .unwrap();
        s.save_snapshot(&snap(4, 1), None).unwrap();
    }
    // Rewrite the compaction segment with entry 5 missing.
    let seg = segment_paths(&dir).pop().unwrap();
    let mut b = Vec::new();
    record::encode_hard_state(&mut b, &hs(1, 4));
    record::encode_marker(
        &mut b,
        &record::Marker {
            index: 4,
            term: 1,
            base: true,
        },
    );
    let gap_at = b.len() as u64;
    record::encode_entry(&mut b, &e(1, 6));
    fs::write(&seg, &b).unwrap();
    let err = DiskStore::open(&dir, &meta(), small()).unwrap_err();
    match &err {
        WalError::Corrupt { path, offset, .. } => assert_eq!((path, *offset), (&seg, gap_at)),
        other => panic!("expected corruption, got {other}"),
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Crash points after a compaction, with segment rolls: after every
/// acknowledged `persist` and at every byte of the write that follows it
/// (segment heads included), a restart must hold everything acknowledged,
/// plus at most a whole-record prefix of the unfinished batch.
#[test]
fn crash_at_every_byte_after_a_compaction_loses_nothing_acknowledged() {
    let dir = tmp("crashbytes");
    let batches: Vec<(Option<HardState>, Vec<Entry>)> = vec![
        (Some(hs(2, 5)), vec![e(2, 7), e(2, 8)]),
        (None, vec![e(2, 9)]),
        (Some(hs(3, 6)), vec![e(3, 8), e(3, 9), e(3, 10)]),
        (Some(hs(3, 9)), vec![]),
        (None, vec![e(3, 11), e(3, 12)]),
        (Some(hs(4, 12)), vec![e(4, 13)]),
    ];
    // (segment seq, its size) after the compaction and after each batch.
    let mut points = Vec::new();
    let start;
    {
        let (mut s, _) = open(&dir);
        s.persist(
            Some(hs(1, 3)),
            &(1..=6).map(|i| e(1, i)).collect::<Vec<_>>(),
        )
        .unwrap();
        s.save_snapshot(&snap(4, 1), None).unwrap();
        start = MemStore::from_parts(held(&s));
        points.push((s.seq, s.size));
        for (h, es) in &batches {
            s.persist(*h, es).unwrap();
            points.push((s.seq, s.size));
        }
    }
    assert!(
        points.last().unwrap().0 > points[0].0 + 1,
        "rolled segments"
    );
    let seg_bytes = |seq: u64| fs::read(dir.join("wal").join(segment::name(seq))).unwrap();
    let mut acked = start;
    for (k, (h, es)) in batches.iter().enumerate() {
        let mut allowed = vec![acked.load()];
        let mut m = acked.clone();
        for en in es {
            m.persist(None, std::slice::from_ref(en)).unwrap();
            allowed.push(m.load());
        }
        if h.is_some() {
            m.persist(*h, &[]).unwrap();
            allowed.push(m.load());
        }
        let ((seq0, size0), (seq1, size1)) = (points[k], points[k + 1]);
        let from = if seq1 == seq0 { size0 } else { 0 };
        let full = seg_bytes(seq1);
        for cut in from..=size1 {
            let d = tmp(&format!("crashbytes-{k}-{cut}"));
            fs::create_dir_all(d.join("wal")).unwrap();
            for f in ["cluster", SNAPSHOT_FILE] {
                fs::copy(dir.join(f), d.join(f)).unwrap();
            }
            for seq in points[0].0..seq1 {
                fs::write(d.join("wal").join(segment::name(seq)), seg_bytes(seq)).unwrap();
            }
            fs::write(
                d.join("wal").join(segment::name(seq1)),
                &full[..cut as usize],
            )
            .unwrap();
            let (s, rec) = open(&d);
            let got = loaded(&s, rec);
            assert!(
                allowed.contains(&got),
                "crash in batch {k} at byte {cut} of segment {seq1}: recovered {got:?}"
            );
            if cut == size1 {
                assert_eq!(&got, allowed.last().unwrap(), "fsync point after batch {k}");
            }
            drop(s);
            let _ = fs::remove_dir_all(&d);
        }
        acked = m;
    }
    let _ = fs::remove_dir_all(&dir);
}
