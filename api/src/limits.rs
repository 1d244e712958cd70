//! Request limits: the default of the deadline on every request (the router applies it with
//! tower-http's `TimeoutLayer`), and a per-client-address rate limit on the
//! endpoints that hash passwords (sign-up, login) so they cannot be used to burn CPU or guess
//! passwords. Body size limits are set on the router (see `extract::MAX_JSON_BODY`).

use crate::problem::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a request may take before it is answered 503 (default of `--request-timeout`).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Answers 413 at once to a request whose declared `Content-Length` exceeds the largest body
/// any route accepts (media), instead of waiting for a body that may never come. Routes with a
/// smaller limit check their own (see `extract::JsonBody`).
pub async fn declared_size(req: Request, next: Next) -> Response {
    match crate::extract::declared_length(&req) {
        Some(n) if n > crate::posts::MAX_MEDIA_BYTES as u64 => ApiError::TooLarge(format!(
            "a request body is at most {} bytes",
            crate::posts::MAX_MEDIA_BYTES
        ))
        .into_response(),
        _ => next.run(req).await,
    }
}

/// A per-address rate limit (token bucket).
#[derive(Debug, Clone)]
pub struct AuthRateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    calls: Arc<AtomicU64>,
}

impl AuthRateLimit {
    /// `per_minute` requests per address and minute, in bursts of up to `burst`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        AuthRateLimit {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            calls: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Middleware: 429 with `Retry-After` when the caller's address is over its quota.
pub async fn rate_limit(State(rl): State<AuthRateLimit>, req: Request, next: Next) -> Response {
    // Without connection info (router tests) every caller shares one bucket.
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    // Forget idle addresses now and then, so the table stays small.
    if rl.calls.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
        rl.limiter.retain_recent();
    }
    match rl.limiter.check_key(&ip) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            too_many_requests(not_until.wait_time_from(DefaultClock::default().now()))
        }
    }
}

/// 429 (problem+json) with `Retry-After`: `wait` rounded up to whole seconds, at least 1.
pub fn too_many_requests(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp = ApiError::TooManyRequests.into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
