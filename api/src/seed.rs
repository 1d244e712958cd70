//! `starling seed`: a synthetic social graph, deterministic by seed.
//!
//! N users (`user0` … `user{N-1}`, password `password1`), each following about `--follows`
//! others drawn from a Zipf distribution over the users (exponent `--zipf`, default 1.0), so a
//! few accounts collect 10 k–1 M followers while most have a handful, as in real networks; and
//! `--posts` posts per user on average; and engagement with those posts — on average `--likes`
//! likes, `--reposts` reposts and `--replies` replies per user — whose targets are skewed the
//! same way: an author is drawn from the follower Zipf law (the most followed draw the most), then
//! one of their posts, so most engagement lands on few posts, as in real networks. Each like,
//! reply and repost notifies the post's author, and every post's like, reply and repost counts
//! equal its distinct likers, replies and reposters. Two ways in:
//! - `--data-dir DIR`: straight into a fresh node's embedded store (the node must be stopped)
//!   by the store's bulk-load path: the graph is generated in memory (adjacency lists both
//!   ways, one thread per core), then every keyspace is streamed in key order into sorted
//!   files, with the derived follower counts and post counters and each user's newest
//!   notifications (`starling_posts::bulk`) — no journal, no change feed, one durability
//!   point at the end. Serve it afterwards with `starling serve --data-dir DIR`.
//! - `--target http://HOST:PORT`: through the REST API of a running node (sign-up hashes every
//!   password with argon2id, so this is for small N); likes, reposts and replies are requests
//!   too, so the node counts and notifies them itself.
//!
//! Generation is split into fixed chunks of users, each with its own RNG seeded from
//! `(seed, chunk)`, and ids come from the seed's fixed time (`--at-ms`), so the same flags give
//! the same bytes whatever the number of threads: every node of a cluster seeded alike holds
//! identical records, and their digests agree without a transfer.

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use starling_graph::bulk::{Adjacency, SeedGraph};
use starling_graph::{Graph, GraphConfig};
use starling_posts::Post;
use starling_posts::bulk::SeedEngagement;
use starling_posts::notifications::{NotificationKind, Stored};
use starling_store::{
    Dot, EmbeddedOptions, FsyncPolicy, Hlc, HlcClock, IdGenerator, LocalCas, NodeId, Store,
    load_runs, open_embedded,
};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Flags of `starling seed`.
#[derive(Args, Debug, Clone)]
pub struct SeedArgs {
    /// Users to create.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Average follows per user.
    #[arg(long, default_value_t = 20)]
    pub follows: u64,
    /// Average posts per user.
    #[arg(long, default_value_t = 1)]
    pub posts: u64,
    /// Average likes per user (0 to twice that each), on posts drawn by the Zipf law.
    #[arg(long, default_value_t = 5.0)]
    pub likes: f64,
    /// Average reposts per user.
    #[arg(long, default_value_t = 0.5)]
    pub reposts: f64,
    /// Average replies per user.
    #[arg(long, default_value_t = 0.5)]
    pub replies: f64,
    /// Exponent of the Zipf distribution of followers (higher: more concentrated).
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Seed of the generator: the same seed gives the same graph.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Region of the seeded users (and of the node that will serve the store).
    #[arg(long, default_value = "local")]
    pub region: String,
    /// Write into this node's data directory (the node must be stopped).
    #[arg(long, conflicts_with = "target")]
    pub data_dir: Option<PathBuf>,
    /// Or go through the REST API of a running node.
    #[arg(long)]
    pub target: Option<String>,
    /// Threads generating the graph (default: one per core).
    #[arg(long)]
    pub writers: Option<usize>,
    /// The seeded accounts' creation time (Unix ms), which also fixes their ids: the same
    /// flags give the same bytes, so every node of a cluster can be seeded alike.
    #[arg(long, default_value_t = 1_767_225_600_000)]
    pub at_ms: u64,
}

const CHUNK: u64 = 4096;
const PASSWORD: &str = "password1";

/// The followees of user `i` in chunk RNG `rng`, without repeats or self-follows.
fn followees(i: u64, n: u64, avg: u64, zipf: &Zipf<f64>, rng: &mut StdRng) -> Vec<u64> {
    if n < 2 || avg == 0 {
        return Vec::new();
    }
    // Between half and one and a half times the average, capped by who there is to follow.
    let want = rng.random_range(avg / 2..=avg + avg / 2).min(n - 1);
    let mut out = HashSet::with_capacity(want as usize);
    let mut tries = 0;
    while (out.len() as u64) < want && tries < want * 8 {
        tries += 1;
        // Rank 1 is the most followed; ranks map to users through a fixed shuffle (a
        // multiplicative permutation), so popularity is not tied to creation order.
        let rank = zipf.sample(rng) as u64 - 1;
        let u = permute(rank, n);
        if u != i {
            out.insert(u);
        }
    }
    let mut v: Vec<u64> = out.into_iter().collect();
    v.sort_unstable();
    v
}

/// A bijection of `0..n` (an affine map with a multiplier coprime to n).
fn permute(x: u64, n: u64) -> u64 {
    let mut a = 0x9E37_79B9_7F4A_7C15 % n;
    while gcd(a, n) != 1 {
        a += 1;
    }
    ((x as u128 * a as u128 + 12_345) % n as u128) as u64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

/// Runs `starling seed`.
pub async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    if args.users == 0 {
        bail!("--users: at least 1");
    }
    if args.zipf.is_nan() || args.zipf <= 0.0 {
        bail!("--zipf: a positive exponent");
    }
    for (flag, v) in [
        ("--likes", args.likes),
        ("--reposts", args.reposts),
        ("--replies", args.replies),
    ] {
        if !(0.0..=10_000.0).contains(&v) {
            bail!("{flag}: an average from 0 to 10000 per user");
        }
    }
    match (&args.data_dir, &args.target) {
        (Some(dir), None) => seed_store(&args, dir.clone()).await,
        (None, Some(url)) => seed_api(&args, url).await,
        _ => bail!("give --data-dir DIR (a stopped node's store) or --target http://HOST:PORT"),
    }
}

async fn seed_store(args: &SeedArgs, dir: PathBuf) -> anyhow::Result<()> {
    let started = Instant::now();
    let n = args.users;
    if n > u64::from(u32::MAX) {
        bail!("--users: at most {}", u32::MAX);
    }
    let node = NodeId::from_names(&args.region, "seed");
    let clock = Arc::new(HlcClock::new());
    // The load is made durable once, at its end; a load cut short is simply run again.
    let mut opts = EmbeddedOptions::new(&dir);
    opts.fsync = FsyncPolicy::Never;
    let store: Arc<dyn Store> = open_embedded(node, clock.clone(), &opts)
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    let graph = Graph::new(
        store.clone(),
        Arc::new(LocalCas(store.clone())),
        Arc::new(IdGenerator::new(node)),
        GraphConfig::new(args.region.clone(), args.region.clone()),
    );
    let phc = graph.seed_password_hash(PASSWORD, args.seed).await?;
    drop(graph);
    let threads = args
        .writers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |c| c.get()));

    // Ids from the seed's own fixed time, so the same flags give the same bytes.
    let mut ids = IdGenerator::sequence(node, args.at_ms);
    let user_ids: Vec<u64> = ids.by_ref().take(n as usize).collect();
    let zipf = Zipf::new(n as f64, args.zipf).context("the Zipf distribution")?;
    let (avg, seed, posts_avg) = (args.follows, args.seed, args.posts);
    let pb = bar(n, "graph");
    let gen_pb = pb.clone();
    let following = tokio::task::spawn_blocking(move || {
        generate(n, threads, seed, |i, rng| {
            gen_pb.inc(1);
            followees(i, n, avg, &zipf, rng)
                .into_iter()
                .map(|f| f as u32)
                .collect()
        })
    })
    .await?;
    pb.finish();
    let followers = following.transpose();
    let edges = following.targets.len() as u64;
    let posts = generate_posts(n, posts_avg, seed, &user_ids, &mut ids, args.at_ms);
    let rates = Rates {
        likes: args.likes,
        reposts: args.reposts,
        replies: args.replies,
    };
    let (engaged, at_ms) = (user_ids.clone(), args.at_ms);
    let (posts, engagement) = tokio::task::spawn_blocking(move || {
        let mut posts = posts;
        let e = generate_engagement(
            n, &rates, seed, &zipf, &engaged, &mut posts, &mut ids, at_ms,
        );
        (posts, e)
    })
    .await?;
    let generated_s = started.elapsed().as_secs_f64();

    let graph = SeedGraph {
        ids: user_ids,
        handles: (0..n).map(|i| format!("user{i}")).collect(),
        following,
        followers,
        region: args.region.clone(),
        phc,
        at_ms: args.at_ms,
    };
    let keys = 3 * n + 2 * edges + 2 * n + 2 * posts.len() as u64 + engagement.keys();
    let [likes_n, replies_n, reposts_n, notes_n] = engagement.sizes();
    let hottest = engagement
        .most_liked()
        .map_or_else(|| "none".into(), |(id, n)| format!("{id} ({n} likes)"));
    let pb = bar(keys, "keys");
    let loading = Instant::now();
    let dot = Dot {
        hlc: Hlc::new(args.at_ms, 0),
        node,
    };
    let (report, posts_n) = {
        let store = store.clone();
        let pb = pb.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut load = store.bulk_load(dot)?;
            let parents = engagement.reply_parents();
            let mut runs = graph.runs(dot)?;
            runs.extend(starling_posts::seed_runs(&posts, &parents)?);
            runs.extend(engagement.runs(dot)?);
            load_runs(load.as_mut(), runs, &mut |k| pb.inc(k))?;
            Ok((load.finish()?, posts.len()))
        })
        .await??
    };
    pb.finish();
    let load_s = loading.elapsed().as_secs_f64();
    let digest = store.digests().root();
    drop(store);
    let size = dir_size(&dir);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {n} users, {edges} follows, {posts_n} posts ({replies_n} replies, \
         {reposts_n} reposts), {likes_n} likes, {notes_n} notifications into {} in {secs:.1} s \
         (generation {generated_s:.1} s, load {load_s:.1} s: {} keys, {:.0} keys/s); \
         store size {:.1} MiB; peak memory {}; digest {digest:016x}",
        dir.display(),
        report.keys,
        report.keys as f64 / load_s,
        size as f64 / (1 << 20) as f64,
        peak_rss().map_or_else(
            || "unknown".into(),
            |b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
        ),
    );
    println!("log in as user0 … user{} with password {PASSWORD:?}", n - 1);
    println!("most liked post: {hottest}");
    Ok(())
}

/// Runs `user(i, rng)` for every user in chunks of [`CHUNK`] on `threads` threads, each chunk
/// with its own RNG seeded from the chunk number, and gathers the lists in user order.
fn generate(
    n: u64,
    threads: usize,
    seed: u64,
    user: impl Fn(u64, &mut StdRng) -> Vec<u32> + Sync,
) -> Adjacency {
    let chunks = n.div_ceil(CHUNK) as usize;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: Vec<std::sync::Mutex<Vec<Vec<u32>>>> =
        (0..chunks).map(|_| std::sync::Mutex::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if c >= chunks {
                        return;
                    }
                    let lo = c as u64 * CHUNK;
                    let mut rng =
                        StdRng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9E37_79B9));
                    let lists = (lo..(lo + CHUNK).min(n))
                        .map(|i| user(i, &mut rng))
                        .collect();
                    if let Ok(mut slot) = done[c].lock() {
                        *slot = lists;
                    }
                }
            });
        }
    });
    let lists: Vec<Vec<Vec<u32>>> = done
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_default())
        .collect();
    Adjacency::from_lists(lists.iter().flatten().map(Vec::as_slice))
}
/// About `avg` posts per user (0 to twice that), ids drawn in order from `ids`.
fn generate_posts(
    n: u64,
    avg: u64,
    seed: u64,
    users: &[u64],
    ids: &mut impl Iterator<Item = u64>,
    at_ms: u64,
) -> Vec<Post> {
    let mut out = Vec::new();
    if avg == 0 {
        return out;
    }
    for c in 0..n.div_ceil(CHUNK) {
        let mut rng = StdRng::seed_from_u64(!seed ^ c.wrapping_mul(0x5851_F42D));
        for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
            for p in 0..rng.random_range(0..=2 * avg) {
                let words = rng.next_u32() % 40 + 3;
                let text = format!(
                    "post {p} of user{i}: {}",
                    "lorem ipsum ".repeat(words as usize / 2)
                );
                out.push(Post {
                    id: ids.next().unwrap_or_default(),
                    author: users[i as usize],
                    text: text.trim().to_string(),
                    media: Vec::new(),
                    created_at_ms: at_ms,
                    edited_at_ms: None,
                    repost_of: None,
                    quote_of: None,
                });
            }
        }
    }
    out
}

/// Average engagement per user.
#[derive(Clone, Copy, Debug)]
struct Rates {
    likes: f64,
    reposts: f64,
    replies: f64,
}

/// How many of a kind one user makes: 0 to twice `avg`, `avg` on average.
fn draw(avg: f64, rng: &mut StdRng) -> usize {
    if avg <= 0.0 {
        return 0;
    }
    (rng.random::<f64>() * 2.0 * avg).round() as usize
}

/// Draws a post to engage with: an author by the follower Zipf law (rank to user through the
/// same permutation, so the most followed are the most engaged with), then one of their posts;
/// never one of `me`'s. `first[a]..first[a + 1]` are author `a`'s posts in `posts`.
fn target(me: u64, n: u64, zipf: &Zipf<f64>, first: &[usize], rng: &mut StdRng) -> Option<usize> {
    for _ in 0..16 {
        let a = permute(zipf.sample(rng) as u64 - 1, n) as usize;
        let (lo, hi) = (first[a], first[a + 1]);
        if a as u64 != me && hi > lo {
            return Some(rng.random_range(lo..hi));
        }
    }
    None
}

/// Likes, reposts and replies of `posts` (the users' own, by author in user order), with the
/// notifications they make; the replies and reposts are appended to `posts` (ids from `ids`,
/// after every original). Chunks of users in order, each with an RNG of its own, so the same
/// flags give the same engagement.
#[allow(clippy::too_many_arguments)]
fn generate_engagement(
    n: u64,
    rates: &Rates,
    seed: u64,
    zipf: &Zipf<f64>,
    users: &[u64],
    posts: &mut Vec<Post>,
    ids: &mut impl Iterator<Item = u64>,
    at_ms: u64,
) -> SeedEngagement {
    // Posts come by author in user order: first[a] is where author a's start.
    let mut first = vec![0usize; n as usize + 1];
    let mut at = 0;
    for (a, id) in users.iter().enumerate() {
        first[a] = at;
        while posts.get(at).is_some_and(|p| p.author == *id) {
            at += 1;
        }
    }
    first[n as usize] = at;
    let originals = at;
    let (mut likes, mut replies, mut reposts, mut notes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut note = |to: u64, kind, actor, post, subject, ids: &mut dyn Iterator<Item = u64>| {
        let stored = Stored {
            kind,
            actor,
            post: Some(post),
            subject,
            created_at_ms: at_ms,
        };
        notes.push((to, ids.next().unwrap_or_default(), stored));
    };
    let mut seen = HashSet::new();
    for c in 0..n.div_ceil(CHUNK) {
        let mut rng = StdRng::seed_from_u64(seed.rotate_left(17) ^ c.wrapping_mul(0x2545_F491));
        for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
            let me = users[i as usize];
            seen.clear();
            for _ in 0..draw(rates.likes, &mut rng) {
                if let Some(t) = target(i, n, zipf, &first, &mut rng)
                    && seen.insert(t)
                {
                    let p = &posts[t];
                    likes.push((p.id, me));
                    note(p.author, NotificationKind::Like, me, p.id, None, ids);
                }
            }
            seen.clear();
            for _ in 0..draw(rates.reposts, &mut rng) {
                if let Some(t) = target(i, n, zipf, &first, &mut rng)
                    && seen.insert(t)
                {
                    let (post, author) = (posts[t].id, posts[t].author);
                    let id = ids.next().unwrap_or_default();
                    reposts.push((post, me, id));
                    posts.push(Post {
                        id,
                        author: me,
                        text: String::new(),
                        media: Vec::new(),
                        created_at_ms: at_ms,
                        edited_at_ms: None,
                        repost_of: Some(post),
                        quote_of: None,
                    });
                    note(author, NotificationKind::Repost, me, post, None, ids);
                }
            }
            for r in 0..draw(rates.replies, &mut rng) {
                if let Some(t) = target(i, n, zipf, &first, &mut rng) {
                    let (parent, author) = (posts[t].id, posts[t].author);
                    let id = ids.next().unwrap_or_default();
                    replies.push((id, parent));
                    posts.push(Post {
                        id,
                        author: me,
                        text: format!("reply {r} of user{i}: {}", "lorem ipsum ".repeat(3).trim()),
                        media: Vec::new(),
                        created_at_ms: at_ms,
                        edited_at_ms: None,
                        repost_of: None,
                        quote_of: None,
                    });
                    note(author, NotificationKind::Reply, me, parent, Some(id), ids);
                }
            }
        }
    }
    debug_assert!(posts[originals..].windows(2).all(|w| w[0].id < w[1].id));
    SeedEngagement::new(likes, replies, reposts, notes, at_ms)
}

/// The process's peak resident memory, from `/proc` (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Seeds through the REST API (sign-up, follow, post), `writers` requests at a time.
async fn seed_api(args: &SeedArgs, url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let base = url.trim_end_matches('/').to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let n = args.users;
    let pb = bar(n, "users");
    let mut users: Vec<(String, String)> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (a, b) = (agent.clone(), base.clone());
        let body = serde_json::json!({"handle": format!("user{i}"), "password": PASSWORD});
        let v = tokio::task::spawn_blocking(move || {
            call(&a, "POST", &format!("{b}/v1/users"), None, Some(body))
        })
        .await??;
        let (Some(id), Some(token)) = (v["id"].as_str(), v["token"].as_str()) else {
            bail!("sign-up of user{i}: unexpected answer {v}");
        };
        users.push((id.to_string(), token.to_string()));
        pb.inc(1);
    }
    pb.finish();
    let zipf = Zipf::new(n as f64, args.zipf).context("the Zipf distribution")?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let pb = bar(n * args.follows, "follows");
    let mut edges = 0u64;
    let mut posted: Vec<Vec<String>> = vec![Vec::new(); n as usize];
    for i in 0..n {
        for f in followees(i, n, args.follows, &zipf, &mut rng) {
            let (a, b, tok, id) = (
                agent.clone(),
                base.clone(),
                users[i as usize].1.clone(),
                users[f as usize].0.clone(),
            );
            tokio::task::spawn_blocking(move || {
                call(
                    &a,
                    "PUT",
                    &format!("{b}/v1/following/{id}"),
                    Some(&tok),
                    None,
                )
            })
            .await??;
            edges += 1;
            pb.inc(1);
        }
        for p in 0..args.posts {
            let (a, b, tok) = (agent.clone(), base.clone(), users[i as usize].1.clone());
            let body = serde_json::json!({"text": format!("post {p} of user{i}")});
            let v = tokio::task::spawn_blocking(move || {
                call(&a, "POST", &format!("{b}/v1/posts"), Some(&tok), Some(body))
            })
            .await??;
            if let Some(id) = v["id"].as_str() {
                posted[i as usize].push(id.to_string());
            }
        }
    }
    pb.finish();
    // Engagement by the same skew as the store path, as requests: the node counts and notifies.
    let (mut likes, mut reposts, mut replies) = (0u64, 0u64, 0u64);
    let pick = |i: u64, rng: &mut StdRng| -> Option<String> {
        for _ in 0..16 {
            let a = permute(zipf.sample(rng) as u64 - 1, n);
            let list = &posted[a as usize];
            if a != i && !list.is_empty() {
                return Some(list[rng.random_range(0..list.len())].clone());
            }
        }
        None
    };
    for i in 0..n {
        let tok = users[i as usize].1.clone();
        let mut calls = Vec::new();
        for _ in 0..draw(args.likes, &mut rng) {
            if let Some(post) = pick(i, &mut rng) {
                calls.push(("PUT", format!("{base}/v1/posts/{post}/like"), None));
                likes += 1;
            }
        }
        for _ in 0..draw(args.reposts, &mut rng) {
            if let Some(post) = pick(i, &mut rng) {
                calls.push(("PUT", format!("{base}/v1/posts/{post}/repost"), None));
                reposts += 1;
            }
        }
        for r in 0..draw(args.replies, &mut rng) {
            if let Some(post) = pick(i, &mut rng) {
                let text = format!("reply {r} of user{i}");
                let body = serde_json::json!({"text": text, "reply_to": post});
                calls.push(("POST", format!("{base}/v1/posts"), Some(body)));
                replies += 1;
            }
        }
        for (method, url, body) in calls {
            let (a, tok) = (agent.clone(), tok.clone());
            tokio::task::spawn_blocking(move || call(&a, method, &url, Some(&tok), body)).await??;
        }
    }
    println!(
        "seeded {n} users, {edges} follows, {} posts through {base}, then {likes} likes, \
         {reposts} reposts, {replies} replies (requests; a repeated like or repost is one) in \
         {:.1} s",
        n * args.posts,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One blocking REST call; a non-2xx answer is an error with its body.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("POST", Some(b)) => {
            let mut r = agent.post(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send_json(b)
        }
        ("PUT", _) => {
            let mut r = agent.put(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send_empty()
        }
        _ => bail!("unsupported call {method}"),
    }
    .with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    if !(200..300).contains(&status) {
        bail!("{method} {url}: {status} {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection() {
        for n in [1u64, 2, 7, 1000, 4096] {
            let mut seen: Vec<u64> = (0..n).map(|x| permute(x, n)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn followees_are_deterministic_distinct_and_skewed() {
        let n = 10_000;
        let zipf = Zipf::new(n as f64, 1.0).unwrap();
        let draw = || {
            let mut rng = StdRng::seed_from_u64(9);
            (0..n)
                .map(|i| followees(i, n, 20, &zipf, &mut rng))
                .collect::<Vec<_>>()
        };
        let (a, b) = (draw(), draw());
        assert_eq!(a, b, "same seed, same graph");
        let mut followers = vec![0u64; n as usize];
        for (i, fs) in a.iter().enumerate() {
            assert!(!fs.contains(&(i as u64)), "no self-follow");
            let set: HashSet<_> = fs.iter().collect();
            assert_eq!(set.len(), fs.len(), "no repeated edge");
            for f in fs {
                followers[*f as usize] += 1;
            }
        }
        followers.sort_unstable();
        let top = followers[followers.len() - 1];
        let median = followers[followers.len() / 2];
        assert!(
            top > 50 * median.max(1),
            "power law: top {top}, median {median}"
        );
    }
}
