//! `getfileinfomap`'s answer, `{filename: [version, hashlist]}`, written from
//! a map view straight into the response buffer ([`encode`]): each hash from
//! its typed form (a SHA-256's hex digits from its 32 bytes), no `Value`
//! tree of the map, no per-file strings. The bytes are exactly what
//! encoding the tree ([`value`], the answer's reference form, still used
//! in-process) gives: files sorted by name, every hash with the type it came
//! with. Nothing is cached between calls, so the map costs no extra memory
//! for it and a changed file is simply written as it is now.

use crate::node::command::{Hash, TextForm};
use crate::node::metadata::{FileInfo, MapView};
use crate::xmlrpc::codec::EncodedValue;
use crate::xmlrpc::Value;

/// The answer for `view`, ready for the response.
pub fn encode(view: &MapView) -> EncodedValue {
    encode_files(&view.files_by_name())
}

/// The answer for `files` (sorted by name, no name twice). A large map is
/// written in parts on up to [`ENCODE_THREADS`] threads (the machine's
/// cores), each part in its own buffer, joined without copying: the write
/// is bound by fetching the scattered files from memory, which each core
/// does for its share.
pub fn encode_files(files: &[(&str, &FileInfo)]) -> EncodedValue {
    let threads = if files.len() >= PARALLEL_ENCODE_FILES {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, ENCODE_THREADS)
    } else {
        1
    };
    let per = files.len().div_ceil(threads).max(1);
    let mut shares = files.chunks(per);
    let first = shares.next().unwrap_or(&[]);
    let mut out = EncodedValue::with_capacity(encoded_len_estimate(first));
    out.begin_struct();
    if threads == 1 {
        write_members(&mut out, first);
    } else {
        let rest: Vec<EncodedValue> = std::thread::scope(|s| {
            let handles: Vec<_> = shares
                .map(|share| {
                    s.spawn(move || {
                        let mut part = EncodedValue::fragment(encoded_len_estimate(share));
                        write_members(&mut part, share);
                        part
                    })
                })
                .collect();
            write_members(&mut out, first);
            handles
                .into_iter()
                .map(|h| h.join().expect("an encoding thread panicked"))
                .collect()
        });
        for part in rest {
            out.append(part);
        }
    }
    out.end_struct();
    out
}

/// A map of at least this many files is written on several threads.
const PARALLEL_ENCODE_FILES: usize = 50_000;
/// At most this many threads write one answer.
const ENCODE_THREADS: usize = 4;

/// One `<member>` per file.
fn write_members(out: &mut EncodedValue, files: &[(&str, &FileInfo)]) {
    for (i, (name, info)) in files.iter().enumerate() {
        // The names and infos are scattered over the heap, in no order the
        // loop follows: ask for them ahead, the hash lists once their
        // infos have arrived.
        if let Some((name, info)) = files.get(i + PREFETCH_AHEAD) {
            prefetch(name.as_ptr());
            prefetch(*info as *const FileInfo);
        }
        if let Some((_, info)) = files.get(i + PREFETCH_AHEAD / 2) {
            prefetch(info.hashlist.as_ptr());
        }
        out.member(name);
        out.begin_array();
        match i32::try_from(info.version) {
            Ok(v) => out.int(v),
            Err(_) => out.i8(info.version),
        }
        out.begin_array();
        for h in info.hashlist.iter() {
            match h {
                Hash::Text(t) => match t.form() {
                    TextForm::Sha256(d) => out.hex_string(d),
                    TextForm::Other(s) => out.string(s),
                },
                Hash::Int(i) => out.int(*i),
                Hash::I8(i) => out.i8(*i),
                Hash::Bytes(b) => out.base64(b),
            }
        }
        out.end_array();
        out.end_array();
        out.end_member();
    }
}

/// How many files ahead of the one being written [`encode_files`] asks the
/// memory for.
const PREFETCH_AHEAD: usize = 16;

/// A hint that `p` is read soon; never faults, whatever `p` is.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault,
    // whatever the address; SSE is part of x86_64.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The answer as a `Value` tree: what [`encode`] must equal once encoded.
pub fn value(view: &MapView) -> Value {
    Value::Struct(
        view.files()
            .map(|(name, info)| {
                let hashes = info.hashlist.iter().map(super::hash_value).collect();
                (
                    name.clone(),
                    Value::Array(vec![super::int_value(info.version), Value::Array(hashes)]),
                )
            })
            .collect(),
    )
}

/// The element's length if no name or string needs escaping (escapes only
/// make it longer; the buffer then grows): one pass over the map, so the
/// buffer is allocated once, not doubled ~20 times for a large map.
fn encoded_len_estimate(files: &[(&str, &FileInfo)]) -> usize {
    /// `<member><name></name>` + two arrays + `<value><int></int></value>`
    /// + `</member>`, and room for a 20-digit version.
    const PER_FILE: usize = 21 + 2 * (20 + 23) + 26 + 9 + 20;
    /// `<value><string></string></value>`, `<value><base64></base64></value>`.
    const PER_TEXT: usize = 32;
    let hashes = |hashlist: &[Hash]| -> usize {
        hashlist
            .iter()
            .map(|h| match h {
                Hash::Text(t) => {
                    PER_TEXT
                        + match t.form() {
                            TextForm::Sha256(_) => 64,
                            TextForm::Other(s) => s.len(),
                        }
                }
                Hash::Int(_) => 26 + 11,
                Hash::I8(_) => 24 + 20,
                Hash::Bytes(b) => PER_TEXT + b.len().div_ceil(3) * 4,
            })
            .sum()
    };
    32 + files
        .iter()
        .map(|(name, info)| PER_FILE + name.len() + hashes(&info.hashlist))
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::command::{sha256_hex, Command};
    use crate::node::metadata::Metadata;
    use crate::xmlrpc::codec::{encode_response, parse_response};

    /// The body the tree encoder writes for the map (the answer before the
    /// fast path).
    fn old_body(view: &MapView) -> Vec<u8> {
        let mut out = Vec::new();
        encode_response(&value(view), &mut out);
        out
    }

    /// The fast path's body, checked against the old one byte for byte.
    fn checked_body(m: &Metadata) -> bytes::Bytes {
        let view = m.view();
        let new = encode(&view).into_response();
        let old = old_body(&view);
        assert_eq!(
            String::from_utf8_lossy(&new),
            String::from_utf8_lossy(&old),
            "fast path differs from the tree encoder"
        );
        assert_eq!(&new[..], &old[..]);
        new
    }

    fn update(m: &mut Metadata, name: &str, version: i64, hashlist: Vec<Hash>) {
        let index = m.applied_index() + 1;
        let cmd = Command::UpdateFile {
            filename: name.into(),
            version,
            hashlist,
        };
        assert!(m.apply(index, &cmd), "{name} v{version}");
    }

    /// Every hash type and form, names that need escaping or are not ASCII.
    fn every_kind() -> Metadata {
        let mut m = Metadata::new();
        let sha = sha256_hex(&[0xab; 32]);
        update(
            &mut m,
            "every",
            1,
            vec![
                Hash::text(sha.clone()),
                Hash::text(sha.to_uppercase()),
                Hash::text("abc"),
                Hash::text(""),
                Hash::text("<&>\"' \r\n\t"),
                Hash::Int(0),
                Hash::Int(i32::MIN),
                Hash::Int(i32::MAX),
                Hash::I8(5),
                Hash::I8(i64::MIN),
                Hash::I8(1 << 40),
                Hash::Bytes(vec![0, 255].into()),
                Hash::Bytes(vec![7; 32].into()),
                Hash::Bytes(Vec::new().into()),
            ],
        );
        update(&mut m, "empty list", 1, vec![]);
        update(&mut m, "gone", 1, vec![Hash::text("h")]);
        update(&mut m, "gone", 2, vec![Hash::text("0")]);
        update(&mut m, "a<&>\"'b", 1, vec![Hash::text(sha)]);
        update(&mut m, "dir/ünï 😀", 1, vec![Hash::Int(3)]);
        update(&mut m, "\r", 1, vec![Hash::I8(-1)]);
        m
    }

    #[test]
    fn the_fast_path_writes_the_tree_encoders_bytes_for_every_hash_type() {
        let m = every_kind();
        let body = checked_body(&m);
        let parsed = parse_response(&body).unwrap().unwrap();
        assert_eq!(parsed, value(&m.view()));
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("<name>a&lt;&amp;&gt;\"'b</name>"), "{text}");
        assert!(text.contains("<name>&#13;</name>"), "{text}");
        assert!(text.contains(&format!("<string>{}</string>", sha256_hex(&[0xab; 32]))));
        assert!(text.contains("<member><name>gone</name><value><array><data><value><int>2</int></value><value><array><data><value><string>0</string></value></data></array></value></data></array></value></member>"), "{text}");
    }

    #[test]
    fn an_empty_map_is_an_empty_struct() {
        let body = checked_body(&Metadata::new());
        assert!(String::from_utf8_lossy(&body)
            .contains("<param><value><struct></struct></value></param>"));
    }

    #[test]
    fn a_version_past_i32_goes_out_as_i8() {
        // Versions count up one at a time, so a large one can only come
        // from a snapshot: format 2 (no CRC), one file "f", no hashes.
        let mut snap = b"SFSM\x02".to_vec();
        snap.extend_from_slice(&1u64.to_le_bytes());
        snap.extend_from_slice(&[1, 0, 0, 0, b'f']);
        snap.extend_from_slice(&(1i64 << 33).to_le_bytes());
        snap.extend_from_slice(&0u32.to_le_bytes());
        let m = Metadata::from_snapshot(1, &snap).unwrap();
        let body = checked_body(&m);
        assert!(String::from_utf8_lossy(&body).contains("<i8>8589934592</i8>"));
    }

    #[test]
    fn a_changed_replaced_or_tombstoned_file_is_written_as_it_is_now() {
        let mut m = every_kind();
        let before = checked_body(&m);
        update(&mut m, "every", 2, vec![Hash::Int(9)]);
        let after = checked_body(&m);
        assert_ne!(before, after);
        let parsed = parse_response(&after).unwrap().unwrap();
        let every = &parsed.as_struct().unwrap()["every"];
        assert_eq!(
            every,
            &Value::Array(vec![Value::Int(2), Value::Array(vec![Value::Int(9)])])
        );
        update(&mut m, "every", 3, vec![Hash::text("0")]);
        update(&mut m, "new", 1, vec![Hash::Bytes(vec![1].into())]);
        let parsed = parse_response(&checked_body(&m)).unwrap().unwrap();
        let files = parsed.as_struct().unwrap();
        assert_eq!(
            files["every"],
            Value::Array(vec![
                Value::Int(3),
                Value::Array(vec![Value::String("0".into())])
            ])
        );
        assert_eq!(files.len(), 7);
        // A view taken before the changes still answers the map as it was.
        let mut m = every_kind();
        let view = m.view();
        update(&mut m, "every", 2, vec![]);
        assert_eq!(&encode(&view).into_response()[..], &before[..]);
    }

    #[test]
    fn many_files_across_every_shard_match_the_tree_encoder() {
        let mut m = Metadata::new();
        for i in 0u64..5000 {
            let hashes = match i % 5 {
                0 => vec![Hash::text(format!("{:064x}", i * 7919))],
                1 => vec![Hash::text(format!("h{i}")), Hash::Int(i as i32)],
                2 => vec![
                    Hash::I8(i as i64 * 1_000_003),
                    Hash::Bytes(i.to_le_bytes().into()),
                ],
                3 => vec![],
                _ => vec![Hash::text("0")],
            };
            update(
                &mut m,
                &format!("dir{}/fïle-{i:05}&.txt", i % 13),
                1,
                hashes,
            );
        }
        checked_body(&m);
    }

    #[test]
    fn a_large_map_written_in_parts_on_several_threads_is_the_same_bytes() {
        let mut m = Metadata::new();
        for i in 0..(PARALLEL_ENCODE_FILES + 1001) {
            let hash = match i % 4 {
                0 => Hash::text(sha256_hex(&[(i % 251) as u8; 32])),
                1 => Hash::Int(i as i32),
                2 => Hash::text(format!("<{i}&>")),
                _ => Hash::Bytes(vec![i as u8; 3].into()),
            };
            update(&mut m, &format!("d{}/f-{i}", i % 7), 1, vec![hash]);
        }
        let view = m.view();
        let parts = encode(&view).into_response_parts();
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            assert!(parts.len() > 1, "one part on several cores");
        }
        assert_eq!(parts.concat(), old_body(&view));
    }

    #[test]
    fn the_estimate_is_exact_without_escapes_or_long_versions() {
        let mut m = Metadata::new();
        update(
            &mut m,
            "plain",
            1,
            vec![
                Hash::text(sha256_hex(&[1; 32])),
                Hash::Bytes(vec![1; 5].into()),
            ],
        );
        let view = m.view();
        let files = view.files_by_name();
        let written = encode_files(&files).as_bytes().len();
        let estimate = encoded_len_estimate(&files);
        assert!(estimate >= written, "{estimate} < {written}");
        assert!(estimate - written < 64, "{estimate} vs {written}");
    }
}
