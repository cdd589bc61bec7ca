//! The pack record format, and the scanner that indexes a pack file.
//!
//! A record is a 48-byte header and the block's bytes, integers
//! little-endian:
//!
//! ```text
//! 0   magic     4   b"SBK1"
//! 4   len       4   data length (u32)
//! 8   sha256   32   the block's SHA-256 (its name)
//! 40  data_crc  4   CRC-32 (IEEE) of the data
//! 44  head_crc  4   CRC-32 of bytes 0..44 (magic, len, sha256, data_crc)
//! 48  data    len
//! ```
//!
//! The header has its own CRC so that the scanner, which seeks past the data
//! of most records, can trust a length before it jumps by it; the data CRC is
//! checked on every read and, at open, for the tail of the newest pack.
//!
//! The scanner never panics: what it cannot read is reported as a [`Bad`]
//! spot with its offset and a reason, and the caller decides (a torn tail is
//! truncated, corruption before it is skipped by [`find_next_header`]).

use std::fs::File;
use std::os::unix::fs::FileExt;

pub const MAGIC: [u8; 4] = *b"SBK1";
pub const HEADER_LEN: usize = 48;

/// A record's header, decoded and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub sha256: [u8; 32],
    pub data_crc: u32,
}

impl Header {
    pub fn for_data(sha256: [u8; 32], data: &[u8]) -> Header {
        Header {
            len: u32::try_from(data.len()).expect("a block is under 4 GiB (the size limit)"),
            sha256,
            data_crc: crc32fast::hash(data),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&self.len.to_le_bytes());
        h[8..40].copy_from_slice(&self.sha256);
        h[40..44].copy_from_slice(&self.data_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[0..44]);
        h[44..48].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The header in `h`, or why it is not one.
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Header, &'static str> {
        if h[0..4] != MAGIC {
            return Err("bad magic");
        }
        let crc = u32::from_le_bytes(h[44..48].try_into().expect("4 bytes"));
        if crc32fast::hash(&h[0..44]) != crc {
            return Err("header checksum mismatch");
        }
        Ok(Header {
            len: u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")),
            sha256: h[8..40].try_into().expect("32 bytes"),
            data_crc: u32::from_le_bytes(h[40..44].try_into().expect("4 bytes")),
        })
    }

    /// Header and data.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// One record found by the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub offset: u64,
    pub header: Header,
}

/// Where the scan stopped before the end of the file, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bad {
    pub offset: u64,
    pub reason: String,
    /// The bad record reaches the end of the file (a header that checks,
    /// with data running past the end or not matching its CRC): the last
    /// record, torn.
    pub to_end: bool,
}

/// Reads a pack's records from `from` on, sequentially, with one read per
/// 64 KiB of small records (headers of larger ones are read where they are).
pub struct Scanner<'a> {
    file: &'a File,
    len: u64,
    pos: u64,
    /// File bytes `[buf_at, buf_at + buf.len())`.
    buf: Vec<u8>,
    buf_at: u64,
    /// Records ending after this offset have their data checked too.
    verify_after: u64,
}

const CHUNK: usize = 64 << 10;

impl<'a> Scanner<'a> {
    pub fn new(file: &'a File, len: u64, from: u64, verify_after: u64) -> Self {
        Scanner {
            file,
            len,
            pos: from,
            buf: Vec::new(),
            buf_at: 0,
            verify_after,
        }
    }

    fn header_at(&mut self, at: u64) -> std::io::Result<[u8; HEADER_LEN]> {
        let end = at + HEADER_LEN as u64;
        if at < self.buf_at || end > self.buf_at + self.buf.len() as u64 {
            let want = CHUNK.min((self.len - at) as usize);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.buf_at = at;
        }
        let i = (at - self.buf_at) as usize;
        Ok(self.buf[i..i + HEADER_LEN].try_into().expect("48 bytes"))
    }

    /// The next record, `Ok(None)` at the end of the file, or the bad spot.
    /// After a bad spot the scanner stays there (see [`Scanner::skip_to`]).
    pub fn next_record(&mut self) -> Result<Option<Found>, Bad> {
        let at = self.pos;
        if at == self.len {
            return Ok(None);
        }
        let bad = |reason: String| Bad {
            offset: at,
            reason,
            to_end: false,
        };
        if self.len - at < HEADER_LEN as u64 {
            return Err(bad(format!(
                "{} bytes at the end, less than a record header",
                self.len - at
            )));
        }
        let raw = self
            .header_at(at)
            .map_err(|e| bad(format!("reading a header: {e}")))?;
        let header = Header::decode(&raw).map_err(|r| bad(r.to_owned()))?;
        let end = at + header.record_len();
        if end > self.len {
            return Err(Bad {
                to_end: true,
                ..bad(format!(
                    "a record of {} bytes runs past the end of the file",
                    header.len
                ))
            });
        }
        if end > self.verify_after {
            let mut data = vec![0u8; header.len as usize];
            self.file
                .read_exact_at(&mut data, at + HEADER_LEN as u64)
                .map_err(|e| bad(format!("reading a record: {e}")))?;
            if crc32fast::hash(&data) != header.data_crc {
                return Err(Bad {
                    to_end: end == self.len,
                    ..bad("data checksum mismatch".to_owned())
                });
            }
        }
        self.pos = end;
        Ok(Some(Found { offset: at, header }))
    }

    /// Goes on scanning from `offset` (a header [`find_next_header`] found).
    pub fn skip_to(&mut self, offset: u64) {
        self.pos = offset;
    }
}

/// The first offset after `after` where a well-formed header (magic, header
/// CRC, a record that fits in the file) starts, if any: where a scan resumes
/// after corruption. Reads the rest of the file at most once.
pub fn find_next_header(file: &File, len: u64, after: u64) -> std::io::Result<Option<u64>> {
    let mut at = after + 1;
    let mut buf = vec![0u8; CHUNK + HEADER_LEN];
    while at + HEADER_LEN as u64 <= len {
        let n = ((len - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        let last = n - HEADER_LEN;
        for i in 0..=last {
            if buf[i..i + 4] != MAGIC {
                continue;
            }
            let raw: &[u8; HEADER_LEN] = buf[i..i + HEADER_LEN].try_into().expect("48 bytes");
            if let Ok(h) = Header::decode(raw) {
                if at + i as u64 + h.record_len() <= len {
                    return Ok(Some(at + i as u64));
                }
            }
        }
        at += last as u64 + 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sha(data: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(data).into()
    }

    fn pack(blocks: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for b in blocks {
            starts.push(out.len() as u64);
            out.extend_from_slice(&Header::for_data(sha(b), b).encode());
            out.extend_from_slice(b);
        }
        (out, starts)
    }

    fn file_with(bytes: &[u8]) -> (File, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("surfstore-record-{:016x}", rand::random::<u64>()));
        let mut f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.write_all(bytes).unwrap();
        (f, path)
    }

    fn scan_all(f: &File, len: u64, verify_after: u64) -> (Vec<Found>, Option<Bad>) {
        let mut s = Scanner::new(f, len, 0, verify_after);
        let mut out = Vec::new();
        loop {
            match s.next_record() {
                Ok(Some(r)) => out.push(r),
                Ok(None) => return (out, None),
                Err(b) => return (out, Some(b)),
            }
        }
    }

    #[test]
    fn header_round_trips_and_rejects_every_flipped_bit() {
        let h = Header::for_data(sha(b"abc"), b"abc");
        let raw = h.encode();
        assert_eq!(Header::decode(&raw), Ok(h));
        for byte in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut r = raw;
                r[byte] ^= 1 << bit;
                assert!(Header::decode(&r).is_err(), "flip {byte}.{bit}");
            }
        }
    }

    #[test]
    fn scan_stops_at_a_cut_of_every_length_of_the_last_record() {
        let blocks: [&[u8]; 3] = [b"first block", b"", &[7u8; 200]];
        let (bytes, starts) = pack(&blocks);
        let last = starts[2];
        for cut in last..=bytes.len() as u64 {
            let (f, path) = file_with(&bytes[..cut as usize]);
            let (found, bad) = scan_all(&f, cut, 0);
            let whole = cut == bytes.len() as u64;
            assert_eq!(found.len(), if whole { 3 } else { 2 }, "cut {cut}");
            assert_eq!(bad.is_some(), !whole && cut > last, "cut {cut}: {bad:?}");
            if let Some(b) = bad {
                assert_eq!(b.offset, last);
            }
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn a_flipped_data_byte_is_caught_only_where_data_is_verified() {
        let blocks: [&[u8]; 2] = [&[1u8; 100], &[2u8; 100]];
        let (mut bytes, starts) = pack(&blocks);
        bytes[starts[1] as usize + HEADER_LEN + 5] ^= 0x10;
        let (f, path) = file_with(&bytes);
        let len = bytes.len() as u64;
        let (found, bad) = scan_all(&f, len, len);
        assert_eq!((found.len(), bad), (2, None), "data not verified");
        let (found, bad) = scan_all(&f, len, 0);
        assert_eq!(found.len(), 1);
        assert_eq!(bad.unwrap().offset, starts[1]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_next_header_is_found_past_corruption() {
        let blocks: [&[u8]; 3] = [&[1u8; 300], &[2u8; 70_000], &[3u8; 10]];
        let (mut bytes, starts) = pack(&blocks);
        // Smash the first record's header: the scan stops at 0, the search
        // finds the second record (past a chunk boundary for the third).
        bytes[0] ^= 0xff;
        let (f, path) = file_with(&bytes);
        let len = bytes.len() as u64;
        let (found, bad) = scan_all(&f, len, len);
        assert!(found.is_empty());
        assert_eq!(bad.unwrap().offset, 0);
        assert_eq!(find_next_header(&f, len, 0).unwrap(), Some(starts[1]));
        assert_eq!(
            find_next_header(&f, len, starts[1]).unwrap(),
            Some(starts[2])
        );
        assert_eq!(find_next_header(&f, len, starts[2]).unwrap(), None);
        std::fs::remove_file(path).unwrap();
    }
}
