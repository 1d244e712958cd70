//! Test support: an in-memory node state with cheap password hashing.

use crate::{AppState, NodeParts};
use starling_store::Store;
use std::sync::Arc;

/// The admin token of test states.
#[allow(dead_code)] // for tests of the admin endpoints
pub(crate) const ADMIN: &str = "admin-secret";

/// A node state over `store`, media in memory, argon2 at its cheapest.
pub(crate) fn state(store: Arc<dyn Store>) -> AppState {
    state_with_auth_limit(store, 100_000)
}

/// The same with a given sign-up/login rate per minute.
pub(crate) fn state_with_auth_limit(store: Arc<dyn Store>, per_minute: u32) -> AppState {
    AppState::new(NodeParts {
        admin_token: Some(ADMIN.into()),
        auth_per_minute: per_minute,
        ..NodeParts::for_tests(store)
    })
}

/// A real 1×1 PNG (media uploads are checked against their declared type).
#[allow(dead_code)] // for tests of media
pub(crate) const PNG_1X1: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0bIDATx\xdac`\x00\x02\x00\x00\x05\x00\x01\xe9\xfa\xdc\xd8\x00\x00\x00\x00IEND\xaeB`\x82";
