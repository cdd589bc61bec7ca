//! `watch`: `waitForChanges(since, timeout_s)` as a sync client's long poll
//! uses it, checked from the client side. A watcher and a writer take turns
//! on the leader, `--rounds` times; after every answer the watcher reads the
//! map (`getfileinfomap`), and that read is `M`, its `since` the answer's
//! `index`.
//!
//! What a client can check, and why it must hold on a correct server:
//! - Any read `M` started after the answer that gave `since` shows every
//!   change up to `since` (the server's read barrier), so a write absent from
//!   `M` has an index past `since`. If such a write was acknowledged before
//!   a `waitForChanges(since, T)` call started, the call's own barrier sees
//!   it: the call must answer `changed: true`, at once (before `T`). This is
//!   checked with the write made just before the call, and with no write at
//!   all (a "quiet" call after a round), which catches an answer that ran
//!   ahead of the map: the read after it lacked a write the next call then
//!   never reports.
//! - Every map read holds every write acknowledged before it started (the
//!   ledger; plain linearizability of `getfileinfomap`).
//! - `changed` is `index > since`.
//!
//! A call made while a write is in flight may answer either way (the write
//! may land after its final barrier); it only feeds the next check, with the
//! map read at once after it (not held to the ledger, as the write may not
//! be acknowledged yet). The
//! linearizability checker is not needed: each check here is a single-point
//! comparison of one answer with acknowledgements that strictly precede it.
//!
//! A node that does not serve `waitForChanges` (fault 4, the assignment's
//! API without the extension) skips the scenario with a note.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{hashes, Ctx};
use crate::node::api::wait_for_changes::Changes;
use crate::tester::error::{Result, TesterError};
use crate::tester::fmt;
use crate::tester::linearizability::history::FileInfo;
use crate::xmlrpc::client::CallError;
use crate::xmlrpc::Value;

/// The `timeout_s` of the calls that wait.
pub const WAIT_S: i32 = 2;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let l = ctx.leader().await?;
    let mut w = Watcher {
        ctx: &ctx,
        leader: l,
        since: 0,
        seen: BTreeMap::new(),
        acked: BTreeMap::new(),
        waited: Vec::new(),
    };
    ctx.step("waitForChanges(0, 0): the current counter");
    let Some(first) = w.call(0, 0).await? else {
        ctx.note("the leader does not serve waitForChanges (fault 4): skipped");
        return Ok(());
    };
    w.answered(first).await?;
    let files = [ctx.file("watch-a.txt"), ctx.file("watch-b.txt")];
    for round in 1..=ctx.opts.rounds.max(1) as i64 {
        // 1. A write acknowledged before the call: changed, at once.
        ctx.step(format!("round {round}: write, then waitForChanges"));
        w.write(&files[0], round).await?;
        w.must_wake("a write acknowledged before the call started")
            .await?;
        // 2. A write while the call waits: it may answer either way.
        ctx.step(format!(
            "round {round}: waitForChanges, write while it waits"
        ));
        // The watcher reads the map as soon as it is woken, as a sync
        // client does, while the write may still be in flight: a server
        // that wakes before it applies shows a map without the write, and
        // step 3 then finds the write unseen and unreported.
        let waiting = {
            let client = ctx.cluster.fresh_client(l, wait_deadline());
            let params = params(w.since, WAIT_S);
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let r = client.call("surfstore.waitForChanges", &params).await;
                let map = match &r {
                    Ok(_) => Some(ctx.read_map(l).await),
                    Err(_) => None,
                };
                (r, map)
            })
        };
        w.write(&files[1], round).await?;
        let since = w.since;
        let (r, map) = waiting
            .await
            .map_err(|e| TesterError::Panicked(e.to_string()))?;
        let answer = w.parse(since, WAIT_S, &r)?;
        // Not held to the ledger: the read may have started before the
        // write was acknowledged.
        let map = map.expect("an answer is followed by a read")?;
        w.seen = versions(&map);
        w.since = answer.index;
        // 3. No write: if a write is missing from the last read, the
        // counter must already be past `since`.
        ctx.step(format!("round {round}: quiet waitForChanges"));
        let unseen = w.unseen();
        if unseen.is_empty() {
            let answer = w.call(w.since, 0).await?.unwrap_or(w.last());
            w.answered(answer).await?;
        } else {
            w.must_wake(&format!(
                "{} acknowledged before the call started and absent from the map read after the last answer",
                unseen.join(", ")
            ))
            .await?;
        }
    }
    w.waited.sort_unstable();
    let median = w.waited[w.waited.len() / 2];
    ctx.note(format!(
        "{} waitForChanges answers for changes already made came in {} (median; max {})",
        w.waited.len(),
        fmt::duration(median),
        fmt::duration(*w.waited.last().expect("one round ran"))
    ));
    Ok(())
}

/// The client deadline of a call that may wait `WAIT_S`.
fn wait_deadline() -> Duration {
    Duration::from_secs(WAIT_S as u64 + 10)
}

fn params(since: u64, timeout_s: i32) -> Vec<Value> {
    vec![Value::I8(since as i64), Value::Int(timeout_s)]
}

struct Watcher<'a> {
    ctx: &'a Ctx,
    leader: usize,
    /// The counter of the last answer.
    since: u64,
    /// The map read after the last answer: file -> version.
    seen: BTreeMap<String, i64>,
    /// This scenario's acknowledged writes: file -> latest version.
    acked: BTreeMap<String, i64>,
    /// How long the calls that had to answer at once took.
    waited: Vec<Duration>,
}

impl Watcher<'_> {
    fn last(&self) -> Changes {
        Changes {
            index: self.since,
            changed: false,
        }
    }

    /// The acknowledged writes the last read did not show.
    fn unseen(&self) -> Vec<String> {
        self.acked
            .iter()
            .filter(|(f, v)| self.seen.get(*f).is_none_or(|s| s < v))
            .map(|(f, v)| format!("{} v{v}", fmt::string(f)))
            .collect()
    }

    async fn write(&mut self, file: &str, version: i64) -> Result<()> {
        self.ctx
            .update(
                self.leader,
                file,
                version,
                hashes(&[&format!("w{version}")]),
                true,
                "current+1 on the leader",
            )
            .await?;
        self.acked.insert(file.to_owned(), version);
        Ok(())
    }

    /// `waitForChanges(since, timeout_s)` on the leader, checked for shape;
    /// `None`: fault 4 (not served).
    async fn call(&self, since: u64, timeout_s: i32) -> Result<Option<Changes>> {
        let client = self.ctx.cluster.fresh_client(self.leader, wait_deadline());
        let r = client
            .call("surfstore.waitForChanges", &params(since, timeout_s))
            .await;
        if let Err(CallError::Fault(f)) = &r {
            if f.code == 4 {
                return Ok(None);
            }
        }
        self.parse(since, timeout_s, &r).map(Some)
    }

    /// The answer to `waitForChanges(since, …)`, which must be
    /// `{index, changed}` with `changed == index > since`.
    fn parse(
        &self,
        since: u64,
        timeout_s: i32,
        r: &std::result::Result<Value, CallError>,
    ) -> Result<Changes> {
        let call = self
            .ctx
            .describe(self.leader, "waitForChanges", &params(since, timeout_s));
        let answer = r
            .as_ref()
            .ok()
            .map(Changes::from_value)
            .and_then(|a| a.ok())
            .ok_or_else(|| {
                TesterError::check(
                    call.clone(),
                    "a struct {index: int, changed: boolean}",
                    fmt::outcome(r),
                )
            })?;
        if answer.changed != (answer.index > since) {
            return Err(TesterError::check(
                call,
                format!("changed == (index > {since})"),
                fmt::outcome(r),
            ));
        }
        Ok(answer)
    }

    /// Calls with `WAIT_S` and requires `changed: true` before the timeout,
    /// because of `why`.
    async fn must_wake(&mut self, why: &str) -> Result<()> {
        let since = self.since;
        let started = Instant::now();
        let answer = self.call(since, WAIT_S).await?;
        let took = started.elapsed();
        let call = self
            .ctx
            .describe(self.leader, "waitForChanges", &params(since, WAIT_S));
        let observed = match answer {
            Some(a) if a.changed && took < Duration::from_secs(WAIT_S as u64) => {
                self.waited.push(took);
                return self.answered(a).await;
            }
            Some(a) => format!(
                "{{index: {}, changed: {}}} after {}",
                a.index,
                a.changed,
                fmt::duration(took)
            ),
            None => "fault 4 (no such method), after it answered before".to_owned(),
        };
        Err(TesterError::check(
            call,
            format!("changed: true before the {WAIT_S}s timeout ({why})"),
            observed,
        ))
    }

    /// After an answer: read the map, which must hold every acknowledged
    /// write; it is what the next call's `since` was seen with.
    async fn answered(&mut self, answer: Changes) -> Result<()> {
        let map = self.ctx.read_map(self.leader).await?;
        self.ctx.check_ledger(self.leader, &map)?;
        self.seen = versions(&map);
        self.since = answer.index;
        Ok(())
    }
}

fn versions(map: &BTreeMap<String, FileInfo>) -> BTreeMap<String, i64> {
    map.iter().map(|(f, (v, _))| (f.clone(), *v)).collect()
}
