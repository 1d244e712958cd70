//! The tombstone reaper: collects deleted records once every replica has them, beside the
//! gossip core, never on its loop.
//!
//! A store that keeps a tombstone index ([`starling_store::tombstones`]: every engine; the
//! ScyllaDB engine's is a table the nodes of a region share) is collected from it: a pass
//! consumes at most `gc_pages` pages of `gc_page` index entries, oldest first, up to the grace
//! horizon, and stops there ([`Store::collect_indexed`], which removes each record only if it
//! still is that tombstone, re-checked under its key's lock, and its entry either way). It reads
//! the tombstones due and nothing else: its cost follows the deletes, not the data. No position
//! is kept: consumed entries are gone, so the index's start is where the next pass begins, and a
//! tombstone that arrives late from a peer with an old stamp lands before it and is collected
//! next.
//!
//! A store written before its engine kept the index ([`TombstoneIndex::Partial`]) is swept
//! once more the old way to build it: pages of every record from a position saved in the store
//! (node-local key `gb`, so after a restart the backfill goes on where it stopped), the old
//! tombstones among them collected, the young ones indexed; at the end of the key space the
//! index is marked complete and the sweep stops for good. A store without an index (the
//! trait's default) keeps that sweep for ever, from its own position (`gr`), starting over at
//! the end. Nothing is held between pages but the position: the memory a pass uses is one page,
//! whatever the data.
//!
//! The rule is the one the core has always applied: collect only after every known member has
//! been alive, with none joining or returning, for a whole grace period (time for anti-entropy
//! to bring each of them every tombstone), and only tombstones older than the grace. The core
//! says whether that holds ([`crate::GossipNode::collectable`]); the reaper asks before each
//! page, so a member going down stops a pass within a page. The backfill's indexing removes
//! nothing, so it goes on while collection waits.

use starling_store::{
    Hlc, HlcClock, Key, Keyspace, ScanRequest, Store, StoreError, StoreExt, TombstoneIndex,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Node-local: the key the sweep of a store without an index continues after (absent: from
/// the start).
const POSITION: Keyspace = Keyspace::local("gr");
/// Node-local: the key the backfill of the tombstone index continues after.
const BACKFILL: Keyspace = Keyspace::local("gb");

/// The wait before the next pass when an index pass stopped at its page limit with due
/// tombstones left, instead of a whole interval: the page limit bounds one pass's work, not the
/// rate of collection. With the limit as a rate, deletes faster than `pages × page` a
/// `--gc-interval` (16 000 a minute by default) piled up for ever: the 2-hour soak of
/// 2026-12-07 (2-minute passes) held 2.57 million due tombstones after 58 minutes, the oldest
/// 51 minutes old against a 5-minute grace.
pub const BEHIND_PAUSE: Duration = Duration::from_secs(1);

/// What the reaper reports (`/metrics`).
#[derive(Debug, Default)]
pub struct ReaperStats {
    /// Passes run (collection allowed or not).
    pub passes: AtomicU64,
    /// Passes skipped because the membership was not settled.
    pub skipped: AtomicU64,
    /// Tombstones collected since start.
    pub collected: AtomicU64,
    /// Records read since start (a sweep's records; an index pass reads one per entry).
    pub scanned: AtomicU64,
    /// Pages read since start (of records or of the index).
    pub pages: AtomicU64,
    /// Sweeps of the whole key space finished since start.
    pub sweeps: AtomicU64,
    /// How long the last pass took, in microseconds.
    pub last_pass_us: AtomicU64,
    /// Passes that failed (a store error; logged).
    pub failures: AtomicU64,
    /// Index passes that stopped at their page limit with due tombstones left (the next came
    /// after [`BEHIND_PAUSE`]).
    pub behind: AtomicU64,
    /// The position as a fraction of the key space, in millionths (its first 4 bytes read as a
    /// big-endian number): how far the sweep (or the backfill) is; 0 with a complete index.
    pub position_ppm: AtomicU64,
    /// Index entries dropped because their key was written again since (a safety net: writes
    /// move their entries themselves).
    pub stale: AtomicU64,
    /// Tombstones the backfill indexed since start.
    pub backfilled: AtomicU64,
    /// The tombstone index's length after the last pass (an estimate on disk).
    pub index_len: AtomicU64,
    /// Age of the oldest indexed tombstone after the last pass, in milliseconds (0: none).
    pub oldest_ms: AtomicU64,
    /// How the last pass found tombstones: 0 from the index, 1 backfilling it, 2 sweeping (no
    /// index).
    pub mode: AtomicU64,
}

/// The outcome of one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaperPass {
    /// Records read (a sweep's records; from the index, one per entry consumed).
    pub scanned: u64,
    /// Tombstones removed.
    pub collected: u64,
    /// The sweep reached the end of the key space (the next pass starts over), or the index
    /// pass the grace horizon.
    pub wrapped: bool,
    /// The index pass stopped at its page limit with due tombstones left: the next one comes
    /// after [`BEHIND_PAUSE`].
    pub behind: bool,
}

/// Settings of a reaper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaperConfig {
    /// Age after which a tombstone may be collected.
    pub grace: Duration,
    /// Records (or index entries) read per page (at most the store's scan limit).
    pub page: usize,
    /// Pages read per pass.
    pub pages: usize,
}

impl From<&crate::GossipConfig> for ReaperConfig {
    fn from(c: &crate::GossipConfig) -> Self {
        ReaperConfig {
            grace: c.gc_grace,
            page: c.gc_page,
            pages: c.gc_pages,
        }
    }
}

/// The reaper of one node's store.
#[derive(Debug)]
pub struct Reaper {
    store: Arc<dyn Store>,
    clock: Arc<HlcClock>,
    cfg: ReaperConfig,
    stats: Arc<ReaperStats>,
}

impl Reaper {
    /// A reaper of `store`, whose tombstone ages are measured on `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<HlcClock>,
        cfg: ReaperConfig,
        stats: Arc<ReaperStats>,
    ) -> Self {
        Reaper {
            store,
            clock,
            cfg,
            stats,
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<ReaperStats> {
        &self.stats
    }

    /// Tombstones last written before this are old enough to go.
    fn horizon(&self) -> Hlc {
        let wall = self.clock.wall_millis();
        Hlc::new(wall.saturating_sub(self.cfg.grace.as_millis() as u64), 0)
    }

    fn limit(&self) -> usize {
        self.cfg.page.clamp(1, self.store.limits().max_scan)
    }

    async fn position(&self, at: Keyspace) -> Result<Option<Key>, StoreError> {
        Ok(self
            .store
            .get(&at.key().finish())
            .await?
            .and_then(|v| v.value)
            .map(Key))
    }

    async fn save(&self, at: Keyspace, to: Option<&Key>) -> Result<(), StoreError> {
        let key = at.key().finish();
        match to {
            Some(k) => self.store.put(&key, k.0.clone()).await.map(drop),
            None => self.store.delete(&key).await.map(drop),
        }
    }

    /// One pass of at most `pages` pages, while `allowed()` says collection may go on.
    pub async fn pass(&self, allowed: impl Fn() -> bool) -> Result<ReaperPass, StoreError> {
        let started = std::time::Instant::now();
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        let mode = self.store.tombstone_index();
        let report = match mode {
            TombstoneIndex::Complete => self.collect_index(&allowed).await?,
            TombstoneIndex::Partial => self.sweep(&allowed, BACKFILL, true).await?,
            TombstoneIndex::Absent => self.sweep(&allowed, POSITION, false).await?,
        };
        self.stats
            .scanned
            .fetch_add(report.scanned, Ordering::Relaxed);
        self.stats
            .collected
            .fetch_add(report.collected, Ordering::Relaxed);
        self.stats.mode.store(
            match mode {
                TombstoneIndex::Complete => 0,
                TombstoneIndex::Partial => 1,
                TombstoneIndex::Absent => 2,
            },
            Ordering::Relaxed,
        );
        if mode != TombstoneIndex::Absent {
            let oldest = self.store.tombstones(Hlc(u64::MAX), 1).await?;
            let age = oldest.first().map_or(0, |t| {
                self.clock
                    .wall_millis()
                    .saturating_sub(t.hlc.millis())
                    .max(1)
            });
            self.stats.oldest_ms.store(age, Ordering::Relaxed);
            let len = self.store.tombstone_index_len().unwrap_or(0);
            self.stats.index_len.store(len, Ordering::Relaxed);
        }
        self.stats
            .last_pass_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// Consumes the tombstone index up to the horizon, a page at a time.
    async fn collect_index(&self, allowed: impl Fn() -> bool) -> Result<ReaperPass, StoreError> {
        let mut report = ReaperPass::default();
        let horizon = self.horizon();
        self.stats.position_ppm.store(0, Ordering::Relaxed);
        for page in 0..self.cfg.pages.max(1) {
            if !allowed() {
                if page == 0 {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(report);
            }
            let Some(c) = self.store.collect_indexed(horizon, self.limit()).await? else {
                return Ok(report);
            };
            self.stats.pages.fetch_add(1, Ordering::Relaxed);
            self.stats.stale.fetch_add(c.stale, Ordering::Relaxed);
            report.scanned += c.read;
            report.collected += c.purged;
            if !c.more {
                report.wrapped = true;
                return Ok(report);
            }
        }
        report.behind = true;
        self.stats.behind.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// Sweeps every record from the position kept at `at`, collecting the old tombstones;
    /// with `backfill`, indexing the others, and at the end of the key space marking the index
    /// complete (the backfill indexes while collection waits).
    async fn sweep(
        &self,
        allowed: impl Fn() -> bool,
        at: Keyspace,
        backfill: bool,
    ) -> Result<ReaperPass, StoreError> {
        let mut report = ReaperPass::default();
        let from = self.position(at).await?;
        let mut after = from.clone();
        let limit = self.limit();
        for page in 0..self.cfg.pages.max(1) {
            let collect = allowed();
            if !collect {
                if page == 0 {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                if !backfill {
                    break;
                }
            }
            let page = self
                .store
                .scan(&ScanRequest {
                    prefix: Key::from(""),
                    after: after.clone(),
                    limit,
                    reverse: false,
                    include_tombstones: true,
                })
                .await?;
            self.stats.pages.fetch_add(1, Ordering::Relaxed);
            report.scanned += page.items.len() as u64;
            let dead: Vec<Key> = page
                .items
                .into_iter()
                .filter(|(_, v)| v.value.is_none())
                .map(|(k, _)| k)
                .collect();
            let mut young = dead;
            if collect && !young.is_empty() {
                let (n, left) = self.store.purge(&young, self.horizon()).await?;
                report.collected += n;
                young = left;
            }
            if backfill && !young.is_empty() {
                let n = self.store.index_tombstones(&young).await?;
                self.stats.backfilled.fetch_add(n, Ordering::Relaxed);
            }
            after = page.next;
            if after.is_none() {
                report.wrapped = true;
                break;
            }
        }
        // The position key is itself a local record: skipping over it is harmless. Deleting it
        // leaves a tombstone, collected as any other.
        if after != from {
            self.save(at, after.as_ref()).await?;
        }
        if report.wrapped && backfill {
            self.store.tombstones_indexed().await?;
            if self.position(POSITION).await?.is_some() {
                self.save(POSITION, None).await?;
            }
            tracing::info!("tombstone index backfilled: the reaper now reads it alone");
        }
        if report.wrapped {
            self.stats.sweeps.fetch_add(1, Ordering::Relaxed);
        }
        let ppm = after.as_ref().map_or(0, |k| {
            let mut b = [0u8; 4];
            let n = k.as_bytes().len().min(4);
            b[..n].copy_from_slice(&k.as_bytes()[..n]);
            u64::from(u32::from_be_bytes(b)) * 1_000_000 / (u64::from(u32::MAX) + 1)
        });
        self.stats.position_ppm.store(ppm, Ordering::Relaxed);
        Ok(report)
    }

    /// A pass of the sweep of every record whatever index the store keeps (the path before
    /// the tombstone index, and still a store's without one): only to measure against
    /// (`gossip/benches/reaper.rs`).
    #[doc(hidden)]
    pub async fn sweep_pass(&self, allowed: impl Fn() -> bool) -> Result<ReaperPass, StoreError> {
        self.sweep(allowed, POSITION, false).await
    }

    /// Runs a pass every `interval` (after [`BEHIND_PAUSE`] while passes stop behind) until
    /// `shutdown` turns true, while `allowed()` says so.
    pub async fn run(
        self,
        interval: Duration,
        allowed: impl Fn() -> bool + Send + Sync,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut wait = interval;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let pass = self.pass(&allowed).await;
            if let Err(e) = &pass {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "collecting tombstones failed");
            }
            wait = next_wait(pass.as_ref().ok(), interval);
        }
    }
}

/// The wait before the pass after `pass` (`None`: it failed): [`BEHIND_PAUSE`] after one left
/// behind, else the interval.
fn next_wait(pass: Option<&ReaperPass>, interval: Duration) -> Duration {
    match pass {
        Some(p) if p.behind => BEHIND_PAUSE.min(interval),
        _ => interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use starling_store::{
        EmbeddedOptions, Limits, Mutation, NodeId, RegionId, forget_tombstone_index, open_embedded,
        open_memory,
    };

    fn cfg(page: usize, pages: usize) -> ReaperConfig {
        ReaperConfig {
            grace: Duration::ZERO,
            page,
            pages,
        }
    }

    fn key(i: u64) -> Key {
        Key::from(format!("k{i:05}").as_str())
    }

    /// `n` records, every `every`-th deleted, written in batches.
    async fn fill_every(s: &Arc<dyn Store>, n: u64, every: u64) {
        let ids: Vec<u64> = (0..n).collect();
        for chunk in ids.chunks(1000) {
            let puts: Vec<_> = chunk
                .iter()
                .map(|&i| (key(i), Mutation::Put(Bytes::from_static(b"v"))))
                .collect();
            s.mutate_many(&puts).await.unwrap();
            let dels: Vec<_> = chunk
                .iter()
                .filter(|&&i| i % every == 0)
                .map(|&i| (key(i), Mutation::Delete))
                .collect();
            s.mutate_many(&dels).await.unwrap();
        }
    }

    async fn fill(s: &Arc<dyn Store>, n: u64) {
        fill_every(s, n, 2).await;
    }

    fn memory(clock: &Arc<HlcClock>) -> Arc<dyn Store> {
        open_memory(
            NodeId::new(RegionId(1), 1),
            clock.clone(),
            Limits::default(),
        )
    }

    /// Waits until the clock's wall is past every write so far (a zero grace then covers them).
    async fn past(clock: &HlcClock) {
        let now = clock.now().millis();
        while clock.wall_millis() <= now {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The key test: 10 000 live records and 10 tombstones, one pass reads the 10 (an index
    /// entry and its record each), not the store. The old full-scan reaper read all 10 010.
    #[tokio::test]
    async fn a_pass_reads_only_the_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(HlcClock::new());
        let embedded = open_embedded(
            NodeId::new(RegionId(1), 1),
            clock.clone(),
            &EmbeddedOptions::new(dir.path()),
        )
        .unwrap();
        for s in [memory(&clock), embedded] {
            fill_every(&s, 10_000, 1000).await;
            past(&clock).await;
            let r = Reaper::new(s.clone(), clock.clone(), cfg(100, 200), Arc::default());
            let p = r.pass(|| true).await.unwrap();
            assert_eq!(p.collected, 10);
            assert!(
                p.scanned <= 20,
                "read {} records for 10 tombstones",
                p.scanned
            );
            assert!(p.wrapped, "stopped at the horizon");
            assert_eq!(r.pass(|| true).await.unwrap().scanned, 0, "nothing left");
            for i in (0..10_000).step_by(1000) {
                assert_eq!(s.get_record(&key(i)).await.unwrap(), None);
                assert!(s.get_record(&key(i + 1)).await.unwrap().is_some());
            }
            assert_eq!(r.stats().mode.load(Ordering::Relaxed), 0, "from the index");
            assert_eq!(r.stats().oldest_ms.load(Ordering::Relaxed), 0);
        }
    }

    #[tokio::test]
    async fn index_passes_are_bounded_and_consume_in_order() {
        let clock = Arc::new(HlcClock::new());
        let s = memory(&clock);
        fill(&s, 100).await;
        past(&clock).await;
        let r = Reaper::new(s.clone(), clock, cfg(10, 3), Arc::default());
        let first = r.pass(|| true).await.unwrap();
        assert_eq!(
            (first.scanned, first.collected),
            (30, 30),
            "three pages of ten"
        );
        assert!(!first.wrapped);
        assert!(
            first.behind,
            "stopped at its page limit with due tombstones left"
        );
        let second = r.pass(|| true).await.unwrap();
        assert_eq!((second.collected, second.wrapped), (20, true));
        assert!(!second.behind);
        assert_eq!(r.stats().behind.load(Ordering::Relaxed), 1);
        for i in 0..100u64 {
            let rec = s.get_record(&key(i)).await.unwrap();
            assert_eq!(rec.is_some(), i % 2 == 1, "key {i}");
        }
        assert_eq!(r.stats().collected.load(Ordering::Relaxed), 50);
        assert_eq!(r.stats().pages.load(Ordering::Relaxed), 6);
        assert_eq!(s.tombstone_index_len(), Some(0));
    }

    /// A pass left behind is followed a second later, any other after the interval: the page
    /// limit bounds a pass, not the rate of collection.
    #[test]
    fn a_pass_left_behind_is_followed_within_a_second() {
        let hour = Duration::from_secs(3600);
        let behind = ReaperPass {
            behind: true,
            ..ReaperPass::default()
        };
        let done = ReaperPass {
            wrapped: true,
            ..ReaperPass::default()
        };
        assert_eq!(next_wait(Some(&behind), hour), BEHIND_PAUSE);
        assert_eq!(next_wait(Some(&done), hour), hour);
        assert_eq!(next_wait(Some(&ReaperPass::default()), hour), hour);
        assert_eq!(next_wait(None, hour), hour, "a failure waits the interval");
        let short = Duration::from_millis(200);
        assert_eq!(next_wait(Some(&behind), short), short);
    }

    #[tokio::test]
    async fn young_tombstones_wait_and_unsettled_clusters_collect_nothing() {
        let clock = Arc::new(HlcClock::new());
        let s = memory(&clock);
        fill(&s, 20).await;
        let mut young = cfg(100, 1);
        young.grace = Duration::from_secs(3600);
        let r = Reaper::new(s.clone(), clock.clone(), young, Arc::default());
        let p = r.pass(|| true).await.unwrap();
        assert_eq!((p.scanned, p.collected), (0, 0), "none is due: none read");
        assert_eq!(r.stats().index_len.load(Ordering::Relaxed), 10);
        assert!(r.stats().oldest_ms.load(Ordering::Relaxed) > 0);
        past(&clock).await;
        let r = Reaper::new(s.clone(), clock, cfg(100, 1), Arc::default());
        let p = r.pass(|| false).await.unwrap();
        assert_eq!((p.scanned, p.collected), (0, 0));
        assert!(!p.behind, "an unsettled cluster waits the interval");
        assert_eq!(r.stats().skipped.load(Ordering::Relaxed), 1);
        assert_eq!(s.tombstone_index_len(), Some(10));
        assert_eq!(r.pass(|| true).await.unwrap().collected, 10, "once settled");
    }

    /// The path of a store without an index: a bounded sweep from a position.
    #[tokio::test]
    async fn sweeps_are_bounded_and_collect_every_old_tombstone() {
        let clock = Arc::new(HlcClock::new());
        let s = memory(&clock);
        fill(&s, 100).await;
        past(&clock).await;
        let r = Reaper::new(s.clone(), clock, cfg(10, 3), Arc::default());
        let first = r.sweep(|| true, POSITION, false).await.unwrap();
        assert_eq!(first.scanned, 30, "three pages of ten");
        assert_eq!(first.collected, 15);
        assert!(!first.wrapped);
        let mut total = first.collected;
        let mut passes = 1;
        loop {
            let p = r.sweep(|| true, POSITION, false).await.unwrap();
            assert!(p.scanned <= 30);
            total += p.collected;
            passes += 1;
            if p.wrapped {
                break;
            }
        }
        assert_eq!(total, 50);
        assert_eq!(passes, 4);
        for i in 0..100u64 {
            let rec = s.get_record(&key(i)).await.unwrap();
            assert_eq!(rec.is_some(), i % 2 == 1, "key {i}");
        }
        assert_eq!(r.stats().sweeps.load(Ordering::Relaxed), 1);
    }

    /// Migration: a store written before the index (its entries and mark removed) is swept
    /// once, across a restart, indexing its young tombstones; then only the index is read.
    #[tokio::test]
    async fn an_old_store_is_backfilled_once_then_collected_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let opts = EmbeddedOptions::new(dir.path());
        let node = NodeId::new(RegionId(1), 1);
        let clock = Arc::new(HlcClock::new());
        let open = || open_embedded(node, clock.clone(), &opts).unwrap();
        let mut young = cfg(10, 2);
        young.grace = Duration::from_secs(3600);
        {
            let s = open();
            fill(&s, 60).await;
            s.close().await.unwrap();
        }
        forget_tombstone_index(&opts).unwrap();
        let stats = Arc::new(ReaperStats::default());
        {
            let s = open();
            assert_eq!(s.tombstone_index(), TombstoneIndex::Partial);
            assert_eq!(s.tombstones(Hlc(u64::MAX), 100).await.unwrap(), vec![]);
            let r = Reaper::new(s.clone(), clock.clone(), young.clone(), stats.clone());
            let p = r.pass(|| true).await.unwrap();
            assert_eq!((p.scanned, p.collected, p.wrapped), (20, 0, false));
            assert_eq!(stats.backfilled.load(Ordering::Relaxed), 10);
            assert_eq!(stats.mode.load(Ordering::Relaxed), 1);
            s.close().await.unwrap();
        }
        // After a restart the backfill goes on after k00019, an unsettled cluster included.
        let s = open();
        assert_eq!(s.tombstone_index(), TombstoneIndex::Partial);
        let r = Reaper::new(s.clone(), clock.clone(), young.clone(), stats.clone());
        let mut passes = 0;
        while s.tombstone_index() == TombstoneIndex::Partial {
            let p = r.pass(|| false).await.unwrap();
            assert_eq!(p.collected, 0);
            passes += 1;
            assert!(passes <= 3, "one sweep");
        }
        assert_eq!(stats.backfilled.load(Ordering::Relaxed), 30);
        let indexed = s.tombstones(Hlc(u64::MAX), 100).await.unwrap();
        let records: Vec<Key> = indexed
            .iter()
            .map(|t| t.key.clone())
            .filter(|k| !k.is_local())
            .collect();
        assert_eq!(records, (0..60).step_by(2).map(key).collect::<Vec<_>>());
        drop(r);
        s.close().await.unwrap();
        drop(s);
        // Complete across a restart; the next passes read the index alone.
        let s = open();
        assert_eq!(s.tombstone_index(), TombstoneIndex::Complete);
        past(&clock).await;
        let r = Reaper::new(s.clone(), clock.clone(), cfg(100, 1), stats.clone());
        let p = r.pass(|| true).await.unwrap();
        assert_eq!(p.collected, indexed.len() as u64, "every indexed tombstone");
        assert_eq!(p.scanned, p.collected, "no live record read");
        assert_eq!(stats.mode.load(Ordering::Relaxed), 0);
        for i in 0..60u64 {
            let rec = s.get_record(&key(i)).await.unwrap();
            assert_eq!(rec.is_some(), i % 2 == 1, "key {i}");
        }
    }
}
