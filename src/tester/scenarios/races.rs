//! `races`: `--racers` clients, each on its own connections, send
//! `updatefile` for the same file and the same version to the leader at the
//! same moment (released together from a barrier), for `--rounds` versions in
//! a row. Exactly one gets `True` each round, the others `False`, and the map
//! then holds the winner's hashlist.

use std::sync::Arc;

use tokio::sync::Barrier;

use super::{info_text, update_params, Ctx};
use crate::tester::error::{Result, TesterError};
use crate::tester::fmt;
use crate::xmlrpc::Value;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    let l = ctx.leader().await?;
    let f = ctx.file("race.txt");
    let racers = ctx.opts.racers.max(2);
    let rounds = ctx.opts.rounds.max(1) as i64;
    let clients: Vec<_> = (0..racers)
        .map(|_| c.fresh_client(l, c.rpc_timeout()))
        .collect();
    for version in 1..=rounds {
        ctx.step(format!(
            "round {version}: {racers} racers for version {version}"
        ));
        let barrier = Arc::new(Barrier::new(racers));
        let tasks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(r, client)| {
                let client = client.clone();
                let barrier = barrier.clone();
                let params = update_params(
                    &f,
                    version,
                    &[Value::String(format!("racer{r}-v{version}"))],
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.call("surfstore.updatefile", &params).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (r, task) in tasks.into_iter().enumerate() {
            let answer = task
                .await
                .map_err(|e| TesterError::Panicked(e.to_string()))?;
            match answer {
                Ok(Value::Bool(true)) => winners.push(r),
                Ok(Value::Bool(false)) => {}
                other => {
                    return Err(TesterError::check(
                        format!(
                            "racer {r}: {}",
                            ctx.describe(
                                l,
                                "updatefile",
                                &update_params(
                                    &f,
                                    version,
                                    &[Value::String(format!("racer{r}-v{version}"))]
                                )
                            )
                        ),
                        "True or False",
                        fmt::outcome(&other),
                    ))
                }
            }
        }
        let call = format!(
            "{racers} concurrent {} (racer r sends ['racer<r>-v{version}'])",
            ctx.describe(
                l,
                "updatefile",
                &update_params(&f, version, &[Value::from("...")])
            )
        );
        let [winner] = winners[..] else {
            return Err(TesterError::check(
                call,
                "exactly one True",
                format!(
                    "{} True ({})",
                    winners.len(),
                    winners
                        .iter()
                        .map(|r| format!("racer {r}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let hashlist = vec![Value::String(format!("racer{winner}-v{version}"))];
        ctx.record(&f, version, hashlist.clone());
        let map = ctx.read_map(l).await?;
        let want = (version, hashlist);
        if map.get(&f) != Some(&want) {
            return Err(TesterError::check(
                format!(
                    "{} after round {version} (racer {winner} won)",
                    ctx.describe(l, "getfileinfomap", &[])
                ),
                format!("{}: {}", fmt::string(&f), info_text(Some(&want))),
                format!("{}: {}", fmt::string(&f), info_text(map.get(&f))),
            ));
        }
    }
    ctx.note(format!(
        "{rounds} rounds of {racers} racers: one winner each"
    ));
    Ok(())
}
