//! The write-ahead log's record format and the scanner that reads it back.
//!
//! A record is `len: u32 LE | crc: u32 LE | body (len bytes)`, where `crc` is
//! the CRC-32 (IEEE, via `crc32fast`) of the four `len` bytes followed by the
//! body, so a damaged length is caught as surely as a damaged body. A body is
//! a one-byte kind and its fields, integers little-endian:
//! - `1` hard state: `term: u64 | vote: u64 (0 = none, else id + 1) | commit: u64`
//! - `2` entry: `term: u64 | index: u64 | data (the rest)`
//! - `3` snapshot marker: `index: u64 | term: u64 | base: u8 (0 or 1)`
//!
//! Replaying records in order rebuilds the store: an entry at index `i`
//! replaces whatever was at `i` and after it; a marker for a snapshot newer
//! than the log's start applies the `save_snapshot` rule (entries through
//! `index` are dropped; the ones after it are kept if the log holds
//! (`index`, `term`), else all are discarded) and moves the log's start to
//! (`index`, `term`). `base = 1` marks the head of a segment a compaction
//! wrote: that segment holds the whole log from the marker on, and every
//! earlier segment is obsolete.
//!
//! The scanner tells a torn tail (what a crash mid-write leaves: a partial
//! header, a record running past the end of the file, a bad checksum on the
//! very last record, or zeros to the end) from corruption before the tail (a
//! bad record followed by more data), which it reports with its offset and
//! never panics on.

use bytes::Bytes;

use crate::node::raft::{Entry, HardState, LogIndex, Term};

pub const HEADER_LEN: usize = 8;
/// No record is larger than this; a longer length in a header is corruption.
pub const MAX_BODY_LEN: usize = 256 << 20;

const KIND_HARD_STATE: u8 = 1;
const KIND_ENTRY: u8 = 2;
const KIND_MARKER: u8 = 3;

/// A snapshot marker: the log starts after (`index`, `term`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub index: LogIndex,
    pub term: Term,
    /// The head of a compaction's segment: earlier segments are obsolete.
    pub base: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    HardState(HardState),
    Entry(Entry),
    Marker(Marker),
}

fn push_record(out: &mut Vec<u8>, body_len: usize, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    body(out);
    debug_assert_eq!(out.len() - start - HEADER_LEN, body_len);
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 4]);
    h.update(&out[start + HEADER_LEN..]);
    let crc = h.finalize();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the encoding of `hs` to `out`.
pub fn encode_hard_state(out: &mut Vec<u8>, hs: &HardState) {
    push_record(out, 1 + 24, |b| {
        b.push(KIND_HARD_STATE);
        b.extend_from_slice(&hs.term.to_le_bytes());
        b.extend_from_slice(&hs.vote.map_or(0, |v| v + 1).to_le_bytes());
        b.extend_from_slice(&hs.commit.to_le_bytes());
    });
}

/// Appends the encoding of `e` to `out`.
pub fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    push_record(out, 1 + 16 + e.data.len(), |b| {
        b.push(KIND_ENTRY);
        b.extend_from_slice(&e.term.to_le_bytes());
        b.extend_from_slice(&e.index.to_le_bytes());
        b.extend_from_slice(&e.data);
    });
}

/// Appends the encoding of `m` to `out`.
pub fn encode_marker(out: &mut Vec<u8>, m: &Marker) {
    push_record(out, 1 + 17, |b| {
        b.push(KIND_MARKER);
        b.extend_from_slice(&m.index.to_le_bytes());
        b.extend_from_slice(&m.term.to_le_bytes());
        b.push(m.base as u8);
    });
}

pub fn encode(out: &mut Vec<u8>, r: &Record) {
    match r {
        Record::HardState(hs) => encode_hard_state(out, hs),
        Record::Entry(e) => encode_entry(out, e),
        Record::Marker(m) => encode_marker(out, m),
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn decode_body(body: &Bytes) -> Result<Record, String> {
    match body.first() {
        Some(&KIND_HARD_STATE) if body.len() == 25 => {
            let vote = u64_at(body, 9);
            Ok(Record::HardState(HardState {
                term: u64_at(body, 1),
                vote: vote.checked_sub(1),
                commit: u64_at(body, 17),
            }))
        }
        Some(&KIND_HARD_STATE) => Err(format!("hard-state record of {} bytes", body.len())),
        Some(&KIND_ENTRY) if body.len() >= 17 => Ok(Record::Entry(Entry {
            term: u64_at(body, 1),
            index: u64_at(body, 9),
            data: body.slice(17..),
        })),
        Some(&KIND_ENTRY) => Err(format!("entry record of {} bytes", body.len())),
        Some(&KIND_MARKER) if body.len() == 18 && body[17] <= 1 => Ok(Record::Marker(Marker {
            index: u64_at(body, 1),
            term: u64_at(body, 9),
            base: body[17] == 1,
        })),
        Some(&KIND_MARKER) => Err(format!(
            "snapshot marker record of {} bytes (base byte {:?})",
            body.len(),
            body.get(17)
        )),
        Some(k) => Err(format!("unknown record kind {k}")),
        None => Err("empty record".into()),
    }
}

/// The end of a scan that did not reach the end of the data cleanly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    /// Where the torn part starts: everything before it is good.
    pub offset: usize,
    pub reason: String,
}

/// Records read from one file.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// `offsets[i]`: where `records[i]` starts.
    pub offsets: Vec<usize>,
    /// Bytes of whole, good records from the start.
    pub valid_len: usize,
    /// Set when the data ends in a torn record (a crash mid-write).
    pub torn: Option<Tail>,
}

/// Corruption before the tail: a bad record with more data after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt {
    pub offset: usize,
    pub reason: String,
}

/// Reads every record of `data`. A problem that reaches the end of the data
/// is a torn tail; one followed by more data is corruption.
pub fn scan(data: &Bytes) -> Result<Scan, Corrupt> {
    let mut out = Scan::default();
    let end = data.len();
    let mut at = 0;
    let rest_is_zero = |from: usize| data[from..].iter().all(|&b| b == 0);
    while at < end {
        let torn = |reason: String| Tail { offset: at, reason };
        if end - at < HEADER_LEN {
            out.torn = Some(torn(format!("partial record header ({} bytes)", end - at)));
            break;
        }
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > MAX_BODY_LEN {
            if rest_is_zero(at) {
                out.torn = Some(torn("zeros to the end".into()));
                break;
            }
            return Err(Corrupt {
                offset: at,
                reason: format!("record length {len} is over the {MAX_BODY_LEN}-byte limit"),
            });
        }
        let body_end = at + HEADER_LEN + len;
        if body_end > end {
            out.torn = Some(torn(format!(
                "partial record: {len}-byte body, {} bytes present",
                end - at - HEADER_LEN
            )));
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&data[at..at + 4]);
        h.update(&data[at + HEADER_LEN..body_end]);
        if h.finalize() != crc {
            if body_end == end || rest_is_zero(body_end) {
                out.torn = Some(torn("bad checksum on the last record".into()));
                break;
            }
            return Err(Corrupt {
                offset: at,
                reason: "bad checksum, with more records after it".into(),
            });
        }
        let body = data.slice(at + HEADER_LEN..body_end);
        let record = decode_body(&body).map_err(|reason| Corrupt { offset: at, reason })?;
        out.records.push(record);
        out.offsets.push(at);
        at = body_end;
        out.valid_len = at;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, len: usize) -> Record {
        Record::Entry(Entry {
            term: 3,
            index,
            data: Bytes::from(vec![index as u8; len]),
        })
    }

    fn sample() -> Vec<Record> {
        vec![
            entry(1, 0),
            entry(2, 40),
            Record::HardState(HardState {
                term: 3,
                vote: Some(0),
                commit: 2,
            }),
            Record::HardState(HardState {
                term: 4,
                vote: None,
                commit: 2,
            }),
            entry(3, 300),
            Record::Marker(Marker {
                index: 2,
                term: 3,
                base: true,
            }),
            entry(3, 20),
        ]
    }

    /// A log whose last record is a segment head's marker.
    fn ending_in_marker() -> Vec<Record> {
        let mut rs = sample();
        rs.push(Record::HardState(HardState {
            term: 4,
            vote: Some(1),
            commit: 3,
        }));
        rs.push(Record::Marker(Marker {
            index: 3,
            term: 3,
            base: false,
        }));
        rs
    }

    fn encode_all(rs: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for r in rs {
            encode(&mut out, r);
            ends.push(out.len());
        }
        (out, ends)
    }

    #[test]
    fn round_trip() {
        let rs = sample();
        let (bytes, _) = encode_all(&rs);
        let scan = scan(&Bytes::from(bytes.clone())).unwrap();
        assert_eq!(scan.records, rs);
        assert_eq!(scan.valid_len, bytes.len());
        assert_eq!(scan.torn, None);
    }

    #[test]
    fn torn_tail_at_every_byte_of_the_last_record() {
        for rs in [sample(), ending_in_marker()] {
            torn_tail_at_every_byte(rs);
        }
    }

    fn torn_tail_at_every_byte(rs: Vec<Record>) {
        let (bytes, ends) = encode_all(&rs);
        let last_start = ends[ends.len() - 2];
        for cut in last_start..bytes.len() {
            let scan = scan(&Bytes::copy_from_slice(&bytes[..cut])).unwrap();
            assert_eq!(scan.records, rs[..rs.len() - 1], "cut at {cut}");
            assert_eq!(scan.valid_len, last_start, "cut at {cut}");
            assert_eq!(
                scan.torn.is_some(),
                cut > last_start,
                "cut at {cut}: {:?}",
                scan.torn
            );
        }
    }

    #[test]
    fn flipped_bit_in_the_checksum_or_body_of_the_last_record_is_a_torn_tail() {
        for rs in [sample(), ending_in_marker()] {
            flipped_bit_in_the_last_record(rs);
        }
    }

    fn flipped_bit_in_the_last_record(rs: Vec<Record>) {
        let (bytes, ends) = encode_all(&rs);
        let last_start = ends[ends.len() - 2];
        // (A flipped length makes the record end before or after the file
        // does: the cut test covers the one, corruption the other.)
        for at in last_start + 4..bytes.len() {
            for bit in [0, 7] {
                let mut b = bytes.clone();
                b[at] ^= 1 << bit;
                let scan = scan(&Bytes::from(b)).unwrap();
                assert_eq!(scan.records, rs[..rs.len() - 1], "flip at {at}");
                assert!(scan.torn.is_some());
            }
        }
    }

    #[test]
    fn flipped_bit_in_the_middle_is_corruption_with_its_offset() {
        let rs = sample();
        let (bytes, ends) = encode_all(&rs);
        // Every byte of the second record except the high length bytes (a
        // length pushed past the end of the file is read as a torn tail).
        let (start, end) = (ends[0], ends[1]);
        for at in start..end {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            match scan(&Bytes::from(b)) {
                Err(c) => assert_eq!(c.offset, start, "flip at {at}"),
                Ok(s) => {
                    // Only a length flip can make the record claim more than
                    // the file holds.
                    assert!(at < start + 4, "flip at {at} not detected");
                    assert_eq!(s.records, rs[..1]);
                }
            }
        }
        // The same for a marker in the middle (the fifth record).
        let (start, end) = (ends[4], ends[5]);
        for at in start + 4..end {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            assert_eq!(
                scan(&Bytes::from(b)).unwrap_err().offset,
                start,
                "flip at {at}"
            );
        }
        // A flip in the body is always corruption.
        let mut b = bytes.clone();
        b[start + HEADER_LEN + 5] ^= 1;
        let err = scan(&Bytes::from(b)).unwrap_err();
        assert_eq!(err.offset, start);
        assert!(err.reason.contains("checksum"), "{}", err.reason);
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let rs = sample();
        let (mut bytes, _) = encode_all(&rs);
        let good = bytes.len();
        bytes.extend_from_slice(&[0; 100]);
        let scan = scan(&Bytes::from(bytes)).unwrap();
        assert_eq!(scan.records, rs);
        assert_eq!(scan.valid_len, good);
        assert!(scan.torn.is_some());
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for _ in 0..2000 {
            let n = rng.gen_range(0..64);
            let b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let _ = scan(&Bytes::from(b));
        }
    }
}
