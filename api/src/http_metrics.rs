//! Per-route HTTP metrics, one middleware around every route (and the 404/405 fallbacks):
//!
//! - `starling_http_requests_total{route, method, status}`: answers, by route template
//!   (`/v1/posts/{id}`, never the concrete path, so the label set stays bounded), method and
//!   status class (`2xx` … `5xx`);
//! - `starling_http_request_duration_seconds{route, method}`: time to the response head, a
//!   histogram of 0.25 ms to ~8 s in doubling buckets (a WebSocket's is its upgrade);
//! - `starling_http_requests_in_flight`: requests being answered now.
//!
//! The same middleware opens the request's trace span when traces are exported
//! ([`crate::telemetry::request_span`]).
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
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
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

/// The method labels, indexed as [`method_index`] answers.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];
/// The status classes, indexed as [`class_index`] answers.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";
/// Cached routes beyond which the cache starts over (only reached if routers are rebuilt over
/// the same metrics: a router's route templates live as long as it does).
const MAX_CACHED_ROUTES: usize = 4096;

/// One (route, method)'s metric handles, each resolved from its family the first time it is
/// needed (so a series appears exactly when it did without the cache), then shared: a request
/// builds no label and takes no family lock.
#[derive(Debug, Default)]
struct MethodHandles {
    duration: OnceLock<Histogram>,
    requests: [OnceLock<Counter>; 5],
}

/// A route template's handles, by method.
#[derive(Debug)]
struct RouteHandles {
    route: Box<str>,
    methods: [MethodHandles; 8],
}

impl RouteHandles {
    fn new(route: &str) -> Self {
        RouteHandles {
            route: route.into(),
            methods: Default::default(),
        }
    }
}

/// Hashes the (address, length) key of a route template: two words, no string.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Route handles keyed by where the route template's text lives: axum's `MatchedPath` of a
/// route is one shared `Arc<str>`, the same address for every request of that route. A hit is
/// confirmed by comparing the text, so a reused address can never pick another route's labels.
type RouteCache = HashMap<(usize, usize), Arc<RouteHandles>, BuildHasherDefault<AddrHasher>>;

/// The HTTP metrics of a node: cheap to clone (one shared allocation, so the per-request clone
/// of the middleware's state is one reference count).
#[derive(Clone, Debug)]
pub struct HttpMetrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    requests: Family<AnswerLabels, Counter>,
    duration: Family<RouteLabels, Histogram, LatencyBuckets>,
    in_flight: Gauge,
    routes: RwLock<RouteCache>,
    unmatched: Arc<RouteHandles>,
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let m = Inner {
            requests: Family::default(),
            duration: Family::new_with_constructor(LatencyBuckets),
            in_flight: Gauge::default(),
            routes: RwLock::default(),
            unmatched: Arc::new(RouteHandles::new(UNMATCHED)),
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
        HttpMetrics(Arc::new(m))
    }

    /// The handles of a matched route template (built the first time it is seen).
    fn route(&self, route: &str) -> Arc<RouteHandles> {
        let key = (route.as_ptr() as usize, route.len());
        if let Some(h) = self
            .0
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|h| *h.route == *route)
        {
            return Arc::clone(h);
        }
        let mut routes = self
            .0
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = routes.get(&key).filter(|h| *h.route == *route) {
            return Arc::clone(h);
        }
        if routes.len() >= MAX_CACHED_ROUTES {
            routes.clear();
        }
        let h = Arc::new(RouteHandles::new(route));
        routes.insert(key, Arc::clone(&h));
        h
    }

    /// Records one answered request.
    fn record(&self, route: &RouteHandles, method: usize, class: usize, seconds: f64) {
        let (Some(handles), Some(method_label), Some(class_label)) = (
            route.methods.get(method),
            METHODS.get(method),
            CLASSES.get(class),
        ) else {
            return;
        };
        handles
            .duration
            .get_or_init(|| {
                self.0.duration.get_or_create_owned(&RouteLabels {
                    route: route.route.to_string(),
                    method: method_label,
                })
            })
            .observe(seconds);
        if let Some(counter) = handles.requests.get(class) {
            counter
                .get_or_init(|| {
                    self.0.requests.get_or_create_owned(&AnswerLabels {
                        route: route.route.to_string(),
                        method: method_label,
                        status: class_label,
                    })
                })
                .inc();
        }
    }
}

fn method_index(m: &axum::http::Method) -> usize {
    use axum::http::Method;
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

#[cfg(test)]
fn method_label(m: &axum::http::Method) -> &'static str {
    METHODS[method_index(m)]
}

fn class_index(s: axum::http::StatusCode) -> usize {
    match s.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

#[cfg(test)]
fn status_class(s: axum::http::StatusCode) -> &'static str {
    CLASSES[class_index(s)]
}

/// The middleware: counts and times every request by its matched route.
pub async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = match req.extensions().get::<MatchedPath>() {
        Some(p) => m.route(p.as_str()),
        None => Arc::clone(&m.0.unmatched),
    };
    let method = method_index(req.method());
    // The request's trace span (disabled unless traces are exported: crate::telemetry).
    let span = crate::telemetry::request_span(req.method(), &route.route, req.headers());
    let start = Instant::now();
    m.0.in_flight.inc();
    // Decremented however the request ends, even if the client goes away mid-answer.
    let _in_flight = InFlight(&m.0.in_flight);
    let res = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    crate::telemetry::finish_request_span(&span, res.status());
    m.record(
        &route,
        method,
        class_index(res.status()),
        start.elapsed().as_secs_f64(),
    );
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

    #[tokio::test]
    async fn cached_handles_keep_labels_per_route_method_and_class_across_routers() {
        let mut reg = Registry::default();
        let m = HttpMetrics::register(&mut reg);
        let layer = || axum::middleware::from_fn_with_state(m.clone(), track);
        // Two routers over the same metrics: the same template at two addresses must still be
        // one series, and different templates never share handles.
        let a = Router::new()
            .route(
                "/v1/posts/{id}",
                get(|| async { "a" }).post(|| async { "p" }),
            )
            .route(
                "/v1/users/{id}",
                get(|| async { axum::http::StatusCode::NOT_FOUND }),
            )
            .layer(layer());
        let b = Router::new()
            .route("/v1/posts/{id}", get(|| async { "b" }))
            .layer(layer());
        let calls = [
            (&a, "GET", "/v1/posts/1"),
            (&a, "GET", "/v1/posts/2"),
            (&a, "POST", "/v1/posts/3"),
            (&a, "GET", "/v1/users/4"),
            (&b, "GET", "/v1/posts/5"),
            (&b, "PROPFIND", "/v1/posts/6"),
            (&a, "GET", "/nowhere"),
            (&b, "GET", "/nowhere"),
        ];
        for (app, method, uri) in calls {
            let req = axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let text = scrape(&reg).await;
        for line in [
            r#"starling_http_requests_total{route="/v1/posts/{id}",method="GET",status="2xx"} 3"#,
            r#"starling_http_requests_total{route="/v1/posts/{id}",method="POST",status="2xx"} 1"#,
            r#"starling_http_requests_total{route="/v1/posts/{id}",method="other",status="4xx"} 1"#,
            r#"starling_http_requests_total{route="/v1/users/{id}",method="GET",status="4xx"} 1"#,
            r#"starling_http_requests_total{route="unmatched",method="GET",status="4xx"} 2"#,
            r#"starling_http_request_duration_seconds_count{route="/v1/posts/{id}",method="GET"} 3"#,
            r#"starling_http_request_duration_seconds_count{route="unmatched",method="GET"} 2"#,
            "starling_http_requests_in_flight 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A series appears only once it has been seen, as before the cache.
        assert!(!text.contains(r#"method="GET",status="5xx""#), "{text}");
        assert_eq!(
            text.matches("starling_http_requests_total{").count(),
            5,
            "{text}"
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
