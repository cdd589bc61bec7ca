//! `SimFs`: a deterministic file system in memory that can lose power.
//!
//! It tracks, for every file, the bytes written and the bytes made durable by
//! `sync_data`, and for every directory, the entries (created, renamed,
//! removed files and directories) and those made durable by `sync_dir`.
//! `crash(mode)` then keeps what a real machine could keep (`CrashMode`).
//!
//! Every mutating call is a numbered point (`points()`); a test can make the
//! machine stop at point `k` (`stop_at`: that call and every later one fail,
//! as if the power went out just before it) and then `crash`, or make single
//! calls fail with an `io::Error` (`fail_at`, `fail_next`) to check that a
//! failed write or fsync surfaces as an error, never as a panic.
//!
//! Paths are absolute; `/` always exists and is durable. A directory created
//! under a parent that does not exist yet is created with it (as `mkdir -p`);
//! each new entry is durable only once its parent directory is synced.
//! Handles opened before a crash fail afterwards; locks are released by it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DirLock, FileSystem, FsFile};

/// What survives `SimFs::crash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Power loss: every byte and directory entry not made durable is lost.
    LoseUnsynced,
    /// Power loss mid-write: each file keeps a prefix (its length drawn from
    /// the seed) of the bytes appended since its last `sync_data`, and each
    /// directory change since the last `sync_dir` survives or not (drawn
    /// from the seed). Unsynced truncations are lost.
    Torn(u64),
    /// A process crash (kill -9): the page cache survives, so everything
    /// written is kept (and is still only as durable as it was).
    KeepAll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    /// The bytes as of the last `sync_data`.
    durable: Vec<u8>,
    /// `durable` is a prefix of `data` (only appends since the last sync).
    appended_only: bool,
}

#[derive(Clone, Debug)]
struct State {
    /// The namespace as the running process sees it.
    entries: BTreeMap<PathBuf, Node>,
    /// The namespace as a power loss would leave it.
    durable_entries: BTreeMap<PathBuf, Node>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Mutating calls so far.
    points: u64,
    /// From this point on, every call fails (the machine stopped).
    stop_at: Option<u64>,
    fail_at: Vec<u64>,
    fail_next: u64,
    /// Bumped by `crash`: handles of an older epoch are dead.
    epoch: u64,
    /// Held directory locks: dir -> token.
    locks: BTreeMap<PathBuf, u64>,
    next_token: u64,
}

/// A simulated file system; clones share it.
#[derive(Clone, Debug)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory (simulated)", path.display()),
    )
}

/// A deterministic pseudo-random number from a seed and a key (splitmix64).
fn draw(seed: u64, key: u64) -> u64 {
    let mut z = seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl State {
    /// Counts a mutating call; `Err` when the fault knobs say it fails.
    fn point(&mut self, what: &str, path: &Path) -> io::Result<()> {
        let k = self.points;
        self.points += 1;
        if self.stop_at.is_some_and(|s| k >= s) {
            return Err(io::Error::other(format!(
                "simulated machine stop at point {k} ({what} {})",
                path.display()
            )));
        }
        let injected = if self.fail_next > 0 {
            self.fail_next -= 1;
            true
        } else if let Some(i) = self.fail_at.iter().position(|&p| p == k) {
            self.fail_at.swap_remove(i);
            true
        } else {
            false
        };
        if injected {
            return Err(io::Error::other(format!(
                "injected I/O error at point {k} ({what} {})",
                path.display()
            )));
        }
        Ok(())
    }

    fn reading(&self, path: &Path) -> io::Result<()> {
        match self.stop_at {
            Some(s) if self.points >= s => Err(io::Error::other(format!(
                "simulated machine stopped (reading {})",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    fn dir_exists(&self, path: &Path) -> bool {
        self.entries.get(path) == Some(&Node::Dir)
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.dir_exists(p) => Ok(()),
            _ => Err(not_found(path)),
        }
    }

    fn file(&self, path: &Path) -> io::Result<u64> {
        match self.entries.get(path) {
            Some(Node::File(ino)) => Ok(*ino),
            Some(Node::Dir) => Err(io::Error::other(format!(
                "{}: is a directory (simulated)",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn new_file(&mut self, path: &Path) -> u64 {
        let ino = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            ino,
            Inode {
                appended_only: true,
                ..Default::default()
            },
        );
        self.entries.insert(path.to_owned(), Node::File(ino));
        ino
    }

    fn inode(&mut self, ino: u64) -> &mut Inode {
        self.inodes
            .get_mut(&ino)
            .expect("sim fs invariant: an open handle's inode exists")
    }
}

impl SimFs {
    pub fn new() -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(PathBuf::from("/"), Node::Dir);
        SimFs {
            state: Arc::new(Mutex::new(State {
                durable_entries: entries.clone(),
                entries,
                inodes: BTreeMap::new(),
                next_inode: 1,
                points: 0,
                stop_at: None,
                fail_at: Vec::new(),
                fail_next: 0,
                epoch: 0,
                locks: BTreeMap::new(),
                next_token: 1,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle on the file at `path`, created (in an existing parent
    /// directory) if missing; `truncate` empties an existing one.
    fn open(&self, path: &Path, what: &str, truncate: bool) -> io::Result<Box<dyn FsFile>> {
        let mut st = self.lock();
        st.point(what, path)?;
        let ino = match st.file(path) {
            Ok(ino) => {
                if truncate {
                    let inode = st.inode(ino);
                    if !inode.durable.is_empty() {
                        inode.appended_only = false;
                    }
                    inode.data.clear();
                }
                ino
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                st.parent_exists(path)?;
                st.new_file(path)
            }
            Err(e) => return Err(e),
        };
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
            path: path.to_owned(),
            epoch: st.epoch,
        }))
    }

    /// Mutating calls (write and sync points) so far.
    pub fn points(&self) -> u64 {
        self.lock().points
    }

    /// From point `k` on (counted as `points`), every call fails: the machine
    /// stopped just before point `k`. `crash` clears it.
    pub fn stop_at(&self, k: u64) {
        self.lock().stop_at = Some(k);
    }

    /// Point `k` fails with an `io::Error` (and is not performed).
    pub fn fail_at(&self, k: u64) {
        self.lock().fail_at.push(k);
    }

    /// The next `n` points fail with an `io::Error`.
    pub fn fail_next(&self, n: u64) {
        self.lock().fail_next = n;
    }

    /// The machine restarts: what `mode` says survives, every open handle
    /// dies, every lock is released, the fault knobs are cleared.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.lock();
        st.epoch += 1;
        st.locks.clear();
        st.stop_at = None;
        st.fail_at.clear();
        st.fail_next = 0;
        if mode == CrashMode::KeepAll {
            return;
        }
        // The namespace.
        let mut paths: Vec<PathBuf> = st.entries.keys().cloned().collect();
        paths.extend(st.durable_entries.keys().cloned());
        paths.sort();
        paths.dedup();
        let mut kept = BTreeMap::new();
        for (i, p) in paths.iter().enumerate() {
            let now = st.entries.get(p).copied();
            let durable = st.durable_entries.get(p).copied();
            let keep_new = match mode {
                CrashMode::Torn(seed) if now != durable => draw(seed, i as u64) & 1 == 1,
                _ => false,
            };
            if let Some(n) = if keep_new { now } else { durable } {
                kept.insert(p.clone(), n);
            }
        }
        // A kept entry under a lost directory is lost with it.
        loop {
            let before = kept.len();
            let dirs: Vec<PathBuf> = kept
                .iter()
                .filter(|(_, n)| **n == Node::Dir)
                .map(|(p, _)| p.clone())
                .collect();
            kept.retain(|p, _| match p.parent() {
                None => true,
                Some(parent) => dirs.iter().any(|d| d == parent),
            });
            if kept.len() == before {
                break;
            }
        }
        // The files' bytes.
        let live: Vec<u64> = kept
            .values()
            .filter_map(|n| match n {
                Node::File(ino) => Some(*ino),
                Node::Dir => None,
            })
            .collect();
        st.inodes.retain(|ino, _| live.contains(ino));
        for (ino, inode) in st.inodes.iter_mut() {
            let keep = match mode {
                CrashMode::Torn(seed) if inode.appended_only => {
                    let extra = (inode.data.len() - inode.durable.len()) as u64;
                    inode.durable.len() + (draw(seed, !*ino) % (extra + 1)) as usize
                }
                _ => inode.durable.len(),
            };
            if inode.appended_only {
                inode.data.truncate(keep);
            } else {
                inode.data = inode.durable.clone();
            }
            inode.durable = inode.data.clone();
            inode.appended_only = true;
        }
        st.durable_entries = kept.clone();
        st.entries = kept;
    }

    /// An independent copy of the disk (durable and cached state alike), as
    /// if imaged: later changes to either are not seen by the other. Handles
    /// and locks are not carried over.
    pub fn deep_clone(&self) -> SimFs {
        let mut st = self.lock().clone();
        st.epoch += 1;
        st.locks.clear();
        SimFs {
            state: Arc::new(Mutex::new(st)),
        }
    }

    /// A file's current bytes (for tests that damage or inspect files).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let ino = st.file(path).ok()?;
        Some(st.inodes[&ino].data.clone())
    }

    /// Replaces a file's bytes, durably, outside the point counting (a test
    /// damaging a file).
    pub fn overwrite(&self, path: &Path, data: &[u8]) {
        let mut st = self.lock();
        let ino = st.file(path).expect("sim fs: overwrite an existing file");
        let inode = st.inode(ino);
        inode.data = data.to_vec();
        inode.durable = data.to_vec();
        inode.appended_only = true;
    }
}

struct SimFile {
    fs: SimFs,
    ino: u64,
    path: PathBuf,
    epoch: u64,
}

impl SimFile {
    fn with<R>(&mut self, what: &str, f: impl FnOnce(&mut Inode) -> R) -> io::Result<R> {
        let mut st = self.fs.lock();
        st.point(what, &self.path)?;
        if st.epoch != self.epoch {
            return Err(io::Error::other(format!(
                "{}: handle opened before a simulated crash",
                self.path.display()
            )));
        }
        Ok(f(st.inode(self.ino)))
    }
}

impl FsFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.with("write", |i| i.data.extend_from_slice(buf))
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with("fsync", |i| {
            if i.appended_only {
                let from = i.durable.len();
                i.durable.extend_from_slice(&i.data[from..]);
            } else {
                i.durable = i.data.clone();
            }
            i.appended_only = true;
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with("truncate", |i| {
            if (len as usize) < i.durable.len() {
                i.appended_only = false;
            }
            i.data.resize(len as usize, 0);
        })
    }
}

struct SimLock {
    fs: SimFs,
    dir: PathBuf,
    token: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.fs.lock();
        if st.locks.get(&self.dir) == Some(&self.token) {
            st.locks.remove(&self.dir);
        }
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.point("mkdir", path)?;
        let mut missing: Vec<&Path> = path
            .ancestors()
            .take_while(|a| !st.entries.contains_key(*a))
            .collect();
        missing.reverse();
        for m in missing {
            if m.parent().is_none() {
                return Err(not_found(m));
            }
            st.entries.insert(m.to_owned(), Node::Dir);
        }
        if st.entries.get(path) != Some(&Node::Dir) {
            return Err(io::Error::other(format!(
                "{}: not a directory (simulated)",
                path.display()
            )));
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        st.reading(path)?;
        if !st.dir_exists(path) {
            return Err(not_found(path));
        }
        Ok(st
            .entries
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        st.reading(path)?;
        let ino = st.file(path)?;
        Ok(st.inodes[&ino].data.clone())
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open(path, "open", false)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open(path, "create", true)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.point("rename", from)?;
        let ino = st.file(from)?;
        st.parent_exists(to)?;
        if st.entries.get(to) == Some(&Node::Dir) {
            return Err(io::Error::other(format!(
                "{}: is a directory (simulated)",
                to.display()
            )));
        }
        st.entries.remove(from);
        st.entries.insert(to.to_owned(), Node::File(ino));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.point("remove", path)?;
        st.file(path)?;
        st.entries.remove(path);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.point("fsync dir", path)?;
        if !st.dir_exists(path) {
            return Err(not_found(path));
        }
        let st = &mut *st;
        st.durable_entries.retain(|p, _| p.parent() != Some(path));
        for (p, n) in &st.entries {
            if p.parent() == Some(path) {
                st.durable_entries.insert(p.clone(), *n);
            }
        }
        Ok(())
    }

    fn try_lock(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        let mut st = self.lock();
        st.reading(dir)?;
        if !st.dir_exists(dir) {
            return Err(not_found(dir));
        }
        if st.locks.contains_key(dir) {
            return Ok(None);
        }
        let token = st.next_token;
        st.next_token += 1;
        st.locks.insert(dir.to_owned(), token);
        Ok(Some(DirLock::new(SimLock {
            fs: self.clone(),
            dir: dir.to_owned(),
            token,
        })))
    }
}
