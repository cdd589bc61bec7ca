//! The file operations the stores need, behind one object-safe trait, so the
//! same `DiskStore` runs on the real disk (`RealFs`) and on a deterministic,
//! crashable, fault-injecting file system in memory (`SimFs`).
//!
//! The trait promises POSIX semantics as far as durability goes: `write_all`
//! reaches the page cache (no userspace buffer: a `read` right after it sees
//! the bytes, which `DiskStore` relies on to read entries back), `sync_data`
//! makes a file's bytes durable, and a
//! directory entry (a created, renamed or removed file) is durable only once
//! `sync_dir` ran on its directory.

pub mod real;
pub mod sim;
#[cfg(test)]
mod sim_tests;

use std::any::Any;
use std::io;
use std::path::Path;

pub use real::RealFs;
pub use sim::{CrashMode, SimFs};

/// An open file, written at its end (append) or from the start (created).
pub trait FsFile: Send {
    /// Writes all of `buf` through to the OS (unbuffered).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`: the bytes written so far (and the length) are durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates (or extends with zeros) to `len`; appends continue at the end.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// A held directory lock; dropping it releases the lock.
pub struct DirLock(#[allow(dead_code)] Box<dyn Any + Send>);

impl DirLock {
    pub fn new(guard: impl Any + Send) -> Self {
        DirLock(Box::new(guard))
    }
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirLock")
    }
}

pub trait FileSystem: Send + Sync + std::fmt::Debug + 'static {
    /// Creates `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of directory `path` (any order).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// A whole file; `ErrorKind::NotFound` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens `path` for appending, creating it (empty) if missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Creates `path` empty (truncating it if it exists), for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Atomically replaces `to` by `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of directory `dir` (the file `dir/LOCK`);
    /// `Ok(None)` when another holder has it.
    fn try_lock(&self, dir: &Path) -> io::Result<Option<DirLock>>;
}

/// `read`, with a missing file as `None`.
pub fn read_if_exists(fs: &dyn FileSystem, path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs.read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
