//! The `surfstore` binary: `server` runs one node (what run-server.sh execs);
//! `sim` runs the deterministic Raft simulation over many seeds; `bench` is
//! the load generator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use surfstore::duration;
use surfstore::node::{self, NodeOptions, Timing};

/// `surfstore --version`: the crate version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SURFSTORE_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "surfstore",
    version = VERSION,
    about = "SurfStore-on-Raft: a Raft-replicated file metadata service over XML-RPC",
    after_help = "Exit codes: 0 success (also after SIGTERM, SIGINT or SIGHUP); 1 the command failed; 2 bad arguments (one line on stderr says what is wrong). Each subcommand's --help lists its own."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of the cluster described by CONFIG, as member ID.
    #[command(
        after_help = "Exit codes: 0 stopped by SIGTERM, SIGINT or SIGHUP (a leader hands leadership off first); 1 could not start (config, address, storage, secrets, TLS) or stopped by a disk failure; 2 bad arguments."
    )]
    Server(ServerArgs),
    /// Sync a local folder with the cluster (what run-client.sh execs).
    #[command(
        after_help = "Exit codes: 0 synced; 1 synced, but some files were skipped (listed); 2 the sync failed, or bad arguments."
    )]
    Client(surfstore::client::ClientArgs),
    /// Run the deterministic Raft simulation (many seeds, or replay one).
    #[command(
        after_help = "Exit codes: 0 every seed passed; 1 a seed failed (printed with the command that replays it); 2 bad arguments."
    )]
    Sim(surfstore::sim::SimArgs),
    /// Drive a live cluster through failures and check it (what run-tester.sh execs).
    #[command(
        after_help = "Exit codes: 0 every selected scenario passed and the cluster was left healthy; 1 something failed; 2 bad arguments or an unreachable cluster; 130 interrupted by Ctrl-C or SIGTERM (after restoring every node the tester crashed)."
    )]
    Tester(surfstore::tester::TesterArgs),
    /// Closed-loop load generator for our cluster or etcd (what run-bench.sh execs).
    #[command(
        after_help = "Exit codes: 0 the run completed (failed attempts are reported, not fatal); 1 the run had to stop; 2 bad arguments, an unreachable cluster or no leader; 130 interrupted by Ctrl-C or SIGTERM."
    )]
    Bench(surfstore::bench::BenchArgs),
    /// Run every node of CONFIG in this process, with a live dashboard (what
    /// run-cluster.sh execs).
    #[command(
        after_help = "Exit codes: 0 stopped by q, Ctrl-C, SIGTERM or SIGHUP; 1 could not start (config, addresses, storage, secrets, TLS, no terminal for the dashboard); 2 bad arguments."
    )]
    Cluster {
        /// The cluster config file (`M: n` then `metadata<i>: host:port` lines).
        config: PathBuf,
        #[command(flatten)]
        timing: TimingArgs,
        /// No dashboard: print the event log to stdout, one line per event.
        #[arg(long)]
        headless: bool,
        /// Seed of node i's RNG is SEED+i; random when omitted.
        #[arg(long)]
        seed: Option<u64>,
        /// Under the dashboard, write the nodes' logs to this file (else dropped).
        #[arg(long)]
        log_file: Option<PathBuf>,
        #[command(flatten)]
        log: surfstore::logs::LogArgs,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        secrets: surfstore::auth::SecretArgs,
        #[command(flatten)]
        tls: surfstore::tls::TlsArgs,
    },
    /// Look at a running cluster and move it, like etcdctl: status,
    /// members, transfer-leader, crash, restore (what run-ctl.sh execs).
    Ctl(surfstore::ctl::CtlArgs),
    /// Make a test CA and a node certificate for a cluster (for --tls-cert,
    /// --tls-key and --tls-ca), offline.
    #[command(after_help = "Exit codes: 0 written; 1 refused or failed; 2 bad arguments.")]
    Cert(surfstore::tls::cert::CertArgs),
    /// Network partitions (namespaces + nftables, needs root) against 5 real
    /// nodes under the linearizability workload.
    Partitions(surfstore::partitions::PartitionsArgs),
    /// Print a shell completion script for surfstore to stdout.
    #[command(
        after_help = "Install: `surfstore completions bash > /etc/bash_completion.d/surfstore`, `surfstore completions zsh > ~/.zfunc/_surfstore` (with ~/.zfunc on fpath), `surfstore completions fish > ~/.config/fish/completions/surfstore.fish`.\n\nExit codes: 0 printed; 2 bad arguments."
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct StorageArgs {
    /// Where the write-ahead log lives. `server`: this node's directory
    /// (default data/node<ID> under the current directory); `cluster`: node i
    /// uses DIR/node<i> (default data/node<i>).
    #[arg(long, conflicts_with = "in_memory")]
    data_dir: Option<PathBuf>,
    /// Keep the log in memory only (the assignment's behaviour): a restarted
    /// process starts empty.
    #[arg(long)]
    in_memory: bool,
    /// `always`: fdatasync the log before anything in it is acknowledged or
    /// counted (survives power loss). `never`: leave flushing to the OS
    /// (survives kill -9 of the process, not power loss or an OS crash).
    #[arg(long, default_value = "always", value_name = "always|never")]
    fsync: node::storage::FsyncPolicy,
    /// Snapshot the metadata map and drop the log it covers every N applied
    /// entries (0: never compact; the log then grows without bound).
    #[arg(long, default_value_t = node::DEFAULT_SNAPSHOT_THRESHOLD, value_name = "N")]
    snapshot_threshold: u64,
}

impl StorageArgs {
    /// The directory that holds node data: `default` unless given or in memory.
    fn dir(&self, default: PathBuf) -> Option<PathBuf> {
        if self.in_memory {
            None
        } else {
            Some(self.data_dir.clone().unwrap_or(default))
        }
    }
}

/// The Raft timing flags, in the one duration style (`150ms`, `1s`); each
/// keeps its old spelling in whole milliseconds as a hidden alias
/// (`--heartbeat-ms 50`).
#[derive(Args)]
struct TimingArgs {
    /// Lower bound of the randomized election timeout.
    #[arg(long, value_parser = duration::parse, default_value = "150ms", value_name = "DURATION")]
    election_min: Duration,
    #[arg(long, hide = true, value_parser = duration::millis, conflicts_with = "election_min")]
    election_min_ms: Option<Duration>,
    /// Upper bound of the randomized election timeout.
    #[arg(long, value_parser = duration::parse, default_value = "300ms", value_name = "DURATION")]
    election_max: Duration,
    #[arg(long, hide = true, value_parser = duration::millis, conflicts_with = "election_max")]
    election_max_ms: Option<Duration>,
    /// Leader heartbeat interval.
    #[arg(long, value_parser = duration::parse, default_value = "50ms", value_name = "DURATION")]
    heartbeat: Duration,
    #[arg(long, hide = true, value_parser = duration::millis, conflicts_with = "heartbeat")]
    heartbeat_ms: Option<Duration>,
    /// Granularity of the Raft clock.
    #[arg(long, value_parser = duration::parse, default_value = "10ms", value_name = "DURATION")]
    tick: Duration,
    #[arg(long, hide = true, value_parser = duration::millis, conflicts_with = "tick")]
    tick_ms: Option<Duration>,
    /// How long a call to a peer may take before it counts as lost.
    #[arg(long, value_parser = duration::parse, default_value = "1s", value_name = "DURATION")]
    peer_timeout: Duration,
    #[arg(long, hide = true, value_parser = duration::millis, conflicts_with = "peer_timeout")]
    peer_timeout_ms: Option<Duration>,
}

impl TimingArgs {
    fn timing(&self) -> Timing {
        Timing {
            tick: self.tick_ms.unwrap_or(self.tick),
            election_min: self.election_min_ms.unwrap_or(self.election_min),
            election_max: self.election_max_ms.unwrap_or(self.election_max),
            heartbeat: self.heartbeat_ms.unwrap_or(self.heartbeat),
            peer_timeout: self.peer_timeout_ms.unwrap_or(self.peer_timeout),
        }
    }
}

#[derive(Args)]
struct ServerArgs {
    /// The cluster config file (`M: n` then `metadata<i>: host:port` lines).
    config: PathBuf,
    /// This node's id, 0..M-1.
    id: u64,
    #[command(flatten)]
    timing: TimingArgs,
    /// Largest request body accepted, in bytes (larger ones get HTTP 413).
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Most simultaneous client connections.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seed of the core's RNG (election timeouts); random when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Most AppendEntries in flight to one follower.
    #[arg(long, default_value_t = 4)]
    max_inflight: usize,
    #[command(flatten)]
    storage: StorageArgs,
    /// Largest block `putblock` accepts, in bytes (its base64 must also fit
    /// within --max-body-bytes).
    #[arg(long, default_value_t = 4 << 20)]
    max_block_bytes: usize,
    /// Blocks no file references are deleted once unreferenced and
    /// untouched this long; 0 never deletes.
    #[arg(long, value_parser = duration::parse, default_value = "1h", value_name = "DURATION")]
    block_gc_grace: Duration,
    #[arg(long, hide = true, value_parser = duration::secs, conflicts_with = "block_gc_grace")]
    block_gc_grace_secs: Option<Duration>,
    #[command(flatten)]
    secrets: surfstore::auth::SecretArgs,
    #[command(flatten)]
    tls: surfstore::tls::TlsArgs,
    #[command(flatten)]
    log: surfstore::logs::LogArgs,
}

/// Parses the command line: help and version go to stdout with exit 0; a
/// misuse is one line on stderr (what is wrong, and where to look) with
/// exit 2, not clap's multi-line report.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("surfstore: {}", one_line(&e.render().to_string()));
            Err(ExitCode::from(2))
        }
    }
}

/// Clap's error report up to its usage section, as one line: `error: the
/// following required arguments were not provided: <CONFIG> <ID> (see
/// --help)`.
fn one_line(report: &str) -> String {
    let what: Vec<&str> = report
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let what = what.join(" ");
    let what = what.strip_prefix("error: ").unwrap_or(&what);
    format!("{what} (see --help)")
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Sim(args) => ExitCode::from(surfstore::sim::run_cli(&args).clamp(0, 255) as u8),
        Command::Ctl(args) => ExitCode::from(surfstore::ctl::run_cli(&args).clamp(0, 255) as u8),
        Command::Client(args) => {
            ExitCode::from(surfstore::client::run_cli(&args).clamp(0, 255) as u8)
        }
        Command::Tester(args) => {
            ExitCode::from(surfstore::tester::run_cli(&args).clamp(0, 255) as u8)
        }
        Command::Bench(args) => {
            ExitCode::from(surfstore::bench::run_cli(&args).clamp(0, 255) as u8)
        }
        Command::Cert(args) => {
            ExitCode::from(surfstore::tls::cert::run_cli(&args).clamp(0, 255) as u8)
        }
        Command::Partitions(args) => {
            ExitCode::from(surfstore::partitions::run_cli(&args).clamp(0, 255) as u8)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "surfstore",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Cluster {
            config,
            timing,
            headless,
            seed,
            log_file,
            log,
            storage,
            secrets,
            tls,
        } => {
            let keys = match secrets.load() {
                Ok(keys) => keys,
                Err(e) => {
                    eprintln!("surfstore: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let tls = match tls.load() {
                Ok(tls) => tls,
                Err(e) => {
                    eprintln!("surfstore: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = surfstore::cluster::launch::LaunchOptions {
                config,
                cluster: surfstore::cluster::ClusterOptions {
                    timing: timing.timing(),
                    seed,
                    data_dir: storage.dir(PathBuf::from("data")),
                    fsync: storage.fsync,
                    snapshot_threshold: storage.snapshot_threshold,
                    keys,
                    tls,
                    ..Default::default()
                },
                headless,
                log_file,
                log,
            };
            match surfstore::cluster::launch::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("surfstore: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Server(args) => match run_server(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("surfstore: {}", error_chain(&e));
                ExitCode::FAILURE
            }
        },
    }
}

fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    args.log
        .init(std::io::stderr, surfstore::logs::stderr_ansi());
    let timing = args.timing.timing();
    timing.validate()?;
    let config = surfstore::config::load(&args.config)?;
    config.member(args.id as usize)?;
    let keys = args.secrets.load()?;
    let tls = args.tls.load()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut opts = NodeOptions::new(args.id, config.members.clone());
    opts.cluster_key = keys.cluster;
    opts.client_key = keys.client;
    opts.tls = tls;
    opts.timing = timing;
    opts.server.max_body_bytes = args.max_body_bytes;
    opts.server.max_connections = args.max_connections;
    opts.max_inflight = args.max_inflight;
    opts.blocks.max_block_bytes = args.max_block_bytes;
    let gc_grace = args.block_gc_grace_secs.unwrap_or(args.block_gc_grace);
    opts.blocks.gc_grace = (!gc_grace.is_zero()).then_some(gc_grace);
    opts.data_dir = args
        .storage
        .dir(PathBuf::from(format!("data/node{}", args.id)));
    opts.fsync = args.storage.fsync;
    opts.snapshot_threshold = args.storage.snapshot_threshold;
    if let Some(seed) = args.seed {
        opts.seed = seed;
    }
    let data_dir = opts.data_dir.as_ref().map_or_else(
        || "none (--in-memory)".to_owned(),
        |d| d.display().to_string(),
    );
    tracing::info!(
        version = VERSION,
        config = %args.config.display(),
        id = args.id,
        data_dir,
        fsync = ?opts.fsync,
        election_ms = %format!("{}-{}", opts.timing.election_min.as_millis(), opts.timing.election_max.as_millis()),
        heartbeat_ms = opts.timing.heartbeat.as_millis() as u64,
        "starting surfstore server"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let node = node::start(opts, shutdown_rx).await?;
        tracing::info!(id = args.id, addr = %node.addr, members = config.members.len(), scheme, "node listening");
        // The driver ends by itself only when the node failed. (Awaiting it,
        // not the status watch, which changes on every turn: a waiter woken
        // per turn cost a thread wake-up per turn.)
        let mut driver = node.driver;
        let failed = tokio::select! {
            _ = wait_for_signal() => None,
            _ = &mut driver => Some(
                node.handle
                    .status()
                    .failed
                    .unwrap_or_else(|| "its driver stopped".into()),
            ),
        };
        if failed.is_none() {
            // A leader that stops hands off first, so the cluster does not
            // wait out an election timeout (a rolling restart costs a
            // transfer per node, not an election).
            if let Some(said) = node.handle.hand_off(Duration::from_secs(2)).await {
                tracing::info!(id = args.id, "stopping: {said}");
            }
        }
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
        if failed.is_none() {
            let _ = driver.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), node.server).await;
        match failed {
            Some(why) => Err(anyhow::anyhow!("node {} stopped: {why}", args.id)),
            None => Ok(()),
        }
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        // A closed terminal (SIGHUP) is a stop like the others, as for
        // `cluster --headless`: hand off, then exit 0.
        let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The error and its causes, each cause shown once: our error messages already
/// quote their io errors, so a plain `{:#}` would repeat them.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
