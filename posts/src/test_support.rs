//! The unit tests' one way to build a [`Posts`]: the memory engine of one node, its
//! compare-and-set and id generator.

use crate::Posts;
use starling_store::{HlcClock, IdGenerator, Limits, LocalCas, NodeId, RegionId, open_memory};
use std::sync::Arc;

/// A [`Posts`] on a fresh memory store of node 1 in region `us`.
pub(crate) fn posts() -> Posts {
    let node = NodeId::new(RegionId::from_name("us"), 1);
    let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
    Posts::new(
        store.clone(),
        Arc::new(LocalCas(store)),
        Arc::new(IdGenerator::new(node)),
    )
}
