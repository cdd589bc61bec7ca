//! Fuzzing entry points: one function per decoder the network or the disk
//! feeds, each taking raw bytes. Each runs its decoder on the bytes as they
//! are, then builds a structured value from the same bytes ([`gen::Gen`]) and
//! round-trips it through the matching encoder. A broken invariant panics with
//! a message naming it; that panic is what the fuzzer reports. Bad input must
//! only ever be an `Err`.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` are one call each to these
//! functions, and `tests/fuzz_regressions.rs` replays the corpora and the
//! saved crashes through the same calls on the stable toolchain.

pub mod gen;
mod http;

use bytes::Bytes;

use crate::client::index;
use crate::node::command::Command;
use crate::node::metadata::Metadata;
use crate::node::peer_wire::{self, APPEND_ENTRIES, INSTALL_SNAPSHOT, REQUEST_VOTE};
use crate::node::raft::{Message, MessageBody};
use crate::node::storage::snapshot as snapshot_file;
use crate::node::storage::wal::record;
use crate::xmlrpc::codec::{self, MethodCall};
use crate::xmlrpc::{Fault, Value};
use gen::Gen;

pub use http::http_request;

/// Equality of values where a NaN equals a NaN (the codec writes every NaN
/// as `nan`, so its sign and payload are not kept).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Struct(x), Value::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
        }
        _ => a == b,
    }
}

fn same_call(a: &MethodCall, b: &MethodCall) -> bool {
    a.method == b.method
        && a.params.len() == b.params.len()
        && a.params
            .iter()
            .zip(&b.params)
            .all(|(x, y)| same_value(x, y))
}

/// Whether a string can travel in XML text at all (XML 1.0 `Char`). The
/// decoder refuses the rest, so a value holding one cannot round-trip.
fn xml_chars(v: &Value) -> bool {
    let ok = |s: &str| {
        s.chars().all(|c| {
            matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
                || c >= '\u{10000}'
        })
    };
    match v {
        Value::String(s) | Value::DateTime(s) => ok(s),
        Value::Array(items) => items.iter().all(xml_chars),
        Value::Struct(m) => m.iter().all(|(k, v)| ok(k) && xml_chars(v)),
        _ => true,
    }
}

/// The XML-RPC codec: `parse_call` and `parse_response` on the bytes; what
/// they accept is encoded and must parse back to the same call, value or
/// fault. Then a generated value round-trips as a call, a response and a
/// fault.
pub fn xmlrpc(data: &[u8]) {
    if let Ok(call) = codec::parse_call(data) {
        let mut out = Vec::new();
        codec::encode_call(&call.method, &call.params, &mut out);
        let back = codec::parse_call(&out).expect("an encoded call parses");
        assert!(
            same_call(&call, &back),
            "call round-trip: {call:?} vs {back:?}"
        );
    }
    match codec::parse_response(data) {
        Ok(Ok(value)) => {
            let mut out = Vec::new();
            codec::encode_response(&value, &mut out);
            let back = codec::parse_response(&out).expect("an encoded response parses");
            assert!(
                matches!(&back, Ok(v) if same_value(v, &value)),
                "response round-trip: {value:?} vs {back:?}"
            );
        }
        Ok(Err(fault)) => {
            let mut out = Vec::new();
            codec::encode_fault(&fault, &mut out);
            let back = codec::parse_response(&out).expect("an encoded fault parses");
            assert_eq!(back, Err(fault), "fault round-trip");
        }
        Err(_) => {}
    }

    let mut g = Gen::new(data);
    let value = g.value(4);
    if !xml_chars(&value) {
        return;
    }
    let method = format!(
        "m{}",
        g.string(10).replace(|c: char| c.is_whitespace(), "_")
    );
    let call = MethodCall {
        method,
        params: vec![value.clone()],
    };
    let mut out = Vec::new();
    codec::encode_call(&call.method, &call.params, &mut out);
    let back = codec::parse_call(&out).unwrap_or_else(|e| panic!("encoded {call:?}: {e}"));
    assert!(
        same_call(&call, &back),
        "call round-trip: {call:?} vs {back:?}"
    );
    out.clear();
    codec::encode_response(&value, &mut out);
    let back = codec::parse_response(&out).unwrap_or_else(|e| panic!("encoded {value:?}: {e}"));
    assert!(
        matches!(&back, Ok(v) if same_value(v, &value)),
        "response round-trip: {value:?} vs {back:?}"
    );
    if let Value::String(message) = value {
        let fault = Fault::new(g.u64() as i32, message);
        out.clear();
        codec::encode_fault(&fault, &mut out);
        assert_eq!(
            codec::parse_response(&out),
            Ok(Err(fault)),
            "fault round-trip"
        );
    }
}

const PEER_METHODS: [&str; 3] = [APPEND_ENTRIES, REQUEST_VOTE, INSTALL_SNAPSHOT];

/// A decoded message, re-encoded, must decode to itself.
fn message_round_trip(msg: &Message, as_request: bool) {
    let wire = peer_wire::encode(msg);
    let back = match peer_wire::method_for(msg) {
        Some(method) => {
            assert!(as_request, "a request decoded from a response: {msg:?}");
            peer_wire::decode_request(method, std::slice::from_ref(&wire))
        }
        None => {
            let method = match msg.body {
                MessageBody::AppendEntriesResponse { .. } => APPEND_ENTRIES,
                _ => REQUEST_VOTE,
            };
            peer_wire::decode_response(method, &wire)
        }
    };
    assert_eq!(back.as_ref(), Ok(msg), "peer-wire round-trip of {wire:?}");
}

/// Every peer-wire decoder on params (requests, snapshot chunks) and on a
/// value (responses, chunk acks), whatever method the bytes name.
fn peer_wire_values(params: &[Value]) {
    for method in PEER_METHODS {
        if let Ok(msg) = peer_wire::decode_request(method, params) {
            message_round_trip(&msg, true);
        }
    }
    if let Ok(chunk) = peer_wire::decode_chunk(params.to_vec()) {
        let back = peer_wire::decode_chunk(vec![peer_wire::encode_chunk(&chunk)]);
        assert_eq!(back.as_ref(), Ok(&chunk), "chunk round-trip");
        assert!(chunk.end() <= chunk.total, "a chunk ends within its total");
    }
    for value in params {
        for method in PEER_METHODS {
            if let Ok(msg) = peer_wire::decode_response(method, value) {
                message_round_trip(&msg, false);
            }
        }
        if let Ok(ack) = peer_wire::decode_chunk_ack(value) {
            let back = peer_wire::decode_chunk_ack(&peer_wire::encode_chunk_ack(&ack));
            assert_eq!(back, Ok(ack), "chunk ack round-trip");
        }
    }
}

/// The peer-wire decoders: on the params of a call the bytes parse as, on
/// the value of a response, on a struct generated with the wire's field
/// names, and a generated message round-trips.
pub fn peer_wire(data: &[u8]) {
    if let Ok(call) = codec::parse_call(data) {
        peer_wire_values(&call.params);
    }
    if let Ok(Ok(value)) = codec::parse_response(data) {
        peer_wire_values(&[value]);
    }
    let mut g = Gen::new(data);
    let msg = g.message();
    message_round_trip(&msg, peer_wire::method_for(&msg).is_some());
    // A struct of the wire's own field names with values of any type.
    const FIELDS: [&str; 24] = [
        "from",
        "to",
        "term",
        "prev_index",
        "prev_term",
        "entries",
        "commit",
        "read_seq",
        "last_index",
        "last_term",
        "pre_vote",
        "success",
        "match_index",
        "conflict_index",
        "conflict_term",
        "granted",
        "index",
        "snap_term",
        "offset",
        "total",
        "data",
        "done",
        "received",
        "entries",
    ];
    let mut s = match peer_wire::encode(&g.message()) {
        Value::Struct(s) => s,
        other => panic!("a message encodes as a struct, not {other:?}"),
    };
    for _ in 0..g.u8() % 6 {
        let name = FIELDS[g.u8() as usize % FIELDS.len()];
        let v = match g.u8() % 4 {
            0 => Value::I8(g.u64() as i64),
            1 => Value::Base64(g.bytes(80)),
            2 => Value::Bool(g.bool()),
            _ => g.value(1),
        };
        s.insert(name.to_owned(), v);
    }
    peer_wire_values(&[Value::Struct(s)]);
}

/// The WAL segment reader: `record::scan` on the bytes (its records
/// re-encode to exactly the good prefix), the commands in its entries, and
/// recovery (`DiskStore::open`) of a data directory whose segment holds the
/// bytes. A generated record sequence scans back to itself.
pub fn wal_segment(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(scan) = record::scan(&bytes) {
        assert!(scan.valid_len <= data.len(), "valid_len within the data");
        assert_eq!(
            scan.records.len(),
            scan.offsets.len(),
            "one offset per record"
        );
        let mut out = Vec::new();
        for (r, &at) in scan.records.iter().zip(&scan.offsets) {
            assert_eq!(at, out.len(), "records are contiguous");
            record::encode(&mut out, r);
            if let record::Record::Entry(e) = r {
                command_round_trip(&e.data);
            }
        }
        assert_eq!(
            out,
            data[..scan.valid_len],
            "records re-encode to the good prefix"
        );
        if let Some(t) = &scan.torn {
            assert_eq!(
                t.offset, scan.valid_len,
                "the torn tail starts after the good part"
            );
        }
    }
    wal_recover(data);

    let mut g = Gen::new(data);
    let records: Vec<_> = (0..g.u8() % 8).map(|_| g.record()).collect();
    let mut out = Vec::new();
    for r in &records {
        record::encode(&mut out, r);
    }
    let scan = record::scan(&Bytes::from(out.clone())).expect("encoded records scan");
    assert_eq!(scan.records, records, "record round-trip");
    assert_eq!(
        (scan.valid_len, scan.torn),
        (out.len(), None),
        "whole records, no tail"
    );
}

fn command_round_trip(data: &[u8]) {
    if let Ok(cmd) = Command::decode(data) {
        assert_eq!(
            Command::decode(&cmd.encode()),
            Ok(cmd),
            "command round-trip"
        );
    }
}

/// Opens a fresh store on a simulated disk, replaces its segment with
/// `data`, and reopens: the result is a store or an error, and a store
/// hands out what its files hold.
fn wal_recover(data: &[u8]) {
    use crate::node::storage::wal::segment;
    use crate::node::storage::{ClusterMeta, DiskOptions, DiskStore, SimFs};
    use std::path::Path;
    use std::sync::Arc;

    let fs = SimFs::new();
    let dir = Path::new("/d");
    let meta = ClusterMeta {
        id: 0,
        members: vec!["localhost:1".into(), "localhost:2".into()],
    };
    let opts = DiskOptions::default();
    let (store, _) =
        DiskStore::open_in(Arc::new(fs.clone()), dir, &meta, opts.clone()).expect("fresh open");
    drop(store);
    let listing = segment::list(&fs, &dir.join("wal")).expect("list segments");
    let (_, path) = listing
        .segments
        .last()
        .expect("a fresh store has a segment");
    fs.overwrite(path, data);
    if let Ok((store, rec)) = DiskStore::open_in(Arc::new(fs.clone()), dir, &meta, opts) {
        let held = store.read_back().expect("read back a recovered store");
        assert_eq!(
            held, rec.loaded,
            "what open hands out is what the files hold"
        );
        let first = rec.loaded.snapshot.index + 1;
        for (i, e) in rec.loaded.entries.iter().enumerate() {
            assert_eq!(
                e.index,
                first + i as u64,
                "recovered entries are contiguous"
            );
        }
    }
}

/// The metadata map as a sorted list, for comparing two maps.
fn files(m: &Metadata) -> Vec<(String, crate::node::metadata::FileInfo)> {
    let mut v: Vec<_> = m
        .view()
        .files()
        .map(|(k, f)| (k.clone(), f.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn map_round_trip(m: &Metadata) {
    let bytes = m.encode_snapshot();
    let back = Metadata::from_snapshot(m.applied_index(), &bytes)
        .unwrap_or_else(|e| panic!("an encoded map decodes: {e}"));
    assert_eq!(files(&back), files(m), "metadata snapshot round-trip");
    assert_eq!(
        back.encode_snapshot(),
        bytes,
        "encoding a map is deterministic"
    );
}

/// The snapshot decoders: the snapshot file (`storage::snapshot::decode`,
/// which must re-encode to the same bytes) and the metadata map inside it
/// (`Metadata::from_snapshot`, on the file's data and on the raw bytes).
/// A map built from generated commands round-trips.
pub fn snapshot(data: &[u8]) {
    if let Ok(snap) = snapshot_file::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(
            snapshot_file::encode(&snap),
            data,
            "snapshot file round-trip"
        );
        if let Ok(m) = Metadata::from_snapshot(snap.index, &snap.data) {
            map_round_trip(&m);
        }
    }
    if let Ok(m) = Metadata::from_snapshot(7, data) {
        map_round_trip(&m);
    }

    let mut g = Gen::new(data);
    let mut m = Metadata::new();
    for i in 1..=u64::from(g.u8() % 16) {
        let mut cmd = g.command();
        // Mostly valid versions, so files get created and updated.
        let Command::UpdateFile {
            filename, version, ..
        } = &mut cmd;
        if g.bool() {
            *version = m.version(filename) + 1;
        }
        m.apply(i, &cmd);
    }
    map_round_trip(&m);
    let snap = crate::node::raft::Snapshot {
        index: m.applied_index(),
        term: g.u64(),
        data: m.encode_snapshot(),
    };
    let file = snapshot_file::encode(&snap);
    assert_eq!(
        snapshot_file::decode(Bytes::from(file)),
        Ok(snap),
        "snapshot file round-trip"
    );
}

/// `index.txt` parsing: what parses renders back to text that parses to
/// the same index; a generated index round-trips.
pub fn index_txt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(idx) = index::parse(&text) {
        let rendered = index::render(&idx);
        assert_eq!(
            index::parse(&rendered).as_ref(),
            Ok(&idx),
            "index round-trip"
        );
    }

    let mut g = Gen::new(data);
    let mut idx = index::Index::new();
    for _ in 0..g.u8() % 8 {
        let name = g.string(16);
        if name.is_empty() {
            continue;
        }
        let hashes = if g.u8().is_multiple_of(4) {
            vec!["0".to_owned()]
        } else {
            (0..g.u8() % 4)
                .map(|_| {
                    let mut d = [0; 32];
                    for x in &mut d {
                        *x = g.u8();
                    }
                    crate::node::command::sha256_hex(&d)
                })
                .collect()
        };
        let version = (g.u64() >> 1).max(1) as i64;
        idx.insert(name, index::IndexEntry { version, hashes });
    }
    let rendered = index::render(&idx);
    assert_eq!(
        index::parse(&rendered),
        Ok(idx),
        "generated index round-trip"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_takes_empty_and_junk_input() {
        for data in [&b""[..], b"\0", b"<methodCall>", &[0xff; 64]] {
            xmlrpc(data);
            peer_wire(data);
            wal_segment(data);
            snapshot(data);
            index_txt(data);
            http_request(data);
        }
    }

    #[test]
    fn nan_equals_nan_only_for_doubles() {
        assert!(same_value(
            &Value::Double(f64::NAN),
            &Value::Double(-f64::NAN)
        ));
        assert!(!same_value(&Value::Double(1.0), &Value::Double(2.0)));
        assert!(!same_value(&Value::Int(1), &Value::I8(1)));
    }
}
