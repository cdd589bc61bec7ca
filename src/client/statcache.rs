//! The stat cache: what the last scan learnt of each local file's content,
//! keyed by what `stat` says of the file, so that a sync of unchanged files
//! reads none of them (the way git's index and Unison's archives do).
//!
//! Promises:
//! - A file's cached hashes are used only when its size, modification and
//!   change times (to the nanosecond), inode and device are all what they
//!   were when it was read, and the cache was written at the same block
//!   size. The stat is taken before the file is read, so a write during the
//!   read leaves a stat that no longer matches.
//! - A file whose times were less than [`SETTLE`] old when it was read
//!   ([`SETTLE_COARSE`] on a file system whose times have whole seconds) is
//!   not cached: a write in the same clock tick could leave every field the
//!   same ("racy git"). It is read again next time.
//! - The cache lives outside the synced folder (`--stat-cache`, by default
//!   `$XDG_CACHE_HOME/surfstore/` or `~/.cache/surfstore/`, one file per
//!   folder), so no tool that lists the folder ever sees it. It is only a
//!   cache: a file that is missing, unreadable, torn (CRC-32 over the whole
//!   file) or of another block size counts as empty, with a debug line, and
//!   the sync reads every file as it would without it. It is written to a
//!   temporary file and renamed, without fsync.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::node::command::{parse_sha256_hex, sha256_hex};

/// How old a file's times must be before it is cached.
pub const SETTLE: Duration = Duration::from_millis(100);
/// The same where times have whole seconds (FAT, old ext3, some mounts).
pub const SETTLE_COARSE: Duration = Duration::from_secs(2);

const MAGIC: &[u8; 8] = b"SURFSTAT";
const VERSION: u32 = 1;
/// Longest name an entry may carry (a longer one is a torn file).
const MAX_NAME: usize = 64 << 10;

/// What `stat` says of a file, as far as the cache compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl Stat {
    #[cfg(unix)]
    pub fn of(m: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }

    #[cfg(not(unix))]
    pub fn of(m: &std::fs::Metadata) -> Stat {
        let ns = |t: std::io::Result<SystemTime>| {
            t.ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i64)
        };
        Stat {
            size: m.len(),
            mtime_ns: ns(m.modified()),
            ctime_ns: ns(m.created()),
            ino: 0,
            dev: 0,
        }
    }

    /// Whether a file read at `read_at` with this stat may be cached: its
    /// times are older than the settle time (see the module's promises).
    pub fn settled(&self, read_at: SystemTime) -> bool {
        let coarse = self.mtime_ns % 1_000_000_000 == 0 && self.ctime_ns % 1_000_000_000 == 0;
        let settle = if coarse { SETTLE_COARSE } else { SETTLE };
        let Ok(now) = read_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = now.saturating_sub(settle).as_nanos() as i64;
        self.mtime_ns < limit && self.ctime_ns < limit
    }
}

struct Entry {
    stat: Stat,
    hashes: Vec<[u8; 32]>,
}

/// The cache of one folder at one block size.
#[derive(Default)]
pub struct StatCache {
    entries: HashMap<String, Entry>,
}

impl StatCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The hashes of `name`, if it was cached with exactly `stat`.
    pub fn lookup(&self, name: &str, stat: &Stat) -> Option<Vec<String>> {
        let e = self.entries.get(name).filter(|e| e.stat == *stat)?;
        Some(e.hashes.iter().map(sha256_hex).collect())
    }

    /// Reads the cache at `path` for block size `block_size`; anything
    /// wrong with it is an empty cache (it is only a cache).
    pub fn load(path: &Path, block_size: usize) -> StatCache {
        match std::fs::read(path) {
            Ok(bytes) => match decode(&bytes, block_size) {
                Ok(c) => c,
                Err(why) => {
                    tracing::debug!("stat cache {} not used: {why}", path.display());
                    StatCache::default()
                }
            },
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!("stat cache {} not read: {e}", path.display());
                }
                StatCache::default()
            }
        }
    }
}

/// The default cache file of the folder `base`: in `$SURFSTORE_CACHE_DIR`,
/// else `$XDG_CACHE_HOME/surfstore`, else `$HOME/.cache/surfstore`, named
/// by a hash of the folder's canonical path. `None` when none is set.
pub fn default_path(base: &Path) -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("SURFSTORE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("surfstore")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("surfstore")))?;
    let canon = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(canon.as_os_str().as_encoded_bytes()).into()
    };
    Some(dir.join(format!("stat-{}.bin", &sha256_hex(&digest)[..32])))
}

/// Writes the cache at `path`: every `(name, stat, hashes)` whose stat is
/// settled as of `read_at` and whose hashes are all SHA-256s. Creates the
/// directory; temporary file, then rename.
pub fn save<'a>(
    path: &Path,
    block_size: usize,
    read_at: SystemTime,
    files: impl Iterator<Item = (&'a str, &'a Stat, &'a [String])>,
) -> std::io::Result<usize> {
    let mut body = Vec::new();
    let mut count = 0u64;
    for (name, stat, hashes) in files {
        if !stat.settled(read_at) || name.len() > MAX_NAME {
            continue;
        }
        let Some(digests) = hashes
            .iter()
            .map(|h| parse_sha256_hex(h))
            .collect::<Option<Vec<[u8; 32]>>>()
        else {
            continue;
        };
        body.extend_from_slice(&(name.len() as u32).to_le_bytes());
        body.extend_from_slice(name.as_bytes());
        for v in [
            stat.size,
            stat.mtime_ns as u64,
            stat.ctime_ns as u64,
            stat.ino,
            stat.dev,
        ] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for d in &digests {
            body.extend_from_slice(d);
        }
        count += 1;
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(block_size as u64).to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&out)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| count as usize)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| format!("ends inside an entry at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

fn decode(bytes: &[u8], block_size: usize) -> Result<StatCache, String> {
    if bytes.len() < MAGIC.len() + 4 + 8 + 8 + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a stat cache".into());
    }
    let (data, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("CRC-32 does not match (torn or corrupt)".into());
    }
    let mut r = Reader {
        bytes: data,
        at: MAGIC.len(),
    };
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!("format {version}, not {VERSION}"));
    }
    let bs = r.u64()?;
    if bs != block_size as u64 {
        return Err(format!("written at block size {bs}, not {block_size}"));
    }
    let count = r.u64()?;
    let mut entries = HashMap::new();
    for _ in 0..count {
        let n = r.u32()? as usize;
        if n > MAX_NAME {
            return Err(format!("a name of {n} bytes"));
        }
        let name = std::str::from_utf8(r.take(n)?)
            .map_err(|_| "a name that is not UTF-8".to_owned())?
            .to_owned();
        let stat = Stat {
            size: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
            ino: r.u64()?,
            dev: r.u64()?,
        };
        let k = r.u32()? as usize;
        let raw = r.take(k.checked_mul(32).ok_or("too many hashes")?)?;
        let hashes = raw
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        entries.insert(name, Entry { stat, hashes });
    }
    if r.at != data.len() {
        return Err(format!("{} bytes past the last entry", data.len() - r.at));
    }
    Ok(StatCache { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "surfstore-statcache-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn stat(size: u64, mtime_ns: i64) -> Stat {
        Stat {
            size,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
            dev: 1,
        }
    }

    fn long_ago() -> i64 {
        1_000_000_000 * 1_000_000_000 + 123
    }

    #[test]
    fn a_saved_entry_is_found_only_with_the_same_stat_and_block_size() {
        let d = tmpdir("roundtrip");
        let p = d.join("c.bin");
        let h = vec![sha256_hex(&[1; 32]), sha256_hex(&[2; 32])];
        let s = stat(10, long_ago());
        let n = save(
            &p,
            4096,
            SystemTime::now(),
            [("a b/ü.txt", &s, &h[..])].into_iter(),
        )
        .unwrap();
        assert_eq!(n, 1);
        let c = StatCache::load(&p, 4096);
        assert_eq!(c.lookup("a b/ü.txt", &s), Some(h.clone()));
        for other in [
            Stat { size: 11, ..s },
            Stat {
                mtime_ns: s.mtime_ns + 1,
                ..s
            },
            Stat {
                ctime_ns: s.ctime_ns + 1,
                ..s
            },
            Stat { ino: 8, ..s },
            Stat { dev: 2, ..s },
        ] {
            assert_eq!(c.lookup("a b/ü.txt", &other), None, "{other:?}");
        }
        assert_eq!(c.lookup("other", &s), None);
        assert!(StatCache::load(&p, 8192).is_empty());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn files_too_fresh_and_foreign_hash_lists_are_not_cached() {
        let d = tmpdir("fresh");
        let p = d.join("c.bin");
        let now = SystemTime::now();
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let fresh = stat(1, now_ns - 10_000_000);
        let coarse = stat(1, (now_ns / 1_000_000_000 - 1) * 1_000_000_000);
        let old = stat(1, now_ns - 1_000_000_000 + 1);
        let h = vec![sha256_hex(&[3; 32])];
        let junk = ["h1".to_owned()];
        let files = [
            ("fresh", &fresh, &h[..]),
            ("coarse", &coarse, &h[..]),
            ("old", &old, &h[..]),
            ("junk", &old, &junk[..]),
        ];
        assert_eq!(save(&p, 1, now, files.into_iter()).unwrap(), 1);
        let c = StatCache::load(&p, 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.lookup("old", &old), Some(h));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_torn_or_flipped_cache_is_an_empty_one() {
        let d = tmpdir("torn");
        let p = d.join("c.bin");
        let h = [sha256_hex(&[4; 32])];
        let s = stat(5, long_ago());
        let files = [("x", &s, &h[..]), ("y", &s, &h[..])];
        save(&p, 64, SystemTime::now(), files.into_iter()).unwrap();
        let good = std::fs::read(&p).unwrap();
        assert_eq!(StatCache::load(&p, 64).len(), 2);
        for cut in 0..good.len() {
            std::fs::write(&p, &good[..cut]).unwrap();
            assert!(StatCache::load(&p, 64).is_empty(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            std::fs::write(&p, &bad).unwrap();
            assert!(StatCache::load(&p, 64).is_empty(), "flipped byte {i}");
        }
        assert!(StatCache::load(&d.join("missing.bin"), 64).is_empty());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_default_path_follows_the_environment_and_the_folder() {
        let d = tmpdir("default");
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let pa = default_path(&a);
        let pb = default_path(&b);
        if std::env::var_os("SURFSTORE_CACHE_DIR").is_some()
            || std::env::var_os("XDG_CACHE_HOME").is_some()
            || std::env::var_os("HOME").is_some()
        {
            assert!(pa.is_some() && pa != pb, "{pa:?} {pb:?}");
            assert_eq!(pa, default_path(&a.join(".")));
        }
        std::fs::remove_dir_all(d).unwrap();
    }
}
