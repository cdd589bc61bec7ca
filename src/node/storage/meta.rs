//! The data directory's identity: which cluster (member list) and which node
//! it belongs to, in `DIR/cluster`. Written once, atomically, when the
//! directory is new; checked on every later start, so a directory is never
//! silently reused by another cluster or another node id.

use std::path::{Path, PathBuf};

use super::fs::{read_if_exists, FileSystem, RealFs};

pub const META_FILE: &str = "cluster";
const MAGIC: &str = "surfstore-data-dir 1";

/// Who a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMeta {
    pub id: u64,
    pub members: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason} (not a surfstore data directory file?)")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "data directory {dir} belongs to node {} of cluster [{}], but this start is node {} of cluster [{}]; refusing to mix them (pass the matching config and id, or a fresh --data-dir)",
        .found.id, .found.members.join(", "), .wanted.id, .wanted.members.join(", ")
    )]
    Mismatch {
        dir: PathBuf,
        found: ClusterMeta,
        wanted: ClusterMeta,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MetaError + '_ {
    move |source| MetaError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ClusterMeta {
    fn render(&self) -> String {
        let mut s = format!("{MAGIC}\nnode {}\n", self.id);
        for (i, m) in self.members.iter().enumerate() {
            s.push_str(&format!("member {i} {m}\n"));
        }
        s
    }

    fn parse(path: &Path, text: &str) -> Result<ClusterMeta, MetaError> {
        let bad = |line: usize, reason: String| MetaError::Malformed {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, l)) if l == MAGIC => {}
            other => {
                return Err(bad(
                    1,
                    format!("expected {MAGIC:?}, found {:?}", other.map(|o| o.1)),
                ))
            }
        }
        let id = match lines.next() {
            Some((n, l)) => l
                .strip_prefix("node ")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(n, format!("expected `node ID`, found {l:?}")))?,
            None => return Err(bad(2, "missing `node ID` line".into())),
        };
        let mut members = Vec::new();
        for (n, l) in lines {
            let mut parts = l.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("member"), Some(i), Some(addr)) if i == members.len().to_string() => {
                    members.push(addr.to_owned())
                }
                _ => {
                    return Err(bad(
                        n,
                        format!("expected `member {} ADDR`, found {l:?}", members.len()),
                    ))
                }
            }
        }
        Ok(ClusterMeta { id, members })
    }

    /// Checks `dir` belongs to `self`, or claims it when it has no identity yet.
    pub fn claim(&self, dir: &Path) -> Result<(), MetaError> {
        self.claim_in(&RealFs, dir)
    }

    /// `claim`, through `fs`.
    pub fn claim_in(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), MetaError> {
        let path = dir.join(META_FILE);
        match read_if_exists(fs, &path).map_err(io(&path))? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let found = ClusterMeta::parse(&path, &text)?;
                if found != *self {
                    return Err(MetaError::Mismatch {
                        dir: dir.to_owned(),
                        found,
                        wanted: self.clone(),
                    });
                }
                Ok(())
            }
            None => {
                write_atomically(fs, dir, META_FILE, self.render().as_bytes()).map_err(io(&path))
            }
        }
    }
}

/// Writes `DIR/name` so that a crash leaves either the old file or the whole
/// new one: temp file, fsync, rename, fsync the directory.
pub fn write_atomically(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = fs.create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
    }
    fs.rename(&tmp, &dir.join(name))?;
    fs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("surfstore-meta-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn claims_then_accepts_then_refuses_another_cluster() {
        let d = tmp("claim");
        let a = ClusterMeta {
            id: 1,
            members: vec!["localhost:1".into(), "localhost:2".into()],
        };
        a.claim(&d).unwrap();
        a.claim(&d).unwrap();
        let other = ClusterMeta {
            id: 1,
            members: vec!["localhost:1".into(), "localhost:3".into()],
        };
        let err = other.claim(&d).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(
            err.contains("localhost:2") && err.contains("localhost:3"),
            "{err}"
        );
        let other_id = ClusterMeta { id: 0, ..a.clone() };
        assert!(matches!(
            other_id.claim(&d),
            Err(MetaError::Mismatch { .. })
        ));
        fs::write(d.join(META_FILE), "junk\n").unwrap();
        let err = a.claim(&d).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        let _ = fs::remove_dir_all(&d);
    }
}
