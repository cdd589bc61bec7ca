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
//! "Changed" means changed content, not a changed hash list: the index keeps
//! each file's hashes at this client's block size, and a list cut at another
//! block size is compared by content (`content.rs`), so clients with
//! different BLOCKSIZEs never move or re-version unchanged files.
//!
//! Names from anywhere go through `fsutil::safe_join`: a name that could
//! leave the base directory is skipped with a problem reported, never written.

mod transfer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::content::{block_hashes, is_block_list, same_content};
use super::fsutil::{self, Scan, INDEX};
use super::index::{self, is_tombstone, Index, IndexEntry};
use super::remote::Remote;
use super::surfignore::Rules;
use super::{ClientError, ConflictPolicy, SyncOptions};
use crate::node::command::sha256_hex;
use crate::xmlrpc::Value;

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
const HASBLOCKS_BATCH: usize = 2048;
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
    let bs = opts.block_size;
    let scan_base = base.clone();
    let (local, scan, rules) = tokio::task::spawn_blocking(move || {
        let mut scan =
            fsutil::scan(&scan_base, &rules).map_err(|e| ClientError::io(&scan_base, e))?;
        let mut local = BTreeMap::new();
        let files = std::mem::take(&mut scan.files);
        for (name, path) in files {
            match std::fs::read(&path) {
                Ok(data) => {
                    local.insert(name.clone(), block_hashes(&data, bs));
                    scan.files.insert(name, path);
                }
                Err(e) => {
                    scan.skipped.push((name, format!("cannot be read: {e}")));
                    scan.unreadable += 1;
                }
            }
        }
        scan.skipped.sort();
        Ok::<_, ClientError>((local, scan, rules))
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("hashing task failed: {e}")))??;

    let remote =
        Remote::connect(addr, opts.call_timeout, opts.retry_budget, &opts.transport).await?;
    let map = parse_map(&remote.leader_call("getfileinfomap", &[]).await?)?;

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
    let mut run = Run {
        base,
        opts: opts.clone(),
        remote,
        index,
        summary,
    };
    let names: BTreeSet<String> = local
        .keys()
        .chain(run.index.keys())
        .chain(map.keys())
        .cloned()
        .collect();
    let mut foreign = Vec::new();
    let mut fatal = None;
    for name in names {
        if let Some(p) = fsutil::name_problem(&name) {
            run.summary.problems.push(format!("skipped {name:?}: {p}"));
            continue;
        }
        if let Some((entry, why)) = scan.opaque_cover(&name) {
            // Left alone; a remote change it keeps out is the user's to know.
            let known = run.index.get(&name).map_or(0, |e| e.version);
            match map.get(&name) {
                Some((rv, rh)) if *rv > known && is_tombstone(rh) => {
                    run.adopt(&name, *rv, rh.clone());
                }
                Some((rv, _)) if *rv > known => run.summary.problems.push(format!(
                    "skipped {name:?}: the cloud has version {rv}, but the local {entry:?} \
                     ({why}) is left alone"
                )),
                _ => {}
            }
            continue;
        }
        if rules.ignores(&name, false) {
            if !is_listed(&scan, &name) {
                run.summary.ignored.push(name);
            }
            continue;
        }
        if let Some((rv, rh)) = map.get(&name) {
            if !is_block_list(rh) {
                if local.contains_key(&name) {
                    run.summary.problems.push(format!(
                        "{name:?}: the cloud's version {rv} lists {}, which are not block \
                         hashes (written by another tool); your file was neither uploaded \
                         nor replaced",
                        some_names(rh, NAMES_IN_WARNING)
                    ));
                } else {
                    foreign.push(name);
                }
                continue;
            }
        }
        let result = run
            .sync_one(&name, local.get(&name), map.get(&name).cloned())
            .await;
        match result {
            Ok(()) => {}
            Err(e) if e.is_fatal() => {
                fatal = Some(e);
                break;
            }
            Err(e) => run.summary.problems.push(format!("{name:?}: {e}")),
        }
    }
    if !foreign.is_empty() {
        run.summary.warnings.push(format!(
            "skipped {} in the cloud whose hash lists are not block hashes (written by \
             another tool, e.g. run-tester.sh; not created here): {}",
            super::report::count(foreign.len(), "file", "files"),
            some_names(&foreign, NAMES_IN_WARNING)
        ));
    }
    run.summary.ignored.sort();
    index::store(&index_path, &run.index)?;
    match fatal {
        Some(e) => Err(e),
        None => Ok(run.summary),
    }
}

/// Whether the scan already listed `name` as ignored (itself or a directory
/// it is in).
fn is_listed(scan: &Scan, name: &str) -> bool {
    scan.ignored
        .iter()
        .any(|i| i == name || (i.ends_with('/') && name.starts_with(i.as_str())))
}

struct Run {
    base: PathBuf,
    opts: SyncOptions,
    remote: Remote,
    index: Index,
    summary: Summary,
}

impl Run {
    async fn sync_one(
        &mut self,
        name: &str,
        local: Option<&Vec<String>>,
        rem: Option<(i64, Vec<String>)>,
    ) -> Result<(), ClientError> {
        let path = fsutil::safe_join(&self.base, name).map_err(ClientError::UnsafeName)?;
        let idx = self.index.get(name).cloned();
        let mut base_v = idx.as_ref().map_or(0, |e| e.version);
        let rv = rem.as_ref().map_or(0, |r| r.0);
        let mut local_changed = match (local, &idx) {
            (Some(h), Some(e)) if *h != e.hashes => {
                // The index may hold the list cut at another block size (what
                // an older client recorded): same content is no change.
                if self.local_is(&path, &e.hashes).await? {
                    self.adopt(name, e.version, h.clone());
                    false
                } else {
                    true
                }
            }
            (Some(_), Some(_)) => false,
            (Some(_), None) => true,
            (None, Some(e)) => !e.is_tombstone(),
            (None, None) => false,
        };
        if rv < base_v {
            // The cluster forgot this file (a fresh cluster): start again from its view.
            self.index.remove(name);
            base_v = rv;
            local_changed = local.is_some();
        }
        if local_changed {
            let mut new_h = local.cloned().unwrap_or_else(|| vec![TOMBSTONE.into()]);
            if let Some((rv, rh)) = &rem {
                if *rh == new_h || (local.is_some() && self.local_is(&path, rh).await?) {
                    self.adopt(name, *rv, new_h);
                    return Ok(());
                }
            }
            if rv == base_v {
                if rem.is_none() && local.is_none() {
                    self.index.remove(name);
                    return Ok(());
                }
                if local.is_some() {
                    new_h = self.upload_blocks(name, &path).await?;
                }
                let next = base_v + 1;
                let params = [
                    Value::String(name.to_owned()),
                    i32::try_from(next).map_or(Value::I8(next), Value::Int),
                    Value::Array(new_h.iter().cloned().map(Value::String).collect()),
                ];
                let ok = self.remote.leader_call("updatefile", &params).await?;
                if ok == Value::Bool(true) {
                    let was_there = rem.as_ref().is_some_and(|(_, h)| !is_tombstone(h));
                    if is_tombstone(&new_h) {
                        self.summary.deleted_remote.push(name.to_owned());
                        self.act(name, next, Did::DeletedRemote);
                    } else {
                        self.summary.uploaded.push(name.to_owned());
                        self.act(name, next, Did::Uploaded { new: !was_there });
                    }
                    self.adopt(name, next, new_h);
                    return Ok(());
                }
                // Someone else got there first (or our own earlier try did,
                // its answer lost in a failover): look again.
                let map = parse_map(&self.remote.leader_call("getfileinfomap", &[]).await?)?;
                let Some((rv2, rh2)) = map.get(name).cloned() else {
                    return Err(ClientError::Protocol(format!(
                        "updatefile({name:?}, {next}) was refused but the file is not in the map"
                    )));
                };
                if rh2 == new_h || (local.is_some() && self.local_is(&path, &rh2).await?) {
                    self.adopt(name, rv2, new_h);
                    return Ok(());
                }
                if !is_block_list(&rh2) {
                    return Err(ClientError::Protocol(format!(
                        "the cloud's version {rv2} lists {}, which are not block hashes \
                         (written by another tool); your file was left as it is",
                        some_names(&rh2, NAMES_IN_WARNING)
                    )));
                }
                return self
                    .remote_wins(name, &path, rv2, rh2, true, local.is_some())
                    .await;
            }
            let (rv, rh) = rem.expect("rv > base_v implies a remote entry");
            return self
                .remote_wins(name, &path, rv, rh, true, local.is_some())
                .await;
        }
        if rv > base_v {
            let (rv, rh) = rem.expect("rv > base_v implies a remote entry");
            if let Some(h) = local {
                // Re-uploaded elsewhere without an edit (at another block
                // size, say): nothing to fetch.
                if *h == rh || self.local_is(&path, &rh).await? {
                    self.adopt(name, rv, h.clone());
                    return Ok(());
                }
            }
            return self
                .remote_wins(name, &path, rv, rh, false, local.is_some())
                .await;
        }
        Ok(())
    }

    fn adopt(&mut self, name: &str, version: i64, hashes: Vec<String>) {
        self.index
            .insert(name.to_owned(), IndexEntry { version, hashes });
    }

    fn act(&mut self, name: &str, version: i64, what: Did) {
        self.summary.actions.push(Action {
            name: name.to_owned(),
            version,
            what,
        });
    }

    /// Whether the local file at `path` is the content `list` describes, at
    /// whatever block size `list` was cut (see `content.rs`). Reads the file
    /// again; a file gone since the scan is not.
    async fn local_is(&self, path: &Path, list: &[String]) -> Result<bool, ClientError> {
        if !is_block_list(list) || is_tombstone(list) {
            return Ok(false);
        }
        let p = path.to_path_buf();
        let list = list.to_vec();
        tokio::task::spawn_blocking(move || match std::fs::read(&p) {
            Ok(data) => Ok(same_content(&data, &list)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ClientError::io(&p, e)),
        })
        .await
        .map_err(|e| ClientError::Protocol(format!("hashing task failed: {e}")))?
    }

    /// Makes the remote version `rv` the local one. `conflict`: the local
    /// side changed too (`had_local`: and the file is still here), so the
    /// conflict policy decides what becomes of the local copy.
    async fn remote_wins(
        &mut self,
        name: &str,
        path: &Path,
        rv: i64,
        rh: Vec<String>,
        conflict: bool,
        had_local: bool,
    ) -> Result<(), ClientError> {
        let data = if is_tombstone(&rh) {
            None
        } else {
            Some(self.download(name, path, &rh).await?)
        };
        let new_here = !had_local;
        if conflict && had_local && path.is_file() {
            match self.opts.conflicts {
                ConflictPolicy::Keep => {
                    let mut aside = format!("{name}.conflict-{rv}");
                    let mut n = 1;
                    while self.base.join(&aside).exists() || self.index.contains_key(&aside) {
                        n += 1;
                        aside = format!("{name}.conflict-{rv}.{n}");
                    }
                    let aside_path =
                        fsutil::safe_join(&self.base, &aside).map_err(ClientError::UnsafeName)?;
                    std::fs::rename(path, &aside_path).map_err(|e| ClientError::io(path, e))?;
                    self.summary
                        .conflicts
                        .push((name.to_owned(), aside.clone()));
                    self.act(name, rv, Did::ConflictKept { aside });
                }
                ConflictPolicy::Cloud => {
                    self.summary.dropped.push(name.to_owned());
                    self.act(name, rv, Did::ConflictDropped);
                }
            }
        }
        let hashes = match data {
            Some(data) => {
                let p = path.to_path_buf();
                let bs = self.opts.block_size;
                let hashes = tokio::task::spawn_blocking(move || {
                    fsutil::atomic_write(&p, &data).map(|()| block_hashes(&data, bs))
                })
                .await
                .map_err(|e| ClientError::Protocol(format!("write task failed: {e}")))?
                .map_err(|e| ClientError::io(path, e))?;
                self.summary.downloaded.push(name.to_owned());
                let undeleted = conflict && !had_local;
                self.act(
                    name,
                    rv,
                    Did::Downloaded {
                        new: new_here && !undeleted,
                        undeleted,
                    },
                );
                hashes
            }
            None => {
                if path.is_file() {
                    std::fs::remove_file(path).map_err(|e| ClientError::io(path, e))?;
                    self.summary.deleted_local.push(name.to_owned());
                    self.act(name, rv, Did::DeletedLocal);
                    for dir in fsutil::remove_empty_parents(&self.base, path) {
                        self.act(&dir, 0, Did::RemovedDir);
                        self.summary.removed_dirs.push(dir);
                    }
                }
                rh
            }
        };
        self.adopt(name, rv, hashes);
        Ok(())
    }
}
