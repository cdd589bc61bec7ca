//! The block store of API.md: file contents, cut into blocks, kept under their
//! SHA-256 (64 lower-case hex digits). Content addressing makes every write
//! idempotent, so blocks need no consensus ordering: `putblock` only waits
//! until a majority of nodes hold the block (`replication.rs`).
//!
//! Promises:
//! - A block is only ever stored under the hash of its bytes.
//! - With a data directory, blocks live in append-only pack files under
//!   `DATA/blocks/packs/` (`pack/`): a put answers once its block is
//!   fsynced, and concurrent puts share one fsync; a read checks the
//!   record's CRC and name and never returns wrong bytes. The old layout's
//!   loose `DATA/blocks/<2 hex>/<hash>` files are moved into packs at open.
//! - Without one, blocks live in memory (the assignment's behaviour).
//! - Every block carries the time it was last written (on disk: in memory
//!   only, so a reopen restarts it); `gc.rs` deletes only blocks
//!   unreferenced and untouched for the grace period.
//! - The store knows how many blocks, and bytes of them, it holds
//!   ([`BlockStore::held`], for `/metrics`) without reading the disk: the
//!   memory store counts puts and removes, the disk store its index (where
//!   a block is indexed once however many puts raced to write it).

pub mod gc;
pub mod pack;
pub mod refs;
pub mod repair;
pub mod replication;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use pack::{CompactStats, PackOptions, PackStore, PackUsage, SyncStats};

use sha2::{Digest, Sha256};

use crate::node::error::NodeError;

pub use replication::BlockService;

/// How the block store behaves; the server's flags set these.
#[derive(Clone, Debug)]
pub struct BlockOptions {
    /// Largest block `putblock` accepts, in bytes.
    pub max_block_bytes: usize,
    /// Unreferenced blocks older than this are deleted; `None` never deletes.
    pub gc_grace: Option<Duration>,
    /// How often the background task repairs missing blocks and collects garbage.
    pub maintenance_interval: Duration,
    /// How long `putblock` keeps trying to reach a majority before it fails.
    pub put_timeout: Duration,
}

impl Default for BlockOptions {
    fn default() -> Self {
        BlockOptions {
            max_block_bytes: 4 << 20,
            gc_grace: Some(Duration::from_secs(3600)),
            maintenance_interval: Duration::from_secs(2),
            put_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block is {size} bytes, above the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("`{0}` is not a block hash (64 lower-case hex digits)")]
    BadHash(String),
    #[error("no node holds block {0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("block store I/O: {0}")]
    Io(String),
}

impl From<BlockError> for NodeError {
    fn from(e: BlockError) -> NodeError {
        match e {
            BlockError::TooLarge { .. } | BlockError::BadHash(_) | BlockError::NotFound(_) => {
                NodeError::BadRequest(e.to_string())
            }
            BlockError::Unavailable(_) | BlockError::Io(_) => NodeError::Unavailable(e.to_string()),
        }
    }
}

/// The SHA-256 of `data`, as 64 lower-case hex digits.
pub fn hash_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Whether `s` can name a block: exactly 64 lower-case hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

struct Stored {
    data: Arc<[u8]>,
    touched: SystemTime,
}

enum Backend {
    Memory(Mutex<HashMap<String, Stored>>),
    /// Packs under `DATA/blocks/packs` (`pack/`).
    Disk(PackStore),
}

/// One node's local blocks. Cheap to clone (clones share the store).
#[derive(Clone)]
pub struct BlockStore {
    backend: Arc<Backend>,
    /// What the memory store holds; the invariant: the blocks (and their
    /// bytes) under `backend`, as of the last completed put or remove. (The
    /// disk store counts its index.)
    counts: Arc<Counts>,
    /// Blocks written since `take_written` last asked, for collection by
    /// change (`repair.rs`); bounded by [`refs::FEED_CAP`].
    written: Arc<Mutex<Written>>,
}

/// See [`BlockStore::take_written`].
#[derive(Debug, Default)]
pub struct Written {
    pub digests: Vec<refs::Digest>,
    /// More were written than the bound holds: some are not listed.
    pub overflowed: bool,
}

#[derive(Debug, Default)]
struct Counts {
    blocks: AtomicU64,
    bytes: AtomicU64,
}

impl Counts {
    fn add(&self, bytes: u64) {
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: u64) {
        let less = |n: u64| move |v: u64| Some(v.saturating_sub(n));
        let _ = self
            .blocks
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(1));
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(bytes));
    }
}

/// How much a block store holds (see [`BlockStore::held`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub blocks: u64,
    pub bytes: u64,
}

/// Blocks at most this large are hashed on the caller's thread; larger ones
/// on the blocking pool.
const HASH_INLINE_BYTES: usize = 64 << 10;

fn digest_of(data: &[u8]) -> refs::Digest {
    Sha256::digest(data).into()
}

/// The digests of `blocks`, hashed off the async workers when they are big.
async fn digests_of(blocks: Vec<Arc<[u8]>>) -> Result<Vec<(refs::Digest, Arc<[u8]>)>, BlockError> {
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    let hash = move || {
        Ok(blocks
            .into_iter()
            .map(|b| (digest_of(&b), b))
            .collect::<Vec<_>>())
    };
    if total <= HASH_INLINE_BYTES {
        hash()
    } else {
        run_blocking(hash).await
    }
}

impl BlockStore {
    pub fn memory() -> Self {
        BlockStore {
            backend: Arc::new(Backend::Memory(Mutex::new(HashMap::new()))),
            counts: Arc::default(),
            written: Arc::default(),
        }
    }

    /// A store under `data_dir/blocks`, created if missing: opens its packs
    /// and imports blocks of the old one-file-per-block layout (blocking
    /// I/O: call it off the async workers).
    pub fn disk(data_dir: &Path) -> Result<Self, BlockError> {
        Self::disk_with(data_dir, PackOptions::default())
    }

    /// [`BlockStore::disk`] with pack tuning (tests, benchmarks).
    pub fn disk_with(data_dir: &Path, opts: PackOptions) -> Result<Self, BlockError> {
        let root = data_dir.join("blocks");
        std::fs::create_dir_all(&root)
            .map_err(|e| BlockError::Io(format!("creating {}: {e}", root.display())))?;
        Ok(BlockStore {
            backend: Arc::new(Backend::Disk(PackStore::open(&root, opts)?)),
            counts: Arc::default(),
            written: Arc::default(),
        })
    }

    /// The blocks this store holds and their bytes, without touching the
    /// disk.
    pub fn held(&self) -> Held {
        match &*self.backend {
            Backend::Memory(_) => Held {
                blocks: self.counts.blocks.load(Ordering::Relaxed),
                bytes: self.counts.bytes.load(Ordering::Relaxed),
            },
            Backend::Disk(p) => p.held(),
        }
    }

    /// On disk when `data_dir` is given, else in memory.
    pub fn open(data_dir: Option<&Path>) -> Result<Self, BlockError> {
        match data_dir {
            Some(d) => Self::disk(d),
            None => Ok(Self::memory()),
        }
    }

    /// The disk store's packs (`None` in memory).
    pub fn packs(&self) -> Option<&PackStore> {
        match &*self.backend {
            Backend::Memory(_) => None,
            Backend::Disk(p) => Some(p),
        }
    }

    /// The writer's batches and fsyncs so far (zeros in memory).
    pub fn sync_stats(&self) -> SyncStats {
        self.packs().map(|p| p.sync_stats()).unwrap_or_default()
    }

    /// Stores `data` (hashing it) and returns its hash, once it is durable.
    /// Storing a block that is already here only refreshes its time, so a
    /// re-upload restarts its grace.
    pub async fn put(&self, data: Arc<[u8]>) -> Result<String, BlockError> {
        let mut hashes = self.put_many(vec![data]).await?;
        Ok(hashes.pop().expect("one hash per block"))
    }

    /// Stores every block of `blocks` as [`BlockStore::put`] does, in one
    /// batch of the writer (one fsync for up to [`pack::MAX_BATCH`] bytes);
    /// returns their hashes in order.
    pub async fn put_many(&self, blocks: Vec<Arc<[u8]>>) -> Result<Vec<String>, BlockError> {
        let blocks = digests_of(blocks).await?;
        let digests: Vec<refs::Digest> = blocks.iter().map(|(d, _)| *d).collect();
        match &*self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().expect("block map lock poisoned");
                for (d, data) in blocks {
                    let len = data.len() as u64;
                    let old = m.insert(
                        crate::node::command::sha256_hex(&d),
                        Stored {
                            data,
                            touched: SystemTime::now(),
                        },
                    );
                    if old.is_none() {
                        self.counts.add(len);
                    }
                }
            }
            Backend::Disk(p) => p.put(blocks).await?,
        }
        for d in &digests {
            self.wrote(*d);
        }
        Ok(digests
            .iter()
            .map(crate::node::command::sha256_hex)
            .collect())
    }

    fn wrote(&self, digest: refs::Digest) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if w.digests.len() < refs::FEED_CAP {
            w.digests.push(digest);
        } else {
            w.overflowed = true;
        }
    }

    /// The blocks written (or rewritten) since the last call: what may be
    /// garbage once the grace period is over, if no file references it.
    pub fn take_written(&self) -> Written {
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// When the block was last written (on disk: or when the store opened,
    /// whichever is later), if it is here.
    pub async fn touched(&self, hash: &str) -> Result<Option<SystemTime>, BlockError> {
        let digest = parse(hash)?;
        match &*self.backend {
            Backend::Memory(m) => Ok(m
                .lock()
                .expect("block map lock poisoned")
                .get(hash)
                .map(|s| s.touched)),
            Backend::Disk(p) => Ok(p.touched(&digest)),
        }
    }

    /// The block's bytes, if held here. A block whose stored bytes fail
    /// their check is an I/O error (and is no longer held).
    pub async fn get(&self, hash: &str) -> Result<Option<Arc<[u8]>>, BlockError> {
        let digest = parse(hash)?;
        match &*self.backend {
            Backend::Memory(m) => Ok(m
                .lock()
                .expect("block map lock poisoned")
                .get(hash)
                .map(|s| s.data.clone())),
            Backend::Disk(p) => p.get(&digest).await,
        }
    }

    /// [`BlockStore::get`] of many blocks at once (one blocking task on
    /// disk), in the order asked; `None` for a block not held here, or held
    /// but failing its check (it is then no longer held). A malformed hash
    /// is an error.
    pub async fn get_many(&self, hashes: &[String]) -> Result<Vec<Option<Arc<[u8]>>>, BlockError> {
        let digests = hashes
            .iter()
            .map(|h| parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        match &*self.backend {
            Backend::Memory(m) => {
                let m = m.lock().expect("block map lock poisoned");
                Ok(hashes
                    .iter()
                    .map(|h| m.get(h).map(|s| s.data.clone()))
                    .collect())
            }
            Backend::Disk(p) => p.get_many(digests).await,
        }
    }

    /// For each of `hashes`, whether it is held here (malformed hashes are not).
    pub async fn has_many(&self, hashes: Vec<String>) -> Vec<bool> {
        match &*self.backend {
            Backend::Memory(m) => {
                let m = m.lock().expect("block map lock poisoned");
                hashes.iter().map(|h| m.contains_key(h)).collect()
            }
            Backend::Disk(p) => {
                let digests: Vec<Option<refs::Digest>> = hashes
                    .iter()
                    .map(|h| crate::node::command::parse_sha256_hex(h))
                    .collect();
                p.has_many(&digests)
            }
        }
    }

    pub async fn has(&self, hash: &str) -> bool {
        self.has_many(vec![hash.to_owned()]).await[0]
    }

    /// Every block held here with the time it was last written.
    pub async fn list(&self) -> Result<Vec<(String, SystemTime)>, BlockError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m
                .lock()
                .expect("block map lock poisoned")
                .iter()
                .map(|(h, s)| (h.clone(), s.touched))
                .collect()),
            Backend::Disk(p) => Ok(p
                .list()
                .into_iter()
                .map(|(d, t)| (crate::node::command::sha256_hex(&d), t))
                .collect()),
        }
    }

    /// Deletes a block (a no-op when it is not here). On disk the record is
    /// only marked dead; compaction reclaims the space.
    pub async fn remove(&self, hash: &str) -> Result<(), BlockError> {
        let digest = parse(hash)?;
        match &*self.backend {
            Backend::Memory(m) => {
                let old = m.lock().expect("block map lock poisoned").remove(hash);
                if let Some(old) = old {
                    self.counts.sub(old.data.len() as u64);
                }
                Ok(())
            }
            Backend::Disk(p) => {
                p.remove(&digest);
                Ok(())
            }
        }
    }

    /// One bounded round of pack compaction (see [`PackStore::compact`]); a
    /// no-op in memory.
    pub async fn compact(&self, budget: u64) -> Result<CompactStats, BlockError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(CompactStats::default()),
            Backend::Disk(p) => p.compact(budget).await,
        }
    }
}

fn parse(hash: &str) -> Result<refs::Digest, BlockError> {
    match crate::node::command::parse_sha256_hex(hash) {
        Some(d) => Ok(d),
        None => Err(BlockError::BadHash(hash.to_owned())),
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlockError> + Send + 'static,
) -> Result<T, BlockError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlockError::Io(format!("block store task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lower_hex_sha256() {
        assert_eq!(
            hash_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert!(is_hash(&hash_hex(b"")));
        assert!(!is_hash("0"));
        assert!(!is_hash(&hash_hex(b"x").to_uppercase()));
    }

    #[tokio::test]
    async fn disk_store_round_trips_and_removes() {
        let dir = std::env::temp_dir().join(format!("surfstore-blocks-{}", rand::random::<u64>()));
        let store = BlockStore::disk(&dir).unwrap();
        let h = store.put(Arc::from(&b"hello"[..])).await.unwrap();
        assert_eq!(h, hash_hex(b"hello"));
        let packs = store.packs().unwrap().usage();
        assert_eq!(packs.len(), 1);
        assert!(packs[0].path.starts_with(dir.join("blocks").join("packs")));
        assert_eq!(packs[0].live, packs[0].bytes);
        assert_eq!(&*store.get(&h).await.unwrap().unwrap(), b"hello");
        assert_eq!(
            store.has_many(vec![h.clone(), "0".into()]).await,
            vec![true, false]
        );
        assert_eq!(store.list().await.unwrap().len(), 1);
        store.remove(&h).await.unwrap();
        assert_eq!(store.get(&h).await.unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn held_counts_follow_puts_and_removes_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("surfstore-held-{}", rand::random::<u64>()));
        for store in [BlockStore::memory(), BlockStore::disk(&dir).unwrap()] {
            assert_eq!(store.held(), Held::default());
            let a = store.put(Arc::from(&b"hello"[..])).await.unwrap();
            // A second put of the same block only refreshes it.
            store.put(Arc::from(&b"hello"[..])).await.unwrap();
            store.put(Arc::from(&b"abc"[..])).await.unwrap();
            assert_eq!(
                store.held(),
                Held {
                    blocks: 2,
                    bytes: 8
                }
            );
            store.remove(&a).await.unwrap();
            store.remove(&a).await.unwrap();
            assert_eq!(
                store.held(),
                Held {
                    blocks: 1,
                    bytes: 3
                }
            );
        }
        // A reopen counts what the packs hold: the removed block's record
        // is back (unreferenced garbage, which gc collects again).
        let store = BlockStore::disk(&dir).unwrap();
        assert_eq!(
            store.held(),
            Held {
                blocks: 2,
                bytes: 8
            }
        );
        store.remove(&hash_hex(b"hello")).await.unwrap();
        // Concurrent writers of one new block count it once.
        let puts: Vec<_> = (0..8)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move { s.put(Arc::from(&b"same"[..])).await })
            })
            .collect();
        for p in puts {
            p.await.unwrap().unwrap();
        }
        assert_eq!(
            store.held(),
            Held {
                blocks: 2,
                bytes: 7
            }
        );
        assert_eq!(store.list().await.unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
