//! `starling serve --store scylla://…` end to end against a real CQL node (ScyllaDB or Apache
//! Cassandra) at `STARLING_SCYLLA_NODES`: sign up, follow, post, read the home feed, chat over HTTP,
//! restart on the same keyspace and find everything again; `/readyz` follows the cluster's
//! reachability at run time. Under `CI=true` a missing
//! `STARLING_SCYLLA_NODES` fails; locally the test is skipped with a loud message.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, eventually, free_port};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn cluster() -> Option<String> {
    match std::env::var("STARLING_SCYLLA_NODES") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "STARLING_SCYLLA_NODES is not set under CI=true: the ScyllaDB end-to-end test must \
             run against a CQL node (infra/test.sh starts a local Cassandra and sets it)"
        ),
        _ => {
            eprintln!(
                "\n!!! SKIPPED: STARLING_SCYLLA_NODES is not set, so `serve --store scylla://` \
                 was NOT tested.\n"
            );
            None
        }
    }
}

async fn drop_keyspace(nodes: &str, ks: &str) {
    let s = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(nodes.split(','))
        .build()
        .await
        .unwrap();
    s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .unwrap();
}

#[test]
fn serve_on_scylla_signs_up_posts_and_serves_the_feed() {
    let Some(nodes) = cluster() else { return };
    let ks = format!("t_serve_{}", std::process::id());
    let url = format!("scylla://{nodes}/{ks}");
    let dir = tempfile::tempdir().unwrap();
    let args = ["--store".to_string(), url.clone()];
    let node = Node::start(dir.path(), free_port(), &args);
    assert!(
        node.ready_line.contains("ScyllaDB store"),
        "{}",
        node.ready_line
    );
    assert_eq!(node.http("GET", "/readyz", None, b"").0, 200);
    let json = |b: &[u8]| -> serde_json::Value { serde_json::from_slice(b).unwrap() };
    let sign_up = |handle: &str| {
        let body = serde_json::json!({"handle": handle, "password": "password1"}).to_string();
        let (s, v) = common::http_json(node.port, "POST", "/v1/users", None, &body);
        assert_eq!(s, 201, "{}", String::from_utf8_lossy(&v));
        json(&v)
    };
    let (alice, bob) = (sign_up("alice"), sign_up("bob"));
    let at = alice["token"].as_str().unwrap().to_string();
    let bt = bob["token"].as_str().unwrap().to_string();
    let bob_id = bob["id"].as_str().unwrap().to_string();
    // Handles are unique (CAS on the store): a second alice is refused.
    let body = serde_json::json!({"handle": "alice", "password": "password1"}).to_string();
    assert_eq!(
        common::http_json(node.port, "POST", "/v1/users", None, &body).0,
        409
    );
    assert_eq!(
        node.http("PUT", &format!("/v1/following/{bob_id}"), Some(&at), b"")
            .0,
        204
    );
    let body = serde_json::json!({"text": "hello from bob on scylla"}).to_string();
    let (s, p) = common::http_json(node.port, "POST", "/v1/posts", Some(&bt), &body);
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&p));
    let pid = json(&p)["id"].as_str().unwrap().to_string();
    let feed_has_post = |node: &Node| {
        let (s, b) = node.http("GET", "/v1/feed", Some(&at), b"");
        s == 200 && json(&b)["items"][0]["id"] == pid.as_str()
    };
    assert!(
        eventually(Duration::from_secs(20), || feed_has_post(&node)),
        "bob's post reaches alice's home feed"
    );
    // Chat on the same store: a 1:1 conversation, an idempotent send, the history.
    let body = serde_json::json!({"members": [bob_id]}).to_string();
    let (s, c) = common::http_json(node.port, "POST", "/v1/conversations", Some(&at), &body);
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&c));
    let conv = json(&c)["id"].as_str().unwrap().to_string();
    let path = format!("/v1/conversations/{conv}/messages");
    let body = serde_json::json!({"body": "hi bob", "client_id": "c1"}).to_string();
    for _ in 0..2 {
        let (s, m) = common::http_json(node.port, "POST", &path, Some(&at), &body);
        assert_eq!(s, 201, "{}", String::from_utf8_lossy(&m));
        assert_eq!(json(&m)["seq"], 1, "a retry returns the original message");
    }
    let (s, h) = node.http("GET", &path, Some(&bt), b"");
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&h));
    let items = json(&h)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["body"], "hi bob");
    assert!(node.terminate().success());
    // A new process on the same keyspace serves the same data.
    let node = Node::start(dir.path(), free_port(), &args);
    let (s, b) = node.http("GET", &format!("/v1/posts/{pid}"), Some(&at), b"");
    assert_eq!(s, 200);
    assert_eq!(json(&b)["text"], "hello from bob on scylla");
    let (s, b) = node.http("GET", &format!("/v1/users/{bob_id}"), Some(&at), b"");
    assert_eq!((s, json(&b)["followers_count"].as_i64()), (200, Some(1)));
    assert!(node.terminate().success());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(drop_keyspace(&nodes, &ks));
}

/// A TCP forwarder to the CQL node that can cut every connection and refuse new ones: the
/// network between the node and its cluster failing, with a real database behind it.
struct Link {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    fn to(upstream: &str) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.to_string();
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut c = conns2.lock().unwrap();
                c.push(client.try_clone().unwrap());
                c.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Link { port, up, conns }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

#[test]
fn readyz_follows_the_cluster_at_run_time() {
    let Some(nodes) = cluster() else { return };
    let first = nodes.split(',').next().unwrap().to_string();
    let link = Link::to(&first);
    let ks = format!("t_ready_{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--store".to_string(),
        format!("scylla://127.0.0.1:{}/{ks}", link.port),
    ];
    let node = Node::start(dir.path(), free_port(), &args);
    let ready = |node: &Node| node.http("GET", "/readyz", None, b"").0;
    assert_eq!(ready(&node), 200);
    link.set(false);
    assert!(
        eventually(Duration::from_secs(30), || ready(&node) == 503),
        "/readyz turns 503 when the cluster is unreachable"
    );
    link.set(true);
    assert!(
        eventually(Duration::from_secs(60), || ready(&node) == 200),
        "and back to 200 when it returns (the driver reconnects)"
    );
    assert!(node.terminate().success());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(drop_keyspace(&nodes, &ks));
}
