//! Likes: who liked a post, how many did, and whether the viewer did.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `pl` | post id, liker id | set element (add-wins) | liked-at, ms (8 bytes big-endian) |
//! | `plc` (local) | post id | counter | the likes of the post this node holds |
//! | `pls` (local) | key of a counted element | register | whether that element is counted (one byte) |
//! | `prc` (local) | post id | counter | the post's direct replies this node holds |
//! | `prpc`, `pqc` (local) | post id | counter | the post's reposts, quotes this node holds |
//!
//! A like is one set element per (post, liker): a retry, or the same user liking from two regions
//! at once, is the same element, so it exists once however often it is written; an unlike racing
//! a like resolves add-wins, like every set. The count is the number of visible elements, derived
//! on each node by a change-feed consumer ([`Likes::catch_up`], the way follower counts are): for
//! each change to a like it compares the element's visibility with the visibility it last counted
//! (a local shadow; [`starling_store::counted`] holds the rule) and moves the post's local
//! counter by one when they differ. Each node's count is therefore exactly the likes its replica
//! holds: never negative, never a retry twice, and replicated by nothing (every region derives
//! its own). A crash between moving a count and writing its shadow cannot count a like twice:
//! each batch's writes are saved first as one journal record that is applied again, idempotently,
//! after a restart ([`crate::journal`]).
//!
//! **The hot post.** A like's request path writes only its own element — a distinct key, so a
//! distinct stripe lock and record — and never the counter: a post liked thousands of times a
//! second from every region does not serialize on one key. The consumer folds a batch of up to
//! [`BATCH`] changes into one counter write per post, so the hot post's counter costs one write
//! per batch, whatever the rate. The price: a count lags the likes by one consumer pass
//! (milliseconds, [`starling_store::consumer::LINGER`] after the write); the viewer's own state
//! (`liked`) is read from their element and never lags.
//!
//! The same consumer counts each post's direct replies (the `pt` elements of
//! [`crate::replies`]) into `prc`, its reposts and quotes (the `prp` and `pq` elements of
//! [`crate::reposts`]) into `prpc` and `pqc`, by the same rule: one table (`COUNTED`) lists the
//! sets, and they share the shadows, the journal and the batch's one write per counter.
//!
//! The consumer also queues each deleted post it meets (its record's change to a tombstone, or a
//! like or repost counted on a post deleted here) for [`crate::cleanup`], which takes its likes
//! and reposts off on this node.
//!
//! **Seeded elements.** `starling seed` bulk-loads elements and their counts without a change
//! feed ([`crate::bulk`]) and records the load's dot in `pll`. An element with no shadow whose
//! record was loaded (its context holds that dot) is taken as counted, so a later unlike or undo
//! of a seeded like moves the loaded count down once — the rule of the graph's follower counts.

use crate::journal::Journal;
use crate::viewer::{VIEWER_CACHED, ViewerCache, ViewerFlags};
use bytes::Bytes;
use starling_store::{
    Dot, FeedConsumer, Key, Keyspace, ScanRequest, Store, StoreError, StoreExt, Wake, counted,
    drive,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// The likes keyspace: `pl/post/liker`.
pub(crate) const LIKES: Keyspace = Keyspace::new("pl");
/// `plc/post` → the post's like count on this node (local).
pub(crate) const COUNTS: Keyspace = Keyspace::local("plc");
/// `pls/like or reply-list key` → the visibility last counted, one byte (local).
pub(crate) const SHADOWS: Keyspace = Keyspace::local("pls");
/// `prc/post` → the post's reply count on this node (local).
pub(crate) const REPLY_COUNTS: Keyspace = Keyspace::local("prc");
/// `pll` → the dot of the bulk load whose elements this node's counts include, if any (local).
pub(crate) const LOADED: Keyspace = Keyspace::local("pll");

/// The change-feed consumer that derives the counts (the feed is not trimmed past it; `/metrics`
/// shows its backlog).
pub const CONSUMER: &str = "post-counts";

/// Changes one consumer pass reads and folds into one write batch: bounds its memory.
pub const BATCH: usize = 1024;

/// Largest page of likers.
pub const MAX_PAGE: usize = 100;

pub(crate) fn like_key(post: u64, liker: u64) -> Key {
    LIKES.key().u64(post).u64(liker).finish()
}

fn count_key(post: u64) -> Key {
    COUNTS.key().u64(post).finish()
}

/// `prpc/post` → the post's repost count on this node (local).
pub(crate) const REPOST_COUNTS: Keyspace = Keyspace::local("prpc");
/// `pqc/post` → the post's quote count on this node (local).
pub(crate) const QUOTE_COUNTS: Keyspace = Keyspace::local("pqc");

/// The sets the consumer counts: every visible element `set/post/member` adds one to
/// `counter/post`. Likes, replies, reposts and quotes share the consumer, its shadows and its
/// journal; a new count is a row here.
const COUNTED: [(Keyspace, Keyspace); 4] = [
    (LIKES, COUNTS),
    (crate::replies::REPLIES, REPLY_COUNTS),
    (crate::reposts::REPOSTS, REPOST_COUNTS),
    (crate::reposts::QUOTES, QUOTE_COUNTS),
];

/// The keyspaces whose changes the consumer reads: the counted sets, and the posts whose
/// deletion queues a cleanup ([`crate::cleanup::queue_deleted`]). Only their writes wake it.
const READS: &[Keyspace] = &[
    LIKES,
    crate::replies::REPLIES,
    crate::reposts::REPOSTS,
    crate::reposts::QUOTES,
    crate::POSTS,
];

/// The counter a changed element moves, if `key` is an element of a counted set.
fn counter_of(key: &Key) -> Option<Key> {
    COUNTED.iter().find_map(|(set, counter)| {
        if key.len() != set.prefix_len() + 16 || !key.starts_with(set.prefix().as_bytes()) {
            return None;
        }
        let post = starling_store::key::read_u64(key.as_bytes(), set.prefix_len())?;
        Some(counter.key().u64(post).finish())
    })
}

/// The liker of a like key.
fn liker_of(key: &Key) -> Option<u64> {
    starling_store::key::read_u64(key.as_bytes(), LIKES.prefix_len() + 8)
}

/// A post's counters, as this node derives them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Distinct likers.
    pub likes: u64,
    /// Direct replies.
    pub replies: u64,
    /// Distinct reposters.
    pub reposts: u64,
    /// Quotes.
    pub quotes: u64,
}

/// A page of likers and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LikerPage {
    /// User ids, ascending.
    pub ids: Vec<u64>,
    /// The cursor of the next page (the last id of this one).
    pub next: Option<u64>,
}

/// Posts whose counters are kept in process ([`Likes::counts_many`]).
pub const COUNTS_CACHED: u64 = 200_000;

/// Likes over the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Likes {
    store: Arc<dyn Store>,
    /// One consumer pass at a time (held across awaits: a tokio mutex).
    pass: Arc<tokio::sync::Mutex<()>>,
    /// Every counter of recently read posts. Exact: the consumer is the only writer of the
    /// counters and drops a post's entry after it moves one of them.
    cache: Arc<crate::viewer::Map<u64, Counts>>,
    /// Moved by the consumer after each batch it writes: a read that started before a batch
    /// does not cache what it read (it may be older than the batch).
    epoch: Arc<AtomicU64>,
    /// Counted by the holders of the keyspace-wide feed's partitions, on other nodes too
    /// ([`Likes::shared`]): this node's cache would miss their moves, so it is not used.
    shared: Arc<std::sync::atomic::AtomicBool>,
    /// The viewers' own `liked` / `reposted` flags ([`crate::viewer`]).
    viewer: ViewerCache,
    /// Whether the consumer queues deleted posts for [`crate::cleanup`] (always, but for a
    /// benchmark's baseline: [`Likes::set_queueing_deleted`]).
    queueing: Arc<std::sync::atomic::AtomicBool>,
}

impl Likes {
    /// Likes over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Likes {
            store,
            pass: Arc::new(tokio::sync::Mutex::new(())),
            cache: Arc::new(crate::viewer::map(COUNTS_CACHED)),
            epoch: Arc::new(AtomicU64::new(0)),
            shared: Arc::default(),
            viewer: ViewerCache::new(VIEWER_CACHED),
            queueing: Arc::new(true.into()),
        }
    }

    /// Turns the consumer's queueing of deleted posts for [`crate::cleanup`] off or on again. On
    /// by default; off only as a benchmark's baseline (`benches/likes.rs`): a post deleted
    /// meanwhile keeps its likes and reposts.
    pub fn set_queueing_deleted(&self, on: bool) {
        self.queueing.store(on, Ordering::Release);
    }

    /// [`crate::cleanup::queue_deleted`] for one batch, unless turned off.
    async fn queue_deleted(
        &self,
        changes: &[starling_store::Change],
        j: &Journal,
    ) -> Result<(), StoreError> {
        if !self.queueing.load(Ordering::Acquire) {
            return Ok(());
        }
        crate::cleanup::queue_deleted(self.store.as_ref(), changes, &j.counters).await
    }

    /// The counts are derived by several nodes (each the holder of some partitions of a
    /// ScyllaDB keyspace's feed, see [`Likes::count_changes`]): counters are read from the
    /// store on every read, never cached in this process.
    pub fn shared(&self) {
        self.shared.store(true, Ordering::Release);
        self.cache.clear();
        self.viewer.disable();
    }

    /// Whether the counts are derived by several nodes ([`Likes::shared`]).
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Acquire)
    }

    /// `viewer`'s cached flags towards `post`, if held ([`crate::viewer`]).
    pub fn viewer_cached(&self, post: u64, viewer: u64) -> Option<ViewerFlags> {
        self.viewer.get(post, viewer)
    }

    /// `viewer`'s flags towards each of `posts`, in order: from the cache, the misses read from
    /// the viewer's like and repost elements (never behind this node's store) in one batch of
    /// the store ([`Store::get_records`]: one trip off the runtime for them all), then cached.
    pub async fn viewer_flags(
        &self,
        viewer: u64,
        posts: &[u64],
    ) -> Result<Vec<ViewerFlags>, StoreError> {
        let epoch = self.viewer.epoch();
        let mut out: Vec<Option<ViewerFlags>> =
            posts.iter().map(|p| self.viewer.get(*p, viewer)).collect();
        let missing: Vec<u64> = posts
            .iter()
            .zip(&out)
            .filter_map(|(p, f)| f.is_none().then_some(*p))
            .collect();
        if !missing.is_empty() {
            let keys: Vec<Key> = missing
                .iter()
                .flat_map(|p| [like_key(*p, viewer), crate::reposts::repost_key(*p, viewer)])
                .collect();
            let records = self.store.get_records(&keys).await?;
            let value = |r: Option<&Option<starling_store::Record>>| {
                r.and_then(Option::as_ref).and_then(|r| r.visible().value)
            };
            let mut read = missing.iter().enumerate().map(|(i, p)| {
                let flags = ViewerFlags {
                    liked: value(records.get(2 * i)).is_some(),
                    reposted: value(records.get(2 * i + 1))
                        .and_then(|b| crate::reposts::id_of(&b))
                        .is_some(),
                };
                self.viewer.insert(epoch, *p, viewer, flags);
                flags
            });
            for slot in out.iter_mut().filter(|f| f.is_none()) {
                *slot = read.next();
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Drops `member`'s cached flags towards `post`: called after each write to one of their
    /// elements of it (a like's, a repost's).
    pub(crate) fn forget_viewer(&self, post: u64, member: u64) {
        self.viewer.forget(post, member);
    }

    /// (post, viewer) pairs whose flags are cached (for metrics).
    pub fn cached_viewer_flags(&self) -> u64 {
        self.viewer.len()
    }

    /// Viewer-flag lookups answered from the cache and not, since start (for metrics).
    pub fn viewer_flag_hits_misses(&self) -> (u64, u64) {
        self.viewer.hits_misses()
    }

    /// The counters of each of `posts`, in order: from the in-process cache, the missing ones
    /// read from the store (four local counter reads each) and cached.
    pub async fn counts_many(&self, posts: &[u64]) -> Result<Vec<Counts>, StoreError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let shared = self.shared.load(Ordering::Acquire);
        let mut out = Vec::with_capacity(posts.len());
        for &p in posts {
            let c = match self.cache.get(&p).filter(|_| !shared) {
                Some(c) => c,
                None => {
                    let c = self.counts(p).await?;
                    if !shared && self.epoch.load(Ordering::Acquire) == epoch {
                        self.cache.insert(p, c);
                    }
                    c
                }
            };
            out.push(c);
        }
        Ok(out)
    }

    /// Posts whose counters are cached (for metrics).
    pub fn cached_counts(&self) -> u64 {
        u64::try_from(self.cache.len()).unwrap_or(u64::MAX)
    }

    /// Drops the cached counters of the posts whose counters `j` moves, after it was written.
    fn written(&self, j: &Journal) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for (counter, _, _) in &j.counters {
            let b = counter.as_bytes();
            if let Some(tail) = b.len().checked_sub(8).and_then(|at| b.get(at..))
                && let Ok(id) = <[u8; 8]>::try_from(tail)
            {
                self.cache.remove(&u64::from_be_bytes(id));
            }
        }
    }

    /// `liker` likes `post`. Idempotent: a like already there is not written again. Returns
    /// whether it is new. The caller checks that the post exists and may be liked.
    pub async fn like(&self, post: u64, liker: u64) -> Result<bool, StoreError> {
        let at_ms = crate::now_ms();
        let key = like_key(post, liker);
        if self
            .store
            .get(&key)
            .await?
            .is_some_and(|v| v.value.is_some())
        {
            return Ok(false);
        }
        self.store
            .add(&key, Bytes::copy_from_slice(&at_ms.to_be_bytes()))
            .await?;
        self.viewer.forget(post, liker);
        Ok(true)
    }

    /// `liker` no longer likes `post`. Idempotent. Returns whether there was a like.
    pub async fn unlike(&self, post: u64, liker: u64) -> Result<bool, StoreError> {
        if !self.liked(post, liker).await? {
            return Ok(false);
        }
        let key = like_key(post, liker);
        self.store.remove(&key).await?;
        self.viewer.forget(post, liker);
        Ok(true)
    }

    /// Whether `viewer` likes `post` (read from the element: never lags).
    pub async fn liked(&self, post: u64, viewer: u64) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(&like_key(post, viewer))
            .await?
            .is_some_and(|v| v.value.is_some()))
    }

    /// The post's like count as this node derives it (never negative).
    pub async fn count(&self, post: u64) -> Result<u64, StoreError> {
        let n = self.store.counter(&count_key(post)).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The post's count of direct replies as this node derives it (never negative).
    pub async fn reply_count(&self, post: u64) -> Result<u64, StoreError> {
        self.counted(REPLY_COUNTS, post).await
    }

    /// The post's count of reposts as this node derives it (never negative).
    pub async fn repost_count(&self, post: u64) -> Result<u64, StoreError> {
        self.counted(REPOST_COUNTS, post).await
    }

    /// The post's count of quotes as this node derives it (never negative).
    pub async fn quote_count(&self, post: u64) -> Result<u64, StoreError> {
        self.counted(QUOTE_COUNTS, post).await
    }

    /// Every counter of `post`.
    pub async fn counts(&self, post: u64) -> Result<Counts, StoreError> {
        let [likes, replies, reposts, quotes] = [COUNTS, REPLY_COUNTS, REPOST_COUNTS, QUOTE_COUNTS];
        Ok(Counts {
            likes: self.counted(likes, post).await?,
            replies: self.counted(replies, post).await?,
            reposts: self.counted(reposts, post).await?,
            quotes: self.counted(quotes, post).await?,
        })
    }

    async fn counted(&self, counter: Keyspace, post: u64) -> Result<u64, StoreError> {
        let n = self
            .store
            .counter(&counter.key().u64(post).finish())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A page of at most `limit` (1 ..= [`MAX_PAGE`]) likers of `post`, ascending by id, after
    /// the liker `after`.
    pub async fn likers(
        &self,
        post: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<LikerPage, StoreError> {
        let mut req = ScanRequest::prefix(LIKES.key().u64(post).finish(), limit.clamp(1, MAX_PAGE));
        req.after = after.map(|a| like_key(post, a));
        let page = self.store.scan(&req).await?;
        Ok(LikerPage {
            ids: page.items.iter().filter_map(|(k, _)| liker_of(k)).collect(),
            next: page.next.as_ref().and_then(liker_of),
        })
    }

    /// Brings the counts up to the store's change feed: each batch of changes becomes one batch
    /// of writes (one counter move per post, and the shadows), saved first as one journal
    /// ([`crate::journal`]) and written before the position moves past it, so a crash anywhere in
    /// between neither loses nor repeats a move. One pass at a time.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let _one = self.pass.lock().await;
        let consumer = FeedConsumer::new(self.store.clone(), CONSUMER);
        let mut cursor = consumer.position().await?;
        let loaded = self.loaded_dot().await?;
        if let Some(j) = Journal::load(self.store.as_ref()).await?
            && j.upto > cursor
        {
            // A crash after the journal was saved: finish its batch (idempotent).
            j.apply(self.store.as_ref()).await?;
            self.written(&j);
            cursor = j.upto;
            consumer.commit(cursor).await?;
        }
        loop {
            let changes = consumer.batch(cursor, BATCH).await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(());
            };
            let j = self.plan(&changes, last, loaded.as_ref()).await?;
            self.queue_deleted(&changes, &j).await?;
            if !j.counters.is_empty() || !j.shadows.is_empty() {
                j.save(self.store.as_ref()).await?;
                j.apply(self.store.as_ref()).await?;
                self.written(&j);
            }
            cursor = last;
            consumer.commit(cursor).await?;
        }
    }

    /// Moves the counts for one batch of a partition of the keyspace-wide feed that this node
    /// holds (several nodes on one ScyllaDB keyspace). Counter moves are increments, so the
    /// holders of other partitions can move the same counter meanwhile; no journal (its key
    /// would be shared by the holders): a crash between the counter moves and the shadows
    /// counts those elements twice, as the graph's counts can.
    pub async fn count_changes(
        &self,
        changes: &[starling_store::Change],
    ) -> Result<(), StoreError> {
        let loaded = self.loaded_dot().await?;
        let j = self.plan(changes, 0, loaded.as_ref()).await?;
        self.queue_deleted(changes, &j).await?;
        let mut writes: Vec<(Key, starling_store::Mutation)> = j
            .counters
            .iter()
            .map(|(k, _, d)| (k.clone(), starling_store::Mutation::Count(*d)))
            .collect();
        for (k, v) in &j.shadows {
            writes.push((
                k.clone(),
                starling_store::Mutation::Put(counted::shadow_value(*v)),
            ));
        }
        if !writes.is_empty() {
            self.store.mutate_many(&writes).await?;
            self.written(&j);
        }
        Ok(())
    }

    /// The writes one batch of changes needs: each counter's value before and its move, and the
    /// shadows that change.
    async fn plan(
        &self,
        changes: &[starling_store::Change],
        upto: u64,
        loaded: Option<&Dot>,
    ) -> Result<Journal, StoreError> {
        self.forget_changed_viewers(changes);
        let store = self.store.as_ref();
        let t = counted::tally(store, changes, SHADOWS, loaded, counter_of).await?;
        let mut j = Journal {
            upto,
            ..Journal::default()
        };
        for (counter, d) in t.moves {
            if d != 0 {
                let before = self.store.counter(&counter).await?;
                j.counters.push((counter, before, d));
            }
        }
        j.shadows = t.shadows.into_iter().collect();
        Ok(j)
    }

    /// Drops the cached viewer flags of every like and repost element among `changes` (writes
    /// of other nodes and regions included): they are in the store already.
    fn forget_changed_viewers(&self, changes: &[starling_store::Change]) {
        for c in changes {
            for set in [LIKES, crate::reposts::REPOSTS] {
                let k = c.key.as_bytes();
                if k.len() == set.prefix_len() + 16 && k.starts_with(set.prefix().as_bytes()) {
                    let post = starling_store::key::read_u64(k, set.prefix_len());
                    let member = starling_store::key::read_u64(k, set.prefix_len() + 8);
                    if let (Some(post), Some(member)) = (post, member) {
                        self.viewer.forget(post, member);
                    }
                }
            }
        }
    }

    /// The dot of the bulk load this node's counts include ([`LOADED`]), if it was seeded.
    async fn loaded_dot(&self) -> Result<Option<Dot>, StoreError> {
        counted::loaded_dot(self.store.as_ref(), LOADED).await
    }

    /// Keeps the counts current with local and replicated likes until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let store = self.store.clone();
        drive(store, Wake::On(READS), shutdown, || async {
            if let Err(e) = self.catch_up().await {
                tracing::error!(error = %e, "updating like counts failed");
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_store::{
        Delta, Dot, Hlc, HlcClock, Kind, Limits, Mutation, NodeId, Record, RegionId, open_memory,
    };

    fn likes() -> Likes {
        let node = NodeId::new(RegionId::from_name("us"), 1);
        Likes::new(open_memory(
            node,
            Arc::new(HlcClock::new()),
            Limits::default(),
        ))
    }

    /// The same like made concurrently in another region, as replication delivers it.
    fn remote_like(post: u64, liker: u64) -> Delta {
        let mut r = Record::empty(Kind::Set);
        r.add_element(
            Dot {
                hlc: Hlc(1),
                node: NodeId::new(RegionId::from_name("eu"), 9),
            },
            Bytes::new(),
            None,
        )
        .unwrap();
        Delta {
            key: like_key(post, liker),
            record: r,
        }
    }

    #[tokio::test]
    async fn retries_and_the_same_like_from_two_regions_count_once() {
        let l = likes();
        assert!(l.like(7, 1).await.unwrap());
        assert!(!l.like(7, 1).await.unwrap());
        l.store.apply(&[remote_like(7, 1)]).await.unwrap();
        l.like(7, 2).await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.count(7).await.unwrap(), 2);
        assert!(l.liked(7, 1).await.unwrap());
        assert!(!l.liked(7, 3).await.unwrap());
        // A second pass over nothing new moves nothing; a replayed delta is no change.
        l.store.apply(&[remote_like(7, 1)]).await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.count(7).await.unwrap(), 2);
        // Unlike removes every add seen (both regions'); idempotent.
        assert!(l.unlike(7, 1).await.unwrap());
        assert!(!l.unlike(7, 1).await.unwrap());
        l.catch_up().await.unwrap();
        assert_eq!(l.count(7).await.unwrap(), 1);
        assert_eq!(l.likers(7, None, 10).await.unwrap().ids, vec![2]);
        assert_eq!(l.count(8).await.unwrap(), 0);
    }

    /// A crash between a batch's counter moves and its shadows (or after both, before the
    /// position moved): the restarted consumer finishes the saved batch and counts each like once.
    #[tokio::test]
    async fn a_crash_inside_a_batch_counts_each_like_once() {
        for shadows_written in [false, true] {
            let l = likes();
            l.like(7, 1).await.unwrap();
            l.like(7, 2).await.unwrap();
            l.like(8, 1).await.unwrap();
            let consumer = FeedConsumer::new(l.store.clone(), CONSUMER);
            let changes = consumer.batch(0, BATCH).await.unwrap();
            let last = changes.last().unwrap().seq;
            let j = l.plan(&changes, last, None).await.unwrap();
            j.save(l.store.as_ref()).await.unwrap();
            // The crash: the counters moved, the shadows maybe not, the position not.
            let moves: Vec<_> = j
                .counters
                .iter()
                .map(|(k, _, d)| (k.clone(), Mutation::Count(*d)))
                .collect();
            l.store.mutate_many(&moves).await.unwrap();
            if shadows_written {
                j.apply(l.store.as_ref()).await.unwrap();
            }
            assert_eq!(l.count(7).await.unwrap(), 2);
            // The restarted consumer (a new Likes over the same store).
            let again = Likes::new(l.store.clone());
            again.catch_up().await.unwrap();
            assert_eq!(
                again.count(7).await.unwrap(),
                2,
                "shadows {shadows_written}"
            );
            assert_eq!(again.count(8).await.unwrap(), 1);
            // Later changes still count, and an unlike moves it back by one.
            again.like(7, 3).await.unwrap();
            again.unlike(7, 1).await.unwrap();
            again.catch_up().await.unwrap();
            assert_eq!(again.count(7).await.unwrap(), 2);
        }
    }

    #[tokio::test]
    async fn cached_counts_follow_every_batch() {
        let l = likes();
        l.like(7, 1).await.unwrap();
        l.catch_up().await.unwrap();
        let one = |n| Counts {
            likes: n,
            ..Counts::default()
        };
        assert_eq!(l.counts_many(&[7, 8]).await.unwrap(), vec![one(1), one(0)]);
        assert_eq!(l.cached_counts(), 2);
        l.like(7, 2).await.unwrap();
        l.like(8, 2).await.unwrap();
        // Not counted yet: the cache says what the counters say.
        assert_eq!(l.counts_many(&[7, 8]).await.unwrap(), vec![one(1), one(0)]);
        l.catch_up().await.unwrap();
        assert_eq!(l.counts_many(&[7, 8]).await.unwrap(), vec![one(2), one(1)]);
        l.unlike(7, 1).await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.counts_many(&[8, 7]).await.unwrap(), vec![one(1), one(1)]);
    }

    /// The viewer's flags as hydration reads them: the cache, else the elements (then cached).
    async fn flags(l: &Likes, post: u64, viewer: u64) -> ViewerFlags {
        let all = l.viewer_flags(viewer, &[8, post, 9]).await.unwrap();
        assert_eq!(all[0], all[2], "posts 8 and 9: no flags");
        all[1]
    }

    #[tokio::test]
    async fn cached_viewer_flags_follow_own_writes_at_once_and_replicated_ones_per_pass() {
        let l = likes();
        let none = ViewerFlags::default();
        let liked = ViewerFlags {
            liked: true,
            reposted: false,
        };
        assert_eq!(flags(&l, 7, 1).await, none);
        assert_eq!(
            l.viewer_cached(7, 1),
            Some(none),
            "a negative answer is cached"
        );
        // The viewer's own like and unlike: the next read shows each.
        l.like(7, 1).await.unwrap();
        assert_eq!(flags(&l, 7, 1).await, liked);
        assert_eq!(l.viewer_cached(7, 1), Some(liked));
        l.unlike(7, 1).await.unwrap();
        assert_eq!(flags(&l, 7, 1).await, none);
        // The same viewer's like made in another region, replicated here: the change feed's
        // next pass drops the cached answer.
        assert_eq!(flags(&l, 7, 1).await, none);
        l.store.apply(&[remote_like(7, 1)]).await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.viewer_cached(7, 1), None);
        assert_eq!(flags(&l, 7, 1).await, liked);
        // Another viewer's entry of the same post is theirs.
        assert_eq!(flags(&l, 7, 2).await, none);
        assert!(l.cached_viewer_flags() >= 2);
        let (hits, misses) = l.viewer_flag_hits_misses();
        assert!(hits > 0 && misses > 0, "{hits} {misses}");
        // Shared counting: no cache, every read from the elements.
        l.shared();
        assert_eq!(l.viewer_cached(7, 1), None);
        assert_eq!(flags(&l, 7, 1).await, liked);
        assert_eq!(l.viewer_cached(7, 1), None);
    }

    #[tokio::test]
    async fn likers_page_by_cursor_and_posts_do_not_mix() {
        let l = likes();
        for u in 1..=25 {
            l.like(5, u).await.unwrap();
        }
        l.like(6, 99).await.unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let p = l.likers(5, after, 10).await.unwrap();
            seen.extend(p.ids);
            match p.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (1..=25).collect::<Vec<_>>());
        l.catch_up().await.unwrap();
        assert_eq!(l.count(5).await.unwrap(), 25);
        assert_eq!(l.count(6).await.unwrap(), 1);
    }

    #[test]
    fn only_elements_of_counted_sets_are_counted() {
        let c = |post: u64| Some(count_key(post));
        assert_eq!(counter_of(&like_key(3, 4)), c(3));
        assert_eq!(liker_of(&like_key(3, 4)), Some(4));
        assert_eq!(counter_of(&LIKES.key().u64(3).finish()), None);
        assert_eq!(
            counter_of(&Keyspace::new("plx").key().u64(3).u64(4).finish()),
            None
        );
        assert_eq!(counter_of(&count_key(3)), None);
        // `pr` (a reply's parent) is not `prp` (reposts) nor `pt` (the replies).
        assert_eq!(
            counter_of(&crate::reposts::REPOSTS.key().u64(3).u64(4).finish()),
            Some(REPOST_COUNTS.key().u64(3).finish())
        );
        assert_eq!(
            counter_of(&Keyspace::new("pr").key().u64(3).u64(4).finish()),
            None
        );
        assert_eq!(
            counter_of(&crate::replies::REPLIES.key().u64(3).u64(4).finish()),
            Some(REPLY_COUNTS.key().u64(3).finish())
        );
    }
}
