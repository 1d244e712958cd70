//! The authorization matrix, against the real `starling` binary.
//!
//! Every REST route the router registers is enumerated — from `/openapi.json` and from the
//! `.route(…)` calls of the modules that `router()` merges (so a new route without a matrix
//! entry fails here) — and every WebSocket op from the protocol's type list. Each is called with
//! no token, garbage, an unknown well-formed token, a revoked token, an expired token and the
//! admin token (→ 401; a bad WebSocket token → close 4001); admin routes with user tokens
//! (→ 401) and on a node without an admin token (→ 403). Then the cross-user cells (editing or
//! deleting another's post, reading, sending, resuming, typing, marking read, editing or
//! deleting messages and changing members in a conversation one is not a member of, accepting
//! another's friend request) and the roles of a group (a member, an admin and a former member
//! doing what only an admin, the owner or a message's sender may; the owner leaving first)
//! answer 403 (409) as API.md says, and a read-back shows that nothing changed. Last, the
//! secrets: passwords are stored as argon2id PHC strings, tokens carry 256 random bits, expire,
//! are revoked by logout, and no token, password or secret appears in the node's log output.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::chat::{Client, Ended};
use common::{Node, free_port, request};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

const ADMIN: &str = "admin-token-of-the-authz-test-4f2a";
const PASSWORD: &str = "correct horse battery";

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guard {
    /// Anyone (API.md's list of endpoints without a token).
    Public,
    /// A user's session token.
    User,
    /// The admin token.
    Admin,
}

/// Every route: method, path template, guard. A route the server registers but this table
/// lacks (or the reverse) fails `every_route_and_op_is_in_the_matrix`.
const MATRIX: &[(&str, &str, Guard)] = &[
    ("GET", "/healthz", Guard::Public),
    ("GET", "/readyz", Guard::Public),
    ("GET", "/metrics", Guard::Public),
    ("GET", "/openapi.json", Guard::Public),
    ("POST", "/v1/users", Guard::Public),
    ("POST", "/v1/sessions", Guard::Public),
    ("DELETE", "/v1/sessions", Guard::User),
    ("GET", "/v1/users/me", Guard::User),
    ("PATCH", "/v1/users/me", Guard::User),
    ("PUT", "/v1/users/me/password", Guard::User),
    ("DELETE", "/v1/users/me", Guard::User),
    ("GET", "/v1/users/{id}", Guard::User),
    ("GET", "/v1/users/by-handle/{handle}", Guard::User),
    ("GET", "/v1/users/{id}/followers", Guard::User),
    ("GET", "/v1/users/{id}/following", Guard::User),
    ("GET", "/v1/users/{id}/posts", Guard::User),
    ("PUT", "/v1/following/{id}", Guard::User),
    ("DELETE", "/v1/following/{id}", Guard::User),
    ("POST", "/v1/friend-requests", Guard::User),
    ("POST", "/v1/friend-requests/{id}/accept", Guard::User),
    ("GET", "/v1/friend-requests", Guard::User),
    ("DELETE", "/v1/friend-requests/{id}", Guard::User),
    ("POST", "/v1/friend-requests/{id}/decline", Guard::User),
    ("GET", "/v1/friends", Guard::User),
    ("PUT", "/v1/blocks/{id}", Guard::User),
    ("DELETE", "/v1/blocks/{id}", Guard::User),
    ("POST", "/v1/posts", Guard::User),
    ("GET", "/v1/posts/{id}", Guard::User),
    ("PATCH", "/v1/posts/{id}", Guard::User),
    ("DELETE", "/v1/posts/{id}", Guard::User),
    ("PUT", "/v1/posts/{id}/like", Guard::User),
    ("DELETE", "/v1/posts/{id}/like", Guard::User),
    ("GET", "/v1/posts/{id}/likes", Guard::User),
    ("PUT", "/v1/posts/{id}/repost", Guard::User),
    ("DELETE", "/v1/posts/{id}/repost", Guard::User),
    ("GET", "/v1/posts/{id}/reposts", Guard::User),
    ("GET", "/v1/posts/{id}/thread", Guard::User),
    ("POST", "/v1/media", Guard::User),
    ("GET", "/v1/media/{id}", Guard::User),
    ("GET", "/v1/media/{id}/url", Guard::User),
    ("GET", "/v1/feed", Guard::User),
    ("GET", "/v1/notifications", Guard::User),
    ("PUT", "/v1/notifications/read", Guard::User),
    ("GET", "/v1/conversations", Guard::User),
    ("POST", "/v1/conversations", Guard::User),
    ("GET", "/v1/conversations/{id}", Guard::User),
    ("PATCH", "/v1/conversations/{id}", Guard::User),
    ("PUT", "/v1/conversations/{id}/members/{user}", Guard::User),
    (
        "DELETE",
        "/v1/conversations/{id}/members/{user}",
        Guard::User,
    ),
    (
        "PUT",
        "/v1/conversations/{id}/members/{user}/role",
        Guard::User,
    ),
    ("PUT", "/v1/conversations/{id}/read", Guard::User),
    ("GET", "/v1/conversations/{id}/messages", Guard::User),
    ("POST", "/v1/conversations/{id}/messages", Guard::User),
    (
        "PATCH",
        "/v1/conversations/{id}/messages/{seq}",
        Guard::User,
    ),
    (
        "DELETE",
        "/v1/conversations/{id}/messages/{seq}",
        Guard::User,
    ),
    ("GET", "/v1/ws", Guard::User),
    ("GET", "/v1/cluster", Guard::Admin),
    ("GET", "/v1/admin/wan", Guard::Admin),
    ("PUT", "/v1/admin/wan", Guard::Admin),
    ("GET", "/v1/admin/digest", Guard::Admin),
    ("GET", "/v1/admin/kv/{key}", Guard::Admin),
    ("PUT", "/v1/admin/kv/{key}", Guard::Admin),
];

/// The WebSocket ops of the protocol, each with a frame for conversation `conv` (whose message
/// 1 is alice's).
const WS_OPS: &[&str] = &["send", "resume", "typing", "read", "ping", "edit", "delete"];

fn ws_frame(op: &str, conv: &str, n: usize) -> Value {
    match op {
        "send" => json!({"type":"send","conv":conv,"client_id":format!("x{n}"),"body":"let me in"}),
        "resume" => json!({"type":"resume","conv":conv,"after_seq":0}),
        "typing" => json!({"type":"typing","conv":conv}),
        "read" => json!({"type":"read","conv":conv,"seq":1}),
        "edit" => {
            json!({"type":"edit","conv":conv,"seq":1,"body":"pwned","client_id":format!("x{n}")})
        }
        "delete" => json!({"type":"delete","conv":conv,"seq":1,"client_id":format!("x{n}")}),
        _ => json!({"type":"ping"}),
    }
}

/// The sources whose routers `router()` merges, by module name.
const ROUTE_SOURCES: &[(&str, &str)] = &[
    ("ops", include_str!("../src/ops.rs")),
    ("admin", include_str!("../src/admin.rs")),
    ("openapi", include_str!("../src/openapi.rs")),
    ("users", include_str!("../src/users.rs")),
    ("account", include_str!("../src/account.rs")),
    ("social", include_str!("../src/social.rs")),
    ("posts", include_str!("../src/posts.rs")),
    ("likes", include_str!("../src/likes.rs")),
    ("threads", include_str!("../src/threads.rs")),
    ("feed", include_str!("../src/feed.rs")),
    ("notifications", include_str!("../src/notifications/mod.rs")),
    ("conversations", include_str!("../src/conversations.rs")),
    ("ws", include_str!("../src/ws/mod.rs")),
];

/// `(METHOD, path)` of every `.route("path", get(…).post(…))` in a module's source.
fn routes_in_source(src: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for seg in src.split(".route(").skip(1) {
        let seg = seg.split("\n}").next().unwrap();
        let path = seg.split('"').nth(1).unwrap().to_string();
        for m in ["get", "post", "put", "patch", "delete"] {
            let pat = format!("{m}(");
            let found = seg.match_indices(&pat).any(|(i, _)| {
                i == 0
                    || !seg.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && seg.as_bytes()[i - 1] != b'_'
            });
            if found {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// The modules whose routes `router()` merges (`NAME::routes(` in its body).
fn merged_modules() -> BTreeSet<String> {
    let src = include_str!("../src/lib.rs");
    let body = src
        .split("pub fn router_with_deadline")
        .nth(1)
        .unwrap()
        .split("\n}\n")
        .next()
        .unwrap();
    let mut chunks: Vec<&str> = body.split("::routes(").collect();
    chunks.pop();
    chunks
        .iter()
        .map(|c| {
            let start = c
                .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map_or(0, |i| i + 1);
            c[start..].to_string()
        })
        .collect()
}

/// The protocol's list of client frame types, read from its source.
fn protocol_types() -> BTreeSet<String> {
    let src = include_str!("../../messenger/src/protocol.rs");
    let line = src
        .lines()
        .find(|l| l.starts_with("pub const CLIENT_TYPES"))
        .unwrap();
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// One request; (status, JSON body or Null).
fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let ct = if path == "/v1/media" {
        "image/png"
    } else {
        "application/json"
    };
    let (s, b) = request(port, method, path, token, Some(ct), body);
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn json_call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    call(port, method, path, token, body.to_string().as_bytes())
}

struct Account {
    id: String,
    token: String,
    handle: String,
}

fn sign_up(port: u16, handle: &str) -> Account {
    let (id, token) = common::sign_up_with(port, handle, PASSWORD);
    Account {
        id,
        token,
        handle: handle.to_string(),
    }
}

fn login(port: u16, handle: &str) -> String {
    let (s, v) = json_call(
        port,
        "POST",
        "/v1/sessions",
        None,
        json!({"handle": handle, "password": PASSWORD}),
    );
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// Ids to put into path templates.
struct Ids {
    user: String,
    handle: String,
    post: String,
    media: String,
    conv: String,
    /// A group of alice's (owner), bob and dave (admins), carol (member); erin was removed.
    group: String,
    request: String,
}

fn concrete(path: &str, ids: &Ids) -> String {
    let path = path.replace("{handle}", &ids.handle);
    let id = if path.starts_with("/v1/posts/") {
        &ids.post
    } else if path.starts_with("/v1/media/") {
        &ids.media
    } else if path.starts_with("/v1/conversations/") {
        &ids.conv
    } else if path.starts_with("/v1/friend-requests/") {
        &ids.request
    } else if path.starts_with("/v1/admin/kv/") {
        "probe"
    } else {
        &ids.user
    };
    path.replace("{id}", id)
        .replace("{key}", id)
        .replace("{user}", &ids.user)
        .replace("{seq}", "1")
}

/// A body that would be accepted by the route if the caller were allowed (so a refusal is
/// the guard's, not the parser's).
fn body_for(method: &str, path: &str, ids: &Ids) -> Vec<u8> {
    let v = match (method, path) {
        ("POST", "/v1/media") => return common::PNG_1X1.to_vec(),
        ("PUT", p) if p.starts_with("/v1/admin/kv/") => return b"overwritten".to_vec(),
        ("PUT", "/v1/admin/wan") => json!({"links": []}),
        ("POST", "/v1/conversations") => json!({"members": [ids.user]}),
        ("POST", "/v1/friend-requests") => json!({"to": ids.user}),
        ("POST", p) if p.ends_with("/messages") => json!({"body":"hi","client_id":"authz"}),
        ("PATCH", p) if p.ends_with("/messages/{seq}") => json!({"body":"changed"}),
        ("PATCH", "/v1/conversations/{id}") => json!({"name":"changed","topic":"changed"}),
        ("PUT", p) if p.ends_with("/role") => json!({"role":"admin"}),
        ("PUT", "/v1/conversations/{id}/read") => json!({"seq":1}),
        ("PUT", "/v1/notifications/read") => json!({"up_to": ids.user}),
        ("PUT", "/v1/users/me/password") => json!({"old": PASSWORD, "new": PASSWORD}),
        ("DELETE", "/v1/users/me") => json!({"password": PASSWORD}),
        ("POST", "/v1/posts") | ("PATCH", _) => json!({"text":"changed","display_name":"changed"}),
        ("POST", "/v1/users") | ("POST", "/v1/sessions") => {
            json!({"handle":"zed","password":PASSWORD})
        }
        _ => return Vec::new(),
    };
    v.to_string().into_bytes()
}

/// What the owner and the admin see: compared before and after the attempts.
fn snapshot(port: u16, owner: &Account, ids: &Ids) -> Vec<(String, u16, Value)> {
    let t = Some(owner.token.as_str());
    let mut out = Vec::new();
    for path in [
        "/v1/users/me".to_string(),
        format!("/v1/users/{}", ids.user),
        format!("/v1/posts/{}", ids.post),
        format!("/v1/users/{}/posts", owner.id),
        format!("/v1/users/{}/followers", owner.id),
        format!("/v1/users/{}/following", owner.id),
        "/v1/friends".to_string(),
        "/v1/notifications".to_string(),
        "/v1/conversations".to_string(),
        format!("/v1/conversations/{}", ids.conv),
        format!("/v1/conversations/{}/messages?after_seq=0", ids.conv),
        format!("/v1/conversations/{}", ids.group),
        format!("/v1/conversations/{}/messages?after_seq=0", ids.group),
    ] {
        let (s, v) = call(port, "GET", &path, t, b"");
        out.push((path, s, v));
    }
    let (s, b) = request(port, "GET", "/v1/admin/kv/probe", Some(ADMIN), None, b"");
    out.push((
        "kv probe".into(),
        s,
        Value::String(String::from_utf8_lossy(&b).into()),
    ));
    let (s, b) = request(
        port,
        "GET",
        &format!("/v1/media/{}", ids.media),
        t,
        None,
        b"",
    );
    out.push((
        "media".into(),
        s,
        Value::String(String::from_utf8_lossy(&b).into()),
    ));
    out
}

fn data_node(dir: &std::path::Path, extra: &[&str]) -> Node {
    let mut args: Vec<String> = [
        "--data-dir",
        "data",
        "--auth-per-minute",
        "1000000",
        "--fsync",
        "always",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    // Debug logs: the widest net for a leaked secret.
    Node::start_logging(dir, free_port(), &args, "debug")
}

#[test]
fn every_route_and_op_is_in_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let node = data_node(dir.path(), &["--store", "memory"]);
    let matrix: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(matrix.len(), MATRIX.len(), "no duplicate rows");

    // Every module `router()` merges is read for routes.
    let sources: BTreeSet<String> = ROUTE_SOURCES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(merged_modules(), sources, "router() merges these modules");
    let mut registered = BTreeSet::new();
    for (_, src) in ROUTE_SOURCES {
        registered.extend(routes_in_source(src));
    }
    // …and the OpenAPI document of the running node.
    let (s, doc) = call(node.port, "GET", "/openapi.json", None, b"");
    assert_eq!(s, 200);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let key = (method.to_uppercase(), path.clone());
            // The document says which operations need which token (`bearer`: a user's,
            // `admin`: the node's admin token): so does the matrix.
            let schemes: BTreeSet<String> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().cloned())
                .collect();
            let row = MATRIX
                .iter()
                .find(|(m, p, _)| (m.to_string(), p.to_string()) == key)
                .unwrap_or_else(|| panic!("{key:?} is documented but not in the matrix"));
            let want: BTreeSet<String> = match row.2 {
                Guard::User => ["bearer".to_string()].into(),
                Guard::Admin => ["admin".to_string()].into(),
                Guard::Public => BTreeSet::new(),
            };
            assert_eq!(schemes, want, "{key:?}: security in the document");
            documented.insert(key);
        }
    }
    let all: BTreeSet<_> = registered.union(&documented).cloned().collect();
    assert_eq!(all, matrix, "the matrix lists exactly the routes served");
    // Every route of the REST API proper is documented (operations, admin, ws apart).
    for (m, p) in &registered {
        let outside = p.starts_with("/v1/admin") || p == "/v1/cluster" || p == "/v1/ws";
        let ops = ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&p.as_str());
        if !outside && !ops {
            assert!(
                documented.contains(&(m.clone(), p.clone())),
                "{m} {p} is undocumented"
            );
        }
    }
    let ops: BTreeSet<String> = WS_OPS.iter().map(|s| s.to_string()).collect();
    assert_eq!(protocol_types(), ops, "the WebSocket ops");
    eprintln!(
        "routes: {} (registered {}, documented {}), ws ops: {}",
        all.len(),
        registered.len(),
        documented.len(),
        ops.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_holds_and_nothing_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = data_node(dir.path(), &["--admin-token", ADMIN]);
    let port = node.port;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cells = 0usize;

    // --- Set-up: alice owns a post, media, a conversation with bob and a friend request to bob.
    let alice = sign_up(port, "alice");
    let bob = sign_up(port, "bob");
    let mallory = sign_up(port, "mallory");
    let (s, post) = json_call(
        port,
        "POST",
        "/v1/posts",
        Some(&alice.token),
        json!({"text":"mine"}),
    );
    assert_eq!(s, 201, "{post}");
    let (s, media) = call(
        port,
        "POST",
        "/v1/media",
        Some(&alice.token),
        common::PNG_1X1,
    );
    assert_eq!(s, 201, "{media}");
    let (s, conv) = json_call(
        port,
        "POST",
        "/v1/conversations",
        Some(&alice.token),
        json!({"members": [bob.id]}),
    );
    assert_eq!(s, 201, "{conv}");
    let conv_id = conv["id"].as_str().unwrap().to_string();
    let (s, first) = json_call(
        port,
        "POST",
        &format!("/v1/conversations/{conv_id}/messages"),
        Some(&alice.token),
        json!({"body":"secret plans","client_id":"a1"}),
    );
    assert_eq!(s, 201);
    assert_eq!(first["seq"], 1, "ws_frame's seq is alice's message");
    // A group: alice owns it, bob and dave are admins, carol a member; erin was removed.
    let carol = sign_up(port, "carol");
    let dave = sign_up(port, "dave");
    let erin = sign_up(port, "erin");
    let (s, group) = json_call(
        port,
        "POST",
        "/v1/conversations",
        Some(&alice.token),
        json!({"members": [bob.id, carol.id, dave.id, erin.id], "name": "plans"}),
    );
    assert_eq!(s, 201, "{group}");
    let group_id = group["id"].as_str().unwrap().to_string();
    let g = format!("/v1/conversations/{group_id}");
    for admin in [&bob, &dave] {
        let (s, v) = json_call(
            port,
            "PUT",
            &format!("{g}/members/{}/role", admin.id),
            Some(&alice.token),
            json!({"role":"admin"}),
        );
        assert_eq!(s, 204, "{v}");
    }
    let (s, v) = call(
        port,
        "DELETE",
        &format!("{g}/members/{}", erin.id),
        Some(&alice.token),
        b"",
    );
    assert_eq!(s, 204, "{v}");
    let (s, gm) = json_call(
        port,
        "POST",
        &format!("{g}/messages"),
        Some(&alice.token),
        json!({"body":"group plans","client_id":"g1"}),
    );
    assert_eq!(s, 201, "{gm}");
    let gseq = gm["seq"].as_u64().unwrap();
    let (s, req) = json_call(
        port,
        "POST",
        "/v1/friend-requests",
        Some(&alice.token),
        json!({"to": bob.id}),
    );
    assert_eq!(s, 201, "{req}");
    assert_eq!(
        request(
            port,
            "PUT",
            "/v1/admin/kv/probe",
            Some(ADMIN),
            None,
            b"original"
        )
        .0,
        204
    );
    let ids = Ids {
        user: alice.id.clone(),
        handle: alice.handle.clone(),
        post: post["id"].as_str().unwrap().to_string(),
        media: media["id"].as_str().unwrap().to_string(),
        conv: conv_id.clone(),
        group: group_id.clone(),
        request: req["id"].as_str().unwrap().to_string(),
    };

    // --- Tokens: 256 random bits each, all different, revoked by logout.
    let mut tokens = vec![
        alice.token.clone(),
        bob.token.clone(),
        mallory.token.clone(),
    ];
    for _ in 0..5 {
        tokens.push(login(port, "mallory"));
    }
    let revoked = login(port, "mallory");
    for t in tokens.iter().chain([&revoked]) {
        let hex = t.strip_prefix("st_").expect("st_ prefix");
        assert!(
            hex.len() * 4 >= 128 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{t}"
        );
    }
    let distinct: BTreeSet<&String> = tokens.iter().chain([&revoked]).collect();
    assert_eq!(distinct.len(), tokens.len() + 1, "every token is new");
    // The bits vary: across 9 tokens of 256 bits, every hex digit value turns up.
    let digits: BTreeSet<char> = tokens.iter().flat_map(|t| t[3..].chars()).collect();
    assert_eq!(digits.len(), 16);
    assert_eq!(
        request(port, "DELETE", "/v1/sessions", Some(&revoked), None, b"").0,
        204
    );
    assert_eq!(
        call(port, "GET", "/v1/users/me", Some(&tokens[3]), b"").0,
        200,
        "other sessions live"
    );

    let before = snapshot(port, &alice, &ids);

    // --- Every route with every kind of bad credential.
    let unknown = format!("st_{}", "ab".repeat(32));
    let mut flipped = alice.token.clone();
    let last = if flipped.ends_with('0') { "1" } else { "0" };
    flipped.replace_range(flipped.len() - 1.., last);
    let bad: Vec<(&str, Option<&str>)> = vec![
        ("none", None),
        ("garbage", Some("nope")),
        ("unknown", Some(&unknown)),
        ("one digit off", Some(&flipped)),
        ("revoked", Some(&revoked)),
        ("admin token as a user", Some(ADMIN)),
    ];
    for (method, path, guard) in MATRIX {
        if *path == "/v1/ws" {
            continue; // below, with the WebSocket ops
        }
        let p = concrete(path, &ids);
        let body = body_for(method, path, &ids);
        match guard {
            Guard::Public => {}
            Guard::User => {
                for (what, t) in &bad {
                    let (s, v) = call(port, method, &p, *t, &body);
                    assert_eq!(s, 401, "{method} {p} with {what}: {v}");
                    cells += 1;
                }
            }
            Guard::Admin => {
                let users = [
                    ("none", None),
                    ("garbage", Some("nope")),
                    ("a user's token", Some(alice.token.as_str())),
                    ("admin token plus one", Some(&*format!("{ADMIN}x"))),
                ]
                .map(|(w, t)| (w, t.map(str::to_string)));
                for (what, t) in &users {
                    let (s, v) = call(port, method, &p, t.as_deref(), &body);
                    assert_eq!(s, 401, "{method} {p} with {what}: {v}");
                    cells += 1;
                }
            }
        }
    }

    // --- Another user's resources: 403 (API.md), never a change.
    let post_path = format!("/v1/posts/{}", ids.post);
    let msgs = format!("/v1/conversations/{conv_id}/messages");
    let c1 = format!("/v1/conversations/{conv_id}");
    let cross: Vec<(&str, String, Value, u16)> = vec![
        ("GET", c1.clone(), Value::Null, 403),
        ("PATCH", c1.clone(), json!({"name":"pwned"}), 403),
        (
            "PUT",
            format!("{c1}/members/{}", mallory.id),
            Value::Null,
            403,
        ),
        (
            "DELETE",
            format!("{c1}/members/{}", bob.id),
            Value::Null,
            403,
        ),
        (
            "PUT",
            format!("{c1}/members/{}/role", mallory.id),
            json!({"role":"owner"}),
            403,
        ),
        ("PUT", format!("{c1}/read"), json!({"seq":1}), 403),
        ("PATCH", format!("{msgs}/1"), json!({"body":"pwned"}), 403),
        ("DELETE", format!("{msgs}/1"), Value::Null, 403),
        ("PATCH", post_path.clone(), json!({"text":"pwned"}), 403),
        ("DELETE", post_path.clone(), Value::Null, 403),
        ("GET", format!("{msgs}?after_seq=0"), Value::Null, 403),
        ("GET", format!("{msgs}?before_seq=100"), Value::Null, 403),
        (
            "POST",
            msgs.clone(),
            json!({"body":"pwned","client_id":"m1"}),
            403,
        ),
        (
            "POST",
            format!("/v1/friend-requests/{}/accept", ids.request),
            Value::Null,
            403,
        ),
        (
            "POST",
            format!("/v1/friend-requests/{}/decline", ids.request),
            Value::Null,
            403,
        ),
        (
            "DELETE",
            format!("/v1/friend-requests/{}", ids.request),
            Value::Null,
            403,
        ),
    ];
    for (method, path, body, want) in &cross {
        let b = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (s, v) = call(port, method, path, Some(&mallory.token), &b);
        assert_eq!(s, *want, "mallory {method} {path}: {v}");
        cells += 1;
    }
    // The request mallory could neither decline nor cancel is still pending, on both lists.
    for (who, direction) in [(&alice, "outgoing"), (&bob, "incoming")] {
        let path = format!("/v1/friend-requests?direction={direction}");
        let (s, list) = call(port, "GET", &path, Some(&who.token), b"");
        assert_eq!(s, 200);
        assert!(list.to_string().contains(&ids.request), "{list}");
    }
    cells += 2;
    // A like is the liker's own: another user's unlike answers 204 (idempotent) and takes only
    // their own like back (on a post of bob's, outside the read-back).
    let (s, liked) = json_call(
        port,
        "POST",
        "/v1/posts",
        Some(&bob.token),
        json!({"text":"liked"}),
    );
    assert_eq!(s, 201);
    let liked = format!("/v1/posts/{}", liked["id"].as_str().unwrap());
    let like = format!("{liked}/like");
    assert_eq!(call(port, "PUT", &like, Some(&bob.token), b"").0, 204);
    assert_eq!(
        call(port, "DELETE", &like, Some(&mallory.token), b"").0,
        204
    );
    let (s, likers) = call(
        port,
        "GET",
        &format!("{liked}/likes"),
        Some(&mallory.token),
        b"",
    );
    assert_eq!(s, 200);
    assert!(likers.to_string().contains(&bob.id), "{likers}");
    cells += 2;
    // A repost is the reposter's own: another user's undo answers 204 (idempotent) and leaves
    // bob's repost where it is.
    let repost = format!("{liked}/repost");
    assert_eq!(call(port, "PUT", &repost, Some(&bob.token), b"").0, 204);
    assert_eq!(
        call(port, "DELETE", &repost, Some(&mallory.token), b"").0,
        204
    );
    let (s, seen) = call(port, "GET", &liked, Some(&bob.token), b"");
    assert_eq!(s, 200);
    assert_eq!(seen["viewer"]["reposted"], true, "{seen}");
    cells += 1;
    // Mallory's conversation list does not show theirs.
    let (_, list) = call(port, "GET", "/v1/conversations", Some(&mallory.token), b"");
    assert!(!list.to_string().contains(&conv_id), "{list}");
    assert!(!list.to_string().contains(&group_id), "{list}");
    cells += 1;

    // --- Roles in the group: what a member, an admin, a former member, a stranger and the
    // owner may not do (API.md: owner/admin change the group, only the owner changes roles,
    // only the sender edits, the sender or an owner/admin deletes; never a change).
    let gmsg = format!("{g}/messages/{gseq}");
    let member = |u: &Account| format!("{g}/members/{}", u.id);
    let role = |u: &Account| format!("{g}/members/{}/role", u.id);
    let pwned = || json!({"body":"pwned"});
    let roles: Vec<(&Account, &str, String, Value, u16)> = vec![
        // carol: a plain member.
        (&carol, "PATCH", g.clone(), json!({"name":"pwned"}), 403),
        (&carol, "PATCH", g.clone(), json!({"avatar":null}), 403),
        (&carol, "PUT", member(&mallory), Value::Null, 403),
        (&carol, "DELETE", member(&bob), Value::Null, 403),
        (&carol, "DELETE", member(&alice), Value::Null, 403),
        (&carol, "PUT", role(&carol), json!({"role":"admin"}), 403),
        (&carol, "PUT", role(&bob), json!({"role":"member"}), 403),
        (&carol, "PATCH", gmsg.clone(), pwned(), 403),
        (&carol, "DELETE", gmsg.clone(), Value::Null, 403),
        // bob: an admin, who removes neither the owner nor another admin, nor changes roles,
        // nor edits another's message.
        (&bob, "DELETE", member(&alice), Value::Null, 403),
        (&bob, "DELETE", member(&dave), Value::Null, 403),
        (&bob, "PUT", role(&carol), json!({"role":"admin"}), 403),
        (&bob, "PUT", role(&dave), json!({"role":"member"}), 403),
        (&bob, "PUT", role(&bob), json!({"role":"owner"}), 403),
        (&bob, "PATCH", gmsg.clone(), pwned(), 403),
        // erin: removed; she reads the group up to her removal, nothing after it, and does
        // nothing.
        (&erin, "GET", g.clone(), Value::Null, 200),
        (
            &erin,
            "GET",
            format!("{g}/messages?after_seq={gseq}"),
            Value::Null,
            403,
        ),
        (&erin, "PATCH", g.clone(), json!({"name":"pwned"}), 403),
        (&erin, "PUT", member(&erin), Value::Null, 403),
        (&erin, "DELETE", member(&carol), Value::Null, 403),
        (&erin, "PUT", role(&erin), json!({"role":"owner"}), 403),
        (&erin, "PUT", format!("{g}/read"), json!({"seq":1}), 403),
        (
            &erin,
            "POST",
            format!("{g}/messages"),
            json!({"body":"pwned","client_id":"e1"}),
            403,
        ),
        (&erin, "PATCH", gmsg.clone(), pwned(), 403),
        (&erin, "DELETE", gmsg.clone(), Value::Null, 403),
        // mallory: never a member.
        (&mallory, "GET", g.clone(), Value::Null, 403),
        (
            &mallory,
            "GET",
            format!("{g}/messages?after_seq=0"),
            Value::Null,
            403,
        ),
        (&mallory, "PATCH", g.clone(), json!({"name":"pwned"}), 403),
        (&mallory, "PUT", member(&mallory), Value::Null, 403),
        (&mallory, "DELETE", member(&carol), Value::Null, 403),
        (
            &mallory,
            "PUT",
            role(&mallory),
            json!({"role":"owner"}),
            403,
        ),
        (&mallory, "PUT", role(&carol), json!({"role":"admin"}), 403),
        (&mallory, "PUT", format!("{g}/read"), json!({"seq":1}), 403),
        (&mallory, "PATCH", gmsg.clone(), pwned(), 403),
        (&mallory, "DELETE", gmsg.clone(), Value::Null, 403),
        // alice: the owner hands the group over before leaving it.
        (&alice, "DELETE", member(&alice), Value::Null, 409),
    ];
    for (who, method, path, body, want) in &roles {
        let b = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (s, v) = call(port, method, path, Some(&who.token), &b);
        assert_eq!(s, *want, "{} {method} {path}: {v}", who.handle);
        cells += 1;
    }
    // What erin reads ends at her removal: alice's later message is not in it.
    let (s, v) = call(
        port,
        "GET",
        &format!("{g}/messages?after_seq=0"),
        Some(&erin.token),
        b"",
    );
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains("group plans"), "{v}");
    cells += 1;

    // --- WebSocket: bad tokens close with 4001 whatever op follows; a non-member's ops are
    // refused and reach nobody.
    let ws_bad = [
        ("garbage", "nope"),
        ("unknown", unknown.as_str()),
        ("revoked", revoked.as_str()),
    ];
    for (what, t) in ws_bad {
        for (n, op) in WS_OPS.iter().enumerate() {
            let mut c = Client::connect_only(addr, t).await;
            let _ = futures_util::SinkExt::send(
                &mut c.ws,
                tokio_tungstenite::tungstenite::Message::text(
                    ws_frame(op, &conv_id, n).to_string(),
                ),
            )
            .await;
            assert_eq!(c.ended().await, Ended::Closed(4001), "{op} with {what}");
            cells += 1;
        }
    }
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .unwrap();
    assert_eq!(Client { ws }.ended().await, Ended::Closed(4001), "no token");
    cells += 1;
    let mut bob_ws = Client::connect(addr, &bob.token).await;
    let mut m = Client::connect(addr, &mallory.token).await;
    for (n, op) in WS_OPS.iter().enumerate().filter(|(_, op)| **op != "ping") {
        m.send(ws_frame(op, &conv_id, n)).await;
        let e = m
            .next_of(&[
                "error", "ack", "message", "resumed", "typing", "read", "edited", "deleted",
            ])
            .await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{op}"
        );
        cells += 1;
    }
    // In the group, over the WebSocket: a member, an admin, a former member and a stranger
    // edit or delete alice's message.
    let edit =
        |n: &str| json!({"type":"edit","conv":group_id,"seq":gseq,"body":"pwned","client_id":n});
    let delete = |n: &str| json!({"type":"delete","conv":group_id,"seq":gseq,"client_id":n});
    let ws_roles: Vec<(&Account, Value)> = vec![
        (&carol, edit("w1")),
        (&carol, delete("w2")),
        (&bob, edit("w3")),
        (&erin, edit("w4")),
        (&erin, delete("w5")),
        (&mallory, edit("w6")),
        (&mallory, delete("w7")),
    ];
    for (who, frame) in &ws_roles {
        let mut c = Client::connect(addr, &who.token).await;
        c.send(frame.clone()).await;
        let e = c.next_of(&["error", "ack", "edited", "deleted"]).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{} {frame}",
            who.handle
        );
        cells += 1;
    }
    // Bob heard nothing of it: the next frame he gets is the answer to his own ping.
    bob_ws.send(json!({"type":"ping"})).await;
    let next = bob_ws
        .next_of(&["pong", "message", "typing", "read", "edited", "deleted"])
        .await;
    assert_eq!(next["type"], "pong", "bob got {next}");
    // A session revoked while its socket is open cannot open another.
    let extra = login(port, "bob");
    let mut live = Client::connect(addr, &extra).await;
    assert_eq!(
        request(port, "DELETE", "/v1/sessions", Some(&extra), None, b"").0,
        204
    );
    let mut again = Client::connect_only(addr, &extra).await;
    assert_eq!(again.ended().await, Ended::Closed(4001));
    live.send(json!({"type":"ping"})).await;
    live.next_of(&["pong"]).await;

    // --- Nothing changed.
    let after = snapshot(port, &alice, &ids);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "read back of {}", b.0);
    }
    assert_eq!(after.len(), before.len());

    // --- Secrets: nothing in the log (read once the node has stopped and said so); then the
    // store, read with the node stopped.
    assert!(node.alive());
    let log_handle = node.log.clone();
    let status = node.terminate();
    assert!(status.success());
    assert!(
        common::eventually(Duration::from_secs(10), || log_handle
            .lock()
            .unwrap()
            .contains("starling stopped")),
        "the whole log was captured"
    );
    let log = log_handle.lock().unwrap().clone();
    assert!(
        log.contains("starling listening on"),
        "the log was captured"
    );
    let mut secrets: Vec<&str> = vec![PASSWORD, ADMIN, &extra, &revoked];
    secrets.extend(tokens.iter().map(String::as_str));
    for s in &secrets {
        assert!(!log.contains(s), "the log shows a secret ({}…)", &s[..6]);
    }
    // Hex halves too: a token cut in two by a formatter is still a leak.
    for t in &tokens {
        assert!(!log.contains(&t[3..35]), "the log shows part of a token");
    }
    let (users, hashes) = stored_credentials(&dir.path().join("data"), &secrets).await;
    assert_eq!(hashes, users, "one argon2id hash per user");
    eprintln!(
        "authz matrix: {cells} cells, {} secrets checked against {} log bytes",
        secrets.len(),
        log.len()
    );
}

/// Scans the stopped node's store: every credential is an argon2id PHC string, and no key or
/// value holds a secret in the clear. Returns (users, argon2id hashes).
async fn stored_credentials(data: &std::path::Path, secrets: &[&str]) -> (usize, usize) {
    use starling_store::{HlcClock, Key, NodeId, RegionId, ScanRequest, open_embedded};
    let opts = starling_store::EmbeddedOptions::new(data);
    let store = open_embedded(
        NodeId::new(RegionId(9), 9),
        std::sync::Arc::new(HlcClock::new()),
        &opts,
    )
    .unwrap();
    let mut all = Vec::new();
    let mut req = ScanRequest::prefix(Key::from(""), 500);
    loop {
        let page = store.scan(&req).await.unwrap();
        all.extend(page.items);
        match page.next {
            Some(n) => req.after = Some(n),
            None => break,
        }
    }
    assert!(
        all.len() > 10,
        "the scan read the store ({} keys)",
        all.len()
    );
    let (mut users, mut hashes) = (0, 0);
    for (k, v) in &all {
        let key = k.as_bytes();
        let value = v.value.clone().unwrap_or_default();
        for s in secrets {
            for hay in [key, &value[..]] {
                assert!(
                    !hay.windows(s.len()).any(|w| w == s.as_bytes()),
                    "a secret in the store in the clear"
                );
            }
        }
        if key.starts_with(b"gu") {
            users += 1;
        }
        if key.starts_with(b"gc") {
            assert!(
                value.starts_with(b"$argon2id$"),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
            hashes += 1;
        }
    }
    (users, hashes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_and_disabled_admin_are_refused() {
    // Sessions of 2 s; no admin token configured.
    let dir = tempfile::tempdir().unwrap();
    let node = data_node(dir.path(), &["--store", "memory", "--session-ttl", "2s"]);
    let port = node.port;
    let a = sign_up(port, "ephemeral");
    assert_eq!(
        call(port, "GET", "/v1/users/me", Some(&a.token), b"").0,
        200
    );
    assert!(
        common::eventually(Duration::from_secs(30), || call(
            port,
            "GET",
            "/v1/users/me",
            Some(&a.token),
            b""
        )
        .0 == 401),
        "the token expires"
    );
    let ids = Ids {
        user: a.id.clone(),
        handle: a.handle.clone(),
        post: "1".into(),
        media: "1".into(),
        conv: "1".into(),
        group: "1".into(),
        request: "1".into(),
    };
    let mut cells = 0;
    for (method, path, guard) in MATRIX {
        let p = concrete(path, &ids);
        let body = body_for(method, path, &ids);
        match guard {
            Guard::User if *path != "/v1/ws" => {
                let (s, v) = call(port, method, &p, Some(&a.token), &body);
                assert_eq!(s, 401, "{method} {p} with an expired token: {v}");
                cells += 1;
            }
            Guard::Admin => {
                // Without an admin token configured the endpoints are off, whatever is sent.
                for t in [None, Some("anything"), Some(ADMIN)] {
                    let (s, v) = call(port, method, &p, t, &body);
                    assert_eq!(s, 403, "{method} {p} on a node without admin token: {v}");
                    cells += 1;
                }
            }
            _ => {}
        }
    }
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut c = Client::connect_only(addr, &a.token).await;
    assert_eq!(
        c.ended().await,
        Ended::Closed(4001),
        "expired token on the WebSocket"
    );
    cells += 1;
    // A new login works again.
    let t = login(port, "ephemeral");
    assert_eq!(call(port, "GET", "/v1/users/me", Some(&t), b"").0, 200);
    eprintln!("expired/disabled-admin cells: {cells}");
}

/// A signed media URL opens its media without a token, and nothing else: not another media,
/// not after it expires, not changed by a digit, not with a signature under another secret;
/// every refusal is a 403 problem, whatever bearer token comes with it. The downloads' cache
/// validators and byte ranges are checked on the same node (local media directory).
#[test]
fn signed_media_urls_open_one_media_until_they_expire() {
    const MEDIA_SECRET: &str = "the-media-url-secret-of-the-test";
    let dir = tempfile::tempdir().unwrap();
    let node = data_node(dir.path(), &["--media-url-secret", MEDIA_SECRET]);
    let port = node.port;
    let alice = sign_up(port, "alice");
    let upload = |bytes: &[u8]| {
        let (s, v) = call(port, "POST", "/v1/media", Some(&alice.token), bytes);
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().parse::<u64>().unwrap()
    };
    let mine = upload(common::PNG_1X1);
    let other = upload(&[common::PNG_1X1, b"another"].concat());
    let (s, link) = call(
        port,
        "GET",
        &format!("/v1/media/{mine}/url"),
        Some(&alice.token),
        b"",
    );
    assert_eq!(s, 200, "{link}");
    let url = link["url"].as_str().unwrap();
    assert!(
        link["expires_at"].as_str().unwrap().ends_with('Z'),
        "{link}"
    );
    let get = |path: &str, token: Option<&str>| request(port, "GET", path, token, None, b"");
    assert_eq!(get(url, None), (200, common::PNG_1X1.to_vec()));
    // Another media's id under this signature; this media with the other's signature.
    let (exp, sig) = url.split_once('?').unwrap().1.split_once('&').unwrap();
    let refused = |path: &str, token: Option<&str>, why: &str| {
        let (s, b) = get(path, token);
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        assert_eq!(
            (s, v["status"].as_u64()),
            (403, Some(403)),
            "{why}: {path} {v}"
        );
        assert!(v["detail"].as_str().unwrap().contains("media URL"), "{v}");
    };
    refused(
        &format!("/v1/media/{other}?{exp}&{sig}"),
        None,
        "another id",
    );
    // The server's own key, with an expiry in the past: the signature is right, the time over.
    let signer = starling_api::media::UrlSigner::from_secret(MEDIA_SECRET);
    let now = starling_api::media::now_secs();
    refused(&signer.url(mine, now - 1), None, "expired");
    refused(
        &signer.url(mine, now - 1),
        Some(&alice.token),
        "expired, with a token",
    );
    assert_eq!(get(&signer.url(mine, now + 60), None).0, 200, "signed here");
    let wrong = starling_api::media::UrlSigner::from_secret("some-other-secret-16");
    refused(&wrong.url(mine, now + 60), None, "another secret");
    let mut forged = url.to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    refused(&forged, None, "a digit changed");
    refused(
        &format!("/v1/media/{mine}?exp=9999999999&{sig}"),
        None,
        "a later expiry",
    );
    // Without a signature the token decides, as before.
    assert_eq!(get(&format!("/v1/media/{mine}"), None).0, 401);

    // Validators and ranges.
    let path = format!("/v1/media/{other}");
    let bearer = format!("Bearer {}", alice.token);
    let (s, head, body) = common::get_with_headers(port, &path, &[("Authorization", &bearer)]);
    assert_eq!(s, 200, "{head}");
    let etag = common::header_of(&head, "etag").unwrap();
    let (s, _, body304) = common::get_with_headers(
        port,
        &path,
        &[("Authorization", &bearer), ("If-None-Match", &etag)],
    );
    assert_eq!((s, body304.len()), (304, 0));
    let (s, _, _) = common::get_with_headers(
        port,
        &path,
        &[("Authorization", &bearer), ("If-None-Match", "\"m1\"")],
    );
    assert_eq!(s, 200, "another validator: the media again");
    let (s, head, part) = common::get_with_headers(
        port,
        &path,
        &[("Authorization", &bearer), ("Range", "bytes=-7")],
    );
    assert_eq!((s, part.as_slice()), (206, &b"another"[..]), "{head}");
    let (s, _, whole) = common::get_with_headers(
        port,
        &path,
        &[
            ("Authorization", &bearer),
            ("Range", "bytes=-7"),
            ("If-Range", "\"m1\""),
        ],
    );
    assert_eq!(
        (s, whole),
        (200, body.clone()),
        "If-Range not current: all of it"
    );
    let past = format!("bytes={}-", body.len());
    let (s, head, _) =
        common::get_with_headers(port, &path, &[("Authorization", &bearer), ("Range", &past)]);
    assert_eq!(s, 416, "{head}");
    assert_eq!(
        common::header_of(&head, "content-range"),
        Some(format!("bytes */{}", body.len()))
    );
}

#[test]
fn a_node_without_the_cluster_secret_cannot_join_read_or_write() {
    const SECRET: &str = "the-real-cluster-secret-0123";
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, secret: &str, seed: Option<&str>| {
        let gossip = format!("127.0.0.1:{}", free_port());
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut args: Vec<String> = [
            "--store",
            "memory",
            "--region",
            "us",
            "--node-id",
            name,
            "--gossip-listen",
            &gossip,
            "--cluster-secret",
            secret,
            "--admin-token",
            ADMIN,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(s) = seed {
            args.extend(["--seeds".to_string(), s.to_string()]);
        }
        (Node::start_logging(&d, free_port(), &args, "info"), gossip)
    };
    let (a, a_gossip) = start("a", SECRET, None);
    let (friend, _) = start("friend", SECRET, Some(&a_gossip));
    let (intruder, _) = start("intruder", "a-wrong-cluster-secret-999", Some(&a_gossip));
    let members = |n: &Node| {
        let (_, b) = request(n.port, "GET", "/v1/cluster", Some(ADMIN), None, b"");
        let v: Value = serde_json::from_slice(&b).unwrap();
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].to_string())
            .collect::<Vec<_>>()
    };
    let read = |n: &Node, k: &str| {
        request(
            n.port,
            "GET",
            &format!("/v1/admin/kv/{k}"),
            Some(ADMIN),
            None,
            b"",
        )
    };
    // The control: a node with the secret joins and gets writes.
    assert!(
        common::eventually(Duration::from_secs(30), || !members(&a).is_empty()),
        "friend joins"
    );
    assert_eq!(
        request(a.port, "PUT", "/v1/admin/kv/k1", Some(ADMIN), None, b"v1").0,
        204
    );
    assert_eq!(
        request(
            intruder.port,
            "PUT",
            "/v1/admin/kv/k2",
            Some(ADMIN),
            None,
            b"evil"
        )
        .0,
        204
    );
    assert!(
        common::eventually(Duration::from_secs(30), || read(&friend, "k1").0 == 200),
        "friend reads"
    );
    // The intruder's frames are refused and counted…
    assert!(
        common::eventually(Duration::from_secs(30), || {
            let (_, b) = request(a.port, "GET", "/metrics", None, None, b"");
            let text = String::from_utf8_lossy(&b).to_string();
            text.lines().any(|l| {
                l.starts_with("starling_gossip_frames_refused_total")
                    && l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                        > 0
            })
        }),
        "refused frames show in /metrics"
    );
    // …give replication time that it had for the friend, then check.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        members(&a).len(),
        1,
        "only the friend is a member: {:?}",
        members(&a)
    );
    assert!(members(&intruder).is_empty(), "the intruder sees no one");
    assert_eq!(read(&intruder, "k1").0, 404, "the intruder cannot read");
    assert_eq!(read(&a, "k2").0, 404, "the intruder cannot write");
    assert_eq!(read(&friend, "k2").0, 404, "nor through another member");
    assert!(!a.log_text().contains(SECRET) && !friend.log_text().contains(SECRET));
}
