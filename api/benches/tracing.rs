//! Cost of OpenTelemetry traces on the request path: the same small router as the
//! `http_metrics` bench, behind the metrics middleware that opens each request's span
//! ([`starling_api::telemetry::request_span`]), driven in process with `oneshot`, with traces
//! off (the log layer as `starling serve` sets it up, which filters the spans' target out: the
//! baseline) and on (the same plus the OTLP layer, the gate and the SDK's batch processor,
//! exporting with the real OTLP/HTTP exporter to a local HTTP sink that answers 200).
//!
//! Each mode runs in a child process of its own, as a node has one subscriber for its life (two
//! subscribers in one process would make every call site ask both, which `serve` never does).
//! Rounds alternate (ABAB) in the same run so both see the same machine.
//!
//! ```text
//! cargo bench -p starling-api --bench tracing -- [--requests 200000] [--rounds 6]
//! ```
//! Prints ns per request of each and the ratio (on / off) per round and as the median, and the
//! spans exported and dropped in the last round with traces on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: fail loudly

use axum::Router;
use axum::routing::get;
use prometheus_client::registry::Registry;
use starling_api::http_metrics::{HttpMetrics, track};
use starling_api::telemetry::{TARGET, Tracing};
use std::io::{BufRead, BufReader, Read, Write};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

mod common;
use common::{flag, run};

fn app(reg: &mut Registry) -> Router {
    let m = HttpMetrics::register(reg);
    Router::new()
        .route("/v1/posts/{id}", get(|| async { "a post" }))
        .layer(axum::middleware::from_fn_with_state(m, track))
}

/// A local OTLP/HTTP endpoint that reads each request and answers 200 with no body.
fn sink() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if w.write_all(ok).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// One child: `on` or `off`, `n` requests after a warm-up; prints ns per request.
fn child(on: bool, n: usize) {
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(
            tracing_subscriber::EnvFilter::new("info")
                .add_directive(format!("{TARGET}=off").parse().unwrap()),
        );
    let tracing =
        on.then(|| Tracing::otlp(&format!("http://127.0.0.1:{}", sink()), "bench", "b0").unwrap());
    let traces = tracing.as_ref().map(|t| {
        t.layer().with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO),
        )
    });
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(logs).with(traces))
        .unwrap();
    let mut reg = Registry::default();
    let app = app(&mut reg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ns = rt.block_on(async {
        run(&app, n / 10).await;
        run(&app, n).await
    });
    drop(rt);
    let mut metrics = String::new();
    let mut r2 = Registry::default();
    r2.register_collector(Box::new(starling_api::telemetry::process_collector()));
    prometheus_client::encoding::text::encode(&mut metrics, &r2).unwrap();
    if let Some(t) = tracing {
        t.shutdown();
    }
    let count = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{ns:.1} {} {}",
        count("starling_otlp_spans_exported_total "),
        count("starling_otlp_spans_dropped_total ")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = flag("--requests", 200_000);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args.get(i + 1).map(String::as_str) == Some("on"), n);
        return;
    }
    let rounds = flag("--rounds", 6);
    let exe = std::env::current_exe().unwrap();
    let measure = |mode: &str| -> (f64, String) {
        let out = std::process::Command::new(&exe)
            .args(["--child", mode, "--requests", &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.lines().last().unwrap().to_string();
        let ns = line.split_whitespace().next().unwrap().parse().unwrap();
        (ns, line)
    };
    let mut ratios = Vec::new();
    let mut last = String::new();
    println!("round | off (ns/req) | on (ns/req) | ratio");
    for r in 0..rounds {
        let (off, on) = if r % 2 == 0 {
            let off = measure("off").0;
            (off, measure("on"))
        } else {
            let on = measure("on");
            (measure("off").0, on)
        };
        ratios.push(on.0 / off);
        last = on.1;
        println!("{r} | {off:.0} | {:.0} | {:.3}", on.0, on.0 / off);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio (on / off): {:.3}", ratios[ratios.len() / 2]);
    let mut parts = last.split_whitespace().skip(1);
    println!(
        "last round with traces on: {} spans exported, {} dropped (queue {})",
        parts.next().unwrap_or("-"),
        parts.next().unwrap_or("-"),
        starling_api::telemetry::QUEUE
    );
}
