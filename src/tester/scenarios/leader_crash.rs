//! `leader-crash`: crash the leader. Another node becomes the one leader
//! within the leader bound; its map holds every write acknowledged so far; it
//! takes new writes; the old leader, restored, rejoins as a follower and
//! catches up within the catch-up bound.

use std::sync::Arc;

use super::{hashes, Ctx};
use crate::tester::error::{Result, TesterError};
use crate::tester::{fmt, poll};
use crate::xmlrpc::Value;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    if c.len() < 3 {
        ctx.note(format!(
            "M = {}: a leader crash leaves no majority",
            c.len()
        ));
        return Ok(());
    }
    let opts = &ctx.opts;
    let old = ctx.leader().await?;
    let f = ctx.file("before-leader-crash.txt");
    ctx.update(old, &f, 1, hashes(&["b"]), true, "creating a new file")
        .await?;

    ctx.step(format!("crash the leader, {}", c.name(old)));
    let guard = c.crash(old).await?;
    ctx.expect(old, "isLeader", &[], Value::Bool(false)).await?;
    ctx.step("waiting for a new leader");
    let (new, took) = c.one_leader(opts.leader_bound).await?;
    if new == old {
        return Err(TesterError::check(
            format!(
                "{} on every node after crashing {}",
                fmt::call("isLeader", &[]),
                c.name(old)
            ),
            "a leader other than the crashed node",
            format!("{} still answers True", c.name(old)),
        ));
    }

    ctx.step("no committed write lost");
    let map = ctx.read_map(new).await?;
    ctx.check_ledger(new, &map)?;
    let g = ctx.file("after-leader-crash.txt");
    ctx.update(
        new,
        &g,
        1,
        hashes(&["a"]),
        true,
        "the new leader takes writes",
    )
    .await?;

    ctx.step(format!("restore {}", c.name(old)));
    guard.restore().await?;
    let (_, caught_up) = poll::until(
        &format!("{} to rejoin as a follower and catch up", c.name(old)),
        &format!(
            "isLeader() False and tester_getversion({}) == 1",
            fmt::string(&g)
        ),
        opts.catchup_bound,
        || async {
            let leader = ctx.call(old, "isLeader", &[]).await;
            let v = ctx.version_on(old, &g).await;
            match (&leader, &v) {
                (Ok(Value::Bool(false)), Ok(1)) => Ok(()),
                _ => Err(format!(
                    "isLeader() -> {}, tester_getversion -> {}",
                    fmt::outcome(&leader),
                    v.clone().map_or_else(|e| e, |v| v.to_string())
                )),
            }
        },
    )
    .await?;
    ctx.note(format!(
        "{} took over {} after the crash of {}; the old leader caught up {} after restore",
        c.name(new),
        fmt::duration(took),
        c.name(old),
        fmt::duration(caught_up)
    ));
    Ok(())
}
