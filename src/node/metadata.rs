//! The replicated state machine: filename -> (version, hashlist). Every node
//! applies the same committed commands in the same order, so the version rule
//! (exactly current + 1; current is 0 for an unknown file) is decided at apply
//! time, identically everywhere: racing updates resolve first-write-wins and the
//! apply result is what `updatefile` returns.
//!
//! The map is split into shards behind `Arc`s, copied on write: a
//! `MapView` (`Metadata::view`) is the map as of now for the price of a few
//! hundred reference counts, so a snapshot is encoded on another thread while
//! the driver keeps applying (a shard is copied only if it is written while a
//! view still holds it).
//!
//! A snapshot of the map (`encode_snapshot` / `from_snapshot`) is a compact,
//! deterministic binary: equal maps give equal bytes, whatever order their
//! files were written in, and decoding hostile bytes returns an error, never
//! panics or allocates more than the input could hold. It opens with a magic
//! and a format byte and ends with a CRC-32 of everything before it, so a
//! snapshot that arrives from the network is checked whole (`from_snapshot`
//! is the check) before anything uses it.
//!
//! The map holds typed hashes (`command::Hash`), not wire values: a hex
//! SHA-256 costs its 32 bytes. Building the `getfileinfomap` answer is the
//! method table's job (`api::file_info_map`, which writes it from a view at
//! request time: no XML is kept here, so the map costs the same in memory
//! whatever the wire form of its answer).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::node::command::{self, Command, DecodeError, Hash, Reader};
use crate::node::raft::LogIndex;

/// `[magic "SFSM"][format u8]`, then `[files u64]`, then per file in strictly
/// increasing name order: `[name: len u32 + utf-8][version i64][n u32][n hashes]`
/// (hashes as `command.rs` encodes them), then `[crc u32]`: the CRC-32 (IEEE,
/// `crc32fast`) of every byte before it; all little-endian.
const SNAPSHOT_MAGIC: &[u8; 4] = b"SFSM";
/// Format 3 is format 2 with the CRC trailer. Format 2 may hold hex SHA-256s
/// as 32 bytes (hash tag 10); format 1 (the first version's, tagged XML-RPC
/// values) and format 2 are still read (they have no CRC: snapshot files of
/// those versions are covered by the snapshot file's own CRC).
const SNAPSHOT_FORMAT: u8 = 3;
const SNAPSHOT_FORMATS_READ: [u8; 3] = [1, 2, 3];
/// The first format that ends with a CRC.
const FIRST_CRC_FORMAT: u8 = 3;
/// The fewest bytes one file takes: empty name, version, empty hashlist.
const MIN_FILE_BYTES: usize = 4 + 8 + 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotDecodeError {
    #[error("not a metadata snapshot (bad magic)")]
    Magic,
    #[error("unsupported metadata snapshot format {0}")]
    Format(u8),
    #[error("metadata snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("file names out of order (or repeated) at byte {0}")]
    Order(usize),
    #[error("{0} trailing bytes after the last file")]
    Trailing(usize),
    #[error("file {file:?}: {source}")]
    File { file: String, source: DecodeError },
    #[error("corrupt metadata snapshot: {0}")]
    Corrupt(#[from] DecodeError),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FileInfo {
    pub version: i64,
    pub hashlist: Box<[Hash]>,
}

/// Shards of the map; a power of two.
const SHARDS: usize = 256;

type Shard = HashMap<String, FileInfo>;

/// Which shard a name lives in (a fixed hash: the same on every run).
fn shard_of(name: &str) -> usize {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(name) as usize & (SHARDS - 1)
}

fn empty_shards() -> Vec<Arc<Shard>> {
    (0..SHARDS).map(|_| Arc::new(Shard::new())).collect()
}

#[derive(Debug)]
pub struct Metadata {
    /// `SHARDS` shards; a file lives in `shards[shard_of(name)]`.
    shards: Vec<Arc<Shard>>,
    /// Files in all shards.
    len: usize,
    /// Index of the last log entry applied (commands and no-ops alike).
    applied_index: LogIndex,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            shards: empty_shards(),
            len: 0,
            applied_index: 0,
        }
    }
}

/// The map as it was when `Metadata::view` was called, unaffected by later
/// applies; `Send`, so it can be encoded off the driver.
#[derive(Clone, Debug)]
pub struct MapView {
    shards: Vec<Arc<Shard>>,
    len: usize,
    pub applied_index: LogIndex,
}

impl MapView {
    /// Every file in the view, in no particular order.
    pub fn files(&self) -> impl Iterator<Item = (&String, &FileInfo)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Every file in the view, sorted by name (byte order, as `str` and
    /// `BTreeMap` sort): what the snapshot and the `getfileinfomap` answer
    /// are written in, so equal maps give equal bytes.
    ///
    /// Each name's first 16 bytes are sorted on inline, so most comparisons
    /// read no name: with the names scattered over the heap, following both
    /// pointers on every comparison was most of the cost for a large map.
    ///
    /// A large map is sorted on up to [`SORT_THREADS`] threads, each taking
    /// a share of the shards, then merged: the sort is the larger half of
    /// writing a million-file answer, and both cores are idle while one
    /// sorts.
    pub fn files_by_name(&self) -> Vec<(&str, &FileInfo)> {
        let threads = if self.len >= PARALLEL_SORT_FILES {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, SORT_THREADS)
        } else {
            1
        };
        let per = SHARDS.div_ceil(threads);
        let runs: Vec<Vec<Keyed>> = if threads == 1 {
            vec![sorted_run(&self.shards)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = self
                    .shards
                    .chunks(per)
                    .map(|group| s.spawn(move || sorted_run(group)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a sort thread panicked"))
                    .collect()
            })
        };
        let out = merge_runs(runs, self.len);
        debug_assert_eq!(out.len(), self.len);
        out
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The snapshot bytes of this map (see `Metadata::encode_snapshot`).
    pub fn encode(&self) -> Bytes {
        let files = self.files_by_name();
        // A guess (names and a few short hashes each); the buffer grows if short.
        let mut out = BytesMut::with_capacity(13 + files.len() * 64);
        out.put_slice(SNAPSHOT_MAGIC);
        out.put_u8(SNAPSHOT_FORMAT);
        out.put_u64_le(files.len() as u64);
        for (name, info) in files {
            command::put_str(&mut out, name);
            out.put_i64_le(info.version);
            command::put_hash_list(&mut out, &info.hashlist);
        }
        let crc = crc32fast::hash(&out);
        out.put_u32_le(crc);
        out.freeze()
    }
}

/// A map of at least this many files is sorted on several threads.
const PARALLEL_SORT_FILES: usize = 50_000;
/// At most this many threads sort one map.
const SORT_THREADS: usize = 4;

/// A file with its name's first 16 bytes inline (see [`name_prefix`]).
type Keyed<'a> = (u128, &'a str, &'a FileInfo);

fn keyed_less(a: &Keyed, b: &Keyed) -> bool {
    a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)).is_lt()
}

/// The files of `shards`, sorted by name.
fn sorted_run(shards: &[Arc<Shard>]) -> Vec<Keyed<'_>> {
    let mut run: Vec<Keyed> = Vec::with_capacity(shards.iter().map(|s| s.len()).sum());
    for shard in shards {
        run.extend(
            shard
                .iter()
                .map(|(name, info)| (name_prefix(name), name.as_str(), info)),
        );
    }
    run.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    run
}

/// Sorted runs (of disjoint names: each shard is in one run) merged into
/// one sorted list of `len` files.
fn merge_runs<'a>(runs: Vec<Vec<Keyed<'a>>>, len: usize) -> Vec<(&'a str, &'a FileInfo)> {
    let mut out = Vec::with_capacity(len);
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<Keyed<'a>>>> = runs
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.into_iter().peekable())
        .collect();
    while heads.len() > 1 {
        // Few runs: a scan for the least head beats a heap.
        let mut least = 0;
        let mut least_key = *heads[0].peek().expect("exhausted runs are removed");
        for (i, head) in heads.iter_mut().enumerate().skip(1) {
            let key = head.peek().expect("exhausted runs are removed");
            if keyed_less(key, &least_key) {
                least = i;
                least_key = *key;
            }
        }
        let (_, name, info) = heads[least].next().expect("a head was peeked");
        out.push((name, info));
        if heads[least].peek().is_none() {
            drop(heads.swap_remove(least));
        }
    }
    if let Some(last) = heads.pop() {
        out.extend(last.map(|(_, name, info)| (name, info)));
    }
    out
}

/// The first 16 bytes of `name`, zero-padded, as a big-endian number. Zero
/// is the least byte, so `name_prefix(a) < name_prefix(b)` implies `a < b`;
/// equal prefixes say nothing (compare the names).
fn name_prefix(name: &str) -> u128 {
    let b = name.as_bytes();
    let n = b.len().min(16);
    let mut k = [0u8; 16];
    k[..n].copy_from_slice(&b[..n]);
    u128::from_be_bytes(k)
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// The map as of now, for a snapshot: O(shards), not O(files).
    pub fn view(&self) -> MapView {
        MapView {
            shards: self.shards.clone(),
            len: self.len,
            applied_index: self.applied_index,
        }
    }

    fn insert(&mut self, name: String, info: FileInfo) {
        let shard = Arc::make_mut(&mut self.shards[shard_of(&name)]);
        if shard.insert(name, info).is_none() {
            self.len += 1;
        }
    }

    /// Applies the command at log `index`; returns whether the update took effect.
    /// Invariant: indexes are applied in strictly increasing order.
    pub fn apply(&mut self, index: LogIndex, cmd: &Command) -> bool {
        self.mark_applied(index);
        match cmd {
            Command::UpdateFile {
                filename,
                version,
                hashlist,
            } => {
                let current = self.version(filename);
                if current.checked_add(1) != Some(*version) {
                    return false;
                }
                self.insert(
                    filename.clone(),
                    FileInfo {
                        version: *version,
                        hashlist: hashlist.as_slice().into(),
                    },
                );
                true
            }
        }
    }

    /// Records that a log entry with no effect on the map (a no-op) was applied.
    pub fn mark_applied(&mut self, index: LogIndex) {
        assert!(
            index > self.applied_index,
            "apply order invariant: index {index} applied after {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The version in this node's applied map, 0 if unknown.
    pub fn version(&self, filename: &str) -> i64 {
        self.get(filename).map_or(0, |f| f.version)
    }

    pub fn get(&self, filename: &str) -> Option<&FileInfo> {
        self.shards[shard_of(filename)].get(filename)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The map as snapshot bytes (the applied index travels beside them, in
    /// the Raft snapshot). Files are written sorted by name, so equal maps give
    /// equal bytes.
    pub fn encode_snapshot(&self) -> Bytes {
        self.view().encode()
    }

    /// The map `encode_snapshot` wrote, as applied through log `index`.
    pub fn from_snapshot(index: LogIndex, data: &[u8]) -> Result<Metadata, SnapshotDecodeError> {
        let mut r = Reader::new(data);
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err(SnapshotDecodeError::Magic);
        }
        let format = r.u8()?;
        if !SNAPSHOT_FORMATS_READ.contains(&format) {
            return Err(SnapshotDecodeError::Format(format));
        }
        if format >= FIRST_CRC_FORMAT {
            // The CRC covers magic, format and body; checked before decoding.
            let Some(body_end) = data.len().checked_sub(4).filter(|&e| e >= r.pos()) else {
                return Err(DecodeError::Truncated(data.len()).into());
            };
            let stored = u32::from_le_bytes(data[body_end..].try_into().expect("4 bytes"));
            let computed = crc32fast::hash(&data[..body_end]);
            if stored != computed {
                return Err(SnapshotDecodeError::Crc { stored, computed });
            }
            r = Reader::new(&data[..body_end]);
            r.take(5)?;
        }
        let count = r.u64()?;
        // Bound the allocation by what the input could hold, not by its claim.
        let cap = (count.min(usize::MAX as u64) as usize).min(r.remaining() / MIN_FILE_BYTES);
        let mut shards: Vec<Shard> = (0..SHARDS)
            .map(|_| Shard::with_capacity(cap / SHARDS))
            .collect();
        let mut previous: Option<&[u8]> = None;
        for _ in 0..count {
            let start = r.pos();
            let name = r.bytes()?;
            if previous.is_some_and(|p| p >= name) {
                return Err(SnapshotDecodeError::Order(start));
            }
            previous = Some(name);
            let name = std::str::from_utf8(name).map_err(|_| DecodeError::Utf8(start))?;
            let version = r.u64()? as i64;
            let hashlist = match r.hash_list() {
                Ok(h) => h.into_boxed_slice(),
                Err(source) => {
                    return Err(SnapshotDecodeError::File {
                        file: name.to_owned(),
                        source,
                    })
                }
            };
            shards[shard_of(name)].insert(name.to_owned(), FileInfo { version, hashlist });
        }
        if r.remaining() != 0 {
            return Err(SnapshotDecodeError::Trailing(r.remaining()));
        }
        Ok(Metadata {
            shards: shards.into_iter().map(Arc::new).collect(),
            len: count as usize,
            applied_index: index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(name: &str, version: i64) -> Command {
        Command::UpdateFile {
            filename: name.into(),
            version,
            hashlist: vec![Hash::text(format!("h{version}"))],
        }
    }

    #[test]
    fn a_view_is_the_map_as_of_when_it_was_taken() {
        let mut m = Metadata::new();
        for i in 0..1000 {
            m.apply(i + 1, &upd(&format!("f{i}"), 1));
        }
        let before = m.encode_snapshot();
        let view = m.view();
        // Later applies touch every shard (copying it) and add files.
        for i in 0..1000 {
            m.apply(1001 + i, &upd(&format!("f{i}"), 2));
        }
        m.apply(2001, &upd("new", 1));
        assert_eq!(view.encode(), before, "the view did not move");
        assert_eq!(view.applied_index, 1000);
        let back = Metadata::from_snapshot(1000, &view.encode()).unwrap();
        assert_eq!((back.len(), back.version("f7")), (1000, 1));
        assert_eq!((m.len(), m.version("f7"), m.version("new")), (1001, 2, 1));
    }

    #[test]
    fn version_rule_is_exactly_current_plus_one() {
        let mut m = Metadata::new();
        assert_eq!(m.version("a"), 0);
        assert!(!m.apply(1, &upd("a", 0)), "version 0 is not current+1");
        assert!(!m.apply(2, &upd("a", 2)), "skipping a version is refused");
        assert!(m.apply(3, &upd("a", 1)));
        assert!(!m.apply(4, &upd("a", 1)), "a stale version is refused");
        assert!(m.apply(5, &upd("a", 2)));
        assert_eq!(m.version("a"), 2);
        assert_eq!(m.applied_index(), 5);
    }

    #[test]
    fn racing_updates_first_write_wins() {
        let mut m = Metadata::new();
        assert!(m.apply(1, &upd("f", 1)));
        assert!(!m.apply(2, &upd("f", 1)));
        assert_eq!(*m.get("f").unwrap().hashlist, [Hash::text("h1")]);
    }

    /// `n` files with 2–4 hashes each, written in an order given by `stride`.
    fn many_files(n: u64, stride: u64) -> Metadata {
        let mut m = Metadata::new();
        for i in 0..n {
            let k = (i * stride) % n;
            let hashes = 2 + (k % 3) as usize;
            let cmd = Command::UpdateFile {
                filename: format!("dir{}/file-{k:06}.txt", k % 17),
                version: 1,
                hashlist: (0..hashes)
                    .map(|h| Hash::text(format!("{:064x}", k * 4 + h as u64)))
                    .collect(),
            };
            assert!(m.apply(i + 1, &cmd));
        }
        m
    }

    fn assert_same_map(a: &Metadata, b: &Metadata) {
        assert_eq!(a.len(), b.len());
        assert_eq!(a.applied_index(), b.applied_index());
        for (name, info) in a.shards.iter().flat_map(|s| s.iter()) {
            assert_eq!(b.get(name), Some(info), "{name}");
        }
    }

    #[test]
    fn snapshot_round_trips_every_value_type() {
        let mut m = Metadata::new();
        let Command::UpdateFile {
            filename, hashlist, ..
        } = crate::node::command::tests::sample();
        assert!(m.apply(
            3,
            &Command::UpdateFile {
                filename,
                version: 1,
                hashlist,
            },
        ));
        m.apply(4, &upd("gone", 1));
        m.apply(
            9,
            &Command::UpdateFile {
                filename: "gone".into(),
                version: 2,
                hashlist: vec![Hash::text("0")],
            },
        );
        let back = Metadata::from_snapshot(9, &m.encode_snapshot()).unwrap();
        assert_same_map(&m, &back);
        let Command::UpdateFile { hashlist, .. } = crate::node::command::tests::sample();
        assert_eq!(*back.get("dir/ünï <&> 😀").unwrap().hashlist, *hashlist);
        assert_eq!(*back.get("gone").unwrap().hashlist, [Hash::text("0")]);
        let empty = Metadata::from_snapshot(7, &Metadata::new().encode_snapshot()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.applied_index(), 7);
    }

    #[test]
    fn a_hundred_thousand_files_round_trip() {
        let m = many_files(100_000, 1);
        let bytes = m.encode_snapshot();
        let back = Metadata::from_snapshot(m.applied_index(), &bytes).unwrap();
        assert_same_map(&m, &back);
        assert_eq!(back.encode_snapshot(), bytes);
    }

    #[test]
    fn files_by_name_sorts_as_strings_do_prefixes_and_ties_included() {
        let mut names: Vec<String> = [
            "",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "b",
            "\u{7f}",
            "ü",
            "😀",
            "0123456789abcdef",
            "0123456789abcdef0",
            "0123456789abcdee~",
            "0123456789abcdef\0",
            "0123456789abcdefg",
            "0123456789abcdef/",
            "dir10/file-000041.txt",
            "dir10/file-000040.txt",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Past PARALLEL_SORT_FILES, so the sort runs on several threads
        // and is merged; names sharing their first 16 bytes included.
        for i in 0..(PARALLEL_SORT_FILES + 5000) {
            names.push(match i % 3 {
                0 => format!("dir{}/file-{i:06}.txt", i % 17),
                1 => format!("0123456789abcdef-{i}"),
                _ => format!("{i}"),
            });
        }
        let mut m = Metadata::new();
        for (i, name) in names.iter().enumerate() {
            m.apply(i as u64 + 1, &upd(name, 1));
        }
        names.sort();
        let view = m.view();
        let got: Vec<&str> = view.files_by_name().into_iter().map(|(n, _)| n).collect();
        assert_eq!(got, names);
        for w in names.windows(2) {
            assert!(name_prefix(&w[0]) <= name_prefix(&w[1]), "{w:?}");
        }
    }

    #[test]
    fn equal_maps_give_equal_bytes_whatever_the_write_order() {
        let a = many_files(1000, 1);
        let b = many_files(1000, 7);
        assert_eq!(a.encode_snapshot(), b.encode_snapshot());
    }

    #[test]
    fn every_truncation_of_a_snapshot_is_an_error() {
        let enc = many_files(20, 1).encode_snapshot();
        for n in 0..enc.len() {
            assert!(
                Metadata::from_snapshot(1, &enc[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
        let mut long = enc.to_vec();
        long.push(0);
        assert!(matches!(
            Metadata::from_snapshot(1, &long).unwrap_err(),
            SnapshotDecodeError::Crc { .. }
        ));
    }

    #[test]
    fn every_flipped_bit_past_the_header_fails_the_crc() {
        let enc = many_files(5, 1).encode_snapshot();
        assert_eq!(enc[4], SNAPSHOT_FORMAT);
        for at in 5..enc.len() {
            for bit in 0..8 {
                let mut bad = enc.to_vec();
                bad[at] ^= 1 << bit;
                assert!(
                    matches!(
                        Metadata::from_snapshot(1, &bad),
                        Err(SnapshotDecodeError::Crc { .. })
                    ),
                    "bit {bit} of byte {at} flipped went unnoticed"
                );
            }
        }
    }

    #[test]
    fn junk_is_refused_by_magic_and_a_format_3_body_needs_its_crc() {
        assert_eq!(
            Metadata::from_snapshot(1, b"\x00\x01\x02\x03\x04").unwrap_err(),
            SnapshotDecodeError::Magic
        );
        // Format 3 claiming no files but missing the CRC trailer.
        let mut b = b"SFSM\x03".to_vec();
        b.extend_from_slice(&0u64.to_le_bytes());
        assert!(matches!(
            Metadata::from_snapshot(1, &b),
            Err(SnapshotDecodeError::Crc { .. })
        ));
        assert_eq!(
            Metadata::from_snapshot(1, b"SFSM\x03\x00").unwrap_err(),
            SnapshotDecodeError::Corrupt(DecodeError::Truncated(6))
        );
        // A format-2 snapshot (no CRC) is still read.
        let mut b = b"SFSM\x02".to_vec();
        b.extend_from_slice(&0u64.to_le_bytes());
        assert!(Metadata::from_snapshot(1, &b).unwrap().is_empty());
    }

    #[test]
    fn hostile_snapshots_are_refused_without_over_allocating() {
        assert_eq!(
            Metadata::from_snapshot(1, b"NOPE\x01").unwrap_err(),
            SnapshotDecodeError::Magic
        );
        assert_eq!(
            Metadata::from_snapshot(1, b"SFSM\x09").unwrap_err(),
            SnapshotDecodeError::Format(9)
        );
        // Claims 2^64-1 files in 13 bytes.
        let mut b = b"SFSM\x01".to_vec();
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Metadata::from_snapshot(1, &b).unwrap_err(),
            SnapshotDecodeError::Corrupt(DecodeError::Truncated(13))
        );
        // One file claiming 4 billion hashes.
        let mut b = b"SFSM\x01".to_vec();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&[1, 0, 0, 0, b'a']);
        b.extend_from_slice(&1i64.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Metadata::from_snapshot(1, &b).unwrap_err(),
            SnapshotDecodeError::File {
                file: "a".into(),
                source: DecodeError::Truncated(30)
            }
        );
    }

    /// A format-1 snapshot (the first version's) of one file `"a"` holding
    /// `values`, `n` of them, as that version tagged them.
    fn format1(values: &[u8], n: u32) -> Vec<u8> {
        let mut b = b"SFSM\x01".to_vec();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&[1, 0, 0, 0, b'a']);
        b.extend_from_slice(&3i64.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(values);
        b
    }

    #[test]
    fn the_first_versions_snapshots_load_to_the_same_hashes() {
        let hex = format!("{:064x}", 0xfeed);
        let mut v = vec![3];
        v.extend_from_slice(&64u32.to_le_bytes());
        v.extend_from_slice(hex.as_bytes());
        v.push(0);
        v.extend_from_slice(&9i32.to_le_bytes());
        v.push(1);
        v.extend_from_slice(&(-1i64).to_le_bytes());
        v.push(5);
        v.extend_from_slice(&1u32.to_le_bytes());
        v.push(0xee);
        let m = Metadata::from_snapshot(5, &format1(&v, 4)).unwrap();
        let want = [
            Hash::text(hex),
            Hash::Int(9),
            Hash::I8(-1),
            Hash::Bytes(vec![0xee].into()),
        ];
        assert_eq!(m.version("a"), 3);
        assert_eq!(*m.get("a").unwrap().hashlist, want);
        // Written again in format 3, it reads back the same, the digest 36 bytes
        // shorter (tag + 32 bytes instead of tag + length + 64 digits), plus
        // the 4-byte CRC.
        let again = m.encode_snapshot();
        assert_eq!(again[4], SNAPSHOT_FORMAT);
        assert_eq!(again.len(), format1(&v, 4).len() - 36 + 4);
        assert_same_map(&m, &Metadata::from_snapshot(5, &again).unwrap());
    }

    #[test]
    fn an_old_snapshot_holding_no_hash_is_an_error_naming_the_file() {
        // A boolean (tag 2) as the second hash of "a".
        let v = [0, 1, 0, 0, 0, 2, 1];
        let err = Metadata::from_snapshot(1, &format1(&v, 2)).unwrap_err();
        assert_eq!(
            err,
            SnapshotDecodeError::File {
                file: "a".into(),
                source: DecodeError::NotAHash {
                    position: 1,
                    kind: "boolean",
                    at: 35
                }
            }
        );
        assert!(err.to_string().starts_with("file \"a\": hash 1 "), "{err}");
    }

    #[test]
    fn repeated_or_unsorted_names_are_refused() {
        let file = |name: &[u8]| {
            let mut b = vec![name.len() as u8, 0, 0, 0];
            b.extend_from_slice(name);
            b.extend_from_slice(&1i64.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b
        };
        for (second, ok) in [(&b"b"[..], true), (b"a", false), (b"0", false)] {
            let mut b = b"SFSM\x01".to_vec();
            b.extend_from_slice(&2u64.to_le_bytes());
            b.extend(file(b"a"));
            b.extend(file(second));
            let got = Metadata::from_snapshot(1, &b);
            if ok {
                assert_eq!(got.unwrap().len(), 2);
            } else {
                assert_eq!(got.unwrap_err(), SnapshotDecodeError::Order(30));
            }
        }
    }

    #[test]
    #[should_panic(expected = "apply order invariant")]
    fn out_of_order_apply_is_a_broken_invariant() {
        let mut m = Metadata::new();
        m.mark_applied(2);
        m.mark_applied(2);
    }
}
