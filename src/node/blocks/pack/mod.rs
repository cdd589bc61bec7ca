//! The on-disk block store: append-only pack files under `DATA/blocks/packs/`
//! (`00000001.pack`, `00000002.pack`, ...; the highest is the active one)
//! and an in-memory index, digest -> (pack, offset, length, last touched).
//!
//! Promises:
//! - A put returns once its block is durable: appended to the active pack
//!   and fsynced, by one writer thread that shares one `fdatasync` among
//!   every put waiting (`writer.rs`, group commit).
//! - A read never returns wrong bytes: the record's header must name the
//!   block asked for and its data must match the CRC-32 in the header, else
//!   the read is an I/O error and the record leaves the index (so the next
//!   `getblock`, or repair, fetches the block from a peer).
//! - Open rebuilds the index from the record headers (`open.rs`): it seeks
//!   past the data, except in the active pack's last batch, whose data it
//!   checks; a torn tail there (a crash mid-append) is cut off with one
//!   warning. Corruption before that is skipped to the next good header,
//!   with a warning; the records past it are checked whole (SHA-256).
//! - Removal only marks a record dead in the index. A restart brings removed
//!   blocks back as unreferenced garbage, which collection removes again
//!   after the grace period (restarted too: the safe direction).
//! - Compaction ([`PackStore::compact`]) copies the live records of a sealed
//!   pack at least half dead into the active pack, through the writer (so
//!   durably), then deletes the old pack once nothing in the index points
//!   into it. A crash at any point leaves every live block readable: before
//!   the copies are fsynced the old pack still holds them; after, both do,
//!   and open keeps the newer copy.
//! - Last-touched times live in memory only: at open every block counts as
//!   touched then, so a restart restarts every grace period.

mod open;
pub mod record;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use self::record::{Header, HEADER_LEN};
use self::writer::{Item, Op};
use super::refs::Digest;
use super::{run_blocking, BlockError, Held};

pub use self::writer::MAX_BATCH;

/// Tuning of the pack store.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// A pack is sealed and a new one started before a batch would take it
    /// past this size.
    pub max_pack_bytes: u64,
    /// Puts waiting for the writer at most; further puts wait to enqueue.
    pub queue: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            max_pack_bytes: 256 << 20,
            queue: 1024,
        }
    }
}

/// Where a block's record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    pack: u32,
    offset: u64,
    len: u32,
    touched: SystemTime,
}

impl Loc {
    fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }
}

struct Pack {
    /// Kept open for reads (positioned: the writer's cursor is its own
    /// business) and, for the active pack, the writer's appends.
    file: Arc<File>,
    /// Bytes in the file (all fsynced).
    len: u64,
    /// Record bytes the index points at; `len - live` is dead.
    live: u64,
}

struct State {
    index: HashMap<Digest, Loc>,
    packs: BTreeMap<u32, Pack>,
    /// The pack the writer appends to: the highest.
    active: u32,
    /// Sum of `len` over the index.
    held_bytes: u64,
    /// Set when an fsync failed: no more writes.
    failed: Option<String>,
}

impl State {
    fn pack_mut(&mut self, id: u32) -> &mut Pack {
        self.packs
            .get_mut(&id)
            .expect("invariant: every pack the index points into is open")
    }

    /// Drops `digest` from the index if it is still at `loc`.
    fn unindex(&mut self, digest: &Digest, loc: Option<Loc>) -> bool {
        match self.index.get(digest) {
            Some(l) if loc.is_none_or(|want| *l == want) => {
                let l = *l;
                self.index.remove(digest);
                self.held_bytes -= u64::from(l.len);
                self.pack_mut(l.pack).live -= l.record_len();
                true
            }
            _ => false,
        }
    }
}

/// Counts of the writer's work (see [`PackStore::sync_stats`]).
#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    ops: AtomicU64,
    records: AtomicU64,
    submitted: AtomicU64,
}

/// What the writer has done since the store opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Batches written, each made durable by one `fdatasync`.
    pub batches: u64,
    /// Puts (and compaction copies) answered by those batches.
    pub ops: u64,
    /// Records appended.
    pub records: u64,
    /// Puts handed to the writer's queue.
    pub submitted: u64,
}

/// Lets a test hold the writer after it took its first op, so that what
/// queues meanwhile goes into the same batch.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait_open(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        while *closed {
            closed = self.cv.wait(closed).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = closed;
        self.cv.notify_all();
    }
}

/// Holds the writer (see [`PackStore::hold_writer`]); dropping it lets go.
pub struct WriterHold(Arc<Shared>);

impl Drop for WriterHold {
    fn drop(&mut self) {
        self.0.gate.set(false);
    }
}

struct Shared {
    /// `DATA/blocks/packs`.
    dir: PathBuf,
    state: Mutex<State>,
    stats: Stats,
    gate: Gate,
    opts: PackOptions,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("block index lock poisoned")
    }
}

/// One sealed or active pack, for tests and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackUsage {
    pub id: u32,
    pub path: PathBuf,
    pub bytes: u64,
    pub live: u64,
    pub active: bool,
}

/// What one [`PackStore::compact`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    pub copied_records: u64,
    pub copied_bytes: u64,
    pub deleted_packs: u64,
}

/// The pack store; dropping it finishes the writer's batch and joins it.
pub struct PackStore {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PackStore {
    fn drop(&mut self) {
        self.tx.take();
        self.shared.gate.set(false);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.pack"))
}

fn parse_pack_name(name: &str) -> Option<u32> {
    let id = name.strip_suffix(".pack")?;
    (id.len() == 8 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id.parse().ok())
        .flatten()
}

fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BlockError::Io(format!("fsync of {}: {e}", dir.display())))
}

/// Reads and checks the record at `loc`: `Ok(Err(why))` when the bytes
/// there are not the block (corruption), `Err` when the read failed.
fn read_record(
    file: &File,
    loc: &Loc,
    digest: &Digest,
) -> std::io::Result<Result<Arc<[u8]>, String>> {
    let mut raw = [0u8; HEADER_LEN];
    file.read_exact_at(&mut raw, loc.offset)?;
    let header = match Header::decode(&raw) {
        Ok(h) => h,
        Err(why) => return Ok(Err(why.to_owned())),
    };
    if header.sha256 != *digest || header.len != loc.len {
        return Ok(Err("the record there is another block's".to_owned()));
    }
    // Collected straight into the Arc's one allocation (a `TrustedLen`
    // iterator), then read into.
    let mut data: Arc<[u8]> = std::iter::repeat_n(0u8, loc.len as usize).collect();
    let buf = Arc::get_mut(&mut data).expect("a new Arc is unique");
    file.read_exact_at(buf, loc.offset + HEADER_LEN as u64)?;
    if crc32fast::hash(&data) != header.data_crc {
        return Ok(Err("data checksum mismatch".to_owned()));
    }
    Ok(Ok(data))
}

impl PackStore {
    /// Opens (or creates) the packs under `blocks_root/packs`, rebuilding the
    /// index, and imports loose `blocks_root/<2 hex>/<hash>` files of the
    /// old layout. Blocking I/O: call it off the async workers.
    pub fn open(blocks_root: &Path, opts: PackOptions) -> Result<PackStore, BlockError> {
        let (shared, w) = open::open(blocks_root, opts)?;
        let (tx, rx) = mpsc::channel(shared.opts.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("block-writer".into())
            .spawn(move || writer::run(w, rx))
            .map_err(|e| BlockError::Io(format!("starting the block writer: {e}")))?;
        Ok(PackStore {
            shared,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn sender(&self) -> mpsc::Sender<Op> {
        self.tx
            .clone()
            .expect("invariant: the sender lives until drop")
    }

    pub fn held(&self) -> Held {
        let st = self.shared.lock();
        Held {
            blocks: st.index.len() as u64,
            bytes: st.held_bytes,
        }
    }

    pub fn sync_stats(&self) -> SyncStats {
        let s = &self.shared.stats;
        SyncStats {
            batches: s.batches.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            submitted: s.submitted.load(Ordering::Relaxed),
        }
    }

    /// Holds the writer once it has taken its next op, until the guard is
    /// dropped (tests: what queues meanwhile shares that op's batch).
    pub fn hold_writer(&self) -> WriterHold {
        self.shared.gate.set(true);
        WriterHold(self.shared.clone())
    }

    /// Stores the blocks (digests computed by the caller) durably. Blocks
    /// already held only have their time refreshed.
    pub async fn put(&self, blocks: Vec<(Digest, Arc<[u8]>)>) -> Result<(), BlockError> {
        let now = SystemTime::now();
        let missing: Vec<Item> = {
            let mut st = self.shared.lock();
            blocks
                .into_iter()
                .filter_map(|(digest, data)| match st.index.get_mut(&digest) {
                    Some(loc) => {
                        loc.touched = now;
                        None
                    }
                    None => Some(Item {
                        digest,
                        data,
                        from: None,
                    }),
                })
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let tx = self.sender();
        let mut replies = Vec::new();
        for items in writer::chunk(missing) {
            let (reply, rx) = oneshot::channel();
            tx.send(Op {
                items,
                reply: Some(reply),
            })
            .await
            .map_err(|_| BlockError::Io("the block writer has stopped".into()))?;
            self.shared.stats.submitted.fetch_add(1, Ordering::Relaxed);
            replies.push(rx);
        }
        for rx in replies {
            rx.await
                .map_err(|_| BlockError::Io("the block writer has stopped".into()))??;
        }
        Ok(())
    }

    pub fn touched(&self, digest: &Digest) -> Option<SystemTime> {
        self.shared.lock().index.get(digest).map(|l| l.touched)
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.shared.lock().index.contains_key(digest)
    }

    pub fn has_many(&self, digests: &[Option<Digest>]) -> Vec<bool> {
        let st = self.shared.lock();
        digests
            .iter()
            .map(|d| d.is_some_and(|d| st.index.contains_key(&d)))
            .collect()
    }

    pub fn list(&self) -> Vec<(Digest, SystemTime)> {
        let st = self.shared.lock();
        st.index.iter().map(|(d, l)| (*d, l.touched)).collect()
    }

    /// Marks the block dead (no disk I/O; see the module doc).
    pub fn remove(&self, digest: &Digest) {
        self.shared.lock().unindex(digest, None);
    }

    /// The block's bytes, checked, if held; positioned read on the blocking
    /// pool from the pack's open handle.
    pub async fn get(&self, digest: &Digest) -> Result<Option<Arc<[u8]>>, BlockError> {
        let (loc, file) = {
            let st = self.shared.lock();
            let Some(loc) = st.index.get(digest).copied() else {
                return Ok(None);
            };
            (loc, st.packs[&loc.pack].file.clone())
        };
        let shared = self.shared.clone();
        let digest = *digest;
        run_blocking(move || shared.read_checked(&file, &loc, &digest).map(Some)).await
    }

    /// [`PackStore::get`] of many blocks, in one task on the blocking pool;
    /// in the order asked. A block not held is `None`, and so is one whose
    /// record fails its check (it leaves the index, as with `get`, so the
    /// caller fetches it from a peer); a failed read is an error.
    pub async fn get_many(
        &self,
        digests: Vec<Digest>,
    ) -> Result<Vec<Option<Arc<[u8]>>>, BlockError> {
        let wanted: Vec<Option<(Loc, Arc<File>)>> = {
            let st = self.shared.lock();
            digests
                .iter()
                .map(|d| {
                    st.index
                        .get(d)
                        .map(|loc| (*loc, st.packs[&loc.pack].file.clone()))
                })
                .collect()
        };
        let shared = self.shared.clone();
        run_blocking(move || {
            let mut out = Vec::with_capacity(digests.len());
            for (d, w) in digests.iter().zip(wanted) {
                let Some((loc, file)) = w else {
                    out.push(None);
                    continue;
                };
                match read_record(&file, &loc, d) {
                    Ok(Ok(data)) => out.push(Some(data)),
                    // Logged and dropped from the index there.
                    Ok(Err(_)) => out.push(shared.read_checked(&file, &loc, d).ok()),
                    Err(e) => {
                        return Err(BlockError::Io(format!(
                            "reading {} at offset {}: {e}",
                            pack_path(&shared.dir, loc.pack).display(),
                            loc.offset
                        )))
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every pack with its size and live bytes.
    pub fn usage(&self) -> Vec<PackUsage> {
        let st = self.shared.lock();
        st.packs
            .iter()
            .map(|(id, p)| PackUsage {
                id: *id,
                path: pack_path(&self.shared.dir, *id),
                bytes: p.len,
                live: p.live,
                active: *id == st.active,
            })
            .collect()
    }

    /// One bounded round of compaction on the blocking pool: deletes sealed
    /// packs nothing lives in, then copies at most about `budget` bytes of
    /// live records out of the sealed pack with the most dead bytes (if at
    /// least half of it is dead) and deletes it once it is empty.
    pub async fn compact(&self, budget: u64) -> Result<CompactStats, BlockError> {
        let shared = self.shared.clone();
        let tx = self.sender();
        run_blocking(move || shared.compact(&tx, budget)).await
    }
}

impl Shared {
    fn read_checked(
        &self,
        file: &File,
        loc: &Loc,
        digest: &Digest,
    ) -> Result<Arc<[u8]>, BlockError> {
        let path = pack_path(&self.dir, loc.pack);
        match read_record(file, loc, digest) {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(why)) => {
                let hex = crate::node::command::sha256_hex(digest);
                tracing::error!(
                    "block {hex} at {}:{} is corrupt ({why}); dropped from the index",
                    path.display(),
                    loc.offset
                );
                self.lock().unindex(digest, Some(*loc));
                Err(BlockError::Io(format!(
                    "block {hex} in {} at offset {} is corrupt: {why}",
                    path.display(),
                    loc.offset
                )))
            }
            Err(e) => Err(BlockError::Io(format!(
                "reading {} at offset {}: {e}",
                path.display(),
                loc.offset
            ))),
        }
    }

    fn compact(&self, tx: &mpsc::Sender<Op>, budget: u64) -> Result<CompactStats, BlockError> {
        let mut stats = CompactStats::default();
        let (empty, target) = {
            let mut st = self.lock();
            let active = st.active;
            let empty: Vec<u32> = st
                .packs
                .iter()
                .filter(|(id, p)| **id != active && p.live == 0)
                .map(|(id, _)| *id)
                .collect();
            for id in &empty {
                st.packs.remove(id);
            }
            let target = st
                .packs
                .iter()
                .filter(|(id, p)| **id != active && p.live * 2 <= p.len)
                .max_by_key(|(_, p)| p.len - p.live)
                .map(|(id, p)| (*id, p.file.clone()));
            (empty, target)
        };
        for id in &empty {
            self.delete_pack(*id)?;
            stats.deleted_packs += 1;
        }
        let Some((id, file)) = target else {
            return Ok(stats);
        };
        let mut live: Vec<(Digest, Loc)> = {
            let st = self.lock();
            st.index
                .iter()
                .filter(|(_, l)| l.pack == id)
                .map(|(d, l)| (*d, *l))
                .collect()
        };
        live.sort_unstable_by_key(|(_, l)| l.offset);
        let mut items = Vec::new();
        let mut bytes = 0;
        for (digest, loc) in live {
            if bytes > 0 && bytes + loc.record_len() > budget {
                break;
            }
            // A corrupt record leaves the index here, as on a read.
            let Ok(data) = self.read_checked(&file, &loc, &digest) else {
                continue;
            };
            bytes += loc.record_len();
            items.push(Item {
                digest,
                data,
                from: Some((id, loc.offset)),
            });
        }
        stats.copied_records = items.len() as u64;
        stats.copied_bytes = bytes;
        for items in writer::chunk(items) {
            let (reply, rx) = oneshot::channel();
            tx.blocking_send(Op {
                items,
                reply: Some(reply),
            })
            .map_err(|_| BlockError::Io("the block writer has stopped".into()))?;
            rx.blocking_recv()
                .map_err(|_| BlockError::Io("the block writer has stopped".into()))??;
        }
        let emptied = {
            let mut st = self.lock();
            let emptied = st.active != id && st.packs.get(&id).is_some_and(|p| p.live == 0);
            if emptied {
                st.packs.remove(&id);
            }
            emptied
        };
        if emptied {
            self.delete_pack(id)?;
            stats.deleted_packs += 1;
        }
        if stats != CompactStats::default() {
            tracing::info!(
                copied_records = stats.copied_records,
                copied_bytes = stats.copied_bytes,
                deleted_packs = stats.deleted_packs,
                "block store compacted packs"
            );
        }
        Ok(stats)
    }

    /// Unlinks a pack already out of the map (readers holding its handle
    /// still read it).
    fn delete_pack(&self, id: u32) -> Result<(), BlockError> {
        let path = pack_path(&self.dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BlockError::Io(format!("removing {}: {e}", path.display()))),
        }
        sync_dir(&self.dir)
    }
}
