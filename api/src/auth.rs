//! Authentication: the `Authorization: Bearer <token>` of a session, as an extractor.

use crate::AppState;
use crate::problem::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// The authenticated caller. Extracting it answers 401 without a valid token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser(pub u64);

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        match state.graph.authenticate(token).await {
            Ok(id) => Ok(AuthUser(id)),
            Err(starling_graph::GraphError::InvalidToken) => Err(ApiError::Unauthorized),
            Err(e) => Err(e.into()),
        }
    }
}
