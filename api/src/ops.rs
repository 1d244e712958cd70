//! Operations endpoints: liveness, readiness, metrics.

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use starling_store::Key;

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::metrics))
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "`ok`: the process serves HTTP", body = String, content_type = "text/plain", example = "ok")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The store answers a read. A configured Redis that does not answer is reported but does not
/// make the node unready: feed reads fall back to the in-process cache and rebuilds (and every
/// node of the region shares the Redis, so failing them all would be an outage).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "`ready`, or `ready (degraded: …)` when the region's Redis does not answer (feeds are served from the local cache)", body = String, content_type = "text/plain", example = "ready"),
        (status = 503, description = "`store unavailable`: the store does not answer a read", body = String, content_type = "text/plain", example = "store unavailable")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.get(&Key::from("ops\0readyz-probe")).await {
        Ok(_) if state.feed.cache_tier() == starling_feed::CacheTier::RedisDown => (
            StatusCode::OK,
            "ready (degraded: redis unavailable, feed served from the local cache)",
        ),
        Ok(_) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe: store read failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use starling_store::{HlcClock, Limits, NodeId, RegionId, open_memory};
    use std::sync::Arc;
    use tower::ServiceExt;

    fn app() -> axum::Router {
        let store = open_memory(
            NodeId::new(RegionId::from_name("t"), 1),
            Arc::new(HlcClock::new()),
            Limits::default(),
        );
        router(crate::testing::state(store))
    }

    async fn get(path: &str) -> (StatusCode, String) {
        let resp = app()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_and_readiness() {
        assert_eq!(get("/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(get("/readyz").await, (StatusCode::OK, "ready".into()));
        assert_eq!(get("/nope").await.0, StatusCode::NOT_FOUND);
        let (status, body) = get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("starling_store_change_seq"), "{body}");
        assert!(body.contains("starling_feed_redis_up -1"), "{body}");
    }
}
