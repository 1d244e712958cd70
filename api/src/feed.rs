//! `GET /v1/feed`: the caller's home timeline.

use crate::AppState;
use crate::auth::AuthUser;
use crate::json::ListParams;
use crate::posts::{PostList, PostView};
use crate::problem::ApiError;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use starling_feed::FeedError;

impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Store(s) => s.into(),
            FeedError::Graph(g) => g.into(),
            FeedError::Posts(p) => p.into(),
        }
    }
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/feed", get(feed))
}

#[utoipa::path(get, path = "/v1/feed", tag = "posts", security(("bearer" = [])), params(ListParams),
    responses((status = 200, description = "posts of followed users, newest first", body = PostList), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn feed(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<ListParams>,
) -> Result<Json<PostList>, ApiError> {
    let (limit, cursor) = q.parse()?;
    // Read your own follows: apply what the local feed holds before answering.
    state.feed.catch_up().await?;
    let page = state.feed.page(me, cursor, limit).await?;
    Ok(Json(PostList {
        items: page.posts.into_iter().map(PostView::from).collect(),
        next_cursor: page.next.map(|n| n.to_string()),
    }))
}
