//! The tombstone reaper: collects deleted records once every replica has them, beside the
//! gossip core, never on its loop.
//!
//! A pass reads at most `gc_pages` pages of `gc_page` records from a position saved in the
//! store (node-local key `gr`), so after a restart the sweep goes on where it stopped, and
//! removes the tombstones among them that are older than the grace period
//! ([`Store::purge`], which re-checks each under its key's lock). At the end of the key space
//! it starts over. Nothing is held between pages but the position: the memory a pass uses is
//! one page, whatever the data.
//!
//! The rule is the one the core has always applied: collect only after every known member has
//! been alive, with none joining or returning, for a whole grace period (time for anti-entropy
//! to bring each of them every tombstone), and only tombstones older than the grace. The core
//! says whether that holds ([`crate::GossipNode::collectable`]); the reaper asks before each
//! page, so a member going down stops a pass within a page.

use starling_store::{Hlc, HlcClock, Key, Keyspace, ScanRequest, Store, StoreError, StoreExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Node-local: the key the sweep continues after (absent: from the start).
const POSITION: Keyspace = Keyspace::local("gr");

/// What the reaper reports (`/metrics`).
#[derive(Debug, Default)]
pub struct ReaperStats {
    /// Passes run (collection allowed or not).
    pub passes: AtomicU64,
    /// Passes skipped because the membership was not settled.
    pub skipped: AtomicU64,
    /// Tombstones collected since start.
    pub collected: AtomicU64,
    /// Records read since start.
    pub scanned: AtomicU64,
    /// Sweeps of the whole key space finished since start.
    pub sweeps: AtomicU64,
    /// How long the last pass took, in microseconds.
    pub last_pass_us: AtomicU64,
    /// Passes that failed (a store error; logged).
    pub failures: AtomicU64,
    /// The position as a fraction of the key space, in millionths (its first 4 bytes read as a
    /// big-endian number): how far the sweep is.
    pub position_ppm: AtomicU64,
}

/// The outcome of one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaperPass {
    /// Records read.
    pub scanned: u64,
    /// Tombstones removed.
    pub collected: u64,
    /// The sweep reached the end of the key space (the next pass starts over).
    pub wrapped: bool,
}

/// Settings of a reaper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaperConfig {
    /// Age after which a tombstone may be collected.
    pub grace: Duration,
    /// Records read per page (at most the store's scan limit).
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

    async fn position(&self) -> Result<Option<Key>, StoreError> {
        Ok(self
            .store
            .get(&POSITION.key().finish())
            .await?
            .and_then(|v| v.value)
            .map(Key))
    }

    async fn save(&self, at: Option<&Key>) -> Result<(), StoreError> {
        let key = POSITION.key().finish();
        match at {
            Some(k) => self.store.put(&key, k.0.clone()).await.map(drop),
            None => self.store.delete(&key).await.map(drop),
        }
    }

    /// One pass of at most `pages` pages, while `allowed()` says collection may go on.
    pub async fn pass(&self, allowed: impl Fn() -> bool) -> Result<ReaperPass, StoreError> {
        let started = std::time::Instant::now();
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        let mut report = ReaperPass::default();
        let mut after = self.position().await?;
        let limit = self.cfg.page.clamp(1, self.store.limits().max_scan);
        for _ in 0..self.cfg.pages.max(1) {
            if !allowed() {
                if report.scanned == 0 {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                break;
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
            report.scanned += page.items.len() as u64;
            let dead: Vec<Key> = page
                .items
                .into_iter()
                .filter(|(_, v)| v.value.is_none())
                .map(|(k, _)| k)
                .collect();
            if !dead.is_empty() {
                let (n, _young) = self.store.purge(&dead, self.horizon()).await?;
                report.collected += n;
            }
            after = page.next;
            if after.is_none() {
                report.wrapped = true;
                break;
            }
        }
        // The position key is itself a local record: skipping over it is harmless.
        self.save(after.as_ref()).await?;
        self.stats
            .scanned
            .fetch_add(report.scanned, Ordering::Relaxed);
        self.stats
            .collected
            .fetch_add(report.collected, Ordering::Relaxed);
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
        self.stats
            .last_pass_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// Runs a pass every `interval` until `shutdown` turns true, while `allowed()` says so.
    pub async fn run(
        self,
        interval: Duration,
        allowed: impl Fn() -> bool + Send + Sync,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = self.pass(&allowed).await {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "collecting tombstones failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use starling_store::{Limits, NodeId, RegionId, open_embedded, open_memory};

    fn cfg(page: usize, pages: usize) -> ReaperConfig {
        ReaperConfig {
            grace: Duration::ZERO,
            page,
            pages,
        }
    }

    async fn fill(s: &Arc<dyn Store>, n: u64) {
        for i in 0..n {
            let k = Key::from(format!("k{i:04}").as_str());
            s.put(&k, Bytes::from_static(b"v")).await.unwrap();
            if i % 2 == 0 {
                s.delete(&k).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn passes_are_bounded_and_a_sweep_collects_every_old_tombstone() {
        let clock = Arc::new(HlcClock::new());
        let s = open_memory(
            NodeId::new(RegionId(1), 1),
            clock.clone(),
            Limits::default(),
        );
        fill(&s, 100).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = Reaper::new(s.clone(), clock, cfg(10, 3), Arc::default());
        let first = r.pass(|| true).await.unwrap();
        assert_eq!(first.scanned, 30, "three pages of ten");
        assert_eq!(first.collected, 15);
        assert!(!first.wrapped);
        let mut total = first.collected;
        let mut passes = 1;
        loop {
            let p = r.pass(|| true).await.unwrap();
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
            let rec = s
                .get_record(&Key::from(format!("k{i:04}").as_str()))
                .await
                .unwrap();
            assert_eq!(rec.is_some(), i % 2 == 1, "key {i}");
        }
        assert_eq!(r.stats().sweeps.load(Ordering::Relaxed), 1);
        assert_eq!(r.stats().collected.load(Ordering::Relaxed), 50);
    }

    #[tokio::test]
    async fn young_tombstones_and_unsettled_clusters_keep_their_tombstones() {
        let clock = Arc::new(HlcClock::new());
        let s = open_memory(
            NodeId::new(RegionId(1), 1),
            clock.clone(),
            Limits::default(),
        );
        fill(&s, 20).await;
        let mut young = cfg(100, 1);
        young.grace = Duration::from_secs(3600);
        let r = Reaper::new(s.clone(), clock.clone(), young, Arc::default());
        assert_eq!(r.pass(|| true).await.unwrap().collected, 0);
        let r = Reaper::new(s.clone(), clock, cfg(100, 1), Arc::default());
        let p = r.pass(|| false).await.unwrap();
        assert_eq!((p.scanned, p.collected), (0, 0));
        assert_eq!(r.stats().skipped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_position_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let opts = starling_store::EmbeddedOptions::new(dir.path());
        let node = NodeId::new(RegionId(1), 1);
        let open = |c: &Arc<HlcClock>| open_embedded(node, c.clone(), &opts).unwrap();
        let clock = Arc::new(HlcClock::new());
        {
            let s = open(&clock);
            fill(&s, 60).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let r = Reaper::new(s.clone(), clock.clone(), cfg(10, 2), Arc::default());
            assert_eq!(r.pass(|| true).await.unwrap().collected, 10);
            s.close().await.unwrap();
        }
        let s = open(&clock);
        let r = Reaper::new(s.clone(), clock, cfg(10, 2), Arc::default());
        let p = r.pass(|| true).await.unwrap();
        // It went on after k0019: keys k0020..k0039 (the first 20 are gone or live).
        assert_eq!(p.collected, 10);
        assert!(
            s.get_record(&Key::from("k0000")).await.unwrap().is_none(),
            "collected before the restart"
        );
        assert!(
            s.get_record(&Key::from("k0040")).await.unwrap().is_some(),
            "not reached yet"
        );
    }
}
