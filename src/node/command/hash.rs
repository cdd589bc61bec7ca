//! One element of a file's hash list, typed: what a client sent, with the
//! XML-RPC type it came with, so it goes back out unchanged. Strings, `int`s,
//! `i8`s and base64 are hashes; nothing else is (the method table refuses it).
//!
//! A string that is exactly 64 lower-case hex digits (a SHA-256, what
//! `run-client.sh` sends) is held as its 32 bytes and given back as the same
//! 64 characters; any other string is held as it is. The form is chosen by
//! [`HashText::new`] alone, so equal strings are always equal hashes.

use std::borrow::Cow;
use std::fmt;

/// A hash-list element.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Hash {
    /// `<string>` (or an untyped `<value>`); the tombstone `"0"` among them.
    Text(HashText),
    /// `<int>` / `<i4>`: goes back as `<int>`.
    Int(i32),
    /// `<i8>`: goes back as `<i8>`, whatever its size.
    I8(i64),
    /// `<base64>`: Python's `bytes`, e.g. `hashlib.sha256(data).digest()`.
    Bytes(Box<[u8]>),
}

impl Hash {
    /// A string hash.
    pub fn text(s: impl Into<String>) -> Hash {
        Hash::Text(HashText::new(s.into()))
    }

    /// The XML-RPC type it came as, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Hash::Text(_) => "string",
            Hash::Int(_) => "int",
            Hash::I8(_) => "i8",
            Hash::Bytes(_) => "base64",
        }
    }

    /// The SHA-256 of the block this hash names, when it can name one: 64
    /// lower-case hex digits, or exactly 32 bytes of base64 (a raw digest).
    pub fn block_sha256(&self) -> Option<[u8; 32]> {
        match self {
            Hash::Text(t) => t.sha256().copied(),
            Hash::Bytes(b) => <[u8; 32]>::try_from(&b[..]).ok(),
            Hash::Int(_) | Hash::I8(_) => None,
        }
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hash::Text(t) => write!(f, "{:?}", t.as_str()),
            Hash::Int(i) => write!(f, "{i}"),
            Hash::I8(i) => write!(f, "{i}i8"),
            Hash::Bytes(b) => write!(f, "b64{b:02x?}"),
        }
    }
}

/// A string hash: a hex SHA-256 as its 32 bytes, any other text as it is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HashText(Repr);

/// Invariant: `Other` never holds 64 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl HashText {
    pub fn new(s: String) -> HashText {
        match parse_sha256_hex(&s) {
            Some(d) => HashText(Repr::Sha256(d)),
            None => HashText(Repr::Other(s.into_boxed_str())),
        }
    }

    /// The 64 hex digits as 32 bytes.
    pub fn from_sha256(digest: [u8; 32]) -> HashText {
        HashText(Repr::Sha256(digest))
    }

    /// The text exactly as the client sent it.
    pub fn as_str(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Sha256(d) => Cow::Owned(sha256_hex(d)),
            Repr::Other(s) => Cow::Borrowed(s),
        }
    }

    /// The digest, when the text is 64 lower-case hex digits.
    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match &self.0 {
            Repr::Sha256(d) => Some(d),
            Repr::Other(_) => None,
        }
    }

    /// How it is held: the encoders write the two forms apart.
    pub fn form(&self) -> TextForm<'_> {
        match &self.0 {
            Repr::Sha256(d) => TextForm::Sha256(d),
            Repr::Other(s) => TextForm::Other(s),
        }
    }
}

/// The two forms of a [`HashText`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextForm<'a> {
    /// 64 lower-case hex digits, as the 32 bytes they spell.
    Sha256(&'a [u8; 32]),
    /// Any other text.
    Other(&'a str),
}

impl From<&str> for HashText {
    fn from(s: &str) -> Self {
        HashText::new(s.to_owned())
    }
}

impl From<String> for HashText {
    fn from(s: String) -> Self {
        HashText::new(s)
    }
}

impl fmt::Display for HashText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl fmt::Debug for HashText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// 64 lower-case hex digits.
pub fn sha256_hex(digest: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The digest `s` spells, if it is exactly 64 lower-case hex digits (upper
/// case would not come back the same, so it stays text).
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_case_hex_sha256_is_held_as_bytes_and_comes_back_the_same() {
        let hex = "00ff1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";
        let t = HashText::from(hex);
        assert_eq!(t.sha256().map(|d| d[1]), Some(0xff));
        assert_eq!(t.as_str(), hex);
        assert!(matches!(t.form(), TextForm::Sha256(_)));
    }

    #[test]
    fn anything_else_stays_text() {
        let upper = "00FF1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7";
        let short = &upper[..63].to_lowercase();
        let long = format!("{}0", upper.to_lowercase());
        let not_hex = format!("{}g", &upper[..63].to_lowercase());
        for s in [
            "0",
            "",
            "h1",
            upper,
            short,
            &long,
            &not_hex,
            "ü".repeat(32).as_str(),
        ] {
            let t = HashText::from(s);
            assert_eq!(t.sha256(), None, "{s:?}");
            assert_eq!(t.form(), TextForm::Other(s));
            assert_eq!(t.as_str(), s);
        }
    }

    #[test]
    fn equal_strings_are_equal_hashes() {
        let d = [7u8; 32];
        assert_eq!(HashText::new(sha256_hex(&d)), HashText::from_sha256(d));
        assert_eq!(Hash::text("0"), Hash::Text("0".into()));
    }

    #[test]
    fn block_names() {
        let d = [9u8; 32];
        assert_eq!(Hash::text(sha256_hex(&d)).block_sha256(), Some(d));
        assert_eq!(Hash::Bytes(Box::new(d)).block_sha256(), Some(d));
        assert_eq!(Hash::Bytes(vec![9; 31].into()).block_sha256(), None);
        assert_eq!(Hash::text("0").block_sha256(), None);
        assert_eq!(Hash::Int(9).block_sha256(), None);
    }

    #[test]
    fn a_hash_is_no_bigger_than_a_digest_and_a_tag() {
        assert!(
            std::mem::size_of::<Hash>() <= 40,
            "{}",
            std::mem::size_of::<Hash>()
        );
    }
}
