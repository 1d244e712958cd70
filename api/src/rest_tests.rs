//! Router tests of the REST API (no socket): each endpoint's happy path and documented errors,
//! an authorization matrix, and a malformed-input table that also checks nothing was written.

use crate::router;
use crate::testing::state;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use starling_store::{HlcClock, Limits, NodeId, RegionId, Store, open_memory};
use std::sync::Arc;
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    store: Arc<dyn Store>,
}

fn api() -> Api {
    let store = open_memory(
        NodeId::new(RegionId::from_name("t"), 1),
        Arc::new(HlcClock::new()),
        Limits::default(),
    );
    Api {
        app: router(state(store.clone())),
        store,
    }
}

impl Api {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Vec<u8>, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, bytes, ct)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (ct, b) = match body {
            Some(v) => (Some("application/json"), serde_json::to_vec(&v).unwrap()),
            None => (None, Vec::new()),
        };
        let (status, bytes, rct) = self.raw(method, path, token, ct, b, &[]).await;
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                rct, "application/problem+json",
                "{path}: errors are problem+json"
            );
        }
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    /// `POST /v1/sessions` as `handle` with `password`: the status and body.
    async fn login(&self, handle: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({ "handle": handle, "password": password });
        self.call(Method::POST, "/v1/sessions", None, Some(body))
            .await
    }

    /// `PUT /v1/following/{user}` with `token`: the status.
    async fn follow(&self, token: &str, user: &str) -> StatusCode {
        let path = format!("/v1/following/{user}");
        self.call(Method::PUT, &path, Some(token), None).await.0
    }

    /// `POST /v1/friend-requests` to `to` with `token`: the status and body.
    async fn friend_request(&self, token: &str, to: &str) -> (StatusCode, Value) {
        let body = json!({ "to": to });
        self.call(Method::POST, "/v1/friend-requests", Some(token), Some(body))
            .await
    }

    /// `POST /v1/friend-requests/{id}/accept` with `token`: the status and body.
    async fn accept(&self, token: &str, id: &str) -> (StatusCode, Value) {
        let path = format!("/v1/friend-requests/{id}/accept");
        self.call(Method::POST, &path, Some(token), None).await
    }

    /// `POST /v1/posts` of the JSON `body` with `token` and idempotency key `key`: the status
    /// and the body's bytes.
    async fn post_keyed(&self, token: &str, body: Vec<u8>, key: &str) -> (StatusCode, Vec<u8>) {
        let (s, bytes, _) = self
            .raw(
                Method::POST,
                "/v1/posts",
                Some(token),
                Some("application/json"),
                body,
                &[("idempotency-key", key)],
            )
            .await;
        (s, bytes)
    }

    async fn sign_up(&self, handle: &str) -> (String, String) {
        let (s, v) = self
            .call(
                Method::POST,
                "/v1/users",
                None,
                Some(json!({"handle": handle, "password": "password1"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }
}

#[tokio::test]
async fn a_whole_session_of_a_client() {
    let a = api();
    let (alice, at) = a.sign_up("alice").await;
    let (bob, bt) = a.sign_up("Bob").await;
    // Handles are unique, case-insensitively.
    let (s, _) = a
        .call(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({"handle": "BOB", "password": "password1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Login.
    let (s, v) = a.login("alice", "password1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["user_id"], alice.as_str());
    let (s, _) = a.login("alice", "wrong-one").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Profiles.
    let (s, v) = a
        .call(Method::GET, &format!("/v1/users/{bob}"), Some(&at), None)
        .await;
    assert_eq!((s, v["handle"].as_str()), (StatusCode::OK, Some("bob")));
    let (s, v) = a
        .call(Method::GET, "/v1/users/by-handle/BOB", Some(&at), None)
        .await;
    assert_eq!((s, v["id"].as_str()), (StatusCode::OK, Some(bob.as_str())));
    let (s, v) = a
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(&at),
            Some(json!({"display_name": "Alice A."})),
        )
        .await;
    assert_eq!(
        (s, v["display_name"].as_str()),
        (StatusCode::OK, Some("Alice A."))
    );
    // Follow, lists, counts.
    let s = a.follow(&at, &bob).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = a
        .call(
            Method::GET,
            &format!("/v1/users/{bob}/followers"),
            Some(&bt),
            None,
        )
        .await;
    assert_eq!(v["items"][0]["id"], alice.as_str());
    assert_eq!(v["next_cursor"], Value::Null);
    let (_, v) = a
        .call(
            Method::GET,
            &format!("/v1/users/{alice}/following"),
            Some(&bt),
            None,
        )
        .await;
    assert_eq!(v["items"][0]["followers_count"], 1);
    // Friends.
    let (s, r) = a.friend_request(&bt, &alice).await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::CREATED, Some("pending"))
    );
    let rid = r["id"].as_str().unwrap();
    let (s, _) = a.accept(&bt, rid).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only the addressee accepts");
    let (s, r) = a.accept(&at, rid).await;
    assert_eq!((s, r["state"].as_str()), (StatusCode::OK, Some("accepted")));
    let (_, v) = a.call(Method::GET, "/v1/friends", Some(&at), None).await;
    assert_eq!(v["items"][0]["id"], bob.as_str());
    // Media and posts.
    let (s, m, _) = a
        .raw(
            Method::POST,
            "/v1/media",
            Some(&at),
            Some("image/png"),
            crate::testing::PNG_1X1.to_vec(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let m: Value = serde_json::from_slice(&m).unwrap();
    let mid = m["id"].as_str().unwrap().to_string();
    let (s, bytes, ct) = a
        .raw(
            Method::GET,
            &format!("/v1/media/{mid}"),
            Some(&bt),
            None,
            vec![],
            &[],
        )
        .await;
    assert_eq!(
        (s, bytes.as_slice(), ct.as_str()),
        (StatusCode::OK, crate::testing::PNG_1X1, "image/png")
    );
    let body = serde_json::to_vec(&json!({"text": "hello", "media": [mid]})).unwrap();
    let (s, p1) = a.post_keyed(&at, body.clone(), "k1").await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, p2) = a.post_keyed(&at, body, "k1").await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(p1, p2, "a retry with the same key returns the original");
    let p: Value = serde_json::from_slice(&p1).unwrap();
    let pid = p["id"].as_str().unwrap();
    assert_eq!(p["author"], alice.as_str());
    let (s, v) = a
        .call(
            Method::PATCH,
            &format!("/v1/posts/{pid}"),
            Some(&bt),
            Some(json!({"text": "mine now"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = a
        .call(
            Method::PATCH,
            &format!("/v1/posts/{pid}"),
            Some(&at),
            Some(json!({"text": "edited"})),
        )
        .await;
    assert_eq!((s, v["text"].as_str()), (StatusCode::OK, Some("edited")));
    assert!(v["edited_at"].is_string());
    let (_, v) = a
        .call(
            Method::GET,
            &format!("/v1/users/{alice}/posts"),
            Some(&bt),
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (s, _) = a
        .call(Method::DELETE, &format!("/v1/posts/{pid}"), Some(&bt), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = a
        .call(Method::DELETE, &format!("/v1/posts/{pid}"), Some(&at), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = a
        .call(Method::GET, &format!("/v1/posts/{pid}"), Some(&at), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Blocks remove follows both ways and forbid new ones.
    let (s, _) = a
        .call(Method::PUT, &format!("/v1/blocks/{alice}"), Some(&bt), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let s = a.follow(&at, &bob).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, v) = a
        .call(Method::GET, &format!("/v1/users/{bob}"), Some(&bt), None)
        .await;
    assert_eq!(v["followers_count"], 0);
    // The OpenAPI document needs no token.
    let (s, doc, _) = a
        .raw(Method::GET, "/openapi.json", None, None, vec![], &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    assert!(doc["paths"]["/v1/posts"]["post"].is_object());
    // Logout revokes.
    let (s, _) = a
        .call(Method::DELETE, "/v1/sessions", Some(&at), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = a.call(Method::GET, "/v1/users/me", Some(&at), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Every endpoint that needs a token, with a plausible body.
fn protected(alice: &str, post: &str, req: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/v1/users/{alice}"), None),
        (Method::GET, "/v1/users/by-handle/alice".into(), None),
        (Method::GET, "/v1/users/me".into(), None),
        (
            Method::PATCH,
            "/v1/users/me".into(),
            Some(json!({"display_name": "x"})),
        ),
        (Method::PUT, format!("/v1/following/{alice}"), None),
        (Method::DELETE, format!("/v1/following/{alice}"), None),
        (Method::GET, format!("/v1/users/{alice}/followers"), None),
        (Method::GET, format!("/v1/users/{alice}/following"), None),
        (
            Method::POST,
            "/v1/friend-requests".into(),
            Some(json!({"to": alice})),
        ),
        (
            Method::POST,
            format!("/v1/friend-requests/{req}/accept"),
            None,
        ),
        (Method::GET, "/v1/friends".into(), None),
        (Method::PUT, format!("/v1/blocks/{alice}"), None),
        (Method::DELETE, format!("/v1/blocks/{alice}"), None),
        (Method::POST, "/v1/posts".into(), Some(json!({"text": "x"}))),
        (Method::GET, format!("/v1/posts/{post}"), None),
        (
            Method::PATCH,
            format!("/v1/posts/{post}"),
            Some(json!({"text": "y"})),
        ),
        (Method::DELETE, format!("/v1/posts/{post}"), None),
        (Method::GET, format!("/v1/users/{alice}/posts"), None),
        (Method::GET, "/v1/media/1".into(), None),
        (Method::GET, "/v1/feed".into(), None),
        (Method::DELETE, "/v1/sessions".into(), None),
    ]
}

#[tokio::test]
async fn authorization_matrix() {
    let a = api();
    let (alice, at) = a.sign_up("alice").await;
    let (bob, bt) = a.sign_up("bob").await;
    let (_, mallory_t) = a.sign_up("mallory").await;
    let (_, p) = a
        .call(
            Method::POST,
            "/v1/posts",
            Some(&at),
            Some(json!({"text": "alice's"})),
        )
        .await;
    let post = p["id"].as_str().unwrap().to_string();
    let (_, r) = a.friend_request(&bt, &alice).await;
    let req = r["id"].as_str().unwrap().to_string();
    let before = a.store.last_seq();
    for (m, path, body) in protected(&alice, &post, &req) {
        for token in [None, Some("st_0000"), Some("garbage token")] {
            let (s, _) = a.call(m.clone(), &path, token, body.clone()).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path} with {token:?}");
        }
    }
    assert_eq!(a.store.last_seq(), before, "refused requests wrote nothing");
    // Another user's token on what only the owner may do.
    for (m, path, body) in [
        (
            Method::PATCH,
            format!("/v1/posts/{post}"),
            Some(json!({"text": "y"})),
        ),
        (Method::DELETE, format!("/v1/posts/{post}"), None),
        (
            Method::POST,
            format!("/v1/friend-requests/{req}/accept"),
            None,
        ),
    ] {
        let (s, _) = a.call(m.clone(), &path, Some(&mallory_t), body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}");
    }
    assert_eq!(
        a.store.last_seq(),
        before,
        "forbidden requests wrote nothing"
    );
    // The owner may.
    let (s, _) = a.accept(&at, &req).await;
    assert_eq!(s, StatusCode::OK);
    let _ = bob;
}

/// Method, path, content type, body, expected status.
type BadCase<'a> = (Method, String, Option<&'a str>, Vec<u8>, StatusCode);

#[tokio::test]
async fn malformed_input_gets_a_4xx_and_changes_nothing() {
    let a = api();
    let (alice, at) = a.sign_up("alice").await;
    let before = a.store.last_seq();
    let json = Some("application/json");
    let cases: Vec<BadCase> = vec![
        (
            Method::POST,
            "/v1/users".into(),
            json,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            json,
            b"{\"handle\": \"\xff\xfe\", \"password\": \"password1\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            json,
            br#"{"handle": 5, "password": "password1"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            json,
            br#"{"password": "password1"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            json,
            br#"{"handle": "x", "password": "password1"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            json,
            format!(
                r#"{{"handle": "{}", "password": "password1"}}"#,
                "a".repeat(31)
            )
            .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            json,
            br#"{"handle": "carol", "password": "short"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            None,
            br#"{"handle": "carol", "password": "password1"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/users".into(),
            json,
            vec![b' '; 70_000],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            json,
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            json,
            br#"{"text": ""}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            json,
            format!(r#"{{"text": "{}"}}"#, "x".repeat(5001)).into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            json,
            br#"{"text": "hi", "media": ["123"]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            json,
            br#"{"text": "hi", "media": ["abc"]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            json,
            br#"{"text": "hi", "extra": 1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PATCH,
            "/v1/posts/123".into(),
            json,
            br#"{"text": "hi"}"#.to_vec(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/posts/notanid".into(),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/users/999".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/users/by-handle/nobody".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            "/v1/following/999".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            format!("/v1/following/{alice}"),
            None,
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/friend-requests".into(),
            json,
            br#"{"to": "999"}"#.to_vec(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/friend-requests/999/accept".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/v1/users/{alice}/followers?limit=0"),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/v1/users/{alice}/followers?cursor=zz"),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/media".into(),
            Some("text/html"),
            b"<script>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/media".into(),
            Some("image/png"),
            vec![0u8; crate::posts::MAX_MEDIA_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::GET,
            "/v1/media/42".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/media".into(),
            Some("image/svg+xml"),
            br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/media".into(),
            Some("image/png"),
            b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/media".into(),
            Some("image/gif"),
            b"<html><script>alert(1)</script>".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v1/feed?limit=1&limit=2".into(),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/v1/users/{alice}/posts?cursor=1&cursor=2"),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/no-such-route".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            "/v1/posts".into(),
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (m, path, ct, body, want) in cases {
        let token = if path.starts_with("/v1/users") && m == Method::POST {
            None
        } else {
            Some(at.as_str())
        };
        let (s, b, rct) = a.raw(m.clone(), &path, token, ct, body, &[]).await;
        assert_eq!(s, want, "{m} {path}: {}", String::from_utf8_lossy(&b));
        assert_eq!(rct, "application/problem+json", "{m} {path}");
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["status"], want.as_u16());
    }
    assert_eq!(
        a.store.last_seq(),
        before,
        "no bad request changed the store"
    );
}

#[tokio::test]
async fn sign_up_and_login_are_rate_limited() {
    let store = open_memory(
        NodeId::new(RegionId::from_name("t"), 1),
        Arc::new(HlcClock::new()),
        Limits::default(),
    );
    let a = Api {
        app: router(crate::testing::state_with_auth_limit(store.clone(), 10)),
        store,
    };
    // A burst of two (a fifth of ten), then 429 with a Retry-After.
    a.sign_up("first").await;
    let (s, _) = a.login("first", "password1").await;
    assert_eq!(s, StatusCode::OK);
    let body = serde_json::to_vec(&json!({"handle": "third", "password": "password1"})).unwrap();
    let req = Request::post("/v1/users")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = a.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Other endpoints are not limited.
    let (s, _, _) = a
        .raw(Method::GET, "/healthz", None, None, vec![], &[])
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_digest_endpoint_is_admin_only_and_follows_the_replicated_data() {
    use crate::testing::ADMIN;
    let a = api();
    assert_eq!(
        a.call(Method::GET, "/v1/admin/digest", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, before) = a
        .call(Method::GET, "/v1/admin/digest", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{before}");
    assert_eq!(before["root"].as_str().unwrap().len(), 16);
    assert_eq!(before["ranges"].as_array().unwrap().len(), 64);
    a.sign_up("dora").await;
    let (_, after) = a
        .call(Method::GET, "/v1/admin/digest", Some(ADMIN), None)
        .await;
    assert_ne!(
        before["root"], after["root"],
        "a sign-up changes the digest"
    );
    assert_eq!(
        after["root"].as_str().unwrap(),
        format!("{:016x}", a.store.digests().root()),
        "the store's own root"
    );
    assert!(after["buckets_used"].as_u64().unwrap() > before["buckets_used"].as_u64().unwrap());
}
