//! The feed's one test set-up (feature `test-support`, and always in the crate's own tests): a
//! one-node world (memory store, graph, posts, feed) with a given feed configuration and users
//! signed up on it, used by the unit tests (`tests.rs`), the Redis tests (`tests/redis.rs`, which
//! build their feeds over [`parts`] themselves) and the benchmarks (`benches/`), so they cannot
//! drift.

use crate::{Feed, FeedConfig};
use starling_graph::{Graph, GraphConfig};
use starling_posts::Posts;
use starling_store::{
    HlcClock, IdGenerator, Limits, LocalCas, NodeId, RegionId, Store, open_memory,
};
use std::sync::Arc;

/// A node's feed with the graph and posts it reads.
#[derive(Debug)]
pub struct World {
    /// The feed under test.
    pub feed: Feed,
    /// Its graph: sign-ups, follows, blocks.
    pub graph: Graph,
    /// Its posts.
    pub posts: Posts,
}

/// What a feed reads: a node's store, graph and posts.
#[derive(Debug)]
pub struct Parts {
    /// The node's memory store.
    pub store: Arc<dyn Store>,
    /// Its graph.
    pub graph: Graph,
    /// Its posts.
    pub posts: Posts,
}

/// A node of region `us` on the memory store, with no feed yet.
pub fn parts() -> Parts {
    let node = NodeId::new(RegionId::from_name("us"), 1);
    let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
    let cas = Arc::new(LocalCas(store.clone()));
    let ids = Arc::new(IdGenerator::new(node));
    let mut gc = GraphConfig::new("us", "us");
    // The cheapest password hashing: sign-ups are set-up here, not what is tested or measured.
    gc.argon2_memory_kib = 8;
    gc.argon2_passes = 1;
    Parts {
        graph: Graph::new(store.clone(), cas.clone(), ids.clone(), gc),
        posts: Posts::new(store.clone(), cas, ids),
        store,
    }
}

/// A node of region `us` on the memory store, its feed configured by `cfg`.
pub fn world(cfg: FeedConfig) -> World {
    let Parts {
        store,
        graph,
        posts,
    } = parts();
    World {
        feed: Feed::new(store, graph.clone(), posts.clone(), cfg),
        graph,
        posts,
    }
}

/// Signs up `handle` in `graph` (password `password1`): its id.
///
/// # Panics
/// If the sign-up fails (it does not on the memory engine, unless the handle is taken).
pub async fn sign_up(graph: &Graph, handle: &str) -> u64 {
    graph
        .sign_up(handle, "password1", None, None)
        .await
        .expect("a sign-up on the memory engine")
        .0
        .id
}

/// Signs up `handle` in `w`'s graph: its id.
///
/// # Panics
/// As [`sign_up`].
pub async fn user(w: &World, handle: &str) -> u64 {
    sign_up(&w.graph, handle).await
}

/// `n` users `{tag}0`…, signed up in order: their ids.
///
/// # Panics
/// As [`user`].
pub async fn users(w: &World, n: usize, tag: &str) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(user(w, &format!("{tag}{i}")).await);
    }
    out
}
