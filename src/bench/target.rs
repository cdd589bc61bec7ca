//! What the generator drives, in one shape for both systems: a [`Target`]
//! (the cluster, its leader guess shared by every simulated client) hands
//! out one [`Session`] per simulated client (its own keep-alive
//! connections), and a session makes one [`Attempt`] at an [`Op`].

use super::etcd::{Etcd, EtcdSession};
use super::ours::{Ours, OursSession};

/// One operation of the workload.
#[derive(Clone, Copy, Debug)]
pub enum Op<'a> {
    /// `updatefile(key, version, [payload])` / etcd `put(key, payload)`.
    Write { key: &'a str, version: i32 },
    /// `getfileinfomap()` / etcd `range` over every key.
    Read,
}

/// What the generator does after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Retry at once (the session followed a redirect or moved to another node).
    RetryNow,
    /// Retry after a backoff (the cluster is electing, or the node is unwell).
    Backoff,
    /// Stop the whole run: retrying cannot help (the server refuses the
    /// request itself, or answers something the bench does not understand).
    Fatal,
}

/// A failed attempt.
#[derive(Debug)]
pub struct Failure {
    /// The kind it is counted under (`fault 2 NotLeader`, `timeout`, …).
    pub kind: String,
    /// The full message, for a fatal stop.
    pub detail: String,
    pub then: Then,
    /// The write may have taken effect, or its version was refused: the
    /// workload must continue on a fresh file, whose version it knows.
    pub fresh_key: bool,
}

impl Failure {
    pub fn new(kind: impl Into<String>, detail: impl Into<String>, then: Then) -> Failure {
        Failure {
            kind: kind.into(),
            detail: detail.into(),
            then,
            fresh_key: false,
        }
    }

    pub fn fresh_key(mut self) -> Failure {
        self.fresh_key = true;
        self
    }
}

/// The result of one attempt: `Ok(entries)` on success, where `entries` is
/// the number of entries a read returned (0 for a write).
pub type Attempt = Result<u64, Failure>;

/// The system under test.
pub enum Target {
    Ours(Ours),
    Etcd(Etcd),
}

impl Target {
    /// A new simulated client with connections of its own.
    pub fn session(&self) -> Session {
        match self {
            Target::Ours(t) => Session::Ours(t.session()),
            Target::Etcd(t) => Session::Etcd(t.session()),
        }
    }

    /// `surfstore` or `etcd`.
    pub fn system(&self) -> &'static str {
        match self {
            Target::Ours(_) => "surfstore",
            Target::Etcd(_) => "etcd",
        }
    }

    /// Every member's address, in the cluster's order.
    pub fn endpoints(&self) -> Vec<String> {
        match self {
            Target::Ours(t) => t.members().to_vec(),
            Target::Etcd(t) => t.endpoints().to_vec(),
        }
    }

    /// The number of cluster members.
    pub fn nodes(&self) -> usize {
        match self {
            Target::Ours(t) => t.members().len(),
            Target::Etcd(t) => t.members(),
        }
    }

    /// The address calls currently go to.
    pub fn leader(&self) -> String {
        match self {
            Target::Ours(t) => t.leader(),
            Target::Etcd(t) => t.leader(),
        }
    }

    /// How many times the shared leader guess has moved since the start.
    pub fn leader_switches(&self) -> u64 {
        match self {
            Target::Ours(t) => t.switches(),
            Target::Etcd(t) => t.switches(),
        }
    }
}

/// One simulated client's connections.
pub enum Session {
    Ours(OursSession),
    Etcd(EtcdSession),
}

impl Session {
    pub async fn attempt(&mut self, op: Op<'_>) -> Attempt {
        match self {
            Session::Ours(s) => s.attempt(op).await,
            Session::Etcd(s) => s.attempt(op).await,
        }
    }
}

/// The member every simulated client sends to, shared by all of them: the
/// first client to learn of a new leader moves everyone.
#[derive(Debug)]
pub struct LeaderGuess {
    /// An index into the member list (always `< members`).
    index: std::sync::atomic::AtomicUsize,
    members: usize,
    switches: std::sync::atomic::AtomicU64,
}

impl LeaderGuess {
    pub fn new(index: usize, members: usize) -> LeaderGuess {
        assert!(
            index < members,
            "leader guess {index} outside the {members} members"
        );
        LeaderGuess {
            index: index.into(),
            members,
            switches: 0.into(),
        }
    }

    pub fn get(&self) -> usize {
        self.index.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves the guess from `from` to `to`, unless another client moved it
    /// already (its news is at least as fresh).
    pub fn switch(&self, from: usize, to: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let to = to % self.members;
        if from != to
            && self
                .index
                .compare_exchange(from, to, Relaxed, Relaxed)
                .is_ok()
        {
            self.switches.fetch_add(1, Relaxed);
        }
    }

    /// Moves the guess from `from` to the member after it.
    pub fn next(&self, from: usize) {
        self.switch(from, from + 1);
    }

    pub fn switches(&self) -> u64 {
        self.switches.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_switch_loses_to_a_newer_one() {
        let g = LeaderGuess::new(0, 3);
        g.switch(0, 2);
        g.switch(0, 1); // based on the old guess: ignored
        assert_eq!(g.get(), 2);
        g.next(2);
        assert_eq!(g.get(), 0);
        g.switch(0, 0);
        assert_eq!(g.switches(), 2);
    }
}
