//! Profiles through the real `starling` binary: a bio and an avatar (an image the caller
//! uploaded) set with `PATCH /v1/users/me`, shown on a user's read, cleared with `null`; a bad
//! bio or someone else's media is 422 and changes nothing.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, free_port};
use serde_json::{Value, json};

fn call(n: &Node, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    common::call_json(n, method, path, Some(token), &body)
}

fn sign_up(n: &Node, handle: &str) -> (String, String) {
    common::sign_up_user(n, handle)
}

fn upload(n: &Node, token: &str) -> String {
    let (s, b) = common::request(
        n.port,
        "POST",
        "/v1/media",
        Some(token),
        Some("image/png"),
        common::PNG_1X1,
    );
    assert_eq!(s, 201);
    let v: Value = serde_json::from_slice(&b).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn a_profile_has_a_bio_and_an_avatar_of_ones_own() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["--store", "memory", "--auth-per-minute", "1000000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let n = Node::start(dir.path(), free_port(), &args);
    let (alice, at) = sign_up(&n, "alice");
    let (_, bt) = sign_up(&n, "bob");
    let (s, me) = call(&n, "GET", "/v1/users/me", &at, Value::Null);
    assert_eq!(s, 200);
    assert_eq!(me["bio"], "");
    assert!(me.get("avatar").is_none(), "{me}");
    assert!(me["created_at"].as_str().unwrap().ends_with('Z'));

    let mine = upload(&n, &at);
    let (s, v) = call(
        &n,
        "PATCH",
        "/v1/users/me",
        &at,
        json!({"display_name": "Alice", "bio": "hello\nworld", "avatar": mine}),
    );
    assert_eq!(s, 200, "{v}");
    for path in [
        format!("/v1/users/{alice}"),
        "/v1/users/by-handle/ALICE".to_string(),
    ] {
        let (s, v) = call(&n, "GET", &path, &bt, Value::Null);
        assert_eq!(s, 200);
        assert_eq!(
            (
                v["display_name"].as_str(),
                v["bio"].as_str(),
                v["avatar"].as_str()
            ),
            (Some("Alice"), Some("hello\nworld"), Some(mine.as_str())),
            "{path}"
        );
    }

    // Someone else's image, an unknown media id, a bad bio: 422, and nothing changed.
    let bobs = upload(&n, &bt);
    let long = "b".repeat(301);
    for body in [
        json!({"avatar": bobs}),
        json!({"avatar": "12345"}),
        json!({"bio": long, "display_name": "Changed"}),
        json!({"bio": "bell\u{7}"}),
    ] {
        let (s, v) = call(&n, "PATCH", "/v1/users/me", &at, body.clone());
        assert_eq!(s, 422, "{body}: {v}");
    }
    let (_, v) = call(&n, "GET", "/v1/users/me", &at, Value::Null);
    assert_eq!(v["avatar"].as_str(), Some(mine.as_str()));
    assert_eq!(v["display_name"], "Alice");
    assert_eq!(v["bio"], "hello\nworld");

    // null removes the avatar; an absent field leaves it.
    let (s, v) = call(&n, "PATCH", "/v1/users/me", &at, json!({"bio": "short"}));
    assert_eq!((s, v["avatar"].as_str()), (200, Some(mine.as_str())));
    let (s, v) = call(&n, "PATCH", "/v1/users/me", &at, json!({"avatar": null}));
    assert_eq!(s, 200);
    assert!(v.get("avatar").is_none(), "{v}");
    assert_eq!(v["bio"], "short");
    assert!(n.terminate().success());
}
