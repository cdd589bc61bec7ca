//! Whether a local file is the content a hash list describes, whatever block
//! size that list was cut at, so two clients with different BLOCKSIZEs agree
//! that unchanged content is unchanged (issue 14: no ping-pong).
//!
//! A SurfStore hash list cuts a file into blocks of one size B, the last
//! block shorter or equal. A list of k blocks for n bytes therefore has
//! `(k-1)·B < n ≤ k·B`, which bounds B to a range. The remote B is found by
//! hashing prefixes of the local data: a B whose prefix hashes to the list's
//! first hash is checked by cutting the whole file at B and comparing every
//! hash. Nothing is fetched; a yes is as sound as SHA-256, and a no only
//! means the content is treated as changed (what the client did before).

use sha2::{Digest, Sha256};

use super::index::is_tombstone;
use crate::node::blocks::{hash_hex, is_hash};
use crate::node::command::parse_sha256_hex;

/// Candidate block sizes swept byte by byte at most (each costs one SHA-256
/// finalisation, about 0.3 µs); wider ranges only arise for lists of two or
/// three blocks far above the server's 4 MiB block limit, and are sampled.
const MAX_SWEEP: usize = 1 << 22;

/// The hashes of `data` cut into blocks of `block_size` bytes.
pub fn block_hashes(data: &[u8], block_size: usize) -> Vec<String> {
    data.chunks(block_size.max(1)).map(hash_hex).collect()
}

/// Whether every entry of `list` names a block (a SHA-256 in hex), or the
/// list is the tombstone `["0"]`; other lists were written by other tools
/// (the tester's `["h1"]`, ints) and describe no content this client can
/// fetch.
pub fn is_block_list(list: &[String]) -> bool {
    is_tombstone(list) || list.iter().all(|h| is_hash(h))
}

/// The block size `list` was cut at, if `data` is exactly the content it
/// describes (`None`: it is not, or the list names no blocks). For a list
/// of 0 or 1 blocks any size at least the data's length fits; `data.len()`
/// (at least 1) is returned.
pub fn cut_size(data: &[u8], list: &[String]) -> Option<usize> {
    if is_tombstone(list) || !list.iter().all(|h| is_hash(h)) {
        return None;
    }
    let n = data.len();
    let k = list.len();
    match k {
        0 => return (n == 0).then_some(1),
        1 => return (hash_hex(data) == list[0]).then_some(n.max(1)),
        _ => {}
    }
    // (k-1)·B < n ≤ k·B
    let lo = n.div_ceil(k);
    let hi = n.checked_sub(1)? / (k - 1);
    if lo == 0 || lo > hi {
        return None;
    }
    let first = parse_sha256_hex(&list[0])?;
    // Only one prefix length can hash to the first block's hash (SHA-256 has
    // no known collisions), so the first size whose prefix matches decides.
    let b = first_block_size(data, &first, lo, hi)?;
    (block_hashes(data, b) == list).then_some(b)
}

/// The size b in `lo..=hi` whose prefix `data[..b]` hashes to `first`.
fn first_block_size(data: &[u8], first: &[u8; 32], lo: usize, hi: usize) -> Option<usize> {
    // The usual sizes first: each costs one hash of a prefix.
    let mut likely: Vec<usize> = (0..usize::BITS)
        .map(|p| 1usize << p)
        .filter(|b| (lo..=hi).contains(b))
        .collect();
    for unit in [1000, 1024] {
        let b = hi / unit * unit;
        if b >= lo && !likely.contains(&b) {
            likely.push(b);
        }
    }
    if let Some(b) = likely
        .into_iter()
        .find(|&b| Sha256::digest(&data[..b]).as_slice() == first.as_slice())
    {
        return Some(b);
    }
    // Then every size in the range, hashing the growing prefix once.
    let step = (hi - lo + 1).div_ceil(MAX_SWEEP).max(1);
    let mut hasher = Sha256::new();
    hasher.update(&data[..lo]);
    let mut b = lo;
    while b <= hi {
        if hasher.clone().finalize().as_slice() == first.as_slice() {
            return Some(b);
        }
        let next = b + step;
        hasher.update(&data[b..next.min(data.len())]);
        b = next;
    }
    None
}

/// Whether `data` is the content `list` describes.
pub fn same_content(data: &[u8], list: &[String]) -> bool {
    cut_size(data, list).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn data(n: usize) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        let mut v = vec![0u8; n];
        rng.fill(&mut v[..]);
        v
    }

    #[test]
    fn any_block_size_is_recognised() {
        for n in [0, 1, 5, 4096, 4097, 10_000, 100_003] {
            let d = data(n);
            for b in [1, 3, 7, 1000, 1024, 4096, 4099, 65536, 1 << 22] {
                let list = block_hashes(&d, b);
                let got = cut_size(&d, &list);
                assert!(got.is_some(), "n={n} b={b}");
                assert_eq!(block_hashes(&d, got.unwrap()), list, "n={n} b={b}");
            }
        }
    }

    #[test]
    fn other_content_is_not_the_same() {
        let d = data(10_000);
        let mut e = d.clone();
        e[9_999] ^= 1;
        for b in [1000, 4096, 10_000] {
            assert!(!same_content(&e, &block_hashes(&d, b)), "b={b}");
            assert!(!same_content(&d[..9_999], &block_hashes(&d, b)), "b={b}");
        }
        assert!(!same_content(&d, &["0".to_owned()]));
        assert!(!same_content(&d, &["h1".to_owned()]));
        assert!(!same_content(b"", &[hash_hex(b"x")]));
        assert!(same_content(b"", &[]));
        assert!(!same_content(b"x", &[]));
    }

    #[test]
    fn lists_from_other_tools_are_not_block_lists() {
        assert!(is_block_list(&["0".to_owned()]));
        assert!(is_block_list(&[]));
        assert!(is_block_list(&[hash_hex(b"a"), hash_hex(b"b")]));
        assert!(!is_block_list(&["h1".to_owned()]));
        assert!(!is_block_list(&["5".to_owned(), "6".to_owned()]));
        assert!(!is_block_list(&["0".to_owned(), hash_hex(b"a")]));
    }
}
