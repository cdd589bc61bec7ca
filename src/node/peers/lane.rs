//! The message lane of one peer: one task that takes requests off the peer's
//! queue, writes them as pipelined HTTP/1.1 calls on one connection, reads
//! the answers in order, and feeds each back to the driver.
//!
//! Promises:
//! - Requests leave in queue order, one connection at a time, so they arrive
//!   in the order the core made them (no reordering between connections).
//! - At most `max_inflight` calls are unanswered, and at most one encoded
//!   call waits in user space for the kernel to take it; everything else
//!   waits in the queue under its replacement policy and bound.
//! - A call unanswered for `timeout` reports the peer unreachable once (the
//!   core falls back to probing) but stays on the connection: if the peer
//!   was only paused, its answers still come and are delivered, late answers
//!   being harmless to the core. While the peer is silent, one call at a
//!   time is in flight, and an AppendEntries leaves without its entries (a
//!   heartbeat at the same point: its answer is what the probe's would say
//!   about where the logs agree), so a silent peer is never sent the backlog.
//!   After [`ABANDON_AFTER`] timeouts with no answer the connection is given
//!   up and a new one opened for the next request, so a lost link (where TCP
//!   would back off for minutes) is retried within seconds.
//! - A closed connection with calls in flight reports the peer unreachable;
//!   one that closes while idle (the server's keep-alive cutoff) is simply
//!   reopened for the next request.
//! - A request over a link the [`NetFilter`](super::NetFilter) cuts is
//!   dropped before it leaves (and the connection with it, so nothing is
//!   held), an answer over a cut link is dropped when it arrives; the peer
//!   is reported unreachable at the first loss and then at most once per
//!   timeout while losses go on, as a silent network would have the lane
//!   report it (and never crashed: a cut link is no contact).
//! - The peer's reachability is logged at INFO once per transition: when a
//!   call times out with nothing answered for a whole timeout, a connection
//!   is refused or lost with calls on it, or the link is cut; and when an
//!   answer comes again.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{answer, halted, SenderOptions, Shared};
use crate::node::driver::{NodeStatus, Request};
use crate::node::peer_wire;
use crate::node::raft::{Message, MessageBody, NodeId};
use crate::xmlrpc::client::CallError;
use crate::xmlrpc::pipeline::{Connection, PipelineError};
use crate::xmlrpc::Value;

/// A silent connection is given up once its oldest call has waited this many
/// timeouts.
pub const ABANDON_AFTER: u32 = 5;

/// Largest answer accepted on the lane (an AppendEntries or RequestVote
/// response is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A call written on the connection and not answered yet.
#[derive(Debug)]
struct Call {
    method: &'static str,
    /// The sender named in the request; the answer must be addressed to it.
    from: NodeId,
    sent_at: Instant,
}

/// The driver is gone; the lane ends.
struct Stop;

pub(super) struct Lane {
    peer: NodeId,
    addr: String,
    opts: SenderOptions,
    shared: Arc<Shared>,
    driver: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
    conn: Option<Connection>,
    /// Calls on `conn`, oldest first; empty when `conn` is `None`.
    inflight: VecDeque<Call>,
    /// The oldest call went unanswered past the timeout and nothing has been
    /// answered since.
    silent: bool,
    /// When a loss on a cut link was last reported to the driver; `None`
    /// once a request passes the filter again.
    cut_reported: Option<Instant>,
    /// What the log last said about the peer (true until a failure): the
    /// INFO lines are written on transitions only.
    reachable: bool,
    /// When the peer's last answer was delivered.
    last_answer: Option<Instant>,
}

impl Lane {
    pub(super) fn new(
        peer: NodeId,
        addr: &str,
        opts: SenderOptions,
        shared: Arc<Shared>,
        driver: mpsc::Sender<Request>,
        status: watch::Receiver<NodeStatus>,
    ) -> Lane {
        Lane {
            peer,
            addr: addr.to_owned(),
            opts,
            shared,
            driver,
            status,
            conn: None,
            inflight: VecDeque::new(),
            silent: false,
            cut_reported: None,
            reachable: true,
            last_answer: None,
        }
    }

    pub(super) async fn run(mut self) {
        let _ = self.serve().await;
        // The driver is gone (or dropped its end): later sends say so.
        self.shared.closed.store(true, Ordering::Relaxed);
    }

    async fn serve(&mut self) -> Result<(), Stop> {
        loop {
            if self.shared.closed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let overflowed = self.shared.queue().take_overflow();
            if overflowed {
                self.report(Request::Unreachable(self.peer)).await?;
            }
            self.fill().await?;
            let deadline = self.inflight.front().map(|c| {
                let waits = if self.silent { ABANDON_AFTER } else { 1 };
                c.sent_at + self.opts.timeout * waits
            });
            let open = self.conn.is_some();
            let writing = self.conn.as_ref().is_some_and(|c| c.writer.wants_write());
            let (reader, writer) = match self.conn.as_mut() {
                Some(c) => (Some(&mut c.reader), Some(&mut c.writer)),
                None => (None, None),
            };
            tokio::select! {
                biased;
                read = async { reader.expect("guarded by open").next_response().await }, if open => {
                    self.on_read(read).await?;
                }
                written = async { writer.expect("guarded by writing").write_some().await }, if writing => {
                    if let Err(e) = written {
                        self.lose_connection(e).await?;
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.on_overdue().await?;
                }
            }
        }
    }

    /// Sends what may leave now: while the pipeline has room and the kernel
    /// has taken everything written so far.
    async fn fill(&mut self) -> Result<(), Stop> {
        loop {
            let limit = if self.silent {
                1
            } else {
                self.opts.max_inflight
            };
            let busy = self.conn.as_ref().is_some_and(|c| c.writer.wants_write());
            if self.inflight.len() >= limit || busy {
                return Ok(());
            }
            let popped = {
                let mut q = self.shared.queue();
                let popped = if halted(&self.status) {
                    // Made before the crash; the core has forgotten them (and
                    // probes again after a restore).
                    let n = q.clear();
                    self.shared.stats.add_replaced(n);
                    None
                } else {
                    q.pop(self.opts.max_call_bytes)
                };
                self.shared.publish(&q);
                popped
            };
            let Some(popped) = popped else {
                return Ok(());
            };
            self.shared.stats.add_replaced(popped.skipped);
            let mut msg = popped.msg;
            let Some(method) = peer_wire::method_for(&msg) else {
                continue;
            };
            if !self.opts.net.passes(self.opts.node, self.peer) {
                self.lost_on_cut_link(true).await?;
                continue;
            }
            self.cut_reported = None;
            if self.silent {
                strip_entries(&mut msg);
            }
            if self.conn.is_none() {
                match Connection::connect(
                    &self.addr,
                    self.opts.timeout,
                    MAX_ANSWER_BYTES,
                    &self.opts.transport,
                )
                .await
                {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => {
                        tracing::debug!(peer = self.peer, "{method}: {e}");
                        self.note_unreachable(format_args!("{e}"));
                        self.report(Request::Unreachable(self.peer)).await?;
                        continue;
                    }
                }
            }
            let conn = self.conn.as_mut().expect("connected above");
            conn.writer.push_call(method, &[peer_wire::encode(&msg)]);
            self.inflight.push_back(Call {
                method,
                from: msg.from,
                sent_at: Instant::now(),
            });
            self.shared.stats.add_call();
            self.shared.stats.set_inflight(self.inflight.len());
        }
    }

    async fn on_read(
        &mut self,
        read: Result<Result<Value, CallError>, PipelineError>,
    ) -> Result<(), Stop> {
        match read {
            Ok(result) => {
                let Some(call) = self.inflight.pop_front() else {
                    return self
                        .lose_connection(PipelineError::Malformed("an answer to no request".into()))
                        .await;
                };
                self.shared.stats.set_inflight(self.inflight.len());
                if !self.opts.net.passes(self.peer, self.opts.node) {
                    // Lost on the way back.
                    return self.lost_on_cut_link(false).await;
                }
                self.shared.stats.set_rtt(call.sent_at.elapsed());
                self.silent = false;
                self.last_answer = Some(Instant::now());
                self.note_reachable();
                self.report(answer(
                    self.peer,
                    call.from,
                    call.method,
                    result,
                    &self.shared.stats,
                ))
                .await
            }
            Err(e) => self.lose_connection(e).await,
        }
    }

    /// The oldest call is overdue: the first time, the peer is reported
    /// unreachable and the lane goes quiet; after `ABANDON_AFTER` timeouts,
    /// the connection is given up.
    async fn on_overdue(&mut self) -> Result<(), Stop> {
        let timeout = self.opts.timeout;
        // A peer resuming from a pause answers its backlog one call at a
        // time: the call after an answer may be overdue already, and saying
        // the peer is unreachable then would be noise.
        if self.last_answer.is_none_or(|at| at.elapsed() >= timeout) {
            self.note_unreachable(format_args!("no answer within {timeout:?}"));
        }
        if self.silent {
            tracing::debug!(
                peer = self.peer,
                calls = self.inflight.len(),
                "no answer for {ABANDON_AFTER} timeouts: reconnecting"
            );
            self.drop_connection();
            return Ok(());
        }
        tracing::debug!(peer = self.peer, "no answer within {timeout:?}");
        self.silent = true;
        self.report(Request::Unreachable(self.peer)).await
    }

    /// The connection failed or closed: calls in flight are lost.
    async fn lose_connection(&mut self, why: PipelineError) -> Result<(), Stop> {
        let lost = self.inflight.len();
        self.drop_connection();
        if lost > 0 {
            tracing::debug!(peer = self.peer, lost, "connection lost: {why}");
            self.note_unreachable(format_args!(
                "connection lost with {lost} call(s) on it: {why}"
            ));
            self.report(Request::Unreachable(self.peer)).await?;
        }
        Ok(())
    }

    /// A request (`outbound`) or an answer was dropped because the link is
    /// cut: what a silent network does, except that the driver hears of it
    /// at once rather than after a timeout, and then once per timeout while
    /// losses go on (a lost call per heartbeat would otherwise be reported
    /// per heartbeat, each report inviting a new probe).
    async fn lost_on_cut_link(&mut self, outbound: bool) -> Result<(), Stop> {
        if outbound && self.conn.is_some() {
            // Whatever is in flight is lost with the link; hold nothing.
            self.drop_connection();
        }
        let (from, to) = if outbound {
            (self.opts.node, self.peer)
        } else {
            (self.peer, self.opts.node)
        };
        self.note_unreachable(format_args!(
            "the link from node {from} to node {to} is cut (partition)"
        ));
        let due = self
            .cut_reported
            .is_none_or(|at| at.elapsed() >= self.opts.timeout);
        if due {
            self.cut_reported = Some(Instant::now());
            self.report(Request::Unreachable(self.peer)).await?;
        }
        Ok(())
    }

    /// Logs the peer unreachable, if the log last said it was reachable.
    fn note_unreachable(&mut self, why: std::fmt::Arguments<'_>) {
        if std::mem::replace(&mut self.reachable, false) {
            tracing::info!(
                node = self.opts.node,
                peer = self.peer,
                "peer {} ({}) unreachable: {why}",
                self.peer,
                self.addr
            );
        }
    }

    /// Logs the peer reachable again, if the log last said it was not.
    fn note_reachable(&mut self) {
        if !std::mem::replace(&mut self.reachable, true) {
            tracing::info!(
                node = self.opts.node,
                peer = self.peer,
                "peer {} ({}) reachable again",
                self.peer,
                self.addr
            );
        }
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.inflight.clear();
        self.shared.stats.set_inflight(0);
    }

    async fn report(&self, req: Request) -> Result<(), Stop> {
        self.driver.send(req).await.map_err(|_| Stop)
    }
}

/// An AppendEntries without its entries: what a silent peer is sent instead
/// of the backlog. Its answer tells the leader whether the logs agree at
/// `prev_index`, as the full message's would.
fn strip_entries(msg: &mut Message) {
    if let MessageBody::AppendEntries { entries, .. } = &mut msg.body {
        *entries = Vec::new();
    }
}
