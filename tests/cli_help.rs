//! The command-line conventions every `run-*.sh` and subcommand keeps:
//! `--help` is the subcommand's full help (its flags and exit codes) with
//! exit 0; a misuse is one line on stderr saying what is wrong, exit 2;
//! `--version` names the commit; a bad address is refused at once; the
//! tester takes its members from `--config` alone; a server stopped with
//! SIGHUP exits 0, and its log, piped, carries no ANSI escapes.

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
            &["--election-min-ms", "--data-dir", "--fsync"][..],
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

#[test]
fn a_server_stopped_with_sighup_exits_0_and_logs_plain_text() {
    let dir = std::env::temp_dir().join(format!("cli-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.txt");
    std::fs::write(&config, "M: 1\nmetadata0: localhost:9898\n").unwrap();
    let child = Command::new(format!("{}/run-server.sh", repo()))
        .arg(&config)
        .arg("0")
        .arg("--in-memory")
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = surfstore::xmlrpc::client::Client::new("localhost:9898", Duration::from_secs(1));
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
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "SIGHUP is a clean stop:\n{log}");
    assert!(
        log.contains("starting surfstore server") && log.contains("version="),
        "{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains('\x1b'), "no ANSI escapes in a pipe:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
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
