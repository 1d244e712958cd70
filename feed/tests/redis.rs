//! The L2 tiers: the in-process one and Redis against a real `redis-server` pass the same
//! conformance suites; two nodes of a region share timelines through either; Redis fails in
//! the middle of a run.
//!
//! `STARLING_TEST_REDIS_URL` (set by `infra/test.sh`) names the shared server; without it the
//! tests start their own from `redis-server` on the PATH. The outage test always runs its own,
//! since it kills it. Nothing here is skipped: no server, no pass.
#![allow(clippy::unwrap_used)]

use starling_feed::l1::LocalTimelines;
use starling_feed::memory_tier::{MemorySettings, MemoryTier};
use starling_feed::redis_tier::{RedisSettings, RedisTier};
use starling_feed::test_support::{Parts, parts, sign_up};
use starling_feed::tier::conformance;
use starling_feed::{CacheTier, Feed, FeedConfig, RegionalTier};
use starling_graph::Graph;
use starling_posts::Posts;
use starling_store::Store;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A `redis-server` child on a loopback port, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start_on(port: u16) -> Server {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (infra/test.sh installs it)");
        let s = Server { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Server::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shared server's URL, or a server of this test's own.
fn shared() -> (String, Option<Server>) {
    match std::env::var("STARLING_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let s = Server::start();
            (s.url(), Some(s))
        }
    }
}

fn prefix() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}-{t}-{n}:", std::process::id())
}

async fn tier(url: &str, cap: usize) -> RedisTier {
    RedisTier::connect(RedisSettings {
        url: url.to_owned(),
        prefix: prefix(),
        cap,
        inactive_after: Duration::from_secs(600),
        post_ttl: Duration::from_secs(600),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn every_tier_passes_the_conformance_suites() {
    conformance::run_all(&LocalTimelines::new(1 << 20, 4), 1).await;
    conformance::run_regional(&MemoryTier::new(&MemorySettings::new(1 << 20, 4)), 1).await;
    let (url, _server) = shared();
    conformance::run_regional(&tier(&url, 4).await, 1).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_one_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Feed::connect_redis(
        &format!("redis://127.0.0.1:{port}"),
        "x:",
        &FeedConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(!err.to_string().is_empty());
}

struct Node {
    graph: Graph,
    posts: Posts,
    store: Arc<dyn Store>,
}

fn node() -> Node {
    let Parts {
        store,
        graph,
        posts,
    } = parts();
    Node {
        graph,
        posts,
        store,
    }
}

impl Node {
    fn feed(&self, l2: Arc<dyn RegionalTier>) -> Feed {
        Feed::with_l2(
            self.store.clone(),
            self.graph.clone(),
            self.posts.clone(),
            FeedConfig::default(),
            l2,
        )
    }

    async fn user(&self, h: &str) -> u64 {
        sign_up(&self.graph, h).await
    }

    async fn post(&self, author: u64, text: &str) -> u64 {
        self.posts
            .create(author, "us", text, &[], None)
            .await
            .unwrap()
            .0
            .id
    }
}

async fn texts(feed: &Feed, user: u64) -> Vec<String> {
    let page = feed.page(user, None, 50).await.unwrap();
    page.posts.iter().map(|p| p.text.clone()).collect()
}

#[tokio::test]
async fn nodes_of_a_region_share_timelines_through_redis() {
    let (url, _server) = shared();
    nodes_share_timelines_through(Arc::new(tier(&url, 800).await)).await;
}

#[tokio::test]
async fn nodes_of_one_process_share_timelines_through_the_memory_tier() {
    let memory = MemoryTier::new(&MemorySettings::new(1 << 20, 800));
    nodes_share_timelines_through(Arc::new(memory)).await;
}

async fn nodes_share_timelines_through(redis: Arc<dyn RegionalTier>) {
    let n = node();
    let first = n.feed(redis.clone());
    let (a, b) = (n.user("alice").await, n.user("bob").await);
    n.graph.follow(a, b).await.unwrap();
    first.catch_up().await.unwrap();
    assert!(texts(&first, a).await.is_empty(), "built and stored in L2");
    let id = n.post(b, "hello").await;
    first.catch_up().await.unwrap();
    let in_redis = redis.load(a).await.unwrap().unwrap();
    assert_eq!(
        in_redis.page(None, 10, false),
        vec![(id, b)],
        "fanned out into L2"
    );
    // A second node with a cold L1 reads the same timeline from Redis.
    let second = n.feed(redis.clone());
    assert_eq!(texts(&second, a).await, vec!["hello"]);
    assert_eq!(second.cache_tier(), CacheTier::RedisUp);
}

#[tokio::test]
async fn a_redis_outage_mid_run_degrades_without_errors() {
    let mut server = Server::start();
    let port = server.port;
    let n = node();
    let redis: Arc<dyn RegionalTier> = Arc::new(tier(&server.url(), 800).await);
    let feed = n.feed(redis.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = tokio::spawn({
        let redis = redis.clone();
        async move { redis.watch_health(stop_rx).await }
    });
    let (a, b, c) = (
        n.user("alice").await,
        n.user("bob").await,
        n.user("carol").await,
    );
    n.graph.follow(a, b).await.unwrap();
    n.graph.follow(c, b).await.unwrap();
    n.post(b, "before").await;
    feed.catch_up().await.unwrap();
    assert_eq!(texts(&feed, a).await, vec!["before"]);

    server.kill();
    n.post(b, "during").await;
    feed.catch_up().await.unwrap();
    assert_eq!(
        texts(&feed, a).await,
        vec!["during", "before"],
        "L1 keeps serving"
    );
    assert_eq!(
        texts(&feed, c).await,
        vec!["during", "before"],
        "rebuilt without Redis"
    );
    assert_eq!(feed.cache_tier(), CacheTier::RedisDown);

    let _server = Server::start_on(port);
    let mut back = false;
    for _ in 0..200 {
        if feed.cache_tier() == CacheTier::RedisUp {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the health check brings Redis back");
    n.post(b, "after").await;
    feed.catch_up().await.unwrap();
    assert_eq!(texts(&feed, a).await, vec!["after", "during", "before"]);
    // A node with a cold L1 does not trust what Redis held before the outage.
    let other = n.feed(redis.clone());
    assert_eq!(texts(&other, c).await, vec!["after", "during", "before"]);
    stop_tx.send(true).unwrap();
    health.await.unwrap();
}
