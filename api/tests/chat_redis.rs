//! The Redis pub/sub transport passes the bus conformance suite, and two gateway nodes of one
//! region (in-process, sharing the region's store) fan chat events out
//! to each other through a real Redis pub/sub channel. Typing and read markers are never stored,
//! so their arrival on the other node proves the bus carries them; messages arrive too.
//!
//! Needs `STARLING_TEST_REDIS_URL` (infra/test.sh starts a `redis-server` and exports it). Under
//! CI (`CI=true`) a missing URL fails the test; locally it is skipped with a loud note.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::chat::{Client, conversation, memory_store, sign_up, start_with};
use serde_json::json;
use starling_api::config::ChatSettings;
use starling_messenger::Bus;

fn redis_url() -> Option<String> {
    match std::env::var("STARLING_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "STARLING_TEST_REDIS_URL is not set under CI: infra/test.sh must start redis-server and export it"
        ),
        _ => {
            eprintln!(
                "SKIPPED chat_redis: set STARLING_TEST_REDIS_URL=redis://127.0.0.1:PORT to run it"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_nodes_of_a_region_fan_out_through_redis() {
    let Some(url) = redis_url() else { return };
    // A channel of its own, so parallel runs against one server do not mix.
    let region = format!("test{}", std::process::id());
    let store = memory_store();
    let a = start_with(store.clone(), ChatSettings::default(), {
        let (bus, rx) = Bus::redis(&url, &region, 1).await.unwrap();
        (bus, Some(rx))
    })
    .await;
    let b = start_with(store, ChatSettings::default(), {
        let (bus, rx) = Bus::redis(&url, &region, 2).await.unwrap();
        (bus, Some(rx))
    })
    .await;
    let alice = sign_up(a.addr, "alice").await;
    let bob = sign_up(a.addr, "bob").await;
    let dm = conversation(a.addr, &alice, &[&bob]).await;
    let mut on_a = Client::connect(a.addr, &alice.token).await;
    let mut on_b = Client::connect(b.addr, &bob.token).await;
    // Subscriptions to the channel are made in the background: retry typing until one lands
    // (each attempt is a new event; none is stored).
    let mut arrived = None;
    for _ in 0..50 {
        on_a.send(json!({"type":"typing","conv":dm})).await;
        if let Ok(v) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            on_b.next_of(&["typing"]),
        )
        .await
        {
            arrived = Some(v);
            break;
        }
    }
    let typing = arrived.expect("typing crossed nodes through redis");
    assert_eq!(typing["user"], alice.id.as_str());
    // Bob answers from node B; Alice on node A gets it, in order, once.
    for i in 1..=20u64 {
        on_b.send(
            json!({"type":"send","conv":dm,"client_id":format!("b{i}"),"body":format!("hi {i}")}),
        )
        .await;
    }
    for want in 1..=20u64 {
        let m = on_a.next_of(&["message"]).await;
        assert_eq!(m["seq"].as_u64(), Some(want));
    }
    // A read marker that moves reaches the other node's connections too.
    on_a.send(json!({"type":"read","conv":dm,"seq":20})).await;
    let read = on_b.next_of(&["read"]).await;
    assert_eq!(
        (read["user"].as_str(), read["seq"].as_u64()),
        (Some(alice.id.as_str()), Some(20))
    );
    let (_, published) = b.state.fanout.bus.counters();
    assert!(published > 0, "node B published on redis");
}

/// The Redis transport passes the same pub/sub conformance suite as the in-process one (run by
/// the messenger's unit tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_transport_passes_the_pub_sub_conformance_suite() {
    use starling_messenger::bus::{RedisPubSub, conformance};
    let Some(url) = redis_url() else { return };
    let channel = format!("starling:conformance:{}", std::process::id());
    let a = RedisPubSub::connect(&url, channel.clone()).await.unwrap();
    let b = RedisPubSub::connect(&url, channel).await.unwrap();
    conformance::run_all(&a, &b).await;
}
