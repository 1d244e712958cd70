//! The posts each user likes, for the sweep of a deleted account: likes given by a deleted user
//! stop counting.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `plg` | liker id, post id | set element (add-wins) | — |
//!
//! A like's element (`pl/post/liker`, [`crate::likes`]) is found from its post; this index finds
//! it from its liker. The API writes the index element before the like and takes it off after
//! an unlike, so a crash between leaves at most an index element without a like (its sweep
//! removes nothing), never a like the sweep cannot find. [`Posts::sweep_likes`] takes a deleted
//! user's likes back through the ordinary unlike, in steps of a bounded number of removals: each
//! like's element goes, so every node's count consumer moves the post's count down once (its
//! shadow per element and redo journal make that exact across crashes and retries), and the
//! removals replicate like any unlike. Likes written before this index (and the seeder's
//! bulk-loaded likes) are not in it, and stay counted.

use crate::Posts;
use bytes::Bytes;
use starling_store::{Key, Keyspace, ScanRequest, StoreError, StoreExt};

/// `plg/liker/post`: the posts a user likes (replicated).
const LIKED: Keyspace = Keyspace::new("plg");

fn liked_key(liker: u64, post: u64) -> Key {
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

    /// Takes back up to `budget` of `liker`'s likes (each an unlike, then its index element);
    /// returns how many index elements it took off (0: none left).
    pub async fn sweep_likes(&self, liker: u64, budget: usize) -> Result<usize, StoreError> {
        let prefix = LIKED.key().u64(liker).finish();
        let skip = prefix.as_bytes().len();
        let limit = budget.min(self.store.limits().max_scan);
        if limit == 0 {
            return Ok(0);
        }
        let page = self.store.scan(&ScanRequest::prefix(prefix, limit)).await?;
        let mut done = 0;
        for (k, _) in &page.items {
            let Some(post) = starling_store::key::read_u64(k.as_bytes(), skip) else {
                continue;
            };
            self.likes.unlike(post, liker).await?;
            self.store.remove(k).await?;
            done += 1;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::posts;

    #[tokio::test]
    async fn a_swept_liker_stops_counting_once() {
        let p = posts();
        let (a, b) = (101u64, 102u64);
        for (liker, post) in [(7, a), (7, b), (8, a)] {
            p.note_like(liker, post).await.unwrap();
            p.likes().like(post, liker).await.unwrap();
        }
        // An index element whose like was taken back already: nothing to undo.
        p.note_like(7, 999).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().count(a).await.unwrap(), 2);
        let mut steps = 0;
        while p.sweep_likes(7, 2).await.unwrap() > 0 {
            steps += 1;
            assert!(steps < 5, "a sweep ends");
        }
        assert_eq!(steps, 2, "bounded steps");
        p.likes().catch_up().await.unwrap();
        // Swept again (another node's sweeper, a retry): nothing moves twice.
        assert_eq!(p.sweep_likes(7, 10).await.unwrap(), 0);
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().count(a).await.unwrap(), 1);
        assert_eq!(p.likes().count(b).await.unwrap(), 0);
        assert!(
            p.likes().liked(a, 8).await.unwrap(),
            "another liker's stays"
        );
        assert!(!p.likes().liked(a, 7).await.unwrap());
    }
}
