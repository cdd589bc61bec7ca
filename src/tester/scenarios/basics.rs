//! `basics`: every node answers `ping`, none is crashed, `members` is the same
//! list on every node, and exactly one node says it is leader, the same one,
//! for the whole stability window (`--stable-ms`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::tester::error::{Result, TesterError};
use crate::tester::fmt;
use crate::xmlrpc::Value;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let c = &ctx.cluster;
    let m = c.len();
    ctx.step("ping every node");
    for i in 0..m {
        ctx.expect(i, "ping", &[], Value::Bool(true)).await?;
    }
    ctx.step("members on every node");
    let members = Value::Array(
        c.members()
            .iter()
            .map(|a| Value::from(a.as_str()))
            .collect(),
    );
    for i in 0..m {
        ctx.expect(i, "members", &[], members.clone()).await?;
    }
    for i in 0..m {
        ctx.expect(i, "isCrashed", &[], Value::Bool(false)).await?;
    }

    let leader = ctx.leader().await?;
    ctx.step(format!("is {} a stable leader?", c.name(leader)));
    let start = Instant::now();
    let mut samples = 0;
    loop {
        let leaders = c.leaders().await;
        samples += 1;
        if leaders != [leader] {
            return Err(TesterError::check(
                format!(
                    "{} on every node (sample {samples}, {} after {} was the one leader)",
                    fmt::call("isLeader", &[]),
                    fmt::duration(start.elapsed()),
                    c.name(leader)
                ),
                format!("only {} answers True", c.name(leader)),
                if leaders.is_empty() {
                    "no node answers True".to_owned()
                } else {
                    format!("True from {}", c.names(&leaders))
                },
            ));
        }
        if start.elapsed() >= ctx.opts.stable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The lower-case alias of the assignment agrees.
    for i in 0..m {
        ctx.expect(i, "isleader", &[], Value::Bool(i == leader))
            .await?;
    }
    ctx.note(format!(
        "leader {} stable over {samples} samples in {}",
        c.name(leader),
        fmt::duration(start.elapsed())
    ));
    Ok(())
}
