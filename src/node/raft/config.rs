//! `RaftConfig`: the static parameters of one core (who it is, who the voters
//! are, timing in ticks, batching caps, the RNG seed) and their validation.
//! A config that passes `validate` cannot make the core misbehave.

use super::error::RaftError;
use super::types::NodeId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    pub id: NodeId,
    /// All voters including `id`, e.g. `[0, 1, 2]`. No duplicates.
    pub members: Vec<NodeId>,
    /// The election timeout is drawn uniformly from
    /// `[election_ticks_min, election_ticks_max]` each time it is reset.
    pub election_ticks_min: u32,
    pub election_ticks_max: u32,
    /// The leader sends an AppendEntries to every follower this often.
    /// Must be below `election_ticks_min`.
    pub heartbeat_ticks: u32,
    /// Seeds the core's RNG: same seed + same inputs => same outputs.
    pub seed: u64,
    /// At most this many entries per AppendEntries (at least 1).
    pub max_entries_per_message: usize,
    /// At most this many data bytes per AppendEntries, but always at least one entry.
    pub max_bytes_per_message: usize,
    /// Pipelined AppendEntries per follower in replicate state (at least 1).
    pub max_inflight: usize,
    /// Disruption prevention: campaign only after a majority grants a
    /// pre-vote (Raft thesis §9.6), and ignore RequestVote and PreVote while
    /// a leader has been heard from within `election_ticks_min` (§4.2.3).
    /// Off, the core is the plain algorithm of the paper's Figure 2.
    pub pre_vote: bool,
    /// Check-quorum: a leader that has heard from no majority (counting
    /// itself) during `election_ticks_max` ticks steps down, so a leader cut
    /// off in a minority stops claiming leadership.
    pub check_quorum: bool,
}

impl RaftConfig {
    /// A config with the usual defaults (election 10..=20 ticks, heartbeat 3,
    /// 64 entries / 1 MiB per message, 8 in flight, seed = id, pre-vote and check-quorum on).
    pub fn new(id: NodeId, members: Vec<NodeId>) -> RaftConfig {
        RaftConfig {
            id,
            members,
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 3,
            seed: id,
            max_entries_per_message: 64,
            max_bytes_per_message: 1 << 20,
            max_inflight: 8,
            pre_vote: true,
            check_quorum: true,
        }
    }

    pub fn validate(&self) -> Result<(), RaftError> {
        let bad = |s: String| Err(RaftError::InvalidConfig(s));
        if self.members.is_empty() {
            return bad("members is empty".into());
        }
        if !self.members.contains(&self.id) {
            return bad(format!(
                "id {} is not in members {:?}",
                self.id, self.members
            ));
        }
        let mut sorted = self.members.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.members.len() {
            return bad(format!("duplicate member in {:?}", self.members));
        }
        if self.heartbeat_ticks == 0 {
            return bad("heartbeat_ticks must be at least 1".into());
        }
        if self.election_ticks_min <= self.heartbeat_ticks {
            return bad(format!(
                "election_ticks_min ({}) must exceed heartbeat_ticks ({})",
                self.election_ticks_min, self.heartbeat_ticks
            ));
        }
        if self.election_ticks_max < self.election_ticks_min {
            return bad(format!(
                "election_ticks_max ({}) is below election_ticks_min ({})",
                self.election_ticks_max, self.election_ticks_min
            ));
        }
        if self.max_entries_per_message == 0 {
            return bad("max_entries_per_message must be at least 1".into());
        }
        if self.max_bytes_per_message == 0 {
            return bad("max_bytes_per_message must be at least 1".into());
        }
        if self.max_inflight == 0 {
            return bad("max_inflight must be at least 1".into());
        }
        Ok(())
    }

    /// Votes or acks needed for a decision: a strict majority of `members`.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RaftConfig::new(0, vec![0, 1, 2]).validate().unwrap();
        RaftConfig::new(0, vec![0]).validate().unwrap();
    }

    #[test]
    fn rejects_bad_configs() {
        let ok = RaftConfig::new(1, vec![0, 1, 2]);
        type Breaker = Box<dyn Fn(&mut RaftConfig)>;
        let cases: Vec<Breaker> = vec![
            Box::new(|c| c.members.clear()),
            Box::new(|c| c.id = 7),
            Box::new(|c| c.members = vec![0, 1, 1]),
            Box::new(|c| c.heartbeat_ticks = 0),
            Box::new(|c| c.election_ticks_min = c.heartbeat_ticks),
            Box::new(|c| c.election_ticks_max = c.election_ticks_min - 1),
            Box::new(|c| c.max_entries_per_message = 0),
            Box::new(|c| c.max_bytes_per_message = 0),
            Box::new(|c| c.max_inflight = 0),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut c = ok.clone();
            f(&mut c);
            assert!(
                matches!(c.validate(), Err(RaftError::InvalidConfig(_))),
                "case {i} should be rejected"
            );
        }
    }

    #[test]
    fn quorum_is_strict_majority() {
        let q = |n: u64| RaftConfig::new(0, (0..n).collect()).quorum();
        assert_eq!((q(1), q(2), q(3), q(4), q(5)), (1, 2, 2, 3, 3));
    }
}
