//! The ScyllaDB engine against a real CQL node (ScyllaDB or Apache Cassandra) named by
//! `STARLING_SCYLLA_NODES` (`host:port[,host:port…]`; `infra/test.sh` starts a local Cassandra and
//! sets it). No mocks: the same conformance suite as the memory and embedded engines.
//!
//! Each test works in keyspaces of its own, named after the test and the process, and drops them
//! at the end. Under `CI=true` a missing `STARLING_SCYLLA_NODES` fails the tests; locally they are
//! skipped with a loud message.

#![allow(clippy::unwrap_used, clippy::panic)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use starling_store::conformance::{nodes as suite_nodes, run_all};
use starling_store::{HlcClock, Keyspace, NodeId, ScyllaOptions, StoreExt, Writers, open_scylla};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The CQL nodes to test against, or `None` (skip) outside CI.
fn cluster() -> Option<Vec<String>> {
    match std::env::var("STARLING_SCYLLA_NODES") {
        Ok(v) if !v.trim().is_empty() => Some(v.split(',').map(|s| s.trim().to_string()).collect()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "STARLING_SCYLLA_NODES is not set under CI=true: the ScyllaDB engine tests must run \
             against a CQL node (infra/test.sh starts a local Cassandra and sets it)"
        ),
        _ => {
            eprintln!(
                "\n!!! SKIPPED: STARLING_SCYLLA_NODES is not set, so the ScyllaDB engine was NOT \
                 tested.\n!!! Run `infra/cassandra.sh start` and export \
                 STARLING_SCYLLA_NODES=<the address it prints>.\n"
            );
            None
        }
    }
}

/// Keyspaces of one test, dropped at the end.
struct Keyspaces {
    nodes: Vec<String>,
    tag: String,
    made: parking_lot::Mutex<Vec<String>>,
    n: AtomicU32,
}

impl Keyspaces {
    fn new(nodes: Vec<String>, test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Keyspaces {
            nodes,
            tag: format!("t_{test}_{}_{nanos:x}", std::process::id()),
            made: parking_lot::Mutex::new(Vec::new()),
            n: AtomicU32::new(0),
        }
    }

    /// Options for a new, empty keyspace.
    fn fresh(&self, writers: Writers) -> ScyllaOptions {
        let i = self.n.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}_{i}", self.tag);
        self.made.lock().push(name.clone());
        self.options(&name, writers)
    }

    fn options(&self, name: &str, writers: Writers) -> ScyllaOptions {
        let mut o = ScyllaOptions::new(self.nodes.clone(), name);
        o.writers = writers;
        o
    }

    async fn drop_all(self) {
        let s = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&self.nodes)
            .build()
            .await
            .unwrap();
        let made = self.made.lock().clone();
        for ks in made {
            s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                .await
                .unwrap();
        }
    }
}

async fn conformance(test: &str, writers: Writers) {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, test);
    run_all(|node| {
        let o = ks.fresh(writers);
        async move {
            open_scylla(node, Arc::new(HlcClock::new()), &o)
                .await
                .unwrap()
        }
    })
    .await;
    ks.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_engine_conforms_with_shared_writers() {
    conformance("shared", Writers::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_engine_conforms_with_a_single_writer() {
    conformance("single", Writers::Single).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_state_survives_a_new_engine_instance() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "reopen");
    let opts = ks.fresh(Writers::Shared);
    let node = suite_nodes()[0];
    let t = Keyspace::new("persist");
    let k = t.key().u64(1).str("kept").finish();
    let (digests, seq) = {
        let s = open_scylla(node, Arc::new(HlcClock::new()), &opts)
            .await
            .unwrap();
        s.put(&k, Bytes::from_static(b"kept")).await.unwrap();
        s.incr(&t.key().u64(2).finish(), 9).await.unwrap();
        for i in 0..30u64 {
            s.add(&t.key().u64(3).u64(i).finish(), Bytes::new())
                .await
                .unwrap();
        }
        s.trim_changes(5).await.unwrap();
        (s.digests(), s.last_seq())
    };
    let s = open_scylla(node, Arc::new(HlcClock::new()), &opts)
        .await
        .unwrap();
    assert_eq!(
        s.get(&k).await.unwrap().unwrap().value,
        Some(Bytes::from_static(b"kept"))
    );
    assert_eq!(s.counter(&t.key().u64(2).finish()).await.unwrap(), 9);
    assert_eq!(s.digests(), digests, "digests are rebuilt at open");
    assert_eq!(s.last_seq(), seq, "the change feed resumes where it was");
    assert_eq!(s.changes(0, 100).await.unwrap().len() as u64, seq - 5);
    s.put(&k, Bytes::from_static(b"again")).await.unwrap();
    assert_eq!(s.last_seq(), seq + 1);
    // A second node on the same keyspace sees the data (its own feed is empty).
    let other = open_scylla(suite_nodes()[1], Arc::new(HlcClock::new()), &opts)
        .await
        .unwrap();
    assert_eq!(
        other.get(&k).await.unwrap().unwrap().value,
        Some(Bytes::from_static(b"again"))
    );
    assert_eq!(other.last_seq(), 0);
    ks.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_a_keyspace_lose_no_update() {
    // Two engines (two Starling nodes) writing one keyspace: conditional writes re-merge.
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "sharedw");
    let opts = ks.fresh(Writers::Shared);
    let [a, b] = suite_nodes();
    let sa = open_scylla(a, Arc::new(HlcClock::new()), &opts)
        .await
        .unwrap();
    let sb = open_scylla(b, Arc::new(HlcClock::new()), &opts)
        .await
        .unwrap();
    let c = Keyspace::new("cnt").key().u64(1).finish();
    let mut tasks = Vec::new();
    for s in [sa.clone(), sb.clone()] {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                s.incr(&c, 1).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sa.counter(&c).await.unwrap(), 50);
    assert_eq!(sb.counter(&c).await.unwrap(), 50);
    ks.drop_all().await;
}

#[tokio::test]
async fn an_unreachable_cluster_is_one_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut o = ScyllaOptions::new(vec![format!("127.0.0.1:{port}")], "nowhere");
    o.connect_timeout = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let err = open_scylla(NodeId(1), Arc::new(HlcClock::new()), &o)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
