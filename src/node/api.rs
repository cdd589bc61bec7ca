//! The XML-RPC method table of API.md: typed arguments in, a `Value` or a
//! `NodeError` (mapped to a fault) out. Each method takes its arguments with a
//! cursor ([`args::Args`]) and checks them, then asks the driver; nothing here
//! touches Raft state directly. This is where the wire ends: commands and the
//! map hold typed hashes, turned back into `Value`s here for the reply.

mod args;
pub mod file_info_map;
mod install_snapshot;
mod status;
pub mod wait_for_changes;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::auth::{Need, Verifier};
use crate::node::blocks::replication::{GETBLOCKS_MAX_BYTES, MAX_BATCH_BLOCKS};
use crate::node::blocks::BlockService;
use crate::node::command::{Command, Hash};
use crate::node::driver::{LogLine, NodeStatus, Request};
use crate::node::error::NodeError;
use crate::node::events::NodeEvent;
use crate::node::identity::Identity;
use crate::node::metadata::MapView;
use crate::node::metrics::{NodeMetrics, RpcCounters};
use crate::node::peer_wire;
use crate::node::peers::{PeerNumbers, PeerTable};
use crate::node::raft::NodeId;
use crate::xmlrpc::codec::{EncodedValue, MethodCall, Reply};
use crate::xmlrpc::server::{CallContext, Handler, Page};
use crate::xmlrpc::{Fault, Value};

use args::Args;

/// A cheap, clonable handle on a running node: what the HTTP server, the
/// cluster launcher and tests use to talk to it.
#[derive(Clone)]
pub struct NodeHandle {
    pub id: NodeId,
    pub members: Arc<[String]>,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
    events: broadcast::Sender<NodeEvent>,
    /// The block store; `None` serves no block methods (fault 4).
    blocks: Option<BlockService>,
    /// The `installSnapshot` transfer being received, shared by all clones.
    snapshot_assembly: install_snapshot::AssemblySlot,
    /// The peer senders' numbers (empty when the node has no senders).
    peer_stats: PeerTable,
    /// Checks that peer calls come from members of this cluster; `None`
    /// checks nothing (tests that play a peer).
    identity: Option<Arc<Identity>>,
    /// The secrets calls from the network need; `None`: open.
    auth: Option<Arc<Verifier>>,
    /// What `GET /metrics` serves, and where network calls are counted;
    /// `None`: 404, nothing counted.
    metrics: Option<Arc<NodeMetrics>>,
    /// Where the node keeps its log and blocks; `None`: in memory.
    data_dir: Option<Arc<std::path::Path>>,
    /// The map change counter `waitForChanges` waits on; `None`: fault 4.
    changes: Option<wait_for_changes::ChangeFeed>,
}

/// Who may make a call, for the secrets and the identity check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Node-to-node: needs the cluster secret and a member's identity.
    Peer,
    /// Changes a node's state by hand: needs the cluster secret, once.
    Admin,
    /// Everything a client calls.
    Client,
}

impl Class {
    fn of(name: &str) -> Class {
        match name {
            "appendEntries" | "requestVote" | "timeoutNow" | "installSnapshot" | "storeBlock"
            | "storeBlocks" | "readBlock" => Class::Peer,
            "crash" | "restore" | "transferLeader" | "backup" => Class::Admin,
            _ => Class::Client,
        }
    }
}

const PREFIX: &str = "surfstore.";

/// Up to this many files the `getfileinfomap` answer is written on the
/// async worker that asked (well under a millisecond); a larger map is
/// written on a blocking thread, so a worker never stalls for it.
const ENCODE_INLINE_FILES: usize = 4096;

impl NodeHandle {
    pub fn new(
        id: NodeId,
        members: Arc<[String]>,
        requests: mpsc::Sender<Request>,
        status: watch::Receiver<NodeStatus>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        NodeHandle {
            id,
            members,
            requests,
            status,
            events,
            blocks: None,
            snapshot_assembly: Default::default(),
            peer_stats: Arc::new([]),
            identity: None,
            auth: None,
            metrics: None,
            data_dir: None,
            changes: None,
        }
    }

    /// This handle, serving `waitForChanges` from the runtime's map change
    /// counter (`Runtime::map_changes`).
    pub fn with_map_changes(mut self, counter: watch::Receiver<u64>) -> Self {
        self.changes = Some(wait_for_changes::ChangeFeed::new(counter));
        self
    }

    /// This handle, reporting the size of `dir` (the node's data directory)
    /// in `status`.
    pub fn with_data_dir(mut self, dir: Option<&std::path::Path>) -> Self {
        self.data_dir = dir.map(Arc::from);
        self
    }

    /// The node's data directory; `None` under `--in-memory`.
    pub fn data_dir(&self) -> Option<&Arc<std::path::Path>> {
        self.data_dir.as_ref()
    }

    /// This handle, counting network calls into `metrics` and serving them
    /// at `GET /metrics`.
    pub fn with_metrics(mut self, metrics: Arc<NodeMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The node's metrics, when it keeps them.
    pub fn metrics(&self) -> Option<&Arc<NodeMetrics>> {
        self.metrics.as_ref()
    }

    /// This handle, refusing peer calls that do not come from a member of
    /// the cluster `identity` describes.
    pub fn with_identity(mut self, identity: Arc<Identity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// This handle, asking calls from the network for proof of the secrets
    /// `auth` holds.
    pub fn with_auth(mut self, auth: Option<Arc<Verifier>>) -> Self {
        self.auth = auth;
        self
    }

    /// This node's cluster id (see [`crate::node::identity`]).
    pub fn cluster_id(&self) -> Option<String> {
        self.identity.as_ref().map(|i| i.cluster.clone())
    }

    /// Peer calls refused because they came from no member of this cluster.
    pub fn refused_peer_calls(&self) -> u64 {
        self.identity.as_ref().map_or(0, |i| i.refused())
    }

    /// This handle, reporting the peer senders' numbers in `status`.
    pub fn with_peer_stats(mut self, peer_stats: PeerTable) -> Self {
        self.peer_stats = peer_stats;
        self
    }

    /// The peer senders' numbers, one per other member in id order.
    pub fn peer_numbers(&self) -> Vec<PeerNumbers> {
        self.peer_stats.iter().map(|p| p.numbers()).collect()
    }

    /// This handle, serving the block methods from `blocks`.
    pub fn with_blocks(mut self, blocks: BlockService) -> Self {
        self.blocks = Some(blocks);
        self
    }

    /// The block store, when this node serves one.
    pub fn blocks(&self) -> Option<&BlockService> {
        self.blocks.as_ref()
    }

    /// Subscribes to the node's events (elections, votes, commits, crashes…).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The last `n` log entries, described.
    pub async fn log_tail(&self, n: usize) -> Result<Vec<LogLine>, NodeError> {
        self.ask(|reply| Request::LogTail { n, reply }).await
    }

    /// The latest published status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that wakes on every status change.
    pub fn watch(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    fn crashed(&self) -> bool {
        self.status.borrow().crashed
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || NodeError::Unavailable("node shutting down".into());
        self.requests.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// Refuses a peer message not from another member to this node, or not
    /// from the member the call's headers proved (`sender`).
    fn check_route(
        &self,
        name: &str,
        from: NodeId,
        to: NodeId,
        sender: Option<NodeId>,
    ) -> Result<(), NodeError> {
        if to != self.id || from as usize >= self.members.len() || from == self.id {
            return Err(NodeError::BadRequest(format!(
                "{name}: message from {from} to {to} reached node {}",
                self.id
            )));
        }
        if let Some(sender) = sender.filter(|&s| s != from) {
            return Err(NodeError::NotPeer(format!(
                "{name}: member {sender} sent a message that claims to be from {from}"
            )));
        }
        Ok(())
    }

    /// What a call from the network must pass before its method runs: the
    /// secrets (when set), then for peer calls the identity check (after
    /// the crashed check, so a crashed node answers fault 1 as API.md
    /// says). Returns the member a peer call proved to come from.
    fn guard(&self, name: &str, ctx: &CallContext) -> Result<Option<NodeId>, NodeError> {
        let class = Class::of(name);
        if let Some(auth) = &self.auth {
            let need = match class {
                Class::Peer | Class::Admin => Need::Cluster,
                Class::Client => Need::Client,
            };
            auth.allows(need, &ctx.proof)
                .map_err(|e| NodeError::Unauthorized(format!("{name} {e}")))?;
            if class == Class::Admin {
                auth.check_fresh(&ctx.proof, std::time::SystemTime::now())
                    .map_err(|e| NodeError::Unauthorized(format!("{name}: {e}")))?;
            }
        }
        match (&self.identity, class) {
            (Some(identity), Class::Peer) if !self.crashed() => {
                identity.check(name, &ctx.headers, ctx.peer).map(Some)
            }
            _ => Ok(None),
        }
    }

    pub async fn update_file(
        &self,
        filename: String,
        version: i64,
        hashlist: Vec<Hash>,
    ) -> Result<bool, NodeError> {
        let cmd = Command::UpdateFile {
            filename,
            version,
            hashlist,
        };
        self.ask(|reply| Request::Update { cmd, reply }).await?
    }

    /// `getfileinfomap` as a `Value` tree (calls made in this process):
    /// linearizable; the tree is built here, off the driver task.
    pub async fn file_info_map(&self) -> Result<Value, NodeError> {
        let view = self.ask(|reply| Request::ReadMap { reply }).await??;
        Ok(file_info_map::value(&view))
    }

    /// `getfileinfomap` as the network gets it: the same linearizable read
    /// (a view of the map from the leader's read path), written straight
    /// into the response's buffer off the driver task, and for a large map
    /// off the async workers too.
    pub async fn file_info_map_encoded(&self) -> Result<EncodedValue, NodeError> {
        let view = self.ask(|reply| Request::ReadMap { reply }).await??;
        if view.len() < ENCODE_INLINE_FILES {
            return Ok(file_info_map::encode(&view));
        }
        tokio::task::spawn_blocking(move || file_info_map::encode(&view))
            .await
            .map_err(|e| NodeError::Unavailable(format!("getfileinfomap: encoding failed: {e}")))
    }

    /// `backup` (admin): the map as a linearizable read on the leader sees
    /// it, in its snapshot encoding: `{index, term, files, map}` with `map`
    /// base64 and `term` this node's term at the read (at least the term of
    /// the entry at `index`). `ctl snapshot save` fetches the blocks after.
    pub async fn backup(&self) -> Result<Value, NodeError> {
        let view = self.ask(|reply| Request::ReadMap { reply }).await??;
        let term = self.status().raft.term;
        let files = view.len();
        let index = view.applied_index;
        let map = tokio::task::spawn_blocking(move || view.encode())
            .await
            .map_err(|e| NodeError::Unavailable(format!("backup: encoding failed: {e}")))?;
        let mut out = BTreeMap::new();
        out.insert("index".to_owned(), int_value(index as i64));
        out.insert("term".to_owned(), int_value(term as i64));
        out.insert("files".to_owned(), int_value(files as i64));
        out.insert("map".to_owned(), Value::Base64(Vec::from(map)));
        Ok(Value::Struct(out))
    }

    /// This node's applied map as it is now (not linearizable; any node,
    /// crashed or not).
    pub async fn local_map(&self) -> Result<MapView, NodeError> {
        self.ask(|reply| Request::LocalMap { reply }).await
    }

    pub async fn get_version(&self, filename: String) -> Result<i64, NodeError> {
        self.ask(|reply| Request::GetVersion { filename, reply })
            .await
    }

    pub async fn crash(&self) -> Result<(), NodeError> {
        self.ask(|reply| Request::Crash { reply }).await
    }

    pub async fn restore(&self) -> Result<(), NodeError> {
        self.ask(|reply| Request::Restore { reply }).await
    }

    /// Before stopping: if this node leads, hand leadership to the most
    /// up-to-date follower, then let the proposals it took finish (they
    /// apply here as the successor commits them), all within `within`.
    /// Says what happened, for the log; `None` if it was not the leader.
    pub async fn hand_off(&self, within: std::time::Duration) -> Option<String> {
        if !self.status().is_leader() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + within;
        let said = match tokio::time::timeout_at(deadline, self.transfer_leader(None)).await {
            Ok(Ok(to)) => format!("handed leadership to node {to}"),
            Ok(Err(e)) => format!("could not hand leadership off: {e}"),
            Err(_) => format!("could not hand leadership off within {within:?}"),
        };
        let quiet = tokio::time::timeout_at(deadline, self.ask(|reply| Request::Quiesce { reply }));
        match quiet.await {
            Ok(_) => Some(said),
            Err(_) => Some(format!("{said}; calls still pending after {within:?}")),
        }
    }

    /// Hands leadership to `to` (`None`: the most up-to-date follower) and
    /// waits until it leads; returns its id. Only the leader can; see
    /// `Request::TransferLeader` for the faults.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<NodeId, NodeError> {
        if let Some(to) = to.filter(|&t| t as usize >= self.members.len()) {
            return Err(NodeError::BadRequest(format!(
                "transferLeader: node {to} is not a member (ids 0..{})",
                self.members.len()
            )));
        }
        self.ask(|reply| Request::TransferLeader { to, reply })
            .await?
    }

    /// Dispatches one XML-RPC call made in this process (the dashboard,
    /// tests): no secret or identity is asked for.
    pub async fn dispatch(&self, call: MethodCall) -> Result<Value, NodeError> {
        self.dispatch_from(call, None).await
    }

    /// Dispatches one XML-RPC call; one from the network (`ctx`) first
    /// passes [`NodeHandle::guard`]. Each method takes its arguments through
    /// an [`Args`] cursor, which names the method and argument in a refusal.
    pub async fn dispatch_from(
        &self,
        call: MethodCall,
        ctx: Option<&CallContext>,
    ) -> Result<Value, NodeError> {
        let Some(name) = call.method.strip_prefix(PREFIX) else {
            return Err(NodeError::NoSuchMethod(format!(
                "'{}' (methods live under '{PREFIX}')",
                call.method
            )));
        };
        let sender = match ctx {
            Some(ctx) => self.guard(name, ctx)?,
            None => None,
        };
        let params = call.params;
        match name {
            "ping" => {
                no_args(name, params)?;
                Ok(Value::Bool(true))
            }
            "getfileinfomap" => {
                no_args(name, params)?;
                self.file_info_map().await
            }
            "updatefile" => {
                let (filename, version, hashlist) = update_args(params)?;
                self.update_file(filename, version, hashlist)
                    .await
                    .map(Value::Bool)
            }
            "waitForChanges" => {
                let (since, timeout) = wait_for_changes::args(params)?;
                let changes = self.wait_for_changes(since, timeout).await?;
                Ok(changes.value())
            }
            "tester_getversion" => {
                let mut args = Args::new(name, "(filename:string)", params);
                let filename = args.next_string("filename")?;
                args.finish()?;
                let v = self.get_version(filename).await?;
                Ok(int_value(v))
            }
            "isLeader" | "isleader" => {
                no_args(name, params)?;
                Ok(Value::Bool(self.status().is_leader()))
            }
            "members" => {
                no_args(name, params)?;
                Ok(Value::Array(
                    self.members
                        .iter()
                        .map(|m| Value::String(m.clone()))
                        .collect(),
                ))
            }
            "crash" => {
                no_args(name, params)?;
                self.crash().await.map(|()| Value::Bool(true))
            }
            "restore" => {
                no_args(name, params)?;
                self.restore().await.map(|()| Value::Bool(true))
            }
            "transferLeader" => {
                let to = if params.is_empty() {
                    None
                } else {
                    let mut args = Args::new(name, "([id:int])", params);
                    let id = args.next_int("id")?;
                    args.finish()?;
                    Some(u64::try_from(id).map_err(|_| {
                        NodeError::BadRequest(format!("transferLeader: id {id} is negative"))
                    })?)
                };
                self.transfer_leader(to)
                    .await
                    .map(|id| int_value(id as i64))
            }
            "status" => status::status(self, params).await,
            "backup" => {
                no_args(name, params)?;
                self.backup().await
            }
            "isCrashed" | "iscrashed" => {
                no_args(name, params)?;
                Ok(Value::Bool(self.crashed()))
            }
            "appendEntries" | "requestVote" | "timeoutNow" => {
                // The crashed check comes before any argument check.
                if self.crashed() {
                    return Err(NodeError::Crashed(self.id));
                }
                let msg = peer_wire::decode_request(&call.method, &params)
                    .map_err(|e| NodeError::BadRequest(format!("{name}: {e}")))?;
                self.check_route(name, msg.from, msg.to, sender)?;
                let resp = self.ask(|reply| Request::Peer { msg, reply }).await??;
                Ok(peer_wire::encode(&resp))
            }
            "installSnapshot" => self.install_snapshot(params, sender).await,
            "getblock" | "getblocks" | "putblock" | "putblocks" | "hasblocks" | "storeBlock"
            | "storeBlocks" | "readBlock" => {
                // The crashed check comes before any argument check.
                if self.crashed() {
                    return Err(NodeError::Crashed(self.id));
                }
                let Some(blocks) = &self.blocks else {
                    return Err(NodeError::NoSuchMethod(format!(
                        "'{}': this node serves no block store",
                        call.method
                    )));
                };
                block_method(blocks, name, params).await
            }
            _ => Err(NodeError::NoSuchMethod(format!("'{}'", call.method))),
        }
    }
}

impl NodeHandle {
    /// Dispatches one call from the network as [`NodeHandle::dispatch_from`]
    /// does, but answers `getfileinfomap` already encoded
    /// ([`NodeHandle::file_info_map_encoded`]).
    pub async fn dispatch_reply(
        &self,
        call: MethodCall,
        ctx: Option<&CallContext>,
    ) -> Result<Reply, NodeError> {
        let name = "getfileinfomap";
        if call.method.strip_prefix(PREFIX) != Some(name) {
            return self.dispatch_from(call, ctx).await.map(Reply::Value);
        }
        if let Some(ctx) = ctx {
            self.guard(name, ctx)?;
        }
        no_args(name, call.params)?;
        self.file_info_map_encoded().await.map(Reply::Encoded)
    }

    /// Counts a call from the network in the metrics; `faulted` counts
    /// its fault, if it has one.
    fn count_call(&self, method: &str) -> Option<(&RpcCounters, usize)> {
        self.metrics.as_ref().map(|m| {
            let slot = RpcCounters::slot(method);
            m.rpc.call(slot);
            (&*m.rpc, slot)
        })
    }
}

/// The result of a counted call (see `NodeHandle::count_call`), its fault
/// counted.
fn faulted<T>(
    counted: Option<(&RpcCounters, usize)>,
    result: Result<T, NodeError>,
) -> Result<T, Fault> {
    if let (Some((rpc, slot)), Err(e)) = (counted, &result) {
        rpc.fault(slot, e.code());
    }
    result.map_err(Fault::from)
}

impl Handler for NodeHandle {
    async fn call(&self, call: MethodCall, ctx: CallContext) -> Result<Value, Fault> {
        let counted = self.count_call(&call.method);
        faulted(counted, self.dispatch_from(call, Some(&ctx)).await)
    }

    async fn answer(&self, call: MethodCall, ctx: CallContext) -> Result<Reply, Fault> {
        let counted = self.count_call(&call.method);
        faulted(counted, self.dispatch_reply(call, Some(&ctx)).await)
    }

    async fn get(&self, path: &str) -> Option<Page> {
        match path {
            "/health" => Some(self.health()),
            "/metrics" => self.metrics.as_ref().map(|m| m.page()),
            _ => None,
        }
    }
}

impl NodeHandle {
    /// `GET /health`: 200 when this node is up, neither crashed nor stopped,
    /// and leads or follows a leader it has heard from (a follower forgets
    /// its leader when its election timer fires); 503 with the reason
    /// otherwise. A small JSON body either way.
    pub fn health(&self) -> Page {
        let st = self.status();
        let reason = if let Some(why) = &st.failed {
            Some(format!("stopped: {why}"))
        } else if st.crashed {
            Some("crashed".to_owned())
        } else if st.raft.leader.is_none() {
            Some("no leader known (an election is under way, or this node is cut off)".to_owned())
        } else {
            None
        };
        let body = serde_json::json!({
            "health": reason.is_none(),
            "reason": reason,
            "id": self.id,
            "term": st.raft.term,
            "leader": st.raft.leader,
            "applied_index": st.raft.applied_index,
        });
        Page {
            status: if reason.is_none() { 200 } else { 503 },
            content_type: "application/json",
            body: bytes::Bytes::from(format!("{body}\n")),
        }
    }
}

/// The block methods of API.md and their node-to-node helpers.
async fn block_method(
    blocks: &BlockService,
    name: &str,
    params: Vec<Value>,
) -> Result<Value, NodeError> {
    match name {
        "getblock" | "readBlock" => {
            let mut args = Args::new(name, "(hash:string)", params);
            let hash = args.next_string("hash")?;
            args.finish()?;
            if name == "readBlock" {
                // Local only: a peer never asks its own peers.
                return Ok(match blocks.store.get(&hash).await? {
                    Some(d) => Value::Base64(d.to_vec()),
                    None => Value::Bool(false),
                });
            }
            Ok(Value::Base64(blocks.get(&hash).await?.to_vec()))
        }
        "putblock" | "storeBlock" => {
            let mut args = Args::new(name, "(block:base64)", params);
            let data = args.next_base64("block")?;
            args.finish()?;
            if name == "storeBlock" {
                blocks.store_local(data).await?;
            } else {
                blocks.put(data).await?;
            }
            Ok(Value::Bool(true))
        }
        "putblocks" | "storeBlocks" => {
            let mut args = Args::new(name, "(blocks:array of base64)", params);
            let list = args.next_array("blocks")?;
            let batch = block_list(&args, list, blocks.opts.max_block_bytes)?;
            args.finish()?;
            if name == "storeBlocks" {
                blocks.store_local_many(batch).await?;
                return Ok(Value::Bool(true));
            }
            let hashes = blocks.put_many(batch).await?;
            Ok(Value::Array(
                hashes.into_iter().map(Value::String).collect(),
            ))
        }
        "getblocks" => {
            let mut args = Args::new(name, "(hashlist:array of string)", params);
            let hashes = args.next_strings("hashlist")?;
            if hashes.len() > MAX_BATCH_BLOCKS {
                return Err(args.bad(
                    "hashlist",
                    &format!(
                        "holds {} hashes, more than the {MAX_BATCH_BLOCKS} one call may ask for",
                        hashes.len()
                    ),
                ));
            }
            if let Some((i, h)) = hashes
                .iter()
                .enumerate()
                .find(|(_, h)| !crate::node::blocks::is_hash(h))
            {
                return Err(args.bad(
                    "hashlist",
                    &format!("hashlist[{i}] is {h:?}, not 64 lower-case hex digits"),
                ));
            }
            args.finish()?;
            let found = blocks.get_prefix(&hashes, GETBLOCKS_MAX_BYTES).await?;
            Ok(Value::Array(
                found.iter().map(|d| Value::Base64(d.to_vec())).collect(),
            ))
        }
        "hasblocks" => {
            let mut args = Args::new(name, "(hashlist:array of string)", params);
            let hashes = args.next_strings("hashlist")?;
            args.finish()?;
            Ok(Value::Array(
                blocks
                    .has(hashes)
                    .await
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ))
        }
        other => Err(NodeError::NoSuchMethod(format!(
            "'{PREFIX}{other}' is not a block method"
        ))),
    }
}

/// The blocks of a `putblocks` / `storeBlocks` call, checked: at most
/// [`MAX_BATCH_BLOCKS`], each base64 and at most `limit` bytes; a refusal
/// names the position (`blocks[3]`).
fn block_list(args: &Args, list: Vec<Value>, limit: usize) -> Result<Vec<Arc<[u8]>>, NodeError> {
    if list.len() > MAX_BATCH_BLOCKS {
        return Err(args.bad(
            "blocks",
            &format!(
                "holds {} blocks, more than the {MAX_BATCH_BLOCKS} one call may carry",
                list.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        match v {
            Value::Base64(b) if b.len() > limit => {
                return Err(args.bad(
                    "blocks",
                    &format!(
                        "blocks[{i}] is {} bytes, above the limit of {limit} bytes",
                        b.len()
                    ),
                ))
            }
            Value::Base64(b) => out.push(Arc::from(b)),
            other => {
                return Err(args.bad(
                    "blocks",
                    &format!("must hold base64, but blocks[{i}] is {}", other.type_name()),
                ))
            }
        }
    }
    Ok(out)
}

fn no_args(name: &str, params: Vec<Value>) -> Result<(), NodeError> {
    Args::new(name, "no arguments", params).finish()
}

/// An int as the narrowest XML-RPC type that holds it.
fn int_value(v: i64) -> Value {
    i32::try_from(v).map_or(Value::I8(v), Value::Int)
}

/// One hash as a client gets it back: with the type it came with.
pub fn hash_value(h: &Hash) -> Value {
    match h {
        Hash::Text(t) => Value::String(t.as_str().into_owned()),
        Hash::Int(i) => Value::Int(*i),
        Hash::I8(i) => Value::I8(*i),
        Hash::Bytes(b) => Value::Base64(b.to_vec()),
    }
}

/// `updatefile(filename, version, hashlist)`, checked.
fn update_args(params: Vec<Value>) -> Result<(String, i64, Vec<Hash>), NodeError> {
    let mut args = Args::new(
        "updatefile",
        "(filename:string, version:int, hashlist:array)",
        params,
    );
    let filename = args.next_string("filename")?;
    if filename.is_empty() {
        return Err(args.bad("filename", "is empty"));
    }
    xml_text(&filename).map_err(|why| args.bad("filename", &why))?;
    check_filename(&filename)?;
    let version = args.next_int("version")?;
    let hashlist = args.next_hash_list("hashlist", xml_text)?;
    args.finish()?;
    Ok((filename, version, hashlist))
}

/// Refuses file names a sync client could not safely write under its base
/// directory: absolute paths, empty, `.` or `..` components, control
/// characters other than tab, and `index.txt` (the client's own index).
fn check_filename(name: &str) -> Result<(), NodeError> {
    let bad = |why: &str| {
        Err(NodeError::BadRequest(format!(
            "updatefile: filename {name:?} {why}"
        )))
    };
    if name.starts_with('/') || name.starts_with('\\') {
        return bad("is an absolute path");
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() && c != '\t') {
        return bad(&format!(
            "contains the control character U+{:04X}",
            c as u32
        ));
    }
    if let Some(part) = name
        .split('/')
        .find(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return bad(&format!("has a {:?} path component", part));
    }
    if name == "index.txt" {
        return bad("is reserved for the sync client's index");
    }
    Ok(())
}

/// Refuses text that XML 1.0 cannot carry (control characters other than tab,
/// newline and carriage return; U+FFFE, U+FFFF): stored, it could never be sent
/// back to a client in a document its parser accepts.
fn xml_text(s: &str) -> Result<(), String> {
    let bad = s.chars().find(|&c| {
        (c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    });
    match bad {
        Some(c) => Err(format!(
            "contains U+{:04X}, which XML 1.0 cannot carry",
            c as u32
        )),
        None => Ok(()),
    }
}
