//! Moving blocks for a sync: the blocks of a file the cluster lacks sent
//! (`hasblocks`, then `putblock`, `parallel` at a time), a file's blocks
//! fetched (`getblock`, each checked against its hash, the blocks the local
//! copy already has reused), with progress bars for large transfers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::{Run, HASBLOCKS_BATCH};
use crate::client::content::block_hashes;
use crate::client::ClientError;
use crate::node::blocks::{hash_hex, is_hash};
use crate::xmlrpc::Value;

impl Run {
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
    pub(super) async fn upload_blocks(
        &mut self,
        name: &str,
        path: &Path,
    ) -> Result<Vec<String>, ClientError> {
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
                    match remote.any_call("putblock", &[block]).await {
                        Ok(Value::Bool(true)) => Ok(len),
                        Ok(other) => Err(ClientError::Protocol(format!(
                            "putblock answered {other:?}"
                        ))),
                        // A server started with a lower --max-block-bytes than
                        // this client was told: no other block will pass either.
                        Err(ClientError::Refused { why, .. })
                            if why.contains("above the limit") =>
                        {
                            Err(ClientError::BlockTooLarge {
                                size: bs,
                                why: format!("the server refused a block of {len} bytes: {why}"),
                            })
                        }
                        Err(e) => Err(e),
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
    pub(super) async fn download(
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
