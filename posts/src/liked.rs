//! The posts each user likes, for the sweep of a deleted account: likes given by a deleted user
//! stop counting.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `plg` | liker id, post id | set element (add-wins) | — |
//! | `plb` (local) | — | register | the backfill's position: the last like key read, empty once done |
//!
//! A like's element (`pl/post/liker`, [`crate::likes`]) is found from its post; this index finds
//! it from its liker. The API writes the index element before the like and takes it off after
//! an unlike, so a crash between leaves at most an index element without a like (its sweep
//! removes nothing), never a like the sweep cannot find. [`Posts::sweep_likes`] takes a deleted
//! user's likes back through the ordinary unlike, in steps of a bounded number of removals: each
//! like's element goes, so every node's count consumer moves the post's count down once (its
//! shadow per element and redo journal make that exact across crashes and retries), and the
//! removals replicate like any unlike. The seeder writes the index with its bulk-loaded likes
//! ([`crate::bulk`]); likes written before this index existed are added to it by a one-shot,
//! bounded backfill on each node ([`Posts::backfill_like_index`]).
//!
//! **A like not here yet.** The index element and the like are two keys that replicate in no set
//! order: a node may hold the element before the like (and every node sweeps). Taking the
//! element off there would replicate the removal to the nodes that hold the like, whose sweep
//! then never finds it: the like would count for good. So an element whose like this node has
//! never seen (no record: not a tombstone, nothing) stays, and a later pass takes the like back
//! once it arrived; only after the deletion's grace period (`unseen: Forget`) is such an element
//! taken off as a like never made (a crash between the element and the like, or an unlike's
//! crash before the index). An element whose like is a tombstone here was taken back already:
//! it goes at once.
//!
//! **Reposts and quotes** of a deleted user are posts of theirs, swept as posts: deleting one
//! takes its element (`prp`, `pq`, [`crate::reposts`]) off, so the counts move down once. The
//! same rule holds there: a post whose element this node has never seen is left for a later pass
//! ([`Posts::elements_here`]), else the element would arrive after the post's deletion and count
//! for good.

use crate::{Post, Posts};
use bytes::Bytes;
use starling_store::{Key, Keyspace, ScanRequest, StoreError, StoreExt};

/// `plg/liker/post`: the posts a user likes (replicated).
pub(crate) const LIKED: Keyspace = Keyspace::new("plg");
/// `plb` (local): how far this node's backfill of the index went — the last like key it read,
/// or empty once it read them all.
const BACKFILL: Keyspace = Keyspace::local("plb");

pub(crate) fn liked_key(liker: u64, post: u64) -> Key {
    LIKED.key().u64(liker).u64(post).finish()
}

impl Posts {
    /// Records that `liker` likes `post`, before the like itself (see the module doc).
    pub async fn note_like(&self, liker: u64, post: u64) -> Result<(), StoreError> {
        self.store
            .add(&liked_key(liker, post), Bytes::new())
            .await?;
        Ok(())
    }

    /// Takes `post` off `liker`'s likes, after the unlike.
    pub async fn forget_like(&self, liker: u64, post: u64) -> Result<(), StoreError> {
        self.store.remove(&liked_key(liker, post)).await?;
        Ok(())
    }

    /// Takes back `liker`'s likes (each an unlike, then its index element), looking at up to
    /// `budget` index elements; an element whose like is not here is kept unless `unseen` says
    /// to forget it (see the module doc).
    pub async fn sweep_likes(
        &self,
        liker: u64,
        budget: usize,
        unseen: Unseen,
    ) -> Result<LikeSweep, StoreError> {
        let prefix = LIKED.key().u64(liker).finish();
        let skip = prefix.as_bytes().len();
        let limit = budget.min(self.store.limits().max_scan);
        let mut out = LikeSweep::default();
        if limit == 0 {
            return Ok(out);
        }
        let page = self.store.scan(&ScanRequest::prefix(prefix, limit)).await?;
        for (k, _) in &page.items {
            let Some(post) = starling_store::key::read_u64(k.as_bytes(), skip) else {
                continue;
            };
            let seen = self
                .store
                .get(&crate::likes::like_key(post, liker))
                .await?
                .is_some();
            if !seen && unseen == Unseen::Wait {
                out.waiting += 1;
                continue;
            }
            self.likes.unlike(post, liker).await?;
            self.store.remove(k).await?;
            out.removed += 1;
        }
        Ok(out)
    }
}

impl Posts {
    /// Whether the set elements `post` is counted by (its repost's `prp` element, its quote's
    /// `pq` element, its parent's `pt` element) have reached this node, in any state (a
    /// tombstone, or a repost element naming another repost post, counts as arrived). True for a
    /// post with none, and for a reply whose record does not name its parent (stored before
    /// records did, or seeded: not known here to be one). Reads the post's record again for that.
    pub async fn elements_here(&self, post: &Post) -> Result<bool, StoreError> {
        let reply_to = match self.get_stored(post.id).await {
            Ok(s) => s.reply_to,
            Err(crate::PostError::Store(e)) => return Err(e),
            Err(_) => None,
        };
        if let Some(parent) = reply_to
            && self
                .store
                .get(&crate::replies::reply_key(parent, post.id))
                .await?
                .is_none()
        {
            return Ok(false);
        }
        if let Some(original) = post.repost_of
            && self
                .store
                .get(&crate::reposts::repost_key(original, post.author))
                .await?
                .is_none()
        {
            return Ok(false);
        }
        if let Some(quoted) = post.quote_of {
            let key = crate::reposts::QUOTES
                .key()
                .u64(quoted)
                .u64(post.id)
                .finish();
            if self.store.get(&key).await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Posts {
    /// One step of the backfill of the index for likes written before it existed: reads up to
    /// `budget` likes of this node's replica from the saved position on, adds the index element
    /// of each live like that has no index record here (none at all: a tombstone means it was
    /// taken off on purpose), and saves the position; at the end of the likes it saves "done"
    /// and later steps read one key. Bounded and resumable; run on every node (each indexes its
    /// own replica; elements added by several nodes are one set element to the sweep).
    pub async fn backfill_like_index(&self, budget: usize) -> Result<Backfill, StoreError> {
        let marker = BACKFILL.prefix();
        let at = self.store.get(&marker).await?.and_then(|v| v.value);
        if at.as_ref().is_some_and(|b| b.is_empty()) {
            return Ok(Backfill {
                indexed: 0,
                done: true,
            });
        }
        let limit = budget.clamp(1, self.store.limits().max_scan);
        let mut req = ScanRequest::prefix(crate::likes::LIKES.prefix(), limit);
        req.after = at.map(Key::from_bytes);
        let page = self.store.scan(&req).await?;
        let at = crate::likes::LIKES.prefix_len();
        let pairs: Vec<(u64, u64)> = (page.items.iter())
            .filter_map(|(k, _)| {
                let b = k.as_bytes();
                Some((
                    starling_store::key::read_u64(b, at)?,
                    starling_store::key::read_u64(b, at + 8)?,
                ))
            })
            .collect();
        let keys: Vec<Key> = pairs.iter().map(|(p, l)| liked_key(*l, *p)).collect();
        let records = self.store.get_records(&keys).await?;
        let mut writes: Vec<(Key, starling_store::Mutation)> = keys
            .into_iter()
            .zip(&records)
            .filter(|(_, r)| r.is_none())
            .map(|(k, _)| (k, starling_store::Mutation::Add(Bytes::new())))
            .collect();
        let indexed = writes.len();
        let (position, done) = match &page.next {
            Some(next) => (Bytes::copy_from_slice(next.as_bytes()), false),
            None => (Bytes::new(), true),
        };
        writes.push((marker, starling_store::Mutation::Put(position)));
        self.store.mutate_many(&writes).await?;
        Ok(Backfill { indexed, done })
    }
}

/// One step of [`Posts::backfill_like_index`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backfill {
    /// Index elements added.
    pub indexed: usize,
    /// Every like of this replica was read (now or before).
    pub done: bool,
}

/// What a sweep does with an index element whose like this node has never seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unseen {
    /// Keep it: the like may still be on its way (a later pass takes it back).
    Wait,
    /// Take it off: the grace period is over, the like was never made.
    Forget,
}

/// One step of [`Posts::sweep_likes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LikeSweep {
    /// Index elements taken off (each like taken back, if it was there).
    pub removed: usize,
    /// Index elements kept: their like has not reached this node (yet).
    pub waiting: usize,
}

#[cfg(test)]
mod tests {
    use super::{LikeSweep, Unseen};
    use crate::test_support::posts;
    use bytes::Bytes;
    use starling_store::StoreExt;

    #[tokio::test]
    async fn a_swept_liker_stops_counting_once() {
        let p = posts();
        let l = p.likes();
        let (a, b) = (101u64, 102u64);
        for (liker, post) in [(7, a), (7, b), (8, a)] {
            p.note_like(liker, post).await.unwrap();
            l.like(post, liker).await.unwrap();
        }
        // A like taken back whose index element stayed (a crash before `forget_like`): its
        // tombstone is here, the element goes at once.
        p.note_like(7, 998).await.unwrap();
        l.like(998, 7).await.unwrap();
        l.unlike(998, 7).await.unwrap();
        // An element whose like this node has not seen: on its way from another node (999), or
        // never made (997, a crash between the element and the like).
        p.note_like(7, 999).await.unwrap();
        p.note_like(7, 997).await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.count(a).await.unwrap(), 2);
        let mut steps = Vec::new();
        loop {
            let step = p.sweep_likes(7, 2, Unseen::Wait).await.unwrap();
            assert!(step.removed + step.waiting <= 2, "bounded steps: {step:?}");
            if step.removed == 0 {
                break;
            }
            steps.push(step.removed);
            assert!(steps.len() < 5, "a sweep ends");
        }
        assert_eq!(steps, vec![2, 1], "101 and 102, then 998");
        assert_eq!(
            p.sweep_likes(7, 10, Unseen::Wait).await.unwrap(),
            LikeSweep {
                removed: 0,
                waiting: 2
            },
            "997 and 999 kept while their likes may be on their way"
        );
        // 999's like arrives: the next pass takes it back.
        l.like(999, 7).await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.count(999).await.unwrap(), 1);
        assert_eq!(
            p.sweep_likes(7, 10, Unseen::Wait).await.unwrap(),
            LikeSweep {
                removed: 1,
                waiting: 1
            }
        );
        l.catch_up().await.unwrap();
        assert_eq!(l.count(999).await.unwrap(), 0);
        // Past the grace period the element without a like goes; swept again (another node's
        // sweeper, a retry): nothing moves twice.
        assert_eq!(
            p.sweep_likes(7, 10, Unseen::Forget).await.unwrap(),
            LikeSweep {
                removed: 1,
                waiting: 0
            }
        );
        assert_eq!(
            p.sweep_likes(7, 10, Unseen::Forget).await.unwrap(),
            LikeSweep::default()
        );
        l.catch_up().await.unwrap();
        assert_eq!(l.count(a).await.unwrap(), 1);
        assert_eq!(l.count(b).await.unwrap(), 0);
        assert!(l.liked(a, 8).await.unwrap(), "another liker's stays");
        assert!(!l.liked(a, 7).await.unwrap());
    }

    /// A reply's record names its parent: the sweep waits for the parent's `pt` element, and a
    /// deletion takes that element off even where `pr` has not arrived.
    #[tokio::test]
    async fn a_reply_waits_for_its_parents_element() {
        let p = posts();
        let (x, _) = p.create(1, "us", "parent", &[], None).await.unwrap();
        let links = crate::Links {
            quote_of: None,
            reply_to: Some(x.id),
        };
        let (r, _) = p
            .create_linked(2, "us", "answer", &[], None, links)
            .await
            .unwrap();
        assert!(!p.elements_here(&r).await.unwrap(), "pt not here yet");
        // The parent's element arrives, `pr` not (the keys replicate in no set order).
        let pt = crate::replies::reply_key(x.id, r.id);
        p.store.add(&pt, Bytes::new()).await.unwrap();
        assert!(p.elements_here(&r).await.unwrap());
        assert_eq!(p.reply_to(r.id).await.unwrap(), None);
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().reply_count(x.id).await.unwrap(), 1);
        // An edit keeps the parent in the record; the deletion takes the element off by it.
        p.edit(r.id, 2, "edited").await.unwrap();
        assert_eq!(p.get_stored(r.id).await.unwrap().reply_to, Some(x.id));
        p.delete(r.id, 2).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().reply_count(x.id).await.unwrap(), 0);
        // A reply whose record does not name its parent (stored before records did): not waited
        // for, and unlinked through `pr` as before.
        let (old, _) = p.create(3, "us", "old reply", &[], None).await.unwrap();
        assert!(p.elements_here(&old).await.unwrap());
        p.link_reply(old.id, x.id).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().reply_count(x.id).await.unwrap(), 1);
        p.delete(old.id, 3).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().reply_count(x.id).await.unwrap(), 0);
    }

    /// Likes written before the index existed get their index element, page by page from a saved
    /// position, once; then the sweep finds them.
    #[tokio::test]
    async fn likes_from_before_the_index_are_indexed_once() {
        let p = posts();
        let l = p.likes();
        // Likes without index elements (as written before it), one indexed, one unliked.
        for post in [1, 2, 3, 4, 5] {
            l.like(post, 7).await.unwrap();
        }
        l.like(1, 8).await.unwrap();
        p.note_like(8, 1).await.unwrap();
        l.like(6, 9).await.unwrap();
        l.unlike(6, 9).await.unwrap();
        let mut steps = Vec::new();
        loop {
            let step = p.backfill_like_index(2).await.unwrap();
            assert!(step.indexed <= 2, "bounded: {step:?}");
            steps.push(step.indexed);
            if step.done {
                break;
            }
            assert!(steps.len() < 10, "a backfill ends");
        }
        assert_eq!(steps.iter().sum::<usize>(), 5, "7's five likes: {steps:?}");
        // Done: later steps add nothing; a new like is indexed by the API as before.
        let again = p.backfill_like_index(100).await.unwrap();
        assert_eq!((again.indexed, again.done), (0, true));
        l.catch_up().await.unwrap();
        assert_eq!(l.count(1).await.unwrap(), 2);
        // The sweep now takes 7's likes back.
        let swept = p.sweep_likes(7, 100, Unseen::Wait).await.unwrap();
        assert_eq!(
            swept,
            LikeSweep {
                removed: 5,
                waiting: 0
            }
        );
        l.catch_up().await.unwrap();
        assert_eq!(l.count(1).await.unwrap(), 1);
        assert!(l.liked(1, 8).await.unwrap());
    }

    #[tokio::test]
    async fn a_repost_or_quote_waits_for_its_element() {
        let p = posts();
        let (x, _) = p.create(1, "us", "original", &[], None).await.unwrap();
        let (r, _) = p.repost(x.id, 2).await.unwrap();
        let (q, _) = p
            .create_linked(2, "us", "look", &[], None, crate::Links::quoting(x.id))
            .await
            .unwrap();
        assert!(p.elements_here(&x).await.unwrap(), "none to wait for");
        assert!(p.elements_here(&r).await.unwrap());
        // The quote's element is written after the post: not here yet.
        assert!(!p.elements_here(&q).await.unwrap());
        p.link_quote(q.id, x.id).await.unwrap();
        assert!(p.elements_here(&q).await.unwrap());
        // A repost post whose element another node has not sent yet.
        let mut elsewhere = r.clone();
        elsewhere.author = 3;
        assert!(!p.elements_here(&elsewhere).await.unwrap());
        // Deleted: the tombstones count as arrived.
        p.delete(q.id, 2).await.unwrap();
        p.delete(r.id, 2).await.unwrap();
        assert!(p.elements_here(&q).await.unwrap());
        assert!(p.elements_here(&r).await.unwrap());
    }
}
