//! The TCP transport: a node joins through a seed given by DNS name, resolved on every attempt,
//! listening on every interface (`0.0.0.0`) and advertising the address peers reach it at; and
//! a node whose store calls take seconds keeps answering probes (its membership loop never
//! waits on the store), so its peers never suspect it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use starling_gossip::{GossipConfig, GossipService, MemberState, Peer, TransportConfig, Wan};
use starling_store::{
    ApplyReport, CasOutcome, Change, Delta, DigestTree, Hlc, HlcClock, Key, Limits, Mutation,
    NodeId, Record, ScanPage, ScanRequest, Store, VersionVector, Versioned, open_memory,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[path = "common/port.rs"]
mod port;
use port::free_port;

async fn start(name: &str, listen: SocketAddr, advertise: String, seeds: &[&str]) -> GossipService {
    let clock = Arc::new(HlcClock::new());
    let node = NodeId::from_names("us", name);
    let store = open_memory(node, clock.clone(), Limits::default());
    start_on(name, listen, advertise, seeds, clock, store).await
}

/// A node listening on and advertising `127.0.0.1:port`.
async fn start_loopback(name: &str, port: u16, seeds: &[&str]) -> GossipService {
    let addr = format!("127.0.0.1:{port}");
    start(name, addr.parse().expect("a socket address"), addr, seeds).await
}

async fn start_on(
    name: &str,
    listen: SocketAddr,
    advertise: String,
    seeds: &[&str],
    clock: Arc<HlcClock>,
    store: Arc<dyn Store>,
) -> GossipService {
    let node = NodeId::from_names("us", name);
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
            separate_membership: true,
            store_work_inline: false,
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
    let b = start_loopback("b", pb, &[&seed]).await;
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

/// The in-memory engine with every asynchronous call held `delay_ms` first: a disk that has
/// stopped answering for a while (a slow fsync, a compaction stall), not a server's mock.
#[derive(Debug)]
struct SlowStore {
    inner: Arc<dyn Store>,
    delay_ms: AtomicU64,
}

impl SlowStore {
    async fn wait(&self) {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

#[async_trait::async_trait]
impl Store for SlowStore {
    fn node(&self) -> NodeId {
        self.inner.node()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn get(&self, key: &Key) -> starling_store::Result<Option<Versioned<Bytes>>> {
        self.wait().await;
        self.inner.get(key).await
    }
    async fn get_record(&self, key: &Key) -> starling_store::Result<Option<Record>> {
        self.wait().await;
        self.inner.get_record(key).await
    }
    async fn get_records(&self, keys: &[Key]) -> starling_store::Result<Vec<Option<Record>>> {
        self.wait().await;
        self.inner.get_records(keys).await
    }
    async fn mutate(
        &self,
        key: &Key,
        mutation: Mutation,
        ctx: Option<&VersionVector>,
    ) -> starling_store::Result<Record> {
        self.wait().await;
        self.inner.mutate(key, mutation, ctx).await
    }
    async fn cas(
        &self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> starling_store::Result<CasOutcome> {
        self.wait().await;
        self.inner.cas(key, expected, new).await
    }
    async fn scan(&self, req: &ScanRequest) -> starling_store::Result<ScanPage> {
        self.wait().await;
        self.inner.scan(req).await
    }
    async fn apply(&self, deltas: &[Delta]) -> starling_store::Result<ApplyReport> {
        self.wait().await;
        self.inner.apply(deltas).await
    }
    async fn changes(&self, after: u64, limit: usize) -> starling_store::Result<Vec<Change>> {
        self.wait().await;
        self.inner.changes(after, limit).await
    }
    fn last_seq(&self) -> u64 {
        self.inner.last_seq()
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }
    async fn trim_changes(&self, upto: u64) -> starling_store::Result<()> {
        self.wait().await;
        self.inner.trim_changes(upto).await
    }
    fn digests(&self) -> DigestTree {
        self.inner.digests()
    }
    async fn bucket(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> starling_store::Result<(Vec<Delta>, Option<Key>)> {
        self.wait().await;
        self.inner.bucket(bucket, after, limit).await
    }
    async fn purge_tombstones(&self, horizon: Hlc) -> starling_store::Result<u64> {
        self.wait().await;
        self.inner.purge_tombstones(horizon).await
    }
    async fn purge(&self, keys: &[Key], horizon: Hlc) -> starling_store::Result<(u64, Vec<Key>)> {
        self.wait().await;
        self.inner.purge(keys, horizon).await
    }
    async fn flush(&self) -> starling_store::Result<()> {
        self.wait().await;
        self.inner.flush().await
    }
}

/// SWIM probes a member every 2 s and suspects it when no answer comes within 1 s
/// ([`GossipConfig::wan`]). A node whose store calls take 3 s would miss them if it answered
/// probes from a loop that waits on its store; its membership loop answers them instead, so for
/// the whole slow period its peer sees it alive, and it sees its peer alive. Its core loop does
/// not wait either: the store work goes to the store worker, and the loop goes on ticking while
/// one of those 3 s jobs runs.
#[tokio::test]
async fn a_node_whose_store_calls_take_seconds_is_never_suspected() {
    let (pa, pb) = (free_port(), free_port());
    let seed = format!("127.0.0.1:{pa}");
    let clock = Arc::new(HlcClock::new());
    let slow = Arc::new(SlowStore {
        inner: open_memory(
            NodeId::from_names("us", "a"),
            clock.clone(),
            Limits::default(),
        ),
        delay_ms: AtomicU64::new(0),
    });
    let a = start_on(
        "a",
        seed.parse().unwrap(),
        seed.clone(),
        &[],
        clock,
        slow.clone(),
    )
    .await;
    let b = start_loopback("b", pb, &[&seed]).await;
    members(&a, 1).await;
    members(&b, 1).await;
    // Every store call of a's core loop (the feed read of each push, each tick's) now takes 3 s.
    slow.delay_ms.store(3000, Ordering::Relaxed);
    let (mut seen_b, mut seen_a) = (0, 0);
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (svc, other, seen) in [(&b, pa, &mut seen_a), (&a, pb, &mut seen_b)] {
            let view = svc.handle().membership();
            let state = view
                .iter()
                .find(|(p, _)| p.addr == format!("127.0.0.1:{other}"))
                .map(|(_, s)| *s);
            assert_eq!(
                state,
                Some(MemberState::Alive),
                "{} sees 127.0.0.1:{other} as {state:?} while a's store is slow",
                svc.handle().me().addr
            );
            *seen += 1;
        }
    }
    let handle = a.handle();
    let t = handle.transport_metrics();
    // The slow store was a's (not a vacuous run): its worker ran jobs of 3 s at least.
    assert!(
        t.store_job_max_us.load(Ordering::Relaxed) >= 3_000_000,
        "a's store worker never ran a slow job"
    );
    // The core loop ticks while one of its store jobs runs: seen as a tick between two looks at
    // which a job was outstanding and none had finished (the worker's time total unchanged).
    // A loop that awaited its store could not tick then.
    let mut ticked_during_a_job = false;
    for _ in 0..300 {
        let look = || {
            (
                t.store_jobs_pending.load(Ordering::Relaxed),
                t.store_job_us.load(Ordering::Relaxed),
                t.core_last_tick_unix_ms.load(Ordering::Relaxed),
            )
        };
        let (pending, done_us, tick) = look();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (pending2, done_us2, tick2) = look();
        if pending > 0 && pending2 > 0 && done_us == done_us2 && tick2 != tick {
            ticked_during_a_job = true;
            break;
        }
    }
    assert!(
        ticked_during_a_job,
        "a's core loop never ticked while a store job of its own was running"
    );
    eprintln!(
        "20 s of 3 s store calls: {seen_a}/{seen_b} views alive; a's core loop ticks late {}, membership loop ticks late {}, store jobs outstanding at most {}",
        t.core_stalls.load(Ordering::Relaxed),
        t.stalls.load(Ordering::Relaxed),
        t.store_jobs_pending_max.load(Ordering::Relaxed),
    );
    slow.delay_ms.store(0, Ordering::Relaxed);
    b.shutdown().await;
    a.shutdown().await;
}
