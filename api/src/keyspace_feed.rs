//! The derived state of a region served by several nodes on one ScyllaDB keyspace.
//!
//! With `--store scylla://…` a node does not derive follower counts, like counts and timelines
//! from its own change feed (which holds only the writes it made or merged) but from its share
//! of the keyspace-wide feed ([`starling_store::KeyspaceFeed`]): every write of every node, split
//! into partitions that the live nodes hold by lease. [`run`] rebalances the leases every third
//! of a lease, polls the held partitions every [`POLL`], hands each batch to the consumers —
//! follower counts ([`starling_graph::Graph::count_changes`]), like, reply and repost counts
//! ([`starling_posts::likes::Likes::count_changes`]), then the timelines' fan-out
//! ([`starling_feed::Feed::apply_changes`]) — and commits the partition's cursor, fenced by its
//! lease. A batch a consumer failed on is not committed: it is delivered again. Every consumer is
//! idempotent (shadows, fan-out marks), so a batch delivered twice — after a failure, a
//! hand-over, or a fenced commit — changes nothing the second time.
//!
//! The counts are then shared by the region's nodes (their keys are in the keyspace, which every
//! node reads), and moved only by increments, so two holders moving one counter do not lose a
//! move. What each node keeps in process and the holder of a partition cannot reach on another
//! node — timelines (L1), pulled authors' lists, like-count caches — is bounded in age or not
//! kept (see `FeedConfig::shared_ttl` and `Likes::shared`).
//!
//! After each rebalance the node deletes, in the partitions it holds, the feed's chunks that lie
//! wholly below their cursors, at most [`TRIM_BUDGET`] a time (`KeyspaceFeed::trim`).
//!
//! What a holder's batches change in the caches every node keeps in process (timelines, post
//! bodies, pulled authors' lists, author summaries) is published once per poll on the region's
//! invalidation bus ([`crate::cache_bus`], over `--redis`): the other nodes drop their copies at
//! once instead of serving them until `shared_ttl` expires.
//!
//! `/metrics` shows the consumer's partitions held, hand-overs, fenced leases, chunks trimmed and
//! each held partition's lag, the keyspace digests' folds, publications and scans (each commit
//! folds its batch's keys into the keyspace's digests, each rebalance publishes the held
//! partitions' leaves: `starling_store`'s `engine/scylla/kdigest.rs`), and the invalidation bus's
//! messages ([`Slot`]).
//!
//! On a keyspace that held records before its digest tables existed (an upgraded region), [`run`]
//! also backfills the keyspace's digest rows from its records ([`backfill_digests`]): a page of
//! [`BACKFILL_PAGE`] records at a time while this node holds feed partition 0, resumed by the next
//! holder from the saved position; `/metrics` shows the keys it wrote and how far the scan came.
//! After each rebalance it checks [`DIGEST_CHECK_BUCKETS`] digest buckets of the partitions it
//! holds against the records (`KeyspaceFeed::check_digests`: rows and leaves repaired, counted).

use crate::cache_bus::CacheBus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use starling_feed::invalidation::Touched;
use starling_store::Change;
use starling_store::consumer::{KeyspaceFeed, LeaseConfig, PartBatch};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// How often the held partitions are read (one read of the writers' marks, and one of each held
/// partition's sub-streams whose writer's mark moved).
pub const POLL: Duration = Duration::from_millis(50);
/// Entries read per partition and poll.
pub const BATCH: usize = 1024;
/// `kfeed` chunks deleted below the held cursors per rebalance, at most (a chunk is 2^16 of one
/// writer's numbers: a few hundred to thousands of entries of one partition).
pub const TRIM_BUDGET: usize = 128;
/// The keyspace-wide feed's lease: a group of `starling serve`'s settings (flag,
/// `STARLING_KEYSPACE_LEASE_TTL` and `--config` key, declared once here), flattened into
/// [`crate::config::ServeArgs`]; [`lease_config`](Self::lease_config) is the consumer's timing.
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct KeyspaceFeedSettings {
    /// With `--store scylla://…`: how long a node's lease on a partition of the keyspace-wide
    /// feed lasts without renewal, and its membership without a beat — how long a dead node's
    /// share waits before another node takes it over — e.g. `10s` (default 10s, 3s-10m; every
    /// node of the region should use the same).
    #[arg(
        long,
        env = "STARLING_KEYSPACE_LEASE_TTL",
        default_value = "10s",
        hide_default_value = true
    )]
    pub keyspace_lease_ttl: starling_store::settings::Period<3_000, 600_000>,
    /// With `--store scylla://…`: how often each node reads the whole keyspace-wide feed for
    /// the keys the region's other nodes wrote (its caches, sessions, chat and notification
    /// sockets; [`crate::keyspace_tail`]) — the staleness bound of what a node caches, e.g.
    /// `100ms` (default 100ms, 10ms-10s).
    #[arg(
        long,
        env = "STARLING_KEYSPACE_TAIL_INTERVAL",
        default_value = "100ms",
        hide_default_value = true
    )]
    pub keyspace_tail_interval: starling_store::settings::Period<10, 10_000>,
}

impl Default for KeyspaceFeedSettings {
    fn default() -> Self {
        crate::config::defaults()
    }
}

impl KeyspaceFeedSettings {
    /// The consumer's lease timing: leases and memberships last the TTL (renewed every third
    /// of it); a writer's mark read past after the default expiry.
    pub fn lease_config(&self) -> LeaseConfig {
        let ttl = self.keyspace_lease_ttl.get();
        LeaseConfig {
            lease: ttl,
            member_ttl: ttl,
            ..LeaseConfig::default()
        }
    }
}

/// Digest buckets (of 4096) of the held partitions checked against the records per rebalance
/// (`KeyspaceFeed::check_digests`): every bucket once in about 14 minutes with 10 s leases.
pub const DIGEST_CHECK_BUCKETS: u32 = 16;
/// Records per page of the keyspace digests' backfill (one saved position per page).
pub const BACKFILL_PAGE: usize = 500;
/// Pause between two pages of the backfill (it runs beside the feed's consumers, off the
/// request path: at most a page per pause).
const BACKFILL_PAUSE: Duration = Duration::from_millis(20);
/// How often a node that does not backfill (or failed to) looks again.
const BACKFILL_IDLE: Duration = Duration::from_secs(1);
/// How long a node keeps a timeline or a pulled author's list in process when several nodes
/// derive them (`FeedConfig::shared_ttl`, `--feed-shared-ttl`): the staleness a feed read can
/// see on a node that did not fan the post out when the region has no Redis, and with one, what
/// a lost invalidation message ([`crate::cache_bus`]) leaves stale.
pub const SHARED_TTL: Duration = Duration::from_secs(5);

/// The consumers of a node's own feed that the keyspace-wide feed replaces.
const REPLACED: [&str; 3] = [
    starling_graph::counts::CONSUMER,
    starling_posts::likes::CONSUMER,
    starling_feed::fanout::CONSUMER,
];

/// Of a node's own-feed consumers `all`, those that still consume it (all of them unless the
/// keyspace-wide feed runs: then the chat tail and the gossip push).
pub fn node_local(all: Vec<&'static str>, keyspace: bool) -> Vec<&'static str> {
    all.into_iter()
        .filter(|c| !keyspace || !REPLACED.contains(c))
        .collect()
}

/// This node's keyspace-feed consumer, once it runs (ScyllaDB stores only), for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    feed: Arc<OnceLock<Arc<KeyspaceFeed>>>,
    failed: Arc<AtomicU64>,
    bus: Arc<OnceLock<CacheBus>>,
    tail: Arc<crate::keyspace_tail::TailStats>,
}

impl Slot {
    /// Registers the consumer's metrics (nothing is shown until [`Slot::set`]).
    pub fn register(&self, r: &mut Registry) {
        r.register_collector(Box::new(self.clone()));
    }

    /// Whether this node consumes the keyspace-wide feed.
    pub fn active(&self) -> bool {
        self.feed.get().is_some()
    }

    /// The consumer this node runs.
    pub fn set(&self, feed: Arc<KeyspaceFeed>) {
        let _ = self.feed.set(feed);
    }

    /// The invalidation bus this node publishes on and listens to.
    pub fn set_bus(&self, bus: CacheBus) {
        let _ = self.bus.set(bus);
    }

    /// This node's broadcast reader's counters ([`crate::keyspace_tail`]).
    pub fn tail(&self) -> &Arc<crate::keyspace_tail::TailStats> {
        &self.tail
    }

    /// Whether this node's consumer delivers the region's notifications live over a shared bus
    /// (then the node-local live tail does not run).
    pub fn delivers_notifications(&self) -> bool {
        self.active() && self.bus.get().is_some_and(CacheBus::is_shared)
    }
}

impl Collector for Slot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(feed) = self.feed.get() else {
            return Ok(());
        };
        self.tail.encode(&mut enc)?;
        let s = feed.stats();
        let e = &mut enc;
        let g = ConstGauge::new(i64::try_from(s.held).unwrap_or(i64::MAX));
        g.encode(e.encode_descriptor(
            "starling_keyspace_feed_partitions_held",
            "Partitions of the keyspace-wide change feed this node holds the lease of",
            None,
            g.metric_type(),
        )?)?;
        let g = ConstGauge::new(i64::from(feed.partitions()));
        g.encode(e.encode_descriptor(
            "starling_keyspace_feed_partitions",
            "Partitions of the keyspace-wide change feed",
            None,
            g.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "starling_keyspace_feed_handovers",
                "Partitions this node claimed from another holder",
                s.handovers,
            ),
            (
                "starling_keyspace_feed_fenced",
                "Leases this node found lost on renewal or commit (its cursor write refused)",
                s.fenced,
            ),
            (
                "starling_keyspace_feed_trimmed_chunks",
                "Chunks of the keyspace-wide feed this node deleted below its held cursors",
                s.trimmed,
            ),
            (
                "starling_keyspace_digest_keys_folded",
                "Keys whose hash this node changed in the keyspace's digests (as a feed partition's holder)",
                s.digest_folded,
            ),
            (
                "starling_keyspace_digest_published",
                "Held feed partitions' digest leaves this node published",
                s.digest_published,
            ),
            (
                "starling_keyspace_digest_scans",
                "Held feed partitions' digest leaves this node recomputed by a scan (claims, failed folds)",
                s.digest_scans,
            ),
            (
                "starling_keyspace_digest_checked_buckets",
                "Digest buckets of the held feed partitions this node checked against the records",
                s.digest_checked_buckets,
            ),
            (
                "starling_keyspace_digest_rows_repaired",
                "Keyspace digest rows a check found not matching their record (rewritten)",
                s.digest_rows_repaired,
            ),
            (
                "starling_keyspace_digest_leaves_repaired",
                "Held feed partitions' digest leaves a check found not matching their rows (replaced)",
                s.digest_leaves_repaired,
            ),
            (
                "starling_keyspace_digest_backfilled_keys",
                "Keys whose digest rows this node backfilled from the keyspace's records",
                s.digest_backfilled,
            ),
            (
                "starling_keyspace_feed_batch_failures",
                "Batches of the keyspace-wide feed a consumer failed on (delivered again)",
                self.failed.load(Ordering::Relaxed),
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        if let Some(bus) = self.bus.get().filter(|b| b.is_shared()) {
            let b = bus.counters();
            for (name, help, v) in [
                (
                    "starling_cache_invalidations_sent",
                    "Cache invalidation messages this node published to the region's other nodes",
                    b.sent,
                ),
                (
                    "starling_cache_invalidations_received",
                    "Other nodes' cache invalidation messages this node applied",
                    b.received,
                ),
                (
                    "starling_cache_invalidations_dropped",
                    "Cache invalidation messages dropped (publisher queue full, publish failed, undecodable)",
                    b.dropped,
                ),
                (
                    "starling_cache_invalidated_timelines",
                    "In-process timelines dropped on account of other nodes' invalidation messages",
                    b.timelines,
                ),
            ] {
                let c = ConstCounter::new(v);
                c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)?;
            }
        }
        let g = ConstGauge::new(f64::from(s.digest_backfill_ppm) / 1e6);
        g.encode(e.encode_descriptor(
            "starling_keyspace_digest_backfill_progress",
            "How far the backfill of the keyspace's digest rows has come through the token ring (1: the rows cover every key)",
            None,
            g.metric_type(),
        )?)?;
        // One series per held partition: at most the keyspace's partition count (32 by default,
        // at most 4 096).
        let mut lag = e.encode_descriptor(
            "starling_keyspace_feed_lag",
            "Writers' sequence numbers between a held partition's cursor and their marks",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (part, l) in &s.lag {
            let label = [("partition", part.to_string())];
            let g = ConstGauge::new(i64::try_from(*l).unwrap_or(i64::MAX));
            g.encode(lag.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// Opens this node's consumer of the keyspace `url` names (the store is open already).
pub async fn open(
    url: &str,
    node: starling_store::NodeId,
    cfg: LeaseConfig,
) -> anyhow::Result<Arc<KeyspaceFeed>> {
    use anyhow::Context as _;
    let opts = starling_store::ScyllaOptions::from_url(url).with_context(|| url.to_string())?;
    Ok(Arc::new(
        KeyspaceFeed::open(&opts, node, cfg)
            .await
            .context("opening the keyspace-wide change feed")?,
    ))
}

/// Hands one batch to the consumers, in order (counts before the fan-out, which reads the
/// follower count to tell a pulled author); returns what other nodes' caches must drop, and the
/// notifications written (recipient, id).
async fn apply(
    state: &crate::AppState,
    batch: &PartBatch,
) -> anyhow::Result<(Touched, Vec<(u64, u64)>)> {
    let changes: Vec<Change> = batch.changes.iter().cloned().map(Change::from).collect();
    state.graph.count_changes(&changes).await?;
    state.posts.likes().count_changes(&changes).await?;
    let touched = state.feed.apply_changes_noting(&changes).await?;
    let notes = changes
        .iter()
        .filter_map(|c| starling_posts::notifications::parse_key(&c.key))
        .collect();
    push(state, batch).await?;
    Ok((touched, notes))
}

/// Pushes to the other regions the current records of the keys of the batch's entries that
/// this region accepted (an API write or a CAS through any of its nodes), in one store read:
/// the region pushes each write once, from its partition's holder, and a write whose node died
/// right after acknowledging it is pushed by the partition's next holder, from the cursor
/// committed below. Records merged from another region are not pushed on: their region's
/// holder sent them to every other region already (anti-entropy repairs a lost message).
async fn push(state: &crate::AppState, batch: &PartBatch) -> anyhow::Result<()> {
    let Some(gossip) = &state.gossip else {
        return Ok(());
    };
    let keys: Vec<starling_store::Key> = batch
        .changes
        .iter()
        .filter(|c| c.origin == starling_store::Origin::Local)
        .map(|c| c.key.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let deltas = starling_gossip::node::records_of(state.store.as_ref(), &keys).await?;
    // None: the gossip service stopped (shutting down); the batch is committed all the same,
    // as a node's own-feed push moved its cursor past what it could not send.
    gossip.push_to_regions(deltas).await;
    Ok(())
}

/// Consumes this node's share of the keyspace-wide feed until `shutdown` turns true, telling
/// the region's other nodes over `bus` what it changed in their caches.
pub async fn run(
    state: crate::AppState,
    feed: Arc<KeyspaceFeed>,
    cfg: LeaseConfig,
    slot: Slot,
    bus: CacheBus,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(backfill_digests(feed.clone(), shutdown.clone()));
    let every = cfg.lease / 3;
    let mut rebalanced: Option<tokio::time::Instant> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if rebalanced.is_none_or(|t| t.elapsed() >= every) {
            match feed.rebalance().await {
                Ok(()) => rebalanced = Some(tokio::time::Instant::now()),
                Err(e) => tracing::warn!(error = %e, "keyspace feed: rebalancing failed"),
            }
            if let Err(e) = feed.trim(TRIM_BUDGET).await {
                tracing::warn!(error = %e, "keyspace feed: trimming failed");
            }
            if let Err(e) = feed.check_digests(DIGEST_CHECK_BUCKETS).await {
                tracing::warn!(error = %e, "keyspace digests: checking failed");
            }
        }
        match feed.poll(BATCH).await {
            Ok(batches) => {
                // One invalidation message per poll, whatever the number of batches.
                let mut touched = Touched::default();
                let mut notes = Vec::new();
                for b in batches.iter().filter(|b| !b.changes.is_empty()) {
                    match apply(&state, b).await {
                        Ok((t, n)) => {
                            touched.merge(t);
                            notes.extend(n);
                        }
                        Err(e) => {
                            slot.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, partition = b.part, "keyspace feed: a consumer failed");
                            continue;
                        }
                    }
                    match feed.commit(b).await {
                        Ok(true) => {}
                        Ok(false) => tracing::info!(
                            partition = b.part,
                            "keyspace feed: lease lost, the partition's next holder resumes it"
                        ),
                        Err(e) => tracing::warn!(error = %e, "keyspace feed: commit failed"),
                    }
                }
                // After the fan-out wrote L1 and L2: another node that drops its copy reads the
                // new state.
                bus.publish(&touched, &notes);
                if bus.is_shared() {
                    crate::cache_bus::deliver(&state, &notes).await;
                }
                // A full batch: read on at once.
                if batches.iter().any(|b| b.changes.len() >= BATCH) {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "keyspace feed: reading failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Backfills the keyspace's digest rows until they cover every key (at once when they do): a
/// page at a time while this node holds feed partition 0, else a look at the progress every
/// [`BACKFILL_IDLE`]; stops at `shutdown`.
pub async fn backfill_digests(feed: Arc<KeyspaceFeed>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let pause = match feed.backfill_digests(BACKFILL_PAGE).await {
            Ok(p) if p.done => return,
            Ok(_) if feed.held().contains(&0) => BACKFILL_PAUSE,
            Ok(_) => BACKFILL_IDLE,
            Err(e) => {
                tracing::warn!(error = %e, "keyspace digests: a backfill step failed");
                BACKFILL_IDLE
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
