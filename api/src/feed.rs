//! `GET /v1/feed`: the caller's home timeline, its posts and reposts hydrated
//! ([`crate::hydrate`]), the page written as JSON into one buffer with each post's own fields
//! spliced in pre-serialized ([`crate::fragments`]).

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::Query;
use crate::extract::{ListParams, parse_since};
use crate::paging::{JsonBytes, Page};
use crate::posts::PostList;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use starling_feed::FeedError;

impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Store(s) => s.into(),
            FeedError::Graph(g) => g.into(),
            FeedError::Posts(p) => p.into(),
            FeedError::Tier(t) => ApiError::Internal(t.to_string()),
        }
    }
}

/// `?limit=&cursor=&since=` of the feed.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedParams {
    /// 1–100, default 20.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Opaque cursor from a previous page's `next_cursor` (or its `Link: rel="next"`).
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    cursor: Option<String>,
    /// Only posts newer than this post id (the newest a client holds): the pages end where
    /// they reach it.
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    since: Option<String>,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/feed", get(feed))
}

#[utoipa::path(get, path = "/v1/feed", tag = "posts", security(("bearer" = [])), params(FeedParams),
    responses((status = 200, description = "posts of followed users, newest first", body = PostList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 206, description = "the timeline is being rebuilt (the user was inactive or is new here): what is ready, same shape", body = PostList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 400, description = "bad limit or cursor, or a repeated query parameter", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn feed(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    uri: Uri,
    Query(q): Query<FeedParams>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .parse()?;
    let since = parse_since(q.since.as_deref(), "post")?;
    let page = state.feed.page(me, cursor, limit).await?;
    let status = if page.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut next = page.next;
    // Newest first: once a page reaches `since`, nothing after it is newer.
    let newer = |id: u64| since.is_none_or(|s| id > s);
    if page.posts.iter().any(|p| !newer(p.id)) || next.is_some_and(|n| !newer(n)) {
        next = None;
    }
    let next = next.map(|n| n.to_string());
    // A repost counts by its own id (its timeline entry), not the reposted post's.
    let posts: Vec<_> = page.posts.into_iter().filter(|p| newer(p.id)).collect();
    // A [`PostList`], written straight into one buffer sized for the page.
    let mut body = Vec::with_capacity(64 + ITEM_BYTES * posts.len());
    body.extend_from_slice(b"{\"items\":");
    crate::hydrate::write_items(&state, me, &posts, &page.originals, &mut body).await?;
    body.extend_from_slice(b",\"next_cursor\":");
    serde_json::to_writer(&mut body, &next).map_err(|e| ApiError::Internal(e.to_string()))?;
    body.push(b'}');
    let cursor = next.as_deref().map(|n| ("cursor", n));
    Ok(Page::new(&uri, cursor, JsonBytes(body))
        .with_status(status)
        .into_json_response())
}

/// About the bytes of a hydrated feed item with a short text (the buffer's first size).
const ITEM_BYTES: usize = 512;
