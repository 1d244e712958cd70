//! The read-time merge of pulled (large) accounts, beside a baseline measured in the same run:
//! warm `Feed::page` (20 hydrated posts) for readers who follow 100 accounts of which none, 10
//! or 50 are above the celebrity threshold. Fanned-out accounts cost a read nothing (their posts
//! are in the timeline already); pulled ones are merged at read time from the in-process lists
//! of their recent posts. The claim under test: the ratio to the baseline stays near 1 however
//! many large accounts a reader follows.
//!
//! Writes `bench/feed-pulled.md`. Run with `infra/bench.sh feed`.
#![allow(clippy::unwrap_used)]

#[path = "../../store/benches/common/report.rs"]
mod report;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use starling_feed::FeedConfig;
use starling_feed::test_support::{users, world};
use std::fmt::Write as _;
use std::time::Instant;

/// The feed under test.
fn config() -> FeedConfig {
    FeedConfig {
        celebrity_followers: THRESHOLD,
        ..FeedConfig::default()
    }
}

const READERS: usize = 1_000;
const FOLLOWS: usize = 100;
const STARS: usize = 60;
const AUTHORS: usize = 1_000;
/// Above every ordinary author's followers (about 100 each), below every star's (1 000).
const THRESHOLD: i64 = 500;
const CALLS: usize = 100_000;

/// Warm page latencies (ns) of readers following `pulled` stars and `FOLLOWS - pulled`
/// ordinary authors, every account with 3 posts.
async fn reads(pulled: usize) -> Histogram<u64> {
    let w = world(config());
    let readers = users(&w, READERS, "reader").await;
    let stars = users(&w, STARS, "star").await;
    let authors = users(&w, AUTHORS, "author").await;
    let mut rng = StdRng::seed_from_u64(11);
    // Every star is followed by every reader, so each is above the threshold whichever of
    // them a reader's page pulls.
    for r in &readers {
        for s in &stars {
            w.graph.follow(*r, *s).await.unwrap();
        }
    }
    // Readers unfollow the stars beyond their `pulled`, and follow ordinary authors instead.
    for r in &readers {
        let mut own = stars.clone();
        own.shuffle(&mut rng);
        for s in &own[pulled..] {
            w.graph.unfollow(*r, *s).await.unwrap();
        }
        let mut picks = authors.clone();
        picks.shuffle(&mut rng);
        for a in &picks[..FOLLOWS - pulled] {
            w.graph.follow(*r, *a).await.unwrap();
        }
    }
    // Keep every star above the threshold: the unfollowed stars get other followers.
    let filler = users(&w, THRESHOLD as usize + 1, "filler").await;
    for f in &filler {
        for s in &stars {
            w.graph.follow(*f, *s).await.unwrap();
        }
    }
    w.graph.catch_up_counts().await.unwrap();
    for a in stars.iter().chain(&authors) {
        for i in 0..3 {
            w.posts
                .create(*a, "us", &format!("post {i}"), &[], None)
                .await
                .unwrap();
        }
    }
    w.feed.catch_up().await.unwrap();
    for r in &readers {
        w.feed.page(*r, None, 20).await.unwrap();
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for _ in 0..CALLS {
        let r = readers[rng.random_range(0..readers.len())];
        let t = Instant::now();
        let page = w.feed.page(r, None, 20).await.unwrap();
        h.saturating_record(t.elapsed().as_nanos() as u64);
        assert_eq!(page.posts.len(), 20);
    }
    h
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let commit = report::commit();
    let load = report::load();
    let mut md = String::new();
    writeln!(
        md,
        "# Feed reads with pulled accounts (feed/benches/pulled.rs)\n"
    )
    .unwrap();
    writeln!(
        md,
        "Commit `{commit}`, release build, memory store, one thread, on a {}-core machine \
         (load average before the run: {}). Command: `infra/bench.sh feed`.\n",
        report::cores(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
    .unwrap();
    writeln!(
        md,
        "{CALLS} warm `Feed::page` calls (20 hydrated posts) over {READERS} readers, each \
         following {FOLLOWS} accounts with 3 posts each, of which the given number are above \
         the celebrity threshold and merged at read time (the rest are fanned out). Baseline: \
         none pulled, in the same run.\n"
    )
    .unwrap();
    writeln!(
        md,
        "| pulled of {FOLLOWS} | p50 | p99 | p99.9 | p50 / baseline | p99 / baseline |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|---|").unwrap();
    let mut base = (0.0, 0.0);
    for pulled in [0, 10, 50] {
        let h = rt.block_on(reads(pulled));
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        eprintln!(
            "pulled {pulled}: p50 {:.1} µs p99 {:.1} µs",
            us(0.5),
            us(0.99)
        );
        if pulled == 0 {
            base = (us(0.5), us(0.99));
        }
        writeln!(
            md,
            "| {pulled} | {:.1} µs | {:.1} µs | {:.1} µs | {:.2} | {:.2} |",
            us(0.5),
            us(0.99),
            us(0.999),
            us(0.5) / base.0,
            us(0.99) / base.1
        )
        .unwrap();
    }
    writeln!(
        md,
        "\nA pulled account costs a warm read one atomic load (the list its last read used, kept \
         in the reader's timeline slot, is still current) and its share of one k-way merge that \
         stops at the page's 20th post; before the in-process lists, each was a range scan of \
         the author's post list in the store."
    )
    .unwrap();
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/feed-pulled.md"),
        md,
    )
    .unwrap();
}
