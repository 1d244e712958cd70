//! The complete messenger over real sockets, on an in-process node: one sender's order under
//! pipelined bursts (seeded), group membership as log entries (roles, add, remove, leave,
//! rename, transfer, the removed member's view), edits and deletes (live, on resume, in
//! history), read markers and the inbox.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::chat::{
    Client, Server, User, conversation, http, messages, sign_up, start, start_with_chat,
};
use serde_json::{Value, json};
use starling_api::config::ChatSettings;

fn send_frame(conv: &str, client_id: &str, body: &str) -> Value {
    json!({"type":"send","conv":conv,"client_id":client_id,"body":body})
}

async fn group(s: &Server, owner: &User, others: &[&User], name: &str) -> String {
    let members: Vec<&str> = others.iter().map(|u| u.id.as_str()).collect();
    let (st, v) = http(
        s.addr,
        "POST",
        "/v1/conversations",
        Some(&owner.token),
        Some(json!({"members": members, "name": name})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["kind"], "group");
    assert_eq!(v["name"], name);
    v["id"].as_str().unwrap().to_string()
}

/// The status of one request.
async fn status(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> u16 {
    http(s.addr, method, path, token, body).await.0
}

/// The status of `by`'s `method` (`PUT` adds, `DELETE` removes) on `user`'s membership of the
/// conversation at `conv` (`/v1/conversations/{id}`).
async fn membership(s: &Server, method: &str, conv: &str, user: &User, by: &User) -> u16 {
    let path = format!("{conv}/members/{}", user.id);
    status(s, method, &path, Some(&by.token), None).await
}

/// The status of `by` giving `user` `role` in the conversation at `conv`.
async fn set_role(s: &Server, conv: &str, user: &User, role: &str, by: &User) -> u16 {
    let path = format!("{conv}/members/{}/role", user.id);
    let body = json!({ "role": role });
    status(s, "PUT", &path, Some(&by.token), Some(body)).await
}

/// The status of `by` marking the conversation `conv` (its id) read up to `seq`.
async fn mark_read(s: &Server, conv: &str, seq: u64, by: &User) -> u16 {
    let path = format!("/v1/conversations/{conv}/read");
    status(
        s,
        "PUT",
        &path,
        Some(&by.token),
        Some(json!({ "seq": seq })),
    )
    .await
}

/// The item of the conversation `conv` (its id) in `user`'s inbox (its first page).
async fn inbox_item(s: &Server, user: &User, conv: &str) -> Value {
    let (_, v) = http(s.addr, "GET", "/v1/conversations", Some(&user.token), None).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == conv)
        .unwrap()
        .clone()
}

/// A small deterministic generator (xorshift), so each round's burst is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_bursts_keep_the_senders_order_and_ack_order() {
    let s = start().await;
    let alice = sign_up(s.addr, "alice").await;
    let bob = sign_up(s.addr, "bob").await;
    let carol = sign_up(s.addr, "carol").await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    let grp = conversation(s.addr, &alice, &[&bob, &carol]).await;
    let seed: u64 = std::env::var("STARLING_CHAT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = Rng(seed | 1);
    let mut a = Client::connect(s.addr, &alice.token).await;
    // Carol sends in the group at the same time, so other senders interleave.
    let mut c = Client::connect(s.addr, &carol.token).await;
    let mut sent_by_alice: Vec<(String, String)> = Vec::new();
    for round in 0..12 {
        let n = 30 + (rng.next() % 20) as usize;
        let mut ids = Vec::new();
        for i in 0..n {
            // Mostly one conversation, sometimes the other: order holds per conversation.
            let conv = if rng.next().is_multiple_of(4) {
                &dm
            } else {
                &grp
            };
            let id = format!("r{round}-{i}");
            a.send(send_frame(conv, &id, &format!("m {round} {i}")))
                .await;
            ids.push((conv.clone(), id));
            if i.is_multiple_of(7) {
                c.send(send_frame(&grp, &format!("c{round}-{i}"), "interleaved"))
                    .await;
            }
        }
        // Acks come back in the order sent, with seqs rising per conversation.
        let mut last: std::collections::HashMap<String, u64> = Default::default();
        for (conv, id) in &ids {
            let ack = a.next_of(&["ack", "error"]).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            assert_eq!(ack["client_id"].as_str(), Some(id.as_str()), "ack order");
            assert_eq!(ack["conv"].as_str(), Some(conv.as_str()));
            let seq = ack["seq"].as_u64().unwrap();
            assert!(seq > last.get(conv).copied().unwrap_or(0), "seq order");
            last.insert(conv.clone(), seq);
        }
        sent_by_alice.extend(ids);
    }
    // The stored order of Alice's messages is the order she sent them, in both.
    for conv in [&dm, &grp] {
        let mut stored = Vec::new();
        let mut after = 0;
        loop {
            let (st, page) = messages(s.addr, &alice.token, conv, after).await;
            assert_eq!(st, 200);
            if page.is_empty() {
                break;
            }
            for m in &page {
                after = m["seq"].as_u64().unwrap();
                if m["sender"] == alice.id.as_str() {
                    stored.push(m["client_id"].as_str().unwrap().to_string());
                }
            }
        }
        let expected: Vec<String> = sent_by_alice
            .iter()
            .filter(|(c, _)| c == conv)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(stored, expected, "stored in the order sent (seed {seed})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_is_a_log_of_events_with_roles() {
    let s = start_with_chat(ChatSettings {
        max_group_members: "4".parse().unwrap(),
        ..ChatSettings::default()
    })
    .await;
    let owner = sign_up(s.addr, "owner").await;
    let bob = sign_up(s.addr, "bob").await;
    let carol = sign_up(s.addr, "carol").await;
    let dave = sign_up(s.addr, "dave").await;
    let erin = sign_up(s.addr, "erin").await;
    let g = group(&s, &owner, &[&bob], "team").await;
    let path = |rest: &str| format!("/v1/conversations/{g}{rest}");
    let mut b = Client::connect(s.addr, &bob.token).await;
    b.send(json!({"type":"resume","conv":g,"after_seq":0}))
        .await;
    b.next_of(&["resumed"]).await;

    // A member cannot add; the owner can; the event is delivered live with its own seq.
    let st = membership(&s, "PUT", &path(""), &carol, &bob).await;
    assert_eq!(st, 403);
    let (st, v) = http(
        s.addr,
        "PUT",
        &path(&format!("/members/{}", carol.id)),
        Some(&owner.token),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
    let ev = b.next_of(&["message"]).await;
    assert_eq!(
        (ev["kind"].as_str(), ev["seq"].as_u64()),
        (Some("member_added"), Some(1))
    );
    assert_eq!(ev["target"].as_str(), Some(carol.id.as_str()));
    // Adding again changes nothing.
    let st = membership(&s, "PUT", &path(""), &carol, &owner).await;
    assert_eq!(st, 204);
    // Promote Bob: now he adds Dave; the cap (4) then refuses Erin.
    let st = set_role(&s, &path(""), &bob, "admin", &owner).await;
    assert_eq!(st, 204);
    let st = membership(&s, "PUT", &path(""), &dave, &bob).await;
    assert_eq!(st, 204);
    let st = membership(&s, "PUT", &path(""), &erin, &bob).await;
    assert_eq!(st, 422);
    // An admin does not remove the owner; a member does not rename.
    let st = membership(&s, "DELETE", &path(""), &owner, &bob).await;
    assert_eq!(st, 403);
    let st = status(
        &s,
        "PATCH",
        &path(""),
        Some(&carol.token),
        Some(json!({"name":"x"})),
    )
    .await;
    assert_eq!(st, 403);
    let (st, v) = http(
        s.addr,
        "PATCH",
        &path(""),
        Some(&bob.token),
        Some(json!({"name":"the team","topic":"plans"})),
    )
    .await;
    assert_eq!(
        (st, v["name"].as_str(), v["topic"].as_str()),
        (200, Some("the team"), Some("plans"))
    );
    let (st, v) = http(s.addr, "GET", &path(""), Some(&carol.token), None).await;
    assert_eq!(st, 200);
    let roles: Vec<(String, String)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(roles.contains(&(owner.id.clone(), "owner".into())));
    assert!(roles.contains(&(bob.id.clone(), "admin".into())));
    assert!(roles.contains(&(carol.id.clone(), "member".into())));

    // Carol, connected and live, is removed: she gets the removal and a `removed` frame, then
    // nothing; she cannot send; her REST history stops at the removal; later pages are 403.
    let mut c = Client::connect(s.addr, &carol.token).await;
    c.send(json!({"type":"resume","conv":g,"after_seq":0}))
        .await;
    c.next_of(&["resumed"]).await;
    let st = membership(&s, "DELETE", &path(""), &carol, &bob).await;
    assert_eq!(st, 204);
    let ev = c.next_of(&["message"]).await;
    assert_eq!(ev["kind"], "member_removed");
    let removal = ev["seq"].as_u64().unwrap();
    let gone = c.next_of(&["removed"]).await;
    assert_eq!(gone["seq"].as_u64(), Some(removal));
    b.send(send_frame(&g, "after-removal", "carol must not see this"))
        .await;
    b.next_of(&["ack"]).await;
    c.send(send_frame(&g, "c-after", "let me in")).await;
    let e = c.next_of(&["error", "message"]).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{e}"
    );
    let (st, page) = messages(s.addr, &carol.token, &g, 0).await;
    assert_eq!(st, 200);
    assert_eq!(page.last().unwrap()["seq"].as_u64(), Some(removal));
    let (st, _) = messages(s.addr, &carol.token, &g, removal).await;
    assert_eq!(st, 403);

    // Re-added: she reads from the re-add on, never the stretch she was out.
    let st = membership(&s, "PUT", &path(""), &carol, &owner).await;
    assert_eq!(st, 204);
    b.send(send_frame(&g, "welcome", "welcome back")).await;
    b.next_of(&["ack"]).await;
    let (st, page) = messages(s.addr, &carol.token, &g, 0).await;
    assert_eq!(st, 200);
    let seen: Vec<&str> = page
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert!(!seen.contains(&"after-removal"), "{seen:?}");
    assert!(seen.contains(&"welcome"), "{seen:?}");
    let mut c2 = Client::connect(s.addr, &carol.token).await;
    c2.send(json!({"type":"resume","conv":g,"after_seq":0}))
        .await;
    let mut resumed = Vec::new();
    loop {
        let f = c2.next().await;
        if f["type"] == "resumed" {
            break;
        }
        resumed.push(f["client_id"].as_str().unwrap_or("").to_string());
    }
    assert!(
        !resumed.contains(&"after-removal".to_string()),
        "{resumed:?}"
    );
    assert!(resumed.contains(&"welcome".to_string()), "{resumed:?}");

    // The owner cannot leave before transferring; after the transfer they can.
    let st = membership(&s, "DELETE", &path(""), &owner, &owner).await;
    assert_eq!(st, 409);
    let st = set_role(&s, &path(""), &dave, "owner", &owner).await;
    assert_eq!(st, 204);
    let st = membership(&s, "DELETE", &path(""), &owner, &owner).await;
    assert_eq!(st, 204);
    let (_, v) = http(s.addr, "GET", &path(""), Some(&dave.token), None).await;
    let owner_now: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(owner_now, vec![dave.id.as_str()]);
    // The log tells the story in order, with no gap, to a founder; Dave reads from his add.
    let (_, page) = messages(s.addr, &dave.token, &g, 0).await;
    assert_eq!(page[0]["seq"].as_u64(), Some(3));
    let (_, page) = messages(s.addr, &bob.token, &g, 0).await;
    let kinds: Vec<&str> = page.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        vec![
            "member_added",
            "role_changed",
            "member_added",
            "renamed",
            "member_removed",
            "text",
            "member_added",
            "text",
            "role_changed",
            "member_left"
        ]
    );
    assert!(
        page.iter()
            .enumerate()
            .all(|(i, m)| m["seq"].as_u64() == Some(i as u64 + 1))
    );
    // A 1:1 has no membership changes.
    let dm = conversation(s.addr, &bob, &[&erin]).await;
    let st = status(
        &s,
        "PUT",
        &format!("/v1/conversations/{dm}/members/{}", carol.id),
        Some(&bob.token),
        None,
    )
    .await;
    assert_eq!(st, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_reach_members_live_on_resume_and_in_history() {
    let s = start().await;
    let alice = sign_up(s.addr, "alice").await;
    let bob = sign_up(s.addr, "bob").await;
    let carol = sign_up(s.addr, "carol").await;
    let g = group(&s, &alice, &[&bob, &carol], "g").await;
    let mut a = Client::connect(s.addr, &alice.token).await;
    let mut b = Client::connect(s.addr, &bob.token).await;
    b.send(json!({"type":"resume","conv":g,"after_seq":0}))
        .await;
    b.next_of(&["resumed"]).await;
    a.send(send_frame(&g, "m1", "helo")).await;
    a.send(send_frame(&g, "m2", "secret")).await;
    a.next_of(&["ack"]).await;
    a.next_of(&["ack"]).await;
    // Bob cannot edit Alice's message.
    b.send(json!({"type":"edit","conv":g,"seq":1,"body":"hacked","client_id":"e0"}))
        .await;
    let e = b.next_of(&["error"]).await;
    assert_eq!(e["code"], "forbidden");
    // Alice edits over the WebSocket (idempotent by client id) and deletes over REST.
    a.send(json!({"type":"edit","conv":g,"seq":1,"body":"hello","client_id":"e1"}))
        .await;
    let ack = a.next_of(&["ack"]).await;
    assert_eq!(ack["seq"].as_u64(), Some(3));
    a.send(json!({"type":"edit","conv":g,"seq":1,"body":"hello","client_id":"e1"}))
        .await;
    assert_eq!(
        a.next_of(&["ack"]).await["seq"].as_u64(),
        Some(3),
        "a retry is the same edit"
    );
    let ed = b.next_of(&["edited"]).await;
    assert_eq!(
        (
            ed["seq"].as_u64(),
            ed["log_seq"].as_u64(),
            ed["body"].as_str()
        ),
        (Some(1), Some(3), Some("hello"))
    );
    let st = status(
        &s,
        "DELETE",
        &format!("/v1/conversations/{g}/messages/2"),
        Some(&carol.token),
        None,
    )
    .await;
    assert_eq!(st, 403, "a member deletes only their own");
    let st = status(
        &s,
        "DELETE",
        &format!("/v1/conversations/{g}/messages/2"),
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let del = b.next_of(&["deleted"]).await;
    assert_eq!(
        (del["seq"].as_u64(), del["log_seq"].as_u64()),
        (Some(2), Some(4))
    );
    let st = status(
        &s,
        "PATCH",
        &format!("/v1/conversations/{g}/messages/2"),
        Some(&alice.token),
        Some(json!({"body":"back"})),
    )
    .await;
    assert_eq!(st, 409, "a deleted message is not edited");
    let st = status(
        &s,
        "PATCH",
        &format!("/v1/conversations/{g}/messages/99"),
        Some(&alice.token),
        Some(json!({"body":"x"})),
    )
    .await;
    assert_eq!(st, 404);
    // History shows the current state; a resume replays the changes in log order.
    let (_, page) = messages(s.addr, &carol.token, &g, 0).await;
    assert_eq!(page[0]["body"], "hello");
    assert!(page[0]["edited_at"].is_string());
    assert_eq!(
        (page[1]["deleted"].as_bool(), page[1]["body"].as_str()),
        (Some(true), Some(""))
    );
    assert_eq!(page[2]["kind"], "edit");
    assert_eq!(page[3]["kind"], "delete");
    let mut c = Client::connect(s.addr, &carol.token).await;
    c.send(json!({"type":"resume","conv":g,"after_seq":0}))
        .await;
    let mut types = Vec::new();
    loop {
        let f = c.next().await;
        if f["type"] == "resumed" {
            assert_eq!(f["last_seq"].as_u64(), Some(4));
            break;
        }
        types.push(f["type"].as_str().unwrap().to_string());
    }
    assert_eq!(types, vec!["message", "message", "edited", "deleted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_markers_never_move_back_and_the_inbox_orders_by_activity() {
    let s = start().await;
    let alice = sign_up(s.addr, "alice").await;
    let bob = sign_up(s.addr, "bob").await;
    let carol = sign_up(s.addr, "carol").await;
    let first = conversation(s.addr, &alice, &[&bob]).await;
    let second = conversation(s.addr, &alice, &[&carol]).await;
    let mut b = Client::connect(s.addr, &bob.token).await;
    let mut cl = Client::connect(s.addr, &carol.token).await;
    for i in 0..3 {
        b.send(send_frame(&first, &format!("b{i}"), "from bob"))
            .await;
        b.next_of(&["ack"]).await;
    }
    cl.send(send_frame(&second, "c0", "from carol")).await;
    cl.next_of(&["ack"]).await;
    let inbox = |token: String| {
        let addr = s.addr;
        async move { http(addr, "GET", "/v1/conversations?limit=1", Some(&token), None).await }
    };
    let (st, v) = inbox(alice.token.clone()).await;
    assert_eq!(st, 200, "{v}");
    let top = &v["items"][0];
    assert_eq!(
        top["id"].as_str(),
        Some(second.as_str()),
        "most recent activity first"
    );
    assert_eq!(
        (top["unread_count"].as_u64(), top["last_seq"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(top["last_message"]["body"], "from carol");
    assert_eq!(top["members_count"].as_u64(), Some(2));
    let cursor = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v) = http(
        s.addr,
        "GET",
        &format!("/v1/conversations?limit=1&cursor={cursor}"),
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(v["items"][0]["id"].as_str(), Some(first.as_str()));
    assert_eq!(v["items"][0]["unread_count"].as_u64(), Some(3));
    assert!(v["next_cursor"].is_null());
    // Marking read on one device reaches the other live; a lower marker changes nothing.
    let mut a2 = Client::connect(s.addr, &alice.token).await;
    assert_eq!(mark_read(&s, &first, 2, &alice).await, 204);
    let r = a2.next_of(&["read"]).await;
    assert_eq!(
        (r["seq"].as_u64(), r["user"].as_str()),
        (Some(2), Some(alice.id.as_str()))
    );
    let mut a1 = Client::connect(s.addr, &alice.token).await;
    a1.send(json!({"type":"read","conv":first,"seq":1})).await;
    a1.send(json!({"type":"ping"})).await;
    a1.next_of(&["pong"]).await;
    let item = inbox_item(&s, &alice, &first).await;
    assert_eq!(
        (item["read_seq"].as_u64(), item["unread_count"].as_u64()),
        (Some(2), Some(1))
    );
    // Beyond the newest seq, the marker stops at it.
    mark_read(&s, &first, 1000, &alice).await;
    let item = inbox_item(&s, &alice, &first).await;
    assert_eq!(
        (item["read_seq"].as_u64(), item["unread_count"].as_u64()),
        (Some(3), Some(0))
    );
    // Bad input changes nothing.
    let st = status(
        &s,
        "GET",
        "/v1/conversations?cursor=nope",
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(mark_read(&s, &first, 1, &carol).await, 403);
}
