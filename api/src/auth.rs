//! Authentication: the `Authorization: Bearer <token>` of a session (the scheme in any case),
//! as an extractor.

use crate::AppState;
use crate::problem::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

/// The authenticated caller. Extracting it answers 401 without a valid token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser(pub u64);

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(&parts.headers)
}

/// The token of `Authorization: Bearer <token>`. The scheme is matched in any case (RFC 9110
/// §11.1: `bearer`, `BEARER` and `Bearer` are the same scheme); the token is taken as sent,
/// without the spaces around it.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Resolved already by a layer that needed the user first (`write_limits`).
        if let Some(u) = parts.extensions.get::<AuthUser>() {
            return Ok(*u);
        }
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        match state.graph.authenticate(token).await {
            Ok(id) => Ok(AuthUser(id)),
            Err(starling_graph::GraphError::InvalidToken) => Err(ApiError::Unauthorized),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn token_of(value: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).ok()?);
        bearer_token(&h).map(str::to_string)
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for v in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR  abc ",
            " Bearer abc",
        ] {
            assert_eq!(token_of(v).as_deref(), Some("abc"), "{v:?}");
        }
        for v in [
            "Basic abc",
            "Bearerabc",
            "Bearer",
            "Bearer ",
            "Bearer\tabc",
            "Token abc",
        ] {
            assert_eq!(token_of(v), None, "{v:?}");
        }
    }
}
