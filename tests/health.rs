//! `GET /health` on a node's own port: 200 and `"health": true` on a leader
//! and on a follower that knows it; 503 with the reason on a crashed node;
//! the XML-RPC path still answers GET with 405 (what Python's clients
//! expect) and other paths 404.

use std::time::{Duration, Instant};

use surfstore::cluster::{Cluster, ClusterOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` over a fresh connection: the status code and the body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {resp}"));
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_200_when_a_leader_is_known_and_503_with_the_reason() {
    let cluster = Cluster::start_loopback(3, &ClusterOptions::default())
        .await
        .unwrap();
    let leader = cluster.wait_for_leader(None).await;
    let members = cluster.members().to_vec();
    let follower = (leader as usize + 1) % 3;
    // A follower knows the leader once its first heartbeat came.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster
        .handle(follower as u64)
        .status()
        .raft
        .leader
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the follower never heard the leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in [leader as usize, follower] {
        let (code, body) = get(&members[i], "/health").await;
        assert_eq!(code, 200, "node {i}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["health"], true, "{body}");
        assert_eq!(v["leader"], leader, "{body}");
        assert_eq!(v["id"], i, "{body}");
    }
    cluster.handle(follower as u64).crash().await.unwrap();
    let (code, body) = get(&members[follower], "/health").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["health"], false);
    assert_eq!(v["reason"], "crashed");
    assert_eq!(get(&members[leader as usize], "/RPC2").await.0, 405);
    assert_eq!(get(&members[leader as usize], "/").await.0, 405);
    assert_eq!(get(&members[leader as usize], "/nope").await.0, 404);
    cluster.shutdown().await;
}
