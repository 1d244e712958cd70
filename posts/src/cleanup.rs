//! What a deleted post leaves in the engagement data, taken off on every node in bounded steps,
//! off the request path: its likes (each with its liker's index element, [`crate::liked`]), its
//! reposts (each element with the repost post it names, as an undo would), then, once this node's
//! counting consumer has counted those removals, the consumer's shadows of them, and of its
//! replies and quotes once none is counted (each deleted by its own author: the replies and
//! quotes of a deleted post are other users' posts and stay).
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `pdq` (local) | post id | register | empty while its likes and reposts are being taken off; then the change-feed position the counting consumer must pass before the shadows go (8 bytes big-endian) |
//!
//! **The queue.** The post-counts consumer of [`crate::likes`] puts a post in `pdq` when it meets
//! the post's record changing to a tombstone (a delete made here or replicated), and when it
//! counts a like or repost of a post deleted here (an element that arrived, or was written, after
//! the post's deletion had reached this node; a count moving down only queues a post whose
//! cleanup is over, so the cleanup's own removals do not restart it). Its put is blind, so it
//! starts the post's cleanup over; the cleanup's own writes to an entry are compare-and-swaps on
//! the version it read, so a put made meanwhile is never lost. An entry whose post is live again (a concurrent
//! edit won over the delete) is dropped without touching anything.
//!
//! **Replication.** Every node runs the cleanup for every deleted post, over the elements its
//! replica holds. A like or repost written in another region concurrently with the delete
//! survives this node's removal (sets are add-wins): that is why the node that wrote it cleans
//! too — it holds its own element, and its removal replicates and covers it everywhere; and a
//! node that receives such an element after its own cleanup queues the post again when it counts
//! the element. So no like made anywhere recreates a live set for good; what is left is the
//! elements' tombstones and the shadows' (collected by the reaper after the grace period).
//!
//! **Counters.** A store counter is never a tombstone, so the reaper would never collect a
//! deleted post's counters at zero: when a post's cleanup finishes, its like, reply, repost and
//! quote counters that are at zero are removed outright ([`Store::drop_zero_counters`]: they are
//! node-local, so no record reads as 0 too, and a like arriving later counts from 0 again and
//! queues the post once more). A count that is not zero stays: the replies and quotes of a deleted
//! post are other users' posts, still there. So once the reaper has passed, a deleted post whose
//! engagement was all taken off leaves no record on the node (tested by counting them). On the
//! ScyllaDB engine counters are not dropped (its `drop_zero_counters` removes nothing).
//!
//! **Bounds.** A step reads one page of the queue ([`QUEUE_PAGE`]) and makes at most a budget of
//! removals; a post with 100 000 likes takes many steps (the caller's metric shows the queue).
//! With the counts shared by several nodes on one ScyllaDB keyspace ([`crate::likes::Likes::shared`])
//! this node does not know when another node counted a removal, so there the shadows stay.

use crate::likes::{CONSUMER, COUNTS, LIKES, QUOTE_COUNTS, REPLY_COUNTS, REPOST_COUNTS, SHADOWS};
use crate::reposts::{REPOSTS, id_of};
use crate::{Posts, list_key, post_key};
use bytes::Bytes;
use starling_store::{
    Change, FeedConsumer, Key, Keyspace, Mutation, ScanRequest, Store, StoreError, Versioned,
};

/// `pdq/post`: the deleted posts this node is cleaning up (local).
pub(crate) const QUEUE: Keyspace = Keyspace::local("pdq");

/// Queue entries one step reads (and reports as pending: at most this many).
pub const QUEUE_PAGE: usize = 256;

fn queue_key(post: u64) -> Key {
    QUEUE.key().u64(post).finish()
}

/// The id in `key` if it is an element of `ks` (`ks/post/...`) or one of its counters (`ks/post`).
fn post_of(ks: Keyspace, key: &Key, len: usize) -> Option<u64> {
    let b = key.as_bytes();
    if b.len() != ks.prefix_len() + len || !b.starts_with(ks.prefix().as_bytes()) {
        return None;
    }
    starling_store::key::read_u64(b, ks.prefix_len())
}

/// Queues the deleted posts among `changes` (a post's record changed) and among the posts whose
/// like or repost counter `counters` moves (see the module doc): the posts' records are read in
/// one batch, and each that is a tombstone here is queued — again, restarting its cleanup, when
/// its record changed or a count went up (an element arrived); when a count only went down (the
/// cleanup's own removals, or a removal replicated after it) only if its cleanup is over.
pub(crate) async fn queue_deleted(
    store: &dyn Store,
    changes: &[Change],
    counters: &[(Key, i64, i64)],
) -> Result<(), StoreError> {
    // (post, whether to restart a cleanup under way)
    let mut posts: Vec<(u64, bool)> = changes
        .iter()
        .filter_map(|c| post_of(crate::POSTS, &c.key, 8).map(|p| (p, true)))
        .collect();
    for (counter, _, d) in counters {
        let engaged = post_of(crate::likes::COUNTS, counter, 8)
            .or_else(|| post_of(crate::likes::REPOST_COUNTS, counter, 8));
        posts.extend(engaged.map(|p| (p, *d > 0)));
    }
    if posts.is_empty() {
        return Ok(());
    }
    // A restart first, so dedup keeps it.
    posts.sort_unstable_by_key(|(p, restart)| (*p, !restart));
    posts.dedup_by_key(|(p, _)| *p);
    let keys: Vec<Key> = (posts.iter())
        .flat_map(|(p, _)| [post_key(*p), queue_key(*p)])
        .collect();
    let records = store.get_records(&keys).await?;
    let queued: Vec<(Key, Mutation)> = posts
        .iter()
        .zip(records.chunks(2))
        .filter(|((_, restart), r)| {
            let deleted = r
                .first()
                .and_then(Option::as_ref)
                .is_some_and(|r| r.is_tombstone());
            let queued = r
                .get(1)
                .and_then(Option::as_ref)
                .is_some_and(|r| !r.is_tombstone());
            deleted && (*restart || !queued)
        })
        .map(|((p, _), _)| (queue_key(*p), Mutation::Put(Bytes::new())))
        .collect();
    if !queued.is_empty() {
        store.mutate_many(&queued).await?;
    }
    Ok(())
}

/// One step of [`Posts::clean_deleted_posts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupStep {
    /// Deleted posts queued, as this step read the queue (at most [`QUEUE_PAGE`]).
    pub pending: usize,
    /// Likes and reposts taken off, and shadows deleted.
    pub removed: usize,
    /// Posts whose cleanup finished (their queue entry gone).
    pub finished: usize,
    /// Counters at zero of the finished posts removed (at most three a post).
    pub counters: usize,
    /// Where the next step goes on (the last post this one looked at), or `None` at the end of
    /// the queue: a pass walks the queue rather than reading its head again, so posts waiting
    /// for the counting consumer at the head never hold up those behind them.
    pub next: Option<u64>,
}

/// Where one post's cleanup stands after a step.
enum Progress {
    /// Elements remain (the budget ran out); `removed` were taken off by this step.
    More { removed: usize },
    /// No live like or repost is left; `removed` were taken off by this step.
    Clear { removed: usize },
}

impl Posts {
    /// One bounded step of the cleanup of deleted posts (see the module doc): at most `budget`
    /// removals over the next [`QUEUE_PAGE`] queued posts after `after` (from the queue's start
    /// when `None`; go on from the step's [`CleanupStep::next`]). Idempotent; run it on every
    /// node.
    pub async fn clean_deleted_posts(
        &self,
        after: Option<u64>,
        budget: usize,
    ) -> Result<CleanupStep, StoreError> {
        let limit = QUEUE_PAGE.min(self.store.limits().max_scan);
        let mut req = ScanRequest::prefix(QUEUE.prefix(), limit);
        req.after = after.map(queue_key);
        let page = self.store.scan(&req).await?;
        let mut out = CleanupStep {
            pending: page.items.len(),
            // A short page is the queue's end (a page cut by the scan's budget is not).
            next: page
                .next
                .as_ref()
                .and_then(|k| starling_store::key::read_u64(k.as_bytes(), QUEUE.prefix_len())),
            ..CleanupStep::default()
        };
        // How far this node's consumer has counted (none: counted elsewhere too, see above).
        let counted = if self.likes.is_shared() {
            None
        } else {
            Some(
                FeedConsumer::new(self.store.clone(), CONSUMER)
                    .position()
                    .await?,
            )
        };
        let mut looked = after;
        for (key, entry) in &page.items {
            let Some(post) = starling_store::key::read_u64(key.as_bytes(), QUEUE.prefix_len())
            else {
                continue;
            };
            let left = budget.saturating_sub(out.removed);
            if left == 0 {
                // The rest of the page is the next step's.
                out.next = looked;
                break;
            }
            looked = Some(post);
            let record = self.store.get_record(&post_key(post)).await?;
            if record.is_some_and(|r| !r.is_tombstone()) {
                // Live again (an edit won over the delete): nothing to take off.
                out.finished += usize::from(self.unqueue(key, entry).await?);
                continue;
            }
            let removed = match self.take_off(post, left).await? {
                Progress::More { removed } => {
                    out.removed += removed;
                    continue;
                }
                Progress::Clear { removed } => removed,
            };
            out.removed += removed;
            let mark = entry
                .value
                .as_deref()
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            match (counted, mark) {
                // Shared counting: the shadows are not this node's to delete.
                (None, _) => {
                    if self.unqueue(key, entry).await? {
                        out.finished += 1;
                        out.counters += self.drop_counters(post).await?;
                    }
                }
                // Removals made now, or none counted yet: wait for the consumer to count them.
                (Some(_), _) if removed > 0 => self.mark(key, entry).await?,
                (Some(_), None) => self.mark(key, entry).await?,
                (Some(at), Some(m)) if at >= m => {
                    let left = budget.saturating_sub(out.removed);
                    let (n, done) = self.drop_shadows(post, left).await?;
                    out.removed += n;
                    if done && self.unqueue(key, entry).await? {
                        out.finished += 1;
                        out.counters += self.drop_counters(post).await?;
                    }
                }
                (Some(_), Some(_)) => {}
            }
        }
        Ok(out)
    }

    /// A pass of the cleanup: steps of `budget` removals ([`Posts::clean_deleted_posts`]), each
    /// from where the last stopped, at most `steps`, from `from` (the last pass's `next`; `None`:
    /// the queue's start), so posts waiting at the queue's head (for the counting consumer) do
    /// not hold up those behind them, and neither do the tombstones of finished entries there
    /// (a page stops at the scan's budget among them: passes that all started at the head spent
    /// their steps on the same tombstones and never reached most of a long queue, which grew by
    /// 69 000 posts in 14 minutes of a soak). Returns the steps' sums (`pending`: the queued
    /// posts the pass looked at) and, in `next`, where it stopped (`None`: the queue's end).
    pub async fn clean_deleted_posts_pass(
        &self,
        from: Option<u64>,
        budget: usize,
        steps: usize,
    ) -> Result<CleanupStep, StoreError> {
        let mut sum = CleanupStep {
            next: from,
            ..CleanupStep::default()
        };
        for _ in 0..steps {
            let step = self.clean_deleted_posts(sum.next, budget).await?;
            sum = CleanupStep {
                pending: sum.pending + step.pending,
                removed: sum.removed + step.removed,
                finished: sum.finished + step.finished,
                counters: sum.counters + step.counters,
                next: step.next,
            };
            if sum.next.is_none() {
                break;
            }
        }
        Ok(sum)
    }

    /// Takes off up to `budget` of `post`'s likes, then of its reposts.
    async fn take_off(&self, post: u64, budget: usize) -> Result<Progress, StoreError> {
        let limit = budget.min(self.store.limits().max_scan);
        let page = self
            .store
            .scan(&ScanRequest::prefix(LIKES.key().u64(post).finish(), limit))
            .await?;
        let at = LIKES.prefix_len() + 8;
        let mut writes = Vec::with_capacity(2 * page.items.len());
        let mut likers = Vec::with_capacity(page.items.len());
        for (k, _) in &page.items {
            if let Some(liker) = starling_store::key::read_u64(k.as_bytes(), at) {
                writes.push((k.clone(), Mutation::Remove));
                writes.push((crate::liked::liked_key(liker, post), Mutation::Remove));
                likers.push(liker);
            }
        }
        let likes_done = page.next.is_none();
        let mut removed = likers.len();
        if likes_done && removed < limit {
            let page = self
                .store
                .scan(&ScanRequest::prefix(
                    REPOSTS.key().u64(post).finish(),
                    limit - removed,
                ))
                .await?;
            let at = REPOSTS.prefix_len() + 8;
            for (k, v) in &page.items {
                let Some(reposter) = starling_store::key::read_u64(k.as_bytes(), at) else {
                    continue;
                };
                writes.push((k.clone(), Mutation::Remove));
                // The repost post it names goes with it, as an undo takes it.
                if let Some(repost) = v.value.as_deref().and_then(id_of) {
                    writes.push((post_key(repost), Mutation::Delete));
                    writes.push((list_key(reposter, repost), Mutation::Remove));
                }
                likers.push(reposter);
                removed += 1;
            }
            if !writes.is_empty() {
                self.store.mutate_many(&writes).await?;
            }
            for member in likers {
                self.likes.forget_viewer(post, member);
            }
            if page.next.is_none() {
                return Ok(Progress::Clear { removed });
            }
            return Ok(Progress::More { removed });
        }
        if !writes.is_empty() {
            self.store.mutate_many(&writes).await?;
        }
        for liker in likers {
            self.likes.forget_viewer(post, liker);
        }
        Ok(Progress::More { removed })
    }

    /// Deletes up to `budget` of the consumer's shadows of `post`'s likes and reposts (all of
    /// them taken off and counted by now), and of its replies and quotes when none is counted;
    /// returns how many, and whether none is left. A shadow
    /// that counts its element (one that arrived since, which the consumer queued the post for
    /// again) is left for that cleanup.
    async fn drop_shadows(&self, post: u64, budget: usize) -> Result<(usize, bool), StoreError> {
        let (mut n, mut looked) = (0, 0);
        let mut counting = false;
        // Its replies and quotes are other users' posts, not taken off: their shadows go only
        // once none is counted (every reply or quote deleted by its author), as their counters.
        let mut sets = vec![LIKES, REPOSTS];
        if self.likes.reply_count(post).await? == 0 {
            sets.push(crate::replies::REPLIES);
        }
        if self.likes.quote_count(post).await? == 0 {
            sets.push(crate::reposts::QUOTES);
        }
        for set in sets {
            let limit = budget
                .saturating_sub(looked)
                .min(self.store.limits().max_scan);
            if limit == 0 {
                return Ok((n, false));
            }
            let prefix = SHADOWS
                .key()
                .raw(set.key().u64(post).finish().as_bytes())
                .finish();
            let page = self.store.scan(&ScanRequest::prefix(prefix, limit)).await?;
            let uncounted = |v: &Versioned<Bytes>| v.value.as_deref() == Some(&[0][..]);
            counting |= page.items.iter().any(|(_, v)| !uncounted(v));
            let deletes: Vec<(Key, Mutation)> = (page.items.iter())
                .filter(|(_, v)| uncounted(v))
                .map(|(k, _)| (k.clone(), Mutation::Delete))
                .collect();
            if !deletes.is_empty() {
                self.store.mutate_many(&deletes).await?;
            }
            n += deletes.len();
            looked += page.items.len();
            if page.next.is_some() {
                return Ok((n, false));
            }
        }
        Ok((n, !counting))
    }

    /// Removes `post`'s counters that are at zero (see the module doc); returns how many.
    async fn drop_counters(&self, post: u64) -> Result<usize, StoreError> {
        let keys: Vec<Key> = [COUNTS, REPLY_COUNTS, REPOST_COUNTS, QUOTE_COUNTS]
            .iter()
            .map(|ks| ks.key().u64(post).finish())
            .collect();
        let n = self.store.drop_zero_counters(&keys).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Notes, on the entry read as `entry`, the feed position its removals end at (unless the
    /// consumer queued the post again meanwhile).
    async fn mark(&self, key: &Key, entry: &Versioned<Bytes>) -> Result<(), StoreError> {
        let at = Bytes::copy_from_slice(&self.store.last_seq().to_be_bytes());
        self.store.cas(key, Some(&entry.version), Some(at)).await?;
        Ok(())
    }

    /// Drops the entry read as `entry`, unless the consumer queued the post again meanwhile;
    /// returns whether it was dropped.
    async fn unqueue(&self, key: &Key, entry: &Versioned<Bytes>) -> Result<bool, StoreError> {
        let out = self.store.cas(key, Some(&entry.version), None).await?;
        Ok(matches!(out, starling_store::CasOutcome::Applied(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PostError;
    use crate::test_support::posts;
    use starling_store::{Delta, Dot, Hlc, Kind, NodeId, Record, RegionId, StoreExt};

    /// Steps of `budget` until the queue is empty, the consumer counting between them.
    async fn clean(p: &Posts, budget: usize) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        loop {
            p.likes().catch_up().await.unwrap();
            let step = p.clean_deleted_posts(None, budget).await.unwrap();
            assert!(step.removed <= budget, "bounded: {step:?}");
            if step.pending == 0 {
                return steps;
            }
            steps.push(step);
            assert!(steps.len() < 50, "a cleanup ends: {steps:?}");
        }
    }

    /// Likers listed for `post` (its first page).
    async fn likers_of(p: &Posts, post: u64) -> usize {
        p.likes().likers(post, None, 100).await.unwrap().ids.len()
    }

    async fn shadows_of(p: &Posts, post: u64) -> usize {
        let mut n = 0;
        for set in [LIKES, REPOSTS] {
            let prefix = SHADOWS
                .key()
                .raw(set.key().u64(post).finish().as_bytes())
                .finish();
            n += p
                .store
                .scan(&ScanRequest::prefix(prefix, 1000))
                .await
                .unwrap()
                .items
                .len();
        }
        n
    }

    /// Creates `n` posts of user 1 and deletes them (each queued for its cleanup).
    async fn delete_new_posts(p: &Posts, n: usize) {
        for i in 0..n {
            let (x, _) = p
                .create(1, "us", &format!("p{i}"), &[], None)
                .await
                .unwrap();
            p.delete(x.id, 1).await.unwrap();
        }
    }

    /// The posts a pass of `budget` removals a step, at most `steps` steps, looked at.
    async fn pass(p: &Posts, budget: usize, steps: usize) -> usize {
        p.clean_deleted_posts_pass(None, budget, steps)
            .await
            .unwrap()
            .pending
    }

    #[tokio::test]
    async fn a_pass_walks_the_queue_past_posts_waiting_at_its_head() {
        let p = posts();
        let n = QUEUE_PAGE + 44;
        delete_new_posts(&p, n).await;
        p.likes().catch_up().await.unwrap();
        // The first pass marks every queued post (each then waits for the counting consumer),
        // the second, after the consumer has counted, finishes them all: none is left behind
        // the first page's posts.
        assert_eq!(
            pass(&p, 1024, 8).await,
            n,
            "the first pass reads the whole queue"
        );
        p.likes().catch_up().await.unwrap();
        assert_eq!(pass(&p, 1024, 8).await, n);
        assert_eq!(
            pass(&p, 1024, 8).await,
            0,
            "every cleanup finished in two passes"
        );
        // A step whose budget runs out leaves the rest of its page to the next one.
        for i in 0..3 {
            let (x, _) = p
                .create(2, "us", &format!("q{i}"), &[], None)
                .await
                .unwrap();
            p.note_like(10, x.id).await.unwrap();
            p.likes().like(x.id, 10).await.unwrap();
            p.delete(x.id, 2).await.unwrap();
        }
        p.likes().catch_up().await.unwrap();
        let first = p.clean_deleted_posts(None, 1).await.unwrap();
        assert_eq!((first.pending, first.removed), (3, 1));
        let second = p.clean_deleted_posts(first.next, 1).await.unwrap();
        assert_eq!(
            (second.pending, second.removed),
            (2, 1),
            "{first:?} {second:?}"
        );
    }

    #[tokio::test]
    async fn a_pass_goes_on_where_the_last_one_stopped() {
        let p = posts();
        let n = 2 * QUEUE_PAGE + 10;
        delete_new_posts(&p, n).await;
        p.likes().catch_up().await.unwrap();
        // One step a pass: each pass reads the page after the last one's, to the queue's end.
        let first = p.clean_deleted_posts_pass(None, 1024, 1).await.unwrap();
        assert_eq!(first.pending, QUEUE_PAGE);
        let second = p
            .clean_deleted_posts_pass(first.next, 1024, 1)
            .await
            .unwrap();
        assert_eq!(second.pending, QUEUE_PAGE);
        assert!(second.next > first.next, "{first:?} {second:?}");
        let third = p
            .clean_deleted_posts_pass(second.next, 1024, 1)
            .await
            .unwrap();
        assert_eq!((third.pending, third.next), (10, None), "the queue's end");
        // From the start again: every post was marked once, none finished yet.
        p.likes().catch_up().await.unwrap();
        let again = p.clean_deleted_posts_pass(None, 1024, 1).await.unwrap();
        assert_eq!((again.pending, again.finished), (QUEUE_PAGE, QUEUE_PAGE));
    }

    #[tokio::test]
    async fn a_deleted_posts_likes_and_reposts_are_taken_off_in_bounded_steps() {
        let p = posts();
        let (x, _) = p.create(1, "us", "to be deleted", &[], None).await.unwrap();
        let (y, _) = p.create(1, "us", "stays", &[], None).await.unwrap();
        for liker in 10..15 {
            p.note_like(liker, x.id).await.unwrap();
            p.likes().like(x.id, liker).await.unwrap();
        }
        p.note_like(10, y.id).await.unwrap();
        p.likes().like(y.id, 10).await.unwrap();
        let (r1, _) = p.repost(x.id, 20).await.unwrap();
        let (r2, _) = p.repost(x.id, 21).await.unwrap();
        // A quote of x, deleted by its author before x: x's quote count is back at 0.
        let (q, _) = p
            .create_linked(
                30,
                "us",
                "quoting x",
                &[],
                None,
                crate::Links::quoting(x.id),
            )
            .await
            .unwrap();
        p.link_quote(q.id, x.id).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().quote_count(x.id).await.unwrap(), 1);
        p.delete(q.id, 30).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().quote_count(x.id).await.unwrap(), 0);
        // q's own cleanup (nothing to take off).
        assert_eq!(
            clean(&p, 10).await.iter().map(|s| s.removed).sum::<usize>(),
            0
        );
        assert_eq!(p.likes().count(x.id).await.unwrap(), 5);
        assert_eq!(p.likes().repost_count(x.id).await.unwrap(), 2);
        assert_eq!(shadows_of(&p, x.id).await, 7);
        // Nothing is queued for a live post.
        assert_eq!(p.clean_deleted_posts(None, 10).await.unwrap().pending, 0);

        p.delete(x.id, 1).await.unwrap();
        let steps = clean(&p, 2).await;
        let removed: usize = steps.iter().map(|s| s.removed).sum();
        assert_eq!(
            removed,
            5 + 2 + 7 + 1,
            "likes, reposts, then their shadows and the deleted quote's: {steps:?}"
        );
        // x, and the two repost posts its cleanup deleted (queued in turn, nothing to take off).
        assert_eq!(steps.iter().map(|s| s.finished).sum::<usize>(), 3);

        assert_eq!(likers_of(&p, x.id).await, 0);
        assert!(p.reposters(x.id, None, 100).await.unwrap().ids.is_empty());
        for r in [r1.id, r2.id] {
            assert!(matches!(p.get(r).await, Err(PostError::NotFound)));
        }
        assert!(p.ids_by_author(20, None, 10).await.unwrap().is_empty());
        for liker in 10..15 {
            let index = p.store.get(&crate::liked::liked_key(liker, x.id)).await;
            assert_eq!(index.unwrap().and_then(|v| v.value), None);
        }
        assert_eq!(p.likes().count(x.id).await.unwrap(), 0);
        assert_eq!(p.likes().repost_count(x.id).await.unwrap(), 0);
        assert_eq!(shadows_of(&p, x.id).await, 0);
        // Another post's like, and its liker's index element, stay.
        assert!(p.likes().liked(y.id, 10).await.unwrap());
        assert_eq!(p.likes().count(y.id).await.unwrap(), 1);
        let index = p.store.get(&crate::liked::liked_key(10, y.id)).await;
        assert!(index.unwrap().and_then(|v| v.value).is_some());
        // Idempotent: nothing queued, nothing moves.
        assert_eq!(
            p.clean_deleted_posts(None, 10).await.unwrap(),
            CleanupStep::default()
        );

        // What is left of x and its two repost posts is tombstones, which the reaper collects
        // after the grace period; its counters (like, repost and quote counts at zero) are gone
        // already.
        let gone = [x.id, r1.id, r2.id];
        assert!(!records_naming(&p, &gone).await.is_empty());
        p.store.purge_tombstones(Hlc(u64::MAX)).await.unwrap();
        let left = records_naming(&p, &gone).await;
        assert!(left.is_empty(), "records left: {left:?}");
        // The live post's records and counter stay.
        assert!(!records_naming(&p, &[y.id]).await.is_empty());
        assert_eq!(p.likes().count(y.id).await.unwrap(), 1);
    }

    /// Every record (tombstones and counters included) whose key names one of `posts`.
    async fn records_naming(p: &Posts, posts: &[u64]) -> Vec<Key> {
        let mut req = ScanRequest::prefix(Key::from(""), 1000);
        req.include_tombstones = true;
        let mut keys = Vec::new();
        loop {
            let page = p.store.scan(&req).await.unwrap();
            keys.extend(page.items.into_iter().map(|(k, _)| k));
            match page.next {
                Some(n) => req.after = Some(n),
                None => break,
            }
        }
        // Counters are not listed by a scan: each counted set's counter of each post.
        for post in posts {
            for ks in [COUNTS, REPLY_COUNTS, REPOST_COUNTS, QUOTE_COUNTS] {
                let k = ks.key().u64(*post).finish();
                if p.store.get_record(&k).await.unwrap().is_some() {
                    keys.push(k);
                }
            }
        }
        let names = |k: &Key| {
            posts.iter().any(|id| {
                [id.to_be_bytes(), (!id).to_be_bytes()]
                    .iter()
                    .any(|b| k.as_bytes().windows(8).any(|w| w == b))
            })
        };
        keys.retain(names);
        keys
    }

    /// A like of the deleted post made in another region before the delete reached it, arriving
    /// here after this node's cleanup finished: counted, queued again and taken off.
    #[tokio::test]
    async fn a_like_arriving_after_the_cleanup_is_taken_off_too() {
        let p = posts();
        let (x, _) = p.create(1, "us", "to be deleted", &[], None).await.unwrap();
        p.likes().like(x.id, 10).await.unwrap();
        p.delete(x.id, 1).await.unwrap();
        let steps = clean(&p, 100).await;
        assert_eq!(steps.len(), 2, "take off, then the shadow: {steps:?}");
        let mut r = Record::empty(Kind::Set);
        let dot = Dot {
            hlc: Hlc(1),
            node: NodeId::new(RegionId::from_name("eu"), 9),
        };
        r.add_element(dot, Bytes::new(), None).unwrap();
        let key = crate::likes::like_key(x.id, 30);
        p.store.apply(&[Delta { key, record: r }]).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().count(x.id).await.unwrap(), 1);
        assert_eq!(p.clean_deleted_posts(None, 0).await.unwrap().pending, 1);
        clean(&p, 100).await;
        assert_eq!(likers_of(&p, x.id).await, 0);
        assert_eq!(p.likes().count(x.id).await.unwrap(), 0);
        assert_eq!(shadows_of(&p, x.id).await, 0);
    }

    /// A queued post that is live again (an edit that won over the delete) keeps its likes.
    #[tokio::test]
    async fn a_post_live_again_is_dropped_from_the_queue_untouched() {
        let p = posts();
        let (x, _) = p.create(1, "us", "kept", &[], None).await.unwrap();
        p.likes().like(x.id, 10).await.unwrap();
        p.store.put(&queue_key(x.id), Bytes::new()).await.unwrap();
        let step = p.clean_deleted_posts(None, 100).await.unwrap();
        assert_eq!((step.pending, step.removed, step.finished), (1, 0, 1));
        assert!(p.likes().liked(x.id, 10).await.unwrap());
        assert_eq!(p.clean_deleted_posts(None, 100).await.unwrap().pending, 0);
    }
}
