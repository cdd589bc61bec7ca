//! The private network: one network namespace per node, one for the
//! clients, and one holding a Linux bridge that joins them, each endpoint
//! attached by a veth pair. Addresses are in 10.213.47.0/24, which exists
//! only inside these namespaces: node i is 10.213.47.(10+i), the clients
//! 10.213.47.100, nothing in the root namespace changes.
//!
//! Promises:
//! - Names carry the prefix `surfpart-<harness pid>` (`-br`, `-n<i>`,
//!   `-cl`), so two runs never collide, and [`Net`]'s drop deletes every
//!   namespace it created (with them go their veths, the bridge and the
//!   nftables tables), on success, error or panic. The caller stops the
//!   processes inside first.
//! - Every veth is created straight inside the bridge's namespace with its
//!   peer moved into the endpoint's, so no interface ever appears in the
//!   root namespace.
//! - A cut is nftables state in the node namespaces: a table
//!   `inet surfpart` with a set `cut` of peer addresses and an input rule
//!   dropping every packet from them. Dropping on input only is what makes
//!   the cut silent: a packet the sender's own output hook dropped would
//!   fail its `connect`/`send` at once with EPERM; dropped at the receiver
//!   it just vanishes, as on a real network, and calls time out. Both ends
//!   of a cut pair drop each other's packets. [`set_cut`] replaces a
//!   node's set in one nft transaction.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::error::{PartitionError, Result};

/// The port every node listens on (at its own address).
pub const PORT: u16 = 7000;

/// The subnet, for messages.
pub const SUBNET: &str = "10.213.47.0/24";

/// Node `i`'s address.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, 47, 10 + i as u8)
}

/// The clients' address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 47, 100);

/// `host:port` of node `i`, as the config file names it.
pub fn node_addr(i: usize) -> String {
    format!("{}:{PORT}", node_ip(i))
}

/// The namespace names of one run.
#[derive(Clone, Debug)]
pub struct Names {
    /// `surfpart-<pid>`.
    pub prefix: String,
}

/// The common start of every run's names.
pub const PREFIX: &str = "surfpart-";

impl Names {
    pub fn for_pid(pid: u32) -> Names {
        Names {
            prefix: format!("{PREFIX}{pid}"),
        }
    }

    pub fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    pub fn node(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    pub fn client(&self) -> String {
        format!("{}-cl", self.prefix)
    }
}

/// The namespaces of one run; dropping it deletes them.
pub struct Net {
    names: Names,
    /// Namespaces created so far, in creation order (deleted in reverse).
    created: Vec<String>,
}

/// The ruleset every node namespace starts with (re-applying it empties the set).
const TABLE: &str = "table inet surfpart {
  set cut { type ipv4_addr; }
  chain input { type filter hook input priority 0; policy accept; ip saddr @cut drop; }
}
";

impl Net {
    /// Creates the bridge, `nodes` node namespaces and the client namespace.
    /// On error, what was created is deleted again (by the drop).
    pub fn create(names: Names, nodes: usize) -> Result<Net> {
        let mut net = Net {
            names,
            created: Vec::new(),
        };
        let br = net.names.bridge();
        net.add_namespace(&br)?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..nodes {
            let ns = net.names.node(i);
            net.attach(&ns, &format!("n{i}"), node_ip(i))?;
            nft(&ns, TABLE)?;
        }
        let cl = net.names.client();
        net.attach(&cl, "cl", CLIENT_IP)?;
        Ok(net)
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The namespaces that exist now, for the report.
    pub fn created(&self) -> &[String] {
        &self.created
    }

    fn add_namespace(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_owned());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// A namespace `ns` with `eth0` at `addr`, whose veth peer `port` sits
    /// on the bridge.
    fn attach(&mut self, ns: &str, port: &str, addr: Ipv4Addr) -> Result<()> {
        self.add_namespace(ns)?;
        let br = self.names.bridge();
        ip(&[
            "-n", &br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", &br, "link", "set", port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// Deletes every namespace created, newest first; returns what could
    /// not be deleted (with why).
    pub fn delete(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some(ns) = self.created.pop() {
            if let Err(e) = ip(&["netns", "delete", &ns]) {
                failed.push(format!("{ns}: {e}"));
            }
        }
        failed
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for f in self.delete() {
            eprintln!("partitions: could not delete namespace {f}");
        }
    }
}

/// Replaces the set of addresses node namespace `ns` drops packets from.
pub fn set_cut(ns: &str, blocked: &[Ipv4Addr]) -> Result<()> {
    let mut script = String::from("flush set inet surfpart cut\n");
    if !blocked.is_empty() {
        let list: Vec<String> = blocked.iter().map(|a| a.to_string()).collect();
        script.push_str(&format!(
            "add element inet surfpart cut {{ {} }}\n",
            list.join(", ")
        ));
    }
    nft(ns, &script)
}

/// The namespaces whose names start with `prefix`.
pub fn namespaces_with(prefix: &str) -> Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Why this machine cannot run the harness, if it cannot: not root, no
/// `ip`, no `nft`, or namespaces that cannot be made.
pub fn preflight(names: &Names) -> std::result::Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root (ip netns and nft need root)".into());
    }
    if let Err(e) = ip(&["netns", "list"]) {
        return Err(format!("`ip netns` does not work: {e}"));
    }
    if let Err(e) = run(Command::new("nft").arg("--version")) {
        return Err(format!(
            "nftables is missing or broken ({e}); install it with `apt-get install -y nftables`"
        ));
    }
    // A namespace of our own, then nft inside it: what every run needs.
    let probe = format!("{}-probe", names.prefix);
    ip(&["netns", "add", &probe]).map_err(|e| format!("cannot create a network namespace: {e}"))?;
    let nft_ok = nft(&probe, TABLE);
    let _ = ip(&["netns", "delete", &probe]);
    nft_ok.map_err(|e| format!("nft does not work inside a network namespace: {e}"))
}

/// `ip ARGS`; its stdout.
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// `ip netns exec NS nft -f -` fed `script`.
fn nft(ns: &str, script: &str) -> Result<()> {
    let command = format!("ip netns exec {ns} nft -f - <<< {script:?}");
    let fail = |why: String| PartitionError::Command {
        command: command.clone(),
        why,
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(format!("writing the script: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `cmd` to completion; its stdout, or an error naming it with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PartitionError::Command {
            command: command.clone(),
            why: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(PartitionError::Command {
            command,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let n = Names::for_pid(4242);
        assert_eq!(n.bridge(), "surfpart-4242-br");
        assert_eq!(n.node(3), "surfpart-4242-n3");
        assert_eq!(n.client(), "surfpart-4242-cl");
        assert_eq!(node_addr(4), "10.213.47.14:7000");
        // Interface names must fit IFNAMSIZ (15 bytes): ours are fixed and short.
        assert!("eth0".len() <= 15 && "br0".len() <= 15);
    }
}
