//! An exact cache of store answers: what the block cache ([`crate::block_cache`]) and the session
//! cache ([`crate::session_cache`]) are made of.
//!
//! Exact, not eventually right: a write through this node takes effect on the next question.
//! - Every write of what an entry answers calls [`ExactCache::changed`] after the store's write:
//!   it bumps a generation and drops the entry, under one lock.
//! - A miss notes the generation **before** reading the store ([`ExactCache::generation`]) and
//!   caches its answer only if the generation is still the same, under that lock
//!   ([`ExactCache::offer`]): an answer read before a write is either cached before the write's
//!   drop (and dropped by it) or not cached.
//! - So it is right only where every such write goes through this node: its users are switched
//!   on by the server for one node on its own store.
//!
//! Bounded: at most the capacity it is made with (`quick_cache`, CLOCK-style eviction: a hit is a
//! shard's read lock and a bit set, no per-read bookkeeping; keys hashed with foldhash), counted
//! in [`ExactCacheStats`].

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of an exact cache, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ExactCacheStats {
    /// Questions answered from the cache.
    pub hits: AtomicU64,
    /// Questions that read the store.
    pub misses: AtomicU64,
}

/// The cache (see the module's documentation).
pub(crate) struct ExactCache<K, V> {
    entries: quick_cache::sync::Cache<K, V, quick_cache::UnitWeighter, foldhash::fast::RandomState>,
    /// Bumped by every write (under this lock, with the entry's drop).
    generation: parking_lot::Mutex<u64>,
    stats: ExactCacheStats,
}

impl<K, V> ExactCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty cache of at most `capacity` entries.
    pub(crate) fn new(capacity: u64) -> Self {
        ExactCache {
            entries: quick_cache::sync::Cache::with(
                usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
                capacity.max(1),
                quick_cache::UnitWeighter,
                foldhash::fast::RandomState::default(),
                Default::default(),
            ),
            generation: parking_lot::Mutex::new(0),
            stats: ExactCacheStats::default(),
        }
    }

    /// The cached answer for `key`, if any (counted as a hit or a miss).
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let v = self.entries.get(key);
        let counter = if v.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        v
    }

    /// The generation now: note it before reading the store for [`ExactCache::offer`].
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock()
    }

    /// Caches `value` for `key`, read from the store after [`ExactCache::generation`] answered
    /// `seen`, unless something was written since.
    pub(crate) fn offer(&self, key: K, seen: u64, value: V) {
        let g = self.generation.lock();
        if *g == seen {
            self.entries.insert(key, value);
        }
    }

    /// What `key` answers was written (call after the store's write).
    pub(crate) fn changed(&self, key: &K) {
        let mut g = self.generation.lock();
        *g += 1;
        self.entries.remove(key);
    }

    /// Something was written that cannot be named by one key: forget every entry.
    pub(crate) fn changed_all(&self) {
        let mut g = self.generation.lock();
        *g += 1;
        self.entries.clear();
    }

    /// Entries cached now.
    pub(crate) fn entries(&self) -> u64 {
        u64::try_from(self.entries.len()).unwrap_or(u64::MAX)
    }

    /// Nothing left pending: [`ExactCache::entries`] is always exact (kept for the tests that
    /// settled moka's bookkeeping before counting).
    #[cfg(test)]
    pub(crate) fn settle(&self) {}

    /// The counters.
    pub(crate) fn stats(&self) -> &ExactCacheStats {
        &self.stats
    }
}
