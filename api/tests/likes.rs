//! Likes through the real `starling` binary: like and unlike are idempotent, a retry or the same
//! user liking in two regions is one like, the count on every node equals the number of distinct
//! likers, `viewer.liked` is the caller's, likers page by cursor, and a block refuses the like.
//!
//! Counts are derived a consumer pass behind the likes, so the tests wait for them (never for a
//! time): a count that must *not* move is checked behind a later like that must, since the
//! consumer reads the change feed in order.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, eventually, free_port};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn call(n: &Node, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    common::call_json(n, method, path, token, &body)
}

/// Signs up `handle` on `n`: (id, token).
fn sign_up(n: &Node, handle: &str) -> (String, String) {
    common::sign_up_user(n, handle)
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

fn memory_node(dir: &std::path::Path) -> Node {
    let args: Vec<String> = ["--store", "memory", "--auth-per-minute", "1000000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Node::start(dir, free_port(), &args)
}

#[test]
fn likes_are_idempotent_counted_once_paged_and_refused_across_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let n = memory_node(dir.path());
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

/// One node per region, `us` and `eu`, 40 ms apart.
fn two_regions(dir: &std::path::Path) -> (Node, Node) {
    let mut seed: Option<String> = None;
    let mut nodes = Vec::new();
    for region in ["us", "eu"] {
        let gossip = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = [
            "--region",
            region,
            "--node-id",
            region,
            "--gossip-listen",
            &gossip,
            "--cluster-secret",
            SECRET,
            "--wan-rtt",
            "us-eu=40",
            "--auth-per-minute",
            "1000000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--data-dir".into());
        args.push(dir.join(region).display().to_string());
        if let Some(s) = &seed {
            args.push("--seeds".into());
            args.push(s.clone());
        }
        seed.get_or_insert(gossip);
        nodes.push(Node::start(dir, free_port(), &args));
    }
    let eu = nodes.pop().unwrap();
    (nodes.pop().unwrap(), eu)
}

/// The same user liking one post in two regions at once, a second user liking in the other
/// region, and retries everywhere: every node counts two likes, and lists the same two likers.
#[test]
fn the_same_like_in_two_regions_counts_once_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (us, eu) = two_regions(dir.path());
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
    let (_, dt) = sign_up(&us, "dave");
    assert!(eventually(WAIT, || like(&us, "PUT", &id, &dt) == 204));
    for (name, n, t) in [("us", &us, &at), ("eu", &eu, &ct)] {
        assert!(
            eventually(WAIT, || likes(n, &id, t) == 3),
            "{name}: {}",
            likes(n, &id, t)
        );
    }
    // bob unlikes in eu: both nodes drop to two.
    assert_eq!(like(&eu, "DELETE", &id, &bt), 204);
    for (name, n, t) in [("us", &us, &at), ("eu", &eu, &ct)] {
        assert!(eventually(WAIT, || likes(n, &id, t) == 2), "{name}");
        assert_eq!(post(n, &id, &bt)["viewer"]["liked"], false);
    }
    assert!(us.terminate().success());
    assert!(eu.terminate().success());
}
