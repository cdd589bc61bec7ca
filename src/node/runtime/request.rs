//! What the rest of the process may ask of a node's runtime, and the small
//! types that travel with the answers.

use tokio::sync::oneshot;

use crate::node::command::Command;
use crate::node::error::NodeError;
use crate::node::metadata::MapView;
use crate::node::raft::{LogIndex, Message, NodeId, Snapshot, Term};
use crate::node::storage::PreparedSnapshot;

/// Replies travel on oneshots; a dropped receiver (the client hung up) is fine.
pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

#[derive(Debug)]
pub enum Request {
    /// `updatefile`: answered with the apply result once committed and applied.
    Update {
        cmd: Command,
        reply: Reply<bool>,
    },
    /// `getfileinfomap`: answered after a ReadIndex round with a view of the
    /// applied map (turned into a `Value` by the caller, off the runtime).
    ReadMap {
        reply: Reply<MapView>,
    },
    /// A view of this node's applied map as it is now, crashed or not (the
    /// block store's repair reads it).
    LocalMap {
        reply: oneshot::Sender<MapView>,
    },
    /// `tester_getversion`: this node's applied map, crashed or not.
    GetVersion {
        filename: String,
        reply: oneshot::Sender<i64>,
    },
    /// An `appendEntries` / `requestVote` received from a peer; answered with the
    /// core's response once what it promises is persisted.
    Peer {
        msg: Message,
        reply: Reply<Message>,
    },
    /// The answer to a request this node sent.
    PeerResponse(Message),
    /// A request this node sent to `peer` got no answer.
    Unreachable(NodeId),
    /// `peer` answered a request with fault 1: it is `crash()`ed, but alive
    /// (check-quorum counts it as heard from).
    PeerCrashed(NodeId),
    /// `peer` refused the snapshot this node sent it (fault 3).
    SnapshotRefused(NodeId),
    /// `transferLeader`: hand leadership to `to` (`None`: the most
    /// up-to-date follower heard from recently), answered with the new
    /// leader's id once this node hears it lead. Faults: `NotLeader` on a
    /// follower, `Unavailable` when no follower can take over or the
    /// successor did not within an election timeout (this node then leads
    /// on), `BadRequest` for an id that is not a member.
    TransferLeader {
        to: Option<NodeId>,
        reply: Reply<NodeId>,
    },
    /// Answered once no client proposal waits on this node any more (a
    /// node stopping after handing leadership off lets the proposals it
    /// took finish first).
    Quiesce {
        reply: oneshot::Sender<()>,
    },
    Crash {
        reply: oneshot::Sender<()>,
    },
    Restore {
        reply: oneshot::Sender<()>,
    },
    /// The last `n` log entries, described (for the dashboard).
    LogTail {
        n: usize,
        reply: oneshot::Sender<Vec<LogLine>>,
    },
    /// The storage writer finished the writes of every `Ready` through
    /// `upto` (durably where they had to be), or failed.
    Persisted {
        upto: u64,
        result: Result<(), String>,
    },
    /// A snapshot was encoded, and its file written (`Some`; `None`: the
    /// store has no file to write), off the runtime, or that failed.
    SnapshotPrepared {
        snapshot: Snapshot,
        started: std::time::Instant,
        result: std::io::Result<Option<PreparedSnapshot>>,
    },
}

/// One log entry as the dashboard shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub index: LogIndex,
    pub term: Term,
    pub command: String,
}

/// A human description of an entry's payload.
pub fn describe(data: &[u8]) -> String {
    if data.is_empty() {
        return "no-op (new leader)".to_owned();
    }
    match Command::decode(data) {
        Ok(Command::UpdateFile {
            filename,
            version,
            hashlist,
        }) => {
            let n = hashlist.len();
            let plural = if n == 1 { "" } else { "es" };
            format!("updatefile {filename:?} v{version} ({n} hash{plural})")
        }
        Err(e) => format!("undecodable: {e}"),
    }
}
