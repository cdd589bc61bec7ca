//! What one run measured: a latency histogram per kind of operation and the
//! failed attempts counted by kind.
//!
//! Promises:
//! - Memory is fixed however long the run: a [`Histogram`] is a log-linear
//!   array of [`BUCKETS`] counters (every value below 128 ns exact, above it
//!   within 1/128 ≈ 0.8 %), plus the exact minimum and maximum.
//! - Percentiles are monotone and bounded by the maximum:
//!   `p50 <= p90 <= p99 <= p99.9 <= max` for any recorded data.

use std::collections::BTreeMap;
use std::time::Duration;

/// Sub-buckets per power of two (the histogram's precision, 1/128).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^48 ns (about 78 hours) are kept apart; longer ones share
/// the last bucket (and still set the exact maximum).
const MAX_EXP: u32 = 48;
/// Number of counters in a [`Histogram`].
pub const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

/// A log-linear latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    /// Number of recorded values (the sum of `counts`).
    total: u64,
    /// Exact smallest and largest recorded values (0 when empty).
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min_ns: 0,
            max_ns: 0,
            sum_ns: 0,
        }
    }
}

/// The bucket of `v`: values below `SUB` map to themselves; above, the top
/// `SUB_BITS + 1` significant bits pick the bucket.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXP);
    let shift = exp - SUB_BITS;
    let mantissa = ((v >> shift) - SUB).min(SUB - 1);
    ((shift as u64 + 1) * SUB + mantissa) as usize
}

/// The largest value that falls into bucket `b`.
fn bucket_high(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let mantissa = b % SUB + SUB;
    ((mantissa + 1) << shift) - 1
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let v = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(v)] += 1;
        if self.total == 0 || v < self.min_ns {
            self.min_ns = v;
        }
        self.max_ns = self.max_ns.max(v);
        self.total += 1;
        self.sum_ns += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.min_ns = if self.total == 0 {
            other.min_ns
        } else {
            self.min_ns.min(other.min_ns)
        };
        self.max_ns = self.max_ns.max(other.max_ns);
        self.total += other.total;
        self.sum_ns += other.sum_ns;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    pub fn min(&self) -> Duration {
        Duration::from_nanos(self.min_ns)
    }

    pub fn mean(&self) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos((self.sum_ns / u128::from(self.total)) as u64)
    }

    /// The value at quantile `q` (0..=1): the upper edge of the bucket that
    /// holds the ceil(q·n)-th smallest value, never above the exact maximum.
    /// Zero when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(bucket_high(b).clamp(self.min_ns, self.max_ns));
            }
        }
        self.max()
    }
}

/// The kinds of operation a workload issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    /// `updatefile` / etcd `put`.
    Write,
    /// `getfileinfomap` / etcd `range`.
    Read,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Write => "write",
            OpKind::Read => "read",
        }
    }
}

/// What one simulated client (or the whole run, once merged) measured
/// inside the measured window.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Latency of every committed operation, by kind.
    pub latency: BTreeMap<OpKind, Histogram>,
    /// Failed attempts by kind of failure (`fault 2 NotLeader`, `timeout`, …).
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn committed(&mut self, kind: OpKind, d: Duration) {
        self.latency.entry(kind).or_default().record(d);
    }

    pub fn failed(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Tally) {
        for (k, h) in &other.latency {
            self.latency.entry(*k).or_default().merge(h);
        }
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
    }

    /// Every kind's latencies in one histogram.
    pub fn all(&self) -> Histogram {
        let mut h = Histogram::default();
        for one in self.latency.values() {
            h.merge(one);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_their_values() {
        let mut prev_high = None;
        for b in 0..BUCKETS - 1 {
            let high = bucket_high(b);
            if let Some(p) = prev_high {
                assert!(high > p, "bucket {b} high {high} after {p}");
                assert_eq!(bucket(p + 1), b, "first value of bucket {b}");
            }
            assert_eq!(bucket(high), b, "last value of bucket {b}");
            prev_high = Some(high);
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn precision_is_within_one_part_in_128() {
        for v in [127u64, 128, 1000, 123_456, 9_876_543_210, 1 << 47] {
            let high = bucket_high(bucket(v));
            assert!(high >= v);
            assert!((high - v) as f64 <= v as f64 / 128.0, "{v} -> {high}");
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let close = |d: Duration, us: f64| {
            let got = d.as_secs_f64() * 1e6;
            assert!((got - us).abs() <= us / 100.0, "{got} vs {us}");
        };
        close(h.quantile(0.5), 500.0);
        close(h.quantile(0.99), 990.0);
        close(h.quantile(0.999), 999.0);
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert_eq!(h.min(), Duration::from_micros(1));
        assert_eq!(h.quantile(1.0), h.max());
        assert_eq!(h.count(), 1000);
        close(h.mean(), 500.5);
    }

    #[test]
    fn quantiles_never_exceed_the_max_and_are_ordered() {
        let mut h = Histogram::default();
        h.record(Duration::from_nanos(1_000_001));
        let qs: Vec<Duration> = [0.5, 0.9, 0.99, 0.999, 1.0]
            .iter()
            .map(|&q| h.quantile(q))
            .collect();
        assert!(qs.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(qs[0], h.max());
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.committed(OpKind::Write, Duration::from_micros(10));
        b.committed(OpKind::Write, Duration::from_micros(30));
        b.committed(OpKind::Read, Duration::from_micros(5));
        b.failed("timeout");
        a.failed("timeout");
        a.merge(&b);
        assert_eq!(a.latency[&OpKind::Write].count(), 2);
        assert_eq!(a.latency[&OpKind::Write].max(), Duration::from_micros(30));
        assert_eq!(a.all().count(), 3);
        assert_eq!(a.all().min(), Duration::from_micros(5));
        assert_eq!(a.errors["timeout"], 2);
    }
}
