//! A node's broadcast reader of the ScyllaDB keyspace-wide feed: what the region's other nodes
//! wrote, reaching this node's caches and sockets without Redis.
//!
//! The holders of the feed's partitions ([`crate::keyspace_feed`]) derive the region's state
//! once; but each node also keeps copies in process (post bodies, author summaries, authors'
//! lists, sessions, conversation records) and sockets that must hear of writes made through
//! other nodes. Every node therefore also reads **every** partition of the feed, unleased, from
//! cursors in memory that start at the writers' marks when the node starts
//! ([`starling_store::consumer::KeyspaceTail`]), every `--keyspace-tail-interval` (100 ms by
//! default), at most [`WINDOW`] numbers of each writer a poll. Of each poll, the entries other
//! nodes wrote (this node's own writes reach its caches and sockets directly):
//!
//! 1. **Sessions**, always: the session cache drops every session they name
//!    ([`starling_graph::Graph::sessions_changed`]), so a logout or password change through
//!    another node is refused here within the bound; the session cache runs on a shared
//!    keyspace because of it (with `GraphConfig::session_recheck` as the net if this reader
//!    is down).
//! 2. **Caches**, without `--redis` only (with it, the holders' invalidation bus,
//!    [`crate::cache_bus`], says more — the timelines a fan-out reached — and sooner): the posts,
//!    authors' lists, author summaries and follow-changed timelines the keys name
//!    ([`starling_feed::invalidation::Touched::of_keys`]) are dropped, and each post goes into
//!    the timelines of its author's followers cached here
//!    ([`starling_feed::Feed::insert_into_cached`], this node's own posts too: the holder that
//!    fans a post out may be another node; not for authors pulled at read time,
//!    whose lists are dropped by their own keys). A failure there leaves those timelines to
//!    `--feed-shared-ttl` (5 s).
//! 3. **Chat and notifications**, without `--redis` only (with it, the region's chat bus and the
//!    invalidation bus deliver them): messages, read markers and conversation records go to the
//!    messenger's tail logic ([`starling_messenger::tail::handle`], as written elsewhere), and
//!    notification records to the recipients' sockets here ([`crate::cache_bus::deliver`]).
//!    This node's own writes are delivered by its own change feed's tails, as on one node, so
//!    nothing is delivered twice.
//!
//! A poll that fails, or finds this node further behind a writer than the feed retains
//! ([`starling_store::consumer::MAX_LAG`]), **resets**: every cached post, summary, list,
//! timeline, session and (without `--redis`) conversation is dropped (counted, and logged), and the reader goes on from the
//! writers' marks; live frames missed then are not sent (clients resume from their cursors,
//! notifications are listed by `GET /v1/notifications`).
//!
//! `/metrics` (through [`crate::keyspace_feed::Slot`]): `starling_keyspace_tail_lag`,
//! `…_keys_total`, `…_invalidations_total`, `…_resets_total`, `…_failures_total`.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use starling_feed::invalidation::Touched;
use starling_store::consumer::KeyspaceTail;
use starling_store::{Change, NodeId, Origin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// A writer's numbers read per poll at most (a full window is read on at once).
pub const WINDOW: u64 = 4096;
/// How long a cached session is trusted on a shared keyspace before the store is read again
/// (`GraphConfig::session_recheck`): the bound on a revocation if this reader is down.
pub const SESSION_RECHECK: Duration = Duration::from_secs(30);

/// The reader's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct TailStats {
    lag: AtomicU64,
    keys: AtomicU64,
    invalidations: AtomicU64,
    resets: AtomicU64,
    failures: AtomicU64,
}

impl TailStats {
    /// Resets so far (a test waits on the reader through these and [`TailStats::keys`]).
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// Other nodes' keys read so far.
    pub fn keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    /// Writes the counters (called by `keyspace_feed::Slot`'s collector).
    pub(crate) fn encode(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let g =
            ConstGauge::new(i64::try_from(self.lag.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        g.encode(enc.encode_descriptor(
            "starling_keyspace_tail_lag",
            "Keyspace feed entries between this node's broadcast reader and the writers' marks after its last poll",
            None,
            g.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "starling_keyspace_tail_keys",
                "Keys other nodes of the region wrote that this node's broadcast reader read",
                &self.keys,
            ),
            (
                "starling_keyspace_tail_invalidations",
                "Cached copies (posts, lists, summaries, timelines, sessions) named by other nodes' writes and dropped here",
                &self.invalidations,
            ),
            (
                "starling_keyspace_tail_resets",
                "Times this node dropped every cached copy: its broadcast reader failed or fell behind the feed's retained window",
                &self.resets,
            ),
            (
                "starling_keyspace_tail_failures",
                "Polls of the keyspace feed by this node's broadcast reader that failed",
                &self.failures,
            ),
        ] {
            let c = ConstCounter::new(v.load(Ordering::Relaxed));
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// Opens the reader of the keyspace at `url` (a `scylla://` store URL) and places its cursors
/// at the writers' marks now — before the node serves and caches anything, so that every write
/// finished after a copy was cached is read.
pub async fn open(url: &str) -> anyhow::Result<Arc<KeyspaceTail>> {
    use anyhow::Context as _;
    let opts = starling_store::ScyllaOptions::from_url(url).with_context(|| url.to_string())?;
    let what = "opening the broadcast reader of the keyspace-wide change feed";
    let tail = KeyspaceTail::open(&opts).await.context(what)?;
    tail.poll(WINDOW).await.context(what)?;
    Ok(Arc::new(tail))
}

/// How the reader runs.
#[derive(Clone, Copy, Debug)]
pub struct TailConfig {
    /// The pause between two polls (`--keyspace-tail-interval`).
    pub interval: Duration,
    /// This node (its own writes are skipped).
    pub me: NodeId,
    /// The region has a Redis (`--redis`): its buses carry cache drops, chat and notifications;
    /// this reader serves the session cache only.
    pub redis: bool,
}

/// Reads the keyspace feed until `shutdown` turns true (see the module's documentation).
pub async fn run(
    state: crate::AppState,
    tail: Arc<KeyspaceTail>,
    cfg: TailConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let stats = state.keyspace_feed.tail().clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut more = false;
        match tail.poll(WINDOW).await {
            Ok(p) => {
                stats.lag.store(p.lag, Ordering::Relaxed);
                if p.reset {
                    forget_all(&state, cfg.redis);
                    stats.resets.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "keyspace tail: fell behind the feed's retained window or failed to read it; every cached post, summary, list, timeline and session dropped, reading on from the writers' marks"
                    );
                }
                // This node's own posts too: the holder that fans one out may be another node.
                let own = Touched::of_keys(
                    p.changes
                        .iter()
                        .filter(|c| c.writer == cfg.me)
                        .map(|c| &c.key),
                );
                let others: Vec<Change> = p
                    .changes
                    .into_iter()
                    .filter(|c| c.writer != cfg.me)
                    .map(|c| Change {
                        origin: Origin::Remote,
                        ..Change::from(c)
                    })
                    .collect();
                stats.keys.fetch_add(others.len() as u64, Ordering::Relaxed);
                let dropped = apply(&state, &others, own.posts, cfg.redis).await;
                stats.invalidations.fetch_add(dropped, Ordering::Relaxed);
                more = p.lag > 0;
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "keyspace tail: reading the feed failed");
                // What the failed poll would have read may be trimmed by the next: start again
                // at the marks, dropping every cached copy.
                tail.restart();
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(cfg.interval) => {}
        }
    }
}

/// Hands other nodes' `changes` to this node's caches and sockets, and the posts of both
/// (`own`: this node's) to the timelines held here; returns the cached copies they named.
async fn apply(
    state: &crate::AppState,
    changes: &[Change],
    own: std::collections::BTreeSet<u64>,
    redis: bool,
) -> u64 {
    if redis {
        return state.graph.sessions_changed(changes) as u64;
    }
    let mut posts = own;
    let mut named = 0;
    if !changes.is_empty() {
        named += state.graph.sessions_changed(changes) as u64;
        let touched = Touched::of_keys(changes.iter().map(|c| &c.key));
        named += touched.len() as u64;
        state.feed.drop_cached(&touched);
        posts.extend(touched.posts.iter().copied());
    }
    let posts: Vec<u64> = posts.into_iter().collect();
    match state.feed.insert_into_cached(&posts).await {
        Ok(n) => named += n as u64,
        // The timelines here miss those posts until they expire (`--feed-shared-ttl`).
        Err(e) => tracing::warn!(error = %e, "keyspace tail: new posts not put in timelines here"),
    }
    if changes.is_empty() {
        return named;
    }
    starling_messenger::tail::handle(&state.fanout, changes).await;
    let notes: Vec<(u64, u64)> = changes
        .iter()
        .filter_map(|c| starling_posts::notifications::parse_key(&c.key))
        .collect();
    crate::cache_bus::deliver(state, &notes).await;
    named
}

/// Drops every cached copy the reader keeps current (after a reset).
fn forget_all(state: &crate::AppState, redis: bool) {
    state.graph.forget_sessions();
    if !redis {
        state.feed.drop_cached(&Touched {
            all: true,
            ..Touched::default()
        });
        // Conversation records (members, roles) changed elsewhere reach this node only through
        // the reader without Redis: a missed one must not leave a removed member in.
        state.messenger.forget_cached();
    }
}
