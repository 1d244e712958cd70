//! The viewer's own state towards posts (`liked`, `reposted`) for hydrated views, from a
//! bounded in-process cache instead of two element reads a post.
//!
//! An entry is keyed by (post, viewer) and holds both flags, negative answers included (most
//! posts on a page are neither liked nor reposted by its reader). What keeps it right:
//!
//! - **The viewer's own writes** through this node (like, unlike, repost, undo, a repost's post
//!   deleted) drop the entry right after the element is written, so the next page shows them
//!   (read-your-writes).
//! - **Everyone else's writes**, replicated from other nodes and regions, reach this node's
//!   store and then its change feed; the post-counts consumer ([`crate::likes::Likes::catch_up`])
//!   drops the entry of every like or repost element in each batch it reads, before it moves
//!   the counts. Such a write shows at most one consumer pass after it landed here (the
//!   consumer's linger, milliseconds), as the counts do.
//! - **Races.** Every drop moves an epoch; a read that missed inserts what it read only if no
//!   drop happened since it started, so a read older than a write never caches over its drop.
//! - **Shared counting** (several nodes on one ScyllaDB keyspace, each consuming only some
//!   partitions of the feed): this node would miss the other holders' changes, so the cache is
//!   off and every read goes to the elements ([`ViewerCache::disable`]).
//!
//! Bounded at [`VIEWER_CACHED`] entries (`quick_cache`: a hit is a shard's read lock and a bit
//! set, none of moka's per-read bookkeeping, twenty of them a feed page); `/metrics` shows the
//! entries, hits and misses.

use quick_cache::UnitWeighter;
use quick_cache::sync::Cache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// (post, viewer) pairs whose flags are kept in process.
pub const VIEWER_CACHED: u64 = 500_000;

/// A bounded map of this crate's caches (`quick_cache`, keys hashed with foldhash).
pub(crate) type Map<K, V> = Cache<K, V, UnitWeighter, foldhash::fast::RandomState>;

/// An empty [`Map`] of at most `capacity` entries.
pub(crate) fn map<K: Eq + std::hash::Hash, V: Clone>(capacity: u64) -> Map<K, V> {
    Cache::with(
        usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
        capacity.max(1),
        UnitWeighter,
        foldhash::fast::RandomState::default(),
        Default::default(),
    )
}

/// The viewer's state towards one post.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewerFlags {
    /// The viewer likes the post.
    pub liked: bool,
    /// The viewer reposts the post.
    pub reposted: bool,
}

/// The cache (see the module doc). Cheap to clone: shared state.
#[derive(Clone, Debug)]
pub(crate) struct ViewerCache {
    cache: std::sync::Arc<Map<(u64, u64), ViewerFlags>>,
    epoch: std::sync::Arc<AtomicU64>,
    off: std::sync::Arc<AtomicBool>,
    hits: std::sync::Arc<AtomicU64>,
    misses: std::sync::Arc<AtomicU64>,
}

impl ViewerCache {
    pub(crate) fn new(capacity: u64) -> Self {
        ViewerCache {
            cache: std::sync::Arc::new(map(capacity)),
            epoch: std::sync::Arc::default(),
            off: std::sync::Arc::default(),
            hits: std::sync::Arc::default(),
            misses: std::sync::Arc::default(),
        }
    }

    /// The epoch a read starts at: pass it to [`ViewerCache::insert`].
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The cached flags of `viewer` towards `post` (counted as a hit or a miss).
    pub(crate) fn get(&self, post: u64, viewer: u64) -> Option<ViewerFlags> {
        let got = if self.off.load(Ordering::Acquire) {
            None
        } else {
            self.cache.get(&(post, viewer))
        };
        let counter = if got.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        got
    }

    /// Caches what a read that started at `epoch` found, unless something was dropped since.
    pub(crate) fn insert(&self, epoch: u64, post: u64, viewer: u64, flags: ViewerFlags) {
        if !self.off.load(Ordering::Acquire) && self.epoch.load(Ordering::Acquire) == epoch {
            self.cache.insert((post, viewer), flags);
        }
    }

    /// Drops the entry of `member` towards `post`, after a write to one of its elements.
    pub(crate) fn forget(&self, post: u64, member: u64) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.remove(&(post, member));
    }

    /// Off for good (shared counting, see the module doc).
    pub(crate) fn disable(&self) {
        self.off.store(true, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.clear();
    }

    /// Entries held.
    pub(crate) fn len(&self) -> u64 {
        u64::try_from(self.cache.len()).unwrap_or(u64::MAX)
    }

    /// Lookups answered from the cache, and not, since start.
    pub(crate) fn hits_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}
