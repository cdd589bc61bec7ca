//! One sync of a base directory with the cluster, the SurfStore algorithm:
//!
//! 1. Check the block size against the server's limit, read `index.txt` and
//!    `.surfignore`, and hash every local file into blocks, before any call,
//!    so a bad block size or a corrupt index or ignore file stops the sync
//!    with the folder untouched. Entries a sync does not carry (symbolic
//!    links, FIFOs, sockets, devices, unreadable directories and files) are
//!    listed once and left alone. Then read the remote map from the leader.
//! 2. For every name known locally, in the index or remotely (less what
//!    `.surfignore` ignores, and less remote entries whose hash lists name no
//!    blocks, written by other tools: listed once, never created here): a file
//!    new or changed since the index (or deleted: a tombstone `["0"]`) whose
//!    remote version is still the index's is uploaded: the blocks the cluster
//!    lacks (asked with `hasblocks`), then `updatefile` with version+1. A
//!    remote version newer than the index is downloaded (a tombstone deletes
//!    the local file, and the directories it leaves empty). When both changed
//!    (the remote version moved on, or the `updatefile` returns false), the
//!    remote version wins; under `--conflicts keep` the local copy is kept
//!    aside as `NAME.conflict-<remote version>`, which the next sync uploads
//!    like any new file; under `--conflicts cloud` it is dropped.
//! 3. The index is rewritten (atomically) with what was done, also when the
//!    sync stops half-way, so the next sync resumes instead of redoing.
//!
//! Step 2 is planned first (names that need nothing cost nothing more), then
//! the files that need something run as tasks, `--parallel` at a time
//! (`file.rs`), each in the order above: blocks, then its `updatefile`, so
//! the `updatefile`s of many files are in flight together and the leader
//! commits them in one group. Blocks go through one uploader for the whole
//! sync (`sync/uploader.rs`): one `hasblocks` and one `putblocks` for up to
//! 1024 blocks or 4 MiB of many files at a time, at most 4 such batches under
//! way. Downloads keep at most 64 `getblock`s in flight across all files.
//! So the calls in flight are bounded by `parallel` + 4 batches + 64. What
//! the tasks did is applied in name order once they are done (the index, the
//! messages, and the local deletes of remote tombstones, after every
//! download is written), so the outcome does not depend on which finished
//! first. A fatal error (the cluster gone) starts no new file; those under
//! way finish and are recorded.
//!
//! "Changed" means changed content, not a changed hash list: the index keeps
//! each file's hashes at this client's block size, and a list cut at another
//! block size is compared by content (`content.rs`), so clients with
//! different BLOCKSIZEs never move or re-version unchanged files.
//!
//! Names from anywhere go through `fsutil::safe_join`: a name that could
//! leave the base directory is skipped with a problem reported, never written.

mod file;
mod transfer;
pub mod uploader;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use indicatif::MultiProgress;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::content::{block_hashes, is_block_list};
use super::fsutil::{self, Scan, INDEX};
use super::index::{self, is_tombstone, Index, IndexEntry};
use super::remote::Remote;
use super::statcache::{self, Stat, StatCache};
use super::surfignore::Rules;
use super::{ClientError, SyncOptions};
use crate::node::command::sha256_hex;
use crate::xmlrpc::Value;
use file::{Ctx, IndexOp, Job, Outcome};
use transfer::GETBLOCKS_IN_FLIGHT;
use uploader::{Counters, Uploader};

/// What a sync did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub uploaded: Vec<String>,
    pub downloaded: Vec<String>,
    /// Local deletes sent as tombstones.
    pub deleted_remote: Vec<String>,
    /// Local files deleted because of a remote tombstone.
    pub deleted_local: Vec<String>,
    /// (file, where the local copy was kept): conflicts under `keep`.
    pub conflicts: Vec<(String, String)>,
    /// Files whose local change lost a conflict under `cloud` and was dropped.
    pub dropped: Vec<String>,
    /// Directories removed because the deletes of this sync left them empty.
    pub removed_dirs: Vec<String>,
    /// Every action, in the order done, for the messages.
    pub actions: Vec<Action>,
    /// Files skipped, with why; the rest of the sync went on. Non-empty
    /// means something of the user's was not synced (exit code 1).
    pub problems: Vec<String>,
    /// Things left alone on purpose, one line per kind per sync (entries
    /// that are not regular files, remote lists of other tools); they do not
    /// change the exit code.
    pub warnings: Vec<String>,
    /// Names `.surfignore` kept out of this sync (directories with a `/`).
    pub ignored: Vec<String>,
    pub blocks_uploaded: usize,
    pub blocks_downloaded: usize,
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
    /// Local files read and hashed by the scan (the rest came from the stat
    /// cache).
    pub files_read: usize,
}

/// One thing a sync did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    /// The version the file is at afterwards (0 for a directory).
    pub version: i64,
    pub what: Did,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Did {
    /// Sent; `new`: the cloud did not have the file (or had it deleted).
    Uploaded { new: bool },
    /// Fetched; `new`: this folder did not have it; `undeleted`: the local
    /// delete lost to a remote edit.
    Downloaded { new: bool, undeleted: bool },
    /// Deleted here, a tombstone sent.
    DeletedRemote,
    /// Deleted remotely, so deleted here.
    DeletedLocal,
    /// A conflict under `keep`: the local copy moved aside to `aside`.
    ConflictKept { aside: String },
    /// A conflict under `cloud`: the local change is dropped.
    ConflictDropped,
    /// A directory left empty by remote deletes, removed.
    RemovedDir,
}

const TOMBSTONE: &str = "0";
/// Names given in a one-line warning about many files.
const NAMES_IN_WARNING: usize = 3;

/// The remote map: name -> (version, hashes as strings).
type RemoteMap = BTreeMap<String, (i64, Vec<String>)>;

fn parse_map(v: &Value) -> Result<RemoteMap, ClientError> {
    let bad = || ClientError::Protocol(format!("getfileinfomap answered {}", v.type_name()));
    let mut out = RemoteMap::new();
    for (name, info) in v.as_struct().ok_or_else(bad)? {
        let Some([ver, Value::Array(hs)]) = info.as_array() else {
            return Err(ClientError::Protocol(format!(
                "getfileinfomap: entry {name:?} is not [version, hashlist]"
            )));
        };
        let ver = ver.as_i64().ok_or_else(bad)?;
        let hs = hs.iter().map(hash_name).collect();
        out.insert(name.clone(), (ver, hs));
    }
    Ok(out)
}

/// A remote hash as the block name it stands for: a string as it is, a raw
/// 32-byte SHA-256 (base64, what a Python client's `sha256().digest()` is)
/// as its hex name; anything else as text that names no block (so the list
/// is not a block list, see `content::is_block_list`).
fn hash_name(h: &Value) -> String {
    match h {
        Value::String(s) => s.clone(),
        Value::Base64(b) => match <&[u8; 32]>::try_from(&b[..]) {
            Ok(digest) => sha256_hex(digest),
            Err(_) => format!("<{} bytes of base64>", b.len()),
        },
        Value::Int(i) => i.to_string(),
        Value::I8(i) => i.to_string(),
        other => format!("<{}>", other.type_name()),
    }
}

/// `names` in a line: the first few, then how many more.
pub(crate) fn some_names(names: &[String], few: usize) -> String {
    let shown: Vec<String> = names.iter().take(few).map(|n| format!("{n:?}")).collect();
    let mut s = shown.join(", ");
    if names.len() > few {
        s.push_str(&format!(" and {} more", names.len() - few));
    }
    s
}

/// Syncs `opts.base_dir` with the cluster reached at `addr`.
pub async fn sync(addr: &str, opts: &SyncOptions) -> Result<Summary, ClientError> {
    let base = opts.base_dir.clone();
    match std::fs::metadata(&base) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(ClientError::BaseDir {
                path: base,
                why: "not a directory".into(),
            })
        }
        Err(e) => {
            return Err(ClientError::BaseDir {
                path: base,
                why: e.to_string(),
            })
        }
    }
    if opts.block_size == 0 {
        return Err(ClientError::BadBlockSize(opts.block_size));
    }
    super::check_block_size(opts.block_size, opts.max_block_bytes)?;
    let index_path = base.join(INDEX);
    let index = index::load(&index_path)?;
    let rules = Rules::load(&base)?;

    // Hash every local file first. A file that cannot be read is skipped
    // like an unreadable directory: listed, and its name left alone (not
    // uploaded, not deleted remotely, not written), so an edit it may hold
    // is never mistaken for none.
    // The map is read meanwhile: the two are independent, and a sync of
    // many unchanged files is these two and little else.
    let bs = opts.block_size;
    let scan_base = base.clone();
    let cache_path = opts.stat_cache.clone();
    let scanning = tokio::task::spawn_blocking(move || {
        let mut scan =
            fsutil::scan(&scan_base, &rules).map_err(|e| ClientError::io(&scan_base, e))?;
        let files = std::mem::take(&mut scan.files);
        let cache = cache_path
            .as_deref()
            .map(|p| StatCache::load(p, bs))
            .unwrap_or_default();
        let read_at = std::time::SystemTime::now();
        let mut local = BTreeMap::new();
        let mut stats = Vec::new();
        let mut read = 0;
        for f in hash_files(files, bs, &cache) {
            match f.read {
                Ok((hashes, stat, was_read)) => {
                    read += usize::from(was_read);
                    stats.push((f.name.clone(), stat));
                    local.insert(f.name.clone(), hashes);
                    scan.files.insert(f.name, f.path);
                }
                Err(e) => {
                    scan.skipped.push((f.name, format!("cannot be read: {e}")));
                    scan.unreadable += 1;
                }
            }
        }
        scan.skipped.sort();
        // Rewritten when a file was read or one went; a failure costs only
        // the next sync's reads.
        if let Some(p) = cache_path.filter(|_| read > 0 || cache.len() != stats.len()) {
            let files = stats
                .iter()
                .map(|(name, stat)| (name.as_str(), stat, local[name].as_slice()));
            if let Err(e) = statcache::save(&p, bs, read_at, files) {
                tracing::warn!("stat cache {} not written: {e}", p.display());
            }
        }
        Ok::<_, ClientError>((local, scan, rules, read))
    });
    let reading = async {
        let remote =
            Remote::connect(addr, opts.call_timeout, opts.retry_budget, &opts.transport).await?;
        let map = parse_map(&remote.leader_call("getfileinfomap", &[]).await?)?;
        Ok::<_, ClientError>((remote, map))
    };
    let scanned = async {
        scanning
            .await
            .map_err(|e| ClientError::Protocol(format!("hashing task failed: {e}")))?
    };
    let ((mut local, scan, rules, files_read), (remote, map)) = tokio::try_join!(scanned, reading)?;

    let mut summary = Summary {
        problems: scan
            .bad_names
            .iter()
            .map(|s| format!("skipped local file {s}"))
            .collect(),
        ignored: scan.ignored.clone(),
        ..Summary::default()
    };
    if !scan.skipped.is_empty() {
        let listed: Vec<String> = scan
            .skipped
            .iter()
            .map(|(name, why)| format!("{name:?} ({why})"))
            .collect();
        let line = format!(
            "skipped {}: {}",
            super::report::count(scan.skipped.len(), "entry", "entries"),
            listed.join(", ")
        );
        // Unreadable entries hold the user's data that did not sync.
        if scan.unreadable > 0 {
            summary.problems.push(line);
        } else {
            summary.warnings.push(line);
        }
    }
    let names: BTreeSet<String> = local
        .keys()
        .chain(index.keys())
        .chain(map.keys())
        .cloned()
        .collect();

    // The plan: what each name needs, in name order. Names that need
    // nothing (the common case of an unchanged file) cost no task.
    let mut done: Vec<Outcome> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    let mut foreign = Vec::new();
    for name in &names {
        if let Some(p) = fsutil::name_problem(name) {
            let mut o = Outcome::new(name);
            o.problem = Some(format!("skipped {name:?}: {p}"));
            done.push(o);
            continue;
        }
        if let Some((entry, why)) = scan.opaque_cover(name) {
            // Left alone; a remote change it keeps out is the user's to know.
            let known = index.get(name).map_or(0, |e| e.version);
            let mut o = Outcome::new(name);
            match map.get(name) {
                Some((rv, rh)) if *rv > known && is_tombstone(rh) => {
                    o.index = IndexOp::Set(IndexEntry {
                        version: *rv,
                        hashes: rh.clone(),
                    });
                }
                Some((rv, _)) if *rv > known => {
                    o.problem = Some(format!(
                        "skipped {name:?}: the cloud has version {rv}, but the local {entry:?} \
                         ({why}) is left alone"
                    ))
                }
                _ => {}
            }
            done.push(o);
            continue;
        }
        if rules.ignores(name, false) {
            if !is_listed(&scan, name) {
                summary.ignored.push(name.clone());
            }
            continue;
        }
        let rem = map.get(name);
        if let Some((rv, rh)) = rem {
            if !is_block_list(rh) {
                if local.contains_key(name) {
                    let mut o = Outcome::new(name);
                    o.problem = Some(format!(
                        "{name:?}: the cloud's version {rv} lists {}, which are not block \
                         hashes (written by another tool); your file was neither uploaded \
                         nor replaced",
                        some_names(rh, NAMES_IN_WARNING)
                    ));
                    done.push(o);
                } else {
                    foreign.push(name.clone());
                }
                continue;
            }
        }
        let idx = index.get(name);
        let base_v = idx.map_or(0, |e| e.version);
        let rv = rem.map_or(0, |r| r.0);
        let unchanged = match (local.get(name), idx) {
            (Some(h), Some(e)) => *h == e.hashes,
            (None, Some(e)) => e.is_tombstone(),
            (Some(_), None) => false,
            (None, None) => true,
        };
        if unchanged && rv == base_v {
            continue;
        }
        jobs.push(Job {
            name: name.clone(),
            local: local.remove(name),
            idx: idx.cloned(),
            rem: rem.cloned(),
        });
    }
    drop(map);

    // The files, `parallel` at a time; a fatal error stops new ones, those
    // under way finish.
    let parallel = opts.parallel.max(1);
    let counters = Arc::new(Counters::default());
    let ctx = Arc::new(Ctx {
        base: base.clone(),
        opts: opts.clone(),
        uploader: Uploader::start(remote.clone(), opts.block_size, parallel, counters.clone()),
        remote,
        names,
        asides: Default::default(),
        getblocks: Arc::new(Semaphore::new(GETBLOCKS_IN_FLIGHT)),
        batch_gets: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        counters: counters.clone(),
        bars: MultiProgress::new(),
        fresh: Default::default(),
    });
    let mut fatal = None;
    let mut set = JoinSet::new();
    let mut jobs = jobs.into_iter();
    loop {
        while fatal.is_none() && set.len() < parallel {
            let Some(job) = jobs.next() else { break };
            set.spawn(file::run(ctx.clone(), job));
        }
        let Some(finished) = set.join_next().await else {
            break;
        };
        let (mut o, r) = match finished {
            Ok(d) => d,
            Err(e) => {
                fatal.get_or_insert(ClientError::Protocol(format!("a file task failed: {e}")));
                continue;
            }
        };
        match r {
            Ok(()) => {}
            Err(e) if e.is_fatal() => {
                fatal.get_or_insert(e);
            }
            Err(e) => o.problem = Some(format!("{:?}: {e}", o.name)),
        }
        done.push(o);
    }
    drop(ctx);

    // What was done, in name order: the index, the messages, and the local
    // deletes of remote tombstones (after every download is written).
    done.sort_by(|a, b| a.name.cmp(&b.name));
    let apply_base = base.clone();
    let (mut summary, index) = tokio::task::spawn_blocking(move || {
        let mut index = index;
        for o in done {
            apply(&apply_base, &mut index, &mut summary, o);
        }
        (summary, index)
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("apply task failed: {e}")))?;
    summary.files_read = files_read;
    summary.blocks_uploaded = counters.blocks_up.load(Ordering::Relaxed);
    summary.bytes_uploaded = counters.bytes_up.load(Ordering::Relaxed);
    summary.blocks_downloaded = counters.blocks_down.load(Ordering::Relaxed);
    summary.bytes_downloaded = counters.bytes_down.load(Ordering::Relaxed);
    if !foreign.is_empty() {
        summary.warnings.push(format!(
            "skipped {} in the cloud whose hash lists are not block hashes (written by \
             another tool, e.g. run-tester.sh; not created here): {}",
            super::report::count(foreign.len(), "file", "files"),
            some_names(&foreign, NAMES_IN_WARNING)
        ));
    }
    summary.ignored.sort();
    index::store(&index_path, &index)?;
    match fatal {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Applies one file's outcome: its local delete, its index line, its
/// messages.
fn apply(base: &Path, index: &mut Index, summary: &mut Summary, mut o: Outcome) {
    if let Some((rv, rh)) = o.delete.take() {
        match delete_local(base, &o.name) {
            Ok(Some(dirs)) => {
                o.actions.push(Action {
                    name: o.name.clone(),
                    version: rv,
                    what: Did::DeletedLocal,
                });
                o.actions.extend(dirs.into_iter().map(|d| Action {
                    name: d,
                    version: 0,
                    what: Did::RemovedDir,
                }));
                o.index = IndexOp::Set(IndexEntry {
                    version: rv,
                    hashes: rh,
                });
            }
            Ok(None) => {
                o.index = IndexOp::Set(IndexEntry {
                    version: rv,
                    hashes: rh,
                })
            }
            Err(e) => o.problem = Some(format!("{:?}: {e}", o.name)),
        }
    }
    match o.index {
        IndexOp::Keep => {}
        IndexOp::Set(e) => {
            index.insert(o.name.clone(), e);
        }
        IndexOp::Remove => {
            index.remove(&o.name);
        }
    }
    for a in o.actions {
        let n = a.name.clone();
        match &a.what {
            Did::Uploaded { .. } => summary.uploaded.push(n),
            Did::Downloaded { .. } => summary.downloaded.push(n),
            Did::DeletedRemote => summary.deleted_remote.push(n),
            Did::DeletedLocal => summary.deleted_local.push(n),
            Did::ConflictKept { aside } => summary.conflicts.push((n, aside.clone())),
            Did::ConflictDropped => summary.dropped.push(n),
            Did::RemovedDir => summary.removed_dirs.push(n),
        }
        summary.actions.push(a);
    }
    if let Some(p) = o.problem {
        summary.problems.push(p);
    }
}

/// Deletes the local file `name` for a remote tombstone, and the
/// directories that leaves empty; `None` if it is no longer a file.
fn delete_local(base: &Path, name: &str) -> Result<Option<Vec<String>>, ClientError> {
    let path = fsutil::safe_join(base, name).map_err(ClientError::UnsafeName)?;
    if !path.is_file() {
        return Ok(None);
    }
    std::fs::remove_file(&path).map_err(|e| ClientError::io(&path, e))?;
    Ok(Some(fsutil::remove_empty_parents(base, &path)))
}

/// One local file as [`hash_files`] found it.
struct Hashed {
    name: String,
    path: std::path::PathBuf,
    /// Its hashes, its stat, and whether it was read (not in the cache).
    read: std::io::Result<(Vec<String>, Stat, bool)>,
}

/// Hashes `files` at `bs`: from `cache` when the stat matches, else read
/// (the stat taken first, on the open file); on up to 4 threads, each
/// with a share in name order.
fn hash_files(
    files: BTreeMap<String, std::path::PathBuf>,
    bs: usize,
    cache: &StatCache,
) -> Vec<Hashed> {
    let files: Vec<(String, std::path::PathBuf)> = files.into_iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(files.len().div_ceil(256).max(1));
    let one = |name: &str, path: &std::path::Path| -> std::io::Result<(Vec<String>, Stat, bool)> {
        if !cache.is_empty() {
            if let Ok(m) = std::fs::metadata(path) {
                let stat = Stat::of(&m);
                if let Some(h) = cache.lookup(name, &stat) {
                    return Ok((h, stat, false));
                }
            }
        }
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let stat = Stat::of(&f.metadata()?);
        let mut data = Vec::with_capacity(stat.size as usize);
        f.read_to_end(&mut data)?;
        Ok((block_hashes(&data, bs), stat, true))
    };
    let hash = |part: &[(String, std::path::PathBuf)]| {
        part.iter()
            .map(|(name, path)| Hashed {
                name: name.clone(),
                path: path.clone(),
                read: one(name, path),
            })
            .collect::<Vec<_>>()
    };
    if threads <= 1 {
        return hash(&files);
    }
    let share = files.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = files
            .chunks(share)
            .map(|part| s.spawn(move || hash(part)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("a hashing thread panicked"))
            .collect()
    })
}

/// Whether the scan already listed `name` as ignored (itself or a directory
/// it is in).
fn is_listed(scan: &Scan, name: &str) -> bool {
    scan.ignored
        .iter()
        .any(|i| i == name || (i.ends_with('/') && name.starts_with(i.as_str())))
}
