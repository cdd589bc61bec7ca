//! `followers`: every follower refuses `updatefile` and `getfileinfomap` with
//! fault 2 `NotLeader` naming the leader's `host:port`, and the refused update
//! has no effect anywhere.

use std::sync::Arc;

use super::{hashes, update_params, Ctx};
use crate::tester::error::{Result, TesterError};
use crate::tester::{fmt, poll};
use crate::xmlrpc::client::CallError;
use crate::xmlrpc::Value;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    let l = ctx.leader().await?;
    let leader_addr = c.addr(l).to_owned();
    let f = ctx.file("follower-write.txt");
    let expected = format!("Fault 2 'NotLeader: ... {leader_addr} ...'");
    for i in (0..c.len()).filter(|&i| i != l) {
        ctx.step(format!("{} refuses leader-only calls", c.name(i)));
        let params = update_params(&f, 1, &hashes(&["h"]));
        // A follower names the leader once it has heard from it: a heartbeat
        // after an election. Wait for that within the leader bound; any other
        // answer is a failure at once.
        for (method, params) in [("updatefile", params), ("getfileinfomap", Vec::new())] {
            let call = ctx.describe(i, method, &params);
            let (verdict, _) = poll::until(
                &format!("{call} to name the leader"),
                &expected,
                ctx.opts.leader_bound,
                || async {
                    let r = ctx.call(i, method, &params).await;
                    match &r {
                        Err(CallError::Fault(f))
                            if f.code == 2 && f.message.contains(&leader_addr) =>
                        {
                            Ok(Ok(()))
                        }
                        // NotLeader without the leader: not heard from it yet.
                        Err(CallError::Fault(f)) if f.code == 2 => Err(fmt::outcome(&r)),
                        // Anything else is wrong at once (and must not be
                        // retried: a follower that accepts a write would
                        // apply it).
                        _ => Ok(Err(fmt::outcome(&r))),
                    }
                },
            )
            .await?;
            if let Err(observed) = verdict {
                return Err(TesterError::check(call, expected.clone(), observed));
            }
        }
    }
    ctx.step("refused writes had no effect");
    for i in 0..c.len() {
        ctx.expect(i, "tester_getversion", &[f.as_str().into()], Value::Int(0))
            .await?;
    }
    let map = ctx.read_map(l).await?;
    if map.contains_key(&f) {
        return Err(TesterError::check(
            ctx.describe(l, "getfileinfomap", &[]),
            "no entry for a file only followers were asked to write",
            super::info_text(map.get(&f)),
        ));
    }
    ctx.note(format!("{} followers named {leader_addr}", c.len() - 1));
    Ok(())
}
