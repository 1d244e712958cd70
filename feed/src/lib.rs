//! Home timelines: fan-out on write into capped, node-local timelines; authors with many
//! followers are pulled at read time instead (hybrid, as Twitter does).
//!
//! A timeline is regional derived state, never replicated: each node builds its own from the
//! replicated posts and follows, by tailing its store's change feed ([`Feed::catch_up`]):
//! - a new post of an ordinary author is inserted into every follower's timeline (once: a
//!   node-local mark per post);
//! - a new follow backfills the followee's recent posts; an unfollow (or a block, which unfollows)
//!   removes them;
//! - a deleted post is skipped when pages are hydrated, so it disappears everywhere at once.
//!
//! Timeline entries are `ft/user/post id (descending)` → author, so a forward scan is newest
//! first and a page after post id `c` holds only older posts: paging while new posts arrive
//! never skips or repeats one. Timelines are capped (`cap`, 800 by default) by trimming the
//! oldest entries.
//!
//! Not yet built (see the feed issue): the moka/Redis cache tiers, skipping inactive users with
//! rebuild on read (206), continuing past the cap from the store.

use bytes::Bytes;
use starling_graph::{Graph, GraphError};
use starling_posts::{Post, PostError, Posts};
use starling_store::{
    FeedConsumer, Key, Keyspace, ScanRequest, Store, StoreError, StoreExt, drive,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;

const TIMELINES: Keyspace = Keyspace::local("ft");
const FANNED: Keyspace = Keyspace::local("ff");
const SIZES: Keyspace = Keyspace::local("fz");

/// Tunables.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// Entries kept per timeline.
    pub cap: usize,
    /// Authors with more followers are not fanned out to; their posts are merged at read time.
    pub celebrity_followers: i64,
    /// Posts copied into a timeline when its owner follows someone.
    pub backfill: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            cap: 800,
            celebrity_followers: 10_000,
            backfill: 20,
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
}

/// A page of a home timeline, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedPage {
    /// Hydrated posts.
    pub posts: Vec<Post>,
    /// Cursor of the next page (the last post's id).
    pub next: Option<u64>,
}

/// The feed service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Feed {
    store: Arc<dyn Store>,
    graph: Graph,
    posts: Posts,
    cfg: Arc<FeedConfig>,
    /// One catch-up at a time (held across awaits: a tokio mutex).
    lock: Arc<tokio::sync::Mutex<()>>,
}

fn entry(user: u64, post: u64) -> Key {
    TIMELINES.key().u64(user).u64_desc(post).finish()
}

fn read_id(b: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

impl Feed {
    /// A feed over the node's store, graph and posts.
    pub fn new(store: Arc<dyn Store>, graph: Graph, posts: Posts, cfg: FeedConfig) -> Self {
        Feed {
            store,
            graph,
            posts,
            cfg: Arc::new(cfg),
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    async fn is_celebrity(&self, author: u64) -> Result<bool, FeedError> {
        Ok(self.graph.count_of(author, "followers").await? > self.cfg.celebrity_followers)
    }

    async fn insert(&self, user: u64, post: u64, author: u64) -> Result<(), FeedError> {
        let k = entry(user, post);
        if self.store.get(&k).await?.is_some_and(|v| v.value.is_some()) {
            return Ok(());
        }
        self.store
            .add(&k, Bytes::copy_from_slice(&author.to_be_bytes()))
            .await?;
        let size = self.store.incr(&SIZES.key().u64(user).finish(), 1).await?;
        if size > (self.cfg.cap + self.cfg.cap / 8) as i64 {
            self.trim(user).await?;
        }
        Ok(())
    }

    /// Walks a timeline newest first and removes the entries `drop(position, author)` picks.
    async fn remove_where(
        &self,
        user: u64,
        mut drop: impl FnMut(usize, Option<u64>) -> bool,
    ) -> Result<(), FeedError> {
        let mut req = ScanRequest::prefix(TIMELINES.key().u64(user).finish(), 1000);
        let (mut position, mut removed) = (0usize, 0i64);
        loop {
            let page = self.store.scan(&req).await?;
            for (k, v) in &page.items {
                position += 1;
                if drop(position, v.value.as_deref().and_then(read_id)) {
                    self.store.remove(k).await?;
                    removed += 1;
                }
            }
            match page.next {
                Some(n) => req.after = Some(n),
                None => break,
            }
        }
        self.store
            .incr(&SIZES.key().u64(user).finish(), -removed)
            .await?;
        Ok(())
    }

    /// Drops the oldest entries past the cap.
    async fn trim(&self, user: u64) -> Result<(), FeedError> {
        let cap = self.cfg.cap;
        self.remove_where(user, |position, _| position > cap).await
    }

    /// Removes an author's posts from a timeline (unfollow, block).
    async fn remove_author(&self, user: u64, author: u64) -> Result<(), FeedError> {
        self.remove_where(user, |_, by| by == Some(author)).await
    }

    async fn fan_out(&self, post: &Post) -> Result<(), FeedError> {
        let mark = FANNED.key().u64(post.id).finish();
        if self.store.get(&mark).await?.is_some() || self.is_celebrity(post.author).await? {
            return Ok(());
        }
        let mut after = None;
        loop {
            let page = self.graph.followers(post.author, after, 100).await?;
            for f in &page.ids {
                self.insert(*f, post.id, post.author).await?;
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        self.store.put(&mark, Bytes::new()).await?;
        Ok(())
    }

    async fn on_follow_change(&self, key: &Key) -> Result<(), FeedError> {
        let off = starling_graph::keys::FOLLOWING.prefix_len();
        let (Some(follower), Some(followee)) = (
            starling_store::key::read_u64(key.as_bytes(), off),
            starling_store::key::read_u64(key.as_bytes(), off + 8),
        ) else {
            return Ok(());
        };
        if self.graph.is_following(follower, followee).await? {
            if self.is_celebrity(followee).await? {
                return Ok(());
            }
            let page = self
                .posts
                .by_author(followee, None, self.cfg.backfill)
                .await?;
            for p in page.posts {
                self.insert(follower, p.id, followee).await?;
            }
        } else {
            self.remove_author(follower, followee).await?;
        }
        Ok(())
    }

    /// Brings the timelines up to the store's change feed: fans out new posts, applies follow
    /// changes. Resumes where it stopped after a restart (the position is persisted).
    pub async fn catch_up(&self) -> Result<(), FeedError> {
        let _one = self.lock.lock().await;
        let consumer = FeedConsumer::new(self.store.clone(), "feed-fan-out");
        let mut cursor = consumer.position().await?;
        let posts_prefix = starling_posts::POSTS.prefix();
        let follows_prefix = starling_graph::keys::FOLLOWING.prefix();
        loop {
            let changes = consumer.batch(cursor, 1024).await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(());
            };
            for c in changes {
                if c.key.starts_with(posts_prefix.as_bytes()) {
                    let off = starling_posts::POSTS.prefix_len();
                    let Some(id) = starling_store::key::read_u64(c.key.as_bytes(), off) else {
                        continue;
                    };
                    match self.posts.get(id).await {
                        Ok(p) => self.fan_out(&p).await?,
                        Err(PostError::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                } else if c.key.starts_with(follows_prefix.as_bytes()) {
                    self.on_follow_change(&c.key).await?;
                }
            }
            cursor = last;
            consumer.commit(cursor).await?;
        }
    }

    /// Keeps timelines current with local and replicated changes until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let store = self.store.clone();
        drive(store, shutdown, || async {
            if let Err(e) = self.catch_up().await {
                tracing::error!(error = %e, "feed fan-out failed");
            }
        })
        .await;
    }

    /// A page of `user`'s home timeline, newest first, older than post `before`: the fanned-out
    /// timeline merged with the recent posts of followed celebrities, hydrated, deleted posts
    /// skipped.
    pub async fn page(
        &self,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<FeedPage, FeedError> {
        let limit = limit.clamp(1, 100);
        let mut ids: BTreeSet<u64> = BTreeSet::new();
        let mut req = ScanRequest::prefix(TIMELINES.key().u64(user).finish(), limit);
        req.after = before.map(|b| entry(user, b));
        let page = self.store.scan(&req).await?;
        let off = TIMELINES.prefix_len() + 8;
        ids.extend(
            page.items
                .iter()
                .filter_map(|(k, _)| starling_store::key::read_u64(k.as_bytes(), off))
                .map(|d| !d),
        );
        // Hybrid: followed celebrities are pulled.
        let mut after = None;
        loop {
            let following = self.graph.following(user, after, 100).await?;
            for f in &following.ids {
                if self.is_celebrity(*f).await? {
                    let theirs = self.posts.by_author(*f, before, limit).await?;
                    ids.extend(theirs.posts.iter().map(|p| p.id));
                }
            }
            match following.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        // `limit` candidates per page; deleted ones are skipped, so a page may be short but the
        // cursor still moves past them.
        let mut posts = Vec::with_capacity(limit);
        let mut last = None;
        let mut considered = 0;
        for id in ids.into_iter().rev() {
            if considered == limit {
                break;
            }
            considered += 1;
            last = Some(id);
            match self.posts.get(id).await {
                Ok(p) => posts.push(p),
                Err(PostError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let next = if considered == limit { last } else { None };
        Ok(FeedPage { posts, next })
    }
}

#[cfg(test)]
mod tests;
