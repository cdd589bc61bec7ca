//! The message lane of one peer: one task that takes requests off the peer's
//! queue, writes them as pipelined HTTP/1.1 calls on one connection, reads
//! the answers in order, and feeds each back to the driver.
//!
//! Promises:
//! - Requests leave in queue order. While the peer answers they go on one
//!   connection, so they arrive in the order the core made them.
//! - At most `max_inflight` calls are unanswered on that connection, and at
//!   most one encoded call waits in user space for the kernel to take it;
//!   everything else waits in the queue under its replacement policy and
//!   bound.
//! - A call unanswered for `timeout` reports the peer unreachable once (the
//!   core falls back to probing), and the peer is *silent* until something
//!   is answered again. While it is silent, one call at a time is sent, and
//!   an AppendEntries leaves without its entries (a heartbeat at the same
//!   point: its answer is what the probe's would say about where the logs
//!   agree), so a silent peer is never sent the backlog.
//! - While the peer is silent, each call goes on a connection that has not
//!   yet let a call go a timeout unanswered: when the current one has, a new
//!   one is dialed, and the old one is kept, read but never written, for
//!   late answers (if the peer was only paused they still come and are
//!   delivered; late and reordered answers are harmless to the core) until
//!   its oldest call is [`ABANDON_AFTER`] timeouts old or a newer connection
//!   is retired in its place. So at most two connections are open, and a
//!   healed link is used within [`DIAL_EVERY`] and a round trip of the heal,
//!   not when TCP's retransmission backoff (seconds after a long cut) next
//!   tries the old connection.
//! - Connections are dialed in the background, so reading the old one goes
//!   on meanwhile: while one is wanted and something waits to be sent, a new
//!   attempt starts every [`DIAL_EVERY`] (a connect whose SYN was lost in a
//!   cut would retry it only after a second), each given up after `timeout`,
//!   at most [`MAX_DIALS`] at once; the first to connect is used and the
//!   others are dropped. A peer whose kernel accepts connections while its
//!   process does not answer (paused) costs one connection per timeout.
//! - A closed connection with calls in flight reports the peer unreachable;
//!   one that closes while idle (the server's keep-alive cutoff) is simply
//!   reopened for the next request. A failed dial makes the peer silent and
//!   reports it unreachable, once.
//! - A request over a link the [`NetFilter`](super::NetFilter) cuts is
//!   dropped before it leaves (and the connections with it, so nothing is
//!   held; nothing is dialed over a cut link), an answer over a cut link is
//!   dropped when it arrives; the peer is reported unreachable at the first
//!   loss and then at most once per timeout while losses go on, as a silent
//!   network would have the lane report it (and never crashed: a cut link
//!   is no contact).
//! - The peer's reachability is logged at INFO once per transition: when a
//!   call times out with nothing answered for a whole timeout, a connection
//!   is refused or lost with calls on it, or the link is cut; and when an
//!   answer comes again.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};
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

/// While a connection is wanted, a new dial starts this often.
pub const DIAL_EVERY: Duration = Duration::from_millis(50);

/// Most dials at once (each lives up to the timeout: a second by default,
/// so 20 at [`DIAL_EVERY`]).
pub const MAX_DIALS: usize = 32;

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

/// A connection given up for a new one while the peer was silent: read for
/// late answers, never written.
#[derive(Debug)]
struct Retired {
    conn: Connection,
    /// Its calls, oldest first; never empty.
    inflight: VecDeque<Call>,
}

type Dialed = Result<Result<Connection, PipelineError>, JoinError>;

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
    retired: Option<Retired>,
    /// Connects under way (dropping the set aborts them).
    dials: JoinSet<Result<Connection, PipelineError>>,
    last_dial: Option<Instant>,
    /// A call went unanswered past the timeout, or a dial failed, and
    /// nothing has been answered since.
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
            retired: None,
            dials: JoinSet::new(),
            last_dial: None,
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
            self.expire(Instant::now()).await?;
            self.fill().await?;
            let deadline = self.next_deadline(Instant::now());
            let open = self.conn.is_some();
            let writing = self.conn.as_ref().is_some_and(|c| c.writer.wants_write());
            let (reader, writer) = match self.conn.as_mut() {
                Some(c) => (Some(&mut c.reader), Some(&mut c.writer)),
                None => (None, None),
            };
            let old = self.retired.as_mut().map(|r| &mut r.conn.reader);
            let reading_old = old.is_some();
            let dialing = !self.dials.is_empty();
            let dials = &mut self.dials;
            tokio::select! {
                biased;
                read = async { reader.expect("guarded by open").next_response().await }, if open => {
                    self.on_read(read).await?;
                }
                read = async { old.expect("guarded by reading_old").next_response().await }, if reading_old => {
                    self.on_retired_read(read).await?;
                }
                written = async { writer.expect("guarded by writing").write_some().await }, if writing => {
                    if let Err(e) = written {
                        self.lose_connection(e).await?;
                    }
                }
                Some(dialed) = dials.join_next(), if dialing => {
                    self.on_dialed(dialed).await?;
                }
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            }
        }
    }

    /// Acts on what is due at `now`: the first overdue call makes the peer
    /// silent; connections whose oldest call has waited `ABANDON_AFTER`
    /// timeouts are given up.
    async fn expire(&mut self, now: Instant) -> Result<(), Stop> {
        let abandon = self.opts.timeout * ABANDON_AFTER;
        if self.retired.as_ref().is_some_and(|r| {
            r.inflight
                .front()
                .is_none_or(|c| now >= c.sent_at + abandon)
        }) {
            self.retired = None;
            self.publish_inflight();
        }
        let Some(oldest) = self.inflight.front().map(|c| c.sent_at) else {
            return Ok(());
        };
        if !self.silent {
            if now >= oldest + self.opts.timeout {
                self.on_overdue().await?;
            }
        } else if now >= oldest + abandon {
            tracing::debug!(
                peer = self.peer,
                calls = self.inflight.len(),
                "no answer for {ABANDON_AFTER} timeouts: giving the connection up"
            );
            self.drop_connection();
        }
        Ok(())
    }

    /// The next instant after `now` at which [`Lane::expire`] or
    /// [`Lane::fill`] has something to do.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let timeout = self.opts.timeout;
        let abandon = timeout * ABANDON_AFTER;
        let mut due = Vec::with_capacity(4);
        if let Some(c) = self.retired.as_ref().and_then(|r| r.inflight.front()) {
            due.push(c.sent_at + abandon);
        }
        if let Some(c) = self.inflight.front() {
            // Silent or not, the oldest call's timeout changes something:
            // the peer goes silent, or the connection stops taking calls.
            due.push(c.sent_at + timeout);
            if self.silent {
                due.push(c.sent_at + abandon);
            }
        }
        if !self.conn_usable(now) && self.dials.len() < MAX_DIALS && self.wants_to_send() {
            if let Some(at) = self.last_dial {
                due.push(at + DIAL_EVERY);
            }
        }
        due.into_iter().filter(|&d| d > now).min()
    }

    /// Whether the next call may go on `conn`: it is open and, while the
    /// peer is silent, has not let a call go a timeout unanswered.
    fn conn_usable(&self, now: Instant) -> bool {
        self.conn.is_some()
            && (!self.silent
                || self
                    .inflight
                    .front()
                    .is_none_or(|c| now < c.sent_at + self.opts.timeout))
    }

    fn wants_to_send(&self) -> bool {
        !self.shared.queue().is_empty() && !halted(&self.status)
    }

    /// Sends what may leave now: while the pipeline has room and the kernel
    /// has taken everything written so far. Starts a dial when a connection
    /// is wanted.
    async fn fill(&mut self) -> Result<(), Stop> {
        loop {
            if halted(&self.status) {
                // Made before the crash; the core has forgotten them (and
                // probes again after a restore).
                let mut q = self.shared.queue();
                let n = q.clear();
                self.shared.publish(&q);
                self.shared.stats.add_replaced(n);
                return Ok(());
            }
            let now = Instant::now();
            let cut = !self.opts.net.passes(self.opts.node, self.peer);
            if !cut {
                if !self.conn_usable(now) {
                    if self.wants_to_send() {
                        self.dial_if_due(now);
                    }
                    return Ok(());
                }
                let limit = if self.silent {
                    1
                } else {
                    self.opts.max_inflight
                };
                let busy = self.conn.as_ref().is_some_and(|c| c.writer.wants_write());
                if self.inflight.len() >= limit || busy {
                    return Ok(());
                }
            }
            let popped = {
                let mut q = self.shared.queue();
                let popped = q.pop(self.opts.max_call_bytes);
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
            if cut {
                self.lost_on_cut_link(true).await?;
                continue;
            }
            self.cut_reported = None;
            if self.silent {
                strip_entries(&mut msg);
            }
            let conn = self.conn.as_mut().expect("usable above");
            conn.writer.push_call(method, &[peer_wire::encode(&msg)]);
            self.inflight.push_back(Call {
                method,
                from: msg.from,
                sent_at: Instant::now(),
            });
            self.shared.stats.add_call();
            self.publish_inflight();
        }
    }

    /// Starts a connect, unless one started within `DIAL_EVERY` or
    /// `MAX_DIALS` are under way.
    fn dial_if_due(&mut self, now: Instant) {
        if self.dials.len() >= MAX_DIALS || self.last_dial.is_some_and(|at| now < at + DIAL_EVERY) {
            return;
        }
        self.last_dial = Some(now);
        let addr = self.addr.clone();
        let timeout = self.opts.timeout;
        let transport = self.opts.transport.clone();
        self.dials.spawn(async move {
            Connection::connect(&addr, timeout, MAX_ANSWER_BYTES, &transport).await
        });
    }

    /// A dial ended: the first connection becomes the lane's (the one it
    /// replaces is retired) and the other dials are dropped; a failure makes
    /// the peer silent.
    async fn on_dialed(&mut self, dialed: Dialed) -> Result<(), Stop> {
        match dialed {
            // Aborted (a sibling connected first), or it panicked.
            Err(_) => Ok(()),
            Ok(Ok(conn)) => {
                self.dials = JoinSet::new();
                if self.conn_usable(Instant::now()) {
                    // Something was answered while it connected.
                    return Ok(());
                }
                if let Some(old) = self.conn.take() {
                    let inflight = std::mem::take(&mut self.inflight);
                    if !inflight.is_empty() {
                        self.retired = Some(Retired {
                            conn: old,
                            inflight,
                        });
                    }
                }
                self.conn = Some(conn);
                self.publish_inflight();
                Ok(())
            }
            Ok(Err(e)) => {
                self.note_unreachable(format_args!("{e}"));
                if self.silent {
                    // One of many while the peer stays out of reach.
                    tracing::trace!(peer = self.peer, "connect: {e}");
                    return Ok(());
                }
                tracing::debug!(peer = self.peer, "connect: {e}");
                self.set_silent(true);
                self.report(Request::Unreachable(self.peer)).await
            }
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
                self.publish_inflight();
                self.deliver(call, result).await
            }
            Err(e) => self.lose_connection(e).await,
        }
    }

    /// An answer (or the end) on the retired connection: answers are
    /// delivered; its end, or an answer to no call, just drops it.
    async fn on_retired_read(
        &mut self,
        read: Result<Result<Value, CallError>, PipelineError>,
    ) -> Result<(), Stop> {
        let call = match (read, self.retired.as_mut()) {
            (Ok(result), Some(r)) => r.inflight.pop_front().map(|call| (call, result)),
            (Err(e), _) => {
                tracing::debug!(peer = self.peer, "retired connection: {e}");
                None
            }
            (Ok(_), None) => None,
        };
        if call.is_none() || self.retired.as_ref().is_some_and(|r| r.inflight.is_empty()) {
            self.retired = None;
        }
        self.publish_inflight();
        match call {
            Some((call, result)) => self.deliver(call, result).await,
            None => Ok(()),
        }
    }

    /// Hands the answer to `call` to the driver, unless the link back is cut.
    async fn deliver(&mut self, call: Call, result: Result<Value, CallError>) -> Result<(), Stop> {
        if !self.opts.net.passes(self.peer, self.opts.node) {
            // Lost on the way back.
            return self.lost_on_cut_link(false).await;
        }
        self.shared.stats.set_rtt(call.sent_at.elapsed());
        self.set_silent(false);
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

    /// The oldest call is overdue and the peer was not silent: it is
    /// reported unreachable, and the lane goes quiet.
    async fn on_overdue(&mut self) -> Result<(), Stop> {
        let timeout = self.opts.timeout;
        // A peer resuming from a pause answers its backlog one call at a
        // time: the call after an answer may be overdue already, and saying
        // the peer is unreachable then would be noise.
        if self.last_answer.is_none_or(|at| at.elapsed() >= timeout) {
            self.note_unreachable(format_args!("no answer within {timeout:?}"));
        }
        tracing::debug!(peer = self.peer, "no answer within {timeout:?}");
        self.set_silent(true);
        self.report(Request::Unreachable(self.peer)).await
    }

    /// Records whether the peer is silent, for this lane and the snapshot
    /// lane (which holds transfers while it is).
    fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
        self.shared
            .silent
            .send_if_modified(|s| std::mem::replace(s, silent) != silent);
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
        if outbound {
            // Whatever is in flight is lost with the link; hold nothing.
            self.drop_connection();
            self.retired = None;
            self.dials = JoinSet::new();
            self.publish_inflight();
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
        self.publish_inflight();
    }

    /// Calls in flight on both connections.
    fn publish_inflight(&self) {
        let retired = self.retired.as_ref().map_or(0, |r| r.inflight.len());
        self.shared
            .stats
            .set_inflight(self.inflight.len() + retired);
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

#[cfg(test)]
mod tests;
