//! Follows: asymmetric, idempotent. An edge is two add-wins set elements — `gfo/follower/followee`
//! for the follower's list and `gfi/followee/follower` for the followee's. Counts are derived
//! from them per node (see [`crate::counts`]).

use crate::keys::{FOLLOWERS, FOLLOWING, pair, pair_prefix, second};
use crate::{Graph, GraphError, User, now_ms};
use bytes::Bytes;
use starling_store::{Keyspace, ScanRequest, StoreExt};

/// The largest page of ids the API's lists return.
pub(crate) const API_PAGE: usize = 100;

/// A page of user ids and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPage {
    /// Ids, in ascending order.
    pub ids: Vec<u64>,
    /// The cursor of the next page, if there is one.
    pub next: Option<u64>,
}

impl Graph {
    /// Whether `a` follows `b`.
    pub async fn is_following(&self, a: u64, b: u64) -> Result<bool, GraphError> {
        Ok(self
            .store
            .get(&pair(FOLLOWING, a, b))
            .await?
            .is_some_and(|v| v.value.is_some()))
    }

    /// `follower` follows `followee`. Idempotent. Refused when either blocked the other.
    pub async fn follow(&self, follower: u64, followee: u64) -> Result<(), GraphError> {
        if follower == followee {
            return Err(GraphError::Invalid("one cannot follow oneself"));
        }
        if !self.exists(followee).await? {
            return Err(GraphError::NotFound("user"));
        }
        if self.blocked_either(follower, followee).await? {
            return Err(GraphError::Blocked);
        }
        if self.is_following(follower, followee).await? {
            return Ok(());
        }
        let at = Bytes::copy_from_slice(&now_ms().to_be_bytes());
        // The followee's index first: a crash in between leaves an edge the follower does not
        // see yet and a retry completes, rather than a follow that shows but is not delivered.
        self.store
            .add(&pair(FOLLOWERS, followee, follower), at.clone())
            .await?;
        self.store
            .add(&pair(FOLLOWING, follower, followee), at)
            .await?;
        self.catch_up_counts().await
    }

    /// `follower` stops following `followee`. Idempotent: a retry after a crash between the two
    /// removals removes what is left (the followee's index, which the fan-out reads: left alone,
    /// the follower would go on receiving posts while their list no longer shows the edge).
    pub async fn unfollow(&self, follower: u64, followee: u64) -> Result<(), GraphError> {
        let following = pair(FOLLOWING, follower, followee);
        let listed = pair(FOLLOWERS, followee, follower);
        let in_following = self.is_following(follower, followee).await?;
        let in_followers = self
            .store
            .get(&listed)
            .await?
            .is_some_and(|v| v.value.is_some());
        if !in_following && !in_followers {
            return Ok(());
        }
        if in_following {
            self.store.remove(&following).await?;
        }
        if in_followers {
            self.store.remove(&listed).await?;
        }
        self.catch_up_counts().await
    }

    /// A page of at most `limit` ids (1 ..= the store's largest scan; the API's pages are
    /// clamped to [`API_PAGE`]).
    pub(crate) async fn id_page(
        &self,
        ks: Keyspace,
        owner: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<IdPage, GraphError> {
        let mut req = ScanRequest::prefix(pair_prefix(ks, owner), limit);
        req.after = after.map(|a| pair(ks, owner, a));
        let page = self.store.scan(&req).await?;
        let ids: Vec<u64> = page
            .items
            .iter()
            .filter_map(|(k, _)| second(k, ks))
            .collect();
        let next = page.next.as_ref().and_then(|k| second(k, ks));
        Ok(IdPage { ids, next })
    }

    /// Who follows `id`, by follower id.
    pub async fn followers(
        &self,
        id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<IdPage, GraphError> {
        self.id_page(FOLLOWERS, id, after, limit.clamp(1, API_PAGE))
            .await
    }

    /// Every follower of `id`, ascending, read in the store's largest pages: for the fan-out,
    /// which needs whole lists (the API's pages of 100 would cost ten scans for a thousand
    /// followers, each over every memtable and table).
    pub async fn all_followers(&self, id: u64) -> Result<Vec<u64>, GraphError> {
        let page_size = self.store.limits().max_scan.max(1);
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = self.id_page(FOLLOWERS, id, after, page_size).await?;
            ids.extend(page.ids);
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(ids),
            }
        }
    }

    /// Whom `id` follows, by followee id.
    pub async fn following(
        &self,
        id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<IdPage, GraphError> {
        self.id_page(FOLLOWING, id, after, limit.clamp(1, API_PAGE))
            .await
    }

    /// The users of `ids` that exist, in order.
    pub async fn users(&self, ids: &[u64]) -> Result<Vec<User>, GraphError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            match self.user(id).await {
                Ok(u) => out.push(u),
                Err(GraphError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::Graph;
    use crate::users::tests::{graph, graph_with};

    /// A user `star` and `n` users following them, in sign-up order.
    async fn star_with_fans(g: &Graph, n: usize) -> (u64, Vec<u64>) {
        let (star, _) = g.sign_up("star", "password1", None, None).await.unwrap();
        let mut fans = Vec::new();
        for i in 0..n {
            let (f, _) = g
                .sign_up(&format!("fan{i}"), "password1", None, None)
                .await
                .unwrap();
            g.follow(f.id, star.id).await.unwrap();
            fans.push(f.id);
        }
        (star.id, fans)
    }

    /// A whole list is read in the store's largest pages, across page boundaries, without the
    /// users who unfollowed.
    #[tokio::test]
    async fn all_followers_reads_every_page() {
        let limits = starling_store::Limits {
            max_scan: 3,
            ..Default::default()
        };
        let g = graph_with(limits);
        let (star, mut fans) = star_with_fans(&g, 8).await;
        g.unfollow(fans[4], star).await.unwrap();
        fans.remove(4);
        fans.sort_unstable();
        assert_eq!(g.all_followers(star).await.unwrap(), fans);
        assert_eq!(g.all_followers(fans[0]).await.unwrap(), Vec::<u64>::new());
    }

    #[tokio::test]
    async fn follow_is_idempotent_and_counted_once() {
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        g.follow(a.id, b.id).await.unwrap();
        g.follow(a.id, b.id).await.unwrap();
        assert!(g.is_following(a.id, b.id).await.unwrap());
        assert!(!g.is_following(b.id, a.id).await.unwrap());
        assert_eq!(g.user(b.id).await.unwrap().followers_count, 1);
        assert_eq!(g.user(a.id).await.unwrap().following_count, 1);
        assert_eq!(g.followers(b.id, None, 20).await.unwrap().ids, vec![a.id]);
        assert_eq!(g.following(a.id, None, 20).await.unwrap().ids, vec![b.id]);
        g.unfollow(a.id, b.id).await.unwrap();
        g.unfollow(a.id, b.id).await.unwrap();
        assert_eq!(g.user(b.id).await.unwrap().followers_count, 0);
        assert!(g.followers(b.id, None, 20).await.unwrap().ids.is_empty());
        assert!(g.follow(a.id, a.id).await.is_err());
        assert!(g.follow(a.id, 12345).await.is_err());
    }

    #[tokio::test]
    async fn an_unfollow_retried_after_a_crash_between_its_removals_completes() {
        use crate::keys::{FOLLOWING, pair};
        use starling_store::StoreExt;
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        g.follow(a.id, b.id).await.unwrap();
        // The first removal landed, the process died before the second.
        g.store.remove(&pair(FOLLOWING, a.id, b.id)).await.unwrap();
        assert!(!g.is_following(a.id, b.id).await.unwrap());
        assert_eq!(g.all_followers(b.id).await.unwrap(), vec![a.id]);
        g.unfollow(a.id, b.id).await.unwrap();
        assert!(g.all_followers(b.id).await.unwrap().is_empty());
        assert_eq!(g.user(b.id).await.unwrap().followers_count, 0);
        assert_eq!(g.user(a.id).await.unwrap().following_count, 0);
    }

    #[tokio::test]
    async fn lists_page_by_cursor_without_gaps() {
        let g = graph();
        let (star, mut fans) = star_with_fans(&g, 25).await;
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let p = g.followers(star, after, 10).await.unwrap();
            seen.extend(p.ids);
            match p.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        fans.sort_unstable();
        assert_eq!(seen, fans);
    }
}
