//! What the feed benchmarks share: a one-node world (memory store, graph, posts, feed) with a
//! given feed configuration, and users signed up in bulk (cheap argon2 parameters).
#![allow(dead_code, clippy::unwrap_used)]

use starling_feed::{Feed, FeedConfig};
use starling_graph::{Graph, GraphConfig};
use starling_posts::Posts;
use starling_store::{HlcClock, IdGenerator, Limits, LocalCas, NodeId, RegionId, open_memory};
use std::sync::Arc;

pub(crate) struct World {
    pub(crate) feed: Feed,
    pub(crate) graph: Graph,
    pub(crate) posts: Posts,
}

/// A node of region `us` on the memory store, its feed configured by `cfg`.
pub(crate) fn world(cfg: FeedConfig) -> World {
    let node = NodeId::new(RegionId::from_name("us"), 1);
    let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
    let cas = Arc::new(LocalCas(store.clone()));
    let ids = Arc::new(IdGenerator::new(node));
    let mut gc = GraphConfig::new("us", "us");
    gc.argon2_memory_kib = 8;
    gc.argon2_passes = 1;
    let graph = Graph::new(store.clone(), cas.clone(), ids.clone(), gc);
    let posts = Posts::new(store.clone(), cas, ids);
    World {
        feed: Feed::new(store, graph.clone(), posts.clone(), cfg),
        graph,
        posts,
    }
}

/// `n` users `{tag}0`…, signed up in order: their ids.
pub(crate) async fn users(w: &World, n: usize, tag: &str) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (u, _) = w
            .graph
            .sign_up(&format!("{tag}{i}"), "password1", None, None)
            .await
            .unwrap();
        out.push(u.id);
    }
    out
}
