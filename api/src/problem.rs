//! Errors at the edge: one [`ApiError`] that maps each failure to a status and an
//! `application/problem+json` body. Internal details are logged, never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use starling_store::StoreError;

/// A failed request.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// Unknown id, with a built message.
    #[error("{0}")]
    NotFoundMsg(String),
    /// Not allowed, with a built message.
    #[error("{0}")]
    ForbiddenMsg(String),
    /// A conflict (a taken handle, a request in progress).
    #[error("{0}")]
    Conflict(String),
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// Body or value too large.
    #[error("{0}")]
    TooLarge(String),
    /// Well-formed but invalid.
    #[error("{0}")]
    Invalid(String),
    /// Over a rate limit.
    #[error("too many requests; retry later")]
    TooManyRequests,
    /// A needed region or owner is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: logged, answered as a bare 500.
    #[error("internal error")]
    Internal(String),
}

/// An error body (RFC 9457 problem details).
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The status' reason phrase.
    title: &'static str,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for a person.
    detail: String,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenMsg(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NotFoundMsg(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
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
            StoreError::OwnerUnreachable { .. } => ApiError::Unavailable(e.to_string()),
            StoreError::Remote(_) => {
                // The owner refused (membership views disagree, or it just started): transient.
                tracing::warn!(error = %e, "the owner did not take a CAS");
                ApiError::Unavailable(
                    "the owner of this key could not take the request; retry later".into(),
                )
            }
            StoreError::Cluster(_) => {
                // The detail names hosts and driver internals: logged, not sent.
                tracing::warn!(error = %e, "store cluster unavailable");
                ApiError::Unavailable("the database is unavailable; retry later".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<starling_graph::GraphError> for ApiError {
    fn from(e: starling_graph::GraphError) -> Self {
        use starling_graph::GraphError as G;
        match e {
            G::InvalidHandle | G::WeakPassword(_) | G::Invalid(_) => {
                ApiError::Invalid(e.to_string())
            }
            G::HandleTaken => ApiError::Conflict(e.to_string()),
            G::WrongCredentials | G::InvalidToken => ApiError::Unauthorized,
            G::NotFound(_) => ApiError::NotFoundMsg(e.to_string()),
            G::Blocked => ApiError::ForbiddenMsg("blocked".into()),
            G::Forbidden(m) => ApiError::Forbidden(m),
            G::Store(s) => s.into(),
        }
    }
}

impl From<starling_posts::PostError> for ApiError {
    fn from(e: starling_posts::PostError) -> Self {
        use starling_posts::PostError as P;
        match e {
            P::Invalid(_) | P::UnknownMedia(_) => ApiError::Invalid(e.to_string()),
            P::NotFound => ApiError::NotFound("post not found"),
            P::Forbidden => ApiError::Forbidden("only the author may change a post"),
            P::InProgress => ApiError::Conflict(e.to_string()),
            P::Store(s) => s.into(),
        }
    }
}

impl From<starling_messenger::MessengerError> for ApiError {
    fn from(e: starling_messenger::MessengerError) -> Self {
        use starling_messenger::MessengerError as M;
        match e {
            M::Invalid(_) | M::InvalidMsg(_) | M::TooManyMembers(_) => {
                ApiError::Invalid(e.to_string())
            }
            M::ForbiddenMsg(m) => ApiError::ForbiddenMsg(m),
            M::ConflictMsg(m) => ApiError::Conflict(m),
            M::MessageNotFound => ApiError::NotFound("message not found"),
            M::NotFound => ApiError::NotFound("conversation not found"),
            M::UnknownUser(_) => ApiError::NotFoundMsg(e.to_string()),
            M::NotMember => ApiError::Forbidden("not a member of this conversation"),
            M::Blocked => ApiError::Forbidden("blocked"),
            M::Contended => ApiError::Conflict(e.to_string()),
            M::Store(s) => s.into(),
            M::Redis(r) => ApiError::Internal(r),
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
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // An owner region or the database is away: SWIM notices a death in about 10 s, a
            // healed partition re-merges within a few announces; 2 s spaces the retries.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        resp
    }
}
