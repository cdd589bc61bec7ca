//! Moving one file's blocks: its blocks handed to the sync's uploader
//! (`uploader.rs`, which batches them with other files' and sends those the
//! cluster lacks), its blocks fetched (`getblock`, at most
//! [`GETBLOCKS_IN_FLIGHT`] across all files, each checked against its hash,
//! the blocks the local copy already has reused), with progress bars for
//! large transfers.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::file::Ctx;
use crate::client::content::block_hashes;
use crate::client::ClientError;
use crate::node::blocks::{hash_hex, is_hash};
use crate::xmlrpc::Value;

/// `getblock` calls in flight across all files of a sync.
pub const GETBLOCKS_IN_FLIGHT: usize = 64;
/// Blocks at least this large are hashed off the async workers.
const HASH_INLINE_MAX: usize = 256 << 10;

fn progress(ctx: &Ctx, what: &str, name: &str, bytes: u64) -> ProgressBar {
    if !ctx.opts.progress || bytes < (1 << 20) {
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
    ctx.bars.add(pb)
}

/// Reads the file again, has the blocks the cluster lacks uploaded, and
/// returns the file's hash list (as read now).
pub(super) async fn upload_blocks(
    ctx: &Ctx,
    name: &str,
    path: &Path,
) -> Result<Vec<String>, ClientError> {
    let p = path.to_path_buf();
    let bs = ctx.opts.block_size;
    let (data, hashes) = tokio::task::spawn_blocking(move || {
        let data = Bytes::from(std::fs::read(&p).map_err(|e| ClientError::io(&p, e))?);
        let hashes = block_hashes(&data, bs);
        Ok::<_, ClientError>((data, hashes))
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("read task failed: {e}")))??;
    // Each block once, in file order.
    let mut seen = std::collections::HashSet::new();
    let blocks: Vec<(String, Bytes)> = hashes
        .iter()
        .enumerate()
        .filter(|(_, h)| seen.insert(h.as_str()))
        .map(|(i, h)| {
            let end = ((i + 1) * bs).min(data.len());
            (h.clone(), data.slice(i * bs..end))
        })
        .collect();
    let total: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
    let pb = progress(ctx, "upload", name, total);
    let r = ctx.uploader.put(blocks, pb.clone()).await;
    pb.finish_and_clear();
    r.map(|()| hashes)
}

/// The file made of `hashes`: blocks the local copy already has are
/// reused, the rest fetched with `getblock` and checked against their hash.
pub(super) async fn download(
    ctx: &Ctx,
    name: &str,
    path: &Path,
    hashes: &[String],
) -> Result<Vec<u8>, ClientError> {
    if let Some(h) = hashes.iter().find(|h| !is_hash(h)) {
        return Err(ClientError::Protocol(format!(
            "the remote hash list names {h:?}, which is not a block hash"
        )));
    }
    let p = path.to_path_buf();
    let bs = ctx.opts.block_size;
    let mut have: HashMap<String, Bytes> = tokio::task::spawn_blocking(move || {
        let mut have = HashMap::new();
        if let Ok(old) = std::fs::read(&p) {
            let old = Bytes::from(old);
            for (i, c) in old.chunks(bs).enumerate() {
                have.insert(hash_hex(c), old.slice(i * bs..i * bs + c.len()));
            }
        }
        have
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("read task failed: {e}")))?;
    let wanted: Vec<String> = hashes
        .iter()
        .filter(|h| !have.contains_key(*h))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let pb = progress(
        ctx,
        "download",
        name,
        (wanted.len() as u64).saturating_mul(bs as u64),
    );
    let mut set = JoinSet::new();
    let mut next = wanted.into_iter();
    loop {
        while set.len() < GETBLOCKS_IN_FLIGHT {
            let Some(h) = next.next() else { break };
            let permit = ctx
                .getblocks
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ClientError::Protocol("the getblock limit closed".into()))?;
            let remote = ctx.remote.clone();
            set.spawn(async move {
                let _permit = permit;
                get_block(&remote, h).await
            });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let (h, data) =
            done.map_err(|e| ClientError::Protocol(format!("download task failed: {e}")))??;
        ctx.counters.add_down(data.len() as u64);
        pb.inc(data.len() as u64);
        have.insert(h, data);
    }
    pb.finish_and_clear();
    let mut out = Vec::with_capacity(hashes.iter().map(|h| have[h].len()).sum());
    for h in hashes {
        out.extend_from_slice(&have[h]);
    }
    Ok(out)
}

/// One block, checked against its hash.
async fn get_block(
    remote: &crate::client::remote::Remote,
    h: String,
) -> Result<(String, Bytes), ClientError> {
    let v = remote
        .any_call("getblock", &[Value::String(h.clone())])
        .await?;
    let Value::Base64(data) = v else {
        return Err(ClientError::Protocol(format!(
            "getblock({h}) answered {}",
            v.type_name()
        )));
    };
    let data = Bytes::from(data);
    let got = if data.len() < HASH_INLINE_MAX {
        hash_hex(&data)
    } else {
        let check = data.clone();
        tokio::task::spawn_blocking(move || hash_hex(&check))
            .await
            .unwrap_or_default()
    };
    if got != h {
        return Err(ClientError::Protocol(format!(
            "getblock({h}) returned a block whose hash is {got}"
        )));
    }
    Ok((h, data))
}
