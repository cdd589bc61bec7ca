//! The client's file system helpers: file names checked before they touch the
//! disk, paths joined so they cannot leave the base directory, files written
//! atomically (temporary file, fsync, rename), the base directory scanned.

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

/// Writes `data` to `path` atomically: readers see the old file or the new
/// one, never a part. Parent directories are created as needed.
pub fn atomic_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}{TMP_MARK}{:016x}",
        rand::random::<u64>()
    ));
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

/// Every regular file under `base` by its synced name (`/`-separated,
/// relative), skipping the index, this client's temporary files and symbolic
/// links. Names that cannot be synced are returned apart, with the reason.
pub fn scan(base: &Path) -> std::io::Result<(BTreeMap<String, PathBuf>, Vec<String>)> {
    let mut files = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut stack = vec![(base.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("reading directory {}: {e}", dir.display()),
            )
        })?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Some(part) = entry.file_name().to_str().map(str::to_owned) else {
                skipped.push(format!("{}: the name is not UTF-8", path.display()));
                continue;
            };
            let name = format!("{prefix}{part}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push((path, format!("{name}/")));
            } else if kind.is_file() {
                if name == INDEX || name.contains(TMP_MARK) {
                    continue;
                }
                match name_problem(&name) {
                    None => {
                        files.insert(name, path);
                    }
                    Some(p) => skipped.push(format!("{}: {p}", path.display())),
                }
            }
        }
    }
    Ok((files, skipped))
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
}
