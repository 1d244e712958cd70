//! `/v1/posts/{id}/like` (like, unlike) and `/v1/posts/{id}/likes` (who liked), over
//! [`starling_posts::likes`]. A like is idempotent and never counted twice; the count a post
//! view carries is this node's, derived from the replicated likes a few milliseconds behind them.

use crate::AppState;
use crate::auth::AuthUser;
use crate::json::{ListParams, Path, Query, parse_id};
use crate::paging::Page;
use crate::problem::ApiError;
use crate::social::UserList;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, put};
use starling_graph::follows::IdPage;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/posts/{id}/like", put(like).delete(unlike))
        .route("/v1/posts/{id}/likes", get(likers))
}

#[utoipa::path(put, path = "/v1/posts/{id}/like", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id")),
    description = "Likes a post. Idempotent: a retry, or the same like from another region, is one like. The post's `counts.likes` follows within milliseconds (it is derived from the replicated likes on each node); the caller's `viewer.liked` at once.",
    responses((status = 204, description = "liked (idempotent)"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the author blocked the caller, or the caller blocked the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted post", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn like(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let post = state.posts.get(id).await?;
    crate::posts::readable_by(&state, post.author, me).await?;
    if state.posts.likes().like(id, me).await? {
        let like = starling_posts::notifications::NotificationKind::Like;
        crate::notifications::notify(&state, post.author, like, me, Some(id), None).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/posts/{id}/like", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id")),
    description = "Takes the caller's like back. Idempotent, and allowed on a deleted post (204 whether or not there was a like).",
    responses((status = 204, description = "not liked (idempotent)"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn unlike(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state.posts.likes().unlike(id, me).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/posts/{id}/likes", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id"), crate::json::ListParams),
    description = "The users who like a post, by ascending id; `cursor` is the last id of the previous page.",
    responses((status = 200, description = "a page of likers", body = UserList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the author blocked the caller, or the caller blocked the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted post", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn likers(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    uri: Uri,
    Query(q): Query<ListParams>,
) -> Result<Page<UserList>, ApiError> {
    let id = parse_id(&id)?;
    let (limit, cursor) = q.parse()?;
    let post = state.posts.get(id).await?;
    crate::posts::readable_by(&state, post.author, me).await?;
    let page = state.posts.likes().likers(id, cursor, limit).await?;
    crate::social::user_page(
        &state,
        &uri,
        IdPage {
            ids: page.ids,
            next: page.next,
        },
    )
    .await
}
