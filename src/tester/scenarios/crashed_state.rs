//! `crashed-state`: what a crashed node answers. `appendEntries` and
//! `requestVote` get fault 1 `isCrashed` whatever their arguments (the crashed
//! check comes first); `getfileinfomap`/`updatefile` get fault 1 too; `ping`,
//! `members`, `isCrashed`, `isLeader` (False) and `tester_getversion` (its
//! own, unchanged state) still answer; crashing it again changes nothing.
//! After `restore` it is no longer crashed and catches up.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{hashes, others, update_params, Ctx};
use crate::tester::error::Result;
use crate::xmlrpc::Value;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    let m = c.len();
    let opts = &ctx.opts;
    let l = ctx.leader().await?;
    let all: Vec<usize> = (0..m).collect();
    let f = ctx.file("crashed-state.txt");
    ctx.update(l, &f, 1, hashes(&["c1"]), true, "creating a new file")
        .await?;
    ctx.wait_version(
        "every node applies version 1",
        &all,
        &f,
        1,
        opts.replication_bound,
    )
    .await?;

    let mut rng = ctx.rng("crashed-state");
    let victim = if m > 1 {
        ctx.pick(&mut rng, &others(m, &[l]), 1)[0]
    } else {
        l
    };
    ctx.step(format!("crash {}", c.name(victim)));
    let guard = c.crash(victim).await?;

    ctx.step("peer calls are refused with isCrashed");
    let crashed = "Fault 1 'isCrashed...'";
    let is_crashed = |msg: &str| msg.starts_with("isCrashed");
    let mut garbage = BTreeMap::new();
    garbage.insert("term".to_owned(), Value::Int(1_000_000));
    let peer_args: [Vec<Value>; 3] = [
        Vec::new(),
        vec![Value::Struct(garbage)],
        vec![Value::String("not a struct".into()), Value::Int(7)],
    ];
    for method in ["appendEntries", "requestVote"] {
        for args in &peer_args {
            ctx.expect_fault(victim, method, args, 1, crashed, is_crashed)
                .await?;
        }
    }
    ctx.step("client calls are refused with isCrashed");
    ctx.expect_fault(victim, "getfileinfomap", &[], 1, crashed, is_crashed)
        .await?;
    let params = update_params(&f, 2, &hashes(&["x"]));
    ctx.expect_fault(victim, "updatefile", &params, 1, crashed, is_crashed)
        .await?;

    ctx.step("what still answers");
    ctx.expect(victim, "isCrashed", &[], Value::Bool(true))
        .await?;
    ctx.expect(victim, "iscrashed", &[], Value::Bool(true))
        .await?;
    ctx.expect(victim, "ping", &[], Value::Bool(true)).await?;
    let members = Value::Array(
        c.members()
            .iter()
            .map(|a| Value::from(a.as_str()))
            .collect(),
    );
    ctx.expect(victim, "members", &[], members).await?;
    ctx.expect(victim, "isLeader", &[], Value::Bool(false))
        .await?;
    ctx.expect(victim, "isleader", &[], Value::Bool(false))
        .await?;
    ctx.expect(
        victim,
        "tester_getversion",
        &[f.as_str().into()],
        Value::Int(1),
    )
    .await?;
    ctx.expect(victim, "crash", &[], Value::Bool(true)).await?;
    ctx.expect(victim, "isCrashed", &[], Value::Bool(true))
        .await?;

    let mut latest = 1;
    if m >= 3 {
        ctx.step("the crashed node does not apply new writes");
        ctx.update(l, &f, 2, hashes(&["c2"]), true, "a majority is up")
            .await?;
        latest = 2;
        let live = others(m, &[victim]);
        ctx.wait_version(
            "live nodes apply version 2",
            &live,
            &f,
            2,
            opts.replication_bound,
        )
        .await?;
        ctx.expect(
            victim,
            "tester_getversion",
            &[f.as_str().into()],
            Value::Int(1),
        )
        .await?;
    }

    ctx.step(format!("restore {}", c.name(victim)));
    guard.restore().await?;
    ctx.expect(victim, "isCrashed", &[], Value::Bool(false))
        .await?;
    ctx.expect(victim, "restore", &[], Value::Bool(true))
        .await?;
    let took = ctx
        .wait_version(
            "the restored node catches up",
            &[victim],
            &f,
            latest,
            opts.catchup_bound,
        )
        .await?;
    ctx.note(format!(
        "{} refused 6 peer calls and 2 client calls while crashed; caught up {} after restore",
        c.name(victim),
        crate::tester::fmt::duration(took)
    ));
    Ok(())
}
