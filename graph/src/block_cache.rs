//! The block cache: [`crate::Graph::blocked_either`] answered from memory for pairs asked before
//! (every 1:1 chat send asks it: two point reads of the store each time without it).
//!
//! Exact, not eventually right: a block or unblock takes effect on the next question.
//! - Every write of a block element through this node ([`crate::Graph::block`],
//!   [`crate::Graph::unblock`], a deleted account's sweep) calls [`BlockCache::changed`] after the
//!   store's write: it bumps a generation and drops the pair, under one lock.
//! - A miss notes the generation **before** reading the store and caches its answer only if
//!   the generation is still the same, under that lock ([`BlockCache::offer`]): an answer read
//!   before a write is either cached before the write's drop (and dropped by it) or not cached.
//! - So it is used only where every block element of the store is written through this node:
//!   one node on its own store (memory or embedded engine, no cluster;
//!   [`crate::GraphConfig::block_cache`], set by the server). Replicated writes would not drop
//!   their pair.
//!
//! Bounded: at most [`PAIRS`] pairs, least recently used out; counted in [`BlockCacheStats`].

use crate::exact_cache::{ExactCache, ExactCacheStats};

/// Pairs kept at most.
pub const PAIRS: u64 = 200_000;

/// Counters of the block cache, read by `/metrics`.
pub type BlockCacheStats = ExactCacheStats;

/// The cache (see the module's documentation): (smaller id, larger id) → whether either blocked
/// the other.
pub struct BlockCache(ExactCache<(u64, u64), bool>);

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("pairs", &self.0.entries())
            .finish_non_exhaustive()
    }
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache(ExactCache::new(PAIRS))
    }
}

fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

impl BlockCache {
    /// The cached answer for `a` and `b`, if any (counted as a hit or a miss).
    pub(crate) fn get(&self, a: u64, b: u64) -> Option<bool> {
        self.0.get(&pair(a, b))
    }

    /// The generation now: note it before reading the store for [`BlockCache::offer`].
    pub(crate) fn generation(&self) -> u64 {
        self.0.generation()
    }

    /// Caches `blocked` for `a` and `b`, read from the store after [`BlockCache::generation`]
    /// answered `seen`, unless a block element was written since.
    pub(crate) fn offer(&self, a: u64, b: u64, seen: u64, blocked: bool) {
        self.0.offer(pair(a, b), seen, blocked);
    }

    /// A block element of `a` and `b` was written (call after the store's write).
    pub(crate) fn changed(&self, a: u64, b: u64) {
        self.0.changed(&pair(a, b));
    }

    /// Pairs cached now (approximate).
    pub fn entries(&self) -> u64 {
        self.0.entries()
    }

    /// The counters.
    pub fn stats(&self) -> &BlockCacheStats {
        self.0.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::tests::graph_cached;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn a_block_an_unblock_and_a_sweep_take_effect_on_the_next_question() {
        let g = graph_cached(true);
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        let (a, b) = (a.id, b.id);
        assert!(!g.blocked_either(a, b).await.unwrap());
        assert!(!g.blocked_either(b, a).await.unwrap(), "from the cache");
        let stats = g.block_cache().unwrap().stats();
        assert_eq!(stats.hits.load(Ordering::Relaxed), 1);
        g.block(a, b).await.unwrap();
        assert!(g.blocked_either(b, a).await.unwrap());
        assert!(g.blocked_either(a, b).await.unwrap());
        g.unblock(a, b).await.unwrap();
        assert!(!g.blocked_either(a, b).await.unwrap());
        g.block(b, a).await.unwrap();
        assert!(g.blocked_either(a, b).await.unwrap());
        // A deleted account's sweep removes its block elements.
        g.sweep_account(b, 100).await.unwrap();
        assert!(!g.has_blocked(b, a).await.unwrap());
        assert!(!g.blocked_either(a, b).await.unwrap());
        assert!(g.block_cache().unwrap().entries() <= 1);
    }

    #[test]
    fn an_answer_read_before_a_write_is_not_cached_after_it() {
        let c = BlockCache::default();
        assert_eq!(c.get(1, 2), None);
        let seen = c.generation();
        // A block is written (and dropped) between the read and the offer.
        c.changed(2, 1);
        c.offer(1, 2, seen, false);
        assert_eq!(c.get(2, 1), None, "the stale answer was not cached");
        let seen = c.generation();
        c.offer(1, 2, seen, true);
        assert_eq!(c.get(2, 1), Some(true));
        c.changed(1, 2);
        assert_eq!(c.get(1, 2), None);
        assert_eq!(c.stats().hits.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats().misses.load(Ordering::Relaxed), 3);
    }
}
