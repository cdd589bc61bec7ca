//! `--headless`: the cluster without a dashboard, for scripts, CI and servers
//! without a terminal. The event log goes to the given writer (stdout), one
//! line per event as `HH:MM:SS.mmm node N: what happened` (UTC), preceded by
//! one `listening` line per node and followed by `stopped` after a signal.

use std::io::Write;

use crate::cluster::launch::Signals;
use crate::cluster::Cluster;

/// Prints the cluster's events to `out` until a signal arrives (or `out` is
/// closed). The caller shuts the cluster down.
pub async fn run(
    cluster: &mut Cluster,
    mut signals: Signals,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for (id, (member, addr)) in cluster
        .members()
        .iter()
        .zip(cluster.local_addrs())
        .enumerate()
    {
        let tls = if cluster.serves_tls() {
            ", HTTPS only"
        } else {
            ""
        };
        writeln!(out, "node {id} listening on {member} ({addr}{tls})")?;
    }
    out.flush()?;
    let Some(mut feed) = cluster.take_events() else {
        return Ok(());
    };
    loop {
        tokio::select! {
            signal = signals.recv() => {
                writeln!(out, "received {signal}: stopping {} node(s)", cluster.len())?;
                out.flush()?;
                return Ok(());
            }
            item = feed.recv() => match item {
                Some(item) => {
                    writeln!(out, "{item}")?;
                    out.flush()?;
                }
                None => return Ok(()),
            },
        }
    }
}
