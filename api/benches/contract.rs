//! What the API contract adds to every request, beside its baseline in the same run:
//! - `json_body`: `extract::json_object` (the object check, then serde) against `serde_json` alone,
//!   on a post's body;
//! - `next_link`: a page's `Link` header (`paging::next_link` from the request's URI) against
//!   formatting its `next_cursor` alone;
//! - `write_limit`: what the per-user write limit adds to a limited write (`write_limits::write_of`
//!   on the matched route, then the user's bucket, over 10 000 users in turn) against the session
//!   read every authenticated request already pays (`Graph::authenticate` on a memory store),
//!   which the layer does in place of the handler's extractor.
//!
//! ```text
//! cargo bench -p starling-api --bench contract
//! ```
//! `bench/contract.md` holds a run and how to read it.
#![allow(clippy::unwrap_used)] // a benchmark: fail loudly

use axum::http::Uri;
use criterion::{Criterion, criterion_group, criterion_main};
use serde::Deserialize;
use std::hint::black_box;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read by serde only
struct NewPost {
    text: String,
    #[serde(default)]
    media: Vec<String>,
}

fn json_body(c: &mut Criterion) {
    let body = br#"{"text":"hello, world: a post of an ordinary length, with a link https://example.com/a/b and an emoji \ud83d\ude00","media":["7203311504062464"]}"#;
    let mut g = c.benchmark_group("json_body");
    g.bench_function("baseline serde_json::from_slice", |b| {
        b.iter(|| serde_json::from_slice::<NewPost>(black_box(body)).unwrap())
    });
    g.bench_function("json_object", |b| {
        b.iter(|| starling_api::extract::json_object::<NewPost>(black_box(body)).unwrap())
    });
    g.finish();
}

fn next_link(c: &mut Criterion) {
    let uri: Uri = "/v1/feed?limit=20&cursor=387870244127629312&since=387870034529869824"
        .parse()
        .unwrap();
    let next = 387_870_244_127_620_000_u64;
    let mut g = c.benchmark_group("next_link");
    g.bench_function("baseline next_cursor only", |b| {
        b.iter(|| black_box(next).to_string())
    });
    g.bench_function("next_cursor and Link", |b| {
        b.iter(|| {
            let cursor = black_box(next).to_string();
            let link = starling_api::paging::next_link(black_box(&uri), "cursor", &cursor);
            (cursor, link)
        })
    });
    g.finish();
}

fn write_limit(c: &mut Criterion) {
    use starling_store::{HlcClock, IdGenerator, Limits, LocalCas, NodeId, RegionId, open_memory};
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let node = NodeId::new(RegionId::from_name("us"), 1);
    let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
    let mut cfg = starling_graph::GraphConfig::new("us", "us");
    cfg.argon2_memory_kib = 64;
    cfg.argon2_passes = 1;
    let graph = starling_graph::Graph::new(
        store.clone(),
        Arc::new(LocalCas(store)),
        Arc::new(IdGenerator::new(node)),
        cfg,
    );
    let (_, session) = rt
        .block_on(graph.sign_up("bench", "bench password", None, None))
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let limits = starling_api::write_limits::WriteLimits::new(
        starling_api::write_limits::WriteQuotas::default(),
        &mut registry,
    );
    let post = axum::http::Method::POST;
    let mut g = c.benchmark_group("write_limit");
    g.bench_function("baseline session read (authenticate)", |b| {
        b.iter(|| {
            rt.block_on(graph.authenticate(black_box(&session.token)))
                .unwrap()
        })
    });
    let mut user = 0u64;
    g.bench_function("route match and bucket check", |b| {
        b.iter(|| {
            user = (user + 1) % 10_000;
            let w = starling_api::write_limits::write_of(black_box(&post), "/v1/posts").unwrap();
            limits.check(w, black_box(user)).is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, json_body, next_link, write_limit);
criterion_main!(benches);
