//! `SimFs`: what each crash mode keeps, handles and locks across a crash,
//! and the fault knobs.

use super::sim::{CrashMode, SimFs};
use super::FileSystem;
use std::path::PathBuf;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn write(fs: &SimFs, path: &str, data: &[u8], sync: bool) {
    let mut f = fs.open_append(&p(path)).unwrap();
    f.write_all(data).unwrap();
    if sync {
        f.sync_data().unwrap();
    }
}

#[test]
fn unsynced_bytes_and_entries_are_lost_synced_ones_kept() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/d")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    write(&fs, "/d/a", b"durable", true);
    fs.sync_dir(&p("/d")).unwrap();
    write(&fs, "/d/a", b" and not", false);
    write(&fs, "/d/b", b"synced data, unsynced entry", true);
    fs.crash(CrashMode::LoseUnsynced);
    assert_eq!(fs.read(&p("/d/a")).unwrap(), b"durable");
    assert_eq!(fs.list_dir(&p("/d")).unwrap(), vec!["a".to_string()]);
}

#[test]
fn keep_all_keeps_everything_and_kills_handles_and_locks() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/d")).unwrap();
    let lock = fs.try_lock(&p("/d")).unwrap();
    assert!(lock.is_some());
    assert!(fs.try_lock(&p("/d")).unwrap().is_none());
    let mut f = fs.open_append(&p("/d/a")).unwrap();
    f.write_all(b"page cache").unwrap();
    fs.crash(CrashMode::KeepAll);
    assert_eq!(fs.read(&p("/d/a")).unwrap(), b"page cache");
    assert!(f.write_all(b"x").is_err(), "a dead process's handle");
    assert!(
        fs.try_lock(&p("/d")).unwrap().is_some(),
        "released by the crash"
    );
    drop(lock);
    // Still not durable: a power loss now loses it all.
    fs.crash(CrashMode::LoseUnsynced);
    assert!(fs.read(&p("/d/a")).is_err());
    assert!(fs.list_dir(&p("/d")).is_err());
}

#[test]
fn torn_keeps_a_prefix_of_the_appended_bytes() {
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        write(&fs, "/d/a", b"0123", true);
        fs.sync_dir(&p("/d")).unwrap();
        write(&fs, "/d/a", b"456789", false);
        fs.crash(CrashMode::Torn(seed));
        let got = fs.read(&p("/d/a")).unwrap();
        assert!(b"0123456789".starts_with(&got) && got.len() >= 4);
        lengths.insert(got.len());
    }
    assert!(lengths.len() > 3, "{lengths:?}");
}

#[test]
fn rename_is_durable_only_with_the_directory() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/d")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    write(&fs, "/d/f", b"old", true);
    fs.sync_dir(&p("/d")).unwrap();
    let mut t = fs.create(&p("/d/f.tmp")).unwrap();
    t.write_all(b"new").unwrap();
    t.sync_data().unwrap();
    fs.rename(&p("/d/f.tmp"), &p("/d/f")).unwrap();
    assert_eq!(fs.read(&p("/d/f")).unwrap(), b"new");
    fs.crash(CrashMode::LoseUnsynced);
    assert_eq!(fs.read(&p("/d/f")).unwrap(), b"old");
    let mut t = fs.create(&p("/d/f.tmp")).unwrap();
    t.write_all(b"new").unwrap();
    t.sync_data().unwrap();
    fs.rename(&p("/d/f.tmp"), &p("/d/f")).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    fs.crash(CrashMode::LoseUnsynced);
    assert_eq!(fs.read(&p("/d/f")).unwrap(), b"new");
    assert!(fs.read(&p("/d/f.tmp")).is_err());
}

#[test]
fn points_count_and_faults_fail_calls_without_doing_them() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/d")).unwrap();
    let k = fs.points();
    fs.fail_at(k + 1);
    let mut f = fs.open_append(&p("/d/a")).unwrap();
    assert!(f.write_all(b"lost").is_err());
    f.write_all(b"kept").unwrap();
    assert_eq!(fs.read(&p("/d/a")).unwrap(), b"kept");
    fs.fail_next(2);
    assert!(f.sync_data().is_err() && f.write_all(b"x").is_err());
    f.sync_data().unwrap();
    fs.stop_at(fs.points() + 1);
    f.write_all(b"!").unwrap();
    assert!(f.write_all(b"?").is_err() && f.sync_data().is_err());
    assert!(
        fs.read(&p("/d/a")).is_err(),
        "a stopped machine reads nothing"
    );
    fs.crash(CrashMode::KeepAll);
    assert_eq!(fs.read(&p("/d/a")).unwrap(), b"kept!");
}
