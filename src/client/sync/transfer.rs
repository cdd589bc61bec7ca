//! Moving one file's blocks: its blocks handed to the sync's uploader
//! (`uploader.rs`, which batches them with other files' and sends those the
//! cluster lacks), its blocks fetched (`getblocks` batches of about 4 MiB,
//! at most 4 at once across all files, or `getblock` per block from a
//! server without it, at most [`GETBLOCKS_IN_FLIGHT`]; each checked against its hash,
//! the blocks the local copy already has reused), with progress bars for
//! large transfers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::file::Ctx;
use crate::client::content::block_hashes;
use crate::client::{fsutil, ClientError};
use crate::node::blocks::{hash_hex, is_hash};
use crate::xmlrpc::Value;

/// `getblock` calls in flight across all files of a sync.
pub const GETBLOCKS_IN_FLIGHT: usize = 64;
/// Of those, what one `getblocks` batch takes: at most 4 batches at once.
pub const PERMITS_PER_BATCH: usize = GETBLOCKS_IN_FLIGHT / 4;
/// Block bytes asked for in one `getblocks` (the server answers at most
/// 8 MiB).
const BATCH_BYTES: usize = 4 << 20;
/// Blocks asked for in one `getblocks` at most.
const BATCH_BLOCKS: usize = 4096;
/// Blocks at least this large are hashed off the async workers.
const HASH_INLINE_MAX: usize = 256 << 10;

fn progress(ctx: &Ctx, what: &str, name: &str, bytes: u64) -> ProgressBar {
    if !ctx.opts.progress || bytes < (1 << 20) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(bytes);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    pb.set_message(format!("{what} {name}"));
    ctx.bars.add(pb)
}

/// Reads the file again, has the blocks the cluster lacks uploaded, and
/// returns the file's hash list (as read now).
pub(super) async fn upload_blocks(
    ctx: &Ctx,
    name: &str,
    path: &Path,
) -> Result<Vec<String>, ClientError> {
    let p = path.to_path_buf();
    let bs = ctx.opts.block_size;
    let (data, hashes) = tokio::task::spawn_blocking(move || {
        let data = Bytes::from(std::fs::read(&p).map_err(|e| ClientError::io(&p, e))?);
        let hashes = block_hashes(&data, bs);
        Ok::<_, ClientError>((data, hashes))
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("read task failed: {e}")))??;
    // Each block once, in file order.
    let mut seen = std::collections::HashSet::new();
    let blocks: Vec<(String, Bytes)> = hashes
        .iter()
        .enumerate()
        .filter(|(_, h)| seen.insert(h.as_str()))
        .map(|(i, h)| {
            let end = ((i + 1) * bs).min(data.len());
            (h.clone(), data.slice(i * bs..end))
        })
        .collect();
    let total: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
    let pb = progress(ctx, "upload", name, total);
    let r = ctx.uploader.put(blocks, pb.clone()).await;
    pb.finish_and_clear();
    r.map(|()| hashes)
}

/// A downloaded file, written and synced under a temporary name beside its
/// path, for the caller to rename into place (or drop, which removes it).
pub(super) struct Fetched {
    tmp: Option<PathBuf>,
    /// The file's hashes at this client's block size (for the index).
    pub hashes: Vec<String>,
}

impl Fetched {
    /// Renames the file into place at `path`.
    pub fn place(mut self, path: &Path) -> std::io::Result<()> {
        let tmp = self.tmp.take().expect("a fetched file is placed once");
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// The file made of `hashes`: blocks the local copy already has are
/// reused, the rest fetched with `getblocks` (or `getblock`) and checked
/// against their hash. Blocks are asked for in file order and written as
/// soon as the file is whole up to them, by a writer thread that starts the
/// disk writing back every [`WRITEBACK_BYTES`], so the transfer, the write
/// and the final fsync overlap.
pub(super) async fn download(
    ctx: &Ctx,
    name: &str,
    path: &Path,
    hashes: &[String],
) -> Result<Fetched, ClientError> {
    if let Some(h) = hashes.iter().find(|h| !is_hash(h)) {
        return Err(ClientError::Protocol(format!(
            "the remote hash list names {h:?}, which is not a block hash"
        )));
    }
    let p = path.to_path_buf();
    let bs = ctx.opts.block_size;
    let mut have: HashMap<String, Bytes> = tokio::task::spawn_blocking(move || {
        let mut have = HashMap::new();
        if let Ok(old) = std::fs::read(&p) {
            let old = Bytes::from(old);
            for (i, c) in old.chunks(bs).enumerate() {
                have.insert(hash_hex(c), old.slice(i * bs..i * bs + c.len()));
            }
        }
        have
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("read task failed: {e}")))?;
    // Each missing block once, in the order the file needs it.
    let mut asked = HashSet::new();
    let wanted: Vec<String> = hashes
        .iter()
        .filter(|h| !have.contains_key(*h) && asked.insert(h.as_str()))
        .cloned()
        .collect();
    drop(asked);
    let pb = progress(
        ctx,
        "download",
        name,
        (wanted.len() as u64).saturating_mul(bs as u64),
    );
    let tmp = fsutil::temp_beside(path).map_err(|e| ClientError::io(path, e))?;
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = {
        let tmp = tmp.clone();
        tokio::task::spawn_blocking(move || write_stream(&tmp, rx, bs))
    };
    // The blocks of the file before `written` went to the writer.
    let mut written = 0;
    let mut aligned = true;
    // Batches of `getblocks` (about 4 MiB each), at most 4 in flight across
    // all files; one `getblock` per block for a server without it.
    let per_batch = (BATCH_BYTES / bs.max(1)).clamp(1, BATCH_BLOCKS);
    let mut set = JoinSet::new();
    let mut next = wanted.into_iter().peekable();
    let fetched = async {
        loop {
            while set.len() < GETBLOCKS_IN_FLIGHT && next.peek().is_some() {
                let batch = ctx.batch_gets.load(Ordering::Relaxed) && per_batch > 1;
                let n = if batch { per_batch } else { 1 };
                let hashes: Vec<String> = next.by_ref().take(n).collect();
                let permits = if batch { PERMITS_PER_BATCH } else { 1 };
                let permit = ctx
                    .getblocks
                    .clone()
                    .acquire_many_owned(permits as u32)
                    .await
                    .map_err(|_| ClientError::Protocol("the getblock limit closed".into()))?;
                let remote = ctx.remote.clone();
                let batch_gets = batch.then(|| ctx.batch_gets.clone());
                set.spawn(async move {
                    let _permit = permit;
                    match batch_gets {
                        Some(flag) => get_blocks(&remote, hashes, &flag).await,
                        None => {
                            let mut out = Vec::with_capacity(hashes.len());
                            for h in hashes {
                                out.push(get_block(&remote, h).await?);
                            }
                            Ok(out)
                        }
                    }
                });
            }
            // What the file is whole up to goes to the writer.
            while let Some(data) = hashes.get(written).and_then(|h| have.get(h)) {
                let last = written + 1 == hashes.len();
                aligned &= if last {
                    !data.is_empty() && data.len() <= bs
                } else {
                    data.len() == bs
                };
                tx.send(data.clone())
                    .await
                    .map_err(|_| ClientError::Protocol("the file writer stopped".into()))?;
                written += 1;
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let got =
                done.map_err(|e| ClientError::Protocol(format!("download task failed: {e}")))??;
            for (h, data) in got {
                ctx.counters.add_down(data.len() as u64);
                pb.inc(data.len() as u64);
                have.insert(h, data);
            }
        }
        Ok::<(), ClientError>(())
    }
    .await;
    pb.finish_and_clear();
    drop(tx);
    let wrote = writer
        .await
        .map_err(|e| ClientError::Protocol(format!("write task failed: {e}")));
    let mut file = Fetched {
        tmp: Some(tmp.clone()),
        hashes: Vec::new(),
    };
    // A failed write explains a stopped writer better than the fetch's
    // error does.
    let rehashed = match wrote? {
        Ok(r) => r,
        Err(e) => return Err(ClientError::io(&tmp, e)),
    };
    fetched?;
    debug_assert_eq!(written, hashes.len());
    // At this client's block size the list is the remote one when every
    // block but the last is one block size long; else the writer's hashes.
    file.hashes = if aligned && !hashes.is_empty() {
        hashes.to_vec()
    } else {
        tokio::task::spawn_blocking(rehashed)
            .await
            .map_err(|e| ClientError::Protocol(format!("hashing task failed: {e}")))??
    };
    Ok(file)
}

/// Bytes the writer lets pile up before it asks the kernel to start writing
/// them back (`sync_file_range`), so the final fsync has little left.
const WRITEBACK_BYTES: u64 = 8 << 20;
/// Blocks waiting for the writer at most.
const WRITE_QUEUE: usize = 1024;

/// Writes the blocks from `rx` to a new file at `tmp`, in order, and syncs
/// it once `rx` closes. Returns what hashes the file at `bs` when asked
/// (reading it back: only for a file whose blocks were cut at another size).
fn write_stream(
    tmp: &Path,
    mut rx: mpsc::Receiver<Bytes>,
    bs: usize,
) -> std::io::Result<impl FnOnce() -> Result<Vec<String>, ClientError>> {
    use std::io::Write;
    let file = std::fs::File::create(tmp)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let (mut off, mut started) = (0u64, 0u64);
    while let Some(data) = rx.blocking_recv() {
        out.write_all(&data)?;
        off += data.len() as u64;
        if off - started >= WRITEBACK_BYTES {
            out.flush()?;
            start_writeback(out.get_ref(), started, off - started);
            started = off;
        }
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    let tmp = tmp.to_path_buf();
    Ok(move || {
        let data = std::fs::read(&tmp).map_err(|e| ClientError::io(&tmp, e))?;
        Ok(block_hashes(&data, bs))
    })
}

/// Asks the kernel to start writing `len` bytes at `off` back to disk,
/// without waiting (a hint: the fsync at the end is the promise).
fn start_writeback(file: &std::fs::File, off: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor; no memory is
        // passed.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                off as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, off, len);
}

/// The blocks of `hashes` by `getblocks` calls (each answers a prefix, so
/// the rest is asked again), each checked against its hash; on fault 4 the
/// server has no `getblocks`: `batch_gets` is cleared and these blocks come
/// one `getblock` each.
async fn get_blocks(
    remote: &crate::client::remote::Remote,
    hashes: Vec<String>,
    batch_gets: &AtomicBool,
) -> Result<Vec<(String, Bytes)>, ClientError> {
    let mut out = Vec::with_capacity(hashes.len());
    let mut from = 0;
    while from < hashes.len() {
        let ask = Value::Array(
            hashes[from..]
                .iter()
                .map(|h| Value::String(h.clone()))
                .collect(),
        );
        let answer = match remote.any_call("getblocks", &[ask]).await {
            Ok(v) => v,
            Err(ClientError::NoSuchMethod { what, .. }) => {
                if batch_gets.swap(false, Ordering::Relaxed) {
                    tracing::info!("{what} is unknown: blocks come one getblock each from now on");
                }
                for h in hashes[from..].iter().cloned() {
                    out.push(get_block(remote, h).await?);
                }
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        let Value::Array(blocks) = answer else {
            return Err(ClientError::Protocol(format!(
                "getblocks answered {}",
                answer.type_name()
            )));
        };
        if blocks.is_empty() || blocks.len() > hashes.len() - from {
            return Err(ClientError::Protocol(format!(
                "getblocks of {} hashes answered {} blocks",
                hashes.len() - from,
                blocks.len()
            )));
        }
        let asked = &hashes[from..from + blocks.len()];
        let checked = tokio::task::spawn_blocking({
            let asked = asked.to_vec();
            move || check_blocks(asked, blocks)
        })
        .await
        .map_err(|e| ClientError::Protocol(format!("hash task failed: {e}")))??;
        from += checked.len();
        out.extend(checked);
    }
    Ok(out)
}

/// Each answered block against the hash it was asked by.
fn check_blocks(
    asked: Vec<String>,
    blocks: Vec<Value>,
) -> Result<Vec<(String, Bytes)>, ClientError> {
    asked
        .into_iter()
        .zip(blocks)
        .map(|(h, v)| {
            let Value::Base64(data) = v else {
                return Err(ClientError::Protocol(format!(
                    "getblocks answered {} for {h}",
                    v.type_name()
                )));
            };
            let got = hash_hex(&data);
            if got != h {
                return Err(ClientError::Protocol(format!(
                    "getblocks returned for {h} a block whose hash is {got}"
                )));
            }
            Ok((h, Bytes::from(data)))
        })
        .collect()
}

/// One block, checked against its hash.
async fn get_block(
    remote: &crate::client::remote::Remote,
    h: String,
) -> Result<(String, Bytes), ClientError> {
    let v = remote
        .any_call("getblock", &[Value::String(h.clone())])
        .await?;
    let Value::Base64(data) = v else {
        return Err(ClientError::Protocol(format!(
            "getblock({h}) answered {}",
            v.type_name()
        )));
    };
    let data = Bytes::from(data);
    let got = if data.len() < HASH_INLINE_MAX {
        hash_hex(&data)
    } else {
        let check = data.clone();
        tokio::task::spawn_blocking(move || hash_hex(&check))
            .await
            .unwrap_or_default()
    };
    if got != h {
        return Err(ClientError::Protocol(format!(
            "getblock({h}) returned a block whose hash is {got}"
        )));
    }
    Ok((h, data))
}
