//! The social graph: users, sessions, handles, follows, friends and blocks, over the store.
//!
//! Modules: [`account`] (the sessions of a user, password changes), [`keys`] (the keyspaces and their merge policies), [`users`] (sign-up, login,
//! sessions, profiles), [`block_cache`] (the block check answered from memory on one node), [`session_cache`] (the token check answered from memory, revocations from the change feed), [`follows`] (follow, unfollow, lists), [`counts`] (follower counts derived
//! per node from the edge sets), [`friends`] (friend requests and friendships), [`blocks`], [`profile`] (bio and avatar), [`deletion`] (deleted accounts). [`Graph`] is the cheap-to-clone handle every operation
//! hangs off. It talks only to `starling_store` (and a [`CasRouter`] for the few linearizable
//! keys): never to a network or a database directly.

pub mod account;
pub mod block_cache;
pub mod blocks;
pub mod bulk;
pub mod counts;
pub mod deletion;
pub mod error;
pub mod exact_cache;
pub mod follows;
pub mod friends;
pub mod keys;
pub mod profile;
pub mod session_cache;
pub mod users;

pub use error::GraphError;
pub use users::{Session, User};

use starling_store::{CasRouter, IdGenerator, Store};
use std::sync::Arc;
use std::time::Duration;

/// Tunables of the graph.
#[derive(Clone, Debug)]
pub struct GraphConfig {
    /// The region this node serves: the home region of users who sign up here without asking
    /// for another.
    pub region: String,
    /// The region whose owner node arbitrates handle uniqueness (the same on every node).
    pub handle_region: String,
    /// Argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_passes: u32,
    /// How long a session token lives.
    pub session_ttl: Duration,
    /// How long a deleted account's handle stays taken, and its edges are swept (see
    /// [`deletion`]).
    pub handle_grace: Duration,
    /// The counts are derived from the store's keyspace-wide change feed by the node holding
    /// each partition (several nodes on one ScyllaDB keyspace, see `counts`), not from this
    /// node's own feed: [`Graph::catch_up_counts`] then does nothing, and a follow's counts move
    /// once its partition's holder has read it.
    pub keyspace_feed: bool,
    /// [`Graph::blocked_either`] from a cache of the pairs asked ([`block_cache`]): only where
    /// every block element of the store is written through this node (one node on its own
    /// store, no cluster; the server sets it so). `false` (the default): two reads a question.
    pub block_cache: bool,
    /// [`Graph::authenticate`] from a cache of the sessions seen ([`session_cache`]): only where
    /// this node's change feed lists every session's change, which its follower counts'
    /// consumer reads (a node on its own store, alone or in a gossip cluster; not a keyspace
    /// shared by several nodes; the server sets it so). `false` (the default): a store read a
    /// request.
    pub session_cache: bool,
    /// How long a cached session is trusted before the store is read again (`None`: until it is
    /// revoked or evicted). The server sets it on a keyspace shared by several nodes, where
    /// revocations made elsewhere arrive through the node's broadcast reader of the keyspace
    /// feed: the safety net for a reader that is down.
    pub session_recheck: Option<Duration>,
}

impl GraphConfig {
    /// Production settings for a node of `region` (handles arbitrated in `handle_region`).
    pub fn new(region: impl Into<String>, handle_region: impl Into<String>) -> Self {
        GraphConfig {
            region: region.into(),
            handle_region: handle_region.into(),
            argon2_memory_kib: 19_456,
            argon2_passes: 2,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            handle_grace: Duration::from_secs(30 * 24 * 3600),
            keyspace_feed: false,
            block_cache: false,
            session_cache: false,
            session_recheck: None,
        }
    }
}

/// The graph service: a handle over the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Graph {
    store: Arc<dyn Store>,
    cas: Arc<dyn CasRouter>,
    ids: Arc<IdGenerator>,
    cfg: Arc<GraphConfig>,
    /// One count catch-up at a time (held across awaits: a tokio mutex).
    counts_lock: Arc<tokio::sync::Mutex<()>>,
    /// Permits for argon2 computations: one per core (see `Graph::argon2_job`).
    hashing: Arc<tokio::sync::Semaphore>,
    /// The block cache, where [`GraphConfig::block_cache`] allows it.
    blocks: Option<Arc<block_cache::BlockCache>>,
    /// The session cache, where [`GraphConfig::session_cache`] allows it.
    sessions: Option<Arc<session_cache::SessionCache>>,
}

impl Graph {
    /// A graph over `store`, with linearizable keys through `cas`.
    pub fn new(
        store: Arc<dyn Store>,
        cas: Arc<dyn CasRouter>,
        ids: Arc<IdGenerator>,
        cfg: GraphConfig,
    ) -> Self {
        let blocks = cfg.block_cache.then(Arc::default);
        let sessions = cfg.session_cache.then(Arc::default);
        Graph {
            store,
            cas,
            ids,
            blocks,
            sessions,
            cfg: Arc::new(cfg),
            counts_lock: Arc::new(tokio::sync::Mutex::new(())),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, usize::from),
            )),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GraphConfig {
        &self.cfg
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
