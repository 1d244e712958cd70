//! Malformed input, against the real `starling` binary: a table of HTTP requests (bad JSON,
//! wrong types, missing fields, oversized bodies, invalid UTF-8, unknown ids, wrong
//! content-type, huge headers, bad path parameters, bad limits and cursors, broken framing) and
//! a table of WebSocket frames (bad JSON, binary, oversized, invalid UTF-8, unknown types,
//! fields of the wrong type, protocol violations). Each must get its documented 4xx, `error`
//! frame or close code — never a 500, never a crash — and afterwards the process is alive,
//! `/healthz` answers, and a read-back shows nothing changed. The counts of inputs tried are
//! printed (RELIABILITY.md).
//!
//! The in-process chat tests (`chat.rs`) keep the abuse counter (ten bad frames → 1008); this
//! table covers the frame kinds one by one, each on a fresh connection, over the real binary.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::chat::{Client, Ended};
use common::{Node, free_port};
use futures_util::SinkExt;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// What a row must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// One of these statuses.
    Status(&'static [u16]),
    /// One of these statuses, or the connection closed without an answer (hyper refuses some
    /// framing errors that way).
    StatusOrClosed(&'static [u16]),
}

/// What the server did with a raw request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Answered with this status.
    Status(u16),
    /// Closed the connection without an answer.
    Closed,
    /// Neither answered nor closed within 20 s: always a failure (a client could hold it).
    Hung,
}

/// Sends raw bytes and reads the answer's status line.
fn raw(port: u16, bytes: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (413, 431) and close before reading everything: ignore write errors.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if out.is_empty() {
                    return Answer::Hung;
                }
                break;
            }
            Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let head = String::from_utf8_lossy(&out);
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .map_or(Answer::Closed, Answer::Status)
}

fn req(method: &str, path: &str, token: Option<&str>, ct: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        r.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(c) = ct {
        r.push_str(&format!("Content-Type: {c}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

fn json_req(method: &str, path: &str, token: Option<&str>, body: &str) -> Vec<u8> {
    req(
        method,
        path,
        token,
        Some("application/json"),
        body.as_bytes(),
    )
}

/// A valid new post whose `Idempotency-Key` header is `key`, as bytes on the wire.
fn post_with_key(token: &str, key: &[u8]) -> Vec<u8> {
    let body = br#"{"text":"keyed"}"#;
    let mut v = format!(
        "POST /v1/posts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\nIdempotency-Key: "
    )
    .into_bytes();
    v.extend_from_slice(key);
    v.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    v.extend_from_slice(body);
    v
}

fn get(path: &str, token: &str) -> Vec<u8> {
    req("GET", path, Some(token), None, b"")
}

fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let (s, b) = common::http_json(port, method, path, token, &body.to_string());
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// What the users see: compared before and after the table.
fn snapshot(
    port: u16,
    token: &str,
    me: &str,
    post: &str,
    conv: &str,
    group: &str,
) -> Vec<(u16, Value)> {
    [
        "/v1/users/me".to_string(),
        format!("/v1/users/{me}/posts"),
        format!("/v1/posts/{post}"),
        format!("/v1/posts/{post}/likes"),
        format!("/v1/posts/{post}/reposts"),
        format!("/v1/users/{me}/following"),
        "/v1/notifications".to_string(),
        "/v1/conversations".to_string(),
        format!("/v1/conversations/{conv}"),
        format!("/v1/conversations/{conv}/messages?after_seq=0"),
        format!("/v1/conversations/{group}"),
        format!("/v1/conversations/{group}/messages?after_seq=0"),
    ]
    .iter()
    .map(|p| {
        let (s, b) = common::http(port, "GET", p, Some(token), b"");
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_and_websocket_input_gets_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Groups of at most 3: the group below is full.
    let args: Vec<String> = [
        "--store",
        "memory",
        "--auth-per-minute",
        "1000000",
        "--max-group-members",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut node = Node::start(dir.path(), free_port(), &args);
    let port = node.port;
    let (s, a) = call(
        port,
        "POST",
        "/v1/users",
        None,
        json!({"handle":"alice","password":"password1"}),
    );
    assert_eq!(s, 201);
    let (s, b) = call(
        port,
        "POST",
        "/v1/users",
        None,
        json!({"handle":"bob","password":"password1"}),
    );
    assert_eq!(s, 201);
    let t = a["token"].as_str().unwrap().to_string();
    let me = a["id"].as_str().unwrap().to_string();
    let bob = b["id"].as_str().unwrap().to_string();
    let (s, p) = call(
        port,
        "POST",
        "/v1/posts",
        Some(&t),
        json!({"text":"original"}),
    );
    assert_eq!(s, 201);
    let post = p["id"].as_str().unwrap().to_string();
    let (s, c) = call(
        port,
        "POST",
        "/v1/conversations",
        Some(&t),
        json!({"members":[bob]}),
    );
    assert_eq!(s, 201);
    let conv = c["id"].as_str().unwrap().to_string();
    // In the 1:1: alice's message 1, her message 2 deleted by the entry at 3.
    let msgs = format!("/v1/conversations/{conv}/messages");
    for (seq, body, id) in [(1, "original message", "o1"), (2, "deleted message", "o2")] {
        let (s, m) = call(
            port,
            "POST",
            &msgs,
            Some(&t),
            json!({"body": body, "client_id": id}),
        );
        assert_eq!((s, m["seq"].as_u64()), (201, Some(seq)), "{m}");
    }
    let (s, _) = common::http(port, "DELETE", &format!("{msgs}/2"), Some(&t), b"");
    assert_eq!(s, 204);
    // A full group owned by alice (bob, carol), with alice's message; dave is in neither.
    let mut others = Vec::new();
    for handle in ["carol", "dave"] {
        let (s, u) = call(
            port,
            "POST",
            "/v1/users",
            None,
            json!({"handle":handle,"password":"password1"}),
        );
        assert_eq!(s, 201);
        others.push(u["id"].as_str().unwrap().to_string());
    }
    let (carol, dave) = (others[0].clone(), others[1].clone());
    let (s, gv) = call(
        port,
        "POST",
        "/v1/conversations",
        Some(&t),
        json!({"members":[bob, carol],"name":"plans"}),
    );
    assert_eq!(s, 201, "{gv}");
    let group = gv["id"].as_str().unwrap().to_string();
    let (s, m) = call(
        port,
        "POST",
        &format!("/v1/conversations/{group}/messages"),
        Some(&t),
        json!({"body":"group message","client_id":"g1"}),
    );
    assert_eq!(s, 201, "{m}");
    let before = snapshot(port, &t, &me, &post, &conv, &group);

    let t = t.as_str();
    let big_json = format!("{{\"text\":\"{}\"}}", "x".repeat(70 * 1024));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let many_headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(1 << 20));
    let long_handle = "h".repeat(5000);
    let pp = format!("/v1/posts/{post}");
    let c1 = format!("/v1/conversations/{conv}");
    let g = format!("/v1/conversations/{group}");
    let m1 = format!("{msgs}/1");
    let long = |n: usize| "n".repeat(n);
    let followers = format!("/v1/users/{me}/followers");
    const BAD: &[u16] = &[400];
    const SHAPE: &[u16] = &[422];
    const NF: &[u16] = &[404];
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        // JSON bodies.
        ("post: not JSON", json_req("POST", "/v1/posts", Some(t), "{not json"), Want::Status(BAD)),
        ("post: empty body", json_req("POST", "/v1/posts", Some(t), ""), Want::Status(BAD)),
        // An Idempotency-Key outside 1-128 visible ASCII characters (spaces only inside).
        ("post: empty Idempotency-Key", post_with_key(t, b""), Want::Status(BAD)),
        ("post: Idempotency-Key with a tab", post_with_key(t, b"a\tb"), Want::Status(BAD)),
        ("post: Idempotency-Key of 129 characters", post_with_key(t, &[b'k'; 129]), Want::Status(BAD)),
        ("post: null", json_req("POST", "/v1/posts", Some(t), "null"), Want::Status(SHAPE)),
        ("post: array", json_req("POST", "/v1/posts", Some(t), "[]"), Want::Status(SHAPE)),
        ("post: text is a number", json_req("POST", "/v1/posts", Some(t), r#"{"text":5}"#), Want::Status(SHAPE)),
        ("post: text is null", json_req("POST", "/v1/posts", Some(t), r#"{"text":null}"#), Want::Status(SHAPE)),
        ("post: missing text", json_req("POST", "/v1/posts", Some(t), "{}"), Want::Status(SHAPE)),
        ("post: empty text", json_req("POST", "/v1/posts", Some(t), r#"{"text":""}"#), Want::Status(SHAPE)),
        ("post: 5001 chars", json_req("POST", "/v1/posts", Some(t), &format!("{{\"text\":\"{}\"}}", "y".repeat(5001))), Want::Status(SHAPE)),
        ("post: media not a list", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","media":"x"}"#), Want::Status(SHAPE)),
        ("post: media not ids", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","media":["zz"]}"#), Want::Status(&[400, 422])),
        ("post: unknown media", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","media":["12345"]}"#), Want::Status(&[404, 422])),
        ("post: trailing garbage", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a"} x"#), Want::Status(BAD)),
        ("post: duplicate field", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","text":"b"}"#), Want::Status(SHAPE)),
        ("post: invalid UTF-8", req("POST", "/v1/posts", Some(t), Some("application/json"), b"{\"text\":\"\xff\xfe\"}"), Want::Status(BAD)),
        ("post: lone surrogate escape", json_req("POST", "/v1/posts", Some(t), r#"{"text":"\ud800"}"#), Want::Status(&[400, 422])),
        ("post: nested 5000 deep", json_req("POST", "/v1/posts", Some(t), &deep), Want::Status(&[400, 422])),
        ("post: over 64 KiB", json_req("POST", "/v1/posts", Some(t), &big_json), Want::StatusOrClosed(&[413])),
        ("post: claims 10 GB", {
            let mut r = format!("POST /v1/posts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n").into_bytes();
            r.extend_from_slice(b"{\"text\":");
            r
        }, Want::Status(&[413])),
        ("post: chunked over 64 KiB", {
            let chunk = "z".repeat(16 * 1024);
            let mut r = format!("POST /v1/posts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            r.push_str("8\r\n{\"text\":\r\n");
            for _ in 0..5 {
                r.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
            }
            r.push_str("0\r\n\r\n");
            r.into_bytes()
        }, Want::StatusOrClosed(&[413])),
        ("post: text/plain", req("POST", "/v1/posts", Some(t), Some("text/plain"), br#"{"text":"a"}"#), Want::Status(BAD)),
        ("post: no content-type", req("POST", "/v1/posts", Some(t), None, br#"{"text":"a"}"#), Want::Status(BAD)),
        ("post: form content-type", req("POST", "/v1/posts", Some(t), Some("application/x-www-form-urlencoded"), b"text=a"), Want::Status(BAD)),
        ("post: content-length not a number", format!("POST /v1/posts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{{}}").into_bytes(), Want::StatusOrClosed(BAD)),
        ("post: content-length and chunked", format!("POST /v1/posts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes(), Want::StatusOrClosed(BAD)),
        ("edit: not JSON", json_req("PATCH", &pp, Some(t), "{"), Want::Status(BAD)),
        ("edit: empty text", json_req("PATCH", &pp, Some(t), r#"{"text":""}"#), Want::Status(SHAPE)),
        ("edit: text is a list", json_req("PATCH", &pp, Some(t), r#"{"text":["a"]}"#), Want::Status(SHAPE)),
        ("like: post id not a number", req("PUT", "/v1/posts/abc/like", Some(t), None, b""), Want::Status(BAD)),
        ("like: post id over 64 bits", req("PUT", "/v1/posts/99999999999999999999/like", Some(t), None, b""), Want::Status(BAD)),
        ("like: negative post id", req("PUT", "/v1/posts/-1/like", Some(t), None, b""), Want::Status(BAD)),
        ("like: unknown post", req("PUT", "/v1/posts/12345/like", Some(t), None, b""), Want::Status(NF)),
        ("unlike: post id not a number", req("DELETE", "/v1/posts/x/like", Some(t), None, b""), Want::Status(BAD)),
        ("likes: unknown post", get("/v1/posts/12345/likes", t), Want::Status(NF)),
        ("likes: limit 0", get(&format!("{pp}/likes?limit=0"), t), Want::Status(BAD)),
        ("likes: limit 101", get(&format!("{pp}/likes?limit=101"), t), Want::Status(BAD)),
        ("likes: cursor not an id", get(&format!("{pp}/likes?cursor=zz"), t), Want::Status(BAD)),
        ("reply: reply_to not an id", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","reply_to":"zz"}"#), Want::Status(BAD)),
        ("reply: reply_to a number", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","reply_to":5}"#), Want::Status(SHAPE)),
        ("reply: reply_to no post", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","reply_to":"12345"}"#), Want::Status(SHAPE)),
        ("quote: quote_of not an id", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","quote_of":"zz"}"#), Want::Status(BAD)),
        ("quote: quote_of a number", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","quote_of":5}"#), Want::Status(SHAPE)),
        ("quote: quote_of no post", json_req("POST", "/v1/posts", Some(t), r#"{"text":"a","quote_of":"12345"}"#), Want::Status(SHAPE)),
        ("repost: post id not a number", req("PUT", "/v1/posts/abc/repost", Some(t), None, b""), Want::Status(BAD)),
        ("repost: post id over 64 bits", req("PUT", "/v1/posts/99999999999999999999/repost", Some(t), None, b""), Want::Status(BAD)),
        ("repost: unknown post", req("PUT", "/v1/posts/12345/repost", Some(t), None, b""), Want::Status(NF)),
        ("unrepost: post id not a number", req("DELETE", "/v1/posts/x/repost", Some(t), None, b""), Want::Status(BAD)),
        ("reposts: unknown post", get("/v1/posts/12345/reposts", t), Want::Status(NF)),
        ("reposts: limit 0", get(&format!("{pp}/reposts?limit=0"), t), Want::Status(BAD)),
        ("reposts: cursor not an id", get(&format!("{pp}/reposts?cursor=zz"), t), Want::Status(BAD)),
        ("thread: id not a number", get("/v1/posts/abc/thread", t), Want::Status(BAD)),
        ("thread: unknown post", get("/v1/posts/12345/thread", t), Want::Status(NF)),
        ("thread: limit 0", get(&format!("{pp}/thread?limit=0"), t), Want::Status(BAD)),
        ("thread: cursor not an id", get(&format!("{pp}/thread?cursor=-1"), t), Want::Status(BAD)),
        ("friend requests: unknown direction", get("/v1/friend-requests?direction=sideways", t), Want::Status(BAD)),
        ("friend requests: limit 0", get("/v1/friend-requests?limit=0", t), Want::Status(BAD)),
        ("friend requests: cursor not an id", get("/v1/friend-requests?cursor=x", t), Want::Status(BAD)),
        ("decline: id not a number", req("POST", "/v1/friend-requests/abc/decline", Some(t), None, b""), Want::Status(BAD)),
        ("decline: unknown request", req("POST", "/v1/friend-requests/12345/decline", Some(t), None, b""), Want::Status(NF)),
        ("cancel: unknown request", req("DELETE", "/v1/friend-requests/12345", Some(t), None, b""), Want::Status(NF)),
        ("password: not JSON", json_req("PUT", "/v1/users/me/password", Some(t), "{"), Want::Status(BAD)),
        ("password: wrong old password", json_req("PUT", "/v1/users/me/password", Some(t), r#"{"old":"not the password","new":"password2"}"#), Want::Status(&[403])),
        ("password: new too short", json_req("PUT", "/v1/users/me/password", Some(t), r#"{"old":"password1","new":"short"}"#), Want::Status(SHAPE)),
        ("password: new 257 chars", json_req("PUT", "/v1/users/me/password", Some(t), &format!("{{\"old\":\"password1\",\"new\":\"{}\"}}", "p".repeat(257))), Want::Status(SHAPE)),
        ("password: no new", json_req("PUT", "/v1/users/me/password", Some(t), r#"{"old":"password1"}"#), Want::Status(SHAPE)),
        ("password: old a number", json_req("PUT", "/v1/users/me/password", Some(t), r#"{"old":1,"new":"password2"}"#), Want::Status(SHAPE)),
        ("password: unknown field", json_req("PUT", "/v1/users/me/password", Some(t), r#"{"old":"password1","new":"password2","x":1}"#), Want::Status(SHAPE)),
        ("delete me: not JSON", json_req("DELETE", "/v1/users/me", Some(t), "{"), Want::Status(BAD)),
        ("delete me: no body", req("DELETE", "/v1/users/me", Some(t), None, b""), Want::Status(BAD)),
        ("delete me: wrong password", json_req("DELETE", "/v1/users/me", Some(t), r#"{"password":"not the password"}"#), Want::Status(&[403])),
        ("delete me: password a number", json_req("DELETE", "/v1/users/me", Some(t), r#"{"password":1}"#), Want::Status(SHAPE)),
        ("delete me: unknown field", json_req("DELETE", "/v1/users/me", Some(t), r#"{"password":"password1","really":true}"#), Want::Status(SHAPE)),
        ("me: bio 301 chars", json_req("PATCH", "/v1/users/me", Some(t), &format!("{{\"bio\":\"{}\"}}", "b".repeat(301))), Want::Status(SHAPE)),
        ("me: bio a number", json_req("PATCH", "/v1/users/me", Some(t), r#"{"bio":5}"#), Want::Status(SHAPE)),
        ("me: bio with a control character", json_req("PATCH", "/v1/users/me", Some(t), r#"{"bio":"a\u0007"}"#), Want::Status(SHAPE)),
        ("me: avatar not an id", json_req("PATCH", "/v1/users/me", Some(t), r#"{"avatar":"x"}"#), Want::Status(BAD)),
        ("me: avatar no media", json_req("PATCH", "/v1/users/me", Some(t), r#"{"avatar":"12345"}"#), Want::Status(SHAPE)),
        ("likes: repeated limit", get(&format!("{pp}/likes?limit=1&limit=2"), t), Want::Status(BAD)),
        ("me: display_name a number", json_req("PATCH", "/v1/users/me", Some(t), r#"{"display_name":7}"#), Want::Status(SHAPE)),
        ("me: display_name 10k chars", json_req("PATCH", "/v1/users/me", Some(t), &format!("{{\"display_name\":\"{}\"}}", "d".repeat(10_000))), Want::Status(SHAPE)),
        ("sign-up: bad handle", json_req("POST", "/v1/users", None, r#"{"handle":"a b","password":"password1"}"#), Want::Status(SHAPE)),
        ("sign-up: handle a number", json_req("POST", "/v1/users", None, r#"{"handle":1,"password":"password1"}"#), Want::Status(SHAPE)),
        ("sign-up: 5000-char handle", json_req("POST", "/v1/users", None, &format!("{{\"handle\":\"{long_handle}\",\"password\":\"password1\"}}")), Want::Status(SHAPE)),
        ("sign-up: no password", json_req("POST", "/v1/users", None, r#"{"handle":"carol"}"#), Want::Status(SHAPE)),
        ("sign-up: taken handle", json_req("POST", "/v1/users", None, r#"{"handle":"alice","password":"password1"}"#), Want::Status(&[409])),
        ("login: no password", json_req("POST", "/v1/sessions", None, r#"{"handle":"alice"}"#), Want::Status(SHAPE)),
        ("login: wrong password", json_req("POST", "/v1/sessions", None, r#"{"handle":"alice","password":"nope-nope"}"#), Want::Status(&[401])),
        ("login: unknown handle", json_req("POST", "/v1/sessions", None, r#"{"handle":"nobody","password":"nope-nope"}"#), Want::Status(&[401])),
        ("conversation: members not a list", json_req("POST", "/v1/conversations", Some(t), r#"{"members":"x"}"#), Want::Status(SHAPE)),
        ("conversation: member not an id", json_req("POST", "/v1/conversations", Some(t), r#"{"members":["abc"]}"#), Want::Status(&[400, 422])),
        ("conversation: unknown member", json_req("POST", "/v1/conversations", Some(t), r#"{"members":["4242"]}"#), Want::Status(NF)),
        ("conversation: 2000 members", json_req("POST", "/v1/conversations", Some(t), &json!({"members": (1..2000).map(|i| i.to_string()).collect::<Vec<_>>()}).to_string()), Want::Status(&[404, 422])),
        ("conversation: name 101 chars", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"name":long(101)}).to_string()), Want::Status(SHAPE)),
        ("conversation: topic 501 chars", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"name":"g","topic":long(501)}).to_string()), Want::Status(SHAPE)),
        ("conversation: name with a control character", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"name":"a\u{7}b"}).to_string()), Want::Status(SHAPE)),
        ("conversation: topic with a newline", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"name":"g","topic":"a\nb"}).to_string()), Want::Status(SHAPE)),
        ("conversation: name a number", json_req("POST", "/v1/conversations", Some(t), r#"{"members":[],"name":5}"#), Want::Status(SHAPE)),
        ("conversation: a 1:1 with a topic", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"topic":"t"}).to_string()), Want::Status(&[422])),
        ("conversation: an avatar that is no media", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"name":"g","avatar":"12345"}).to_string()), Want::Status(&[422])),
        ("conversation: avatar not an id", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"name":"g","avatar":"x"}).to_string()), Want::Status(BAD)),
        ("conversation: unknown field", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[bob],"colour":"red"}).to_string()), Want::Status(SHAPE)),
        ("conversation: no members field", json_req("POST", "/v1/conversations", Some(t), "{}"), Want::Status(SHAPE)),
        ("conversation: no one else, no name", json_req("POST", "/v1/conversations", Some(t), &json!({"members":[me]}).to_string()), Want::Status(SHAPE)),
        ("conversation: not JSON", json_req("POST", "/v1/conversations", Some(t), "{\"members\":"), Want::Status(BAD)),
        ("message: empty body", json_req("POST", &msgs, Some(t), r#"{"body":"","client_id":"c"}"#), Want::Status(SHAPE)),
        ("message: no client_id", json_req("POST", &msgs, Some(t), r#"{"body":"x"}"#), Want::Status(SHAPE)),
        ("message: client_id 10k", json_req("POST", &msgs, Some(t), &format!("{{\"body\":\"x\",\"client_id\":\"{}\"}}", "c".repeat(10_000))), Want::Status(SHAPE)),
        ("message: body an object", json_req("POST", &msgs, Some(t), r#"{"body":{},"client_id":"c"}"#), Want::Status(SHAPE)),
        ("message: body 60k chars", json_req("POST", &msgs, Some(t), &format!("{{\"body\":\"{}\",\"client_id\":\"c\"}}", "b".repeat(60_000))), Want::Status(SHAPE)),
        ("rename: a 1:1", json_req("PATCH", &c1, Some(t), r#"{"name":"x"}"#), Want::Status(SHAPE)),
        ("rename: name 101 chars", json_req("PATCH", &g, Some(t), &json!({"name":long(101)}).to_string()), Want::Status(SHAPE)),
        ("rename: topic 501 chars", json_req("PATCH", &g, Some(t), &json!({"topic":long(501)}).to_string()), Want::Status(SHAPE)),
        ("rename: name with a control character", json_req("PATCH", &g, Some(t), &json!({"name":"a\u{1b}b"}).to_string()), Want::Status(SHAPE)),
        ("rename: name a number", json_req("PATCH", &g, Some(t), r#"{"name":1}"#), Want::Status(SHAPE)),
        ("rename: avatar not an id", json_req("PATCH", &g, Some(t), r#"{"avatar":"x"}"#), Want::Status(BAD)),
        ("rename: avatar a number", json_req("PATCH", &g, Some(t), r#"{"avatar":5}"#), Want::Status(SHAPE)),
        ("rename: unknown field", json_req("PATCH", &g, Some(t), r#"{"title":"x"}"#), Want::Status(SHAPE)),
        ("rename: not JSON", json_req("PATCH", &g, Some(t), "{"), Want::Status(BAD)),
        ("rename: unknown conversation", json_req("PATCH", "/v1/conversations/123", Some(t), r#"{"name":"x"}"#), Want::Status(NF)),
        ("rename: id not a number", json_req("PATCH", "/v1/conversations/x", Some(t), r#"{"name":"x"}"#), Want::Status(BAD)),
        ("add: to a 1:1", req("PUT", &format!("{c1}/members/{carol}"), Some(t), None, b""), Want::Status(SHAPE)),
        ("add: over the member cap", req("PUT", &format!("{g}/members/{dave}"), Some(t), None, b""), Want::Status(SHAPE)),
        ("add: unknown user", req("PUT", &format!("{g}/members/4242"), Some(t), None, b""), Want::Status(NF)),
        ("add: user not an id", req("PUT", &format!("{g}/members/abc"), Some(t), None, b""), Want::Status(BAD)),
        ("add: user negative", req("PUT", &format!("{g}/members/-1"), Some(t), None, b""), Want::Status(BAD)),
        ("add: to an unknown conversation", req("PUT", &format!("/v1/conversations/123/members/{dave}"), Some(t), None, b""), Want::Status(NF)),
        ("remove: from a 1:1", req("DELETE", &format!("{c1}/members/{bob}"), Some(t), None, b""), Want::Status(SHAPE)),
        ("leave: a 1:1", req("DELETE", &format!("{c1}/members/{me}"), Some(t), None, b""), Want::Status(SHAPE)),
        ("remove: user not an id", req("DELETE", &format!("{g}/members/abc"), Some(t), None, b""), Want::Status(BAD)),
        ("remove: from an unknown conversation", req("DELETE", &format!("/v1/conversations/123/members/{bob}"), Some(t), None, b""), Want::Status(NF)),
        ("role: unknown role", json_req("PUT", &format!("{g}/members/{bob}/role"), Some(t), r#"{"role":"king"}"#), Want::Status(SHAPE)),
        ("role: empty role", json_req("PUT", &format!("{g}/members/{bob}/role"), Some(t), r#"{"role":""}"#), Want::Status(SHAPE)),
        ("role: role a number", json_req("PUT", &format!("{g}/members/{bob}/role"), Some(t), r#"{"role":1}"#), Want::Status(SHAPE)),
        ("role: no role", json_req("PUT", &format!("{g}/members/{bob}/role"), Some(t), "{}"), Want::Status(SHAPE)),
        ("role: unknown field", json_req("PUT", &format!("{g}/members/{bob}/role"), Some(t), r#"{"role":"admin","why":"x"}"#), Want::Status(SHAPE)),
        ("role: not JSON", json_req("PUT", &format!("{g}/members/{bob}/role"), Some(t), "role=admin"), Want::Status(BAD)),
        ("role: not a member (the path names a member: 404)", json_req("PUT", &format!("{g}/members/{dave}/role"), Some(t), r#"{"role":"admin"}"#), Want::Status(NF)),
        ("role: unknown user", json_req("PUT", &format!("{g}/members/4242/role"), Some(t), r#"{"role":"admin"}"#), Want::Status(NF)),
        ("role: the owner's own", json_req("PUT", &format!("{g}/members/{me}/role"), Some(t), r#"{"role":"member"}"#), Want::Status(SHAPE)),
        ("role: in a 1:1", json_req("PUT", &format!("{c1}/members/{bob}/role"), Some(t), r#"{"role":"admin"}"#), Want::Status(SHAPE)),
        ("role: user not an id", json_req("PUT", &format!("{g}/members/x/role"), Some(t), r#"{"role":"admin"}"#), Want::Status(BAD)),
        ("read marker: seq negative", json_req("PUT", &format!("{c1}/read"), Some(t), r#"{"seq":-1}"#), Want::Status(SHAPE)),
        ("read marker: seq a string", json_req("PUT", &format!("{c1}/read"), Some(t), r#"{"seq":"1"}"#), Want::Status(SHAPE)),
        ("read marker: seq a float", json_req("PUT", &format!("{c1}/read"), Some(t), r#"{"seq":1.5}"#), Want::Status(SHAPE)),
        ("read marker: seq 2^64", json_req("PUT", &format!("{c1}/read"), Some(t), r#"{"seq":18446744073709551616}"#), Want::Status(SHAPE)),
        ("read marker: no seq", json_req("PUT", &format!("{c1}/read"), Some(t), "{}"), Want::Status(SHAPE)),
        ("read marker: not JSON", json_req("PUT", &format!("{c1}/read"), Some(t), "{\"seq\":"), Want::Status(BAD)),
        ("read marker: unknown conversation", json_req("PUT", "/v1/conversations/123/read", Some(t), r#"{"seq":1}"#), Want::Status(NF)),
        ("read marker: id not a number", json_req("PUT", "/v1/conversations/x/read", Some(t), r#"{"seq":1}"#), Want::Status(BAD)),
        ("edit message: empty body", json_req("PATCH", &m1, Some(t), r#"{"body":""}"#), Want::Status(SHAPE)),
        ("edit message: only spaces", json_req("PATCH", &m1, Some(t), r#"{"body":"   "}"#), Want::Status(SHAPE)),
        ("edit message: body 4001 chars", json_req("PATCH", &m1, Some(t), &json!({"body":"b".repeat(4001)}).to_string()), Want::Status(SHAPE)),
        ("edit message: client_id 65 bytes", json_req("PATCH", &m1, Some(t), &json!({"body":"changed","client_id":"c".repeat(65)}).to_string()), Want::Status(SHAPE)),
        ("edit message: empty client_id", json_req("PATCH", &m1, Some(t), r#"{"body":"changed","client_id":""}"#), Want::Status(SHAPE)),
        ("edit message: body a number", json_req("PATCH", &m1, Some(t), r#"{"body":5}"#), Want::Status(SHAPE)),
        ("edit message: no body", json_req("PATCH", &m1, Some(t), "{}"), Want::Status(SHAPE)),
        ("edit message: unknown field", json_req("PATCH", &m1, Some(t), r#"{"body":"changed","text":"x"}"#), Want::Status(SHAPE)),
        ("edit message: not JSON", json_req("PATCH", &m1, Some(t), "{"), Want::Status(BAD)),
        ("edit message: seq not a number", json_req("PATCH", &format!("{msgs}/abc"), Some(t), r#"{"body":"changed"}"#), Want::Status(BAD)),
        ("edit message: seq negative", json_req("PATCH", &format!("{msgs}/-1"), Some(t), r#"{"body":"changed"}"#), Want::Status(BAD)),
        ("edit message: seq overflows u64", json_req("PATCH", &format!("{msgs}/99999999999999999999999"), Some(t), r#"{"body":"changed"}"#), Want::Status(BAD)),
        ("edit message: unknown seq", json_req("PATCH", &format!("{msgs}/999"), Some(t), r#"{"body":"changed"}"#), Want::Status(NF)),
        ("edit message: seq 0", json_req("PATCH", &format!("{msgs}/0"), Some(t), r#"{"body":"changed"}"#), Want::Status(NF)),
        ("edit message: deleted", json_req("PATCH", &format!("{msgs}/2"), Some(t), r#"{"body":"changed"}"#), Want::Status(&[409])),
        ("edit message: a delete entry", json_req("PATCH", &format!("{msgs}/3"), Some(t), r#"{"body":"changed"}"#), Want::Status(SHAPE)),
        ("edit message: unknown conversation", json_req("PATCH", "/v1/conversations/123/messages/1", Some(t), r#"{"body":"changed"}"#), Want::Status(NF)),
        ("delete message: unknown seq", req("DELETE", &format!("{msgs}/999"), Some(t), None, b""), Want::Status(NF)),
        ("delete message: seq 0", req("DELETE", &format!("{msgs}/0"), Some(t), None, b""), Want::Status(NF)),
        ("delete message: seq not a number", req("DELETE", &format!("{msgs}/abc"), Some(t), None, b""), Want::Status(BAD)),
        ("delete message: seq 1.5", req("DELETE", &format!("{msgs}/1.5"), Some(t), None, b""), Want::Status(BAD)),
        ("delete message: a delete entry", req("DELETE", &format!("{msgs}/3"), Some(t), None, b""), Want::Status(SHAPE)),
        ("delete message: unknown conversation", req("DELETE", "/v1/conversations/123/messages/1", Some(t), None, b""), Want::Status(NF)),
        ("friend request: to not an id", json_req("POST", "/v1/friend-requests", Some(t), r#"{"to":"me"}"#), Want::Status(&[400, 422])),
        ("friend request: to unknown", json_req("POST", "/v1/friend-requests", Some(t), r#"{"to":"4242"}"#), Want::Status(NF)),
        ("notifications: limit 0", get("/v1/notifications?limit=0", t), Want::Status(BAD)),
        ("notifications: limit 101", get("/v1/notifications?limit=101", t), Want::Status(BAD)),
        ("notifications: cursor not an id", get("/v1/notifications?cursor=zz", t), Want::Status(BAD)),
        ("notifications: since not an id", get("/v1/notifications?since=-1", t), Want::Status(BAD)),
        ("notifications: repeated since", get("/v1/notifications?since=1&since=2", t), Want::Status(BAD)),
        ("mark read: up_to not an id", json_req("PUT", "/v1/notifications/read", Some(t), r#"{"up_to":"x"}"#), Want::Status(BAD)),
        ("mark read: up_to a number", json_req("PUT", "/v1/notifications/read", Some(t), r#"{"up_to":5}"#), Want::Status(SHAPE)),
        ("mark read: no up_to", json_req("PUT", "/v1/notifications/read", Some(t), "{}"), Want::Status(SHAPE)),
        ("mark read: unknown field", json_req("PUT", "/v1/notifications/read", Some(t), r#"{"up_to":"1","x":1}"#), Want::Status(SHAPE)),
        ("mark read: not JSON", json_req("PUT", "/v1/notifications/read", Some(t), "{up_to"), Want::Status(BAD)),
        ("mark read: array", json_req("PUT", "/v1/notifications/read", Some(t), "[]"), Want::Status(SHAPE)),
        ("media: empty body", req("POST", "/v1/media", Some(t), Some("image/png"), b""), Want::Status(&[400, 422])),
        ("media: claims 11 MiB", {
            let mut r = format!("POST /v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n", 11 << 20).into_bytes();
            r.extend_from_slice(b"\x89PNG");
            r
        }, Want::Status(&[413])),
        ("media: PNG declared, JPEG bytes", req("POST", "/v1/media", Some(t), Some("image/png"), b"\xff\xd8\xff\xe0\0\x10JFIF\0"), Want::Status(SHAPE)),
        ("media: HTML declared as GIF", req("POST", "/v1/media", Some(t), Some("image/gif"), b"<html><script>alert(1)</script>"), Want::Status(SHAPE)),
        ("media: SVG", req("POST", "/v1/media", Some(t), Some("image/svg+xml"), br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#), Want::Status(&[415])),
        ("media: HTML", req("POST", "/v1/media", Some(t), Some("text/html"), b"<script>alert(1)</script>"), Want::Status(&[415])),
        // Path parameters and unknown ids.
        ("post id not a number", get("/v1/posts/abc", t), Want::Status(BAD)),
        ("post id negative", get("/v1/posts/-1", t), Want::Status(BAD)),
        ("post id overflows u64", get("/v1/posts/99999999999999999999999", t), Want::Status(BAD)),
        ("post id unknown", get("/v1/posts/123", t), Want::Status(NF)),
        ("post id 0", get("/v1/posts/0", t), Want::Status(NF)),
        ("post id percent-encoded invalid UTF-8", get("/v1/posts/%FF%FE", t), Want::Status(BAD)),
        ("delete unknown post", req("DELETE", "/v1/posts/123", Some(t), None, b""), Want::Status(NF)),
        ("user id not a number", get("/v1/users/abc", t), Want::Status(BAD)),
        ("user id unknown", get("/v1/users/123", t), Want::Status(NF)),
        ("handle unknown", get("/v1/users/by-handle/nobody", t), Want::Status(NF)),
        ("handle with NUL", get("/v1/users/by-handle/%00", t), Want::Status(&[400, 404])),
        ("handle 5000 chars", get(&format!("/v1/users/by-handle/{long_handle}"), t), Want::Status(&[400, 404])),
        ("follow id not a number", req("PUT", "/v1/following/abc", Some(t), None, b""), Want::Status(BAD)),
        ("follow unknown", req("PUT", "/v1/following/123", Some(t), None, b""), Want::Status(NF)),
        ("follow myself", req("PUT", &format!("/v1/following/{me}"), Some(t), None, b""), Want::Status(&[400, 403, 409, 422])),
        ("block id not a number", req("PUT", "/v1/blocks/x", Some(t), None, b""), Want::Status(BAD)),
        ("block unknown", req("PUT", "/v1/blocks/123", Some(t), None, b""), Want::Status(NF)),
        ("accept id not a number", req("POST", "/v1/friend-requests/x/accept", Some(t), None, b""), Want::Status(BAD)),
        ("accept unknown", req("POST", "/v1/friend-requests/123/accept", Some(t), None, b""), Want::Status(NF)),
        ("conversation id not a number", get("/v1/conversations/x/messages", t), Want::Status(BAD)),
        ("conversation unknown", get("/v1/conversations/123/messages", t), Want::Status(NF)),
        ("send to unknown conversation", json_req("POST", "/v1/conversations/123/messages", Some(t), r#"{"body":"x","client_id":"c"}"#), Want::Status(NF)),
        ("conversation get: id not a number", get("/v1/conversations/x", t), Want::Status(BAD)),
        ("conversation get: id overflows u64", get("/v1/conversations/99999999999999999999999", t), Want::Status(BAD)),
        ("conversation get: unknown", get("/v1/conversations/123", t), Want::Status(NF)),
        ("media id not a number", get("/v1/media/x", t), Want::Status(BAD)),
        ("media unknown", get("/v1/media/123", t), Want::Status(NF)),
        ("media: exp without sig", get("/v1/media/123?exp=1", t), Want::Status(&[403])),
        ("media: sig without exp", get(&format!("/v1/media/123?sig={}", "a".repeat(64)), t), Want::Status(&[403])),
        ("media: exp not a number", get(&format!("/v1/media/123?exp=x&sig={}", "a".repeat(64)), t), Want::Status(BAD)),
        ("media: exp negative", get(&format!("/v1/media/123?exp=-1&sig={}", "a".repeat(64)), t), Want::Status(BAD)),
        ("media: exp repeated", get(&format!("/v1/media/123?exp=1&exp=2&sig={}", "a".repeat(64)), t), Want::Status(BAD)),
        ("media: sig not hex", get("/v1/media/123?exp=9999999999&sig=zz", t), Want::Status(&[403])),
        ("media: sig empty", get("/v1/media/123?exp=9999999999&sig=", t), Want::Status(&[403])),
        ("media: sig too long", get(&format!("/v1/media/123?exp=9999999999&sig={}", "a".repeat(4096)), t), Want::Status(&[403])),
        ("media: a wrong signature, no token", req("GET", &format!("/v1/media/123?exp=9999999999&sig={}", "a".repeat(64)), None, None, b""), Want::Status(&[403])),
        ("media url: id not a number", get("/v1/media/x/url", t), Want::Status(BAD)),
        ("media url: unknown", get("/v1/media/123/url", t), Want::Status(NF)),
        ("media url: ttl 0", get("/v1/media/123/url?ttl=0", t), Want::Status(BAD)),
        ("media url: ttl over 7 days", get("/v1/media/123/url?ttl=604801", t), Want::Status(BAD)),
        ("media url: ttl not a number", get("/v1/media/123/url?ttl=soon", t), Want::Status(BAD)),
        ("media url: ttl repeated", get("/v1/media/123/url?ttl=1&ttl=2", t), Want::Status(BAD)),
        ("posts of unknown user", get("/v1/users/123/posts", t), Want::Status(&[200, 404])),
        // Limits and cursors.
        ("limit 0", get(&format!("{followers}?limit=0"), t), Want::Status(BAD)),
        ("limit repeated", get(&format!("{followers}?limit=1&limit=2"), t), Want::Status(BAD)),
        ("feed limit repeated", get("/v1/feed?limit=1&limit=2", t), Want::Status(BAD)),
        ("limit -1", get(&format!("{followers}?limit=-1"), t), Want::Status(BAD)),
        ("limit 101", get(&format!("{followers}?limit=101"), t), Want::Status(BAD)),
        ("limit huge", get(&format!("{followers}?limit=99999999999999999999999"), t), Want::Status(BAD)),
        ("limit not a number", get(&format!("{followers}?limit=ten"), t), Want::Status(BAD)),
        ("cursor not a number", get(&format!("{followers}?cursor=zz"), t), Want::Status(BAD)),
        ("cursor negative", get(&format!("{followers}?cursor=-5"), t), Want::Status(BAD)),
        ("cursor invalid UTF-8", get(&format!("{followers}?cursor=%FF"), t), Want::Status(BAD)),
        ("feed limit 0", get("/v1/feed?limit=0", t), Want::Status(BAD)),
        ("feed cursor bad", get("/v1/feed?cursor=%%%", t), Want::Status(BAD)),
        ("user posts limit bad", get(&format!("/v1/users/{me}/posts?limit=1e3"), t), Want::Status(BAD)),
        ("conversations limit 1000", get("/v1/conversations?limit=1000", t), Want::Status(BAD)),
        ("conversations limit 0", get("/v1/conversations?limit=0", t), Want::Status(BAD)),
        ("conversations limit 101", get("/v1/conversations?limit=101", t), Want::Status(BAD)),
        ("conversations cursor nope", get("/v1/conversations?cursor=nope", t), Want::Status(BAD)),
        ("conversations cursor without a dot", get("/v1/conversations?cursor=5", t), Want::Status(BAD)),
        ("conversations cursor half a number", get("/v1/conversations?cursor=5.x", t), Want::Status(BAD)),
        ("messages after_seq -1", get(&format!("{msgs}?after_seq=-1"), t), Want::Status(BAD)),
        ("messages after_seq text", get(&format!("{msgs}?after_seq=abc"), t), Want::Status(BAD)),
        ("messages after and before: between them", get(&format!("{msgs}?after_seq=1&before_seq=5"), t), Want::Status(&[200])),
        ("messages before_seq 2^63", get(&format!("{msgs}?before_seq=9223372036854775808"), t), Want::Status(BAD)),
        ("messages after_seq with a sign", get(&format!("{msgs}?after_seq=%2B1"), t), Want::Status(BAD)),
        ("id with a sign", get("/v1/conversations/+123", t), Want::Status(BAD)),
        ("id of 20 digits", get("/v1/posts/12345678901234567890", t), Want::Status(BAD)),
        ("feed since not an id", get("/v1/feed?since=abc", t), Want::Status(BAD)),
        ("feed since repeated", get("/v1/feed?since=1&since=2", t), Want::Status(BAD)),
        ("conversations since without a dot", get("/v1/conversations?since=5", t), Want::Status(BAD)),
        ("a JSON array for an object body", json_req("POST", "/v1/posts", Some(t), r#"["x", []]"#), Want::Status(SHAPE)),
        ("a JSON string for an object body", json_req("PATCH", "/v1/users/me", Some(t), r#""x""#), Want::Status(SHAPE)),
        ("messages limit 0", get(&format!("{msgs}?limit=0"), t), Want::Status(BAD)),
        // Tokens and headers.
        ("empty bearer", req("GET", "/v1/users/me", Some(""), None, b""), Want::Status(&[401])),
        ("lower-case bearer accepted", format!("GET /v1/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: bearer {t}\r\n\r\n").into_bytes(), Want::Status(&[200])),
        ("upper-case BEARER accepted", format!("GET /v1/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: BEARER {t}\r\n\r\n").into_bytes(), Want::Status(&[200])),
        ("basic auth", b"GET /v1/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic YTpi\r\n\r\n".to_vec(), Want::Status(&[401])),
        ("non-ASCII token", b"GET /v1/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".to_vec(), Want::Status(&[401])),
        ("token 100 KiB", req("GET", "/v1/users/me", Some(&"t".repeat(100 * 1024)), None, b""), Want::StatusOrClosed(&[401, 431])),
        ("300 headers", format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(), Want::StatusOrClosed(&[431, 400])),
        ("one 1 MiB header", format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{huge_header}\r\n").into_bytes(), Want::StatusOrClosed(&[431, 400])),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n".to_vec(), Want::StatusOrClosed(BAD)),
        ("garbage request line", b"HELLO THERE\r\n\r\n".to_vec(), Want::StatusOrClosed(BAD)),
        ("binary garbage", vec![0u8, 1, 2, 255, 254, 13, 10, 13, 10], Want::StatusOrClosed(BAD)),
        ("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Want::StatusOrClosed(&[400, 505])),
        ("path 64 KiB", format!("GET /v1/posts/{} HTTP/1.1\r\nHost: x\r\n\r\n", "9".repeat(64 * 1024)).into_bytes(), Want::StatusOrClosed(&[400, 401, 414, 431])),
        ("unknown path", get("/v1/nope", t), Want::Status(NF)),
        ("wrong method", req("DELETE", "/v1/feed", Some(t), None, b""), Want::Status(&[405])),
        ("wrong method on sign-up", req("PATCH", "/v1/users", None, None, b""), Want::Status(&[405])),
        ("ws without upgrade headers", get("/v1/ws", t), Want::Status(&[400, 426])),
        ("admin without token", req("PUT", "/v1/admin/kv/x", None, None, b"v"), Want::Status(&[401, 403])),
    ];
    let mut failures = Vec::new();
    let tried = table.len();
    for (name, bytes, want) in &table {
        let got = raw(port, bytes);
        let ok = match (want, &got) {
            (Want::Status(s) | Want::StatusOrClosed(s), Answer::Status(g)) => s.contains(g),
            (Want::StatusOrClosed(_), Answer::Closed) => true,
            (_, Answer::Closed | Answer::Hung) => false,
        };
        if !ok {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
        assert!(node.alive(), "the node died at {name}");
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // WebSocket frames, each on a fresh connection: (frame, the error code, or the close code).
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let control = |payload: Vec<u8>| {
        Message::Frame(Frame::from_payload(
            FrameHeader {
                opcode: OpCode::Control(Control::Ping),
                ..FrameHeader::default()
            },
            payload.into(),
        ))
    };
    let continuation = Message::Frame(Frame::message(
        b"orphan".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    ));
    let bad_utf8 = Message::Frame(Frame::message(
        vec![0xffu8, 0xfe, 0x22],
        OpCode::Data(Data::Text),
        true,
    ));
    let c = conv.as_str();
    let ws_table: Vec<(&str, Message, Result<&str, u16>)> = vec![
        ("not JSON", Message::text("{nope"), Ok("bad_json")),
        ("empty text", Message::text(""), Ok("bad_json")),
        ("JSON array", Message::text("[1]"), Ok("bad_frame")),
        ("JSON string", Message::text("\"send\""), Ok("bad_frame")),
        ("empty object", Message::text("{}"), Ok("bad_frame")),
        (
            "type a number",
            Message::text(r#"{"type":5}"#),
            Ok("bad_frame"),
        ),
        (
            "unknown type",
            Message::text(r#"{"type":"launch"}"#),
            Ok("unknown_type"),
        ),
        (
            "unknown type 10 KiB",
            Message::text(json!({"type": "x".repeat(10_000)}).to_string()),
            Ok("unknown_type"),
        ),
        (
            "send without body",
            Message::text(json!({"type":"send","conv":c,"client_id":"a"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "send conv a number",
            Message::text(json!({"type":"send","conv":5,"client_id":"a","body":"x"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "send body an object",
            Message::text(json!({"type":"send","conv":c,"client_id":"a","body":{}}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "send client_id a number",
            Message::text(json!({"type":"send","conv":c,"client_id":1,"body":"x"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "send conv not an id",
            Message::text(
                json!({"type":"send","conv":"abc","client_id":"a","body":"x"}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "send unknown conv",
            Message::text(
                json!({"type":"send","conv":"4242","client_id":"a","body":"x"}).to_string(),
            ),
            Ok("not_found"),
        ),
        (
            "send empty body",
            Message::text(json!({"type":"send","conv":c,"client_id":"a","body":""}).to_string()),
            Ok("invalid"),
        ),
        (
            "send empty client_id",
            Message::text(json!({"type":"send","conv":c,"client_id":"","body":"x"}).to_string()),
            Ok("invalid"),
        ),
        (
            "send client_id 10 KiB",
            Message::text(
                json!({"type":"send","conv":c,"client_id":"i".repeat(10_000),"body":"x"})
                    .to_string(),
            ),
            Ok("invalid"),
        ),
        (
            "resume after_seq negative",
            Message::text(json!({"type":"resume","conv":c,"after_seq":-1}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "resume after_seq a string",
            Message::text(json!({"type":"resume","conv":c,"after_seq":"1"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "resume after_seq 2^64",
            Message::text(format!(
                r#"{{"type":"resume","conv":"{c}","after_seq":18446744073709551616}}"#
            )),
            Ok("bad_frame"),
        ),
        (
            "resume unknown conv",
            Message::text(json!({"type":"resume","conv":"4242","after_seq":0}).to_string()),
            Ok("not_found"),
        ),
        (
            "read seq a float",
            Message::text(json!({"type":"read","conv":c,"seq":1.5}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "edit without seq",
            Message::text(json!({"type":"edit","conv":c,"body":"x","client_id":"e"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "edit seq a string",
            Message::text(
                json!({"type":"edit","conv":c,"seq":"1","body":"x","client_id":"e"}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "edit seq negative",
            Message::text(
                json!({"type":"edit","conv":c,"seq":-1,"body":"x","client_id":"e"}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "edit seq a float",
            Message::text(
                json!({"type":"edit","conv":c,"seq":1.5,"body":"x","client_id":"e"}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "edit without body",
            Message::text(json!({"type":"edit","conv":c,"seq":1,"client_id":"e"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "edit body a number",
            Message::text(
                json!({"type":"edit","conv":c,"seq":1,"body":5,"client_id":"e"}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "edit client_id a number",
            Message::text(
                json!({"type":"edit","conv":c,"seq":1,"body":"x","client_id":1}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "edit conv not an id",
            Message::text(
                json!({"type":"edit","conv":"abc","seq":1,"body":"x","client_id":"e"}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "edit unknown conv",
            Message::text(
                json!({"type":"edit","conv":"4242","seq":1,"body":"x","client_id":"e"}).to_string(),
            ),
            Ok("not_found"),
        ),
        (
            "edit unknown seq",
            Message::text(
                json!({"type":"edit","conv":c,"seq":999,"body":"x","client_id":"e"}).to_string(),
            ),
            Ok("not_found"),
        ),
        (
            "edit empty body",
            Message::text(
                json!({"type":"edit","conv":c,"seq":1,"body":"","client_id":"e"}).to_string(),
            ),
            Ok("invalid"),
        ),
        (
            "edit body 4001 chars",
            Message::text(
                json!({"type":"edit","conv":c,"seq":1,"body":"b".repeat(4001),"client_id":"e"})
                    .to_string(),
            ),
            Ok("invalid"),
        ),
        (
            "edit client_id 65 bytes",
            Message::text(
                json!({"type":"edit","conv":c,"seq":1,"body":"x","client_id":"i".repeat(65)})
                    .to_string(),
            ),
            Ok("invalid"),
        ),
        (
            "edit a deleted message",
            Message::text(
                json!({"type":"edit","conv":c,"seq":2,"body":"x","client_id":"e"}).to_string(),
            ),
            Ok("conflict"),
        ),
        (
            "edit a delete entry",
            Message::text(
                json!({"type":"edit","conv":c,"seq":3,"body":"x","client_id":"e"}).to_string(),
            ),
            Ok("invalid"),
        ),
        (
            "delete without seq",
            Message::text(json!({"type":"delete","conv":c,"client_id":"d"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "delete seq a string",
            Message::text(json!({"type":"delete","conv":c,"seq":"1","client_id":"d"}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "delete seq negative",
            Message::text(json!({"type":"delete","conv":c,"seq":-1}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "delete client_id a number",
            Message::text(json!({"type":"delete","conv":c,"seq":1,"client_id":7}).to_string()),
            Ok("bad_frame"),
        ),
        (
            "delete conv not an id",
            Message::text(
                json!({"type":"delete","conv":"abc","seq":1,"client_id":"d"}).to_string(),
            ),
            Ok("bad_frame"),
        ),
        (
            "delete unknown conv",
            Message::text(
                json!({"type":"delete","conv":"4242","seq":1,"client_id":"d"}).to_string(),
            ),
            Ok("not_found"),
        ),
        (
            "delete unknown seq",
            Message::text(json!({"type":"delete","conv":c,"seq":999,"client_id":"d"}).to_string()),
            Ok("not_found"),
        ),
        (
            "delete client_id 65 bytes",
            Message::text(
                json!({"type":"delete","conv":c,"seq":1,"client_id":"i".repeat(65)}).to_string(),
            ),
            Ok("invalid"),
        ),
        (
            "delete a delete entry",
            Message::text(json!({"type":"delete","conv":c,"seq":3,"client_id":"d"}).to_string()),
            Ok("invalid"),
        ),
        (
            "typing without conv",
            Message::text(r#"{"type":"typing"}"#),
            Ok("bad_frame"),
        ),
        (
            "typing conv null",
            Message::text(r#"{"type":"typing","conv":null}"#),
            Ok("bad_frame"),
        ),
        (
            "nested 5000 deep",
            Message::text(format!("{}{}", "[".repeat(5000), "]".repeat(5000))),
            Ok("bad_json"),
        ),
        (
            "binary frame",
            Message::binary(vec![1u8, 2, 3]),
            Ok("binary"),
        ),
        ("invalid UTF-8 text", bad_utf8, Err(1007)),
        (
            "text over 32 KiB",
            Message::text("x".repeat(40 * 1024)),
            Err(1009),
        ),
        (
            "binary over 32 KiB",
            Message::binary(vec![0u8; 40 * 1024]),
            Err(1009),
        ),
        ("continuation without a start", continuation, Err(1002)),
        ("ping of 200 bytes", control(vec![0u8; 200]), Err(1002)),
    ];
    let ws_tried = ws_table.len();
    let mut ws_failures = Vec::new();
    for (name, frame, want) in ws_table {
        let mut cl = Client::connect(addr, t).await;
        let _ = cl.ws.send(frame).await;
        let got = match want {
            Ok(_) => {
                let e = cl.next_of(&["error", "ack", "resumed"]).await;
                // The connection stays usable.
                cl.send(json!({"type":"ping"})).await;
                let pong = cl.next_of(&["pong"]).await;
                assert_eq!(pong["type"], "pong");
                Ok(e["code"].as_str().unwrap_or("(none)").to_string())
            }
            Err(_) => match cl.ended().await {
                Ended::Closed(code) => Err(code),
                Ended::Dropped => Err(0),
            },
        };
        let same = match (&want, &got) {
            (Ok(w), Ok(g)) => w == g,
            (Err(w), Err(g)) => w == g,
            _ => false,
        };
        if !same {
            ws_failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
        assert!(node.alive(), "the node died at {name}");
    }
    assert!(
        ws_failures.is_empty(),
        "{} of {ws_tried} frames failed:\n{}",
        ws_failures.len(),
        ws_failures.join("\n")
    );

    // Alive, healthy, and nothing changed.
    let (s, b) = common::http(port, "GET", "/healthz", None, b"");
    assert_eq!((s, b.as_slice()), (200, &b"ok"[..]));
    let after = snapshot(port, t, &me, &post, &conv, &group);
    assert_eq!(before, after, "a read-back after the tables");
    let (_, m) = call(port, "GET", "/metrics", None, Value::Null);
    let _ = m;
    eprintln!("bad input: {tried} HTTP requests, {ws_tried} WebSocket frames");
}
