//! The backup file that `ctl snapshot save` writes and `ctl snapshot
//! restore` reads: the metadata map as of one applied index, and the blocks
//! it references (none with `--metadata-only`).
//!
//! Format (integers little-endian):
//! `magic "SURFBKUP" | version: u32 (1) | flags: u32 (bit 0: map only) |
//! index: u64 | term: u64 | map_len: u64 | map (map_len bytes, the map's
//! snapshot encoding, `Metadata::encode_snapshot`) | blocks | 0u8 |
//! block_count: u64 | crc: u32`, where each block is
//! `1u8 | sha256: [u8; 32] | len: u32 | data (len bytes)` and `crc` is the
//! CRC-32 (IEEE) of everything before it.
//!
//! The blocks end with a tag rather than start with a count, so a writer can
//! stream them as they arrive. A reader streams them too (a backup may hold
//! more than memory) and checks each block's SHA-256 as it goes; the CRC and
//! the count are known only at the end, so whoever acts on the blocks must
//! be ready to undo what it did when [`BackupReader::next_block`] fails late.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"SURFBKUP";
const VERSION: u32 = 1;
const FLAG_MAP_ONLY: u32 = 1;
const TAG_END: u8 = 0;
const TAG_BLOCK: u8 = 1;
/// Largest block a backup holds: far above any `--max-block-bytes` a node
/// accepts, low enough that a corrupt length cannot ask for gigabytes.
pub const MAX_BLOCK_BYTES: usize = 64 << 20;

/// What a backup says of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupHeader {
    /// The applied index the map was read at.
    pub index: u64,
    /// The leader's term when it read the map (at least the term of the
    /// entry at `index`).
    pub term: u64,
    /// Whether the blocks were left out (`--metadata-only`).
    pub map_only: bool,
}

/// Why a backup cannot be read: what is wrong and at which byte.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("at byte {at}: {reason}")]
    Format { at: u64, reason: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Writes a backup to `out` as the blocks come; [`BackupWriter::finish`]
/// writes the end. Dropped unfinished, what it wrote does not read back.
pub struct BackupWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    blocks: u64,
    bytes: u64,
}

impl<W: Write> BackupWriter<W> {
    /// Starts a backup of `map` (the map's snapshot encoding).
    pub fn new(out: W, header: BackupHeader, map: &[u8]) -> io::Result<Self> {
        let mut w = BackupWriter {
            out,
            crc: crc32fast::Hasher::new(),
            blocks: 0,
            bytes: 0,
        };
        let flags = if header.map_only { FLAG_MAP_ONLY } else { 0 };
        w.put(MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        w.put(&flags.to_le_bytes())?;
        w.put(&header.index.to_le_bytes())?;
        w.put(&header.term.to_le_bytes())?;
        w.put(&(map.len() as u64).to_le_bytes())?;
        w.put(map)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b)
    }

    /// Appends one block; returns its SHA-256.
    pub fn block(&mut self, data: &[u8]) -> io::Result<[u8; 32]> {
        if data.len() > MAX_BLOCK_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a block of {} bytes is above the backup limit of {MAX_BLOCK_BYTES}",
                    data.len()
                ),
            ));
        }
        let digest: [u8; 32] = Sha256::digest(data).into();
        self.put(&[TAG_BLOCK])?;
        self.put(&digest)?;
        self.put(&(data.len() as u32).to_le_bytes())?;
        self.put(data)?;
        self.blocks += 1;
        Ok(digest)
    }

    /// Blocks written so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Writes the end (tag, count, CRC) and hands back the writer, with the
    /// backup's size in bytes.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.put(&[TAG_END])?;
        let count = self.blocks;
        self.put(&count.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.bytes + 4))
    }
}

/// Reads a backup from `inp`: the header and map at [`BackupReader::open`],
/// then one block per [`BackupReader::next_block`].
pub struct BackupReader<R: Read> {
    inp: R,
    crc: crc32fast::Hasher,
    at: u64,
    blocks: u64,
    done: bool,
}

impl<R: Read> BackupReader<R> {
    /// Reads the header and the map.
    pub fn open(inp: R) -> Result<(Self, BackupHeader, Vec<u8>), BackupError> {
        let mut r = BackupReader {
            inp,
            crc: crc32fast::Hasher::new(),
            at: 0,
            blocks: 0,
            done: false,
        };
        let magic: [u8; 8] = r.array()?;
        if &magic != MAGIC {
            return Err(r.bad(0, format!("bad magic {magic:?} (not a surfstore backup)")));
        }
        let version = u32::from_le_bytes(r.array()?);
        if version != VERSION {
            return Err(r.bad(8, format!("format version {version}, expected {VERSION}")));
        }
        let flags = u32::from_le_bytes(r.array()?);
        if flags & !FLAG_MAP_ONLY != 0 {
            return Err(r.bad(12, format!("unknown flags {flags:#x}")));
        }
        let index = u64::from_le_bytes(r.array()?);
        let term = u64::from_le_bytes(r.array()?);
        let map_len = u64::from_le_bytes(r.array()?);
        let start = r.at;
        // Read through `take`, so a lying length ends in "truncated", not in
        // an allocation of that size.
        let mut map = Vec::new();
        (&mut r.inp).take(map_len).read_to_end(&mut map)?;
        if map.len() as u64 != map_len {
            return Err(r.bad(
                start,
                format!(
                    "the header says the map is {map_len} bytes, the file holds {}",
                    map.len()
                ),
            ));
        }
        r.crc.update(&map);
        r.at += map_len;
        let header = BackupHeader {
            index,
            term,
            map_only: flags & FLAG_MAP_ONLY != 0,
        };
        Ok((r, header, map))
    }

    fn bad(&self, at: u64, reason: String) -> BackupError {
        BackupError::Format { at, reason }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        match self.inp.read_exact(buf) {
            Ok(()) => {
                self.crc.update(buf);
                self.at += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.bad(self.at, "truncated: the file ends early".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let mut b = [0; N];
        self.fill(&mut b)?;
        Ok(b)
    }

    /// The next block as (SHA-256, bytes), checked against its hash; `None`
    /// after the last one, once the count and the CRC are checked and
    /// nothing follows them.
    pub fn next_block(&mut self) -> Result<Option<([u8; 32], Vec<u8>)>, BackupError> {
        if self.done {
            return Ok(None);
        }
        let tag_at = self.at;
        let [tag] = self.array::<1>()?;
        match tag {
            TAG_BLOCK => {
                let digest: [u8; 32] = self.array()?;
                let len = u32::from_le_bytes(self.array()?) as usize;
                if len > MAX_BLOCK_BYTES {
                    return Err(self.bad(
                        tag_at,
                        format!("a block of {len} bytes, above the limit of {MAX_BLOCK_BYTES}"),
                    ));
                }
                let mut data = vec![0; len];
                self.fill(&mut data)?;
                let got: [u8; 32] = Sha256::digest(&data).into();
                if got != digest {
                    return Err(self.bad(tag_at, "a block's bytes do not match its SHA-256".into()));
                }
                self.blocks += 1;
                Ok(Some((digest, data)))
            }
            TAG_END => {
                let count_at = self.at;
                let count = u64::from_le_bytes(self.array()?);
                if count != self.blocks {
                    return Err(self.bad(
                        count_at,
                        format!(
                            "the end says {count} blocks, the file holds {}",
                            self.blocks
                        ),
                    ));
                }
                let computed = self.crc.clone().finalize();
                let crc_at = self.at;
                let mut stored = [0; 4];
                if self.inp.read_exact(&mut stored).is_err() {
                    return Err(self.bad(crc_at, "truncated: the checksum is missing".into()));
                }
                if u32::from_le_bytes(stored) != computed {
                    return Err(self.bad(crc_at, "bad checksum".into()));
                }
                let mut extra = [0; 1];
                if self.inp.read(&mut extra)? != 0 {
                    return Err(self.bad(crc_at + 4, "bytes after the end".into()));
                }
                self.done = true;
                Ok(None)
            }
            t => Err(self.bad(tag_at, format!("unknown record tag {t}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(blocks: &[&[u8]]) -> Vec<u8> {
        let head = BackupHeader {
            index: 42,
            term: 7,
            map_only: blocks.is_empty(),
        };
        let mut w = BackupWriter::new(Vec::new(), head, b"the map").unwrap();
        for b in blocks {
            w.block(b).unwrap();
        }
        let (out, len) = w.finish().unwrap();
        assert_eq!(out.len() as u64, len);
        out
    }

    fn read_all(bytes: &[u8]) -> Result<(BackupHeader, Vec<u8>, Vec<Vec<u8>>), BackupError> {
        let (mut r, head, map) = BackupReader::open(bytes)?;
        let mut blocks = Vec::new();
        while let Some((digest, data)) = r.next_block()? {
            assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&data)));
            blocks.push(data);
        }
        Ok((head, map, blocks))
    }

    #[test]
    fn round_trip() {
        let bytes = backup(&[b"one", b"", b"three"]);
        let (head, map, blocks) = read_all(&bytes).unwrap();
        assert_eq!(
            head,
            BackupHeader {
                index: 42,
                term: 7,
                map_only: false
            }
        );
        assert_eq!(map, b"the map");
        assert_eq!(blocks, vec![b"one".to_vec(), vec![], b"three".to_vec()]);
        let (head, _, blocks) = read_all(&backup(&[])).unwrap();
        assert!(head.map_only);
        assert!(blocks.is_empty());
    }

    #[test]
    fn every_flipped_byte_every_cut_and_any_extra_byte_is_refused() {
        let bytes = backup(&[b"one", b"two"]);
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            assert!(read_all(&b).is_err(), "flip at {at}");
        }
        for cut in 0..bytes.len() {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = read_all(&longer).unwrap_err().to_string();
        assert!(err.contains("bytes after the end"), "{err}");
    }

    #[test]
    fn a_lying_length_is_refused_without_allocating_it() {
        let mut bytes = backup(&[]);
        // map_len sits at byte 32.
        bytes[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = read_all(&bytes).unwrap_err().to_string();
        assert!(
            err.contains("at byte 40") && err.contains("the map is"),
            "{err}"
        );
    }
}
