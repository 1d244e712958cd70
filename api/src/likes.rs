//! `/v1/posts/{id}/like` (like, unlike), `/v1/posts/{id}/likes` (who liked) and
//! `/v1/posts/{id}/repost` (repost, undo), over [`starling_posts::likes`] and
//! [`starling_posts::reposts`]. A like or a repost is idempotent and never counted twice; the
//! counts a post view carries are this node's, derived from the replicated elements a few
//! milliseconds behind them.

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::{ListParams, Path, Query, parse_id};
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
        .route("/v1/posts/{id}/repost", put(repost).delete(unrepost))
        .route("/v1/posts/{id}/reposts", get(reposters))
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
    let post = crate::posts::readable_post(&state, id, me).await?;
    // Indexed by liker first, so a deleted account's likes are found and taken back.
    state.posts.note_like(me, id).await?;
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
    state.posts.forget_like(me, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/posts/{id}/likes", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id"), crate::extract::ListParams),
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
    crate::posts::readable_post(&state, id, me).await?;
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

#[utoipa::path(put, path = "/v1/posts/{id}/repost", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id (a repost's id reposts the post it reposts)")),
    description = "Reposts a post: the repost reaches the caller's followers' home feeds like a post (a feed shows a post once, however many reposts of it arrive), and the author is notified once. Idempotent: a retry, or the same repost from another region, is one repost. `counts.reposts` follows within milliseconds; the caller's `viewer.reposted` at once.",
    responses((status = 204, description = "reposted (idempotent)"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the author blocked the caller, or the caller blocked the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted post", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn repost(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut post = state.posts.get(parse_id(&id)?).await?;
    if let Some(original) = post.repost_of {
        post = state.posts.get(original).await?;
    }
    crate::posts::readable_by(&state, post.author, me).await?;
    let (_, created) = state.posts.repost(post.id, me).await?;
    if created {
        let kind = starling_posts::notifications::NotificationKind::Repost;
        crate::notifications::notify(&state, post.author, kind, me, Some(post.id), None).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/posts/{id}/repost", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "the reposted post's id")),
    description = "Takes the caller's repost back: it leaves the followers' feeds. Idempotent, and allowed on a deleted post (204 whether or not there was a repost).",
    responses((status = 204, description = "not reposted (idempotent)"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn unrepost(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if let Some(repost) = state.posts.unrepost(id, me).await? {
        state.feed.post_changed(repost).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/posts/{id}/reposts", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id"), crate::extract::ListParams),
    description = "The users who repost a post, by ascending id; `cursor` is the last id of the previous page.",
    responses((status = 200, description = "a page of reposters", body = UserList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 400, description = "bad id, limit or cursor, or a repeated query parameter", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the author blocked the caller, or the caller blocked the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted post", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn reposters(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    uri: Uri,
    Query(q): Query<ListParams>,
) -> Result<Page<UserList>, ApiError> {
    let id = parse_id(&id)?;
    let (limit, cursor) = q.parse()?;
    crate::posts::readable_post(&state, id, me).await?;
    let page = state.posts.reposters(id, cursor, limit).await?;
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
