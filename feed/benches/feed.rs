//! Feed benchmarks, each beside a baseline measured in the same run (ratios, not absolute
//! times: the machines are shared):
//! - fan-out: time from a post to its presence in every follower's cached timeline, for 1 k,
//!   10 k and 100 k followers, with the follower list read from the store (the author's first
//!   post) and from the worker's cache (the next ones), and timeline inserts per second;
//!   baseline: the same inserts into a bare `HashMap<user, VecDeque>`, the floor any in-memory
//!   timeline pays;
//! - read: `Feed::page` (20 hydrated posts, warm) p50/p99 with 10 k users seeded against 1 M
//!   users seeded (the O(1) claim: the ratio should be ~1).
//!
//! Writes `bench/feed.md`. Run with `infra/bench.sh feed`. `FEED_BENCH_USERS` overrides the
//! large population (default 1 000 000).
#![allow(clippy::unwrap_used)]

#[path = "../../store/benches/common/report.rs"]
mod report;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use starling_feed::FeedConfig;
use starling_feed::test_support::{users, world};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::Instant;

/// The feed under test.
fn config() -> FeedConfig {
    FeedConfig {
        l1_bytes: 8 << 30,
        celebrity_followers: i64::MAX,
        ..FeedConfig::default()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Post → in every follower's timeline, in ms: the first post (its follower list read from the
/// store), the median of the next 5 (the list cached), and the bare baseline.
async fn fan_out(n: usize) -> (f64, f64, f64) {
    let w = world(config());
    let author = users(&w, 1, "author").await[0];
    let fans = users(&w, n, "fan").await;
    for f in &fans {
        w.graph.follow(*f, author).await.unwrap();
    }
    w.feed.catch_up().await.unwrap();
    for f in &fans {
        w.feed.page(*f, None, 1).await.unwrap();
    }
    let mut times = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        w.posts
            .create(author, "us", &format!("post {i}"), &[], None)
            .await
            .unwrap();
        w.feed.catch_up().await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Baseline: the same n inserts into bare in-memory timelines.
    let mut bare: HashMap<u64, VecDeque<(u64, u64)>> =
        fans.iter().map(|f| (*f, VecDeque::new())).collect();
    let mut base = Vec::new();
    for post in 0..5u64 {
        let t = Instant::now();
        for f in &fans {
            if let Some(tl) = bare.get_mut(f) {
                tl.push_back((post, author));
                if tl.len() > 800 {
                    tl.pop_front();
                }
            }
        }
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (times[0], median(&mut times[1..]), median(&mut base))
}

/// Warm `page(limit 20)` latencies with `n` users, each following 20 others with 2 posts each.
async fn reads(n: usize) -> Histogram<u64> {
    let w = world(config());
    let all = users(&w, n, "user").await;
    let mut rng = StdRng::seed_from_u64(7);
    for u in &all {
        w.posts.create(*u, "us", "hello", &[], None).await.unwrap();
        w.posts.create(*u, "us", "again", &[], None).await.unwrap();
    }
    let readers: Vec<u64> = all.iter().take(10_000).copied().collect();
    for r in &readers {
        for _ in 0..20 {
            let f = all[rng.random_range(0..all.len())];
            if f != *r {
                w.graph.follow(*r, f).await.unwrap();
            }
        }
    }
    w.feed.catch_up().await.unwrap();
    for r in &readers {
        w.feed.page(*r, None, 20).await.unwrap();
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for _ in 0..200_000 {
        let r = readers[rng.random_range(0..readers.len())];
        let t = Instant::now();
        let page = w.feed.page(r, None, 20).await.unwrap();
        h.saturating_record(t.elapsed().as_nanos() as u64);
        assert!(!page.posts.is_empty());
    }
    h
}

/// Inserts per second into `n` existing L1 timelines (the insert step alone, no follower
/// listing), and the same into bare `VecDeque`s.
fn inserts(n: u64) -> (f64, f64) {
    use starling_feed::TimelineStore;
    use starling_feed::l1::LocalTimelines;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let l1 = LocalTimelines::new(8 << 30, 800);
    let users: Vec<u64> = (1..=n).collect();
    for u in &users {
        l1.slot_or_insert(*u, Default::default);
    }
    let t = Instant::now();
    let mut done = 0u64;
    for post in 1..=20u64 {
        done += rt.block_on(l1.insert(&users, post, 7)).unwrap() as u64;
    }
    let ours = done as f64 / t.elapsed().as_secs_f64();
    let mut bare: HashMap<u64, VecDeque<(u64, u64)>> =
        users.iter().map(|u| (*u, VecDeque::new())).collect();
    let t = Instant::now();
    for post in 1..=20u64 {
        for u in &users {
            if let Some(tl) = bare.get_mut(u) {
                tl.push_back((post, 7));
            }
        }
    }
    let base = (20 * n) as f64 / t.elapsed().as_secs_f64();
    (ours, base)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let large: usize = std::env::var("FEED_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut md = String::new();
    let commit = report::commit();
    writeln!(md, "# Feed benchmarks (feed/benches/feed.rs)\n").unwrap();
    writeln!(
        md,
        "Commit `{commit}`, release build, memory store, one thread, on a {}-core machine. \
         Command: `infra/bench.sh feed`.\n",
        report::cores()
    )
    .unwrap();
    writeln!(md, "## Fan-out: post → every follower's timeline\n").unwrap();
    writeln!(
        md,
        "Time from `Posts::create` until the worker has inserted the post into every \
         follower's cached (L1) timeline: for the author's first post, whose follower list \
         the worker reads from the store, and the median of the next 5, whose list it has \
         cached. The baseline inserts the same entries into a bare `HashMap<user, VecDeque>` \
         in the same run.\n"
    )
    .unwrap();
    writeln!(
        md,
        "| followers | list read from the store | list cached | inserts/s (cached) | bare \
         baseline | ratio to baseline: read / cached |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|---|").unwrap();
    for n in [1_000, 10_000, 100_000] {
        let (cold, ms, base) = rt.block_on(fan_out(n));
        eprintln!("fan-out {n}: {cold:.2} ms read, {ms:.2} ms cached (bare {base:.3} ms)");
        writeln!(
            md,
            "| {n} | {cold:.2} ms | {ms:.2} ms | {:.0} | {base:.3} ms | {:.1}× / {:.1}× |",
            n as f64 / (ms / 1e3),
            cold / base,
            ms / base
        )
        .unwrap();
    }
    let (ours, base) = inserts(100_000);
    eprintln!("inserts: {ours:.0}/s (bare {base:.0}/s)");
    writeln!(
        md,
        "\nThe insert step alone (20 posts into 100 000 existing L1 timelines, no follower \
         listing): **{ours:.0} inserts/s**, bare `HashMap<user, VecDeque>` {base:.0}/s (ratio \
         {:.2}). What the first column pays beyond the second is reading the follower list \
         from the store.",
        ours / base
    )
    .unwrap();
    writeln!(
        md,
        "\n## Read: 20 hydrated posts, warm, 10 k vs {large} users\n"
    )
    .unwrap();
    writeln!(
        md,
        "200 000 `Feed::page` calls over 10 000 active readers (each following 20 random users \
         with 2 posts each); the store holds all users, their posts and the edges. The claim \
         under test: a read costs the same whatever the population.\n"
    )
    .unwrap();
    writeln!(md, "| users | p50 | p99 | p99.9 |").unwrap();
    writeln!(md, "|---|---|---|---|").unwrap();
    let mut p99s = Vec::new();
    for n in [10_000, large] {
        let h = rt.block_on(reads(n));
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        eprintln!("reads {n}: p50 {:.1} µs p99 {:.1} µs", us(0.5), us(0.99));
        writeln!(
            md,
            "| {n} | {:.1} µs | {:.1} µs | {:.1} µs |",
            us(0.5),
            us(0.99),
            us(0.999)
        )
        .unwrap();
        p99s.push(us(0.99));
    }
    writeln!(
        md,
        "\np99 ratio, {large} users ÷ 10 000 users: **{:.2}**.",
        p99s[1] / p99s[0]
    )
    .unwrap();
    writeln!(
        md,
        "\nWhat differs between the two runs is the working set, not the population: with 10 k \
         users the readers' pages draw on 20 k posts, all in the 200 k-entry post cache; with \
         1 M users they draw on up to 400 k distinct posts, so some hydrations go to the store."
    )
    .unwrap();
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/feed.md"), md).unwrap();
}
