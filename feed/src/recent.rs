//! The recent posts of pulled authors (those above the celebrity threshold), in process: the
//! newest `depth` post ids of each, newest first, so a feed read merges them from memory instead
//! of scanning every pulled author's post list in the store.
//!
//! A list is read from the store on a miss (one scan of `depth + 1` ids: the extra id says
//! whether the list is the author's whole history). It mirrors the store's post list, never the
//! post records, so a post whose list entry arrives by replication before or after its record is
//! listed exactly when the store lists it (a body read before the record arrives is cached as
//! absent and dropped when the record's change is met, as for fanned-out posts).
//!
//! **Freshness without a race.** Each author hashes to one of [`STRIPES`] change counters. The
//! fan-out worker bumps the author's counter when it meets a change to one of the author's
//! post-list entries (`pa/author/…`: a post created, replicated here, or deleted). A list is
//! stamped with the counter's value read *before* its scan, and is used only while the counter
//! still has that value: a change the scan missed was committed after the stamp was read, so the
//! worker's bump for it comes later and retires the list. No insert can race an invalidation,
//! so readers may also keep the lists in their timeline slot ([`crate::l1::Slot`]) and check
//! them with one atomic load each, without a cache lookup. A bump of a shared stripe retires
//! the other authors' lists too (a rescan, never a wrong answer): 16 384 stripes keep that rare.
//!
//! Bounded in bytes (`FeedConfig::pulled_lists_bytes`); a list evicted while a slot holds it
//! lives on only as long as it stays current for that slot. `starling_feed_author_lists_cached`
//! and `starling_feed_author_list_reads_total` show what it holds and how often it reads the
//! store.

use moka::sync::Cache;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Change counters, each shared by the authors that hash to it.
pub(crate) const STRIPES: usize = 16_384;

/// Bytes a list costs beyond its ids: the key, the `Arc` and moka's bookkeeping.
const OVERHEAD: u32 = 96;

/// The newest post ids of one author.
#[derive(Debug)]
pub(crate) struct Recent {
    /// Newest first.
    ids: Box<[u64]>,
    /// The author has no post older than the last id.
    complete: bool,
    /// The author's change counter when the list was read.
    stamp: u64,
}

impl Recent {
    /// A list from the newest ids of an author, newest first, read after
    /// [`RecentPosts::stamp`] returned `stamp`; `complete` when it holds every post the author
    /// has.
    pub(crate) fn new(ids: Vec<u64>, complete: bool, stamp: u64) -> Self {
        Recent {
            ids: ids.into_boxed_slice(),
            complete,
            stamp,
        }
    }

    /// The ids, newest first.
    pub(crate) fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Where in [`Recent::ids`] the author's newest `limit` post ids below `before` are, or
    /// `None` when the list is too short to know (the author has older posts than it holds).
    pub(crate) fn below(&self, before: Option<u64>, limit: usize) -> Option<Range<usize>> {
        let start = before.map_or(0, |b| self.ids.partition_point(|id| *id >= b));
        let end = start.saturating_add(limit).min(self.ids.len());
        (end - start == limit || self.complete).then_some(start..end)
    }
}

/// Recent post lists by author, bounded in bytes.
#[derive(Debug)]
pub(crate) struct RecentPosts {
    cache: Cache<u64, Arc<Recent>>,
    changes: Box<[AtomicU64]>,
    depth: usize,
    reads: AtomicU64,
}

impl RecentPosts {
    /// A cache of about `bytes` of lists of up to `depth` ids each.
    #[cfg(test)]
    pub(crate) fn new(bytes: u64, depth: usize) -> Self {
        Self::with_ttl(bytes, depth, None)
    }

    /// The same, each list dropped `ttl` after it was read, if given (several nodes derive the
    /// region's timelines: see [`crate::FeedConfig::shared_ttl`]).
    pub(crate) fn with_ttl(bytes: u64, depth: usize, ttl: Option<std::time::Duration>) -> Self {
        let mut cache = Cache::builder()
            .max_capacity(bytes)
            .weigher(|_, r: &Arc<Recent>| {
                u32::try_from(r.ids.len() * 8)
                    .unwrap_or(u32::MAX)
                    .saturating_add(OVERHEAD)
            });
        if let Some(ttl) = ttl {
            cache = cache.time_to_live(ttl);
        }
        RecentPosts {
            cache: cache.build(),
            changes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            // One scan reads at most 1 000 ids, and a list is read with one more than it keeps.
            depth: depth.clamp(1, 999),
            reads: AtomicU64::new(0),
        }
    }

    /// Ids a list holds at most.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// The cached list of `author`, if it is current.
    pub(crate) fn get(&self, author: u64) -> Option<Arc<Recent>> {
        self.cache
            .get(&author)
            .filter(|l| self.is_current(author, l))
    }

    fn counter(&self, author: u64) -> &AtomicU64 {
        // Fibonacci hashing: ids are not uniform in their low bits.
        let i = (author.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 50) as usize % STRIPES;
        &self.changes[i]
    }

    /// Whether no change to `author`'s posts has been met since `list` was read.
    pub(crate) fn is_current(&self, author: u64, list: &Recent) -> bool {
        self.counter(author).load(Ordering::SeqCst) == list.stamp
    }

    /// The stamp of a list about to be read from the store (counts the read).
    pub(crate) fn stamp(&self, author: u64) -> u64 {
        self.note_read();
        self.counter(author).load(Ordering::SeqCst)
    }

    /// Counts a read of an author's list from the store.
    pub(crate) fn note_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps a list read from the store.
    pub(crate) fn insert(&self, author: u64, list: Arc<Recent>) {
        self.cache.insert(author, list);
    }

    /// The worker met a change to one of `author`'s post-list entries.
    pub(crate) fn changed(&self, author: u64) {
        self.counter(author).fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(&author);
    }

    /// Another node met changes to too many authors' lists to name: every list is stale.
    pub(crate) fn changed_all(&self) {
        for c in self.changes.iter() {
            c.fetch_add(1, Ordering::SeqCst);
        }
        self.cache.invalidate_all();
    }

    /// Lists held (approximate).
    pub(crate) fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Lists read from the store since start.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// The newest `limit` distinct ids ≥ `floor` across `runs`, each strictly decreasing, newest
/// first: a k-way merge that stops once the page is full, so it costs O(runs + limit · log
/// runs) whatever the runs' lengths.
pub(crate) fn merge_newest(runs: &[&[u64]], floor: u64, limit: usize) -> Vec<u64> {
    use std::collections::BinaryHeap;
    let mut heap: BinaryHeap<(u64, usize)> = BinaryHeap::with_capacity(runs.len());
    let mut pos = vec![0usize; runs.len()];
    for (r, run) in runs.iter().enumerate() {
        if let Some(&id) = run.first()
            && id >= floor
        {
            heap.push((id, r));
        }
    }
    let mut out: Vec<u64> = Vec::with_capacity(limit);
    while out.len() < limit {
        let Some((id, r)) = heap.pop() else { break };
        if out.last() != Some(&id) {
            out.push(id);
        }
        pos[r] += 1;
        if let Some(&next) = runs[r].get(pos[r])
            && next >= floor
        {
            heap.push((next, r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_answers_only_what_the_list_knows() {
        let r = Recent::new(vec![90, 70, 50, 30], false, 0);
        let ids = |r: &Recent, range: Option<Range<usize>>| range.map(|x| r.ids()[x].to_vec());
        assert_eq!(ids(&r, r.below(None, 2)), Some(vec![90, 70]));
        assert_eq!(ids(&r, r.below(Some(70), 2)), Some(vec![50, 30]));
        assert_eq!(ids(&r, r.below(Some(71), 1)), Some(vec![70]));
        assert_eq!(
            r.below(Some(50), 2),
            None,
            "older posts than the list holds"
        );
        let whole = Recent::new(vec![90, 70], true, 0);
        assert_eq!(ids(&whole, whole.below(Some(70), 5)), Some(vec![]));
        assert_eq!(ids(&whole, whole.below(None, 5)), Some(vec![90, 70]));
    }

    #[test]
    fn merge_takes_the_newest_distinct_ids_above_the_floor() {
        let a = [50, 40, 30, 20, 10];
        let b = [45, 40, 5];
        let c: [u64; 0] = [];
        assert_eq!(merge_newest(&[&a, &b, &c], 0, 4), vec![50, 45, 40, 30]);
        assert_eq!(merge_newest(&[&a, &b], 25, 100), vec![50, 45, 40, 30]);
        assert_eq!(merge_newest(&[&b], 0, 10), vec![45, 40, 5]);
        assert!(merge_newest(&[], 0, 10).is_empty());
    }

    #[test]
    fn a_change_retires_the_lists_read_before_it() {
        let r = RecentPosts::new(1 << 20, 4);
        let stamp = r.stamp(7);
        r.changed(7);
        let early = Arc::new(Recent::new(vec![1], true, stamp));
        r.insert(7, early.clone());
        assert!(!r.is_current(7, &early), "read before the change: retired");
        assert!(r.get(7).is_none());
        let stamp = r.stamp(7);
        let late = Arc::new(Recent::new(vec![2, 1], true, stamp));
        r.insert(7, late.clone());
        assert!(r.get(7).is_some());
        r.changed(7);
        assert!(!r.is_current(7, &late), "held elsewhere, still retired");
        assert!(r.get(7).is_none(), "a change drops the list");
        assert_eq!(r.reads(), 2);
    }

    #[test]
    fn lists_are_bounded_in_bytes() {
        let r = RecentPosts::new(10_000, 1000);
        for author in 0..20 {
            let stamp = r.stamp(author);
            r.insert(author, Arc::new(Recent::new(vec![1; 1000], false, stamp)));
        }
        r.cache.run_pending_tasks();
        assert!(r.len() <= 1, "{} lists held", r.len());
    }
}
