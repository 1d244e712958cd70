//! `GET /v1/feed`: the caller's home timeline.

use crate::AppState;
use crate::auth::AuthUser;
use crate::json::ListParams;
use crate::json::Query;
use crate::posts::{PostList, PostView};
use crate::problem::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
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

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/feed", get(feed))
}

#[utoipa::path(get, path = "/v1/feed", tag = "posts", security(("bearer" = [])), params(ListParams),
    responses((status = 200, description = "posts of followed users, newest first", body = PostList), (status = 206, description = "the timeline is being rebuilt (the user was inactive or is new here): what is ready, same shape", body = PostList), (status = 400, description = "bad limit or cursor, or a repeated query parameter", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn feed(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<ListParams>,
) -> Result<(StatusCode, Json<PostList>), ApiError> {
    let (limit, cursor) = q.parse()?;
    let page = state.feed.page(me, cursor, limit).await?;
    let status = if page.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let list = PostList {
        items: page.posts.iter().map(|p| PostView::from(&**p)).collect(),
        next_cursor: page.next.map(|n| n.to_string()),
    };
    Ok((status, Json(list)))
}
