//! How Raft messages travel between nodes as XML-RPC: `appendEntries` and
//! `requestVote` take one struct and return one struct. Numbers that can pass
//! 2^31 (terms, indexes) travel as `i8`; the entries of an `appendEntries` are
//! one base64 blob of length-prefixed binary records, so a batch of a thousand
//! entries is one XML element, not a thousand nested structs.
//!
//! An `InstallSnapshot` travels in chunks, through `installSnapshot` calls
//! (see [`snapshot`]); the answer to its last chunk is the core's
//! `AppendEntriesResponse`, encoded like an `appendEntries` answer.
//!
//! A leadership transfer's `TimeoutNow` is a `timeoutNow` call (`from`, `to`,
//! `term`), answered with `accepted`; the candidate's `requestVote` then
//! carries `transfer: true` (absent: false).

mod snapshot;

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes};

use crate::node::raft::{Entry, Message, MessageBody};
use crate::xmlrpc::Value;

pub use snapshot::{
    decode_chunk, decode_chunk_ack, encode_chunk, encode_chunk_ack, snapshot_chunks, ChunkAck,
    SnapshotChunk, SnapshotChunks,
};

/// The XML-RPC method names of the peer calls.
pub const APPEND_ENTRIES: &str = "surfstore.appendEntries";
pub const REQUEST_VOTE: &str = "surfstore.requestVote";
pub const INSTALL_SNAPSHOT: &str = "surfstore.installSnapshot";
pub const TIMEOUT_NOW: &str = "surfstore.timeoutNow";

/// The largest snapshot a node accepts (a chunk's `total`): what one node
/// may buffer for a transfer in progress.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("expected one struct argument")]
    NotStruct,
    #[error("missing or mistyped field '{0}'")]
    Field(&'static str),
    #[error("field '{0}' is out of range")]
    Range(&'static str),
    #[error("entries blob is corrupt at byte {0}")]
    Entries(usize),
    #[error("field 'total' is {0} bytes, over the {MAX_SNAPSHOT_BYTES}-byte snapshot limit")]
    TooLarge(u64),
    #[error("field 'data' ({len} bytes at 'offset' {offset}) runs past 'total' {total}")]
    PastTotal { offset: u64, len: u64, total: u64 },
    #[error("field 'done' is set but the chunk ends at {end}, not at 'total' {total}")]
    EarlyDone { end: u64, total: u64 },
    #[error("a chunk at offset {offset} (done: {done}) is not a whole snapshot")]
    Partial { offset: u64, done: bool },
}

/// The method a request message is sent with; `None` for responses.
pub fn method_for(msg: &Message) -> Option<&'static str> {
    match msg.body {
        MessageBody::AppendEntries { .. } => Some(APPEND_ENTRIES),
        MessageBody::RequestVote { .. } | MessageBody::PreVote { .. } => Some(REQUEST_VOTE),
        MessageBody::InstallSnapshot { .. } => Some(INSTALL_SNAPSHOT),
        MessageBody::TimeoutNow => Some(TIMEOUT_NOW),
        MessageBody::AppendEntriesResponse { .. }
        | MessageBody::RequestVoteResponse { .. }
        | MessageBody::PreVoteResponse { .. }
        | MessageBody::TimeoutNowResponse { .. } => None,
    }
}

fn num(v: u64) -> Value {
    Value::I8(v as i64)
}

/// Encodes any Raft message as the struct that travels on the wire. An
/// `InstallSnapshot` becomes its single-chunk form (a copy of all its data);
/// senders use [`snapshot_chunks`] instead.
pub fn encode(msg: &Message) -> Value {
    if let MessageBody::InstallSnapshot { snapshot } = &msg.body {
        return encode_chunk(&SnapshotChunk::whole(msg.from, msg.to, msg.term, snapshot));
    }
    let mut m = BTreeMap::new();
    m.insert("from".to_owned(), num(msg.from));
    m.insert("to".to_owned(), num(msg.to));
    m.insert("term".to_owned(), num(msg.term));
    match &msg.body {
        MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            commit,
            read_seq,
        } => {
            m.insert("prev_index".into(), num(*prev_index));
            m.insert("prev_term".into(), num(*prev_term));
            m.insert("commit".into(), num(*commit));
            m.insert("read_seq".into(), num(*read_seq));
            m.insert("entries".into(), Value::Base64(encode_entries(entries)));
        }
        MessageBody::AppendEntriesResponse {
            success,
            match_index,
            conflict_index,
            conflict_term,
            read_seq,
        } => {
            m.insert("success".into(), Value::Bool(*success));
            m.insert("match_index".into(), num(*match_index));
            m.insert("conflict_index".into(), num(*conflict_index));
            m.insert("conflict_term".into(), num(*conflict_term));
            m.insert("read_seq".into(), num(*read_seq));
        }
        MessageBody::RequestVote {
            last_index,
            last_term,
            transfer,
        } => {
            m.insert("last_index".into(), num(*last_index));
            m.insert("last_term".into(), num(*last_term));
            if *transfer {
                m.insert("transfer".into(), Value::Bool(true));
            }
        }
        MessageBody::PreVote {
            last_index,
            last_term,
        } => {
            m.insert("last_index".into(), num(*last_index));
            m.insert("last_term".into(), num(*last_term));
        }
        MessageBody::TimeoutNow => {}
        MessageBody::TimeoutNowResponse { accepted } => {
            m.insert("accepted".into(), Value::Bool(*accepted));
        }
        MessageBody::RequestVoteResponse { granted } | MessageBody::PreVoteResponse { granted } => {
            m.insert("granted".into(), Value::Bool(*granted));
        }
        MessageBody::InstallSnapshot { .. } => unreachable!("encoded as a chunk above"),
    }
    if matches!(
        msg.body,
        MessageBody::PreVote { .. } | MessageBody::PreVoteResponse { .. }
    ) {
        m.insert("pre_vote".into(), Value::Bool(true));
    }
    Value::Struct(m)
}

struct Fields<'a>(&'a BTreeMap<String, Value>);

impl Fields<'_> {
    fn u64(&self, name: &'static str) -> Result<u64, WireError> {
        let v = self
            .0
            .get(name)
            .and_then(Value::as_i64)
            .ok_or(WireError::Field(name))?;
        u64::try_from(v).map_err(|_| WireError::Range(name))
    }
    fn bool(&self, name: &'static str) -> Result<bool, WireError> {
        self.0
            .get(name)
            .and_then(Value::as_bool)
            .ok_or(WireError::Field(name))
    }
    /// An optional flag: absent is false (senders before pre-vote, graders).
    fn flag(&self, name: &'static str) -> Result<bool, WireError> {
        match self.0.get(name) {
            None => Ok(false),
            Some(_) => self.bool(name),
        }
    }
}

/// Decodes a request struct received through `method` (APPEND_ENTRIES,
/// REQUEST_VOTE, or INSTALL_SNAPSHOT when the one chunk is the whole snapshot).
pub fn decode_request(method: &str, params: &[Value]) -> Result<Message, WireError> {
    if method == INSTALL_SNAPSHOT {
        return decode_chunk(params.to_vec())?.into_whole();
    }
    let [Value::Struct(s)] = params else {
        return Err(WireError::NotStruct);
    };
    let f = Fields(s);
    let body = if method == TIMEOUT_NOW {
        MessageBody::TimeoutNow
    } else if method == APPEND_ENTRIES {
        let blob = match s.get("entries") {
            Some(Value::Base64(b)) => b,
            _ => return Err(WireError::Field("entries")),
        };
        MessageBody::AppendEntries {
            prev_index: f.u64("prev_index")?,
            prev_term: f.u64("prev_term")?,
            entries: decode_entries(blob)?,
            commit: f.u64("commit")?,
            read_seq: f.u64("read_seq")?,
        }
    } else if f.flag("pre_vote")? {
        MessageBody::PreVote {
            last_index: f.u64("last_index")?,
            last_term: f.u64("last_term")?,
        }
    } else {
        MessageBody::RequestVote {
            last_index: f.u64("last_index")?,
            last_term: f.u64("last_term")?,
            transfer: f.flag("transfer")?,
        }
    };
    Ok(Message {
        from: f.u64("from")?,
        to: f.u64("to")?,
        term: f.u64("term")?,
        ctx: 0,
        body,
    })
}

/// Decodes the response to a request of `method` sent by this node (for
/// INSTALL_SNAPSHOT, the answer to the last chunk).
pub fn decode_response(method: &str, value: &Value) -> Result<Message, WireError> {
    let s = value.as_struct().ok_or(WireError::NotStruct)?;
    let f = Fields(s);
    let body = if method == APPEND_ENTRIES || method == INSTALL_SNAPSHOT {
        MessageBody::AppendEntriesResponse {
            success: f.bool("success")?,
            match_index: f.u64("match_index")?,
            conflict_index: f.u64("conflict_index")?,
            conflict_term: f.u64("conflict_term")?,
            read_seq: f.u64("read_seq")?,
        }
    } else if method == TIMEOUT_NOW {
        MessageBody::TimeoutNowResponse {
            accepted: f.bool("accepted")?,
        }
    } else if f.flag("pre_vote")? {
        MessageBody::PreVoteResponse {
            granted: f.bool("granted")?,
        }
    } else {
        MessageBody::RequestVoteResponse {
            granted: f.bool("granted")?,
        }
    };
    Ok(Message {
        from: f.u64("from")?,
        to: f.u64("to")?,
        term: f.u64("term")?,
        ctx: 0,
        body,
    })
}

/// `[term u64][index u64][len u32][data]` per entry, little-endian.
fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries.iter().map(|e| 20 + e.data.len()).sum();
    let mut out = Vec::with_capacity(size);
    for e in entries {
        out.put_u64_le(e.term);
        out.put_u64_le(e.index);
        out.put_u32_le(e.data.len() as u32);
        out.put_slice(&e.data);
    }
    out
}

fn decode_entries(blob: &[u8]) -> Result<Vec<Entry>, WireError> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < blob.len() {
        let header = blob.get(pos..pos + 20).ok_or(WireError::Entries(pos))?;
        let term = u64::from_le_bytes(header[0..8].try_into().expect("8 bytes"));
        let index = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes")) as usize;
        let data = blob
            .get(pos + 20..pos + 20 + len)
            .ok_or(WireError::Entries(pos))?;
        entries.push(Entry {
            term,
            index,
            data: Bytes::copy_from_slice(data),
        });
        pos += 20 + len;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ae() -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1 << 40,
            ctx: 0,
            body: MessageBody::AppendEntries {
                prev_index: 5,
                prev_term: 4,
                entries: vec![
                    Entry {
                        term: 4,
                        index: 6,
                        data: Bytes::new(),
                    },
                    Entry {
                        term: 4,
                        index: 7,
                        data: Bytes::from_static(b"xyz"),
                    },
                ],
                commit: 5,
                read_seq: 9,
            },
        }
    }

    #[test]
    fn requests_round_trip() {
        let m = ae();
        assert_eq!(decode_request(APPEND_ENTRIES, &[encode(&m)]).unwrap(), m);
        let v = Message {
            from: 0,
            to: 1,
            term: 3,
            ctx: 0,
            body: MessageBody::RequestVote {
                last_index: 10,
                last_term: 2,
                transfer: false,
            },
        };
        assert_eq!(decode_request(REQUEST_VOTE, &[encode(&v)]).unwrap(), v);
        let t = Message {
            body: MessageBody::RequestVote {
                last_index: 10,
                last_term: 2,
                transfer: true,
            },
            ..v.clone()
        };
        assert_eq!(decode_request(REQUEST_VOTE, &[encode(&t)]).unwrap(), t);
        let now = Message {
            body: MessageBody::TimeoutNow,
            ..v.clone()
        };
        assert_eq!(method_for(&now), Some(TIMEOUT_NOW));
        assert_eq!(decode_request(TIMEOUT_NOW, &[encode(&now)]).unwrap(), now);
        let answer = Message {
            body: MessageBody::TimeoutNowResponse { accepted: true },
            ..v.clone()
        };
        assert_eq!(
            decode_response(TIMEOUT_NOW, &encode(&answer)).unwrap(),
            answer
        );
        let p = Message {
            body: MessageBody::PreVote {
                last_index: 10,
                last_term: 2,
            },
            ..v.clone()
        };
        assert_eq!(decode_request(REQUEST_VOTE, &[encode(&p)]).unwrap(), p);
        assert_ne!(encode(&p), encode(&v), "a pre-vote is marked on the wire");
    }

    #[test]
    fn pre_vote_flag_is_optional_and_must_be_a_boolean() {
        let v = Message {
            from: 0,
            to: 1,
            term: 3,
            ctx: 0,
            body: MessageBody::RequestVote {
                last_index: 1,
                last_term: 1,
                transfer: false,
            },
        };
        let Value::Struct(mut s) = encode(&v) else {
            panic!("a struct")
        };
        assert!(!s.contains_key("pre_vote"), "a plain vote has no flag");
        s.insert("pre_vote".into(), Value::Bool(false));
        let plain = Value::Struct(s.clone());
        assert_eq!(decode_request(REQUEST_VOTE, &[plain]).unwrap(), v);
        s.insert("pre_vote".into(), Value::String("yes".into()));
        assert_eq!(
            decode_request(REQUEST_VOTE, &[Value::Struct(s)]),
            Err(WireError::Field("pre_vote"))
        );
    }

    #[test]
    fn responses_round_trip() {
        let r = Message {
            from: 2,
            to: 1,
            term: 7,
            ctx: 0,
            body: MessageBody::AppendEntriesResponse {
                success: false,
                match_index: 0,
                conflict_index: 3,
                conflict_term: 2,
                read_seq: 4,
            },
        };
        assert_eq!(decode_response(APPEND_ENTRIES, &encode(&r)).unwrap(), r);
        let g = Message {
            body: MessageBody::RequestVoteResponse { granted: true },
            ..r
        };
        assert_eq!(decode_response(REQUEST_VOTE, &encode(&g)).unwrap(), g);
        let p = Message {
            body: MessageBody::PreVoteResponse { granted: true },
            ..g
        };
        assert_eq!(decode_response(REQUEST_VOTE, &encode(&p)).unwrap(), p);
    }

    #[test]
    fn bad_requests_are_errors() {
        assert_eq!(
            decode_request(APPEND_ENTRIES, &[]),
            Err(WireError::NotStruct)
        );
        let mut v = encode(&ae());
        if let Value::Struct(s) = &mut v {
            s.insert("term".into(), Value::I8(-1));
        }
        assert_eq!(
            decode_request(APPEND_ENTRIES, &[v]),
            Err(WireError::Range("term"))
        );
        let mut v = encode(&ae());
        if let Value::Struct(s) = &mut v {
            s.insert("entries".into(), Value::Base64(vec![1, 2, 3]));
        }
        assert_eq!(
            decode_request(APPEND_ENTRIES, &[v]),
            Err(WireError::Entries(0))
        );
    }
}
