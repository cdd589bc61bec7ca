//! The cluster configuration file: parse, validate, and refuse with `FILE:LINE`.
//!
//! The format (API.md, "Configuration file") is
//!
//! ```text
//! M: 3
//! metadata0: localhost:9001
//! metadata1: localhost:9002
//! metadata2: localhost:9003
//! ```
//!
//! `M: <n>` first, then exactly M lines `metadata<i>: host:port` with every id
//! in `0..M` exactly once, in any order; blank lines, surrounding whitespace and
//! `\r\n` line ends are tolerated. Anything else is refused with a
//! [`ConfigError`] whose message starts `FILE:LINE:` (or `FILE:` when no line is
//! to blame), so a node refuses to start before binding anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// More members than this is certainly a typo (Raft clusters have 3, 5 or 7).
pub const MAX_MEMBERS: usize = 1000;

/// A validated cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Every node's `host:port`, indexed by id: `members[i]` is `metadata<i>`.
    /// Never empty, no duplicates, every port in `1..=65535`.
    pub members: Vec<String>,
    /// The file this came from, for error messages.
    pub path: PathBuf,
}

/// Why a configuration file was refused. Every variant's message names the file
/// and, where one line is to blame, its 1-based line number.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The io error is part of the message, not a chained source, so
    /// `{:#}` printing does not repeat it.
    #[error("{}: cannot read: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{}:{line}: not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },

    #[error("{}:{line}: missing the `M: <n>` line (the file has no content)", path.display())]
    MissingM { path: PathBuf, line: usize },

    #[error("{}:{line}: expected `M: <n>` as the first line, found `{found}`", path.display())]
    ExpectedM {
        path: PathBuf,
        line: usize,
        found: String,
    },

    #[error("{}:{line}: bad member count `{value}`: {reason}", path.display())]
    BadCount {
        path: PathBuf,
        line: usize,
        value: String,
        reason: String,
    },

    #[error("{}:{line}: `M` given a second time (first on line {first_line})", path.display())]
    DuplicateM {
        path: PathBuf,
        line: usize,
        first_line: usize,
    },

    #[error("{}:{line}: malformed line `{found}`: expected `metadata<i>: host:port`", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        found: String,
    },

    #[error("{}:{line}: id {id} is out of range: M is {m}, so ids run from 0 to {}", path.display(), m.saturating_sub(1))]
    IdOutOfRange {
        path: PathBuf,
        line: usize,
        id: usize,
        m: usize,
    },

    #[error("{}:{line}: duplicate id metadata{id} (first on line {first_line})", path.display())]
    DuplicateId {
        path: PathBuf,
        line: usize,
        id: usize,
        first_line: usize,
    },

    #[error("{}:{line}: bad address `{addr}`: {reason}", path.display())]
    BadAddress {
        path: PathBuf,
        line: usize,
        addr: String,
        reason: &'static str,
    },

    #[error("{}:{line}: duplicate address `{addr}` (also metadata{other_id} on line {first_line})", path.display())]
    DuplicateAddress {
        path: PathBuf,
        line: usize,
        addr: String,
        other_id: usize,
        first_line: usize,
    },

    /// Fewer member lines than `M` (more lines would be a duplicate or
    /// out-of-range id, reported as such). `line` is the `M` line.
    #[error("{}:{line}: M is {m} but {found} member line(s) follow; missing {}", path.display(), names(missing))]
    CountMismatch {
        path: PathBuf,
        line: usize,
        m: usize,
        found: usize,
        missing: Vec<usize>,
    },

    /// A node id given on the command line that the file does not define.
    #[error("{}: no member with id {id}: the file defines ids 0 to {}", path.display(), len.saturating_sub(1))]
    UnknownId {
        path: PathBuf,
        id: usize,
        len: usize,
    },
}

fn names(ids: &[usize]) -> String {
    let shown: Vec<String> = ids
        .iter()
        .take(10)
        .map(|i| format!("metadata{i}"))
        .collect();
    let mut s = shown.join(", ");
    if ids.len() > shown.len() {
        s.push_str(&format!(" and {} more", ids.len() - shown.len()));
    }
    s
}

impl ClusterConfig {
    /// The `host:port` of node `id`, or an error naming the file and the valid ids.
    pub fn member(&self, id: usize) -> Result<&str, ConfigError> {
        self.members
            .get(id)
            .map(String::as_str)
            .ok_or_else(|| ConfigError::UnknownId {
                path: self.path.clone(),
                id,
                len: self.members.len(),
            })
    }

    /// The number of members, M.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false for a parsed config (M >= 1); here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|cause| ConfigError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| ConfigError::NotUtf8 {
        path: path.to_owned(),
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })?;
    parse(text, path)
}

/// Parses the text of a config file; `path` is used only in error messages.
pub fn parse(text: &str, path: &Path) -> Result<ClusterConfig, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let p = || path.to_owned();

    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());

    let Some((m_line, first)) = lines.next() else {
        return Err(ConfigError::MissingM { path: p(), line: 1 });
    };
    let m = match split_key(first) {
        Some(("M", value)) => parse_count(value).map_err(|reason| ConfigError::BadCount {
            path: p(),
            line: m_line,
            value: value.to_owned(),
            reason,
        })?,
        _ => {
            return Err(ConfigError::ExpectedM {
                path: p(),
                line: m_line,
                found: first.to_owned(),
            })
        }
    };

    // members[id] = (address, line it was on)
    let mut members: Vec<Option<(String, usize)>> = vec![None; m];
    // lower-cased address -> (id, line), to catch `localhost:1` twice
    let mut seen: HashMap<String, (usize, usize)> = HashMap::with_capacity(m);

    for (line, text) in lines {
        let malformed = || ConfigError::Malformed {
            path: p(),
            line,
            found: text.to_owned(),
        };
        let (key, addr) = split_key(text).ok_or_else(malformed)?;
        if key == "M" {
            return Err(ConfigError::DuplicateM {
                path: p(),
                line,
                first_line: m_line,
            });
        }
        let digits = key.strip_prefix("metadata").ok_or_else(malformed)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let id = match digits.parse::<usize>() {
            Ok(id) if id < m => id,
            // Too many digits for usize is out of range too.
            _ => {
                let id = digits.parse::<usize>().unwrap_or(usize::MAX);
                return Err(ConfigError::IdOutOfRange {
                    path: p(),
                    line,
                    id,
                    m,
                });
            }
        };
        if let Some((_, first_line)) = &members[id] {
            return Err(ConfigError::DuplicateId {
                path: p(),
                line,
                id,
                first_line: *first_line,
            });
        }
        check_addr(addr).map_err(|reason| ConfigError::BadAddress {
            path: p(),
            line,
            addr: addr.to_owned(),
            reason,
        })?;
        if let Some(&(other_id, first_line)) = seen.get(&addr.to_ascii_lowercase()) {
            return Err(ConfigError::DuplicateAddress {
                path: p(),
                line,
                addr: addr.to_owned(),
                other_id,
                first_line,
            });
        }
        seen.insert(addr.to_ascii_lowercase(), (id, line));
        members[id] = Some((addr.to_owned(), line));
    }

    let missing: Vec<usize> = (0..m).filter(|&i| members[i].is_none()).collect();
    if !missing.is_empty() {
        return Err(ConfigError::CountMismatch {
            path: p(),
            line: m_line,
            m,
            found: m - missing.len(),
            missing,
        });
    }
    Ok(ClusterConfig {
        members: members
            .into_iter()
            .flatten()
            .map(|(addr, _)| addr)
            .collect(),
        path: path.to_owned(),
    })
}

/// `"key: value"` -> `("key", "value")`, both trimmed; `None` without a colon.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once(':')?;
    Some((k.trim(), v.trim()))
}

fn parse_count(value: &str) -> Result<usize, String> {
    if value.is_empty() {
        return Err("expected a positive integer, found nothing".into());
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a positive integer".into());
    }
    match value.parse::<usize>() {
        Ok(0) => Err("a cluster needs at least one member".into()),
        Ok(n) if n <= MAX_MEMBERS => Ok(n),
        _ => Err(format!("at most {MAX_MEMBERS} members are supported")),
    }
}

/// Accepts `host:port` with a non-empty host (a name, IPv4, or bracketed IPv6)
/// and a decimal port in 1..=65535.
fn check_addr(addr: &str) -> Result<(), &'static str> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("missing `:port`");
    };
    if host.is_empty() {
        return Err("empty host");
    }
    if host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') {
        return Err("the host contains whitespace or `/`");
    }
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.contains(':') && !bracketed {
        return Err("an IPv6 host must be written in brackets, like [::1]:9001");
    }
    if port.is_empty() {
        return Err("missing port after `:`");
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number");
    }
    match port.parse::<u32>() {
        Ok(0) => Err("port 0 is not a usable port"),
        Ok(n) if n <= 65535 => Ok(()),
        _ => Err("the port is larger than 65535"),
    }
}
