//! Pagination conventions through the real `starling` binary: every list answers a
//! `Link: <…>; rel="next"` header while there is more (following it walks the list to its end,
//! without a Link on the last page), and `since` fetches only what is newer than what a client
//! holds (the feed by post id, the inbox by its `since_cursor`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, request_with_head};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A GET: (status, the `Link` header's next target if any, body).
fn get(port: u16, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let (s, head, body) = request_with_head(port, "GET", path, Some(token), None, b"");
    let link = common::header_of(&head, "link").map(|value| {
        assert!(value.ends_with("; rel=\"next\""), "{value}");
        value[1..value.find('>').unwrap()].to_string()
    });
    (s, link, serde_json::from_slice(&body).unwrap())
}

fn post_json(port: u16, path: &str, token: &str, body: Value) -> Value {
    let (s, b) = common::http_json(port, "POST", path, Some(token), &body.to_string());
    assert!(
        s == 200 || s == 201,
        "{path}: {s} {}",
        String::from_utf8_lossy(&b)
    );
    serde_json::from_slice(&b).unwrap()
}

/// Follows the `Link`s from `first`: the ids of every item, page by page, and how many pages.
fn walk(port: u16, first: &str, token: &str, id: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_string());
    while let Some(path) = next {
        let (s, link, v) = get(port, &path, token);
        assert!(s == 200 || s == 206, "{path}: {s} {v}");
        pages += 1;
        assert!(pages < 20, "{path}: the links do not end");
        for item in v["items"].as_array().unwrap() {
            ids.push(match &item[id] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        // The body's cursor and the Link agree: both or neither.
        if v.get("next_cursor").is_some() {
            assert_eq!(v["next_cursor"].is_string(), link.is_some(), "{path}: {v}");
        }
        next = link;
    }
    (ids, pages)
}

#[test]
fn every_list_links_its_next_page_and_since_gets_only_newer() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::memory(dir.path(), &[]);
    let port = node.port;
    let (_, alice) = common::sign_up_at(port, "alice");
    let (bob_id, bob) = common::sign_up_at(port, "bob");
    let (_, carol) = common::sign_up_at(port, "carol");
    for t in [&alice, &carol] {
        let (s, _) = common::http(
            port,
            "PUT",
            &format!("/v1/following/{bob_id}"),
            Some(t),
            b"",
        );
        assert_eq!(s, 204);
    }
    let posts: Vec<String> = (0..5)
        .map(|i| {
            post_json(
                port,
                "/v1/posts",
                &bob,
                json!({"text": format!("post {i}")}),
            )["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let newest_first: Vec<String> = posts.iter().rev().cloned().collect();

    // Posts by author and followers: pages of 2, then the last without a Link.
    let (ids, pages) = walk(
        port,
        &format!("/v1/users/{bob_id}/posts?limit=2"),
        &alice,
        "id",
    );
    assert_eq!((ids, pages), (newest_first.clone(), 3));
    let (ids, pages) = walk(
        port,
        &format!("/v1/users/{bob_id}/followers?limit=1"),
        &alice,
        "id",
    );
    // (A full last page may link to an empty one: the graph cannot tell it is the last.)
    assert_eq!(ids.len(), 2);
    assert!((2..=3).contains(&pages), "{pages}");

    // The feed, once fan-out has brought all five posts: the Links walk it, and `since` (the
    // newest post a client holds) gives only what is newer, with no further page.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, v) = get(port, "/v1/feed?limit=100", &alice);
        if v["items"].as_array().unwrap().len() == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feed never held the 5 posts: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ids, pages) = walk(port, "/v1/feed?limit=2", &alice, "id");
    assert_eq!((ids, pages), (newest_first.clone(), 3));
    let (ids, pages) = walk(
        port,
        &format!("/v1/feed?limit=2&since={}", posts[1]),
        &alice,
        "id",
    );
    assert_eq!((ids, pages), (newest_first[..3].to_vec(), 2));
    let (s, link, v) = get(port, &format!("/v1/feed?since={}", posts[4]), &alice);
    assert_eq!(
        (s, link, v["items"].as_array().unwrap().len()),
        (200, None, 0)
    );

    // The inbox: three groups; pages of 2; then `since_cursor` gets only the group with news.
    let groups: Vec<String> = (0..3)
        .map(|i| {
            post_json(
                port,
                "/v1/conversations",
                &alice,
                json!({"members": [], "name": format!("g{i}")}),
            )["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (ids, pages) = walk(port, "/v1/conversations?limit=2", &alice, "id");
    assert_eq!((ids.len(), pages), (3, 2));
    let (_, _, all) = get(port, "/v1/conversations", &alice);
    let since = all["since_cursor"].as_str().unwrap().to_string();
    let (_, link, v) = get(port, &format!("/v1/conversations?since={since}"), &alice);
    assert_eq!(
        (link, v["items"].as_array().unwrap().len()),
        (None, 0),
        "{v}"
    );
    assert_eq!(
        v["since_cursor"],
        since.as_str(),
        "an empty answer keeps the position"
    );
    // Something happens in the oldest group: it alone is newer than the position.
    let conv = &groups[0];
    for i in 0..5 {
        post_json(
            port,
            &format!("/v1/conversations/{conv}/messages"),
            &alice,
            json!({"body": format!("m{i}"), "client_id": format!("c{i}")}),
        );
    }
    let (ids, _) = walk(
        port,
        &format!("/v1/conversations?since={since}"),
        &alice,
        "id",
    );
    assert_eq!(ids, vec![conv.clone()]);

    // Messages: the newest page links to the ones before it, an after_seq page to those after.
    let (seqs, pages) = walk(
        port,
        &format!("/v1/conversations/{conv}/messages?limit=2"),
        &alice,
        "seq",
    );
    assert_eq!(pages, 3, "{seqs:?}");
    let (seqs, pages) = walk(
        port,
        &format!("/v1/conversations/{conv}/messages?limit=2&after_seq=0"),
        &alice,
        "seq",
    );
    assert_eq!(pages, 3, "{seqs:?}");
    let mut sorted = seqs.clone();
    sorted.sort_by_key(|s| s.parse::<u64>().unwrap());
    assert_eq!(seqs, sorted, "ascending, contiguous pages");
    assert_eq!(seqs.len(), 5);
    // Both bounds: the entries between them.
    let (s, _, v) = get(
        port,
        &format!(
            "/v1/conversations/{conv}/messages?after_seq={}&before_seq={}",
            seqs[0], seqs[3]
        ),
        &alice,
    );
    assert_eq!(s, 200);
    let between: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].to_string())
        .collect();
    assert_eq!(between, seqs[1..3].to_vec());
}
