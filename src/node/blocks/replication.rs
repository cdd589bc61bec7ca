//! The block methods of one node: `putblock` and `putblocks` store locally
//! and hand the blocks to every peer's pusher (`push.rs`: a bounded queue
//! per peer, whose task sends what waits as one `storeBlocks` call) until a
//! majority (counting this node) hold every block; `getblock` serves a local
//! block or fetches it from a peer; `hasblocks` answers from the local store
//! only.
//!
//! Peers talk to each other with three node-to-node methods (like
//! `appendEntries`, they answer `isCrashed` before looking at arguments):
//! - `surfstore.storeBlocks(blocks:array of base64)` -> `true` once all are
//!   stored durably here (a node that answers it with fault 4 is pushed with
//!   `storeBlock` instead);
//! - `surfstore.storeBlock(block:base64)` -> `true` once stored durably here;
//! - `surfstore.readBlock(hash:string)` -> the block as base64, or `false` when
//!   this node does not hold it (it never asks its own peers).
//!
//! Both go through the node's [`NetFilter`]: a call over a link it cuts is
//! not made, and fails at once as unanswered (an answer arriving after the
//! link was cut is dropped likewise).

mod push;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use push::{PushCounters, Pusher, Ticket};
pub use push::{PushNumbers, BATCH_BLOCKS, BATCH_BYTES, INFLIGHT, QUEUE_UNITS};

use super::{hash_hex, is_hash, BlockError, BlockOptions, BlockStore};
use crate::node::driver::NodeStatus;
use crate::node::peers::NetFilter;
use crate::xmlrpc::client::{Client, Transport};
use crate::xmlrpc::Value;

pub const STORE_BLOCK: &str = "surfstore.storeBlock";
pub const READ_BLOCK: &str = "surfstore.readBlock";
pub const STORE_BLOCKS: &str = "surfstore.storeBlocks";

/// Most blocks one `putblocks` or `storeBlocks` call may carry (the 16 MiB
/// body limit allows some 500,000 empty ones; this bounds the answer).
pub const MAX_BATCH_BLOCKS: usize = 65_536;

/// Most block bytes one `getblocks` answer carries (past the first block):
/// 8 MiB is some 11 MB of base64 in XML, well inside a client's 64 MiB
/// answer limit.
pub const GETBLOCKS_MAX_BYTES: usize = 8 << 20;

/// Local puts of one batch under way at once (each a blocking-pool task).
const LOCAL_PUTS_AT_ONCE: usize = 16;

/// One node's block store plus what it needs to reach its peers. Cheap to clone.
#[derive(Clone)]
pub struct BlockService {
    pub store: BlockStore,
    pub opts: BlockOptions,
    id: u64,
    /// Every member's `host:port`, in id order.
    members: Arc<[String]>,
    /// A pooled client per peer (None for this node).
    peers: Arc<[Option<Client>]>,
    status: watch::Receiver<NodeStatus>,
    /// Which peer calls may be made (open outside `run-cluster.sh`).
    net: NetFilter,
    /// One pusher per peer, started by the first put (so after `with_net`).
    pushers: Arc<OnceLock<Box<[Option<Pusher>]>>>,
    push_counters: Arc<PushCounters>,
}

impl BlockService {
    pub fn new(
        id: u64,
        members: Arc<[String]>,
        store: BlockStore,
        opts: BlockOptions,
        peer_timeout: Duration,
        transport: Transport,
        status: watch::Receiver<NodeStatus>,
    ) -> Self {
        // Blocks are megabytes: give a peer call room beyond the Raft timeout.
        let timeout = peer_timeout.max(Duration::from_secs(5));
        let peers = members
            .iter()
            .enumerate()
            .map(|(i, a)| {
                (i as u64 != id).then(|| Client::with_transport(a, timeout, transport.clone()))
            })
            .collect();
        BlockService {
            store,
            opts,
            id,
            members,
            peers,
            status,
            net: NetFilter::open(),
            pushers: Arc::default(),
            push_counters: Arc::default(),
        }
    }

    /// The same, its peer calls going through `net`.
    pub fn with_net(self, net: NetFilter) -> Self {
        BlockService {
            net,
            pushers: Arc::default(),
            ..self
        }
    }

    /// Calls `method` on peer `peer` through the network filter.
    async fn call_peer(
        &self,
        peer: u64,
        client: &Client,
        method: &str,
        params: &[Value],
    ) -> Result<Value, String> {
        self.net
            .check_call(self.id, peer)
            .map_err(|e| e.to_string())?;
        let answer = client.call(method, params).await.map_err(|e| e.to_string());
        match self.net.check_call(self.id, peer) {
            Ok(()) => answer,
            Err(e) => Err(e.to_string()),
        }
    }

    /// Nodes that must hold a block before `putblock` answers (a majority).
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    fn check_size(&self, data: &[u8]) -> Result<(), BlockError> {
        if data.len() > self.opts.max_block_bytes {
            return Err(BlockError::TooLarge {
                size: data.len(),
                limit: self.opts.max_block_bytes,
            });
        }
        Ok(())
    }

    /// `storeBlock` from a peer: store here, nothing else.
    pub async fn store_local(&self, data: Vec<u8>) -> Result<String, BlockError> {
        self.check_size(&data)?;
        self.store.put(data.into()).await
    }

    /// `storeBlocks` from a peer: store the whole batch here, nothing else.
    pub async fn store_local_many(&self, blocks: Vec<Arc<[u8]>>) -> Result<(), BlockError> {
        for b in &blocks {
            self.check_size(b)?;
        }
        self.store_all(blocks).await.map(drop)
    }

    /// Stores `blocks` here, durably, and returns their hashes in order.
    async fn store_all(&self, blocks: Vec<Arc<[u8]>>) -> Result<Vec<String>, BlockError> {
        if let [one] = &blocks[..] {
            return Ok(vec![self.store.put(one.clone()).await?]);
        }
        // A few at once: each put is a blocking-pool task.
        let mut hashes = vec![String::new(); blocks.len()];
        let mut puts = JoinSet::new();
        let mut waiting = blocks.into_iter().enumerate();
        loop {
            while puts.len() < LOCAL_PUTS_AT_ONCE {
                let Some((i, data)) = waiting.next() else {
                    break;
                };
                let store = self.store.clone();
                puts.spawn(async move { (i, store.put(data).await) });
            }
            let Some(joined) = puts.join_next().await else {
                break;
            };
            let (i, hash) =
                joined.map_err(|e| BlockError::Io(format!("block store task failed: {e}")))?;
            hashes[i] = hash?;
        }
        Ok(hashes)
    }

    /// The pusher of every peer (None for this node), started on first use.
    fn pushers(&self) -> &[Option<Pusher>] {
        self.pushers.get_or_init(|| {
            self.peers
                .iter()
                .enumerate()
                .map(|(peer, client)| {
                    client.as_ref().map(|c| {
                        Pusher::spawn(
                            self.id,
                            peer as u64,
                            c.clone(),
                            self.net.clone(),
                            self.push_counters.clone(),
                        )
                    })
                })
                .collect()
        })
    }

    /// What this node's pushers did so far.
    pub fn push_numbers(&self) -> PushNumbers {
        self.push_counters.numbers()
    }

    /// `putblock`: [`BlockService::put_many`] of one block.
    pub async fn put(&self, data: Vec<u8>) -> Result<String, BlockError> {
        self.check_size(&data)?;
        let mut hashes = self.put_many(vec![data.into()]).await?;
        Ok(hashes.pop().expect("one hash per block"))
    }

    /// `putblocks`: store here, then queue the blocks for every peer's
    /// pusher until a majority (counting this node) hold all of them; the
    /// hashes in order. Pushes still queued when the majority is reached
    /// are sent in the background, but a peer that failed is not tried
    /// again: the repair task brings it the blocks once they are referenced.
    pub async fn put_many(&self, blocks: Vec<Arc<[u8]>>) -> Result<Vec<String>, BlockError> {
        for b in &blocks {
            self.check_size(b)?;
        }
        let deadline = tokio::time::Instant::now() + self.opts.put_timeout;
        let n = blocks.len();
        let blocks: Arc<[Arc<[u8]>]> = blocks.into();
        let hashes = self.store_all(blocks.to_vec()).await?;
        let need = self.majority() - 1;
        if need == 0 || n == 0 {
            return Ok(hashes);
        }
        let mut waits = JoinSet::new();
        for (peer, pusher) in self.pushers().iter().enumerate() {
            let Some(pusher) = pusher.clone() else {
                continue;
            };
            let blocks = blocks.clone();
            waits.spawn(async move {
                let (ticket, answer) = Ticket::new(blocks.len());
                let held = async {
                    pusher.push(&blocks, &ticket, deadline).await?;
                    answer
                        .await
                        .unwrap_or_else(|_| Err("the pusher dropped the blocks".to_owned()))
                };
                (peer, held.await)
            });
        }
        let (mut held, mut failures) = (0usize, Vec::new());
        loop {
            match tokio::time::timeout_at(deadline, waits.join_next()).await {
                Ok(Some(Ok((_, Ok(()))))) => {
                    held += 1;
                    if held >= need {
                        return Ok(hashes);
                    }
                }
                Ok(Some(Ok((peer, Err(e))))) => {
                    failures.push(format!("{}: {e}", self.members[peer]))
                }
                Ok(Some(Err(e))) => failures.push(format!("push task failed: {e}")),
                Ok(None) => break,
                Err(_) => {
                    failures.push(format!("{} peers did not answer in time", waits.len()));
                    break;
                }
            }
        }
        let what = match &hashes[..] {
            [one] => format!("putblock: block {one} is"),
            _ => format!("putblocks: {n} blocks are"),
        };
        Err(BlockError::Unavailable(format!(
            "{what} held by {} of {} nodes after {:?}, {} needed ({})",
            held + 1,
            self.members.len(),
            self.opts.put_timeout,
            self.majority(),
            failures.join("; ")
        )))
    }

    /// `getblock`: the local copy, else the first peer's copy (checked against
    /// its hash and kept here).
    pub async fn get(&self, hash: &str) -> Result<Arc<[u8]>, BlockError> {
        if let Some(d) = self.store.get(hash).await? {
            return Ok(d);
        }
        self.fetch(hash).await
    }

    /// `getblocks`: the blocks of `hashes` in order, as [`BlockService::get`]
    /// finds them (local, else fetched from a peer), but only the longest
    /// prefix whose bytes stay within `max_bytes` (at least one block, even
    /// a larger one). Blocks past the prefix are not looked at, so a client
    /// asks again from where the answer stopped.
    pub async fn get_prefix(
        &self,
        hashes: &[String],
        max_bytes: usize,
    ) -> Result<Vec<Arc<[u8]>>, BlockError> {
        let local = self.store.get_many(hashes).await?;
        let mut out = Vec::with_capacity(local.len());
        let mut bytes = 0usize;
        for (hash, held) in hashes.iter().zip(local) {
            let data = match held {
                Some(d) => d,
                None => self.fetch(hash).await?,
            };
            if !out.is_empty() && bytes + data.len() > max_bytes {
                break;
            }
            bytes += data.len();
            out.push(data);
        }
        Ok(out)
    }

    /// Asks every peer for `hash` in parallel; keeps and returns the first
    /// genuine copy.
    pub async fn fetch(&self, hash: &str) -> Result<Arc<[u8]>, BlockError> {
        if !is_hash(hash) {
            return Err(BlockError::BadHash(hash.to_owned()));
        }
        let mut set = JoinSet::new();
        for (id, client) in self.peers.iter().enumerate() {
            let Some(client) = client.clone() else {
                continue;
            };
            let hash = hash.to_owned();
            let service = self.clone();
            set.spawn(async move {
                let answer = service
                    .call_peer(id as u64, &client, READ_BLOCK, &[Value::String(hash)])
                    .await;
                (id, answer)
            });
        }
        let mut unreachable = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((id, answer)) = joined else { continue };
            match answer {
                Ok(Value::Base64(data)) => {
                    let data: Arc<[u8]> = data.into();
                    let check = data.clone();
                    let genuine = tokio::task::spawn_blocking(move || hash_hex(&check))
                        .await
                        .ok();
                    if genuine.as_deref() != Some(hash) {
                        tracing::warn!(
                            node = self.id,
                            peer = id,
                            "peer sent a block not matching {hash}"
                        );
                        continue;
                    }
                    let stored = self.store.put(data.clone()).await?;
                    debug_assert_eq!(stored, hash);
                    return Ok(data);
                }
                Ok(_) => {}
                Err(e) => unreachable.push(format!("{}: {e}", self.members[id])),
            }
        }
        if unreachable.is_empty() {
            Err(BlockError::NotFound(hash.to_owned()))
        } else {
            Err(BlockError::Unavailable(format!(
                "getblock: block {hash} is not here and these peers did not answer: {}",
                unreachable.join("; ")
            )))
        }
    }

    /// `hasblocks`: the subset of `hashes` held here, in the order given.
    pub async fn has(&self, hashes: Vec<String>) -> Vec<String> {
        let held = self.store.has_many(hashes.clone()).await;
        hashes
            .into_iter()
            .zip(held)
            .filter_map(|(h, held)| held.then_some(h))
            .collect()
    }
}
