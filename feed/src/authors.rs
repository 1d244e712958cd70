//! Author summaries for hydrated post views (handle, display name, avatar), kept in process.
//!
//! A page of posts names a few dozen authors, most of them the same ones page after page: a
//! bounded cache of summaries by user id ([`crate::ttl_cache`]) answers them without a store
//! read. An entry is dropped when the fan-out worker meets a change to the user's record or profile in the change feed
//! (every node sees every change, local or replicated), and lives at most a minute whatever
//! happens, which bounds a summary read just before such a change. A user who is gone is cached
//! as absent.
//!
//! **Marks** ([`Authors::get_many_marked`], [`Current`]): a copy of a summary kept elsewhere (a
//! pre-serialized feed item) can be checked without looking the user up again. Each user falls
//! in one of [`STRIPES`] generation counters, bumped after every [`Authors::invalidate`] of a user
//! in it (every counter by [`Authors::invalidate_all`]); a lookup's [`Mark`] is the counter read
//! *before* the lookup and when the entry was read from the store. A copy is current while its
//! counter has not moved and the entry's TTL has not run out: exactly as long as the cache would
//! still hand out the same summary (an invalidation after the mark was read moves the counter,
//! one before it removed the entry before the lookup), and a read racing an invalidation is
//! caught where the cache itself is not (the counter moved after the mark).

use crate::FeedError;
use crate::ttl_cache::{Stamp, TtlCache};
use starling_graph::{Graph, GraphError};
use starling_store::Keyspace;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Generation counters users are spread over (a power of two).
pub const STRIPES: usize = 1024;

/// When a summary was current: its stripe's generation before the lookup, when it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    generation: u64,
    read_at: Stamp,
}

/// The marks' clock, read once for a batch of checks ([`Authors::current`]).
#[derive(Debug)]
pub struct Current<'a> {
    authors: &'a Authors,
    now: Stamp,
}

impl Current<'_> {
    /// Whether a summary of user `id` marked `mark` is still the one the cache answers with.
    pub fn is_current(&self, id: u64, mark: Mark) -> bool {
        self.authors.generation(id) == mark.generation
            && self.authors.cache.is_fresh(mark.read_at, self.now)
    }
}

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
    /// One counter a stripe of users (see the module's documentation).
    generations: Arc<[AtomicU64]>,
    graph: Graph,
}

impl Authors {
    /// A cache of up to `entries` summaries over `graph`.
    pub fn new(graph: Graph, entries: u64) -> Self {
        Authors {
            cache: Arc::new(TtlCache::new(entries, std::time::Duration::from_secs(60))),
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            graph,
        }
    }

    /// The summary of each of `ids`, in order (`None` for a user who is gone).
    pub async fn get_many(&self, ids: &[u64]) -> Result<Vec<Option<Arc<Author>>>, FeedError> {
        let mut out = Vec::with_capacity(ids.len());
        self.get_many_marked(ids, |_, a, _| out.push(a)).await?;
        Ok(out)
    }

    /// Hands `each` the summary of each of `ids` in order (`None` for a user who is gone), with
    /// its [`Mark`].
    pub async fn get_many_marked(
        &self,
        ids: &[u64],
        mut each: impl FnMut(u64, Option<Arc<Author>>, Mark),
    ) -> Result<(), FeedError> {
        let now = self.cache.now();
        for &id in ids {
            let generation = self.generation(id);
            let (a, read_at) = match self.cache.get_stamped(id, now) {
                Some(hit) => hit,
                None => {
                    let a = self.read(id).await?;
                    self.cache.insert(id, a.clone(), now);
                    (a, now)
                }
            };
            each(
                id,
                a,
                Mark {
                    generation,
                    read_at,
                },
            );
        }
        Ok(())
    }

    /// The clock for checking marks ([`Current::is_current`]).
    pub fn current(&self) -> Current<'_> {
        Current {
            authors: self,
            now: self.cache.now(),
        }
    }

    fn stripe(&self, id: u64) -> &AtomicU64 {
        let i =
            (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - STRIPES.trailing_zeros())) as usize;
        &self.generations[i % self.generations.len()]
    }

    fn generation(&self, id: u64) -> u64 {
        self.stripe(id).load(Ordering::Acquire)
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
        // After the removal: a mark read after this bump meets the cache without the entry.
        self.stripe(id).fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets every summary.
    pub fn invalidate_all(&self) {
        self.cache.clear();
        for g in self.generations.iter() {
            g.fetch_add(1, Ordering::AcqRel);
        }
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
