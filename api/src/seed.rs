//! `starling seed`: a synthetic social graph, deterministic by seed.
//!
//! N users (`user0` … `user{N-1}`, password `password1`), each following about `--follows`
//! others drawn from a Zipf distribution over the users (exponent `--zipf`, default 1.0), so a
//! few accounts collect 10 k–1 M followers while most have a handful, as in real networks; and
//! `--posts` posts per user on average. Two ways in:
//! - `--data-dir DIR`: straight into a node's embedded store (the node must be stopped), through
//!   the graph's bulk-load path, several writers at once; then the follower counts are derived
//!   by the usual consumer. Serve it afterwards with `starling serve --data-dir DIR`.
//! - `--target http://HOST:PORT`: through the REST API of a running node (sign-up hashes every
//!   password with argon2id, so this is for small N).
//!
//! Generation is split into fixed chunks of users, each with its own RNG seeded from
//! `(seed, chunk)`, so the graph is the same whatever the number of writers.

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use starling_graph::{Graph, GraphConfig};
use starling_posts::Posts;
use starling_store::{
    EmbeddedOptions, FsyncPolicy, HlcClock, IdGenerator, LocalCas, NodeId, Store, open_embedded,
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
    /// Concurrent writers (default: 4 per core).
    #[arg(long)]
    pub writers: Option<usize>,
}

const CHUNK: u64 = 4096;
/// Writes per durability wait.
const BATCH: usize = 2048;
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
    match (&args.data_dir, &args.target) {
        (Some(dir), None) => seed_store(&args, dir.clone()).await,
        (None, Some(url)) => seed_api(&args, url).await,
        _ => bail!("give --data-dir DIR (a stopped node's store) or --target http://HOST:PORT"),
    }
}

async fn seed_store(args: &SeedArgs, dir: PathBuf) -> anyhow::Result<()> {
    let started = Instant::now();
    let node = NodeId::from_names(&args.region, "seed");
    let clock = Arc::new(HlcClock::new());
    // Acknowledged writes are handed to the OS either way; one fsync at the end is enough for
    // a load that is simply run again if the machine dies under it.
    let mut opts = EmbeddedOptions::new(&dir);
    opts.fsync = FsyncPolicy::Never;
    let store: Arc<dyn Store> = open_embedded(node, clock.clone(), &opts)
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    let cas = Arc::new(LocalCas(store.clone()));
    let ids = Arc::new(IdGenerator::new(node));
    let graph = Graph::new(
        store.clone(),
        cas.clone(),
        ids.clone(),
        GraphConfig::new(args.region.clone(), args.region.clone()),
    );
    let posts = Posts::new(store.clone(), cas, ids.clone());
    let phc = graph.seed_password_hash(PASSWORD).await?;
    let n = args.users;
    let writers = args
        .writers
        .unwrap_or_else(|| 4 * std::thread::available_parallelism().map_or(2, |c| c.get()));

    // Users: ids from the node's generator, in order.
    let user_ids: Arc<Vec<u64>> = Arc::new((0..n).map(|_| ids.next_id()).collect());
    let pb = bar(n, "users");
    let now = clock.wall_millis();
    run_chunks(n, writers, |lo, hi| {
        let (graph, user_ids, phc, region, pb) = (
            graph.clone(),
            user_ids.clone(),
            phc.clone(),
            args.region.clone(),
            pb.clone(),
        );
        async move {
            let mut batch = Vec::with_capacity(BATCH);
            for i in lo..hi {
                batch.extend(Graph::bulk_user(
                    user_ids[i as usize],
                    &format!("user{i}"),
                    &region,
                    &phc,
                    now,
                )?);
                if batch.len() >= BATCH {
                    graph.bulk_write(&batch).await?;
                    batch.clear();
                }
            }
            graph.bulk_write(&batch).await?;
            pb.inc(hi - lo);
            Ok(())
        }
    })
    .await?;
    pb.finish();

    // Follows.
    let zipf = Zipf::new(n as f64, args.zipf).context("the Zipf distribution")?;
    let pb = bar(n * args.follows, "follows");
    let edges = Arc::new(std::sync::atomic::AtomicU64::new(0));
    run_chunks(n, writers, |lo, hi| {
        let (graph, user_ids, pb, edges) =
            (graph.clone(), user_ids.clone(), pb.clone(), edges.clone());
        let (seed, avg) = (args.seed, args.follows);
        async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (lo / CHUNK).wrapping_mul(0x9E37_79B9));
            let mut batch = Vec::with_capacity(BATCH);
            for i in lo..hi {
                let fs = followees(i, n, avg, &zipf, &mut rng);
                for f in &fs {
                    batch.extend(Graph::bulk_follow(
                        user_ids[i as usize],
                        user_ids[*f as usize],
                        now,
                    ));
                }
                if batch.len() >= BATCH {
                    graph.bulk_write(&batch).await?;
                    batch.clear();
                }
                pb.inc(fs.len() as u64);
                edges.fetch_add(fs.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            graph.bulk_write(&batch).await?;
            Ok(())
        }
    })
    .await?;
    pb.finish();

    // Posts.
    let pb = bar(n * args.posts, "posts");
    let posted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    run_chunks(n, writers, |lo, hi| {
        let (posts, graph, user_ids, pb, posted) = (
            posts.clone(),
            graph.clone(),
            user_ids.clone(),
            pb.clone(),
            posted.clone(),
        );
        let (seed, avg) = (args.seed, args.posts);
        async move {
            let mut rng = StdRng::seed_from_u64(!seed ^ (lo / CHUNK).wrapping_mul(0x5851_F42D));
            let mut batch = Vec::with_capacity(BATCH);
            for i in lo..hi {
                let k = if avg == 0 {
                    0
                } else {
                    rng.random_range(0..=2 * avg)
                };
                for p in 0..k {
                    let words = rng.next_u32() % 40 + 3;
                    let text = format!(
                        "post {p} of user{i}: {}",
                        "lorem ipsum ".repeat(words as usize / 2)
                    );
                    batch.extend(posts.bulk_create(user_ids[i as usize], text.trim(), now)?);
                }
                if batch.len() >= BATCH {
                    graph.bulk_write(&batch).await?;
                    batch.clear();
                }
                pb.inc(k);
                posted.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
            }
            graph.bulk_write(&batch).await?;
            Ok(())
        }
    })
    .await?;
    pb.finish();

    // Derived state: follower counts by the usual consumer.
    let counting = Instant::now();
    eprintln!("deriving follower counts…");
    graph.catch_up_counts().await?;
    let counts_s = counting.elapsed().as_secs_f64();
    store.flush().await?;
    drop(graph);
    drop(posts);
    drop(store);
    let size = dir_size(&dir);
    let edges = edges.load(std::sync::atomic::Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {n} users, {edges} follows, {} posts into {} in {secs:.1} s ({:.0} writes/s; counts {counts_s:.1} s); store size {:.1} MiB",
        posted.load(std::sync::atomic::Ordering::Relaxed),
        dir.display(),
        (3 * n + 2 * edges) as f64 / secs,
        size as f64 / (1 << 20) as f64
    );
    println!("log in as user0 … user{} with password {PASSWORD:?}", n - 1);
    Ok(())
}

/// Runs `job(lo, hi)` over `0..n` in chunks of [`CHUNK`], `writers` at a time.
async fn run_chunks<F, Fut>(n: u64, writers: usize, job: F) -> anyhow::Result<()>
where
    F: Fn(u64, u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut lo = 0;
    while lo < n {
        while set.len() >= writers.max(1) {
            if let Some(r) = set.join_next().await {
                r.context("a seeding task")??;
            }
        }
        let hi = (lo + CHUNK).min(n);
        set.spawn(job(lo, hi));
        lo = hi;
    }
    while let Some(r) = set.join_next().await {
        r.context("a seeding task")??;
    }
    Ok(())
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
            tokio::task::spawn_blocking(move || {
                call(&a, "POST", &format!("{b}/v1/posts"), Some(&tok), Some(body))
            })
            .await??;
        }
    }
    pb.finish();
    println!(
        "seeded {n} users, {edges} follows, {} posts through {base} in {:.1} s",
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
