//! The linearizability checker on hand-made histories: linearizable ones it
//! must accept and non-linearizable ones (stale read, lost write, two winners
//! at one version, effects before invocation) it must reject; operations of
//! unknown outcome that did or did not take effect; and speed on long
//! generated histories.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use surfstore::tester::linearizability::checker::{check, Verdict};
use surfstore::tester::linearizability::history::{Call, History, Op, Outcome};
use surfstore::tester::linearizability::model::State;
use surfstore::tester::linearizability::{check_files, FileVerdict};
use surfstore::xmlrpc::Value;

const F: &str = "f";

/// A tiny builder of whole-cluster histories over the file "f".
#[derive(Default)]
struct H {
    ops: Vec<Op>,
}

impl H {
    /// `updatefile("f", version, [hash])` over [invoke, ret]; `ok` None: unknown.
    fn w(mut self, invoke: u64, ret: u64, version: i64, hash: &str, ok: Option<bool>) -> Self {
        self.ops.push(Op {
            client: self.ops.len(),
            node: 0,
            call: Call::Update {
                file: F.into(),
                version,
                hashlist: vec![Value::String(hash.into())],
            },
            invoke,
            ret: ok.map(|_| ret),
            outcome: match ok {
                Some(b) => Outcome::Updated(b),
                None => Outcome::Unknown("test".into()),
            },
        });
        self
    }

    /// A `getfileinfomap()` that saw "f" at `version` with `[hash]` (0: absent).
    fn r(mut self, invoke: u64, ret: u64, version: i64, hash: &str) -> Self {
        let mut map = BTreeMap::new();
        if version > 0 {
            map.insert(F.to_owned(), (version, vec![Value::String(hash.into())]));
        }
        self.ops.push(Op {
            client: self.ops.len(),
            node: 0,
            call: Call::ReadMap,
            invoke,
            ret: Some(ret),
            outcome: Outcome::Map(map),
        });
        self
    }

    fn linearizable(self) -> bool {
        let history = History { ops: self.ops };
        let report = check_files(&history, &[F.to_owned()], Duration::from_secs(10));
        match &report.files[0].verdict {
            FileVerdict::Linearizable => true,
            FileVerdict::Illegal(why) => {
                println!("{why}");
                false
            }
            FileVerdict::TimedOut => panic!("timed out"),
        }
    }
}

#[test]
fn a_sequential_history_is_linearizable() {
    assert!(H::default()
        .r(0, 1, 0, "")
        .w(2, 3, 1, "a", Some(true))
        .r(4, 5, 1, "a")
        .w(6, 7, 1, "x", Some(false))
        .w(8, 9, 3, "x", Some(false))
        .w(10, 11, 2, "b", Some(true))
        .r(12, 13, 2, "b")
        .linearizable());
}

#[test]
fn concurrent_read_may_see_either_side_of_a_write() {
    assert!(H::default()
        .w(0, 10, 1, "a", Some(true))
        .r(1, 2, 0, "")
        .r(3, 4, 1, "a")
        .linearizable());
    // But once it has seen the new value, a later read may not go back.
    assert!(!H::default()
        .w(0, 10, 1, "a", Some(true))
        .r(1, 2, 1, "a")
        .r(3, 4, 0, "")
        .linearizable());
}

#[test]
fn a_stale_read_is_caught() {
    assert!(!H::default()
        .w(0, 1, 1, "a", Some(true))
        .w(2, 3, 2, "b", Some(true))
        .r(4, 5, 1, "a")
        .linearizable());
}

#[test]
fn a_lost_write_is_caught() {
    assert!(!H::default()
        .w(0, 1, 1, "a", Some(true))
        .r(2, 3, 0, "")
        .linearizable());
    // A later write at the next version fails: the first was forgotten.
    assert!(!H::default()
        .w(0, 1, 1, "a", Some(true))
        .w(2, 3, 2, "b", Some(false))
        .linearizable());
}

#[test]
fn two_winners_at_one_version_are_caught() {
    assert!(!H::default()
        .w(0, 10, 1, "a", Some(true))
        .w(0, 10, 1, "b", Some(true))
        .linearizable());
    // One winner and one loser is fine, whichever order.
    assert!(H::default()
        .w(0, 10, 1, "a", Some(false))
        .w(0, 10, 1, "b", Some(true))
        .r(11, 12, 1, "b")
        .linearizable());
}

#[test]
fn a_refusal_must_be_justified() {
    // Version 2 after 1 must succeed; refusing it is a lie.
    assert!(!H::default()
        .w(0, 1, 1, "a", Some(true))
        .w(2, 3, 2, "b", Some(false))
        .r(4, 5, 1, "a")
        .linearizable());
}

#[test]
fn an_unknown_write_that_took_effect_later() {
    // Invoked at 0, outcome unknown; absent at 5, present at 10.
    assert!(H::default()
        .w(0, 0, 1, "a", None)
        .r(5, 6, 0, "")
        .r(10, 11, 1, "a")
        .linearizable());
    // Only it can explain a later version-2 success.
    assert!(H::default()
        .w(0, 0, 1, "a", None)
        .r(5, 6, 0, "")
        .w(20, 21, 2, "b", Some(true))
        .linearizable());
}

#[test]
fn an_unknown_write_that_never_took_effect() {
    assert!(H::default()
        .w(0, 0, 1, "a", None)
        .r(5, 6, 0, "")
        .w(7, 8, 1, "b", Some(true))
        .r(9, 10, 1, "b")
        .linearizable());
}

#[test]
fn nothing_takes_effect_before_it_is_invoked() {
    assert!(!H::default()
        .r(0, 1, 1, "a")
        .w(5, 0, 1, "a", None)
        .linearizable());
    assert!(!H::default()
        .r(0, 1, 1, "a")
        .w(5, 6, 1, "a", Some(true))
        .linearizable());
}

#[test]
fn an_unknown_write_cannot_undo_a_later_state() {
    // The unknown write of version 1 may happen, but not after version 2.
    assert!(!H::default()
        .w(0, 0, 1, "a", None)
        .w(1, 2, 1, "b", Some(true))
        .w(3, 4, 2, "c", Some(true))
        .r(5, 6, 1, "a")
        .linearizable());
}

#[test]
fn a_set_aside_unknown_write_comes_back_when_the_search_backtracks() {
    // Linearizing x first sets u aside (version 1 is taken); the read of u
    // then fails, and only backtracking past u's set-aside can try u first.
    assert!(!H::default()
        .w(0, 10, 1, "x", Some(true))
        .w(1, 0, 1, "u", None)
        .r(11, 12, 1, "u")
        .linearizable());
    assert!(H::default()
        .w(0, 10, 1, "x", Some(true))
        .w(1, 0, 1, "u", None)
        .r(11, 12, 1, "x")
        .linearizable());
    // u at version 2 can follow x.
    assert!(H::default()
        .w(0, 10, 1, "x", Some(true))
        .w(1, 0, 2, "u", None)
        .r(11, 12, 2, "u")
        .linearizable());
}

#[test]
fn the_explanation_names_the_stale_read() {
    let history = History {
        ops: H::default()
            .w(0, 1, 1, "a", Some(true))
            .w(2, 3, 2, "b", Some(true))
            .r(4, 5, 1, "a")
            .ops,
    };
    let report = check_files(&history, &[F.to_owned()], Duration::from_secs(10));
    let FileVerdict::Illegal(why) = &report.files[0].verdict else {
        panic!("expected illegal");
    };
    let text = why.to_string();
    assert!(why.verified, "{text}");
    assert!(why.stuck.contains("getfileinfomap()"), "{text}");
    assert!(text.contains("'f': [1, ['a']]"), "{text}");
}

/// A generated history of `clients` clients hammering one register through a
/// correct linearizable object: each operation takes effect at a random point
/// inside its interval; `unknown_every` makes some writes' outcome unknown.
fn generated(n: usize, clients: usize, seed: u64, unknown_every: usize) -> Vec<Op> {
    let mut rng = seed;
    let mut next = move |m: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % m
    };
    // Each client: the time it is free again.
    let mut free = vec![0u64; clients];
    // (linearization point, client, op index) to apply in point order.
    let mut planned: Vec<(u64, usize, u64, u64)> = Vec::new(); // (point, client, invoke, ret)
    for i in 0..n {
        let c = i % clients;
        let invoke = free[c] + next(20);
        let ret = invoke + 1 + next(60);
        let point = invoke + next(ret - invoke + 1);
        free[c] = ret + 1;
        planned.push((point, c, invoke, ret));
    }
    planned.sort();
    let mut version = 0i64;
    let mut hash = String::new();
    let mut ops = Vec::new();
    for (k, &(_, c, invoke, ret)) in planned.iter().enumerate() {
        let kind = next(3);
        if kind == 0 {
            let mut map = BTreeMap::new();
            if version > 0 {
                map.insert(F.to_owned(), (version, vec![Value::String(hash.clone())]));
            }
            ops.push(Op {
                client: c,
                node: 0,
                call: Call::ReadMap,
                invoke,
                ret: Some(ret),
                outcome: Outcome::Map(map),
            });
        } else {
            // Mostly the right version, sometimes stale.
            let v = if next(4) == 0 { version } else { version + 1 };
            let h = format!("h{k}");
            let ok = v == version + 1;
            if ok {
                version = v;
                hash = h.clone();
            }
            let unknown = unknown_every > 0 && k % unknown_every == 0;
            ops.push(Op {
                client: c,
                node: 0,
                call: Call::Update {
                    file: F.into(),
                    version: v,
                    hashlist: vec![Value::String(h)],
                },
                invoke,
                ret: if unknown { None } else { Some(ret) },
                outcome: if unknown {
                    Outcome::Unknown("generated".into())
                } else {
                    Outcome::Updated(ok)
                },
            });
        }
    }
    ops
}

#[test]
fn long_generated_histories_are_checked_quickly() {
    for (seed, unknown_every) in [(1u64, 0usize), (2, 97), (3, 13)] {
        let ops = generated(5000, 6, seed, unknown_every);
        let history = History { ops };
        let started = Instant::now();
        let report = check_files(&history, &[F.to_owned()], Duration::from_secs(20));
        let took = started.elapsed();
        let f = &report.files[0];
        println!(
            "seed {seed}: {} ops ({} unknown) checked in {took:?} ({:.0} ops/s, {} configurations)",
            f.ops,
            f.unknown,
            f.ops as f64 / took.as_secs_f64(),
            f.stats.configurations
        );
        assert!(
            matches!(f.verdict, FileVerdict::Linearizable),
            "seed {seed}: {:?}",
            f.verdict
        );
        assert!(took < Duration::from_secs(10), "too slow: {took:?}");
    }
}

#[test]
fn one_corrupted_read_in_a_long_history_is_found() {
    let mut ops = generated(4000, 6, 7, 0);
    // Make a read late in the history claim the file is absent.
    let victim = ops
        .iter()
        .rposition(|o| matches!(&o.outcome, Outcome::Map(m) if !m.is_empty()))
        .expect("a read of a present file");
    ops[victim].outcome = Outcome::Map(BTreeMap::new());
    let history = History { ops };
    let report = check_files(&history, &[F.to_owned()], Duration::from_secs(20));
    match &report.files[0].verdict {
        FileVerdict::Illegal(why) => {
            println!("{why}");
            assert!(why.lines.len() < 40, "the window should be small:\n{why}");
        }
        other => panic!("expected illegal, got {other:?}"),
    }
}

#[test]
fn a_long_illegal_history_is_explained_quickly() {
    let mut ops = generated(60_000, 8, 11, 50);
    let victim = ops
        .iter()
        .rposition(|o| matches!(&o.outcome, Outcome::Map(m) if !m.is_empty()))
        .expect("a read of a present file");
    ops[victim].outcome = Outcome::Map(BTreeMap::new());
    let history = History { ops };
    let started = Instant::now();
    let report = check_files(&history, &[F.to_owned()], Duration::from_secs(20));
    let took = started.elapsed();
    println!("60000 ops, illegal, explained in {took:?}");
    match &report.files[0].verdict {
        FileVerdict::Illegal(why) => {
            println!("{why}");
            assert!(why.verified && why.lines.len() < 40, "{why}");
        }
        other => panic!("expected illegal, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "too slow: {took:?}");
}

#[test]
fn the_raw_checker_starts_from_a_given_state() {
    let history = History {
        ops: H::default().r(0, 1, 2, "b").ops,
    };
    let fh = &history.per_file(&[F.to_owned()])[0];
    let b = State {
        version: 2,
        hash: 1,
    };
    assert_eq!(check(&fh.ops, b, None, false).0, Verdict::Linearizable);
    assert!(matches!(
        check(&fh.ops, State::ABSENT, None, false).0,
        Verdict::Illegal(_)
    ));
}
