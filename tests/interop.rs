//! Runs tests/interop/interop.py: Python's standard `xmlrpc.client` against 5
//! nodes started through run-server.sh (which execs the binary this test
//! build produced, named by SURFSTORE_BIN).

use std::process::Command;

#[test]
fn python_stdlib_client_against_five_run_server_processes() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{repo}/tests/interop/interop.py"))
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
        .output()
        .expect("python3 must be installed to run the interop test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("interop: PASS"),
        "interop failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
