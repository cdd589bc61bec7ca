//! `GET /metrics` on each node's own port, against known activity: a
//! 3-node cluster on disk (so the write-ahead log fsyncs) takes N
//! `updatefile`s, M `putblock`s, calls of methods that do not exist, a
//! malformed body and a call to a follower; then every node's exposition is
//! parsed by a strict OpenMetrics text parser (below) and its numbers
//! checked against that activity. The XML-RPC path still answers GET with
//! 405.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use surfstore::node::{self, NodeOptions, RunningNode};
use surfstore::xmlrpc::client::{CallError, Client};
use surfstore::xmlrpc::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

// ---- a strict parser of the OpenMetrics text format ------------------------

#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    unit: Option<String>,
    /// (sample name, labels, value), in the order given.
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// Families by name. Panics, naming the line, on anything the format does
/// not allow: a sample outside its family or with a suffix its type does
/// not have, a family declared twice, a series given twice, bad label
/// syntax, a value that is not a number, text after `# EOF` or no `# EOF`.
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    let mut eof = false;
    for (n, line) in text.split_terminator('\n').enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        assert!(!eof, "{}: text after # EOF", at());
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (what, name, arg) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            assert!(valid_name(&name), "{}: bad name", at());
            match what {
                "HELP" => {
                    assert!(!families.contains_key(&name), "{}: declared twice", at());
                    families.insert(
                        name.clone(),
                        Family {
                            help: arg,
                            ..Default::default()
                        },
                    );
                    current = Some(name);
                }
                "TYPE" | "UNIT" => {
                    assert_eq!(
                        current.as_ref(),
                        Some(&name),
                        "{}: not the open family",
                        at()
                    );
                    let f = families.get_mut(&name).unwrap();
                    if what == "TYPE" {
                        assert!(
                            ["counter", "gauge", "histogram"].contains(&arg.as_str()),
                            "{}: type",
                            at()
                        );
                        f.kind = arg;
                    } else {
                        assert!(name.ends_with(&format!("_{arg}")), "{}: unit suffix", at());
                        f.unit = Some(arg);
                    }
                }
                _ => panic!("{}: unknown comment", at()),
            }
            continue;
        }
        let family = current
            .clone()
            .unwrap_or_else(|| panic!("{}: no family", at()));
        let f = families.get_mut(&family).unwrap();
        assert!(!f.kind.is_empty(), "{}: sample before TYPE", at());
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{}: labels", at()));
                (
                    name,
                    parse_labels(body).unwrap_or_else(|e| panic!("{}: {e}", at())),
                )
            }
            None => (series, BTreeMap::new()),
        };
        let suffixes: &[&str] = match f.kind.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            _ => &["_sum", "_count", "_bucket"],
        };
        assert!(
            suffixes.iter().any(|s| name == format!("{family}{s}")),
            "{}: not a sample of {} {family}",
            at(),
            f.kind
        );
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{}: value", at())),
        };
        assert!(seen.insert(series.to_owned()), "{}: series twice", at());
        f.samples.push((name.to_owned(), labels, value));
    }
    assert!(eof, "no # EOF at the end");
    families
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes.
fn parse_labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !valid_name(key) {
            return Err(format!("label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if out.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err("trailing comma".into()),
            None if rest.is_empty() => rest,
            None => return Err(format!("junk after a label: {rest:?}")),
        };
    }
    Ok(out)
}

/// The value of `name` (a sample name) with exactly `labels`.
fn value(m: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.values()
        .flat_map(|f| &f.samples)
        .find(|(n, l, _)| n == name && *l == want)
        .map(|s| s.2)
}

fn get(m: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(m, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// Checks a histogram's shape: buckets in increasing `le` with
/// non-decreasing counts, ending at `+Inf` equal to `_count`. Returns
/// (count, sum).
fn histogram(m: &BTreeMap<String, Family>, family: &str) -> (f64, f64) {
    let f = &m[family];
    assert_eq!(f.kind, "histogram", "{family}");
    let mut buckets: Vec<(f64, f64)> = f
        .samples
        .iter()
        .filter(|(n, _, _)| n.ends_with("_bucket"))
        .map(|(_, l, v)| {
            let le = match l["le"].as_str() {
                "+Inf" => f64::INFINITY,
                s => s.parse().unwrap(),
            };
            (le, *v)
        })
        .collect();
    assert!(buckets.len() > 2, "{family}: buckets");
    let given = buckets.clone();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert_eq!(given, buckets, "{family}: buckets out of order");
    for w in buckets.windows(2) {
        assert!(w[0].0 < w[1].0, "{family}: le twice");
        assert!(w[0].1 <= w[1].1, "{family}: not cumulative: {w:?}");
    }
    let count = get(m, &format!("{family}_count"), &[]);
    let sum = get(m, &format!("{family}_sum"), &[]);
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count), "{family}");
    assert!(sum >= 0.0);
    (count, sum)
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    let good = "# HELP a_x help\n# TYPE a_x counter\na_x_total{k=\"v\\\"\"} 1\n# EOF\n";
    assert_eq!(get(&parse(good), "a_x_total", &[("k", "v\"")]), 1.0);
    for bad in [
        "# HELP a h\n# TYPE a counter\na_total 1\n",
        "# HELP a h\n# TYPE a counter\na 1\n# EOF\n",
        "# HELP a h\n# TYPE a gauge\na{k=\"v\",} 1\n# EOF\n",
        "# HELP a h\n# TYPE a gauge\na 1\na 2\n# EOF\n",
        "# HELP a h\n# TYPE a gauge\na x\n# EOF\n",
        "a 1\n# EOF\n",
        "# HELP a h\n# TYPE a gauge\n# EOF\na 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

// ---- the cluster -----------------------------------------------------------

/// Binds `n` free ports of 9900-9909 on loopback.
async fn listeners(n: usize) -> Vec<TcpListener> {
    let mut out = Vec::new();
    for port in 9900..=9909 {
        if out.len() == n {
            break;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
            out.push(l);
        }
    }
    assert_eq!(out.len(), n, "fewer than {n} free ports in 9900-9909");
    out
}

struct Nodes {
    nodes: Vec<RunningNode>,
    addrs: Vec<String>,
    dir: PathBuf,
    shutdown: watch::Sender<bool>,
}

impl Nodes {
    /// Stops every node and waits for their drivers, then removes the data.
    async fn stop(self) {
        let _ = self.shutdown.send(true);
        for n in self.nodes {
            let _ = tokio::time::timeout(Duration::from_secs(5), n.driver).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(n: usize) -> Nodes {
    let listeners = listeners(n).await;
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let dir = std::env::temp_dir().join(format!("surfstore-metrics-{}", rand::random::<u64>()));
    let (tx, rx) = watch::channel(false);
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let mut opts = NodeOptions::new(i as u64, addrs.clone());
        opts.timing = common::fast_timing();
        opts.seed = 7000 + i as u64;
        opts.data_dir = Some(dir.join(format!("node{i}")));
        nodes.push(node::start_on(opts, l, rx.clone()).await.expect("starts"));
    }
    Nodes {
        nodes,
        addrs,
        dir,
        shutdown: tx,
    }
}

impl Nodes {
    /// Polls (with a deadline) until one node leads and all know it.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st: Vec<_> = self.nodes.iter().map(|n| n.handle.status()).collect();
            let leaders: Vec<usize> = (0..st.len()).filter(|&i| st[i].is_leader()).collect();
            if let [l] = leaders[..] {
                if st.iter().all(|s| s.raft.leader == Some(l as u64)) {
                    return l;
                }
            }
            assert!(Instant::now() < deadline, "no single leader: {st:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls (with a deadline) until every node applied `index`.
    async fn all_applied(&self, index: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .nodes
            .iter()
            .any(|n| n.handle.status().raft.applied_index < index)
        {
            assert!(Instant::now() < deadline, "not all applied {index}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One HTTP/1.1 request over a fresh connection: status, headers
/// (lower-case names), body.
async fn http(addr: &str, head: &str, body: &[u8]) -> (u16, BTreeMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{head} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {resp}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (code, headers, body.to_owned())
}

async fn scrape(addr: &str) -> BTreeMap<String, Family> {
    let (code, headers, body) = http(addr, "GET /metrics", b"").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    parse(&body)
}

fn fault(r: &Result<Value, CallError>) -> i32 {
    match r {
        Err(CallError::Fault(f)) => f.code,
        other => panic!("expected a fault, got {other:?}"),
    }
}

const N: usize = 20;
const M: usize = 5;
const BAD: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_activity_of_a_three_node_cluster() {
    let c = start(3).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let to_leader = Client::new(&c.addrs[leader], Duration::from_secs(30));

    for i in 0..N {
        let ok = to_leader
            .call(
                "surfstore.updatefile",
                &[
                    Value::String(format!("file-{i}")),
                    Value::Int(1),
                    Value::Array(vec![Value::String(format!("not-a-block-{i}"))]),
                ],
            )
            .await
            .unwrap();
        assert_eq!(ok, Value::Bool(true));
    }
    let mut block_bytes = 0;
    for j in 0..M {
        let data = vec![j as u8; 100 + j];
        block_bytes += data.len();
        to_leader
            .call("surfstore.putblock", &[Value::Base64(data)])
            .await
            .unwrap();
    }
    for k in 0..BAD {
        // Three names under the prefix, two without it: all are "other".
        let name = if k < 3 {
            format!("surfstore.no_such_method_{k}")
        } else {
            format!("nope{k}")
        };
        assert_eq!(fault(&to_leader.call(&name, &[]).await), 4);
    }
    let (code, _, body) = http(&c.addrs[leader], "POST /RPC2", b"<methodCall><oops").await;
    assert_eq!(code, 200);
    assert!(body.contains("<name>faultCode</name>"), "{body}");
    let to_follower = Client::new(&c.addrs[follower], Duration::from_secs(30));
    let redirected = to_follower
        .call(
            "surfstore.updatefile",
            &[
                Value::String("x".into()),
                Value::Int(1),
                Value::Array(vec![]),
            ],
        )
        .await;
    assert_eq!(fault(&redirected), 2);
    let commit = c.nodes[leader].handle.status().raft.commit_index;
    c.all_applied(commit).await;

    let scraped: Vec<_> = {
        let mut v = Vec::new();
        for a in &c.addrs {
            v.push(scrape(a).await);
        }
        v
    };

    // Raft state: one leader, every node past term 0, indexes in order.
    let leaders: Vec<usize> = (0..3)
        .filter(|&i| get(&scraped[i], "surfstore_role", &[("role", "leader")]) == 1.0)
        .collect();
    assert_eq!(leaders, vec![leader]);
    for (i, m) in scraped.iter().enumerate() {
        for (name, f) in m {
            assert!(!f.help.is_empty(), "node {i}: {name} has no HELP");
        }
        let roles: f64 = ["follower", "pre-candidate", "candidate", "leader"]
            .iter()
            .map(|r| get(m, "surfstore_role", &[("role", *r)]))
            .sum();
        assert_eq!(roles, 1.0, "node {i}: one role");
        assert!(get(m, "surfstore_term", &[]) >= 1.0, "node {i}");
        let (applied, commit_i, last) = (
            get(m, "surfstore_applied_index", &[]),
            get(m, "surfstore_commit_index", &[]),
            get(m, "surfstore_last_index", &[]),
        );
        assert!(
            applied >= N as f64 && applied <= commit_i && commit_i <= last,
            "node {i}"
        );
        assert_eq!(
            get(m, "surfstore_apply_lag", &[]),
            commit_i - applied,
            "node {i}"
        );
        assert_eq!(get(m, "surfstore_snapshot_index", &[]), 0.0, "node {i}");
        assert_eq!(get(m, "surfstore_files", &[]), N as f64, "node {i}");
        assert_eq!(get(m, "surfstore_crashed", &[]), 0.0, "node {i}");
        assert!(
            get(m, "surfstore_commits_total", &[]) >= N as f64,
            "node {i}"
        );
        assert!(
            get(m, "surfstore_leader_changes_total", &[]) >= 1.0,
            "node {i}"
        );
        // The log's fsyncs: every entry went through one on every node.
        let (count, _) = histogram(m, "surfstore_wal_fsync_seconds");
        let (count_e, entries) = histogram(m, "surfstore_wal_fsync_entries");
        assert!(count >= 1.0, "node {i}");
        assert_eq!(count, count_e, "node {i}: one batch size per fsync");
        assert!(entries >= N as f64, "node {i}: {entries} entries fsynced");
        // This scrape's own connection is open.
        assert!(get(m, "surfstore_http_connections_open", &[]) >= 1.0);
        assert!(get(m, "surfstore_http_requests_total", &[]) >= 1.0);
        // The other two members, by id.
        let peers: Vec<String> = m["surfstore_peer_inflight"]
            .samples
            .iter()
            .map(|s| s.1["peer"].clone())
            .collect();
        let others: Vec<String> = (0..3).filter(|&p| p != i).map(|p| p.to_string()).collect();
        assert_eq!(peers, others, "node {i}");
    }
    let m = &scraped[leader];
    assert!(get(m, "surfstore_commit_index", &[]) >= N as f64);
    assert_eq!(get(m, "surfstore_proposals_total", &[]), N as f64);
    assert!(get(m, "surfstore_elections_total", &[]) >= 1.0);
    for p in (0..3).filter(|&p| p != leader) {
        let p = p.to_string();
        assert!(get(m, "surfstore_peer_rtt_seconds", &[("peer", &p)]) > 0.0);
        assert!(get(m, "surfstore_peer_calls_total", &[("peer", &p)]) >= 1.0);
    }

    // Calls and faults by method.
    let calls = |m, method| get(m, "surfstore_rpc_calls_total", &[("method", method)]);
    let faults = |m, method, code| {
        value(
            m,
            "surfstore_rpc_faults_total",
            &[("method", method), ("code", code)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(calls(m, "updatefile"), N as f64);
    assert_eq!(calls(m, "putblock"), M as f64);
    assert_eq!(calls(m, "other"), BAD as f64);
    assert_eq!(faults(m, "other", "4"), BAD as f64);
    assert_eq!(faults(m, "updatefile", "2"), 0.0);
    assert_eq!(get(m, "surfstore_http_malformed_calls_total", &[]), 1.0);
    // Followers took the leader's appends and block pushes.
    let f = &scraped[follower];
    assert_eq!(calls(f, "updatefile"), 1.0);
    assert_eq!(faults(f, "updatefile", "2"), 1.0);
    assert!(calls(f, "appendEntries") >= 1.0);
    let method_labels = m["surfstore_rpc_calls"].samples.len();
    assert_eq!(
        method_labels,
        node::metrics::METHODS.len() + 1,
        "every known method and other"
    );

    // Blocks: the leader holds every one; a majority holds each.
    assert_eq!(get(m, "surfstore_blocks", &[]), M as f64);
    assert_eq!(get(m, "surfstore_block_bytes", &[]), block_bytes as f64);
    let held: f64 = scraped
        .iter()
        .map(|m| get(m, "surfstore_blocks", &[]))
        .sum();
    assert!(held >= 2.0 * M as f64, "{held} blocks held in all");

    // A crashed node still answers /metrics, and says so.
    c.nodes[follower].handle.crash().await.unwrap();
    let f = scrape(&c.addrs[follower]).await;
    assert_eq!(get(&f, "surfstore_crashed", &[]), 1.0);
    assert_eq!(get(&f, "surfstore_role", &[("role", "leader")]), 0.0);

    // Python's clients still get 405 on GET of the XML-RPC path.
    assert_eq!(http(&c.addrs[leader], "GET /RPC2", b"").await.0, 405);
    assert_eq!(http(&c.addrs[leader], "GET /", b"").await.0, 405);
    assert_eq!(http(&c.addrs[leader], "POST /metrics", b"").await.0, 404);
    c.stop().await;
}
