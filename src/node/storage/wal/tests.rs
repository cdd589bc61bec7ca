//! DiskStore: reopen round trips, segments, torn tails, corruption, locking,
//! and a crash at every byte of every write.

use super::*;
use crate::node::storage::Stored;
use std::fs::{self, OpenOptions};

use super::test_support::{e, held, loaded, meta, segment_paths, tmp};

fn hs(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

fn stored(hard_state: HardState, entries: Vec<Entry>) -> Stored {
    Stored {
        hard_state,
        snapshot: Snapshot::default(),
        entries,
    }
}

fn open(dir: &Path) -> (DiskStore, Recovery) {
    DiskStore::open(dir, &meta(), DiskOptions::default()).unwrap()
}

#[test]
fn survives_reopen_with_overwrites() {
    let dir = tmp("reopen");
    {
        let (mut s, rec) = open(&dir);
        assert_eq!(rec.entries, 0);
        s.persist(Some(hs(1, Some(0), 0)), &[e(1, 1), e(1, 2), e(1, 3)])
            .unwrap();
        s.persist(Some(hs(2, None, 1)), &[e(2, 2)]).unwrap();
        s.persist(None, &[e(2, 3)]).unwrap();
    }
    let (s, rec) = open(&dir);
    assert!(rec.truncated.is_none());
    assert_eq!(
        loaded(&s, rec),
        stored(hs(2, None, 1), vec![e(1, 1), e(2, 2), e(2, 3)])
    );
    drop(s);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn rolls_segments_and_reads_them_all_back() {
    let dir = tmp("segments");
    let opts = DiskOptions {
        segment_bytes: 200,
        ..Default::default()
    };
    let mut want = Vec::new();
    {
        let (mut s, _) = DiskStore::open(&dir, &meta(), opts.clone()).unwrap();
        for i in 1..=40 {
            want.push(e(1, i));
            s.persist(Some(hs(1, Some(0), i - 1)), &[e(1, i)]).unwrap();
        }
    }
    assert!(segment_paths(&dir).len() > 5);
    let (s, rec) = DiskStore::open(&dir, &meta(), opts).unwrap();
    assert_eq!(rec.segments, segment_paths(&dir).len());
    assert_eq!(loaded(&s, rec), stored(hs(1, Some(0), 39), want));
    drop(s);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn torn_tail_is_truncated_and_appending_continues() {
    let dir = tmp("torn");
    {
        let (mut s, _) = open(&dir);
        s.persist(Some(hs(1, None, 0)), &[e(1, 1), e(1, 2)])
            .unwrap();
    }
    let seg = segment_paths(&dir).pop().unwrap();
    let good = fs::metadata(&seg).unwrap().len();
    {
        let (mut s, _) = open(&dir);
        s.persist(None, &[e(1, 3)]).unwrap();
    }
    // Cut the last record in half: the crash came mid-write.
    let full = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len((good + full) / 2)
        .unwrap();
    {
        let (mut s, rec) = open(&dir);
        let (path, offset, _) = rec.truncated.clone().expect("a torn tail");
        assert_eq!((path, offset), (seg.clone(), good));
        assert_eq!(loaded(&s, rec).entries, vec![e(1, 1), e(1, 2)]);
        assert_eq!(fs::metadata(&seg).unwrap().len(), good);
        s.persist(None, &[e(2, 3)]).unwrap();
        assert_eq!(held(&s).entries, vec![e(1, 1), e(1, 2), e(2, 3)]);
    }
    let (s, rec) = open(&dir);
    assert!(rec.truncated.is_none());
    assert_eq!(loaded(&s, rec).entries, vec![e(1, 1), e(1, 2), e(2, 3)]);
    drop(s);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn corruption_before_the_tail_refuses_naming_file_and_offset() {
    let dir = tmp("corrupt");
    let second_at;
    {
        let (mut s, _) = open(&dir);
        s.persist(None, &[e(1, 1)]).unwrap();
        second_at = s.size;
        s.persist(None, &[e(1, 2)]).unwrap();
        s.persist(None, &[e(1, 3)]).unwrap();
    }
    let seg = segment_paths(&dir).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[second_at as usize + 12] ^= 0x04;
    fs::write(&seg, &bytes).unwrap();
    let err = DiskStore::open(&dir, &meta(), DiskOptions::default()).unwrap_err();
    match &err {
        WalError::Corrupt { path, offset, .. } => {
            assert_eq!((path, *offset), (&seg, second_at));
        }
        other => panic!("expected corruption, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains(&second_at.to_string()),
        "{msg}"
    );
    // Nothing was changed: the file is left for a human to look at.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_record_in_an_earlier_segment_is_corruption() {
    let dir = tmp("torn-early");
    let opts = DiskOptions {
        segment_bytes: 100,
        ..Default::default()
    };
    {
        let (mut s, _) = DiskStore::open(&dir, &meta(), opts.clone()).unwrap();
        for i in 1..=10 {
            s.persist(None, &[e(1, i)]).unwrap();
        }
    }
    let first = segment_paths(&dir).remove(0);
    let len = fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let err = DiskStore::open(&dir, &meta(), opts).unwrap_err();
    assert!(
        matches!(err, WalError::Corrupt { ref path, .. } if *path == first),
        "{err}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_is_used_by_one_store_at_a_time_and_one_cluster_ever() {
    let dir = tmp("lock");
    let (s, _) = open(&dir);
    let err = DiskStore::open(&dir, &meta(), DiskOptions::default()).unwrap_err();
    assert!(matches!(err, WalError::Locked { .. }), "{err}");
    drop(s);
    let other = ClusterMeta { id: 1, ..meta() };
    let err = DiskStore::open(&dir, &other, DiskOptions::default()).unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

/// The model: what replaying a list of batches must give.
#[derive(Clone, Debug, PartialEq)]
struct Model {
    hs: HardState,
    log: Vec<Entry>,
}

impl Model {
    fn apply(&mut self, r: &record::Record) {
        match r {
            record::Record::HardState(h) => self.hs = *h,
            record::Record::Entry(en) => {
                self.log.truncate((en.index - 1) as usize);
                self.log.push(en.clone());
            }
            record::Record::Marker(_) => unreachable!("no snapshots in this test"),
        }
    }
}

/// Crash points: after every acknowledged `persist` (the fsync point) and at
/// every byte of the write that follows it, a restart must hold everything
/// acknowledged, plus at most a whole-record prefix of the unfinished batch.
#[test]
fn crash_at_every_write_and_fsync_point_loses_nothing_acknowledged() {
    let dir = tmp("crashpoints");
    let batches: Vec<(Option<HardState>, Vec<Entry>)> = vec![
        (Some(hs(1, Some(0), 0)), vec![]),
        (None, vec![e(1, 1), e(1, 2), e(1, 3)]),
        (Some(hs(1, Some(0), 2)), vec![e(1, 4)]),
        (Some(hs(2, Some(1), 2)), vec![e(2, 3), e(2, 4), e(2, 5)]),
        (Some(hs(2, Some(1), 5)), vec![]),
        (None, vec![e(2, 6)]),
    ];
    let mut sizes = vec![0u64];
    {
        let (mut s, _) = open(&dir);
        for (h, es) in &batches {
            s.persist(*h, es).unwrap();
            sizes.push(s.size);
        }
    }
    let seg = segment_paths(&dir).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    let mut acked = Model {
        hs: HardState::default(),
        log: vec![],
    };
    for (k, (h, es)) in batches.iter().enumerate() {
        // The states a crash during batch k may leave: `acked` plus a prefix
        // of the batch's records.
        let mut allowed = vec![acked.clone()];
        let mut m = acked.clone();
        let recs: Vec<record::Record> = es
            .iter()
            .cloned()
            .map(record::Record::Entry)
            .chain(h.map(record::Record::HardState))
            .collect();
        for r in &recs {
            m.apply(r);
            allowed.push(m.clone());
        }
        for cut in sizes[k]..=sizes[k + 1] {
            let d = tmp(&format!("crashpoints-{k}-{cut}"));
            fs::create_dir_all(d.join("wal")).unwrap();
            fs::copy(dir.join("cluster"), d.join("cluster")).unwrap();
            fs::write(d.join("wal").join(segment::name(1)), &full[..cut as usize]).unwrap();
            let (s, rec) = open(&d);
            let st = loaded(&s, rec);
            let got = Model {
                hs: st.hard_state,
                log: st.entries,
            };
            assert!(
                allowed.contains(&got),
                "crash in batch {k} at byte {cut}: recovered {got:?}"
            );
            if cut == sizes[k + 1] {
                assert_eq!(&got, allowed.last().unwrap(), "fsync point after batch {k}");
            }
            drop(s);
            let _ = fs::remove_dir_all(&d);
        }
        acked = m;
    }
    let _ = fs::remove_dir_all(&dir);
}
