//! `.surfignore`: the names this base directory keeps out of the sync, in
//! gitignore syntax (the `ignore` crate's gitignore matcher, rooted at the
//! base directory). Only the file at the root of the base directory counts.
//!
//! An ignored name takes no part in the sync in either direction: a local
//! file is not uploaded and its absence is not sent as a delete, a remote
//! version is not downloaded, and its index line is left as it is. The
//! `.surfignore` file itself is an ordinary file (synced, so every client
//! shares the rules), unless it lists itself. The rules are read once, at the
//! start of a sync, from the local copy: a new `.surfignore` downloaded by a
//! sync applies from the next one. A line that is not a valid pattern stops
//! the sync before anything moves: skipping it could upload what it meant to
//! keep out.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::ClientError;

/// The ignore file at the root of the base directory.
pub const SURFIGNORE: &str = ".surfignore";

/// The rules of one base directory (none when it has no `.surfignore`).
pub struct Rules {
    matcher: Option<Gitignore>,
}

impl Rules {
    /// No rules: nothing is ignored.
    pub fn none() -> Rules {
        Rules { matcher: None }
    }

    /// Reads `base/.surfignore`; a missing file is no rules.
    pub fn load(base: &Path) -> Result<Rules, ClientError> {
        let path = base.join(SURFIGNORE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Rules::none()),
            Err(e) => return Err(ClientError::io(&path, e)),
        };
        let bad = |line: usize, why: String| ClientError::BadIgnore {
            path: path.clone(),
            line,
            why,
        };
        let text = String::from_utf8(text).map_err(|_| bad(0, "the file is not UTF-8".into()))?;
        Rules::parse(base, &text).map_err(|(line, why)| bad(line, why))
    }

    /// The rules in `text`, rooted at `base`; an error names the line (1-based).
    pub fn parse(base: &Path, text: &str) -> Result<Rules, (usize, String)> {
        let mut builder = GitignoreBuilder::new(base);
        for (i, line) in text.lines().enumerate() {
            builder
                .add_line(None, line)
                .map_err(|e| (i + 1, e.to_string()))?;
        }
        let matcher = builder.build().map_err(|e| (0, e.to_string()))?;
        Ok(Rules {
            matcher: Some(matcher),
        })
    }

    /// Whether the synced name `name` (relative, `/`-separated) is ignored,
    /// itself or through a directory it is in.
    pub fn ignores(&self, name: &str, is_dir: bool) -> bool {
        match &self.matcher {
            Some(m) if !name.is_empty() && !Path::new(name).has_root() => m
                .matched_path_or_any_parents(Path::new(name), is_dir)
                .is_ignore(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        Rules::parse(Path::new("/base"), text).unwrap()
    }

    #[test]
    fn gitignore_syntax() {
        let r = rules("# comment\n*.o\nbuild/\n/top.txt\n!keep.o\ndeep/**/x\n");
        for name in [
            "a.o",
            "sub/b.o",
            "build/x",
            "build/sub/y",
            "top.txt",
            "deep/a/b/x",
        ] {
            assert!(r.ignores(name, false), "{name} not ignored");
        }
        for name in [
            "keep.o",
            "sub/top.txt",
            "a.c",
            "build",
            "deep/y",
            ".surfignore",
        ] {
            assert!(!r.ignores(name, false), "{name} ignored");
        }
        assert!(r.ignores("build", true));
        assert!(!Rules::none().ignores("a.o", false));
    }

    #[test]
    fn a_bad_pattern_names_its_line() {
        let (line, why) = Rules::parse(Path::new("/base"), "ok\n\nbad[z-a]\n")
            .err()
            .unwrap();
        assert_eq!(line, 3, "{why}");
    }
}
