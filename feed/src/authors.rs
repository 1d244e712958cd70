//! Author summaries for hydrated post views (handle, display name, avatar), kept in process.
//!
//! A page of posts names a few dozen authors, most of them the same ones page after page: a
//! bounded cache of summaries by user id ([`crate::ttl_cache`]) answers them without a store
//! read. An entry is dropped when the fan-out worker meets a change to the user's record or profile in the change feed
//! (every node sees every change, local or replicated), and lives at most a minute whatever
//! happens, which bounds a summary read just before such a change. A user who is gone is cached
//! as absent.

use crate::FeedError;
use crate::ttl_cache::TtlCache;
use starling_graph::{Graph, GraphError};
use starling_store::Keyspace;
use std::sync::Arc;

/// The graph crate's user records (`gu/id`); their changes drop the user's summary (checked
/// against the graph crate by a test in `tests.rs`).
pub(crate) const USER_RECORDS: Keyspace = Keyspace::new("gu");
/// The graph crate's profiles (`gp/id`), likewise.
pub(crate) const PROFILES: Keyspace = Keyspace::new("gp");

/// What a post view shows of its author.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    /// User id.
    pub id: u64,
    /// Handle, lower case.
    pub handle: String,
    /// Shown name.
    pub display_name: String,
    /// Avatar media id.
    pub avatar: Option<u64>,
}

/// The summaries cache.
#[derive(Clone, Debug)]
pub struct Authors {
    cache: Arc<TtlCache<Option<Arc<Author>>>>,
    graph: Graph,
}

impl Authors {
    /// A cache of up to `entries` summaries over `graph`.
    pub fn new(graph: Graph, entries: u64) -> Self {
        Authors {
            cache: Arc::new(TtlCache::new(entries, std::time::Duration::from_secs(60))),
            graph,
        }
    }

    /// The summary of each of `ids`, in order (`None` for a user who is gone).
    pub async fn get_many(&self, ids: &[u64]) -> Result<Vec<Option<Arc<Author>>>, FeedError> {
        let now = self.cache.now();
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let a = match self.cache.get(id, now) {
                Some(a) => a,
                None => {
                    let a = self.read(id).await?;
                    self.cache.insert(id, a.clone(), now);
                    a
                }
            };
            out.push(a);
        }
        Ok(out)
    }

    async fn read(&self, id: u64) -> Result<Option<Arc<Author>>, FeedError> {
        let user = match self.graph.user(id).await {
            Ok(u) => u,
            Err(GraphError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let avatar = self.graph.profile(id).await?.avatar;
        Ok(Some(Arc::new(Author {
            id,
            handle: user.handle,
            display_name: user.display_name,
            avatar,
        })))
    }

    /// Forgets a user's summary (their record or profile changed).
    pub fn invalidate(&self, id: u64) {
        self.cache.remove(id);
    }

    /// Forgets every summary.
    pub fn invalidate_all(&self) {
        self.cache.clear();
    }

    /// Summaries held (for metrics).
    pub fn len(&self) -> u64 {
        self.cache.len()
    }

    /// Whether none is held (approximate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
