//! A chat between users homed in different regions, over real `starling` processes: one node in
//! `us`, one in `eu`, gossip with a simulated 100 ms round trip. The conversation's home region
//! is the creator's (`us`); a send from `eu` is forwarded to a node in `us` (one call across the
//! WAN, which claims the slot there); each side receives the other's messages through
//! replication, pushed at once.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::Node;
use common::chat::{
    Client, User, edit_message, history, http, messages, post_message, try_sign_up,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "test-cluster-secret-0123456789";

/// A node of `region` (gossip at `gossip`, joining `seed`), started with `extra` flags.
fn start_region_with(
    dir: &std::path::Path,
    region: &str,
    gossip: &str,
    seed: Option<&str>,
    extra: &[&str],
) -> Node {
    let mut args = common::member_args(region, region, gossip, SECRET, seed, None);
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(
        [
            "--handle-region",
            "us",
            "--wan-rtt",
            "us-eu=100",
            "--store",
            "memory",
        ]
        .map(String::from),
    );
    Node::start(dir, common::free_port(), &args)
}

/// A node in `us` and one in `eu` joined to it, each started with `extra`, and their addresses.
fn us_and_eu(dir: &std::path::Path, extra: &[&str]) -> ((Node, SocketAddr), (Node, SocketAddr)) {
    let g_us = format!("127.0.0.1:{}", common::free_port());
    let g_eu = format!("127.0.0.1:{}", common::free_port());
    let us = start_region_with(dir, "us", &g_us, None, extra);
    let eu = start_region_with(dir, "eu", &g_eu, Some(&g_us), extra);
    let us_addr: SocketAddr = format!("127.0.0.1:{}", us.port).parse().unwrap();
    let eu_addr: SocketAddr = format!("127.0.0.1:{}", eu.port).parse().unwrap();
    ((us, us_addr), (eu, eu_addr))
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The value of counter `name` in a node's `/metrics`.
async fn counter(addr: SocketAddr, name: &str) -> u64 {
    let m = common::Metrics::read_async(addr).await.expect("/metrics");
    m.get(&format!("{name}_total"))
        .unwrap_or_else(|| panic!("no {name} in /metrics")) as u64
}

async fn sign_up_retrying(addr: SocketAddr, handle: &str) -> User {
    // Handles are arbitrated in `us`: from `eu` that needs the cluster formed first.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = match try_sign_up(addr, handle).await {
            Ok(user) => return user,
            Err(refusal) => refusal,
        };
        assert!(Instant::now() < deadline, "sign-up of {handle}: {s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `me`'s 1:1 conversation with `other` created through `addr`, retried (up to 60 s) until
/// `other`'s account has reached `addr`'s region: the created conversation. `what` names the
/// wait in the failure.
async fn conversation_retrying(addr: SocketAddr, me: &User, other: &User, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = json!({ "members": [other.id] });
        let (s, v) = http(
            addr,
            "POST",
            "/v1/conversations",
            Some(&me.token),
            Some(body),
        )
        .await;
        if s == 201 || s == 200 {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn users_homed_in_different_regions_chat_through_the_home_region() {
    let dir = tempfile::tempdir().unwrap();
    let ((us, us_addr), (eu, eu_addr)) = us_and_eu(dir.path(), &[]);
    common::runtime().block_on(async move {
        let alice = sign_up_retrying(us_addr, "alice").await;
        let bob = sign_up_retrying(eu_addr, "bob").await;
        // Alice (home: us) needs Bob's account replicated to her region to start a chat.
        let v = conversation_retrying(us_addr, &alice, &bob, "bob's account never reached us").await;
        assert_eq!(v["home_region"], "us");
        let conv = v["id"].as_str().unwrap().to_string();
        until("the conversation in eu", || {
            let (bob, conv) = (bob.clone(), conv.clone());
            async move {
                let (s, v) =
                    http(eu_addr, "GET", "/v1/conversations", Some(&bob.token), None).await;
                s == 200
                    && v["items"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|c| c["id"] == conv.as_str()))
            }
        })
        .await;
        let mut a = Client::connect_only(us_addr, &alice.token).await;
        a.send(json!({"type":"resume","conv":conv,"after_seq":0}))
            .await;
        assert_eq!(a.next_of(&["resumed"]).await["last_seq"], 0);
        let mut b = Client::connect_only(eu_addr, &bob.token).await;
        b.send(json!({"type":"resume","conv":conv,"after_seq":0}))
            .await;
        assert_eq!(b.next_of(&["resumed"]).await["last_seq"], 0);

        // us → eu: stored at home, replicated, delivered by eu's tail.
        a.send(json!({"type":"send","conv":conv,"client_id":"a1","body":"hello from us"}))
            .await;
        let m = b.next_of(&["message"]).await;
        assert_eq!(
            (m["seq"].as_u64(), m["body"].as_str()),
            (Some(1), Some("hello from us"))
        );
        // eu → us: forwarded to a node in us, which claims the seq slot there.
        let (sent0, served0) = (
            counter(eu_addr, "starling_gossip_calls_sent").await,
            counter(us_addr, "starling_gossip_calls_served").await,
        );
        b.send(json!({"type":"send","conv":conv,"client_id":"b1","body":"hello from eu"}))
            .await;
        let ack = b.next_of(&["ack"]).await;
        assert_eq!(ack["seq"], 2);
        let m = a.next_of(&["message"]).await;
        assert_eq!(m["seq"], 1, "alice's own message first");
        let m = a.next_of(&["message"]).await;
        assert_eq!(
            (m["seq"].as_u64(), m["body"].as_str()),
            (Some(2), Some("hello from eu"))
        );
        // A retry from eu answers the original, across regions too.
        b.send(json!({"type":"send","conv":conv,"client_id":"b1","body":"hello from eu"}))
            .await;
        assert_eq!(b.next_of(&["ack"]).await["seq"], 2);
        // Several senders on both sides: one gap-free sequence, same on both sides.
        for i in 0..10 {
            a.send(json!({"type":"send","conv":conv,"client_id":format!("a-{i}"),"body":"x"}))
                .await;
            b.send(json!({"type":"send","conv":conv,"client_id":format!("b-{i}"),"body":"y"}))
                .await;
        }
        for cl in [&mut a, &mut b] {
            let mut want = 2;
            while want < 22 {
                let m = cl.next_of(&["message"]).await;
                let seq = m["seq"].as_u64().unwrap();
                if seq <= 2 {
                    continue;
                }
                want += 1;
                assert_eq!(seq, want, "in order, without gaps");
            }
        }
        // eu's sends crossed the WAN as calls: one for b1 (its retry may make one more, when
        // the client-id index had not replicated to eu yet), and at most one per send for the
        // ten pipelined ones (consecutive sends of one connection to one conversation go as
        // one batch); us sent none. The gossip counters in `/metrics` are a view refreshed
        // every tick (100 ms), so they are read once both nodes' views have caught up.
        let calls = || async {
            (
                counter(eu_addr, "starling_gossip_calls_sent").await - sent0,
                counter(us_addr, "starling_gossip_calls_served").await - served0,
            )
        };
        until("the calls counted on both sides", || async {
            let (sent, served) = calls().await;
            sent >= 2 && served >= sent
        })
        .await;
        let (sent, served) = calls().await;
        assert!((2..=12).contains(&sent), "eu sent {sent} calls");
        assert_eq!(served, sent, "us served each of them");
        assert_eq!(counter(us_addr, "starling_gossip_calls_sent").await, 0);
        assert_eq!(history(eu_addr, &bob.token, &conv).await.len(), 22);

        // One sender's order from the region that is not the conversation's home: bursts of
        // pipelined frames (no waiting for acks), forwarded to us; acks come back in the order
        // sent and the log stores them in that order, while alice sends from us meanwhile.
        let mut sent_order = Vec::new();
        for round in 0..4 {
            for i in 0..40 {
                let id = format!("burst{round}-{i}");
                b.send(json!({"type":"send","conv":conv,"client_id":id,"body":"z"}))
                    .await;
                sent_order.push(id);
                if i % 10 == 0 {
                    a.send(json!({"type":"send","conv":conv,"client_id":format!("ai{round}-{i}"),"body":"w"}))
                        .await;
                }
            }
            let mut last = 0;
            for id in &sent_order[round * 40..] {
                let mut ack = b.next_of(&["ack", "error"]).await;
                // The acks of the earlier sends (b-0…b-9) were not read above.
                while ack["client_id"].as_str().is_some_and(|c| c.starts_with("b-")) {
                    ack = b.next_of(&["ack", "error"]).await;
                }
                assert_eq!(ack["client_id"].as_str(), Some(id.as_str()), "{ack}");
                let seq = ack["seq"].as_u64().unwrap();
                assert!(seq > last, "acks in order with rising seqs");
                last = seq;
            }
        }
        let mut stored = Vec::new();
        let mut after = 0;
        loop {
            let (s, items) = messages(us_addr, &alice.token, &conv, after).await;
            assert_eq!(s, 200);
            if items.is_empty() {
                break;
            }
            for m in items {
                after = m["seq"].as_u64().unwrap();
                let id = m["client_id"].as_str().unwrap();
                if id.starts_with("burst") {
                    stored.push(id.to_string());
                }
            }
        }
        assert_eq!(stored, sent_order, "stored in the order eu sent them");
        // An edit from eu: the slot is rewritten at its owner in us, the entry forwarded.
        b.send(json!({"type":"edit","conv":conv,"seq":2,"body":"edited from eu","client_id":"e1"}))
            .await;
        let ack = b.next_of(&["ack", "error"]).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let ed = a.next_of(&["edited"]).await;
        assert_eq!((ed["seq"].as_u64(), ed["body"].as_str()), (Some(2), Some("edited from eu")));

        // A group homed in us with a member connected in eu: removed in us, the removal reaches
        // eu by replication, then nothing later; eu's node refuses the removed member's send.
        let (s, v) = http(
            us_addr,
            "POST",
            "/v1/conversations",
            Some(&alice.token),
            Some(json!({"members": [bob.id], "name": "across"})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let g = v["id"].as_str().unwrap().to_string();
        until("the group in eu", || {
            let (bob, g) = (bob.clone(), g.clone());
            async move {
                let (s, _) = http(eu_addr, "GET", &format!("/v1/conversations/{g}"), Some(&bob.token), None).await;
                s == 200
            }
        })
        .await;
        b.send(json!({"type":"resume","conv":g,"after_seq":0})).await;
        b.next_of(&["resumed"]).await;
        let (s, _) = http(
            us_addr,
            "DELETE",
            &format!("/v1/conversations/{g}/members/{}", bob.id),
            Some(&alice.token),
            None,
        )
        .await;
        assert_eq!(s, 204);
        let ev = b.next_of(&["message"]).await;
        assert_eq!((ev["kind"].as_str(), ev["seq"].as_u64()), (Some("member_removed"), Some(1)));
        assert_eq!(b.next_of(&["removed"]).await["seq"].as_u64(), Some(1));
        let (s, _) = post_message(us_addr, &alice.token, &g, "after bob left", "after").await;
        assert_eq!(s, 201);
        // Once the record reached eu, eu refuses bob's send and his later pages.
        until("bob refused in eu", || {
            let (bob, g) = (bob.clone(), g.clone());
            async move {
                let (s, _) = post_message(eu_addr, &bob.token, &g, "let me in", "x").await;
                s == 403
            }
        })
        .await;
        let (s, _) = messages(eu_addr, &bob.token, &g, 1).await;
        assert_eq!(s, 403);
        let (s, items) = messages(eu_addr, &bob.token, &g, 0).await;
        assert_eq!(s, 200);
        let seqs: Vec<u64> = items.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![1], "bob reads up to his removal, nothing after");
        // The ping proves nothing later was queued for bob before it.
        b.send(json!({"type":"ping"})).await;
        let next = b.next_of(&["pong", "message"]).await;
        assert_eq!(next["type"], "pong", "{next}");
    });
    drop(us);
    drop(eu);
}

#[test]
fn sigterm_closes_websockets_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        common::free_port(),
        &["--store".to_string(), "memory".to_string()],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", node.port).parse().unwrap();
    let rt = common::runtime();
    let mut client = rt.block_on(async {
        let u = sign_up_retrying(addr, "carol").await;
        Client::connect(addr, &u.token).await
    });
    let status = node.terminate();
    assert!(status.success(), "{status:?}");
    let end = rt.block_on(client.ended());
    assert_eq!(end, common::chat::Ended::Closed(1001));
}

/// A node killed (kill -9) right after a send and restarted on its data directory, here on
/// another port, so under another default node name and store node id (as a harness that first
/// listens on port 0 restarts it): its seq leases name the holder id kept in the data directory,
/// so its next send in the conversation is accepted at once, where it answered `busy` until the
/// previous run's lease had expired; the log stays gap-free and the first run's message single.
#[test]
fn a_node_restarted_on_its_data_directory_takes_its_seq_leases_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--store", "embedded", "--data-dir"]
        .map(String::from)
        .into_iter()
        .chain([data.display().to_string()])
        .collect::<Vec<_>>();
    let at = |n: &Node| -> SocketAddr { format!("127.0.0.1:{}", n.port).parse().unwrap() };
    let rt = common::runtime();
    let send = |via: SocketAddr, token: String, conv: String, cid: &'static str| async move {
        http(
            via,
            "POST",
            &format!("/v1/conversations/{conv}/messages"),
            Some(&token),
            Some(json!({"body": cid, "client_id": cid})),
        )
        .await
    };
    let node = Node::start(dir.path(), common::free_port(), &args);
    let a = at(&node);
    let (alice, conv, first) = rt.block_on(async {
        let alice = sign_up_retrying(a, "alice").await;
        let bob = sign_up_retrying(a, "bob").await;
        let (s, v) = http(
            a,
            "POST",
            "/v1/conversations",
            Some(&alice.token),
            Some(json!({"members": [bob.id]})),
        )
        .await;
        assert!(s == 201 || s == 200, "{s} {v}");
        let conv = v["id"].as_str().unwrap().to_string();
        let (s, v) = send(a, alice.token.clone(), conv.clone(), "c1").await;
        assert_eq!((s, v["seq"].as_u64()), (201, Some(1)), "{v}");
        (alice, conv, v["id"].clone())
    });
    // Killed: its lease on the conversation stays stored, unexpired.
    let killed = Instant::now();
    drop(node);
    let node = Node::start(dir.path(), common::free_port(), &args);
    let b = at(&node);
    rt.block_on(async {
        if killed.elapsed() > Duration::from_secs(3) {
            eprintln!(
                "note: the restart took {:?}, longer than the first run's lease surely lasted: \
                 the re-take of an unexpired lease was not exercised",
                killed.elapsed()
            );
        }
        let (s, v) = send(b, alice.token.clone(), conv.clone(), "c2").await;
        assert_eq!(s, 201, "accepted at once, not busy: {v}");
        assert_eq!(v["seq"].as_u64(), Some(2), "{v}");
        assert_eq!(counter(b, "starling_chat_lease_busy").await, 0);
        // The first run's message, sent again with its client id: the original, not a copy.
        let (s, v) = send(b, alice.token.clone(), conv.clone(), "c1").await;
        assert_eq!((s, v["seq"].as_u64()), (201, Some(1)), "{v}");
        assert_eq!(v["id"], first, "the original message");
        let items = history(b, &alice.token, &conv).await;
        let log: Vec<(u64, &str)> = items
            .iter()
            .map(|m| (m["seq"].as_u64().unwrap(), m["client_id"].as_str().unwrap()))
            .collect();
        assert_eq!(
            log,
            vec![(1, "c1"), (2, "c2")],
            "gap-free, each message once"
        );
    });
    drop(node);
}

/// The node holding a conversation's seq lease (`starling_chat_leases_held` > 0), of `nodes`.
async fn lease_holder(nodes: &[SocketAddr]) -> Option<usize> {
    for (i, a) in nodes.iter().enumerate() {
        let m = common::Metrics::read_async(a).await?;
        if m.get("starling_chat_leases_held").unwrap_or(0.0) > 0.0 {
            return Some(i);
        }
    }
    None
}

/// Owner hand-over under the seq lease (`messenger::lease`): two nodes in one region, a stream
/// of sends through one of them, the lease holder killed mid-stream; every send retried with
/// its client id until acknowledged. The other node takes the lease once the dead one's has
/// expired and continues: the log is gap-free, holds every acknowledged message once, at the
/// seq its acknowledgement named, and no client id twice.
#[test]
fn the_seq_lease_moves_to_the_other_node_when_its_holder_dies_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let ga = format!("127.0.0.1:{}", common::free_port());
    let gb = format!("127.0.0.1:{}", common::free_port());
    let start = |name: &str, gossip: &str, seed: Option<&str>| {
        let mut args = common::member_args("us", name, gossip, SECRET, seed, None);
        args.extend(["--handle-region", "us", "--store", "memory"].map(String::from));
        Node::start(dir.path(), common::free_port(), &args)
    };
    let mut nodes = [
        Some(start("us-a", &ga, None)),
        Some(start("us-b", &gb, Some(&ga))),
    ];
    let addrs: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| {
            format!("127.0.0.1:{}", n.as_ref().unwrap().port)
                .parse()
                .unwrap()
        })
        .collect();
    let rt = common::runtime();
    let (conv, alice) = rt.block_on(async {
        let alice = sign_up_retrying(addrs[0], "alice").await;
        let bob = sign_up_retrying(addrs[0], "bob").await;
        let v = conversation_retrying(addrs[0], &alice, &bob, "no conversation").await;
        let conv = v["id"].as_str().unwrap().to_string();
        (conv, alice)
    });
    // Sends (each retried with its client id until acknowledged) through `via`.
    let send = {
        let (token, conv) = (alice.token.clone(), conv.clone());
        move |via: SocketAddr, cid: String| {
            let (token, conv) = (token.clone(), conv.clone());
            async move {
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    let (s, v) = http(
                        via,
                        "POST",
                        &format!("/v1/conversations/{conv}/messages"),
                        Some(&token),
                        Some(json!({"body": "m", "client_id": cid})),
                    )
                    .await;
                    if s == 201 || s == 200 {
                        return v["seq"].as_u64().unwrap();
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{cid} never acknowledged: {s} {v}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let (holder, mut acked) = rt.block_on(async {
        // The first send takes the lease; the holder is the conversation's owner in us.
        let first = send(addrs[0], "c0".into()).await;
        let holder = lease_holder(&addrs).await.expect("a node holds the lease");
        (holder, vec![("c0".to_string(), first)])
    });
    let survivor = 1 - holder;
    const N: usize = 60;
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let stream = {
        let send = send.clone();
        let via = addrs[survivor];
        rt.spawn(async move {
            let mut out = Vec::new();
            for i in 1..N {
                let cid = format!("c{i}");
                out.push((cid.clone(), send(via, cid).await));
                let _ = tx.send(i);
            }
            out
        })
    };
    // Mid-stream: kill the holder.
    while rx.recv().unwrap() < N / 3 {}
    drop(nodes[holder].take());
    acked.extend(rt.block_on(stream).unwrap());
    rt.block_on(async {
        let items = history(addrs[survivor], &alice.token, &conv).await;
        let seqs: Vec<u64> = items.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "gap-free, each seq once");
        let mut cids: Vec<&str> = items
            .iter()
            .map(|m| m["client_id"].as_str().unwrap())
            .collect();
        for (cid, seq) in &acked {
            let at = &items[(*seq - 1) as usize];
            assert_eq!(at["client_id"], cid.as_str(), "acknowledged at seq {seq}");
        }
        assert_eq!(
            items.len(),
            N,
            "every acknowledged message once, nothing else"
        );
        cids.sort_unstable();
        cids.dedup();
        assert_eq!(cids.len(), N, "no client id twice");
        // The survivor took the lease (a new epoch) and holds it.
        let m = common::Metrics::read_async(addrs[survivor]).await.unwrap();
        assert!(m.get("starling_chat_lease_acquired_total").unwrap_or(0.0) >= 1.0);
        assert!(m.get("starling_chat_leases_held").unwrap_or(0.0) >= 1.0);
    });
}

/// The admin token of the retention test's nodes.
const ADMIN: &str = "retention-admin-token-0123456789";

/// A node's digest root (`GET /v1/admin/digest`).
async fn digest(addr: SocketAddr) -> String {
    let (s, v) = http(addr, "GET", "/v1/admin/digest", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{v}");
    v["root"].as_str().unwrap().to_string()
}

#[test]
fn history_retention_in_two_regions_converges_from_the_home_region() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--chat-history-max", "100", "--admin-token", ADMIN];
    let ((us, us_addr), (eu, eu_addr)) = us_and_eu(dir.path(), &extra);
    common::runtime().block_on(async move {
        let alice = sign_up_retrying(us_addr, "alice").await;
        let bob = sign_up_retrying(eu_addr, "bob").await;
        let v =
            conversation_retrying(us_addr, &alice, &bob, "bob's account never reached us").await;
        let conv = v["id"].as_str().unwrap().to_string();
        until("the conversation in eu", || {
            let (bob, conv) = (bob.clone(), conv.clone());
            async move {
                let path = format!("/v1/conversations/{conv}");
                http(eu_addr, "GET", &path, Some(&bob.token), None).await.0 == 200
            }
        })
        .await;
        // 300 entries: alice's at home, every tenth of them bob's, forwarded from eu.
        for i in 1..=300u64 {
            let (addr, who) = if i % 10 == 0 {
                (eu_addr, &bob)
            } else {
                (us_addr, &alice)
            };
            let (st, v) = post_message(addr, &who.token, &conv, "hi", &format!("c{i}")).await;
            assert_eq!((st, v["seq"].as_u64()), (201, Some(i)), "{v}");
        }
        // Both regions read the newest 100 from floor 201 (trimmed at home, the floor and the
        // tombstones replicated).
        for (addr, who) in [(us_addr, &alice), (eu_addr, &bob)] {
            until("the newest 100 from the floor", || {
                let (token, conv) = (who.token.clone(), conv.clone());
                async move {
                    let path = format!("/v1/conversations/{conv}/messages?after_seq=0&limit=100");
                    let (s, v) = http(addr, "GET", &path, Some(&token), None).await;
                    let seqs: Vec<u64> = v["items"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|m| m["seq"].as_u64()).collect())
                        .unwrap_or_default();
                    s == 200 && v["first_seq"] == 201 && seqs == (201..=300).collect::<Vec<_>>()
                }
            })
            .await;
        }
        // The replicas converge: every record the same in both regions, tombstones included.
        until("the same digest root in us and eu", || async move {
            digest(us_addr).await == digest(eu_addr).await
        })
        .await;
        // Trimmed everywhere: an edit from eu of a trimmed message is refused, one above the
        // floor goes through the home region.
        let (s, v) = edit_message(eu_addr, &bob.token, &conv, 10, "x").await;
        assert_eq!(s, 404, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("retention"), "{v}");
        let (s, v) = edit_message(eu_addr, &bob.token, &conv, 290, "x").await;
        assert_eq!((s, v["body"].as_str()), (200, Some("x")), "{v}");
        assert!(counter(us_addr, "starling_chat_history_trimmed").await >= 200);
        assert_eq!(
            counter(eu_addr, "starling_chat_history_trimmed").await,
            0,
            "eu trims nothing"
        );
    });
    drop((us, eu));
}
