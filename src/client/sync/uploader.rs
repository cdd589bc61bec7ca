//! The blocks of every file a sync uploads go through one uploader, which
//! batches them across files: whatever blocks wait when a batch slot is free
//! go together, up to [`BATCH_BLOCKS`] blocks or [`BATCH_BYTES`] bytes, as one
//! `hasblocks` (which of them the cluster holds) and one `putblocks` of the
//! rest. A file's request is answered once every one of its blocks is held by
//! a majority (what `putblocks` and `putblock` promise), so its `updatefile`
//! never goes before its blocks.
//!
//! Bounds: at most [`BATCHES_IN_FLIGHT`] batches are under way, each with one
//! call in flight (or, against a server without `putblocks`, at most
//! [`PUTBLOCKS_PER_BATCH`] `putblock`s); requests wait in a bounded channel,
//! one per file in flight, so the blocks held here are those of the files in
//! flight. A server that answers `putblocks` with fault 4 (NoSuchMethod, a
//! server from before it) gets `putblock` per block for the rest of the run;
//! a batch of one block always goes as `putblock`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use indicatif::ProgressBar;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::client::remote::Remote;
use crate::client::ClientError;
use crate::xmlrpc::Value;

/// Most blocks in one batch (one `hasblocks`, one `putblocks`).
pub const BATCH_BLOCKS: usize = 1024;
/// Most bytes of blocks in one batch (5.3 MiB of base64, well under the
/// server's 16 MiB body); a larger single block goes alone.
pub const BATCH_BYTES: usize = 4 << 20;
/// Batches under way at once.
pub const BATCHES_IN_FLIGHT: usize = 4;
/// `putblock`s in flight for one batch when the server lacks `putblocks`.
pub const PUTBLOCKS_PER_BATCH: usize = 16;

/// What moved, for the summary.
#[derive(Debug, Default)]
pub struct Counters {
    pub blocks_up: AtomicUsize,
    pub bytes_up: AtomicU64,
    pub blocks_down: AtomicUsize,
    pub bytes_down: AtomicU64,
    /// `putblocks` calls answered, and `putblock` calls answered.
    pub putblocks_calls: AtomicUsize,
    pub putblock_calls: AtomicUsize,
}

impl Counters {
    pub fn add_down(&self, bytes: u64) {
        self.blocks_down.fetch_add(1, Ordering::Relaxed);
        self.bytes_down.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// One block: its hash and its bytes (a slice of the file read).
pub type Block = (String, Bytes);

struct Request {
    blocks: Vec<Block>,
    progress: ProgressBar,
    done: oneshot::Sender<Result<(), ClientError>>,
}

/// The handle the files use; the uploader stops once every handle is gone
/// and its batches have finished.
pub struct Uploader {
    tx: mpsc::Sender<Request>,
}

impl Uploader {
    /// Starts the uploader task. `block_size` is the sync's, for the error
    /// that a server with a lower block limit gives.
    pub fn start(
        remote: Remote,
        block_size: usize,
        files_in_flight: usize,
        counters: Arc<Counters>,
    ) -> Uploader {
        let (tx, rx) = mpsc::channel(files_in_flight.max(1));
        let shared = Shared {
            remote,
            block_size,
            counters,
            putblocks: Arc::new(AtomicBool::new(true)),
        };
        tokio::spawn(run(rx, shared));
        Uploader { tx }
    }

    /// Returns once every one of `blocks` is held by the cluster (sent
    /// now, or found held). `progress` counts the bytes as batches land.
    pub async fn put(&self, blocks: Vec<Block>, progress: ProgressBar) -> Result<(), ClientError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let stopped = || ClientError::Protocol("the block uploader stopped".into());
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Request {
                blocks,
                progress,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

#[derive(Clone)]
struct Shared {
    remote: Remote,
    block_size: usize,
    counters: Arc<Counters>,
    /// Cleared by the first fault 4 to a `putblocks`.
    putblocks: Arc<AtomicBool>,
}

/// A request being sent: the blocks not yet in a batch start at `next`;
/// `left` have not been confirmed.
struct Pending {
    blocks: Vec<Block>,
    next: usize,
    left: usize,
    progress: ProgressBar,
    done: Option<oneshot::Sender<Result<(), ClientError>>>,
}

/// (request id, blocks of it in the batch, their bytes).
type Part = (u64, usize, u64);

async fn run(mut rx: mpsc::Receiver<Request>, shared: Shared) {
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    // Requests with blocks not yet in a batch, oldest first.
    let mut queue: VecDeque<u64> = VecDeque::new();
    let mut next_id = 0u64;
    let mut batches: JoinSet<(Vec<Part>, Result<(), ClientError>)> = JoinSet::new();
    let mut open = true;
    loop {
        while batches.len() < BATCHES_IN_FLIGHT && !queue.is_empty() {
            let (blocks, parts) = take_batch(&mut pending, &mut queue);
            let shared = shared.clone();
            batches.spawn(async move { (parts, send_batch(&shared, blocks).await) });
        }
        tokio::select! {
            r = rx.recv(), if open => match r {
                Some(r) => {
                    let id = next_id;
                    next_id += 1;
                    pending.insert(id, Pending {
                        left: r.blocks.len(),
                        blocks: r.blocks,
                        next: 0,
                        progress: r.progress,
                        done: Some(r.done),
                    });
                    queue.push_back(id);
                }
                None => open = false,
            },
            Some(done) = batches.join_next(), if !batches.is_empty() => {
                let (parts, result) = match done {
                    Ok(d) => d,
                    // A batch task cannot panic but by a bug; its files are
                    // then answered by the dropped sender ("stopped").
                    Err(e) => {
                        tracing::error!("a block batch failed: {e}");
                        continue;
                    }
                };
                settle(&mut pending, &mut queue, parts, result);
            }
            else => break,
        }
    }
}

/// The next batch, taken from the oldest requests on.
fn take_batch(
    pending: &mut HashMap<u64, Pending>,
    queue: &mut VecDeque<u64>,
) -> (Vec<Block>, Vec<Part>) {
    let mut blocks = Vec::new();
    let mut parts = Vec::new();
    let mut bytes = 0usize;
    while let Some(&id) = queue.front() {
        let p = pending.get_mut(&id).expect("a queued request is pending");
        let mut n = 0;
        let mut b = 0u64;
        while p.next < p.blocks.len() && blocks.len() < BATCH_BLOCKS {
            let len = p.blocks[p.next].1.len();
            if !blocks.is_empty() && bytes + len > BATCH_BYTES {
                break;
            }
            blocks.push(p.blocks[p.next].clone());
            bytes += len;
            b += len as u64;
            n += 1;
            p.next += 1;
        }
        if n > 0 {
            parts.push((id, n, b));
        }
        if p.next == p.blocks.len() {
            queue.pop_front();
        } else {
            break;
        }
    }
    (blocks, parts)
}

/// Counts a finished batch against its requests and answers those that are
/// complete, or failed.
fn settle(
    pending: &mut HashMap<u64, Pending>,
    queue: &mut VecDeque<u64>,
    parts: Vec<Part>,
    result: Result<(), ClientError>,
) {
    for (id, n, bytes) in parts {
        let Some(p) = pending.get_mut(&id) else {
            continue; // failed earlier
        };
        match &result {
            Ok(()) => {
                p.left -= n;
                p.progress.inc(bytes);
                if p.left == 0 {
                    let p = pending.remove(&id).expect("present");
                    if let Some(done) = p.done {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                let p = pending.remove(&id).expect("present");
                queue.retain(|q| *q != id);
                if let Some(done) = p.done {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One batch: which blocks the cluster lacks, then those sent.
async fn send_batch(shared: &Shared, blocks: Vec<Block>) -> Result<(), ClientError> {
    let mut seen = HashSet::new();
    let unique: Vec<Block> = blocks
        .into_iter()
        .filter(|(h, _)| seen.insert(h.clone()))
        .collect();
    let list = Value::Array(
        unique
            .iter()
            .map(|(h, _)| Value::from(h.as_str()))
            .collect(),
    );
    let answer = shared.remote.any_call("hasblocks", &[list]).await?;
    let held: HashSet<&str> = answer
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let missing: Vec<&Block> = unique
        .iter()
        .filter(|(h, _)| !held.contains(h.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let bytes: u64 = missing.iter().map(|(_, b)| b.len() as u64).sum();
    let c = &shared.counters;
    if missing.len() > 1 && shared.putblocks.load(Ordering::Relaxed) {
        let arg = Value::Array(
            missing
                .iter()
                .map(|(_, b)| Value::Base64(b.to_vec()))
                .collect(),
        );
        match shared.remote.any_call("putblocks", &[arg]).await {
            Ok(Value::Array(hs)) => {
                let same = hs.len() == missing.len()
                    && hs
                        .iter()
                        .zip(&missing)
                        .all(|(a, (h, _))| a.as_str() == Some(h));
                if !same {
                    return Err(ClientError::Protocol(format!(
                        "putblocks of {} blocks answered {} hashes that are not theirs",
                        missing.len(),
                        hs.len()
                    )));
                }
                c.putblocks_calls.fetch_add(1, Ordering::Relaxed);
                c.blocks_up.fetch_add(missing.len(), Ordering::Relaxed);
                c.bytes_up.fetch_add(bytes, Ordering::Relaxed);
                return Ok(());
            }
            Ok(other) => {
                return Err(ClientError::Protocol(format!(
                    "putblocks answered {}",
                    other.type_name()
                )))
            }
            Err(ClientError::NoSuchMethod { what, .. }) => {
                if shared.putblocks.swap(false, Ordering::Relaxed) {
                    tracing::info!("{what} is unknown: blocks go one putblock each from now on");
                }
            }
            Err(e) => return Err(too_large(e, shared.block_size)),
        }
    }
    let mut todo = missing.into_iter().map(|(_, b)| b.clone());
    let mut calls = JoinSet::new();
    loop {
        while calls.len() < PUTBLOCKS_PER_BATCH {
            let Some(block) = todo.next() else { break };
            let shared = shared.clone();
            calls.spawn(async move {
                match shared
                    .remote
                    .any_call("putblock", &[Value::Base64(block.to_vec())])
                    .await
                {
                    Ok(Value::Bool(true)) => {
                        let c = &shared.counters;
                        c.putblock_calls.fetch_add(1, Ordering::Relaxed);
                        c.blocks_up.fetch_add(1, Ordering::Relaxed);
                        c.bytes_up.fetch_add(block.len() as u64, Ordering::Relaxed);
                        Ok(())
                    }
                    Ok(other) => Err(ClientError::Protocol(format!(
                        "putblock answered {other:?}"
                    ))),
                    Err(e) => Err(too_large(e, shared.block_size)),
                }
            });
        }
        match calls.join_next().await {
            None => return Ok(()),
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => {
                return Err(ClientError::Protocol(format!("putblock task failed: {e}")))
            }
        }
    }
}

/// A server started with a lower `--max-block-bytes` than this client was
/// told: no other block will pass either, so the sync stops.
fn too_large(e: ClientError, block_size: usize) -> ClientError {
    match e {
        ClientError::Refused { why, .. } if why.contains("above the limit") => {
            ClientError::BlockTooLarge {
                size: block_size,
                why: format!("the server refused a block: {why}"),
            }
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pending: &mut HashMap<u64, Pending>, id: u64, sizes: &[usize]) {
        let blocks = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("{id}-{i}"), Bytes::from(vec![0u8; n])))
            .collect::<Vec<_>>();
        pending.insert(
            id,
            Pending {
                left: blocks.len(),
                blocks,
                next: 0,
                progress: ProgressBar::hidden(),
                done: None,
            },
        );
    }

    #[test]
    fn batches_span_files_and_keep_to_their_bounds() {
        let mut pending = HashMap::new();
        let mut queue = VecDeque::new();
        for id in 0..3 {
            request(&mut pending, id, &[1024; 600]);
            queue.push_back(id);
        }
        let (b, parts) = take_batch(&mut pending, &mut queue);
        assert_eq!(b.len(), BATCH_BLOCKS);
        assert_eq!(parts, [(0, 600, 600 * 1024), (1, 424, 424 * 1024)]);
        let (b, parts) = take_batch(&mut pending, &mut queue);
        assert_eq!(b.len(), 776);
        assert_eq!(parts, [(1, 176, 176 * 1024), (2, 600, 600 * 1024)]);
        assert!(queue.is_empty());

        // By bytes: a 4 MiB batch, and a block larger than a batch alone.
        request(&mut pending, 3, &[1 << 20, 1 << 20, 1 << 20, 1 << 20, 1]);
        request(&mut pending, 4, &[9 << 20, 5]);
        queue.extend([3, 4]);
        let (b, _) = take_batch(&mut pending, &mut queue);
        assert_eq!(b.len(), 4);
        let (b, parts) = take_batch(&mut pending, &mut queue);
        assert_eq!((b.len(), parts), (1, vec![(3, 1, 1)]));
        let (b, _) = take_batch(&mut pending, &mut queue);
        assert_eq!(b.len(), 1, "a large block goes alone");
        let (b, _) = take_batch(&mut pending, &mut queue);
        assert_eq!(b.len(), 1);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_failed_batch_fails_its_files_only() {
        let mut pending = HashMap::new();
        let mut queue = VecDeque::new();
        let mut answers = Vec::new();
        for id in 0..3 {
            request(&mut pending, id, &[10; 800]);
            let (tx, rx) = oneshot::channel();
            pending.get_mut(&id).unwrap().done = Some(tx);
            answers.push(rx);
            queue.push_back(id);
        }
        let (_, first) = take_batch(&mut pending, &mut queue); // 0 and part of 1
        let (_, second) = take_batch(&mut pending, &mut queue); // rest of 1, part of 2
        settle(
            &mut pending,
            &mut queue,
            first,
            Err(ClientError::Protocol("x".into())),
        );
        assert_eq!(queue, [2], "the failed file is not sent further");
        settle(&mut pending, &mut queue, second, Ok(()));
        let (_, third) = take_batch(&mut pending, &mut queue);
        settle(&mut pending, &mut queue, third, Ok(()));
        assert!(pending.is_empty());
        let got: Vec<bool> = answers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().is_ok())
            .collect();
        assert_eq!(got, [false, false, true]);
    }
}
