//! `surfstore tester HOST:PORT [flags]` (what run-tester.sh execs): the flags,
//! and the entry point that turns a run into an exit code.
//!
//! Exit codes: 0 every selected scenario passed and the cluster was left
//! healthy; 1 something failed; 2 bad arguments or an unreachable cluster;
//! 130 interrupted by Ctrl-C or SIGTERM (after restoring every node the
//! tester had crashed).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use super::error::TesterError;
use super::options::Options;
use super::report::{self, Reporter, RunReport};
use super::run;
use super::scenarios;

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "tester",
    about = "Drive a live SurfStore cluster through failures and check it like a client would"
)]
pub struct TesterArgs {
    /// Any node of the cluster, host:port; the others are found with
    /// surfstore.members (or taken from --config, whose first member is
    /// asked first when no address is given).
    #[arg(required_unless_present_any = ["list", "config"], value_parser = parse_host_port)]
    pub addr: Option<String>,
    #[command(flatten)]
    pub secrets: crate::auth::SecretArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsClientArgs,
    /// Take the members from this config file instead of asking the node.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Run only these scenarios (repeat or separate with commas).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Seed of every random choice (workload, nemesis, victims); random if omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long the linearizability workload runs (`10s`, `2.5s`, `800ms`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Print the report as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Concurrent clients of the linearizability workload.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Files the linearizability workload spreads over.
    #[arg(long, default_value_t = 3)]
    pub files: usize,
    /// Concurrent writers per round of the races scenario.
    #[arg(long, default_value_t = 8)]
    pub racers: usize,
    /// Rounds of the races scenario.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// A new leader must be elected within this.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub leader_bound: Duration,
    /// Every node must apply a committed write within this.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub replication_bound: Duration,
    /// A restored node must catch up within this.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub catchup_bound: Duration,
    /// How long calls must stay blocked while a majority is crashed.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub block_check: Duration,
    /// How long the one leader must stay the one leader.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub stable: Duration,
    /// Mean time between nemesis actions (0 turns the nemesis off).
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub nemesis_interval: Duration,
    /// Longest pause between a workload client's operations.
    #[arg(long, value_parser = parse_duration, default_value = "4ms")]
    pub think: Duration,
    /// Time budget of the linearizability checker, per file.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub check_budget: Duration,
    /// Timeout of every single call.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub rpc_timeout: Duration,
    /// How long to wait for the cluster to answer at all before giving up.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub connect_timeout: Duration,
}

impl TesterArgs {
    /// The scenario options these flags ask for (`seed` already chosen).
    pub fn options(&self, seed: u64) -> Options {
        Options {
            leader_bound: self.leader_bound,
            replication_bound: self.replication_bound,
            catchup_bound: self.catchup_bound,
            block_check: self.block_check,
            stable: self.stable,
            duration: self.duration,
            clients: self.clients.max(1),
            files: self.files.max(1),
            racers: self.racers.max(2),
            rounds: self.rounds.max(1),
            nemesis_interval: self.nemesis_interval,
            check_budget: self.check_budget,
            think: self.think,
            seed,
        }
    }

    /// The selected scenario names, in run order; an unknown name is an error.
    pub fn selected(&self) -> Result<Vec<&'static str>, TesterError> {
        let all = scenarios::all();
        for name in &self.only {
            if !all.iter().any(|s| s.name == name) {
                return Err(TesterError::Usage(format!(
                    "no scenario named {name:?}; --list shows them: {}",
                    all.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(all
            .iter()
            .filter(|s| self.only.is_empty() || self.only.iter().any(|n| n == s.name))
            .map(|s| s.name)
            .collect())
    }
}

/// Ctrl-C, or SIGTERM on Unix (what `kill` and timeouts send).
pub(crate) async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `host:port` (`[::1]:9001` too), checked before anything is dialled, so
/// a bare port or a typo is an error at once rather than a connect timeout.
pub fn parse_host_port(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?} is not HOST:PORT (for example localhost:9001)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(text.to_owned()),
        _ => Err(bad()),
    }
}

/// The one duration style of every flag (`crate::duration`).
pub use crate::duration::parse as parse_duration;

/// Runs what `args` asks and returns the process exit code.
pub fn run(args: &TesterArgs) -> i32 {
    if args.list {
        for s in scenarios::all() {
            println!("{:<16} {}", s.name, s.about);
        }
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("surfstore tester: cannot start the tokio runtime: {e}");
            return 2;
        }
    };
    let (out, live): (Box<dyn std::io::Write + Send>, bool) = if args.json {
        (Box::new(std::io::stderr()), std::io::stderr().is_terminal())
    } else {
        (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
    };
    let reporter = Reporter::new(out, live);
    let (code, report) = runtime.block_on(run_async(args, reporter));
    if args.json {
        match &report {
            Ok(r) => println!("{}", report::json(r)),
            Err(e) => println!("{{\"passed\":false,\"error\":{}}}", report::json_str(e)),
        }
    }
    // Nothing may keep the process alive once the report is out.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// The whole run inside a runtime: discover, run, restore, report. Returns
/// the exit code and the report, or why no scenario ran. Ctrl-C restores every
/// crashed node before returning 130.
pub async fn run_async(args: &TesterArgs, reporter: Reporter) -> (i32, Result<RunReport, String>) {
    let selected = match args.selected() {
        Ok(s) => s,
        Err(e) => {
            reporter.line(&format!("surfstore tester: {e}"));
            return (2, Err(e.to_string()));
        }
    };
    let addr = match (&args.addr, &args.config) {
        (Some(addr), _) => addr.clone(),
        (None, Some(path)) => match crate::config::load(path) {
            Ok(config) if !config.members.is_empty() => config.members[0].clone(),
            Ok(_) => {
                let e = format!("{}: lists no member", path.display());
                reporter.line(&format!("surfstore tester: {e}"));
                return (2, Err(e));
            }
            Err(e) => {
                reporter.line(&format!("surfstore tester: {e}"));
                return (2, Err(e.to_string()));
            }
        },
        (None, None) => {
            let e = "a node address HOST:PORT (or --config FILE) is required".to_owned();
            reporter.line(&format!("surfstore tester: {e}"));
            return (2, Err(e));
        }
    };
    let seed = args
        .seed
        .unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let keys = match args.secrets.load() {
        Ok(keys) => keys,
        Err(e) => {
            reporter.line(&format!("surfstore tester: {e}"));
            return (2, Err(e.to_string()));
        }
    };
    let tls = match args.tls.load() {
        Ok(tls) => tls,
        Err(e) => {
            reporter.line(&format!("surfstore tester: {e}"));
            return (2, Err(e.to_string()));
        }
    };
    let cluster = match super::cluster::Cluster::discover(
        &addr,
        args.config.as_deref(),
        args.rpc_timeout,
        args.connect_timeout,
        crate::xmlrpc::client::Transport::signed(keys.signing()).with_tls(tls),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            reporter.line(&format!("surfstore tester: {e}"));
            return (2, Err(e.to_string()));
        }
    };
    let opts = args.options(seed);
    let tag = run::run_tag(seed);
    let runner = run::run(
        cluster.clone(),
        opts.clone(),
        selected,
        args.connect_timeout,
        reporter.clone(),
        tag.clone(),
    );
    tokio::select! {
        result = runner => match result {
            Ok(report) => {
                if !args.json {
                    reporter.line(&report::summary(&report));
                }
                (if report.passed() { 0 } else { 1 }, Ok(report))
            }
            Err(e) => {
                let _ = cluster.restore_all(args.rpc_timeout).await;
                reporter.line(&format!("surfstore tester: {e}"));
                (2, Err(e.to_string()))
            }
        },
        _ = interrupted() => {
            reporter.line("\ninterrupted: restoring every node the tester crashed");
            match cluster.restore_all(args.rpc_timeout).await {
                Ok(nodes) if nodes.is_empty() => reporter.line("nothing was crashed"),
                Ok(nodes) => reporter.line(&format!("restored {}", cluster.names(&nodes))),
                Err(e) => reporter.line(&format!("could not restore everything: {e}")),
            }
            match run::tombstone_run_files(&cluster, &tag, opts.leader_bound * 2).await {
                Ok(text) => reporter.line(&text),
                Err(e) => reporter.line(&format!("could not clean up: {e}")),
            }
            (130, Err("interrupted".to_owned()))
        }
    }
}
