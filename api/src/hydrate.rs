//! Hydrated post views: every post of a feed page, an author's list, a thread or a single read
//! carries its author's summary, its counters and the viewer's state, and a repost carries the
//! post it reposts (with `reposted_by`), in one response.
//!
//! What a page of `n` posts costs: the bodies of reposted and quoted posts in one batch from the
//! feed's post cache ([`starling_feed::Feed::posts`]); author summaries from the feed's summary
//! cache ([`starling_feed::authors`]); counters from the post-counts cache
//! ([`starling_posts::likes::Likes::counts_many`]) — none of them a store read once warm — and
//! the viewer's own state (`liked`, `reposted`) from the viewer-flag cache
//! ([`starling_posts::viewer`]: the viewer's own writes drop their entry at once, so the next
//! page shows them; other nodes' writes within one consumer pass), a miss read from the viewer's
//! elements, the misses of a page in one batch of the store (one trip off the runtime). Blocks: a repost or quote of a post whose author blocked the viewer, or
//! whom the viewer blocked, shows nothing of that post (the repost is left out, the quote keeps
//! only `quote_of`); one check per distinct such author, all of them in one batch of the store.
//!
//! Two renderings of one resolved page: [`views`] ([`PostView`]s, for the lists and reads that
//! embed them) and [`write_items`] (the feed's: JSON written into the page's buffer, each post's
//! own fields and author summary spliced in pre-serialized from [`crate::fragments`]; the same
//! bytes, tested). The feed's path takes each shown post's fragment before it looks up any author
//! ([`crate::fragments::Fragments::lookup`]): a post whose fragment is still good needs no
//! summary lookup for its author, unless the page shows that author elsewhere (a repost, a quote).

use crate::AppState;
use crate::fragments::Fragment;
use crate::notifications::ActorView;
use crate::posts::{PostCounts, PostView, QuotedView, ViewerState};
use crate::problem::ApiError;
use starling_feed::authors::{Author, Mark};
use starling_posts::Post;
use starling_posts::likes::Counts;
use starling_posts::viewer::ViewerFlags;
use std::io::Write;
use std::sync::Arc;

impl From<&Author> for ActorView {
    fn from(a: &Author) -> Self {
        ActorView {
            id: a.id.to_string(),
            handle: a.handle.clone(),
            display_name: a.display_name.clone(),
            avatar: a.avatar.map(|m| m.to_string()),
        }
    }
}

/// A page resolved for a viewer: what each item shows and everything it carries, before it is
/// rendered as [`PostView`]s ([`views`]) or written as JSON ([`write_items`]).
///
/// Its lookups by id are binary searches in sorted vectors: a page names a few dozen posts and
/// people, and building hash maps of them (allocations, hashing, rehashing) cost more than the
/// searches.
struct Resolved {
    items: Vec<Item>,
    /// Reposted and quoted posts, sorted by id.
    by_id: Vec<Arc<Post>>,
    /// Authors reached through a repost or quote who blocked the viewer or were blocked, sorted.
    blocked: Vec<u64>,
    /// Summaries of every author the page names (but those whose only part is in a fragment
    /// taken before), sorted by id.
    authors: Vec<Summary>,
}

/// An author's summary (`None`: the user is gone) and its mark.
struct Summary {
    id: u64,
    author: Option<Arc<Author>>,
    mark: Mark,
}

/// The post `id` of `sorted` (by id).
fn post_in(sorted: &[Arc<Post>], id: u64) -> Option<&Arc<Post>> {
    sorted
        .binary_search_by_key(&id, |p| p.id)
        .ok()
        .map(|i| &sorted[i])
}

/// One item: the post shown, the repost that brought it, its counters and the viewer's flags.
struct Item {
    post: Arc<Post>,
    repost: Option<Arc<Post>>,
    counts: Counts,
    me: ViewerFlags,
    /// The post's fragment, when taken before the authors were looked up (the feed's path).
    fragment: Option<Arc<Fragment>>,
}

impl Resolved {
    fn summary(&self, id: u64) -> Option<&Arc<Author>> {
        self.marked(id)?.author.as_ref()
    }

    fn marked(&self, id: u64) -> Option<&Summary> {
        let i = self.authors.binary_search_by_key(&id, |a| a.id).ok()?;
        self.authors.get(i)
    }

    /// The quoted post an item shows, if any (not across a block).
    fn quoted(&self, p: &Post) -> Option<&Arc<Post>> {
        p.quote_of
            .and_then(|q| post_in(&self.by_id, q))
            .filter(|q| self.blocked.binary_search(&q.author).is_err())
    }
}

/// How [`resolve`] treats the pre-serialized posts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FragmentUse {
    /// Not used (the [`PostView`] lists): every author is looked up.
    None,
    /// Each shown post's fragment taken first; the author of a post whose fragment is good is
    /// not looked up for it (the feed's path).
    First,
    /// Every author looked up, the fragments checked against them when written (the feed's path
    /// before; kept for `benches/hydrate.rs`).
    AfterAuthors,
}

/// Resolves `posts` for `viewer`, in order. `originals` may hold the posts they repost or
/// quote (a feed page has them); the others are read from the post cache. A repost whose post
/// is gone or across a block is left out.
async fn resolve(
    state: &AppState,
    viewer: u64,
    posts: &[Arc<Post>],
    originals: &[Arc<Post>],
    fragments: FragmentUse,
) -> Result<Resolved, ApiError> {
    let mut by_id: Vec<Arc<Post>> = originals.to_vec();
    by_id.sort_unstable_by_key(|p| p.id);
    by_id.dedup_by_key(|p| p.id);
    let mut missing: Vec<u64> = posts
        .iter()
        .filter_map(|p| p.repost_of.or(p.quote_of))
        .filter(|o| post_in(&by_id, *o).is_none())
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        by_id.extend(state.feed.posts(&missing).await?);
        by_id.sort_unstable_by_key(|p| p.id);
        by_id.dedup_by_key(|p| p.id);
    }
    // What each item shows: the post itself, or the post a repost reposts.
    let shown: Vec<(Arc<Post>, Option<Arc<Post>>)> = posts
        .iter()
        .filter_map(|p| match p.repost_of {
            Some(o) => post_in(&by_id, o).map(|orig| (orig.clone(), Some(p.clone()))),
            None => Some((p.clone(), None)),
        })
        .collect();
    // Authors reached through someone else's repost or quote: the only ones a block can hide
    // (a followed author is never blocked either way: a block ends follows both ways).
    let mut foreign: Vec<u64> = shown
        .iter()
        .flat_map(|(p, r)| {
            let quoted = p
                .quote_of
                .and_then(|q| post_in(&by_id, q))
                .map(|q| q.author);
            let reposted = r.as_ref().map(|_| p.author);
            quoted.into_iter().chain(reposted)
        })
        .filter(|a| *a != viewer)
        .collect();
    foreign.sort_unstable();
    foreign.dedup();
    let blocked_flags = state.graph.blocked_either_many(viewer, &foreign).await?;
    // `foreign` is sorted, so is `blocked`.
    let blocked: Vec<u64> = foreign
        .iter()
        .zip(blocked_flags)
        .filter_map(|(a, b)| b.then_some(*a))
        .collect();
    let mut shown = shown;
    shown.retain(|(p, r)| r.is_none() || blocked.binary_search(&p.author).is_err());
    let ids: Vec<u64> = shown.iter().map(|(p, _)| p.id).collect();
    let taken: Vec<Option<Arc<Fragment>>> = if fragments == FragmentUse::First {
        let now = state.feed.authors().current();
        shown
            .iter()
            .map(|(p, _)| state.fragments.lookup(p, &now))
            .collect()
    } else {
        Vec::new()
    };
    let mut people: Vec<u64> = shown
        .iter()
        .enumerate()
        .flat_map(|(i, (p, r))| {
            let quoted = p
                .quote_of
                .and_then(|q| post_in(&by_id, q))
                .map(|q| q.author);
            let own = taken.get(i).is_none_or(Option::is_none).then_some(p.author);
            [own, r.as_ref().map(|r| r.author), quoted]
        })
        .flatten()
        .collect();
    people.sort_unstable();
    people.dedup();
    // In the order of `people`: sorted by id.
    let mut authors: Vec<Summary> = Vec::with_capacity(people.len());
    state
        .feed
        .authors()
        .get_many_marked(&people, |id, author, mark| {
            authors.push(Summary { id, author, mark })
        })
        .await?;
    let counts = state.posts.likes().counts_many(&ids).await?;
    let own = state.posts.likes().viewer_flags(viewer, &ids).await?;
    let mut taken = taken.into_iter();
    let items = shown
        .into_iter()
        .zip(counts)
        .zip(own)
        .map(|(((post, repost), counts), me)| Item {
            post,
            repost,
            counts,
            me,
            fragment: taken.next().flatten(),
        })
        .collect();
    Ok(Resolved {
        items,
        by_id,
        blocked,
        authors,
    })
}

/// The views of `posts` for `viewer`, in order. `originals` may hold the posts they repost or
/// quote (a feed page has them); the others are read from the post cache. A repost whose post
/// is gone or across a block is left out.
pub(crate) async fn views(
    state: &AppState,
    viewer: u64,
    posts: &[Arc<Post>],
    originals: &[Arc<Post>],
) -> Result<Vec<PostView>, ApiError> {
    let r = resolve(state, viewer, posts, originals, FragmentUse::None).await?;
    let summary = |id: u64| r.summary(id).map(|a| ActorView::from(&**a));
    Ok(r.items
        .iter()
        .map(|item| {
            let p = &item.post;
            let mut v = PostView::from(&**p);
            v.author_summary = summary(p.author);
            v.counts = Some(PostCounts::from(item.counts));
            v.viewer = Some(ViewerState {
                liked: item.me.liked,
                reposted: item.me.reposted,
            });
            if let Some(rp) = &item.repost {
                v.reposted_by = summary(rp.author);
                v.repost_id = Some(rp.id.to_string());
            }
            v.quoted = r.quoted(p).map(|q| QuotedView::new(q, summary(q.author)));
            v
        })
        .collect())
}

/// Writes the views of `posts` for `viewer` as a JSON array into `out`: byte for byte what
/// serde writes for [`views`]' answer, each post's own fields and author summary spliced in
/// pre-serialized from [`crate::fragments`] (the feed's read path).
pub(crate) async fn write_items(
    state: &AppState,
    viewer: u64,
    posts: &[Arc<Post>],
    originals: &[Arc<Post>],
    out: &mut Vec<u8>,
) -> Result<(), ApiError> {
    let r = resolve(state, viewer, posts, originals, FragmentUse::First).await?;
    write_resolved(state, &r, Live::ByHand, out)
}

/// How [`write_resolved`] writes an item's quoted post and `reposted_by`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Live {
    /// Written by hand ([`write_quoted`], [`write_actor`]): the feed's path.
    ByHand,
    /// Through serde's [`QuotedView`] and [`ActorView`]: how they were written before, kept for
    /// `benches/hydrate.rs` to compare in one run.
    BySerde,
}

/// Writes the items of a resolved page as a JSON array into `out` (see [`write_items`]).
fn write_resolved(
    state: &AppState,
    r: &Resolved,
    live: Live,
    out: &mut Vec<u8>,
) -> Result<(), ApiError> {
    out.push(b'[');
    for (i, item) in r.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let p = &item.post;
        match (&item.fragment, r.marked(p.author)) {
            (Some(f), _) => out.extend_from_slice(f.json()),
            (None, Some(a)) => state.fragments.write(p, a.author.as_ref(), a.mark, out),
            // Every shown post without a fragment had its author looked up.
            (None, None) => {
                return Err(ApiError::Internal(format!("no summary for post {}", p.id)));
            }
        }
        if let Some(q) = r.quoted(p) {
            out.extend_from_slice(b",\"quoted\":");
            if live == Live::ByHand {
                write_quoted(out, q, r.summary(q.author));
            } else {
                let summary = r.summary(q.author).map(|a| ActorView::from(&**a));
                json(out, &QuotedView::new(q, summary))?;
            }
        }
        write_counts(out, item.counts);
        write_viewer(out, item.me);
        if let Some(rp) = &item.repost {
            if let Some(a) = r.summary(rp.author) {
                out.extend_from_slice(b",\"reposted_by\":");
                if live == Live::ByHand {
                    write_actor(out, a);
                } else {
                    json(out, &ActorView::from(&**a))?;
                }
            }
            out.extend_from_slice(b",\"repost_id\":\"");
            out.extend_from_slice(itoa::Buffer::new().format(rp.id).as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

/// Appends `,"counts":{…}` as serde writes [`PostCounts`] (numbers only: no serializer needed).
fn write_counts(out: &mut Vec<u8>, c: Counts) {
    let mut n = itoa::Buffer::new();
    for (name, v) in [
        (&b",\"counts\":{\"likes\":"[..], c.likes),
        (b",\"replies\":", c.replies),
        (b",\"reposts\":", c.reposts),
        (b",\"quotes\":", c.quotes),
    ] {
        out.extend_from_slice(name);
        out.extend_from_slice(n.format(v).as_bytes());
    }
    out.push(b'}');
}

/// Appends `,"viewer":{…}` as serde writes [`ViewerState`].
fn write_viewer(out: &mut Vec<u8>, me: ViewerFlags) {
    let flag = |b: bool| if b { &b"true"[..] } else { b"false" };
    out.extend_from_slice(b",\"viewer\":{\"liked\":");
    out.extend_from_slice(flag(me.liked));
    out.extend_from_slice(b",\"reposted\":");
    out.extend_from_slice(flag(me.reposted));
    out.push(b'}');
}

/// Appends `a` as serde writes its [`ActorView`] (`reposted_by`, a quoted post's summary).
fn write_actor(out: &mut Vec<u8>, a: &Author) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(n.format(a.id).as_bytes());
    out.extend_from_slice(b"\",\"handle\":");
    write_str(out, &a.handle);
    out.extend_from_slice(b",\"display_name\":");
    write_str(out, &a.display_name);
    if let Some(m) = a.avatar {
        out.extend_from_slice(b",\"avatar\":\"");
        out.extend_from_slice(n.format(m).as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// Appends the quoted post `q` as serde writes its [`QuotedView`] with `author`'s summary.
fn write_quoted(out: &mut Vec<u8>, q: &Post, author: Option<&Arc<Author>>) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(n.format(q.id).as_bytes());
    out.extend_from_slice(b"\",\"author\":\"");
    out.extend_from_slice(n.format(q.author).as_bytes());
    out.push(b'"');
    if let Some(a) = author {
        out.extend_from_slice(b",\"author_summary\":");
        write_actor(out, a);
    }
    out.extend_from_slice(b",\"text\":");
    write_str(out, &q.text);
    out.extend_from_slice(b",\"media\":[");
    for (i, m) in q.media.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(n.format(*m).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"created_at\":\"");
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(q.created_at_ms);
    // Digits, dashes, colons and a dot: nothing to escape. Writing into a Vec cannot fail.
    if write!(out, "{}", humantime::format_rfc3339_millis(at)).is_err() {
        out.extend_from_slice(crate::extract::rfc3339(q.created_at_ms).as_bytes());
    }
    out.extend_from_slice(b"\"}");
}

/// Appends `s` as a JSON string, escaped as serde escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // A string into a Vec: serde_json cannot fail (it fails only on the writer's errors).
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// Appends `v` as JSON to the page's buffer.
fn json<T: serde::Serialize>(out: &mut Vec<u8>, v: &T) -> Result<(), ApiError> {
    serde_json::to_writer(out, v).map_err(|e| ApiError::Internal(e.to_string()))
}

/// How [`feed_page_json`] writes a page.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageJson {
    /// Each post's own fields only, as the feed answered before hydration.
    Bare,
    /// Hydrated, [`views`] serialized by serde (the other lists' path).
    Views,
    /// Hydrated, written by [`write_items`] with pre-serialized posts (the feed's path).
    Spliced,
    /// As `Spliced`, the quoted post and `reposted_by` through serde (the path before they
    /// were written by hand).
    SplicedSerde,
    /// As `Spliced`, every author summary looked up and the fragments checked against them
    /// (the path before a fragment was taken first, saving its author's lookup).
    SplicedAfterAuthors,
}

/// `viewer`'s first feed page of `limit` as a JSON array, written `how`: for
/// `benches/hydrate.rs`, which compares them in one run.
#[doc(hidden)]
pub async fn feed_page_json(
    state: &AppState,
    viewer: u64,
    limit: usize,
    how: PageJson,
) -> Result<Vec<u8>, ApiError> {
    let page = state.feed.page(viewer, None, limit).await?;
    let to_json =
        |v: &Vec<PostView>| serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()));
    match how {
        PageJson::Bare => to_json(&page.posts.iter().map(|p| PostView::from(&**p)).collect()),
        PageJson::Views => to_json(&views(state, viewer, &page.posts, &page.originals).await?),
        PageJson::Spliced => {
            let mut out = Vec::with_capacity(512 * page.posts.len());
            write_items(state, viewer, &page.posts, &page.originals, &mut out).await?;
            Ok(out)
        }
        PageJson::SplicedSerde | PageJson::SplicedAfterAuthors => {
            let (fragments, live) = if how == PageJson::SplicedSerde {
                (FragmentUse::First, Live::BySerde)
            } else {
                (FragmentUse::AfterAuthors, Live::ByHand)
            };
            let mut out = Vec::with_capacity(512 * page.posts.len());
            let r = resolve(state, viewer, &page.posts, &page.originals, fragments).await?;
            write_resolved(state, &r, live, &mut out)?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_store::{HlcClock, Limits, NodeId, RegionId, open_memory};

    /// The hand-written summary and quoted post are serde's bytes: an avatar or none, media or
    /// none, a summary or none, texts to escape (quotes, a backslash, control characters, non-ASCII).
    #[test]
    fn hand_written_live_parts_are_serdes_bytes() {
        let texts = [
            "plain",
            "a \"quoted\" \\ back\nline\t\u{1}",
            "é \u{1F600} </script>",
        ];
        for (i, text) in texts.into_iter().enumerate() {
            for avatar in [None, Some(u64::MAX)] {
                let a = Arc::new(Author {
                    id: 7 + i as u64,
                    handle: format!("h{i}"),
                    display_name: text.into(),
                    avatar,
                });
                let mut out = Vec::new();
                write_actor(&mut out, &a);
                let want = serde_json::to_vec(&ActorView::from(&*a)).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&want)
                );
                for media in [vec![], vec![3], vec![1, u64::MAX]] {
                    let q = Post {
                        id: 1 << 40,
                        author: a.id,
                        text: text.into(),
                        media,
                        created_at_ms: 1_700_000_000_123,
                        edited_at_ms: Some(1_700_000_000_999),
                        repost_of: None,
                        quote_of: Some(5),
                    };
                    for summary in [None, Some(&a)] {
                        let mut out = Vec::new();
                        write_quoted(&mut out, &q, summary);
                        let view = QuotedView::new(&q, summary.map(|a| ActorView::from(&**a)));
                        let want = serde_json::to_vec(&view).unwrap();
                        assert_eq!(
                            String::from_utf8_lossy(&out),
                            String::from_utf8_lossy(&want)
                        );
                    }
                }
            }
        }
    }

    /// The feed's spliced page is byte for byte the serde page — reposts, quotes, a quote and a
    /// repost across a block, likes, a text to escape — when its fragments are written, when
    /// they are reused, and after an edit and a profile change replaced what they were written
    /// from.
    #[tokio::test]
    async fn the_spliced_page_is_the_serde_page_before_and_after_changes() {
        let node = NodeId::new(RegionId::from_name("t"), 1);
        let clock = Arc::new(HlcClock::new());
        let state = crate::testing::state(open_memory(node, clock, Limits::default()));
        let (g, posts) = (&state.graph, &state.posts);
        let user = |h: &'static str| async move {
            g.sign_up(h, "password1", None, None).await.unwrap().0.id
        };
        let reader = user("reader").await;
        let (stranger, hider) = (user("stranger").await, user("hider").await);
        let mut authors = Vec::new();
        for h in ["author0", "author1", "author2", "author3"] {
            let a = user(h).await;
            g.follow(reader, a).await.unwrap();
            authors.push(a);
        }
        g.block(hider, reader).await.unwrap();
        let text = "a \"stranger's\" post\nwith é and \u{1F600}";
        let seen = posts
            .create(stranger, "t", text, &[], None)
            .await
            .unwrap()
            .0;
        let hidden = posts
            .create(hider, "t", "hidden", &[], None)
            .await
            .unwrap()
            .0;
        posts.repost(seen.id, authors[0]).await.unwrap();
        posts.repost(hidden.id, authors[1]).await.unwrap();
        for (a, q) in [(authors[2], &hidden), (authors[3], &seen)] {
            let (p, _) = posts
                .create_linked(
                    a,
                    "t",
                    "look",
                    &[],
                    None,
                    starling_posts::Links::quoting(q.id),
                )
                .await
                .unwrap();
            posts.link_quote(p.id, q.id).await.unwrap();
        }
        let plain = posts
            .create(authors[3], "t", "plain", &[], None)
            .await
            .unwrap()
            .0;
        posts.likes().like(plain.id, reader).await.unwrap();
        posts.likes().like(seen.id, authors[2]).await.unwrap();
        posts.likes().catch_up().await.unwrap();
        state.feed.catch_up().await.unwrap();
        let page = |how| feed_page_json(&state, reader, 20, how);
        let check = |views: &[u8], spliced: &[u8]| {
            assert_eq!(
                String::from_utf8_lossy(spliced),
                String::from_utf8_lossy(views)
            );
        };
        let views = page(PageJson::Views).await.unwrap();
        check(&views, &page(PageJson::Spliced).await.unwrap());
        check(&views, &page(PageJson::Spliced).await.unwrap());
        check(&views, &page(PageJson::SplicedSerde).await.unwrap());
        check(&views, &page(PageJson::SplicedAfterAuthors).await.unwrap());
        assert!(
            state.fragments.hits() > 0,
            "the second page reused fragments"
        );
        let v: serde_json::Value = serde_json::from_slice(&views).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 4, "the repost across the block left out: {v}");
        assert!(
            items
                .iter()
                .any(|i| i["reposted_by"]["handle"] == "author0")
        );
        assert!(items.iter().any(|i| i["quoted"]["text"] == text));
        let hidden_id = hidden.id.to_string();
        assert!(
            items
                .iter()
                .any(|i| i["quote_of"] == hidden_id.as_str() && i.get("quoted").is_none())
        );
        assert!(items.iter().any(|i| i["viewer"]["liked"] == true));

        posts.edit(plain.id, authors[3], "edited").await.unwrap();
        state.feed.post_changed(plain.id).await;
        g.set_profile(authors[3], None, Some(Some(99)))
            .await
            .unwrap();
        state.feed.catch_up().await.unwrap();
        let views = page(PageJson::Views).await.unwrap();
        let spliced = page(PageJson::Spliced).await.unwrap();
        check(&views, &spliced);
        let after = String::from_utf8(spliced).unwrap();
        assert!(after.contains("\"text\":\"edited\""), "{after}");
        assert!(after.contains("\"avatar\":\"99\""), "{after}");
    }
}
