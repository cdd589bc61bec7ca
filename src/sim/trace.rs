//! One-line renderings of messages and entries for `--trace`.

use crate::node::raft::{Entry, Message, MessageBody};

pub fn msg(m: &Message) -> String {
    let body = match &m.body {
        MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            commit,
            read_seq,
        } => format!(
            "AppendEntries prev=({prev_index},t{prev_term}) {} commit={commit} rs={read_seq}",
            span(entries)
        ),
        MessageBody::AppendEntriesResponse {
            success,
            match_index,
            conflict_index,
            conflict_term,
            read_seq,
        } => {
            if *success {
                format!("AppendOk match={match_index} rs={read_seq}")
            } else {
                format!("AppendReject prev={match_index} hint=({conflict_index},t{conflict_term}) rs={read_seq}")
            }
        }
        MessageBody::RequestVote {
            last_index,
            last_term,
            transfer,
        } => {
            let why = if *transfer { " transfer" } else { "" };
            format!("RequestVote last=({last_index},t{last_term}){why}")
        }
        MessageBody::RequestVoteResponse { granted } => {
            format!("Vote {}", if *granted { "granted" } else { "denied" })
        }
        MessageBody::PreVote {
            last_index,
            last_term,
        } => {
            format!("PreVote last=({last_index},t{last_term})")
        }
        MessageBody::PreVoteResponse { granted } => {
            format!("PreVote {}", if *granted { "granted" } else { "denied" })
        }
        MessageBody::TimeoutNow => "TimeoutNow".into(),
        MessageBody::TimeoutNowResponse { accepted } => {
            format!(
                "TimeoutNow {}",
                if *accepted { "accepted" } else { "refused" }
            )
        }
        MessageBody::InstallSnapshot { snapshot } => format!(
            "InstallSnapshot ({},t{}) {} bytes",
            snapshot.index,
            snapshot.term,
            snapshot.data.len()
        ),
    };
    format!("{}->{} t{} ctx={} {body}", m.from, m.to, m.term, m.ctx)
}

pub fn span(entries: &[Entry]) -> String {
    match (entries.first(), entries.last()) {
        (Some(a), Some(b)) if a.index == b.index => format!("[{}t{}]", a.index, a.term),
        (Some(a), Some(b)) => format!("[{}t{}..{}t{}]", a.index, a.term, b.index, b.term),
        _ => "[]".into(),
    }
}
