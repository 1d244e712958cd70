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

use crate::AppState;
use crate::notifications::ActorView;
use crate::posts::{PostCounts, PostView, QuotedView, ViewerState};
use crate::problem::ApiError;
use starling_feed::authors::Author;
use starling_posts::Post;
use std::collections::{HashMap, HashSet};
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

/// The views of `posts` for `viewer`, in order. `originals` may hold the posts they repost or
/// quote (a feed page has them); the others are read from the post cache. A repost whose post
/// is gone or across a block is left out.
pub(crate) async fn views(
    state: &AppState,
    viewer: u64,
    posts: &[Arc<Post>],
    originals: &[Arc<Post>],
) -> Result<Vec<PostView>, ApiError> {
    let mut by_id: HashMap<u64, Arc<Post>> = originals.iter().map(|p| (p.id, p.clone())).collect();
    let missing: Vec<u64> = posts
        .iter()
        .filter_map(|p| p.repost_of.or(p.quote_of))
        .filter(|o| !by_id.contains_key(o))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        for p in state.feed.posts(&missing).await? {
            by_id.insert(p.id, p);
        }
    }
    // What each item shows: the post itself, or the post a repost reposts.
    let shown: Vec<(&Post, Option<&Post>)> = posts
        .iter()
        .filter_map(|p| match p.repost_of {
            Some(o) => by_id.get(&o).map(|orig| (&**orig, Some(&**p))),
            None => Some((&**p, None)),
        })
        .collect();
    // Authors reached through someone else's repost or quote: the only ones a block can hide
    // (a followed author is never blocked either way: a block ends follows both ways).
    let mut foreign: Vec<u64> = shown
        .iter()
        .flat_map(|(p, r)| {
            let quoted = p.quote_of.and_then(|q| by_id.get(&q)).map(|q| q.author);
            let reposted = r.map(|_| p.author);
            quoted.into_iter().chain(reposted)
        })
        .filter(|a| *a != viewer)
        .collect();
    foreign.sort_unstable();
    foreign.dedup();
    let blocked_flags = state.graph.blocked_either_many(viewer, &foreign).await?;
    let blocked: HashSet<u64> = foreign
        .iter()
        .zip(blocked_flags)
        .filter_map(|(a, b)| b.then_some(*a))
        .collect();
    let shown: Vec<(&Post, Option<&Post>)> = shown
        .into_iter()
        .filter(|(p, r)| r.is_none() || !blocked.contains(&p.author))
        .collect();
    let ids: Vec<u64> = shown.iter().map(|(p, _)| p.id).collect();
    let mut people: Vec<u64> = shown
        .iter()
        .flat_map(|(p, r)| {
            let quoted = p.quote_of.and_then(|q| by_id.get(&q)).map(|q| q.author);
            [Some(p.author), r.map(|r| r.author), quoted]
        })
        .flatten()
        .collect();
    people.sort_unstable();
    people.dedup();
    let authors: HashMap<u64, ActorView> = state
        .feed
        .authors()
        .get_many(&people)
        .await?
        .into_iter()
        .flatten()
        .map(|a| (a.id, ActorView::from(&*a)))
        .collect();
    let counts = state.posts.likes().counts_many(&ids).await?;
    let own = state.posts.likes().viewer_flags(viewer, &ids).await?;
    let summary = |id: u64| authors.get(&id).cloned();
    Ok(shown
        .into_iter()
        .zip(counts)
        .zip(own)
        .map(|(((p, repost), c), me)| {
            let mut v = PostView::from(p);
            v.author_summary = summary(p.author);
            v.counts = Some(PostCounts::from(c));
            v.viewer = Some(ViewerState {
                liked: me.liked,
                reposted: me.reposted,
            });
            if let Some(r) = repost {
                v.reposted_by = summary(r.author);
                v.repost_id = Some(r.id.to_string());
            }
            v.quoted = p
                .quote_of
                .and_then(|q| by_id.get(&q))
                .filter(|q| !blocked.contains(&q.author))
                .map(|q| QuotedView::new(q, summary(q.author)));
            v
        })
        .collect())
}

/// `viewer`'s first feed page of `limit` as JSON, hydrated or (`hydrated: false`) with each
/// post's own fields only, as the feed answered before hydration: for `benches/hydrate.rs`,
/// which compares the two in one run.
#[doc(hidden)]
pub async fn feed_page_json(
    state: &AppState,
    viewer: u64,
    limit: usize,
    hydrated: bool,
) -> Result<Vec<u8>, ApiError> {
    let page = state.feed.page(viewer, None, limit).await?;
    let items: Vec<PostView> = if hydrated {
        views(state, viewer, &page.posts, &page.originals).await?
    } else {
        page.posts.iter().map(|p| PostView::from(&**p)).collect()
    };
    serde_json::to_vec(&items).map_err(|e| ApiError::Internal(e.to_string()))
}
