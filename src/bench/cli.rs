//! `surfstore bench [HOST:PORT] [flags]` (what run-bench.sh execs): the
//! flags and the entry point that turns a run into an exit code.
//!
//! Exit codes: 0 the run completed (failed attempts are reported, not
//! fatal); 1 the run had to stop (a call failed in a way retrying cannot
//! fix); 2 bad arguments, an unreachable cluster or no leader; 130
//! interrupted by Ctrl-C or SIGTERM.

use std::time::Duration;

use super::options::{BenchOptions, System, Workload};
use super::{run, BenchError};
use crate::tester::cli::{interrupted, parse_duration};

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "bench",
    about = "Closed-loop load generator for a SurfStore cluster or etcd"
)]
pub struct BenchArgs {
    /// Any node of our cluster, host:port (the leader is found and followed).
    pub addr: Option<String>,
    /// Which system to drive.
    #[arg(long, value_enum, default_value = "surfstore")]
    pub target: System,
    /// etcd's client URLs, comma-separated (with --target etcd).
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    pub endpoints: Vec<String>,
    /// Simulated clients, each with its own keep-alive connection and one
    /// call in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Length of the measured window (`10`, `2.5s`, `800ms`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Load before the measured window, not counted.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// What each client sends: `create` new files, `update` its own file,
    /// `read` the whole (small) map, `mix` of reads and updates.
    #[arg(long, value_enum, default_value = "update")]
    pub workload: Workload,
    /// Bytes per write: one hash string of this many characters in the
    /// hash list (etcd: the value).
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub payload: usize,
    /// Percentage of reads in the `mix` workload.
    #[arg(long, default_value_t = 50)]
    pub read_percent: u8,
    /// Entries written before a `read` or `mix` run (the map it reads).
    #[arg(long, default_value_t = 10)]
    pub seed_files: usize,
    /// Server process ids: their CPU time (/proc/PID/stat) is read before
    /// and after the window, and their command lines tell storage and fsync.
    #[arg(long, value_delimiter = ',', value_name = "PID,...")]
    pub pids: Vec<u32>,
    /// Deadline of each call.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// How long to wait for a leader before starting.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Seed of the workload's random choices (random when omitted).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn options(&self) -> BenchOptions {
        let mut o = BenchOptions::new(self.target);
        o.addr = self.addr.clone();
        o.endpoints = self.endpoints.clone();
        o.clients = self.clients;
        o.duration = self.duration;
        o.warmup = self.warmup;
        o.workload = self.workload;
        o.payload = self.payload;
        o.read_percent = self.read_percent;
        o.seed_files = self.seed_files;
        o.pids = self.pids.clone();
        o.timeout = self.timeout;
        o.connect_timeout = self.connect_timeout;
        if let Some(s) = self.seed {
            o.seed = s;
        }
        o
    }
}

/// Runs what `args` asks and returns the process exit code.
pub fn run_cli(args: &BenchArgs) -> i32 {
    let opts = args.options();
    if let Err(e) = opts.validate() {
        eprintln!("surfstore bench: {e}");
        return 2;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("surfstore bench: cannot start the tokio runtime: {e}");
            return 2;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&opts) => Some(r),
            _ = interrupted() => None,
        }
    });
    let code = match outcome {
        None => {
            eprintln!("surfstore bench: interrupted");
            130
        }
        Some(Ok(report)) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            0
        }
        Some(Err(e)) => {
            eprintln!("surfstore bench: {e}");
            match e {
                BenchError::Fatal { .. } | BenchError::Seed(_) => 1,
                _ => 2,
            }
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}
