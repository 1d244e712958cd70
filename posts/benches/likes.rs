//! Likes on one hot post against likes on distinct posts, in the same run: the distinct posts
//! are the baseline (no two likes share a post, hence no key, counter or shadow), the hot post
//! is every like on one post. Each round is [`TASKS`] concurrent clients liking [`PER_TASK`]
//! times each on the embedded store, with the count consumer running beside them as it does in
//! the server, and ends when every like is counted (checked). A ratio near 1 means the hot post
//! does not serialize on its counter. `infra/bench-likes.sh` writes `bench/likes.md`.
//!
//! `consumer_pass`: the count consumer's pass with and without its queueing of deleted posts for
//! the cleanup, A B A B.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use starling_posts::likes::Likes;
use starling_store::{EmbeddedOptions, HlcClock, NodeId, RegionId, Store, open_embedded};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Concurrent clients.
const TASKS: u64 = 32;
/// Likes per client per round.
const PER_TASK: u64 = 32;
/// The hot post's id.
const HOT: u64 = 1;

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    likes: Likes,
    stop: tokio::sync::watch::Sender<bool>,
    /// The next unused liker (and distinct post) id: every like of every round is new.
    next: Arc<AtomicU64>,
}

/// A two-worker runtime and an embedded store in a fresh directory: both cases' set-up.
fn runtime_and_store() -> (tokio::runtime::Runtime, tempfile::TempDir, Arc<dyn Store>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeId::new(RegionId::from_name("bench"), 1);
    let opts = EmbeddedOptions::new(dir.path());
    let store = open_embedded(node, Arc::new(HlcClock::new()), &opts).expect("embedded");
    (rt, dir, store)
}

fn fixture() -> Fixture {
    let (rt, dir, store) = runtime_and_store();
    let likes = Likes::new(store);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    rt.spawn(likes.clone().run(stopped));
    Fixture {
        _dir: dir,
        rt,
        likes,
        stop,
        next: Arc::new(AtomicU64::new(1_000)),
    }
}

/// One round: every client likes `PER_TASK` times (on the hot post, or each like on a post of
/// its own), then waits until the consumer has counted every like. Returns the elapsed time.
fn round(f: &Fixture, hot: bool) -> Duration {
    let n = TASKS * PER_TASK;
    let first = f.next.fetch_add(n, Ordering::Relaxed);
    let hot_before = f.rt.block_on(f.likes.count(HOT)).expect("count");
    let start = Instant::now();
    f.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let likes = f.likes.clone();
            set.spawn(async move {
                for i in 0..PER_TASK {
                    let liker = first + t * PER_TASK + i;
                    let post = if hot { HOT } else { liker };
                    likes.like(post, liker).await.expect("like");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("client");
        }
        // The consumer runs beside the clients; this pass ends once it has read everything.
        f.likes.catch_up().await.expect("catch up");
    });
    let elapsed = start.elapsed();
    let counted = if hot {
        f.rt.block_on(f.likes.count(HOT)).expect("count") - hot_before
    } else {
        (first..first + n)
            .map(|p| f.rt.block_on(f.likes.count(p)).expect("count"))
            .sum()
    };
    assert_eq!(counted, n, "every like counted once");
    elapsed
}

fn likes(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("likes");
    g.throughput(Throughput::Elements(TASKS * PER_TASK));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, hot) in [("distinct_posts", false), ("hot_post", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| round(&f, hot)).sum())
        });
    }
    g.finish();
    let _ = f.stop.send(true);
}

/// One pass of the count consumer over [`TASKS`] × [`PER_TASK`] new posts (their records) and a
/// like of each (written before the clock starts; the consumer does not run beside them), with
/// its queueing of deleted posts for the cleanup (`posts::cleanup`: one batched read of each
/// batch's posts) on or off. Off is the baseline; the cases alternate A B A B in one run.
fn consumer_pass(c: &mut Criterion) {
    let (rt, _dir, store) = runtime_and_store();
    let likes = Likes::new(store.clone());
    let next = AtomicU64::new(1_000);
    let n = TASKS * PER_TASK;
    let pass = |queueing: bool| {
        likes.set_queueing_deleted(queueing);
        let first = next.fetch_add(n, Ordering::Relaxed);
        rt.block_on(async {
            let body = bytes::Bytes::from_static(b"a post's record");
            let posts: Vec<_> = (first..first + n)
                .map(|p| {
                    let key = starling_posts::POSTS.key().u64(p).finish();
                    (key, starling_store::Mutation::Put(body.clone()))
                })
                .collect();
            store.mutate_many(&posts).await.expect("posts");
            for p in first..first + n {
                likes.like(p, p).await.expect("like");
            }
        });
        let start = Instant::now();
        rt.block_on(likes.catch_up()).expect("catch up");
        let elapsed = start.elapsed();
        let last = rt.block_on(likes.count(first + n - 1)).expect("count");
        assert_eq!(last, 1, "counted");
        elapsed
    };
    let mut g = c.benchmark_group("consumer_pass");
    g.throughput(Throughput::Elements(2 * n));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, queueing) in [
        ("without_queue_a1", false),
        ("with_queue_b1", true),
        ("without_queue_a2", false),
        ("with_queue_b2", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| pass(queueing)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, likes, consumer_pass);
criterion_main!(benches);
