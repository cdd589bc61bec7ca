//! Garbage collection of blocks: a block no file version in the map references
//! and nobody has written for the grace period is deleted. The grace period
//! covers the window in which a client has uploaded a file's blocks but not
//! yet committed the `updatefile` that references them (a re-upload of a block
//! that is already here restarts its grace).
//!
//! Two ways, one rule: [`collect_due`] looks only at the blocks that may have
//! become garbage (written, or dropped by the last file that listed them:
//! `repair.rs` queues them as they happen), so a round costs what changed;
//! [`collect`] lists the whole store, and runs only when those queues do not
//! know everything (after a start or an overflow).
//!
//! Removing a block from the disk store only marks its record dead; after
//! each collection [`compact`] lets the store reclaim the space of packs at
//! least half dead, [`COMPACT_BUDGET`] bytes of copying per round at most,
//! on the blocking pool (`pack/mod.rs`).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::refs::{Digest, RefCounts};
use super::{BlockError, BlockStore};
use crate::node::command::{parse_sha256_hex, sha256_hex};

/// Live record bytes one round of compaction copies at most.
pub const COMPACT_BUDGET: u64 = 32 << 20;

/// One bounded round of compaction after a collection; a failure is logged,
/// the next round tries again.
pub async fn compact(store: &BlockStore) {
    if let Err(e) = store.compact(COMPACT_BUDGET).await {
        tracing::warn!("block pack compaction: {e}");
    }
}

/// A block that may be garbage from `.0` on (when it was queued: at or
/// after its last write, or its last reference went then).
pub type Candidate = (Instant, Digest);

/// Deletes unreferenced blocks older than `grace` in the whole store;
/// returns how many went.
pub async fn collect(
    store: &BlockStore,
    refs: &RefCounts,
    grace: Duration,
) -> Result<usize, BlockError> {
    let now = SystemTime::now();
    let mut removed = 0;
    for (hash, touched) in store.list().await? {
        let age = now.duration_since(touched).unwrap_or(Duration::ZERO);
        let referenced = parse_sha256_hex(&hash).is_some_and(|d| refs.is_referenced(&d));
        if age >= grace && !referenced {
            store.remove(&hash).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "block gc removed unreferenced blocks");
    }
    compact(store).await;
    Ok(removed)
}

/// Deletes the queued candidates whose grace is over and that are still
/// unreferenced and untouched for `grace`; the queue is in time order, so
/// it stops at the first one not yet due. Returns how many went.
pub async fn collect_due(
    store: &BlockStore,
    refs: &RefCounts,
    candidates: &mut VecDeque<Candidate>,
    grace: Duration,
) -> Result<usize, BlockError> {
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut removed = 0;
    while let Some(&(at, digest)) = candidates.front() {
        if at + grace > now {
            break;
        }
        candidates.pop_front();
        if refs.is_referenced(&digest) {
            continue;
        }
        let hash = sha256_hex(&digest);
        let Some(touched) = store.touched(&hash).await? else {
            continue;
        };
        if wall.duration_since(touched).unwrap_or(Duration::ZERO) >= grace {
            store.remove(&hash).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "block gc removed unreferenced blocks");
    }
    compact(store).await;
    Ok(removed)
}
