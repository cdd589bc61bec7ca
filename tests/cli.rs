//! The `surfstore server` entry point refuses bad configs and ids at start:
//! a message naming the file (and line), a non-zero exit, nothing bound.

use std::process::Command;

fn run_server(config_text: &str, id: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("surfstore-cli-{}-{id}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("cfg-{}.txt", config_text.len()));
    std::fs::write(&path, config_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_surfstore"))
        .arg("server")
        .arg(&path)
        .arg(id)
        .arg("--in-memory")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.success(),
        stderr.replace(&*path.to_string_lossy(), "CFG"),
    )
}

#[test]
fn a_malformed_config_is_refused_with_file_and_line() {
    let (ok, err) = run_server("M: 2\nmetadata0: localhost:1\nmetadata1 localhost:2\n", "0");
    assert!(!ok);
    assert!(err.contains("CFG:3:"), "{err}");
}

#[test]
fn a_count_mismatch_is_refused() {
    let (ok, err) = run_server(
        "M: 3\n\nmetadata0: localhost:1\nmetadata1: localhost:2\n",
        "0",
    );
    assert!(!ok);
    assert!(err.contains("CFG"), "{err}");
    assert!(err.contains("metadata2") || err.contains('2'), "{err}");
}

#[test]
fn an_id_out_of_range_is_refused() {
    let (ok, err) = run_server("M: 1\nmetadata0: 127.0.0.1:1\n", "5");
    assert!(!ok);
    assert!(err.contains("CFG") && err.contains('5'), "{err}");
}

#[test]
fn a_missing_config_file_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_surfstore"))
        .args(["server", "/nonexistent/surfstore.cfg", "0", "--in-memory"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/surfstore.cfg") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn bad_timing_flags_are_refused() {
    let dir = std::env::temp_dir().join(format!("surfstore-cli-timing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ok.txt");
    std::fs::write(&path, "M: 1\nmetadata0: 127.0.0.1:1\n").unwrap();
    for flags in [
        &["--election-min-ms", "300", "--election-max-ms", "100"][..],
        &["--heartbeat-ms", "200"][..],
        &["--tick-ms", "0"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_surfstore"))
            .arg("server")
            .arg(&path)
            .arg("0")
            .arg("--in-memory")
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(err.contains("timing"), "{flags:?}: {err}");
    }
}
