//! The keyspace-wide change feed of the ScyllaDB engine: what its entry costs a write, how long a
//! write takes to reach a consumer, and how long a dead holder's partitions wait for another.
//! Writes `bench/scylla-feed.md`.
//!
//! - **Write cost**: sequential puts (one client) with the keyspace feed and without it
//!   (`ScyllaOptions::keyspace_feed = false`, the baseline), alternated in rounds in one run, for
//!   shared and single writers.
//! - **End-to-end lag**: one writer puts a key every few milliseconds; a [`KeyspaceFeed`]
//!   consumer (in the same process, so one clock) polls every [`POLL`] and notes when each key
//!   arrives, beside the node-local feed read the way today's consumers read it
//!   (`subscribe` + `changes`, woken on growth after `store::consumer::LINGER`): the baseline.
//! - **Digest fold**: a consumer's commit of a batch with the keyspace's digests (each key's
//!   record and digest row read, the row written) against one without them
//!   ([`KeyspaceFeed::without_digests`], the baseline), each on its own keyspace fed the same
//!   puts, alternated in rounds.
//! - **Hand-over**: two consumers share the partitions; one stops (a dead holder); the time until
//!   the other holds its partitions, and until a write in one of them is delivered, with the
//!   default leases (10 s) and a rebalance every second.
//!
//! Needs a CQL node: `STARLING_SCYLLA_NODES=host:port cargo bench -p starling-store --features
//! scylla --bench scylla_feed` (`infra/bench.sh scylla` starts a local Cassandra for it).

mod common;

use bytes::Bytes;
use starling_store::consumer::{KeyspaceFeed, LeaseConfig, partition_of};
use starling_store::{
    HlcClock, Key, Keyspace, NodeId, RegionId, ScyllaOptions, Store, StoreExt, Writers, open_scylla,
};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KS: Keyspace = Keyspace::new("fbench");
const ROUNDS: usize = 4;
const PER_ROUND: usize = 150;
const LAG_WRITES: u64 = 400;
const WRITE_EVERY: Duration = Duration::from_millis(5);
const POLL: Duration = Duration::from_millis(10);
const HANDOVERS: usize = 3;
const PARTS: u32 = 32;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct Row {
    name: String,
    mean: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Row {
    /// This row's mean and p99 over `base`'s.
    fn ratios(&self, base: &Row) -> (f64, f64) {
        let over = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        (over(self.mean, base.mean), over(self.p99, base.p99))
    }
}

fn row(name: impl Into<String>, mut v: Vec<Duration>) -> Row {
    v.sort_unstable();
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    Row {
        name: name.into(),
        mean,
        p50: pct(&v, 0.5),
        p99: pct(&v, 0.99),
        max: v.last().copied().unwrap_or_default(),
    }
}

async fn puts(s: &Arc<dyn Store>, from: u64, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let k = KS.key().u64((from + i) % 3000).finish();
        let t = Instant::now();
        s.put(&k, Bytes::from_static(&[7u8; 100]))
            .await
            .expect("put");
        out.push(t.elapsed());
    }
    out
}

/// Write cost with and without the keyspace feed, alternated.
async fn write_cost(nodes: &[String], tag: u32, names: &mut Vec<String>) -> Vec<(Row, Row)> {
    let mut out = Vec::new();
    for writers in [Writers::Shared, Writers::Single] {
        let w = format!("{writers:?}").to_lowercase();
        let mut opened = Vec::new();
        for feed in [true, false] {
            let ks = format!("fb_{w}_{}_{tag}", if feed { "kf" } else { "base" });
            names.push(ks.clone());
            let mut o = ScyllaOptions::new(nodes.to_vec(), ks);
            o.writers = writers;
            o.keyspace_feed = feed;
            let node = NodeId::new(RegionId::from_name("bench"), 1);
            let s = open_scylla(node, Arc::new(HlcClock::new()), &o)
                .await
                .expect("open");
            puts(&s, 0, 200).await; // warm up, keys exist
            opened.push(s);
        }
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for r in 0..ROUNDS {
            let from = (r * PER_ROUND) as u64;
            with.extend(puts(&opened[0], from, PER_ROUND).await);
            without.extend(puts(&opened[1], from, PER_ROUND).await);
        }
        out.push((
            row(format!("put, {w}, keyspace feed"), with),
            row(format!("put, {w}, no keyspace feed (baseline)"), without),
        ));
    }
    out
}

/// A consumer's commit of a batch of [`PER_ROUND`] new keys with the keyspace's digests and
/// without them, each on its own keyspace (one partition), alternated.
async fn fold_cost(nodes: &[String], tag: u32, names: &mut Vec<String>) -> (Row, Row) {
    let mut sides = Vec::new();
    for digests in [true, false] {
        let ks = format!("fb_fold_{}_{tag}", if digests { "dg" } else { "base" });
        names.push(ks.clone());
        let mut o = ScyllaOptions::new(nodes.to_vec(), ks);
        o.feed_partitions = Some(1);
        let node = NodeId::new(RegionId::from_name("bench"), 4);
        let s = open_scylla(node, Arc::new(HlcClock::new()), &o)
            .await
            .expect("open");
        let feed = KeyspaceFeed::open(&o, NodeId(950), LeaseConfig::default())
            .await
            .expect("feed");
        let feed = if digests {
            feed
        } else {
            feed.without_digests()
        };
        feed.rebalance().await.expect("rebalance");
        sides.push((s, feed));
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let from = 10_000 + (r * PER_ROUND) as u64;
        for (s, _) in &sides {
            puts(s, from, PER_ROUND).await;
        }
        // Past the writers' marks (published every 50 ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let feed = &sides[i].1;
            for b in feed.poll(4096).await.expect("poll") {
                if b.changes.is_empty() {
                    continue;
                }
                let t = Instant::now();
                assert!(feed.commit(&b).await.expect("commit"));
                let took = t.elapsed();
                if i == 0 { &mut with } else { &mut without }.push(took);
            }
        }
    }
    (
        row(
            format!("commit of a batch of {PER_ROUND} new keys, keyspace digests"),
            with,
        ),
        row("the same without digests (baseline)", without),
    )
}

/// End-to-end lag: keyspace feed consumer beside the node-local feed.
async fn lag(opts: &ScyllaOptions) -> (Row, Row) {
    let node = NodeId::new(RegionId::from_name("bench"), 2);
    let s = open_scylla(node, Arc::new(HlcClock::new()), opts)
        .await
        .expect("open");
    let feed = KeyspaceFeed::open(opts, NodeId(900), LeaseConfig::default())
        .await
        .expect("feed");
    feed.rebalance().await.expect("rebalance");
    let acked: Arc<parking_lot::Mutex<HashMap<Key, Instant>>> = Arc::default();
    let start_seq = s.last_seq();
    let writer = {
        let (s, acked) = (s.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0..LAG_WRITES {
                let k = KS.key().u64(100_000 + i).finish();
                s.put(&k, Bytes::from_static(b"x")).await.expect("put");
                acked.lock().insert(k, Instant::now());
                tokio::time::sleep(WRITE_EVERY).await;
            }
        })
    };
    // The node-local feed, read as today's consumers do.
    let local = {
        let (s, acked) = (s.clone(), acked.clone());
        tokio::spawn(async move {
            let mut grown = s.subscribe();
            let mut after = start_seq;
            let mut lags = Vec::new();
            while lags.len() < LAG_WRITES as usize {
                for c in s.changes(after, 1000).await.expect("changes") {
                    after = c.seq;
                    if let Some(t) = acked.lock().get(&c.key) {
                        lags.push(t.elapsed());
                    }
                }
                if lags.len() >= LAG_WRITES as usize {
                    break;
                }
                let _ = grown.changed().await;
                tokio::time::sleep(starling_store::consumer::LINGER).await;
            }
            lags
        })
    };
    let mut lags = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while lags.len() < LAG_WRITES as usize && Instant::now() < deadline {
        for b in feed.poll(1000).await.expect("poll") {
            for c in &b.changes {
                if let Some(t) = acked.lock().get(&c.key) {
                    lags.push(t.elapsed());
                }
            }
            feed.commit(&b).await.expect("commit");
        }
        tokio::time::sleep(POLL).await;
    }
    writer.await.expect("writer");
    let local = local.await.expect("local");
    (
        row("keyspace feed (KeyspaceFeed, poll every 10 ms)", lags),
        row("node-local feed (subscribe + changes; baseline)", local),
    )
}

/// Hand-over after a holder dies, with the default leases.
async fn handover(opts: &ScyllaOptions) -> (Row, Row) {
    let node = NodeId::new(RegionId::from_name("bench"), 3);
    let s = open_scylla(node, Arc::new(HlcClock::new()), opts)
        .await
        .expect("open");
    let (mut held_after, mut delivered_after) = (Vec::new(), Vec::new());
    let cfg = LeaseConfig::default();
    let heir = KeyspaceFeed::open(opts, NodeId(999), cfg)
        .await
        .expect("feed");
    for round in 0..HANDOVERS as u64 {
        let dying = KeyspaceFeed::open(opts, NodeId(1000 + round), cfg)
            .await
            .expect("feed");
        // Both live: the partitions split (the heir releases the newcomer's share, which claims
        // it at its next rebalance).
        for _ in 0..3 {
            dying.rebalance().await.expect("rebalance");
            heir.rebalance().await.expect("rebalance");
        }
        let lost = dying.held();
        assert!(!lost.is_empty(), "the dying member held nothing");
        // Drain what is there, so the heir's delivery below is of the new write.
        for f in [&dying, &heir] {
            for b in f.poll(100_000).await.expect("poll") {
                f.commit(&b).await.expect("commit");
            }
        }
        // A key in one of the dying member's partitions.
        let key = (0u64..)
            .map(|i| KS.key().u64(200_000 + round * 100_000 + i).finish())
            .find(|k| lost.contains(&partition_of(k.as_bytes(), PARTS)))
            .expect("a key");
        let died = Instant::now();
        drop(dying);
        s.put(&key, Bytes::from_static(b"h")).await.expect("put");
        let mut held_at = None;
        loop {
            heir.rebalance().await.expect("rebalance");
            if held_at.is_none() && lost.iter().all(|p| heir.held().contains(p)) {
                held_at = Some(died.elapsed());
            }
            let mut got = false;
            for b in heir.poll(100_000).await.expect("poll") {
                got |= b.changes.iter().any(|c| c.key == key);
                heir.commit(&b).await.expect("commit");
            }
            if got {
                delivered_after.push(died.elapsed());
                held_after.push(held_at.unwrap_or_else(|| died.elapsed()));
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    (
        row("dead holder's partitions all held by the heir", held_after),
        row("a write in them delivered by the heir", delivered_after),
    )
}

fn main() {
    let nodes = common::scylla_nodes();
    let rt = common::runtime();
    let tag = std::process::id();
    let mut names = Vec::new();
    let (cost, lags, hand, fold) = rt.block_on(async {
        let cost = write_cost(&nodes, tag, &mut names).await;
        let fold = fold_cost(&nodes, tag, &mut names).await;
        let ks = format!("fb_lag_{tag}");
        names.push(ks.clone());
        let mut o = ScyllaOptions::new(nodes.clone(), ks);
        o.feed_partitions = Some(PARTS);
        let lags = lag(&o).await;
        let ks = format!("fb_hand_{tag}");
        names.push(ks.clone());
        let mut h = ScyllaOptions::new(nodes.clone(), ks);
        h.feed_partitions = Some(PARTS);
        let hand = handover(&h).await;
        let s = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&nodes)
            .build()
            .await
            .expect("session");
        for ks in &names {
            let _ = s
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                .await;
        }
        (cost, lags, hand, fold)
    });
    let commit = common::report::commit();
    let load = common::report::load();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# The keyspace-wide change feed (store/benches/scylla_feed.rs)\n\n\
         Command: `infra/bench.sh scylla` (a local single-node Apache Cassandra 5.0 from \
         infra/cassandra.sh, or the cluster in `STARLING_SCYLLA_NODES`).\n\n\
         Run at commit `{commit}` (plus the uncommitted work tree of the run) on {} cores, \
         loopback, one process, replication factor 1, LOCAL_QUORUM, {PARTS} partitions, marks \
         published every 50 ms. Load average at the end: `{}`. The machine is shared and \
         noisy: compare the ratios within this run.\n",
        common::report::cores(),
        load,
    );
    let table = |md: &mut String, title: &str, rows: &[&Row]| {
        let _ = writeln!(
            md,
            "## {title}\n\n| what | mean | p50 | p99 | max |\n|---|---|---|---|---|"
        );
        for r in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.name,
                ms(r.mean),
                ms(r.p50),
                ms(r.p99),
                ms(r.max)
            );
        }
        let _ = writeln!(md);
    };
    let mut cost_rows = Vec::new();
    for (a, b) in &cost {
        cost_rows.push(a);
        cost_rows.push(b);
    }
    table(
        &mut md,
        &format!(
            "Write cost: {} sequential puts of 100 bytes per engine, {ROUNDS} alternated rounds",
            ROUNDS * PER_ROUND
        ),
        &cost_rows,
    );
    for (a, b) in &cost {
        let (mean, p99) = a.ratios(b);
        let _ = writeln!(
            md,
            "- {}: mean {mean:.2}x, p99 {p99:.2}x of the baseline",
            a.name
        );
    }
    let _ = writeln!(md);
    table(
        &mut md,
        &format!(
            "End-to-end lag: {LAG_WRITES} puts, one every {} ms, from the put's acknowledgement to the consumer",
            WRITE_EVERY.as_millis()
        ),
        &[&lags.0, &lags.1],
    );
    let (mean, p99) = lags.0.ratios(&lags.1);
    let _ = writeln!(
        md,
        "- keyspace feed lag: mean {mean:.1}x, p99 {p99:.1}x of the node-local feed's\n"
    );
    table(
        &mut md,
        &format!(
            "Digest fold: a consumer's commit, {ROUNDS} alternated rounds, one partition, one writer"
        ),
        &[&fold.0, &fold.1],
    );
    let (mean, p99) = fold.0.ratios(&fold.1);
    let _ = writeln!(
        md,
        "- commit with the keyspace's digests: mean {mean:.2}x, p99 {p99:.2}x of the baseline's\n"
    );
    table(
        &mut md,
        &format!(
            "Hand-over: {HANDOVERS} times, a holder of half the partitions stops; default leases (10 s), the heir rebalances every 1 s; from the stop"
        ),
        &[&hand.0, &hand.1],
    );
    print!("{md}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/scylla-feed.md");
    std::fs::write(path, md).expect("writing bench/scylla-feed.md");
}
