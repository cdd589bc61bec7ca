//! The command-line conventions every `run-*.sh` and subcommand keeps:
//! `--help` is the subcommand's full help (its flags and exit codes) with
//! exit 0; a misuse is one line on stderr saying what is wrong, exit 2;
//! `--version` names the commit; a bad address is refused at once; the
//! tester takes its members from `--config` alone; a server stopped with
//! SIGHUP exits 0, and its log, piped, carries no ANSI escapes;
//! `--log-format json` and `--log-level`; one duration style, old flag
//! spellings kept. Ports 9896-9899.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

fn script(name: &str, args: &[&str]) -> Output {
    Command::new(format!("{}/{name}", repo()))
        .args(args)
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
        .stdin(Stdio::null())
        .output()
        .expect("the script runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_script_answers_help_with_its_subcommands_flags_and_exit_0() {
    for (name, flags) in [
        (
            "run-server.sh",
            &[
                "--election-min",
                "--data-dir",
                "--fsync",
                "--log-format",
                "--log-level",
            ][..],
        ),
        ("run-cluster.sh", &["--headless", "--log-file"][..]),
        ("run-client.sh", &["--quiet"][..]),
        ("run-tester.sh", &["--only", "--config", "--duration"][..]),
        ("run-bench.sh", &["--clients", "--workload"][..]),
        (
            "run-ctl.sh",
            &["--endpoint", "--write-out", "transfer-leader"][..],
        ),
    ] {
        for help in ["--help", "-h"] {
            let out = script(name, &[help]);
            let stdout = text(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name} {help}: {stdout}{}",
                text(&out.stderr)
            );
            for flag in flags {
                assert!(
                    stdout.contains(flag),
                    "{name} {help} names {flag}:\n{stdout}"
                );
            }
            if help == "--help" {
                assert!(
                    stdout.contains("Exit codes:"),
                    "{name} lists its exit codes:\n{stdout}"
                );
            }
        }
        // Help after the first argument works too.
        let first = if name == "run-ctl.sh" {
            "status"
        } else {
            "localhost:9001"
        };
        let out = script(name, &[first, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{name} {first} --help");
    }
}

#[test]
fn misuse_is_one_line_and_exit_2() {
    for (name, args, says) in [
        ("run-server.sh", &[][..], "<CONFIG>"),
        ("run-server.sh", &["configs/3nodes.txt"][..], "<ID>"),
        ("run-client.sh", &["localhost:9001"][..], "<BASE_DIR>"),
        ("run-cluster.sh", &[][..], "<CONFIG>"),
        (
            "run-server.sh",
            &["configs/3nodes.txt", "0", "--no-such-flag"][..],
            "--no-such-flag",
        ),
        ("run-tester.sh", &["9001"][..], "is not HOST:PORT"),
    ] {
        let started = Instant::now();
        let out = script(name, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name} {args:?}: one line:\n{stderr}"
        );
        assert!(
            stderr.contains(says),
            "{name} {args:?} says {says}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} {args:?} answered at once"
        );
    }
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_surfstore"))
        .arg("--version")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.starts_with(&format!("surfstore {} (", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let commit = stdout
        .trim_end()
        .trim_end_matches(')')
        .rsplit('(')
        .next()
        .unwrap();
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output();
    match git {
        Ok(g) if g.status.success() => {
            let head = text(&g.stdout);
            assert!(commit.starts_with(head.trim()), "{commit} is HEAD {head}");
        }
        _ => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn the_tester_takes_its_members_from_config_alone() {
    let dir = std::env::temp_dir().join(format!("cli-help-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.txt");
    // Nothing listens on this port: the tester asks the config's first
    // member, and says it cannot reach it.
    std::fs::write(&config, "M: 1\nmetadata0: localhost:9899\n").unwrap();
    let out = script(
        "run-tester.sh",
        &[
            "--config",
            config.to_str().unwrap(),
            "--connect-timeout",
            "500ms",
        ],
    );
    let said = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot reach the cluster"), "{said}");
    assert!(said.contains("node 0 (localhost:9899)"), "{said}");
    assert!(!said.contains("required"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a one-node `run-server.sh` on `port` with `args`, waits until it
/// answers, stops it with SIGHUP; its exit code and its stderr, piped.
fn serve_then_hup(name: &str, port: u16, args: &[&str]) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.txt");
    std::fs::write(&config, format!("M: 1\nmetadata0: localhost:{port}\n")).unwrap();
    let child = Command::new(format!("{}/run-server.sh", repo()))
        .arg(&config)
        .arg("0")
        .arg("--in-memory")
        .args(args)
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = surfstore::xmlrpc::client::Client::new(
        &format!("localhost:{port}"),
        Duration::from_secs(1),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    rt.block_on(async {
        while client.call("surfstore.ping", &[]).await.is_err() {
            assert!(Instant::now() < deadline, "the node never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let ok = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code(), text(&out.stderr))
}

#[test]
fn a_server_stopped_with_sighup_exits_0_and_logs_plain_text() {
    let (code, log) = serve_then_hup("hup", 9898, &[]);
    assert_eq!(code, Some(0), "SIGHUP is a clean stop:\n{log}");
    assert!(
        log.contains("starting surfstore server") && log.contains("version="),
        "{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains('\x1b'), "no ANSI escapes in a pipe:\n{log}");
}

#[test]
fn log_format_json_is_one_object_per_line_and_log_level_filters() {
    let (code, log) = serve_then_hup("json", 9897, &["--log-format", "json"]);
    assert_eq!(code, Some(0), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let start = lines
        .iter()
        .find(|l| l["fields"]["message"] == "starting surfstore server")
        .unwrap_or_else(|| panic!("no start line in {log}"));
    assert_eq!(start["level"], "INFO", "{start}");
    assert!(start["fields"]["version"].is_string(), "{start}");
    assert!(start["fields"]["fsync"].is_string(), "{start}");
    assert!(!log.contains('\x1b'), "{log}");

    let (code, log) = serve_then_hup("warn", 9897, &["--log-level", "warn"]);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains("starting surfstore server"),
        "INFO is filtered out: {log}"
    );

    let bad = script("run-server.sh", &["c.txt", "0", "--log-level", "loud=="]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--log-level"), "{err}");
}

#[test]
fn durations_take_one_style_and_the_old_spellings_still_work() {
    let bad = script("run-server.sh", &["c.txt", "0", "--heartbeat", "50"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(err.contains("has no unit: write 50s or 50ms"), "{err}");
    let bad = script("run-tester.sh", &["localhost:1", "--duration", "10"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    // Both spellings of one flag at once is a misuse.
    let both = script(
        "run-server.sh",
        &["c.txt", "0", "--heartbeat", "50ms", "--heartbeat-ms", "50"],
    );
    assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
    // The old spelling and the new one mean the same: a heartbeat above the
    // election timeout is refused by either, naming the timing.
    for flags in [
        &["--heartbeat-ms", "400"][..],
        &["--heartbeat", "400ms"][..],
    ] {
        let (code, log) = {
            let dir = std::env::temp_dir().join(format!("cli-dur-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("c.txt");
            std::fs::write(&config, "M: 1\nmetadata0: localhost:9896\n").unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_surfstore"))
                .arg("server")
                .arg(&config)
                .arg("0")
                .arg("--in-memory")
                .args(flags)
                .output()
                .unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            (out.status.code(), text(&out.stderr))
        };
        assert_eq!(code, Some(1), "{flags:?}: {log}");
        assert!(log.contains("timing"), "{flags:?}: {log}");
    }
}

#[test]
fn completions_name_every_subcommand_and_the_bash_script_parses() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_surfstore"))
            .args(["completions", shell])
            .output()
            .expect("surfstore runs");
        assert_eq!(out.status.code(), Some(0), "completions {shell}");
        let script = text(&out.stdout);
        for word in ["server", "cluster", "ctl", "partitions", "data-dir"] {
            assert!(script.contains(word), "{shell} completions name {word}");
        }
        if shell == "bash" {
            let path = std::env::temp_dir().join(format!("surfstore-{}.bash", std::process::id()));
            std::fs::write(&path, &out.stdout).unwrap();
            let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
            let _ = std::fs::remove_file(&path);
            assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
        }
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_surfstore"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        text(&bad.stderr).trim().lines().count(),
        1,
        "{}",
        text(&bad.stderr)
    );
}
