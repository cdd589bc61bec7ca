//! The commands carried in Raft log entries, and their compact binary encoding.
//! The encoding is what the log stores and what `appendEntries` ships, so it is
//! versionless-but-tagged, length-prefixed and never trusts its input: decoding
//! a corrupt or hostile buffer returns an error, never panics or over-allocates.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::xmlrpc::Value;

/// One replicated operation on the metadata map.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `updatefile(filename, version, hashlist)`: applied only if `version` is
    /// exactly the current version + 1 (0 for an unknown file).
    UpdateFile {
        filename: String,
        version: i64,
        /// Kept as the client's values so they come back with the same types.
        hashlist: Vec<Value>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("command truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown command tag {0}")]
    UnknownCommand(u8),
    #[error("unknown value tag {tag} at byte {at}")]
    UnknownValue { tag: u8, at: usize },
    #[error("invalid UTF-8 in command string at byte {0}")]
    Utf8(usize),
    #[error("value nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("{0} trailing bytes after command")]
    Trailing(usize),
}

const TAG_UPDATE: u8 = 1;
/// Deepest value nesting the decoder follows (the XML decoder has its own, lower, limit).
const MAX_DEPTH: usize = 512;

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
                out.put_u32_le(hashlist.len() as u32);
                for v in hashlist {
                    encode_value(v, &mut out);
                }
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
                let n = r.u32()? as usize;
                // Each value takes at least one byte: bound the allocation by the input.
                let mut hashlist = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    hashlist.push(r.value(0)?);
                }
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

/// One tagged `Value`; what [`Reader::value`] reads back.
pub(crate) fn encode_value(v: &Value, out: &mut BytesMut) {
    match v {
        Value::Int(i) => {
            out.put_u8(0);
            out.put_i32_le(*i);
        }
        Value::I8(i) => {
            out.put_u8(1);
            out.put_i64_le(*i);
        }
        Value::Bool(b) => {
            out.put_u8(2);
            out.put_u8(*b as u8);
        }
        Value::String(s) => {
            out.put_u8(3);
            put_str(out, s);
        }
        Value::Double(d) => {
            out.put_u8(4);
            out.put_f64_le(*d);
        }
        Value::Base64(b) => {
            out.put_u8(5);
            out.put_u32_le(b.len() as u32);
            out.put_slice(b);
        }
        Value::DateTime(s) => {
            out.put_u8(6);
            put_str(out, s);
        }
        Value::Array(a) => {
            out.put_u8(7);
            out.put_u32_le(a.len() as u32);
            for v in a {
                encode_value(v, out);
            }
        }
        Value::Struct(m) => {
            out.put_u8(8);
            out.put_u32_le(m.len() as u32);
            for (k, v) in m {
                put_str(out, k);
                encode_value(v, out);
            }
        }
        Value::Nil => out.put_u8(9),
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
    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let at = self.pos;
        Ok(match self.u8()? {
            0 => Value::Int(self.u32()? as i32),
            1 => Value::I8(self.u64()? as i64),
            2 => Value::Bool(self.u8()? != 0),
            3 => Value::String(self.string()?),
            4 => Value::Double(f64::from_bits(self.u64()?)),
            5 => Value::Base64(self.bytes()?.to_vec()),
            6 => Value::DateTime(self.string()?),
            7 => {
                let n = self.u32()? as usize;
                let mut a = Vec::with_capacity(n.min(self.remaining()));
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(a)
            }
            8 => {
                let n = self.u32()? as usize;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = self.string()?;
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                }
                Value::Struct(m)
            }
            9 => Value::Nil,
            tag => return Err(DecodeError::UnknownValue { tag, at }),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An update of an awkward name with a hashlist of every value type.
    pub(crate) fn sample() -> Command {
        let mut m = BTreeMap::new();
        m.insert("k".to_owned(), Value::Double(1.5));
        Command::UpdateFile {
            filename: "dir/ünï <&> 😀".to_owned(),
            version: 7,
            hashlist: vec![
                Value::String("abc".into()),
                Value::Int(-3),
                Value::I8(1 << 40),
                Value::Bool(true),
                Value::Base64(vec![0, 255]),
                Value::DateTime("20260101T00:00:00".into()),
                Value::Array(vec![Value::Nil]),
                Value::Struct(m),
            ],
        }
    }

    #[test]
    fn round_trip_keeps_every_type() {
        let c = sample();
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
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
    }

    #[test]
    fn trailing_bytes_and_unknown_tags_are_refused() {
        let mut enc = sample().encode().to_vec();
        enc.push(0);
        assert_eq!(Command::decode(&enc), Err(DecodeError::Trailing(1)));
        assert_eq!(Command::decode(&[42]), Err(DecodeError::UnknownCommand(42)));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut b = vec![TAG_UPDATE, 0, 0, 0, 0];
        b.extend_from_slice(&1i64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        for _ in 0..10_000 {
            b.push(7);
            b.extend_from_slice(&1u32.to_le_bytes());
        }
        assert_eq!(Command::decode(&b), Err(DecodeError::TooDeep));
    }
}
