//! `run-ctl.sh snapshot save` and `snapshot restore`, round trip: a backup
//! of a live 3-node cluster (files with real blocks, a tombstone, hash
//! values of every XML-RPC type) restored into three fresh data directories
//! of a new cluster on other ports, which serves the same map and blocks and
//! takes the next version of a file; `--metadata-only` restores the map
//! without blocks. Refused: a data directory that is not empty, a corrupt
//! backup (nothing is left behind), a save with no member up.
//! Ports 9910-9915.

mod procs;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use procs::*;
use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

const SOURCE: [u16; 3] = [9910, 9911, 9912];
const RESTORED: [u16; 3] = [9913, 9914, 9915];

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Deterministic bytes, different per seed.
fn block(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn call(c: &Client, method: &str, params: Vec<Value>) -> Value {
    c.call(method, &params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// Writes the source cluster's content; returns every block's hash and bytes.
async fn fill(leader: &Client) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    for f in 0..12u32 {
        let mut hashes = Vec::new();
        for b in 0..(f % 3 + 1) {
            let data = block(f * 10 + b, 1000 + (f as usize) * 300);
            assert_eq!(
                call(
                    leader,
                    "surfstore.putblock",
                    vec![Value::Base64(data.clone())]
                )
                .await,
                Value::Bool(true)
            );
            hashes.push(Value::String(hex(&data)));
            blocks.push((hex(&data), data));
        }
        let name = format!("dir/file-{f}.bin");
        let args = vec![Value::String(name), Value::Int(1), Value::Array(hashes)];
        assert_eq!(
            call(leader, "surfstore.updatefile", args).await,
            Value::Bool(true)
        );
    }
    // A tombstone, and hash values as the assignment's tests send them.
    for (name, hashes) in [
        ("gone.txt", vec![Value::String("h1".into())]),
        ("ints", vec![Value::Int(7), Value::I8(1 << 40)]),
        ("bytes", vec![Value::Base64(b"raw digest".to_vec())]),
    ] {
        let args = vec![
            Value::String(name.into()),
            Value::Int(1),
            Value::Array(hashes),
        ];
        assert_eq!(
            call(leader, "surfstore.updatefile", args).await,
            Value::Bool(true)
        );
    }
    let args = vec![
        Value::String("gone.txt".into()),
        Value::Int(2),
        Value::Array(vec![Value::String("0".into())]),
    ];
    assert_eq!(
        call(leader, "surfstore.updatefile", args).await,
        Value::Bool(true)
    );
    blocks
}

fn write_config(path: &Path, ports: &[u16]) {
    let mut text = format!("M: {}\n", ports.len());
    for (i, p) in ports.iter().enumerate() {
        text.push_str(&format!("metadata{i}: localhost:{p}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn restore_all(backup: &Path, config: &Path, dirs: &[PathBuf]) {
    for (i, d) in dirs.iter().enumerate() {
        let r = run_ctl([
            "snapshot",
            "restore",
            s(backup),
            "--data-dir",
            s(d),
            "--config",
            s(config),
            "--id",
            &i.to_string(),
        ]);
        assert_eq!(r.status.code(), Some(0), "restore {i}: {}", out(&r));
        assert!(out(&r).contains("restored"), "{}", out(&r));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_round_trip_into_a_new_cluster() {
    let work = std::env::temp_dir().join(format!("ctl-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let source = Nodes::start("ctl-backup-src", &SOURCE, &[], "warn", Stdio::null);
    // A copy: the harness removes its directory when the nodes go.
    let src_config = work.join("source.txt");
    std::fs::copy(source.dir.join("config.txt"), &src_config).unwrap();
    let cs = clients(&SOURCE);
    let leader = wait_for_leader(&cs).await;
    let blocks = fill(&cs[leader]).await;
    let map = call(&cs[leader], "surfstore.getfileinfomap", vec![]).await;

    let full = work.join("full.bak");
    let saved = run_ctl(["--config", s(&src_config), "snapshot", "save", s(&full)]);
    assert_eq!(saved.status.code(), Some(0), "{}", out(&saved));
    let text = out(&saved);
    assert!(
        text.contains("15 files") && text.contains(&format!("{} blocks", blocks.len())),
        "{text}"
    );
    let meta_only = work.join("map.bak");
    let saved = run_ctl([
        "--config",
        s(&src_config),
        "-w",
        "json",
        "snapshot",
        "save",
        s(&meta_only),
        "--metadata-only",
    ]);
    assert_eq!(saved.status.code(), Some(0), "{}", out(&saved));
    let j: serde_json::Value = serde_json::from_slice(&saved.stdout).expect("json");
    assert_eq!(j["blocks"], 0, "{j}");
    assert_eq!(j["files"], 15, "{j}");
    assert_eq!(j["metadata_only"], true, "{j}");
    drop(source);
    // With no member up, save says so (exit 2) and writes nothing.
    let none = work.join("none.bak");
    let r = run_ctl(["--config", s(&src_config), "snapshot", "save", s(&none)]);
    assert_eq!(r.status.code(), Some(2), "{}", out(&r));
    assert!(out(&r).contains("no member answered"), "{}", out(&r));
    assert!(!none.exists());

    // Refusals, each leaving the directory as it was.
    let config = work.join("restored.txt");
    write_config(&config, &RESTORED);
    let busy = work.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep"), b"mine").unwrap();
    let r = run_ctl([
        "snapshot",
        "restore",
        s(&full),
        "--data-dir",
        s(&busy),
        "--config",
        s(&config),
        "--id",
        "0",
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", out(&r));
    assert!(out(&r).contains("not empty"), "{}", out(&r));
    assert_eq!(std::fs::read(busy.join("keep")).unwrap(), b"mine");
    let mut bytes = std::fs::read(&full).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let corrupt = work.join("corrupt.bak");
    std::fs::write(&corrupt, &bytes).unwrap();
    let fresh = work.join("fresh");
    let r = run_ctl([
        "snapshot",
        "restore",
        s(&corrupt),
        "--data-dir",
        s(&fresh),
        "--config",
        s(&config),
        "--id",
        "0",
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", out(&r));
    assert!(
        out(&r).contains("corrupt.bak: at byte"),
        "names the file and the byte: {}",
        out(&r)
    );
    assert!(!fresh.exists(), "a failed restore leaves nothing");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        6,
        "no temporary left: source.txt full.bak map.bak restored.txt busy corrupt.bak"
    );
    let r = run_ctl([
        "snapshot",
        "restore",
        s(&full),
        "--data-dir",
        s(&fresh),
        "--config",
        s(&config),
        "--id",
        "3",
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", out(&r));

    // The full backup, into a new cluster on other ports.
    let dirs: Vec<PathBuf> = (0..3).map(|i| work.join(format!("full{i}"))).collect();
    restore_all(&full, &config, &dirs);
    {
        let restored = Nodes::start_on_disk("ctl-backup-dst", &RESTORED, &dirs);
        let rs = clients(&RESTORED);
        let l = wait_for_leader(&rs).await;
        assert_eq!(call(&rs[l], "surfstore.getfileinfomap", vec![]).await, map);
        for c in &rs {
            for (hash, data) in &blocks {
                let got = call(c, "surfstore.getblock", vec![Value::String(hash.clone())]).await;
                assert_eq!(got, Value::Base64(data.clone()), "block {hash}");
            }
        }
        // The versions go on from the backup's.
        let args = vec![
            Value::String("gone.txt".into()),
            Value::Int(3),
            Value::Array(vec![Value::String(blocks[0].0.clone())]),
        ];
        assert_eq!(
            call(&rs[l], "surfstore.updatefile", args).await,
            Value::Bool(true)
        );
        drop(restored);
        for d in &dirs {
            let held = surfstore::node::blocks::BlockStore::disk(d).unwrap().held();
            assert_eq!(
                held.blocks,
                blocks.len() as u64,
                "{} holds its own copy of every block",
                d.display()
            );
        }
    }

    // The map alone: the same map, no blocks.
    let dirs: Vec<PathBuf> = (0..3).map(|i| work.join(format!("map{i}"))).collect();
    restore_all(&meta_only, &config, &dirs);
    {
        let _restored = Nodes::start_on_disk("ctl-backup-map", &RESTORED, &dirs);
        let rs = clients(&RESTORED);
        let l = wait_for_leader(&rs).await;
        assert_eq!(call(&rs[l], "surfstore.getfileinfomap", vec![]).await, map);
        let r = rs[l]
            .call("surfstore.getblock", &[Value::String(blocks[0].0.clone())])
            .await;
        assert!(r.is_err(), "no block was restored: {r:?}");
    }
    let _ = std::fs::remove_dir_all(&work);
}
