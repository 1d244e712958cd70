//! Bulk loading of seeded engagement (`starling seed`): likes, replies, reposts and the
//! notifications they make, with their derived counts, laid out as ascending runs for
//! [`starling_store::Store::bulk_load`].
//!
//! The records are those the request paths write — a like's `pl` element (liked-at) and its
//! element `plg/liker/post` of the index by liker ([`crate::liked`]: a seeded user's deletion
//! takes their likes back like anyone's), a reply's
//! `pr` register and `pt` element, a repost's `prp` element naming its repost post (the posts
//! themselves, replies and reposts included, go through [`crate::seed_runs`]), a notification's
//! `nt` element — and the state the post-counts consumer would derive is written with them: each
//! post's like, reply and repost counters and the load's dot (`pll`), which the consumer takes
//! for "counted" when it meets a loaded element without a shadow. A node serves the counts at
//! once, and a later unlike, like or undo moves them as usual (as `starling_graph::bulk` does for
//! follower counts). Notifications are the newest [`crate::notifications::KEEP`] of each
//! recipient, what trimming would leave.

use crate::notifications::{KEEP, NOTIFICATIONS, Stored};
use crate::{PostError, liked, likes, replies, reposts};
use bytes::Bytes;
use starling_store::{BulkRun, Dot, Keyspace, Mutation};

/// The engagement of a seed, normalized by [`SeedEngagement::new`].
#[derive(Clone, Debug, Default)]
pub struct SeedEngagement {
    /// (post, liker), ascending, distinct.
    likes: Vec<(u64, u64)>,
    /// (parent, reply), ascending.
    replies: Vec<(u64, u64)>,
    /// (post, reposter, repost id), ascending, one per (post, reposter).
    reposts: Vec<(u64, u64, u64)>,
    /// (recipient, notification id, what), by recipient then newest first, at most
    /// [`KEEP`] a recipient.
    notifications: Vec<(u64, u64, Stored)>,
    /// Liked-at of every like, ms.
    at_ms: u64,
}

impl SeedEngagement {
    /// Sorts and de-duplicates the lists (a repeated like or repost is one, as on the request
    /// path) and keeps each recipient's newest [`KEEP`] notifications. `replies` are
    /// (reply, parent); the reply and repost posts are loaded with the others.
    pub fn new(
        mut likes: Vec<(u64, u64)>,
        replies: Vec<(u64, u64)>,
        mut reposts: Vec<(u64, u64, u64)>,
        mut notifications: Vec<(u64, u64, Stored)>,
        at_ms: u64,
    ) -> Self {
        likes.sort_unstable();
        likes.dedup();
        let mut replies: Vec<(u64, u64)> = replies.into_iter().map(|(r, p)| (p, r)).collect();
        replies.sort_unstable();
        replies.dedup();
        reposts.sort_unstable();
        reposts.dedup_by_key(|r| (r.0, r.1));
        notifications.sort_unstable_by_key(|n| (n.0, std::cmp::Reverse(n.1)));
        let mut kept = 0;
        let mut last = None;
        notifications.retain(|n| {
            if last != Some(n.0) {
                (last, kept) = (Some(n.0), 0);
            }
            kept += 1;
            kept <= KEEP
        });
        SeedEngagement {
            likes,
            replies,
            reposts,
            notifications,
            at_ms,
        }
    }

    /// Likes, replies, reposts and notifications kept, in that order.
    pub fn sizes(&self) -> [usize; 4] {
        [
            self.likes.len(),
            self.replies.len(),
            self.reposts.len(),
            self.notifications.len(),
        ]
    }

    /// The most liked post and its likes, if any post is liked.
    pub fn most_liked(&self) -> Option<(u64, usize)> {
        self.likes
            .chunk_by(|a, b| a.0 == b.0)
            .map(|g| (g[0].0, g.len()))
            .max_by_key(|&(post, n)| (n, std::cmp::Reverse(post)))
    }

    /// Keys the runs write (for progress).
    pub fn keys(&self) -> u64 {
        let posts = |ids: &mut dyn Iterator<Item = u64>| {
            let mut n = 0u64;
            let mut last = None;
            for id in ids {
                if last != Some(id) {
                    (last, n) = (Some(id), n + 1);
                }
            }
            n
        };
        (2 * self.likes.len()
            + 2 * self.replies.len()
            + self.reposts.len()
            + self.notifications.len()) as u64
            + posts(&mut self.likes.iter().map(|l| l.0))
            + posts(&mut self.replies.iter().map(|r| r.0))
            + posts(&mut self.reposts.iter().map(|r| r.0))
            + 1
    }

    /// The replies as (reply, parent), ascending: what [`crate::seed_runs`] writes into each
    /// reply's record.
    pub fn reply_parents(&self) -> Vec<(u64, u64)> {
        let mut by_reply: Vec<(u64, u64)> = self.replies.iter().map(|&(p, r)| (r, p)).collect();
        by_reply.sort_unstable();
        by_reply
    }

    /// The runs of a load stamped `dot`.
    pub fn runs(&self, dot: Dot) -> Result<Vec<BulkRun<'_>>, PostError> {
        let at = Bytes::copy_from_slice(&self.at_ms.to_be_bytes());
        let by_reply = self.reply_parents();
        // The index by liker, in its key order (16 bytes a like while the load runs).
        let mut by_liker: Vec<(u64, u64)> = self.likes.iter().map(|&(p, l)| (l, p)).collect();
        by_liker.sort_unstable();
        Ok(vec![
            BulkRun::new(
                likes::LIKES.prefix(),
                self.likes
                    .iter()
                    .map(move |&(p, l)| Ok((likes::like_key(p, l), Mutation::Add(at.clone())))),
            ),
            BulkRun::new(
                liked::LIKED.prefix(),
                by_liker
                    .into_iter()
                    .map(|(l, p)| Ok((liked::liked_key(l, p), Mutation::Add(Bytes::new())))),
            ),
            counts(
                likes::COUNTS,
                self.likes
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|g| (g[0].0, g.len())),
            ),
            BulkRun::new(
                replies::REPLIES.prefix(),
                self.replies
                    .iter()
                    .map(|&(p, r)| Ok((replies::reply_key(p, r), Mutation::Add(Bytes::new())))),
            ),
            BulkRun::new(
                replies::PARENT.prefix(),
                by_reply.into_iter().map(|(r, p)| {
                    let v = Bytes::copy_from_slice(&p.to_be_bytes());
                    Ok((replies::parent_key(r), Mutation::Put(v)))
                }),
            ),
            counts(
                likes::REPLY_COUNTS,
                self.replies
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|g| (g[0].0, g.len())),
            ),
            BulkRun::new(
                reposts::REPOSTS.prefix(),
                self.reposts.iter().map(|&(p, who, id)| {
                    let v = Bytes::copy_from_slice(&id.to_be_bytes());
                    Ok((reposts::repost_key(p, who), Mutation::Add(v)))
                }),
            ),
            counts(
                likes::REPOST_COUNTS,
                self.reposts
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|g| (g[0].0, g.len())),
            ),
            BulkRun::new(
                NOTIFICATIONS.prefix(),
                self.notifications.iter().map(|(to, id, stored)| {
                    let v = starling_store::codec::to_value(stored)?;
                    Ok((crate::notifications::key(*to, *id), Mutation::Add(v)))
                }),
            ),
            starling_store::counted::load_marker(likes::LOADED, &dot)?,
        ])
    }
}

/// A counter run: `counter/post` moved by the number of `post`'s elements.
fn counts<'a>(
    counter: Keyspace,
    per_post: impl Iterator<Item = (u64, usize)> + Send + 'a,
) -> BulkRun<'a> {
    BulkRun::new(
        counter.prefix(),
        per_post.map(move |(post, n)| {
            Ok((counter.key().u64(post).finish(), Mutation::Count(n as i64)))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Post;
    use crate::notifications::NotificationKind;
    use crate::test_support::posts;
    use starling_store::{Delta, Hlc, NodeId, ScanRequest, StoreExt, load_runs};

    fn post(id: u64, author: u64, text: &str, repost_of: Option<u64>) -> Post {
        Post {
            id,
            author,
            text: text.into(),
            media: Vec::new(),
            created_at_ms: 1_767_225_600_000,
            edited_at_ms: None,
            repost_of,
            quote_of: None,
        }
    }

    fn liked(actor: u64, post: u64) -> Stored {
        Stored {
            kind: NotificationKind::Like,
            actor,
            post: Some(post),
            subject: None,
            created_at_ms: 1_767_225_600_000,
        }
    }

    #[tokio::test]
    async fn loaded_counts_are_served_and_move_with_later_changes() {
        let p = posts();
        // Posts 10 (by 1) and 11 (by 2); 20 replies to 10; 21 reposts 10 for user 4.
        let all = vec![
            post(10, 1, "hot", None),
            post(11, 2, "cold", None),
            post(20, 3, "a reply", None),
            post(21, 4, "", Some(10)),
        ];
        // Four likes of 10 (one repeated), one of 11; many notifications for user 1.
        let likes = vec![(10, 2), (10, 3), (10, 4), (10, 3), (10, 5), (11, 1)];
        let notes: Vec<_> = (0..KEEP as u64 + 5)
            .map(|i| (1, 1000 + i, liked(2, 10)))
            .collect();
        let seed = SeedEngagement::new(likes, vec![(20, 10)], vec![(10, 4, 21)], notes, 7);
        assert_eq!(seed.sizes(), [5, 1, 1, KEEP]);
        assert_eq!(seed.most_liked(), Some((10, 4)));
        let dot = Dot {
            hlc: Hlc::new(1_767_225_600_000, 0),
            node: NodeId::from_names("us", "seed"),
        };
        let store = p.store.clone();
        let mut load = store.bulk_load(dot).unwrap();
        let parents = seed.reply_parents();
        let mut runs = crate::seed_runs(&all, &parents).unwrap();
        runs.extend(seed.runs(dot).unwrap());
        let mut keys = 0;
        load_runs(load.as_mut(), runs, &mut |k| keys += k).unwrap();
        load.finish().unwrap();
        assert_eq!(keys, 2 * all.len() as u64 + seed.keys());

        let l = p.likes();
        let counts = l.counts(10).await.unwrap();
        assert_eq!((counts.likes, counts.replies, counts.reposts), (4, 1, 1));
        assert_eq!(l.count(11).await.unwrap(), 1);
        assert_eq!(l.likers(10, None, 10).await.unwrap().ids, vec![2, 3, 4, 5]);
        assert!(l.liked(10, 3).await.unwrap());
        assert_eq!(p.reply_to(20).await.unwrap(), Some(10));
        // The reply's record names its parent, as the API writes it; other posts none.
        assert_eq!(p.get_stored(20).await.unwrap().reply_to, Some(10));
        assert_eq!(p.get_stored(10).await.unwrap().reply_to, None);
        assert_eq!(p.get_stored(21).await.unwrap().reply_to, None);
        assert_eq!(p.replies(10, None, 10).await.unwrap().posts[0].id, 20);
        assert_eq!(p.repost(10, 4).await.unwrap(), (all[3].clone(), false));
        let page = p.notifications().page(1, None, None, 100).await.unwrap();
        assert_eq!(page.items[0].id, 1000 + KEEP as u64 + 4, "newest first");

        // A seeded like taken back moves the count down once, even seen twice; a like again
        // and a new liker move it up; an undone seeded repost moves its count down.
        assert!(!l.like(10, 2).await.unwrap(), "already liked");
        assert!(l.unlike(10, 3).await.unwrap());
        l.catch_up().await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.count(10).await.unwrap(), 3);
        assert!(l.like(10, 3).await.unwrap());
        assert!(l.like(10, 9).await.unwrap());
        assert_eq!(p.unrepost(10, 4).await.unwrap(), Some(21));
        l.catch_up().await.unwrap();
        let counts = l.counts(10).await.unwrap();
        assert_eq!((counts.likes, counts.reposts), (5, 0));

        // A seeded liker's deletion takes their seeded like back through the index (once).
        let swept = p
            .sweep_likes(5, 10, crate::liked::Unseen::Wait)
            .await
            .unwrap();
        assert_eq!(swept.removed, 1, "{swept:?}");
        assert_eq!(
            p.sweep_likes(5, 10, crate::liked::Unseen::Wait)
                .await
                .unwrap()
                .removed,
            0
        );
        l.catch_up().await.unwrap();
        assert_eq!(l.count(10).await.unwrap(), 4);
        assert!(!l.liked(10, 5).await.unwrap());

        // A node that was not loaded counts the same elements as they replicate in.
        let other = posts();
        let mut deltas = Vec::new();
        for ks in [likes::LIKES, replies::REPLIES, reposts::REPOSTS] {
            let page = store
                .scan(&ScanRequest::prefix(ks.prefix(), 100))
                .await
                .unwrap();
            for (key, _) in page.items {
                let record = store.get_record(&key).await.unwrap().unwrap();
                deltas.push(Delta { key, record });
            }
        }
        other.store.apply(&deltas).await.unwrap();
        other.likes().catch_up().await.unwrap();
        for post in [10, 11] {
            assert_eq!(
                other.likes().counts(post).await.unwrap(),
                l.counts(post).await.unwrap(),
                "{post}"
            );
        }

        // The seeded reply deleted where its `pr` link is missing (not arrived yet on a node):
        // its record names the parent, so the thread's element still goes, and the count.
        store.delete(&replies::parent_key(20)).await.unwrap();
        assert_eq!(p.reply_to(20).await.unwrap(), None);
        p.delete(20, 3).await.unwrap();
        l.catch_up().await.unwrap();
        assert_eq!(l.counts(10).await.unwrap().replies, 0);
        assert!(p.replies(10, None, 10).await.unwrap().posts.is_empty());
        let element = store.get(&replies::reply_key(10, 20)).await.unwrap();
        assert_eq!(element.and_then(|v| v.value), None);
    }
}
