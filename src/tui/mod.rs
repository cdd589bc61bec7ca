//! The live dashboard of `run-cluster.sh`: watch every node of an in-process
//! cluster and break them.
//!
//! - `app`: the state (statuses, selection, event log, log tail);
//! - `ui`: draws an `App` (tested on ratatui's `TestBackend`);
//! - `handler`: keys to `App` methods, which return `Action`s;
//! - `event`: one stream merging frame ticks, terminal input, stop signals and
//!   the nodes' events;
//! - `terminal`: raw mode and the alternate screen, restored on every way out;
//! - `text`: fitting text into cells, with `…` wherever it is cut.
//!
//! Everything shown is pushed by the nodes (their status `watch`, their event
//! broadcast, log tails asked of the driver); nothing is polled over HTTP.
//! Crash and restore call the same `NodeHandle` methods as the XML-RPC
//! `crash`/`restore`, so the dashboard shows both the same way. Partition
//! keys change the cluster's shared filter (`Cluster::partition`), which
//! every node's peer calls go through.

pub mod app;
pub mod event;
pub mod handler;
pub mod terminal;
pub mod text;
pub mod ui;

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::cluster::launch::Signals;
use crate::cluster::Cluster;
use crate::node::command::Hash;
use crate::node::{NodeHandle, NodeStatus};

use app::{Action, App, NodeView, Tone, LOG_TAIL_LEN};
use event::{AppEvent, Events, TICK};
use terminal::Tui;

/// How long a log-tail request may take before the dashboard gives up on it
/// (the driver answers in microseconds unless it is wedged).
const LOG_TAIL_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the dashboard over `cluster` until the user quits or a stop signal
/// arrives; the terminal is restored before this returns. The caller shuts
/// the cluster down.
pub async fn run(cluster: &mut Cluster, title: String, signals: Signals) -> std::io::Result<()> {
    let handles = cluster.handles();
    let nodes = handles
        .iter()
        .zip(cluster.members())
        .map(|(h, addr)| NodeView {
            addr: addr.clone(),
            status: h.status(),
        })
        .collect();
    let mut app = App::new(title, nodes);
    app.restartable = cluster.restartable();
    app.note(format!(
        "{} nodes listening; press w to write, c to crash, p to isolate",
        handles.len()
    ));
    let mut events = Events::start(TICK, signals, cluster.take_events());
    let mut guard = terminal::enter()?;
    let result = run_loop(&mut guard.terminal, &mut app, cluster, handles, &mut events).await;
    drop(guard);
    result
}

async fn run_loop(
    terminal: &mut Tui,
    app: &mut App,
    cluster: &mut Cluster,
    mut handles: Vec<NodeHandle>,
    events: &mut Events,
) -> std::io::Result<()> {
    let mut watches: Vec<watch::Receiver<NodeStatus>> = handles.iter().map(|h| h.watch()).collect();
    let mut actions = JoinSet::new();
    let mut tail_pending = false;
    let mut net_seen = cluster.partition().generation();
    app.set_net(cluster.partition().cuts());
    terminal.draw(|f| ui::render(app, f))?;
    while app.running {
        match events.next().await {
            AppEvent::Tick => {
                for (i, w) in watches.iter_mut().enumerate() {
                    if w.has_changed().unwrap_or(false) {
                        app.set_status(i as u64, w.borrow_and_update().clone());
                    }
                }
                let generation = cluster.partition().generation();
                if generation != net_seen {
                    net_seen = generation;
                    app.set_net(cluster.partition().cuts());
                }
                if !tail_pending {
                    if let Some(id) = app.log_tail_wanted() {
                        tail_pending = true;
                        fetch_log_tail(&mut actions, app, &handles[id as usize], events.sender());
                    }
                }
                terminal.draw(|f| ui::render(app, f))?;
            }
            AppEvent::Key(key) => {
                match handler::handle_key(app, key) {
                    Some(Action::Kill(id)) => {
                        terminal.draw(|f| ui::render(app, f))?;
                        // Inline: the handles and watches change under it.
                        match cluster.kill_and_restart(id).await {
                            Ok(h) => {
                                app.set_status(id, h.status());
                                watches[id as usize] = h.watch();
                                handles[id as usize] = h;
                                app.push(
                                    Some(id),
                                    "restarted from its data directory".to_owned(),
                                    Tone::Commit,
                                );
                            }
                            Err(e) => app.push(Some(id), format!("kill: {e}"), Tone::Error),
                        }
                    }
                    Some(Action::Net(change)) => {
                        // A few atomic stores: done here, at once.
                        let partition = cluster.partition();
                        let changed = change.apply(partition);
                        net_seen = partition.generation();
                        app.net_applied(&change, changed, partition.cuts());
                    }
                    Some(action) => perform(&mut actions, &handles, action, events.sender()),
                    None => {}
                }
                if app.running {
                    terminal.draw(|f| ui::render(app, f))?;
                }
            }
            AppEvent::Resize => {
                terminal.autoresize()?;
                terminal.draw(|f| ui::render(app, f))?;
            }
            AppEvent::Feed(item) => app.push_feed(item),
            AppEvent::Note { node, text, tone } => app.push(node, text, tone),
            AppEvent::LogTail { node, at, lines } => {
                tail_pending = false;
                app.set_log_tail(node, at, lines);
            }
            AppEvent::Quit(reason) => {
                app.note(format!("{reason}: quitting"));
                app.quit();
            }
        }
        while actions.try_join_next().is_some() {}
    }
    // A write still waiting for a majority is abandoned; shutting the nodes
    // down answers it with `Unavailable` anyway.
    actions.abort_all();
    Ok(())
}

fn fetch_log_tail(
    actions: &mut JoinSet<()>,
    app: &App,
    handle: &NodeHandle,
    tx: mpsc::UnboundedSender<AppEvent>,
) {
    let raft = &app.nodes[app.selected].status.raft;
    let at = (raft.last_index, raft.last_term);
    let node = handle.id;
    let handle = handle.clone();
    actions.spawn(async move {
        let lines =
            match tokio::time::timeout(LOG_TAIL_TIMEOUT, handle.log_tail(LOG_TAIL_LEN)).await {
                Ok(Ok(lines)) => lines,
                // Shutting down or wedged: show nothing rather than stale lines,
                // and let the next tick ask again.
                _ => Vec::new(),
            };
        let _ = tx.send(AppEvent::LogTail { node, at, lines });
    });
}

/// Carries out `action` on the nodes in a task of its own (a write may wait a
/// long time for a majority); its outcome comes back as a `Note`.
fn perform(
    actions: &mut JoinSet<()>,
    handles: &[NodeHandle],
    action: Action,
    tx: mpsc::UnboundedSender<AppEvent>,
) {
    let note = move |node: Option<u64>, text: String, tone: Tone| {
        let _ = tx.send(AppEvent::Note { node, text, tone });
    };
    match action {
        Action::Crash(id) => {
            let h = handles[id as usize].clone();
            actions.spawn(async move {
                if let Err(e) = h.crash().await {
                    note(Some(id), format!("crash failed: {e}"), Tone::Error);
                }
            });
        }
        Action::Restore(id) => {
            let h = handles[id as usize].clone();
            actions.spawn(async move {
                if let Err(e) = h.restore().await {
                    note(Some(id), format!("restore failed: {e}"), Tone::Error);
                }
            });
        }
        Action::RestoreAll => {
            let handles = handles.to_vec();
            actions.spawn(async move {
                for h in handles {
                    if h.status().crashed {
                        if let Err(e) = h.restore().await {
                            note(Some(h.id), format!("restore failed: {e}"), Tone::Error);
                        }
                    }
                }
            });
        }
        Action::Kill(_) => unreachable!("run_loop carries out kills itself"),
        Action::Net(_) => unreachable!("run_loop carries out partition changes itself"),
        Action::Transfer { from, to } => {
            let h = handles[from as usize].clone();
            actions.spawn(async move {
                match h.transfer_leader(Some(to)).await {
                    Ok(_) => {}
                    Err(e) => note(
                        Some(from),
                        format!("transfer to node {to} failed: {e}"),
                        Tone::Error,
                    ),
                }
            });
        }
        Action::Write { via, filename } => {
            let h = handles[via as usize].clone();
            actions.spawn(async move {
                let version = h.get_version(filename.clone()).await.unwrap_or(0) + 1;
                let hashlist = vec![Hash::text(format!("{filename}-v{version}-hash"))];
                let (text, tone) = match h.update_file(filename.clone(), version, hashlist).await {
                    Ok(true) => (
                        format!("write {filename} v{version}: applied"),
                        Tone::Commit,
                    ),
                    Ok(false) => (
                        format!("write {filename} v{version}: refused (version rule)"),
                        Tone::Error,
                    ),
                    Err(e) => (format!("write {filename} v{version}: {e}"), Tone::Error),
                };
                note(Some(via), text, tone);
            });
        }
    }
}
