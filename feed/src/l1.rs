//! The in-process timeline tier (L1): a moka cache of timelines bounded in bytes, each behind
//! its own small lock, plus what the read path needs beside the entries (followed large
//! accounts, last read, whether a rebuild is running).
//!
//! A timeline missing here is not an error: it was never built, was evicted, or belonged to an
//! inactive user; the read path loads it from L2 or rebuilds it.

use crate::recent::Recent;
use crate::tier::{TierError, TimelineStore};
use crate::timeline::Timeline;
use async_trait::async_trait;
use moka::sync::Cache;
use parking_lot::Mutex;
use std::sync::Arc;

/// One cached timeline and its read-side state.
#[derive(Debug, Default)]
pub struct Slot {
    /// The entries and floor.
    pub timeline: Timeline,
    /// Followed accounts above the celebrity threshold, pulled at read time.
    pub celebs: Vec<u64>,
    /// The recent-post lists of `celebs` the last read used, in the same order (checked for
    /// currency before use, see [`crate::recent`]).
    pub(crate) lists: Vec<(u64, Arc<Recent>)>,
    /// Last feed read, ms since the epoch.
    pub last_read_ms: u64,
    /// A rebuild is filling this timeline; pages are partial until it ends.
    pub building: bool,
    /// Last time the L2 copy's expiry was pushed back, ms since the epoch.
    pub l2_touched_ms: u64,
    /// The posts reposted into this timeline by fan-out, each with the entry of its repost
    /// (original → repost id): a second repost of one post is not inserted. Bounded like the
    /// timeline: entries that left it are pruned when this outgrows the cap.
    pub reposted: std::collections::HashMap<u64, u64>,
}

impl Slot {
    /// Inserts the repost `repost` of post `original` by `reposter` unless the timeline already
    /// holds the original or another repost of it; returns whether it was inserted.
    pub fn insert_repost(&mut self, repost: u64, original: u64, reposter: u64, cap: usize) -> bool {
        let t = &self.timeline;
        if t.contains(original) || self.reposted.get(&original).is_some_and(|r| t.contains(*r)) {
            return false;
        }
        if !self.timeline.insert(repost, reposter, cap) {
            if self.timeline.contains(repost) {
                // Already there (placed by a rebuild): it is the one repost of the original.
                self.reposted.insert(original, repost);
            }
            return false;
        }
        self.reposted.insert(original, repost);
        if self.reposted.len() > cap {
            let t = &self.timeline;
            self.reposted.retain(|_, r| t.contains(*r));
        }
        true
    }
}

/// A shared slot.
pub type SlotRef = Arc<Mutex<Slot>>;

/// The L1 timeline cache.
#[derive(Clone, Debug)]
pub struct LocalTimelines {
    cache: Cache<u64, SlotRef>,
    cap: usize,
}

impl LocalTimelines {
    /// A cache holding about `bytes` of timelines of at most `cap` entries each.
    pub fn new(bytes: u64, cap: usize) -> Self {
        Self::with_ttl(bytes, cap, None)
    }

    /// The same, each timeline dropped `ttl` after it was built, if given (several nodes derive
    /// the region's timelines: see [`crate::FeedConfig::shared_ttl`]).
    pub fn with_ttl(bytes: u64, cap: usize, ttl: Option<std::time::Duration>) -> Self {
        // A full timeline: 16 bytes an entry and up to 16 more for its repost mark, plus the
        // slot and the cache's own bookkeeping.
        let weight = u32::try_from(cap * 32 + 256).unwrap_or(u32::MAX);
        let mut cache = Cache::builder()
            .max_capacity(bytes)
            .weigher(move |_, _| weight);
        if let Some(ttl) = ttl {
            cache = cache.time_to_live(ttl);
        }
        LocalTimelines {
            cache: cache.build(),
            cap,
        }
    }

    /// The slot of `user`, if cached.
    pub fn slot(&self, user: u64) -> Option<SlotRef> {
        self.cache.get(&user)
    }

    /// The slot of `user`, created empty by `init` if missing; `true` when this call created it.
    pub fn slot_or_insert(&self, user: u64, init: impl FnOnce() -> Slot) -> (SlotRef, bool) {
        let entry = self
            .cache
            .entry(user)
            .or_insert_with(|| Arc::new(Mutex::new(init())));
        let fresh = entry.is_fresh();
        (entry.into_value(), fresh)
    }

    /// Drops a timeline (inactive owner, or a failed rebuild).
    pub fn evict(&self, user: u64) {
        self.cache.invalidate(&user);
    }

    /// Drops every timeline (another node's batch changed too many to list).
    pub fn evict_all(&self) {
        self.cache.invalidate_all();
    }

    /// The owners of the cached timelines (a snapshot, as many as the cache's bound allows).
    pub fn users(&self) -> Vec<u64> {
        self.cache.iter().map(|(user, _)| *user).collect()
    }

    /// The entry cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Timelines held (approximate, for metrics).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Whether no timeline is held (approximate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl TimelineStore for LocalTimelines {
    async fn load(&self, user: u64) -> Result<Option<Timeline>, TierError> {
        Ok(self.slot(user).map(|s| s.lock().timeline.clone()))
    }

    async fn save(&self, user: u64, t: &Timeline) -> Result<(), TierError> {
        let (slot, _) = self.slot_or_insert(user, Slot::default);
        slot.lock().timeline = t.clone();
        Ok(())
    }

    async fn insert(&self, users: &[u64], post: u64, author: u64) -> Result<usize, TierError> {
        let mut took = 0;
        for u in users {
            if let Some(slot) = self.slot(*u)
                && slot.lock().timeline.insert(post, author, self.cap)
            {
                took += 1;
            }
        }
        Ok(took)
    }

    async fn raise_floor(&self, user: u64, floor: u64) -> Result<(), TierError> {
        if let Some(slot) = self.slot(user) {
            let mut s = slot.lock();
            let t = &mut s.timeline;
            if floor > t.floor {
                t.floor = floor;
            }
        }
        Ok(())
    }

    async fn remove_author(&self, user: u64, author: u64) -> Result<(), TierError> {
        if let Some(slot) = self.slot(user) {
            slot.lock().timeline.remove_author(author);
        }
        Ok(())
    }

    async fn forget(&self, user: u64) -> Result<(), TierError> {
        self.evict(user);
        Ok(())
    }
}
