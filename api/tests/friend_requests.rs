//! Friend requests through the real `starling` binary: pending requests listed incoming and
//! outgoing (paged), declined by the addressee, cancelled by the sender, and gone afterwards.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, sign_up_user as sign_up};
use serde_json::{Value, json};

fn call(n: &Node, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    common::call_json(n, method, path, Some(token), &body)
}

/// The status of a bodiless request.
fn status(n: &Node, method: &str, path: &str, token: &str) -> u16 {
    call(n, method, path, token, Value::Null).0
}

fn request(n: &Node, token: &str, to: &str) -> String {
    let (s, v) = call(n, "POST", "/v1/friend-requests", token, json!({ "to": to }));
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Every pending request of a list, page by page (`limit` per page).
fn pending(n: &Node, token: &str, direction: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/friend-requests?direction={direction}&limit={limit}{cursor}");
        let (s, v) = call(n, "GET", &path, token, Value::Null);
        assert_eq!(s, 200, "{v}");
        for r in v["items"].as_array().unwrap() {
            assert_eq!(r["state"], "pending");
            out.push(r["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[test]
fn requests_are_listed_until_declined_cancelled_or_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::memory(dir.path(), &[]);
    let (_, at) = sign_up(&n, "alice");
    let (bob, bt) = sign_up(&n, "bob");
    let (_, ct) = sign_up(&n, "carol");
    let (dave, dt) = sign_up(&n, "dave");
    let ab = request(&n, &at, &bob);
    let cb = request(&n, &ct, &bob);
    let db = request(&n, &dt, &bob);
    assert_eq!(
        pending(&n, &bt, "incoming", 1),
        vec![ab.clone(), cb.clone(), db.clone()]
    );
    assert_eq!(
        pending(&n, &bt, "incoming", 100),
        pending(&n, &bt, "incoming", 2)
    );
    assert_eq!(pending(&n, &at, "outgoing", 10), vec![ab.clone()]);
    assert!(pending(&n, &at, "incoming", 10).is_empty());
    assert!(pending(&n, &bt, "outgoing", 10).is_empty());

    // The sender cannot decline, the addressee cannot cancel.
    assert_eq!(
        status(
            &n,
            "POST",
            &format!("/v1/friend-requests/{ab}/decline"),
            &at
        ),
        403
    );
    assert_eq!(
        status(&n, "DELETE", &format!("/v1/friend-requests/{ab}"), &bt),
        403
    );
    // bob declines alice's, carol cancels hers, bob accepts dave's: none is pending any more.
    assert_eq!(
        status(
            &n,
            "POST",
            &format!("/v1/friend-requests/{ab}/decline"),
            &bt
        ),
        204
    );
    assert_eq!(
        status(&n, "DELETE", &format!("/v1/friend-requests/{cb}"), &ct),
        204
    );
    assert_eq!(
        status(&n, "POST", &format!("/v1/friend-requests/{db}/accept"), &bt),
        200
    );
    assert!(pending(&n, &bt, "incoming", 10).is_empty());
    assert!(pending(&n, &at, "outgoing", 10).is_empty());
    // Gone: not accepted, declined or cancelled again; an accepted one is not declined.
    assert_eq!(
        status(&n, "POST", &format!("/v1/friend-requests/{ab}/accept"), &bt),
        404
    );
    assert_eq!(
        status(&n, "DELETE", &format!("/v1/friend-requests/{cb}"), &ct),
        404
    );
    assert_eq!(
        status(
            &n,
            "POST",
            &format!("/v1/friend-requests/{db}/decline"),
            &bt
        ),
        422
    );
    let (_, friends) = call(&n, "GET", "/v1/friends", &bt, Value::Null);
    let ids: Vec<&str> = friends["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![dave.as_str()]);
    assert!(n.terminate().success());
}
