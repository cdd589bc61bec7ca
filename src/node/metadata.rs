//! The replicated state machine: filename -> (version, hashlist). Every node
//! applies the same committed commands in the same order, so the version rule
//! (exactly current + 1; current is 0 for an unknown file) is decided at apply
//! time, identically everywhere: racing updates resolve first-write-wins and the
//! apply result is what `updatefile` returns.

use std::collections::{BTreeMap, HashMap};

use crate::node::command::Command;
use crate::node::raft::LogIndex;
use crate::xmlrpc::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct FileInfo {
    pub version: i64,
    pub hashlist: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct Metadata {
    files: HashMap<String, FileInfo>,
    /// Index of the last log entry applied (commands and no-ops alike).
    applied_index: LogIndex,
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the command at log `index`; returns whether the update took effect.
    /// Invariant: indexes are applied in strictly increasing order.
    pub fn apply(&mut self, index: LogIndex, cmd: &Command) -> bool {
        self.mark_applied(index);
        match cmd {
            Command::UpdateFile {
                filename,
                version,
                hashlist,
            } => {
                let current = self.version(filename);
                if current.checked_add(1) != Some(*version) {
                    return false;
                }
                self.files.insert(
                    filename.clone(),
                    FileInfo {
                        version: *version,
                        hashlist: hashlist.clone(),
                    },
                );
                true
            }
        }
    }

    /// Records that a log entry with no effect on the map (a no-op) was applied.
    pub fn mark_applied(&mut self, index: LogIndex) {
        assert!(
            index > self.applied_index,
            "apply order invariant: index {index} applied after {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The version in this node's applied map, 0 if unknown.
    pub fn version(&self, filename: &str) -> i64 {
        self.files.get(filename).map_or(0, |f| f.version)
    }

    pub fn get(&self, filename: &str) -> Option<&FileInfo> {
        self.files.get(filename)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The `getfileinfomap` answer: `{filename: [version, hashlist]}`.
    pub fn to_value(&self) -> Value {
        let map: BTreeMap<String, Value> = self
            .files
            .iter()
            .map(|(name, info)| {
                let version = match i32::try_from(info.version) {
                    Ok(v) => Value::Int(v),
                    Err(_) => Value::I8(info.version),
                };
                (
                    name.clone(),
                    Value::Array(vec![version, Value::Array(info.hashlist.clone())]),
                )
            })
            .collect();
        Value::Struct(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(name: &str, version: i64) -> Command {
        Command::UpdateFile {
            filename: name.into(),
            version,
            hashlist: vec![Value::String(format!("h{version}"))],
        }
    }

    #[test]
    fn version_rule_is_exactly_current_plus_one() {
        let mut m = Metadata::new();
        assert_eq!(m.version("a"), 0);
        assert!(!m.apply(1, &upd("a", 0)), "version 0 is not current+1");
        assert!(!m.apply(2, &upd("a", 2)), "skipping a version is refused");
        assert!(m.apply(3, &upd("a", 1)));
        assert!(!m.apply(4, &upd("a", 1)), "a stale version is refused");
        assert!(m.apply(5, &upd("a", 2)));
        assert_eq!(m.version("a"), 2);
        assert_eq!(m.applied_index(), 5);
    }

    #[test]
    fn racing_updates_first_write_wins() {
        let mut m = Metadata::new();
        assert!(m.apply(1, &upd("f", 1)));
        assert!(!m.apply(2, &upd("f", 1)));
        assert_eq!(
            m.get("f").unwrap().hashlist,
            vec![Value::String("h1".into())]
        );
    }

    #[test]
    fn map_value_shape() {
        let mut m = Metadata::new();
        m.apply(1, &upd("f", 1));
        let v = m.to_value();
        let f = &v.as_struct().unwrap()["f"];
        assert_eq!(
            f,
            &Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::String("h1".into())])
            ])
        );
    }

    #[test]
    #[should_panic(expected = "apply order invariant")]
    fn out_of_order_apply_is_a_broken_invariant() {
        let mut m = Metadata::new();
        m.mark_applied(2);
        m.mark_applied(2);
    }
}
