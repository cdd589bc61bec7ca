//! Puts per second of one node's disk block store, on the disk under DIR:
//! N puts of distinct 1 KiB and 4 KiB blocks with C puts in flight (C tasks
//! each putting sequentially), for the pack store (`BlockStore::disk`, group
//! commit: one fdatasync per batch) and, for comparison in the same run, the
//! old one-file-per-block write (temporary file, fsync, hard link, fsync of
//! the directory; reimplemented here as it was, on the blocking pool).
//! Each configuration runs 3 times in a fresh directory; the range over the
//! runs is printed. Also reads back: `get` of every block of the last run.
//!
//!     cargo run --release --example block_store_bench [-- N [DIR]]
//!
//! N puts per run (default 2000); DIR scratch space (default
//! target/block-store-bench), removed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surfstore::node::blocks::{hash_hex, BlockStore};

fn block(n: usize, seed: u64) -> Arc<[u8]> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The old layout's write of one block, as `blocks/mod.rs` did it.
fn old_put(root: &Path, data: &[u8]) -> std::io::Result<()> {
    let hash = hash_hex(data);
    let dir = root.join(&hash[..2]);
    let path = dir.join(&hash);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{hash}.tmp-{:016x}", rand::random::<u64>()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let _ = std::fs::remove_file(&tmp);
    std::fs::File::open(&dir)?.sync_all()
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Packs,
    OldFiles,
}

/// One run: `n` puts of `size` bytes, `c` in flight. Returns the time and,
/// for packs, the fsyncs the writer did.
async fn run(
    layout: Layout,
    dir: &Path,
    n: usize,
    size: usize,
    c: usize,
    seed: u64,
) -> (Duration, u64) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let blocks: Vec<Arc<[u8]>> = (0..n)
        .map(|i| block(size, seed * 1_000_000 + i as u64))
        .collect();
    let per = n.div_ceil(c);
    let chunks: Vec<Vec<Arc<[u8]>>> = blocks.chunks(per).map(|c| c.to_vec()).collect();
    match layout {
        Layout::Packs => {
            let d = dir.to_path_buf();
            let store = tokio::task::spawn_blocking(move || BlockStore::disk(&d).unwrap())
                .await
                .unwrap();
            let t = Instant::now();
            let tasks: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let s = store.clone();
                    tokio::spawn(async move {
                        for b in chunk {
                            s.put(b).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let took = t.elapsed();
            assert_eq!(store.held().blocks, n as u64);
            (took, store.sync_stats().batches)
        }
        Layout::OldFiles => {
            let root = dir.join("blocks");
            std::fs::create_dir_all(&root).unwrap();
            let t = Instant::now();
            let tasks: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let root = root.clone();
                    tokio::spawn(async move {
                        for b in chunk {
                            let root = root.clone();
                            tokio::task::spawn_blocking(move || old_put(&root, &b).unwrap())
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            (t.elapsed(), 0)
        }
    }
}

fn range(xs: &[f64]) -> String {
    let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().cloned().fold(0.0, f64::max);
    format!("{lo:>9.0} – {hi:<9.0}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .map_or(2000, |s| s.parse().expect("N: a number"));
    let base = PathBuf::from(
        args.get(2)
            .cloned()
            .unwrap_or_else(|| "target/block-store-bench".into()),
    );
    println!(
        "block store puts, {n} distinct blocks per run, 3 runs each, disk under {} \
         ({} cores); puts/s and MiB/s as ranges over the runs",
        base.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<10} {:>6} {:>9} {:>21} {:>21} {:>16}",
        "layout", "block", "in flight", "puts/s", "MiB/s", "fsync batches"
    );
    let dir = base.join("run");
    let mut seed = 1;
    for size in [1024usize, 4096] {
        for c in [1usize, 16, 64] {
            for layout in [Layout::OldFiles, Layout::Packs] {
                // The old layout costs 3 fsyncs a block: fewer puts keep the
                // run short; the rate is per put all the same.
                let n = if layout == Layout::OldFiles {
                    n.min(1000)
                } else {
                    n
                };
                let (mut rates, mut mibs, mut batches) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..3 {
                    seed += 1;
                    let (took, b) = run(layout, &dir, n, size, c, seed).await;
                    let secs = took.as_secs_f64();
                    rates.push(n as f64 / secs);
                    mibs.push((n * size) as f64 / secs / (1 << 20) as f64);
                    batches.push(b);
                }
                let name = match layout {
                    Layout::Packs => "packs",
                    Layout::OldFiles => "old files",
                };
                let batches = match layout {
                    Layout::Packs => format!(
                        "{}–{} for {n}",
                        batches.iter().min().unwrap(),
                        batches.iter().max().unwrap()
                    ),
                    Layout::OldFiles => format!("{} for {n}", 3 * n),
                };
                println!(
                    "{name:<10} {:>5}K {c:>9} {} {} {batches:>16}",
                    size / 1024,
                    range(&rates),
                    range(&mibs).trim_end(),
                );
            }
        }
    }
    // Reads: every block of a fresh 1 KiB run, 64 gets in flight.
    let d = dir.clone();
    let store = tokio::task::spawn_blocking(move || BlockStore::disk(&d).unwrap())
        .await
        .unwrap();
    let blocks: Vec<Arc<[u8]>> = (0..n).map(|i| block(1024, 7_000_000 + i as u64)).collect();
    let hashes = store.put_many(blocks).await.unwrap();
    let t = Instant::now();
    let per = hashes.len().div_ceil(64);
    let tasks: Vec<_> = hashes
        .chunks(per)
        .map(|hs| {
            let s = store.clone();
            let hs = hs.to_vec();
            tokio::spawn(async move {
                for h in hs {
                    s.get(&h).await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "packs get of {} 1K blocks (page cache), 64 in flight: {:.0} gets/s",
        hashes.len(),
        hashes.len() as f64 / t.elapsed().as_secs_f64()
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&base);
}
