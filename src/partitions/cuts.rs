//! What is cut: a set of unordered node pairs whose packets are dropped,
//! everything else connected. A [`Cut`] knows nothing of namespaces or
//! nftables (`net.rs` turns it into rules); it answers the questions the
//! scenarios ask of it (who may a node still hear, does a leader keep its
//! majority) and describes itself for the report.
//!
//! The clients' namespace is never part of a cut: clients reach every node
//! whatever is cut (see the module doc of `partitions`).

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::Rng;

/// Node pairs that cannot talk, over `n` nodes. Invariant: every pair is
/// `(a, b)` with `a < b < n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    n: usize,
    pairs: BTreeSet<(usize, usize)>,
    /// What the cut is, in words (`node 2 | nodes 0,1,3,4`).
    label: String,
}

impl Cut {
    /// Everything connected.
    pub fn none(n: usize) -> Cut {
        Cut {
            n,
            pairs: BTreeSet::new(),
            label: "nothing cut".into(),
        }
    }

    /// Every pair across `side` and the rest cut: `side | rest`.
    pub fn split(n: usize, side: &[usize]) -> Cut {
        let a: BTreeSet<usize> = side.iter().copied().filter(|&i| i < n).collect();
        let b: Vec<usize> = (0..n).filter(|i| !a.contains(i)).collect();
        let mut cut = Cut::none(n);
        for &i in &a {
            for &j in &b {
                cut.add(i, j);
            }
        }
        let a: Vec<usize> = a.into_iter().collect();
        cut.label = if a.len() == 1 {
            format!("node {} | nodes {}", a[0], list(&b))
        } else {
            format!("{{{}}} | {{{}}}", list(&a), list(&b))
        };
        cut
    }

    /// Node `i` cut from every other node.
    pub fn isolate(n: usize, i: usize) -> Cut {
        Cut::split(n, &[i])
    }

    /// Only the link between `a` and `b`.
    pub fn link(n: usize, a: usize, b: usize) -> Cut {
        let mut cut = Cut::none(n);
        cut.add(a, b);
        cut.label = format!("link {}-{} only", a.min(b), a.max(b));
        cut
    }

    /// `left | right` cut from each other; the nodes in neither (the
    /// bridges) still reach both halves.
    pub fn bridge(n: usize, left: &[usize], right: &[usize]) -> Cut {
        let mut cut = Cut::none(n);
        for &i in left {
            for &j in right {
                cut.add(i, j);
            }
        }
        let bridges: Vec<usize> = (0..n)
            .filter(|i| !left.contains(i) && !right.contains(i))
            .collect();
        cut.label = format!(
            "{{{}}} | {{{}}}, node {} reaching both",
            list(left),
            list(right),
            list(&bridges)
        );
        cut
    }

    /// A random cut for the flapping scenario: nothing, one node isolated,
    /// a split into two sides, one link, a bridge, or a few random links.
    pub fn random(n: usize, rng: &mut impl Rng) -> Cut {
        let mut ids: Vec<usize> = (0..n).collect();
        ids.shuffle(rng);
        match rng.gen_range(0..12) {
            0 => Cut::none(n),
            1..=3 => Cut::isolate(n, ids[0]),
            4..=6 => {
                let k = rng.gen_range(1..=n / 2).max(1);
                Cut::split(n, &ids[..k])
            }
            7 => Cut::link(n, ids[0], ids[1]),
            8..=9 if n >= 5 => Cut::bridge(n, &ids[0..2], &ids[3..5]),
            _ => {
                let mut cut = Cut::none(n);
                for _ in 0..rng.gen_range(2..=n) {
                    let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
                    if a != b {
                        cut.add(a, b);
                    }
                }
                let pairs: Vec<String> =
                    cut.pairs.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                cut.label = if pairs.is_empty() {
                    "nothing cut".into()
                } else {
                    format!("links {} cut", pairs.join(", "))
                };
                cut
            }
        }
    }

    /// Both cuts at once.
    pub fn union(&self, other: &Cut) -> Cut {
        let mut cut = self.clone();
        for &(a, b) in &other.pairs {
            cut.add(a, b);
        }
        cut.label = format!("{} + {}", self.label, other.label);
        cut
    }

    fn add(&mut self, a: usize, b: usize) {
        if a != b && a < self.n && b < self.n {
            self.pairs.insert((a.min(b), a.max(b)));
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether `a` and `b` cannot talk.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.pairs.contains(&(a.min(b), a.max(b)))
    }

    /// The nodes `i` cannot talk to.
    pub fn blocked_for(&self, i: usize) -> Vec<usize> {
        (0..self.n)
            .filter(|&j| j != i && self.is_cut(i, j))
            .collect()
    }

    /// How many nodes `i` hears directly, itself included: what
    /// check-quorum counts.
    pub fn heard_by(&self, i: usize) -> usize {
        1 + (0..self.n)
            .filter(|&j| j != i && !self.is_cut(i, j))
            .count()
    }

    /// Whether a leader at `i` still hears a majority directly (else
    /// check-quorum must depose it).
    pub fn keeps_majority(&self, i: usize) -> bool {
        self.heard_by(i) > self.n / 2
    }
}

/// `0,1,3`.
fn list(ids: &[usize]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn isolation_cuts_every_link_of_one_node() {
        let c = Cut::isolate(5, 2);
        assert_eq!(c.label(), "node 2 | nodes 0,1,3,4");
        assert_eq!(c.blocked_for(2), vec![0, 1, 3, 4]);
        assert_eq!(c.blocked_for(0), vec![2]);
        assert_eq!(c.heard_by(2), 1);
        assert!(!c.keeps_majority(2));
        assert!(c.keeps_majority(0));
    }

    #[test]
    fn a_split_leaves_the_minority_without_a_majority() {
        let c = Cut::split(5, &[4, 1]);
        assert_eq!(c.label(), "{1,4} | {0,2,3}");
        assert!(c.is_cut(1, 0) && c.is_cut(4, 3) && !c.is_cut(1, 4) && !c.is_cut(0, 2));
        assert!(!c.keeps_majority(1) && !c.keeps_majority(4));
        assert!(c.keeps_majority(0) && c.keeps_majority(2) && c.keeps_majority(3));
    }

    #[test]
    fn a_link_cut_is_that_pair_only() {
        let c = Cut::link(5, 3, 1);
        assert_eq!(c.label(), "link 1-3 only");
        assert_eq!(c.blocked_for(1), vec![3]);
        assert_eq!(c.blocked_for(3), vec![1]);
        assert!(c.blocked_for(0).is_empty());
        assert!((0..5).all(|i| c.keeps_majority(i)));
    }

    #[test]
    fn a_bridge_reaches_both_halves() {
        let c = Cut::bridge(5, &[0, 1], &[3, 4]);
        assert_eq!(c.label(), "{0,1} | {3,4}, node 2 reaching both");
        assert!(c.blocked_for(2).is_empty());
        assert_eq!(c.blocked_for(0), vec![3, 4]);
        assert_eq!(c.heard_by(0), 3);
        assert!(c.keeps_majority(0) && c.keeps_majority(4));
    }

    #[test]
    fn random_cuts_are_well_formed_and_varied() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut labels = BTreeSet::new();
        for _ in 0..200 {
            let c = Cut::random(5, &mut rng);
            assert!(c.pairs.iter().all(|&(a, b)| a < b && b < 5));
            assert!(!c.label().is_empty());
            labels.insert(c.label().split(' ').next().unwrap_or("").to_owned());
        }
        assert!(labels.len() >= 4, "{labels:?}");
    }
}
