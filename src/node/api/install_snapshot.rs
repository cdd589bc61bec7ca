//! Serving `installSnapshot`: the chunks of one snapshot transfer are joined
//! in a per-node buffer, and the whole snapshot goes to the driver as one
//! `InstallSnapshot` message, exactly like an `appendEntries`.
//!
//! Promises:
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

use bytes::Bytes;

use super::NodeHandle;
use crate::node::driver::Request;
use crate::node::error::NodeError;
use crate::node::peer_wire::{self, ChunkAck, SnapshotChunk};
use crate::node::raft::{LogIndex, Message, NodeId, Term};
use crate::xmlrpc::Value;

/// The most buffer reserved up front for a transfer (the rest grows with the
/// data, so a hostile `total` reserves nothing it did not send).
const INITIAL_RESERVE: u64 = 64 << 20;

/// The one snapshot transfer a node is receiving, shared by its handles.
pub(super) type AssemblySlot = Arc<Mutex<Option<Assembly>>>;

/// A snapshot transfer in progress. Invariant: `data.len() < total` (a
/// complete transfer leaves the slot at once).
#[derive(Debug)]
pub(super) struct Assembly {
    /// The first chunk, without its data: what every later chunk must match.
    header: SnapshotChunk,
    data: Vec<u8>,
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

/// Adds `chunk` to the transfer in `slot`.
fn accept(slot: &mut Option<Assembly>, chunk: SnapshotChunk) -> Result<Progress, AssemblyError> {
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
        *slot = Some(Assembly { header, data });
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
    pub(super) async fn install_snapshot(&self, params: Vec<Value>) -> Result<Value, NodeError> {
        const NAME: &str = "installSnapshot";
        // The crashed check comes before any argument check.
        if self.crashed() {
            self.lock_assembly().take();
            return Err(NodeError::Crashed(self.id));
        }
        let chunk = peer_wire::decode_chunk(params)
            .map_err(|e| NodeError::BadRequest(format!("{NAME}: {e}")))?;
        self.check_route(NAME, chunk.from, chunk.to)?;
        let from = chunk.from;
        let progress = accept(&mut self.lock_assembly(), chunk)
            .map_err(|e| NodeError::BadRequest(format!("{NAME}: {e}")))?;
        match progress {
            Progress::Partial { received } => Ok(peer_wire::encode_chunk_ack(&ChunkAck {
                from: self.id,
                to: from,
                received,
            })),
            Progress::Complete(msg) => {
                let resp = self.ask(|reply| Request::Peer { msg, reply }).await??;
                Ok(peer_wire::encode(&resp))
            }
        }
    }

    fn lock_assembly(&self) -> MutexGuard<'_, Option<Assembly>> {
        // A panic mid-copy may have left the buffer short: drop the transfer.
        self.snapshot_assembly.lock().unwrap_or_else(|poisoned| {
            let mut slot = poisoned.into_inner();
            *slot = None;
            slot
        })
    }
}

#[cfg(test)]
mod tests;
