//! The strict API contract, against the real `starling` binary: every error is
//! `application/problem+json` (the router's own 404 and 405, extractor rejections), the Bearer
//! scheme is matched in any case (REST and the WebSocket upgrade), a retry whose original post
//! was deleted is 410 Gone, and media is checked against its declared type on upload and served
//! with `nosniff` and a safe `Content-Disposition`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, PNG_1X1, header_of as header, request_with_head};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One request with these headers: (status, head, body).
fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let r = common::http::send(format!("127.0.0.1:{port}"), method, path, headers, body);
    (r.status, r.head, r.body)
}

/// Asserts an answer is a problem+json with this status and the four members.
fn assert_problem(what: &str, status: u16, head: &str, body: &[u8], want: u16) -> Value {
    assert_eq!(status, want, "{what}: {head}");
    assert_eq!(
        header(head, "content-type").as_deref(),
        Some("application/problem+json"),
        "{what}: {head}"
    );
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(v["type"], "about:blank", "{what}: {v}");
    assert_eq!(v["status"], want, "{what}: {v}");
    assert!(
        v["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: {v}"
    );
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {v}"
    );
    v
}

#[test]
fn the_router_and_the_extractors_answer_problems() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::memory(dir.path(), &[]);
    let port = node.port;
    let t = common::sign_up_at(port, "alice").1;
    let bearer = format!("Bearer {t}");
    let auth = [("Authorization", bearer.as_str())];

    // The router's own 404 and 405 (which keeps its Allow header).
    let (s, h, b) = raw(port, "GET", "/v1/no-such-route", &auth, b"");
    assert_problem("unknown route", s, &h, &b, 404);
    let (s, h, b) = raw(port, "GET", "/nope", &[], b"");
    assert_problem("unknown route without a token", s, &h, &b, 404);
    let (s, h, b) = raw(port, "DELETE", "/v1/feed", &auth, b"");
    assert_problem("wrong method", s, &h, &b, 405);
    assert_eq!(header(&h, "allow").as_deref(), Some("GET,HEAD"), "{h}");
    let (s, h, b) = raw(port, "PUT", "/v1/posts", &auth, b"");
    assert_problem("wrong method", s, &h, &b, 405);
    assert_eq!(header(&h, "allow").as_deref(), Some("POST"), "{h}");

    // Query-string rejections (a repeated parameter), here and in the chat routes.
    for path in [
        "/v1/feed?limit=1&limit=2",
        "/v1/friends?cursor=1&cursor=2",
        "/v1/conversations?limit=1&limit=2",
        "/v1/ws?token=a&token=b",
    ] {
        let (s, h, b) = raw(port, "GET", path, &auth, b"");
        assert_problem(path, s, &h, &b, 400);
    }
    // Path rejections: a segment that is not UTF-8.
    for path in ["/v1/posts/%FF%FE", "/v1/users/by-handle/%FF"] {
        let (s, h, b) = raw(port, "GET", path, &auth, b"");
        assert_problem(path, s, &h, &b, 400);
    }
    // The WebSocket route without the upgrade headers.
    let (s, h, b) = raw(port, "GET", "/v1/ws", &auth, b"");
    assert!(matches!(s, 400 | 426), "{h}");
    assert_problem("ws without upgrade", s, &h, &b, s);
    // JSON bodies were problems already; still are.
    let (s, h, b) = request_with_head(
        port,
        "POST",
        "/v1/posts",
        Some(&t),
        Some("application/json"),
        b"{not json",
    );
    assert_problem("bad JSON", s, &h, &b, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::memory(dir.path(), &[]);
    let port = node.port;
    let t = common::sign_up_at(port, "alice").1;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (s, h, b) = raw(
            port,
            "GET",
            "/v1/users/me",
            &[("Authorization", &format!("{scheme} {t}"))],
            b"",
        );
        assert_eq!(s, 200, "{scheme}: {h} {}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["handle"], "alice");
    }
    // Still a 401 with another scheme, or no token.
    for value in [format!("Basic {t}"), format!("Bearer{t}"), "bearer ".into()] {
        let (s, h, b) = raw(
            port,
            "GET",
            "/v1/users/me",
            &[("Authorization", &value)],
            b"",
        );
        assert_problem(&value, s, &h, &b, 401);
    }
    // The WebSocket upgrade takes the header the same way: a ping is answered.
    for scheme in ["bearer", "BEARER"] {
        let mut req = format!("ws://127.0.0.1:{port}/v1/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("{scheme} {t}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws.send(Message::text(json!({"type":"ping"}).to_string()))
            .await
            .unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(m) = ws.next().await {
                match m.unwrap() {
                    Message::Text(txt) => {
                        let v: Value = serde_json::from_str(&txt).unwrap();
                        if v["type"] == "pong" {
                            return true;
                        }
                    }
                    Message::Close(f) => panic!("{scheme}: closed: {f:?}"),
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap();
        assert!(pong, "{scheme}: no pong");
    }
}

#[test]
fn a_retry_after_the_original_post_was_deleted_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::memory(dir.path(), &[]);
    let port = node.port;
    let t = common::sign_up_at(port, "alice").1;
    let create = |key: &str| {
        raw(
            port,
            "POST",
            "/v1/posts",
            &[
                ("Authorization", &format!("Bearer {t}")),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            br#"{"text":"once"}"#,
        )
    };
    let (s, h, b) = create("k1");
    assert_eq!(s, 201, "{h}");
    let original: Value = serde_json::from_slice(&b).unwrap();
    let id = original["id"].as_str().unwrap().to_string();
    // A retry before the delete: the original.
    let (s, _, b) = create("k1");
    assert_eq!(s, 201);
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap(), original);
    let (s, _) = common::http(port, "DELETE", &format!("/v1/posts/{id}"), Some(&t), b"");
    assert_eq!(s, 204);
    // Every retry after it: 410, never "in progress", and nothing published again.
    for _ in 0..3 {
        let (s, h, b) = create("k1");
        let v = assert_problem("retry after delete", s, &h, &b, 410);
        assert!(v["detail"].as_str().unwrap().contains("deleted"), "{v}");
    }
    let (s, b) = common::http(port, "GET", "/v1/users/me", Some(&t), b"");
    assert_eq!(s, 200);
    let me: Value = serde_json::from_slice(&b).unwrap();
    let (s, b) = common::http(
        port,
        "GET",
        &format!("/v1/users/{}/posts", me["id"].as_str().unwrap()),
        Some(&t),
        b"",
    );
    assert_eq!(s, 200);
    let list: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(list["items"], json!([]), "{list}");
    // A new key publishes.
    let (s, h, _) = create("k2");
    assert_eq!(s, 201, "{h}");
}

#[test]
fn media_is_checked_on_upload_and_served_passively() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::memory(dir.path(), &[]);
    let port = node.port;
    let t = common::sign_up_at(port, "alice").1;
    let upload = |ct: &str, body: &[u8]| {
        request_with_head(port, "POST", "/v1/media", Some(&t), Some(ct), body)
    };
    // Active or unknown types: 415.
    for (ct, body) in [
        (
            "image/svg+xml",
            &br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#[..],
        ),
        ("text/html", b"<script>alert(1)</script>"),
        ("application/octet-stream", PNG_1X1),
    ] {
        let (s, h, b) = upload(ct, body);
        assert_problem(ct, s, &h, &b, 415);
    }
    // Bytes that are not the declared type: 422.
    for (ct, body) in [
        ("image/png", &b"\xff\xd8\xff\xe0\0\x10JFIF\0"[..]),
        ("image/png", b"\x89PNG fake"),
        ("image/gif", b"<html><script>alert(1)</script>"),
        ("image/jpeg", PNG_1X1),
    ] {
        let (s, h, b) = upload(ct, body);
        assert_problem(ct, s, &h, &b, 422);
    }
    // A real PNG: stored, and served as itself, not sniffed, named by its id.
    let (s, h, b) = upload("image/png", PNG_1X1);
    assert_eq!(s, 201, "{h}");
    let m: Value = serde_json::from_slice(&b).unwrap();
    let id = m["id"].as_str().unwrap();
    let (s, h, b) = request_with_head(port, "GET", &format!("/v1/media/{id}"), Some(&t), None, b"");
    assert_eq!(s, 200, "{h}");
    assert_eq!(b, PNG_1X1);
    assert_eq!(header(&h, "content-type").as_deref(), Some("image/png"));
    assert_eq!(
        header(&h, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        header(&h, "content-disposition"),
        Some(format!("inline; filename=\"{id}.png\""))
    );
}

/// Every `.route("…", …)` path of the server's source (`api/src/**/*.rs`), in the document's
/// `{name}` form: the API's. The browser client's files (`web.rs`: `/`, `/web/{*path}`) are
/// pages, not operations of the API, and are left out.
fn route_paths() -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "web.rs")
            {
                let src = std::fs::read_to_string(&path).unwrap();
                // Routes of a module's unit tests are not the server's.
                let src = src.split("#[cfg(test)]\nmod tests").next().unwrap();
                for (at, _) in src.match_indices(".route(") {
                    let rest = src[at + ".route(".len()..].trim_start();
                    if let Some(lit) = rest.strip_prefix('"') {
                        let end = lit.find('"').unwrap();
                        out.push(lit[..end].to_string());
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut out,
    );
    out.sort();
    out.dedup();
    out
}

/// The document lists every route the router serves with every method it serves there (each
/// route of the source asked with each method through the real binary: whatever is not the
/// router's 405 is served), and documents nothing it does not serve.
#[test]
fn the_document_lists_every_route_and_method_the_router_serves() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::memory(dir.path(), &[]);
    let port = node.port;
    let (s, b) = common::http(port, "GET", "/openapi.json", None, b"");
    assert_eq!(s, 200);
    let doc: Value = serde_json::from_slice(&b).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let routes = route_paths();
    assert!(routes.len() > 30, "{routes:?}");
    let mut wrong = Vec::new();
    for route in &routes {
        let concrete: String = route
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let (s, _, _) = raw(port, method, &concrete, &[], b"");
            let documented = paths
                .get(route.as_str())
                .and_then(|p| p.get(method.to_ascii_lowercase()))
                .is_some();
            if (s != 405) != documented {
                wrong.push(format!(
                    "{method} {route}: answers {s}, documented: {documented}"
                ));
            }
        }
    }
    for path in paths.keys() {
        if !routes.contains(path) {
            wrong.push(format!("{path} is documented, not served"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every problem response is the shared component, never a copy.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                let inline_problem = resp
                    .get("content")
                    .is_some_and(|c| c.get("application/problem+json").is_some());
                assert!(
                    !inline_problem,
                    "{method} {path} {status}: an inline problem response"
                );
            }
        }
    }
}
