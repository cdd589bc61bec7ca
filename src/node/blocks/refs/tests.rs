use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::node::command::{Command, HashText};
use crate::node::metadata::Metadata;

/// One of 24 block digests (few, so lists share blocks and counts move
/// through 0 often).
fn digest(i: u8) -> Digest {
    let mut d = [0u8; 32];
    d[0] = i;
    d[31] = 0xAB;
    d
}

/// A random hash list: block hashes as hex text and as base64, and hashes
/// that name no block (other text, ints), or the tombstone.
fn hashlist(rng: &mut StdRng) -> Vec<Hash> {
    if rng.gen_ratio(1, 8) {
        return vec![Hash::text("0")];
    }
    (0..rng.gen_range(0..5))
        .map(|_| match rng.gen_range(0..6) {
            0 => Hash::Bytes(digest(rng.gen_range(0..24)).to_vec().into()),
            1 => Hash::text(format!("h{}", rng.gen_range(0..5))),
            2 => Hash::Int(rng.gen_range(0..5)),
            _ => Hash::Text(HashText::from_sha256(digest(rng.gen_range(0..24)))),
        })
        .collect()
}

/// What the runtime does per entry: the feed hears of the change only if
/// the version rule let it through.
fn apply(map: &mut Metadata, feed: &MapFeed, index: LogIndex, rng: &mut StdRng) {
    let filename = format!("f{}", rng.gen_range(0..10));
    let current = map.version(&filename);
    // Mostly the next version; sometimes a stale one, which is refused.
    let version = if rng.gen_ratio(1, 5) {
        current
    } else {
        current + 1
    };
    let hashlist = hashlist(rng);
    let old = map.get(&filename).cloned();
    let cmd = Command::UpdateFile {
        filename,
        version,
        hashlist: hashlist.clone(),
    };
    if map.apply(index, &cmd) {
        feed.file_changed(index, old.as_ref(), &hashlist);
    }
}

/// References to each block of a map, by a walk.
fn walked(map: &Metadata) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    for (_, f) in map.view().files() {
        for d in f.hashlist.iter().filter_map(Hash::block_sha256) {
            *counts.entry(key(&d)).or_insert(0) += 1;
        }
    }
    counts
}

/// Folds in what the feed holds the way `repair.rs` does: a rebuild from a
/// view, then only the changes past the view's index. `between(map, k)`
/// applies entries while the round runs: k = 0 after the first take and
/// before the view (in the view, and fed again), k = 1 after the view
/// (not in it). Returns whether it rebuilt, and how each change moved its
/// block.
fn consume(
    refs: &mut Option<RefCounts>,
    feed: &MapFeed,
    map: &mut Metadata,
    between: &mut dyn FnMut(&mut Metadata, u8),
) -> (bool, Vec<(Digest, Moved)>) {
    let mut p = feed.take();
    let mut moved = Vec::new();
    let rebuilt = p.rebuild || refs.is_none();
    if rebuilt {
        between(map, 0);
        let view = map.view();
        between(map, 1);
        *refs = Some(RefCounts::from_view(&view));
        p.deltas = past_view(view.applied_index, feed.take()).expect("no rebuild asked meanwhile");
    }
    let refs = refs.as_mut().unwrap();
    for d in &p.deltas {
        moved.push((d.digest, refs.apply(d)));
    }
    (rebuilt, moved)
}

fn nothing(_: &mut Metadata, _: u8) {}

#[test]
fn counts_kept_by_change_equal_a_walk_of_the_map_at_every_step() {
    for seed in 0..40 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut map = Metadata::new();
        let feed = MapFeed::new();
        let mut refs: Option<RefCounts> = None;
        let mut index = 0;
        for step in 0..400 {
            index += 1;
            apply(&mut map, &feed, index, &mut rng);
            match rng.gen_range(0..20) {
                // The map replaced (a snapshot) between two rounds.
                0 => feed.replaced(),
                1..=6 => {}
                _ => {
                    let before: HashSet<u64> = match &refs {
                        Some(r) => r.counts.keys().copied().collect(),
                        None => HashSet::new(),
                    };
                    let mut between = |map: &mut Metadata, _: u8| {
                        for _ in 0..rng.gen_range(0..4) {
                            index += 1;
                            apply(map, &feed, index, &mut rng);
                        }
                    };
                    let (rebuilt, moved) = consume(&mut refs, &feed, &mut map, &mut between);
                    let r = refs.as_ref().unwrap();
                    assert_eq!(r.counts, walked(&map), "seed {seed} step {step}");
                    let now: HashSet<u64> = r.counts.keys().copied().collect();
                    if rebuilt {
                        continue;
                    }
                    // Every block that came is reported as first referenced,
                    // every block that went as last referenced.
                    let reported = |want: Moved| -> HashSet<u64> {
                        moved
                            .iter()
                            .filter(|(_, m)| *m == want)
                            .map(|(d, _)| key(d))
                            .collect()
                    };
                    let came: HashSet<u64> = now.difference(&before).copied().collect();
                    let went: HashSet<u64> = before.difference(&now).copied().collect();
                    assert!(
                        came.is_subset(&reported(Moved::FirstReference)),
                        "seed {seed}"
                    );
                    assert!(
                        went.is_subset(&reported(Moved::LastReference)),
                        "seed {seed}"
                    );
                }
            }
        }
    }
}

#[test]
fn first_and_last_references_are_reported_and_a_shared_hash_never_drops_to_zero() {
    let feed = MapFeed::new();
    let mut refs = Some(RefCounts::default());
    // Start from an empty view.
    let mut map = Metadata::new();
    // The first round rebuilds (from an empty map).
    assert!(consume(&mut refs, &feed, &mut map, &mut nothing)
        .1
        .is_empty());
    let a = Hash::Bytes(digest(1).to_vec().into());
    let b = Hash::Text(HashText::from_sha256(digest(2)));
    feed.file_changed(1, None, &[a.clone(), a.clone()]);
    let (_, moved) = consume(&mut refs, &feed, &mut map, &mut nothing);
    assert_eq!(
        moved,
        vec![
            (digest(1), Moved::FirstReference),
            (digest(1), Moved::Other)
        ]
    );
    // [a, a] -> [a, b]: a stays referenced throughout.
    let old = FileInfo {
        version: 1,
        hashlist: vec![a.clone(), a.clone()].into(),
    };
    feed.file_changed(2, Some(&old), &[a.clone(), b.clone()]);
    let (_, moved) = consume(&mut refs, &feed, &mut map, &mut nothing);
    assert!(
        !moved.contains(&(digest(1), Moved::LastReference)),
        "{moved:?}"
    );
    assert!(
        moved.contains(&(digest(2), Moved::FirstReference)),
        "{moved:?}"
    );
    // Tombstoned: both go.
    let old = FileInfo {
        version: 2,
        hashlist: vec![a, b].into(),
    };
    feed.file_changed(3, Some(&old), &[Hash::text("0")]);
    let (_, moved) = consume(&mut refs, &feed, &mut map, &mut nothing);
    assert!(
        moved.contains(&(digest(1), Moved::LastReference)),
        "{moved:?}"
    );
    assert!(
        moved.contains(&(digest(2), Moved::LastReference)),
        "{moved:?}"
    );
    assert!(refs.unwrap().is_empty());
}

#[test]
fn the_feed_is_bounded_and_asks_for_a_rebuild_past_it() {
    let feed = MapFeed::new();
    assert!(feed.take().rebuild, "a new consumer starts with a rebuild");
    // Nothing is kept while a rebuild is pending.
    feed.replaced();
    feed.file_changed(1, None, &[Hash::Bytes(digest(1).to_vec().into())]);
    let p = feed.take();
    assert!(p.rebuild && p.deltas.is_empty());
    let many: Vec<Hash> = (0..=255u8)
        .map(|i| Hash::Bytes(digest(i).to_vec().into()))
        .collect();
    let mut index = 0;
    while index * 256 <= FEED_CAP as u64 {
        index += 1;
        feed.file_changed(index, None, &many);
    }
    let p = feed.take();
    assert!(p.rebuild, "overflowed");
    assert!(p.deltas.is_empty());
    assert_eq!(feed.take(), Pending::default());
}
