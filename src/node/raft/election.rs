//! Elections: the randomized election timer and the tally of one candidacy.
//! The timer draws a fresh timeout in `[min, max]` ticks from the core's
//! seeded RNG every time it is reset, so split votes resolve and runs replay.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::Rng;

use super::types::NodeId;

#[derive(Debug)]
pub struct ElectionTimer {
    min: u32,
    max: u32,
    /// Ticks since the last reset. Fires when it reaches `timeout`.
    elapsed: u32,
    timeout: u32,
}

impl ElectionTimer {
    pub fn new(min: u32, max: u32, rng: &mut SmallRng) -> ElectionTimer {
        let mut t = ElectionTimer {
            min,
            max,
            elapsed: 0,
            timeout: min,
        };
        t.reset(rng);
        t
    }

    pub fn reset(&mut self, rng: &mut SmallRng) {
        self.elapsed = 0;
        self.timeout = rng.gen_range(self.min..=self.max);
    }

    /// Ticks since the last reset.
    pub fn elapsed(&self) -> u32 {
        self.elapsed
    }

    /// Count one tick; true when the timeout has passed.
    pub fn tick(&mut self) -> bool {
        self.elapsed += 1;
        self.elapsed >= self.timeout
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Votes received in one candidacy, at most one per voter (a repeated answer
/// from the same voter does not count twice).
#[derive(Debug, Default)]
pub struct VoteTracker {
    votes: BTreeMap<NodeId, bool>,
    /// Granted votes counted on top of `votes`: always 0, except under the
    /// seeded `double-vote` bug.
    pub extra_granted: usize,
}

impl VoteTracker {
    pub fn clear(&mut self) {
        self.votes.clear();
        self.extra_granted = 0;
    }

    pub fn record(&mut self, voter: NodeId, granted: bool) {
        self.votes.entry(voter).or_insert(granted);
    }

    pub fn result(&self, quorum: usize) -> VoteResult {
        let real = self.votes.values().filter(|&&g| g).count();
        let rejected = self.votes.len() - real;
        let granted = real + self.extra_granted;
        if granted >= quorum {
            VoteResult::Won
        } else if rejected >= quorum {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn timer_fires_within_range_and_varies() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        let mut t = ElectionTimer::new(5, 9, &mut rng);
        for _ in 0..50 {
            let mut n = 1;
            while !t.tick() {
                n += 1;
            }
            assert!((5..=9).contains(&n));
            seen.insert(n);
            t.reset(&mut rng);
        }
        assert!(seen.len() > 1, "timeouts are randomized");
    }

    #[test]
    fn tally_counts_each_voter_once() {
        let mut v = VoteTracker::default();
        v.record(0, true);
        assert_eq!(v.result(2), VoteResult::Pending);
        v.record(1, false);
        v.record(1, true);
        assert_eq!(v.result(2), VoteResult::Pending);
        v.record(2, false);
        assert_eq!(v.result(2), VoteResult::Lost);
        v.clear();
        v.record(0, true);
        v.record(2, true);
        assert_eq!(v.result(2), VoteResult::Won);
    }
}
