//! The conformance suite of the pub/sub role: what every [`PubSub`] must do. Run against
//! [`super::LocalPubSub`] by the messenger's unit tests and against
//! [`super::RedisPubSub`] on a real `redis-server` by `api/tests/chat_redis.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failed unwrap is a failed check

use super::PubSub;
use bytes::Bytes;
use futures_util::StreamExt;
use std::time::Duration;

/// How long a check waits for a payload before it fails (generous: the machine may be loaded).
const PATIENCE: Duration = Duration::from_secs(20);

async fn next(s: &mut super::Payloads) -> Bytes {
    tokio::time::timeout(PATIENCE, s.next())
        .await
        .expect("a published payload arrives")
        .expect("the subscription stays open")
}

/// Runs every check on `a` and `b`, two handles on one channel (two nodes of a region); panics
/// on the first failure.
pub async fn run_all(a: &dyn PubSub, b: &dyn PubSub) {
    let (_, published_before) = a.counters();
    let mut on_b = b.subscribe().await.unwrap();
    let mut on_a = a.subscribe().await.unwrap();
    let payloads: Vec<Bytes> = (0..100u32)
        .map(|i| Bytes::from([&i.to_be_bytes()[..], &[0, 0xff, b'\n']].concat()))
        .collect();
    for p in &payloads {
        a.publish(p.clone());
    }
    for p in &payloads {
        assert_eq!(&next(&mut on_b).await, p, "every payload, intact, in order");
    }
    for p in &payloads {
        assert_eq!(
            &next(&mut on_a).await,
            p,
            "the publisher's own subscription too"
        );
    }
    b.publish(Bytes::from_static(b"from b"));
    assert_eq!(next(&mut on_a).await, Bytes::from_static(b"from b"));
    assert_eq!(next(&mut on_b).await, Bytes::from_static(b"from b"));
    let mut counted = false;
    for _ in 0..200 {
        let (dropped, published) = a.counters();
        assert_eq!(dropped, 0, "nothing dropped");
        if published >= published_before + 100 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted, "the publisher counts what it published");
    drop(on_a);
    a.publish(Bytes::from_static(b"after one left"));
    assert_eq!(
        next(&mut on_b).await,
        Bytes::from_static(b"after one left"),
        "a subscriber leaving does not stop the others"
    );
}
