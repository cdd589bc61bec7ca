//! Puts the git commit the binary was built from into `SURFSTORE_GIT_COMMIT`
//! (for `surfstore --version` and the start line): `git describe`'s short
//! hash, with `-dirty` when the work tree had changes, or `unknown` when the
//! source is not a git checkout (a tarball) or git is missing.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["describe", "--always", "--dirty", "--abbrev=12"])
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SURFSTORE_GIT_COMMIT={commit}");
    // Rebuilt when HEAD moves or the index changes (a commit, a checkout).
    // Asked of git, not assumed to be `.git/`: in a worktree `.git` is a
    // file, and HEAD and the index live in the worktree's own git dir while
    // the branches live in the common one.
    let git_dir = git(&["rev-parse", "--git-dir"]);
    let common_dir = git(&["rev-parse", "--git-common-dir"]);
    let watched = git_dir
        .iter()
        .flat_map(|d| [format!("{d}/HEAD"), format!("{d}/index")])
        .chain(
            common_dir
                .iter()
                .flat_map(|d| [format!("{d}/refs/heads"), format!("{d}/packed-refs")]),
        );
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
