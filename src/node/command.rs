//! The commands carried in Raft log entries, and their compact binary encoding.
//! The encoding is what the log stores and what `appendEntries` ships, so it is
//! versionless-but-tagged, length-prefixed and never trusts its input: decoding
//! a corrupt or hostile buffer returns an error, never panics or over-allocates.
//! Commands hold typed values ([`Hash`]), never `xmlrpc::Value` trees: the wire
//! ends at the method table.
//!
//! Compatibility: the first version wrote each hash as a tagged XML-RPC value;
//! its tags for `int` (0), `i8` (1), `string` (3) and `base64` (5) are kept, so
//! its logs decode to the same hashes. A hex SHA-256 is now written as its 32
//! bytes (tag 10). The first version's other tags (boolean, double, dateTime,
//! array, struct, nil) are types a hash cannot be: such an entry is a
//! [`DecodeError::NotAHash`] naming the element, never a panic. (The first
//! version's method table never let one in.)

mod hash;

use bytes::{BufMut, Bytes, BytesMut};

pub use hash::{parse_sha256_hex, sha256_hex, Hash, HashText, TextForm};

/// One replicated operation on the metadata map.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `updatefile(filename, version, hashlist)`: applied only if `version` is
    /// exactly the current version + 1 (0 for an unknown file).
    UpdateFile {
        filename: String,
        version: i64,
        /// Each with the type the client sent it as.
        hashlist: Vec<Hash>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("command truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown command tag {0}")]
    UnknownCommand(u8),
    #[error("unknown hash tag {tag} at byte {at}")]
    UnknownHash { tag: u8, at: usize },
    #[error(
        "hash {position} (at byte {at}) is a {kind}, which a hash list cannot hold \
         (only strings, ints and base64)"
    )]
    NotAHash {
        /// 0-based position in the hash list.
        position: usize,
        kind: &'static str,
        at: usize,
    },
    #[error("invalid UTF-8 in command string at byte {0}")]
    Utf8(usize),
    #[error("{0} trailing bytes after command")]
    Trailing(usize),
}

const TAG_UPDATE: u8 = 1;

/// Hash tags (see the module comment for the ones the first version wrote).
const HASH_INT: u8 = 0;
const HASH_I8: u8 = 1;
const HASH_TEXT: u8 = 3;
const HASH_BYTES: u8 = 5;
const HASH_SHA256: u8 = 10;
/// The first version's value tags that are not hashes, with their XML-RPC names.
const NOT_HASHES: [(u8, &str); 6] = [
    (2, "boolean"),
    (4, "double"),
    (6, "dateTime.iso8601"),
    (7, "array"),
    (8, "struct"),
    (9, "nil"),
];
/// The fewest bytes one encoded hash takes (an int: tag + 4).
const MIN_HASH_BYTES: usize = 5;

impl Command {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        match self {
            Command::UpdateFile {
                filename,
                version,
                hashlist,
            } => {
                out.put_u8(TAG_UPDATE);
                put_str(&mut out, filename);
                out.put_i64_le(*version);
                put_hash_list(&mut out, hashlist);
            }
        }
        out.freeze()
    }

    pub fn decode(buf: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader::new(buf);
        let cmd = match r.u8()? {
            TAG_UPDATE => {
                let filename = r.string()?;
                let version = r.u64()? as i64;
                let hashlist = r.hash_list()?;
                Command::UpdateFile {
                    filename,
                    version,
                    hashlist,
                }
            }
            tag => return Err(DecodeError::UnknownCommand(tag)),
        };
        if r.remaining() != 0 {
            return Err(DecodeError::Trailing(r.remaining()));
        }
        Ok(cmd)
    }
}

/// `[len u32][utf-8 bytes]`.
pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32_le(s.len() as u32);
    out.put_slice(s.as_bytes());
}

/// `[n u32][n tagged hashes]`; what [`Reader::hash_list`] reads back.
pub(crate) fn put_hash_list(out: &mut BytesMut, hashes: &[Hash]) {
    out.put_u32_le(hashes.len() as u32);
    for h in hashes {
        match h {
            Hash::Int(i) => {
                out.put_u8(HASH_INT);
                out.put_i32_le(*i);
            }
            Hash::I8(i) => {
                out.put_u8(HASH_I8);
                out.put_i64_le(*i);
            }
            Hash::Text(t) => match t.form() {
                TextForm::Sha256(d) => {
                    out.put_u8(HASH_SHA256);
                    out.put_slice(d);
                }
                TextForm::Other(s) => {
                    out.put_u8(HASH_TEXT);
                    put_str(out, s);
                }
            },
            Hash::Bytes(b) => {
                out.put_u8(HASH_BYTES);
                out.put_u32_le(b.len() as u32);
                out.put_slice(b);
            }
        }
    }
}

/// Reads what the encoders above wrote; every read is bounds-checked and
/// every length is checked against the bytes left before anything is allocated.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let at = self.pos;
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8(at))
    }

    /// What [`put_hash_list`] wrote (or the first version's value list).
    pub(crate) fn hash_list(&mut self) -> Result<Vec<Hash>, DecodeError> {
        let n = self.u32()? as usize;
        // Bound the allocation by what the input could hold, not by its claim.
        let mut hashes = Vec::with_capacity(n.min(self.remaining() / MIN_HASH_BYTES));
        for position in 0..n {
            hashes.push(self.hash(position)?);
        }
        Ok(hashes)
    }

    fn hash(&mut self, position: usize) -> Result<Hash, DecodeError> {
        let at = self.pos;
        Ok(match self.u8()? {
            HASH_INT => Hash::Int(self.u32()? as i32),
            HASH_I8 => Hash::I8(self.u64()? as i64),
            HASH_TEXT => Hash::Text(HashText::new(self.string()?)),
            HASH_BYTES => Hash::Bytes(self.bytes()?.into()),
            HASH_SHA256 => Hash::Text(HashText::from_sha256(
                self.take(32)?.try_into().expect("32 bytes"),
            )),
            tag => {
                return Err(match NOT_HASHES.iter().find(|(t, _)| *t == tag) {
                    Some(&(_, kind)) => DecodeError::NotAHash { position, kind, at },
                    None => DecodeError::UnknownHash { tag, at },
                })
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An update of an awkward name with a hashlist of every hash type and form.
    pub(crate) fn sample() -> Command {
        Command::UpdateFile {
            filename: "dir/ünï <&> 😀".to_owned(),
            version: 7,
            hashlist: vec![
                Hash::text("abc"),
                Hash::text("0"),
                Hash::text(sha256_hex(&[0xab; 32])),
                Hash::Int(-3),
                Hash::I8(1 << 40),
                Hash::I8(5),
                Hash::Bytes(vec![0, 255].into()),
                Hash::Bytes(Vec::new().into()),
            ],
        }
    }

    #[test]
    fn round_trip_keeps_every_type() {
        let c = sample();
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn a_hex_sha256_takes_its_32_bytes() {
        let cmd = |h: Hash| Command::UpdateFile {
            filename: "f".into(),
            version: 1,
            hashlist: vec![h],
        };
        let hex = cmd(Hash::text(sha256_hex(&[0xab; 32]))).encode();
        let upper = cmd(Hash::text(sha256_hex(&[0xab; 32]).to_uppercase())).encode();
        assert_eq!(hex.len(), 1 + 5 + 8 + 4 + 1 + 32);
        assert_eq!(
            upper.len(),
            1 + 5 + 8 + 4 + 1 + 4 + 64,
            "upper case stays text"
        );
    }

    /// The bytes the first version wrote for `updatefile("a", 2, [...])`:
    /// each hash an `xmlrpc::Value` with its tag.
    fn old_update(values: &[u8], n: u32) -> Vec<u8> {
        let mut b = vec![TAG_UPDATE, 1, 0, 0, 0, b'a'];
        b.extend_from_slice(&2i64.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(values);
        b
    }

    #[test]
    fn the_first_versions_entries_decode_to_the_same_hashes() {
        let hex = sha256_hex(&[0x5a; 32]);
        let mut v = Vec::new();
        v.push(0);
        v.extend_from_slice(&(-7i32).to_le_bytes());
        v.push(1);
        v.extend_from_slice(&(1i64 << 33).to_le_bytes());
        for s in ["0", hex.as_str()] {
            v.push(3);
            v.extend_from_slice(&(s.len() as u32).to_le_bytes());
            v.extend_from_slice(s.as_bytes());
        }
        v.push(5);
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(&[1, 2]);
        let cmd = Command::decode(&old_update(&v, 5)).unwrap();
        let want = Command::UpdateFile {
            filename: "a".into(),
            version: 2,
            hashlist: vec![
                Hash::Int(-7),
                Hash::I8(1 << 33),
                Hash::text("0"),
                Hash::text(hex),
                Hash::Bytes(vec![1, 2].into()),
            ],
        };
        assert_eq!(cmd, want);
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), want);
    }

    #[test]
    fn an_old_value_that_is_no_hash_is_an_error_naming_it() {
        // Hash 0 an int, hash 1 a double (tag 4).
        let mut v = vec![0, 1, 0, 0, 0, 4];
        v.extend_from_slice(&1.5f64.to_le_bytes());
        let err = Command::decode(&old_update(&v, 2)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::NotAHash {
                position: 1,
                kind: "double",
                at: 23
            }
        );
        assert_eq!(
            err.to_string(),
            "hash 1 (at byte 23) is a double, which a hash list cannot hold (only strings, ints and base64)"
        );
        for (tag, kind) in NOT_HASHES {
            assert_eq!(
                Command::decode(&old_update(&[tag, 0, 0, 0, 0], 1)),
                Err(DecodeError::NotAHash {
                    position: 0,
                    kind,
                    at: 18
                })
            );
        }
        assert_eq!(
            Command::decode(&old_update(&[11], 1)),
            Err(DecodeError::UnknownHash { tag: 11, at: 18 })
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let enc = sample().encode();
        for n in 0..enc.len() {
            assert!(
                Command::decode(&enc[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
    }

    #[test]
    fn hostile_lengths_do_not_over_allocate() {
        // Claims 4 billion hash values in a 10-byte buffer.
        let mut b = vec![TAG_UPDATE, 0, 0, 0, 0];
        b.extend_from_slice(&1i64.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Command::decode(&b), Err(DecodeError::Truncated(17)));
        // A base64 hash claiming 4 GiB.
        let mut v = vec![HASH_BYTES];
        v.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Command::decode(&old_update(&v, 1)),
            Err(DecodeError::Truncated(23))
        );
        // A digest cut short.
        assert_eq!(
            Command::decode(&old_update(&[HASH_SHA256, 1, 2], 1)),
            Err(DecodeError::Truncated(19))
        );
    }

    #[test]
    fn trailing_bytes_and_unknown_tags_are_refused() {
        let mut enc = sample().encode().to_vec();
        enc.push(0);
        assert_eq!(Command::decode(&enc), Err(DecodeError::Trailing(1)));
        assert_eq!(Command::decode(&[42]), Err(DecodeError::UnknownCommand(42)));
    }

    #[test]
    fn nesting_is_refused_at_the_first_level() {
        // The first version's array-in-array, 10,000 deep: no recursion now.
        let mut v = Vec::new();
        for _ in 0..10_000 {
            v.push(7);
            v.extend_from_slice(&1u32.to_le_bytes());
        }
        assert!(matches!(
            Command::decode(&old_update(&v, 1)),
            Err(DecodeError::NotAHash {
                position: 0,
                kind: "array",
                ..
            })
        ));
    }

    #[test]
    fn invalid_utf8_text_is_refused() {
        let v = [HASH_TEXT, 1, 0, 0, 0, 0xff];
        assert_eq!(
            Command::decode(&old_update(&v, 1)),
            Err(DecodeError::Utf8(19))
        );
    }
}
