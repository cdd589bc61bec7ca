//! Which cluster a peer call belongs to, and whether it comes from the
//! member it claims: so a node started from the wrong config file cannot
//! push a healthy cluster's terms around.
//!
//! Every peer call (`appendEntries`, `requestVote`, `installSnapshot`,
//! `storeBlock`, `readBlock`) carries two headers:
//!
//! ```text
//! X-SurfStore-Cluster: <16 hex digits>
//! X-SurfStore-Member: <id> <host:port>
//! ```
//!
//! The cluster id is a hash of the member list ([`cluster_id`]): every node
//! started from the same config file computes the same id with nothing to
//! coordinate at bootstrap, and a node whose config differs in any address
//! has another. (An id made at bootstrap and kept in the data directory
//! would also tell apart two clusters built from one file, but it needs one
//! node to make it and the rest to learn it before they may talk, and a
//! wiped data directory would become a stranger; the membership is static,
//! so the file is the cluster.)
//!
//! A receiver refuses, with fault 7 `NotPeer` and before the message reaches
//! the core (so its term does not move), a call:
//! - with no cluster header, or another cluster's id;
//! - whose member header names no other member, or an address that is not
//!   that member's in this node's config;
//! - whose TCP source is not an address that member's host resolved to when
//!   this node started (any loopback address counts for a member on
//!   loopback; a member whose host did not resolve is not checked by
//!   address).
//!
//! Each offender (source, cluster id, claimed member) is logged once, as a
//! warning naming what differs; later refusals only count
//! ([`Identity::refused`]). The table of offenders logged is bounded.
//!
//! Responses carry nothing: the caller opened the connection to the
//! address its own config names, and a node of another cluster refuses the
//! request before it answers anything.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::node::error::NodeError;
use crate::node::raft::NodeId;

pub const CLUSTER_HEADER: HeaderName = HeaderName::from_static("x-surfstore-cluster");
pub const MEMBER_HEADER: HeaderName = HeaderName::from_static("x-surfstore-member");

/// Offenders remembered so that each is logged once.
pub const MAX_OFFENDERS_LOGGED: usize = 1024;

/// The id of the cluster with these members (in id order): the first 8
/// bytes of SHA-256 over them, as 16 hex digits.
pub fn cluster_id(members: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(b"surfstore-cluster-v1\n");
    for m in members {
        h.update(m.as_bytes());
        h.update(b"\n");
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// This node's place in its cluster, and the check of peer calls against it.
#[derive(Debug)]
pub struct Identity {
    pub id: NodeId,
    pub cluster: String,
    members: Arc<[String]>,
    /// Per member: the addresses its host resolved to at start (`None`:
    /// it did not resolve, so calls claiming it are not checked by address).
    addrs: Vec<Option<Vec<IpAddr>>>,
    logged: Mutex<HashSet<String>>,
    refused: AtomicU64,
}

impl Identity {
    /// The identity of member `id` of `members`, resolving every member's
    /// host now (this blocks on name lookup: call it off the async workers,
    /// or where a node starts).
    pub fn new(id: NodeId, members: Arc<[String]>) -> Identity {
        let addrs = members
            .iter()
            .map(|m| match m.to_socket_addrs() {
                Ok(a) => Some(a.map(|a| a.ip()).collect()),
                Err(e) => {
                    tracing::warn!(
                        member = %m,
                        "cannot resolve the member's host ({e}); its peer calls are checked by cluster id and member header only"
                    );
                    None
                }
            })
            .collect();
        Identity::with_addrs(id, members, addrs)
    }

    /// Like [`Identity::new`] with the addresses given (tests).
    pub fn with_addrs(
        id: NodeId,
        members: Arc<[String]>,
        addrs: Vec<Option<Vec<IpAddr>>>,
    ) -> Identity {
        Identity {
            id,
            cluster: cluster_id(&members),
            members,
            addrs,
            logged: Mutex::new(HashSet::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// What member `id` of `members` sends with its peer calls, unsigned
    /// and in plain HTTP: for tests and tools that play a peer.
    pub fn playing(id: NodeId, members: &[String]) -> crate::xmlrpc::client::Transport {
        let ident = Identity::with_addrs(id, members.to_vec().into(), vec![None; members.len()]);
        crate::xmlrpc::client::Transport {
            headers: ident.headers(),
            ..Default::default()
        }
    }

    /// The headers this node sends with each of its peer calls.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let me = format!("{} {}", self.id, self.members[self.id as usize]);
        vec![
            (
                CLUSTER_HEADER,
                HeaderValue::from_str(&self.cluster).expect("hex"),
            ),
            (
                MEMBER_HEADER,
                HeaderValue::from_str(&me).unwrap_or_else(|_| HeaderValue::from_static("?")),
            ),
        ]
    }

    /// Peer calls refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Checks that a peer call (`method`) comes from another member of this
    /// cluster; returns that member's id.
    pub fn check(
        &self,
        method: &str,
        headers: &HeaderMap,
        source: Option<SocketAddr>,
    ) -> Result<NodeId, NodeError> {
        self.judge(headers, source).map_err(|why| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            self.log_once(method, headers, source, &why);
            NodeError::NotPeer(format!(
                "{method} refused: {why}; this is member {} of cluster {} ({} members: {})",
                self.id,
                self.cluster,
                self.members.len(),
                self.members.join(", ")
            ))
        })
    }

    fn judge(&self, headers: &HeaderMap, source: Option<SocketAddr>) -> Result<NodeId, String> {
        let text = |name: &HeaderName| header_text(headers, name);
        let Some(cluster) = text(&CLUSTER_HEADER) else {
            return Err(
                "no X-SurfStore-Cluster header (peer calls come only from members of this cluster)"
                    .into(),
            );
        };
        if cluster != self.cluster {
            return Err(format!(
                "it comes from cluster {cluster}, a node whose config file lists other members"
            ));
        }
        let Some(member) = text(&MEMBER_HEADER) else {
            return Err("no X-SurfStore-Member header".into());
        };
        let (id, addr) = member.split_once(' ').unwrap_or((&member, ""));
        let Some(id) = id
            .parse::<NodeId>()
            .ok()
            .filter(|&i| (i as usize) < self.members.len())
        else {
            return Err(format!(
                "the sender claims to be member `{id}`, which is not a member id"
            ));
        };
        if id == self.id {
            return Err(format!(
                "the sender claims to be member {id}, which is this node"
            ));
        }
        let expected = &self.members[id as usize];
        if addr != expected {
            return Err(format!(
                "the sender claims to be member {id} at `{addr}`, but member {id} is {expected}"
            ));
        }
        if let (Some(src), Some(Some(allowed))) = (source, self.addrs.get(id as usize)) {
            let ip = canonical(src.ip());
            let ok = allowed.iter().any(|&a| {
                let a = canonical(a);
                a == ip || (a.is_loopback() && ip.is_loopback())
            });
            if !ok {
                return Err(format!(
                    "the sender claims to be member {id} ({expected}) but connects from {}, not from an address of that host",
                    src.ip()
                ));
            }
        }
        Ok(id)
    }

    fn log_once(&self, method: &str, headers: &HeaderMap, source: Option<SocketAddr>, why: &str) {
        let header = |n: &HeaderName| header_text(headers, n).unwrap_or_default();
        let key = format!(
            "{}|{}|{}",
            source.map(|s| s.ip().to_string()).unwrap_or_default(),
            header(&CLUSTER_HEADER),
            header(&MEMBER_HEADER)
        );
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.contains(&key) {
            return;
        }
        if logged.len() >= MAX_OFFENDERS_LOGGED {
            if logged.len() == MAX_OFFENDERS_LOGGED {
                logged.insert(String::new());
                tracing::warn!(
                    node = self.id,
                    "more than {MAX_OFFENDERS_LOGGED} nodes sent refused peer calls; no more are logged one by one"
                );
            }
            return;
        }
        logged.insert(key);
        tracing::warn!(
            node = self.id,
            from = %source.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
            "refusing peer calls ({method} first): {why}; later calls from this sender are refused without a log line"
        );
    }
}

/// A header's value as text, cut to 128 characters (for checks and logs:
/// a sender cannot make either hold more).
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers.get(name).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(128)
            .collect()
    })
}

/// An IPv4 address mapped into IPv6 is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Arc<[String]> {
        vec![
            "localhost:9001".into(),
            "10.0.0.2:9002".into(),
            "localhost:9003".into(),
        ]
        .into()
    }

    fn ident() -> Identity {
        let lo = Some(vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]);
        Identity::with_addrs(
            0,
            members(),
            vec![lo.clone(), Some(vec!["10.0.0.2".parse().unwrap()]), lo],
        )
    }

    fn headers(cluster: &str, member: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CLUSTER_HEADER, HeaderValue::from_str(cluster).unwrap());
        h.insert(MEMBER_HEADER, HeaderValue::from_str(member).unwrap());
        h
    }

    fn src(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_cluster_id_is_the_member_list() {
        let a = cluster_id(&members());
        assert_eq!(a.len(), 16);
        assert_eq!(a, cluster_id(&members()));
        let mut other: Vec<String> = members().to_vec();
        other[0] = "localhost:9100".into();
        assert_ne!(a, cluster_id(&other));
        other[0] = "localhost:9001".into();
        other.swap(1, 2);
        assert_ne!(a, cluster_id(&other));
    }

    #[test]
    fn members_of_this_cluster_pass() {
        let me = ident();
        let c = me.cluster.clone();
        assert_eq!(
            me.check(
                "requestVote",
                &headers(&c, "2 localhost:9003"),
                src("127.0.0.1:50000")
            )
            .unwrap(),
            2
        );
        assert_eq!(
            me.check(
                "requestVote",
                &headers(&c, "2 localhost:9003"),
                src("127.0.0.7:50000")
            )
            .unwrap(),
            2
        );
        assert_eq!(
            me.check(
                "requestVote",
                &headers(&c, "1 10.0.0.2:9002"),
                src("[::ffff:10.0.0.2]:4000")
            )
            .unwrap(),
            1
        );
        assert_eq!(me.refused(), 0);
        // The headers a member sends pass its peers' check.
        let two = Identity::with_addrs(2, members(), vec![None, None, None]);
        let mut h = HeaderMap::new();
        for (n, v) in two.headers() {
            h.insert(n, v);
        }
        assert_eq!(
            me.check("appendEntries", &h, src("127.0.0.1:1")).unwrap(),
            2
        );
    }

    #[test]
    fn strangers_are_refused_with_the_reason() {
        let me = ident();
        let c = me.cluster.clone();
        let cases: [(HeaderMap, Option<SocketAddr>, &str); 7] = [
            (
                HeaderMap::new(),
                src("127.0.0.1:1"),
                "no X-SurfStore-Cluster",
            ),
            (
                headers("00112233aabbccdd", "1 10.0.0.2:9002"),
                src("10.0.0.2:1"),
                "cluster 00112233aabbccdd",
            ),
            (
                headers(&c, "7 localhost:9999"),
                src("127.0.0.1:1"),
                "member `7`",
            ),
            (
                headers(&c, "0 localhost:9001"),
                src("127.0.0.1:1"),
                "which is this node",
            ),
            (
                headers(&c, "2 localhost:9100"),
                src("127.0.0.1:1"),
                "but member 2 is localhost:9003",
            ),
            (
                headers(&c, "1 10.0.0.2:9002"),
                src("10.0.0.9:1"),
                "connects from 10.0.0.9",
            ),
            (
                headers(&c, "1 10.0.0.2:9002"),
                src("127.0.0.1:1"),
                "connects from 127.0.0.1",
            ),
        ];
        for (i, (h, s, want)) in cases.iter().enumerate() {
            let e = me.check("requestVote", h, *s).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("NotPeer: requestVote refused: "), "{text}");
            assert!(text.contains(want), "case {i}: {text}");
            assert_eq!(e.code(), crate::node::error::FAULT_NOT_PEER);
        }
        assert_eq!(me.refused(), cases.len() as u64);
    }

    #[test]
    fn each_offender_is_logged_once_and_the_table_is_bounded() {
        let me = ident();
        for _ in 0..3 {
            let _ = me.check(
                "requestVote",
                &headers("00112233aabbccdd", "0 x:1"),
                src("127.0.0.1:1"),
            );
        }
        assert_eq!(me.logged.lock().unwrap().len(), 1);
        for i in 0..(MAX_OFFENDERS_LOGGED + 50) {
            let _ = me.check(
                "requestVote",
                &headers(&format!("{i:016x}"), "0 x:1"),
                src("127.0.0.1:1"),
            );
        }
        assert_eq!(me.logged.lock().unwrap().len(), MAX_OFFENDERS_LOGGED + 1);
        assert_eq!(me.refused(), 3 + MAX_OFFENDERS_LOGGED as u64 + 50);
    }
}
