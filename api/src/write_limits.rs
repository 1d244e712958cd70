//! Per-user write rate limits: posts (reposts too), likes, follows, chat sends and notification
//! mark-reads, each a token bucket per user (governor),
//! `--{posts,likes,follows,chat-sends,marks}-per-minute` with bursts of a quarter of that. Over
//! it, a request gets 429 (problem+json) with
//! `Retry-After`, and a WebSocket send a `busy` error frame naming its `client_id`; either way
//! nothing is written. Refusals are counted in `starling_write_rate_limited_total{write}`.
//!
//! The limit runs as a route layer before the handler: it resolves the bearer token once and
//! hands the user to the handler's [`AuthUser`] extractor through the request's extensions, so a
//! limited route still reads the session once. A request without a valid token passes through
//! untouched (its handler answers 401). Buckets are per node: a user spread over the nodes of
//! several regions gets each node's quota (a bound against a runaway client, not an exact
//! cluster-wide quota). The defaults are high enough for the load generator and the fault suite.

use crate::AppState;
use crate::auth::{AuthUser, bearer_token};
use crate::config::values::PerMinute;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A kind of limited write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum WriteKind {
    /// `POST /v1/posts` and `PUT`/`DELETE /v1/posts/{id}/repost` (a repost is a post).
    Post,
    /// `PUT`/`DELETE /v1/posts/{id}/like`.
    Like,
    /// `PUT`/`DELETE /v1/following/{id}`.
    Follow,
    /// `POST /v1/conversations/{id}/messages` and a WebSocket `send`.
    ChatSend,
    /// `PUT /v1/notifications/read`.
    MarkRead,
}

const KINDS: [WriteKind; 5] = [
    WriteKind::Post,
    WriteKind::Like,
    WriteKind::Follow,
    WriteKind::ChatSend,
    WriteKind::MarkRead,
];

/// Writes per user and minute, by kind: a group of `starling serve`'s settings (flags,
/// `STARLING_<FLAG>` and `--config` keys, each declared once here; see [`crate::config`]). The
/// defaults, 6 000 a minute (100 a second, bursts of 1 500) of each, are far above a person and
/// above what the load generator's heaviest users send, still a bound on a runaway client.
#[derive(clap::Args, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct WriteQuotas {
    /// Posts and reposts (and undone reposts) one user may make per minute on this node (bursts
    /// of a quarter; default 6000).
    #[arg(
        long,
        env = "STARLING_POSTS_PER_MINUTE",
        default_value = "6000",
        hide_default_value = true
    )]
    pub posts_per_minute: PerMinute,
    /// Likes and unlikes per user and minute (default 6000).
    #[arg(
        long,
        env = "STARLING_LIKES_PER_MINUTE",
        default_value = "6000",
        hide_default_value = true
    )]
    pub likes_per_minute: PerMinute,
    /// Follows and unfollows per user and minute (default 6000).
    #[arg(
        long,
        env = "STARLING_FOLLOWS_PER_MINUTE",
        default_value = "6000",
        hide_default_value = true
    )]
    pub follows_per_minute: PerMinute,
    /// Chat sends (REST and WebSocket) per user and minute (default 6000).
    #[arg(
        long,
        env = "STARLING_CHAT_SENDS_PER_MINUTE",
        default_value = "6000",
        hide_default_value = true
    )]
    pub chat_sends_per_minute: PerMinute,
    /// Notification mark-reads per user and minute (default 6000).
    #[arg(
        long,
        env = "STARLING_MARKS_PER_MINUTE",
        default_value = "6000",
        hide_default_value = true
    )]
    pub marks_per_minute: PerMinute,
}

impl Default for WriteQuotas {
    fn default() -> Self {
        crate::config::defaults()
    }
}

impl WriteQuotas {
    fn of(&self, w: WriteKind) -> u32 {
        let quota = match w {
            WriteKind::Post => self.posts_per_minute,
            WriteKind::Like => self.likes_per_minute,
            WriteKind::Follow => self.follows_per_minute,
            WriteKind::ChatSend => self.chat_sends_per_minute,
            WriteKind::MarkRead => self.marks_per_minute,
        };
        // A per-minute limit fits a u32 (its type's bound).
        u32::try_from(quota.get()).unwrap_or(u32::MAX)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Labels {
    write: WriteKind,
}

/// The buckets of every kind. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WriteLimits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limiters: Vec<(WriteKind, DefaultKeyedRateLimiter<u64>)>,
    refused: Family<Labels, Counter>,
    calls: AtomicU64,
}

impl WriteLimits {
    /// Buckets for `quotas`; the refusal counter registered in `registry`.
    pub fn new(quotas: WriteQuotas, registry: &mut prometheus_client::registry::Registry) -> Self {
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "starling_write_rate_limited",
            "Writes refused by a per-user rate limit (429, or a busy frame), by kind",
            refused.clone(),
        );
        Self::build(quotas, refused)
    }

    /// The same metric with other quotas (fresh buckets).
    #[must_use]
    pub fn with_quotas(&self, quotas: WriteQuotas) -> Self {
        Self::build(quotas, self.inner.refused.clone())
    }

    fn build(quotas: WriteQuotas, refused: Family<Labels, Counter>) -> Self {
        let limiters = KINDS
            .iter()
            .map(|&w| {
                let per_minute = NonZeroU32::new(quotas.of(w)).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(quotas.of(w) / 4).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::per_minute(per_minute).allow_burst(burst);
                (w, RateLimiter::keyed(quota))
            })
            .collect();
        WriteLimits {
            inner: Arc::new(Inner {
                limiters,
                refused,
                calls: AtomicU64::new(0),
            }),
        }
    }

    /// Takes one `write` from `user`'s bucket; `Err(wait)` (and counted) when it is empty.
    pub fn check(&self, write: WriteKind, user: u64) -> Result<(), Duration> {
        let Some((_, limiter)) = self.inner.limiters.iter().find(|(w, _)| *w == write) else {
            return Ok(());
        };
        // Forget idle users now and then, so the tables stay small.
        if self.inner.calls.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            for (_, l) in &self.inner.limiters {
                l.retain_recent();
            }
        }
        limiter.check_key(&user).map_err(|not_until| {
            self.inner.refused.get_or_create(&Labels { write }).inc();
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }
}

/// The limited write a route is, if any.
pub fn write_of(method: &Method, route: &str) -> Option<WriteKind> {
    match (method.as_str(), route) {
        ("POST", "/v1/posts") | ("PUT" | "DELETE", "/v1/posts/{id}/repost") => {
            Some(WriteKind::Post)
        }
        ("PUT" | "DELETE", "/v1/posts/{id}/like") => Some(WriteKind::Like),
        ("PUT" | "DELETE", "/v1/following/{id}") => Some(WriteKind::Follow),
        ("POST", "/v1/conversations/{id}/messages") => Some(WriteKind::ChatSend),
        ("PUT", "/v1/notifications/read") => Some(WriteKind::MarkRead),
        _ => None,
    }
}

/// Route layer: 429 with `Retry-After` for a limited write over its user's quota (see the
/// module doc).
pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let write = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| write_of(req.method(), p.as_str()));
    let Some(write) = write else {
        return next.run(req).await;
    };
    let user = match bearer_token(req.headers()) {
        Some(t) => state.graph.authenticate(t).await.ok(),
        None => None,
    };
    let Some(user) = user else {
        return next.run(req).await;
    };
    if let Err(wait) = state.write_limits.check(write, user) {
        return crate::limits::too_many_requests(wait);
    }
    req.extensions_mut().insert(AuthUser(user));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_over_a_quota_waits_and_others_do_not() {
        let mut r = prometheus_client::registry::Registry::default();
        let quotas = WriteQuotas {
            posts_per_minute: "8".parse().unwrap(),
            ..WriteQuotas::default()
        };
        let l = WriteLimits::new(quotas, &mut r);
        // A burst of a quarter of the minute's quota, then a wait of about 60/8 s.
        for _ in 0..2 {
            assert!(l.check(WriteKind::Post, 1).is_ok());
        }
        let wait = l.check(WriteKind::Post, 1).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(8),
            "{wait:?}"
        );
        assert!(l.check(WriteKind::Post, 2).is_ok(), "another user's bucket");
        assert!(l.check(WriteKind::Like, 1).is_ok(), "another kind's bucket");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("starling_write_rate_limited_total{write=\"Post\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_limited_routes() {
        assert_eq!(write_of(&Method::POST, "/v1/posts"), Some(WriteKind::Post));
        assert_eq!(
            write_of(&Method::DELETE, "/v1/posts/{id}/like"),
            Some(WriteKind::Like)
        );
        assert_eq!(
            write_of(&Method::PUT, "/v1/posts/{id}/repost"),
            Some(WriteKind::Post)
        );
        assert_eq!(write_of(&Method::GET, "/v1/posts/{id}"), None);
        assert_eq!(write_of(&Method::PATCH, "/v1/posts/{id}"), None);
    }
}
