//! Which blocks the applied file map references, kept by change.
//!
//! The runtime tells a [`MapFeed`] what each applied `updatefile` changed
//! (the block hashes of the new list, then those of the list it replaced),
//! and that the whole map was replaced (an installed snapshot). The block
//! store's background task (`repair.rs`) takes what gathered each round and
//! folds it into [`RefCounts`], so a round costs what changed, not the size
//! of the map. The map is walked only to build the counts: at start, after
//! an installed snapshot, or when the feed overflowed.
//!
//! Promises:
//! - The feed is bounded ([`FEED_CAP`] changes). Past it, the changes are
//!   dropped and the feed says `rebuild`: the consumer builds its counts
//!   again from a view of the map, which holds every change dropped.
//! - While a rebuild is pending, nothing is recorded: every change made
//!   before the consumer takes the view is in the view.
//! - Each change carries the log index it was applied at, so the changes
//!   taken after a view are folded in only past the view's applied index,
//!   never twice.
//! - The counts are keyed by the first 8 bytes of the SHA-256. Two blocks
//!   that share them share a count, which can only keep a block that is no
//!   longer referenced (a leak until the other goes), never let a
//!   referenced one be collected. The counts take 16 bytes or so per
//!   distinct block, a quarter of a full hash set of hex names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::node::command::Hash;
use crate::node::metadata::{FileInfo, MapView};
use crate::node::raft::LogIndex;

/// A block's SHA-256.
pub type Digest = [u8; 32];

/// Changes the feed holds at most before it asks for a rebuild.
pub const FEED_CAP: usize = 1 << 16;

/// One block reference that came or went with an applied entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    pub index: LogIndex,
    pub digest: Digest,
    /// True: one more reference; false: one fewer.
    pub added: bool,
}

/// What gathered in the feed since it was last taken.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// In apply order.
    pub deltas: Vec<Delta>,
    /// The counts must be built again from a view of the map.
    pub rebuild: bool,
}

/// From the runtime (the driver task) to the block store's background task:
/// shared, cheap to clone, a short uncontended lock per applied entry.
#[derive(Clone, Debug)]
pub struct MapFeed(Arc<Mutex<Pending>>);

impl Default for MapFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl MapFeed {
    /// A feed whose consumer starts with a rebuild (it knows nothing yet).
    pub fn new() -> Self {
        MapFeed(Arc::new(Mutex::new(Pending {
            deltas: Vec::new(),
            rebuild: true,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding it leaves a consistent `Pending`.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// File entry applied at `index` now lists `new`, replacing `old`.
    pub fn file_changed(&self, index: LogIndex, old: Option<&FileInfo>, new: &[Hash]) {
        let mut p = self.lock();
        if p.rebuild {
            return;
        }
        // Additions first: a hash in both lists never drops to 0 between.
        let added = new
            .iter()
            .filter_map(Hash::block_sha256)
            .map(|digest| Delta {
                index,
                digest,
                added: true,
            });
        p.deltas.extend(added);
        if let Some(old) = old {
            let dropped = old
                .hashlist
                .iter()
                .filter_map(Hash::block_sha256)
                .map(|digest| Delta {
                    index,
                    digest,
                    added: false,
                });
            p.deltas.extend(dropped);
        }
        if p.deltas.len() > FEED_CAP {
            p.deltas = Vec::new();
            p.rebuild = true;
        }
    }

    /// The whole map was replaced (an installed snapshot).
    pub fn replaced(&self) {
        let mut p = self.lock();
        p.deltas = Vec::new();
        p.rebuild = true;
    }

    /// Everything gathered so far; the feed starts empty again.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }
}

/// The changes to fold into counts just built from a view of the map at
/// `view_index`: those of `after` (taken from the feed after the view)
/// past that index, the others being in the view. `None` when the feed
/// asked for a rebuild again meanwhile.
pub fn past_view(view_index: LogIndex, after: Pending) -> Option<Vec<Delta>> {
    if after.rebuild {
        return None;
    }
    let mut deltas = after.deltas;
    deltas.retain(|d| d.index > view_index);
    Some(deltas)
}

/// How a delta moved a block's count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    /// From 0 to 1: newly referenced (repair checks this node holds it).
    FirstReference,
    /// From 1 to 0: no longer referenced (garbage after the grace period).
    LastReference,
    Other,
}

/// References to each block in the applied map (see the module doc).
#[derive(Debug, Default)]
pub struct RefCounts {
    counts: HashMap<u64, u32>,
}

fn key(d: &Digest) -> u64 {
    let mut k = [0; 8];
    k.copy_from_slice(&d[..8]);
    u64::from_le_bytes(k)
}

impl RefCounts {
    /// The counts of every block the files of `view` list.
    pub fn from_view(view: &MapView) -> RefCounts {
        let mut refs = RefCounts::default();
        for (_, info) in view.files() {
            for d in info.hashlist.iter().filter_map(Hash::block_sha256) {
                refs.add(&d);
            }
        }
        refs
    }

    fn add(&mut self, d: &Digest) -> Moved {
        let c = self.counts.entry(key(d)).or_insert(0);
        // Saturated, a count stays: a leak, never a wrong collection.
        *c = c.saturating_add(1);
        if *c == 1 {
            Moved::FirstReference
        } else {
            Moved::Other
        }
    }

    /// Folds in one change.
    pub fn apply(&mut self, d: &Delta) -> Moved {
        if d.added {
            return self.add(&d.digest);
        }
        let k = key(&d.digest);
        match self.counts.get_mut(&k) {
            Some(c) if *c == u32::MAX => Moved::Other,
            Some(c) if *c > 1 => {
                *c -= 1;
                Moved::Other
            }
            Some(_) => {
                self.counts.remove(&k);
                Moved::LastReference
            }
            // A drop the counts never saw added: they were built from a view
            // that already held it. Nothing to undo.
            None => Moved::Other,
        }
    }

    pub fn is_referenced(&self, d: &Digest) -> bool {
        self.counts.contains_key(&key(d))
    }

    /// Distinct blocks referenced (up to shared 8-byte prefixes).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests;
