//! The messenger's one test set-up (feature `test-support`, and always in the crate's own
//! tests): a messenger on the memory engine over a graph with signed-up users, used by the unit
//! tests (`tests.rs`, the lease tests) and by `benches/chat_path.rs`, so the two cannot drift;
//! and a second messenger beside a first one (same store and graph, its own router and
//! configuration), as a node restarted on the store or another node over it.

use crate::{Messenger, MessengerConfig};
use starling_graph::{Graph, GraphConfig};
use starling_store::{
    CasRouter, HlcClock, IdGenerator, Limits, LocalCas, NodeId, RegionId, open_memory,
};
use std::sync::Arc;

/// A messenger configured by `cfg` on a memory store, over a graph with its block cache on or
/// off (`GraphConfig::block_cache`) and `users` signed-up users (`user0`, `user1`, …; their ids,
/// in that order); the client-id filter loaded where `cfg` turns it on.
///
/// # Panics
/// If a sign-up or the filter's load fails (neither does on the memory engine).
pub async fn messenger_on_memory(
    users: usize,
    block_cache: bool,
    cfg: MessengerConfig,
) -> (Messenger, Vec<u64>) {
    let store = open_memory(
        NodeId::new(RegionId(1), 1),
        Arc::new(HlcClock::new()),
        Limits::default(),
    );
    let cas = Arc::new(LocalCas(store.clone()));
    let ids = Arc::new(IdGenerator::new(store.node()));
    let mut gcfg = GraphConfig::new("r", "r");
    // The cheapest password hashing: sign-ups are set-up here, not what is measured.
    gcfg.argon2_memory_kib = 64;
    gcfg.argon2_passes = 1;
    gcfg.block_cache = block_cache;
    let graph = Graph::new(store.clone(), cas.clone(), ids.clone(), gcfg);
    let mut out = Vec::with_capacity(users);
    for i in 0..users {
        let (u, _) = graph
            .sign_up(&format!("user{i}"), "password1", None, None)
            .await
            .expect("a sign-up on the memory engine");
        out.push(u.id);
    }
    let filter = cfg.client_id_filter;
    let m = Messenger::new(store, cas, ids, graph, cfg);
    if filter {
        m.load_client_ids()
            .await
            .expect("the client-id filter loads from the memory engine");
    }
    (m, out)
}

/// A messenger configured by `cfg` over `m`'s store and graph, its CASes through `cas` (`None`:
/// the store's own, [`LocalCas`]); its filter, if `cfg` turns it on, not loaded yet.
pub fn beside(m: &Messenger, cas: Option<Arc<dyn CasRouter>>, cfg: MessengerConfig) -> Messenger {
    let store = m.store().clone();
    let cas = cas.unwrap_or_else(|| Arc::new(LocalCas(store.clone())));
    let ids = Arc::new(IdGenerator::new(store.node()));
    Messenger::new(store, cas, ids, m.graph().clone(), cfg)
}
