//! The sync client (`surfstore client HOST:PORT BASEDIR BLOCKSIZE`, what
//! `run-client.sh` execs): keeps a local base directory and the cluster in
//! step, Dropbox-like, with the SurfStore algorithm (`sync.rs`).
//!
//! Promises:
//! - Blocks are uploaded before the `updatefile` that references them.
//! - Files are written atomically; a file name that could leave the base
//!   directory is never written (`fsutil.rs`).
//! - A base directory that does not exist, a corrupt `index.txt` or an
//!   unreadable file stop the sync before anything changes, locally or
//!   remotely; so does a cluster that does not answer.
//! - A conflict never loses the local copy: it is kept as `NAME.conflict-V`.

pub mod fsutil;
pub mod index;
pub mod remote;
pub mod sync;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use sync::{sync, Summary};

/// Why a sync did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("base directory {}: {why}", path.display())]
    BaseDir { path: PathBuf, why: String },
    #[error("block size must be a positive number of bytes, got {0}")]
    BadBlockSize(usize),
    #[error("{}: corrupt index, {error}", path.display())]
    CorruptIndex {
        path: PathBuf,
        error: index::IndexLineError,
    },
    #[error("{}: {why}", path.display())]
    Io { path: PathBuf, why: String },
    #[error("cannot reach the cluster at {addr}: {why}")]
    Unreachable { addr: String, why: String },
    #[error("gave up on {what} after retrying for {after:?}; last error: {last}")]
    GaveUp {
        what: String,
        after: Duration,
        last: String,
    },
    #[error("the server refused {what}: {why}")]
    Refused { what: String, why: String },
    #[error("{0}")]
    UnsafeName(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn io(path: &Path, e: std::io::Error) -> ClientError {
        ClientError::Io {
            path: path.to_path_buf(),
            why: e.to_string(),
        }
    }

    /// Errors that stop the whole sync (the cluster is gone); the others
    /// concern one file, which is skipped.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::GaveUp { .. }
        )
    }
}

/// How one sync runs.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub base_dir: PathBuf,
    pub block_size: usize,
    /// How long one call keeps retrying through crashes and failovers.
    pub retry_budget: Duration,
    /// Deadline of a single call.
    pub call_timeout: Duration,
    /// Block transfers in flight at once.
    pub parallel: usize,
    /// Progress bars on stderr for large transfers.
    pub progress: bool,
    /// What goes with every call (the proof of a secret, when given).
    pub transport: crate::xmlrpc::client::Transport,
}

impl SyncOptions {
    pub fn new(base_dir: impl Into<PathBuf>, block_size: usize) -> Self {
        SyncOptions {
            base_dir: base_dir.into(),
            block_size,
            retry_budget: Duration::from_secs(60),
            call_timeout: Duration::from_secs(10),
            parallel: 16,
            transport: Default::default(),
            progress: false,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct ClientArgs {
    /// Any node of the cluster, `host:port`; the rest are learnt from it.
    pub addr: String,
    /// The local folder to sync (must exist); `index.txt` in it is the client's.
    pub base_dir: PathBuf,
    /// Block size in bytes.
    pub block_size: usize,
    /// How long one call keeps retrying through crashes and failovers.
    #[arg(long, value_parser = crate::duration::parse, default_value = "60s", value_name = "DURATION")]
    pub retry: Duration,
    #[arg(long, hide = true, value_parser = crate::duration::secs, conflicts_with = "retry")]
    pub retry_secs: Option<Duration>,
    /// Deadline of a single call (at least 1s).
    #[arg(long, value_parser = crate::duration::parse, default_value = "10s", value_name = "DURATION")]
    pub call_timeout: Duration,
    #[arg(long, hide = true, value_parser = crate::duration::secs, conflicts_with = "call_timeout")]
    pub call_timeout_secs: Option<Duration>,
    /// Block transfers in flight at once.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub secrets: crate::auth::SecretArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsClientArgs,
}

/// Runs one sync for the command line; returns the exit code (0: synced,
/// 1: synced but some files were skipped, 2: the sync failed).
pub fn run_cli(args: &ClientArgs) -> i32 {
    let keys = match args.secrets.load() {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("surfstore client: {e}");
            return 2;
        }
    };
    let tls = match args.tls.load() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("surfstore client: {e}");
            return 2;
        }
    };
    let opts = SyncOptions {
        transport: crate::xmlrpc::client::Transport::signed(keys.signing()).with_tls(tls),
        base_dir: args.base_dir.clone(),
        block_size: args.block_size,
        retry_budget: args.retry_secs.unwrap_or(args.retry),
        call_timeout: args
            .call_timeout_secs
            .unwrap_or(args.call_timeout)
            .max(Duration::from_secs(1)),
        parallel: args.parallel.max(1),
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("surfstore client: cannot start the runtime: {e}");
            return 2;
        }
    };
    match runtime.block_on(sync(&args.addr, &opts)) {
        Ok(s) => {
            if !args.quiet {
                print_summary(&s);
            }
            for p in &s.problems {
                eprintln!("surfstore client: {p}");
            }
            if s.problems.is_empty() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("surfstore client: {e}");
            2
        }
    }
}

fn print_summary(s: &Summary) {
    for n in &s.uploaded {
        println!("uploaded {n}");
    }
    for n in &s.deleted_remote {
        println!("deleted remotely {n}");
    }
    for n in &s.downloaded {
        println!("downloaded {n}");
    }
    for n in &s.deleted_local {
        println!("deleted locally {n}");
    }
    for (n, aside) in &s.conflicts {
        println!("conflict on {n}: the remote version won, your copy is {aside}");
    }
    println!(
        "synced: {} up, {} down, {} blocks ({} bytes) sent, {} blocks ({} bytes) received",
        s.uploaded.len() + s.deleted_remote.len(),
        s.downloaded.len() + s.deleted_local.len(),
        s.blocks_uploaded,
        s.bytes_uploaded,
        s.blocks_downloaded,
        s.bytes_downloaded
    );
}
