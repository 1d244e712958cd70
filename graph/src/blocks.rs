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

    /// For each of `others`, whether it and `viewer` blocked one another either way: the
    /// [`Graph::blocked_either`] of each — from the block cache where it is on, the rest read in
    /// one batch of the store (one trip off the runtime for them all, as a hydrated page needs).
    pub async fn blocked_either_many(
        &self,
        viewer: u64,
        others: &[u64],
    ) -> Result<Vec<bool>, GraphError> {
        let cache = self.blocks.as_deref();
        let mut out: Vec<Option<bool>> = others
            .iter()
            .map(|o| cache.and_then(|c| c.get(viewer, *o)))
            .collect();
        let missing: Vec<u64> = others
            .iter()
            .zip(&out)
            .filter_map(|(o, v)| v.is_none().then_some(*o))
            .collect();
        if missing.is_empty() {
            return Ok(out.into_iter().map(|v| v.unwrap_or(false)).collect());
        }
        let seen = cache.map(|c| c.generation());
        let keys: Vec<_> = missing
            .iter()
            .flat_map(|o| [pair(BLOCKS, viewer, *o), pair(BLOCKS, *o, viewer)])
            .collect();
        let records = self.store.get_records(&keys).await?;
        let set = |r: Option<&Option<starling_store::Record>>| {
            r.and_then(Option::as_ref)
                .is_some_and(|r| r.visible().value.is_some())
        };
        let mut read = missing.iter().enumerate().map(|(i, o)| {
            let v = set(records.get(2 * i)) || set(records.get(2 * i + 1));
            if let (Some(c), Some(seen)) = (cache, seen) {
                c.offer(viewer, *o, seen, v);
            }
            v
        });
        for slot in out.iter_mut().filter(|v| v.is_none()) {
            *slot = read.next();
        }
        Ok(out.into_iter().map(|v| v.unwrap_or(false)).collect())
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
    use crate::users::tests::{graph, graph_cached};

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

    #[tokio::test]
    async fn blocks_either_way_are_read_in_one_batch() {
        for cache in [false, true] {
            let g = graph_cached(cache);
            let mut ids = Vec::new();
            for h in ["viewer", "blocker", "blocked", "neither", "lifted"] {
                ids.push(g.sign_up(h, "password1", None, None).await.unwrap().0.id);
            }
            let [v, blocker, blocked, neither, lifted] = ids[..] else {
                unreachable!()
            };
            g.block(blocker, v).await.unwrap();
            g.block(v, blocked).await.unwrap();
            g.block(lifted, v).await.unwrap();
            g.unblock(lifted, v).await.unwrap();
            let others = [blocker, neither, blocked, lifted, 424242];
            let many = g.blocked_either_many(v, &others).await.unwrap();
            assert_eq!(many, vec![true, false, true, false, false], "cache {cache}");
            for (o, b) in others.iter().zip(&many) {
                assert_eq!(g.blocked_either(v, *o).await.unwrap(), *b, "{o}");
            }
            // Asked again (answered from the cache where it is on), then a block changes one.
            assert_eq!(g.blocked_either_many(v, &others).await.unwrap(), many);
            g.block(neither, v).await.unwrap();
            let after = g.blocked_either_many(v, &others).await.unwrap();
            assert_eq!(after, vec![true, true, true, false, false], "cache {cache}");
            assert!(g.blocked_either_many(v, &[]).await.unwrap().is_empty());
        }
    }
}
