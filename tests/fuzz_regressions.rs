//! The fuzz targets on the stable toolchain: every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` replayed through
//! the same entry points the cargo-fuzz targets call (`surfstore::fuzzing`),
//! then a short proptest pass per target of random bytes and of corpus files
//! with random byte edits. An invariant broken is a panic, so a test fails.
//!
//! `write_seed_corpora` (ignored) rewrites the seeds made from the product's
//! own files: WAL segments and snapshot files written by a real `DiskStore`,
//! peer messages as the node encodes them, `index.txt` as the client stores it.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use surfstore::fuzzing;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("xmlrpc", fuzzing::xmlrpc),
    ("http_request", fuzzing::http_request),
    ("wal_segment", fuzzing::wal_segment),
    ("snapshot", fuzzing::snapshot),
    ("peer_wire", fuzzing::peer_wire),
    ("index_txt", fuzzing::index_txt),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn target(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
        .1
}

fn replay(kind: &str) -> usize {
    let mut n = 0;
    for (name, run) in TARGETS {
        for path in files(&fuzz_dir().join(kind).join(name)) {
            let data = std::fs::read(&path).expect("read a corpus file");
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{} fails its target", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_seed_corpus_file_passes_its_target() {
    for (name, _) in TARGETS {
        let n = files(&fuzz_dir().join("corpus").join(name)).len();
        assert!(n >= 4, "fuzz/corpus/{name} holds {n} seeds, want a few");
    }
    assert!(replay("corpus") >= 30);
}

#[test]
fn every_saved_crash_passes_its_target() {
    // fuzz/regressions/<target>/ holds the inputs the fuzzer found crashes
    // with, kept after the fix; none may fail again.
    replay("regressions");
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    files(&fuzz_dir().join("corpus").join(name))
        .iter()
        .map(|p| std::fs::read(p).expect("read a corpus file"))
        .collect()
}

/// A corpus file with a few bytes overwritten, inserted or cut.
fn mutate(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        0..seeds.len(),
        prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(move |(i, edits)| {
            let mut d = seeds[i].clone();
            for (at, byte, op) in edits {
                let at = if d.is_empty() {
                    0
                } else {
                    at as usize % d.len()
                };
                match op {
                    0 if !d.is_empty() => d[at] = byte,
                    1 => d.insert(at, byte),
                    _ if !d.is_empty() => {
                        d.truncate(at);
                    }
                    _ => d.push(byte),
                }
            }
            d
        })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

macro_rules! random_and_mutated {
    ($test:ident, $name:literal, $cases:expr) => {
        proptest! {
            #![proptest_config(config($cases))]
            #[test]
            fn $test(
                random in prop::collection::vec(any::<u8>(), 0..512),
                mutated in mutate(corpus($name)),
            ) {
                target($name)(&random);
                target($name)(&mutated);
            }
        }
    };
}

random_and_mutated!(xmlrpc_random_and_mutated, "xmlrpc", 400);
random_and_mutated!(http_request_random_and_mutated, "http_request", 150);
random_and_mutated!(wal_segment_random_and_mutated, "wal_segment", 150);
random_and_mutated!(snapshot_random_and_mutated, "snapshot", 400);
random_and_mutated!(peer_wire_random_and_mutated, "peer_wire", 400);
random_and_mutated!(index_txt_random_and_mutated, "index_txt", 400);

/// Rewrites the seeds made from the product's files. Run by hand:
/// `cargo test --release --test fuzz_regressions -- --ignored write_seed_corpora`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand"]
fn write_seed_corpora() {
    seeds::write_all(&fuzz_dir().join("corpus"));
}

mod seeds {
    use std::path::Path;

    use bytes::Bytes;
    use surfstore::client::index::{self, IndexEntry};
    use surfstore::node::command::{sha256_hex, Command, Hash};
    use surfstore::node::metadata::Metadata;
    use surfstore::node::peer_wire;
    use surfstore::node::raft::{Entry, HardState, Message, MessageBody, Snapshot};
    use surfstore::node::storage::snapshot as snapshot_file;
    use surfstore::node::storage::{ClusterMeta, DiskOptions, DiskStore, LogStore};
    use surfstore::xmlrpc::codec;

    fn write(dir: &Path, name: &str, data: &[u8]) {
        std::fs::create_dir_all(dir).expect("create a corpus dir");
        std::fs::write(dir.join(name), data).expect("write a seed");
    }

    fn hash(i: u8) -> String {
        sha256_hex(&[i; 32])
    }

    fn update(name: &str, version: i64, n: u8) -> Command {
        Command::UpdateFile {
            filename: name.to_owned(),
            version,
            hashlist: (0..n).map(|i| Hash::text(hash(i))).collect(),
        }
    }

    pub fn write_all(out: &Path) {
        // A real data directory: entries holding commands, hard states,
        // segment rolls and a compaction with its snapshot file.
        let dir = std::env::temp_dir().join(format!("surfstore-fuzz-seeds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let meta = ClusterMeta {
            id: 0,
            members: vec!["localhost:1".into(), "localhost:2".into()],
        };
        let opts = DiskOptions {
            segment_bytes: 600,
            ..DiskOptions::default()
        };
        let mut m = Metadata::new();
        {
            let (mut s, _) = DiskStore::open(&dir, &meta, opts).expect("open a store");
            for i in 1..=24u64 {
                let cmd = update(
                    &format!("file {}", i % 5),
                    (i / 5 + 1) as i64,
                    (i % 4) as u8,
                );
                m.apply(i, &cmd);
                let hs = HardState {
                    term: 1 + i / 10,
                    vote: Some(1),
                    commit: i - 1,
                };
                let e = Entry {
                    term: 1 + i / 10,
                    index: i,
                    data: cmd.encode(),
                };
                s.persist(Some(hs), &[e]).expect("persist");
                if i == 16 {
                    let snap = Snapshot {
                        index: 16,
                        term: 2,
                        data: m.encode_snapshot(),
                    };
                    s.save_snapshot(&snap, None).expect("save a snapshot");
                }
            }
        }
        let wal = out.join("wal_segment");
        let mut segs: Vec<_> = std::fs::read_dir(dir.join("wal"))
            .expect("the wal dir")
            .map(|e| e.expect("entry").path())
            .collect();
        segs.sort();
        for (i, p) in segs.iter().enumerate() {
            let data = std::fs::read(p).expect("read a segment");
            write(&wal, &format!("segment_{i:02}.wal"), &data);
            if i == 0 {
                write(&wal, "segment_torn.wal", &data[..data.len() - 3]);
                let mut zeros = data.clone();
                zeros.extend_from_slice(&[0; 40]);
                write(&wal, "segment_zero_tail.wal", &zeros);
            }
        }
        let snap_dir = out.join("snapshot");
        let file = std::fs::read(dir.join("snapshot")).expect("the snapshot file");
        write(&snap_dir, "snapshot_file", &file);
        let map = snapshot_file::decode(Bytes::from(file))
            .expect("decode")
            .data;
        write(&snap_dir, "metadata_map", &map);
        write(
            &snap_dir,
            "metadata_empty",
            &Metadata::new().encode_snapshot(),
        );
        let mut one = Metadata::new();
        one.apply(1, &update("é <&> \r\n", 1, 1));
        one.apply(
            2,
            &Command::UpdateFile {
                filename: "ints".into(),
                version: 1,
                hashlist: vec![
                    Hash::Int(7),
                    Hash::I8(1 << 40),
                    Hash::Bytes(Box::new([1, 2])),
                ],
            },
        );
        write(&snap_dir, "metadata_types", &one.encode_snapshot());
        write(
            &snap_dir,
            "snapshot_file_types",
            &snapshot_file::encode(&Snapshot {
                index: 2,
                term: 1,
                data: one.encode_snapshot(),
            }),
        );
        let _ = std::fs::remove_dir_all(&dir);

        // Peer messages as the node sends them (requests as calls, answers
        // as responses).
        let pw = out.join("peer_wire");
        let entries: Vec<Entry> = (5..8)
            .map(|i| Entry {
                term: 2,
                index: i,
                data: update("f", i as i64, 2).encode(),
            })
            .collect();
        let msg = |body| Message {
            from: 0,
            to: 2,
            term: 3,
            ctx: 0,
            body,
        };
        let msgs = [
            msg(MessageBody::AppendEntries {
                prev_index: 4,
                prev_term: 2,
                entries,
                commit: 4,
                read_seq: 9,
            }),
            msg(MessageBody::AppendEntriesResponse {
                success: false,
                match_index: 0,
                conflict_index: 3,
                conflict_term: 1,
                read_seq: 9,
            }),
            msg(MessageBody::RequestVote {
                last_index: 7,
                last_term: 2,
                transfer: false,
            }),
            msg(MessageBody::PreVote {
                last_index: 7,
                last_term: 2,
            }),
            msg(MessageBody::RequestVoteResponse { granted: true }),
            msg(MessageBody::PreVoteResponse { granted: false }),
            msg(MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    index: 2,
                    term: 1,
                    data: one.encode_snapshot(),
                },
            }),
        ];
        for (i, msg) in msgs.iter().enumerate() {
            let mut body = Vec::new();
            match peer_wire::method_for(msg) {
                Some(method) => codec::encode_call(method, &[peer_wire::encode(msg)], &mut body),
                None => codec::encode_response(&peer_wire::encode(msg), &mut body),
            }
            write(&pw, &format!("node_{i:02}.xml"), &body);
        }
        let snap = Snapshot {
            index: 16,
            term: 2,
            data: m.encode_snapshot(),
        };
        let chunked = msg(MessageBody::InstallSnapshot { snapshot: snap });
        let chunks = peer_wire::snapshot_chunks(&chunked, 100).expect("a snapshot has chunks");
        for (i, c) in chunks.take(2).enumerate() {
            let mut body = Vec::new();
            codec::encode_call(
                peer_wire::INSTALL_SNAPSHOT,
                &[peer_wire::encode_chunk(&c)],
                &mut body,
            );
            write(&pw, &format!("chunk_{i}.xml"), &body);
        }
        let ack = peer_wire::ChunkAck {
            from: 2,
            to: 0,
            received: 100,
        };
        let mut body = Vec::new();
        codec::encode_response(&peer_wire::encode_chunk_ack(&ack), &mut body);
        write(&pw, "chunk_ack.xml", &body);

        // index.txt as the client stores it.
        let ix = out.join("index_txt");
        let mut idx = index::Index::new();
        idx.insert(
            "a.txt".into(),
            IndexEntry {
                version: 3,
                hashes: vec![hash(1), hash(2)],
            },
        );
        idx.insert(
            "my file %.txt".into(),
            IndexEntry {
                version: 1,
                hashes: vec![],
            },
        );
        idx.insert(
            "gone".into(),
            IndexEntry {
                version: 2,
                hashes: vec!["0".into()],
            },
        );
        idx.insert(
            "tab\there é😀".into(),
            IndexEntry {
                version: 9,
                hashes: vec![hash(3)],
            },
        );
        write(&ix, "index_mixed.txt", index::render(&idx).as_bytes());
        write(&ix, "index_empty.txt", b"");
        write(
            &ix,
            "index_crlf.txt",
            index::render(&idx).replace('\n', "\r\n").as_bytes(),
        );
        let one_line: index::Index = idx.clone().into_iter().take(1).collect();
        write(&ix, "index_one.txt", index::render(&one_line).as_bytes());
        let dir = std::env::temp_dir().join(format!("surfstore-fuzz-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        index::store(&dir.join("index.txt"), &idx).expect("store the index");
        let stored = std::fs::read(dir.join("index.txt")).expect("read index.txt");
        write(&ix, "index_stored.txt", &stored);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
