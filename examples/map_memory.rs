//! What one file costs the applied metadata map in memory, and what writing
//! the `getfileinfomap` answer for it costs the server: applies FILES
//! (default 100,000) `updatefile` commands (names like
//! `dir3/file-000042.txt`, one hash each: a 64-char lower-case hex SHA-256
//! string, as `run-client.sh` sends) to an empty `Metadata`, prints the
//! process's resident set before and after, per file, and the snapshot
//! size; then RUNS times (default 3) times the answer's body as the server
//! builds it from a view of the map:
//!
//! - new: `api::file_info_map::encode` (sort the names, write each file
//!   straight into the body's buffer), then the response around it;
//! - old: the `Value` tree of the whole map (`api::file_info_map::value`),
//!   encoded by `codec::encode_response` into a growing `Vec` as the server
//!   did before, and the tree dropped (the server dropped it too).
//!
//! The two bodies are checked to be the same bytes. Peak RSS (`VmHWM`) is
//! printed after loading, after the new-path runs and after the old-path
//! runs (the old ones last, since the peak only grows).
//!
//!     cargo run --release --example map_memory [-- FILES [RUNS [new]]]
//!
//! (`new`: time only the new path, e.g. under `perf record -g`.)
//!
//! RSS is read from `/proc/self/statm` and `/proc/self/status` (Linux); it
//! includes the allocator's slack, which is what a node actually pays. Only
//! the server's work is timed: no HTTP, no client parsing.

use std::time::{Duration, Instant};

use surfstore::node::api::file_info_map;
use surfstore::node::command::{Command, Hash};
use surfstore::node::metadata::Metadata;
use surfstore::xmlrpc::codec;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's second field is the resident page count");
    pages * 4096
}

/// The peak resident set so far (`VmHWM`).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in kB")
        * 1024
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `min–max ms` of `ds`.
fn range(ds: &[Duration]) -> String {
    let min = ds.iter().min().copied().unwrap_or_default();
    let max = ds.iter().max().copied().unwrap_or_default();
    format!("{:.1}–{:.1} ms", ms(min), ms(max))
}

fn arg(n: usize, default: u64, what: &str) -> u64 {
    match std::env::args().nth(n) {
        None => default,
        Some(a) => match a.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: map_memory [FILES [RUNS]] (positive counts), got {what} {a:?}");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let files = arg(1, 100_000, "FILES");
    let runs = arg(2, 3, "RUNS") as usize;
    // `new` as a third argument skips the old path (for profiling the new one).
    let old_too = std::env::args().nth(3).as_deref() != Some("new");
    let before = rss_bytes();
    let mut map = Metadata::new();
    for i in 0..files {
        let hex = format!("{:064x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let cmd = Command::UpdateFile {
            filename: format!("dir{}/file-{i:06}.txt", i % 17),
            version: 1,
            hashlist: vec![Hash::text(hex)],
        };
        assert!(map.apply(i + 1, &cmd));
    }
    let after = rss_bytes();
    let snapshot = map.encode_snapshot();
    let grown = after.saturating_sub(before);
    println!(
        "{files} files, one 64-hex hash each: RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per file; snapshot {:.0} bytes per file; peak RSS so far {:.1} MiB",
        mib(before),
        mib(after),
        grown as f64 / files as f64,
        snapshot.len() as f64 / files as f64,
        mib(peak_rss_bytes()),
    );
    drop(snapshot);

    let (mut new, mut sort, mut write) = (Vec::new(), Vec::new(), Vec::new());
    let mut body_len = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let view = map.view();
        let sorted = view.files_by_name();
        let t1 = Instant::now();
        // In the parts the server sends (on several threads for a large map).
        let body = file_info_map::encode_files(&sorted).into_response_parts();
        let t2 = Instant::now();
        sort.push(t1 - t0);
        write.push(t2 - t1);
        new.push(t2 - t0);
        body_len = body.iter().map(|p| p.len()).sum();
    }
    let peak_new = peak_rss_bytes();
    println!(
        "getfileinfomap body, new (sort + write): {} ({} sorting the names, {} writing) over {runs} runs; {:.1} MB; peak RSS {:.1} MiB",
        range(&new),
        range(&sort),
        range(&write),
        body_len as f64 / 1e6,
        mib(peak_new),
    );

    if !old_too {
        return;
    }
    let mut old = Vec::new();
    for run in 0..runs {
        let t0 = Instant::now();
        let view = map.view();
        let tree = file_info_map::value(&view);
        let mut out = Vec::with_capacity(256);
        codec::encode_response(&tree, &mut out);
        drop(tree);
        old.push(t0.elapsed());
        if run == 0 {
            let new_body = file_info_map::encode(&view).into_response();
            assert!(new_body[..] == out[..], "the new body differs from the old");
        }
    }
    println!(
        "getfileinfomap body, old (Value tree + encode + drop): {} over {runs} runs; same bytes as new; peak RSS {:.1} MiB",
        range(&old),
        mib(peak_rss_bytes()),
    );
}
