//! One file's part of a sync, run as its own task beside the other files in
//! flight: the decision of `sync.rs`'s step 2 for that name (upload,
//! tombstone, download, conflict), with every call it needs. A file task
//! touches only its own name, on disk and in what it returns; what it did
//! comes back as an [`Outcome`] that the sync applies in name order, so the
//! index, the summary and the messages do not depend on which file finished
//! first. Deleting a local file for a remote tombstone (and removing the
//! directories it leaves empty) is left to that ordered step too, after
//! every download has been written, so a directory is never removed under a
//! file being written into it.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indicatif::MultiProgress;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::transfer::{download, upload_blocks};
use super::uploader::{Counters, Uploader};
use super::{parse_map, some_names, Action, Did, RemoteMap, NAMES_IN_WARNING, TOMBSTONE};
use crate::client::content::{is_block_list, same_content};
use crate::client::fsutil;
use crate::client::index::{is_tombstone, IndexEntry};
use crate::client::remote::Remote;
use crate::client::{ClientError, ConflictPolicy, SyncOptions};
use crate::xmlrpc::Value;

/// What every file task of one sync shares.
pub(super) struct Ctx {
    pub base: PathBuf,
    pub opts: SyncOptions,
    pub remote: Remote,
    /// Every name this sync knows (local, indexed, remote): a conflict copy
    /// is never given one of them.
    pub names: BTreeSet<String>,
    /// Conflict-copy names taken by this sync so far.
    pub asides: Mutex<HashSet<String>>,
    pub uploader: Uploader,
    /// Bounds the `getblock` calls in flight across all files (a
    /// `getblocks` batch takes [`super::transfer::PERMITS_PER_BATCH`]).
    pub getblocks: Arc<Semaphore>,
    /// Cleared by the first fault 4 to a `getblocks` (a server from before
    /// it): blocks then come one `getblock` each.
    pub batch_gets: Arc<std::sync::atomic::AtomicBool>,
    pub counters: Arc<Counters>,
    pub bars: MultiProgress,
    /// The last map read after a refused `updatefile`, and when that read
    /// started: refusals that come together share one read.
    pub fresh: tokio::sync::Mutex<Option<(Instant, Arc<RemoteMap>)>>,
}

/// One name to sync: what the scan, the index and the map say of it.
pub(super) struct Job {
    pub name: String,
    pub local: Option<Vec<String>>,
    pub idx: Option<IndexEntry>,
    pub rem: Option<(i64, Vec<String>)>,
}

/// What a file task did, for the sync to apply.
#[derive(Debug)]
pub(super) struct Outcome {
    pub name: String,
    pub index: IndexOp,
    /// In the order done.
    pub actions: Vec<Action>,
    /// A remote tombstone to apply: delete the local file (if it is still
    /// one), then record `(version, hashes)`.
    pub delete: Option<(i64, Vec<String>)>,
    pub problem: Option<String>,
}

/// What becomes of the file's index line.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum IndexOp {
    Keep,
    Set(IndexEntry),
    Remove,
}

impl Outcome {
    pub fn new(name: &str) -> Outcome {
        Outcome {
            name: name.to_owned(),
            index: IndexOp::Keep,
            actions: Vec::new(),
            delete: None,
            problem: None,
        }
    }

    fn adopt(&mut self, version: i64, hashes: Vec<String>) {
        self.index = IndexOp::Set(IndexEntry { version, hashes });
    }

    fn act(&mut self, version: i64, what: Did) {
        self.actions.push(Action {
            name: self.name.clone(),
            version,
            what,
        });
    }
}

/// Syncs one name; the outcome holds what was done, also when it failed
/// half-way.
pub(super) async fn run(ctx: Arc<Ctx>, job: Job) -> (Outcome, Result<(), ClientError>) {
    let mut out = Outcome::new(&job.name);
    let r = sync_file(&ctx, job, &mut out).await;
    (out, r)
}

async fn sync_file(ctx: &Ctx, job: Job, out: &mut Outcome) -> Result<(), ClientError> {
    let Job {
        name,
        local,
        idx,
        rem,
    } = job;
    let name = name.as_str();
    let path = fsutil::safe_join(&ctx.base, name).map_err(ClientError::UnsafeName)?;
    let mut base_v = idx.as_ref().map_or(0, |e| e.version);
    let rv = rem.as_ref().map_or(0, |r| r.0);
    let mut local_changed = match (&local, &idx) {
        (Some(h), Some(e)) if *h != e.hashes => {
            // The index may hold the list cut at another block size (what
            // an older client recorded): same content is no change.
            if local_is(&path, &e.hashes).await? {
                out.adopt(e.version, h.clone());
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
        out.index = IndexOp::Remove;
        base_v = rv;
        local_changed = local.is_some();
    }
    if local_changed {
        let mut new_h = local.clone().unwrap_or_else(|| vec![TOMBSTONE.into()]);
        if let Some((rv, rh)) = &rem {
            if *rh == new_h || (local.is_some() && local_is(&path, rh).await?) {
                out.adopt(*rv, new_h);
                return Ok(());
            }
        }
        if rv == base_v {
            if rem.is_none() && local.is_none() {
                out.index = IndexOp::Remove;
                return Ok(());
            }
            if local.is_some() {
                new_h = upload_blocks(ctx, name, &path).await?;
            }
            let next = base_v + 1;
            let params = [
                Value::String(name.to_owned()),
                i32::try_from(next).map_or(Value::I8(next), Value::Int),
                Value::Array(new_h.iter().cloned().map(Value::String).collect()),
            ];
            let asked = Instant::now();
            let ok = ctx.remote.leader_call("updatefile", &params).await?;
            if ok == Value::Bool(true) {
                let was_there = rem.as_ref().is_some_and(|(_, h)| !is_tombstone(h));
                if is_tombstone(&new_h) {
                    out.act(next, Did::DeletedRemote);
                } else {
                    out.act(next, Did::Uploaded { new: !was_there });
                }
                out.adopt(next, new_h);
                return Ok(());
            }
            // Someone else got there first (or our own earlier try did,
            // its answer lost in a failover): look again.
            let map = fresh_map(ctx, asked).await?;
            let Some((rv2, rh2)) = map.get(name).cloned() else {
                return Err(ClientError::Protocol(format!(
                    "updatefile({name:?}, {next}) was refused but the file is not in the map"
                )));
            };
            if rh2 == new_h || (local.is_some() && local_is(&path, &rh2).await?) {
                out.adopt(rv2, new_h);
                return Ok(());
            }
            if !is_block_list(&rh2) {
                return Err(ClientError::Protocol(format!(
                    "the cloud's version {rv2} lists {}, which are not block hashes \
                     (written by another tool); your file was left as it is",
                    some_names(&rh2, NAMES_IN_WARNING)
                )));
            }
            return remote_wins(ctx, out, &path, rv2, rh2, true, local.is_some()).await;
        }
        let (rv, rh) = rem.expect("rv > base_v implies a remote entry");
        return remote_wins(ctx, out, &path, rv, rh, true, local.is_some()).await;
    }
    if rv > base_v {
        let (rv, rh) = rem.expect("rv > base_v implies a remote entry");
        if let Some(h) = &local {
            // Re-uploaded elsewhere without an edit (at another block
            // size, say): nothing to fetch.
            if *h == rh || local_is(&path, &rh).await? {
                out.adopt(rv, h.clone());
                return Ok(());
            }
        }
        return remote_wins(ctx, out, &path, rv, rh, false, local.is_some()).await;
    }
    Ok(())
}

/// The map as read after `since`: the last one read, if that read started
/// after `since`, else a new read (one at a time, so files refused together
/// share it).
async fn fresh_map(ctx: &Ctx, since: Instant) -> Result<Arc<RemoteMap>, ClientError> {
    let mut last = ctx.fresh.lock().await;
    if let Some((at, map)) = &*last {
        if *at > since {
            return Ok(map.clone());
        }
    }
    let at = Instant::now();
    let map = Arc::new(parse_map(
        &ctx.remote.leader_call("getfileinfomap", &[]).await?,
    )?);
    *last = Some((at, map.clone()));
    Ok(map)
}

/// Whether the local file at `path` is the content `list` describes, at
/// whatever block size `list` was cut (see `content.rs`). Reads the file
/// again; a file gone since the scan is not.
async fn local_is(path: &Path, list: &[String]) -> Result<bool, ClientError> {
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

/// Makes the remote version `rv` the local one. `conflict`: the local side
/// changed too (`had_local`: and the file is still here), so the conflict
/// policy decides what becomes of the local copy. A tombstone's delete is
/// left to the sync (`Outcome::delete`).
async fn remote_wins(
    ctx: &Ctx,
    out: &mut Outcome,
    path: &Path,
    rv: i64,
    rh: Vec<String>,
    conflict: bool,
    had_local: bool,
) -> Result<(), ClientError> {
    let name = out.name.clone();
    let data = if is_tombstone(&rh) {
        None
    } else {
        Some(download(ctx, &name, path, &rh).await?)
    };
    let new_here = !had_local;
    if conflict && had_local && path.is_file() {
        match ctx.opts.conflicts {
            ConflictPolicy::Keep => {
                let aside = claim_aside(ctx, &name, rv);
                let aside_path =
                    fsutil::safe_join(&ctx.base, &aside).map_err(ClientError::UnsafeName)?;
                std::fs::rename(path, &aside_path).map_err(|e| ClientError::io(path, e))?;
                out.act(rv, Did::ConflictKept { aside });
            }
            ConflictPolicy::Cloud => out.act(rv, Did::ConflictDropped),
        }
    }
    match data {
        Some(mut data) => {
            let hashes = std::mem::take(&mut data.hashes);
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || data.place(&p))
                .await
                .map_err(|e| ClientError::Protocol(format!("rename task failed: {e}")))?
                .map_err(|e| ClientError::io(path, e))?;
            let undeleted = conflict && !had_local;
            out.act(
                rv,
                Did::Downloaded {
                    new: new_here && !undeleted,
                    undeleted,
                },
            );
            out.adopt(rv, hashes);
        }
        None => out.delete = Some((rv, rh)),
    }
    Ok(())
}

/// A name for the conflict copy of `name` at the cloud's version `rv` that
/// is no file here, no name of this sync and no other conflict copy's.
fn claim_aside(ctx: &Ctx, name: &str, rv: i64) -> String {
    let mut taken = ctx.asides.lock().expect("the aside names lock");
    let mut aside = format!("{name}.conflict-{rv}");
    let mut n = 1;
    while ctx.base.join(&aside).exists() || ctx.names.contains(&aside) || taken.contains(&aside) {
        n += 1;
        aside = format!("{name}.conflict-{rv}.{n}");
    }
    taken.insert(aside.clone());
    aside
}
