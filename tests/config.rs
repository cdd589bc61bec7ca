//! The config file parser: good files parse, every class of bad file is refused
//! with a message that names the file and the line to blame.

use std::path::{Path, PathBuf};

use surfstore::config::{self, ClusterConfig, ConfigError};

const FILE: &str = "cluster.txt";

fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    config::parse(text, Path::new(FILE))
}

/// Parses `text`, expects a refusal, checks it starts `cluster.txt:LINE:` and
/// mentions `needle`, and returns the error for any further checks.
#[track_caller]
fn refused(text: &str, line: usize, needle: &str) -> ConfigError {
    let err = parse(text).expect_err("the file should be refused");
    let msg = err.to_string();
    let prefix = format!("{FILE}:{line}: ");
    assert!(
        msg.starts_with(&prefix),
        "`{msg}` does not start with `{prefix}`"
    );
    assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
    err
}

// ---------------------------------------------------------------- good files

#[test]
fn parses_the_api_example() {
    let cfg = parse(
        "M: 5\nmetadata0: localhost:9001\nmetadata1: localhost:9002\nmetadata2: localhost:9003\n\
         metadata3: localhost:9004\nmetadata4: localhost:9005\n",
    )
    .unwrap();
    assert_eq!(cfg.len(), 5);
    assert_eq!(cfg.member(0).unwrap(), "localhost:9001");
    assert_eq!(cfg.member(4).unwrap(), "localhost:9005");
    assert_eq!(cfg.path, PathBuf::from(FILE));
}

#[test]
fn tolerates_blank_lines_crlf_trailing_whitespace_and_any_order() {
    let cfg = parse(
        "\r\n\r\nM: 3   \r\n\r\n  metadata2: 127.0.0.1:9003\t\r\nmetadata0:localhost:9001\r\n\
         \r\nmetadata1 :  [::1]:9002  \r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        cfg.members,
        vec!["localhost:9001", "[::1]:9002", "127.0.0.1:9003"]
    );
}

#[test]
fn a_single_node_cluster_and_no_final_newline() {
    let cfg = parse("M: 1\nmetadata0: example.com:65535").unwrap();
    assert_eq!(cfg.members, vec!["example.com:65535"]);
}

#[test]
fn member_out_of_range_names_the_file_and_valid_ids() {
    let cfg = parse("M: 3\nmetadata0: a:1\nmetadata1: a:2\nmetadata2: a:3\n").unwrap();
    let msg = cfg.member(3).unwrap_err().to_string();
    assert!(msg.starts_with("cluster.txt: "), "{msg}");
    assert!(msg.contains("id 3") && msg.contains("0 to 2"), "{msg}");
}

#[test]
fn the_shipped_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let three = config::load(&root.join("configs/3nodes.txt")).unwrap();
    assert_eq!(
        three.members,
        vec!["localhost:9001", "localhost:9002", "localhost:9003"]
    );
    let five = config::load(&root.join("configs/5nodes.txt")).unwrap();
    assert_eq!(five.len(), 5);
    assert_eq!(five.member(4).unwrap(), "localhost:9005");
}

// ---------------------------------------------------------------- the M line

#[test]
fn empty_file_is_missing_m() {
    refused("", 1, "missing the `M: <n>` line");
    refused("\n  \n\r\n", 1, "missing the `M: <n>` line");
}

#[test]
fn first_line_not_m() {
    refused("\nmetadata0: localhost:9001\n", 2, "expected `M: <n>`");
    refused("N: 3\n", 1, "expected `M: <n>`");
    refused("M 3\n", 1, "expected `M: <n>`");
}

#[test]
fn m_not_a_positive_integer() {
    refused("M: three\n", 1, "positive integer");
    refused("M: -3\n", 1, "positive integer");
    refused("M: 3.0\n", 1, "positive integer");
    refused("M:\n", 1, "found nothing");
}

#[test]
fn m_zero() {
    refused("M: 0\n", 1, "at least one member");
}

#[test]
fn m_absurdly_large() {
    refused("M: 100000\n", 1, "at most");
    refused("M: 99999999999999999999999999\n", 1, "at most");
}

#[test]
fn m_twice() {
    refused("M: 1\nmetadata0: a:1\n\nM: 1\n", 4, "second time");
}

// ---------------------------------------------------------------- member lines

#[test]
fn count_does_not_match_names_the_missing_ids() {
    let err = refused(
        "\nM: 3\nmetadata0: a:1\n",
        2,
        "M is 3 but 1 member line(s) follow",
    );
    assert!(err.to_string().contains("metadata1, metadata2"), "{err}");
}

#[test]
fn missing_id_in_the_middle() {
    refused(
        "M: 3\nmetadata0: a:1\nmetadata2: a:3\n",
        1,
        "missing metadata1",
    );
}

#[test]
fn too_many_lines_is_an_out_of_range_id() {
    refused(
        "M: 2\nmetadata0: a:1\nmetadata1: a:2\nmetadata2: a:3\n",
        4,
        "out of range",
    );
}

#[test]
fn duplicate_id() {
    let err = refused(
        "M: 3\nmetadata0: a:1\nmetadata1: a:2\nmetadata1: a:3\n",
        4,
        "duplicate id",
    );
    assert!(err.to_string().contains("first on line 3"), "{err}");
}

#[test]
fn id_out_of_range() {
    refused(
        "M: 2\nmetadata0: a:1\nmetadata7: a:2\n",
        3,
        "ids run from 0 to 1",
    );
    refused(
        "M: 2\nmetadata99999999999999999999999: a:2\n",
        2,
        "out of range",
    );
}

#[test]
fn malformed_lines() {
    refused("M: 2\nmetadata0 localhost:9001\n", 2, "malformed");
    refused("M: 2\nmeta0: localhost:9001\n", 2, "malformed");
    refused("M: 2\nmetadata: localhost:9001\n", 2, "malformed");
    refused("M: 2\nmetadata-1: localhost:9001\n", 2, "malformed");
    refused("M: 2\nmetadata+1: localhost:9001\n", 2, "malformed");
    refused("M: 2\n# a comment\n", 2, "malformed");
}

#[test]
fn bad_addresses() {
    let cases = [
        ("localhost", "missing `:port`"),
        ("localhost:", "missing port"),
        ("localhost:0", "port 0"),
        ("localhost:65536", "larger than 65535"),
        ("localhost:99999999999", "larger than 65535"),
        ("localhost:http", "not a number"),
        ("localhost:+80", "not a number"),
        (":9001", "empty host"),
        ("", "missing `:port`"),
        ("::1:9001", "brackets"),
        ("local host:9001", "whitespace"),
    ];
    for (addr, why) in cases {
        let text = format!("M: 1\n\nmetadata0: {addr}\n");
        refused(&text, 3, why);
    }
}

#[test]
fn duplicate_address() {
    let err = refused(
        "M: 3\nmetadata0: localhost:9001\nmetadata1: localhost:9002\nmetadata2: LocalHost:9001\n",
        4,
        "duplicate address",
    );
    assert!(err.to_string().contains("metadata0 on line 2"), "{err}");
}

// ---------------------------------------------------------------- the file itself

#[test]
fn unreadable_file() {
    let path = std::env::temp_dir().join("surfstore-config-test-does-not-exist.txt");
    let msg = config::load(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read: ", path.display())),
        "{msg}"
    );
}

#[test]
fn invalid_utf8_names_the_line() {
    let dir = std::env::temp_dir().join(format!("surfstore-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad-utf8.txt");
    std::fs::write(&path, b"M: 1\n\nmetadata0: local\xffhost:9001\n").unwrap();
    let msg = config::load(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(msg, format!("{}:3: not valid UTF-8", path.display()));
}

#[test]
fn load_reads_a_good_file_and_keeps_its_path() {
    let dir = std::env::temp_dir().join(format!("surfstore-config-good-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("two.txt");
    std::fs::write(
        &path,
        "M: 2\nmetadata1: localhost:9002\nmetadata0: localhost:9001\n",
    )
    .unwrap();
    let cfg = config::load(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    let cfg = cfg.unwrap();
    assert_eq!(cfg.members, vec!["localhost:9001", "localhost:9002"]);
    assert_eq!(cfg.path, path);
}
