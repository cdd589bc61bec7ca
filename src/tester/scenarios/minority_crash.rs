//! `minority-crash`: with floor((M-1)/2) followers crashed, writes still
//! commit and every live node applies them; the crashed nodes stay behind
//! but keep what they had (their `tester_getversion` does not move, and does
//! not drop to 0); once restored they catch up within the catch-up bound.

use std::sync::Arc;

use super::{hashes, others, Ctx};
use crate::tester::error::Result;
use crate::tester::fmt;
use crate::xmlrpc::Value;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    let k = c.minority();
    if k == 0 {
        ctx.note(format!(
            "M = {}: no follower can crash without losing the majority",
            c.len()
        ));
        return Ok(());
    }
    let l = ctx.leader().await?;
    let all: Vec<usize> = (0..c.len()).collect();
    let f = ctx.file("minority.txt");
    let g = ctx.file("minority-new.txt");
    let opts = &ctx.opts;

    ctx.update(l, &f, 1, hashes(&["m1"]), true, "creating a new file")
        .await?;
    ctx.wait_version(
        "every node applies version 1",
        &all,
        &f,
        1,
        opts.replication_bound,
    )
    .await?;

    let mut rng = ctx.rng("minority-crash");
    let victims = ctx.pick(&mut rng, &others(c.len(), &[l]), k);
    ctx.step(format!("crash {}", c.names(&victims)));
    let guard = c.crash_many(&victims).await?;
    for &v in &victims {
        ctx.expect(v, "isCrashed", &[], Value::Bool(true)).await?;
    }

    ctx.step("writes with a minority crashed");
    ctx.update(l, &f, 2, hashes(&["m2"]), true, "a majority is up")
        .await?;
    ctx.update(l, &g, 1, hashes(&["n1"]), true, "a majority is up")
        .await?;
    let live = others(c.len(), &victims);
    let took = ctx
        .wait_version(
            "live nodes apply version 2",
            &live,
            &f,
            2,
            opts.replication_bound,
        )
        .await?;
    ctx.wait_version(
        "live nodes apply the new file",
        &live,
        &g,
        1,
        opts.replication_bound,
    )
    .await?;

    ctx.step("crashed nodes stay behind and keep their state");
    for &v in &victims {
        ctx.expect(v, "tester_getversion", &[f.as_str().into()], Value::Int(1))
            .await?;
        ctx.expect(v, "tester_getversion", &[g.as_str().into()], Value::Int(0))
            .await?;
    }

    ctx.step(format!("restore {}", c.names(&victims)));
    guard.restore().await?;
    let caught_up = ctx
        .wait_version(
            "restored nodes catch up",
            &victims,
            &f,
            2,
            opts.catchup_bound,
        )
        .await?;
    ctx.wait_version(
        "restored nodes learn the new file",
        &victims,
        &g,
        1,
        opts.catchup_bound,
    )
    .await?;
    ctx.note(format!(
        "crashed {}; live nodes applied in {}; caught up {} after restore",
        c.names(&victims),
        fmt::duration(took),
        fmt::duration(caught_up)
    ));
    Ok(())
}
