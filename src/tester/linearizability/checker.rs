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
//! would change the state ([`model::changes`]): placing one where it changes
//! nothing is never needed. Once one can never change anything again
//! ([`model::spent`]) it is set aside (lifted as a forced move, outside the
//! configuration), so a pile of failed-over writes neither multiplies the
//! configurations nor slows every scan of the list.
//!
//! The memo keys a configuration by a 128-bit Zobrist hash of the set and the
//! state, not the set itself: constant memory per configuration however long
//! the history (a bitset per entry would take gigabytes on long illegal
//! histories, which must be searched exhaustively). A wrong "already seen"
//! needs two of the configurations to collide in 128 random bits: for a
//! billion configurations, a chance below 10^-20.
//!
//! Promises: no heuristic pruning, so [`Verdict::Linearizable`] and
//! [`Verdict::Illegal`] are exact up to that hash collision;
//! [`Verdict::TimedOut`] only when the deadline passed first.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
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
/// the deepest partial linearization found: the search is deterministic, so
/// it runs once more to find at which step it was deepest, and a third time
/// to stop there and copy its stack (linear, where copying the stack at each
/// new depth would be quadratic).
pub fn check(
    ops: &[FileOp],
    init: State,
    deadline: Option<Instant>,
    explain: bool,
) -> (Verdict, SearchStats) {
    let (verdict, stats, _) = Search::new(ops).run(init, deadline, Mode::Decide);
    if !explain || !matches!(verdict, Verdict::Illegal(_)) {
        return (verdict, stats);
    }
    let (_, _, deepest) = Search::new(ops).run(init, None, Mode::FindDeepest);
    let (_, _, stuck) = Search::new(ops).run(init, None, Mode::StopAt(deepest.step));
    (Verdict::Illegal(Box::new(stuck.stuck)), stats)
}

/// What a search run is for.
#[derive(Clone, Copy)]
enum Mode {
    /// Just the verdict.
    Decide,
    /// Also the step at which the stack was deepest when a return blocked it.
    FindDeepest,
    /// Stop at this step (a blocked return) and describe the search there.
    StopAt(u64),
}

/// What [`Mode::FindDeepest`] and [`Mode::StopAt`] report.
#[derive(Default)]
struct Deepest {
    depth: usize,
    step: u64,
    stuck: Stuck,
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
    zobrist: Vec<u128>,
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
        let zobrist = (0..ops.len())
            .map(|_| u128::from(splitmix64(&mut seed)) << 64 | u128::from(splitmix64(&mut seed)))
            .collect();
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
        mode: Mode,
    ) -> (Verdict, SearchStats, Deepest) {
        let mut zob = 0u128;
        let mut memo: HashSet<(u128, State), BuildHasherDefault<FxHasher>> = HashSet::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = init;
        let mut stats = SearchStats::default();
        let mut deepest = Deepest::default();
        // Frames on the stack that are not forced: operations linearized.
        let mut linearized = 0usize;
        let mut entry = self.next[HEAD as usize];
        loop {
            stats.steps += 1;
            if stats.steps % 1024 == 0 {
                if let Some(d) = deadline {
                    if Instant::now() >= d {
                        stats.configurations = memo.len();
                        return (Verdict::TimedOut, stats, deepest);
                    }
                }
            }
            if entry == END {
                // No return is left in the list: every operation with a known
                // outcome is linearized.
                stats.configurations = memo.len();
                return (Verdict::Linearizable, stats, deepest);
            }
            let e = entry as usize;
            if self.is_call[e] {
                let op_index = self.op_of[e] as usize;
                let op = &self.ops[op_index];
                if op.ret.is_none() {
                    if model::spent(state, &op.kind) {
                        // Set aside until the search backtracks past here.
                        stack.push(Frame {
                            call: entry,
                            state,
                            forced: true,
                        });
                        self.lift(entry);
                        entry = self.next[e];
                        continue;
                    }
                    if !model::changes(state, &op.kind) {
                        entry = self.next[e];
                        continue;
                    }
                }
                if let Some(new_state) = model::step(state, &op.kind) {
                    let key = zob ^ self.zobrist[op_index];
                    if memo.insert((key, new_state)) {
                        stack.push(Frame {
                            call: entry,
                            state,
                            forced: false,
                        });
                        state = new_state;
                        zob = key;
                        linearized += 1;
                        self.lift(entry);
                        entry = self.next[HEAD as usize];
                        continue;
                    }
                }
                entry = self.next[e];
            } else {
                match mode {
                    Mode::Decide => {}
                    Mode::FindDeepest => {
                        if linearized > deepest.depth {
                            deepest.depth = linearized;
                            deepest.step = stats.steps;
                        }
                    }
                    Mode::StopAt(step) if stats.steps == step => {
                        deepest.stuck = Stuck {
                            prefix: stack
                                .iter()
                                .filter(|f| !f.forced)
                                .map(|f| self.op_of[f.call as usize] as usize)
                                .collect(),
                            state,
                            op: self.op_of[e] as usize,
                        };
                        stats.configurations = memo.len();
                        return (Verdict::Illegal(Box::default()), stats, deepest);
                    }
                    Mode::StopAt(_) => {}
                }
                // Undo the forced moves above the last choice, then the choice.
                loop {
                    let Some(frame) = stack.pop() else {
                        stats.configurations = memo.len();
                        return (Verdict::Illegal(Box::default()), stats, deepest);
                    };
                    self.unlift(frame.call);
                    state = frame.state;
                    if !frame.forced {
                        linearized -= 1;
                        stats.backtracks += 1;
                        zob ^= self.zobrist[self.op_of[frame.call as usize] as usize];
                        entry = self.next[frame.call as usize];
                        break;
                    }
                }
            }
        }
    }
}

/// One move of the search: a linearized operation, or (`forced`) an
/// operation of unknown outcome set aside for good.
struct Frame {
    call: u32,
    /// The state before the move.
    state: State,
    forced: bool,
}

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
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
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
