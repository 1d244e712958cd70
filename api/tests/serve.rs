//! The real `starling serve` process: starts with no flags but a data directory and port, says
//! where it listens, answers `/healthz`, stops cleanly on SIGTERM; refuses a foreign directory
//! or a cluster without a secret with one clear error.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, free_port};
use std::process::Command;

#[test]
fn serve_starts_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = Node::start(dir.path(), port, &[]);
    let ready = &node.ready_line;
    assert!(
        ready.contains(&format!("http://127.0.0.1:{port}")),
        "{ready}"
    );
    assert!(
        ready.contains("starling-data"),
        "says where the data lives: {ready}"
    );
    assert_eq!(
        node.http("GET", "/healthz", None, b""),
        (200, b"ok".to_vec())
    );
    assert_eq!(node.http("GET", "/readyz", None, b"").0, 200);
    // Admin endpoints are off without an admin token.
    assert_eq!(node.http("GET", "/v1/cluster", Some("x"), b"").0, 403);
    let status = node.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(dir.path().join("starling-data/STARLING_STORE").exists());
}

fn start_error(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("serve")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn a_foreign_data_dir_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let d = dir.path().display().to_string();
    let err = start_error(&["--listen", "127.0.0.1:0", "--data-dir", &d]);
    assert!(err.contains("not a Starling data directory"), "{err}");
}

#[test]
fn a_bad_otlp_endpoint_or_tls_watch_interval_is_one_clear_error() {
    let err = start_error(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
        "--otlp-endpoint",
        "127.0.0.1:4318",
    ]);
    assert!(err.contains("--otlp-endpoint"), "{err}");
    let err = start_error(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
        "--tls-watch-interval",
        "1ms",
    ]);
    assert!(err.contains("--tls-watch-interval"), "{err}");
}

#[test]
fn a_cluster_without_a_secret_is_refused() {
    let err = start_error(&["--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"]);
    assert!(err.contains("--cluster-secret"), "{err}");
}

#[test]
fn a_client_session_end_to_end_through_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), free_port(), &[]);
    let json = |b: &[u8]| -> serde_json::Value { serde_json::from_slice(b).unwrap() };
    let post_json = |path: &str, token: Option<&str>, body: serde_json::Value| {
        common::http_json(node.port, "POST", path, token, &body.to_string())
    };
    let (s, a) = post_json(
        "/v1/users",
        None,
        serde_json::json!({"handle": "alice", "password": "password1"}),
    );
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&a));
    let (s, b) = post_json(
        "/v1/users",
        None,
        serde_json::json!({"handle": "bob", "password": "password1"}),
    );
    assert_eq!(s, 201);
    let (a, b) = (json(&a), json(&b));
    let at = a["token"].as_str().unwrap();
    let bob = b["id"].as_str().unwrap();
    assert_eq!(
        node.http("PUT", &format!("/v1/following/{bob}"), Some(at), b"")
            .0,
        204
    );
    let (s, p) = post_json(
        "/v1/posts",
        Some(b["token"].as_str().unwrap()),
        serde_json::json!({"text": "hello from bob"}),
    );
    assert_eq!(s, 201);
    let pid = json(&p)["id"].as_str().unwrap().to_string();
    let (s, body) = node.http("GET", &format!("/v1/posts/{pid}"), Some(at), b"");
    assert_eq!(s, 200);
    assert_eq!(json(&body)["text"], "hello from bob");
    let (s, body) = node.http("GET", &format!("/v1/users/{bob}"), Some(at), b"");
    assert_eq!((s, json(&body)["followers_count"].as_i64()), (200, Some(1)));
    // Bad input over a real socket: a clear 4xx, never a 500.
    let (s, _) = common::http_json(node.port, "POST", "/v1/users", None, "{\"handle\":");
    assert_eq!(s, 400);
    assert_eq!(node.http("GET", "/v1/users/me", None, b"").0, 401);
    assert!(node.terminate().success());
}

#[test]
fn an_unreachable_media_bucket_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d,
            "--media-store",
            "s3://media",
        ])
        .env("AWS_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("media store s3://media"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn an_unreachable_redis_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let err = start_error(&["--listen", "127.0.0.1:0", "--data-dir", &d, "--redis", &url]);
    assert!(
        err.contains("redis") && err.contains("does not answer"),
        "{err}"
    );
}

#[test]
fn an_unreachable_scylla_cluster_is_one_clear_error() {
    let dead = free_port();
    let started = std::time::Instant::now();
    let err = start_error(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        &format!("scylla://127.0.0.1:{dead}/starling"),
    ]);
    assert!(err.contains("ScyllaDB"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{dead}")), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "fails fast"
    );
}

#[test]
fn a_misconfigured_scylla_url_is_one_clear_error() {
    let err = start_error(&["--listen", "127.0.0.1:0", "--store", "scylla://h:9042"]);
    assert!(err.contains("--store") && err.contains("keyspace"), "{err}");
}

#[test]
fn a_bad_keyspace_lease_ttl_is_one_clear_error() {
    for (flag, bad) in [
        ("--keyspace-lease-ttl", "1s"),
        ("--keyspace-lease-ttl", "11m"),
        ("--keyspace-lease-ttl", "ten"),
        ("--keyspace-tail-interval", "5ms"),
        ("--keyspace-tail-interval", "11s"),
        ("--keyspace-tail-interval", "often"),
    ] {
        let err = start_error(&["--listen", "127.0.0.1:0", "--store", "memory", flag, bad]);
        assert!(err.contains(flag), "{bad}: {err}");
    }
}

#[test]
fn a_bad_chat_history_bound_is_one_clear_error() {
    for (flag, bad) in [
        ("--chat-history-max", "50"),
        ("--chat-history-max", "99"),
        ("--chat-history-max", "ten"),
        ("--chat-history-max", "1000000001"),
        ("--chat-history-max-age", "10ms"),
        ("--chat-history-max-age", "soon"),
    ] {
        let err = start_error(&["--listen", "127.0.0.1:0", "--store", "memory", flag, bad]);
        assert!(err.contains(flag), "{flag} {bad}: {err}");
    }
}
