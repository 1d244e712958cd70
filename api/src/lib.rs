//! Starling's HTTP server: the axum router, its state and the node's start-up.
//!
//! At this stage the router serves the operations endpoints (`/healthz`, `/readyz`) and the
//! operator endpoints (`/v1/cluster`, `/v1/admin/wan`, `/v1/admin/kv/{key}`); the REST API of the
//! domain crates joins it issue by issue. [`router`] builds the whole router from an
//! [`AppState`] so tests can call it with `oneshot`, without a socket.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod ops;
pub mod problem;
pub mod server;

use starling_gossip::GossipHandle;
use starling_store::Store;
use std::sync::Arc;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The node's store.
    pub store: Arc<dyn Store>,
    /// The region this node serves.
    pub region: String,
    /// The gossip service, when the node is part of a cluster.
    pub gossip: Option<GossipHandle>,
    /// The admin token; admin endpoints are disabled without one.
    pub admin_token: Option<String>,
    /// In how many regions a write must be before it is acknowledged (1: here).
    pub durable_regions: usize,
    /// Metrics served at `/metrics`.
    pub metrics: Arc<prometheus_client::registry::Registry>,
}

impl AppState {
    /// State for a node: its store, region, gossip service and admin token.
    pub fn new(
        store: Arc<dyn Store>,
        region: String,
        gossip: Option<GossipHandle>,
        admin_token: Option<String>,
        durable_regions: usize,
    ) -> Self {
        let metrics = Arc::new(metrics::registry(store.clone(), gossip.clone()));
        AppState {
            store,
            region,
            gossip,
            admin_token,
            durable_regions,
            metrics,
        }
    }
}

/// The whole HTTP API of a node.
pub fn router(state: AppState) -> axum::Router {
    ops::routes().merge(admin::routes()).with_state(state)
}
