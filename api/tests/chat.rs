//! Chat over real sockets: an in-process node on 127.0.0.1:0, REST over TCP and WebSocket
//! clients from tokio-tungstenite. Send/ack/delivery, multi-device, groups, idempotent retries
//! (also after a dropped connection and across the protocol's crash window), resume without gaps
//! or duplicates while another client keeps sending (seeded rounds), slow consumers (4008),
//! authorization (members, blocks) on REST and WebSocket, and the malformed-frame table.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::chat::{
    Client, Ended, Server, User, conversation, edit_message, history, http, messages, post_message,
    sign_up, start, start_with, start_with_chat,
};
use serde_json::{Value, json};
use starling_api::config::ChatSettings;
use starling_messenger::Bus;
use std::collections::BTreeSet;
use tokio_tungstenite::tungstenite::Message;

fn send_frame(conv: &str, client_id: &str, body: &str) -> Value {
    json!({"type":"send","conv":conv,"client_id":client_id,"body":body})
}

/// The status of `creator`'s request for a conversation with `members`.
async fn create(s: &Server, creator: &User, members: Value) -> u16 {
    let body = json!({ "members": members });
    http(
        s.addr,
        "POST",
        "/v1/conversations",
        Some(&creator.token),
        Some(body),
    )
    .await
    .0
}

/// `blocker` blocks `blocked` (204).
async fn block(s: &Server, blocker: &User, blocked: &User) {
    let path = format!("/v1/blocks/{}", blocked.id);
    let (st, _) = http(s.addr, "PUT", &path, Some(&blocker.token), None).await;
    assert_eq!(st, 204);
}

/// The seqs of a page's messages, in order.
fn seqs(items: &[Value]) -> Vec<u64> {
    items.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

async fn three_users(s: &Server) -> (User, User, User) {
    (
        sign_up(s.addr, "alice").await,
        sign_up(s.addr, "bob").await,
        sign_up(s.addr, "carol").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_ack_and_delivery_to_every_device_of_every_member() {
    let s = start().await;
    let (alice, bob, carol) = three_users(&s).await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    assert_eq!(
        conversation(s.addr, &bob, &[&alice]).await,
        dm,
        "the same pair gets the same conversation"
    );
    let mut a1 = Client::connect(s.addr, &alice.token).await;
    let mut a2 = Client::connect(s.addr, &alice.token).await;
    let mut b = Client::connect(s.addr, &bob.token).await;
    let mut c = Client::connect(s.addr, &carol.token).await;
    a1.send(json!({"type":"ping"})).await;
    assert_eq!(a1.next_of(&["pong"]).await["type"], "pong");
    a1.send(send_frame(&dm, "m1", "hello bob")).await;
    // The sender's device gets its ack and the message (the message is queued first).
    let first = a1.next_of(&["ack", "message"]).await;
    let second = a1.next_of(&["ack", "message"]).await;
    let (ack, own) = if first["type"] == "ack" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        (ack["seq"].as_u64(), ack["client_id"].as_str()),
        (Some(1), Some("m1"))
    );
    assert_eq!(
        (own["type"].as_str(), own["id"].clone()),
        (Some("message"), ack["id"].clone())
    );
    for cl in [&mut a2, &mut b] {
        let m = cl.next_of(&["message"]).await;
        assert_eq!(m["body"], "hello bob");
        assert_eq!(m["seq"], 1);
        assert_eq!(m["sender"], alice.id.as_str());
        assert_eq!(m["conv"], dm.as_str());
        assert_eq!(m["id"], ack["id"]);
    }
    // A group of three: everyone gets every message in seq order.
    let group = conversation(s.addr, &alice, &[&bob, &carol]).await;
    assert_ne!(group, dm);
    for i in 0..5 {
        c.send(send_frame(&group, &format!("g{i}"), &format!("hi {i}")))
            .await;
    }
    for cl in [&mut a1, &mut a2, &mut b, &mut c] {
        for want in 1..=5u64 {
            let m = cl.next_of(&["message"]).await;
            assert_eq!(
                (m["conv"].as_str(), m["seq"].as_u64()),
                (Some(group.as_str()), Some(want))
            );
        }
    }
    // Typing and read markers reach the other members; nothing is stored.
    b.send(json!({"type":"typing","conv":group})).await;
    let t = c.next_of(&["typing"]).await;
    assert_eq!(t["user"], bob.id.as_str());
    b.send(json!({"type":"read","conv":group,"seq":5})).await;
    let r = a1.next_of(&["read"]).await;
    assert_eq!(
        (r["user"].as_str(), r["seq"].as_u64()),
        (Some(bob.id.as_str()), Some(5))
    );
    // REST sees the same log, ascending, and lists conversations with their last seq.
    let (st, items) = messages(s.addr, &bob.token, &group, 0).await;
    assert_eq!(st, 200);
    assert_eq!(seqs(&items), vec![1, 2, 3, 4, 5]);
    let path = format!("/v1/conversations/{group}/messages?before_seq=4&limit=2");
    let (_, v) = http(s.addr, "GET", &path, Some(&bob.token), None).await;
    assert_eq!(seqs(v["items"].as_array().unwrap()), vec![2, 3]);
    let (st, v) = http(s.addr, "GET", "/v1/conversations", Some(&alice.token), None).await;
    assert_eq!(st, 200);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], group.as_str());
    assert_eq!(items[0]["last_seq"], 5);
    assert_eq!(items[1]["last_seq"], 1);
    // A message posted over REST is delivered live too.
    let (st, m) = post_message(s.addr, &bob.token, &dm, "via rest", "r1").await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["seq"], 2);
    let live = a2.next_of(&["message"]).await;
    assert_eq!(
        (live["seq"].as_u64(), live["body"].as_str()),
        (Some(2), Some("via rest"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_and_blocked_users_are_refused_everywhere() {
    let s = start().await;
    let (alice, bob, mallory) = three_users(&s).await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    let path = format!("/v1/conversations/{dm}/messages");
    let (st, _) = http(s.addr, "GET", &path, Some(&mallory.token), None).await;
    assert_eq!(st, 403);
    let (st, _) = post_message(s.addr, &mallory.token, &dm, "x", "x").await;
    assert_eq!(st, 403);
    let (st, _) = http(s.addr, "GET", &path, None, None).await;
    assert_eq!(st, 401);
    let (st, _) = http(
        s.addr,
        "GET",
        "/v1/conversations/99/messages",
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let mut m = Client::connect(s.addr, &mallory.token).await;
    m.send(send_frame(&dm, "x1", "let me in")).await;
    let e = m.next_of(&["error"]).await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("forbidden"), Some("x1"))
    );
    m.send(json!({"type":"resume","conv":dm,"after_seq":0}))
        .await;
    assert_eq!(
        m.next_of(&["error", "message", "resumed"]).await["code"],
        "forbidden"
    );
    m.send(json!({"type":"typing","conv":dm})).await;
    assert_eq!(m.next_of(&["error"]).await["code"], "forbidden");
    // Mallory's attempts stored nothing and reached nobody.
    let (_, v) = http(s.addr, "GET", &path, Some(&alice.token), None).await;
    assert!(v["items"].as_array().unwrap().is_empty());
    // A block forbids creating and sending in a 1:1, both ways.
    block(&s, &bob, &alice).await;
    let (st, _) = post_message(s.addr, &alice.token, &dm, "hi", "b1").await;
    assert_eq!(st, 403);
    let mut a = Client::connect(s.addr, &alice.token).await;
    a.send(send_frame(&dm, "b2", "hi")).await;
    assert_eq!(a.next_of(&["error", "ack"]).await["code"], "blocked");
    let st = create(&s, &mallory, json!([bob.id])).await;
    assert_eq!(st, 201, "mallory is not blocked");
    let carol = sign_up(s.addr, "carol2").await;
    block(&s, &bob, &carol).await;
    let st = create(&s, &carol, json!([bob.id])).await;
    assert_eq!(st, 403);
    // Bad member lists.
    let st = create(&s, &carol, json!([])).await;
    assert_eq!(st, 422);
    let st = create(&s, &carol, json!(["12345"])).await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_cap_is_enforced() {
    let s = start_with_chat(ChatSettings {
        max_group_members: "3".parse().unwrap(),
        ..ChatSettings::default()
    })
    .await;
    let (a, b, c) = three_users(&s).await;
    let d = sign_up(s.addr, "dave").await;
    let st = create(&s, &a, json!([b.id, c.id, d.id])).await;
    assert_eq!(st, 422);
    let st = create(&s, &a, json!([b.id, c.id])).await;
    assert_eq!(st, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_return_the_original_and_store_nothing_new() {
    let s = start().await;
    let (alice, bob, _) = three_users(&s).await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    let mut a = Client::connect(s.addr, &alice.token).await;
    a.send(send_frame(&dm, "same", "once")).await;
    let first = a.next_of(&["ack"]).await;
    a.send(send_frame(&dm, "same", "once")).await;
    let again = a.next_of(&["ack"]).await;
    assert_eq!(
        (again["seq"].clone(), again["id"].clone()),
        (first["seq"].clone(), first["id"].clone())
    );
    let (st, m) = post_message(s.addr, &alice.token, &dm, "once", "same").await;
    assert_eq!(st, 201);
    assert_eq!(m["id"], first["id"]);
    // The same client id from another sender is another message.
    let (_, m) = post_message(s.addr, &bob.token, &dm, "mine", "same").await;
    assert_eq!(m["seq"], 2);

    // A retry after the connection died before the ack arrived.
    let mut dying = Client::connect(s.addr, &alice.token).await;
    dying
        .send(send_frame(&dm, "lost-ack", "did it arrive?"))
        .await;
    drop(dying);
    let mut again = Client::connect(s.addr, &alice.token).await;
    again
        .send(send_frame(&dm, "lost-ack", "did it arrive?"))
        .await;
    let ack = again.next_of(&["ack"]).await;
    assert_eq!(ack["seq"], 3);

    // The crash window: the slot was claimed (the message stored) but the node died before
    // writing the client-id index. The retry finds it in the log instead of storing a copy.
    let conv: u64 = dm.parse().unwrap();
    let sender: u64 = alice.id.parse().unwrap();
    let mut orphan =
        starling_messenger::Message::text(sender, "crashed", conv, "stored before the crash");
    orphan.seq = 4;
    orphan.id = 42;
    orphan.sent_at_ms = 1;
    let applied = s
        .state
        .store
        .cas(
            &starling_messenger::keys::message(conv, 4),
            None,
            Some(starling_store::codec::to_value(&orphan).unwrap()),
        )
        .await
        .unwrap();
    assert!(matches!(applied, starling_store::CasOutcome::Applied(_)));
    again
        .send(send_frame(&dm, "crashed", "stored before the crash"))
        .await;
    let ack = again.next_of(&["ack"]).await;
    assert_eq!(
        (ack["seq"].as_u64(), ack["id"].as_str()),
        (Some(4), Some("42"))
    );
    again.send(send_frame(&dm, "next", "after")).await;
    assert_eq!(again.next_of(&["ack"]).await["seq"], 5);

    let items = history(s.addr, &bob.token, &dm).await;
    let ids: Vec<&str> = items
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["same", "same", "lost-ack", "crashed", "next"]);
}

/// A tiny seeded generator (xorshift64*), so the rounds are reproducible.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_and_resume_has_no_gap_and_no_duplicate_while_another_client_sends() {
    const TOTAL: u64 = 600;
    let s = start().await;
    let (alice, bob, _) = three_users(&s).await;
    let group = conversation(s.addr, &alice, &[&bob]).await;
    // Alice sends TOTAL messages, pipelined, reading her acks, while Bob drops and resumes.
    let sender = {
        let (addr, token, group) = (s.addr, alice.token.clone(), group.clone());
        tokio::spawn(async move {
            let mut a = Client::connect(addr, &token).await;
            let mut acked = 0;
            for i in 0..TOTAL {
                a.send(send_frame(&group, &format!("c{i}"), &format!("m{i}")))
                    .await;
                if i % 8 == 7 {
                    while acked < i + 1 {
                        a.next_of(&["ack"]).await;
                        acked += 1;
                    }
                }
            }
            while acked < TOTAL {
                a.next_of(&["ack"]).await;
                acked += 1;
            }
        })
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut seen: Vec<u64> = Vec::new();
    let mut bodies = BTreeSet::new();
    let mut last = 0u64;
    let mut rounds = 0;
    while last < TOTAL {
        rounds += 1;
        // The resume is the first frame: deliveries start with it, so the seam is exact.
        let mut b = Client::connect_only(s.addr, &bob.token).await;
        b.send(json!({"type":"resume","conv":group,"after_seq":last}))
            .await;
        // Read a random number of frames, then drop the connection without a close.
        let budget = 1 + rng.below(60);
        let mut resumed = false;
        for _ in 0..budget {
            let v = b.next_of(&["message", "resumed"]).await;
            if v["type"] == "resumed" {
                assert_eq!(
                    v["last_seq"].as_u64(),
                    Some(last),
                    "resumed says what was sent"
                );
                resumed = true;
                continue;
            }
            let seq = v["seq"].as_u64().unwrap();
            assert_eq!(
                seq,
                last + 1,
                "round {rounds}: no gap, no duplicate (resumed: {resumed})"
            );
            bodies.insert(v["body"].as_str().unwrap().to_string());
            seen.push(seq);
            last = seq;
            if last == TOTAL {
                break;
            }
        }
        drop(b);
    }
    sender.await.unwrap();
    assert!(rounds > 5, "the test reconnected ({rounds} rounds)");
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
    assert_eq!(
        bodies,
        (0..TOTAL).map(|i| format!("m{i}")).collect(),
        "every send stored once"
    );
    let (_, v) = http(s.addr, "GET", "/v1/conversations", Some(&bob.token), None).await;
    assert_eq!(v["items"][0]["last_seq"], TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4008_and_resumes_everything() {
    let s = start_with_chat(ChatSettings {
        ws_queue_bytes: "16384".parse().unwrap(),
        ..ChatSettings::default()
    })
    .await;
    let (alice, bob, _) = three_users(&s).await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    let mut slow = Client::connect_small_buffer(s.addr, &bob.token).await;
    // Make sure Bob is registered before the flood.
    slow.send(json!({"type":"ping"})).await;
    assert_eq!(slow.next_of(&["pong"]).await["type"], "pong");
    let conv: u64 = dm.parse().unwrap();
    let sender: u64 = alice.id.parse().unwrap();
    let body = "x".repeat(3000);
    let total = 2500u64;
    for i in 0..total {
        starling_api::ws::send_and_fan_out(&s.state, sender, conv, &format!("f{i}"), &body)
            .await
            .unwrap();
    }
    // Bob reads now: what was buffered in order, then the close.
    let mut last = 0;
    let end = loop {
        match tokio::time::timeout(
            common::chat::FRAME_WAIT,
            futures_util::StreamExt::next(&mut slow.ws),
        )
        .await
        .unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "message" {
                    let seq = v["seq"].as_u64().unwrap();
                    assert_eq!(seq, last + 1);
                    last = seq;
                }
            }
            Some(Ok(Message::Close(Some(c)))) => break Ended::Closed(u16::from(c.code)),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break Ended::Dropped,
        }
    };
    assert_eq!(end, Ended::Closed(4008));
    assert!(last < total, "the close came before the end ({last})");
    let mut again = Client::connect_only(s.addr, &bob.token).await;
    again
        .send(json!({"type":"resume","conv":dm,"after_seq":last}))
        .await;
    for want in last + 1..=total {
        let v = again.next_of(&["message"]).await;
        assert_eq!(v["seq"].as_u64(), Some(want));
    }
    assert_eq!(
        again.next_of(&["resumed"]).await["last_seq"].as_u64(),
        Some(total)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_errors_and_abuse_gets_closed() {
    let s = start().await;
    let (alice, bob, _) = three_users(&s).await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    let mut c = Client::connect(s.addr, &alice.token).await;
    let table: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "bad_json"),
        (Message::text("[1,2]"), "bad_frame"),
        (Message::text(r#"{"type":"dance"}"#), "unknown_type"),
        (Message::text(r#"{"type":"send","conv":"1"}"#), "bad_frame"),
        (
            Message::text(r#"{"type":"resume","conv":"1","after_seq":"x"}"#),
            "bad_frame",
        ),
        (Message::binary(vec![1u8, 2, 3]), "binary"),
        (
            Message::text(send_frame(&dm, "", "no client id").to_string()),
            "invalid",
        ),
        (
            Message::text(send_frame(&dm, "c", "").to_string()),
            "invalid",
        ),
        (
            Message::text(send_frame("nope", "c", "x").to_string()),
            "bad_frame",
        ),
    ];
    for (i, (frame, code)) in table.into_iter().enumerate() {
        eprintln!("row {i}: {code}");
        c.send_raw(frame).await;
        let e = c.next_of(&["error"]).await;
        assert_eq!(e["code"], code, "row {i}");
        // The connection stays usable after each (fewer than the abuse limit so far).
        if i < 7 {
            c.send(json!({"type":"ping"})).await;
            assert_eq!(
                c.next_of(&["pong", "error"]).await["type"],
                "pong",
                "row {i}"
            );
        }
    }
    // "invalid" rows are not abuse; the protocol errors were 7: three more close with 1008.
    for junk in ["x", "y"] {
        c.send_raw(Message::text(junk)).await;
        c.next_of(&["error"]).await;
    }
    c.send_raw(Message::text("z")).await;
    assert_eq!(c.ended().await, Ended::Closed(1008));

    // A text frame that is not UTF-8: tungstenite cannot read on, so 1007 (RFC 6455).
    let mut u = Client::connect(s.addr, &alice.token).await;
    u.send_raw(invalid_utf8_text()).await;
    assert_eq!(u.ended().await, Ended::Closed(1007));

    // Oversize → 1009.
    let mut big = Client::connect(s.addr, &alice.token).await;
    let huge = send_frame(&dm, "big", &"x".repeat(64 * 1024)).to_string();
    let _ = futures_util::SinkExt::send(&mut big.ws, Message::text(huge)).await;
    assert_eq!(big.ended().await, Ended::Closed(1009));

    // Bad, missing and revoked tokens → 4001 after the upgrade.
    let mut bad = Client::connect_only(s.addr, "not-a-token").await;
    assert_eq!(bad.ended().await, Ended::Closed(4001));
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", s.addr))
        .await
        .unwrap();
    let mut none = Client { ws };
    assert_eq!(none.ended().await, Ended::Closed(4001));
    let (st, _) = http(s.addr, "DELETE", "/v1/sessions", Some(&bob.token), None).await;
    assert_eq!(st, 204);
    let mut revoked = Client::connect_only(s.addr, &bob.token).await;
    assert_eq!(revoked.ended().await, Ended::Closed(4001));
}

fn invalid_utf8_text() -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    Message::Frame(Frame::message(
        vec![0xff_u8, 0xfe, 0x22],
        OpCode::Data(Data::Text),
        true,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_per_user_and_per_node() {
    let s = start_with_chat(ChatSettings {
        ws_max_per_user: "2".parse().unwrap(),
        ws_max_connections: "3".parse().unwrap(),
        ..ChatSettings::default()
    })
    .await;
    let (alice, bob, carol) = three_users(&s).await;
    let mut keep = Vec::new();
    for _ in 0..2 {
        keep.push(Client::connect(s.addr, &alice.token).await);
    }
    let mut third = Client::connect_only(s.addr, &alice.token).await;
    assert_eq!(third.ended().await, Ended::Closed(1013));
    let _b = Client::connect(s.addr, &bob.token).await;
    let mut c = Client::connect_only(s.addr, &carol.token).await;
    assert_eq!(c.ended().await, Ended::Closed(1013));
    // Presence: Bob and Alice share no conversation, so nothing to check here but that the
    // node still serves its existing connections.
    keep[0].send(json!({"type":"ping"})).await;
    assert_eq!(keep[0].next_of(&["pong"]).await["type"], "pong");
}

/// One node on its own store with the client-id filter (the server's setting there): new sends
/// skip the index read, and a retry of a message older than the dedup window (64) finds its
/// original — before and after the node restarts on the same store (the filter reloaded from
/// the index), never a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_client_id_filter_a_retry_after_a_restart_gets_the_original() {
    let store = common::chat::memory_store();
    let settings = ChatSettings {
        client_id_filter: true,
        ..ChatSettings::default()
    };
    let loaded = |s: &Server| {
        let m = s.state.messenger.clone();
        async move {
            while !m.client_ids().is_ready() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    let send = |addr, token: String, conv: String, cid: String| async move {
        post_message(addr, &token, &conv, &cid, &cid).await
    };
    let s = start_with(store.clone(), settings, (Bus::in_process(), None)).await;
    loaded(&s).await;
    let alice = sign_up(s.addr, "alice").await;
    let bob = sign_up(s.addr, "bob").await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    // A retry answers like the first send (201) with the original message (its seq and id).
    let mut ids = vec![String::new()];
    for i in 1..=70u64 {
        let (st, v) = send(s.addr, alice.token.clone(), dm.clone(), format!("c{i}")).await;
        assert_eq!((st, v["seq"].as_u64()), (201, Some(i)), "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let skipped = s
        .state
        .messenger
        .client_ids()
        .stats()
        .skipped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        skipped >= 70,
        "new client ids skip the index read: {skipped}"
    );
    let (_, v) = send(s.addr, alice.token.clone(), dm.clone(), "c1".into()).await;
    assert_eq!(
        (v["seq"].as_u64(), v["id"].as_str()),
        (Some(1), Some(&*ids[1])),
        "{v}"
    );
    drop(s);
    // Restarted on the same store.
    let s = start_with(store, settings, (Bus::in_process(), None)).await;
    loaded(&s).await;
    for seq in [2, 5, 70] {
        let (_, v) = send(s.addr, alice.token.clone(), dm.clone(), format!("c{seq}")).await;
        assert_eq!(
            (v["seq"].as_u64(), v["id"].as_str()),
            (Some(seq), Some(&*ids[seq as usize])),
            "{v}"
        );
    }
    let (st, v) = send(s.addr, alice.token.clone(), dm.clone(), "c71".into()).await;
    assert_eq!((st, v["seq"].as_u64()), (201, Some(71)), "{v}");
    assert_eq!(
        history(s.addr, &alice.token, &dm).await.len(),
        71,
        "no second copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_history_bound_readers_start_at_the_floor_and_a_trimmed_edit_is_refused() {
    let settings = ChatSettings {
        chat_history_max: starling_messenger::retention::HistoryMax::new(100).unwrap(),
        ..ChatSettings::default()
    };
    let s = start_with_chat(settings).await;
    let alice = sign_up(s.addr, "alice").await;
    let bob = sign_up(s.addr, "bob").await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    for i in 1..=300u64 {
        let (st, v) = post_message(s.addr, &alice.token, &dm, "hi", &format!("c{i}")).await;
        assert_eq!((st, v["seq"].as_u64()), (201, Some(i)), "{v}");
    }
    // The server's retention task trims in the background: wait for the state, not a time.
    let page = |after: u64| {
        let (addr, token, dm) = (s.addr, bob.token.clone(), dm.clone());
        async move {
            let path = format!("/v1/conversations/{dm}/messages?after_seq={after}&limit=100");
            http(addr, "GET", &path, Some(&token), None).await
        }
    };
    while page(0).await.1["first_seq"] != 201 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Exactly the newest 100, from the floor, whatever after_seq below it asks.
    for after in [0, 150, 200] {
        let (st, v) = page(after).await;
        assert_eq!(st, 200);
        let kept = seqs(v["items"].as_array().unwrap());
        assert_eq!(kept, (201..=300).collect::<Vec<_>>(), "after_seq={after}");
    }
    // The newest page going back stops at the floor: no link to a page before it.
    let path = format!("/v1/conversations/{dm}/messages?before_seq=251&limit=100");
    let (st, v) = http(s.addr, "GET", &path, Some(&bob.token), None).await;
    assert_eq!((st, v["first_seq"].as_u64()), (200, Some(201)));
    assert_eq!(v["items"].as_array().unwrap().len(), 50);
    assert_eq!(v["items"][0]["seq"], 201);
    // A resume from below the floor starts at it and says so.
    let mut b = Client::connect(s.addr, &bob.token).await;
    b.send(json!({"type":"resume","conv":dm,"after_seq":0}))
        .await;
    let first = b.next_of(&["message"]).await;
    assert_eq!(first["seq"], 201, "{first}");
    let done = b.next_of(&["resumed"]).await;
    assert_eq!(
        (done["first_seq"].as_u64(), done["last_seq"].as_u64()),
        (Some(201), Some(300)),
        "{done}"
    );
    // An edit or a delete of a trimmed message: 404 saying why; above the floor as before.
    let (st, v) = edit_message(s.addr, &alice.token, &dm, 5, "new").await;
    assert_eq!(st, 404, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("retention"), "{v}");
    let path = format!("/v1/conversations/{dm}/messages/5");
    let (st, _) = http(s.addr, "DELETE", &path, Some(&alice.token), None).await;
    assert_eq!(st, 404);
    let (st, v) = edit_message(s.addr, &alice.token, &dm, 250, "new").await;
    assert_eq!((st, v["body"].as_str()), (200, Some("new")), "{v}");
    // Unread counts what is kept: bob never read, 100 messages exist.
    let (st, v) = http(s.addr, "GET", "/v1/conversations", Some(&bob.token), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["items"][0]["unread_count"], 100, "{v}");
    let m = s.state.messenger.retention_stats();
    assert_eq!(m.trimmed.load(std::sync::atomic::Ordering::Relaxed), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_a_history_bound_trims_without_a_send() {
    let store = common::chat::memory_store();
    let s = start_with(
        store.clone(),
        ChatSettings::default(),
        (Bus::in_process(), None),
    )
    .await;
    let alice = sign_up(s.addr, "alice").await;
    let bob = sign_up(s.addr, "bob").await;
    let dm = conversation(s.addr, &alice, &[&bob]).await;
    for i in 1..=300u64 {
        let (st, _) = post_message(s.addr, &alice.token, &dm, "hi", &format!("c{i}")).await;
        assert_eq!(st, 201);
    }
    assert_eq!(
        history(s.addr, &bob.token, &dm).await[0]["seq"],
        1,
        "every entry kept by default"
    );
    drop(s);
    // Restarted on the same store with a bound of 100, and nothing sent: the sweep trims.
    let settings = ChatSettings {
        chat_history_max: starling_messenger::retention::HistoryMax::new(100).unwrap(),
        ..ChatSettings::default()
    };
    let s = start_with(store, settings, (Bus::in_process(), None)).await;
    let path = format!("/v1/conversations/{dm}/messages?after_seq=0&limit=100");
    while http(s.addr, "GET", &path, Some(&bob.token), None).await.1["first_seq"] != 201 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let items = history(s.addr, &bob.token, &dm).await;
    assert_eq!((items.len(), items[0]["seq"].as_u64()), (100, Some(201)));
}
