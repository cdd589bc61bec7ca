//! End to end, as a user would: `run-cluster.sh` with a 3-node config in a
//! real terminal (a private tmux server, 120x40), driven by keystrokes and
//! checked from outside over XML-RPC and on the screen: crash, restore,
//! isolate the leader and heal, write, quit.
//!
//! A terminal offers no event to await, so the screen and the nodes are
//! polled against generous deadlines (the CI machine has 2 cores and runs
//! tests in parallel).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use surfstore::xmlrpc::client::Client;
use surfstore::xmlrpc::Value;

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// A private tmux server running one session; killed (with the cluster in it,
/// if still running) on drop.
struct Tmux {
    socket: String,
    dir: PathBuf,
}

impl Tmux {
    fn start(command: &str, env: &[(&str, &str)]) -> Tmux {
        let socket = format!("surfstore-e2e-{}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Our own config, not the user's; keep the pane after the program
        // exits so its exit status can be read.
        let conf = dir.join("tmux.conf");
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g history-limit 100\n",
        )
        .unwrap();
        let tmux = Tmux { socket, dir };
        let mut args: Vec<String> = vec![
            "-f".into(),
            conf.to_string_lossy().into_owned(),
            "new-session".into(),
            "-d".into(),
            "-s".into(),
            "e2e".into(),
            "-x".into(),
            "120".into(),
            "-y".into(),
            "40".into(),
        ];
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(command.into());
        let out = tmux.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is required for this test (.ci/run installs it: apt-get install tmux)")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "e2e"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen with its scrollback (tmux scrolls a dead pane's last
    /// screen up to print "Pane is dead").
    fn history(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-", "-t", "e2e"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `pred` holds; returns that screen.
    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("screen never showed {what}:\n{screen}");
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_addrs(m: usize) -> Vec<String> {
    let probes: Vec<TcpListener> = (0..m)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    probes
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// The screen line of node `addr` in the node table.
fn row<'a>(screen: &'a str, addr: &str) -> &'a str {
    screen.lines().find(|l| l.contains(addr)).unwrap_or("")
}

struct Nodes {
    clients: Vec<Client>,
}

impl Nodes {
    async fn call(&self, i: usize, method: &str, params: &[Value]) -> Option<Value> {
        self.clients[i]
            .call(&format!("surfstore.{method}"), params)
            .await
            .ok()
    }

    async fn is(&self, i: usize, method: &str) -> bool {
        self.call(i, method, &[]).await == Some(Value::Bool(true))
    }

    /// Polls the nodes until `pred` gives a value.
    async fn wait<T>(&self, what: &str, mut pred: impl AsyncFnMut(&Nodes) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = pred(self).await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// The one node (among `candidates`) that says it is leader.
    async fn leader(&self, candidates: &[usize]) -> usize {
        self.wait("a single leader", async |n: &Nodes| {
            let mut leaders = Vec::new();
            for &i in candidates {
                if n.is(i, "isLeader").await {
                    leaders.push(i);
                }
            }
            (leaders.len() == 1).then(|| leaders[0])
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_cluster_in_tmux_crash_restore_isolate_heal_write_quit() {
    let addrs = free_addrs(3);
    let tmux_dir = std::env::temp_dir().join(format!("surfstore-e2e-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&tmux_dir).unwrap();
    let config = tmux_dir.join("3nodes.txt");
    let mut text = "M: 3\n".to_owned();
    for (i, a) in addrs.iter().enumerate() {
        text.push_str(&format!("metadata{i}: {a}\n"));
    }
    std::fs::write(&config, text).unwrap();

    let script = format!("{}/run-cluster.sh", env!("CARGO_MANIFEST_DIR"));
    // tmux 3.3 can mark a pane dead (pty closed) without ever recording the
    // exit status, so a wrapper shell writes it to a file for `exit_status`.
    let status_file = tmux_dir.join("exit-status");
    // A fresh data directory per run: nothing is inherited from an earlier one.
    let data_dir = tmux_dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let tmux = Tmux::start(
        &format!(
            "sh -c '\"$0\" \"$1\" --data-dir \"$3\"; echo $? > \"$2\"' '{script}' '{}' '{}' '{}'",
            config.display(),
            status_file.display(),
            data_dir.display()
        ),
        &[("SURFSTORE_BIN", env!("CARGO_BIN_EXE_surfstore"))],
    );
    let nodes = Nodes {
        clients: addrs
            .iter()
            .map(|a| Client::new(a, Duration::from_secs(5)))
            .collect(),
    };

    // Every port answers; one leader; the dashboard is up and shows it.
    nodes
        .wait("every port to answer ping", async |n: &Nodes| {
            for i in 0..3 {
                if !n.is(i, "ping").await {
                    return None;
                }
            }
            Some(())
        })
        .await;
    let old = nodes.leader(&[0, 1, 2]).await;
    tmux.wait_screen(&format!("node {old} leading"), |s| {
        s.contains("Nodes") && row(s, &addrs[old]).contains("Leader")
    });

    // Select the leader by its digit, crash it.
    tmux.keys(&[&old.to_string()]);
    tmux.wait_screen("the leader selected", |s| row(s, &addrs[old]).contains('▶'));
    tmux.keys(&["c"]);
    nodes
        .wait("isCrashed on the crashed leader", async |n: &Nodes| {
            n.is(old, "isCrashed").await.then_some(())
        })
        .await;
    tmux.wait_screen("the node CRASHED", |s| {
        row(s, &addrs[old]).contains("CRASHED") && s.contains("crashed")
    });

    // The other two elect a new leader.
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = nodes.leader(&others).await;
    tmux.wait_screen(&format!("node {new} leading"), |s| {
        row(s, &addrs[new]).contains("Leader") && s.contains(&format!("leader: node {new}"))
    });

    // `r` restores the selected (crashed) node.
    tmux.keys(&["r"]);
    nodes
        .wait("the old leader restored", async |n: &Nodes| {
            (n.call(old, "isCrashed", &[]).await == Some(Value::Bool(false))).then_some(())
        })
        .await;
    tmux.wait_screen("the node restored", |s| {
        !row(s, &addrs[old]).contains("CRASHED") && s.contains("restored")
    });

    // A write through the new leader reaches every node, the restored one too.
    let new = nodes.leader(&[0, 1, 2]).await;
    let params = [
        Value::String("e2e.txt".into()),
        Value::Int(1),
        Value::Array(vec![Value::String("h1".into())]),
    ];
    assert_eq!(
        nodes.call(new, "updatefile", &params).await,
        Some(Value::Bool(true))
    );
    nodes
        .wait("e2e.txt v1 applied on all nodes", async |n: &Nodes| {
            for i in 0..3 {
                let v = n
                    .call(i, "tester_getversion", &[Value::String("e2e.txt".into())])
                    .await;
                if v != Some(Value::Int(1)) {
                    return None;
                }
            }
            Some(())
        })
        .await;

    // `p` isolates the leader (its digit first): the table marks it, the
    // events say so, and the other two elect a leader without it; `h` heals
    // every link and the cluster has one leader again.
    tmux.keys(&[&new.to_string()]);
    tmux.wait_screen("the leader selected", |s| row(s, &addrs[new]).contains('▶'));
    tmux.keys(&["p"]);
    tmux.wait_screen("the leader ISOLATED", |s| {
        row(s, &addrs[new]).contains("ISOLATED") && s.contains(&format!("isolated node {new}"))
    });
    let rest: Vec<usize> = (0..3).filter(|&i| i != new).collect();
    let third = nodes.leader(&rest).await;
    nodes
        .wait("the isolated leader to step down", async |n: &Nodes| {
            (n.call(new, "isLeader", &[]).await == Some(Value::Bool(false))).then_some(())
        })
        .await;
    tmux.keys(&["h"]);
    tmux.wait_screen("every link healed", |s| {
        s.contains("healed all links") && !s.contains("ISOLATED")
    });
    assert_eq!(
        nodes.leader(&[0, 1, 2]).await,
        third,
        "the heal deposed no one"
    );

    // `w` writes a demo file through the leader; the commit shows up.
    tmux.keys(&["w"]);
    tmux.wait_screen("the demo write committed", |s| {
        s.contains("write demo-1.txt v1: applied") && s.contains("committed")
    });

    // `q` quits: exit status 0, every port closed.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = exit_status(&status_file) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after q:\n{}",
            tmux.screen()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(status, 0, "exit status after q:\n{}", tmux.screen());
    let screen = tmux.history();
    assert!(screen.contains("stopped 3 node(s)"), "{screen}");
    for a in &addrs {
        assert!(TcpListener::bind(a).is_ok(), "{a} still bound after q");
    }
    let _ = std::fs::remove_dir_all(&tmux_dir);
}

/// The program's exit status, once the wrapper shell has written it.
fn exit_status(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
