//! The block methods of one node: `putblock` stores locally and pushes to the
//! peers in parallel until a majority (counting this node) hold the block;
//! `getblock` serves a local block or fetches it from a peer; `hasblocks`
//! answers from the local store only.
//!
//! Peers talk to each other with two node-to-node methods (like
//! `appendEntries`, they answer `isCrashed` before looking at arguments):
//! - `surfstore.storeBlock(block:base64)` -> `true` once stored durably here;
//! - `surfstore.readBlock(hash:string)` -> the block as base64, or `false` when
//!   this node does not hold it (it never asks its own peers).
//!
//! Both go through the node's [`NetFilter`]: a call over a link it cuts is
//! not made, and fails at once as unanswered (an answer arriving after the
//! link was cut is dropped likewise).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{hash_hex, is_hash, BlockError, BlockOptions, BlockStore};
use crate::node::driver::NodeStatus;
use crate::node::peers::NetFilter;
use crate::xmlrpc::client::{Client, Transport};
use crate::xmlrpc::Value;

pub const STORE_BLOCK: &str = "surfstore.storeBlock";
pub const READ_BLOCK: &str = "surfstore.readBlock";

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
        }
    }

    /// The same, its peer calls going through `net`.
    pub fn with_net(self, net: NetFilter) -> Self {
        BlockService { net, ..self }
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

    /// `putblock`: store here, then push to peers until a majority hold it.
    /// Calls already under way when the majority is reached finish in the
    /// background, but a peer that failed is not tried again: the repair task
    /// brings it the block once it is referenced.
    pub async fn put(&self, data: Vec<u8>) -> Result<String, BlockError> {
        self.check_size(&data)?;
        let hash = self.store.put(data.clone().into()).await?;
        let need = self.majority() - 1;
        if need == 0 {
            return Ok(hash);
        }
        let value = Arc::new(Value::Base64(data));
        let deadline = tokio::time::Instant::now() + self.opts.put_timeout;
        let (ack_tx, mut acks) = mpsc::unbounded_channel::<Result<(), String>>();
        let done = Arc::new(AtomicBool::new(false));
        for (peer, client) in self.peers.iter().enumerate() {
            let Some(client) = client.clone() else {
                continue;
            };
            let service = self.clone();
            let value = value.clone();
            let ack_tx = ack_tx.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(25);
                let mut last = String::new();
                while tokio::time::Instant::now() < deadline && !done.load(Ordering::Relaxed) {
                    match service
                        .call_peer(
                            peer as u64,
                            &client,
                            STORE_BLOCK,
                            std::slice::from_ref(&*value),
                        )
                        .await
                    {
                        Ok(Value::Bool(true)) => {
                            let _ = ack_tx.send(Ok(()));
                            return;
                        }
                        Ok(other) => last = format!("answered {other:?}"),
                        Err(e) => last = e,
                    }
                    tokio::time::sleep_until((tokio::time::Instant::now() + backoff).min(deadline))
                        .await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                let _ = ack_tx.send(Err(last));
            });
        }
        drop(ack_tx);
        let (mut held, mut failures) = (0usize, Vec::new());
        while let Some(ack) = acks.recv().await {
            match ack {
                Ok(()) => {
                    held += 1;
                    if held >= need {
                        done.store(true, Ordering::Relaxed);
                        return Ok(hash);
                    }
                }
                Err(e) => failures.push(e),
            }
        }
        Err(BlockError::Unavailable(format!(
            "putblock: block {hash} is held by {} of {} nodes after {:?}, {} needed ({})",
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
