//! `replication`: a write committed on the leader is applied by every node
//! (`tester_getversion`) within the replication bound; twice, for a create
//! and an update.

use std::sync::Arc;

use super::{hashes, Ctx};
use crate::tester::error::Result;
use crate::tester::fmt;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    let l = ctx.leader().await?;
    let all: Vec<usize> = (0..c.len()).collect();
    let f = ctx.file("replicated.txt");
    let bound = ctx.opts.replication_bound;
    let mut times = Vec::new();
    for (version, hash) in [(1, "r1"), (2, "r2")] {
        ctx.step(format!("write version {version} on the leader"));
        ctx.update(
            l,
            &f,
            version,
            hashes(&[hash]),
            true,
            "current+1 on the leader",
        )
        .await?;
        let took = ctx
            .wait_version(
                &format!("every node applies version {version}"),
                &all,
                &f,
                version,
                bound,
            )
            .await?;
        times.push(fmt::duration(took));
    }
    ctx.note(format!(
        "all {} nodes applied within {} (bound {})",
        c.len(),
        times.join(" / "),
        fmt::duration(bound)
    ));
    Ok(())
}
