//! `DiskStore::open`: rebuilds the store from the snapshot file and the
//! segments, checking the log before changing it on disk (stray temp files aside).
//!
//! Rules, in order:
//! 1. `DIR/snapshot`, if present, must be whole (magic, version, length,
//!    CRC) or the node refuses to start; stray `snapshot.*.tmp` and
//!    `wal/*.wal.tmp` files (an interrupted prepare or compaction) are
//!    removed.
//! 2. Replay starts at the last segment whose head holds a base marker (a
//!    compaction's segment, renamed into place only once whole); older
//!    segments are obsolete and removed.
//! 3. Records apply in order to a `MemStore` (the log handed to the core,
//!    `Recovery::loaded`) and to a `LogShape` (what the store keeps: no
//!    entry data; the two must agree): a hard state replaces the
//!    previous one; an entry at or below the log's start is skipped, one
//!    beyond the last index + 1 (a gap) is corruption; a marker at or below
//!    the log's start is ignored, one at the snapshot file's (index, term)
//!    applies the file by the `save_snapshot` rule, an older one applies
//!    that rule with no data (a later marker or the file replaces it), and
//!    one the file does not cover is corruption.
//! 4. If the file is newer than the last marker replayed (a crash between
//!    installing the file and writing its marker), its rule applies to the
//!    replayed log, and the interrupted compaction is done again (with the
//!    entries just replayed).
//! 5. The hard state's commit is raised to at least the snapshot's index.
//! 6. A torn tail of the last segment is cut off (with a warning); a torn
//!    record in any other segment is corruption.
//! 7. What was read is made durable before the store is used (the tail
//!    segment and both directories fsynced): after a process crash some of
//!    it may be only in the page cache, and the node is about to act on it.
//!    A data directory that did not exist is created with its parent fsynced.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::record::{self, Record};
use super::segment;
use super::shape::LogShape;
use super::{io, DiskOptions, DiskStore, Recovery, WalError, WalStats};
use crate::node::raft::Snapshot;
use crate::node::storage::fs::{read_if_exists, FileSystem};
use crate::node::storage::meta::ClusterMeta;
use crate::node::storage::snapshot::{self, SnapshotPreparer, SNAPSHOT_FILE};
use crate::node::storage::{LogStore, MemStore};

pub(super) fn open(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    meta: &ClusterMeta,
    opts: DiskOptions,
) -> Result<(DiskStore, Recovery), WalError> {
    let started = Instant::now();
    create_dir_durably(&*fs, dir).map_err(io(dir))?;
    let lock = match fs.try_lock(dir).map_err(io(&dir.join("LOCK")))? {
        Some(lock) => lock,
        None => {
            return Err(WalError::Locked {
                dir: dir.to_owned(),
            })
        }
    };
    meta.claim_in(&*fs, dir)?;
    let wal_dir = dir.join("wal");
    let names = fs.list_dir(dir).map_err(io(dir))?;
    if !names.iter().any(|n| n == "wal") {
        fs.create_dir_all(&wal_dir).map_err(io(&wal_dir))?;
        fs.sync_dir(dir).map_err(io(dir))?;
    }
    for name in names.iter().filter(|n| snapshot::is_temp_name(n)) {
        let path = dir.join(name);
        tracing::info!(file = %path.display(), "removing an unfinished snapshot temp file");
        fs.remove_file(&path).map_err(io(&path))?;
    }

    let mut rec = Recovery::default();
    let snap_started = Instant::now();
    let snap_path = dir.join(SNAPSHOT_FILE);
    let file_snap = match read_if_exists(&*fs, &snap_path).map_err(io(&snap_path))? {
        None => Snapshot::default(),
        Some(bytes) => {
            snapshot::decode(Bytes::from(bytes)).map_err(|reason| WalError::Snapshot {
                path: snap_path.clone(),
                reason,
            })?
        }
    };
    rec.snapshot_took = snap_started.elapsed();

    let segment::Listing { segments, temps } =
        segment::list(&*fs, &wal_dir).map_err(io(&wal_dir))?;
    for path in &temps {
        tracing::info!(file = %path.display(), "removing an unfinished compaction segment");
        fs.remove_file(path).map_err(io(path))?;
    }

    // Read back from the newest segment to the last compaction's.
    let mut scans = Vec::new();
    for (k, (_, path)) in segments.iter().enumerate().rev() {
        let is_last = k + 1 == segments.len();
        let data = Bytes::from(fs.read(path).map_err(io(path))?);
        let scan = record::scan(&data).map_err(|c| WalError::Corrupt {
            path: path.clone(),
            offset: c.offset as u64,
            reason: c.reason,
        })?;
        if let Some(torn) = &scan.torn {
            if !is_last {
                return Err(WalError::Corrupt {
                    path: path.clone(),
                    offset: torn.offset as u64,
                    reason: format!("{} in a segment that is not the last", torn.reason),
                });
            }
        }
        let is_base = scan
            .records
            .iter()
            .take(2)
            .any(|r| matches!(r, Record::Marker(m) if m.base));
        scans.push((k, path.clone(), data.len(), scan));
        if is_base {
            break;
        }
    }
    scans.reverse();
    let first_replayed = scans.first().map_or(0, |s| s.0);
    rec.segments = scans.len();
    rec.obsolete_segments = first_replayed;

    let mut m = MemStore::new();
    let mut shape = LogShape::default();
    let mut tail = None;
    for (k, path, len, scan) in scans {
        let seq = segments[k].0;
        rec.records += scan.records.len();
        for (r, off) in scan.records.into_iter().zip(scan.offsets) {
            let corrupt = |reason: String| WalError::Corrupt {
                path: path.clone(),
                offset: off as u64,
                reason,
            };
            match r {
                Record::HardState(hs) => {
                    m.persist(Some(hs), &[]).expect("memory");
                    shape.set_hard_state(hs);
                }
                Record::Entry(e) => {
                    let (start, last) = (m.snapshot().index, m.last_index());
                    if e.index == 0 || e.index > last + 1 {
                        return Err(corrupt(format!(
                            "entry {} does not follow the log (last index {last}, snapshot {start})",
                            e.index
                        )));
                    }
                    if e.index > start {
                        shape.append(std::slice::from_ref(&e), seq);
                        m.persist(None, &[e]).expect("memory");
                    }
                }
                Record::Marker(mk) => {
                    if !m.is_newer(mk.index) {
                        continue;
                    }
                    if (mk.index, mk.term) == (file_snap.index, file_snap.term) {
                        m.apply_snapshot(file_snap.clone());
                        shape.apply_snapshot(mk.index, mk.term);
                    } else if mk.index < file_snap.index {
                        m.apply_snapshot(Snapshot {
                            index: mk.index,
                            term: mk.term,
                            data: Bytes::new(),
                        });
                        shape.apply_snapshot(mk.index, mk.term);
                    } else {
                        return Err(corrupt(format!(
                            "marker for a snapshot at index {} (term {}), but {} holds index {} (term {})",
                            mk.index,
                            mk.term,
                            snap_path.display(),
                            file_snap.index,
                            file_snap.term
                        )));
                    }
                }
            }
        }
        if k + 1 == segments.len() {
            tail = Some((path, len, scan.valid_len, scan.torn));
        }
    }
    let finish_snapshot = m.is_newer(file_snap.index);
    if finish_snapshot {
        tracing::warn!(
            file = %snap_path.display(),
            index = file_snap.index,
            term = file_snap.term,
            "the snapshot file is newer than the write-ahead log's last marker (a crash inside save_snapshot); applying it and compacting"
        );
        m.apply_snapshot(file_snap.clone());
        shape.apply_snapshot(file_snap.index, file_snap.term);
    }
    let mut hs = m.hard_state();
    hs.commit = hs.commit.max(m.snapshot().index);

    m.persist(Some(hs), &[]).expect("memory");
    shape.set_hard_state(hs);
    assert_eq!(
        m.snapshot().index,
        file_snap.index,
        "recovery invariant: the log starts at the snapshot file"
    );
    assert_eq!(
        (
            shape.hard_state(),
            shape.snapshot_index(),
            shape.snapshot_term(),
            shape.last_index()
        ),
        (
            m.hard_state(),
            m.snapshot().index,
            m.snapshot().term,
            m.last_index()
        ),
        "recovery invariant: the log's shape is the replayed log's"
    );
    assert!(
        m.entries()
            .iter()
            .all(|e| shape.term_at(e.index) == Some(e.term)),
        "recovery invariant: the log's shape has the replayed entries' terms"
    );

    // Everything checked: now change the disk.
    let (seq, file, size) = match tail {
        Some((path, len, valid_len, torn)) => {
            let mut f = fs.open_append(&path).map_err(io(&path))?;
            if let Some(torn) = torn {
                tracing::warn!(
                    file = %path.display(),
                    offset = torn.offset,
                    dropped_bytes = len - valid_len,
                    "write-ahead log ends in a torn record ({}); truncating it",
                    torn.reason
                );
                f.set_len(valid_len as u64).map_err(io(&path))?;
                rec.truncated = Some((path.clone(), torn.offset as u64, torn.reason));
            }
            f.sync_data().map_err(io(&path))?;
            (
                segments.last().expect("a tail segment").0,
                f,
                valid_len as u64,
            )
        }
        None => {
            let path = wal_dir.join(segment::name(1));
            let f = fs.open_append(&path).map_err(io(&path))?;
            (1, f, 0)
        }
    };
    let obsolete = &segments[..first_replayed];
    for (_, path) in obsolete {
        tracing::info!(file = %path.display(), "removing a segment an earlier compaction made obsolete");
        fs.remove_file(path).map_err(io(path))?;
    }
    // What recovery read is what the node will act on (and may ack): after
    // a process crash some of it may still be only in the page cache, so it
    // is made durable before anything else happens.
    fs.sync_dir(dir).map_err(io(dir))?;
    fs.sync_dir(&wal_dir).map_err(io(&wal_dir))?;
    rec.entries = m.entries().len() as u64;
    rec.snapshot_index = m.snapshot().index;
    rec.finished_snapshot = finish_snapshot;
    let mut store = DiskStore {
        preparer: SnapshotPreparer::new(fs.clone(), dir),
        fs,
        dir: dir.to_owned(),
        wal_dir: wal_dir.clone(),
        opts,
        file,
        seq,
        size,
        shape,
        buf: Vec::new(),
        stats: WalStats::default(),
        failed: None,
        unsynced: false,
        _lock: lock,
    };
    if finish_snapshot {
        // The replayed log already starts at the snapshot: all of it stays.
        store
            .compact(file_snap.index, file_snap.term, m.entries())
            .map_err(io(&wal_dir))?;
        store.shape.relocate(store.seq);
    }
    rec.loaded = m.into_stored();
    rec.took = started.elapsed();
    Ok((store, rec))
}

/// Creates `dir` (and missing parents) so that it survives power loss: each
/// created directory's parent is fsynced.
fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match fs.list_dir(at) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(at),
            Err(e) => return Err(e),
        }
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => fs.sync_dir(p)?,
            _ => fs.sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}
