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
    /// Contention that a retry resolves (a busy conversation): 409, `busy` on the WebSocket.
    #[error("{0}")]
    Busy(String),
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
            ApiError::Conflict(_) | ApiError::Busy(_) => StatusCode::CONFLICT,
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
            // Only a create answers it, through [`Refusal`] (410); elsewhere: not there.
            P::Gone => ApiError::NotFoundMsg(e.to_string()),
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
            M::Trimmed(_) => ApiError::NotFoundMsg(e.to_string()),
            M::NotFound => ApiError::NotFound("conversation not found"),
            M::UnknownUser(_) => ApiError::NotFoundMsg(e.to_string()),
            M::NotMember => ApiError::Forbidden("not a member of this conversation"),
            M::Blocked => ApiError::Forbidden("blocked"),
            M::Contended => ApiError::Busy(e.to_string()),
            M::Store(s) => s.into(),
            M::Redis(r) => ApiError::Internal(r),
        }
    }
}

/// A failure with a status [`ApiError`] has no variant for (405, 410, 415), or an [`ApiError`]:
/// what a handler that may answer one of those fails with. (`ApiError` keeps its variants: the
/// chat protocol maps each to an error code.)
#[derive(Debug)]
pub enum Refusal {
    /// One of the usual failures.
    Api(ApiError),
    /// The route exists, not with this method (axum adds the `Allow` header).
    MethodNotAllowed(String),
    /// Was there, is no more, for good.
    Gone(String),
    /// A body of a content type the route does not take.
    UnsupportedMediaType(String),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<starling_posts::PostError> for Refusal {
    fn from(e: starling_posts::PostError) -> Self {
        match e {
            starling_posts::PostError::Gone => Refusal::Gone(e.to_string()),
            other => Refusal::Api(other.into()),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api(e) => e.into_response(),
            Refusal::MethodNotAllowed(d) => problem_response(StatusCode::METHOD_NOT_ALLOWED, d),
            Refusal::Gone(d) => problem_response(StatusCode::GONE, d),
            Refusal::UnsupportedMediaType(d) => {
                problem_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, d)
            }
        }
    }
}

/// The router's fallback: no route matches the path.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFoundMsg(format!("no route matches {}", uri.path()))
}

/// The router's fallback for a route that exists without the request's method; axum adds the
/// `Allow` header to this answer.
pub async fn method_not_allowed(method: axum::http::Method) -> Refusal {
    Refusal::MethodNotAllowed(format!("{method} is not allowed on this route"))
}

/// Largest `text/plain` error body [`plain_errors_as_problems`] carries over as the detail.
const MAX_PLAIN_DETAIL: usize = 4 * 1024;

/// The last line of the problem+json contract: an error answered as `text/plain` (the rejection
/// of an axum extractor a handler takes directly, such as `WebSocketUpgrade`) or with no body
/// and no type (the request deadline's 503, from tower-http's `TimeoutLayer`) is turned into a
/// problem with the same status and headers, its text as the detail. Handlers should use the
/// extractors of [`crate::extract`], whose rejections are an [`ApiError`] already.
pub async fn plain_errors_as_problems(resp: Response) -> Response {
    let status = resp.status();
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().ok());
    let plain = match kind {
        Some(ct) => ct.is_some_and(|ct| ct.starts_with("text/plain")),
        None => axum::body::HttpBody::size_hint(resp.body()).exact() == Some(0),
    };
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let detail = match axum::body::to_bytes(body, MAX_PLAIN_DETAIL).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let detail = match (detail.is_empty(), status) {
        (false, _) => detail,
        // The only bodiless 503 of the router: the request deadline's.
        (true, StatusCode::SERVICE_UNAVAILABLE) => "the request took too long".to_string(),
        (true, _) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = problem_response(status, detail);
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::CONTENT_LENGTH);
    let ours = std::mem::replace(out.headers_mut(), headers);
    out.headers_mut().extend(ours);
    out
}

/// A problem+json answer.
pub(crate) fn problem_response(status: StatusCode, detail: String) -> Response {
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
    resp
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
        let mut resp = problem_response(status, detail);
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
