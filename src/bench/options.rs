//! What a run is asked to do, from the command line ([`super::cli`]) or set
//! directly by tests.

use std::time::Duration;

use super::BenchError;

/// Which system the bench drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// Our cluster, over XML-RPC: any node's `host:port`.
    Surfstore,
    /// etcd's v3 JSON gateway: `--endpoints http://host:port,...`.
    Etcd,
}

/// What each simulated client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Every write a new file at version 1 (etcd: a put of a new key).
    Create,
    /// Each client bumps the version of a file of its own (etcd: a put
    /// overwriting the client's key). Writes whose outcome is unknown (a
    /// timeout, fault 5) or that are refused move the client to a fresh
    /// file, so every version it sends is the right one.
    Update,
    /// `getfileinfomap` (etcd: a linearizable range over every key) of a
    /// small store: `--seed-files` entries are written first. Both read the
    /// whole store, so run it on a fresh cluster; the report shows how many
    /// entries a read returned.
    Read,
    /// `--read-percent` reads (as `read`), the rest writes (as `update`).
    Mix,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Update => "update",
            Workload::Read => "read",
            Workload::Mix => "mix",
        }
    }

    /// Whether it reads (and so needs seed entries).
    pub fn reads(self) -> bool {
        matches!(self, Workload::Read | Workload::Mix)
    }
}

/// Largest payload accepted: far above any useful metadata value, low
/// enough that 1000 clients cannot exhaust memory.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Most simulated clients.
pub const MAX_CLIENTS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub system: System,
    /// Our cluster: any node's `host:port`.
    pub addr: Option<String>,
    /// etcd: every member's client URL.
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub workload: Workload,
    /// Bytes of the hash list of each `updatefile` (one string of that many
    /// characters) and of each etcd value.
    pub payload: usize,
    /// Percentage of reads in `mix`.
    pub read_percent: u8,
    /// Entries written before a `read` or `mix` run.
    pub seed_files: usize,
    /// Server processes whose CPU time is read before and after the window.
    pub pids: Vec<u32>,
    /// Deadline of each call.
    pub timeout: Duration,
    /// How long to wait for a leader before the run.
    pub connect_timeout: Duration,
    /// Seed of the workload's random choices and of the run's key prefix.
    pub seed: u64,
}

impl BenchOptions {
    /// Defaults: update workload, 16 clients, 10 s after 2 s of warm-up,
    /// 64-byte payload.
    pub fn new(system: System) -> BenchOptions {
        BenchOptions {
            system,
            addr: None,
            endpoints: Vec::new(),
            clients: 16,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            workload: Workload::Update,
            payload: 64,
            read_percent: 50,
            seed_files: 10,
            pids: Vec::new(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            seed: rand::random(),
        }
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Args(m));
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return bad(format!(
                "--clients must be 1..={MAX_CLIENTS}, got {}",
                self.clients
            ));
        }
        if self.duration.is_zero() {
            return bad("--duration must be above zero".into());
        }
        if self.payload > MAX_PAYLOAD {
            return bad(format!(
                "--payload must be at most {MAX_PAYLOAD} bytes, got {}",
                self.payload
            ));
        }
        if self.read_percent > 100 {
            return bad(format!(
                "--read-percent must be 0..=100, got {}",
                self.read_percent
            ));
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be above zero".into());
        }
        match self.system {
            System::Surfstore if self.addr.is_none() => {
                bad("give any node of the cluster as HOST:PORT".into())
            }
            System::Etcd if self.endpoints.is_empty() => {
                bad("--target etcd needs --endpoints http://host:port,...".into())
            }
            _ => Ok(()),
        }
    }
}
