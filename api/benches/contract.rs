//! What the API contract adds to every request, beside its baseline in the same run:
//! - `json_body`: `json::json_object` (the object check, then serde) against `serde_json` alone,
//!   on a post's body;
//! - `next_link`: a page's `Link` header (`paging::next_link` from the request's URI) against
//!   formatting its `next_cursor` alone.
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
        b.iter(|| starling_api::json::json_object::<NewPost>(black_box(body)).unwrap())
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

criterion_group!(benches, json_body, next_link);
criterion_main!(benches);
