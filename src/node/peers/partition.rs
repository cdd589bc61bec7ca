//! Simulated network partitions for nodes that share a process
//! (`run-cluster.sh`): a [`Partition`] is a set of cut directed links
//! between members, and a node's [`NetFilter`] checks it before every peer
//! call it makes and on every answer it receives.
//!
//! Promises:
//! - A call from `a` to `b` over a cut link `a → b` is never sent, and an
//!   answer from `b` over a cut link `b → a` is never delivered: the caller
//!   sees what a silent network would show it (the peer reported
//!   unreachable, never as crashed), so a cut link does not count as contact
//!   for check-quorum, while a `crash()`ed peer (fault 1) still does.
//! - Checking costs one relaxed atomic load (no lock, no allocation); an open
//!   filter (every `run-server.sh` node) costs a branch on `None`.
//! - Bounded: `M × ⌈M / 64⌉` words for M members, fixed at creation. Ids
//!   outside `0..M` are never cut, and changing them does nothing.
//! - Changes are seen by every node's next check; [`Partition::generation`]
//!   moves on every change, so a viewer can tell cheaply whether to look again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::node::raft::NodeId;

/// The cut links of a cluster of M members. Share it in an `Arc`.
#[derive(Debug)]
pub struct Partition {
    m: usize,
    /// Words per row: row `from` holds bit `to` set when `from → to` is cut.
    words: usize,
    /// `m × words` words; `bits[from * words + to / 64]`.
    bits: Box<[AtomicU64]>,
    generation: AtomicU64,
}

impl Partition {
    /// M members, every link open.
    pub fn new(m: usize) -> Partition {
        let words = m.div_ceil(64);
        Partition {
            m,
            words,
            bits: (0..m * words).map(|_| AtomicU64::new(0)).collect(),
            generation: AtomicU64::new(0),
        }
    }

    /// M, the number of members.
    pub fn len(&self) -> usize {
        self.m
    }

    pub fn is_empty(&self) -> bool {
        self.m == 0
    }

    /// The word and bit of `from → to`, when both are members.
    fn slot(&self, from: NodeId, to: NodeId) -> Option<(&AtomicU64, u64)> {
        let (from, to) = (usize::try_from(from).ok()?, usize::try_from(to).ok()?);
        if from >= self.m || to >= self.m {
            return None;
        }
        Some((&self.bits[from * self.words + to / 64], 1u64 << (to % 64)))
    }

    /// Whether what `from` sends to `to` is dropped.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.slot(from, to)
            .is_some_and(|(w, bit)| w.load(Ordering::Relaxed) & bit != 0)
    }

    /// Cuts or heals the one direction `from → to`; true if that changed it.
    pub fn set(&self, from: NodeId, to: NodeId, cut: bool) -> bool {
        if from == to {
            return false;
        }
        let Some((w, bit)) = self.slot(from, to) else {
            return false;
        };
        let before = if cut {
            w.fetch_or(bit, Ordering::Relaxed)
        } else {
            w.fetch_and(!bit, Ordering::Relaxed)
        };
        let changed = (before & bit != 0) != cut;
        if changed {
            self.generation.fetch_add(1, Ordering::Release);
        }
        changed
    }

    /// Cuts both directions between `a` and `b`; true if anything changed.
    pub fn cut_link(&self, a: NodeId, b: NodeId) -> bool {
        self.set(a, b, true) | self.set(b, a, true)
    }

    /// Heals both directions between `a` and `b`; true if anything changed.
    pub fn heal_link(&self, a: NodeId, b: NodeId) -> bool {
        self.set(a, b, false) | self.set(b, a, false)
    }

    /// Cuts `a` from every other member, both ways.
    pub fn isolate(&self, a: NodeId) -> bool {
        let mut changed = false;
        for b in 0..self.m as NodeId {
            changed |= self.cut_link(a, b);
        }
        changed
    }

    /// Heals every link of `a`, both ways.
    pub fn heal_node(&self, a: NodeId) -> bool {
        let mut changed = false;
        for b in 0..self.m as NodeId {
            changed |= self.heal_link(a, b);
        }
        changed
    }

    /// Heals every link; true if any was cut.
    pub fn heal_all(&self) -> bool {
        let mut changed = false;
        for w in self.bits.iter() {
            changed |= w.swap(0, Ordering::Relaxed) != 0;
        }
        if changed {
            self.generation.fetch_add(1, Ordering::Release);
        }
        changed
    }

    /// Moves on every change (never backwards).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A copy of the cut links as they are now.
    pub fn cuts(&self) -> Cuts {
        Cuts {
            m: self.m,
            words: self.words,
            bits: self
                .bits
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A copy of a [`Partition`]'s cut links, for viewers (the dashboard).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cuts {
    m: usize,
    words: usize,
    bits: Vec<u64>,
}

impl Cuts {
    /// M members, every link open.
    pub fn none(m: usize) -> Cuts {
        Partition::new(m).cuts()
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) else {
            return false;
        };
        from < self.m
            && to < self.m
            && self.bits[from * self.words + to / 64] & (1 << (to % 64)) != 0
    }

    /// Some link is cut, in either direction.
    pub fn any(&self) -> bool {
        self.bits.iter().any(|&w| w != 0)
    }

    /// The members `a` has a link to cut in at least one direction, in id order.
    pub fn cut_peers(&self, a: NodeId) -> Vec<NodeId> {
        (0..self.m as NodeId)
            .filter(|&b| b != a && (self.is_cut(a, b) || self.is_cut(b, a)))
            .collect()
    }

    /// `a` is cut both ways from every other member (and there is another).
    pub fn is_isolated(&self, a: NodeId) -> bool {
        (a as usize) < self.m
            && self.m > 1
            && (0..self.m as NodeId)
                .filter(|&b| b != a)
                .all(|b| self.is_cut(a, b) && self.is_cut(b, a))
    }
}

/// One node's view of the network: which of its peer calls may leave and
/// which answers may arrive. The default is open (no partition: what every
/// `run-server.sh` node has). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct NetFilter {
    partition: Option<Arc<Partition>>,
}

impl NetFilter {
    /// Every call leaves, every answer arrives.
    pub fn open() -> NetFilter {
        NetFilter::default()
    }

    /// Follows `partition` (shared by every node of an in-process cluster).
    pub fn new(partition: Arc<Partition>) -> NetFilter {
        NetFilter {
            partition: Some(partition),
        }
    }

    /// Whether a call from `from` to `to` may leave (and an answer from
    /// `from` reach `to`).
    #[inline]
    pub fn passes(&self, from: NodeId, to: NodeId) -> bool {
        match &self.partition {
            None => true,
            Some(p) => !p.is_cut(from, to),
        }
    }
}

/// Why a peer call was not made: the link is cut, as if the network were
/// silent (never a crash, never contact).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no answer: the link from node {from} to node {to} is cut (partition)")]
pub struct LinkCut {
    pub from: NodeId,
    pub to: NodeId,
}

impl NetFilter {
    /// A request/response call from `me` to `peer` needs both directions.
    pub fn check_call(&self, me: NodeId, peer: NodeId) -> Result<(), LinkCut> {
        if !self.passes(me, peer) {
            return Err(LinkCut { from: me, to: peer });
        }
        if !self.passes(peer, me) {
            return Err(LinkCut { from: peer, to: me });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_directed_and_cut_link_cuts_both_ways() {
        let p = Partition::new(3);
        assert!(!p.is_cut(0, 1));
        assert!(p.set(0, 1, true));
        assert!(!p.set(0, 1, true), "already cut");
        assert!(p.is_cut(0, 1) && !p.is_cut(1, 0));
        assert!(p.cut_link(1, 2));
        assert!(p.is_cut(1, 2) && p.is_cut(2, 1));
        assert!(!p.is_cut(0, 2) && !p.is_cut(2, 0));
        assert!(p.heal_link(2, 1));
        assert!(!p.is_cut(1, 2) && !p.is_cut(2, 1));
        assert!(p.is_cut(0, 1), "other links untouched");
    }

    #[test]
    fn isolate_heal_node_and_heal_all() {
        let p = Partition::new(5);
        assert!(p.isolate(2));
        let cuts = p.cuts();
        assert!(cuts.is_isolated(2));
        assert_eq!(cuts.cut_peers(2), vec![0, 1, 3, 4]);
        assert_eq!(cuts.cut_peers(0), vec![2]);
        assert!(!cuts.is_isolated(0));
        for b in [0, 1, 3, 4] {
            assert!(p.is_cut(2, b) && p.is_cut(b, 2));
            assert!(!p.is_cut(0, b) || b == 2);
        }
        assert!(!p.isolate(2), "already isolated");
        assert!(p.heal_node(2));
        assert!(!p.cuts().any());
        p.cut_link(0, 4);
        p.set(3, 1, true);
        assert!(p.heal_all());
        assert!(!p.heal_all(), "nothing left to heal");
        assert_eq!(p.cuts(), Cuts::none(5));
    }

    #[test]
    fn a_one_way_cut_is_not_isolation() {
        let p = Partition::new(2);
        p.set(0, 1, true);
        assert!(!p.cuts().is_isolated(0));
        assert_eq!(p.cuts().cut_peers(1), vec![0]);
        p.set(1, 0, true);
        assert!(p.cuts().is_isolated(0) && p.cuts().is_isolated(1));
    }

    #[test]
    fn ids_outside_the_cluster_and_self_links_are_never_cut() {
        let p = Partition::new(3);
        assert!(!p.set(0, 3, true));
        assert!(!p.set(7, 1, true));
        assert!(!p.set(u64::MAX, 0, true));
        assert!(!p.set(1, 1, true));
        assert!(!p.isolate(9));
        assert!(!p.is_cut(0, 3) && !p.is_cut(u64::MAX, u64::MAX));
        assert!(!p.cuts().any());
        assert!(!p.cuts().is_isolated(9));
        assert_eq!(p.generation(), 0, "nothing changed");
        // A single member has no one to be cut from.
        assert!(!Partition::new(1).isolate(0));
        assert!(!Partition::new(1).cuts().is_isolated(0));
        assert!(!Partition::new(0).cuts().any());
    }

    #[test]
    fn large_clusters_use_more_than_one_word_per_row() {
        let p = Partition::new(130);
        assert!(p.cut_link(0, 129));
        assert!(p.cut_link(64, 63));
        assert!(p.is_cut(129, 0) && p.is_cut(0, 129));
        assert!(p.is_cut(63, 64) && p.is_cut(64, 63));
        assert!(!p.is_cut(0, 1) && !p.is_cut(0, 65) && !p.is_cut(1, 129));
        let cuts = p.cuts();
        assert_eq!(cuts.cut_peers(129), vec![0]);
        assert!(p.isolate(100));
        assert!(p.cuts().is_isolated(100));
    }

    #[test]
    fn the_generation_moves_on_every_change_only() {
        let p = Partition::new(3);
        let g0 = p.generation();
        p.cut_link(0, 1);
        let g1 = p.generation();
        assert!(g1 > g0);
        p.cut_link(0, 1);
        assert_eq!(p.generation(), g1, "no change, same generation");
        p.heal_all();
        assert!(p.generation() > g1);
    }

    #[test]
    fn the_filter_checks_both_directions_of_a_call() {
        let open = NetFilter::open();
        assert!(open.passes(0, 1) && open.check_call(0, 1).is_ok());
        let p = Arc::new(Partition::new(3));
        let f = NetFilter::new(p.clone());
        assert!(f.check_call(0, 1).is_ok());
        p.set(1, 0, true);
        assert!(f.passes(0, 1) && !f.passes(1, 0));
        // The request would leave, but its answer could not come back.
        assert_eq!(f.check_call(0, 1), Err(LinkCut { from: 1, to: 0 }));
        assert_eq!(f.check_call(1, 0), Err(LinkCut { from: 1, to: 0 }));
        assert!(f.check_call(0, 2).is_ok());
        p.heal_all();
        assert!(f.check_call(0, 1).is_ok());
    }
}
