//! The one thread that appends to the active pack: it takes every put (and
//! compaction copy) waiting in the queue, up to [`MAX_BATCH`] bytes, writes
//! them with one vectored write, makes them durable with ONE `fdatasync`,
//! puts them in the index, and only then answers each of them.
//!
//! Invariants the open scan relies on:
//! - A batch is at most [`MAX_BATCH`] bytes of records, or one record.
//! - A batch goes into one pack; a pack is rolled over (a new file created
//!   and its directory fsynced) only between batches, after the last batch
//!   of the old one was fsynced. So only the newest pack can end in an
//!   unsynced (torn) batch, and only in its last [`MAX_BATCH`] bytes or its
//!   last record.
//! - The index points only at records that were fsynced.
//!
//! A failed write is cut back off the file and the batch answered with the
//! error. A failed `fdatasync` leaves the file in an unknown state (the
//! kernel may have dropped the dirty pages), so the writer refuses every
//! later batch until the store is reopened, which rescans.

use std::collections::HashSet;
use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::record::{Header, HEADER_LEN};
use super::{pack_path, sync_dir, Loc, Pack, Shared};
use crate::node::blocks::refs::Digest;
use crate::node::blocks::BlockError;

/// The most record bytes one batch (one fsync) appends, unless it is a
/// single record.
pub const MAX_BATCH: u64 = 16 << 20;

/// One record to append: a new block, or a compaction's copy of the record
/// at `from` (pack, offset), which takes the index's place only if the
/// index still points there.
pub struct Item {
    pub digest: Digest,
    pub data: Arc<[u8]>,
    pub from: Option<(u32, u64)>,
}

/// Items answered together once they are durable.
pub struct Op {
    pub items: Vec<Item>,
    pub reply: Option<oneshot::Sender<Result<(), BlockError>>>,
}

impl Op {
    pub fn bytes(&self) -> u64 {
        self.items
            .iter()
            .map(|i| HEADER_LEN as u64 + i.data.len() as u64)
            .sum()
    }
}

/// Splits items into ops of at most [`MAX_BATCH`] bytes (or one item).
pub fn chunk(items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut out = Vec::new();
    let mut cur: Vec<Item> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = HEADER_LEN as u64 + item.data.len() as u64;
        if !cur.is_empty() && bytes + n > MAX_BATCH {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Owns the active pack's end.
pub struct Writer {
    pub shared: Arc<Shared>,
    pub file: Arc<File>,
    pub id: u32,
    /// The active pack's length: everything before it is fsynced.
    pub end: u64,
}

impl Writer {
    /// Appends the ops' new records, fsyncs once, indexes them, answers
    /// every op; returns what it answered.
    pub fn commit(&mut self, ops: Vec<Op>) -> Result<(), BlockError> {
        let result = self.commit_inner(&ops);
        for op in ops {
            if let Some(reply) = op.reply {
                let _ = reply.send(result.clone());
            }
        }
        result
    }

    fn commit_inner(&mut self, ops: &[Op]) -> Result<(), BlockError> {
        let shared = self.shared.clone();
        let now = SystemTime::now();
        let mut plan: Vec<&Item> = Vec::new();
        {
            let mut st = shared.lock();
            if let Some(f) = &st.failed {
                return Err(BlockError::Io(f.clone()));
            }
            let mut seen = HashSet::new();
            for item in ops.iter().flat_map(|op| &op.items) {
                match item.from {
                    None => {
                        if let Some(loc) = st.index.get_mut(&item.digest) {
                            loc.touched = now;
                            continue;
                        }
                    }
                    Some((pack, offset)) => {
                        let here = st.index.get(&item.digest);
                        if here.is_none_or(|l| l.pack != pack || l.offset != offset) {
                            continue;
                        }
                    }
                }
                if seen.insert(item.digest) {
                    plan.push(item);
                }
            }
        }
        if plan.is_empty() {
            return Ok(());
        }
        let bytes: u64 = plan
            .iter()
            .map(|i| HEADER_LEN as u64 + i.data.len() as u64)
            .sum();
        if self.end > 0 && self.end + bytes > shared.opts.max_pack_bytes {
            self.roll()?;
        }
        let headers: Vec<[u8; HEADER_LEN]> = plan
            .iter()
            .map(|i| Header::for_data(i.digest, &i.data).encode())
            .collect();
        let start = self.end;
        if let Err(e) = self.append(&plan, &headers) {
            let msg = format!("appending to {}: {e}", self.path().display());
            // Cut the partial batch off; if even that fails, the file's end
            // is unknown: stop writing.
            if let Err(e2) = self.file.set_len(start) {
                shared.lock().failed = Some(format!(
                    "{msg}; cutting it back failed too ({e2}): reopen the store"
                ));
            }
            return Err(BlockError::Io(msg));
        }
        if let Err(e) = self.file.sync_data() {
            let msg = format!(
                "fdatasync of {} failed ({e}); no more writes until the store is reopened",
                self.path().display()
            );
            tracing::error!("{msg}");
            shared.lock().failed = Some(msg.clone());
            return Err(BlockError::Io(msg));
        }
        shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .records
            .fetch_add(plan.len() as u64, Ordering::Relaxed);
        shared
            .stats
            .ops
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        let mut st = shared.lock();
        let mut at = start;
        for item in &plan {
            let len = item.data.len() as u32;
            let rec = HEADER_LEN as u64 + u64::from(len);
            let offset = at;
            at += rec;
            let id = self.id;
            match item.from {
                None => {
                    if st.index.contains_key(&item.digest) {
                        continue;
                    }
                    st.index.insert(
                        item.digest,
                        Loc {
                            pack: id,
                            offset,
                            len,
                            touched: now,
                        },
                    );
                    st.held_bytes += u64::from(len);
                    st.pack_mut(id).live += rec;
                }
                Some((pack, old)) => {
                    let Some(loc) = st.index.get_mut(&item.digest) else {
                        continue;
                    };
                    if loc.pack != pack || loc.offset != old {
                        continue;
                    }
                    loc.pack = id;
                    loc.offset = offset;
                    st.pack_mut(pack).live -= rec;
                    st.pack_mut(id).live += rec;
                }
            }
        }
        st.pack_mut(self.id).len = at;
        self.end = at;
        Ok(())
    }

    fn path(&self) -> std::path::PathBuf {
        pack_path(&self.shared.dir, self.id)
    }

    fn append(&mut self, plan: &[&Item], headers: &[[u8; HEADER_LEN]]) -> std::io::Result<()> {
        let mut f = &*self.file;
        f.seek(SeekFrom::Start(self.end))?;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(plan.len() * 2);
        for (item, h) in plan.iter().zip(headers) {
            slices.push(IoSlice::new(h));
            if !item.data.is_empty() {
                slices.push(IoSlice::new(&item.data));
            }
        }
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let n = f.write_vectored(rest)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the pack file took no bytes",
                ));
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    /// Starts the next pack (the current one is fsynced: every batch is).
    fn roll(&mut self) -> Result<(), BlockError> {
        let id = self.id + 1;
        let file = create_pack(&self.shared.dir, id)?;
        let file = Arc::new(file);
        {
            let mut st = self.shared.lock();
            st.packs.insert(
                id,
                Pack {
                    file: file.clone(),
                    len: 0,
                    live: 0,
                },
            );
            st.active = id;
        }
        tracing::debug!(pack = id, "block store started a new pack");
        self.file = file;
        self.id = id;
        self.end = 0;
        Ok(())
    }
}

/// Creates pack `id` (it must not exist) and makes its name durable.
pub fn create_pack(dir: &Path, id: u32) -> Result<File, BlockError> {
    let path = pack_path(dir, id);
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| BlockError::Io(format!("creating {}: {e}", path.display())))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The writer thread's loop: ends when every sender is gone.
pub fn run(mut w: Writer, mut rx: mpsc::Receiver<Op>) {
    let mut carry: Option<Op> = None;
    loop {
        let first = match carry.take() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => return,
            },
        };
        w.shared.gate.wait_open();
        let mut bytes = first.bytes();
        let mut ops = vec![first];
        while bytes < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => {
                    let n = op.bytes();
                    if bytes + n > MAX_BATCH {
                        carry = Some(op);
                        break;
                    }
                    bytes += n;
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        let _ = w.commit(ops);
    }
}
