//! Opening the pack store: the index is rebuilt from the record headers of
//! every pack, oldest first (a later copy of a block wins: compaction's
//! copies are newer than their originals), then loose files of the old
//! one-file-per-block layout are imported.
//!
//! What open does with a bad spot (a header that does not check, a record
//! running past the end, or, in the active pack's last [`MAX_BATCH`] bytes
//! and its last record, data that does not match its CRC):
//! - In the active (newest) pack, within its last batch, it is a torn tail
//!   (a crash mid-append; nothing there was acknowledged): the file is cut
//!   there, with one warning.
//! - Anywhere else it is corruption of synced data: a warning names the
//!   pack and offset, and the scan resumes at the next well-formed header.
//!   The records from there on in that pack are read whole and their
//!   SHA-256 checked (a header found by searching could lie inside a
//!   block's data). What was skipped is dead bytes, which compaction
//!   reclaims; blocks lost with it are fetched back from peers by repair
//!   when referenced. In the active pack, when no good header follows, the
//!   rest of the file is cut off.
//!
//! Old layout: every `<2 hex>/<hash>` file whose bytes hash to its name is
//! appended to the packs (in fsynced batches), then deleted; one whose
//! bytes do not is left in place with a warning and not served. Leftover
//! temporary files of the old writer are deleted. A crash during the import
//! leaves some blocks in both places; the next open finds them indexed and
//! only deletes the loose copy.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::record::{find_next_header, Bad, Found, Scanner};
use super::writer::{chunk, create_pack, Item, Op, Writer, MAX_BATCH};
use super::{pack_path, parse_pack_name, sync_dir, Loc, Pack, PackOptions, Shared, State};
use crate::node::blocks::refs::Digest;
use crate::node::blocks::{is_hash, BlockError};
use crate::node::command::parse_sha256_hex;

fn io(what: &str, path: &Path, e: std::io::Error) -> BlockError {
    BlockError::Io(format!("{what} {}: {e}", path.display()))
}

pub(super) fn open(
    blocks_root: &Path,
    opts: PackOptions,
) -> Result<(Arc<Shared>, Writer), BlockError> {
    let dir = blocks_root.join("packs");
    std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
    let mut ids: Vec<u32> = std::fs::read_dir(&dir)
        .map_err(|e| io("listing", &dir, e))?
        .flatten()
        .filter_map(|e| parse_pack_name(&e.file_name().to_string_lossy()))
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        drop(create_pack(&dir, 1)?);
        sync_dir(blocks_root)?;
        ids.push(1);
    }
    let now = SystemTime::now();
    let active = *ids.last().expect("at least one pack");
    let mut st = State {
        index: Default::default(),
        packs: Default::default(),
        active,
        held_bytes: 0,
        failed: None,
    };
    for &id in &ids {
        let path = pack_path(&dir, id);
        let file = Arc::new(
            File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io("opening", &path, e))?,
        );
        st.packs.insert(
            id,
            Pack {
                file: file.clone(),
                len: 0,
                live: 0,
            },
        );
        let len = scan_pack(&mut st, id, &file, &path, id == active, now)?;
        st.pack_mut(id).len = len;
    }
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        state: Mutex::new(st),
        stats: Default::default(),
        gate: Default::default(),
        opts,
    });
    let (file, end) = {
        let st = shared.lock();
        let p = &st.packs[&active];
        (p.file.clone(), p.len)
    };
    let mut w = Writer {
        shared: shared.clone(),
        file,
        id: active,
        end,
    };
    import_loose(&mut w, blocks_root)?;
    Ok((shared, w))
}

/// Indexes one pack; returns its length (after cutting a torn tail).
fn scan_pack(
    st: &mut State,
    id: u32,
    file: &File,
    path: &Path,
    active: bool,
    now: SystemTime,
) -> Result<u64, BlockError> {
    let mut len = file.metadata().map_err(|e| io("reading", path, e))?.len();
    // Data is checked where a crash may have torn it: the active pack's
    // last batch (at most MAX_BATCH bytes, or its last record).
    let verify_after = if active {
        len.saturating_sub(MAX_BATCH)
    } else {
        u64::MAX
    };
    let mut scanner = Scanner::new(file, len, 0, verify_after);
    // Past a skipped bad spot, every record is read and hashed.
    let mut suspect = false;
    loop {
        let bad = match scanner.next_record() {
            Ok(None) => break,
            Ok(Some(found)) => match suspect.then(|| check_whole(file, &found)) {
                Some(Err(reason)) => Bad {
                    offset: found.offset,
                    reason,
                    to_end: false,
                },
                _ => {
                    index_record(st, id, &found, now);
                    continue;
                }
            },
            Err(bad) => bad,
        };
        let torn = active && (bad.offset >= verify_after || bad.to_end);
        let next = if torn {
            None
        } else {
            find_next_header(file, len, bad.offset).map_err(|e| io("reading", path, e))?
        };
        match next {
            Some(next) => {
                tracing::warn!(
                    "block pack {} is corrupt at offset {} ({}); skipping {} bytes to the next record",
                    path.display(),
                    bad.offset,
                    bad.reason,
                    next - bad.offset
                );
                scanner.skip_to(next);
                suspect = true;
            }
            None if active => {
                tracing::warn!(
                    "block pack {} ends in a torn or corrupt record at offset {} ({}); cutting off {} bytes",
                    path.display(),
                    bad.offset,
                    bad.reason,
                    len - bad.offset
                );
                file.set_len(bad.offset)
                    .map_err(|e| io("truncating", path, e))?;
                len = bad.offset;
                break;
            }
            None => {
                tracing::warn!(
                    "block pack {} is corrupt from offset {} on ({}); its last {} bytes are not read",
                    path.display(),
                    bad.offset,
                    bad.reason,
                    len - bad.offset
                );
                break;
            }
        }
    }
    if active {
        // What a process crash left in the page cache is on disk before
        // anything is served from it.
        file.sync_data().map_err(|e| io("fsync of", path, e))?;
    }
    Ok(len)
}

/// Reads a record whole and checks its CRC and SHA-256.
fn check_whole(file: &File, found: &Found) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let mut data = vec![0u8; found.header.len as usize];
    file.read_exact_at(&mut data, found.offset + super::HEADER_LEN as u64)
        .map_err(|e| format!("reading a record: {e}"))?;
    if crc32fast::hash(&data) != found.header.data_crc {
        return Err("data checksum mismatch".into());
    }
    let sha: [u8; 32] = Sha256::digest(&data).into();
    if sha != found.header.sha256 {
        return Err("the data does not hash to the record's name".into());
    }
    Ok(())
}

fn index_record(st: &mut State, id: u32, found: &Found, now: SystemTime) {
    let loc = Loc {
        pack: id,
        offset: found.offset,
        len: found.header.len,
        touched: now,
    };
    let rec = loc.record_len();
    st.pack_mut(id).live += rec;
    if let Some(old) = st.index.insert(found.header.sha256, loc) {
        st.held_bytes -= u64::from(old.len);
        st.pack_mut(old.pack).live -= old.record_len();
    }
    st.held_bytes += u64::from(found.header.len);
}

/// Moves the old layout's `<2 hex>/<hash>` files into the packs.
fn import_loose(w: &mut Writer, root: &Path) -> Result<(), BlockError> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Ok(());
    };
    let mut imported = 0u64;
    let mut touched_dirs = false;
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let sub = dir.path();
        let Ok(files) = std::fs::read_dir(&sub) else {
            continue;
        };
        let mut batch: Vec<(std::path::PathBuf, Item)> = Vec::new();
        for f in files.flatten() {
            let fname = f.file_name().to_string_lossy().into_owned();
            let path = f.path();
            if fname.starts_with('.') && fname.contains(".tmp-") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !is_hash(&fname) {
                continue;
            }
            let digest: Digest = parse_sha256_hex(&fname).expect("is_hash checked it");
            let data = std::fs::read(&path).map_err(|e| io("reading", &path, e))?;
            let sha: Digest = Sha256::digest(&data).into();
            if sha != digest {
                tracing::warn!(
                    "old block file {} does not hash to its name; left in place, not served",
                    path.display()
                );
                continue;
            }
            batch.push((
                path,
                Item {
                    digest,
                    data: data.into(),
                    from: None,
                },
            ));
            if batch.iter().map(|(_, i)| i.data.len() as u64).sum::<u64>() >= MAX_BATCH {
                imported += flush(w, &mut batch)?;
            }
        }
        imported += flush(w, &mut batch)?;
        // Only empty directories go (a junk file keeps its directory).
        touched_dirs |= std::fs::remove_dir(&sub).is_ok();
    }
    if imported > 0 || touched_dirs {
        sync_dir(root)?;
        tracing::info!(
            blocks = imported,
            "block store moved old one-file-per-block blocks into packs"
        );
    }
    Ok(())
}

/// Appends the batch durably, then deletes its loose files.
fn flush(w: &mut Writer, batch: &mut Vec<(std::path::PathBuf, Item)>) -> Result<u64, BlockError> {
    let (paths, items): (Vec<_>, Vec<_>) = std::mem::take(batch).into_iter().unzip();
    let n = paths.len() as u64;
    for items in chunk(items) {
        w.commit(vec![Op { items, reply: None }])?;
    }
    for p in paths {
        std::fs::remove_file(&p).map_err(|e| io("removing", &p, e))?;
    }
    Ok(n)
}
