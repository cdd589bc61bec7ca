//! The client's stat cache against a real in-process 3-node cluster: an
//! unchanged re-sync reads no file, and every way a file can change under a
//! matching name is still seen: new bytes of the same size with the
//! modification time put back (only the change time differs), a file
//! replaced by a rename (another inode), and a cache file that is torn or of
//! another block size (then every file is read again).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{tmpdir, TestCluster};
use surfstore::client::statcache::SETTLE;
use surfstore::client::{sync, Summary, SyncOptions};

fn opts(dir: &Path, cache: &Path, bs: usize) -> SyncOptions {
    let mut o = SyncOptions::new(dir, bs);
    o.retry_budget = Duration::from_secs(30);
    o.stat_cache = Some(cache.to_path_buf());
    o
}

async fn run(c: &TestCluster, o: &SyncOptions) -> Summary {
    let s = sync(&c.addrs[0], o).await.expect("sync succeeds");
    assert!(s.problems.is_empty(), "problems: {:?}", s.problems);
    s
}

/// Waits until every time `path` carries is older than the cache's settle
/// time, so the next scan may cache it (a fresh file is read again on
/// purpose: see `statcache.rs`). The condition is a point in time, so this
/// sleeps until it.
fn settle(paths: &[PathBuf]) {
    use std::os::unix::fs::MetadataExt;
    for p in paths {
        let m = std::fs::metadata(p).unwrap();
        let newest =
            m.mtime().max(m.ctime()) as f64 + m.ctime_nsec().max(m.mtime_nsec()) as f64 / 1e9;
        let ready = newest + SETTLE.as_secs_f64() + 0.01;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        if ready > now {
            std::thread::sleep(Duration::from_secs_f64(ready - now));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_resync_reads_nothing_and_every_change_is_still_seen() {
    let c = TestCluster::start(3).await;
    let root = tmpdir("statcache");
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let cache = root.join("a.stat");
    let o = opts(&a, &cache, 16);
    let names: Vec<String> = (0..20).map(|i| format!("d{}/f{i}.txt", i % 3)).collect();
    let mut paths = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let p = a.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("content number {i:04} of a file")).unwrap();
        paths.push(p);
    }
    settle(&paths);

    // First sync: every file read, and cached (they are settled).
    let s = run(&c, &o).await;
    assert_eq!(s.uploaded.len(), 20);
    assert_eq!(s.files_read, 20);
    assert!(cache.is_file());
    // Unchanged: nothing read, nothing moved.
    let s = run(&c, &o).await;
    assert_eq!(s.files_read, 0, "{s:?}");
    assert!(s.actions.is_empty(), "{:?}", s.actions);

    // Same size, new bytes, the modification time put back: only the
    // change time tells, and it does.
    let p = &paths[3];
    let old = std::fs::metadata(p).unwrap().modified().unwrap();
    let before = std::fs::read(p).unwrap();
    let mut after = before.clone();
    after[0] ^= 0x20;
    std::fs::write(p, &after).unwrap();
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(std::fs::metadata(p).unwrap().modified().unwrap(), old);
    assert_eq!(std::fs::metadata(p).unwrap().len() as usize, before.len());
    let s = run(&c, &o).await;
    assert_eq!(s.uploaded, vec![names[3].clone()], "{s:?}");
    assert_eq!(s.files_read, 1);

    // Replaced by a rename: another inode, same size and mtime.
    let q = &paths[7];
    let old = std::fs::metadata(q).unwrap().modified().unwrap();
    let mut data = std::fs::read(q).unwrap();
    data[1] ^= 0x01;
    let tmp = a.join("d1/.replacement");
    std::fs::write(&tmp, &data).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::rename(&tmp, q).unwrap();
    let s = run(&c, &o).await;
    assert_eq!(s.uploaded, vec![names[7].clone()], "{s:?}");

    // The other folder gets exactly these bytes.
    let ob = opts(&b, &root.join("b.stat"), 16);
    run(&c, &ob).await;
    assert_eq!(std::fs::read(b.join(&names[3])).unwrap(), after);
    assert_eq!(std::fs::read(b.join(&names[7])).unwrap(), data);

    // A torn cache, or one of another block size, is no cache: all read.
    settle(&paths);
    run(&c, &o).await;
    let whole = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &whole[..whole.len() / 2]).unwrap();
    let s = run(&c, &o).await;
    assert_eq!(s.files_read, 20);
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    let s = run(&c, &o).await;
    assert_eq!(s.files_read, 0);
    let s = run(&c, &opts(&a, &cache, 32)).await;
    assert_eq!(s.files_read, 20);
    assert!(s.actions.is_empty(), "{:?}", s.actions);

    // A file deleted locally is not resurrected by its cache entry.
    std::fs::remove_file(&paths[0]).unwrap();
    let s = run(&c, &opts(&a, &cache, 32)).await;
    assert_eq!(s.deleted_remote, vec![names[0].clone()], "{s:?}");
    std::fs::remove_dir_all(&root).unwrap();
}
