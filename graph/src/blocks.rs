//! Blocks: `gb/blocker/blocked` set elements. A block removes follows and friendship both ways
//! and forbids following, befriending and messaging while it stands.

use crate::keys::{BLOCKS, pair};
use crate::{Graph, GraphError};
use bytes::Bytes;
use starling_store::StoreExt;

impl Graph {
    /// Whether `blocker` blocked `blocked`.
    pub async fn has_blocked(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError> {
        Ok(self
            .store
            .get(&pair(BLOCKS, blocker, blocked))
            .await?
            .is_some_and(|v| v.value.is_some()))
    }

    /// Whether either of two users blocked the other (from the block cache where it is on:
    /// [`crate::block_cache`]).
    pub async fn blocked_either(&self, a: u64, b: u64) -> Result<bool, GraphError> {
        let Some(cache) = &self.blocks else {
            return Ok(self.has_blocked(a, b).await? || self.has_blocked(b, a).await?);
        };
        if let Some(v) = cache.get(a, b) {
            return Ok(v);
        }
        let seen = cache.generation();
        let v = self.has_blocked(a, b).await? || self.has_blocked(b, a).await?;
        cache.offer(a, b, seen, v);
        Ok(v)
    }

    /// A block element of `a` and `b` was written here: the block cache forgets the pair.
    pub(crate) fn block_changed(&self, a: u64, b: u64) {
        if let Some(cache) = &self.blocks {
            cache.changed(a, b);
        }
    }

    /// The block cache, where it is on (its counters and size, for `/metrics`).
    pub fn block_cache(&self) -> Option<&crate::block_cache::BlockCache> {
        self.blocks.as_deref()
    }

    /// `blocker` blocks `blocked`. Idempotent.
    pub async fn block(&self, blocker: u64, blocked: u64) -> Result<(), GraphError> {
        if blocker == blocked {
            return Err(GraphError::Invalid("one cannot block oneself"));
        }
        if !self.exists(blocked).await? {
            return Err(GraphError::NotFound("user"));
        }
        let written = self
            .store
            .add(&pair(BLOCKS, blocker, blocked), Bytes::new())
            .await;
        self.block_changed(blocker, blocked);
        written?;
        self.unfollow(blocker, blocked).await?;
        self.unfollow(blocked, blocker).await?;
        self.unfriend(blocker, blocked).await?;
        Ok(())
    }

    /// Lifts a block. Idempotent; follows are not restored.
    pub async fn unblock(&self, blocker: u64, blocked: u64) -> Result<(), GraphError> {
        let written = self.store.remove(&pair(BLOCKS, blocker, blocked)).await;
        self.block_changed(blocker, blocked);
        written?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::GraphError;
    use crate::users::tests::graph;

    #[tokio::test]
    async fn a_block_cuts_follows_both_ways_and_forbids_new_ones() {
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        g.follow(a.id, b.id).await.unwrap();
        g.follow(b.id, a.id).await.unwrap();
        g.block(a.id, b.id).await.unwrap();
        assert!(!g.is_following(a.id, b.id).await.unwrap());
        assert!(!g.is_following(b.id, a.id).await.unwrap());
        assert!(matches!(
            g.follow(b.id, a.id).await,
            Err(GraphError::Blocked)
        ));
        assert!(matches!(
            g.follow(a.id, b.id).await,
            Err(GraphError::Blocked)
        ));
        assert!(matches!(
            g.request_friend(b.id, a.id).await,
            Err(GraphError::Blocked)
        ));
        assert_eq!(g.user(a.id).await.unwrap().followers_count, 0);
        g.unblock(a.id, b.id).await.unwrap();
        g.follow(b.id, a.id).await.unwrap();
    }
}
