//! Home timelines: fan-out on write into capped timelines cached in process (quick_cache, L1) and,
//! with Redis configured, in the region (L2); authors with many followers are pulled at read
//! time instead (hybrid, as Twitter does); timelines missing from both tiers — never built,
//! evicted, or of an inactive user — are rebuilt from follows and posts when read.
//!
//! Timelines are regional derived state, never replicated: each node derives them from the
//! replicated posts and follows by tailing its store's change feed ([`Feed::catch_up`]), so a
//! post written in one region reaches timelines in every region once it has replicated. See
//! [`timeline`] for the floor that keeps paging gap-free past the cap, [`fanout`] for the
//! write side and [`read`] for the read side; `settings` (feature `clap`) declares the node's
//! feed settings as a clap group; `test_support` (feature `test-support`) the one set-up of the
//! unit tests and benchmarks.

pub mod authors;
pub mod fanout;
mod followers;
pub mod hydrate;
pub mod invalidation;
pub mod l1;
pub mod memory_tier;
pub mod read;
mod recent;
pub mod redis_tier;
#[cfg(feature = "clap")]
pub mod settings;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod tier;
pub mod timeline;
mod ttl_cache;

use followers::FollowerLists;
use hydrate::PostCache;
use l1::LocalTimelines;
use recent::RecentPosts;
#[cfg(feature = "clap")]
pub use settings::FeedSettings;
use starling_graph::{Graph, GraphError};
use starling_posts::{Post, PostError, Posts};
use starling_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
pub use tier::{RegionalTier, TierError, TimelineStore};

/// Tunables. Five are `starling serve`'s settings, declared with their flags in
/// `settings::FeedSettings` (feature `clap`); its declared defaults are these (a test holds
/// them to it).
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// Entries kept per timeline.
    pub cap: usize,
    /// Authors with more followers are not fanned out to; their posts are merged at read time.
    pub celebrity_followers: i64,
    /// Posts of each followee read into a rebuilt timeline, and copied in on a new follow.
    pub backfill: usize,
    /// Users who have not read their feed for this long are skipped by fan-out; their timeline
    /// is rebuilt on their next read.
    pub inactive_after: Duration,
    /// Followees a read rebuilds inline before it answers `206` with what is ready and leaves
    /// the rest to a background task.
    pub rebuild_budget: usize,
    /// Bytes of timelines kept in process.
    pub l1_bytes: u64,
    /// Bytes of authors' follower lists the fan-out worker keeps in process.
    pub follower_lists_bytes: u64,
    /// Bytes of pulled authors' recent post ids kept in process for the read-time merge.
    pub pulled_lists_bytes: u64,
    /// Post ids kept per pulled author; pages deeper than that read the author's list from
    /// the store.
    pub pulled_depth: usize,
    /// Post bodies kept in process.
    pub post_cache_entries: u64,
    /// How long Redis keeps a post body.
    pub post_ttl: Duration,
    /// Author summaries kept in process for hydrated views.
    pub author_cache_entries: u64,
    /// The clock that dates feed reads (a manual one in tests).
    pub clock: Arc<starling_store::HlcClock>,
    /// Set when several nodes derive the region's timelines, each from the partitions of a
    /// ScyllaDB keyspace's feed it holds ([`Feed::apply_changes`]): a post is then fanned out
    /// by one node only, so each node's timelines (L1) and pulled authors' lists live at most
    /// this long (the staleness a read can see without Redis; with Redis the holder's fan-out
    /// reaches L2), and the fan-out reads follower lists from the store (a cached list would
    /// miss follows another node read). `None`: this node's own feed drives everything.
    pub shared_ttl: Option<Duration>,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            cap: 800,
            celebrity_followers: 10_000,
            backfill: 20,
            inactive_after: Duration::from_secs(30 * 86_400),
            rebuild_budget: 200,
            l1_bytes: 512 << 20,
            follower_lists_bytes: 32 << 20,
            pulled_lists_bytes: 16 << 20,
            pulled_depth: 128,
            post_cache_entries: 200_000,
            post_ttl: Duration::from_secs(3600),
            author_cache_entries: 200_000,
            clock: Arc::new(starling_store::HlcClock::new()),
            shared_ttl: None,
        }
    }
}

/// Errors of the feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The graph failed.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// Posts failed.
    #[error(transparent)]
    Posts(#[from] PostError),
    /// The regional tier could not be set up at start.
    #[error(transparent)]
    Tier(#[from] TierError),
}

/// A page of a home timeline, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedPage {
    /// Hydrated posts (a repost is a post with `repost_of`).
    pub posts: Vec<Arc<Post>>,
    /// The posts that `posts` repost or quote, those that exist, in no particular order.
    pub originals: Vec<Arc<Post>>,
    /// Cursor of the next page (the last considered post's id); `None` at the true end.
    pub next: Option<u64>,
    /// The timeline is still being rebuilt: this page holds what is ready (HTTP 206).
    pub partial: bool,
}

/// The state of the regional L2, for `/readyz` (variant names from Redis, its usual backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheTier {
    /// No L2 configured: in-process only.
    LocalOnly,
    /// The L2 is configured and answering.
    RedisUp,
    /// The L2 is configured but failing: reads use L1 and rebuilds.
    RedisDown,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    graph: Graph,
    posts: Posts,
    cfg: FeedConfig,
    l1: LocalTimelines,
    l2: Option<Arc<dyn RegionalTier>>,
    bodies: PostCache,
    /// Author summaries for hydrated views.
    authors: authors::Authors,
    /// Follower lists of authors, for the fan-out worker only.
    followers: FollowerLists,
    /// Recent post ids of pulled authors, for the read-time merge.
    recent: RecentPosts,
    /// One catch-up at a time (held across awaits: a tokio mutex).
    lock: tokio::sync::Mutex<()>,
}

/// The feed service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl Feed {
    /// A feed over the node's store, graph and posts, cached in process only.
    pub fn new(store: Arc<dyn Store>, graph: Graph, posts: Posts, cfg: FeedConfig) -> Self {
        Feed::build(store, graph, posts, cfg, None)
    }

    /// A feed with a regional L2: Redis ([`Feed::connect_redis`]) or one shared in process
    /// ([`memory_tier::MemoryTier`]).
    pub fn with_l2(
        store: Arc<dyn Store>,
        graph: Graph,
        posts: Posts,
        cfg: FeedConfig,
        l2: Arc<dyn RegionalTier>,
    ) -> Self {
        Feed::build(store, graph, posts, cfg, Some(l2))
    }

    fn build(
        store: Arc<dyn Store>,
        graph: Graph,
        posts: Posts,
        cfg: FeedConfig,
        l2: Option<Arc<dyn RegionalTier>>,
    ) -> Self {
        Feed {
            inner: Arc::new(Inner {
                l1: LocalTimelines::with_ttl(cfg.l1_bytes, cfg.cap, cfg.shared_ttl),
                followers: FollowerLists::new(cfg.follower_lists_bytes),
                recent: RecentPosts::with_ttl(
                    cfg.pulled_lists_bytes,
                    cfg.pulled_depth,
                    cfg.shared_ttl,
                ),
                bodies: PostCache::new(posts.clone(), cfg.post_cache_entries, l2.clone()),
                authors: authors::Authors::new(graph.clone(), cfg.author_cache_entries),
                store,
                graph,
                posts,
                cfg,
                l2,
                lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Connects the Redis tier for a feed with `cfg`; fails at once if Redis does not answer.
    pub async fn connect_redis(
        url: &str,
        prefix: &str,
        cfg: &FeedConfig,
    ) -> Result<Arc<dyn RegionalTier>, FeedError> {
        Ok(Arc::new(
            redis_tier::RedisTier::connect(redis_tier::RedisSettings {
                url: url.to_owned(),
                prefix: prefix.to_owned(),
                cap: cfg.cap,
                inactive_after: cfg.inactive_after,
                post_ttl: cfg.post_ttl,
            })
            .await?,
        ))
    }

    /// The state of the cache tiers.
    pub fn cache_tier(&self) -> CacheTier {
        match &self.inner.l2 {
            None => CacheTier::LocalOnly,
            Some(r) if r.is_healthy() => CacheTier::RedisUp,
            Some(_) => CacheTier::RedisDown,
        }
    }

    /// Timelines held in process (approximate).
    pub fn cached_timelines(&self) -> u64 {
        self.inner.l1.len()
    }

    /// Follower lists the fan-out worker holds (approximate).
    pub fn cached_follower_lists(&self) -> u64 {
        self.inner.followers.len()
    }

    /// Pulled authors whose recent posts are held in process (approximate).
    pub fn cached_author_lists(&self) -> u64 {
        self.inner.recent.len()
    }

    /// Author summaries held in process for hydrated views.
    pub fn cached_authors(&self) -> u64 {
        self.inner.authors.len()
    }

    /// Posts whose counters are held in process for hydrated views.
    pub fn cached_post_counts(&self) -> u64 {
        self.inner.posts.likes().cached_counts()
    }

    /// (post, viewer) pairs whose `liked` / `reposted` flags are held in process for hydrated
    /// views (`starling_posts::viewer`).
    pub fn cached_viewer_flags(&self) -> u64 {
        self.inner.posts.likes().cached_viewer_flags()
    }

    /// Viewer-flag lookups answered from the cache, and not, since start.
    pub fn viewer_flag_hits_misses(&self) -> (u64, u64) {
        self.inner.posts.likes().viewer_flag_hits_misses()
    }

    /// Pulled authors' post lists read from the store since start (misses of the in-process
    /// lists, and pages deeper than they reach).
    pub fn author_list_reads(&self) -> u64 {
        self.inner.recent.reads()
    }

    /// Author summaries for hydrated views (see [`authors`]).
    pub fn authors(&self) -> &authors::Authors {
        &self.inner.authors
    }

    /// Posts by id from the body cache (L1, L2, store), those that exist, in the order given.
    pub async fn posts(&self, ids: &[u64]) -> Result<Vec<Arc<Post>>, FeedError> {
        Ok(self.inner.bodies.hydrate(ids).await?)
    }

    /// The regional L2, if configured (its health check is run by the server).
    pub fn l2(&self) -> Option<&Arc<dyn RegionalTier>> {
        self.inner.l2.as_ref()
    }

    fn now_ms(&self) -> u64 {
        self.inner.cfg.clock.wall_millis()
    }

    async fn is_celebrity(&self, author: u64) -> Result<bool, FeedError> {
        Ok(self.inner.graph.count_of(author, "followers").await?
            > self.inner.cfg.celebrity_followers)
    }
}

#[cfg(test)]
mod tests;
