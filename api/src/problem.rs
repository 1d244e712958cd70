//! Errors at the edge: one [`ApiError`] that maps each failure to a status and an
//! `application/problem+json` body. Internal details are logged, never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use starling_store::StoreError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or bad credentials.
    #[error("missing or invalid token")]
    Unauthorized,
    /// Authenticated but not allowed (or the feature is disabled).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Unknown id or key.
    #[error("{0}")]
    NotFound(&'static str),
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// Body or value too large.
    #[error("{0}")]
    TooLarge(String),
    /// Well-formed but invalid.
    #[error("{0}")]
    Invalid(String),
    /// A needed region or owner is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: logged, answered as a bare 500.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmptyKey | StoreError::InvalidArgument(_) => {
                ApiError::BadRequest(e.to_string())
            }
            StoreError::KeyTooLarge { .. } | StoreError::ValueTooLarge { .. } => {
                ApiError::TooLarge(e.to_string())
            }
            StoreError::KindMismatch { .. } => ApiError::Invalid(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "the server failed to answer; the error is logged".to_string()
            }
            other => other.to_string(),
        };
        let title = status.canonical_reason().unwrap_or("error");
        let body = Problem {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail,
        };
        let mut resp = (status, Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
