//! What one file costs the applied metadata map in memory: applies 100,000
//! `updatefile` commands (names like `dir3/file-000042.txt`, one hash each: a
//! 64-char lower-case hex SHA-256 string, as `run-client.sh` sends) to an
//! empty `Metadata`, and prints the process's resident set before and after,
//! per file, and the snapshot size.
//!
//!     cargo run --release --example map_memory [-- FILES]
//!
//! RSS is read from `/proc/self/statm` (Linux); it includes the allocator's
//! slack, which is what a node actually pays.

use surfstore::node::command::{Command, Hash};
use surfstore::node::metadata::Metadata;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's second field is the resident page count");
    pages * 4096
}

fn main() {
    let files: u64 = match std::env::args().nth(1) {
        None => 100_000,
        Some(a) => match a.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: map_memory [FILES] (a positive count), got {a:?}");
                std::process::exit(2);
            }
        },
    };
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
        "{files} files, one 64-hex hash each: RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per file; snapshot {:.0} bytes per file",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        grown as f64 / files as f64,
        snapshot.len() as f64 / files as f64,
    );
}
