//! The L2 role kept in process: timelines, post bodies and fan-out claims in bounded moka
//! caches that every [`crate::Feed`] given the same [`MemoryTier`] shares.
//!
//! It is what [`crate::redis_tier::RedisTier`] is for the nodes of a region, for the feeds of
//! one process (tests and embedders that run several nodes in one process): the same contract,
//! checked by the same conformance suite ([`crate::tier::conformance::run_regional`]). A
//! timeline expires when it has not been read or touched for the inactivity period, as in
//! Redis; a post body after its TTL; a claim after a day. The server does not build one: a node
//! without Redis runs on its L1 alone.

use crate::tier::{RegionalTier, TierError, TimelineStore};
use crate::timeline::Timeline;
use async_trait::async_trait;
use moka::sync::Cache;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Bounds of the in-process L2.
#[derive(Clone, Debug)]
pub struct MemorySettings {
    /// Bytes of timelines kept.
    pub timeline_bytes: u64,
    /// Entries per timeline.
    pub cap: usize,
    /// A timeline not read for this long expires.
    pub inactive_after: Duration,
    /// Post bodies kept.
    pub post_entries: u64,
    /// How long a cached post body lives.
    pub post_ttl: Duration,
    /// Fan-out claims kept (each lives a day).
    pub claim_entries: u64,
}

impl MemorySettings {
    /// Settings for timelines of `cap` entries in about `timeline_bytes`, 10 k post bodies
    /// living an hour, 100 k claims and a 30-day inactivity period.
    pub fn new(timeline_bytes: u64, cap: usize) -> Self {
        MemorySettings {
            timeline_bytes,
            cap,
            inactive_after: Duration::from_secs(30 * 86_400),
            post_entries: 10_000,
            post_ttl: Duration::from_secs(3600),
            claim_entries: 100_000,
        }
    }
}

/// The in-process L2. Cheap to clone; clones share the caches.
#[derive(Clone, Debug)]
pub struct MemoryTier {
    timelines: Cache<u64, Arc<Mutex<Timeline>>>,
    posts: Cache<u64, Arc<[u8]>>,
    claims: Cache<u64, u64>,
    cap: usize,
}

impl MemoryTier {
    /// An empty tier bounded by `settings`.
    pub fn new(settings: &MemorySettings) -> Self {
        // A full timeline: 16 bytes an entry, plus the cache's own bookkeeping.
        let weight = u32::try_from(settings.cap * 16 + 128).unwrap_or(u32::MAX);
        MemoryTier {
            timelines: Cache::builder()
                .max_capacity(settings.timeline_bytes)
                .weigher(move |_, _| weight)
                .time_to_idle(settings.inactive_after)
                .build(),
            posts: Cache::builder()
                .max_capacity(settings.post_entries)
                .time_to_live(settings.post_ttl)
                .build(),
            claims: Cache::builder()
                .max_capacity(settings.claim_entries)
                .time_to_live(Duration::from_secs(86_400))
                .build(),
            cap: settings.cap,
        }
    }

    /// Timelines, post bodies and claims held (approximate, for metrics).
    pub fn entries(&self) -> (u64, u64, u64) {
        (
            self.timelines.entry_count(),
            self.posts.entry_count(),
            self.claims.entry_count(),
        )
    }
}

#[async_trait]
impl TimelineStore for MemoryTier {
    async fn load(&self, user: u64) -> Result<Option<Timeline>, TierError> {
        Ok(self.timelines.get(&user).map(|t| t.lock().clone()))
    }

    async fn save(&self, user: u64, t: &Timeline) -> Result<(), TierError> {
        self.timelines.insert(user, Arc::new(Mutex::new(t.clone())));
        Ok(())
    }

    async fn insert(&self, users: &[u64], post: u64, author: u64) -> Result<usize, TierError> {
        let mut took = 0;
        for u in users {
            if let Some(t) = self.timelines.get(u)
                && t.lock().insert(post, author, self.cap)
            {
                took += 1;
            }
        }
        Ok(took)
    }

    async fn raise_floor(&self, user: u64, floor: u64) -> Result<(), TierError> {
        if let Some(t) = self.timelines.get(&user) {
            let mut t = t.lock();
            t.floor = t.floor.max(floor);
        }
        Ok(())
    }

    async fn remove_author(&self, user: u64, author: u64) -> Result<(), TierError> {
        if let Some(t) = self.timelines.get(&user) {
            t.lock().remove_author(author);
        }
        Ok(())
    }

    async fn forget(&self, user: u64) -> Result<(), TierError> {
        self.timelines.invalidate(&user);
        Ok(())
    }
}

#[async_trait]
impl RegionalTier for MemoryTier {
    /// Always: nothing between the feed and this tier can fail.
    fn is_healthy(&self) -> bool {
        true
    }

    async fn claim_fan_out(&self, post: u64, node: u64) -> Result<bool, TierError> {
        let owner = self.claims.entry(post).or_insert(node).into_value();
        Ok(owner == node)
    }

    async fn touch(&self, user: u64) -> Result<(), TierError> {
        // A read resets the idle expiry.
        let _ = self.timelines.get(&user);
        Ok(())
    }

    async fn posts(&self, ids: &[u64]) -> Result<Vec<Option<Vec<u8>>>, TierError> {
        Ok(ids
            .iter()
            .map(|i| self.posts.get(i).map(|b| b.to_vec()))
            .collect())
    }

    async fn put_posts(&self, bodies: &[(u64, Vec<u8>)]) -> Result<(), TierError> {
        for (id, body) in bodies {
            self.posts.insert(*id, Arc::from(body.as_slice()));
        }
        Ok(())
    }

    async fn forget_post(&self, id: u64) -> Result<(), TierError> {
        self.posts.invalidate(&id);
        Ok(())
    }

    /// Nothing to watch: returns when `shutdown` turns true.
    async fn watch_health(&self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    }
}
