//! `surfstore cluster CONFIG [flags]`, what `run-cluster.sh` execs: load and
//! check everything that can be wrong (timing, config, a terminal, every port)
//! while the terminal is still untouched, so a failure is a plain message on
//! stderr and a non-zero exit; then run the dashboard or the headless log until
//! asked to stop, and stop every node before returning.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cluster::{headless, Cluster, ClusterError, ClusterOptions};
use crate::config::ConfigError;
use crate::node::StartError;

/// Everything `surfstore cluster` was asked for.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    pub config: PathBuf,
    pub cluster: ClusterOptions,
    /// No dashboard: the event log goes to stdout, one line per event.
    pub headless: bool,
    /// Where the nodes' tracing logs go under the dashboard (they would garble
    /// the screen on stderr); discarded when `None`. Headless logs go to stderr.
    pub log_file: Option<PathBuf>,
    /// `--log-format` and `--log-level`.
    pub log: crate::logs::LogArgs,
}

/// Why `surfstore cluster` could not run. All of them are reported before the
/// terminal is switched to the dashboard, except `Terminal`, which is reported
/// after it has been restored.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Timing(StartError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("the dashboard needs a terminal, and stdout is not one (use --headless)")]
    NoTerminal,
    #[error("cannot open the log file {}: {source}", path.display())]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("starting the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
    #[error("writing the event log: {0}")]
    Output(std::io::Error),
}

/// Runs a whole cluster from `opts` until Ctrl-C, SIGTERM, SIGHUP or (with the
/// dashboard) `q`; every node is shut down and its port freed before returning.
pub fn run(opts: LaunchOptions) -> Result<(), LaunchError> {
    opts.cluster
        .timing
        .validate()
        .map_err(LaunchError::Timing)?;
    let config = crate::config::load(&opts.config)?;
    if !opts.headless && !std::io::stdout().is_terminal() {
        return Err(LaunchError::NoTerminal);
    }
    init_tracing(&opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    runtime.block_on(async move {
        // Installed before any node runs, so a signal can never kill the
        // process the default way and leave a terminal or ports behind.
        let signals = Signals::install().map_err(LaunchError::Signals)?;
        let mut cluster = Cluster::start(&config, &opts.cluster).await?;
        let result = if opts.headless {
            headless::run(&mut cluster, signals, &mut std::io::stdout().lock())
                .await
                .map_err(LaunchError::Output)
        } else {
            let title = opts.config.file_name().map_or_else(
                || opts.config.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            );
            crate::tui::run(&mut cluster, title, signals)
                .await
                .map_err(LaunchError::Terminal)
        };
        let nodes = cluster.len();
        cluster.shutdown().await;
        if result.is_ok() {
            use std::io::Write;
            // After the dashboard, on the restored screen; a closed stdout
            // (headless, piped) is no reason to fail now.
            let _ = writeln!(
                std::io::stdout(),
                "stopped {nodes} node(s); their ports are closed"
            );
        }
        result
    })
}

fn init_tracing(opts: &LaunchOptions) -> Result<(), LaunchError> {
    if opts.headless {
        // stdout carries the event log; the nodes' own logs stay on stderr.
        opts.log.init(std::io::stderr, crate::logs::stderr_ansi());
    } else if let Some(path) = &opts.log_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LaunchError::LogFile {
                path: path.clone(),
                source,
            })?;
        opts.log.init(std::sync::Mutex::new(file), false);
    }
    Ok(())
}

/// The signals that stop a cluster cleanly: SIGINT (Ctrl-C outside raw mode),
/// SIGTERM (service managers, `kill`), SIGHUP (the terminal went away).
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Replaces the default (killing) action of those signals; call inside the
    /// runtime.
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for the next of those signals and names it.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
                _ = self.hup.recv() => "SIGHUP",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
