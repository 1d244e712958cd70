//! A bounded in-process map by id whose entries expire: what the post cache
//! ([`crate::hydrate`]) and the summary cache ([`crate::authors`]) are made of.
//!
//! A hydrated feed page looks up some fifty post bodies and author summaries; moka's `get`
//! reads the clock, records the read in a channel and pins an epoch each time, and profiling
//! the feed read put moka at a third of the server's CPU. This is `quick_cache` (sharded
//! read-write locks over hash tables, CLOCK-style eviction: a hit takes a shard's read lock and
//! sets a bit; ids hashed with foldhash, not SipHash), each value stamped with when it was read;
//! a batch reads the clock once ([`TtlCache::now`]) and treats an entry older than the TTL as
//! missing. An expired entry stays until it is replaced or evicted: the bound holds either way.
//!
//! Bounded at the capacity it is made with (entries); [`TtlCache::len`] feeds the gauges.

use quick_cache::UnitWeighter;
use quick_cache::sync::Cache;
use std::time::{Duration, Instant};

/// Milliseconds since the cache was made: when a batch started ([`TtlCache::now`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(u64);

/// The map (see the module's documentation).
#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    entries: Cache<u64, (V, Stamp), UnitWeighter, foldhash::fast::RandomState>,
    start: Instant,
    ttl_ms: u64,
}

impl<V: Clone> TtlCache<V> {
    /// At most `capacity` entries, each answered for `ttl` after it was read.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        TtlCache {
            entries: Cache::with(
                usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
                capacity.max(1),
                UnitWeighter,
                foldhash::fast::RandomState::default(),
                Default::default(),
            ),
            start: Instant::now(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The time now: read once per batch, passed to its lookups and inserts.
    pub(crate) fn now(&self) -> Stamp {
        Stamp(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The value of `id`, unless missing or read more than the TTL before `now`.
    pub(crate) fn get(&self, id: u64, now: Stamp) -> Option<V> {
        self.entries
            .get(&id)
            .filter(|(_, at)| self.is_fresh(*at, now))
            .map(|(v, _)| v)
    }

    /// As [`TtlCache::get`], with when the value was read.
    pub(crate) fn get_stamped(&self, id: u64, now: Stamp) -> Option<(V, Stamp)> {
        self.entries
            .get(&id)
            .filter(|(_, at)| self.is_fresh(*at, now))
    }

    /// Whether a value read at `at` is still answered at `now`.
    pub(crate) fn is_fresh(&self, at: Stamp, now: Stamp) -> bool {
        now.0.saturating_sub(at.0) < self.ttl_ms
    }

    /// Caches `value` for `id`, read at `now` (or later: an earlier stamp only expires sooner).
    pub(crate) fn insert(&self, id: u64, value: V, now: Stamp) {
        self.entries.insert(id, (value, now));
    }

    /// Forgets `id`.
    pub(crate) fn remove(&self, id: u64) {
        self.entries.remove(&id);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.entries.clear();
    }

    /// Entries held, expired ones not yet replaced included.
    pub(crate) fn len(&self) -> u64 {
        u64::try_from(self.entries.len()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_are_removed_and_stay_bounded() {
        let c = TtlCache::new(100, Duration::from_millis(50));
        let t0 = c.now();
        c.insert(1, "one", t0);
        assert_eq!(c.get(1, t0), Some("one"));
        assert_eq!(c.get(1, Stamp(t0.0 + 49)), Some("one"));
        assert_eq!(c.get(1, Stamp(t0.0 + 50)), None, "expired");
        c.insert(1, "again", Stamp(t0.0 + 50));
        assert_eq!(c.get(1, Stamp(t0.0 + 60)), Some("again"), "replaced");
        c.remove(1);
        assert_eq!(c.get(1, Stamp(t0.0 + 60)), None);
        for i in 0..1000 {
            c.insert(i, "x", t0);
        }
        assert!(c.len() <= 100, "{}", c.len());
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
