//! TLS end to end: `run-server.sh` nodes with certificates made by
//! `surfstore cert` elect and replicate over HTTPS and serve Python's stdlib
//! client (which fails without the CA; a plain http:// call is refused and
//! the node goes on); with `--secret-file` too, an unsigned `crash` is fault
//! 6 and the tester passes; in process, the handshake is bounded by the
//! server's `header_read_timeout` and holds a connection slot, plain HTTP is
//! answered 400, the pipelining client keeps its promises over TLS, and an
//! in-process cluster (run-cluster.sh's) replicates over HTTPS.

mod common;
mod procs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use surfstore::cluster::{Cluster, ClusterOptions};
use surfstore::node::error::FAULT_UNAUTHORIZED;
use surfstore::tls::NodeTls;
use surfstore::xmlrpc::client::{CallError, Client, Transport};
use surfstore::xmlrpc::codec::MethodCall;
use surfstore::xmlrpc::pipeline::Connection;
use surfstore::xmlrpc::server::{self, CallContext, Handler, ServerOptions};
use surfstore::xmlrpc::{Fault, Value};

/// The process tests run one at a time: each starts three nodes, and the
/// machine has two cores.
static PROCESSES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "surfstore-tls-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Certs {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Certs {
    fn in_dir(dir: &Path) -> Certs {
        Certs {
            cert: dir.join("node.pem"),
            key: dir.join("node-key.pem"),
            ca: dir.join("ca.pem"),
        }
    }

    /// The three node flags.
    fn node_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }

    fn load(&self) -> NodeTls {
        NodeTls::load(&self.cert, &self.key, &self.ca).unwrap()
    }
}

/// `surfstore cert --config CONFIG --out DIR/certs` for a config of `ports`
/// on localhost, as a user would run it.
fn make_certs(dir: &Path, ports: &[u16]) -> Certs {
    let config = dir.join("config.txt");
    let mut text = format!("M: {}\n", ports.len());
    for (i, p) in ports.iter().enumerate() {
        text.push_str(&format!("metadata{i}: localhost:{p}\n"));
    }
    std::fs::write(&config, text).unwrap();
    let out = dir.join("certs");
    let run = Command::new(env!("CARGO_BIN_EXE_surfstore"))
        .arg("cert")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "surfstore cert failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Certs::in_dir(&out)
}

/// In-process certificates naming localhost and 127.0.0.1.
fn test_certs(dir: &Path) -> Certs {
    let names = surfstore::tls::cert::names(&[]);
    let g = surfstore::tls::cert::generate(&names, 1).unwrap();
    surfstore::tls::cert::write(dir, &g, false).unwrap();
    Certs::in_dir(dir)
}

/// Runs `cmd` to its end off the runtime's workers.
async fn output(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the command starts")
}

fn tls_transport(ca: &Path) -> Transport {
    Transport::default().with_tls(Some(surfstore::tls::client_config(ca).unwrap()))
}

fn tls_clients(ports: &[u16], transport: &Transport) -> Vec<Client> {
    ports
        .iter()
        .map(|p| {
            Client::with_transport(
                &format!("localhost:{p}"),
                Duration::from_secs(2),
                transport.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_of_run_server_processes_serves_python_stdlib_over_https() {
    let _one = PROCESSES.lock().await;
    let ports = [9850, 9851, 9852];
    let dir = TempDir::new("procs");
    let certs = make_certs(&dir.0, &ports);
    let nodes = procs::Nodes::start(
        "surfstore-tls-procs",
        &ports,
        &certs.node_args(),
        "info",
        Stdio::null,
    );
    let clients = tls_clients(&ports, &tls_transport(&certs.ca));
    // A leader means the peers' vote requests went over HTTPS.
    procs::wait_for_leader(&clients).await;

    let mut python = Command::new("python3");
    python
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/client.py"))
        .arg(&certs.ca)
        .args(ports.iter().map(|p| p.to_string()));
    let out = output(python).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("tls-python: PASS"),
        "tests/tls/client.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("CERTIFICATE_VERIFY_FAILED"),
        "the no-CA client failed verification: {stdout}"
    );

    // Our own client without the CA fails the same way, before sending.
    let plain = Client::new(&format!("localhost:{}", ports[0]), Duration::from_secs(2));
    let r = plain.call("surfstore.ping", &[]).await;
    match &r {
        Err(CallError::Connect(e)) => assert!(e.contains("serves HTTPS only"), "{e}"),
        other => panic!("plain HTTP to a TLS port: {other:?}"),
    }
    let foreign = TempDir::new("foreign");
    let other_ca = test_certs(&foreign.0).ca;
    let wrong = tls_clients(&ports[..1], &tls_transport(&other_ca));
    let r = wrong[0].call("surfstore.ping", &[]).await;
    match &r {
        Err(CallError::Connect(e)) => assert!(e.contains("invalid peer certificate"), "{e}"),
        other => panic!("a client trusting another CA: {other:?}"),
    }
    // Every node still serves, and has applied the script's two writes.
    for c in &clients {
        let v = c
            .call(
                "surfstore.tester_getversion",
                &[Value::String("tls.txt".into())],
            )
            .await;
        assert!(matches!(v, Ok(Value::Int(1 | 2))), "{v:?}");
    }
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_secret_refuses_unsigned_crash_and_the_tester_passes() {
    let _one = PROCESSES.lock().await;
    let ports = [9853, 9854, 9855];
    let dir = TempDir::new("secret");
    let certs = make_certs(&dir.0, &ports);
    let secret = dir.0.join("cluster.secret");
    std::fs::write(&secret, format!("{:032x}\n", rand::random::<u128>())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut args = certs.node_args();
    args.extend(["--secret-file".into(), secret.display().to_string()]);
    let nodes = procs::Nodes::start("surfstore-tls-secret", &ports, &args, "info", Stdio::null);
    let clients = tls_clients(&ports, &tls_transport(&certs.ca));
    procs::wait_for_leader(&clients).await;

    // Over HTTPS, an admin call without the secret's proof is refused.
    let r = clients[0].call("surfstore.crash", &[]).await;
    assert_eq!(
        r.as_ref().err().and_then(CallError::fault).map(|f| f.code),
        Some(FAULT_UNAUTHORIZED),
        "{r:?}"
    );
    assert_eq!(
        clients[0].call("surfstore.isCrashed", &[]).await.unwrap(),
        Value::Bool(false)
    );

    // The tester signs (crash and restore included) and talks HTTPS. (Not
    // `crashed-state`: it crashes one node twice within a second, and the
    // second, byte-identical signed `crash` is refused as a replay, with or
    // without TLS.)
    let mut tester = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/run-tester.sh"));
    tester
        .arg(format!("localhost:{}", ports[0]))
        .args(["--only", "basics,replication,minority-crash", "--seed", "1"])
        .arg("--tls-ca")
        .arg(&certs.ca)
        .arg("--secret-file")
        .arg(&secret)
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"));
    let out = output(tester).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("3 of 3 scenarios passed"),
        "the tester failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    drop(nodes);
}

/// `echo(x)` answers `x`; `len(s, ms)` answers the length of string `s`
/// after `ms` milliseconds.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    async fn call(&self, call: MethodCall, _: CallContext) -> Result<Value, Fault> {
        match (call.method.as_str(), call.params.first()) {
            ("len", Some(Value::String(s))) => {
                let ms = call.params.get(1).and_then(Value::as_i64).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                Ok(Value::Int(s.len() as i32))
            }
            (_, Some(v)) => Ok(v.clone()),
            _ => Ok(Value::Nil),
        }
    }
}

/// A TLS server of [`Echo`] on 127.0.0.1 with `opts`; stops when the
/// returned sender is dropped.
async fn tls_server(certs: &Certs, opts: ServerOptions) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    tls_server_on(listener, certs, opts).await
}

async fn tls_server_on(
    listener: TcpListener,
    certs: &Certs,
    opts: ServerOptions,
) -> (String, oneshot::Sender<()>) {
    let addr = listener.local_addr().unwrap().to_string();
    let (server_config, _) = surfstore::tls::server_config(&certs.cert, &certs.key).unwrap();
    let opts = ServerOptions {
        tls: Some(server_config),
        ..opts
    };
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, Echo, opts, async move {
        let _ = stop_rx.await;
    }));
    (addr, stop)
}

/// Waits until the server closes `s` (end of stream or a reset); returns
/// when, or panics after `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> Instant {
    let mut buf = [0u8; 256];
    let wait = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                // A TLS alert before the close.
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .expect("the server closed the connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_within_the_header_timeout_and_others_are_served() {
    let dir = TempDir::new("stall");
    let certs = test_certs(&dir.0);
    let bound = Duration::from_millis(1500);
    let opts = ServerOptions {
        header_read_timeout: bound,
        max_connections: 3,
        ..Default::default()
    };
    let stats = opts.stats.clone();
    let (addr, _stop) = tls_server(&certs, opts).await;

    // One connection sends nothing; another stalls inside its ClientHello.
    let start = Instant::now();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();

    // The accept loop is not held up: a real client is served meanwhile.
    let client = Client::with_transport(&addr, Duration::from_secs(5), tls_transport(&certs.ca));
    let v = client
        .call("echo", &[Value::String("hello".into())])
        .await
        .unwrap();
    assert_eq!(v, Value::String("hello".into()));
    assert!(
        start.elapsed() < bound,
        "served only after {:?}, the stalled handshakes' bound",
        start.elapsed()
    );
    let mut probe = [0u8; 1];
    assert!(
        matches!(silent.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the silent connection is still open while the client is served"
    );

    // Both are closed once the bound passes, not before.
    let slack = Duration::from_secs(3);
    for (what, s) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        let at = closed_by_server(s, bound + slack).await - start;
        assert!(
            at >= bound - Duration::from_millis(100) && at < bound + slack,
            "the {what} connection was closed after {at:?} (bound {bound:?})"
        );
    }
    // Their slots are free again: only the client's pooled connection is open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.open() > 1 {
        assert!(Instant::now() < deadline, "open: {}", stats.open());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.requests(), 1, "no request came from the stalled ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_holds_its_connection_slot_until_the_bound_frees_it() {
    let dir = TempDir::new("slot");
    let certs = test_certs(&dir.0);
    let bound = Duration::from_millis(800);
    let opts = ServerOptions {
        header_read_timeout: bound,
        max_connections: 1,
        ..Default::default()
    };
    let (addr, _stop) = tls_server(&certs, opts).await;
    let start = Instant::now();
    let _silent = TcpStream::connect(&addr).await.unwrap();
    // The only slot is the silent connection's: the client waits in the
    // kernel's accept queue until the bound closes it, then is served.
    let client = Client::with_transport(&addr, Duration::from_secs(10), tls_transport(&certs.ca));
    let v = client.call("echo", &[Value::Int(7)]).await.unwrap();
    assert_eq!(v, Value::Int(7));
    let took = start.elapsed();
    assert!(
        took >= bound - Duration::from_millis(100),
        "served after {took:?}, before the only slot was freed at {bound:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_tls_port_is_answered_400_and_the_port_goes_on() {
    let dir = TempDir::new("plain");
    let certs = test_certs(&dir.0);
    let (addr, _stop) = tls_server(&certs, ServerOptions::default()).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("the answer and the close come at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 This port speaks HTTPS only\r\n")
            && answer.ends_with(surfstore::tls::PLAIN_HTTP_REFUSAL),
        "{answer}"
    );
    // Not TLS, not HTTP: closed without a word.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"\x00\x01garbage").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(rest.is_empty());
    let client = Client::with_transport(&addr, Duration::from_secs(5), tls_transport(&certs.ca));
    assert_eq!(
        client.call("echo", &[Value::Int(1)]).await.unwrap(),
        Value::Int(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_over_tls_survive_cancelled_writes_and_arrive_in_order() {
    let dir = TempDir::new("pipeline");
    let certs = test_certs(&dir.0);
    let opts = ServerOptions::default();
    let stats = opts.stats.clone();
    // A small, fixed receive buffer (accepted sockets inherit it; loopback
    // would otherwise grow it to tens of MiB and take every byte at once).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (addr, _stop) = tls_server_on(socket.listen(64).unwrap(), &certs, opts).await;
    let transport = tls_transport(&certs.ca);
    let mut conn = Connection::connect(&addr, Duration::from_secs(5), 1 << 20, &transport)
        .await
        .unwrap();
    // Far more than the kernel buffers, to a server that takes a while over
    // each call (reading the next only after answering): writes are partial,
    // cut short by the timer, and records wait in rustls for the socket.
    // (src/xmlrpc/pipeline.rs tests the flush they then need
    // deterministically, over an in-memory pipe.)
    let sizes: Vec<usize> = (0..8).map(|i| (1 << 20) + i * 777).collect();
    for n in &sizes {
        conn.writer
            .push_call("len", &[Value::String("x".repeat(*n)), Value::Int(30)]);
    }
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut cancelled = 0u32;
    while answers.len() < sizes.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck after {answers:?}"
        );
        let writing = conn.writer.wants_write();
        // As the peer lane does: reading first, the write dropped whenever
        // anything else is ready (here a timer that fires almost at once).
        tokio::select! {
            biased;
            r = conn.reader.next_response() => answers.push(r.unwrap().unwrap()),
            w = conn.writer.write_some(), if writing => w.unwrap(),
            _ = tokio::time::sleep(Duration::from_micros(20)) => cancelled += 1,
        }
    }
    let want: Vec<Value> = sizes.iter().map(|n| Value::Int(*n as i32)).collect();
    assert_eq!(answers, want);
    assert!(!conn.writer.wants_write());
    assert_eq!(stats.accepted(), 1, "one connection carried every call");
    eprintln!("{cancelled} writes or reads cut short by the timer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_cluster_elects_and_replicates_over_https() {
    let dir = TempDir::new("cluster");
    let certs = test_certs(&dir.0);
    let opts = ClusterOptions {
        timing: common::fast_timing(),
        seed: Some(11),
        tls: Some(certs.load()),
        ..Default::default()
    };
    let cluster = Cluster::start_loopback(3, &opts).await.unwrap();
    let leader = cluster.wait_for_leader(None).await as usize;
    let transport = tls_transport(&certs.ca);
    let clients: Vec<Client> = cluster
        .members()
        .iter()
        .map(|m| Client::with_transport(m, Duration::from_secs(5), transport.clone()))
        .collect();
    let r = clients[leader]
        .call(
            "surfstore.updatefile",
            &[
                Value::String("a.txt".into()),
                Value::Int(1),
                Value::Array(vec![Value::String("h".into())]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r, Value::Bool(true));
    // putblock answers once a majority holds it: storeBlock over HTTPS.
    let block = vec![7u8; 100_000];
    let follower = (leader + 1) % 3;
    assert_eq!(
        clients[follower]
            .call("surfstore.putblock", &[Value::Base64(block.clone())])
            .await
            .unwrap(),
        Value::Bool(true)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, c) in clients.iter().enumerate() {
        loop {
            let v = c
                .call(
                    "surfstore.tester_getversion",
                    &[Value::String("a.txt".into())],
                )
                .await
                .unwrap();
            if v == Value::Int(1) {
                break;
            }
            assert!(Instant::now() < deadline, "node {i} never applied a.txt");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A plain client of the same cluster is refused, not served.
    let plain = Client::new(&cluster.members()[leader], Duration::from_secs(2));
    assert!(matches!(
        plain.call("surfstore.ping", &[]).await,
        Err(CallError::Connect(_))
    ));
    cluster.shutdown().await;
}

#[test]
fn a_node_with_a_certificate_that_does_not_name_its_host_refuses_to_start() {
    let dir = TempDir::new("refuse");
    let names = vec!["elsewhere.test".to_owned()];
    let g = surfstore::tls::cert::generate(&names, 1).unwrap();
    surfstore::tls::cert::write(&dir.0, &g, false).unwrap();
    let certs = Certs::in_dir(&dir.0);
    let config = dir.0.join("config.txt");
    // Port 9856: never bound, the node refuses before listening.
    std::fs::write(&config, "M: 1\nmetadata0: node-x.test:9856\n").unwrap();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/run-server.sh"))
        .arg(&config)
        .arg("0")
        .arg("--in-memory")
        .args(certs.node_args())
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&certs.cert.display().to_string())
            && stderr.contains("node-x.test")
            && stderr.contains("not valid for name"),
        "{stderr}"
    );
    // A certificate without the CA flag is refused too, before any file is read.
    let out = Command::new(env!("CARGO_BIN_EXE_surfstore"))
        .arg("server")
        .arg(&config)
        .arg("0")
        .arg("--in-memory")
        .args(&certs.node_args()[..4])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("need --tls-ca"),
        "{stderr}"
    );
}
