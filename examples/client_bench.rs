//! The sync client against issue 14's targets: one client, a 3-node loopback
//! cluster in this process, each measure on a fresh cluster (see
//! `surfstore::client::bench` for what is measured and how).
//!
//!     cargo run --release --example client_bench -- [--disk] [--files N]
//!         [--mib N] [--resync-files N] [--parallel N]
//!
//! `--disk`: every node on a temporary data directory, fsync on (the
//! targets' setting); without it blocks and logs are in memory. Defaults are
//! the targets' sizes: `--files 10000` (first sync of 1 KiB files, ≤ 3 s),
//! `--mib 256` (one file at 4 KiB blocks, up ≥ 50 MiB/s, down ≥ 150 MiB/s),
//! `--resync-files 100000` (unchanged re-sync, ≤ 1 s), `--parallel 32`.
//! Prints one row per measure: target, measured value, ratio to the target.

use surfstore::client::bench::{self, BenchOptions};

fn usage(why: &str) -> ! {
    eprintln!(
        "client_bench: {why} (usage: client_bench [--disk] [--files N] [--mib N] \
         [--resync-files N] [--parallel N])"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut o = BenchOptions {
        disk: false,
        ..BenchOptions::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--disk" {
            o.disk = true;
            continue;
        }
        let slot = match a.as_str() {
            "--files" => &mut o.files,
            "--mib" => &mut o.mib,
            "--resync-files" => &mut o.resync_files,
            "--parallel" => &mut o.parallel,
            _ => usage(&format!("unknown argument {a:?}")),
        };
        *slot = match args.next().map(|v| v.parse::<usize>()) {
            Some(Ok(n)) if n > 0 => n,
            _ => usage(&format!("{a} takes a positive number")),
        };
    }
    print!("{}", bench::header(&o));
    let measures = bench::run(&o, |m| print!("{}", bench::row(m))).await;
    if let Err(e) = measures {
        eprintln!("client_bench: {e}");
        std::process::exit(1);
    }
}
