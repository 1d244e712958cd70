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
use starling_store::consumer::{KeyspaceFeed, KeyspaceTail, LeaseConfig, MAX_LAG, partition_of};
use starling_store::{
    Delta, Hlc, HlcClock, Key, Keyspace, Limits, NodeId, RegionId, ScanRequest, ScyllaOptions,
    Store, StoreExt, Tombstone, TombstoneIndex, Writers, open_memory, open_scylla,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
        async move { engine(node, &o).await }
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
        let s = engine(node, &opts).await;
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
    let s = engine(node, &opts).await;
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
    let other = engine(suite_nodes()[1], &opts).await;
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
    let [sa, sb] = two_engines(&opts).await;
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

/// Short leases so the tests see expiries and hand-overs within seconds.
fn quick_leases() -> LeaseConfig {
    LeaseConfig {
        lease: Duration::from_millis(1500),
        member_ttl: Duration::from_secs(1),
        // Above the writers' idle beat (1 s), so a live writer is not taken for a dead one.
        writer_expiry: Duration::from_secs(3),
    }
}

/// Runs `feed` as a consumer until `stop`: rebalance every few polls, poll, note every key
/// delivered (with how often), commit.
fn consume(
    feed: Arc<KeyspaceFeed>,
    seen: Arc<parking_lot::Mutex<HashMap<Key, u32>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if round.is_multiple_of(5) {
                feed.rebalance().await.unwrap();
            }
            round += 1;
            for batch in feed.poll(200).await.unwrap() {
                {
                    let mut seen = seen.lock();
                    for c in &batch.changes {
                        *seen.entry(c.key.clone()).or_insert(0) += 1;
                    }
                }
                feed.commit(&batch).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Waits (bounded) until every key of `want` was delivered; returns the ones that never were.
async fn missing_after(
    seen: &parking_lot::Mutex<HashMap<Key, u32>>,
    want: &BTreeSet<Key>,
    patience: Duration,
) -> Vec<Key> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let missing: Vec<Key> = {
            let seen = seen.lock();
            want.iter()
                .filter(|k| !seen.contains_key(*k))
                .cloned()
                .collect()
        };
        if missing.is_empty() || std::time::Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyspace_feed_delivers_every_nodes_writes_with_a_writer_killed() {
    // Three Starling nodes writing one keyspace concurrently (one of them dropped mid-run, its
    // mark never published past its open), a gossip delta applied by one of them, and two
    // consumers splitting the partitions: every acknowledged write is delivered at least once.
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "kfeed");
    let mut opts = ks.fresh(Writers::Shared);
    opts.feed_partitions = Some(8);
    opts.feed_mark_interval = Duration::from_millis(20);
    let node = |i| NodeId::new(RegionId(7), i);
    let a = engine(node(1), &opts).await;
    let b = engine(node(2), &opts).await;
    // The killed node publishes its mark once, at open: every later write of it is in flight as
    // far as readers know, and reaches them only as an expired writer's entries.
    let mut killed_opts = opts.clone();
    killed_opts.feed_mark_interval = Duration::from_secs(3600);
    let c = engine(node(3), &killed_opts).await;
    let mut other = opts.clone();
    other.feed_partitions = Some(16);
    let refused = open_scylla(node(4), Arc::new(HlcClock::new()), &other).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("8 partitions")),
        "a node asking for another partition count is refused"
    );

    let seen = Arc::new(parking_lot::Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    let mut feeds = Vec::new();
    for m in [101, 102] {
        let f = Arc::new(
            KeyspaceFeed::open(&opts, node(m), quick_leases())
                .await
                .unwrap(),
        );
        assert_eq!(f.partitions(), 8);
        feeds.push(f.clone());
        consumers.push(consume(f, seen.clone(), stop.clone()));
    }

    let t = Keyspace::new("kf");
    let acked = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for (n, s) in [(1u64, a.clone()), (2, b.clone()), (3, c.clone())] {
        for lane in 0..4u64 {
            let (s, acked, t) = (s.clone(), acked.clone(), t);
            writers.push(tokio::spawn(async move {
                for i in 0..40u64 {
                    let k = t.key().u64(n).u64(lane * 1000 + i).finish();
                    if i % 3 == 0 {
                        s.incr(&Key::from("kf\0shared-counter"), 1).await.unwrap();
                    }
                    s.put(&k, Bytes::from_static(b"v")).await.unwrap();
                    acked.lock().insert(k);
                }
            }));
        }
    }
    // Kill node 3 half-way: its tasks stop wherever they are, the engine is dropped.
    let c_tasks: Vec<_> = writers.drain(8..).collect();
    loop {
        let from_c = acked
            .lock()
            .iter()
            .filter(|k| k.as_bytes().starts_with(t.key().u64(3).finish().as_bytes()))
            .count();
        if from_c >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in &c_tasks {
        task.abort();
    }
    for task in c_tasks {
        let _ = task.await;
    }
    drop(c);
    // A delta from another region, applied by node 2, is in the feed too.
    let remote = open_memory(
        NodeId::new(RegionId(9), 1),
        Arc::new(HlcClock::new()),
        Limits::default(),
    );
    let gossiped = t.key().u64(9).u64(1).finish();
    remote
        .put(&gossiped, Bytes::from_static(b"from far"))
        .await
        .unwrap();
    let record = remote.get_record(&gossiped).await.unwrap().unwrap();
    let report = b
        .apply(&[Delta {
            key: gossiped.clone(),
            record,
        }])
        .await
        .unwrap();
    assert_eq!(report.changed, 1);
    acked.lock().insert(gossiped);
    for task in writers {
        task.await.unwrap();
    }
    let want = acked.lock().clone();
    assert!(
        want.len() > 8 * 40 + 60,
        "{} writes acknowledged",
        want.len()
    );
    let missing = missing_after(&seen, &want, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged writes never delivered: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The two consumers split the partitions: disjoint, all covered.
    for f in &feeds {
        f.rebalance().await.unwrap();
    }
    let (h1, h2) = (feeds[0].held(), feeds[1].held());
    assert!(h1.iter().all(|p| !h2.contains(p)), "{h1:?} / {h2:?}");
    let mut all: Vec<u32> = h1.iter().chain(&h2).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>());
    assert!(!h1.is_empty() && !h2.is_empty(), "{h1:?} / {h2:?}");
    stop.store(true, Ordering::Relaxed);
    for c in consumers {
        c.await.unwrap();
    }
    assert_eq!(
        a.counter(&Key::from("kf\0shared-counter")).await.unwrap(),
        b.counter(&Key::from("kf\0shared-counter")).await.unwrap()
    );
    ks.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_paused_past_its_lease_is_fenced_and_its_partitions_handed_over() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "lease");
    // One writer, in single mode: its feed entries go in the record's LOGGED batch.
    let mut opts = ks.fresh(Writers::Single);
    opts.feed_partitions = Some(16);
    opts.feed_mark_interval = Duration::from_millis(20);
    let w: Arc<dyn Store> = engine(suite_nodes()[0], &opts).await;
    let x = KeyspaceFeed::open(&opts, NodeId(101), quick_leases())
        .await
        .unwrap();
    let y = KeyspaceFeed::open(&opts, NodeId(102), quick_leases())
        .await
        .unwrap();
    x.rebalance().await.unwrap();
    assert_eq!(x.held(), (0..16).collect::<Vec<_>>(), "alone, x holds all");

    let t = Keyspace::new("fence");
    let mut want = BTreeSet::new();
    for i in 0..40u64 {
        let k = t.key().u64(i).finish();
        w.put(&k, Bytes::from_static(b"v")).await.unwrap();
        want.insert(k);
    }
    // x reads every entry but is paused before committing.
    let mut stale = Vec::new();
    let mut got = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < want.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got.clear();
        stale = x.poll(1000).await.unwrap();
        got.extend(
            stale
                .iter()
                .flat_map(|b| b.changes.iter().map(|c| c.key.clone())),
        );
    }
    assert_eq!(got, want, "x read every write before its pause");
    tokio::time::sleep(Duration::from_millis(2500)).await; // x's lease and member row expire

    y.rebalance().await.unwrap();
    assert_eq!(
        y.held(),
        (0..16).collect::<Vec<_>>(),
        "y took every partition"
    );
    assert_eq!(y.stats().handovers, 16);
    for b in &stale {
        assert!(
            !x.commit(b).await.unwrap(),
            "a fenced holder cannot move partition {}'s cursor",
            b.part
        );
    }
    assert!(x.held().is_empty());
    assert_eq!(x.stats().fenced, 16);

    // Nothing x read was committed: y is delivered all of it again, and commits it.
    let mut again = BTreeSet::new();
    for b in y.poll(1000).await.unwrap() {
        again.extend(b.changes.iter().map(|c| c.key.clone()));
        assert!(y.commit(&b).await.unwrap());
    }
    assert_eq!(again, want);

    // x comes back: y hands over x's share, x resumes from y's cursors (nothing again).
    x.rebalance().await.unwrap();
    y.rebalance().await.unwrap();
    x.rebalance().await.unwrap();
    let (hx, hy) = (x.held(), y.held());
    assert!(!hx.is_empty() && !hy.is_empty(), "{hx:?} / {hy:?}");
    assert!(hx.iter().all(|p| !hy.contains(p)));
    assert_eq!(hx.len() + hy.len(), 16);
    assert_eq!(x.stats().handovers, hx.len() as u64);
    for b in x.poll(1000).await.unwrap() {
        assert!(b.changes.is_empty(), "partition {} redelivered", b.part);
    }
    // A write after the hand-over reaches whoever holds its partition.
    let late = t.key().u64(1000).finish();
    w.put(&late, Bytes::from_static(b"late")).await.unwrap();
    let part = partition_of(late.as_bytes(), 16);
    let holder = if hx.contains(&part) { &x } else { &y };
    let mut found = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !found && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for b in holder.poll(1000).await.unwrap() {
            found |= b.changes.iter().any(|c| c.key == late);
            assert!(holder.commit(&b).await.unwrap());
        }
    }
    assert!(found, "the write after the hand-over was delivered");
    ks.drop_all().await;
}

/// The holder of a partition deletes its writers' `kfeed` chunks that lie wholly below its
/// cursor but the last of them (kept for the nodes' broadcast readers) — those and no others,
/// each once — after it delivered and committed their entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_trims_the_keyspace_feed_below_its_cursor() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes.clone(), "ktrim");
    let mut opts = ks.fresh(Writers::Shared);
    opts.feed_partitions = Some(1);
    let _w = engine(suite_nodes()[0], &opts).await;
    let s = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&nodes)
        .build()
        .await
        .unwrap();
    let k = &opts.keyspace;
    // A writer whose sub-stream spans three chunks (rows as its engine writes them), its mark in
    // the third: chunks 0 and 1 are wholly below it once consumed, chunk 2 is not; chunk 1 is
    // kept (the feed retains a chunk below each cursor).
    let c = 1i64 << 16;
    for (chunk, seq) in [
        (0i64, 1i64),
        (0, c - 1),
        (1, c),
        (1, c + 7),
        (2, 2 * c),
        (2, 2 * c + 1),
    ] {
        s.query_unpaged(
            format!("INSERT INTO {k}.kfeed (part, writer, chunk, seq, k, origin) VALUES (0, 999, ?, ?, ?, 0)"),
            (chunk, seq, format!("trim/{seq}").into_bytes()),
        )
        .await
        .unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    s.query_unpaged(
        format!("INSERT INTO {k}.kfeed_writers (writer, mark, beat) VALUES (999, ?, ?)"),
        (2 * c, now),
    )
    .await
    .unwrap();
    let x = KeyspaceFeed::open(&opts, NodeId(101), quick_leases())
        .await
        .unwrap();
    x.rebalance().await.unwrap();
    assert_eq!(x.trim(100).await.unwrap(), 0, "nothing consumed yet");
    let mut got = Vec::new();
    for b in x.poll(100).await.unwrap() {
        got.extend(
            b.changes
                .iter()
                .filter(|e| e.writer == NodeId(999))
                .map(|e| e.seq as i64),
        );
        assert!(x.commit(&b).await.unwrap());
    }
    assert_eq!(
        got,
        vec![1, c - 1, c, c + 7, 2 * c],
        "up to the writer's mark"
    );
    assert_eq!(x.trim(100).await.unwrap(), 1, "chunk 0 (1 is retained)");
    assert_eq!(x.trim(100).await.unwrap(), 0, "each once");
    assert_eq!(x.stats().trimmed, 1);
    for (chunk, want) in [(0i64, 0i64), (1, 2), (2, 2)] {
        let rows = s
            .query_unpaged(
                format!(
                    "SELECT count(*) FROM {k}.kfeed WHERE part = 0 AND writer = 999 AND chunk = ?"
                ),
                (chunk,),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let (n,): (i64,) = rows.first_row().unwrap();
        assert_eq!(n, want, "rows left in chunk {chunk}");
    }
    ks.drop_all().await;
}

/// Two nodes on one keyspace keep their own feed consumers' positions under one name: each
/// node's own feed has its own numbers, and a position is a number of one node's feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_keyspace_keep_their_own_consumer_positions() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "cursors");
    let opts = ks.fresh(Writers::Shared);
    let [a, b] = [suite_nodes()[0], suite_nodes()[1]];
    let a = engine(a, &opts).await;
    let b = engine(b, &opts).await;
    let (ca, cb) = (
        starling_store::FeedConsumer::new(a.clone(), "tail"),
        starling_store::FeedConsumer::new(b.clone(), "tail"),
    );
    ca.commit(5).await.unwrap();
    cb.commit(9).await.unwrap();
    assert_eq!(ca.position().await.unwrap(), 5);
    assert_eq!(cb.position().await.unwrap(), 9);
    ks.drop_all().await;
}

/// Waits (bounded) until `nodes` all answer `want` as their digests; returns whether they did.
async fn digests_reach(nodes: &[&Arc<dyn Store>], want: &starling_store::DigestTree) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if nodes.iter().all(|n| n.digests() == *want) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The digests of `opts`'s keyspace as a scan of every record computes them (a node opened with
/// per-node digests rebuilds them so at open).
async fn scanned_digests(opts: &ScyllaOptions, node: u64) -> starling_store::DigestTree {
    let mut o = opts.clone();
    o.keyspace_digests = false;
    engine(NodeId(node), &o).await.digests()
}

/// Two nodes on one keyspace (keyspace digests) each accept writes — new keys, one key both
/// overwrite, a delete and a purge — and one consumer of the keyspace feed folds them: both
/// nodes answer the same digests, those of a scan of every record, covering both nodes'
/// writes. With per-node digests the two would differ (each saw only its own writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyspace_digests_cover_every_nodes_writes() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "kdigest");
    let mut opts = ks.fresh(Writers::Shared);
    opts.feed_partitions = Some(4);
    opts.keyspace_digests = true;
    let a = engine(NodeId(1), &opts).await;
    let b = engine(NodeId(2), &opts).await;
    let feed = Arc::new(
        KeyspaceFeed::open(&opts, NodeId(101), quick_leases())
            .await
            .unwrap(),
    );
    assert!(feed.keeps_digests(), "a keyspace empty at migration 3");
    let (seen, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
    let consumer = consume(feed.clone(), seen, stop.clone());
    let space = Keyspace::new("dg");
    for i in 0..40u64 {
        let n = if i % 2 == 0 { &a } else { &b };
        n.put(&space.key().u64(i).finish(), Bytes::from(format!("v{i}")))
            .await
            .unwrap();
    }
    let both = space.key().u64(1000).finish();
    a.put(&both, Bytes::from_static(b"from a")).await.unwrap();
    b.put(&both, Bytes::from_static(b"from b")).await.unwrap();
    b.delete(&space.key().u64(3).finish()).await.unwrap();
    let want = scanned_digests(&opts, 3).await;
    assert!(digests_reach(&[&a, &b], &want).await, "the scan's digests");
    assert_ne!(want.root(), 0);
    // A purge (a tombstone collected) leaves the keyspace's digests too.
    let later = starling_store::Hlc(HlcClock::new().now().0 + (3_600_000 << 16));
    assert_eq!(a.purge_tombstones(later).await.unwrap(), 1);
    let purged = scanned_digests(&opts, 4).await;
    assert_ne!(purged, want);
    assert!(digests_reach(&[&a, &b], &purged).await, "after the purge");
    let s = feed.stats();
    assert!(s.digest_folded >= 42 && s.digest_published >= 1, "{s:?}");
    stop.store(true, Ordering::Relaxed);
    consumer.await.unwrap();
    // A keyspace that held records before its digest tables existed (here: one taken back to
    // schema version 2, every later migration's row removed) is found not covered when
    // migration 3 runs: per-node digests.
    let k = &opts.keyspace;
    run_cql(
        &opts,
        [
            format!(
                "DELETE FROM {k}.schema_version WHERE component = 'store' AND version IN (3, 4, 5)"
            ),
            format!("DROP TABLE {k}.kdigest_config"),
        ],
    )
    .await;
    let _c = engine(NodeId(5), &opts).await;
    let late = KeyspaceFeed::open(&opts, NodeId(102), quick_leases())
        .await
        .unwrap();
    assert!(!late.keeps_digests(), "records before migration 3");
    ks.drop_all().await;
}

/// Takes `opts`'s keyspace back to digests that cover nothing: its rows, published leaves and
/// backfill position gone, `complete` false (what a keyspace written before migration 3 has).
async fn forget_digests(opts: &ScyllaOptions) {
    let k = &opts.keyspace;
    run_cql(
        opts,
        [
            format!("TRUNCATE {k}.kdigest_keys"),
            format!("TRUNCATE {k}.kdigest_parts"),
            format!("TRUNCATE {k}.kdigest_backfill"),
            format!(
                "UPDATE {k}.kdigest_config SET complete = false WHERE id = 0 IF complete = true"
            ),
        ],
    )
    .await;
}

/// Runs `statements` in order on `opts`'s cluster.
async fn run_cql(opts: &ScyllaOptions, statements: impl IntoIterator<Item = String>) {
    let s = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&opts.nodes)
        .build()
        .await
        .unwrap();
    for cql in statements {
        s.query_unpaged(cql, ()).await.unwrap();
    }
}

/// Opens a consumer for `member` and rebalances it (bounded) until it holds every partition (a
/// previous holder's leases expire first).
async fn holding_all(opts: &ScyllaOptions, member: u64) -> Arc<KeyspaceFeed> {
    let f = KeyspaceFeed::open(opts, NodeId(member), quick_leases())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while f.held().len() < f.partitions() as usize {
        assert!(std::time::Instant::now() < deadline, "never held them all");
        f.rebalance().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Arc::new(f)
}

/// A keyspace of 4 feed partitions with keyspace digests, node 1 (returned) writing keys 0 to
/// `n - 1` of `space` and deleting `deleted`, and a consumer (member 101) folding them until the
/// node answers the digests of a scan of every record (returned); the consumer is then stopped.
async fn folded_keyspace(
    nodes: Vec<String>,
    test: &str,
    space: Keyspace,
    n: u64,
    deleted: &[u64],
) -> (
    Keyspaces,
    ScyllaOptions,
    Arc<dyn Store>,
    starling_store::DigestTree,
) {
    let ks = Keyspaces::new(nodes, test);
    let mut opts = ks.fresh(Writers::Shared);
    opts.feed_partitions = Some(4);
    opts.keyspace_digests = true;
    let a = engine(NodeId(1), &opts).await;
    let feed = holding_all(&opts, 101).await;
    let (seen, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
    let consumer = consume(feed, seen, stop.clone());
    let key = |i: u64| space.key().u64(i).finish();
    for i in 0..n {
        a.put(&key(i), Bytes::from(format!("v{i}"))).await.unwrap();
    }
    for i in deleted {
        a.delete(&key(*i)).await.unwrap();
    }
    let want = scanned_digests(&opts, 3).await;
    assert!(digests_reach(&[&a], &want).await, "built incrementally");
    stop.store(true, Ordering::Relaxed);
    consumer.await.unwrap();
    (ks, opts, a, want)
}

/// A keyspace whose digest rows cover nothing (records written before its digest tables
/// existed: here, its rows, leaves and `complete` flag dropped after its digests were built
/// incrementally) is backfilled page by page from its records: one member starts, another
/// resumes from the saved position, and the keyspace's digests become exactly the incremental
/// ones. A second backfill, with writes, overwrites, deletes and a purge between its pages,
/// ends with the digests of a scan of every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digests_of_an_older_keyspace_are_backfilled_from_its_records() {
    const PAGE: usize = 10;
    let Some(nodes) = cluster() else { return };
    let space = Keyspace::new("bf");
    let key = |i: u64| space.key().u64(i).finish();
    let (ks, opts, a, incremental) = folded_keyspace(nodes, "kbackfill", space, 60, &[7]).await;

    // Phase 1: no writes meanwhile; two members in turn.
    forget_digests(&opts).await;
    let c = engine(NodeId(4), &opts).await;
    let first = holding_all(&opts, 102).await;
    assert!(!first.keeps_digests() && !first.stats().digests_covered);
    let p = first.backfill_digests(PAGE).await.unwrap();
    assert!(!p.done && p.keys == PAGE as u64, "{p:?}");
    let p = first.backfill_digests(PAGE).await.unwrap();
    assert!(
        !p.done && p.keys == 2 * PAGE as u64 && p.ring_ppm > 0,
        "{p:?}"
    );
    assert_eq!(first.stats().digest_backfilled, 2 * PAGE as u64);
    drop(first);
    let second = holding_all(&opts, 103).await;
    let mut steps = 0;
    let p = loop {
        let p = second.backfill_digests(PAGE).await.unwrap();
        steps += 1;
        assert!(steps < 100, "the backfill never ended: {p:?}");
        if p.done {
            break p;
        }
    };
    assert_eq!(
        p.keys, 60,
        "every record once: resumed, not restarted ({p:?})"
    );
    assert_eq!(second.stats().digest_backfilled, 40, "the rest");
    assert!(second.keeps_digests() && second.stats().digest_backfill_ppm == 1_000_000);
    second.rebalance().await.unwrap(); // scans and publishes the leaves
    assert!(
        digests_reach(&[&c, &a], &incremental).await,
        "the backfilled digests are the incremental ones"
    );
    drop(second);

    // Phase 2: writes, overwrites, deletes and a purge between the pages, a consumer folding
    // them as the backfill runs.
    forget_digests(&opts).await;
    let d = engine(NodeId(5), &opts).await;
    let third = holding_all(&opts, 104).await;
    let (seen, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
    let consumer = consume(third.clone(), seen, stop.clone());
    let later = starling_store::Hlc(HlcClock::new().now().0 + (3_600_000 << 16));
    let mut step = 0u64;
    loop {
        let p = third.backfill_digests(PAGE).await.unwrap();
        if p.done {
            break;
        }
        step += 1;
        assert!(step < 100, "the backfill never ended: {p:?}");
        a.put(&key(step), Bytes::from(format!("again {step}")))
            .await
            .unwrap();
        a.put(&key(100 + step), Bytes::from_static(b"new"))
            .await
            .unwrap();
        a.delete(&key(30 + step)).await.unwrap();
        if step == 2 {
            assert!(a.purge_tombstones(later).await.unwrap() >= 2, "purged");
        }
    }
    assert!(step >= 3, "writes between pages: {step}");
    let want = scanned_digests(&opts, 6).await;
    assert_ne!(want, incremental);
    assert!(
        digests_reach(&[&d, &a, &c], &want).await,
        "the scan's digests after a backfill with writes"
    );
    stop.store(true, Ordering::Relaxed);
    consumer.await.unwrap();
    ks.drop_all().await;
}

/// A holder's check of its digest buckets against the records repairs what a lost fold or a
/// stray write left in the rows — a key's row deleted, one rewritten with a wrong hash, one for
/// a key without a record — and the leaves a claim scan computed from them, which the region's
/// nodes had answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holders_check_repairs_digest_rows_and_leaves() {
    let Some(nodes) = cluster() else { return };
    let space = Keyspace::new("ck");
    let key = |i: u64| space.key().u64(i).finish();
    let (ks, opts, a, want) = folded_keyspace(nodes, "kcheck", space, 40, &[]).await;

    let s = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&opts.nodes)
        .build()
        .await
        .unwrap();
    let k = &opts.keyspace;
    let at = |key: &[u8]| {
        let b = starling_store::digest::bucket_of(key) as i32;
        (partition_of(key, 4) as i32, b >> 8, b)
    };
    // Written as the first holder's (lease epoch 1) last writes would be: the next holder's
    // writes (epoch 2) win over them.
    let ts = (2i64 << 44) - 1;
    let (lost, wrong) = (key(1), key(2));
    let ghost = space.key().u64(999).finish();
    let (p, sub, b) = at(lost.as_bytes());
    s.query_unpaged(
        format!(
            "DELETE FROM {k}.kdigest_keys USING TIMESTAMP ? \
             WHERE part = ? AND sub = ? AND bucket = ? AND k = ?"
        ),
        (ts, p, sub, b, lost.as_bytes()),
    )
    .await
    .unwrap();
    for (key, h) in [(&wrong, 12_345i64), (&ghost, 67_890)] {
        let (p, sub, b) = at(key.as_bytes());
        s.query_unpaged(
            format!(
                "INSERT INTO {k}.kdigest_keys (part, sub, bucket, k, h) VALUES (?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ),
            (p, sub, b, key.as_bytes(), h, ts),
        )
        .await
        .unwrap();
    }
    // The next holder's claim scan computes its leaves from those rows and publishes them.
    let holder = holding_all(&opts, 102).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while a.digests() == want {
        assert!(
            std::time::Instant::now() < deadline,
            "the bad rows were never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holder.check_digests(4096).await.unwrap();
    let st = holder.stats();
    assert_eq!(st.digest_checked_buckets, 4096);
    // Each row's repair carried its leaf along (the leaves were the rows' XOR).
    assert_eq!(
        (st.digest_rows_repaired, st.digest_leaves_repaired),
        (3, 0),
        "{st:?}"
    );
    holder.rebalance().await.unwrap(); // publishes the repaired leaves
    assert!(digests_reach(&[&a], &want).await, "repaired");
    // A row the previous holder wrote after this one's claim scan (paused past its lease): the
    // leaves do not hold it, the row is wrong; the check rewrites the row, then finds the leaf
    // differing from its rows and replaces it.
    let late = key(5);
    let (p, sub, b) = at(late.as_bytes());
    s.query_unpaged(
        format!(
            "INSERT INTO {k}.kdigest_keys (part, sub, bucket, k, h) VALUES (?, ?, ?, ?, ?) \
             USING TIMESTAMP ?"
        ),
        (p, sub, b, late.as_bytes(), 424_242i64, ts),
    )
    .await
    .unwrap();
    holder.check_digests(4096).await.unwrap();
    let again = holder.stats();
    assert_eq!(
        (again.digest_rows_repaired, again.digest_leaves_repaired),
        (4, 1),
        "{again:?}"
    );
    holder.rebalance().await.unwrap();
    assert!(
        digests_reach(&[&a], &want).await,
        "still the records' digests"
    );
    // A full pass over a consistent keyspace changes nothing.
    holder.check_digests(4096).await.unwrap();
    let last = holder.stats();
    assert_eq!(
        (last.digest_rows_repaired, last.digest_leaves_repaired),
        (4, 1),
        "{last:?}"
    );
    ks.drop_all().await;
}

/// A node's broadcast reader sees every node's writes made after its first poll, in every
/// partition, each once, a window at a time; a reader further behind a writer's mark than the
/// feed retains skips to the marks and says so, as it does after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broadcast_reader_sees_every_nodes_writes_after_it_started() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes.clone(), "ktail");
    let mut opts = ks.fresh(Writers::Shared);
    opts.feed_partitions = Some(8);
    let [sa, sb] = two_engines(&opts).await;
    let tail = KeyspaceTail::open(&opts).await.unwrap();
    let first = tail.poll(1000).await.unwrap();
    assert!(
        first.changes.is_empty() && !first.reset,
        "starts at the marks"
    );
    let space = Keyspace::new("tb");
    let mut want = BTreeSet::new();
    for i in 0..40u64 {
        let k = space.key().u64(i).finish();
        let s = if i % 2 == 0 { &sa } else { &sb };
        s.put(&k, Bytes::from_static(b"v")).await.unwrap();
        want.insert(k);
    }
    let mut seen: HashMap<Key, u32> = HashMap::new();
    let mut writers = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !want.iter().all(|k| seen.contains_key(k)) && std::time::Instant::now() < deadline {
        // A window of 7 numbers a writer: several polls, chunk by chunk.
        let p = tail.poll(7).await.unwrap();
        assert!(!p.reset);
        for c in p.changes {
            if c.key.as_bytes().starts_with(b"tb") {
                writers.insert(c.writer);
                *seen.entry(c.key).or_insert(0) += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing: Vec<&Key> = want.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(missing.is_empty(), "never read: {missing:?}");
    assert!(seen.values().all(|&n| n == 1), "each once: {seen:?}");
    assert_eq!(writers.len(), 2, "both nodes' writes");
    // A writer whose mark lies further ahead than the feed retains: a reset, at the marks.
    let s = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&nodes)
        .build()
        .await
        .unwrap();
    s.query_unpaged(
        format!(
            "INSERT INTO {}.kfeed_writers (writer, mark, beat) VALUES (999, ?, 0)",
            opts.keyspace
        ),
        (MAX_LAG as i64 + 10,),
    )
    .await
    .unwrap();
    let p = tail.poll(1000).await.unwrap();
    assert!(p.reset && p.changes.is_empty(), "{p:?}");
    let p = tail.poll(1000).await.unwrap();
    assert!(!p.reset && p.lag == 0, "at the marks: {p:?}");
    tail.restart();
    assert!(tail.poll(1000).await.unwrap().reset, "a restart is a reset");
    ks.drop_all().await;
}

/// The suite's two nodes as engines on the keyspace of `opts` (two Starling nodes sharing it).
/// An engine of node `node` on `opts`' keyspace, with a clock of its own.
async fn engine(node: NodeId, opts: &ScyllaOptions) -> Arc<dyn Store> {
    open_scylla(node, Arc::new(HlcClock::new()), opts)
        .await
        .unwrap()
}

async fn two_engines(opts: &ScyllaOptions) -> [Arc<dyn Store>; 2] {
    let mut out = Vec::new();
    for node in suite_nodes() {
        out.push(engine(node, opts).await);
    }
    [out.remove(0), out.remove(0)]
}

/// A stamp an hour ahead: later than every write of a test, however slow the cluster.
fn an_hour_ahead() -> Hlc {
    Hlc(HlcClock::new().now().0 + (3_600_000 << 16))
}

/// Every record of `s` (tombstones included), the keys of the tombstones among them, `page`
/// records a read: what the reaper's backfill sweeps.
async fn tombstone_keys(s: &dyn Store, page: usize) -> Vec<Key> {
    let mut req = ScanRequest::prefix(Key::from(""), page);
    req.include_tombstones = true;
    let mut dead = Vec::new();
    loop {
        let p = s.scan(&req).await.unwrap();
        dead.extend(
            p.items
                .into_iter()
                .filter(|(_, v)| v.value.is_none())
                .map(|(k, _)| k),
        );
        match p.next {
            Some(n) => req.after = Some(n),
            None => return dead,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_from_before_the_tombstone_index_is_backfilled_then_complete() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "tombfill");
    let opts = ks.fresh(Writers::Shared);
    let [a, b] = suite_nodes();
    let t = Keyspace::new("tf");
    let k = |i: u64| t.key().u64(i).finish();
    {
        let s = engine(a, &opts).await;
        assert_eq!(s.tombstone_index(), TombstoneIndex::Complete);
        for i in 0..20 {
            s.put(&k(i), Bytes::from_static(b"v")).await.unwrap();
        }
        for i in 0..12 {
            s.delete(&k(i)).await.unwrap();
        }
        s.put(&k(11), Bytes::from_static(b"back")).await.unwrap();
    }
    // The keyspace as an older build left it: no index tables, schema version 4.
    let n = &opts.keyspace;
    run_cql(
        &opts,
        [
            format!("DROP TABLE {n}.tombs"),
            format!("DROP TABLE {n}.tomb_buckets"),
            format!("DROP TABLE {n}.tomb_config"),
            format!("DELETE FROM {n}.schema_version WHERE component = 'store' AND version = 5"),
        ],
    )
    .await;
    let later = an_hour_ahead();
    let s = engine(a, &opts).await;
    let other = engine(b, &opts).await;
    assert_eq!(
        s.tombstone_index(),
        TombstoneIndex::Partial,
        "a keyspace holding records at migration 5 is not known to be indexed"
    );
    assert!(s.tombstones(later, 100).await.unwrap().is_empty());
    // The backfill, as the reaper runs it: every record swept, the tombstones indexed.
    let dead = tombstone_keys(&*s, 7).await;
    assert_eq!(dead.len(), 11);
    for chunk in dead.chunks(4) {
        s.index_tombstones(chunk).await.unwrap();
    }
    assert_eq!(other.tombstone_index(), TombstoneIndex::Partial);
    s.tombstones_indexed().await.unwrap();
    assert_eq!(s.tombstone_index(), TombstoneIndex::Complete);
    let mut want = Vec::new();
    for key in &dead {
        let r = s.get_record(key).await.unwrap().unwrap();
        want.push(Tombstone {
            hlc: r.max_hlc(),
            key: key.clone(),
        });
    }
    want.sort_by(|x, y| (x.hlc, &x.key).cmp(&(y.hlc, &y.key)));
    assert_eq!(s.tombstones(later, 100).await.unwrap(), want);
    // The other node learns it when the reaper next asks; a new instance at open.
    assert_eq!(other.tombstones(later, 100).await.unwrap(), want);
    assert_eq!(other.tombstone_index(), TombstoneIndex::Complete);
    let reopened = engine(b, &opts).await;
    assert_eq!(reopened.tombstone_index(), TombstoneIndex::Complete);
    // Collected from the index alone, a page at a time.
    let first = s.collect_indexed(later, 4).await.unwrap().unwrap();
    assert_eq!((first.read, first.purged, first.more), (4, 4, true));
    let rest = other.collect_indexed(later, 100).await.unwrap().unwrap();
    assert_eq!((rest.read, rest.purged, rest.more), (7, 7, false));
    assert!(s.tombstones(later, 100).await.unwrap().is_empty());
    assert!(
        tombstone_keys(&*s, 7).await.is_empty(),
        "every tombstone went"
    );
    assert!(
        s.get(&k(11)).await.unwrap().is_some(),
        "a live record stays"
    );
    ks.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_consuming_one_tombstone_index_remove_only_tombstones() {
    let Some(nodes) = cluster() else { return };
    let ks = Keyspaces::new(nodes, "tombpair");
    let opts = ks.fresh(Writers::Shared);
    let [sa, sb] = two_engines(&opts).await;
    let t = Keyspace::new("tp");
    let k = |i: u64| t.key().u64(i).finish();
    for i in 0..30 {
        sa.put(&k(i), Bytes::from_static(b"v")).await.unwrap();
        sa.delete(&k(i)).await.unwrap();
    }
    // The other node writes five of them again; one more live key carries an entry no write
    // moved (what a lost race of shared writers can leave).
    for i in 0..5 {
        sb.put(&k(i), Bytes::from_static(b"back")).await.unwrap();
    }
    sb.put(&k(40), Bytes::from_static(b"live")).await.unwrap();
    let h = sb.get_record(&k(40)).await.unwrap().unwrap().max_hlc();
    let bucket = (h.millis() / 600_000) as i64;
    let n = &opts.keyspace;
    run_cql(
        &opts,
        [
            format!(
                "INSERT INTO {n}.tombs (bucket, hlc, k) VALUES ({bucket}, {}, 0x{})",
                h.0,
                hex(k(40).as_bytes())
            ),
            format!("INSERT INTO {n}.tomb_buckets (id, bucket) VALUES (0, {bucket})"),
        ],
    )
    .await;
    let later = an_hour_ahead();
    assert_eq!(sa.tombstones(later, 100).await.unwrap().len(), 26);
    // Both consume at once, in pages of 7, until neither finds more.
    let run = |s: Arc<dyn Store>| async move {
        let mut read = 0;
        loop {
            let c = s.collect_indexed(later, 7).await.unwrap().unwrap();
            read += c.read;
            if !c.more {
                return read;
            }
        }
    };
    let (ra, rb) = tokio::join!(run(sa.clone()), run(sb.clone()));
    assert!(ra + rb >= 26, "every entry read: {ra} + {rb}");
    assert!(sa.tombstones(later, 100).await.unwrap().is_empty());
    assert!(
        tombstone_keys(&*sa, 10).await.is_empty(),
        "every tombstone went"
    );
    for i in 0..5 {
        assert!(
            sa.get(&k(i)).await.unwrap().is_some(),
            "k{i} written again stays"
        );
    }
    assert!(
        sb.get(&k(40)).await.unwrap().is_some(),
        "a stale entry's live record stays"
    );
    // Consuming an empty index again changes nothing.
    let again = sa.collect_indexed(later, 7).await.unwrap().unwrap();
    assert_eq!((again.read, again.purged, again.more), (0, 0, false));
    ks.drop_all().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
