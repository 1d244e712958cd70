//! Starling's HTTP server: the axum router, its state and the node's start-up.
//!
//! At this stage the router serves the operations endpoints (`/healthz`, `/readyz`); the REST API
//! of the domain crates joins it issue by issue. [`router`] builds the whole router from an
//! [`AppState`] so tests can call it with `oneshot`, without a socket.

pub mod config;
pub mod ops;
pub mod server;

use starling_store::Store;
use std::sync::Arc;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The node's store.
    pub store: Arc<dyn Store>,
}

/// The whole HTTP API of a node.
pub fn router(state: AppState) -> axum::Router {
    ops::routes().with_state(state)
}
