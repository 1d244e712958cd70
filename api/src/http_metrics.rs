//! Per-route HTTP metrics, one middleware around every route (and the 404/405 fallbacks):
//!
//! - `starling_http_requests_total{route, method, status}`: answers, by route template
//!   (`/v1/posts/{id}`, never the concrete path, so the label set stays bounded), method and
//!   status class (`2xx` … `5xx`);
//! - `starling_http_request_duration_seconds{route, method}`: time to the response head, a
//!   histogram of 0.25 ms to ~8 s in doubling buckets (a WebSocket's is its upgrade);
//! - `starling_http_requests_in_flight`: requests being answered now.
//!
//! A request no route matched is `route="unmatched"`; a method outside the standard ones is
//! `method="other"`. Bounded: routes × 8 methods × 5 classes series, fixed at build time.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// The latency histogram's buckets: 0.25 ms doubling 16 times (to ~8.2 s).
#[derive(Clone, Copy, Debug)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
    }
}

/// The HTTP metrics of a node: cheap to clone (the families are shared).
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<AnswerLabels, Counter>,
    duration: Family<RouteLabels, Histogram, LatencyBuckets>,
    in_flight: Gauge,
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(LatencyBuckets),
            in_flight: Gauge::default(),
        };
        r.register(
            "starling_http_requests",
            "HTTP requests answered, by route template, method and status class",
            m.requests.clone(),
        );
        r.register(
            "starling_http_request_duration_seconds",
            "Time from a request to its response head, by route template and method",
            m.duration.clone(),
        );
        r.register(
            "starling_http_requests_in_flight",
            "HTTP requests being answered",
            m.in_flight.clone(),
        );
        m
    }
}

fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(s: axum::http::StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The middleware: counts and times every request by its matched route.
pub async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let start = Instant::now();
    m.in_flight.inc();
    // Decremented however the request ends, even if the client goes away mid-answer.
    let _in_flight = InFlight(&m.in_flight);
    let res = next.run(req).await;
    m.duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method,
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&AnswerLabels {
            route,
            method,
            status: status_class(res.status()),
        })
        .inc();
    res
}

/// Decrements the gauge when dropped.
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn scrape(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_method_and_status_class() {
        let mut reg = Registry::default();
        let m = HttpMetrics::register(&mut reg);
        let app = Router::new()
            .route("/v1/posts/{id}", get(|| async { "post" }))
            .route(
                "/boom",
                get(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
            )
            .layer(axum::middleware::from_fn_with_state(m.clone(), track));
        for uri in ["/v1/posts/1", "/v1/posts/2", "/boom", "/nowhere"] {
            let req = axum::http::Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let text = scrape(&reg).await;
        for line in [
            r#"starling_http_requests_total{route="/v1/posts/{id}",method="GET",status="2xx"} 2"#,
            r#"starling_http_requests_total{route="/boom",method="GET",status="5xx"} 1"#,
            r#"starling_http_request_duration_seconds_count{route="/v1/posts/{id}",method="GET"} 2"#,
            "starling_http_requests_in_flight 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("/v1/posts/1"),
            "a concrete path must never be a label"
        );
    }

    #[test]
    fn methods_and_statuses_fall_into_bounded_labels() {
        let odd = axum::http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&odd), "other");
        assert_eq!(status_class(axum::http::StatusCode::NOT_FOUND), "4xx");
        assert_eq!(
            status_class(axum::http::StatusCode::from_u16(599).unwrap()),
            "5xx"
        );
    }
}
