//! One sync of a base directory with the cluster, the SurfStore algorithm:
//!
//! 1. Read `index.txt` and hash every local file into blocks, before any call,
//!    so a corrupt index or an unreadable file stops the sync with the folder
//!    untouched. Then read the remote map from the leader.
//! 2. For every name known locally, in the index or remotely: a file new or
//!    changed since the index (or deleted: a tombstone `["0"]`) whose remote
//!    version is still the index's is uploaded: the blocks the cluster lacks
//!    (asked with `hasblocks`), then `updatefile` with version+1. A remote
//!    version newer than the index is downloaded (a tombstone deletes the
//!    local file). When both changed (the remote version moved on, or the
//!    `updatefile` returns false), the remote version wins and the local copy
//!    is kept aside as `NAME.conflict-<remote version>`, which the next sync
//!    uploads like any new file.
//! 3. The index is rewritten (atomically) with what was done, also when the
//!    sync stops half-way, so the next sync resumes instead of redoing.
//!
//! Names from anywhere go through `fsutil::safe_join`: a name that could
//! leave the base directory is skipped with a problem reported, never written.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::fsutil::{self, INDEX};
use super::index::{self, is_tombstone, Index, IndexEntry};
use super::remote::Remote;
use super::{ClientError, SyncOptions};
use crate::node::blocks::{hash_hex, is_hash};
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
    /// (file, where the local copy was kept).
    pub conflicts: Vec<(String, String)>,
    /// Files skipped, with why; the rest of the sync went on.
    pub problems: Vec<String>,
    pub blocks_uploaded: usize,
    pub blocks_downloaded: usize,
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
}

const TOMBSTONE: &str = "0";
const HASBLOCKS_BATCH: usize = 2048;

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
/// as its hex name; anything else as text that names no block, so a download
/// of it fails with a message that shows it.
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

fn block_hashes(data: &[u8], block_size: usize) -> Vec<String> {
    data.chunks(block_size).map(hash_hex).collect()
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
    let index_path = base.join(INDEX);
    let index = index::load(&index_path)?;

    // Hash every local file first: a file we cannot read stops everything.
    let bs = opts.block_size;
    let scan_base = base.clone();
    let (local, skipped) = tokio::task::spawn_blocking(move || {
        let (files, skipped) =
            fsutil::scan(&scan_base).map_err(|e| ClientError::io(&scan_base, e))?;
        let mut local = BTreeMap::new();
        for (name, path) in files {
            let data = std::fs::read(&path).map_err(|e| ClientError::io(&path, e))?;
            local.insert(name, block_hashes(&data, bs));
        }
        Ok::<_, ClientError>((local, skipped))
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("hashing task failed: {e}")))??;

    let remote =
        Remote::connect(addr, opts.call_timeout, opts.retry_budget, &opts.transport).await?;
    let map = parse_map(&remote.leader_call("getfileinfomap", &[]).await?)?;

    let mut run = Run {
        base,
        opts: opts.clone(),
        remote,
        index,
        summary: Summary {
            problems: skipped
                .into_iter()
                .map(|s| format!("skipped local file {s}"))
                .collect(),
            ..Summary::default()
        },
    };
    let names: BTreeSet<String> = local
        .keys()
        .chain(run.index.keys())
        .chain(map.keys())
        .cloned()
        .collect();
    let mut fatal = None;
    for name in names {
        if let Some(p) = fsutil::name_problem(&name) {
            run.summary.problems.push(format!("skipped {name:?}: {p}"));
            continue;
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
    index::store(&index_path, &run.index)?;
    match fatal {
        Some(e) => Err(e),
        None => Ok(run.summary),
    }
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
            (Some(h), Some(e)) => *h != e.hashes,
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
                if *rh == new_h {
                    self.adopt(name, *rv, rh.clone());
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
                let params = [
                    Value::String(name.to_owned()),
                    i32::try_from(base_v + 1).map_or(Value::I8(base_v + 1), Value::Int),
                    Value::Array(new_h.iter().cloned().map(Value::String).collect()),
                ];
                let ok = self.remote.leader_call("updatefile", &params).await?;
                if ok == Value::Bool(true) {
                    if is_tombstone(&new_h) {
                        self.summary.deleted_remote.push(name.to_owned());
                    } else {
                        self.summary.uploaded.push(name.to_owned());
                    }
                    self.adopt(name, base_v + 1, new_h);
                    return Ok(());
                }
                // Someone else got there first (or our own earlier try did,
                // its answer lost in a failover): look again.
                let map = parse_map(&self.remote.leader_call("getfileinfomap", &[]).await?)?;
                let Some((rv2, rh2)) = map.get(name).cloned() else {
                    return Err(ClientError::Protocol(format!(
                        "updatefile({name:?}, {}) was refused but the file is not in the map",
                        base_v + 1
                    )));
                };
                if rh2 == new_h {
                    self.adopt(name, rv2, rh2);
                    return Ok(());
                }
                return self
                    .remote_wins(name, &path, rv2, rh2, local.is_some())
                    .await;
            }
            let (rv, rh) = rem.expect("rv > base_v implies a remote entry");
            return self.remote_wins(name, &path, rv, rh, local.is_some()).await;
        }
        if rv > base_v {
            let (rv, rh) = rem.expect("rv > base_v implies a remote entry");
            return self.remote_wins(name, &path, rv, rh, false).await;
        }
        Ok(())
    }

    fn adopt(&mut self, name: &str, version: i64, hashes: Vec<String>) {
        self.index
            .insert(name.to_owned(), IndexEntry { version, hashes });
    }

    /// Makes the remote version `rv` the local one; with `keep_local`, the
    /// local file is first moved aside as `NAME.conflict-<rv>`.
    async fn remote_wins(
        &mut self,
        name: &str,
        path: &Path,
        rv: i64,
        rh: Vec<String>,
        keep_local: bool,
    ) -> Result<(), ClientError> {
        let data = if is_tombstone(&rh) {
            None
        } else {
            Some(self.download(name, path, &rh).await?)
        };
        if keep_local && path.is_file() {
            let mut aside = format!("{name}.conflict-{rv}");
            let mut n = 1;
            while self.base.join(&aside).exists() || self.index.contains_key(&aside) {
                n += 1;
                aside = format!("{name}.conflict-{rv}.{n}");
            }
            let aside_path =
                fsutil::safe_join(&self.base, &aside).map_err(ClientError::UnsafeName)?;
            std::fs::rename(path, &aside_path).map_err(|e| ClientError::io(path, e))?;
            self.summary.conflicts.push((name.to_owned(), aside));
        }
        match data {
            Some(data) => {
                let p = path.to_path_buf();
                tokio::task::spawn_blocking(move || fsutil::atomic_write(&p, &data))
                    .await
                    .map_err(|e| ClientError::Protocol(format!("write task failed: {e}")))?
                    .map_err(|e| ClientError::io(path, e))?;
                self.summary.downloaded.push(name.to_owned());
            }
            None => {
                if path.is_file() {
                    std::fs::remove_file(path).map_err(|e| ClientError::io(path, e))?;
                    self.summary.deleted_local.push(name.to_owned());
                }
            }
        }
        self.adopt(name, rv, rh);
        Ok(())
    }

    fn progress(&self, what: &str, name: &str, bytes: u64) -> ProgressBar {
        if !self.opts.progress || bytes < (1 << 20) {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(bytes);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid progress template")
            .progress_chars("=> "),
        );
        pb.set_message(format!("{what} {name}"));
        pb
    }

    /// Reads the file again, uploads the blocks the cluster lacks, and returns
    /// the file's hash list (as read now).
    async fn upload_blocks(&mut self, name: &str, path: &Path) -> Result<Vec<String>, ClientError> {
        let p = path.to_path_buf();
        let bs = self.opts.block_size;
        let (data, hashes) = tokio::task::spawn_blocking(move || {
            let data = std::fs::read(&p).map_err(|e| ClientError::io(&p, e))?;
            let hashes = block_hashes(&data, bs);
            Ok::<_, ClientError>((data, hashes))
        })
        .await
        .map_err(|e| ClientError::Protocol(format!("read task failed: {e}")))??;
        // Unique blocks, each with where it is in the file.
        let mut first_at: HashMap<&str, usize> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            first_at.entry(h.as_str()).or_insert(i);
        }
        let unique: Vec<&str> = first_at.keys().copied().collect();
        let mut held = HashSet::new();
        for batch in unique.chunks(HASBLOCKS_BATCH) {
            let list = Value::Array(batch.iter().map(|h| Value::from(*h)).collect());
            let answer = self.remote.any_call("hasblocks", &[list]).await?;
            for h in answer.as_array().unwrap_or_default() {
                if let Some(h) = h.as_str() {
                    held.insert(h.to_owned());
                }
            }
        }
        let missing: Vec<usize> = unique
            .iter()
            .filter(|h| !held.contains(**h))
            .map(|h| first_at[h])
            .collect();
        let total: u64 = missing
            .iter()
            .map(|&i| (data.len() - i * bs).min(bs) as u64)
            .sum();
        let pb = self.progress("upload", name, total);
        let data = Arc::new(data);
        let mut set = JoinSet::new();
        let mut next = missing.into_iter();
        let mut sent = 0usize;
        loop {
            while set.len() < self.opts.parallel.max(1) {
                let Some(i) = next.next() else { break };
                let remote = self.remote.clone();
                let data = data.clone();
                set.spawn(async move {
                    let end = ((i + 1) * bs).min(data.len());
                    let block = Value::Base64(data[i * bs..end].to_vec());
                    let len = (end - i * bs) as u64;
                    match remote.any_call("putblock", &[block]).await? {
                        Value::Bool(true) => Ok(len),
                        other => Err(ClientError::Protocol(format!(
                            "putblock answered {other:?}"
                        ))),
                    }
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let len =
                done.map_err(|e| ClientError::Protocol(format!("upload task failed: {e}")))??;
            sent += 1;
            self.summary.bytes_uploaded += len;
            pb.inc(len);
        }
        pb.finish_and_clear();
        self.summary.blocks_uploaded += sent;
        Ok(hashes)
    }

    /// The file made of `hashes`: blocks the local copy already has are
    /// reused, the rest fetched with `getblock` and checked against their hash.
    async fn download(
        &mut self,
        name: &str,
        path: &Path,
        hashes: &[String],
    ) -> Result<Vec<u8>, ClientError> {
        if let Some(h) = hashes.iter().find(|h| !is_hash(h)) {
            return Err(ClientError::Protocol(format!(
                "the remote hash list names {h:?}, which is not a block hash"
            )));
        }
        let mut have: HashMap<String, Arc<[u8]>> = HashMap::new();
        if let Ok(old) = std::fs::read(path) {
            for c in old.chunks(self.opts.block_size) {
                have.insert(hash_hex(c), Arc::from(c));
            }
        }
        let wanted: Vec<String> = hashes
            .iter()
            .filter(|h| !have.contains_key(*h))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let pb = self.progress(
            "download",
            name,
            (wanted.len() as u64).saturating_mul(self.opts.block_size as u64),
        );
        let mut set = JoinSet::new();
        let mut next = wanted.into_iter();
        loop {
            while set.len() < self.opts.parallel.max(1) {
                let Some(h) = next.next() else { break };
                let remote = self.remote.clone();
                set.spawn(async move {
                    let v = remote
                        .any_call("getblock", &[Value::String(h.clone())])
                        .await?;
                    let Value::Base64(data) = v else {
                        return Err(ClientError::Protocol(format!(
                            "getblock({h}) answered {}",
                            v.type_name()
                        )));
                    };
                    let data: Arc<[u8]> = data.into();
                    let check = data.clone();
                    let got = tokio::task::spawn_blocking(move || hash_hex(&check))
                        .await
                        .unwrap_or_default();
                    if got != h {
                        return Err(ClientError::Protocol(format!(
                            "getblock({h}) returned a block whose hash is {got}"
                        )));
                    }
                    Ok((h, data))
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let (h, data) =
                done.map_err(|e| ClientError::Protocol(format!("download task failed: {e}")))??;
            self.summary.blocks_downloaded += 1;
            self.summary.bytes_downloaded += data.len() as u64;
            pb.inc(data.len() as u64);
            have.insert(h, data);
        }
        pb.finish_and_clear();
        let mut out = Vec::new();
        for h in hashes {
            out.extend_from_slice(&have[h]);
        }
        Ok(out)
    }
}
