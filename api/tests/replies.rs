//! Replies and threads through the real `starling` binary: `reply_to` on a new post, the thread
//! (ancestors oldest first, the post, direct replies paged), reply counts, a deleted parent left
//! as a placeholder with its replies readable, and a block refusing a reply.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, eventually, sign_up_user as sign_up};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn call(n: &Node, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    common::call_json(n, method, path, Some(token), &body)
}

/// Posts `text` as `token`, answering `parent` if given: the new post's view.
fn post(n: &Node, token: &str, text: &str, parent: Option<&str>) -> Value {
    let mut body = json!({ "text": text });
    if let Some(p) = parent {
        body["reply_to"] = json!(p);
    }
    let (s, v) = call(n, "POST", "/v1/posts", token, body);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["reply_to"].as_str(), parent);
    v
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn thread(n: &Node, post: &str, token: &str, query: &str) -> Value {
    let (s, v) = call(
        n,
        "GET",
        &format!("/v1/posts/{post}/thread{query}"),
        token,
        Value::Null,
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn replies_count(n: &Node, post: &str, token: &str) -> u64 {
    let (_, v) = call(n, "GET", &format!("/v1/posts/{post}"), token, Value::Null);
    v["counts"]["replies"].as_u64().unwrap()
}

#[test]
fn threads_show_ancestors_then_replies_and_survive_a_deleted_parent() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &[]);
    let (alice, at) = sign_up(&n, "alice");
    let (_, bt) = sign_up(&n, "bob");
    let (carol, ct) = sign_up(&n, "carol");
    let root = id(&post(&n, &at, "root", None));
    let a = id(&post(&n, &bt, "a", Some(&root)));
    let b = id(&post(&n, &ct, "b", Some(&root)));
    let a1 = id(&post(&n, &at, "a1", Some(&a)));

    // The deepest post: its ancestors oldest first, itself, no replies.
    let t = thread(&n, &a1, &bt, "");
    assert_eq!(ids(&t["ancestors"]), vec![root.clone(), a.clone()]);
    assert_eq!(t["post"]["id"].as_str(), Some(a1.as_str()));
    assert_eq!(t["post"]["reply_to"].as_str(), Some(a.as_str()));
    assert!(t["replies"]["items"].as_array().unwrap().is_empty());
    // The root: direct replies only, oldest first, one per page.
    let t = thread(&n, &root, &bt, "?limit=1");
    assert!(t["ancestors"].as_array().unwrap().is_empty());
    assert_eq!(ids(&t["replies"]["items"]), vec![a.clone()]);
    let cursor = t["replies"]["next_cursor"].as_str().unwrap().to_string();
    let t = thread(&n, &root, &bt, &format!("?limit=1&cursor={cursor}"));
    assert_eq!(ids(&t["replies"]["items"]), vec![b.clone()]);
    assert!(eventually(WAIT, || replies_count(&n, &root, &at) == 2));
    assert!(eventually(WAIT, || replies_count(&n, &a, &at) == 1));

    // bob deletes `a`: a placeholder above a1, which stays readable, and a1 under it; the root
    // keeps only `b`, and its count follows.
    assert_eq!(
        n.http("DELETE", &format!("/v1/posts/{a}"), Some(&bt), b"")
            .0,
        204
    );
    let t = thread(&n, &a1, &ct, "");
    assert_eq!(t["ancestors"][0]["id"].as_str(), Some(root.as_str()));
    assert_eq!(t["ancestors"][1], json!({"id": a, "deleted": true}));
    let t = thread(&n, &a, &ct, "");
    assert_eq!(t["post"], json!({"id": a, "deleted": true}));
    assert_eq!(ids(&t["replies"]["items"]), vec![a1.clone()]);
    assert_eq!(
        ids(&thread(&n, &root, &ct, "")["replies"]["items"]),
        vec![b.clone()]
    );
    assert!(eventually(WAIT, || replies_count(&n, &root, &at) == 1));

    // No reply to a deleted or unknown post; none across a block; an unknown thread is 404.
    for parent in [a.as_str(), "12345"] {
        let (s, v) = call(
            &n,
            "POST",
            "/v1/posts",
            &ct,
            json!({"text":"x","reply_to":parent}),
        );
        assert_eq!(s, 422, "{v}");
    }
    assert_eq!(
        n.http("PUT", &format!("/v1/blocks/{carol}"), Some(&at), b"")
            .0,
        204
    );
    let (s, _) = call(
        &n,
        "POST",
        "/v1/posts",
        &ct,
        json!({"text":"x","reply_to":root}),
    );
    assert_eq!(s, 403);
    assert_eq!(
        n.http("GET", "/v1/posts/12345/thread", Some(&at), b"").0,
        404
    );
    // Across the block neither reads the other's posts: carol gets 403 for alice's post, thread,
    // likers and list; her own reply's thread shows alice's root as blocked; alice's view of the
    // root leaves carol's reply out, bob's keeps it.
    for path in [
        format!("/v1/posts/{root}"),
        format!("/v1/posts/{root}/thread"),
        format!("/v1/posts/{root}/likes"),
        format!("/v1/users/{alice}/posts"),
    ] {
        assert_eq!(n.http("GET", &path, Some(&ct), b"").0, 403, "{path}");
    }
    let t = thread(&n, &b, &ct, "");
    assert_eq!(t["ancestors"][0], json!({"id": root, "blocked": true}));
    assert!(ids(&thread(&n, &root, &at, "")["replies"]["items"]).is_empty());
    assert_eq!(
        ids(&thread(&n, &root, &bt, "")["replies"]["items"]),
        vec![b]
    );
    assert!(n.terminate().success());
}

/// A deleted post leaves nothing behind in the engagement data: its likes and reposts are taken
/// off by the node's background cleanup (the reposter's repost post leaves their list), the
/// count shadows after them, then its counters at zero, and `/metrics` shows the work done and
/// none pending. Deleting
/// someone else's post is refused and takes nothing off.
#[test]
fn a_deleted_posts_likes_and_reposts_are_taken_off() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &["--deletion-interval", "100ms"]);
    let (_, at) = sign_up(&n, "alice");
    let (_, bt) = sign_up(&n, "bob");
    let (carol, ct) = sign_up(&n, "carol");
    let x = id(&post(&n, &at, "to be deleted", None));
    let y = id(&post(&n, &at, "stays", None));
    for (p, t) in [(&x, &bt), (&x, &ct), (&y, &ct)] {
        let (s, _) = call(&n, "PUT", &format!("/v1/posts/{p}/like"), t, Value::Null);
        assert_eq!(s, 204);
    }
    let (s, _) = call(
        &n,
        "PUT",
        &format!("/v1/posts/{x}/repost"),
        &ct,
        Value::Null,
    );
    assert_eq!(s, 204);
    let carols = || {
        let (s, v) = call(
            &n,
            "GET",
            &format!("/v1/users/{carol}/posts"),
            &ct,
            Value::Null,
        );
        assert_eq!(s, 200, "{v}");
        v["items"].as_array().unwrap().len()
    };
    assert_eq!(carols(), 1, "carol's repost");
    let likes = |p: &str| {
        let (_, v) = call(&n, "GET", &format!("/v1/posts/{p}"), &bt, Value::Null);
        v["counts"]["likes"].as_u64()
    };
    assert!(eventually(WAIT, || likes(&x) == Some(2) && likes(&y) == Some(1)));

    // Bad input and someone else's post: refused, nothing taken off.
    assert_eq!(call(&n, "DELETE", "/v1/posts/abc", &bt, Value::Null).0, 400);
    assert_eq!(
        call(&n, "DELETE", &format!("/v1/posts/{x}"), &bt, Value::Null).0,
        403
    );
    assert_eq!(likes(&x), Some(2));

    let (s, _) = call(&n, "DELETE", &format!("/v1/posts/{x}"), &at, Value::Null);
    assert_eq!(s, 204);
    // Two likes and a repost taken off, then the three elements' count shadows, then the post's
    // like and repost counters, at zero.
    let done = || {
        n.metric("starling_deleted_post_removals_total") == 8.0
            && n.metric("starling_deleted_posts_pending") == 0.0
    };
    assert!(
        eventually(WAIT, done),
        "removals {} pending {}",
        n.metric("starling_deleted_post_removals_total"),
        n.metric("starling_deleted_posts_pending")
    );
    assert_eq!(carols(), 0, "the repost post went with its element");
    assert_eq!(likes(&y), Some(1), "another post's like stays");
    assert_eq!(
        call(&n, "PUT", &format!("/v1/posts/{x}/like"), &bt, Value::Null).0,
        404
    );
    assert_eq!(n.metric("starling_deleted_post_removals_total"), 8.0);
    assert!(n.terminate().success());
}

/// A deleted account's reply leaves the thread at once (before its sweep) and, swept, the
/// parent's reply count.
#[test]
fn a_deleted_accounts_replies_leave_the_thread_and_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--handle-grace", "1s", "--deletion-interval", "100ms"];
    let n = Node::memory(dir.path(), &flags);
    let (_, at) = sign_up(&n, "alice");
    let (_, bt) = sign_up(&n, "bob");
    let (_, ct) = sign_up(&n, "carol");
    let x = id(&post(&n, &at, "parent", None));
    let r = id(&post(&n, &bt, "bob's reply", Some(&x)));
    let kept = id(&post(&n, &ct, "carol's reply", Some(&x)));
    assert!(eventually(WAIT, || replies_count(&n, &x, &at) == 2));
    let wrong = json!({"password": "not it at all"});
    assert_eq!(call(&n, "DELETE", "/v1/users/me", &bt, wrong).0, 403);
    assert_eq!(
        ids(&thread(&n, &x, &at, "")["replies"]["items"]),
        vec![r.clone(), kept.clone()]
    );
    let right = json!({"password": "password1"});
    assert_eq!(call(&n, "DELETE", "/v1/users/me", &bt, right).0, 204);
    assert_eq!(
        ids(&thread(&n, &x, &at, "")["replies"]["items"]),
        vec![kept.clone()]
    );
    assert!(
        eventually(WAIT, || replies_count(&n, &x, &at) == 1),
        "the swept reply stops counting: {}",
        replies_count(&n, &x, &at)
    );
    assert_eq!(
        call(&n, "GET", &format!("/v1/posts/{r}"), &at, Value::Null).0,
        404
    );
    assert_eq!(
        ids(&thread(&n, &x, &at, "")["replies"]["items"]),
        vec![kept]
    );
    assert!(n.terminate().success());
}
