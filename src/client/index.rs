//! `index.txt`, the client's memory of the last sync: one line per file,
//! `filename version hash1 hash2 …`, separated by single spaces. A file with no
//! blocks (empty) has no hashes; a deleted one has the tombstone `0`.
//!
//! File names may hold spaces and tabs, so in the index `%`, space and control
//! characters are written as `%XX` (`my file` is `my%20file`); other
//! characters, non-ASCII included, are written as they are.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// What the index remembers of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub version: i64,
    pub hashes: Vec<String>,
}

impl IndexEntry {
    pub fn is_tombstone(&self) -> bool {
        is_tombstone(&self.hashes)
    }
}

pub fn is_tombstone(hashes: &[String]) -> bool {
    hashes.len() == 1 && hashes[0] == "0"
}

pub type Index = BTreeMap<String, IndexEntry>;

/// A line of the index that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct IndexLineError {
    pub line: usize,
    pub why: String,
}

fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn decode_name(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape at {:?} in the file name", &s[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the file name is not UTF-8".to_owned())
}

/// Reads the index text.
pub fn parse(text: &str) -> Result<Index, IndexLineError> {
    let mut index = Index::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let err = |why: String| IndexLineError { line: line_no, why };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        let name = decode_name(parts.next().unwrap_or_default()).map_err(err)?;
        if name.is_empty() {
            return Err(err("the file name is empty".into()));
        }
        let version = parts
            .next()
            .ok_or_else(|| err(format!("no version after the file name {name:?}")))?;
        let version: i64 = version
            .parse()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| err(format!("version {version:?} is not a positive integer")))?;
        let hashes: Vec<String> = parts.map(str::to_owned).collect();
        if let Some(h) = hashes.iter().find(|h| h.is_empty()) {
            let _ = h;
            return Err(err("an empty hash (two spaces in a row?)".into()));
        }
        if !is_tombstone(&hashes) {
            if let Some(h) = hashes.iter().find(|h| !crate::node::blocks::is_hash(h)) {
                return Err(err(format!("{h:?} is not a block hash")));
            }
        }
        if index
            .insert(name.clone(), IndexEntry { version, hashes })
            .is_some()
        {
            return Err(err(format!("{name:?} is listed twice")));
        }
    }
    Ok(index)
}

/// The index as text, one line per file, sorted by name.
pub fn render(index: &Index) -> String {
    let mut out = String::new();
    for (name, e) in index {
        out.push_str(&encode_name(name));
        let _ = write!(out, " {}", e.version);
        for h in &e.hashes {
            out.push(' ');
            out.push_str(h);
        }
        out.push('\n');
    }
    out
}

/// Reads `path`; a missing file is an empty index.
pub fn load(path: &Path) -> Result<Index, super::ClientError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::new()),
        Err(e) => return Err(super::ClientError::io(path, e)),
    };
    let text = String::from_utf8(text).map_err(|_| super::ClientError::CorruptIndex {
        path: path.to_path_buf(),
        error: IndexLineError {
            line: 0,
            why: "the file is not UTF-8".into(),
        },
    })?;
    parse(&text).map_err(|error| super::ClientError::CorruptIndex {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes the index to `path` atomically.
pub fn store(path: &Path, index: &Index) -> Result<(), super::ClientError> {
    super::fsutil::atomic_write(path, render(index).as_bytes())
        .map_err(|e| super::ClientError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_names() {
        let h = crate::node::blocks::hash_hex(b"x");
        let mut idx = Index::new();
        for (i, name) in ["a", "my file 100%.txt", "dír/ünï <&>\"' 😀 \t x.txt"]
            .iter()
            .enumerate()
        {
            idx.insert(
                name.to_string(),
                IndexEntry {
                    version: i as i64 + 1,
                    hashes: vec![h.clone(); i],
                },
            );
        }
        idx.insert(
            "gone".into(),
            IndexEntry {
                version: 4,
                hashes: vec!["0".into()],
            },
        );
        assert_eq!(parse(&render(&idx)).unwrap(), idx);
    }

    #[test]
    fn corrupt_lines_are_named() {
        let h = crate::node::blocks::hash_hex(b"x");
        let cases = [
            (format!("a 1 {h}\nb\n"), 2, "no version"),
            (format!("\n\na x {h}\n"), 3, "not a positive integer"),
            ("a 1 nothex\n".to_owned(), 1, "not a block hash"),
            (format!("a 1 {h}\na 2 {h}\n"), 2, "listed twice"),
            ("a%zz 1\n".to_owned(), 1, "bad escape"),
        ];
        for (text, line, why) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.why.contains(why), "{text:?}: {e}");
        }
    }
}
