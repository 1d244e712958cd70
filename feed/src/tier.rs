//! The contract of a timeline tier — the in-process L1 and the regional Redis L2 — and the one
//! conformance suite both pass.

use crate::timeline::Timeline;
use async_trait::async_trait;
use std::fmt::Debug;

/// Errors of a timeline tier.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// Redis answered with an error or did not answer in time.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The tier is marked down; it is not asked until its health check passes.
    #[error("the cache tier is unavailable")]
    Unavailable,
    /// The tier held something this version cannot read.
    #[error("unreadable cache entry: {0}")]
    Corrupt(String),
}

/// Where timelines are kept.
#[async_trait]
pub trait TimelineStore: Send + Sync + Debug {
    /// The whole timeline of `user`, or `None` if this tier has none.
    async fn load(&self, user: u64) -> Result<Option<Timeline>, TierError>;
    /// Stores a timeline, replacing what the tier had.
    async fn save(&self, user: u64, t: &Timeline) -> Result<(), TierError>;
    /// Inserts a post into the timelines of those `users` that exist here (a missing timeline
    /// is skipped: it is rebuilt when read), each capped atomically. Returns how many took it.
    async fn insert(&self, users: &[u64], post: u64, author: u64) -> Result<usize, TierError>;
    /// Raises a timeline's floor (entries below it are then served from the merge).
    async fn raise_floor(&self, user: u64, floor: u64) -> Result<(), TierError>;
    /// Removes every entry of `author` from `user`'s timeline.
    async fn remove_author(&self, user: u64, author: u64) -> Result<(), TierError>;
    /// Drops `user`'s timeline.
    async fn forget(&self, user: u64) -> Result<(), TierError>;
}

/// The conformance suite: what every [`TimelineStore`] must do, for a tier capped at 4
/// entries. Each user id in `base..base + 10` is used, so runs against a shared server do not
/// collide.
#[cfg(any(test, feature = "conformance"))]
#[allow(clippy::unwrap_used)] // test support: a failed unwrap is a failed check
pub mod conformance {
    use super::*;

    fn ids(t: &Timeline) -> Vec<u64> {
        t.page(None, 100, true).iter().map(|e| e.0).collect()
    }

    /// Runs every check; panics on the first failure.
    pub async fn run_all(tier: &dyn TimelineStore, base: u64) {
        missing_timelines_are_skipped(tier, base).await;
        save_load_round_trip(tier, base + 1).await;
        inserts_are_capped_newest_kept(tier, base + 2).await;
        removal_and_floor(tier, base + 3).await;
        batch_insert_many_users(tier, base + 4).await;
    }

    async fn missing_timelines_are_skipped(tier: &dyn TimelineStore, u: u64) {
        tier.forget(u).await.unwrap();
        assert_eq!(tier.load(u).await.unwrap(), None);
        assert_eq!(tier.insert(&[u], 10, 1).await.unwrap(), 0);
        assert_eq!(tier.load(u).await.unwrap(), None, "insert must not create");
    }

    async fn save_load_round_trip(tier: &dyn TimelineStore, u: u64) {
        tier.save(u, &Timeline::new()).await.unwrap();
        assert_eq!(tier.load(u).await.unwrap(), Some(Timeline::new()));
        let t = Timeline::from_entries(vec![(7, 2), (u64::MAX - 1, 3), (5, 1)], 3, 4);
        tier.save(u, &t).await.unwrap();
        assert_eq!(tier.load(u).await.unwrap(), Some(t));
        tier.forget(u).await.unwrap();
        assert_eq!(tier.load(u).await.unwrap(), None);
    }

    async fn inserts_are_capped_newest_kept(tier: &dyn TimelineStore, u: u64) {
        tier.save(u, &Timeline::new()).await.unwrap();
        for p in [3, 1, 2, 6, 5, 4, 4] {
            tier.insert(&[u], p, 100 + p).await.unwrap();
        }
        let t = tier.load(u).await.unwrap().unwrap();
        assert_eq!(ids(&t), vec![6, 5, 4, 3], "capped at 4, newest kept");
        assert_eq!(t.floor, 3, "the floor follows the trim");
        assert_eq!(
            tier.insert(&[u], 2, 1).await.unwrap(),
            0,
            "below the floor: not taken"
        );
        assert_eq!(t.entries().next(), Some(&(3, 103)), "authors kept");
        tier.forget(u).await.unwrap();
    }

    async fn removal_and_floor(tier: &dyn TimelineStore, u: u64) {
        let t = Timeline::from_entries(vec![(1, 7), (2, 8), (3, 7)], 0, 4);
        tier.save(u, &t).await.unwrap();
        tier.remove_author(u, 7).await.unwrap();
        assert_eq!(ids(&tier.load(u).await.unwrap().unwrap()), vec![2]);
        tier.raise_floor(u, 5).await.unwrap();
        tier.raise_floor(u, 4).await.unwrap();
        let t = tier.load(u).await.unwrap().unwrap();
        assert_eq!(t.floor, 5, "a floor only rises");
        assert_eq!(tier.insert(&[u], 4, 1).await.unwrap(), 0);
        assert_eq!(tier.insert(&[u], 9, 1).await.unwrap(), 1);
        tier.forget(u).await.unwrap();
    }

    async fn batch_insert_many_users(tier: &dyn TimelineStore, u: u64) {
        let users: Vec<u64> = (0..5).map(|i| u * 1000 + i).collect();
        for (i, user) in users.iter().enumerate() {
            if i % 2 == 0 {
                tier.save(*user, &Timeline::new()).await.unwrap();
            } else {
                tier.forget(*user).await.unwrap();
            }
        }
        assert_eq!(tier.insert(&users, 42, 9).await.unwrap(), 3);
        for (i, user) in users.iter().enumerate() {
            let t = tier.load(*user).await.unwrap();
            if i % 2 == 0 {
                assert_eq!(t.map(|t| ids(&t)), Some(vec![42]));
            } else {
                assert_eq!(t, None);
            }
            tier.forget(*user).await.unwrap();
        }
    }
}
