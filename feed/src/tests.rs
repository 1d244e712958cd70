use super::*;
use starling_graph::GraphConfig;
use starling_store::{HlcClock, IdGenerator, Limits, LocalCas, NodeId, RegionId, open_memory};

struct World {
    feed: Feed,
    graph: Graph,
    posts: Posts,
}

fn world(cfg: FeedConfig) -> World {
    let node = NodeId::new(RegionId::from_name("us"), 1);
    let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
    let cas = Arc::new(LocalCas(store.clone()));
    let ids = Arc::new(IdGenerator::new(node));
    let mut gc = GraphConfig::new("us", "us");
    gc.argon2_memory_kib = 64;
    gc.argon2_passes = 1;
    let graph = Graph::new(store.clone(), cas.clone(), ids.clone(), gc);
    let posts = Posts::new(store.clone(), cas, ids);
    World {
        feed: Feed::new(store, graph.clone(), posts.clone(), cfg),
        graph,
        posts,
    }
}

async fn user(w: &World, h: &str) -> u64 {
    w.graph
        .sign_up(h, "password1", None, None)
        .await
        .unwrap()
        .0
        .id
}

async fn texts(w: &World, u: u64) -> Vec<String> {
    w.feed.catch_up().await.unwrap();
    let p = w.feed.page(u, None, 100).await.unwrap();
    p.posts.into_iter().map(|p| p.text).collect()
}

#[tokio::test]
async fn posts_fan_out_to_followers_newest_first() {
    let w = world(FeedConfig::default());
    let (a, b, c) = (
        user(&w, "alice").await,
        user(&w, "bob").await,
        user(&w, "carol").await,
    );
    w.graph.follow(a, b).await.unwrap();
    for t in ["b1", "b2"] {
        w.posts.create(b, "us", t, &[], None).await.unwrap();
    }
    w.posts.create(c, "us", "c1", &[], None).await.unwrap();
    assert_eq!(
        texts(&w, a).await,
        vec!["b2", "b1"],
        "only followed authors, newest first"
    );
    assert!(texts(&w, b).await.is_empty());
    // A follow backfills; an unfollow removes; a delete disappears.
    w.graph.follow(a, c).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c1", "b2", "b1"]);
    w.graph.unfollow(a, b).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c1"]);
    let (p, _) = w.posts.create(c, "us", "c2", &[], None).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c2", "c1"]);
    w.posts.delete(p.id, c).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c1"]);
    // Catching up again changes nothing (each post fans out once).
    assert_eq!(texts(&w, a).await, vec!["c1"]);
}

#[tokio::test]
async fn paging_never_skips_or_repeats_while_posts_arrive() {
    let w = world(FeedConfig::default());
    let (a, b) = (user(&w, "alice").await, user(&w, "bob").await);
    w.graph.follow(a, b).await.unwrap();
    for i in 0..25 {
        w.posts
            .create(b, "us", &format!("p{i}"), &[], None)
            .await
            .unwrap();
    }
    w.feed.catch_up().await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = w.feed.page(a, before, 7).await.unwrap();
        seen.extend(page.posts.iter().map(|p| p.text.clone()));
        // New posts keep arriving between pages.
        w.posts.create(b, "us", "late", &[], None).await.unwrap();
        w.feed.catch_up().await.unwrap();
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).rev().map(|i| format!("p{i}")).collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn timelines_are_capped_and_celebrities_are_pulled() {
    let w = world(FeedConfig {
        cap: 10,
        celebrity_followers: 1,
        backfill: 5,
    });
    let (a, b, star, fan) = (
        user(&w, "alice").await,
        user(&w, "bob").await,
        user(&w, "star").await,
        user(&w, "fan").await,
    );
    w.graph.follow(a, b).await.unwrap();
    for i in 0..30 {
        w.posts
            .create(b, "us", &format!("b{i}"), &[], None)
            .await
            .unwrap();
    }
    w.feed.catch_up().await.unwrap();
    let page = w.feed.page(a, None, 100).await.unwrap();
    assert!(
        (10..=11).contains(&page.posts.len()),
        "capped near 10: {}",
        page.posts.len()
    );
    assert_eq!(page.posts[0].text, "b29");
    // star has two followers (over the threshold of 1): not fanned out, merged at read time.
    w.graph.follow(a, star).await.unwrap();
    w.graph.follow(fan, star).await.unwrap();
    w.posts
        .create(star, "us", "shine", &[], None)
        .await
        .unwrap();
    assert_eq!(texts(&w, fan).await, vec!["shine"]);
    assert_eq!(texts(&w, a).await[0], "shine");
}
