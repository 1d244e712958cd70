//! Profiles through the real `starling` binary: a bio and an avatar (an image the caller
//! uploaded) set with `PATCH /v1/users/me`, shown on a user's read, cleared with `null`; a bad
//! bio or someone else's media is 422 and changes nothing.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, free_port, sign_up_user as sign_up};
use serde_json::{Value, json};

fn call(n: &Node, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    common::call_json(n, method, path, Some(token), &body)
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
    let n = Node::memory(dir.path(), &[]);
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

fn login(n: &Node, handle: &str, password: &str) -> (u16, Value) {
    common::call_json(
        n,
        "POST",
        "/v1/sessions",
        None,
        &json!({"handle": handle, "password": password}),
    )
}

/// A token's status on `GET /v1/users/me`.
fn me_status(n: &Node, token: &str) -> u16 {
    n.http("GET", "/v1/users/me", Some(token), b"").0
}

#[test]
fn a_password_change_needs_the_old_password_and_revokes_every_other_session() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &[]);
    let (_, at) = sign_up(&n, "alice");
    let (_, bt) = sign_up(&n, "bob");
    let (s, second) = login(&n, "alice", "password1");
    assert_eq!(s, 200);
    let other = second["token"].as_str().unwrap().to_string();

    // A wrong old password, a weak new one, a malformed body: refused, and nothing changed.
    for (body, want) in [
        (json!({"old": "not it at all", "new": "new password"}), 403),
        (json!({"old": "password1", "new": "short"}), 422),
        (json!({"old": "password1"}), 422),
        (
            json!({"old": "password1", "new": "new password", "x": 1}),
            422,
        ),
    ] {
        let (s, v) = call(&n, "PUT", "/v1/users/me/password", &at, body.clone());
        assert_eq!(s, want, "{body}: {v}");
    }
    assert_eq!(me_status(&n, &other), 200);
    assert_eq!(login(&n, "alice", "password1").0, 200);

    let (s, v) = call(
        &n,
        "PUT",
        "/v1/users/me/password",
        &at,
        json!({"old": "password1", "new": "new password"}),
    );
    assert_eq!(s, 204, "{v}");
    assert_eq!(me_status(&n, &at), 200, "the caller's session stays");
    assert_eq!(me_status(&n, &other), 401, "another session is revoked");
    assert_eq!(
        me_status(&n, &bt),
        200,
        "another user's session is untouched"
    );
    assert_eq!(login(&n, "alice", "password1").0, 401);
    assert_eq!(login(&n, "alice", "new password").0, 200);
    assert!(n.terminate().success());
}

/// A password changed in one region: the sessions it revokes stop working in the other region
/// too, the new password works there, and the caller's session stays valid in both.
#[test]
fn a_password_change_revokes_sessions_in_every_region() {
    let dir = tempfile::tempdir().unwrap();
    let (us, eu) = common::two_regions(dir.path(), "profiles-cluster-secret-0123456789", &[]);
    let (_, at) = sign_up(&us, "alice");
    let wait = std::time::Duration::from_secs(30);
    // A second session, opened in eu once the account got there.
    let mut other = String::new();
    assert!(common::eventually(wait, || {
        let (s, v) = login(&eu, "alice", "password1");
        if s == 200 {
            other = v["token"].as_str().unwrap().to_string();
        }
        s == 200
    }));
    assert!(common::eventually(wait, || me_status(&us, &other) == 200));

    let (s, v) = call(
        &us,
        "PUT",
        "/v1/users/me/password",
        &at,
        json!({"old": "password1", "new": "new password"}),
    );
    assert_eq!(s, 204, "{v}");
    assert!(
        common::eventually(wait, || me_status(&eu, &other) == 401
            && login(&eu, "alice", "new password").0 == 200),
        "the revocation and the new password reach eu"
    );
    assert_eq!(me_status(&us, &other), 401);
    assert_eq!(me_status(&eu, &at), 200);
    assert_eq!(login(&eu, "alice", "password1").0, 401);
    assert!(us.terminate().success());
    assert!(eu.terminate().success());
}

/// Session checks `n` answered from its session cache.
fn session_cache_hits(n: &Node) -> f64 {
    n.metric("starling_session_cache_hits_total")
}

/// Waits (≤ 30 s) until each of `nodes` refuses `revoked` (`what` revoked it), then checks that
/// `kept` still works there.
fn revoked_on(nodes: &[&Node], revoked: &str, kept: &str, what: &str) {
    for n in nodes {
        let wait = std::time::Duration::from_secs(30);
        assert!(
            common::eventually(wait, || me_status(n, revoked) == 401),
            "{what} reaches the cache of {}",
            n.port
        );
        assert_eq!(me_status(n, kept), 200, "{what}: another session stays");
    }
}

/// A gossip cluster of three nodes, two in `us` and one in `eu`, each caching sessions: a token
/// cached on every node and logged out on one is refused by the other node of its region and by
/// the other region once the tombstone replicated there (the session TTL is 30 days: only the
/// replicated revocation can end it), and a password change's revocations reach them the same.
#[test]
fn a_revoked_session_is_refused_by_every_node_that_cached_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "profiles-cluster-secret-0123456789";
    let mut seed: Option<String> = None;
    let mut nodes = Vec::new();
    for (region, name) in [("us", "us-a"), ("us", "us-b"), ("eu", "eu-a")] {
        let gossip = format!("127.0.0.1:{}", free_port());
        let data = dir.path().join(name);
        let mut args =
            common::member_args(region, name, &gossip, secret, seed.as_deref(), Some(&data));
        args.extend(["--wan-rtt", "us-eu=40", "--auth-per-minute", "1000000"].map(String::from));
        seed.get_or_insert(gossip);
        nodes.push(Node::start(dir.path(), free_port(), &args));
    }
    let (a, b, eu) = (&nodes[0], &nodes[1], &nodes[2]);
    let wait = std::time::Duration::from_secs(30);
    let (_, token) = sign_up(a, "alice");
    let (s, v) = login(a, "alice", "password1");
    assert_eq!(s, 200);
    let second = v["token"].as_str().unwrap().to_string();
    // Both sessions reach every node and are cached there (a check answered from the cache).
    for n in [a, b, eu] {
        for t in [&token, &second] {
            assert!(common::eventually(wait, || me_status(n, t) == 200));
        }
        // (The consumer reading a session's creation drops it once: the next check reads it.)
        let cached = common::eventually(wait, || {
            let before = session_cache_hits(n);
            let ok = [&token, &second].iter().all(|t| me_status(n, t) == 200);
            ok && session_cache_hits(n) >= before + 2.0
        });
        assert!(
            cached,
            "both sessions answered from the cache of {}",
            n.port
        );
    }

    assert_eq!(a.http("DELETE", "/v1/sessions", Some(&second), b"").0, 204);
    assert_eq!(me_status(a, &second), 401);
    revoked_on(&[b, eu], &second, &token, "the logout");

    // A password change through the other node of the region revokes the rest but the caller's.
    let (s, v) = login(b, "alice", "password1");
    assert_eq!(s, 200);
    let third = v["token"].as_str().unwrap().to_string();
    for n in [a, eu] {
        assert!(common::eventually(wait, || me_status(n, &third) == 200));
        assert_eq!(me_status(n, &third), 200);
    }
    let (s, v) = call(
        b,
        "PUT",
        "/v1/users/me/password",
        &third,
        json!({"old": "password1", "new": "new password"}),
    );
    assert_eq!(s, 204, "{v}");
    revoked_on(&[a, eu], &token, &third, "the password change");
    for n in nodes {
        assert!(n.terminate().success());
    }
}

fn status(n: &Node, method: &str, path: &str, token: &str) -> u16 {
    n.http(method, path, Some(token), b"").0
}

/// The ids of `token`'s notifications' actors.
/// `DELETE /v1/users/me` with `password`: the status and body.
fn delete_account(n: &Node, token: &str, password: &str) -> (u16, Value) {
    call(
        n,
        "DELETE",
        "/v1/users/me",
        token,
        json!({ "password": password }),
    )
}

fn notifying(n: &Node, token: &str) -> Vec<String> {
    let (s, v) = call(n, "GET", "/v1/notifications?limit=50", token, Value::Null);
    assert_eq!(s, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["actors"].as_array().unwrap().clone())
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// An account deleted with its password: gone at once (sessions, reads, login), then its
/// posts, follows both ways, friendship and pending request swept in the background, the
/// others' counts moved once, its notifications gone; its handle free after the grace period.
#[test]
fn a_deleted_account_is_gone_and_its_handle_is_freed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(
        dir.path(),
        &["--handle-grace", "1s", "--deletion-interval", "100ms"],
    );
    let (alice, at) = sign_up(&n, "alice");
    let (bob, bt) = sign_up(&n, "bob");
    let (carol, ct) = sign_up(&n, "carol");
    let mut posts = Vec::new();
    for i in 0..3 {
        let (s, p) = call(
            &n,
            "POST",
            "/v1/posts",
            &at,
            json!({"text": format!("post {i}")}),
        );
        assert_eq!(s, 201, "{p}");
        posts.push(p["id"].as_str().unwrap().to_string());
    }
    let (_, bobs) = call(&n, "POST", "/v1/posts", &bt, json!({"text": "bob's"}));
    let bobs = bobs["id"].as_str().unwrap().to_string();
    assert_eq!(
        status(&n, "PUT", &format!("/v1/following/{alice}"), &bt),
        204
    );
    assert_eq!(status(&n, "PUT", &format!("/v1/following/{bob}"), &at), 204);
    assert_eq!(status(&n, "PUT", &format!("/v1/following/{bob}"), &ct), 204);
    assert_eq!(
        status(&n, "PUT", &format!("/v1/posts/{bobs}/like"), &at),
        204
    );
    let (s, _) = call(&n, "POST", "/v1/friend-requests", &ct, json!({"to": alice}));
    assert_eq!(s, 201);
    assert!(notifying(&n, &bt).contains(&alice));
    let counts = |id: &str| {
        let (_, u) = call(&n, "GET", &format!("/v1/users/{id}"), &ct, Value::Null);
        (u["followers_count"].as_i64(), u["following_count"].as_i64())
    };
    assert_eq!(counts(&bob), (Some(2), Some(1)));

    // The wrong password: 403, and nothing changed.
    let (s, v) = delete_account(&n, &at, "not it at all");
    assert_eq!(s, 403, "{v}");
    assert_eq!(status(&n, "GET", "/v1/users/me", &at), 200);

    let (s, v) = delete_account(&n, &at, "password1");
    assert_eq!(s, 204, "{v}");
    assert_eq!(
        status(&n, "GET", "/v1/users/me", &at),
        401,
        "every session revoked"
    );
    assert_eq!(status(&n, "GET", &format!("/v1/users/{alice}"), &bt), 404);
    assert_eq!(status(&n, "GET", "/v1/users/by-handle/alice", &bt), 404);
    assert_eq!(login(&n, "alice", "password1").0, 401);
    assert_eq!(
        status(&n, "PUT", &format!("/v1/following/{alice}"), &ct),
        404
    );
    assert!(
        !notifying(&n, &bt).contains(&alice),
        "alice's notifications are gone"
    );

    let wait = std::time::Duration::from_secs(30);
    assert!(
        common::eventually(wait, || posts.iter().all(|p| status(
            &n,
            "GET",
            &format!("/v1/posts/{p}"),
            &bt
        ) == 404)),
        "alice's posts are deleted"
    );
    assert!(
        common::eventually(wait, || counts(&bob) == (Some(1), Some(0))),
        "bob lost one follower and one followee: {:?}",
        counts(&bob)
    );
    // Alice's like of bob's post is taken back: off the likers, and the count follows.
    let likes = || {
        let (_, p) = call(&n, "GET", &format!("/v1/posts/{bobs}"), &bt, Value::Null);
        let (_, l) = call(
            &n,
            "GET",
            &format!("/v1/posts/{bobs}/likes"),
            &bt,
            Value::Null,
        );
        (
            p["counts"]["likes"].as_u64(),
            l["items"].as_array().map(Vec::len),
        )
    };
    assert!(
        common::eventually(wait, || likes() == (Some(0), Some(0))),
        "the likes alice gave stop counting: {:?}",
        likes()
    );
    let (_, v) = call(
        &n,
        "GET",
        &format!("/v1/users/{bob}/followers"),
        &bt,
        Value::Null,
    );
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["items"][0]["id"], carol.as_str(), "{v}");
    let (_, v) = call(
        &n,
        "GET",
        "/v1/friend-requests?direction=outgoing",
        &ct,
        Value::Null,
    );
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "{v}");

    // After the grace period the handle is free: a new account takes it.
    let mut again = Value::Null;
    assert!(
        common::eventually(wait, || {
            let (s, v) = common::call_json(
                &n,
                "POST",
                "/v1/users",
                None,
                &json!({"handle": "alice", "password": "another one"}),
            );
            again = v;
            s == 201
        }),
        "the handle is freed: {again}"
    );
    assert_ne!(again["id"].as_str(), Some(alice.as_str()));
    assert_eq!(counts(&bob), (Some(1), Some(0)), "counts moved once");
    assert_eq!(likes(), (Some(0), Some(0)), "the like count moved once");
    assert!(n.terminate().success());
}

/// A deleted user's chat messages stay in the other member's history, body and seq as they were,
/// and read as from a deleted user (`sender_deleted`, the id resolving to nothing), in the
/// history, as the inbox's last message and in a WebSocket resume's `message` and `edited`
/// frames; the other member's own messages do not (a live one neither).
#[test]
fn a_deleted_users_chat_messages_read_as_from_a_deleted_user() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &["--deletion-interval", "100ms"]);
    let (alice, at) = sign_up(&n, "alice");
    let (bob, bt) = sign_up(&n, "bob");
    let (s, c) = call(
        &n,
        "POST",
        "/v1/conversations",
        &bt,
        json!({"members": [alice]}),
    );
    assert!(s == 201 || s == 200, "{c}");
    let conv = c["id"].as_str().unwrap().to_string();
    let path = format!("/v1/conversations/{conv}/messages");
    let send = |token: &str, body: &str| {
        let (s, m) = call(
            &n,
            "POST",
            &path,
            token,
            json!({"body": body, "client_id": body}),
        );
        assert_eq!(s, 201, "{m}");
    };
    send(&bt, "hi alice");
    send(&at, "hi bob");
    // Alice edits her first message: an `edit` entry of hers in the log.
    let (s, m) = call(
        &n,
        "PATCH",
        &format!("{path}/2"),
        &at,
        json!({"body": "hi bob!"}),
    );
    assert_eq!(s, 200, "{m}");
    send(&at, "bye bob");
    let history = |token: &str| {
        let (s, v) = call(
            &n,
            "GET",
            &format!("{path}?after_seq=0"),
            token,
            Value::Null,
        );
        assert_eq!(s, 200, "{v}");
        v["items"].as_array().unwrap().clone()
    };
    let before = history(&bt);
    assert!(
        before.iter().all(|m| m["sender_deleted"] == false),
        "{before:?}"
    );

    let (s, v) = delete_account(&n, &at, "password1");
    assert_eq!(s, 204, "{v}");
    let after = history(&bt);
    assert_eq!(after.len(), before.len(), "every entry kept: {after:?}");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (&b["seq"], &b["body"], &b["sender"]),
            (&a["seq"], &a["body"], &a["sender"])
        );
        let by_alice = a["sender"] == alice.as_str();
        assert_eq!(a["sender_deleted"], by_alice, "{a}");
    }
    assert!(after.iter().any(|m| m["sender"] == alice.as_str()));
    assert_eq!(
        status(&n, "GET", &format!("/v1/users/{alice}"), &bt),
        404,
        "no profile"
    );
    let (s, inbox) = call(&n, "GET", "/v1/conversations", &bt, Value::Null);
    assert_eq!(s, 200, "{inbox}");
    let last = &inbox["items"][0]["last_message"];
    assert_eq!(last["body"], "bye bob", "{inbox}");
    assert_eq!(last["sender_deleted"], true, "{inbox}");
    // Bob still writes into it; his message is his.
    let (s, m) = call(
        &n,
        "POST",
        &path,
        &bt,
        json!({"body": "still here", "client_id": "x"}),
    );
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["sender_deleted"], false, "{m}");
    assert_eq!(m["sender"], bob.as_str());

    // Over the WebSocket: a resume's `message` and `edited` frames say the same, and a live
    // message of Bob's is his.
    let stored = history(&bt);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (resumed, live) = rt.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], n.port));
        let mut ws = common::chat::Client::connect(addr, &bt).await;
        ws.send(json!({"type": "resume", "conv": conv, "after_seq": 0}))
            .await;
        let mut frames = Vec::new();
        loop {
            let f = ws.next_of(&["message", "edited", "resumed", "error"]).await;
            if f["type"] == "resumed" {
                break;
            }
            assert_ne!(f["type"], "error", "{f}");
            frames.push(f);
        }
        ws.send(json!({"type": "send", "conv": conv, "body": "live", "client_id": "live-1"}))
            .await;
        let live = loop {
            let f = ws.next_of(&["message", "error"]).await;
            assert_ne!(f["type"], "error", "{f}");
            if f["client_id"] == "live-1" {
                break f;
            }
        };
        (frames, live)
    });
    let messages: Vec<&Value> = resumed.iter().filter(|f| f["type"] == "message").collect();
    assert_eq!(
        messages.iter().map(|f| &f["seq"]).collect::<Vec<_>>(),
        stored
            .iter()
            .filter(|m| m["kind"] == "text")
            .map(|m| &m["seq"])
            .collect::<Vec<_>>(),
        "every text message resumed: {resumed:?}"
    );
    for f in &messages {
        let by_alice = f["sender"] == alice.as_str();
        assert_eq!(f["sender_deleted"], by_alice, "{f}");
    }
    assert!(
        messages
            .iter()
            .any(|f| f["sender"] == alice.as_str() && f["body"] == "hi bob!"),
        "her text kept, as edited: {resumed:?}"
    );
    let edited: Vec<&Value> = resumed.iter().filter(|f| f["type"] == "edited").collect();
    assert_eq!(edited.len(), 1, "{resumed:?}");
    assert_eq!(
        (&edited[0]["sender"], &edited[0]["sender_deleted"]),
        (&json!(alice), &json!(true)),
        "{resumed:?}"
    );
    assert_eq!(
        (&live["sender"], &live["sender_deleted"]),
        (&json!(bob), &json!(false)),
        "{live}"
    );
    assert!(n.terminate().success());
}

/// An account deleted in one region: the other region sees it gone (sessions, reads, posts),
/// both regions' counts of the other user move once (followers, and the likes, reposts, quotes
/// and replies the deleted user gave the other's post), and the handle is free there afterwards.
#[test]
fn an_account_deleted_in_one_region_is_gone_in_every_region() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--handle-grace", "1s", "--deletion-interval", "200ms"];
    let (us, eu) = common::two_regions(dir.path(), "profiles-cluster-secret-0123456789", &flags);
    let wait = std::time::Duration::from_secs(60);
    let (alice, at) = sign_up(&us, "alice");
    let (bob, bt) = sign_up(&eu, "bob");
    let (s, p) = call(&us, "POST", "/v1/posts", &at, json!({"text": "from us"}));
    assert_eq!(s, 201, "{p}");
    let post = format!("/v1/posts/{}", p["id"].as_str().unwrap());
    assert!(common::eventually(wait, || status(&eu, "GET", &post, &bt)
        == 200
        && status(&us, "GET", "/v1/users/me", &bt) == 200
        && status(&eu, "GET", "/v1/users/me", &at) == 200));
    assert_eq!(
        status(&eu, "PUT", &format!("/v1/following/{alice}"), &bt),
        204
    );
    assert_eq!(
        status(&us, "PUT", &format!("/v1/following/{bob}"), &at),
        204
    );
    let counts = |n: &Node| {
        let (_, u) = call(n, "GET", &format!("/v1/users/{bob}"), &bt, Value::Null);
        (u["followers_count"].as_i64(), u["following_count"].as_i64())
    };
    for n in [&us, &eu] {
        assert!(common::eventually(wait, || counts(n) == (Some(1), Some(1))));
    }
    // Alice (us) likes, reposts, quotes and replies to a post of Bob's (eu): every node counts
    // one of each.
    let (s, b) = call(&eu, "POST", "/v1/posts", &bt, json!({"text": "from eu"}));
    assert_eq!(s, 201, "{b}");
    let bobs = b["id"].as_str().unwrap().to_string();
    let bobs_path = format!("/v1/posts/{bobs}");
    assert!(common::eventually(wait, || status(
        &us, "GET", &bobs_path, &at
    ) == 200));
    assert_eq!(status(&us, "PUT", &format!("{bobs_path}/like"), &at), 204);
    assert_eq!(status(&us, "PUT", &format!("{bobs_path}/repost"), &at), 204);
    for extra in [json!({"quote_of": bobs}), json!({"reply_to": bobs})] {
        let mut body = json!({"text": "about bob's"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, q) = call(&us, "POST", "/v1/posts", &at, body);
        assert_eq!(s, 201, "{q}");
    }
    let engagement = |n: &Node| {
        let (_, p) = call(n, "GET", &bobs_path, &bt, Value::Null);
        let c = &p["counts"];
        [&c["likes"], &c["reposts"], &c["quotes"], &c["replies"]].map(Value::as_u64)
    };
    for (name, n) in [("us", &us), ("eu", &eu)] {
        assert!(
            common::eventually(wait, || engagement(n) == [Some(1); 4]),
            "{name} counts alice's like, repost, quote and reply: {:?}",
            engagement(n)
        );
    }

    let (s, v) = delete_account(&us, &at, "password1");
    assert_eq!(s, 204, "{v}");
    assert!(
        common::eventually(wait, || status(&eu, "GET", "/v1/users/me", &at) == 401
            && status(&eu, "GET", &format!("/v1/users/{alice}"), &bt) == 404
            && status(&eu, "GET", &post, &bt) == 404),
        "the deletion reaches eu"
    );
    for (name, n) in [("us", &us), ("eu", &eu)] {
        assert!(
            common::eventually(wait, || counts(n) == (Some(0), Some(0))),
            "{name}: bob's counts move once: {:?}",
            counts(n)
        );
        assert!(
            common::eventually(wait, || engagement(n) == [Some(0); 4]),
            "{name}: alice's like, repost, quote and reply stop counting: {:?}",
            engagement(n)
        );
    }
    assert!(
        common::eventually(wait, || common::call_json(
            &eu,
            "POST",
            "/v1/users",
            None,
            &json!({"handle": "alice", "password": "another one"}),
        )
        .0 == 201),
        "the handle is free again, from eu"
    );
    for n in [&us, &eu] {
        assert_eq!(counts(n), (Some(0), Some(0)));
        assert_eq!(engagement(n), [Some(0); 4], "moved once");
    }
    assert!(us.terminate().success());
    assert!(eu.terminate().success());
}

/// A write over its user's quota: 429 problem+json with `Retry-After`, nothing written, counted
/// in `/metrics`; another user, another kind of write and reads go on. Quotas of one a minute
/// (bursts of one): the second write of a kind comes well within the minute.
#[test]
fn writes_over_a_users_quota_get_429_with_retry_after_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(
        dir.path(),
        &[
            "--posts-per-minute",
            "1",
            "--likes-per-minute",
            "1",
            "--follows-per-minute",
            "1",
            "--chat-sends-per-minute",
            "1",
            "--marks-per-minute",
            "1",
        ],
    );
    let (alice, at) = sign_up(&n, "alice");
    let (bob, bt) = sign_up(&n, "bob");
    let (carol, _) = sign_up(&n, "carol");

    let limited = |method: &str, path: &str, token: &str, body: Value| {
        let (s, head, b) = common::request_with_head(
            n.port,
            method,
            path,
            Some(token),
            Some("application/json"),
            body.to_string().as_bytes(),
        );
        assert_eq!(s, 429, "{method} {path}: {}", String::from_utf8_lossy(&b));
        let wait: u64 = common::header_of(&head, "retry-after")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            head.to_ascii_lowercase()
                .contains("application/problem+json"),
            "{head}"
        );
    };

    // Posts: the second is refused and not written; bob still posts.
    let (s, p) = call(&n, "POST", "/v1/posts", &at, json!({"text": "one"}));
    assert_eq!(s, 201, "{p}");
    let post = p["id"].as_str().unwrap().to_string();
    limited("POST", "/v1/posts", &at, json!({"text": "two"}));
    let (_, list) = call(
        &n,
        "GET",
        &format!("/v1/users/{alice}/posts"),
        &bt,
        Value::Null,
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        call(&n, "POST", "/v1/posts", &bt, json!({"text": "bob's"})).0,
        201
    );

    // Likes and follows: one each, then 429 (an unlike and an unfollow count too).
    assert_eq!(
        status(&n, "PUT", &format!("/v1/posts/{post}/like"), &bt),
        204
    );
    limited(
        "DELETE",
        &format!("/v1/posts/{post}/like"),
        &bt,
        Value::Null,
    );
    let (_, v) = call(
        &n,
        "GET",
        &format!("/v1/posts/{post}/likes"),
        &at,
        Value::Null,
    );
    assert!(
        v.to_string().contains(&bob),
        "the unlike did not happen: {v}"
    );
    assert_eq!(status(&n, "PUT", &format!("/v1/following/{bob}"), &at), 204);
    limited("PUT", &format!("/v1/following/{carol}"), &at, Value::Null);
    let (_, v) = call(
        &n,
        "GET",
        &format!("/v1/users/{alice}/following"),
        &at,
        Value::Null,
    );
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");

    // Mark-read: one, then 429.
    let mut newest = String::new();
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || {
            let (_, v) = call(&n, "GET", "/v1/notifications", &at, Value::Null);
            newest = v["items"][0]["id"].as_str().unwrap_or_default().to_string();
            !newest.is_empty()
        }
    ));
    assert_eq!(
        call(
            &n,
            "PUT",
            "/v1/notifications/read",
            &at,
            json!({"up_to": newest})
        )
        .0,
        204
    );
    limited(
        "PUT",
        "/v1/notifications/read",
        &at,
        json!({"up_to": newest}),
    );

    // Chat sends: one over REST, then 429 over REST and a busy frame over the WebSocket.
    let (s, c) = call(
        &n,
        "POST",
        "/v1/conversations",
        &at,
        json!({"members": [bob]}),
    );
    assert_eq!(s, 201, "{c}");
    let conv = c["id"].as_str().unwrap().to_string();
    let msgs = format!("/v1/conversations/{conv}/messages");
    let (s, v) = call(
        &n,
        "POST",
        &msgs,
        &at,
        json!({"body": "hi", "client_id": "c1"}),
    );
    assert_eq!(s, 201, "{v}");
    limited(
        "POST",
        &msgs,
        &at,
        json!({"body": "again", "client_id": "c2"}),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let frame = rt.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], n.port));
        let mut ws = common::chat::Client::connect(addr, &at).await;
        ws.send(json!({"type": "send", "conv": conv, "body": "ws", "client_id": "c3"}))
            .await;
        ws.next_of(&["error", "ack"]).await
    });
    assert_eq!(
        (frame["type"].as_str(), frame["code"].as_str()),
        (Some("error"), Some("busy")),
        "{frame}"
    );
    assert_eq!(frame["ref"], "c3", "{frame}");
    let (_, v) = call(&n, "GET", &format!("{msgs}?after_seq=0"), &bt, Value::Null);
    let bodies: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert!(bodies.contains(&"hi"), "{v}");
    assert!(!bodies.contains(&"again") && !bodies.contains(&"ws"), "{v}");

    let (_, metrics) = common::http(n.port, "GET", "/metrics", None, b"");
    let metrics = String::from_utf8_lossy(&metrics);
    for kind in ["Post", "Like", "Follow", "MarkRead"] {
        assert!(
            metrics.contains(&format!(
                "starling_write_rate_limited_total{{write=\"{kind}\"}} 1"
            )),
            "{kind}: {metrics}"
        );
    }
    assert!(metrics.contains("starling_write_rate_limited_total{write=\"ChatSend\"} 2"));
    assert!(n.terminate().success());
}

/// A deletion acknowledged just before a kill -9 holds after the restart (embedded store): the
/// account stays gone, and the sweep the restarted node resumes removes its posts and frees the
/// handle.
#[test]
fn a_deletion_survives_kill_9_and_its_sweep_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let args: Vec<String> = [
        "--data-dir",
        &data,
        "--auth-per-minute",
        "1000000",
        "--handle-grace",
        "1s",
        "--deletion-interval",
        "100ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut n = Node::start(dir.path(), free_port(), &args);
    let (alice, at) = sign_up(&n, "alice");
    let (_, bt) = sign_up(&n, "bob");
    let (s, p) = call(&n, "POST", "/v1/posts", &at, json!({"text": "soon gone"}));
    assert_eq!(s, 201, "{p}");
    let post = format!("/v1/posts/{}", p["id"].as_str().unwrap());
    let (s, v) = delete_account(&n, &at, "password1");
    assert_eq!(s, 204, "{v}");
    n.child.kill().unwrap();
    n.child.wait().unwrap();

    let n = Node::start(dir.path(), free_port(), &args);
    assert_eq!(status(&n, "GET", "/v1/users/me", &at), 401);
    assert_eq!(status(&n, "GET", &format!("/v1/users/{alice}"), &bt), 404);
    assert_eq!(login(&n, "alice", "password1").0, 401);
    let wait = std::time::Duration::from_secs(30);
    assert!(
        common::eventually(wait, || status(&n, "GET", &post, &bt) == 404),
        "the restarted node sweeps the posts"
    );
    assert!(
        common::eventually(wait, || common::call_json(
            &n,
            "POST",
            "/v1/users",
            None,
            &json!({"handle": "alice", "password": "another one"}),
        )
        .0 == 201),
        "and frees the handle"
    );
    assert!(n.terminate().success());
}
