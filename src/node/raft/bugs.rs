//! Seeded bugs: test-only switches that break one Raft rule each, so the
//! simulation can prove that its checks fire (`surfstore sim --bug NAME`).
//! Production never sets them: a core starts with `SeededBugs::NONE` and
//! only `Raft::inject_bugs` (called by `crate::sim` alone) changes that.

/// Which rules to break; all `false` is the correct core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeededBugs {
    /// The runtime sends votes and append acks without waiting for the
    /// write they promise to be durable.
    pub ack_before_persist: bool,
    /// Votes are granted without the up-to-date check (§5.4.1).
    pub no_election_restriction: bool,
    /// A candidate counts every vote granted to it twice.
    pub double_vote: bool,
    /// ReadIndex reads are released without the majority round.
    pub read_without_quorum: bool,
    /// Durable entries are handed out for applying past the commit index.
    pub apply_uncommitted: bool,
}

impl SeededBugs {
    pub const NONE: SeededBugs = SeededBugs {
        ack_before_persist: false,
        no_election_restriction: false,
        double_vote: false,
        read_without_quorum: false,
        apply_uncommitted: false,
    };

    /// Every bug's name, as `--bug` takes it.
    pub const NAMES: [&'static str; 5] = [
        "ack-before-persist",
        "no-election-restriction",
        "double-vote",
        "read-without-quorum",
        "apply-uncommitted",
    ];

    /// The bug called `name` (one of `NAMES`).
    pub fn named(name: &str) -> Option<SeededBugs> {
        let mut b = SeededBugs::NONE;
        match name {
            "ack-before-persist" => b.ack_before_persist = true,
            "no-election-restriction" => b.no_election_restriction = true,
            "double-vote" => b.double_vote = true,
            "read-without-quorum" => b.read_without_quorum = true,
            "apply-uncommitted" => b.apply_uncommitted = true,
            _ => return None,
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_one_distinct_bug() {
        let all: Vec<SeededBugs> = SeededBugs::NAMES
            .iter()
            .map(|n| SeededBugs::named(n).expect("named"))
            .collect();
        for (i, a) in all.iter().enumerate() {
            assert_ne!(*a, SeededBugs::NONE);
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(SeededBugs::named("no-such-bug"), None);
        assert_eq!(SeededBugs::default(), SeededBugs::NONE);
    }
}
