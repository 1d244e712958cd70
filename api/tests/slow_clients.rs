//! Slow clients and connection floods, against the real `starling` binary.
//!
//! - A request head trickled byte by byte, an idle connection, and a WebSocket upgrade request
//!   never finished are all cut by the header-read timeout (`--header-read-timeout`).
//! - A body never finished is answered 503 by the request deadline (`--request-timeout`).
//! - A WebSocket upgraded with a bad token whose client never answers the close is dropped.
//! - Connection caps (`--max-connections-per-ip`, `--max-connections`): sockets over a cap are
//!   closed at once, and a client from another address is still served; freed places are
//!   reusable. Long-lived WebSockets hold the places, so nothing here depends on timing.
//!
//! Every wait is bounded (a test fails rather than hangs), and no duration is asserted.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::Node;
use common::chat::Client;
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest any single wait of this file may take before the test fails.
const BOUND: Duration = Duration::from_secs(30);

/// How a trickling client's connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Cut {
    /// Closed (or reset) by the server, after this many bytes were sent.
    Closed { sent: usize, answer: Option<String> },
    /// Everything was sent and the server still held the connection.
    NotCut,
}

/// Sends `bytes` one every 100 ms, watching for the server to close; stops at `BOUND`.
fn trickle(port: u16, bytes: &[u8]) -> Cut {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    while start.elapsed() < BOUND {
        if sent < bytes.len() {
            if s.write_all(&bytes[sent..sent + 1]).is_err() {
                return closed(sent, &answer);
            }
            sent += 1;
        }
        match s.read(&mut buf) {
            Ok(0) => return closed(sent, &answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return closed(sent, &answer),
        }
    }
    Cut::NotCut
}

fn closed(sent: usize, answer: &[u8]) -> Cut {
    let answer = (!answer.is_empty()).then(|| {
        String::from_utf8_lossy(answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    });
    Cut::Closed { sent, answer }
}

/// The first line of an answer (its status line), empty when there is none.
fn first_line(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.lines().next().unwrap_or_default().to_string()
}

/// Asserts that `req` trickled to `port` (see [`trickle`]) is cut before its end; `what` names it.
fn assert_cut_midway(port: u16, req: &[u8], what: &str) {
    match trickle(port, req) {
        Cut::Closed { sent, .. } => assert!(sent < req.len(), "{what}: cut at {sent} bytes"),
        Cut::NotCut => panic!("{what} was never cut"),
    }
}

#[test]
fn slow_heads_idle_sockets_unfinished_bodies_and_upgrades_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(
        dir.path(),
        &["--header-read-timeout", "1s", "--request-timeout", "2s"],
    );
    let port = n.port;
    // A head of 400 bytes at 10 bytes a second would take 40 s: cut long before the end.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(360)
    );
    assert_cut_midway(port, head.as_bytes(), "a trickled head");
    // An idle connection: nothing sent at all.
    assert!(
        matches!(trickle(port, b""), Cut::Closed { sent: 0, .. }),
        "an idle connection is closed"
    );
    // A WebSocket upgrade request never finished.
    let upgrade = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(300)
    );
    assert_cut_midway(port, upgrade.as_bytes(), "an unfinished upgrade");
    // A body that never comes: the head is complete, 10 of 100 bytes follow, then nothing.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.write_all(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"handle\"")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let first = first_line(&out);
    assert!(
        first.starts_with("HTTP/1.1 503"),
        "an unfinished body: {first:?}"
    );
    // The deadline's answer is a problem like every other error, and says what happened.
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(
        text.contains("content-type: application/problem+json")
            && text.contains("\"detail\":\"the request took too long\""),
        "the deadline's answer: {text}"
    );
    // A body trickled a byte at a time (each byte before any timeout): the deadline still ends it.
    let slow_body = format!(
        "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{}",
        " ".repeat(400)
    );
    let head_len = slow_body.find("\r\n\r\n").unwrap() + 4;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&slow_body.as_bytes()[..head_len]).unwrap();
    let rest = &slow_body.as_bytes()[head_len..];
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    for b in rest.chunks(1) {
        assert!(start.elapsed() < BOUND, "a trickled body was never cut");
        if s.write_all(b).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                answer.extend_from_slice(&buf[..k]);
                break;
            }
            Err(_) => {}
        }
    }
    let first = first_line(&answer);
    assert!(
        first.starts_with("HTTP/1.1 503"),
        "a trickled body: {first:?}"
    );

    // Still healthy.
    let (st, body) = common::http(port, "GET", "/healthz", None, b"");
    assert_eq!((st, body.as_slice()), (200, &b"ok"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_websocket_whose_client_never_answers_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &[]);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", n.port))
        .await
        .unwrap();
    s.write_all(b"GET /v1/ws?token=nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    // Read (the 101, then the close frame) without ever answering, until the server hangs up.
    let mut got = Vec::new();
    let ended = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server never dropped the silent client");
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // The close frame (FIN + opcode 8) with code 4001 came before the hang-up.
    let body = &got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(body.first(), Some(&0x88), "a close frame");
    assert_eq!(&body[2..4], &4001u16.to_be_bytes());
}

/// A WebSocket client whose socket has the given source address.
async fn ws_from(src: [u8; 4], addr: SocketAddr, token: &str) -> Option<Client> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((src, 0))).unwrap();
    let stream = sock.connect(addr).await.ok()?;
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/v1/ws?token={token}"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .ok()?;
    let mut c = Client { ws };
    c.send(json!({"type":"ping"})).await;
    c.next_of(&["pong"]).await;
    Some(c)
}

/// `GET /healthz` from a source address: `Some(status)`, or `None` if the connection was
/// closed without an answer (refused by a cap).
async fn healthz_from(src: [u8; 4], addr: SocketAddr) -> Option<u16> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((src, 0))).unwrap();
    let mut s = sock.connect(addr).await.ok()?;
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut out)).await;
    let head = String::from_utf8_lossy(&out);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_are_capped_and_others_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(
        dir.path(),
        &[
            "--max-connections",
            "30",
            "--max-connections-per-ip",
            "10",
            "--ws-max-per-user",
            "100",
        ],
    );
    let addr: SocketAddr = ([127, 0, 0, 1], n.port).into();
    let (s, v) = common::http_json(
        n.port,
        "POST",
        "/v1/users",
        None,
        r#"{"handle":"flood","password":"password1"}"#,
    );
    assert_eq!(s, 201);
    let token = serde_json::from_slice::<Value>(&v).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // One address fills its share with long-lived sockets; its next ones are refused at once.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            ws_from([127, 0, 0, 2], addr, &token)
                .await
                .expect("within the cap"),
        );
    }
    let mut refused = 0;
    for _ in 0..20 {
        if healthz_from([127, 0, 0, 2], addr).await.is_none() {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 20,
        "every socket over the per-address cap is refused"
    );
    assert_eq!(
        healthz_from([127, 0, 0, 3], addr).await,
        Some(200),
        "another address is served"
    );
    // Two more addresses fill the node (30 in all): now everyone is refused…
    for src in [[127, 0, 0, 4], [127, 0, 0, 5]] {
        for _ in 0..10 {
            held.push(ws_from(src, addr, &token).await.expect("within the caps"));
        }
    }
    assert_eq!(
        healthz_from([127, 0, 0, 6], addr).await,
        None,
        "the node is at its cap"
    );
    // …the held sockets still work…
    held[0].send(json!({"type":"ping"})).await;
    held[0].next_of(&["pong"]).await;
    // …and a closed one frees its place.
    drop(held.pop());
    let start = Instant::now();
    let mut served = None;
    while served.is_none() && start.elapsed() < BOUND {
        served = healthz_from([127, 0, 0, 6], addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, Some(200), "a freed place is reused");
    eprintln!("flood: 30 sockets held, {refused} refused from one address");
}
