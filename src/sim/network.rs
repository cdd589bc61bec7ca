//! The simulated network: messages in flight with per-message delays (so they
//! reorder), seeded loss and duplication, and a matrix of cut links for
//! partitions (cut links and crashed endpoints drop messages both when sent and
//! when due). Nothing is reported to the sender: loss is silent.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::node::raft::{Message, NodeId};

#[derive(Debug)]
struct InFlight {
    due: u64,
    msg: Message,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

#[derive(Debug)]
pub struct Network {
    in_flight: Vec<InFlight>,
    /// `cut[a][b]`: messages from a to b are dropped.
    cut: Vec<Vec<bool>>,
    pub loss: f64,
    pub duplicate: f64,
    pub max_delay: u64,
    pub stats: NetStats,
}

impl Network {
    pub fn new(nodes: usize, loss: f64, duplicate: f64, max_delay: u64) -> Network {
        Network {
            in_flight: Vec::new(),
            cut: vec![vec![false; nodes]; nodes],
            loss,
            duplicate,
            max_delay: max_delay.max(1),
            stats: NetStats::default(),
        }
    }

    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut[from as usize][to as usize]
    }

    pub fn set_cut(&mut self, from: NodeId, to: NodeId, cut: bool) {
        self.cut[from as usize][to as usize] = cut;
    }

    /// Cut every link between different groups (`group[n]` is node n's side).
    pub fn partition(&mut self, group: &[usize]) {
        for a in 0..group.len() {
            for b in 0..group.len() {
                self.cut[a][b] = group[a] != group[b];
            }
        }
    }

    pub fn heal(&mut self) {
        for row in &mut self.cut {
            row.iter_mut().for_each(|c| *c = false);
        }
    }

    pub fn is_partitioned(&self) -> bool {
        self.cut.iter().flatten().any(|&c| c)
    }

    /// Put a message on the wire at tick `now`. Returns how many copies will
    /// arrive (0, 1 or 2) for the trace.
    pub fn send(
        &mut self,
        msg: Message,
        now: u64,
        endpoints_up: bool,
        rng: &mut SmallRng,
    ) -> usize {
        self.stats.sent += 1;
        if !endpoints_up || !self.link_up(msg.from, msg.to) || rng.gen_bool(self.loss) {
            self.stats.dropped += 1;
            return 0;
        }
        let copies = if rng.gen_bool(self.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 1..copies {
            let due = now + rng.gen_range(1..=self.max_delay);
            self.in_flight.push(InFlight {
                due,
                msg: msg.clone(),
            });
        }
        let due = now + rng.gen_range(1..=self.max_delay);
        self.in_flight.push(InFlight { due, msg });
        copies
    }

    /// Remove and return the messages due at `now`, in random order.
    pub fn take_due(&mut self, now: u64, rng: &mut SmallRng) -> Vec<Message> {
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.in_flight.len() {
            if self.in_flight[k].due <= now {
                due.push(self.in_flight.swap_remove(k).msg);
            } else {
                k += 1;
            }
        }
        // swap_remove scrambles the order deterministically; shuffle for real reordering.
        due.shuffle(rng);
        due
    }
}
