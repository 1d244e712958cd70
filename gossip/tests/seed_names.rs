//! The TCP transport joins through a seed given by DNS name, resolved on every attempt, with a
//! node that listens on every interface (`0.0.0.0`) and advertises the address peers reach it at.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use starling_gossip::{GossipConfig, GossipService, Peer, TransportConfig, Wan};
use starling_store::{HlcClock, Limits, NodeId, open_memory};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(name: &str, listen: SocketAddr, advertise: String, seeds: &[&str]) -> GossipService {
    let clock = Arc::new(HlcClock::new());
    let node = NodeId::from_names("us", name);
    let store = open_memory(node, clock.clone(), Limits::default());
    GossipService::start(
        TransportConfig {
            me: Peer {
                node,
                region: "us".into(),
                addr: advertise,
                incarnation: 1,
            },
            listen,
            seeds: seeds.iter().map(|s| s.to_string()).collect(),
            secret: b"a-cluster-secret-of-the-test".to_vec(),
            encryption: Default::default(),
            wan: Wan::new(),
            gossip: GossipConfig::wan(2),
            clock,
            dedicated_store_lane: true,
        },
        store,
    )
    .await
    .unwrap()
}

/// Waits until `svc` sees `n` other members; a 60 s bound turns a hang into a failure.
async fn members(svc: &GossipService, n: usize) -> Vec<Peer> {
    let handle = svc.handle();
    for _ in 0..600 {
        let m = handle.members();
        if m.len() >= n {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} never saw {n} members: {:?}",
        handle.me().addr,
        handle.members()
    );
}

#[tokio::test]
async fn a_node_joins_through_a_seed_name_that_starts_later() {
    let (pa, pb) = (free_port(), free_port());
    let seed = format!("localhost:{pa}");
    // b starts first: its seed's name resolves, but nothing listens there yet; it keeps trying.
    let b = start(
        "b",
        format!("127.0.0.1:{pb}").parse().unwrap(),
        format!("127.0.0.1:{pb}"),
        &[&seed],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.handle().members().is_empty());
    // a listens on every interface and advertises a name (resolved at its start, as peers
    // announce to the addresses a seed name resolves to); it names itself as a seed too (as
    // every pod of a StatefulSet does through its headless Service).
    let a = start(
        "a",
        format!("0.0.0.0:{pa}").parse().unwrap(),
        format!("localhost:{pa}"),
        &[&seed],
    )
    .await;
    assert_eq!(a.handle().me().addr, format!("127.0.0.1:{pa}"));
    let seen_by_b = members(&b, 1).await;
    assert_eq!(
        seen_by_b[0].addr,
        format!("127.0.0.1:{pa}"),
        "the advertised address"
    );
    let seen_by_a = members(&a, 1).await;
    assert_eq!(seen_by_a[0].addr, format!("127.0.0.1:{pb}"));
    b.shutdown().await;
    a.shutdown().await;
}
