//! Real `run-server.sh` processes, for the tests that need a process (a
//! signal, a raw peer call, its memory): three in-memory nodes of a config
//! on the given ports, found through `surfstore.status`, each continued and
//! killed by PID on drop (also on a failed assertion).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

pub struct Nodes {
    children: Vec<Child>,
    pub dir: PathBuf,
}

impl Nodes {
    /// Starts one node per port from a config naming them, in a fresh
    /// directory `name-PID` under the temp dir, with `args` after
    /// `--in-memory`, `RUST_LOG=log`, and stderr where `stderr` says.
    pub fn start(
        name: &str,
        ports: &[u16],
        args: &[String],
        log: &str,
        stderr: fn() -> Stdio,
    ) -> Nodes {
        let ids: Vec<usize> = (0..ports.len()).collect();
        Nodes::start_members(name, &members(ports), &ids, args, log, &|_, _| stderr())
    }

    /// Starts members `ids` of a config listing `members`, in a fresh
    /// directory `name-PID` under the temp dir, with `args` after
    /// `--in-memory`, `RUST_LOG=log`, and node i's stderr where
    /// `stderr(i, dir)` says (a file in `dir`, say).
    pub fn start_members(
        name: &str,
        members: &[String],
        ids: &[usize],
        args: &[String],
        log: &str,
        stderr: &dyn Fn(usize, &std::path::Path) -> Stdio,
    ) -> Nodes {
        let in_memory = |_: usize| vec!["--in-memory".to_owned()];
        Nodes::spawn(name, members, ids, &in_memory, args, log, stderr)
    }

    /// Starts one node per port, node i with `--data-dir dirs[i]` (and
    /// `--fsync never`), in a fresh directory `name-PID` under the temp dir.
    pub fn start_on_disk(name: &str, ports: &[u16], dirs: &[PathBuf]) -> Nodes {
        let ids: Vec<usize> = (0..ports.len()).collect();
        let storage = |i: usize| {
            vec![
                "--data-dir".to_owned(),
                dirs[i].display().to_string(),
                "--fsync".to_owned(),
                "never".to_owned(),
            ]
        };
        Nodes::spawn(
            name,
            &members(ports),
            &ids,
            &storage,
            &[],
            "warn",
            &|_, _| Stdio::null(),
        )
    }

    fn spawn(
        name: &str,
        members: &[String],
        ids: &[usize],
        storage: &dyn Fn(usize) -> Vec<String>,
        args: &[String],
        log: &str,
        stderr: &dyn Fn(usize, &std::path::Path) -> Stdio,
    ) -> Nodes {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.txt");
        let mut text = format!("M: {}\n", members.len());
        for (i, m) in members.iter().enumerate() {
            text.push_str(&format!("metadata{i}: {m}\n"));
        }
        std::fs::write(&config, text).unwrap();
        let repo = env!("CARGO_MANIFEST_DIR");
        let children = ids
            .iter()
            .map(|&i| {
                Command::new(format!("{repo}/run-server.sh"))
                    .arg(&config)
                    .arg(i.to_string())
                    .args(storage(i))
                    .args(args)
                    .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
                    .env("RUST_LOG", log)
                    .current_dir(&dir)
                    .stdout(Stdio::null())
                    .stderr(stderr(i, &dir))
                    .spawn()
                    .expect("run-server.sh starts")
            })
            .collect();
        Nodes { children, dir }
    }

    /// A file in this run's directory to send a node's stderr to.
    pub fn log_file(dir: &std::path::Path, name: &str) -> Stdio {
        Stdio::from(std::fs::File::create(dir.join(name)).expect("log file"))
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].id()
    }

    /// Waits for node `i` (the `i`-th started) to exit, within `within`.
    pub fn wait(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.children[i].try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kill -SIG PID`; panics if it fails (except for CONT, sent on drop).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok && sig != "CONT" {
        panic!("kill -{sig} {pid} failed");
    }
}

pub fn clients(ports: &[u16]) -> Vec<Client> {
    ports
        .iter()
        .map(|p| Client::new(&format!("localhost:{p}"), Duration::from_secs(2)))
        .collect()
}

/// The members of the config [`Nodes::start`] writes for `ports`.
pub fn members(ports: &[u16]) -> Vec<String> {
    ports.iter().map(|p| format!("localhost:{p}")).collect()
}

/// A client for node `to` that sends member `member`'s identity headers
/// with each call, as that member's own peer calls do: a test can play a
/// peer (or an attacker who read the config file).
pub fn member_client(ports: &[u16], to: usize, member: usize) -> Client {
    let members = members(ports);
    let transport = surfstore::node::identity::Identity::playing(member as u64, &members);
    Client::with_transport(&members[to], Duration::from_secs(2), transport)
}

/// `updatefile(file, version, ["h<version>"])`, which must succeed.
pub async fn update(c: &Client, file: &str, version: i64) {
    let args = [
        Value::String(file.into()),
        Value::Int(version as i32),
        Value::Array(vec![Value::String(format!("h{version}"))]),
    ];
    match c.call("surfstore.updatefile", &args).await {
        Ok(Value::Bool(true)) => {}
        other => panic!("updatefile {file} v{version} failed: {other:?}"),
    }
}

pub fn field<'a>(v: &'a Value, k: &str) -> &'a Value {
    match v {
        Value::Struct(m) => m.get(k).unwrap_or_else(|| panic!("no field {k} in {v:?}")),
        other => panic!("not a struct: {other:?}"),
    }
}

pub fn int(v: &Value, k: &str) -> i64 {
    field(v, k)
        .as_i64()
        .unwrap_or_else(|| panic!("{k} is not an int"))
}

pub async fn status(c: &Client) -> Option<Value> {
    c.call("surfstore.status", &[]).await.ok()
}

/// The node whose `status` says leader, within 20 s.
pub async fn wait_for_leader(clients: &[Client]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (i, c) in clients.iter().enumerate() {
            if let Some(s) = status(c).await {
                if field(&s, "role") == &Value::String("leader".into()) {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for a leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `run-ctl.sh ARGS` with this build's binary, no stdin.
pub fn run_ctl<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    Command::new(format!("{}/run-ctl.sh", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .env("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))
        .stdin(Stdio::null())
        .output()
        .expect("run-ctl.sh runs")
}

/// A command's stdout then stderr, as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}
