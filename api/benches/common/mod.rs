//! What the in-process api benchmarks share: their numeric command-line arguments, and the
//! timing of `GET /v1/posts/{n}` requests sent through a router without a socket.
#![allow(dead_code, clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use std::time::Instant;
use tower::ServiceExt;

/// The value after `name` on the command line (`--requests 200000`), else `default`.
pub(crate) fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Mean nanoseconds of `n` `GET /v1/posts/{i % 1000}` through `app`, each answered 2xx.
pub(crate) async fn run(app: &Router, n: usize) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let req = axum::http::Request::get(format!("/v1/posts/{}", i % 1000))
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}
