//! The operator commands through the real binary: `starling seed` into a data directory that a
//! node then serves, and `starling cluster` up (detached) and down.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, eventually, free_port};
use std::process::Command;
use std::time::Duration;

fn starling(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `starling seed` with `flags` (whitespace-separated) into the data directory `data_dir`.
fn seed(flags: &str, data_dir: &str) -> (bool, String) {
    let mut args = vec!["seed"];
    args.extend(flags.split_whitespace());
    args.extend(["--data-dir", data_dir]);
    starling(&args)
}

/// A session token of `handle` (a seeded user's password) on `node`.
fn login(node: &Node, handle: &str) -> String {
    let body = serde_json::json!({"handle": handle, "password": "password1"}).to_string();
    let (s, b) = common::http_json(node.port, "POST", "/v1/sessions", None, &body);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    json(&b)["token"].as_str().unwrap().to_string()
}

/// `GET path` on `node` with `token`: the JSON body, the status asserted 200.
fn get(node: &Node, token: &str, path: &str) -> serde_json::Value {
    let (s, b) = node.http("GET", path, Some(token), b"");
    assert_eq!(s, 200, "{path}: {}", String::from_utf8_lossy(&b));
    json(&b)
}

/// The status of a bodiless `method path` on `node` with `token`.
fn status(node: &Node, method: &str, path: &str, token: &str) -> u16 {
    node.http(method, path, Some(token), b"").0
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn a_seeded_store_serves_logins_counts_and_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.display().to_string();
    let (ok, out) = seed("--users 400 --follows 12 --posts 2 --seed 7", &d);
    assert!(ok, "{out}");
    assert!(out.contains("seeded 400 users"), "{out}");
    // The same flags give the same records: a second node seeded alike agrees by digest.
    let twin = dir.path().join("twin").display().to_string();
    let (ok, again) = seed(
        "--users 400 --follows 12 --posts 2 --seed 7 --writers 1",
        &twin,
    );
    assert!(ok, "{again}");
    let digest = |s: &str| s.split("digest ").nth(1).unwrap()[..16].to_string();
    assert_eq!(digest(&out), digest(&again), "{out}\n{again}");
    let other_dir = dir.path().join("other").display().to_string();
    let (ok, other) = seed("--users 400 --follows 12 --seed 8", &other_dir);
    assert!(ok, "{other}");
    assert_ne!(digest(&out), digest(&other), "another seed, another graph");
    // A bulk load goes into a fresh store only.
    let (ok, refused) = seed("--users 10", &d);
    assert!(!ok && refused.contains("no replicated record"), "{refused}");
    let node = Node::start(dir.path(), free_port(), &["--data-dir".to_string(), d]);
    let token = login(&node, "user0");
    let me = get(&node, &token, "/v1/users/me");
    let following = me["following_count"].as_i64().unwrap();
    assert!((6..=18).contains(&following), "about 12 follows: {me}");
    // The counts were derived at seeding time and match the edge lists.
    let id = me["id"].as_str().unwrap();
    let list = get(
        &node,
        &token,
        &format!("/v1/users/{id}/following?limit=100"),
    );
    assert_eq!(list["items"].as_array().unwrap().len() as i64, following);
    // The loaded counts move with later follows and unfollows (the edges' shadows were loaded).
    let first = list["items"][0]["id"].as_str().unwrap().to_string();
    let followers_of = |who: &str| {
        let u = get(&node, &token, &format!("/v1/users/{who}"));
        u["followers_count"].as_i64().unwrap()
    };
    let before = followers_of(&first);
    assert_eq!(
        status(&node, "DELETE", &format!("/v1/following/{first}"), &token),
        204
    );
    assert_eq!(followers_of(&first), before - 1);
    let me2 = get(&node, &token, "/v1/users/me");
    assert_eq!(me2["following_count"].as_i64().unwrap(), following - 1);
    assert_eq!(
        status(&node, "PUT", &format!("/v1/following/{first}"), &token),
        204
    );
    assert_eq!(followers_of(&first), before);
    // The feed is rebuilt on first read from the seeded follows and posts.
    assert!(
        eventually(Duration::from_secs(10), || {
            let (s, f) = node.http("GET", "/v1/feed?limit=50", Some(&token), b"");
            s == 200 && !json(&f)["items"].as_array().unwrap().is_empty()
        }),
        "a seeded user's feed has posts"
    );
    assert!(node.terminate().success());
}

#[test]
fn a_detached_cluster_comes_up_replicates_and_goes_down() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("cluster");
    let c = cdir.display().to_string();
    // A base port with room for gossip (+1000) above it.
    let base = loop {
        let p = free_port();
        if p < 60_000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let base_s = base.to_string();
    let (ok, out) = starling(&[
        "cluster",
        "--regions",
        "us,eu",
        "--nodes-per-region",
        "1",
        "--base-port",
        &base_s,
        "--rtt",
        "us-eu=60ms",
        "--store",
        "memory",
        "--admin-token",
        "tok",
        "--dir",
        &c,
        "--detach",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("us0") && out.contains("eu0"), "{out}");
    assert!(cdir.join("logs/us0.log").exists());
    let (us, eu) = (base, base + 1);
    assert_eq!(
        common::http(us, "PUT", "/v1/admin/kv/greeting", Some("tok"), b"hi").0,
        204
    );
    let replicated = eventually(Duration::from_secs(30), || {
        common::http(eu, "GET", "/v1/admin/kv/greeting", Some("tok"), b"").0 == 200
    });
    let (ok, out) = starling(&["cluster", "down", "--dir", &c]);
    assert!(ok, "{out}");
    assert!(out.contains("stopped 2 nodes"), "{out}");
    assert!(replicated, "a write in us reached eu");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", us)).is_err(),
        "the nodes are gone"
    );
}

/// Every page of a user list (`GET …?limit=100`, following `next_cursor`): the users' ids and
/// handles.
fn all_users(node: &Node, token: &str, path: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(node, token, &format!("{path}?limit=100{cursor}"));
        for u in page["items"].as_array().unwrap() {
            out.push((
                u["id"].as_str().unwrap().to_string(),
                u["handle"].as_str().unwrap().to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[test]
fn a_seeded_store_serves_likes_reposts_replies_and_their_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data").display().to_string();
    let flags = "--users 300 --follows 10 --posts 2 --likes 6 --reposts 1 --replies 1 --seed 3";
    let (ok, out) = seed(flags, &d);
    assert!(ok, "{out}");
    // "most liked post: ID (N likes)": the Zipf law puts many likes on one post.
    let hot = out.split("most liked post: ").nth(1).unwrap();
    let (post, rest) = hot.split_once(" (").unwrap();
    let likes: usize = rest.split_once(' ').unwrap().0.parse().unwrap();
    assert!(
        likes >= 20,
        "skewed: the most liked post has {likes} likes\n{out}"
    );
    let args = ["--data-dir", &d, "--deletion-interval", "100ms"].map(String::from);
    let node = Node::start(dir.path(), free_port(), &args);
    let token = login(&node, "user0");
    let counts = |token: &str| get(&node, token, &format!("/v1/posts/{post}"))["counts"].clone();
    // Each count equals the distinct users (or replies) listed for it.
    let c = counts(&token);
    let likers = all_users(&node, &token, &format!("/v1/posts/{post}/likes"));
    assert_eq!(likers.len(), likes);
    assert_eq!(c["likes"].as_u64().unwrap() as usize, likes, "{c}");
    let reposters = all_users(&node, &token, &format!("/v1/posts/{post}/reposts"));
    assert_eq!(
        c["reposts"].as_u64().unwrap() as usize,
        reposters.len(),
        "{c}"
    );
    let t = get(&node, &token, &format!("/v1/posts/{post}/thread?limit=100"));
    let replies = t["replies"]["items"].as_array().unwrap().len();
    assert_eq!(c["replies"].as_u64().unwrap() as usize, replies, "{c}");
    assert!(
        replies > 0 && !reposters.is_empty(),
        "the hot post is replied to and reposted: {c}"
    );
    // Its author was notified of the likes, grouped on the post.
    let p = get(&node, &token, &format!("/v1/posts/{post}"));
    let author = p["author_summary"]["handle"].as_str().unwrap().to_string();
    let author_token = login(&node, &author);
    let n = get(&node, &author_token, "/v1/notifications?limit=100");
    assert!(
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "like"
                && i["post"].as_str() == Some(post)
                && i["actors_count"].as_u64().unwrap() > 1),
        "{n}"
    );
    assert!(
        (1..=400).contains(&n["unread_count"].as_u64().unwrap()),
        "{n}"
    );
    // A seeded like taken back leaves the count, once; liked again, it is back.
    let liker = login(&node, &likers[0].1);
    let liked = |t: &str| counts(t)["likes"].as_u64().unwrap() as usize;
    assert_eq!(
        status(&node, "DELETE", &format!("/v1/posts/{post}/like"), &liker),
        204
    );
    assert!(eventually(Duration::from_secs(10), || liked(&liker) == likes - 1));
    assert_eq!(
        status(&node, "DELETE", &format!("/v1/posts/{post}/like"), &liker),
        204
    );
    assert_eq!(
        status(&node, "PUT", &format!("/v1/posts/{post}/like"), &liker),
        204
    );
    assert!(eventually(Duration::from_secs(10), || liked(&liker) == likes));
    assert_eq!(
        all_users(&node, &token, &format!("/v1/posts/{post}/likes")).len(),
        likes
    );
    // A seeded liker deletes their account: the sweeper takes their seeded like back (the
    // seeder wrote the index by liker), and the count moves down once.
    let (gone_id, gone_handle) = likers[1..]
        .iter()
        .find(|(_, h)| h != "user0" && *h != author)
        .unwrap()
        .clone();
    let gone = login(&node, &gone_handle);
    let body = serde_json::json!({"password": "password1"}).to_string();
    let (s, b) = common::http_json(node.port, "DELETE", "/v1/users/me", Some(&gone), &body);
    assert_eq!(s, 204, "{}", String::from_utf8_lossy(&b));
    assert!(
        eventually(Duration::from_secs(60), || liked(&token) == likes - 1),
        "the deleted liker's seeded like stops counting: {}",
        liked(&token)
    );
    let left = all_users(&node, &token, &format!("/v1/posts/{post}/likes"));
    assert_eq!(left.len(), likes - 1);
    assert!(left.iter().all(|(id, _)| *id != gone_id), "{left:?}");
    // A seeded reposter deletes their account: their repost post is swept, the repost count
    // moves down once, and every count still equals its list.
    let reposters_now = all_users(&node, &token, &format!("/v1/posts/{post}/reposts"));
    let (rid, rhandle) = reposters_now
        .iter()
        .find(|(id, h)| h != "user0" && *h != author && *id != gone_id)
        .cloned()
        .expect("a seeded reposter of the hot post to delete");
    let rt = login(&node, &rhandle);
    let (s, b) = common::http_json(node.port, "DELETE", "/v1/users/me", Some(&rt), &body);
    assert_eq!(s, 204, "{}", String::from_utf8_lossy(&b));
    let reposts = |t: &str| counts(t)["reposts"].as_u64().unwrap() as usize;
    assert!(
        eventually(Duration::from_secs(60), || reposts(&token)
            == reposters_now.len() - 1),
        "the deleted reposter's seeded repost stops counting: {}",
        reposts(&token)
    );
    let listed = all_users(&node, &token, &format!("/v1/posts/{post}/reposts"));
    assert!(listed.iter().all(|(id, _)| *id != rid), "{listed:?}");
    let likers_listed = || all_users(&node, &token, &format!("/v1/posts/{post}/likes")).len();
    assert!(
        eventually(Duration::from_secs(60), || liked(&token) == likers_listed()),
        "the like count equals the likers listed"
    );
    assert!(node.terminate().success());
}
