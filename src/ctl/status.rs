//! `ctl status`: every member asked at once (a timed `ping`, then
//! `status`), one row each, as a table or JSON. A member that does not
//! answer within the timeout is a row that says so; the others still print.

use std::fmt;
use std::time::{Duration, Instant};

use super::Nodes;
use crate::xmlrpc::Value;

/// How a member looks from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Answers, not crashed or stopped, and leads or knows a leader.
    Ok,
    /// `crash()`ed (the assignment's simulated failure).
    Crashed,
    /// Stopped for good (a disk write failed): why.
    Failed(String),
    /// Answers but knows no leader (an election, or cut off).
    NoLeader,
    /// Did not answer: why.
    Unreachable(String),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ok => write!(f, "ok"),
            Health::Crashed => write!(f, "crashed"),
            Health::Failed(why) => write!(f, "failed: {why}"),
            Health::NoLeader => write!(f, "no leader"),
            Health::Unreachable(why) => write!(f, "unreachable: {why}"),
        }
    }
}

/// One member's row; the numbers are `None` when it did not answer.
#[derive(Clone, Debug)]
pub struct MemberRow {
    pub id: u64,
    pub addr: String,
    pub role: Option<String>,
    pub term: Option<i64>,
    pub leader: Option<i64>,
    pub last: Option<i64>,
    pub commit: Option<i64>,
    pub applied: Option<i64>,
    pub snapshot: Option<i64>,
    pub files: Option<i64>,
    pub blocks: Option<i64>,
    pub block_bytes: Option<i64>,
    /// Blocks and log files on disk; `Some(-1)` for a node in memory.
    pub disk_bytes: Option<i64>,
    pub health: Health,
    /// The `ping` round trip.
    pub rtt: Option<Duration>,
}

pub(super) async fn gather(nodes: &Nodes) -> Vec<MemberRow> {
    let mut set = tokio::task::JoinSet::new();
    for (i, addr) in nodes.members.iter().enumerate() {
        let client = nodes.client(i);
        let addr = addr.clone();
        set.spawn(async move { ask(i as u64, addr, client).await });
    }
    let mut rows = Vec::with_capacity(nodes.members.len());
    while let Some(row) = set.join_next().await {
        if let Ok(row) = row {
            rows.push(row);
        }
    }
    rows.sort_by_key(|r| r.id);
    rows
}

async fn ask(id: u64, addr: String, client: crate::xmlrpc::client::Client) -> MemberRow {
    let mut row = MemberRow {
        id,
        addr,
        role: None,
        term: None,
        leader: None,
        last: None,
        commit: None,
        applied: None,
        snapshot: None,
        files: None,
        blocks: None,
        block_bytes: None,
        disk_bytes: None,
        health: Health::Unreachable(String::new()),
        rtt: None,
    };
    let started = Instant::now();
    if let Err(e) = client.call("surfstore.ping", &[]).await {
        row.health = Health::Unreachable(e.to_string());
        return row;
    }
    row.rtt = Some(started.elapsed());
    let s = match client.call("surfstore.status", &[]).await {
        Ok(s) => s,
        Err(e) => {
            row.health = Health::Unreachable(format!("status: {e}"));
            return row;
        }
    };
    let Some(m) = s.as_struct() else {
        row.health = Health::Unreachable(format!("status answered {s:?}"));
        return row;
    };
    let num = |k: &str| m.get(k).and_then(Value::as_i64);
    row.role = m.get("role").and_then(Value::as_str).map(str::to_owned);
    row.term = num("term");
    row.leader = num("leader");
    row.last = num("last_index");
    row.commit = num("commit_index");
    row.applied = num("applied_index");
    row.snapshot = num("snapshot_index");
    row.files = num("files");
    row.blocks = num("blocks");
    row.block_bytes = num("block_bytes");
    row.disk_bytes = num("disk_bytes");
    let failed = m
        .get("failed")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty());
    row.health = if let Some(why) = failed {
        Health::Failed(why.to_owned())
    } else if m.get("crashed").and_then(Value::as_bool) == Some(true) {
        Health::Crashed
    } else if row.leader.is_some_and(|l| l >= 0) {
        Health::Ok
    } else {
        Health::NoLeader
    };
    row
}

/// Bytes in binary units (`512B`, `1.5KiB`, `3.0GiB`); `-` in memory.
fn size(v: Option<i64>) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    match v {
        None => "?".into(),
        Some(n) if n < 0 => "-".into(),
        Some(n) if n < 1024 => format!("{n}B"),
        Some(n) => {
            let mut x = n as f64 / 1024.0;
            let mut unit = 0;
            while x >= 1024.0 && unit + 1 < UNITS.len() {
                x /= 1024.0;
                unit += 1;
            }
            format!("{x:.1}{}", UNITS[unit])
        }
    }
}

fn cell(v: Option<i64>) -> String {
    match v {
        Some(-1) => "-".into(),
        Some(n) => n.to_string(),
        None => "?".into(),
    }
}

pub(super) fn table(rows: &[MemberRow]) -> String {
    let header = [
        "ID", "ADDRESS", "ROLE", "TERM", "LEADER", "LAST", "COMMIT", "APPLIED", "SNAPSHOT",
        "FILES", "BLOCKS", "DISK", "RTT", "HEALTH",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.addr.clone(),
                r.role.clone().unwrap_or_else(|| "?".into()),
                cell(r.term),
                cell(r.leader),
                cell(r.last),
                cell(r.commit),
                cell(r.applied),
                cell(r.snapshot),
                cell(r.files),
                cell(r.blocks),
                size(r.disk_bytes),
                r.rtt
                    .map_or_else(|| "?".into(), |d| format!("{:.1}ms", d.as_secs_f64() * 1e3)),
                r.health.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            body.iter()
                .map(|row| row[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (c, text) in cells.iter().enumerate() {
            if c + 1 == cells.len() {
                s.push_str(text);
            } else {
                s.push_str(&format!("{text:<w$}  ", w = widths[c]));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in body {
        out.push_str(&line(row));
    }
    out
}

pub(super) fn json(rows: &[MemberRow]) -> String {
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "addr": r.addr,
                "role": r.role,
                "term": r.term,
                "leader": r.leader,
                "last_index": r.last,
                "commit_index": r.commit,
                "applied_index": r.applied,
                "snapshot_index": r.snapshot,
                "files": r.files,
                "blocks": r.blocks,
                "block_bytes": r.block_bytes,
                "disk_bytes": r.disk_bytes.filter(|&b| b >= 0),
                "in_memory": r.disk_bytes.map(|b| b < 0),
                "rtt_us": r.rtt.map(|d| d.as_micros() as u64),
                "healthy": r.health == Health::Ok,
                "health": r.health.to_string(),
            })
        })
        .collect();
    format!("{}\n", serde_json::Value::Array(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, health: Health) -> MemberRow {
        MemberRow {
            id,
            addr: format!("localhost:900{id}"),
            role: Some("follower".into()),
            term: Some(3),
            leader: Some(1),
            last: Some(10),
            commit: Some(10),
            applied: Some(9),
            snapshot: Some(0),
            files: Some(4),
            blocks: Some(2),
            block_bytes: Some(8192),
            disk_bytes: Some(3 << 20),
            health,
            rtt: Some(Duration::from_micros(1500)),
        }
    }

    #[test]
    fn the_table_aligns_columns_and_says_why_a_member_is_missing() {
        let mut gone = row(2, Health::Unreachable("connection refused".into()));
        gone.role = None;
        gone.term = None;
        gone.rtt = None;
        gone.disk_bytes = None;
        let t = table(&[row(0, Health::Ok), row(1, Health::Crashed), gone]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("ID  ADDRESS"), "{t}");
        let col = lines[0].find("TERM").unwrap();
        assert_eq!(&lines[1][col..col + 1], "3", "{t}");
        assert_eq!(&lines[3][col..col + 1], "?", "{t}");
        assert!(
            lines[1].ends_with("ok") && lines[2].ends_with("crashed"),
            "{t}"
        );
        assert!(lines[3].ends_with("unreachable: connection refused"), "{t}");
        assert!(lines[1].contains("1.5ms"), "{t}");
        let col = lines[0].find("DISK").unwrap();
        assert_eq!(&lines[1][col..col + 6], "3.0MiB", "{t}");
        assert_eq!(&lines[3][col..col + 1], "?", "{t}");
    }

    #[test]
    fn json_keeps_unknowns_as_null() {
        let mut gone = row(2, Health::Unreachable("timeout".into()));
        gone.term = None;
        let v: serde_json::Value = serde_json::from_str(&json(&[gone])).unwrap();
        assert_eq!(v[0]["term"], serde_json::Value::Null);
        assert_eq!(v[0]["healthy"], false);
        assert_eq!(v[0]["health"], "unreachable: timeout");
        assert_eq!(v[0]["disk_bytes"], 3 << 20);
        assert_eq!(v[0]["in_memory"], false);
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(size(None), "?");
        assert_eq!(size(Some(-1)), "-");
        assert_eq!(size(Some(0)), "0B");
        assert_eq!(size(Some(1023)), "1023B");
        assert_eq!(size(Some(1536)), "1.5KiB");
        assert_eq!(size(Some(5 << 30)), "5.0GiB");
    }
}
