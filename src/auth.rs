//! Proof of a shared secret on each HTTP request: the optional cluster secret
//! (`--secret-file`) and client secret (`--client-secret-file`).
//!
//! The scheme: every request carries
//!
//! ```text
//! X-SurfStore-Auth: v1 t=<unix seconds> n=<16 hex digits> mac=<64 hex digits>
//! ```
//!
//! where `n` is a random nonce (so two identical calls in one second are
//! two proofs) and `mac` is HMAC-SHA256, keyed with the secret file's
//! bytes, over `surfstore-auth-v1\n<t>\n<n>\n` followed by the whole
//! request body (which names the method). So the secret itself never travels: someone who
//! watches the wire learns neither the secret nor how to sign another
//! body, and a captured request goes stale [`WINDOW`] after it was made.
//! Within the window a capture could be sent again: for peer messages that
//! is harmless (Raft is built for a network that duplicates messages, and
//! `storeBlock`/`readBlock` are idempotent), and admin calls (`crash`,
//! `restore`, `transferLeader`) are checked against a bounded cache of the
//! MACs already used ([`Verifier::check_fresh`]). The MAC is compared in
//! constant time (`hmac`'s `verify_slice`). The body stays in plain text;
//! TLS hides it.
//!
//! Promises:
//! - [`Verifier::verify`] never fails: it says what a request proved
//!   ([`Proof`]) and, when it proved nothing, why, for the fault.
//! - Memory is bounded: the replay cache holds at most
//!   [`REPLAY_CACHE_ENTRIES`] MACs, each dropped when its window ends.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use hyper::header::{HeaderName, HeaderValue};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The request header that carries the proof.
pub const HEADER: HeaderName = HeaderName::from_static("x-surfstore-auth");

/// How far a request's timestamp may be from the receiver's clock, either
/// way (clock skew plus time in flight).
pub const WINDOW: Duration = Duration::from_secs(60);

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Largest secret file read.
pub const MAX_SECRET_BYTES: usize = 4096;

/// Admin calls remembered against replay; past this many inside one window
/// further admin calls are refused until some expire.
pub const REPLAY_CACHE_ENTRIES: usize = 4096;

const CONTEXT: &[u8] = b"surfstore-auth-v1\n";

/// The secret flags every command that talks to or runs a node takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecretArgs {
    /// The cluster secret: peer calls (appendEntries, requestVote,
    /// installSnapshot, storeBlock, readBlock) and admin calls (crash,
    /// restore) must prove it (an HMAC of each request, see the README).
    /// A client or tester given it signs every call with it.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// The client secret: with it, client calls must prove it too (or the
    /// cluster secret). A client or tester given only this signs with it.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
}

/// The keys a [`SecretArgs`] names, read and checked.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub cluster: Option<std::sync::Arc<Key>>,
    pub client: Option<std::sync::Arc<Key>>,
}

impl Keys {
    /// The key a caller signs its calls with: the cluster secret when it
    /// has it (it proves everything), else the client secret.
    pub fn signing(&self) -> Option<std::sync::Arc<Key>> {
        self.cluster.clone().or_else(|| self.client.clone())
    }
}

impl SecretArgs {
    /// Reads the secret files given.
    pub fn load(&self) -> Result<Keys, KeyError> {
        let read = |p: &Option<PathBuf>| -> Result<_, KeyError> {
            p.as_deref()
                .map(Key::load)
                .transpose()
                .map(|k| k.map(std::sync::Arc::new))
        };
        Ok(Keys {
            cluster: read(&self.secret_file)?,
            client: read(&self.client_secret_file)?,
        })
    }
}

/// Why a secret file was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: cannot read the secret: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{}: the secret is {len} bytes (surrounding whitespace aside); at least {MIN_SECRET_BYTES} are needed (make one with `head -c 32 /dev/urandom | base64 > {}`)",
        path.display(), path.display()
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("{}: the secret file is over {MAX_SECRET_BYTES} bytes; is it the right file?", path.display())]
    TooLong { path: PathBuf },
}

/// A secret, ready to sign and check requests.
#[derive(Clone)]
pub struct Key {
    mac: HmacSha256,
    /// Where it came from, for messages.
    source: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "Key({})", self.source)
    }
}

impl Key {
    /// Reads a secret file: its bytes with surrounding whitespace (the
    /// trailing newline an editor adds) removed. Warns once when the file
    /// can be read by other users.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let read_err = |cause| KeyError::Read {
            path: path.to_owned(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_SECRET_BYTES as u64 {
            return Err(KeyError::TooLong {
                path: path.to_owned(),
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        let secret = bytes.trim_ascii();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::TooShort {
                path: path.to_owned(),
                len: secret.len(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "the secret file can be read by other users (chmod 600 it)"
                );
            }
        }
        Ok(Key::from_secret(secret, &path.display().to_string()))
    }

    /// A key from the secret's bytes; `source` names it in messages.
    pub fn from_secret(secret: &[u8], source: &str) -> Key {
        Key {
            mac: <HmacSha256 as KeyInit>::new_from_slice(secret)
                .expect("HMAC takes a key of any length"),
            source: source.to_owned(),
        }
    }

    fn tagger(&self, t: u64, nonce: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT);
        mac.update(format!("{t}\n{nonce:016x}\n").as_bytes());
        mac.update(body);
        mac
    }

    /// The header value proving this key for `body`, stamped `now`.
    pub fn sign(&self, body: &[u8], now: SystemTime) -> HeaderValue {
        let t = unix_secs(now);
        let nonce: u64 = rand::random();
        let tag = self.tagger(t, nonce, body).finalize().into_bytes();
        let mut s = format!("v1 t={t} n={nonce:016x} mac=");
        for b in tag.iter() {
            s.push_str(&format!("{b:02x}"));
        }
        HeaderValue::from_str(&s).expect("ASCII")
    }

    /// The header value for `body`, stamped with the current time.
    pub fn sign_now(&self, body: &[u8]) -> HeaderValue {
        self.sign(body, SystemTime::now())
    }

    fn matches(&self, t: u64, nonce: u64, tag: &[u8; 32], body: &[u8]) -> bool {
        self.tagger(t, nonce, body).verify_slice(tag).is_ok()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a request proved, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing (no secret is configured, or the proof was missing or wrong).
    None,
    /// The client secret.
    Client,
    /// The cluster secret: good for every call.
    Cluster,
}

/// The outcome of checking one request's header.
#[derive(Clone, Copy, Debug)]
pub struct Proof {
    pub level: Level,
    /// When `level` is `None` and a header was checked: why it failed.
    pub failure: Option<&'static str>,
    /// The signed timestamp and MAC, for the replay check of admin calls.
    tag: Option<(u64, [u8; 32])>,
}

impl Proof {
    /// A request on a server that checks nothing.
    pub const OPEN: Proof = Proof {
        level: Level::None,
        failure: None,
        tag: None,
    };
}

/// Which secret a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Peer messages and admin calls: the cluster secret, when one is set.
    Cluster,
    /// Everything a client calls: the client secret, when one is set (the
    /// cluster secret also does).
    Client,
}

/// A server's secrets, and the replay cache of its admin calls.
#[derive(Debug)]
pub struct Verifier {
    cluster: Option<Key>,
    client: Option<Key>,
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl Verifier {
    /// A verifier for the secrets given; `None` when neither is (the open
    /// server of the assignment).
    pub fn new(cluster: Option<Key>, client: Option<Key>) -> Option<Verifier> {
        if cluster.is_none() && client.is_none() {
            return None;
        }
        Some(Verifier {
            cluster,
            client,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a request's proof header against `body` at time `now`.
    pub fn verify(&self, header: Option<&HeaderValue>, body: &[u8], now: SystemTime) -> Proof {
        let fail = |why| Proof {
            level: Level::None,
            failure: Some(why),
            tag: None,
        };
        let Some(header) = header else {
            return fail("no X-SurfStore-Auth header");
        };
        let Some((t, nonce, tag)) = parse_header(header.as_bytes()) else {
            return fail("malformed X-SurfStore-Auth header (expected `v1 t=<secs> n=<16 hex> mac=<64 hex>`)");
        };
        let now = unix_secs(now);
        if t.abs_diff(now) > WINDOW.as_secs() {
            return fail("X-SurfStore-Auth timestamp is more than 60 s from this node's clock (stale, replayed, or a clock is wrong)");
        }
        let proof = |level| Proof {
            level,
            failure: None,
            tag: Some((t, tag)),
        };
        if self
            .cluster
            .as_ref()
            .is_some_and(|k| k.matches(t, nonce, &tag, body))
        {
            return proof(Level::Cluster);
        }
        if self
            .client
            .as_ref()
            .is_some_and(|k| k.matches(t, nonce, &tag, body))
        {
            return proof(Level::Client);
        }
        fail("X-SurfStore-Auth does not match: signed with another secret, or the body was changed")
    }

    /// Whether a call that needs `need` may go ahead with `proof`; the
    /// error says why not, for an `Unauthorized` fault.
    pub fn allows(&self, need: Need, proof: &Proof) -> Result<(), String> {
        let required = match need {
            Need::Cluster if self.cluster.is_some() => Level::Cluster,
            Need::Client if self.client.is_some() => Level::Client,
            // Cluster calls with only a client secret set, or client calls
            // with only a cluster secret: open, as the flags say.
            _ => return Ok(()),
        };
        if proof.level >= required {
            return Ok(());
        }
        let what = match required {
            Level::Cluster => "the cluster secret (--secret-file)",
            _ => "the client secret (--client-secret-file) or the cluster secret",
        };
        Err(match (proof.level, proof.failure) {
            (Level::Client, _) => {
                format!("needs proof of {what}; the request proved only the client secret")
            }
            (_, Some(why)) => format!("needs proof of {what}: {why}"),
            (_, None) => format!("needs proof of {what}"),
        })
    }

    /// For admin calls: refuses a proof already used (a replay inside its
    /// window), and remembers this one until its window ends.
    pub fn check_fresh(&self, proof: &Proof, now: SystemTime) -> Result<(), String> {
        let Some((t, tag)) = proof.tag else {
            return Ok(());
        };
        let now = unix_secs(now);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= REPLAY_CACHE_ENTRIES {
            seen.retain(|_, &mut expires| expires >= now);
        }
        if seen.contains_key(&tag) {
            return Err("this signed request was already used (a replay)".into());
        }
        if seen.len() >= REPLAY_CACHE_ENTRIES {
            return Err(format!(
                "more than {REPLAY_CACHE_ENTRIES} admin calls within {} s; try again shortly",
                2 * WINDOW.as_secs()
            ));
        }
        seen.insert(tag, t + WINDOW.as_secs());
        Ok(())
    }
}

/// `v1 t=<secs> mac=<64 hex>` → the timestamp and the MAC.
fn parse_header(h: &[u8]) -> Option<(u64, u64, [u8; 32])> {
    let s = std::str::from_utf8(h).ok()?;
    let mut parts = s.split(' ').filter(|p| !p.is_empty());
    if parts.next()? != "v1" {
        return None;
    }
    let t = parts.next()?.strip_prefix("t=")?;
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t: u64 = t.parse().ok()?;
    let n = parts.next()?.strip_prefix("n=")?;
    if n.len() != 16 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let nonce = u64::from_str_radix(n, 16).ok()?;
    let hex = parts.next()?.strip_prefix("mac=")?;
    if parts.next().is_some() || hex.len() != 64 {
        return None;
    }
    let mut tag = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        tag[i] = (hi * 16 + lo) as u8;
    }
    Some((t, nonce, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::from_secret(s.as_bytes(), "test")
    }

    #[test]
    fn a_signature_proves_its_key_for_its_body_only() {
        let v = Verifier::new(
            Some(key("cluster-secret-0123")),
            Some(key("client-secret-4567")),
        )
        .unwrap();
        let now = SystemTime::now();
        let body = b"<methodCall>crash</methodCall>";
        let h = key("cluster-secret-0123").sign(body, now);
        assert_eq!(v.verify(Some(&h), body, now).level, Level::Cluster);
        let c = key("client-secret-4567").sign(body, now);
        assert_eq!(v.verify(Some(&c), body, now).level, Level::Client);
        // Another body, another key, no header: nothing proved.
        let other = v.verify(Some(&h), b"<methodCall>restore</methodCall>", now);
        assert_eq!(other.level, Level::None);
        assert!(other.failure.unwrap().contains("does not match"));
        let wrong = key("some-other-secret!!").sign(body, now);
        assert_eq!(v.verify(Some(&wrong), body, now).level, Level::None);
        assert!(v
            .verify(None, body, now)
            .failure
            .unwrap()
            .contains("no X-SurfStore-Auth"));
    }

    #[test]
    fn stale_and_malformed_headers_prove_nothing() {
        let v = Verifier::new(Some(key("cluster-secret-0123")), None).unwrap();
        let now = SystemTime::now();
        let body = b"x";
        let old = key("cluster-secret-0123").sign(body, now - Duration::from_secs(61));
        let p = v.verify(Some(&old), body, now);
        assert_eq!(p.level, Level::None);
        assert!(p.failure.unwrap().contains("timestamp"));
        let ahead = key("cluster-secret-0123").sign(body, now + Duration::from_secs(59));
        assert_eq!(v.verify(Some(&ahead), body, now).level, Level::Cluster);
        for bad in [
            "",
            "v1",
            "v2 t=1 mac=00",
            "v1 t= mac=",
            "v1 t=-5 mac=0000000000000000000000000000000000000000000000000000000000000000",
            "v1 t=1 mac=zz00000000000000000000000000000000000000000000000000000000000000",
            "v1 t=1 mac=00 extra",
            "v1 t=1 mac=0000000000000000000000000000000000000000000000000000000000000000",
            "v1 t=1 n=12 mac=0000000000000000000000000000000000000000000000000000000000000000",
            "v1 t=1 n=000000000000000g mac=0000000000000000000000000000000000000000000000000000000000000000",
            "v1 t=99999999999999999999999 mac=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let h = HeaderValue::from_str(bad).unwrap();
            let p = v.verify(Some(&h), body, now);
            assert_eq!(p.level, Level::None, "{bad:?}");
            assert!(p.failure.unwrap().contains("malformed"), "{bad:?}");
        }
    }

    #[test]
    fn needs_follow_the_configured_secrets() {
        let cluster_only = Verifier::new(Some(key("cluster-secret-0123")), None).unwrap();
        let open = Proof::OPEN;
        assert!(cluster_only.allows(Need::Client, &open).is_ok());
        let e = cluster_only.allows(Need::Cluster, &open).unwrap_err();
        assert!(e.contains("cluster secret"), "{e}");

        let both = Verifier::new(
            Some(key("cluster-secret-0123")),
            Some(key("client-secret-4567")),
        )
        .unwrap();
        let now = SystemTime::now();
        let client = both.verify(Some(&key("client-secret-4567").sign(b"b", now)), b"b", now);
        assert!(both.allows(Need::Client, &client).is_ok());
        let e = both.allows(Need::Cluster, &client).unwrap_err();
        assert!(e.contains("proved only the client secret"), "{e}");
        let cluster = both.verify(Some(&key("cluster-secret-0123").sign(b"b", now)), b"b", now);
        assert!(both.allows(Need::Client, &cluster).is_ok());
        assert!(both.allows(Need::Cluster, &cluster).is_ok());
        assert!(Verifier::new(None, None).is_none());
    }

    #[test]
    fn an_admin_proof_is_used_once() {
        let v = Verifier::new(Some(key("cluster-secret-0123")), None).unwrap();
        let now = SystemTime::now();
        let h = key("cluster-secret-0123").sign(b"crash", now);
        let p = v.verify(Some(&h), b"crash", now);
        assert!(v.check_fresh(&p, now).is_ok());
        let e = v.check_fresh(&p, now).unwrap_err();
        assert!(e.contains("replay"), "{e}");
        // The same call signed again, even in the same second, is a new proof.
        let h2 = key("cluster-secret-0123").sign(b"crash", now);
        let p2 = v.verify(Some(&h2), b"crash", now);
        assert!(v.check_fresh(&p2, now).is_ok());
    }

    #[test]
    fn the_replay_cache_is_bounded_and_forgets_expired_proofs() {
        let v = Verifier::new(Some(key("cluster-secret-0123")), None).unwrap();
        let start = SystemTime::now();
        let k = key("cluster-secret-0123");
        for i in 0..REPLAY_CACHE_ENTRIES {
            let body = i.to_string();
            let p = v.verify(
                Some(&k.sign(body.as_bytes(), start)),
                body.as_bytes(),
                start,
            );
            v.check_fresh(&p, start).unwrap();
        }
        let p = v.verify(Some(&k.sign(b"one more", start)), b"one more", start);
        assert!(v
            .check_fresh(&p, start)
            .unwrap_err()
            .contains("admin calls within"));
        // Past the window every remembered proof has expired.
        let later = start + 2 * WINDOW + Duration::from_secs(2);
        let p = v.verify(Some(&k.sign(b"one more", later)), b"one more", later);
        v.check_fresh(&p, later).unwrap();
        assert_eq!(v.seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn secret_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("surfstore-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let e = Key::load(&short).unwrap_err().to_string();
        assert!(e.contains("short") && e.contains("3 bytes"), "{e}");
        let good = dir.join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        let k = Key::load(&good).unwrap();
        // The trailing newline is not part of the secret.
        let now = SystemTime::now();
        let v = Verifier::new(Some(Key::from_secret(b"0123456789abcdef0123", "x")), None).unwrap();
        assert_eq!(
            v.verify(Some(&k.sign(b"b", now)), b"b", now).level,
            Level::Cluster
        );
        let e = Key::load(&dir.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
