//! `InstallSnapshot` on the wire: a snapshot travels as `installSnapshot`
//! calls of one [`SnapshotChunk`] each, sent in offset order, so no call body
//! comes near the server's size limit and no chunk copies more than its own
//! bytes. A call that is not the last is answered with a [`ChunkAck`]; the
//! last (`done`) with the core's `AppendEntriesResponse`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{num, Fields, WireError, MAX_SNAPSHOT_BYTES};
use crate::node::raft::{LogIndex, Message, MessageBody, NodeId, Snapshot, Term};
use crate::xmlrpc::Value;

/// One `installSnapshot` call: bytes `offset..offset + data.len()` of a
/// snapshot of `total` bytes. Invariants (kept by [`snapshot_chunks`], checked
/// by [`decode_chunk`]): `offset + data.len() <= total <= MAX_SNAPSHOT_BYTES`,
/// and `done` only on a chunk that ends at `total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's current term (the message's), not the snapshot's.
    pub term: Term,
    /// The snapshot's last included index, and that entry's term.
    pub index: LogIndex,
    pub snap_term: Term,
    pub offset: u64,
    pub total: u64,
    pub data: Bytes,
    pub done: bool,
}

impl SnapshotChunk {
    pub(super) fn whole(from: NodeId, to: NodeId, term: Term, snapshot: &Snapshot) -> Self {
        SnapshotChunk {
            from,
            to,
            term,
            index: snapshot.index,
            snap_term: snapshot.term,
            offset: 0,
            total: snapshot.data.len() as u64,
            data: snapshot.data.clone(),
            done: true,
        }
    }

    /// Where the next chunk starts.
    pub fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }

    /// The message this chunk's transfer delivers, once `data` holds all of it.
    pub fn into_message(self, data: Bytes) -> Message {
        Message {
            from: self.from,
            to: self.to,
            term: self.term,
            ctx: 0,
            body: MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    index: self.index,
                    term: self.snap_term,
                    data,
                },
            },
        }
    }

    pub(super) fn into_whole(mut self) -> Result<Message, WireError> {
        if self.offset != 0 || !self.done {
            return Err(WireError::Partial {
                offset: self.offset,
                done: self.done,
            });
        }
        let data = std::mem::take(&mut self.data);
        Ok(self.into_message(data))
    }
}

/// The chunks of an `InstallSnapshot` message, in order, `chunk_bytes` of data
/// each (at least one chunk, even for empty data). Each chunk's data is a
/// slice of the message's `Bytes`, not a copy. `None` for other messages.
pub fn snapshot_chunks(msg: &Message, chunk_bytes: usize) -> Option<SnapshotChunks> {
    let MessageBody::InstallSnapshot { snapshot } = &msg.body else {
        return None;
    };
    Some(SnapshotChunks {
        next: Some(SnapshotChunk {
            offset: 0,
            data: Bytes::new(),
            done: false,
            ..SnapshotChunk::whole(msg.from, msg.to, msg.term, snapshot)
        }),
        data: snapshot.data.clone(),
        chunk_bytes: chunk_bytes.max(1),
    })
}

/// See [`snapshot_chunks`].
#[derive(Debug)]
pub struct SnapshotChunks {
    /// The header of the next chunk (its `offset` set); `None` once done.
    next: Option<SnapshotChunk>,
    data: Bytes,
    chunk_bytes: usize,
}

impl Iterator for SnapshotChunks {
    type Item = SnapshotChunk;

    fn next(&mut self) -> Option<SnapshotChunk> {
        let mut chunk = self.next.take()?;
        let start = chunk.offset as usize;
        let end = start.saturating_add(self.chunk_bytes).min(self.data.len());
        chunk.data = self.data.slice(start..end);
        chunk.done = end == self.data.len();
        if !chunk.done {
            self.next = Some(SnapshotChunk {
                offset: end as u64,
                data: Bytes::new(),
                ..chunk.clone()
            });
        }
        Some(chunk)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.next.as_ref().map_or(0, |c| {
            let left = self.data.len() - c.offset as usize;
            left.div_ceil(self.chunk_bytes).max(1)
        });
        (n, Some(n))
    }
}

impl ExactSizeIterator for SnapshotChunks {}

/// The struct one `installSnapshot` call carries.
pub fn encode_chunk(c: &SnapshotChunk) -> Value {
    let mut m = BTreeMap::new();
    m.insert("from".to_owned(), num(c.from));
    m.insert("to".to_owned(), num(c.to));
    m.insert("term".to_owned(), num(c.term));
    m.insert("index".to_owned(), num(c.index));
    m.insert("snap_term".to_owned(), num(c.snap_term));
    m.insert("offset".to_owned(), num(c.offset));
    m.insert("total".to_owned(), num(c.total));
    m.insert("data".to_owned(), Value::Base64(c.data.to_vec()));
    m.insert("done".to_owned(), Value::Bool(c.done));
    Value::Struct(m)
}

/// Decodes the arguments of one `installSnapshot` call and checks the
/// chunk's invariants (the data moves into the chunk, uncopied).
pub fn decode_chunk(params: Vec<Value>) -> Result<SnapshotChunk, WireError> {
    let Ok([Value::Struct(mut s)]) = <[Value; 1]>::try_from(params) else {
        return Err(WireError::NotStruct);
    };
    let data = match s.remove("data") {
        Some(Value::Base64(b)) => Bytes::from(b),
        _ => return Err(WireError::Field("data")),
    };
    let f = Fields(&s);
    let chunk = SnapshotChunk {
        from: f.u64("from")?,
        to: f.u64("to")?,
        term: f.u64("term")?,
        index: f.u64("index")?,
        snap_term: f.u64("snap_term")?,
        offset: f.u64("offset")?,
        total: f.u64("total")?,
        data,
        done: f.bool("done")?,
    };
    if chunk.index == 0 {
        return Err(WireError::Range("index"));
    }
    if chunk.total > MAX_SNAPSHOT_BYTES {
        return Err(WireError::TooLarge(chunk.total));
    }
    let len = chunk.data.len() as u64;
    match chunk.offset.checked_add(len) {
        Some(end) if end <= chunk.total => {
            if chunk.done && end != chunk.total {
                return Err(WireError::EarlyDone {
                    end,
                    total: chunk.total,
                });
            }
        }
        _ => {
            return Err(WireError::PastTotal {
                offset: chunk.offset,
                len,
                total: chunk.total,
            })
        }
    }
    Ok(chunk)
}

/// The answer to an `installSnapshot` call that was not the last: the
/// receiver holds bytes `0..received` of the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkAck {
    pub from: NodeId,
    pub to: NodeId,
    pub received: u64,
}

pub fn encode_chunk_ack(ack: &ChunkAck) -> Value {
    let mut m = BTreeMap::new();
    m.insert("from".to_owned(), num(ack.from));
    m.insert("to".to_owned(), num(ack.to));
    m.insert("received".to_owned(), num(ack.received));
    Value::Struct(m)
}

pub fn decode_chunk_ack(value: &Value) -> Result<ChunkAck, WireError> {
    let f = Fields(value.as_struct().ok_or(WireError::NotStruct)?);
    Ok(ChunkAck {
        from: f.u64("from")?,
        to: f.u64("to")?,
        received: f.u64("received")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn ae() -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1,
            ctx: 0,
            body: MessageBody::AppendEntries {
                prev_index: 0,
                prev_term: 0,
                entries: vec![],
                commit: 0,
                read_seq: 0,
            },
        }
    }

    fn snap(len: usize) -> Message {
        Message {
            from: 0,
            to: 2,
            term: 9,
            ctx: 0,
            body: MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    index: 1 << 35,
                    term: 8,
                    data: (0..len).map(|i| (i * 7 % 251) as u8).collect(),
                },
            },
        }
    }

    /// Sends every chunk through the wire and joins them back.
    fn rebuild(msg: &Message, chunk_bytes: usize) -> (Message, usize) {
        let mut data = Vec::new();
        let mut last = None;
        let mut calls = 0;
        for chunk in snapshot_chunks(msg, chunk_bytes).unwrap() {
            let got = decode_chunk(vec![encode_chunk(&chunk)]).unwrap();
            assert_eq!(got, chunk);
            assert_eq!(got.offset, data.len() as u64);
            assert!(last.is_none(), "a chunk after the done one");
            data.extend_from_slice(&got.data);
            calls += 1;
            if got.done {
                last = Some(got);
            }
        }
        (last.unwrap().into_message(data.into()), calls)
    }

    #[test]
    fn method_for_install_snapshot() {
        assert_eq!(method_for(&snap(3)), Some(INSTALL_SNAPSHOT));
    }

    #[test]
    fn a_snapshot_in_many_chunks_is_rebuilt_exactly() {
        let m = snap(10_000);
        let it = snapshot_chunks(&m, 1024).unwrap();
        assert_eq!(it.len(), 10);
        let (back, calls) = rebuild(&m, 1024);
        assert_eq!((back, calls), (m.clone(), 10));
        // An exact multiple of the chunk size still ends with a done chunk.
        let (back, calls) = rebuild(&m, 1000);
        assert_eq!((back, calls), (m.clone(), 10));
        let (back, calls) = rebuild(&m, 1 << 20);
        assert_eq!((back, calls), (m, 1));
    }

    #[test]
    fn chunks_share_the_snapshot_bytes() {
        let m = snap(4096);
        let MessageBody::InstallSnapshot { snapshot } = &m.body else {
            unreachable!()
        };
        for c in snapshot_chunks(&m, 1000).unwrap() {
            let at = c.offset as usize;
            assert_eq!(
                c.data.as_ptr(),
                snapshot.data[at..].as_ptr(),
                "chunk at {at} is a copy"
            );
        }
    }

    #[test]
    fn an_empty_snapshot_is_one_done_chunk() {
        let m = snap(0);
        let chunks: Vec<_> = snapshot_chunks(&m, 1024).unwrap().collect();
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].done && chunks[0].total == 0 && chunks[0].data.is_empty());
        assert_eq!(rebuild(&m, 1024), (m.clone(), 1));
        assert_eq!(decode_request(INSTALL_SNAPSHOT, &[encode(&m)]).unwrap(), m);
        assert!(snapshot_chunks(&ae(), 1024).is_none());
    }

    #[test]
    fn only_a_whole_chunk_decodes_as_a_request() {
        let m = snap(100);
        assert_eq!(decode_request(INSTALL_SNAPSHOT, &[encode(&m)]).unwrap(), m);
        let first = snapshot_chunks(&m, 60).unwrap().next().unwrap();
        assert_eq!(
            decode_request(INSTALL_SNAPSHOT, &[encode_chunk(&first)]),
            Err(WireError::Partial {
                offset: 0,
                done: false
            })
        );
    }

    #[test]
    fn the_last_chunk_is_answered_like_append_entries() {
        let r = Message {
            from: 2,
            to: 0,
            term: 9,
            ctx: 0,
            body: MessageBody::AppendEntriesResponse {
                success: true,
                match_index: 1 << 35,
                conflict_index: 0,
                conflict_term: 0,
                read_seq: 0,
            },
        };
        assert_eq!(decode_response(INSTALL_SNAPSHOT, &encode(&r)).unwrap(), r);
        let ack = ChunkAck {
            from: 2,
            to: 0,
            received: 1 << 20,
        };
        assert_eq!(decode_chunk_ack(&encode_chunk_ack(&ack)).unwrap(), ack);
        assert_eq!(
            decode_chunk_ack(&Value::Bool(true)),
            Err(WireError::NotStruct)
        );
    }

    fn with(field: &str, v: Value) -> Vec<Value> {
        let first = snapshot_chunks(&snap(100), 60).unwrap().next().unwrap();
        let mut c = encode_chunk(&first);
        if let Value::Struct(s) = &mut c {
            s.insert(field.into(), v);
        }
        vec![c]
    }

    #[test]
    fn bad_chunks_are_errors_naming_the_field() {
        assert_eq!(decode_chunk(vec![]), Err(WireError::NotStruct));
        assert_eq!(
            decode_chunk(vec![Value::Int(1), Value::Int(2)]),
            Err(WireError::NotStruct)
        );
        assert_eq!(
            decode_chunk(with("data", Value::String("x".into()))),
            Err(WireError::Field("data"))
        );
        assert_eq!(
            decode_chunk(with("offset", Value::I8(-1))),
            Err(WireError::Range("offset"))
        );
        assert_eq!(
            decode_chunk(with("done", Value::Int(1))),
            Err(WireError::Field("done"))
        );
        assert_eq!(
            decode_chunk(with("index", Value::I8(0))),
            Err(WireError::Range("index"))
        );
        let e = decode_chunk(with("total", Value::I8(1 << 31))).unwrap_err();
        assert_eq!(e, WireError::TooLarge(1 << 31));
        assert!(e.to_string().contains("'total'"), "{e}");
        let e = decode_chunk(with("offset", Value::I8(50))).unwrap_err();
        assert_eq!(
            e,
            WireError::PastTotal {
                offset: 50,
                len: 60,
                total: 100
            }
        );
        assert!(e.to_string().contains("'offset' 50"), "{e}");
        assert_eq!(
            decode_chunk(with("offset", Value::I8(i64::MAX))),
            Err(WireError::PastTotal {
                offset: i64::MAX as u64,
                len: 60,
                total: 100
            })
        );
        assert_eq!(
            decode_chunk(with("done", Value::Bool(true))),
            Err(WireError::EarlyDone {
                end: 60,
                total: 100
            })
        );
    }
}
