//! The sync client (`surfstore client HOST:PORT BASEDIR BLOCKSIZE`, what
//! `run-client.sh` execs): keeps a local base directory and the cluster in
//! step, Dropbox-like, with the SurfStore algorithm (`sync.rs`).
//!
//! Promises:
//! - Blocks are uploaded before the `updatefile` that references them.
//! - Files are written atomically; a file name that could leave the base
//!   directory is never written (`fsutil.rs`).
//! - A base directory that does not exist, a block size above the server's
//!   limit, or a corrupt `index.txt` or `.surfignore` stop the sync before
//!   anything changes, locally or remotely; so does a cluster that does not
//!   answer. An unreadable file or directory is listed and left alone.
//! - Unchanged content never moves, whatever block size each client uses.
//! - A conflict goes the cloud's way; under `--conflicts keep` the local copy
//!   is kept as `NAME.conflict-V`, under `cloud` it is dropped.
//! - What a sync does not carry (symbolic links, FIFOs, sockets, devices,
//!   remote entries of other tools, ignored names) is left alone and listed.

pub mod bench;
pub mod content;
pub mod fsutil;
pub mod index;
pub mod remote;
pub mod report;
pub mod statcache;
pub mod surfignore;
pub mod sync;
pub mod watch;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::xmlrpc::Value;

pub use sync::{sync, Action, Did, Summary};

/// Why a sync did not complete.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    #[error("base directory {}: {why}", path.display())]
    BaseDir { path: PathBuf, why: String },
    #[error("block size must be a positive number of bytes, got {0}")]
    BadBlockSize(usize),
    #[error("block size {size} is too large: {why}")]
    BlockTooLarge { size: usize, why: String },
    #[error("{}: corrupt index, {error}", path.display())]
    CorruptIndex {
        path: PathBuf,
        error: index::IndexLineError,
    },
    #[error("{}: line {line}: {why}", path.display())]
    BadIgnore {
        path: PathBuf,
        line: usize,
        why: String,
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
    /// The server does not know the method (fault 4: a server from before it).
    #[error("the server does not know {what}: {why}")]
    NoSuchMethod { what: String, why: String },
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

    /// Errors that stop the whole sync (the cluster is gone, or no block can
    /// pass its limit); the others concern one file, which is skipped.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::GaveUp { .. }
                | ClientError::BlockTooLarge { .. }
        )
    }
}

/// What becomes of a local change that lost a conflict (both sides changed
/// the file since the last sync; the cloud's version wins either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConflictPolicy {
    /// The assignment's rule: the local file is overwritten with (or, for a
    /// remote delete, deleted like) the cloud's version; no extra file.
    #[default]
    Cloud,
    /// The local copy is first moved aside as `NAME.conflict-V`, which the
    /// next sync uploads as a new file.
    Keep,
}

/// The largest block a server with default flags takes: its
/// `--max-block-bytes` (`BlockOptions`' default, 4 MiB).
pub fn server_default_max_block() -> usize {
    crate::node::blocks::BlockOptions::default().max_block_bytes
}

/// The largest block whose `putblock` call (base64 in XML) fits in a request
/// body the server accepts by default (`--max-body-bytes`, 16 MiB).
pub fn body_limited_max_block() -> usize {
    let body = crate::xmlrpc::server::ServerOptions::default().max_body_bytes;
    let mut envelope = Vec::new();
    crate::xmlrpc::codec::encode_call(
        "surfstore.putblock",
        &[Value::Base64(Vec::new())],
        &mut envelope,
    );
    // base64 carries 3 bytes in 4 characters.
    body.saturating_sub(envelope.len()) / 4 * 3
}

/// Refuses a block size the server would refuse, before anything moves:
/// above `max_block` (what the client was told the server's
/// `--max-block-bytes` is), or too large for a `putblock` body at all.
pub fn check_block_size(block_size: usize, max_block: usize) -> Result<(), ClientError> {
    let body_max = body_limited_max_block();
    if block_size > body_max {
        return Err(ClientError::BlockTooLarge {
            size: block_size,
            why: format!(
                "its putblock call would not fit in the server's {}-byte request limit \
                 (blocks of at most {body_max} bytes do)",
                crate::xmlrpc::server::ServerOptions::default().max_body_bytes
            ),
        });
    }
    if block_size > max_block {
        return Err(ClientError::BlockTooLarge {
            size: block_size,
            why: format!(
                "the server takes blocks of at most {max_block} bytes (its --max-block-bytes; \
                 tell the client another limit with --max-block-bytes)"
            ),
        });
    }
    Ok(())
}

/// Files in flight at once unless `--parallel` says otherwise.
pub const DEFAULT_PARALLEL: usize = 32;

/// How one sync runs.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub base_dir: PathBuf,
    pub block_size: usize,
    /// How long one call keeps retrying through crashes and failovers.
    pub retry_budget: Duration,
    /// Deadline of a single call.
    pub call_timeout: Duration,
    /// Files in flight at once (their block batches, `getblock`s and
    /// `updatefile`s overlap; see `sync.rs` for the bounds on calls).
    pub parallel: usize,
    /// Progress bars on stderr for large transfers.
    pub progress: bool,
    /// What goes with every call (the proof of a secret, when given).
    pub transport: crate::xmlrpc::client::Transport,
    /// What becomes of a local change that loses a conflict.
    pub conflicts: ConflictPolicy,
    /// The largest block the server takes (its `--max-block-bytes`); a
    /// larger block size is refused before anything moves.
    pub max_block_bytes: usize,
    /// Where the stat cache of this folder lives (`statcache.rs`); `None`:
    /// every file is read at every sync.
    pub stat_cache: Option<PathBuf>,
}

impl SyncOptions {
    /// Options with the defaults, but for `conflicts`: `Keep`, the library's
    /// behaviour from the start (the command line defaults to `cloud`).
    pub fn new(base_dir: impl Into<PathBuf>, block_size: usize) -> Self {
        SyncOptions {
            base_dir: base_dir.into(),
            block_size,
            retry_budget: Duration::from_secs(60),
            call_timeout: Duration::from_secs(10),
            parallel: DEFAULT_PARALLEL,
            transport: Default::default(),
            progress: false,
            conflicts: ConflictPolicy::Keep,
            max_block_bytes: server_default_max_block(),
            stat_cache: None,
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
    /// Files synced at once (at least 1); their block and metadata calls
    /// share the pooled connections.
    #[arg(long, default_value_t = DEFAULT_PARALLEL, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub parallel: usize,
    /// When both sides changed a file, the cloud's version wins; `cloud`
    /// drops the local change, `keep` first keeps it as NAME.conflict-V.
    #[arg(long, value_enum, default_value_t = ConflictPolicy::Cloud, value_name = "POLICY")]
    pub conflicts: ConflictPolicy,
    /// The largest block the server takes (the server's --max-block-bytes);
    /// a larger BLOCKSIZE is refused before anything moves.
    #[arg(long, default_value_t = server_default_max_block(), value_name = "BYTES")]
    pub max_block_bytes: usize,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// After the sync, keep syncing on local and remote changes until
    /// Ctrl-C or SIGTERM (exit 0).
    #[arg(long)]
    pub watch: bool,
    /// Where to keep what the last scan learnt of each file (size, times,
    /// inode, hashes), so unchanged files are not read again; by default
    /// $XDG_CACHE_HOME/surfstore/ or ~/.cache/surfstore/, one file per
    /// folder. Only a cache: losing it costs one full read.
    #[arg(long, value_name = "FILE", conflicts_with = "no_stat_cache")]
    pub stat_cache: Option<PathBuf>,
    /// Read every file at every sync (no stat cache).
    #[arg(long)]
    pub no_stat_cache: bool,
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
        conflicts: args.conflicts,
        max_block_bytes: args.max_block_bytes,
        stat_cache: if args.no_stat_cache {
            None
        } else {
            args.stat_cache
                .clone()
                .or_else(|| statcache::default_path(&args.base_dir))
        },
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
    if args.watch {
        return runtime.block_on(watch::run_cli(&args.addr, &opts, args.quiet));
    }
    match runtime.block_on(sync(&args.addr, &opts)) {
        Ok(s) => {
            if !args.quiet {
                for line in report::lines(&s) {
                    println!("{line}");
                }
                for w in &s.warnings {
                    eprintln!("surfstore client: warning: {w}");
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_are_checked_against_both_limits() {
        let max = server_default_max_block();
        assert_eq!(max, 4 << 20);
        assert!(check_block_size(max, max).is_ok());
        let e = check_block_size(max + 1, max).unwrap_err();
        assert!(e.to_string().contains("at most 4194304 bytes"), "{e}");
        // A putblock body carries about 12 MiB of a 16 MiB body.
        let body = body_limited_max_block();
        assert!(body > 12_000_000 && body < 12 << 20, "{body}");
        assert!(check_block_size(body, usize::MAX).is_ok());
        let e = check_block_size(body + 1, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("request limit"), "{e}");
        assert!(e.is_fatal());
    }
}
