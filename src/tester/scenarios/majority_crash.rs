//! `majority-crash`: crash ceil(M/2) followers so the leader is left without
//! a majority. An `updatefile` and a `getfileinfomap` sent to the leader must
//! neither answer nor fail for the block-check time; after the restore both
//! complete within the catch-up bound with the right answers (the update
//! `True`, the map holding every acknowledged write), and every node applies
//! the update.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{hashes, info_text, others, update_params, Ctx};
use crate::tester::error::{Result, TesterError};
use crate::tester::fmt;
use crate::tester::linearizability::history::parse_map;
use crate::xmlrpc::client::CallError;
use crate::xmlrpc::Value;

type Answer = (std::result::Result<Value, CallError>, Instant);

/// Aborts the call task if the scenario ends early.
struct Pending(Option<JoinHandle<Answer>>);

impl Pending {
    fn finished(&self) -> bool {
        self.0.as_ref().is_none_or(|h| h.is_finished())
    }

    async fn answer(&mut self, bound: Duration) -> Option<Answer> {
        let handle = self.0.take()?;
        match tokio::time::timeout(bound, handle).await {
            Ok(Ok(answer)) => Some(answer),
            _ => None,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    let m = c.len();
    if m < 2 {
        ctx.note("M = 1: no majority can crash without the leader");
        return Ok(());
    }
    let opts = &ctx.opts;
    let l = ctx.leader().await?;
    let n = m - m / 2;
    let mut rng = ctx.rng("majority-crash");
    let victims = ctx.pick(&mut rng, &others(m, &[l]), n);
    let f = ctx.file("blocked.txt");
    let before = ctx.ledger();

    ctx.step(format!(
        "crash {} of {m}: {}",
        victims.len(),
        c.names(&victims)
    ));
    let guard = c.crash_many(&victims).await?;

    // Separate clients with room to wait through the whole scenario.
    let wait = opts.block_check + opts.catchup_bound + c.rpc_timeout();
    let update_call = update_params(&f, 1, &hashes(&["z"]));
    let sent = Instant::now();
    let update = {
        let client = c.fresh_client(l, wait);
        let params = update_call.clone();
        Pending(Some(tokio::spawn(async move {
            (
                client.call("surfstore.updatefile", &params).await,
                Instant::now(),
            )
        })))
    };
    let read = {
        let client = c.fresh_client(l, wait);
        Pending(Some(tokio::spawn(async move {
            (
                client.call("surfstore.getfileinfomap", &[]).await,
                Instant::now(),
            )
        })))
    };

    ctx.step("updatefile and getfileinfomap must block");
    let (mut update, mut read) = (update, read);
    let deadline = sent + opts.block_check;
    while Instant::now() < deadline {
        if update.finished() {
            let answer = update.answer(Duration::from_secs(1)).await;
            return Err(blocked_failure(
                &ctx,
                l,
                "updatefile",
                &update_call,
                &victims,
                sent,
                answer,
            ));
        }
        if read.finished() {
            let answer = read.answer(Duration::from_secs(1)).await;
            return Err(blocked_failure(
                &ctx,
                l,
                "getfileinfomap",
                &[],
                &victims,
                sent,
                answer,
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let blocked_for = sent.elapsed();

    ctx.step(format!("restore {}", c.names(&victims)));
    let restored = Instant::now();
    guard.restore().await?;

    ctx.step("blocked calls complete");
    let bound = opts.catchup_bound;
    let (u, u_at) = update
        .answer(bound)
        .await
        .ok_or_else(|| TesterError::Timeout {
            what: format!(
                "{} to complete after the restore",
                ctx.describe(l, "updatefile", &update_call)
            ),
            bound,
            expected: "True".into(),
            observed: "no answer".into(),
        })?;
    if !matches!(u, Ok(Value::Bool(true))) {
        return Err(TesterError::check(
            format!(
                "{} (sent while a majority was crashed)",
                ctx.describe(l, "updatefile", &update_call)
            ),
            "True (once a majority is back)",
            fmt::outcome(&u),
        ));
    }
    ctx.record(&f, 1, hashes(&["z"]));
    let (r, _) = read
        .answer(bound)
        .await
        .ok_or_else(|| TesterError::Timeout {
            what: format!(
                "{} to complete after the restore",
                ctx.describe(l, "getfileinfomap", &[])
            ),
            bound,
            expected: "the map".into(),
            observed: "no answer".into(),
        })?;
    let call = format!(
        "{} (sent while a majority was crashed)",
        ctx.describe(l, "getfileinfomap", &[])
    );
    let Some(map) = r.as_ref().ok().and_then(parse_map) else {
        return Err(TesterError::check(
            call,
            "the map, once a majority is back",
            fmt::outcome(&r),
        ));
    };
    for (file, info) in &before {
        if map.get(file) != Some(info) {
            return Err(TesterError::check(
                call,
                format!(
                    "every acknowledged write, e.g. {}: {}",
                    fmt::string(file),
                    info_text(Some(info))
                ),
                format!("{}: {}", fmt::string(file), info_text(map.get(file))),
            ));
        }
    }
    // Concurrent with the update: either side of it is fine.
    let blocked = map.get(&f);
    if blocked.is_some() && blocked != Some(&(1, hashes(&["z"]))) {
        return Err(TesterError::check(
            call,
            format!("{}: absent or [1, ['z']]", fmt::string(&f)),
            format!("{}: {}", fmt::string(&f), info_text(blocked)),
        ));
    }
    let all: Vec<usize> = (0..m).collect();
    ctx.wait_version(
        "every node applies the blocked update",
        &all,
        &f,
        1,
        opts.catchup_bound,
    )
    .await?;
    ctx.note(format!(
        "{} of {m} crashed: calls blocked for {}, the update completed {} after restore",
        victims.len(),
        fmt::duration(blocked_for),
        fmt::duration(u_at.saturating_duration_since(restored))
    ));
    Ok(())
}

fn blocked_failure(
    ctx: &Ctx,
    l: usize,
    method: &str,
    params: &[Value],
    victims: &[usize],
    sent: Instant,
    answer: Option<Answer>,
) -> TesterError {
    TesterError::check(
        format!(
            "{} with {} of {} crashed ({})",
            ctx.describe(l, method, params),
            victims.len(),
            ctx.cluster.len(),
            ctx.cluster.names(victims)
        ),
        format!(
            "no answer for {} (blocked until a majority is back)",
            fmt::duration(ctx.opts.block_check)
        ),
        match answer {
            Some((r, at)) => format!(
                "{} after {}",
                fmt::outcome(&r),
                fmt::duration(at.saturating_duration_since(sent))
            ),
            None => "an answer".to_owned(),
        },
    )
}
