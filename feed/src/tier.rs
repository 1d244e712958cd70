//! The contracts of the timeline tiers and the conformance suites their implementations pass:
//! [`TimelineStore`] (every tier: the in-process L1 [`crate::l1::LocalTimelines`], and each L2)
//! and [`RegionalTier`] (the L2 role: timelines, post bodies and fan-out claims shared by the
//! nodes of a region), implemented in process ([`crate::memory_tier::MemoryTier`]) and in Redis
//! ([`crate::redis_tier::RedisTier`]). The feed holds its L2 as `Arc<dyn RegionalTier>`, so no
//! backend's types reach its callers.

use crate::timeline::Timeline;
use async_trait::async_trait;
use std::fmt::Debug;
use tokio::sync::watch;

/// The error of a tier's backend, kept opaque so no backend's types appear in the feed's API.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of a timeline tier.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The backend answered with an error or did not answer in time.
    #[error("cache backend: {0}")]
    Backend(#[source] BackendError),
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

/// The regional L2: timelines, post bodies and fan-out claims shared by the nodes of a region.
/// While [`RegionalTier::is_healthy`] is false the feed does not ask it (reads use L1 and
/// rebuilds); [`RegionalTier::watch_health`] brings it back.
#[async_trait]
pub trait RegionalTier: TimelineStore {
    /// Whether the tier is currently used.
    fn is_healthy(&self) -> bool;
    /// Claims the fan-out of `post` into this tier for `node`; true if this node should do it
    /// (it won the claim now, or had won it before).
    async fn claim_fan_out(&self, post: u64, node: u64) -> Result<bool, TierError>;
    /// Pushes back the expiry of `user`'s timeline (the user is reading).
    async fn touch(&self, user: u64) -> Result<(), TierError>;
    /// Cached post bodies (JSON) for `ids`, in order, `None` where not cached.
    async fn posts(&self, ids: &[u64]) -> Result<Vec<Option<Vec<u8>>>, TierError>;
    /// Caches post bodies.
    async fn put_posts(&self, bodies: &[(u64, Vec<u8>)]) -> Result<(), TierError>;
    /// Drops a cached post body (the post was edited or deleted).
    async fn forget_post(&self, id: u64) -> Result<(), TierError>;
    /// Checks the backend until `shutdown` turns true, bringing the tier back after an outage.
    async fn watch_health(&self, shutdown: watch::Receiver<bool>);
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

    /// Runs every check of the L2 role (the timeline checks included, on `base..base + 10`;
    /// post ids `base * 1000..` are used for bodies and claims); panics on the first failure.
    pub async fn run_regional(tier: &dyn RegionalTier, base: u64) {
        run_all(tier, base).await;
        assert!(tier.is_healthy(), "a fresh tier is healthy");
        claims_go_to_one_node(tier, base * 1000).await;
        post_bodies_round_trip(tier, base * 1000 + 10).await;
        touch_keeps_the_timeline(tier, base + 5).await;
    }

    async fn claims_go_to_one_node(tier: &dyn RegionalTier, post: u64) {
        assert!(
            tier.claim_fan_out(post, 1).await.unwrap(),
            "the first claim wins"
        );
        assert!(
            tier.claim_fan_out(post, 1).await.unwrap(),
            "the winner again"
        );
        assert!(
            !tier.claim_fan_out(post, 2).await.unwrap(),
            "another node loses"
        );
        assert!(
            tier.claim_fan_out(post + 1, 2).await.unwrap(),
            "claims are per post"
        );
    }

    async fn post_bodies_round_trip(tier: &dyn RegionalTier, id: u64) {
        assert_eq!(
            tier.posts(&[]).await.unwrap(),
            Vec::<Option<Vec<u8>>>::new()
        );
        tier.put_posts(&[]).await.unwrap();
        tier.forget_post(id).await.unwrap();
        tier.forget_post(id + 1).await.unwrap();
        tier.put_posts(&[(id, b"{\"a\":1}".to_vec()), (id + 2, b"x".to_vec())])
            .await
            .unwrap();
        assert_eq!(
            tier.posts(&[id + 2, id + 1, id]).await.unwrap(),
            vec![Some(b"x".to_vec()), None, Some(b"{\"a\":1}".to_vec())],
            "in the order asked, None where not cached"
        );
        tier.forget_post(id).await.unwrap();
        assert_eq!(tier.posts(&[id]).await.unwrap(), vec![None]);
        tier.forget_post(id + 2).await.unwrap();
    }

    async fn touch_keeps_the_timeline(tier: &dyn RegionalTier, u: u64) {
        tier.forget(u).await.unwrap();
        tier.touch(u).await.unwrap();
        assert_eq!(tier.load(u).await.unwrap(), None, "touch must not create");
        let t = Timeline::from_entries(vec![(3, 1)], 0, 4);
        tier.save(u, &t).await.unwrap();
        tier.touch(u).await.unwrap();
        assert_eq!(tier.load(u).await.unwrap(), Some(t));
        tier.forget(u).await.unwrap();
    }
}
