//! One pusher per peer: the blocks `putblock` and `putblocks` must bring to
//! that peer wait in a bounded queue, and one task sends whatever is waiting
//! as one `storeBlocks` call, so concurrent puts share peer calls.
//!
//! Promises:
//! - The queue is bounded by bytes and by count: every queued (or in flight)
//!   block holds [`block_cost`] units of the peer's [`QUEUE_UNITS`] until its
//!   call is answered or given up. A put that finds no room waits for it
//!   (back-pressure) until its deadline, then fails for that peer.
//! - A call carries at most [`BATCH_BYTES`] of blocks (a single larger block
//!   goes alone) and [`BATCH_BLOCKS`] blocks; at most [`INFLIGHT`] calls per
//!   peer are under way, over the peer's pooled keep-alive [`Client`].
//! - A failed call is tried again with backoff for the blocks whose put still
//!   waits and whose deadline has not passed; the others are given up (the
//!   repair task brings a peer the blocks files reference).
//! - A peer that answers `storeBlocks` with fault 4 (a node from before it)
//!   gets `storeBlock` calls from then on; one that refuses a batch with
//!   fault 3 (a block over its own limit) gets that batch block by block, so
//!   one bad block does not sink the others.
//! - Every call goes through the node's [`NetFilter`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::node::error::{FAULT_BAD_REQUEST, FAULT_NO_SUCH_METHOD};
use crate::node::peers::NetFilter;
use crate::xmlrpc::client::{CallError, Client};
use crate::xmlrpc::Value;

use super::{STORE_BLOCK, STORE_BLOCKS};

/// Most block bytes in one `storeBlocks` call: base64 makes it 5.3 MiB of
/// body, well under the 16 MiB a node accepts.
pub const BATCH_BYTES: usize = 4 << 20;
/// Most blocks in one `storeBlocks` call.
pub const BATCH_BLOCKS: usize = 4096;
/// `storeBlocks` calls under way to one peer at a time.
pub const INFLIGHT: usize = 2;
/// What one peer's queue holds, in units of [`block_cost`]: 32 MiB of
/// blocks, or 65,536 empty ones.
pub const QUEUE_UNITS: usize = 32 << 20;
/// Units a block costs beyond its bytes, so the count is bounded too.
const BLOCK_UNITS: usize = 512;
/// Queue messages (one per put) waiting for the pusher task; the units
/// bound what they hold.
const QUEUE_MESSAGES: usize = 1024;
/// `storeBlock` calls under way at once to a peer that takes no batches.
const SINGLES_AT_ONCE: usize = 8;

/// The queue units a block of `len` bytes holds.
pub fn block_cost(len: usize) -> usize {
    len.saturating_add(BLOCK_UNITS)
}

/// What the pushers of one node did, for tests and the bench.
#[derive(Debug, Default)]
pub struct PushCounters {
    /// Blocks taken into the peers' queues (a block for two peers counts twice).
    pub blocks_queued: AtomicU64,
    /// `storeBlocks` calls made (each try counts).
    pub batch_calls: AtomicU64,
    /// `storeBlock` calls made (to old peers, or to split a refused batch).
    pub single_calls: AtomicU64,
    /// Blocks a peer confirmed it holds.
    pub blocks_pushed: AtomicU64,
}

/// [`PushCounters`] read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushNumbers {
    pub blocks_queued: u64,
    pub batch_calls: u64,
    pub single_calls: u64,
    pub blocks_pushed: u64,
}

impl PushCounters {
    pub fn numbers(&self) -> PushNumbers {
        PushNumbers {
            blocks_queued: self.blocks_queued.load(Ordering::Relaxed),
            batch_calls: self.batch_calls.load(Ordering::Relaxed),
            single_calls: self.single_calls.load(Ordering::Relaxed),
            blocks_pushed: self.blocks_pushed.load(Ordering::Relaxed),
        }
    }
}

/// One put's wait on one peer: done when the peer holds all `left` blocks,
/// or failed at the first block given up.
pub struct Ticket {
    state: Mutex<TicketState>,
}

struct TicketState {
    /// Blocks the peer has not confirmed yet.
    left: usize,
    /// Taken when the ticket is decided.
    tx: Option<oneshot::Sender<Result<(), String>>>,
}

impl Ticket {
    pub fn new(blocks: usize) -> (Arc<Ticket>, oneshot::Receiver<Result<(), String>>) {
        let (tx, rx) = oneshot::channel();
        let mut state = TicketState {
            left: blocks,
            tx: Some(tx),
        };
        if blocks == 0 {
            let _ = state.tx.take().map(|tx| tx.send(Ok(())));
        }
        let ticket = Ticket {
            state: Mutex::new(state),
        };
        (Arc::new(ticket), rx)
    }

    fn done(&self, result: Result<(), String>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                st.left = st.left.saturating_sub(1);
                if st.left == 0 {
                    let _ = st.tx.take().map(|tx| tx.send(Ok(())));
                }
            }
            Err(e) => {
                let _ = st.tx.take().map(|tx| tx.send(Err(e)));
            }
        }
    }

    /// Nobody waits for this ticket any more (its put answered, or failed).
    fn abandoned(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }
}

/// A block on its way to one peer.
struct Push {
    data: Arc<[u8]>,
    ticket: Arc<Ticket>,
    deadline: Instant,
    /// The queue units of the put this block came with, shared by its blocks.
    _room: Arc<OwnedSemaphorePermit>,
}

/// The sending side of one peer's queue. Cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    tx: mpsc::Sender<Vec<Push>>,
    room: Arc<Semaphore>,
    peer: u64,
    counters: Arc<PushCounters>,
}

impl Pusher {
    /// Starts the pusher task for peer `peer` (on the current runtime); it
    /// ends once every clone of the returned `Pusher` is gone and its calls
    /// are answered.
    pub fn spawn(
        node: u64,
        peer: u64,
        client: Client,
        net: NetFilter,
        counters: Arc<PushCounters>,
    ) -> Pusher {
        let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
        let link = Arc::new(Link {
            node,
            peer,
            client,
            net,
            counters: counters.clone(),
            old: AtomicBool::new(false),
        });
        tokio::spawn(run(link, rx));
        Pusher {
            tx,
            room: Arc::new(Semaphore::new(QUEUE_UNITS)),
            peer,
            counters,
        }
    }

    /// Queues `blocks` for the peer, waiting for room until `deadline`;
    /// `ticket` learns when the peer holds them.
    pub async fn push(
        &self,
        blocks: &[Arc<[u8]>],
        ticket: &Arc<Ticket>,
        deadline: Instant,
    ) -> Result<(), String> {
        let units = blocks
            .iter()
            .fold(0usize, |n, b| n.saturating_add(block_cost(b.len())))
            .min(QUEUE_UNITS);
        let full = || {
            format!(
                "the queue to node {} stayed full (peer behind or unreachable)",
                self.peer
            )
        };
        let room = match tokio::time::timeout_at(
            deadline,
            self.room.clone().acquire_many_owned(units as u32),
        )
        .await
        {
            Ok(Ok(permit)) => Arc::new(permit),
            Ok(Err(_)) => return Err("the pusher is closed".to_owned()),
            Err(_) => return Err(full()),
        };
        let pushes = blocks
            .iter()
            .map(|data| Push {
                data: data.clone(),
                ticket: ticket.clone(),
                deadline,
                _room: room.clone(),
            })
            .collect();
        match tokio::time::timeout_at(deadline, self.tx.send(pushes)).await {
            Ok(Ok(())) => {
                self.counters
                    .blocks_queued
                    .fetch_add(blocks.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(_)) => Err("the pusher is closed".to_owned()),
            Err(_) => Err(full()),
        }
    }
}

/// What the pusher task needs to reach its peer.
struct Link {
    node: u64,
    peer: u64,
    client: Client,
    net: NetFilter,
    counters: Arc<PushCounters>,
    /// The peer answered `storeBlocks` with fault 4: it takes `storeBlock` only.
    old: AtomicBool,
}

/// Why a peer call produced no `true`.
enum Failed {
    Fault(i32, String),
    Other(String),
}

impl Failed {
    fn message(self) -> String {
        match self {
            Failed::Fault(_, m) | Failed::Other(m) => m,
        }
    }
}

impl Link {
    /// Calls `method` on the peer through the network filter (as every
    /// block call is): a cut link fails at once, and an answer arriving
    /// after the link was cut is dropped.
    async fn call(&self, method: &str, params: &[Value]) -> Result<(), Failed> {
        let cut = |e: &dyn std::fmt::Display| Failed::Other(e.to_string());
        self.net
            .check_call(self.node, self.peer)
            .map_err(|e| cut(&e))?;
        let answer = self.client.call(method, params).await;
        self.net
            .check_call(self.node, self.peer)
            .map_err(|e| cut(&e))?;
        match answer {
            Ok(Value::Bool(true)) => Ok(()),
            Ok(other) => Err(Failed::Other(format!(
                "{method} answered {} instead of true",
                other.type_name()
            ))),
            Err(CallError::Fault(f)) => Err(Failed::Fault(f.code, f.to_string())),
            Err(e) => Err(Failed::Other(e.to_string())),
        }
    }

    /// One `storeBlocks` try for `batch`; returns the blocks to try again
    /// and why (the others are decided).
    async fn try_batch(self: &Arc<Self>, batch: Vec<Push>) -> (Vec<Push>, String) {
        let params = [Value::Array(
            batch
                .iter()
                .map(|p| Value::Base64(p.data.to_vec()))
                .collect(),
        )];
        self.counters.batch_calls.fetch_add(1, Ordering::Relaxed);
        match self.call(STORE_BLOCKS, &params).await {
            Ok(()) => {
                self.counters
                    .blocks_pushed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for p in &batch {
                    p.ticket.done(Ok(()));
                }
                (Vec::new(), String::new())
            }
            Err(Failed::Fault(FAULT_NO_SUCH_METHOD, m)) => {
                tracing::info!(
                    node = self.node,
                    peer = self.peer,
                    "peer does not know storeBlocks ({m}); pushing it one block at a time"
                );
                self.old.store(true, Ordering::Relaxed);
                self.try_singles(batch).await
            }
            Err(Failed::Fault(FAULT_BAD_REQUEST, _)) if batch.len() > 1 => {
                self.try_singles(batch).await
            }
            Err(e) => (batch, e.message()),
        }
    }

    /// One `storeBlock` try for each block of `batch`, a few at once. A
    /// block the peer refuses (fault 3) is given up; the others that failed
    /// are returned to try again.
    async fn try_singles(self: &Arc<Self>, batch: Vec<Push>) -> (Vec<Push>, String) {
        let mut waiting = batch.into_iter();
        let mut calls = JoinSet::new();
        let (mut again, mut last) = (Vec::new(), String::new());
        loop {
            while calls.len() < SINGLES_AT_ONCE {
                let Some(p) = waiting.next() else { break };
                let link = self.clone();
                calls.spawn(async move {
                    link.counters.single_calls.fetch_add(1, Ordering::Relaxed);
                    let value = Value::Base64(p.data.to_vec());
                    let r = link.call(STORE_BLOCK, std::slice::from_ref(&value)).await;
                    (p, r)
                });
            }
            let Some(joined) = calls.join_next().await else {
                break;
            };
            let Ok((p, r)) = joined else { continue };
            match r {
                Ok(()) => {
                    self.counters.blocks_pushed.fetch_add(1, Ordering::Relaxed);
                    p.ticket.done(Ok(()));
                }
                Err(Failed::Fault(FAULT_BAD_REQUEST, m)) => p.ticket.done(Err(m)),
                Err(e) => {
                    last = e.message();
                    again.push(p);
                }
            }
        }
        (again, last)
    }

    /// Sends `batch` until every block is decided; `_slot` is its place
    /// among the peer's [`INFLIGHT`] calls.
    async fn send(self: Arc<Self>, mut batch: Vec<Push>, _slot: OwnedSemaphorePermit) {
        let mut backoff = Duration::from_millis(25);
        loop {
            let (left, why) = if self.old.load(Ordering::Relaxed) {
                self.try_singles(batch).await
            } else {
                self.try_batch(batch).await
            };
            let now = Instant::now();
            let (keep, give_up): (Vec<Push>, Vec<Push>) = left
                .into_iter()
                .partition(|p| p.deadline > now && !p.ticket.abandoned());
            for p in give_up {
                p.ticket.done(Err(why.clone()));
            }
            let Some(until) = keep.iter().map(|p| p.deadline).max() else {
                return;
            };
            batch = keep;
            tokio::time::sleep_until((now + backoff).min(until)).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

/// The pusher task: takes what waits in the queue, at most a batch at a
/// time, and sends it with at most [`INFLIGHT`] calls under way.
async fn run(link: Arc<Link>, mut rx: mpsc::Receiver<Vec<Push>>) {
    let slots = Arc::new(Semaphore::new(INFLIGHT));
    // Blocks taken from the queue but not yet sent; they still hold their
    // queue units, so this is bounded by the queue.
    let mut carry: VecDeque<Push> = VecDeque::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if carry.is_empty() {
            match rx.recv().await {
                Some(pushes) => carry.extend(pushes),
                None => return,
            }
        }
        let batch = take_batch(&mut carry, &mut rx, link.peer);
        if !batch.is_empty() {
            tokio::spawn(link.clone().send(batch, slot));
        }
    }
}

/// Takes the next batch from `carry`, refilled from `rx` without waiting:
/// up to [`BATCH_BYTES`] and [`BATCH_BLOCKS`], at least one block. Blocks
/// whose deadline passed while they waited are given up.
fn take_batch(
    carry: &mut VecDeque<Push>,
    rx: &mut mpsc::Receiver<Vec<Push>>,
    peer: u64,
) -> Vec<Push> {
    let now = Instant::now();
    let (mut batch, mut bytes) = (Vec::new(), 0usize);
    loop {
        if carry.is_empty() {
            match rx.try_recv() {
                Ok(pushes) => carry.extend(pushes),
                Err(_) => break,
            }
        }
        let Some(next) = carry.front() else { break };
        let full =
            bytes.saturating_add(next.data.len()) > BATCH_BYTES || batch.len() >= BATCH_BLOCKS;
        if full && !batch.is_empty() {
            break;
        }
        let Some(p) = carry.pop_front() else { break };
        if p.deadline <= now {
            p.ticket.done(Err(format!(
                "the queue to node {peer} was behind: not sent within the put timeout"
            )));
            continue;
        }
        bytes += p.data.len();
        batch.push(p);
    }
    batch
}
