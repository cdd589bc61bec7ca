//! How long a metadata snapshot takes to encode, decode and cut into
//! `installSnapshot` calls, on this machine, in one thread: a map of FILES
//! files (default 100,000), each at version 1 with 2–4 SHA-256-sized hex
//! hashes, built in memory (no disk, no network). Each figure is the median
//! of 5 runs; `from_snapshot` does not count dropping the map it returns
//! (shown apart). `chunk + encode_chunk` is the copy of each chunk into its
//! XML-RPC value, not the XML encoding or the network.
//!
//!     cargo run --release --example snapshot_codec [-- FILES]

use std::time::{Duration, Instant};

use surfstore::node::command::{Command, Hash};
use surfstore::node::metadata::Metadata;
use surfstore::node::peer_wire;
use surfstore::node::peers::SNAPSHOT_CHUNK_BYTES;
use surfstore::node::raft::{Message, MessageBody, Snapshot};

/// The median of 5 runs of `f`, each timing itself.
fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut runs: Vec<Duration> = (0..5).map(|_| f()).collect();
    runs.sort();
    runs[2]
}

/// How long `f` takes, not counting dropping what it returns.
fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    let out = f();
    let took = t.elapsed();
    drop(std::hint::black_box(out));
    took
}

fn main() {
    let files: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("FILES must be a number"))
        .unwrap_or(100_000);
    let mut m = Metadata::new();
    for i in 0..files {
        let cmd = Command::UpdateFile {
            filename: format!("dir{}/file-{i:07}.txt", i % 17),
            version: 1,
            hashlist: (0..2 + i % 3)
                .map(|h| Hash::text(format!("{:064x}", i * 4 + h)))
                .collect(),
        };
        m.apply(i + 1, &cmd);
    }
    let bytes = m.encode_snapshot();
    let encode = median(|| timed(|| m.encode_snapshot()));
    let decode = median(|| timed(|| Metadata::from_snapshot(files, &bytes).unwrap()));
    let drop_map = median(|| {
        let map = Metadata::from_snapshot(files, &bytes).unwrap();
        timed(|| drop(map))
    });
    let msg = Message {
        from: 0,
        to: 1,
        term: 1,
        ctx: 0,
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot {
                index: files,
                term: 1,
                data: bytes.clone(),
            },
        },
    };
    let mut calls = 0;
    let chunk = median(|| {
        timed(|| {
            calls = 0;
            for c in peer_wire::snapshot_chunks(&msg, SNAPSHOT_CHUNK_BYTES).unwrap() {
                std::hint::black_box(peer_wire::encode_chunk(&c));
                calls += 1;
            }
        })
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{files} files, snapshot {:.1} MiB, {calls} installSnapshot calls of {} KiB",
        bytes.len() as f64 / (1 << 20) as f64,
        SNAPSHOT_CHUNK_BYTES >> 10
    );
    println!("encode_snapshot      {:8.1} ms", ms(encode));
    println!("from_snapshot        {:8.1} ms", ms(decode));
    println!("dropping the map     {:8.1} ms", ms(drop_map));
    println!("chunk + encode_chunk {:8.1} ms", ms(chunk));
}
