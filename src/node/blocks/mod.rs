//! The block store of API.md: file contents, cut into blocks, kept under their
//! SHA-256 (64 lower-case hex digits). Content addressing makes every write
//! idempotent, so blocks need no consensus ordering: `putblock` only waits
//! until a majority of nodes hold the block (`replication.rs`).
//!
//! Promises:
//! - A block is only ever stored under the hash of its bytes.
//! - With a data directory, a block lives at `DATA/blocks/<2 hex>/<hash>`,
//!   written to a temporary file, fsynced, then renamed: a reader sees the
//!   whole block or none of it, and a block reported stored survives a crash.
//! - Without one, blocks live in memory (the assignment's behaviour).
//! - Every block carries the time it was last written; `gc.rs` deletes only
//!   blocks unreferenced and untouched for the grace period.
//! - The store knows how many blocks, and bytes of them, it holds
//!   ([`BlockStore::held`], for `/metrics`) without reading the disk: a disk
//!   store counts what it finds when it opens, then every block it adds or
//!   removes. A block is linked into place only if no file holds its name yet
//!   (a hard link never replaces), so two writers of one new block count it
//!   once.

pub mod gc;
pub mod refs;
pub mod repair;
pub mod replication;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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
    /// `root` is `DATA/blocks`.
    Disk {
        root: PathBuf,
    },
}

/// One node's local blocks. Cheap to clone (clones share the store).
#[derive(Clone)]
pub struct BlockStore {
    backend: Arc<Backend>,
    /// What the store holds; the invariant: the blocks (and their bytes)
    /// under `backend`, as of the last completed put or remove.
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

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BlockError {
    BlockError::Io(format!("{what} {}: {e}", path.display()))
}

impl BlockStore {
    pub fn memory() -> Self {
        BlockStore {
            backend: Arc::new(Backend::Memory(Mutex::new(HashMap::new()))),
            counts: Arc::default(),
            written: Arc::default(),
        }
    }

    /// A store under `data_dir/blocks`, created if missing; counts the blocks
    /// it already holds (blocking I/O: call it off the async workers).
    pub fn disk(data_dir: &Path) -> Result<Self, BlockError> {
        let root = data_dir.join("blocks");
        std::fs::create_dir_all(&root).map_err(|e| io_err("creating", &root, e))?;
        let counts = Counts::default();
        let dirs = std::fs::read_dir(&root).map_err(|e| io_err("listing", &root, e))?;
        for dir in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for f in files.flatten() {
                if !is_hash(&f.file_name().to_string_lossy()) {
                    continue;
                }
                if let Some(m) = f.metadata().ok().filter(|m| m.is_file()) {
                    counts.add(m.len());
                }
            }
        }
        Ok(BlockStore {
            backend: Arc::new(Backend::Disk { root }),
            counts: Arc::new(counts),
            written: Arc::default(),
        })
    }

    /// The blocks this store holds and their bytes, without touching the
    /// disk.
    pub fn held(&self) -> Held {
        Held {
            blocks: self.counts.blocks.load(Ordering::Relaxed),
            bytes: self.counts.bytes.load(Ordering::Relaxed),
        }
    }

    /// On disk when `data_dir` is given, else in memory.
    pub fn open(data_dir: Option<&Path>) -> Result<Self, BlockError> {
        match data_dir {
            Some(d) => Self::disk(d),
            None => Ok(Self::memory()),
        }
    }

    fn path(root: &Path, hash: &str) -> PathBuf {
        root.join(&hash[..2]).join(hash)
    }

    /// Stores `data` (hashing it) and returns its hash. Storing a block that is
    /// already here only refreshes its time, so a re-upload restarts its grace.
    pub async fn put(&self, data: Arc<[u8]>) -> Result<String, BlockError> {
        let this = self.clone();
        run_blocking(move || {
            let digest: [u8; 32] = Sha256::digest(&data).into();
            let hash = crate::node::command::sha256_hex(&digest);
            this.put_sync(&hash, data)?;
            this.wrote(digest);
            Ok(hash)
        })
        .await
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

    /// When the block was last written, if it is here.
    pub async fn touched(&self, hash: &str) -> Result<Option<SystemTime>, BlockError> {
        if !is_hash(hash) {
            return Err(BlockError::BadHash(hash.to_owned()));
        }
        match &*self.backend {
            Backend::Memory(m) => Ok(m
                .lock()
                .expect("block map lock poisoned")
                .get(hash)
                .map(|s| s.touched)),
            Backend::Disk { root } => {
                let path = Self::path(root, hash);
                run_blocking(move || match std::fs::metadata(&path) {
                    Ok(m) => Ok(Some(m.modified().unwrap_or_else(|_| SystemTime::now()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err("reading", &path, e)),
                })
                .await
            }
        }
    }

    fn put_sync(&self, hash: &str, data: Arc<[u8]>) -> Result<(), BlockError> {
        match &*self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().expect("block map lock poisoned");
                let len = data.len() as u64;
                let old = m.insert(
                    hash.to_owned(),
                    Stored {
                        data,
                        touched: SystemTime::now(),
                    },
                );
                if old.is_none() {
                    self.counts.add(len);
                }
                Ok(())
            }
            Backend::Disk { root } => {
                let path = Self::path(root, hash);
                if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                    return Ok(());
                }
                let dir = path.parent().expect("a block path has a parent");
                std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
                let tmp = dir.join(format!(".{hash}.tmp-{:016x}", rand::random::<u64>()));
                // Linked, not renamed, into place: a link never replaces a
                // file, so of two writers of one new block only one adds it
                // to the counts.
                let write = || -> std::io::Result<bool> {
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(&data)?;
                    f.sync_all()?;
                    let added = match std::fs::hard_link(&tmp, &path) {
                        Ok(()) => true,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                        // A file system without hard links: rename, as
                        // before (a racing writer may then be counted too).
                        Err(_) => {
                            std::fs::rename(&tmp, &path)?;
                            true
                        }
                    };
                    let _ = std::fs::remove_file(&tmp);
                    std::fs::File::open(dir)?.sync_all()?;
                    Ok(added)
                };
                match write() {
                    Ok(added) => {
                        if added {
                            self.counts.add(data.len() as u64);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(io_err("writing", &path, e))
                    }
                }
            }
        }
    }

    /// The block's bytes, if held here.
    pub async fn get(&self, hash: &str) -> Result<Option<Arc<[u8]>>, BlockError> {
        if !is_hash(hash) {
            return Err(BlockError::BadHash(hash.to_owned()));
        }
        match &*self.backend {
            Backend::Memory(m) => Ok(m
                .lock()
                .expect("block map lock poisoned")
                .get(hash)
                .map(|s| s.data.clone())),
            Backend::Disk { root } => {
                let path = Self::path(root, hash);
                run_blocking(move || match std::fs::read(&path) {
                    Ok(d) => Ok(Some(d.into())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err("reading", &path, e)),
                })
                .await
            }
        }
    }

    /// For each of `hashes`, whether it is held here (malformed hashes are not).
    pub async fn has_many(&self, hashes: Vec<String>) -> Vec<bool> {
        match &*self.backend {
            Backend::Memory(m) => {
                let m = m.lock().expect("block map lock poisoned");
                hashes.iter().map(|h| m.contains_key(h)).collect()
            }
            Backend::Disk { root } => {
                let root = root.clone();
                run_blocking(move || {
                    Ok(hashes
                        .iter()
                        .map(|h| is_hash(h) && Self::path(&root, h).is_file())
                        .collect())
                })
                .await
                .unwrap_or_default()
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
            Backend::Disk { root } => {
                let root = root.clone();
                run_blocking(move || {
                    let mut out = Vec::new();
                    let dirs = std::fs::read_dir(&root).map_err(|e| io_err("listing", &root, e))?;
                    for dir in dirs.flatten() {
                        let Ok(files) = std::fs::read_dir(dir.path()) else {
                            continue;
                        };
                        for f in files.flatten() {
                            let name = f.file_name().to_string_lossy().into_owned();
                            if !is_hash(&name) {
                                continue;
                            }
                            let touched = f
                                .metadata()
                                .and_then(|m| m.modified())
                                .unwrap_or_else(|_| SystemTime::now());
                            out.push((name, touched));
                        }
                    }
                    Ok(out)
                })
                .await
            }
        }
    }

    /// Deletes a block (a no-op when it is not here).
    pub async fn remove(&self, hash: &str) -> Result<(), BlockError> {
        if !is_hash(hash) {
            return Err(BlockError::BadHash(hash.to_owned()));
        }
        match &*self.backend {
            Backend::Memory(m) => {
                let old = m.lock().expect("block map lock poisoned").remove(hash);
                if let Some(old) = old {
                    self.counts.sub(old.data.len() as u64);
                }
                Ok(())
            }
            Backend::Disk { root } => {
                let path = Self::path(root, hash);
                let counts = self.counts.clone();
                run_blocking(move || {
                    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            counts.sub(len);
                            Ok(())
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(io_err("removing", &path, e)),
                    }
                })
                .await
            }
        }
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
        assert!(dir.join("blocks").join(&h[..2]).join(&h).is_file());
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
        // Concurrent writers of one new block count it once.
        let store = BlockStore::disk(&dir).unwrap();
        assert_eq!(
            store.held(),
            Held {
                blocks: 1,
                bytes: 3
            }
        );
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
