//! Likes through the real `starling` binary: like and unlike are idempotent, a retry or the same
//! user liking in two regions is one like, the count on every node equals the number of distinct
//! likers, `viewer.liked` is the caller's, likers page by cursor, and a block refuses the like.
//! Notifications too (a like's, and every other kind's): listed newest first with likes of one
//! post grouped, marked read, paged, silenced by blocks, delivered live on the WebSocket, and
//! replicated to the other region.
//!
//! Counts are derived a consumer pass behind the likes, so the tests wait for them (never for a
//! time): a count that must *not* move is checked behind a later like that must, since the
//! consumer reads the change feed in order.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, eventually, sign_up_user as sign_up};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn call(n: &Node, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    common::call_json(n, method, path, token, &body)
}

/// The post as `token` sees it on `n`.
fn post(n: &Node, id: &str, token: &str) -> Value {
    let (s, v) = call(
        n,
        "GET",
        &format!("/v1/posts/{id}"),
        Some(token),
        Value::Null,
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn likes(n: &Node, id: &str, token: &str) -> u64 {
    post(n, id, token)["counts"]["likes"].as_u64().unwrap()
}

fn like(n: &Node, method: &str, id: &str, token: &str) -> u16 {
    n.http(method, &format!("/v1/posts/{id}/like"), Some(token), b"")
        .0
}

/// Every liker of a post, page by page (`limit` per page).
fn likers(n: &Node, id: &str, token: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/posts/{id}/likes?limit={limit}{cursor}");
        let (s, v) = call(n, "GET", &path, Some(token), Value::Null);
        assert_eq!(s, 200, "{v}");
        for u in v["items"].as_array().unwrap() {
            out.push(u["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[test]
fn likes_are_idempotent_counted_once_paged_and_refused_across_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &[]);
    let (alice, at) = sign_up(&n, "alice");
    let mut fans = Vec::new();
    for h in ["bob", "carol", "dave", "erin"] {
        fans.push(sign_up(&n, h));
    }
    let (s, p) = call(
        &n,
        "POST",
        "/v1/posts",
        Some(&at),
        json!({"text": "like me"}),
    );
    assert_eq!(s, 201);
    let id = p["id"].as_str().unwrap().to_string();
    let fresh = post(&n, &id, &at);
    assert_eq!(fresh["counts"]["likes"], 0);
    assert_eq!(fresh["viewer"]["liked"], false);

    // bob likes three times (retries), carol once: two likes.
    for _ in 0..3 {
        assert_eq!(like(&n, "PUT", &id, &fans[0].1), 204);
    }
    assert_eq!(like(&n, "PUT", &id, &fans[1].1), 204);
    assert!(eventually(WAIT, || likes(&n, &id, &at) == 2));
    assert_eq!(post(&n, &id, &fans[0].1)["viewer"]["liked"], true);
    assert_eq!(post(&n, &id, &at)["viewer"]["liked"], false);
    // dave's like is counted after bob's retries were: had a retry counted, this is not 3.
    assert_eq!(like(&n, "PUT", &id, &fans[2].1), 204);
    assert!(eventually(WAIT, || likes(&n, &id, &at) == 3));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(likes(&n, &id, &at), 3, "a settled count does not drift");

    // Likers, one per page, ascending by id.
    let mut want: Vec<String> = fans[..3].iter().map(|f| f.0.clone()).collect();
    want.sort_by_key(|i| i.parse::<u64>().unwrap());
    assert_eq!(likers(&n, &id, &at, 1), want);
    assert_eq!(likers(&n, &id, &at, 100), want);

    // Unlike is idempotent; then the count follows.
    for _ in 0..2 {
        assert_eq!(like(&n, "DELETE", &id, &fans[0].1), 204);
    }
    assert!(eventually(WAIT, || likes(&n, &id, &at) == 2));
    assert_eq!(post(&n, &id, &fans[0].1)["viewer"]["liked"], false);

    // A block both ways refuses the like and changes nothing.
    let erin = &fans[3];
    assert_eq!(
        n.http("PUT", &format!("/v1/blocks/{}", erin.0), Some(&at), b"")
            .0,
        204
    );
    assert_eq!(like(&n, "PUT", &id, &erin.1), 403);
    let (s, e) = call(
        &n,
        "POST",
        "/v1/posts",
        Some(&erin.1),
        json!({"text": "mine"}),
    );
    assert_eq!(s, 201);
    let erins = e["id"].as_str().unwrap().to_string();
    assert_eq!(
        like(&n, "PUT", &erins, &at),
        403,
        "the blocker cannot like either"
    );
    assert!(!likers(&n, &id, &at, 100).contains(&erin.0));
    // The author may like their own post.
    assert_eq!(like(&n, "PUT", &id, &at), 204);
    assert!(eventually(WAIT, || likes(&n, &id, &at) == 3));
    assert!(likers(&n, &id, &at, 100).contains(&alice));

    // Unknown and deleted posts: 404 to like or list; unlike stays 204.
    assert_eq!(like(&n, "PUT", "12345", &at), 404);
    assert_eq!(
        n.http("GET", "/v1/posts/12345/likes", Some(&at), b"").0,
        404
    );
    assert_eq!(
        n.http("DELETE", &format!("/v1/posts/{id}"), Some(&at), b"")
            .0,
        204
    );
    assert_eq!(like(&n, "PUT", &id, &fans[0].1), 404);
    assert_eq!(like(&n, "DELETE", &id, &fans[1].1), 204);
    assert!(n.terminate().success());
}

const SECRET: &str = "likes-cluster-secret-0123456789";

/// The same user liking one post in two regions at once, a second user liking in the other
/// region, and retries everywhere: every node counts two likes, and lists the same two likers.
#[test]
fn the_same_like_in_two_regions_counts_once_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (us, eu) = common::two_regions(dir.path(), SECRET, &[]);
    let (_, at) = sign_up(&us, "alice");
    let (bob, bt) = sign_up(&us, "bob");
    let (carol, ct) = sign_up(&eu, "carol");
    let (s, p) = call(&us, "POST", "/v1/posts", Some(&at), json!({"text": "hot"}));
    assert_eq!(s, 201);
    let id = p["id"].as_str().unwrap().to_string();
    // The post, bob's session and carol's account replicate; then the likes race.
    assert!(
        eventually(WAIT, || {
            eu.http("GET", &format!("/v1/posts/{id}"), Some(&bt), b"").0 == 200
                && us
                    .http("GET", &format!("/v1/users/{carol}"), Some(&at), b"")
                    .0
                    == 200
        }),
        "the post and the accounts reach both regions"
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                assert_eq!(like(&us, "PUT", &id, &bt), 204);
            }
        });
        s.spawn(|| {
            for _ in 0..3 {
                assert_eq!(like(&eu, "PUT", &id, &bt), 204);
                assert_eq!(like(&eu, "PUT", &id, &ct), 204);
            }
        });
    });
    let mut want = vec![bob.clone(), carol.clone()];
    want.sort_by_key(|i| i.parse::<u64>().unwrap());
    for (name, n, t) in [("us", &us, &at), ("eu", &eu, &ct)] {
        assert!(
            eventually(WAIT, || likes(n, &id, t) == 2
                && likers(n, &id, t, 1) == want),
            "{name} counts two likes: {}",
            likes(n, &id, t)
        );
    }
    // A third like, from us, settles on both nodes at three: no like above was counted twice.
    let (dave, dt) = sign_up(&us, "dave");
    assert!(eventually(WAIT, || like(&us, "PUT", &id, &dt) == 204));
    for (name, n, t) in [("us", &us, &at), ("eu", &eu, &ct)] {
        assert!(
            eventually(WAIT, || likes(n, &id, t) == 3),
            "{name}: {}",
            likes(n, &id, t)
        );
    }
    // bob's reads on both nodes show his like (and cache it there)...
    for (name, n) in [("us", &us), ("eu", &eu)] {
        assert!(
            eventually(WAIT, || post(n, &id, &bt)["viewer"]["liked"] == true),
            "{name}"
        );
    }
    // ...then bob unlikes in eu: both nodes drop to two, and us, which cached bob's like,
    // shows it gone once its count moved (the change feed drops the cached flag first).
    assert_eq!(like(&eu, "DELETE", &id, &bt), 204);
    for (name, n, t) in [("us", &us, &at), ("eu", &eu, &ct)] {
        assert!(eventually(WAIT, || likes(n, &id, t) == 2), "{name}");
        assert_eq!(post(n, &id, &bt)["viewer"]["liked"], false);
    }
    // alice's notifications replicate: on both nodes one like item of three distinct likers
    // (bob's like was new in both regions at once: two notifications, one actor), dave newest.
    for (name, n) in [("us", &us), ("eu", &eu)] {
        assert!(
            eventually(WAIT, || {
                let v = notifications(n, &at, "");
                let mut actors = kinds(&v).first().map(|k| k.1.clone()).unwrap_or_default();
                let newest = actors.first().cloned();
                actors.sort();
                let mut all = vec![bob.clone(), carol.clone(), dave.clone()];
                all.sort();
                v["items"].as_array().unwrap().len() == 1
                    && v["items"][0]["type"] == "like"
                    && v["items"][0]["actors_count"] == 3
                    && actors == all
                    && newest.as_ref() == Some(&dave)
            }),
            "{name}: {}",
            notifications(n, &at, "")
        );
    }
    assert!(us.terminate().success());
    assert!(eu.terminate().success());
}

/// `token`'s notifications on `n` (one page of `query`).
fn notifications(n: &Node, token: &str, query: &str) -> Value {
    let (s, v) = call(
        n,
        "GET",
        &format!("/v1/notifications{query}"),
        Some(token),
        Value::Null,
    );
    assert_eq!(s, 200, "{v}");
    v
}

/// (type, actor ids) of each item of a page.
fn kinds(v: &Value) -> Vec<(String, Vec<String>)> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let actors = i["actors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string())
                .collect();
            (i["type"].as_str().unwrap().to_string(), actors)
        })
        .collect()
}

fn kind(t: &str, actors: &[&String]) -> (String, Vec<String>) {
    (
        t.to_string(),
        actors.iter().map(|a| a.to_string()).collect(),
    )
}

/// Every kind of notification through the binary: a follow, likes of one post (grouped, newest
/// liker first; a retry and one's own like notify nobody), a reply (its author is not told of
/// the mention too), a mention (existing handles only), a friend request and its acceptance;
/// newest first, paged with a Link header, an unread count and a marker that only moves
/// forward; a `notification` frame on the recipient's WebSocket; nothing across a block.
#[test]
fn notifications_of_every_kind_are_grouped_marked_paged_live_and_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &[]);
    let (alice, at) = sign_up(&n, "alice");
    let (bob, bt) = sign_up(&n, "bob");
    let (carol, ct) = sign_up(&n, "carol");
    let (dave, dt) = sign_up(&n, "dave");
    let rt = common::current_thread();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", n.port).parse().unwrap();
    let mut ws = rt.block_on(common::chat::Client::connect(addr, &at));

    assert_eq!(
        n.http("PUT", &format!("/v1/following/{alice}"), Some(&bt), b"")
            .0,
        204
    );
    // Live: the follow reaches alice's connection.
    let f = rt.block_on(ws.next_of(&["notification"]));
    assert_eq!(f["notification_type"], "follow", "{f}");
    assert_eq!(f["actors"][0]["id"], bob.as_str());
    assert_eq!(f["actors"][0]["handle"], "bob");
    assert_eq!(f["read"], false);
    // Following again is no new follow.
    assert_eq!(
        n.http("PUT", &format!("/v1/following/{alice}"), Some(&bt), b"")
            .0,
        204
    );

    let (s, p) = call(&n, "POST", "/v1/posts", Some(&at), json!({"text": "hello"}));
    assert_eq!(s, 201);
    let post = p["id"].as_str().unwrap().to_string();
    assert_eq!(like(&n, "PUT", &post, &bt), 204);
    assert_eq!(like(&n, "PUT", &post, &bt), 204);
    assert_eq!(like(&n, "PUT", &post, &at), 204);
    assert_eq!(like(&n, "PUT", &post, &ct), 204);
    let f = rt.block_on(ws.next_of(&["notification"]));
    assert_eq!(
        (f["notification_type"].as_str(), f["post"].as_str()),
        (Some("like"), Some(post.as_str()))
    );

    // A reply that mentions its parent's author, bob, an unknown handle and an e-mail address.
    let text = "@alice @bob @nobody_here mail@bob.org hi";
    let (s, r) = call(
        &n,
        "POST",
        "/v1/posts",
        Some(&ct),
        json!({"text": text, "reply_to": post}),
    );
    assert_eq!(s, 201, "{r}");
    let reply = r["id"].as_str().unwrap().to_string();
    let (s, fr) = call(
        &n,
        "POST",
        "/v1/friend-requests",
        Some(&bt),
        json!({"to": alice}),
    );
    assert_eq!(s, 201);

    let v = notifications(&n, &at, "");
    assert_eq!(
        kinds(&v),
        vec![
            kind("friend_request", &[&bob]),
            kind("reply", &[&carol]),
            kind("like", &[&carol, &bob]),
            kind("follow", &[&bob]),
        ],
        "{v}"
    );
    assert_eq!(v["items"][1]["post"], post.as_str());
    assert_eq!(v["items"][1]["subject"], reply.as_str());
    assert_eq!(v["items"][2]["actors_count"], 2);
    assert_eq!(v["unread_count"], 5, "{v}"); // two likes, folded into one item
    assert_eq!(v["next_cursor"], Value::Null);
    let bobs = notifications(&n, &bt, "");
    assert_eq!(kinds(&bobs), vec![kind("mention", &[&carol])], "{bobs}");
    assert_eq!(bobs["items"][0]["subject"], reply.as_str());

    // Pages: one item, a Link to the next, `since` stops at an id.
    let (s, head, body) = common::request_with_head(
        n.port,
        "GET",
        "/v1/notifications?limit=1",
        Some(&at),
        None,
        b"",
    );
    assert_eq!(s, 200);
    let first: Value = serde_json::from_slice(&body).unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(
        common::header_of(&head, "link").unwrap(),
        format!("</v1/notifications?limit=1&cursor={cursor}>; rel=\"next\"")
    );
    let second = notifications(&n, &at, &format!("?limit=1&cursor={cursor}"));
    assert_eq!(kinds(&second), vec![kind("reply", &[&carol])]);
    let reply_item = second["items"][0]["id"].as_str().unwrap().to_string();
    let newer = notifications(&n, &at, &format!("?since={reply_item}"));
    assert_eq!(kinds(&newer), vec![kind("friend_request", &[&bob])]);

    // Marked read up to the reply: the friend request stays unread; an older mark changes nothing.
    let mark = |t: &str, id: &str| {
        call(
            &n,
            "PUT",
            "/v1/notifications/read",
            Some(t),
            json!({"up_to": id}),
        )
        .0
    };
    assert_eq!(mark(&at, &reply_item), 204);
    let follow_item = v["items"][3]["id"].as_str().unwrap().to_string();
    assert_eq!(mark(&at, &follow_item), 204);
    let v = notifications(&n, &at, "");
    assert_eq!(v["unread_count"], 1, "{v}");
    let read: Vec<bool> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["read"].as_bool().unwrap())
        .collect();
    assert_eq!(read, vec![false, true, true, true]);

    // Accepting tells bob.
    let fr = fr["id"].as_str().unwrap();
    let (s, _) = call(
        &n,
        "POST",
        &format!("/v1/friend-requests/{fr}/accept"),
        Some(&at),
        Value::Null,
    );
    assert_eq!(s, 200);
    let bobs = notifications(&n, &bt, "");
    assert_eq!(kinds(&bobs)[0], kind("friend_accept", &[&alice]), "{bobs}");

    // Blocks: dave, blocked by alice, mentions her and is refused the like and the follow;
    // nothing reaches her. Carol's like of her post from before carol was blocked disappears from
    // the group once alice blocks carol.
    assert_eq!(
        n.http("PUT", &format!("/v1/blocks/{dave}"), Some(&at), b"")
            .0,
        204
    );
    let before = notifications(&n, &at, "");
    let (s, _) = call(
        &n,
        "POST",
        "/v1/posts",
        Some(&dt),
        json!({"text": "hey @alice"}),
    );
    assert_eq!(s, 201);
    assert_eq!(like(&n, "PUT", &post, &dt), 403);
    assert_eq!(
        n.http("PUT", &format!("/v1/following/{alice}"), Some(&dt), b"")
            .0,
        403
    );
    assert_eq!(notifications(&n, &at, "")["items"], before["items"]);
    assert_eq!(
        n.http("PUT", &format!("/v1/blocks/{carol}"), Some(&at), b"")
            .0,
        204
    );
    let v = notifications(&n, &at, "");
    assert_eq!(
        kinds(&v),
        vec![
            kind("friend_request", &[&bob]),
            kind("like", &[&bob]),
            kind("follow", &[&bob]),
        ],
        "{v}"
    );

    // Bad input changes nothing: the marker stays.
    let (s, e) = call(
        &n,
        "PUT",
        "/v1/notifications/read",
        Some(&at),
        json!({"up_to": "x"}),
    );
    assert_eq!(s, 400, "{e}");
    let (s, _) = call(
        &n,
        "PUT",
        "/v1/notifications/read",
        Some(&at),
        json!({"up_to": reply_item, "extra": 1}),
    );
    assert_eq!(s, 422);
    assert_eq!(
        n.http("GET", "/v1/notifications?since=x", Some(&at), b"").0,
        400
    );
    assert_eq!(n.http("GET", "/v1/notifications", None, b"").0, 401);
    assert_eq!(notifications(&n, &at, "")["unread_count"], 1);
    drop(ws);
    assert!(n.terminate().success());
}

fn repost(n: &Node, method: &str, id: &str, token: &str) -> u16 {
    n.http(method, &format!("/v1/posts/{id}/repost"), Some(token), b"")
        .0
}

/// A page of `token`'s home feed on `n`.
fn feed(n: &Node, token: &str) -> Value {
    let (s, v) = call(n, "GET", "/v1/feed?limit=50", Some(token), Value::Null);
    assert!(s == 200 || s == 206, "{s} {v}");
    v
}

/// `(id, reposted_by handle)` of each feed item.
fn feed_items(n: &Node, token: &str) -> Vec<(String, Option<String>)> {
    feed(n, token)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["reposted_by"]["handle"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Reposts and quotes through the binary: a repost is idempotent, reaches the reposter's
/// followers' feeds hydrated (the reposted post with its author's summary, counters, the
/// viewer's state and `reposted_by`) and at most once however many reposts of it arrive; undo
/// takes it out; counts follow; the author is notified of a repost once and of a quote; blocks
/// refuse a repost and a quote and hide a repost of a blocker's post.
#[test]
fn reposts_and_quotes_reach_feeds_once_are_counted_notified_and_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &[]);
    let (alice, at) = sign_up(&n, "alice");
    let (bob, bt) = sign_up(&n, "bob");
    let (carol, ct) = sign_up(&n, "carol");
    let (reader, rt) = sign_up(&n, "reader");
    for who in [&bob, &carol] {
        let (s, _) = call(
            &n,
            "PUT",
            &format!("/v1/following/{who}"),
            Some(&rt),
            Value::Null,
        );
        assert_eq!(s, 204);
    }
    // The reader's timeline exists before the reposts (fan-out, not a rebuild, places them).
    assert!(feed_items(&n, &rt).is_empty());
    let (s, p) = call(
        &n,
        "POST",
        "/v1/posts",
        Some(&at),
        json!({"text": "repost me"}),
    );
    assert_eq!(s, 201);
    let x = p["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(repost(&n, "PUT", &x, &bt), 204, "idempotent");
    }
    assert!(eventually(WAIT, || {
        feed_items(&n, &rt) == vec![(x.clone(), Some("bob".to_string()))]
    }));
    // carol reposts it too: the reader still sees it once.
    assert_eq!(repost(&n, "PUT", &x, &ct), 204);
    let (s, p) = call(
        &n,
        "POST",
        "/v1/posts",
        Some(&ct),
        json!({"text": "carol's own"}),
    );
    assert_eq!(s, 201);
    let own = p["id"].as_str().unwrap().to_string();
    assert!(eventually(WAIT, || feed_items(&n, &rt).len() == 2));
    assert_eq!(
        feed_items(&n, &rt),
        vec![(own.clone(), None), (x.clone(), Some("bob".to_string()))]
    );
    // The item is hydrated: author summary, counters, the viewer's state.
    assert!(eventually(WAIT, || post(&n, &x, &at)["counts"]["reposts"] == 2));
    let item = feed(&n, &rt)["items"][1].clone();
    assert_eq!(item["author"], alice.as_str());
    assert_eq!(item["author_summary"]["handle"], "alice");
    assert_eq!(item["text"], "repost me");
    assert_eq!(item["counts"]["reposts"], 2);
    assert_eq!(item["viewer"]["reposted"], false);
    assert!(item["repost_id"].as_str().is_some());
    assert_eq!(post(&n, &x, &bt)["viewer"]["reposted"], true);
    // Feed items are spliced from pre-serialized posts: an edit and the reader's like show on the
    // very next page, a profile change once the summary cache drops it (the fan-out worker's
    // pass), and a page read twice is the same.
    let own_item = |n: &Node| {
        let page = feed(n, &rt);
        let items = page["items"].as_array().unwrap();
        items
            .iter()
            .find(|i| i["id"] == own.as_str())
            .cloned()
            .unwrap()
    };
    assert_eq!(own_item(&n), own_item(&n));
    let edit = json!({"text": "carol's own, edited"});
    let (s, _) = call(&n, "PATCH", &format!("/v1/posts/{own}"), Some(&ct), edit);
    assert_eq!(s, 200);
    let edited = own_item(&n);
    assert_eq!(edited["text"], "carol's own, edited");
    assert!(edited["edited_at"].as_str().is_some(), "{edited}");
    assert_eq!(like(&n, "PUT", &own, &rt), 204);
    assert_eq!(own_item(&n)["viewer"]["liked"], true);
    assert!(eventually(WAIT, || own_item(&n)["counts"]["likes"] == 1));
    let rename = json!({"display_name": "Carol C"});
    let (s, _) = call(&n, "PATCH", "/v1/users/me", Some(&ct), rename);
    assert_eq!(s, 200);
    assert!(eventually(WAIT, || {
        own_item(&n)["author_summary"]["display_name"] == "Carol C"
    }));
    assert_eq!(own_item(&n)["text"], "carol's own, edited");
    // Reposting a repost reposts the post: still two reposters, listed by id.
    let rid = item["repost_id"].as_str().unwrap().to_string();
    assert_eq!(repost(&n, "PUT", &rid, &ct), 204);
    let (s, v) = call(
        &n,
        "GET",
        &format!("/v1/posts/{x}/reposts?limit=1"),
        Some(&rt),
        Value::Null,
    );
    assert_eq!(s, 200, "{v}");
    let mut want = [bob.clone(), carol.clone()];
    want.sort_by_key(|i| i.parse::<u64>().unwrap());
    assert_eq!(v["items"][0]["id"], want[0].as_str());
    let next = v["next_cursor"].as_str().unwrap();
    let page2 = format!("/v1/posts/{x}/reposts?limit=1&cursor={next}");
    let (_, v) = call(&n, "GET", &page2, Some(&rt), Value::Null);
    assert_eq!(v["items"][0]["id"], want[1].as_str());

    // A quote: a post with quote_of, counted, the quoted post inside it.
    let (s, q) = call(
        &n,
        "POST",
        "/v1/posts",
        Some(&bt),
        json!({"text": "look at this", "quote_of": x}),
    );
    assert_eq!(s, 201, "{q}");
    assert_eq!(q["quote_of"], x.as_str());
    let qid = q["id"].as_str().unwrap().to_string();
    assert!(eventually(WAIT, || post(&n, &x, &at)["counts"]["quotes"] == 1));
    let read = post(&n, &qid, &rt);
    assert_eq!(read["quoted"]["text"], "repost me");
    assert_eq!(read["quoted"]["author_summary"]["handle"], "alice");
    for (body, want) in [
        (json!({"text": "q", "quote_of": "424242"}), 422),
        (json!({"text": "q", "quote_of": "x"}), 400),
    ] {
        assert_eq!(call(&n, "POST", "/v1/posts", Some(&bt), body).0, want);
    }

    // alice is told of two reposts (grouped) and one quote, each once.
    assert!(
        eventually(WAIT, || {
            let v = notifications(&n, &at, "");
            let mut ks = kinds(&v);
            for k in &mut ks {
                k.1.sort();
            }
            let mut two = vec![bob.clone(), carol.clone()];
            two.sort();
            ks == vec![kind("quote", &[&bob]), ("repost".to_string(), two)]
        }),
        "{}",
        notifications(&n, &at, "")
    );

    // Undo: bob's repost leaves the feed (carol's stays, now the one shown), counts follow.
    for _ in 0..2 {
        assert_eq!(repost(&n, "DELETE", &x, &bt), 204, "idempotent");
    }
    assert!(eventually(WAIT, || post(&n, &x, &at)["counts"]["reposts"] == 1));
    assert_eq!(post(&n, &x, &bt)["viewer"]["reposted"], false);
    assert!(eventually(WAIT, || {
        !feed_items(&n, &rt).contains(&(x.clone(), Some("bob".to_string())))
    }));

    // Blocks: alice blocks the reader — carol's repost of alice's post is hidden from them, and
    // they can neither repost nor quote it.
    let (s, _) = call(
        &n,
        "PUT",
        &format!("/v1/blocks/{reader}"),
        Some(&at),
        Value::Null,
    );
    assert_eq!(s, 204);
    assert!(!feed_items(&n, &rt).iter().any(|(id, _)| *id == x));
    assert_eq!(repost(&n, "PUT", &x, &rt), 403);
    let quote = json!({"text": "q", "quote_of": x});
    assert_eq!(call(&n, "POST", "/v1/posts", Some(&rt), quote).0, 403);
    // bob's quote stays readable to the reader, without the quoted post.
    let read = post(&n, &qid, &rt);
    assert_eq!(read["quote_of"], x.as_str());
    assert!(read.get("quoted").is_none(), "{read}");
    assert_eq!(repost(&n, "PUT", "424242", &bt), 404);
    assert_eq!(repost(&n, "PUT", "abc", &bt), 400);
    // The hydration caches are in /metrics, holding what the reads above cached.
    let (s, body) = n.http("GET", "/metrics", None, b"");
    assert_eq!(s, 200);
    let metrics = String::from_utf8(body).unwrap();
    for name in [
        "starling_feed_author_summaries_cached",
        "starling_post_counts_cached",
        "starling_viewer_flags_cached",
        "starling_post_fragments_cached",
        "starling_session_cache_sessions",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in /metrics"));
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v > 0.0, "{line}");
    }
    assert!(n.terminate().success());
}
