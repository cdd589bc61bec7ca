//! Structured inputs from fuzz bytes: a byte source that never runs dry (it
//! yields zeros once the input is used up), and builders for the values the
//! decoders' encoders take. A fuzzer mutating the bytes mutates the structure,
//! so the round-trip checks (`decode(encode(x)) == x`) see varied `x` without
//! an `arbitrary` dependency in the product.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::node::command::{Command, Hash};
use crate::node::raft::{Entry, HardState, Message, MessageBody, Snapshot};
use crate::node::storage::wal::record::{Marker, Record};
use crate::xmlrpc::Value;

/// Reads the input front to back; past its end every read is zero.
pub struct Gen<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Gen<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Gen { data, pos: 0 }
    }

    pub fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }

    /// A number as Raft messages carry it (the wire holds them as `i8`).
    pub fn wire_u64(&mut self) -> u64 {
        self.u64() & (i64::MAX as u64)
    }

    /// Up to `max` bytes, taken as they are from the input.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize).min(max);
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos += n;
        self.data[start..end].to_vec()
    }

    /// A string of up to `max` chars drawn from an alphabet that stresses
    /// escaping: XML specials, `\r`, `\n`, tab, space, `%`, non-ASCII.
    pub fn string(&mut self, max: usize) -> String {
        const ALPHABET: [char; 16] = [
            'a', 'Z', '0', ' ', '\t', '\n', '\r', '&', '<', '>', '%', '"', 'é', '😀', '\u{85}', ';',
        ];
        let n = (self.u8() as usize).min(max);
        (0..n)
            .map(|_| {
                let b = self.u8();
                if b < 0x80 {
                    ALPHABET[(b & 15) as usize]
                } else {
                    char::from_u32(0x20 + u32::from(b)).unwrap_or('?')
                }
            })
            .collect()
    }

    /// An XML-RPC value at most `depth` levels deep.
    pub fn value(&mut self, depth: usize) -> Value {
        let kind = self.u8() % if depth == 0 { 8 } else { 10 };
        match kind {
            0 => Value::Int(self.u64() as i32),
            1 => Value::I8(self.u64() as i64),
            2 => Value::Bool(self.bool()),
            3 => Value::String(self.string(40)),
            4 => Value::Double(f64::from_bits(self.u64())),
            5 => Value::Base64(self.bytes(64)),
            // The decoder trims XML whitespace around a dateTime (as Python does).
            6 => Value::DateTime(
                self.string(20)
                    .trim_matches([' ', '\t', '\n', '\r'])
                    .to_owned(),
            ),
            7 => Value::Nil,
            8 => {
                let n = self.u8() % 5;
                Value::Array((0..n).map(|_| self.value(depth - 1)).collect())
            }
            _ => {
                let n = self.u8() % 5;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let name = self.string(12);
                    let v = self.value(depth - 1);
                    m.insert(name, v);
                }
                Value::Struct(m)
            }
        }
    }

    pub fn entry(&mut self) -> Entry {
        Entry {
            term: self.wire_u64(),
            index: self.wire_u64(),
            data: Bytes::from(self.bytes(48)),
        }
    }

    /// Any Raft message that travels as a request or a response.
    pub fn message(&mut self) -> Message {
        let body = match self.u8() % 7 {
            0 => MessageBody::AppendEntries {
                prev_index: self.wire_u64(),
                prev_term: self.wire_u64(),
                entries: (0..self.u8() % 4).map(|_| self.entry()).collect(),
                commit: self.wire_u64(),
                read_seq: self.wire_u64(),
            },
            1 => MessageBody::AppendEntriesResponse {
                success: self.bool(),
                match_index: self.wire_u64(),
                conflict_index: self.wire_u64(),
                conflict_term: self.wire_u64(),
                read_seq: self.wire_u64(),
            },
            2 => MessageBody::RequestVote {
                last_index: self.wire_u64(),
                last_term: self.wire_u64(),
                transfer: false,
            },
            3 => MessageBody::PreVote {
                last_index: self.wire_u64(),
                last_term: self.wire_u64(),
            },
            4 => MessageBody::RequestVoteResponse {
                granted: self.bool(),
            },
            5 => MessageBody::PreVoteResponse {
                granted: self.bool(),
            },
            _ => MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    // A chunk's index is never 0 on the wire.
                    index: self.wire_u64().max(1),
                    term: self.wire_u64(),
                    data: Bytes::from(self.bytes(64)),
                },
            },
        };
        Message {
            from: self.wire_u64(),
            to: self.wire_u64(),
            term: self.wire_u64(),
            ctx: 0,
            body,
        }
    }

    pub fn hash(&mut self) -> Hash {
        match self.u8() % 5 {
            0 => Hash::Int(self.u64() as i32),
            1 => Hash::I8(self.u64() as i64),
            2 => Hash::Bytes(self.bytes(40).into_boxed_slice()),
            3 => Hash::text(crate::node::command::sha256_hex(&{
                let mut d = [0; 32];
                for x in &mut d {
                    *x = self.u8();
                }
                d
            })),
            _ => Hash::text(self.string(20)),
        }
    }

    pub fn command(&mut self) -> Command {
        Command::UpdateFile {
            filename: self.string(24),
            version: self.u64() as i64,
            hashlist: (0..self.u8() % 5).map(|_| self.hash()).collect(),
        }
    }

    pub fn record(&mut self) -> Record {
        match self.u8() % 3 {
            0 => Record::HardState(HardState {
                term: self.u64(),
                vote: if self.bool() {
                    Some(self.u64() >> 1)
                } else {
                    None
                },
                commit: self.u64(),
            }),
            1 => {
                let mut e = self.entry();
                if self.bool() {
                    e.data = self.command().encode();
                }
                Record::Entry(e)
            }
            _ => Record::Marker(Marker {
                index: self.u64(),
                term: self.u64(),
                base: self.bool(),
            }),
        }
    }
}
