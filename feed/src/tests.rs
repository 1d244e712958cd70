use super::*;
use crate::test_support::{World, user, world};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use starling_store::HlcClock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A world whose feed pulls authors with more than `followers` followers.
fn world_pulling_above(followers: i64) -> World {
    world(FeedConfig {
        celebrity_followers: followers,
        ..FeedConfig::default()
    })
}

/// Signs up users with these handles: their ids, in order.
async fn named<const N: usize>(w: &World, handles: [&str; N]) -> [u64; N] {
    let mut ids = [0; N];
    for (id, handle) in ids.iter_mut().zip(handles) {
        *id = user(w, handle).await;
    }
    ids
}

async fn post(w: &World, author: u64, text: &str) -> u64 {
    w.posts
        .create(author, "us", text, &[], None)
        .await
        .unwrap()
        .0
        .id
}

async fn texts(w: &World, u: u64) -> Vec<String> {
    w.feed.catch_up().await.unwrap();
    let p = w.feed.page(u, None, 100).await.unwrap();
    p.posts.iter().map(|p| p.text.clone()).collect()
}

/// Every post of a feed, paged with `limit`.
async fn all_pages(w: &World, u: u64, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = w.feed.page(u, before, limit).await.unwrap();
        seen.extend(page.posts.iter().map(|p| p.text.clone()));
        match page.next {
            Some(n) => before = Some(n),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn posts_fan_out_to_followers_newest_first() {
    let w = world(FeedConfig::default());
    let [a, b, c] = named(&w, ["alice", "bob", "carol"]).await;
    w.graph.follow(a, b).await.unwrap();
    for t in ["b1", "b2"] {
        post(&w, b, t).await;
    }
    post(&w, c, "c1").await;
    assert_eq!(
        texts(&w, a).await,
        vec!["b2", "b1"],
        "only followed authors, newest first"
    );
    assert!(texts(&w, b).await.is_empty());
    // A follow backfills; an unfollow removes; a delete disappears; an edit shows.
    w.graph.follow(a, c).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c1", "b2", "b1"]);
    w.graph.unfollow(a, b).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c1"]);
    let p = post(&w, c, "c2").await;
    assert_eq!(texts(&w, a).await, vec!["c2", "c1"]);
    w.posts.edit(p, c, "c2 edited").await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c2 edited", "c1"]);
    w.posts.delete(p, c).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["c1"]);
    assert_eq!(
        texts(&w, a).await,
        vec!["c1"],
        "catching up again changes nothing"
    );
}

#[tokio::test]
async fn fan_out_reaches_every_active_follower_without_a_rebuild() {
    let w = world(FeedConfig::default());
    let author = user(&w, "author").await;
    let mut fans = Vec::new();
    for i in 0..40 {
        let f = user(&w, &format!("fan{i}")).await;
        w.graph.follow(f, author).await.unwrap();
        fans.push(f);
    }
    w.feed.catch_up().await.unwrap();
    for f in &fans {
        assert!(w.feed.page(*f, None, 10).await.unwrap().posts.is_empty());
    }
    let id = post(&w, author, "hello").await;
    w.feed.catch_up().await.unwrap();
    for f in &fans {
        let t = w
            .feed
            .cached(*f)
            .expect("an active reader's timeline stays cached");
        assert_eq!(
            t.page(None, 10, false),
            vec![(id, author)],
            "fan-out inserted it"
        );
    }
}

/// The worker's cached follower list follows the follows and unfollows it meets: a post after
/// them reaches exactly the followers of that moment.
#[tokio::test]
async fn fan_out_follows_list_changes_met_between_posts() {
    let w = world(FeedConfig::default());
    let author = user(&w, "author").await;
    let (f1, f2) = (user(&w, "fan1").await, user(&w, "fan2").await);
    w.graph.follow(f1, author).await.unwrap();
    for f in [f1, f2] {
        w.feed.page(f, None, 10).await.unwrap();
    }
    let ids = |f: u64| -> Vec<u64> {
        let t = w.feed.cached(f).expect("a reader's timeline stays cached");
        t.page(None, 10, false)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    let p1 = post(&w, author, "p1").await;
    w.feed.catch_up().await.unwrap();
    let kept = || {
        w.feed
            .inner
            .followers
            .get(author)
            .as_deref()
            .map(<[u64]>::to_vec)
    };
    assert_eq!(kept(), Some(vec![f1]), "the fan-out kept the list");
    assert_eq!((ids(f1), ids(f2)), (vec![p1], vec![]));

    // A follow met by the worker (which backfills p1), then a post: fanned out to f2 too.
    w.graph.follow(f2, author).await.unwrap();
    w.feed.catch_up().await.unwrap();
    assert_eq!(kept(), None, "the follow dropped the list");
    let p2 = post(&w, author, "p2").await;
    w.feed.catch_up().await.unwrap();
    assert_eq!((ids(f1), ids(f2)), (vec![p2, p1], vec![p2, p1]));

    // An unfollow met by the worker, then a post: not fanned out to f1.
    w.graph.unfollow(f1, author).await.unwrap();
    w.feed.catch_up().await.unwrap();
    let p3 = post(&w, author, "p3").await;
    w.feed.catch_up().await.unwrap();
    assert_eq!((ids(f1), ids(f2)), (vec![], vec![p3, p2, p1]));
}

#[tokio::test]
async fn the_api_path_applies_follows_before_the_worker() {
    let w = world(FeedConfig::default());
    let (a, b) = (user(&w, "alice").await, user(&w, "bob").await);
    post(&w, b, "early").await;
    w.feed.catch_up().await.unwrap();
    assert!(w.feed.page(a, None, 10).await.unwrap().posts.is_empty());
    w.graph.follow(a, b).await.unwrap();
    w.feed.follow_changed(a, b).await.unwrap();
    let page = w.feed.page(a, None, 10).await.unwrap();
    assert_eq!(page.posts[0].text, "early", "read your own follow");
}

#[tokio::test]
async fn blocks_remove_the_blocked_authors_posts() {
    let w = world(FeedConfig::default());
    let (a, b) = (user(&w, "alice").await, user(&w, "bob").await);
    w.graph.follow(a, b).await.unwrap();
    post(&w, b, "b1").await;
    assert_eq!(texts(&w, a).await, vec!["b1"]);
    w.graph.block(b, a).await.unwrap();
    assert!(texts(&w, a).await.is_empty());
}

#[tokio::test]
async fn paging_never_skips_or_repeats_while_posts_arrive() {
    let w = world(FeedConfig::default());
    let (a, b) = (user(&w, "alice").await, user(&w, "bob").await);
    w.graph.follow(a, b).await.unwrap();
    for i in 0..25 {
        post(&w, b, &format!("p{i}")).await;
    }
    w.feed.catch_up().await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = w.feed.page(a, before, 7).await.unwrap();
        seen.extend(page.posts.iter().map(|p| p.text.clone()));
        post(&w, b, "late").await;
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
async fn a_seeded_reader_pages_while_a_writer_posts() {
    let w = Arc::new(world(FeedConfig {
        cap: 16,
        backfill: 6,
        ..FeedConfig::default()
    }));
    let reader = user(&w, "reader").await;
    let mut authors = Vec::new();
    for i in 0..4 {
        let a = user(&w, &format!("author{i}")).await;
        w.graph.follow(reader, a).await.unwrap();
        authors.push(a);
    }
    for i in 0..60 {
        post(&w, authors[i % 4], &format!("{i}")).await;
    }
    w.feed.catch_up().await.unwrap();
    for round in 0..5u64 {
        let mut rng = StdRng::seed_from_u64(round);
        let writer = {
            let w = w.clone();
            let authors = authors.clone();
            let seed = round;
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed + 100);
                for i in 0..30 {
                    let a = authors[rng.random_range(0..authors.len())];
                    post(&w, a, &format!("new{seed}-{i}")).await;
                    w.feed.catch_up().await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut seen: Vec<u64> = Vec::new();
        let mut before = None;
        loop {
            let page = w
                .feed
                .page(reader, before, rng.random_range(1..12))
                .await
                .unwrap();
            seen.extend(page.posts.iter().map(|p| p.id));
            tokio::task::yield_now().await;
            match page.next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        writer.await.unwrap();
        assert!(
            seen.windows(2).all(|p| p[0] > p[1]),
            "strictly newest first, no repeat"
        );
        // Everything that existed below the first item was seen.
        let mut want = Vec::new();
        for a in &authors {
            want.extend(w.posts.ids_by_author(*a, None, 1000).await.unwrap());
        }
        want.retain(|id| *id <= seen[0]);
        want.sort_unstable_by(|x, y| y.cmp(x));
        assert_eq!(seen, want, "round {round}: no gap");
    }
}

#[tokio::test]
async fn pages_continue_past_the_cap_from_the_store() {
    let w = world(FeedConfig {
        cap: 10,
        backfill: 5,
        ..FeedConfig::default()
    });
    let [a, b, c] = named(&w, ["alice", "bob", "carol"]).await;
    w.graph.follow(a, b).await.unwrap();
    w.graph.follow(a, c).await.unwrap();
    assert!(texts(&w, a).await.is_empty());
    for i in 0..30 {
        post(&w, if i % 3 == 0 { c } else { b }, &format!("{i}")).await;
    }
    w.feed.catch_up().await.unwrap();
    let t = w.feed.cached(a).unwrap();
    assert_eq!(t.len(), 10, "the timeline itself is capped");
    let want: Vec<String> = (0..30).rev().map(|i| i.to_string()).collect();
    for limit in [1, 4, 7, 100] {
        assert_eq!(all_pages(&w, a, limit).await, want, "limit {limit}");
    }
}

#[tokio::test]
async fn celebrities_are_pulled_exactly_above_the_threshold() {
    let w = world_pulling_above(2);
    let [a, b, c] = named(&w, ["alice", "bob", "carol"]).await;
    let (edge, star) = (user(&w, "edge").await, user(&w, "star").await);
    for f in [a, b] {
        w.graph.follow(f, edge).await.unwrap();
    }
    for f in [a, b, c] {
        w.graph.follow(f, star).await.unwrap();
    }
    w.graph.catch_up_counts().await.unwrap();
    assert!(texts(&w, a).await.is_empty());
    let at = post(&w, edge, "at the threshold").await;
    let over = post(&w, star, "over it").await;
    w.feed.catch_up().await.unwrap();
    let t = w.feed.cached(a).unwrap();
    let ids: Vec<u64> = t.entries().map(|e| e.0).collect();
    assert_eq!(ids, vec![at], "2 followers: fanned out; 3: not");
    assert_eq!(texts(&w, a).await, vec!["over it", "at the threshold"]);
    assert_eq!(texts(&w, c).await, vec!["over it"]);
    let _ = over;
}

#[tokio::test]
async fn an_author_crossing_the_threshold_is_pulled_from_then_on() {
    let w = world_pulling_above(1);
    let [a, b, star] = named(&w, ["alice", "bob", "star"]).await;
    w.graph.follow(a, star).await.unwrap();
    w.graph.catch_up_counts().await.unwrap();
    assert!(texts(&w, a).await.is_empty());
    post(&w, star, "one").await;
    assert_eq!(texts(&w, a).await, vec!["one"], "fanned out while small");
    w.graph.follow(b, star).await.unwrap();
    w.graph.catch_up_counts().await.unwrap();
    post(&w, star, "two").await;
    assert_eq!(texts(&w, a).await, vec!["two", "one"], "pulled once large");
    assert_eq!(w.feed.cached(a).unwrap().len(), 1);
}

#[tokio::test]
async fn inactive_users_are_skipped_and_rebuilt_on_read() {
    let clock_ms = Arc::new(AtomicU64::new(1_000_000));
    let w = world(FeedConfig {
        inactive_after: std::time::Duration::from_secs(3600),
        clock: Arc::new(HlcClock::manual(clock_ms.clone())),
        ..FeedConfig::default()
    });
    let (a, b) = (user(&w, "alice").await, user(&w, "bob").await);
    w.graph.follow(a, b).await.unwrap();
    assert!(texts(&w, a).await.is_empty());
    post(&w, b, "while active").await;
    w.feed.catch_up().await.unwrap();
    assert!(w.feed.cached(a).is_some());
    clock_ms.fetch_add(3_600_001, Ordering::SeqCst);
    post(&w, b, "while away").await;
    w.feed.catch_up().await.unwrap();
    assert!(
        w.feed.cached(a).is_none(),
        "fan-out dropped the inactive timeline"
    );
    assert_eq!(
        texts(&w, a).await,
        vec!["while away", "while active"],
        "rebuilt on read"
    );
    assert!(w.feed.cached(a).is_some());
}

#[tokio::test]
async fn a_large_rebuild_answers_partial_then_completes() {
    let w = world(FeedConfig {
        rebuild_budget: 2,
        ..FeedConfig::default()
    });
    let reader = user(&w, "reader").await;
    for i in 0..5 {
        let a = user(&w, &format!("author{i}")).await;
        w.graph.follow(reader, a).await.unwrap();
        post(&w, a, &format!("from {i}")).await;
    }
    w.feed.catch_up().await.unwrap();
    let first = w.feed.page(reader, None, 100).await.unwrap();
    assert!(first.partial, "5 followees, a budget of 2: partial");
    assert_eq!(first.posts.len(), 2);
    let mut done = None;
    for _ in 0..500 {
        let p = w.feed.page(reader, None, 100).await.unwrap();
        if !p.partial {
            done = Some(p);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let done = done.expect("the background rebuild finishes");
    assert_eq!(done.posts.len(), 5);
}

/// A world with `star` pulled (above a threshold of 1) and followed by `reader` and `other`.
async fn pulled_star(cfg: FeedConfig) -> (World, u64, u64) {
    let w = world(FeedConfig {
        celebrity_followers: 1,
        ..cfg
    });
    let [reader, other, star] = named(&w, ["reader", "other", "star"]).await;
    for f in [reader, other] {
        w.graph.follow(f, star).await.unwrap();
    }
    w.graph.catch_up_counts().await.unwrap();
    (w, reader, star)
}

#[tokio::test]
async fn pulled_posts_are_read_from_memory_and_follow_creates_and_deletes() {
    let (w, reader, star) = pulled_star(FeedConfig::default()).await;
    post(&w, star, "one").await;
    assert_eq!(texts(&w, reader).await, vec!["one"]);
    let reads = w.feed.author_list_reads();
    assert!(
        w.feed.inner.recent.get(star).is_some(),
        "the star's list is held"
    );
    for _ in 0..5 {
        assert_eq!(texts(&w, reader).await, vec!["one"]);
    }
    assert_eq!(
        w.feed.author_list_reads(),
        reads,
        "warm reads merge the in-process list, no store read"
    );
    let two = post(&w, star, "two").await;
    assert_eq!(
        texts(&w, reader).await,
        vec!["two", "one"],
        "a new post shows"
    );
    w.posts.delete(two, star).await.unwrap();
    assert_eq!(texts(&w, reader).await, vec!["one"], "a deleted post goes");
    w.graph.unfollow(reader, star).await.unwrap();
    assert!(
        texts(&w, reader).await.is_empty(),
        "an unfollow is respected"
    );
}

#[tokio::test]
async fn a_block_hides_a_pulled_author() {
    let (w, reader, star) = pulled_star(FeedConfig::default()).await;
    post(&w, star, "one").await;
    assert_eq!(texts(&w, reader).await, vec!["one"]);
    w.graph.block(star, reader).await.unwrap();
    assert!(texts(&w, reader).await.is_empty());
}

#[tokio::test]
async fn pages_deeper_than_the_pulled_lists_read_the_store_without_a_gap() {
    let (w, reader, star) = pulled_star(FeedConfig {
        pulled_depth: 4,
        ..FeedConfig::default()
    })
    .await;
    let plain = user(&w, "plain").await;
    w.graph.follow(reader, plain).await.unwrap();
    for i in 0..15 {
        post(&w, if i % 3 == 0 { plain } else { star }, &format!("{i}")).await;
    }
    w.feed.catch_up().await.unwrap();
    let want: Vec<String> = (0..15).rev().map(|i| i.to_string()).collect();
    for limit in [1, 2, 3, 5, 100] {
        assert_eq!(all_pages(&w, reader, limit).await, want, "limit {limit}");
    }
    let before = w.feed.author_list_reads();
    all_pages(&w, reader, 3).await;
    assert!(
        w.feed.author_list_reads() > before,
        "past 4 posts the star's list comes from the store"
    );
}

#[tokio::test]
async fn many_pulled_authors_merge_into_one_page_in_order() {
    let w = world_pulling_above(1);
    let (reader, fan) = (user(&w, "reader").await, user(&w, "fan").await);
    let mut stars = Vec::new();
    for i in 0..12 {
        let s = user(&w, &format!("star{i}")).await;
        for f in [reader, fan] {
            w.graph.follow(f, s).await.unwrap();
        }
        stars.push(s);
    }
    w.graph.catch_up_counts().await.unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut ids = Vec::new();
    for i in 0..80 {
        let s = stars[rng.random_range(0..stars.len())];
        ids.push(post(&w, s, &format!("{i}")).await);
    }
    w.feed.catch_up().await.unwrap();
    let want: Vec<String> = (0..80).rev().map(|i| i.to_string()).collect();
    assert_eq!(all_pages(&w, reader, 9).await, want);
    let first = w.feed.page(reader, None, 20).await.unwrap();
    assert_eq!(first.posts.len(), 20);
    assert_eq!(
        first.next,
        Some(ids[60]),
        "the cursor is the last post shown"
    );
}

#[tokio::test]
async fn an_account_crossing_the_threshold_is_pulled_by_the_cached_timelines_of_its_followers() {
    // The star crosses the threshold after two timelines are cached: one of a follower, one of
    // a stranger. Its followers (3) outnumber the cached timelines (2), so the worker walks
    // the cached timelines rather than the follower list.
    let w = world_pulling_above(2);
    let star = user(&w, "star").await;
    let mut fans = Vec::new();
    for i in 0..3 {
        fans.push(user(&w, &format!("fan{i}")).await);
    }
    let stranger = user(&w, "stranger").await;
    for f in &fans[..2] {
        w.graph.follow(*f, star).await.unwrap();
    }
    w.graph.catch_up_counts().await.unwrap();
    post(&w, star, "small").await;
    assert_eq!(texts(&w, fans[0]).await, vec!["small"]);
    assert!(texts(&w, stranger).await.is_empty());
    w.graph.follow(fans[2], star).await.unwrap();
    w.graph.catch_up_counts().await.unwrap();
    post(&w, star, "big").await;
    w.feed.catch_up().await.unwrap();
    let celebs = |u: u64| w.feed.inner.l1.slot(u).unwrap().lock().celebs.clone();
    assert_eq!(celebs(fans[0]), vec![star]);
    assert!(celebs(stranger).is_empty());
    assert_eq!(texts(&w, fans[0]).await, vec!["big", "small"]);
    assert!(texts(&w, stranger).await.is_empty());
    assert_eq!(texts(&w, fans[2]).await, vec!["big", "small"]);
}

#[tokio::test]
async fn the_author_list_keyspace_is_the_posts_crate_one() {
    let w = world(FeedConfig::default());
    let a = user(&w, "alice").await;
    let id = post(&w, a, "hello").await;
    let prefix = crate::fanout::AUTHOR_LISTS.key().u64(a).finish();
    let page = w
        .feed
        .inner
        .store
        .scan(&starling_store::ScanRequest::prefix(prefix, 10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "one list entry for the post {id}");
}

#[tokio::test]
async fn a_deleted_posts_fan_out_mark_goes_and_no_other_is_written() {
    let w = world(FeedConfig::default());
    let [a, b] = named(&w, ["alice", "bob"]).await;
    w.graph.follow(a, b).await.unwrap();
    let (kept, deleted) = (post(&w, b, "kept").await, post(&w, b, "deleted").await);
    assert_eq!(texts(&w, a).await, vec!["deleted", "kept"]);
    let mark = |id: u64| crate::fanout::FANNED.key().u64(id).finish();
    let record = |id: u64| {
        let store = w.feed.inner.store.clone();
        async move { store.get_record(&mark(id)).await.unwrap() }
    };
    for id in [kept, deleted] {
        assert!(
            record(id).await.is_some_and(|r| !r.is_tombstone()),
            "{id} fanned out"
        );
    }
    // Deleted after its fan-out: the mark goes (a tombstone for the reaper).
    w.posts.delete(deleted, b).await.unwrap();
    // Deleted before the fan-out saw it: never marked, so nothing is written for it.
    let unseen = post(&w, b, "unseen").await;
    w.posts.delete(unseen, b).await.unwrap();
    assert_eq!(texts(&w, a).await, vec!["kept"]);
    assert!(
        record(deleted).await.is_some_and(|r| r.is_tombstone()),
        "deleted"
    );
    assert_eq!(
        record(unseen).await,
        None,
        "no tombstone for a mark never written"
    );
    assert!(
        record(kept).await.is_some_and(|r| !r.is_tombstone()),
        "kept"
    );
}

#[tokio::test]
async fn a_repost_reaches_followers_once_per_reposted_post() {
    let w = world(FeedConfig::default());
    let [a, b, c, reader] = named(&w, ["alice", "bob", "carol", "reader"]).await;
    w.graph.follow(reader, b).await.unwrap();
    w.graph.follow(reader, c).await.unwrap();
    // The reader's timeline is built (and cached) before the reposts arrive.
    assert!(texts(&w, reader).await.is_empty());
    let x = post(&w, a, "original").await;
    let (rb, _) = w.posts.repost(x, b).await.unwrap();
    let (rc, _) = w.posts.repost(x, c).await.unwrap();
    w.feed.catch_up().await.unwrap();
    // Fan-out inserted bob's repost only: carol's reposts a post the timeline already holds.
    let cached = w.feed.cached(reader).unwrap();
    assert!(cached.contains(rb.id));
    assert!(!cached.contains(rc.id));
    let page = w.feed.page(reader, None, 10).await.unwrap();
    assert_eq!(page.posts.len(), 1);
    assert_eq!(page.posts[0].id, rb.id);
    assert_eq!(page.posts[0].repost_of, Some(x));
    assert_eq!(page.originals.len(), 1);
    assert_eq!(page.originals[0].text, "original");
    // A follower of the author sees the post itself and no repost of it.
    w.graph.follow(reader, a).await.unwrap();
    w.feed.follow_changed(reader, a).await.unwrap();
    let y = post(&w, a, "second").await;
    w.posts.repost(y, b).await.unwrap();
    w.feed.catch_up().await.unwrap();
    let ids: Vec<u64> = w
        .feed
        .page(reader, None, 10)
        .await
        .unwrap()
        .posts
        .iter()
        .map(|p| p.repost_of.unwrap_or(p.id))
        .collect();
    assert_eq!(ids, vec![y, x], "each post once, newest first");
}

#[tokio::test]
async fn a_rebuilt_timeline_shows_a_reposted_post_once_a_page_and_drops_undone_reposts() {
    let w = world(FeedConfig::default());
    let [a, b, c, reader] = named(&w, ["alice", "bob", "carol", "reader"]).await;
    let x = post(&w, a, "original").await;
    let (rb, _) = w.posts.repost(x, b).await.unwrap();
    w.posts.repost(x, c).await.unwrap();
    let z = post(&w, c, "carol's own").await;
    w.graph.follow(reader, b).await.unwrap();
    w.graph.follow(reader, c).await.unwrap();
    // Rebuilt from the post lists: both reposts are entries; the page shows the newest one.
    w.feed.catch_up().await.unwrap();
    let page = w.feed.page(reader, None, 10).await.unwrap();
    let shown: Vec<(u64, Option<u64>)> =
        page.posts.iter().map(|p| (p.author, p.repost_of)).collect();
    assert_eq!(shown, vec![(c, None), (c, Some(x))]);
    assert_eq!(page.posts[0].id, z);
    // Both reposts undone (bob's, then carol's): the original is gone from the feed.
    w.posts.unrepost(x, c).await.unwrap();
    w.feed.catch_up().await.unwrap();
    let page = w.feed.page(reader, None, 10).await.unwrap();
    assert_eq!(
        page.posts.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![z, rb.id]
    );
    w.posts.unrepost(x, b).await.unwrap();
    w.feed.catch_up().await.unwrap();
    let page = w.feed.page(reader, None, 10).await.unwrap();
    assert_eq!(page.posts.iter().map(|p| p.id).collect::<Vec<_>>(), vec![z]);
    // A deleted original takes its reposts out of the feed.
    let y = post(&w, a, "to delete").await;
    w.posts.repost(y, b).await.unwrap();
    w.feed.catch_up().await.unwrap();
    assert_eq!(w.feed.page(reader, None, 10).await.unwrap().posts.len(), 2);
    w.posts.delete(y, a).await.unwrap();
    w.feed.catch_up().await.unwrap();
    assert_eq!(w.feed.page(reader, None, 10).await.unwrap().posts.len(), 1);
}

#[tokio::test]
async fn author_summaries_are_cached_and_dropped_when_the_user_changes() {
    let w = world(FeedConfig::default());
    let a = user(&w, "alice").await;
    let got = w.feed.authors().get_many(&[a, 424242]).await.unwrap();
    assert_eq!(got[0].as_ref().unwrap().handle, "alice");
    assert!(got[1].is_none());
    w.graph.set_display_name(a, "Alice A.").await.unwrap();
    // Cached until the worker meets the change (the user record's keyspace is the graph's).
    let cached = w.feed.authors().get_many(&[a]).await.unwrap();
    assert_eq!(cached[0].as_ref().unwrap().display_name, "alice");
    w.feed.catch_up().await.unwrap();
    let fresh = w.feed.authors().get_many(&[a]).await.unwrap();
    assert_eq!(fresh[0].as_ref().unwrap().display_name, "Alice A.");
    // Likewise the profile's keyspace (the avatar).
    w.graph.set_profile(a, None, Some(Some(99))).await.unwrap();
    let avatar = |v: Vec<Option<Arc<authors::Author>>>| v[0].as_ref().unwrap().avatar;
    assert_eq!(avatar(w.feed.authors().get_many(&[a]).await.unwrap()), None);
    w.feed.catch_up().await.unwrap();
    assert_eq!(
        avatar(w.feed.authors().get_many(&[a]).await.unwrap()),
        Some(99)
    );
}

/// A summary's mark stays current until the user changes (through the change feed or
/// `invalidate_all`), and only that user's (or their stripe's) marks move.
#[tokio::test]
async fn an_authors_mark_stays_current_until_the_user_changes() {
    let w = world(FeedConfig::default());
    let [a, b] = named(&w, ["alice", "bob"]).await;
    let marks = || async {
        let mut m = Vec::new();
        let authors = w.feed.authors();
        authors
            .get_many_marked(&[a, b], |id, s, mark| m.push((id, s, mark)))
            .await
            .unwrap();
        m
    };
    let current = |m: &[(u64, Option<Arc<authors::Author>>, authors::Mark)]| {
        let now = w.feed.authors().current();
        m.iter()
            .map(|(id, _, mark)| now.is_current(*id, *mark))
            .collect::<Vec<_>>()
    };
    let first = marks().await;
    assert_eq!(first[0].1.as_ref().unwrap().handle, "alice");
    assert_eq!(current(&first), [true, true]);
    let again = marks().await;
    assert!(Arc::ptr_eq(
        again[0].1.as_ref().unwrap(),
        first[0].1.as_ref().unwrap()
    ));
    assert_eq!(current(&first), [true, true], "a hit moves nothing");
    w.graph.set_display_name(a, "Alice A.").await.unwrap();
    w.feed.catch_up().await.unwrap();
    let moved = current(&first);
    assert!(!moved[0], "alice changed: her mark is stale");
    let after = marks().await;
    assert_eq!(after[0].1.as_ref().unwrap().display_name, "Alice A.");
    assert_eq!(current(&after), [true, true]);
    w.feed.authors().invalidate_all();
    assert_eq!(current(&after), [false, false]);
    assert_eq!(current(&marks().await), [true, true]);
}

#[tokio::test]
async fn a_repost_backfilled_by_a_follow_counts_for_the_once_per_timeline_rule() {
    let w = world(FeedConfig::default());
    let [a, b, c, reader] = named(&w, ["alice", "bob", "carol", "reader"]).await;
    w.graph.follow(reader, c).await.unwrap();
    assert!(texts(&w, reader).await.is_empty());
    let x = post(&w, a, "original").await;
    // The follow of bob reaches the worker after bob's repost: the repost is backfilled.
    w.graph.follow(reader, b).await.unwrap();
    let (rb, _) = w.posts.repost(x, b).await.unwrap();
    w.feed.catch_up().await.unwrap();
    let (rc, _) = w.posts.repost(x, c).await.unwrap();
    w.feed.catch_up().await.unwrap();
    let cached = w.feed.cached(reader).unwrap();
    assert!(cached.contains(rb.id));
    assert!(!cached.contains(rc.id));
}
