//! What one node's fan-out changed in the caches every node keeps in process, so that the other
//! nodes deriving the same region from one ScyllaDB keyspace can drop their copies at once.
//!
//! With several nodes on one keyspace ([`crate::FeedConfig::shared_ttl`]) a post is fanned out
//! by the node that holds its partition of the keyspace-wide feed only: the others' in-process
//! timelines (L1), post bodies, pulled authors' lists and author summaries would stay stale until
//! they expire. [`Feed::apply_changes_noting`] applies a batch like [`Feed::apply_changes`] and
//! returns the [`Touched`] caches — the timelines it inserted into or backfilled (every follower
//! of a fanned-out author, cached here or not), the posts, authors' lists and users that changed
//! — and [`Feed::drop_cached`] drops exactly those on another node (its own copies only: the
//! holder already updated the regional L2). A dropped timeline is read again from L2 or rebuilt
//! from the store, which holds the change already (the keyspace feed lists a write only after
//! it is stored).
//!
//! A [`Touched`] is bounded: past [`MAX_NOTED`] ids it keeps none and says `all` instead (drop
//! every copy), so one message never outgrows the bound however large the batch.

use crate::Feed;
use std::collections::BTreeSet;

/// Ids a [`Touched`] lists at most before it turns into "drop everything".
pub const MAX_NOTED: usize = 65_536;

/// The in-process caches a batch of changes made stale on other nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Too many to list: drop every cached timeline, body, list and summary.
    pub all: bool,
    /// Owners of timelines that changed.
    pub timelines: BTreeSet<u64>,
    /// Posts whose bodies changed.
    pub posts: BTreeSet<u64>,
    /// Authors whose post lists changed (the pulled authors' recent lists).
    pub lists: BTreeSet<u64>,
    /// Users whose record or profile changed (author summaries).
    pub authors: BTreeSet<u64>,
}

impl Touched {
    /// Nothing to drop.
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.timelines.is_empty()
            && self.posts.is_empty()
            && self.lists.is_empty()
            && self.authors.is_empty()
    }

    /// Ids listed.
    pub fn len(&self) -> usize {
        self.timelines.len() + self.posts.len() + self.lists.len() + self.authors.len()
    }

    /// Adds what `other` lists.
    pub fn merge(&mut self, other: Touched) {
        if self.all || other.all {
            self.set_all();
            return;
        }
        self.timelines.extend(other.timelines);
        self.posts.extend(other.posts);
        self.lists.extend(other.lists);
        self.authors.extend(other.authors);
        self.bound();
    }

    pub(crate) fn timeline(&mut self, user: u64) {
        if !self.all {
            self.timelines.insert(user);
            self.bound();
        }
    }

    pub(crate) fn timelines_of(&mut self, users: &[u64]) {
        if !self.all {
            self.timelines.extend(users.iter().copied());
            self.bound();
        }
    }

    pub(crate) fn post(&mut self, id: u64) {
        if !self.all {
            self.posts.insert(id);
            self.bound();
        }
    }

    pub(crate) fn list(&mut self, author: u64) {
        if !self.all {
            self.lists.insert(author);
            self.bound();
        }
    }

    pub(crate) fn author(&mut self, user: u64) {
        if !self.all {
            self.authors.insert(user);
            self.bound();
        }
    }

    fn bound(&mut self) {
        if self.len() > MAX_NOTED {
            self.set_all();
        }
    }

    fn set_all(&mut self) {
        *self = Touched {
            all: true,
            ..Touched::default()
        };
    }
}

impl Touched {
    /// What other nodes' writes of `keys` made stale in this node's caches, from the keys alone
    /// (a node's broadcast reader of the keyspace feed, without the region's bus): the posts
    /// written, the authors' lists, the users whose record or profile changed, and the
    /// follower's timeline of a follow edge. Not the timelines a new post reaches (only the
    /// holder's fan-out knows its followers): [`Feed::insert_into_cached`] puts the post
    /// into those held here.
    pub fn of_keys<'k>(keys: impl IntoIterator<Item = &'k starling_store::Key>) -> Touched {
        use starling_store::key::read_u64;
        let posts = starling_posts::POSTS.prefix();
        let lists = crate::fanout::AUTHOR_LISTS.prefix();
        let users = crate::authors::USER_RECORDS.prefix();
        let profiles = crate::authors::PROFILES.prefix();
        let follows = starling_graph::keys::FOLLOWING.prefix();
        let mut t = Touched::default();
        for k in keys {
            let k = k.as_bytes();
            if k.starts_with(posts.as_bytes()) {
                if let Some(id) = read_u64(k, starling_posts::POSTS.prefix_len()) {
                    t.post(id);
                }
            } else if k.starts_with(lists.as_bytes()) {
                if let Some(a) = read_u64(k, crate::fanout::AUTHOR_LISTS.prefix_len()) {
                    t.list(a);
                }
            } else if k.starts_with(users.as_bytes()) || k.starts_with(profiles.as_bytes()) {
                // Both keyspaces' names are two characters long.
                if let Some(u) = read_u64(k, crate::authors::USER_RECORDS.prefix_len()) {
                    t.author(u);
                }
            } else if k.starts_with(follows.as_bytes())
                && let Some(a) = read_u64(k, starling_graph::keys::FOLLOWING.prefix_len())
            {
                t.timeline(a);
            }
        }
        t
    }
}

impl Feed {
    /// Posts written to a shared keyspace (through any node: the holder that fans a post out
    /// may be another), as this node's reader of the keyspace feed sees their keys without the
    /// region's bus: each one goes into the timelines of its
    /// author's followers that this node holds in process, as the holder's fan-out does on its
    /// own node (no fan-out mark, no L2). A post gone, or one of an author pulled at read time
    /// (their recent list is dropped by its own key), changes nothing; a post already there
    /// (an edit) is not inserted again. One post read, one count read and one follower scan a
    /// post (at most `celebrity_followers` ids). Returns the timelines that took a post.
    pub async fn insert_into_cached(&self, posts: &[u64]) -> Result<usize, crate::FeedError> {
        let i = &self.inner;
        let mut took = 0;
        if i.l1.is_empty() {
            return Ok(0);
        }
        let cap = i.l1.cap();
        for id in posts {
            let post = match i.posts.get(*id).await {
                Ok(p) => p,
                Err(starling_posts::PostError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            if i.graph.count_of(post.author, "followers").await? > i.cfg.celebrity_followers {
                continue;
            }
            for f in i.graph.all_followers(post.author).await? {
                let Some(slot) = i.l1.slot(f) else { continue };
                let mut s = slot.lock();
                if match post.repost_of {
                    Some(original) => s.insert_repost(post.id, original, post.author, cap),
                    None => s.timeline.insert(post.id, post.author, cap),
                } {
                    took += 1;
                }
            }
        }
        Ok(took)
    }

    /// Applies one batch like [`Feed::apply_changes`] and returns what it changed in the caches
    /// other nodes keep (see the module's doc).
    pub async fn apply_changes_noting(
        &self,
        changes: &[starling_store::Change],
    ) -> Result<Touched, crate::FeedError> {
        let mut touched = Touched::default();
        self.apply(changes, Some(&mut touched)).await?;
        Ok(touched)
    }

    /// Drops this node's in-process copies of what another node's batch changed (never the
    /// regional L2, which that node updated). Returns the timelines dropped.
    pub fn drop_cached(&self, t: &Touched) -> usize {
        let i = &self.inner;
        if t.all {
            let n = i.l1.len();
            i.l1.evict_all();
            i.bodies.forget_all_local();
            i.recent.changed_all();
            i.authors.invalidate_all();
            return usize::try_from(n).unwrap_or(usize::MAX);
        }
        let mut dropped = 0;
        for u in &t.timelines {
            if i.l1.slot(*u).is_some() {
                i.l1.evict(*u);
                dropped += 1;
            }
        }
        for p in &t.posts {
            i.bodies.forget_local(*p);
        }
        for a in &t.lists {
            i.recent.changed(*a);
        }
        for u in &t.authors {
            i.authors.invalidate(*u);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touched_set_past_its_bound_says_all() {
        let mut t = Touched::default();
        assert!(t.is_empty());
        t.post(1);
        t.timelines_of(&[2, 3]);
        assert_eq!(t.len(), 3);
        let many: Vec<u64> = (0..MAX_NOTED as u64).collect();
        t.timelines_of(&many);
        assert!(t.all && t.timelines.is_empty() && t.posts.is_empty() && !t.is_empty());
        let mut u = Touched::default();
        u.author(7);
        u.merge(t);
        assert!(u.all && u.authors.is_empty());
    }

    #[test]
    fn keys_name_the_caches_they_make_stale() {
        let keys = [
            starling_posts::POSTS.key().u64(5).finish(),
            crate::fanout::AUTHOR_LISTS.key().u64(6).finish(),
            crate::authors::PROFILES.key().u64(7).finish(),
            crate::authors::USER_RECORDS.key().u64(8).finish(),
            starling_graph::keys::FOLLOWING
                .key()
                .u64(9)
                .u64(10)
                .finish(),
            starling_store::Keyspace::new("zz").key().u64(11).finish(),
        ];
        let t = Touched::of_keys(&keys);
        assert_eq!(t.posts.iter().copied().collect::<Vec<_>>(), [5]);
        assert_eq!(t.lists.iter().copied().collect::<Vec<_>>(), [6]);
        assert_eq!(t.authors.iter().copied().collect::<Vec<_>>(), [7, 8]);
        assert_eq!(t.timelines.iter().copied().collect::<Vec<_>>(), [9]);
        assert!(!t.all);
    }
}
