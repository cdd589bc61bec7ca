//! The linearizability checker for one file's history: the Wing & Gong search
//! with Lowe's memoization, in the shape of Porcupine (Athalye, 2017).
//!
//! Call and return events sit in one doubly linked list sorted by time (calls
//! before returns at equal times, so touching intervals count as concurrent).
//! The search walks the list from the front: a call may be linearized next if
//! the model accepts it in the current state; it is then lifted out of the
//! list (call and return, dancing-links style) and pushed on a stack. Reaching
//! a return whose call is still in the list means the operations tried so far
//! cannot be ordered before it: pop the last choice and try the next one. A
//! configuration (set of linearized operations, state) already explored is
//! never explored again, so the search is exponential only in the number of
//! operations truly concurrent with each other, not in the history's length.
//!
//! Operations of unknown outcome have no return event: they may be placed at
//! any point after their invocation, or never. They are tried only where they
//! would change the state ([`model::changes`]); placing one where it changes
//! nothing is never needed, which keeps a pile of failed-over writes from
//! multiplying the search space.
//!
//! Promises: [`Verdict::Linearizable`] and [`Verdict::Illegal`] are exact (no
//! heuristic pruning; the memo compares whole sets, not just hashes);
//! [`Verdict::TimedOut`] only when the deadline passed first.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

use super::history::FileOp;
use super::model::{self, State};

/// The checker's answer for one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists.
    Illegal(Box<Stuck>),
    /// The search did not finish before its deadline.
    TimedOut,
}

/// Where the deepest attempt got stuck (only filled in with `explain`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stuck {
    /// The longest sequence of operations (indexes into the checked slice)
    /// the search managed to linearize, in linearization order.
    pub prefix: Vec<usize>,
    /// The state after `prefix`.
    pub state: State,
    /// The operation whose return the search could not get past: it, or an
    /// operation that had to precede it, has no place in any linearization.
    pub op: usize,
}

/// Statistics of one search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Loop iterations.
    pub steps: u64,
    /// Distinct configurations memoized.
    pub configurations: usize,
    /// Backtracks.
    pub backtracks: u64,
}

const END: u32 = u32::MAX;
const HEAD: u32 = 0;

/// Checks `ops` from state `init`. With `explain`, an illegal verdict carries
/// the deepest partial linearization found (costs a copy of the stack each
/// time the search goes deeper than before).
pub fn check(
    ops: &[FileOp],
    init: State,
    deadline: Option<Instant>,
    explain: bool,
) -> (Verdict, SearchStats) {
    Search::new(ops).run(init, deadline, explain)
}

/// The event list: node 0 is the head sentinel, then one node per event.
struct Search<'a> {
    ops: &'a [FileOp],
    next: Vec<u32>,
    prev: Vec<u32>,
    /// The operation of each event node.
    op_of: Vec<u32>,
    /// For a call node, its return node (END for unknown outcomes); END for
    /// return nodes.
    ret_of: Vec<u32>,
    is_call: Vec<bool>,
    zobrist: Vec<u64>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [FileOp]) -> Self {
        // (time, 0 = call / 1 = return, op)
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, 0, i as u32));
            if let Some(ret) = op.ret {
                // A return can never precede its own call.
                events.push((ret.max(op.invoke), 1, i as u32));
            }
        }
        events.sort_unstable();
        let n = events.len() + 1;
        let mut next = vec![END; n];
        let mut prev = vec![HEAD; n];
        let mut op_of = vec![u32::MAX; n];
        let mut ret_of = vec![END; n];
        let mut is_call = vec![false; n];
        let mut call_node = vec![END; ops.len()];
        for (k, &(_, kind, op)) in events.iter().enumerate() {
            let node = k as u32 + 1;
            prev[node as usize] = node - 1;
            next[node as usize - 1] = node;
            op_of[node as usize] = op;
            if kind == 0 {
                is_call[node as usize] = true;
                call_node[op as usize] = node;
            } else {
                ret_of[call_node[op as usize] as usize] = node;
            }
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let zobrist = (0..ops.len()).map(|_| splitmix64(&mut seed)).collect();
        Search {
            ops,
            next,
            prev,
            op_of,
            ret_of,
            is_call,
            zobrist,
        }
    }

    fn unlink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = n;
        if n != END {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = x;
        if n != END {
            self.prev[n as usize] = x;
        }
    }

    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let ret = self.ret_of[call as usize];
        if ret != END {
            self.unlink(ret);
        }
    }

    /// Undoes [`Self::lift`]; links come back in reverse order of removal.
    fn unlift(&mut self, call: u32) {
        let ret = self.ret_of[call as usize];
        if ret != END {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn run(
        mut self,
        init: State,
        deadline: Option<Instant>,
        explain: bool,
    ) -> (Verdict, SearchStats) {
        let words = self.ops.len().div_ceil(64);
        let mut bits = vec![0u64; words];
        let mut zob = 0u64;
        let mut memo: HashSet<MemoKey, BuildHasherDefault<FxHasher>> = HashSet::default();
        let mut stack: Vec<(u32, State)> = Vec::new();
        let mut state = init;
        let mut stats = SearchStats::default();
        let mut best: Option<Stuck> = None;
        let mut entry = self.next[HEAD as usize];
        loop {
            stats.steps += 1;
            if stats.steps % 1024 == 0 {
                if let Some(d) = deadline {
                    if Instant::now() >= d {
                        stats.configurations = memo.len();
                        return (Verdict::TimedOut, stats);
                    }
                }
            }
            if entry == END {
                // No return is left in the list: every operation with a known
                // outcome is linearized.
                stats.configurations = memo.len();
                return (Verdict::Linearizable, stats);
            }
            let e = entry as usize;
            if self.is_call[e] {
                let op_index = self.op_of[e] as usize;
                let op = &self.ops[op_index];
                if op.ret.is_none() && !model::changes(state, &op.kind) {
                    entry = self.next[e];
                    continue;
                }
                if let Some(new_state) = model::step(state, &op.kind) {
                    let (w, b) = (op_index / 64, 1u64 << (op_index % 64));
                    bits[w] |= b;
                    let key = MemoKey {
                        zob: zob ^ self.zobrist[op_index],
                        state: new_state,
                        bits: bits.clone().into_boxed_slice(),
                    };
                    if memo.insert(key) {
                        stack.push((entry, state));
                        state = new_state;
                        zob ^= self.zobrist[op_index];
                        self.lift(entry);
                        entry = self.next[HEAD as usize];
                        continue;
                    }
                    bits[w] &= !b;
                }
                entry = self.next[e];
            } else {
                if explain && best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                    best = Some(Stuck {
                        prefix: stack
                            .iter()
                            .map(|&(c, _)| self.op_of[c as usize] as usize)
                            .collect(),
                        state,
                        op: self.op_of[e] as usize,
                    });
                }
                let Some((call, previous)) = stack.pop() else {
                    stats.configurations = memo.len();
                    return (Verdict::Illegal(Box::new(best.unwrap_or_default())), stats);
                };
                stats.backtracks += 1;
                let op_index = self.op_of[call as usize] as usize;
                bits[op_index / 64] &= !(1u64 << (op_index % 64));
                zob ^= self.zobrist[op_index];
                state = previous;
                self.unlift(call);
                entry = self.next[call as usize];
            }
        }
    }
}

/// A memoized configuration. Hashing uses only the Zobrist hash of the set
/// and the state; equality compares the whole set.
struct MemoKey {
    zob: u64,
    state: State,
    bits: Box<[u64]>,
}

impl Hash for MemoKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(
            self.zob
                ^ (self.state.version as u64).rotate_left(17)
                ^ u64::from(self.state.hash).rotate_left(41),
        );
    }
}

impl PartialEq for MemoKey {
    fn eq(&self, other: &Self) -> bool {
        self.zob == other.zob && self.state == other.state && self.bits == other.bits
    }
}

impl Eq for MemoKey {}

/// A one-word multiplicative hasher (the keys are already well mixed).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
