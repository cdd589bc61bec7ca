//! `ctl snapshot save` and `ctl snapshot restore`: a consistent backup of a
//! running cluster, and a fresh data directory seeded from one.
//!
//! Save asks the leader for its map (`surfstore.backup`, a linearizable
//! read), then fetches every block the map references with `getblock`, a
//! few at a time, checking each against its hash. Blocks are content
//! addressed and a node deletes a block only once no file has referenced it
//! for the GC grace period (an hour by default), so blocks fetched after the
//! read are the blocks of that map. Should one be gone all the same (a short
//! `--block-gc-grace-secs`, or a file that names a block nobody stored), the
//! save starts over from a fresh read, up to three times, then fails naming
//! the files. The file is written beside its final name, fsynced, renamed
//! into place and its directory fsynced: a failed save leaves no file.
//!
//! Restore reads a backup into a directory that is new or empty: the data
//! directory's identity file (the members of CONFIG, node ID), the map as
//! the snapshot at the backup's index and term with the hard state's term
//! set to it, and the blocks. Everything is checked (hashes, count, CRC)
//! and made durable, under a temporary name beside DIR, before it is renamed
//! into place: a failed or killed restore leaves DIR as it was. Every member
//! of the new cluster is restored from the same file.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{CtlError, Format, Nodes};
use crate::node::blocks::BlockStore;
use crate::node::metadata::Metadata;
use crate::node::raft::{HardState, Snapshot};
use crate::node::storage::backup::{BackupHeader, BackupReader, BackupWriter};
use crate::node::storage::{ClusterMeta, DiskOptions, DiskStore, LogStore};
use crate::xmlrpc::client::{CallError, Client};
use crate::xmlrpc::Value;

/// Blocks fetched at once; also the writer's queue (at most this many
/// blocks, 4 MiB each at the default limit, wait in memory).
const FETCH_AT_ONCE: usize = 8;
/// Fresh reads before a save gives up on blocks that went missing.
const ATTEMPTS: usize = 3;

fn failed(e: impl std::fmt::Display) -> CtlError {
    CtlError::Failed(e.to_string())
}

/// A name for `file` beside it, for the bytes before they are complete.
fn temp_beside(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    file.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn sync_parent(file: &Path) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// What the leader answered to `surfstore.backup`.
struct MapRead {
    header: BackupHeader,
    files: usize,
    map: Vec<u8>,
    /// Every block hash the map references, with one file that names it.
    blocks: Vec<([u8; 32], String)>,
}

async fn read_map(client: &Client, leader: u64, map_only: bool) -> Result<MapRead, CtlError> {
    let got = client
        .call("surfstore.backup", &[])
        .await
        .map_err(|e| match e {
            CallError::Fault(f) => failed(format!("leader {leader}: {}", f.message)),
            other => failed(format!("leader {leader}: {other}")),
        })?;
    let st = got
        .as_struct()
        .ok_or_else(|| failed(format!("backup answered {got:?}")))?;
    let num = |k: &str| {
        st.get(k)
            .and_then(Value::as_i64)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| failed(format!("backup: `{k}` is missing or not a count")))
    };
    let (index, term) = (num("index")?, num("term")?);
    let Some(Value::Base64(map)) = st.get("map") else {
        return Err(failed("backup: `map` is missing or not base64"));
    };
    let map = map.clone();
    // Decoded here too: a backup that would not restore is refused now.
    let metadata = Metadata::from_snapshot(index, &map)
        .map_err(|e| failed(format!("backup: the leader's map does not decode: {e}")))?;
    let view = metadata.view();
    let mut seen: HashMap<[u8; 32], String> = HashMap::new();
    if !map_only {
        for (name, info) in view.files() {
            for h in info.hashlist.iter() {
                if let crate::node::command::Hash::Text(t) = h {
                    if let Some(d) = t.sha256() {
                        seen.entry(*d).or_insert_with(|| name.clone());
                    }
                }
            }
        }
    }
    let mut blocks: Vec<([u8; 32], String)> = seen.into_iter().collect();
    blocks.sort_unstable();
    Ok(MapRead {
        header: BackupHeader {
            index,
            term,
            map_only,
        },
        files: view.len(),
        map,
        blocks,
    })
}

/// What one save attempt came to.
enum Attempt {
    Saved {
        blocks: u64,
        bytes: u64,
    },
    /// Blocks no node holds: (file, hash).
    Missing(Vec<(String, String)>),
}

fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// One attempt: writes `read` and its blocks to `tmp` on a thread of its own
/// (no file I/O on the runtime), fetching `FETCH_AT_ONCE` blocks at a time.
async fn attempt(client: &Client, read: &MapRead, tmp: &Path) -> Result<Attempt, CtlError> {
    let (tx, mut rx) = mpsc::channel::<([u8; 32], Vec<u8>)>(FETCH_AT_ONCE);
    let file = std::fs::File::create(tmp)
        .map_err(|e| failed(format!("{}: cannot create: {e}", tmp.display())))?;
    let header = read.header;
    let map = read.map.clone();
    let tmp_name = tmp.display().to_string();
    let writer = std::thread::spawn(move || -> Result<(u64, u64), String> {
        let io = |e: std::io::Error| format!("{tmp_name}: {e}");
        let mut w = BackupWriter::new(BufWriter::new(file), header, &map).map_err(io)?;
        drop(map);
        while let Some((want, data)) = rx.blocking_recv() {
            let got = w.block(&data).map_err(io)?;
            if got != want {
                return Err(format!(
                    "block {} came back with bytes whose SHA-256 is {}",
                    hex(&want),
                    hex(&got)
                ));
            }
        }
        let blocks = w.blocks();
        let (out, bytes) = w.finish().map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok((blocks, bytes))
    });

    let mut missing = Vec::new();
    let mut fetch_error = None;
    let mut set = tokio::task::JoinSet::new();
    let mut todo = read.blocks.iter();
    loop {
        while set.len() < FETCH_AT_ONCE {
            let Some((digest, name)) = todo.next() else {
                break;
            };
            let (c, digest, name) = (client.clone(), *digest, name.clone());
            set.spawn(async move {
                let r = c
                    .call("surfstore.getblock", &[Value::String(hex(&digest))])
                    .await;
                (digest, name, r)
            });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let (digest, name, r) = done.map_err(failed)?;
        match r {
            Ok(Value::Base64(data)) => {
                if tx.send((digest, data)).await.is_err() {
                    break; // the writer stopped; its error says why
                }
            }
            Err(CallError::Fault(f)) if f.code == 3 && f.message.contains("no node holds") => {
                missing.push((name, hex(&digest)));
            }
            Ok(other) => {
                fetch_error = Some(format!("getblock {} answered {other:?}", hex(&digest)));
                break;
            }
            Err(e) => {
                fetch_error = Some(format!("getblock {} (for {name}): {e}", hex(&digest)));
                break;
            }
        }
    }
    set.abort_all();
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| failed("the backup writer thread panicked"))?;
    if let Some(e) = fetch_error {
        return Err(failed(e));
    }
    let (blocks, bytes) = written.map_err(failed)?;
    if !missing.is_empty() {
        return Ok(Attempt::Missing(missing));
    }
    Ok(Attempt::Saved { blocks, bytes })
}

/// `ctl snapshot save FILE [--metadata-only]`.
pub(super) async fn save(
    nodes: &Nodes,
    file: &Path,
    map_only: bool,
    format: Format,
) -> Result<(String, i32), CtlError> {
    let rows = super::status::gather(nodes).await;
    let leader = super::leader_of(&rows)?;
    // The map of a large cluster is large: the read gets ten call deadlines.
    let client = Client::with_transport(
        &nodes.members[leader as usize],
        nodes.timeout * 10,
        nodes.transport.clone(),
    );
    let tmp = temp_beside(file);
    let mut last_missing = Vec::new();
    for _ in 0..ATTEMPTS {
        let read = read_map(&client, leader, map_only).await?;
        let outcome = attempt(&client, &read, &tmp).await;
        match outcome {
            Ok(Attempt::Saved { blocks, bytes }) => {
                let done = std::fs::rename(&tmp, file).and_then(|()| sync_parent(file));
                if let Err(e) = done {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(failed(format!("{}: {e}", file.display())));
                }
                let h = read.header;
                let out = match format {
                    Format::Table => format!(
                        "saved {}: index {}, term {}, {} files, {} blocks{}, {} bytes, from member {leader}\n",
                        file.display(),
                        h.index,
                        h.term,
                        read.files,
                        blocks,
                        if map_only { " (metadata only)" } else { "" },
                        bytes
                    ),
                    Format::Json => format!(
                        "{}\n",
                        serde_json::json!({
                            "file": file.display().to_string(), "index": h.index,
                            "term": h.term, "files": read.files, "blocks": blocks,
                            "metadata_only": map_only, "bytes": bytes, "leader": leader,
                        })
                    ),
                };
                return Ok((out, 0));
            }
            Ok(Attempt::Missing(m)) => {
                let _ = std::fs::remove_file(&tmp);
                last_missing = m;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
    let shown: Vec<String> = last_missing
        .iter()
        .take(5)
        .map(|(f, h)| format!("{f} ({h})"))
        .collect();
    Err(failed(format!(
        "{} referenced block(s) are held by no node, after {ATTEMPTS} fresh reads: {}{}; nothing was written (--metadata-only saves the map alone)",
        last_missing.len(),
        shown.join(", "),
        if last_missing.len() > 5 { ", …" } else { "" }
    )))
}

/// `ctl snapshot restore FILE --data-dir DIR --config CONFIG --id ID`.
/// The directory is built under a temporary name beside DIR and renamed
/// into place once complete and durable, so a restore that fails or is
/// killed leaves DIR as it was (absent or empty), never half made.
pub(super) async fn restore(
    file: &Path,
    dir: &Path,
    config: &Path,
    id: u64,
    format: Format,
) -> Result<(String, i32), CtlError> {
    let members = crate::config::load(config)
        .map_err(|e| CtlError::Usage(e.to_string()))?
        .members;
    if id as usize >= members.len() {
        return Err(CtlError::Usage(format!(
            "--id {id}: {} lists members 0..{}",
            config.display(),
            members.len()
        )));
    }
    let exists = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CtlError::Usage(format!(
                    "--data-dir {}: not empty; restore seeds a new or empty data directory",
                    dir.display()
                )));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(failed(format!("--data-dir {}: {e}", dir.display()))),
    };
    let input = std::fs::File::open(file)
        .map_err(|e| CtlError::Usage(format!("{}: cannot read: {e}", file.display())))?;
    let building = temp_beside(dir);
    let _ = std::fs::remove_dir_all(&building);
    let (file_s, dir_s, building_s) = (file.to_owned(), dir.to_owned(), building.clone());
    let meta = ClusterMeta { id, members };
    // File work on a thread of its own; the block store's own writes go
    // through its blocking pool.
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let seeded = seed(&handle, BufReader::new(input), &file_s, &building_s, &meta)?;
        let place = || -> std::io::Result<()> {
            if exists {
                std::fs::remove_dir(&dir_s)?;
            }
            std::fs::rename(&building_s, &dir_s)?;
            sync_parent(&dir_s)
        };
        place().map_err(|e| format!("{}: {e}", dir_s.display()))?;
        Ok::<_, String>(seeded)
    })
    .await
    .map_err(|e| failed(format!("restore task failed: {e}")))?;
    let (header, files, blocks) = match outcome {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&building);
            return Err(failed(format!("{e}; {} left as it was", dir.display())));
        }
    };
    Ok(match format {
        Format::Table => (
            format!(
                "restored {} into {}: index {}, term {}, {files} files, {blocks} blocks{}, as member {id}\n",
                file.display(),
                dir.display(),
                header.index,
                header.term,
                if header.map_only { " (metadata only)" } else { "" },
            ),
            0,
        ),
        Format::Json => (
            format!(
                "{}\n",
                serde_json::json!({
                    "file": file.display().to_string(), "data_dir": dir.display().to_string(),
                    "index": header.index, "term": header.term, "files": files,
                    "blocks": blocks, "metadata_only": header.map_only, "id": id,
                })
            ),
            0,
        ),
    })
}

/// Reads the backup and writes the data directory; `Err` names the file.
fn seed(
    rt: &tokio::runtime::Handle,
    input: BufReader<std::fs::File>,
    file: &Path,
    dir: &Path,
    meta: &ClusterMeta,
) -> Result<(BackupHeader, usize, u64), String> {
    let at = |e: crate::node::storage::backup::BackupError| format!("{}: {e}", file.display());
    let (mut reader, header, map) = BackupReader::open(input).map_err(at)?;
    let metadata = Metadata::from_snapshot(header.index, &map)
        .map_err(|e| format!("{}: the map does not decode: {e}", file.display()))?;
    let files = metadata.view().len();
    drop(metadata);
    let blocks = BlockStore::disk(dir).map_err(|e| e.to_string())?;
    let mut count = 0u64;
    while let Some((_, data)) = reader.next_block().map_err(at)? {
        rt.block_on(blocks.put(Arc::from(data)))
            .map_err(|e| e.to_string())?;
        count += 1;
    }
    // The log last, once every block is checked (hash, count, CRC) and stored.
    let (mut store, _) =
        DiskStore::open(dir, meta, DiskOptions::default()).map_err(|e| e.to_string())?;
    store
        .persist(
            Some(HardState {
                term: header.term,
                vote: None,
                commit: header.index,
            }),
            &[],
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    store
        .save_snapshot(
            &Snapshot {
                index: header.index,
                term: header.term,
                data: map.into(),
            },
            None,
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((header, files, count))
}
