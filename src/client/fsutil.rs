//! The client's file system helpers: file names checked before they touch the
//! disk, paths joined so they cannot leave the base directory, files written
//! atomically (temporary file, fsync, rename), the base directory scanned
//! (what cannot be synced listed, never followed, never fatal), directories
//! emptied by a delete removed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Temporary files carry this in their name; scans skip them.
pub const TMP_MARK: &str = ".surfstore-tmp-";

/// The index file at the root of the base directory.
pub const INDEX: &str = "index.txt";

/// Why `name` may not be synced, or None when it may: a relative path of
/// `/`-separated components, none empty, `.` or `..`, no control characters
/// other than tab, not the index itself.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.starts_with('/') || name.starts_with('\\') || Path::new(name).has_root() {
        return Some("it is an absolute path".into());
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() && c != '\t') {
        return Some(format!(
            "it contains the control character U+{:04X}",
            c as u32
        ));
    }
    if let Some(p) = name
        .split('/')
        .find(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Some(format!("it has a {p:?} path component"));
    }
    if name == INDEX {
        return Some("it is the index file".into());
    }
    if name.contains(TMP_MARK) {
        return Some("it looks like a temporary file of this client".into());
    }
    None
}

/// `base/name`, refusing names that could escape `base` (see `name_problem`)
/// and paths that would pass through a symbolic link inside `base`.
pub fn safe_join(base: &Path, name: &str) -> Result<PathBuf, String> {
    if let Some(p) = name_problem(name) {
        return Err(format!("refusing file name {name:?}: {p}"));
    }
    let mut path = base.to_path_buf();
    for part in name.split('/') {
        path.push(part);
        if !matches!(
            Path::new(part).components().next(),
            Some(Component::Normal(_))
        ) {
            return Err(format!(
                "refusing file name {name:?}: bad component {part:?}"
            ));
        }
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.file_type().is_symlink() {
                return Err(format!(
                    "refusing file name {name:?}: {} is a symbolic link",
                    path.display()
                ));
            }
        }
    }
    Ok(path)
}

/// A fresh temporary name in `path`'s directory (created as needed), marked
/// with [`TMP_MARK`] so scans and watches pass it by; renamed onto `path`
/// once written and synced.
pub fn temp_beside(path: &Path) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(dir.join(format!(
        ".{file_name}{TMP_MARK}{:016x}",
        rand::random::<u64>()
    )))
}

/// Writes `data` to `path` atomically: readers see the old file or the new
/// one, never a part. Parent directories are created as needed.
pub fn atomic_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = temp_beside(path)?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a scan of the base directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every regular file to sync, by its synced name.
    pub files: BTreeMap<String, PathBuf>,
    /// Files whose names cannot be synced, with why (the user's files that
    /// this sync could not carry: they make the exit code 1).
    pub bad_names: Vec<String>,
    /// Entries left alone, with why: symbolic links (never followed), FIFOs,
    /// sockets, devices, entries whose type or contents cannot be read. A
    /// directory is named with a trailing `/`.
    pub skipped: Vec<(String, String)>,
    /// Of `skipped`, those that hold the user's data this sync could not
    /// read (unreadable directories and entries), as opposed to kinds of
    /// file a sync never carries.
    pub unreadable: usize,
    /// Entries `.surfignore` keeps out (a directory with a trailing `/`; its
    /// contents are not looked at).
    pub ignored: Vec<String>,
}

impl Scan {
    /// Whether the local state of `name` is unknown to this scan (it, or a
    /// directory it is in, was skipped): such a name is left alone, neither
    /// uploaded, deleted remotely nor written locally.
    pub fn is_opaque(&self, name: &str) -> bool {
        self.opaque_cover(name).is_some()
    }

    /// The skipped entry that makes `name` opaque (it, or a directory it is
    /// in), with why it was skipped.
    pub fn opaque_cover(&self, name: &str) -> Option<&(String, String)> {
        self.skipped
            .iter()
            .find(|(s, _)| match s.strip_suffix('/') {
                Some(dir) => name == dir || name.starts_with(s.as_str()),
                None => name == s || name.starts_with(&format!("{s}/")),
            })
    }
}

/// Why an entry of this type is skipped, or None for a file or a directory.
fn special_kind(kind: &std::fs::FileType) -> Option<&'static str> {
    if kind.is_symlink() {
        return Some("symbolic link, not followed");
    }
    if kind.is_file() || kind.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("FIFO");
        }
        if kind.is_socket() {
            return Some("socket");
        }
        if kind.is_block_device() || kind.is_char_device() {
            return Some("device");
        }
    }
    Some("not a regular file")
}

/// Every regular file under `base` by its synced name (`/`-separated,
/// relative), skipping the index and this client's temporary files; what
/// `rules` ignores is not descended into. Nothing but an unreadable `base`
/// is an error: every other entry that cannot be synced is listed in the
/// answer and the scan goes on.
pub fn scan(base: &Path, rules: &super::surfignore::Rules) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    let mut stack = vec![(base.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if prefix.is_empty() => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("reading directory {}: {e}", dir.display()),
                ))
            }
            Err(e) => {
                out.skipped
                    .push((prefix.clone(), format!("cannot be read: {e}")));
                out.unreadable += 1;
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    out.skipped
                        .push((prefix.clone(), format!("cannot be listed: {e}")));
                    out.unreadable += 1;
                    break;
                }
            };
            let path = entry.path();
            let Some(part) = entry.file_name().to_str().map(str::to_owned) else {
                out.bad_names
                    .push(format!("{}: the name is not UTF-8", path.display()));
                continue;
            };
            let name = format!("{prefix}{part}");
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                // Gone since the listing: nothing to sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.skipped.push((name, format!("cannot be read: {e}")));
                    out.unreadable += 1;
                    continue;
                }
            };
            if (prefix.is_empty() && name == INDEX) || name.contains(TMP_MARK) {
                continue;
            }
            if rules.ignores(&name, kind.is_dir()) {
                out.ignored.push(if kind.is_dir() {
                    format!("{name}/")
                } else {
                    name
                });
                continue;
            }
            if kind.is_dir() {
                stack.push((path, format!("{name}/")));
            } else if let Some(why) = special_kind(&kind) {
                out.skipped.push((name, why.to_owned()));
            } else {
                match name_problem(&name) {
                    None => {
                        out.files.insert(name, path);
                    }
                    Some(p) => out.bad_names.push(format!("{}: {p}", path.display())),
                }
            }
        }
    }
    out.skipped.sort();
    out.ignored.sort();
    Ok(out)
}

/// Removes the directories between `path` and `base` that are now empty,
/// innermost first, stopping at the first that is not; `base` itself is never
/// removed. Returns the names removed (relative to `base`).
pub fn remove_empty_parents(base: &Path, path: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == base || !d.starts_with(base) {
            break;
        }
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        if let Ok(rel) = d.strip_prefix(base) {
            removed.push(rel.to_string_lossy().into_owned());
        }
        dir = d.parent();
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            ".",
            "..",
            "index.txt",
            "a\nb",
            "a\0b",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?} accepted");
            assert!(
                safe_join(Path::new("/base"), bad).is_err(),
                "{bad:?} joined"
            );
        }
        for good in [
            "a",
            "dír/ünï <&>\"' 😀 \t x.txt",
            "sub/index.txt",
            "..a",
            "a..b",
        ] {
            assert_eq!(name_problem(good), None, "{good:?} refused");
        }
        assert_eq!(
            safe_join(Path::new("/base"), "d/f").unwrap(),
            Path::new("/base/d/f")
        );
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "surfstore-fsutil-{tag}-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[cfg(unix)]
    #[test]
    fn a_scan_lists_what_it_does_not_carry_and_goes_on() {
        let d = tmpdir("scan");
        std::fs::write(d.join("a.txt"), b"a").unwrap();
        std::fs::create_dir_all(d.join("sub/build")).unwrap();
        std::fs::write(d.join("sub/b.txt"), b"b").unwrap();
        std::fs::write(d.join("sub/build/x.o"), b"x").unwrap();
        std::fs::write(d.join("y.o"), b"y").unwrap();
        std::os::unix::fs::symlink("/etc", d.join("link")).unwrap();
        let fifo = std::ffi::CString::new(d.join("sub/pipe").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let rules = super::super::surfignore::Rules::parse(&d, "*.o\nbuild/\n").unwrap();
        let scan = scan(&d, &rules).unwrap();
        let files: Vec<&str> = scan.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["a.txt", "sub/b.txt"]);
        assert_eq!(
            scan.skipped,
            [
                ("link".to_owned(), "symbolic link, not followed".to_owned()),
                ("sub/pipe".to_owned(), "FIFO".to_owned()),
            ]
        );
        assert_eq!(scan.unreadable, 0);
        assert_eq!(scan.ignored, ["sub/build/", "y.o"]);
        assert!(scan.is_opaque("link") && scan.is_opaque("link/x") && scan.is_opaque("sub/pipe"));
        assert!(!scan.is_opaque("linked") && !scan.is_opaque("sub/b.txt"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_directory_is_skipped_and_its_names_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("unreadable-dir");
        std::fs::create_dir_all(d.join("locked")).unwrap();
        std::fs::write(d.join("locked/f"), b"f").unwrap();
        std::fs::write(d.join("ok"), b"ok").unwrap();
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let readable = std::fs::read_dir(d.join("locked")).is_ok();
        let scan = scan(&d, &super::super::surfignore::Rules::none());
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let scan = scan.unwrap();
        if !readable {
            // (As root, permissions do not stop reads.)
            assert_eq!(scan.files.keys().collect::<Vec<_>>(), ["ok"]);
            assert_eq!(scan.skipped.len(), 1, "{:?}", scan.skipped);
            assert_eq!(scan.skipped[0].0, "locked/");
            assert_eq!(scan.unreadable, 1);
            assert!(scan.is_opaque("locked/f") && scan.is_opaque("locked"));
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn emptied_directories_go_up_to_but_not_including_the_base() {
        let d = tmpdir("empty-dirs");
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/keep"), b"k").unwrap();
        let removed = remove_empty_parents(&d, &d.join("a/b/c/gone"));
        assert_eq!(removed, ["a/b/c", "a/b"]);
        assert!(d.join("a/keep").exists());
        std::fs::create_dir_all(d.join("e")).unwrap();
        assert_eq!(remove_empty_parents(&d, &d.join("e/gone")), ["e"]);
        assert!(d.exists(), "the base directory stays");
        assert!(remove_empty_parents(&d, &d.join("gone")).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
