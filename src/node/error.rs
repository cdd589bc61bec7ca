//! The node's one error enum, mapped once to XML-RPC faults at the edge
//! (`api.rs`), with the fault codes of API.md.

use crate::xmlrpc::Fault;

pub const FAULT_IS_CRASHED: i32 = 1;
pub const FAULT_NOT_LEADER: i32 = 2;
pub const FAULT_BAD_REQUEST: i32 = 3;
pub const FAULT_NO_SUCH_METHOD: i32 = 4;
pub const FAULT_UNAVAILABLE: i32 = 5;
pub const FAULT_UNAUTHORIZED: i32 = 6;
pub const FAULT_NOT_PEER: i32 = 7;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NodeError {
    #[error("isCrashed: node {0} is crashed")]
    Crashed(u64),
    /// The leader's `host:port` when this node knows it.
    #[error("NotLeader: {}", match .0 { Some(l) => format!("leader is {l}"), None => "leader unknown".to_owned() })]
    NotLeader(Option<String>),
    #[error("BadRequest: {0}")]
    BadRequest(String),
    #[error("NoSuchMethod: {0}")]
    NoSuchMethod(String),
    /// The outcome is unknown: leadership was lost (or the node crashed or shut
    /// down) while the call was pending.
    #[error("Unavailable: {0}")]
    Unavailable(String),
    /// The call needs proof of a secret it did not give (`crate::auth`).
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    /// A peer call that does not come from a member of this cluster (another
    /// cluster's id, a member id or address that is not what it claims).
    #[error("NotPeer: {0}")]
    NotPeer(String),
}

impl NodeError {
    pub fn code(&self) -> i32 {
        match self {
            NodeError::Crashed(_) => FAULT_IS_CRASHED,
            NodeError::NotLeader(_) => FAULT_NOT_LEADER,
            NodeError::BadRequest(_) => FAULT_BAD_REQUEST,
            NodeError::NoSuchMethod(_) => FAULT_NO_SUCH_METHOD,
            NodeError::Unavailable(_) => FAULT_UNAVAILABLE,
            NodeError::Unauthorized(_) => FAULT_UNAUTHORIZED,
            NodeError::NotPeer(_) => FAULT_NOT_PEER,
        }
    }
}

impl From<NodeError> for Fault {
    fn from(e: NodeError) -> Fault {
        Fault::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_the_contract() {
        let f: Fault = NodeError::NotLeader(Some("localhost:9002".into())).into();
        assert_eq!(f, Fault::new(2, "NotLeader: leader is localhost:9002"));
        let f: Fault = NodeError::Crashed(3).into();
        assert_eq!(f.code, 1);
        assert!(f.message.starts_with("isCrashed"));
    }
}
