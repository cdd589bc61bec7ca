//! The dashboard's state and nothing else: what each node last published, the
//! selected row, the event log, the selected node's log tail, the links cut
//! between the nodes. Methods change the state and return the [`Action`]s the
//! runtime must carry out on the nodes; `App` holds no handle, channel or
//! terminal, so tests drive it alone.

use std::collections::VecDeque;
use std::fmt;
use std::time::SystemTime;

use crate::cluster::FeedItem;
use crate::node::driver::LogLine;
use crate::node::events::{EventKind, NodeEvent};
use crate::node::peers::{Cuts, Partition};
use crate::node::raft::{LogIndex, NodeId, PeerProgress, Role, Term};
use crate::node::NodeStatus;

/// Event-log lines kept; older ones scroll away for good.
pub const EVENT_LOG_CAPACITY: usize = 1000;

/// Log entries asked of the selected node (more than any screen shows).
pub const LOG_TAIL_LEN: usize = 64;

/// What `k` says under `--in-memory` (short enough for an 80-column
/// events pane).
pub const KILL_NEEDS_DATA_DIR: &str = "k needs a data directory (started with --in-memory)";

/// One row of the node table.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    /// `host:port` from the config.
    pub addr: String,
    /// The latest status the node published on its watch.
    pub status: NodeStatus,
}

impl NodeView {
    /// What the role column shows: the Raft role, crashed, or stopped for
    /// good (a disk write failed).
    pub fn role(&self) -> RoleView {
        if self.status.failed.is_some() {
            return RoleView::Failed;
        }
        if self.status.crashed {
            return RoleView::Crashed;
        }
        match self.status.raft.role {
            Role::Leader => RoleView::Leader,
            Role::PreCandidate => RoleView::PreCandidate,
            Role::Candidate => RoleView::Candidate,
            Role::Follower => RoleView::Follower,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleView {
    Leader,
    Follower,
    /// Asking for pre-votes: its term has not moved.
    PreCandidate,
    Candidate,
    Crashed,
    /// Stopped by a failed disk write; `k` restarts it from its data dir.
    Failed,
}

impl RoleView {
    pub fn label(self) -> &'static str {
        match self {
            RoleView::Leader => "Leader",
            RoleView::Follower => "Follower",
            RoleView::PreCandidate => "PreVote",
            RoleView::Candidate => "Candidate",
            RoleView::Crashed => "CRASHED",
            RoleView::Failed => "FAILED",
        }
    }
}

/// What kind of line an event-log line is (the view picks colours by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Election,
    Vote,
    Leader,
    LeadershipLost,
    Crash,
    Restore,
    Commit,
    Blocked,
    /// A link cut or healed from the dashboard.
    Network,
    /// Something the dashboard itself did or noticed.
    Info,
    Error,
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub at: SystemTime,
    /// The node it is about; `None` for the dashboard's own notes.
    pub node: Option<NodeId>,
    pub text: String,
    pub tone: Tone,
    /// How many times in a row this line happened (1: once); `at` is the
    /// last time. An isolated node asks for pre-votes every election
    /// timeout, and one line saying so with a count is easier to read than
    /// a screen of them.
    pub repeats: u32,
}

/// The selected node's last log entries, and which log state they describe.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogTail {
    pub node: Option<NodeId>,
    /// `(last_index, last_term)` of the node when fetched.
    pub at: (LogIndex, Term),
    pub lines: Vec<LogLine>,
}

/// What the runtime must do on the nodes after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `handle.crash()`, the same call as the XML-RPC `crash` method.
    Crash(NodeId),
    /// `handle.restore()`, the same call as the XML-RPC `restore` method.
    Restore(NodeId),
    /// Restore every node (a no-op on those not crashed).
    RestoreAll,
    /// A real crash: drop the node's memory entirely and start it again from
    /// its data directory (`Cluster::kill_and_restart`).
    Kill(NodeId),
    /// An `updatefile` of `filename` at its next version, through `via`.
    Write { via: NodeId, filename: String },
    /// `transferLeader(to)` at the leader `from` (the XML-RPC method's call).
    Transfer { from: NodeId, to: NodeId },
    /// Cut or heal links in the cluster's partition filter.
    Net(NetAction),
}

/// A change to the links between the nodes (`Cluster::partition`). Every
/// cut is both ways, as a cable pulled out would be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetAction {
    /// Cut the node from every other node.
    Isolate(NodeId),
    /// Heal every link of the node.
    HealNode(NodeId),
    CutLink(NodeId, NodeId),
    HealLink(NodeId, NodeId),
    HealAll,
}

impl NetAction {
    /// Carries the change out on `partition`; true if anything changed.
    pub fn apply(&self, partition: &Partition) -> bool {
        match *self {
            NetAction::Isolate(a) => partition.isolate(a),
            NetAction::HealNode(a) => partition.heal_node(a),
            NetAction::CutLink(a, b) => partition.cut_link(a, b),
            NetAction::HealLink(a, b) => partition.heal_link(a, b),
            NetAction::HealAll => partition.heal_all(),
        }
    }
}

impl fmt::Display for NetAction {
    /// The events-pane line for it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetAction::Isolate(a) => write!(f, "isolated node {a}: every link to it cut"),
            NetAction::HealNode(a) => write!(f, "healed node {a}: its links are back"),
            NetAction::CutLink(a, b) => write!(f, "cut the link between node {a} and node {b}"),
            NetAction::HealLink(a, b) => {
                write!(f, "healed the link between node {a} and node {b}")
            }
            NetAction::HealAll => write!(f, "healed all links"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct App {
    /// Shown in the title bar (the config path).
    pub title: String,
    /// `nodes[i]` is member i. Never empty.
    pub nodes: Vec<NodeView>,
    /// Index into `nodes`; always `< nodes.len()`.
    pub selected: usize,
    /// Oldest first, at most `EVENT_LOG_CAPACITY`.
    pub events: VecDeque<LogRecord>,
    pub log_tail: LogTail,
    /// Demo writes asked for so far (names `demo-<n>.txt`).
    pub writes: u64,
    /// The links cut between the nodes, as the partition filter last said.
    pub net: Cuts,
    /// After `l`: the node whose link is to be cut or healed, waiting for
    /// the digit of the other end.
    pub link_from: Option<NodeId>,
    /// The nodes keep their logs in data directories, so `k` can kill one
    /// and start it again from there; false under `--in-memory`, where a
    /// kill would lose everything (`k` is then neither offered nor done).
    pub restartable: bool,
    /// False once the user asked to quit.
    pub running: bool,
}

impl App {
    /// # Panics
    /// If `nodes` is empty (a cluster has at least one member).
    pub fn new(title: impl Into<String>, nodes: Vec<NodeView>) -> App {
        assert!(!nodes.is_empty(), "a dashboard needs at least one node");
        let nodes_len = nodes.len();
        App {
            title: title.into(),
            nodes,
            selected: 0,
            events: VecDeque::new(),
            log_tail: LogTail::default(),
            writes: 0,
            net: Cuts::none(nodes_len),
            link_from: None,
            restartable: true,
            running: true,
        }
    }

    /// Records what node `id` published.
    pub fn set_status(&mut self, id: NodeId, status: NodeStatus) {
        if let Some(view) = self.nodes.get_mut(id as usize) {
            view.status = status;
        }
    }

    /// The live node that believes it leads, in the highest term if several do
    /// (a deposed leader may not know yet).
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.status.is_leader())
            .max_by_key(|(_, n)| n.status.raft.term)
            .map(|(i, _)| i as NodeId)
    }

    /// How far follower `p.id`'s log is known to agree with the log of
    /// `leader`: the leader's `match_index` for it, or more when the
    /// follower's own status proves more. A new leader starts every
    /// follower at 0 and learns better only from answers, which a
    /// `crash()`ed or cut-off follower never sends, though it still holds
    /// its log. What its status proves, never past the leader's last index:
    /// - its entries through its commit index: they are committed, and
    ///   every leader holds every committed entry (Leader Completeness);
    /// - all of its entries when its last one is of the leader's term: only
    ///   that leader made entries of its term, and logs that share an entry
    ///   agree up to it (Log Matching).
    pub fn match_index(&self, leader: NodeId, p: &PeerProgress) -> LogIndex {
        let (Some(leader), Some(follower)) = (
            self.nodes.get(leader as usize),
            self.nodes.get(p.id as usize),
        ) else {
            return p.match_index;
        };
        let (leader, follower) = (&leader.status.raft, &follower.status.raft);
        let mut proven = follower.commit_index;
        if follower.last_term == leader.term {
            proven = proven.max(follower.last_index);
        }
        p.match_index.max(proven.min(leader.last_index))
    }

    pub fn selected_node(&self) -> NodeId {
        self.selected as NodeId
    }

    /// Selects node `i` if there is one.
    pub fn select(&mut self, i: usize) {
        if i < self.nodes.len() {
            self.selected = i;
        }
    }

    pub fn select_next(&mut self) {
        self.selected = (self.selected + 1) % self.nodes.len();
    }

    pub fn select_previous(&mut self) {
        self.selected = (self.selected + self.nodes.len() - 1) % self.nodes.len();
    }

    pub fn quit(&mut self) {
        self.running = false;
    }

    pub fn crash_selected(&mut self) -> Option<Action> {
        let id = self.selected_node();
        if self.nodes[self.selected].status.crashed {
            self.note(format!("node {id} is already crashed"));
            return None;
        }
        Some(Action::Crash(id))
    }

    pub fn kill_selected(&mut self) -> Option<Action> {
        let id = self.selected_node();
        if !self.restartable {
            self.push(None, KILL_NEEDS_DATA_DIR.to_owned(), Tone::Error);
            return None;
        }
        self.note(format!(
            "node {id}: killed (memory dropped); restarting from its data directory"
        ));
        Some(Action::Kill(id))
    }

    pub fn restore_selected(&mut self) -> Option<Action> {
        let id = self.selected_node();
        if !self.nodes[self.selected].status.crashed {
            self.note(format!("node {id} is not crashed"));
            return None;
        }
        Some(Action::Restore(id))
    }

    /// Hand leadership from the leader to the selected node.
    pub fn transfer_to_selected(&mut self) -> Option<Action> {
        let to = self.selected_node();
        let Some(from) = self.leader() else {
            self.note("no leader to hand leadership over yet".to_owned());
            return None;
        };
        if from == to {
            self.note(format!(
                "node {to} already leads: select another node to hand over to"
            ));
            return None;
        }
        if self.nodes[self.selected].status.crashed {
            self.note(format!("node {to} is crashed: it cannot take over"));
            return None;
        }
        Some(Action::Transfer { from, to })
    }

    pub fn restore_all(&mut self) -> Option<Action> {
        if !self.nodes.iter().any(|n| n.status.crashed) {
            self.note("no node is crashed".to_owned());
            return None;
        }
        Some(Action::RestoreAll)
    }

    /// A demo `updatefile` with a fresh name, through the leader.
    pub fn write_demo(&mut self) -> Option<Action> {
        let Some(via) = self.leader() else {
            self.push(
                None,
                "no leader to write through yet".to_owned(),
                Tone::Error,
            );
            return None;
        };
        self.writes += 1;
        let filename = format!("demo-{}.txt", self.writes);
        self.note(format!("writing {filename} through the leader, node {via}"));
        Some(Action::Write { via, filename })
    }

    /// `p`: isolates the selected node, or heals it if it is isolated.
    pub fn isolate_selected(&mut self) -> Option<Action> {
        let id = self.selected_node();
        if self.nodes.len() < 2 {
            self.note("a single node has no links to cut".to_owned());
            return None;
        }
        Some(Action::Net(if self.net.is_isolated(id) {
            NetAction::HealNode(id)
        } else {
            NetAction::Isolate(id)
        }))
    }

    /// `l`: waits for the digit of the node at the other end of the link.
    pub fn start_link(&mut self) {
        if self.nodes.len() < 2 {
            self.note("a single node has no links to cut".to_owned());
            return;
        }
        self.link_from = Some(self.selected_node());
    }

    /// The digit after `l`: cuts the link between the selected node and
    /// node `to`, or heals it if it is cut (in either direction).
    pub fn pick_link_peer(&mut self, to: usize) -> Option<Action> {
        let from = self.link_from.take()?;
        let to = to as NodeId;
        if to as usize >= self.nodes.len() || to == from {
            self.push(
                None,
                format!("no link between node {from} and node {to}"),
                Tone::Error,
            );
            return None;
        }
        Some(Action::Net(
            if self.net.is_cut(from, to) || self.net.is_cut(to, from) {
                NetAction::HealLink(from, to)
            } else {
                NetAction::CutLink(from, to)
            },
        ))
    }

    /// Any key but a digit after `l`.
    pub fn cancel_link(&mut self) {
        if self.link_from.take().is_some() {
            self.note("link: cancelled".to_owned());
        }
    }

    /// `h`: heals every link.
    pub fn heal_all(&mut self) -> Option<Action> {
        if !self.net.any() {
            self.note("no link is cut".to_owned());
            return None;
        }
        Some(Action::Net(NetAction::HealAll))
    }

    /// The partition filter changed (from here or elsewhere).
    pub fn set_net(&mut self, cuts: Cuts) {
        self.net = cuts;
    }

    /// `action` was carried out (`changed`: it changed something), leaving
    /// the links as `cuts` says.
    pub fn net_applied(&mut self, action: &NetAction, changed: bool, cuts: Cuts) {
        self.set_net(cuts);
        if changed {
            self.push(None, action.to_string(), Tone::Network);
        } else {
            self.note(format!("{action}: nothing to change"));
        }
    }

    /// The node whose log tail should be fetched now: the selected one, when
    /// the tail on hand is for another node or an older log.
    pub fn log_tail_wanted(&self) -> Option<NodeId> {
        let raft = &self.nodes[self.selected].status.raft;
        let current = (raft.last_index, raft.last_term);
        (self.log_tail.node != Some(self.selected_node()) || self.log_tail.at != current)
            .then_some(self.selected_node())
    }

    /// Records node `id`'s log tail, fetched while its log ended at `at`.
    pub fn set_log_tail(&mut self, id: NodeId, at: (LogIndex, Term), lines: Vec<LogLine>) {
        self.log_tail = LogTail {
            node: Some(id),
            at,
            lines,
        };
    }

    /// Adds a line for something from the feed.
    pub fn push_feed(&mut self, item: FeedItem) {
        match item {
            FeedItem::Event(ev) => self.push_event(ev),
            FeedItem::Missed { node, count } => self.push(
                Some(node),
                format!("{count} event(s) not shown (the log fell behind)"),
                Tone::Error,
            ),
        }
    }

    pub fn push_event(&mut self, ev: NodeEvent) {
        let tone = match &ev.kind {
            EventKind::ElectionStarted { .. }
            | EventKind::PreVoteStarted { .. }
            | EventKind::PreVoteRefused { .. } => Tone::Election,
            EventKind::VoteGranted { .. } => Tone::Vote,
            EventKind::LeaderElected { .. } | EventKind::LeadershipTransferred { .. } => {
                Tone::Leader
            }
            EventKind::TransferStarted { .. } | EventKind::TakingOver { .. } => Tone::Election,
            EventKind::TransferAborted { .. } => Tone::Blocked,
            EventKind::LeadershipLost { .. } | EventKind::QuorumLost { .. } => Tone::LeadershipLost,
            EventKind::Crashed => Tone::Crash,
            EventKind::Restored => Tone::Restore,
            EventKind::Committed { .. } => Tone::Commit,
            EventKind::Blocked { .. } => Tone::Blocked,
            EventKind::Unblocked => Tone::Restore,
            EventKind::SnapshotTaken { .. } | EventKind::SnapshotInstalled { .. } => Tone::Info,
            EventKind::Failed { .. } => Tone::Error,
        };
        self.push_at(ev.at, Some(ev.node), ev.kind.to_string(), tone);
    }

    /// A note from the dashboard itself.
    pub fn note(&mut self, text: String) {
        self.push(None, text, Tone::Info);
    }

    pub fn push(&mut self, node: Option<NodeId>, text: String, tone: Tone) {
        self.push_at(SystemTime::now(), node, text, tone);
    }

    /// Keeps the log in time order: items reach the dashboard by different
    /// paths (a write's outcome can overtake the commit event it caused). A
    /// line that repeats the newest one (same node, same text) is counted on
    /// it instead.
    fn push_at(&mut self, at: SystemTime, node: Option<NodeId>, text: String, tone: Tone) {
        if let Some(last) = self.events.back_mut() {
            if last.at <= at && last.node == node && last.text == text && last.tone == tone {
                last.at = at;
                last.repeats = last.repeats.saturating_add(1);
                return;
            }
        }
        if self.events.len() == EVENT_LOG_CAPACITY {
            self.events.pop_front();
        }
        let pos = self
            .events
            .iter()
            .rposition(|r| r.at <= at)
            .map_or(0, |i| i + 1);
        self.events.insert(
            pos,
            LogRecord {
                at,
                node,
                text,
                tone,
                repeats: 1,
            },
        );
    }
}
