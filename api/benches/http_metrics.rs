//! Cost of the per-route HTTP metrics middleware (`starling_api::http_metrics::track`) on the
//! request path: the same small router (a route with a path parameter answering a short body)
//! driven in process with `oneshot`, with the layer and without it (the baseline), in
//! alternating rounds of the same run so both see the same machine.
//!
//! ```text
//! cargo bench -p starling-api --bench http_metrics -- [--requests 200000] [--rounds 6]
//! ```
//! Prints ns per request of each and the ratio (with / without) per round and as the median.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: fail loudly

use axum::Router;
use axum::routing::get;
use prometheus_client::registry::Registry;
use starling_api::http_metrics::{HttpMetrics, track};

mod common;
use common::{flag, run};

fn app(with_metrics: bool) -> Router {
    let r = Router::new().route("/v1/posts/{id}", get(|| async { "a post" }));
    if with_metrics {
        let mut reg = Registry::default();
        let m = HttpMetrics::register(&mut reg);
        r.layer(axum::middleware::from_fn_with_state(m, track))
    } else {
        r
    }
}

fn main() {
    let n = flag("--requests", 200_000);
    let rounds = flag("--rounds", 6);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (with, without) = (app(true), app(false));
        // Warm-up of both.
        run(&with, n / 10).await;
        run(&without, n / 10).await;
        let mut ratios = Vec::new();
        println!("round | without (ns/req) | with (ns/req) | ratio");
        for r in 0..rounds {
            // ABAB: alternate which goes first.
            let (a, b) = if r % 2 == 0 {
                let a = run(&without, n).await;
                (a, run(&with, n).await)
            } else {
                let b = run(&with, n).await;
                (run(&without, n).await, b)
            };
            ratios.push(b / a);
            println!("{r} | {a:.0} | {b:.0} | {:.3}", b / a);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "median ratio (with / without): {:.3}",
            ratios[ratios.len() / 2]
        );
    });
}
