//! `client --watch`: after a first sync, keep the base directory and the
//! cluster in step until Ctrl-C or SIGTERM (exit 0). Each wake runs one full
//! [`sync`] (the same one a single run does), so a watch promises exactly
//! what a sync promises.
//!
//! Two wakes:
//! - Local changes, from the operating system's file events (`notify`:
//!   inotify on Linux), debounced: a sync starts once the folder has been
//!   quiet for [`QUIET`] (or [`MAX_DEBOUNCE`] after the first event, so a
//!   folder that never goes quiet still syncs). Events for `index.txt` and
//!   this client's temporary files, and read-only accesses, are ignored.
//! - Remote changes, from a `waitForChanges(since, 30)` long poll on the
//!   leader: between changes the client makes one call per 30 s. `since` is
//!   the counter learnt before the sync that follows, so a change made after
//!   that sync read the map is past it and wakes the poll (see the server's
//!   promises in `node::api::wait_for_changes`).
//!
//! A sync's own downloads show up as local events, and its own uploads move
//! the counter: each costs one more sync, which finds nothing to do. The
//! long poll goes through [`Remote`]'s retries and leader discovery, so a
//! crashed or deposed leader is left for the new one; a sync that fails
//! (the cluster unreachable past the retry budget) is reported and tried
//! again after a backoff, without exiting.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::fsutil::{INDEX, TMP_MARK};
use super::remote::Remote;
use super::sync::{sync, Summary};
use super::{report, ClientError, SyncOptions};
use crate::node::api::wait_for_changes::Changes;
use crate::xmlrpc::Value;

/// Quiet time after a local event before a sync starts.
pub const QUIET: Duration = Duration::from_millis(150);
/// The longest a burst of local events delays a sync.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// The `timeout_s` of each long poll.
pub const LONG_POLL_S: i32 = 30;
/// After a failed sync, the first wait before the next try (doubling to 30 s).
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs the watch until Ctrl-C or SIGTERM; `print` gets every sync that did
/// something. Fails only when the first sync fails or the folder cannot be
/// watched.
pub async fn watch(
    addr: &str,
    opts: &SyncOptions,
    mut print: impl FnMut(&Summary),
) -> Result<(), ClientError> {
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let local = Arc::new(Notify::new());
    let _watcher = watch_folder(&opts.base_dir, local.clone())?;
    // The long poll waits up to 30 s on the server: its call deadline is
    // that plus the usual one.
    let poller = Remote::connect(
        addr,
        Duration::from_secs(LONG_POLL_S as u64) + opts.call_timeout,
        opts.retry_budget,
        &opts.transport,
    )
    .await?;
    let since = poller
        .leader_call("waitForChanges", &[Value::Int(0), Value::Int(0)])
        .await
        .and_then(|v| Changes::from_value(&v).map_err(ClientError::Protocol))?
        .index;
    print(&sync(addr, opts).await?);
    let remote = Arc::new(Notify::new());
    let polling = tokio::spawn(long_poll(poller, since, remote.clone()));
    let mut retry = RETRY_FIRST;
    let mut failed = false;
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = local.notified() => {
                // Debounce: wait for QUIET without an event (at most MAX_DEBOUNCE).
                let until = tokio::time::Instant::now() + MAX_DEBOUNCE;
                loop {
                    tokio::select! {
                        () = &mut stop => { polling.abort(); return Ok(()); }
                        () = local.notified() => {}
                        () = tokio::time::sleep(QUIET) => break,
                        () = tokio::time::sleep_until(until) => break,
                    }
                }
            }
            () = remote.notified() => {}
            () = tokio::time::sleep(retry), if failed => {}
        }
        tokio::select! {
            () = &mut stop => break,
            result = sync(addr, opts) => match result {
                Ok(s) => {
                    print(&s);
                    failed = false;
                    retry = RETRY_FIRST;
                }
                Err(e) => {
                    eprintln!("surfstore client: sync failed: {e}; trying again in {retry:?}");
                    if failed {
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                    failed = true;
                }
            },
        }
    }
    polling.abort();
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, ClientError> {
    let io = |e: std::io::Error| ClientError::Io {
        path: "signal handler".into(),
        why: e.to_string(),
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(io)?;
        let mut int = signal(SignalKind::interrupt()).map_err(io)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = io;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Watches `base` (recursively); every event that may be a change of the
/// user's files wakes `wake` (one stored permit: no queue grows).
fn watch_folder(base: &Path, wake: Arc<Notify>) -> Result<notify::RecommendedWatcher, ClientError> {
    let fail = |e: notify::Error| ClientError::BaseDir {
        path: base.to_path_buf(),
        why: format!("cannot watch it for changes: {e}"),
    };
    let root = base.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) if !is_change(&root, &event) => {}
            // An error (a lost event, an overflow): sync to be sure.
            _ => wake.notify_one(),
        }
    })
    .map_err(fail)?;
    watcher
        .watch(base, RecursiveMode::Recursive)
        .map_err(fail)?;
    Ok(watcher)
}

/// Whether `event` may change what a sync sends: not a read, and about
/// some path other than the index and this client's temporary files.
fn is_change(base: &Path, event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            let own = p == &base.join(INDEX)
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(TMP_MARK));
            !own
        })
}

/// Long-polls `waitForChanges` from `since`, waking `wake` at each change.
/// Every failure is retried (through `Remote`'s leader discovery); a poll
/// that gives up after the retry budget wakes a sync (which reports the
/// cluster's state) and polls again.
async fn long_poll(remote: Remote, mut since: u64, wake: Arc<Notify>) {
    let mut backoff = RETRY_FIRST;
    loop {
        let answer = remote
            .leader_call(
                "waitForChanges",
                &[Value::I8(since as i64), Value::Int(LONG_POLL_S)],
            )
            .await
            .and_then(|v| Changes::from_value(&v).map_err(ClientError::Protocol));
        match answer {
            Ok(c) => {
                backoff = RETRY_FIRST;
                if c.changed {
                    since = c.index;
                    wake.notify_one();
                }
            }
            Err(e) => {
                eprintln!("surfstore client: waiting for remote changes: {e}");
                wake.notify_one();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// The command line's `--watch`: prints what each sync did (unless
/// `quiet`); returns the exit code (0 when stopped by a signal, 2 when the
/// first sync or the folder's watch failed).
pub async fn run_cli(addr: &str, opts: &SyncOptions, quiet: bool) -> i32 {
    let print = |s: &Summary| {
        if !quiet && !s.actions.is_empty() {
            for line in report::lines(s) {
                println!("{line}");
            }
        }
        if !quiet {
            for w in &s.warnings {
                eprintln!("surfstore client: warning: {w}");
            }
        }
        for p in &s.problems {
            eprintln!("surfstore client: {p}");
        }
    };
    match watch(addr, opts, print).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("surfstore client: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, ModifyKind};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(p.into());
        }
        e
    }

    #[test]
    fn the_index_temporary_files_and_reads_are_not_changes() {
        let base = Path::new("/b");
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(is_change(base, &event(modify, &["/b/notes.md"])));
        assert!(is_change(
            base,
            &event(EventKind::Create(CreateKind::File), &["/b/d/x"])
        ));
        assert!(!is_change(base, &event(modify, &["/b/index.txt"])));
        assert!(is_change(base, &event(modify, &["/b/d/index.txt"])));
        assert!(!is_change(base, &event(modify, &["/b/.surfstore-tmp-1-x"])));
        assert!(!is_change(
            base,
            &event(EventKind::Access(AccessKind::Any), &["/b/a"])
        ));
        assert!(is_change(base, &event(modify, &["/b/index.txt", "/b/a"])));
        assert!(is_change(base, &event(EventKind::Other, &[])));
    }
}
