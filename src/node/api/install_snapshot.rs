//! Serving `installSnapshot`: the chunks of one snapshot transfer are joined
//! in a per-node buffer, the whole snapshot is checked, and only then goes to
//! the driver as one `InstallSnapshot` message, exactly like an
//! `appendEntries`.
//!
//! Promises:
//! - The core never sees a snapshot that is not a metadata map: a complete
//!   transfer is decoded whole (magic, format, CRC, every file) off the async
//!   workers before it is stepped; one that does not decode is refused with
//!   fault 3 naming what is wrong, and nothing changes, not even the term
//!   (the core has not seen the message). The leader learns of the refusal
//!   from the fault (`peers/snapshot.rs`).
//! - A transfer whose next chunk does not come within
//!   [`ABANDONED_TRANSFER_TIMEOUT`] is dropped with its buffer, by one
//!   sweeping task per node that runs only while a transfer is buffered.
//! - A crashed node answers fault 1 before looking at the arguments, and drops
//!   any transfer in progress.
//! - A transfer is keyed by (from, term, index, snap_term, total); a chunk
//!   must continue it exactly where it ends (`offset == received`). A chunk at
//!   offset 0 starts over, dropping whatever was buffered; any other chunk that
//!   does not continue the transfer is refused (fault 3 naming the expected
//!   and received offsets) and leaves the buffer as it was.
//! - The buffer only grows by data received, up to `MAX_SNAPSHOT_BYTES`; its
//!   lock is held only to copy a chunk in.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::NodeHandle;
use crate::node::driver::Request;
use crate::node::error::NodeError;
use crate::node::metadata::Metadata;
use crate::node::peer_wire::{self, ChunkAck, SnapshotChunk};
use crate::node::raft::{LogIndex, Message, MessageBody, NodeId, Term};
use crate::xmlrpc::Value;

/// The most buffer reserved up front for a transfer (the rest grows with the
/// data, so a hostile `total` reserves nothing it did not send).
const INITIAL_RESERVE: u64 = 64 << 20;

/// How long a transfer may wait for its next chunk before it is dropped.
/// A leader sends the next chunk as soon as the last is acked, and gives up
/// on a peer call after its RPC timeout (seconds), so 30 s of silence means
/// the sender is gone or superseded.
pub const ABANDONED_TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// The one snapshot transfer a node is receiving, shared by its handles.
#[derive(Debug)]
pub(super) struct AssemblySlot(Arc<Shared>);

impl Default for AssemblySlot {
    fn default() -> Self {
        AssemblySlot(Arc::new(Shared {
            state: Mutex::default(),
            dropped: watch::Sender::new(0),
            timeout: ABANDONED_TRANSFER_TIMEOUT,
        }))
    }
}

impl Clone for AssemblySlot {
    fn clone(&self) -> Self {
        AssemblySlot(self.0.clone())
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<SlotState>,
    /// How many abandoned transfers the sweeper has dropped.
    dropped: watch::Sender<u64>,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct SlotState {
    assembly: Option<Assembly>,
    /// The sweeping task is running (at most one per node).
    sweeping: bool,
}

/// A snapshot transfer in progress. Invariant: `data.len() < total` (a
/// complete transfer leaves the slot at once).
#[derive(Debug)]
pub(super) struct Assembly {
    /// The first chunk, without its data: what every later chunk must match.
    header: SnapshotChunk,
    data: Vec<u8>,
    /// When its last chunk was accepted (tokio's clock, so tests can pause it).
    last_chunk: Instant,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssemblyError {
    #[error("chunk does not continue the transfer: expected offset {expected}, got offset {got}")]
    Offset { expected: u64, got: u64 },
    #[error(
        "no transfer of snapshot {index} (term {snap_term}) from node {from} in term {term} \
         is in progress: expected offset 0, got offset {got}"
    )]
    NotStarted {
        from: NodeId,
        term: Term,
        index: LogIndex,
        snap_term: Term,
        got: u64,
    },
}

/// What a chunk did to the transfer.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Bytes `0..received` are buffered.
    Partial { received: u64 },
    /// The transfer is complete: the message for the driver.
    Complete(Message),
}

impl Assembly {
    fn continues(&self, c: &SnapshotChunk) -> bool {
        let h = &self.header;
        (h.from, h.term, h.index, h.snap_term, h.total)
            == (c.from, c.term, c.index, c.snap_term, c.total)
    }
}

/// What [`expire`] found in the slot.
#[derive(Debug, PartialEq, Eq)]
enum Expiry {
    /// The transfer was abandoned and is gone.
    Dropped,
    /// The transfer is alive until this instant.
    Due(Instant),
    /// No transfer is buffered.
    Empty,
}

/// Drops the transfer in `slot` if its last chunk came `timeout` or more
/// before `now`.
fn expire(slot: &mut Option<Assembly>, now: Instant, timeout: Duration) -> Expiry {
    match slot {
        Some(a) if now.saturating_duration_since(a.last_chunk) >= timeout => {
            *slot = None;
            Expiry::Dropped
        }
        Some(a) => Expiry::Due(a.last_chunk + timeout),
        None => Expiry::Empty,
    }
}

/// Adds `chunk` to the transfer in `slot`, received at `now`.
fn accept(
    slot: &mut Option<Assembly>,
    chunk: SnapshotChunk,
    now: Instant,
) -> Result<Progress, AssemblyError> {
    if chunk.offset == 0 {
        *slot = None;
        if chunk.done {
            // The whole snapshot in one chunk: nothing to copy.
            let data = chunk.data.clone();
            return Ok(Progress::Complete(chunk.into_message(data)));
        }
        let mut data = Vec::with_capacity(chunk.total.min(INITIAL_RESERVE) as usize);
        data.extend_from_slice(&chunk.data);
        let header = SnapshotChunk {
            data: Bytes::new(),
            ..chunk
        };
        *slot = Some(Assembly {
            header,
            data,
            last_chunk: now,
        });
        return Ok(Progress::Partial {
            received: chunk_end(slot),
        });
    }
    let Some(a) = slot.as_mut().filter(|a| a.continues(&chunk)) else {
        return Err(AssemblyError::NotStarted {
            from: chunk.from,
            term: chunk.term,
            index: chunk.index,
            snap_term: chunk.snap_term,
            got: chunk.offset,
        });
    };
    let received = a.data.len() as u64;
    if chunk.offset != received {
        return Err(AssemblyError::Offset {
            expected: received,
            got: chunk.offset,
        });
    }
    a.data.extend_from_slice(&chunk.data);
    a.last_chunk = now;
    if !chunk.done {
        return Ok(Progress::Partial {
            received: chunk_end(slot),
        });
    }
    // `decode_chunk` checked that a done chunk ends at `total`.
    let a = slot.take().expect("the transfer was just continued");
    Ok(Progress::Complete(a.header.into_message(a.data.into())))
}

fn chunk_end(slot: &Option<Assembly>) -> u64 {
    slot.as_ref().map_or(0, |a| a.data.len() as u64)
}

impl NodeHandle {
    /// `installSnapshot(chunk)`: a [`ChunkAck`] for a chunk that is not the
    /// last, the core's `AppendEntriesResponse` for the last.
    pub(super) async fn install_snapshot(
        &self,
        params: Vec<Value>,
        sender: Option<NodeId>,
    ) -> Result<Value, NodeError> {
        const NAME: &str = "installSnapshot";
        // The crashed check comes before any argument check.
        if self.crashed() {
            self.snapshot_assembly.lock().assembly.take();
            return Err(NodeError::Crashed(self.id));
        }
        let chunk = peer_wire::decode_chunk(params)
            .map_err(|e| NodeError::BadRequest(format!("{NAME}: {e}")))?;
        self.check_route(NAME, chunk.from, chunk.to, sender)?;
        let from = chunk.from;
        let progress = {
            let mut state = self.snapshot_assembly.lock();
            let progress = accept(&mut state.assembly, chunk, Instant::now())
                .map_err(|e| NodeError::BadRequest(format!("{NAME}: {e}")))?;
            if state.assembly.is_some() && !state.sweeping {
                state.sweeping = true;
                tokio::spawn(self.snapshot_assembly.clone().sweep());
            }
            progress
        };
        match progress {
            Progress::Partial { received } => Ok(peer_wire::encode_chunk_ack(&ChunkAck {
                from: self.id,
                to: from,
                received,
            })),
            Progress::Complete(msg) => {
                check_snapshot(&msg)
                    .await
                    .map_err(|e| NodeError::BadRequest(format!("{NAME}: {e}")))?;
                let resp = self.ask(|reply| Request::Peer { msg, reply }).await??;
                Ok(peer_wire::encode(&resp))
            }
        }
    }
}

/// Decodes the snapshot `msg` carries as a metadata map (on a blocking
/// thread: a large map takes milliseconds); the refusal names what is wrong.
async fn check_snapshot(msg: &Message) -> Result<(), String> {
    let MessageBody::InstallSnapshot { snapshot } = &msg.body else {
        unreachable!("reassembly invariant: a complete transfer is an InstallSnapshot")
    };
    let (index, data) = (snapshot.index, snapshot.data.clone());
    let decoded =
        tokio::task::spawn_blocking(move || Metadata::from_snapshot(index, &data).map(|_| ()))
            .await;
    let refused = |why: String| {
        format!(
            "snapshot {index} (term {}) from node {} refused, nothing changed: {why}",
            snapshot.term, msg.from
        )
    };
    match decoded {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(refused(e.to_string())),
        Err(e) => Err(refused(format!("its check did not finish: {e}"))),
    }
}

impl AssemblySlot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic mid-copy may have left the buffer short: drop the transfer.
        self.0.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            state.assembly = None;
            state
        })
    }

    /// Drops the buffered transfer once it is abandoned; ends when the slot
    /// is empty (the next transfer starts another sweep).
    async fn sweep(self) {
        let timeout = self.0.timeout;
        loop {
            let due = {
                let mut state = self.lock();
                match expire(&mut state.assembly, Instant::now(), timeout) {
                    Expiry::Dropped => {
                        tracing::warn!(
                            "dropped a snapshot transfer abandoned for {} s",
                            timeout.as_secs()
                        );
                        self.0.dropped.send_modify(|n| *n += 1);
                        state.sweeping = false;
                        return;
                    }
                    Expiry::Empty => {
                        state.sweeping = false;
                        return;
                    }
                    Expiry::Due(due) => due,
                }
            };
            tokio::time::sleep_until(due).await;
        }
    }

    /// Counts the abandoned transfers dropped so far.
    #[cfg(test)]
    fn dropped(&self) -> watch::Receiver<u64> {
        self.0.dropped.subscribe()
    }
}

#[cfg(test)]
mod tests;
