//! Garbage collection of blocks: a block no file version in the map references
//! and nobody has written for the grace period is deleted. The grace period
//! covers the window in which a client has uploaded a file's blocks but not
//! yet committed the `updatefile` that references them (a re-upload of a block
//! that is already here restarts its grace).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::{BlockError, BlockStore};

/// Deletes unreferenced blocks older than `grace`; returns how many went.
pub async fn collect(
    store: &BlockStore,
    referenced: &HashSet<String>,
    grace: Duration,
) -> Result<usize, BlockError> {
    let now = SystemTime::now();
    let mut removed = 0;
    for (hash, touched) in store.list().await? {
        let age = now.duration_since(touched).unwrap_or(Duration::ZERO);
        if age >= grace && !referenced.contains(&hash) {
            store.remove(&hash).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "block gc removed unreferenced blocks");
    }
    Ok(removed)
}
