//! The write side: a worker tails the store's change feed and turns changes into timeline
//! updates.
//!
//! - A new post of an ordinary author is inserted into the timeline of every follower that has
//!   one in L1 (a repost — a post with `repost_of` — only where the timeline holds neither the
//!   reposted post nor another repost of it: once per reposted post per timeline) (and, by the node that claims the post in Redis, into L2), one Redis round trip
//!   per 512 of them. The author's follower list comes from the worker's cache
//!   ([`crate::followers`]), read whole from the store when missing. A node-local mark per post
//!   means a post that is edited later is not fanned out again; the post's deletion deletes it.
//! - An author above the threshold is not fanned out; the first time a node sees one, it tells
//!   the cached timelines of their followers to pull them at read time instead. A change to an
//!   author's post list drops the in-process list of their recent posts ([`crate::recent`]).
//! - Follows backfill the followee's posts newer than the timeline's floor; unfollows (blocks
//!   unfollow) remove the author's entries; post edits and deletes drop the cached body; a
//!   change to a user's record or profile drops their summary ([`crate::authors`]).
//! - Users whose last read is older than the inactivity period are dropped from L1 instead of
//!   updated; L2 expires them by itself.
//!
//! The change feed is the queue: it is durable and bounded per batch (1 024 changes), and the
//! consumer's persisted cursor means a restart resumes where it stopped. Timeline inserts are
//! idempotent, so a batch replayed after a crash inserts nothing twice.

use crate::{Feed, FeedError};
use bytes::Bytes;
use starling_posts::{Post, PostError};
use starling_store::{Change, FeedConsumer, Keyspace, StoreExt, Wake, drive};
use std::sync::Arc;
use tokio::sync::watch;

/// Node-local marks: `ff/post` — this node has fanned the post out.
pub(crate) const FANNED: Keyspace = Keyspace::local("ff");
/// Node-local marks: `fc/author` — this node knows the author is pulled, not fanned out.
const CELEBS: Keyspace = Keyspace::local("fc");
/// The fan-out's name as a change-feed consumer (its saved position).
pub const CONSUMER: &str = "feed-fan-out";
/// The posts crate's lists of posts by author (`pa/author/!post`), whose changes drop the
/// author's in-process list of recent posts (the name is checked against the posts crate by a
/// test in `tests.rs`).
pub(crate) const AUTHOR_LISTS: Keyspace = Keyspace::new("pa");
/// The keyspaces whose changes the fan-out reads ([`Feed::apply`]): only their writes wake it.
const READS: &[Keyspace] = &[
    starling_posts::POSTS,
    AUTHOR_LISTS,
    crate::authors::USER_RECORDS,
    crate::authors::PROFILES,
    starling_graph::keys::FOLLOWERS,
    starling_graph::keys::FOLLOWING,
];

impl Feed {
    /// Brings the timelines up to the store's change feed. Resumes where it stopped after a
    /// restart (the position is persisted).
    pub async fn catch_up(&self) -> Result<(), FeedError> {
        let _one = self.inner.lock.lock().await;
        let consumer = FeedConsumer::new(self.inner.store.clone(), CONSUMER);
        let mut cursor = consumer.position().await?;
        loop {
            let changes = consumer.batch(cursor, 1024).await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(());
            };
            self.apply_changes(&changes).await?;
            cursor = last;
            consumer.commit(cursor).await?;
        }
    }

    /// Applies one batch of changes (of this node's feed, or of a partition of the keyspace-wide
    /// feed this node holds) to the timelines and caches. Idempotent: a post fanned out before
    /// is not fanned out again, and follows are re-read.
    pub async fn apply_changes(&self, changes: &[Change]) -> Result<(), FeedError> {
        self.apply(changes, None).await
    }

    /// [`Feed::apply_changes`], noting in `note` what other nodes' caches must drop
    /// ([`crate::invalidation`]).
    pub(crate) async fn apply(
        &self,
        changes: &[Change],
        mut note: Option<&mut crate::invalidation::Touched>,
    ) -> Result<(), FeedError> {
        let posts_prefix = starling_posts::POSTS.prefix();
        let follows_prefix = starling_graph::keys::FOLLOWING.prefix();
        let followers_prefix = starling_graph::keys::FOLLOWERS.prefix();
        let lists_prefix = AUTHOR_LISTS.prefix();
        let users_prefix = crate::authors::USER_RECORDS.prefix();
        let profiles_prefix = crate::authors::PROFILES.prefix();
        let mut gone = Vec::new();
        for c in changes {
            if c.key.starts_with(posts_prefix.as_bytes()) {
                let off = starling_posts::POSTS.prefix_len();
                let Some(id) = starling_store::key::read_u64(c.key.as_bytes(), off) else {
                    continue;
                };
                self.inner.bodies.invalidate(id).await;
                if let Some(t) = note.as_deref_mut() {
                    t.post(id);
                }
                match self.inner.posts.get(id).await {
                    Ok(p) => {
                        self.fan_out(&p, note.as_deref_mut()).await?;
                    }
                    Err(PostError::NotFound) => gone.push(id),
                    Err(e) => return Err(e.into()),
                }
            } else if c.key.starts_with(lists_prefix.as_bytes()) {
                let off = AUTHOR_LISTS.prefix_len();
                if let Some(author) = starling_store::key::read_u64(c.key.as_bytes(), off) {
                    self.inner.recent.changed(author);
                    if let Some(t) = note.as_deref_mut() {
                        t.list(author);
                    }
                }
            } else if c.key.starts_with(users_prefix.as_bytes())
                || c.key.starts_with(profiles_prefix.as_bytes())
            {
                // Both keyspaces' names are two characters long.
                let off = crate::authors::USER_RECORDS.prefix_len();
                if let Some(user) = starling_store::key::read_u64(c.key.as_bytes(), off) {
                    self.inner.authors.invalidate(user);
                    if let Some(t) = note.as_deref_mut() {
                        t.author(user);
                    }
                }
            } else if c.key.starts_with(followers_prefix.as_bytes()) {
                let off = starling_graph::keys::FOLLOWERS.prefix_len();
                if let Some(author) = starling_store::key::read_u64(c.key.as_bytes(), off) {
                    self.inner.followers.invalidate(author);
                }
            } else if c.key.starts_with(follows_prefix.as_bytes()) {
                let off = starling_graph::keys::FOLLOWING.prefix_len();
                if let (Some(a), Some(b)) = (
                    starling_store::key::read_u64(c.key.as_bytes(), off),
                    starling_store::key::read_u64(c.key.as_bytes(), off + 8),
                ) {
                    self.follow_changed(a, b).await?;
                    if let Some(t) = note.as_deref_mut() {
                        t.timeline(a);
                    }
                }
            }
        }
        self.forget_fanned(&gone).await
    }

    /// Deletes the fan-out marks of deleted posts (`ids`, read as not found): a mark only keeps
    /// an edit from fanning its post out again, and without this every post ever fanned out
    /// left one (a soak's store gained 137 000 marks, 12 MiB, in 11 minutes). Only marks that
    /// exist are deleted (a blind delete would store a tombstone for a post never fanned out
    /// here); the reaper collects their tombstones. A post that comes back (an edit concurrent
    /// with its deletion won) is fanned out again, to timelines its deletion left.
    async fn forget_fanned(&self, ids: &[u64]) -> Result<(), FeedError> {
        if ids.is_empty() {
            return Ok(());
        }
        let marks: Vec<starling_store::Key> = ids
            .iter()
            .map(|id| FANNED.key().u64(*id).finish())
            .collect();
        let found = self.inner.store.get_records(&marks).await?;
        let deletes: Vec<(starling_store::Key, starling_store::Mutation)> = marks
            .into_iter()
            .zip(found)
            .filter(|(_, r)| r.as_ref().is_some_and(|r| !r.is_tombstone()))
            .map(|(k, _)| (k, starling_store::Mutation::Delete))
            .collect();
        if !deletes.is_empty() {
            self.inner.store.mutate_many(&deletes).await?;
        }
        Ok(())
    }

    /// Keeps timelines current with local and replicated changes until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let store = self.inner.store.clone();
        drive(store, Wake::On(READS), shutdown, || async {
            if let Err(e) = self.catch_up().await {
                tracing::error!(error = %e, "feed fan-out failed");
            }
        })
        .await;
    }

    /// A post changed on this node (edit, delete): drop its cached body now, so the author
    /// sees the change in the next page without waiting for the worker.
    pub async fn post_changed(&self, id: u64) {
        self.inner.bodies.invalidate(id).await;
    }

    /// Whether `author` is pulled at read time; the first time this node sees an author over
    /// the threshold, the cached timelines of their followers learn to pull them.
    async fn pulled(&self, author: u64) -> Result<bool, FeedError> {
        let followers = self.inner.graph.count_of(author, "followers").await?;
        if followers <= self.inner.cfg.celebrity_followers {
            return Ok(false);
        }
        let mark = CELEBS.key().u64(author).finish();
        if self.inner.store.get(&mark).await?.is_none() {
            self.tell_followers_to_pull(author, u64::try_from(followers).unwrap_or(0))
                .await?;
            self.inner.store.put(&mark, Bytes::new()).await?;
        }
        Ok(true)
    }

    /// Adds `author` to the pulled accounts of their followers' cached timelines, once per
    /// author and node. It walks whichever is shorter: the author's follower list, or the cached
    /// timelines (asking the store whether each owner follows the author), so the work is
    /// bounded by the L1's size however many followers a large account has. A timeline built
    /// meanwhile finds the author pulled by itself (a rebuild checks each followee's count).
    async fn tell_followers_to_pull(&self, author: u64, followers: u64) -> Result<(), FeedError> {
        let add = |slot: crate::l1::SlotRef| {
            let mut s = slot.lock();
            if !s.celebs.contains(&author) {
                s.celebs.push(author);
            }
        };
        if followers <= self.inner.l1.len() {
            for f in self.inner.graph.all_followers(author).await? {
                if let Some(slot) = self.inner.l1.slot(f) {
                    add(slot);
                }
            }
        } else {
            for user in self.inner.l1.users() {
                if let Some(slot) = self.inner.l1.slot(user)
                    && self.inner.graph.is_following(user, author).await?
                {
                    add(slot);
                }
            }
        }
        Ok(())
    }

    /// Inserts a post into its author's followers' timelines; returns how many L1 timelines
    /// took it. When it is fanned out, every follower's timeline is noted in `note` (other nodes
    /// may hold timelines this one does not).
    async fn fan_out(
        &self,
        post: &Post,
        note: Option<&mut crate::invalidation::Touched>,
    ) -> Result<usize, FeedError> {
        let mark = FANNED.key().u64(post.id).finish();
        if self.inner.store.get(&mark).await?.is_some() || self.pulled(post.author).await? {
            return Ok(0);
        }
        let node = self.inner.store.node().0;
        let to_l2 = match &self.inner.l2 {
            Some(l2) if l2.is_healthy() => l2.claim_fan_out(post.id, node).await.unwrap_or(false),
            _ => false,
        };
        let (cap, now, inactive) = (
            self.inner.l1.cap(),
            self.now_ms(),
            u64::try_from(self.inner.cfg.inactive_after.as_millis()).unwrap_or(u64::MAX),
        );
        let mut took = 0;
        let followers = self.followers_of(post.author).await?;
        for f in followers.iter() {
            let Some(slot) = self.inner.l1.slot(*f) else {
                continue;
            };
            let mut s = slot.lock();
            if now.saturating_sub(s.last_read_ms) > inactive && !s.building {
                drop(s);
                self.inner.l1.evict(*f);
            } else if match post.repost_of {
                Some(original) => s.insert_repost(post.id, original, post.author, cap),
                None => s.timeline.insert(post.id, post.author, cap),
            } {
                took += 1;
            }
        }
        if to_l2
            && let Some(l2) = &self.inner.l2
            && let Err(e) = l2.insert(&followers, post.id, post.author).await
        {
            tracing::debug!(error = %e, post = post.id, "redis fan-out stopped");
        }
        if let Some(t) = note {
            t.timelines_of(&followers);
        }
        self.inner.store.put(&mark, Bytes::new()).await?;
        Ok(took)
    }

    /// The followers of `author`, from the worker's cache or read whole from the store (see
    /// [`crate::followers`] for why a cached list is current enough).
    async fn followers_of(&self, author: u64) -> Result<Arc<[u64]>, FeedError> {
        if self.inner.cfg.shared_ttl.is_some() {
            // Follows are read by the holders of their partitions, maybe on other nodes: this
            // node's cache would not learn of them.
            return Ok(self.inner.graph.all_followers(author).await?.into());
        }
        if let Some(ids) = self.inner.followers.get(author) {
            return Ok(ids);
        }
        let ids: Arc<[u64]> = self.inner.graph.all_followers(author).await?.into();
        self.inner.followers.insert(author, ids.clone());
        Ok(ids)
    }

    /// A follow edge `follower → followee` changed (followed, unfollowed, or removed by a
    /// block): backfill or remove in the follower's timelines. Idempotent; the API calls it
    /// right after the change so the caller reads their own follows, and the worker again
    /// when it meets the change.
    pub async fn follow_changed(&self, follower: u64, followee: u64) -> Result<(), FeedError> {
        let l2 = self.inner.l2.as_ref().filter(|l| l.is_healthy());
        let slot = self.inner.l1.slot(follower);
        if !self.inner.graph.is_following(follower, followee).await? {
            if let Some(slot) = &slot {
                let mut s = slot.lock();
                s.celebs.retain(|c| *c != followee);
                s.timeline.remove_author(followee);
            }
            if let Some(l2) = l2 {
                let _ = l2.remove_author(follower, followee).await;
            }
            return Ok(());
        }
        if self.is_celebrity(followee).await? {
            if let Some(slot) = &slot {
                let mut s = slot.lock();
                if !s.celebs.contains(&followee) {
                    s.celebs.push(followee);
                }
            }
            return Ok(());
        }
        if slot.is_none() && l2.is_none() {
            return Ok(());
        }
        let k = self.inner.cfg.backfill;
        let ids = self.inner.posts.ids_by_author(followee, None, k).await?;
        // Backfill is complete down to the oldest post read if the followee has more.
        let floor = if ids.len() == k {
            ids.last().copied()
        } else {
            None
        };
        if let Some(slot) = &slot {
            // Which of them are reposts (bounded: `backfill` bodies, from the post cache), so
            // that a repost backfilled here counts for the once-per-timeline rule like one
            // fanned out.
            let reposts: std::collections::HashMap<u64, u64> = self
                .inner
                .bodies
                .hydrate(&ids)
                .await?
                .iter()
                .filter_map(|p| Some((p.id, p.repost_of?)))
                .collect();
            let cap = self.inner.cfg.cap;
            let mut s = slot.lock();
            if let Some(f) = floor {
                s.timeline.floor = s.timeline.floor.max(f);
            }
            // Oldest first, as fan-out would have met them.
            for id in ids.iter().rev() {
                match reposts.get(id) {
                    Some(original) => s.insert_repost(*id, *original, followee, cap),
                    None => s.timeline.insert(*id, followee, cap),
                };
            }
        }
        if let Some(l2) = l2 {
            if let Some(f) = floor {
                let _ = l2.raise_floor(follower, f).await;
            }
            for id in &ids {
                let _ = l2.insert(&[follower], *id, followee).await;
            }
        }
        Ok(())
    }
}
