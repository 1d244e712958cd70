//! The in-process timeline tier (L1): a bounded cache of timelines, each behind its own small
//! lock, plus what the read path needs beside the entries (followed large accounts, last read,
//! whether a rebuild is running).
//!
//! Every feed read looks its slot up: the cache is `quick_cache` (a hit: a shard's read lock, a
//! foldhash of the id, a bit set), not moka (a hit: a clock read, a read recorded in a channel,
//! an epoch pinned, housekeeping now and then), as for the per-item caches
//! ([`crate::ttl_cache`]). Bounded in bytes by counting slots: every slot is charged what a full
//! timeline costs, so `bytes / that` slots at most ([`LocalTimelines::len`] feeds the gauge).
//!
//! A timeline missing here is not an error: it was never built, was evicted, or belonged to an
//! inactive user; the read path loads it from L2 or rebuilds it.

use crate::recent::Recent;
use crate::tier::{TierError, TimelineStore};
use crate::timeline::Timeline;
use async_trait::async_trait;
use parking_lot::Mutex;
use quick_cache::UnitWeighter;
use quick_cache::sync::Cache;
use std::sync::Arc;
use std::time::Instant;

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

/// A cached slot and when it was made (ms since the cache was: for the TTL).
#[derive(Clone, Debug)]
struct Held {
    slot: SlotRef,
    made_ms: u64,
}

/// The L1 timeline cache. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LocalTimelines {
    cache: Arc<Cache<u64, Held, UnitWeighter, foldhash::fast::RandomState>>,
    start: Instant,
    ttl_ms: Option<u64>,
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
        let weight = u64::try_from(cap)
            .unwrap_or(u64::MAX / 64)
            .saturating_mul(32)
            + 256;
        let slots = (bytes / weight).max(1);
        LocalTimelines {
            cache: Arc::new(Cache::with(
                usize::try_from(slots).unwrap_or(usize::MAX),
                slots,
                UnitWeighter,
                foldhash::fast::RandomState::default(),
                Default::default(),
            )),
            start: Instant::now(),
            ttl_ms: ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            cap,
        }
    }

    /// Milliseconds since the cache was made (read only where a TTL is set).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The slot of `user`, if cached (and not older than the TTL: an expired one is dropped).
    pub fn slot(&self, user: u64) -> Option<SlotRef> {
        let held = self.cache.get(&user)?;
        if let Some(ttl) = self.ttl_ms
            && self.now_ms().saturating_sub(held.made_ms) >= ttl
        {
            self.cache
                .remove_if(&user, |h| Arc::ptr_eq(&h.slot, &held.slot));
            return None;
        }
        Some(held.slot)
    }

    /// The slot of `user`, created empty by `init` if missing; `true` when this call created it.
    pub fn slot_or_insert(&self, user: u64, init: impl FnOnce() -> Slot) -> (SlotRef, bool) {
        if let Some(slot) = self.slot(user) {
            return (slot, false);
        }
        let made_ms = if self.ttl_ms.is_some() {
            self.now_ms()
        } else {
            0
        };
        let mut fresh = false;
        // Concurrent callers for one user wait for the first one's slot (quick_cache's guard).
        let made = self.cache.get_or_insert_with(&user, || {
            fresh = true;
            Ok::<_, std::convert::Infallible>(Held {
                slot: Arc::new(Mutex::new(init())),
                made_ms,
            })
        });
        let Ok(held) = made;
        (held.slot, fresh)
    }

    /// Drops a timeline (inactive owner, or a failed rebuild).
    pub fn evict(&self, user: u64) {
        self.cache.remove(&user);
    }

    /// Drops every timeline (another node's batch changed too many to list).
    pub fn evict_all(&self) {
        self.cache.clear();
    }

    /// The owners of the cached timelines (a snapshot, as many as the cache's bound allows).
    pub fn users(&self) -> Vec<u64> {
        self.cache.iter().map(|(user, _)| user).collect()
    }

    /// The entry cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Timelines held (for metrics).
    pub fn len(&self) -> u64 {
        u64::try_from(self.cache.len()).unwrap_or(u64::MAX)
    }

    /// Whether no timeline is held.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_made_once_bounded_and_dropped() {
        // 384 bytes a slot (cap 4): 10 slots at most.
        let l1 = LocalTimelines::new(3840, 4);
        let (a, fresh) = l1.slot_or_insert(1, Slot::default);
        assert!(fresh);
        let (b, fresh) = l1.slot_or_insert(1, || panic!("not made twice"));
        assert!(!fresh && Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&l1.slot(1).unwrap(), &a));
        assert_eq!(l1.users(), vec![1]);
        for u in 2..1000 {
            l1.slot_or_insert(u, Slot::default);
        }
        assert!(l1.len() <= 10, "{}", l1.len());
        l1.evict_all();
        assert!(l1.is_empty());
        l1.slot_or_insert(5, Slot::default);
        l1.evict(5);
        assert!(l1.slot(5).is_none());
    }

    #[test]
    fn an_expired_slot_is_missing_and_made_again() {
        let l1 = LocalTimelines::with_ttl(1 << 20, 4, Some(std::time::Duration::ZERO));
        let (a, fresh) = l1.slot_or_insert(1, Slot::default);
        assert!(fresh);
        assert!(l1.slot(1).is_none(), "expired at once");
        let (b, fresh) = l1.slot_or_insert(1, Slot::default);
        assert!(fresh && !Arc::ptr_eq(&a, &b));
        let kept = LocalTimelines::with_ttl(1 << 20, 4, Some(std::time::Duration::from_secs(3600)));
        let (a, _) = kept.slot_or_insert(1, Slot::default);
        assert!(Arc::ptr_eq(&kept.slot(1).unwrap(), &a));
    }
}
