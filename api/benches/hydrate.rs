//! Cost of hydrated feed items (`starling_api::hydrate`): one node's state in process (memory
//! store), a reader following 100 authors whose posts (a fifth of them reposts of others' posts,
//! some quotes, likes on most) fill a warm timeline; the first page of 20 is read and serialized
//! hydrated (author summaries, counters, viewer state, reposted posts) and bare (each post's own
//! fields: the feed before hydration), in alternating rounds of the same run so both see the
//! same machine.
//!
//! The store is the server's embedded one (fjall in a temporary directory, its reads on tokio's
//! blocking pool as in `starling serve`: each batch of reads is a trip off the runtime), or
//! with `--memory 1` the memory engine (reads inline: what the trips cost does not show).
//!
//! ```text
//! cargo bench -p starling-api --bench hydrate -- [--pages 20000] [--rounds 6] [--memory 0]
//! ```
//! Hydrated three ways: serde over `PostView`s (the lists' path), spliced (the feed's path:
//! pre-serialized posts, `starling_api::fragments`, the live parts written by hand) and spliced
//! with the quoted post and `reposted_by` through serde (the feed's path before); the pages must
//! be the same bytes; and spliced with every author summary looked up before the fragments are
//! checked against them (the feed's path before a fragment was taken first: one lookup for a post
//! and its author). Prints µs per page of each and the ratios (hydrated / bare, spliced / spliced
//! through serde, spliced / spliced after the authors) per round and as the median.
//! `--only 0|1|2|3|4` (bare, serde, spliced, spliced through serde, spliced after the authors)
//! reads only that page, with `--threads T` on T threads at once (each its own current-thread
//! runtime over the one node's state: the caches' and the fragment table's cross-core costs), `--pages × --rounds` times: a run to profile. Times are
//! the thread's CPU time where the kernel tells it (`/proc/thread-self/schedstat`), so a round
//! waiting for a core on a loaded machine does not count, and the kinds interleave in chunks of
//! 250 pages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: fail loudly

use starling_api::hydrate::PageJson;
use starling_api::{AppState, NodeParts};
use starling_store::{
    EmbeddedOptions, HlcClock, Limits, NodeId, RegionId, open_embedded, open_memory,
};
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::flag;

async fn world(dir: Option<&std::path::Path>) -> (AppState, u64) {
    let node = NodeId::new(RegionId::from_name("t"), 1);
    let clock = Arc::new(HlcClock::new());
    let store = match dir {
        Some(d) => open_embedded(node, clock, &EmbeddedOptions::new(d)).unwrap(),
        None => open_memory(node, clock, Limits::default()),
    };
    let state = AppState::new(NodeParts::for_tests(store));
    let g = &state.graph;
    let reader = g
        .sign_up("reader", "password1", None, None)
        .await
        .unwrap()
        .0
        .id;
    let mut authors = Vec::new();
    for i in 0..100 {
        let a = g
            .sign_up(&format!("author{i}"), "password1", None, None)
            .await
            .unwrap()
            .0
            .id;
        g.follow(reader, a).await.unwrap();
        authors.push(a);
    }
    let mut posts = Vec::new();
    for round in 0..5 {
        for (i, a) in authors.iter().enumerate() {
            let id = if round > 0 && i % 5 == 0 {
                let of = posts[(i * 7 + round) % posts.len()];
                state.posts.repost(of, *a).await.unwrap().0.id
            } else {
                let quote = (i % 7 == 0 && !posts.is_empty()).then(|| posts[i % posts.len()]);
                let text = format!("post {round} of author {i}, with some words in it");
                let (p, _) = state
                    .posts
                    .create_linked(
                        *a,
                        "t",
                        &text,
                        &[],
                        None,
                        starling_posts::Links::quoting(quote),
                    )
                    .await
                    .unwrap();
                if let Some(q) = quote {
                    state.posts.link_quote(p.id, q).await.unwrap();
                }
                p.id
            };
            posts.push(id);
            for liker in authors.iter().take(i % 4) {
                state.posts.likes().like(id, *liker).await.unwrap();
            }
        }
    }
    state.posts.likes().catch_up().await.unwrap();
    state.feed.catch_up().await.unwrap();
    (state, reader)
}

/// The thread's CPU time so far in ns (`/proc/thread-self/schedstat`), if the kernel tells it:
/// what a page costs without the time the thread waited for a core on a shared machine.
fn cpu_ns() -> Option<u128> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// µs per page of `n` pages written `how`: the thread's CPU time where the kernel tells it
/// (everything runs on this thread: a current-thread runtime, the memory store's reads inline,
/// the embedded store's on the blocking pool not counted), else wall time.
async fn run(state: &AppState, reader: u64, n: usize, how: PageJson) -> f64 {
    let (start, cpu) = (Instant::now(), cpu_ns());
    let mut bytes = 0;
    for _ in 0..n {
        bytes += starling_api::hydrate::feed_page_json(state, reader, 20, how)
            .await
            .unwrap()
            .len();
    }
    assert!(bytes > 0);
    let ns = match (cpu, cpu_ns()) {
        (Some(a), Some(b)) => b - a,
        _ => start.elapsed().as_nanos(),
    };
    ns as f64 / n as f64 / 1000.0
}

/// Pages of each kind read in turn within a round: the kinds interleave finely, so all of them
/// meet the same load.
const CHUNK: usize = 250;

fn main() {
    let n = flag("--pages", 20_000);
    let rounds = flag("--rounds", 6);
    let memory = flag("--memory", 0) == 1;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (state, reader) = world((!memory).then(|| dir.path())).await;
        println!(
            "store: {}",
            if memory { "memory" } else { "embedded (fjall)" }
        );
        let sample = starling_api::hydrate::feed_page_json(&state, reader, 20, PageJson::Views)
            .await
            .unwrap();
        let spliced = starling_api::hydrate::feed_page_json(&state, reader, 20, PageJson::Spliced)
            .await
            .unwrap();
        assert_eq!(sample, spliced, "the feed's spliced page is the serde page");
        let before =
            starling_api::hydrate::feed_page_json(&state, reader, 20, PageJson::SplicedSerde)
                .await
                .unwrap();
        assert_eq!(
            sample, before,
            "the spliced page through serde is the serde page"
        );
        let after_authors = starling_api::hydrate::feed_page_json(
            &state,
            reader,
            20,
            PageJson::SplicedAfterAuthors,
        )
        .await
        .unwrap();
        assert_eq!(
            sample, after_authors,
            "the spliced page after the authors is the serde page"
        );
        let items: serde_json::Value = serde_json::from_slice(&sample).unwrap();
        let items = items.as_array().unwrap();
        let reposts = items
            .iter()
            .filter(|i| i.get("reposted_by").is_some())
            .count();
        println!(
            "page: {} items, {reposts} reposts, {} bytes hydrated",
            items.len(),
            sample.len()
        );
        let hows = [
            PageJson::Bare,
            PageJson::Views,
            PageJson::Spliced,
            PageJson::SplicedSerde,
            PageJson::SplicedAfterAuthors,
        ];
        if let Some(how) = hows.get(flag("--only", usize::MAX)) {
            let threads = flag("--threads", 1);
            if threads > 1 {
                let per: Vec<f64> = std::thread::scope(|s| {
                    let runs: Vec<_> = (0..threads)
                        .map(|_| {
                            s.spawn(|| {
                                let rt = tokio::runtime::Builder::new_current_thread()
                                    .enable_all()
                                    .build()
                                    .unwrap();
                                rt.block_on(run(&state, reader, n * rounds, *how))
                            })
                        })
                        .collect();
                    runs.into_iter().map(|r| r.join().unwrap()).collect()
                });
                let mean = per.iter().sum::<f64>() / per.len() as f64;
                println!("{how:?} only, {threads} threads: {mean:.2} us/page (CPU, {per:.2?})");
                return;
            }
            let us = run(&state, reader, n * rounds, *how).await;
            println!("{how:?} only: {us:.2} us/page");
            return;
        }
        for how in hows {
            run(&state, reader, n / 10, how).await;
        }
        let (mut views, mut spliced, mut by_hand, mut one_lookup) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let chunks = n.div_ceil(CHUNK);
        for r in 0..rounds {
            // Chunks of each kind in turn, the order reversed every other chunk (A B C D, D C B A).
            let mut us = [0.0; 5];
            for c in 0..chunks {
                for k in 0..hows.len() {
                    let k = if c % 2 == 0 { k } else { hows.len() - 1 - k };
                    us[k] += run(&state, reader, CHUNK, hows[k]).await / chunks as f64;
                }
            }
            let [bare, v, s, old, two] = us;
            println!(
                "round {r}: bare {bare:.2} us/page, hydrated by serde {v:.2} ({:.2}x bare), \
                 hydrated spliced {s:.2} ({:.2}x bare, {:.2}x serde), spliced with serde's \
                 live parts {old:.2} ({:.2}x bare; by hand / serde's {:.3}), spliced after the \
                 authors {two:.2} ({:.2}x bare; one lookup / after the authors {:.3})",
                v / bare,
                s / bare,
                s / v,
                old / bare,
                s / old,
                two / bare,
                s / two
            );
            views.push(v / bare);
            spliced.push(s / bare);
            by_hand.push(s / old);
            one_lookup.push(s / two);
        }
        let median = |r: &mut Vec<f64>| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        };
        println!(
            "median ratio hydrated/bare: serde {:.2}, spliced {:.2}; spliced with live parts by \
             hand / through serde {:.3}; one lookup / after the authors {:.3}",
            median(&mut views),
            median(&mut spliced),
            median(&mut by_hand),
            median(&mut one_lookup)
        );
    });
}
