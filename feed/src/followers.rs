//! The fan-out worker's cache of follower lists: an author's followers, read from the store once
//! and kept until the worker meets a change to one of the author's follower edges.
//!
//! Fan-out reads the author's whole follower list for every post. Read from the store, that is
//! a range scan over every memtable and every table that overlaps the author's edges; in a soak
//! those scans were a fifth of a node's CPU, and they grow with the tables. Authors post again
//! and again, and their lists change far less often than they post.
//!
//! Why a cached list is never behind what the worker should see: only the worker fills and drops
//! entries, and it meets changes in change-feed order. A list read while the worker stands at
//! sequence number `s` holds every edge change up to `s` (and maybe some after it). Any later
//! change to the author's edges (`gfi/author/…`, local or replicated) has a feed entry after
//! `s`, and the worker drops the list when it meets that entry, before it fans out any post
//! that comes after it. So a post is fanned out to the followers the author had at that point
//! of the feed or later, as when every fan-out read the store; follows and unfollows met later
//! are backfilled and removed by [`Feed::follow_changed`](crate::Feed::follow_changed) as
//! before.

use moka::sync::Cache;
use std::sync::Arc;

/// Bytes a list costs beyond its ids: the key, the `Arc` and moka's bookkeeping.
const OVERHEAD: u32 = 96;

/// Follower lists by author, bounded in bytes.
#[derive(Clone, Debug)]
pub(crate) struct FollowerLists {
    cache: Cache<u64, Arc<[u64]>>,
}

impl FollowerLists {
    /// A cache of about `bytes` of lists.
    pub(crate) fn new(bytes: u64) -> Self {
        FollowerLists {
            cache: Cache::builder()
                .max_capacity(bytes)
                .weigher(|_, ids: &Arc<[u64]>| {
                    u32::try_from(ids.len() * 8)
                        .unwrap_or(u32::MAX)
                        .saturating_add(OVERHEAD)
                })
                .build(),
        }
    }

    /// The cached list of `author`.
    pub(crate) fn get(&self, author: u64) -> Option<Arc<[u64]>> {
        self.cache.get(&author)
    }

    /// Keeps `ids` as the list of `author`.
    pub(crate) fn insert(&self, author: u64, ids: Arc<[u64]>) {
        self.cache.insert(author, ids);
    }

    /// One of `author`'s follower edges changed.
    pub(crate) fn invalidate(&self, author: u64) {
        self.cache.invalidate(&author);
    }

    /// Lists held (approximate).
    pub(crate) fn len(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_drops_and_bounds_lists() {
        let lists = FollowerLists::new(10_000);
        lists.insert(1, Arc::from(vec![2, 3]));
        assert_eq!(lists.get(1).as_deref(), Some(&[2, 3][..]));
        lists.invalidate(1);
        assert_eq!(lists.get(1), None);
        // Lists of 1 000 ids weigh 8 096 bytes: at most one fits.
        for author in 10..20 {
            lists.insert(author, Arc::from(vec![7; 1000]));
        }
        lists.cache.run_pending_tasks();
        assert!(lists.len() <= 1, "{} lists held", lists.len());
    }
}
