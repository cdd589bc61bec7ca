//! What a sync prints: one line per action saying which side did what
//! ("uploaded notes.md (v3)", "deleted notes.md here (v5, deleted
//! remotely)"), then the totals, with plurals right ("1 block", "2 blocks").

use super::sync::{Action, Did, Summary};

/// `n` and the noun for it: `count(1, "block", "blocks")` is "1 block".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The line for one action.
pub fn action_line(a: &Action) -> String {
    let (n, v) = (&a.name, a.version);
    match &a.what {
        Did::Uploaded { new: true } => format!("uploaded {n} (v{v}, new here)"),
        Did::Uploaded { new: false } => format!("uploaded {n} (v{v}, changed here)"),
        Did::Downloaded { undeleted: true, .. } => format!(
            "downloaded {n} (v{v}, changed remotely; that edit wins over the delete here)"
        ),
        Did::Downloaded { new: true, .. } => format!("downloaded {n} (v{v}, new remotely)"),
        Did::Downloaded { new: false, .. } => format!("downloaded {n} (v{v}, changed remotely)"),
        Did::DeletedRemote => format!("deleted {n} remotely (v{v}, deleted here)"),
        Did::DeletedLocal => format!("deleted {n} here (v{v}, deleted remotely)"),
        Did::ConflictKept { aside } => format!(
            "conflict on {n}: changed here and remotely; the cloud's v{v} wins, your copy is kept as {aside}"
        ),
        Did::ConflictDropped => format!(
            "conflict on {n}: changed here and remotely; the cloud's v{v} wins, your change is dropped (--conflicts cloud)"
        ),
        Did::RemovedDir => format!("removed empty folder {n} here (its files were deleted remotely)"),
    }
}

/// Every line of a sync's report: the actions in order, then the totals.
pub fn lines(s: &Summary) -> Vec<String> {
    let mut out: Vec<String> = s.actions.iter().map(action_line).collect();
    let up = s.uploaded.len() + s.deleted_remote.len();
    let down = s.downloaded.len() + s.deleted_local.len();
    let mut totals = format!(
        "synced: {} up, {} down, {} ({}) sent, {} ({}) received",
        count(up, "file", "files"),
        count(down, "file", "files"),
        count(s.blocks_uploaded, "block", "blocks"),
        count(s.bytes_uploaded as usize, "byte", "bytes"),
        count(s.blocks_downloaded, "block", "blocks"),
        count(s.bytes_downloaded as usize, "byte", "bytes"),
    );
    if !s.ignored.is_empty() {
        totals.push_str(&format!(", {} ignored", s.ignored.len()));
    }
    if !s.warnings.is_empty() {
        totals.push_str(&format!(
            ", {}",
            count(s.warnings.len(), "warning", "warnings")
        ));
    }
    if !s.problems.is_empty() {
        totals.push_str(&format!(
            ", {} not synced",
            count(s.problems.len(), "problem", "problems")
        ));
    }
    out.push(totals);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(name: &str, version: i64, what: Did) -> Action {
        Action {
            name: name.into(),
            version,
            what,
        }
    }

    #[test]
    fn each_line_says_which_side_did_what() {
        let cases = [
            (
                act("a", 1, Did::Uploaded { new: true }),
                "uploaded a (v1, new here)",
            ),
            (
                act("a", 3, Did::Uploaded { new: false }),
                "uploaded a (v3, changed here)",
            ),
            (
                act(
                    "a",
                    4,
                    Did::Downloaded {
                        new: false,
                        undeleted: false,
                    },
                ),
                "downloaded a (v4, changed remotely)",
            ),
            (
                act(
                    "a",
                    1,
                    Did::Downloaded {
                        new: true,
                        undeleted: false,
                    },
                ),
                "downloaded a (v1, new remotely)",
            ),
            (
                act("a", 5, Did::DeletedRemote),
                "deleted a remotely (v5, deleted here)",
            ),
            (
                act("a", 5, Did::DeletedLocal),
                "deleted a here (v5, deleted remotely)",
            ),
        ];
        for (a, line) in cases {
            assert_eq!(action_line(&a), line);
        }
    }

    #[test]
    fn plurals_are_right() {
        let mut s = Summary {
            uploaded: vec!["a".into()],
            blocks_uploaded: 1,
            bytes_uploaded: 1,
            blocks_downloaded: 2,
            bytes_downloaded: 10,
            warnings: vec!["w".into()],
            ..Summary::default()
        };
        assert_eq!(
            lines(&s).last().unwrap(),
            "synced: 1 file up, 0 files down, 1 block (1 byte) sent, 2 blocks (10 bytes) received, 1 warning"
        );
        s.warnings.push("x".into());
        assert!(lines(&s).last().unwrap().ends_with(", 2 warnings"));
    }
}
