//! `surfstore ctl` (what run-ctl.sh execs): an operator's view of a running
//! cluster and its levers, in the manner of etcdctl. It talks XML-RPC to the
//! nodes like any client, signing with the secret it is given, over HTTPS
//! with `--tls-ca`:
//!
//! - `status`: one row per member, all asked in parallel (`surfstore.status`
//!   and a timed `ping`); a member that does not answer is a row saying so;
//! - `members`: the member list, as the cluster (or `--config`) has it;
//! - `transfer-leader [ID]`: asks the leader to hand leadership to ID (or
//!   its most up-to-date follower) and waits for the outcome;
//! - `crash ID` / `restore ID`: the assignment's simulated failure;
//! - `snapshot save FILE` / `snapshot restore FILE`: a consistent backup
//!   through the leader (the map and the blocks it references), and a fresh
//!   data directory seeded from one (`backup.rs`).
//!
//! Output is a table (`-w table`, the default) or JSON (`-w json`). Exit
//! codes: 0 done (for `status`: every member answered and is healthy); 1 the
//! command failed, or some member is unreachable or unhealthy (its row says
//! why); 2 bad arguments or no member reachable.

mod backup;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use crate::tester::cli::{parse_duration, parse_host_port};
use crate::xmlrpc::client::{CallError, Client, Transport};
use crate::xmlrpc::Value;

pub use status::{Health, MemberRow};

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "ctl",
    about = "Look at a running cluster and move it: status, members, transfer-leader, crash, restore, snapshot save|restore",
    after_help = "Exit codes: 0 done (status: every member answered and is healthy); 1 the command failed, or a member is unreachable or unhealthy (its row says why); 2 bad arguments, or no member reachable."
)]
pub struct CtlArgs {
    /// Any node of the cluster; the others are found with surfstore.members.
    #[arg(long, short = 'e', value_parser = parse_host_port, value_name = "HOST:PORT", conflicts_with = "config")]
    pub endpoint: Option<String>,
    /// Take the members from this config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'w', value_enum, default_value = "table")]
    pub write_out: Format,
    /// Deadline of each call (`2s`, `500ms`); transfer-leader waits up to
    /// ten of these for the outcome.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub timeout: Duration,
    #[command(flatten)]
    pub secrets: crate::auth::SecretArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsClientArgs,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum CtlCommand {
    /// One row per member: id, address, role, term, leader, last/commit/
    /// applied index, snapshot index, files, health, round trip.
    Status,
    /// The members, in id order.
    Members,
    /// Hand leadership to member ID (default: the leader's most up-to-date
    /// follower), and wait until it leads.
    TransferLeader { id: Option<u64> },
    /// Simulated failure of member ID (`surfstore.crash`; state kept).
    Crash { id: u64 },
    /// Bring member ID back from a simulated failure.
    Restore { id: u64 },
    /// Back the cluster up to a file, or seed a data directory from one.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum SnapshotCommand {
    /// A consistent backup through the leader: the map as of one applied
    /// index and every block it references, written to FILE (atomically).
    Save {
        file: PathBuf,
        /// The map alone, without the blocks.
        #[arg(long)]
        metadata_only: bool,
    },
    /// Seed a new or empty data directory from a backup, for member ID of
    /// the cluster in CONFIG (which may be a new cluster, on new
    /// addresses). Restore every member from the same file, then start
    /// them. Needs no running node.
    Restore {
        file: PathBuf,
        /// The directory to create (it must be absent or empty).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The new cluster's config file.
        #[arg(long = "config", id = "restore_config", value_name = "CONFIG")]
        config: PathBuf,
        /// The member this directory is for.
        #[arg(long, value_name = "ID")]
        id: u64,
    },
}

/// Why a ctl command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error("no member answered: {0}")]
    Unreachable(String),
}

impl CtlError {
    fn code(&self) -> i32 {
        match self {
            CtlError::Failed(_) => 1,
            CtlError::Usage(_) | CtlError::Unreachable(_) => 2,
        }
    }
}

/// Runs `args`; returns the exit code (the output is on stdout, errors on
/// stderr, one line each).
pub fn run_cli(args: &CtlArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("surfstore ctl: cannot start: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(args)) {
        Ok((out, code)) => {
            print!("{out}");
            code
        }
        Err(e) => {
            eprintln!("surfstore ctl: {e}");
            e.code()
        }
    }
}

/// The nodes and how to call them.
struct Nodes {
    members: Vec<String>,
    transport: Transport,
    timeout: Duration,
}

impl Nodes {
    fn client(&self, id: usize) -> Client {
        Client::with_transport(&self.members[id], self.timeout, self.transport.clone())
    }

    fn check(&self, id: u64) -> Result<usize, CtlError> {
        let i = id as usize;
        if i >= self.members.len() {
            return Err(CtlError::Usage(format!(
                "member {id} does not exist (ids 0..{})",
                self.members.len()
            )));
        }
        Ok(i)
    }
}

async fn connect(args: &CtlArgs) -> Result<Nodes, CtlError> {
    let keys = args
        .secrets
        .load()
        .map_err(|e| CtlError::Usage(e.to_string()))?;
    let tls = args
        .tls
        .load()
        .map_err(|e| CtlError::Usage(e.to_string()))?;
    let transport = Transport::signed(keys.signing()).with_tls(tls);
    let members = match (&args.config, &args.endpoint) {
        (Some(path), _) => {
            crate::config::load(path)
                .map_err(|e| CtlError::Usage(e.to_string()))?
                .members
        }
        (None, Some(addr)) => {
            let c = Client::with_transport(addr, args.timeout, transport.clone());
            match c.call("surfstore.members", &[]).await {
                Ok(Value::Array(list)) => list
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        CtlError::Failed(format!("{addr}: members is not a list of strings"))
                    })?,
                Ok(other) => {
                    return Err(CtlError::Failed(format!(
                        "{addr}: members answered {other:?}"
                    )))
                }
                Err(e) => return Err(CtlError::Unreachable(format!("{addr}: {e}"))),
            }
        }
        (None, None) => {
            return Err(CtlError::Usage(
                "say where the cluster is: --endpoint HOST:PORT or --config FILE".into(),
            ))
        }
    };
    if members.is_empty() {
        return Err(CtlError::Usage("the cluster lists no member".into()));
    }
    Ok(Nodes {
        members,
        transport,
        timeout: args.timeout,
    })
}

async fn run(args: &CtlArgs) -> Result<(String, i32), CtlError> {
    match &args.command {
        // Needs no node: it writes a data directory.
        CtlCommand::Snapshot(SnapshotCommand::Restore {
            file,
            data_dir,
            config,
            id,
        }) => backup::restore(file, data_dir, config, *id, args.write_out).await,
        command => run_on(args, command, &connect(args).await?).await,
    }
}

/// The commands that talk to the cluster's nodes.
async fn run_on(
    args: &CtlArgs,
    command: &CtlCommand,
    nodes: &Nodes,
) -> Result<(String, i32), CtlError> {
    match command {
        CtlCommand::Status => {
            let rows = status::gather(nodes).await;
            all_unreachable(&rows)?;
            let code = if rows.iter().all(|r| r.health == Health::Ok) {
                0
            } else {
                1
            };
            let out = match args.write_out {
                Format::Table => status::table(&rows),
                Format::Json => status::json(&rows),
            };
            Ok((out, code))
        }
        CtlCommand::Members => {
            let out = match args.write_out {
                Format::Table => nodes
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| format!("{i}  {m}\n"))
                    .collect(),
                Format::Json => {
                    let list: Vec<serde_json::Value> = nodes
                        .members
                        .iter()
                        .enumerate()
                        .map(|(i, m)| serde_json::json!({"id": i, "addr": m}))
                        .collect();
                    format!("{}\n", serde_json::Value::Array(list))
                }
            };
            Ok((out, 0))
        }
        CtlCommand::TransferLeader { id } => {
            if let Some(id) = id {
                nodes.check(*id)?;
            }
            transfer(nodes, *id, args.write_out).await
        }
        CtlCommand::Crash { id } => admin(nodes, *id, "crash", args.write_out).await,
        CtlCommand::Restore { id } => admin(nodes, *id, "restore", args.write_out).await,
        CtlCommand::Snapshot(SnapshotCommand::Save {
            file,
            metadata_only,
        }) => backup::save(nodes, file, *metadata_only, args.write_out).await,
        CtlCommand::Snapshot(SnapshotCommand::Restore { .. }) => Err(CtlError::Usage(
            "snapshot restore talks to no node (`run` takes it)".into(),
        )),
    }
}

async fn admin(
    nodes: &Nodes,
    id: u64,
    what: &str,
    format: Format,
) -> Result<(String, i32), CtlError> {
    let i = nodes.check(id)?;
    nodes
        .client(i)
        .call(&format!("surfstore.{what}"), &[])
        .await
        .map_err(|e| CtlError::Failed(format!("{what} {id} ({}): {e}", nodes.members[i])))?;
    let done = if what == "crash" {
        "crashed"
    } else {
        "restored"
    };
    Ok(match format {
        Format::Table => (format!("member {id} ({}) {done}\n", nodes.members[i]), 0),
        Format::Json => (
            format!(
                "{}\n",
                serde_json::json!({"id": id, "addr": nodes.members[i], "done": done})
            ),
            0,
        ),
    })
}

/// `Unreachable` (exit 2) when no member answered, naming why for each.
fn all_unreachable(rows: &[MemberRow]) -> Result<(), CtlError> {
    if rows
        .iter()
        .all(|r| matches!(r.health, Health::Unreachable(_)))
    {
        let why: Vec<String> = rows
            .iter()
            .map(|r| format!("{} ({})", r.addr, r.health))
            .collect();
        return Err(CtlError::Unreachable(why.join("; ")));
    }
    Ok(())
}

/// The member that leads, by the rows of `status::gather`: of those that
/// say so and are not crashed, the one of the highest term.
fn leader_of(rows: &[MemberRow]) -> Result<u64, CtlError> {
    all_unreachable(rows)?;
    rows.iter()
        .filter(|r| r.role.as_deref() == Some("leader") && r.health != Health::Crashed)
        .max_by_key(|r| r.term)
        .map(|r| r.id)
        .ok_or_else(|| CtlError::Failed("no member says it leads".into()))
}

async fn transfer(
    nodes: &Nodes,
    to: Option<u64>,
    format: Format,
) -> Result<(String, i32), CtlError> {
    let rows = status::gather(nodes).await;
    let from = leader_of(&rows)?;
    let params: Vec<Value> = to.map(|t| Value::Int(t as i32)).into_iter().collect();
    let client = Client::with_transport(
        &nodes.members[from as usize],
        nodes.timeout * 10,
        nodes.transport.clone(),
    );
    let got = client
        .call("surfstore.transferLeader", &params)
        .await
        .map_err(|e| match e {
            CallError::Fault(f) => CtlError::Failed(format!("leader {from}: {}", f.message)),
            other => CtlError::Failed(format!("leader {from}: {other}")),
        })?;
    let new = got
        .as_i64()
        .ok_or_else(|| CtlError::Failed(format!("transferLeader answered {got:?}")))?;
    let term = nodes
        .client(new as usize)
        .call("surfstore.status", &[])
        .await
        .ok()
        .and_then(|s| s.as_struct()?.get("term")?.as_i64());
    let term_text = term.map_or_else(String::new, |t| format!(" (term {t})"));
    Ok(match format {
        Format::Table if new as u64 == from => {
            (format!("member {from} already leads{term_text}\n"), 0)
        }
        Format::Table => (
            format!("leadership transferred from member {from} to member {new}{term_text}\n"),
            0,
        ),
        Format::Json => (
            format!(
                "{}\n",
                serde_json::json!({"from": from, "to": new, "term": term})
            ),
            0,
        ),
    })
}
