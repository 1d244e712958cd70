//! Post bodies for feed pages: in process (L1, a [`TtlCache`]), the regional tier (L2: Redis), the
//! store last.
//!
//! Entries are invalidated when the fan-out worker sees a post change in the change feed (every
//! node sees every post change, local or replicated), and at once by the API on an edit or
//! delete made on this node. A deleted post is cached as absent, so pages skip it cheaply.

use crate::tier::RegionalTier;
use crate::ttl_cache::TtlCache;
use starling_posts::{Post, PostError, Posts};
use std::sync::Arc;

/// The post cache.
#[derive(Clone, Debug)]
pub struct PostCache {
    l1: Arc<TtlCache<Option<Arc<Post>>>>,
    l2: Option<Arc<dyn RegionalTier>>,
    posts: Posts,
}

impl PostCache {
    /// A cache of up to `entries` posts over `posts`, with an optional regional L2.
    pub fn new(posts: Posts, entries: u64, l2: Option<Arc<dyn RegionalTier>>) -> Self {
        PostCache {
            // The TTL bounds how long a body read just before an invalidation can linger.
            l1: Arc::new(TtlCache::new(entries, std::time::Duration::from_secs(60))),
            l2,
            posts,
        }
    }

    /// Forgets a post everywhere (it changed).
    pub async fn invalidate(&self, id: u64) {
        self.l1.remove(id);
        if let Some(l2) = &self.l2
            && let Err(e) = l2.forget_post(id).await
        {
            tracing::debug!(error = %e, post = id, "could not drop a cached post body");
        }
    }

    /// Forgets a post in this process only (another node changed it and dropped it from L2).
    pub fn forget_local(&self, id: u64) {
        self.l1.remove(id);
    }

    /// Forgets every post in this process only.
    pub fn forget_all_local(&self) {
        self.l1.clear();
    }

    /// The posts of `ids` that exist, in the order given.
    pub async fn hydrate(&self, ids: &[u64]) -> Result<Vec<Arc<Post>>, PostError> {
        let now = self.l1.now();
        let mut found: Vec<Option<Option<Arc<Post>>>> =
            ids.iter().map(|i| self.l1.get(*i, now)).collect();
        let missing: Vec<usize> = (0..ids.len()).filter(|i| found[*i].is_none()).collect();
        if !missing.is_empty() {
            let mut from_l2 = Vec::new();
            if let Some(l2) = self.l2.as_ref().filter(|l| l.is_healthy()) {
                let want: Vec<u64> = missing.iter().map(|i| ids[*i]).collect();
                if let Ok(bodies) = l2.posts(&want).await {
                    from_l2 = bodies;
                }
            }
            let mut to_l2 = Vec::new();
            for (n, i) in missing.iter().enumerate() {
                let id = ids[*i];
                let cached = from_l2
                    .get(n)
                    .and_then(|b| b.as_deref())
                    .and_then(|b| serde_json::from_slice::<Post>(b).ok());
                let post = match cached {
                    Some(p) => Some(Arc::new(p)),
                    None => match self.posts.get(id).await {
                        Ok(p) => {
                            if let Ok(body) = serde_json::to_vec(&p) {
                                to_l2.push((id, body));
                            }
                            Some(Arc::new(p))
                        }
                        Err(PostError::NotFound) => None,
                        Err(e) => return Err(e),
                    },
                };
                self.l1.insert(id, post.clone(), now);
                found[*i] = Some(post);
            }
            if let Some(l2) = &self.l2
                && let Err(e) = l2.put_posts(&to_l2).await
            {
                tracing::debug!(error = %e, "could not cache post bodies in redis");
            }
        }
        Ok(found.into_iter().flatten().flatten().collect())
    }
}
