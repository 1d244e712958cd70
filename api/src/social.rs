//! `/v1/following`, followers/following lists, friend requests, friends, blocks.

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::{JsonBody, ListParams, parse_id};
use crate::extract::{Path, Query};
use crate::paging::Page;
use crate::problem::ApiError;
use crate::users::UserView;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use starling_graph::follows::IdPage;
use starling_graph::friends::{FriendRequest, RequestState};
use starling_posts::notifications::NotificationKind;

/// A page of users.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct UserList {
    items: Vec<UserView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRequest {
    /// The user asked.
    #[schema(value_type = crate::contract::Id)]
    to: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct RequestView {
    id: String,
    from: String,
    to: String,
    #[schema(value_type = String, pattern = "^(pending|accepted)$", example = "pending")]
    state: &'static str,
}

impl From<FriendRequest> for RequestView {
    fn from(r: FriendRequest) -> Self {
        RequestView {
            id: r.id.to_string(),
            from: r.from.to_string(),
            to: r.to.to_string(),
            state: match r.state {
                RequestState::Pending => "pending",
                RequestState::Accepted => "accepted",
            },
        }
    }
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/following/{id}", put(follow).delete(unfollow))
        .route("/v1/users/{id}/followers", get(followers))
        .route("/v1/users/{id}/following", get(following))
        .route(
            "/v1/friend-requests",
            post(request_friend).get(list_friend_requests),
        )
        .route("/v1/friend-requests/{id}", delete(cancel_friend))
        .route("/v1/friend-requests/{id}/accept", post(accept_friend))
        .route("/v1/friend-requests/{id}/decline", post(decline_friend))
        .route("/v1/friends", get(friends))
        .route("/v1/blocks/{id}", put(block).delete(unblock))
}

/// Applies follow changes to the timelines now, so the caller reads their own follows; the
/// feed worker applies them again from the change feed (idempotent), so a failure here only
/// delays them.
async fn feed_sees(state: &AppState, edges: &[(u64, u64)]) {
    for (follower, followee) in edges {
        if let Err(e) = state.feed.follow_changed(*follower, *followee).await {
            tracing::warn!(error = %e, "timeline update after a follow change deferred to the feed worker");
        }
    }
}

/// A page of users as the body alone (no `Link`); see [`user_page`].
pub(crate) async fn user_list(state: &AppState, page: IdPage) -> Result<Json<UserList>, ApiError> {
    let users = state.graph.users(&page.ids).await?;
    Ok(Json(UserList {
        items: users.into_iter().map(UserView::from).collect(),
        next_cursor: page.next.map(|n| n.to_string()),
    }))
}

/// The user `id` a list is asked of (404 when unknown) and the page `q` asks for: `(id, limit,
/// cursor)`, refused in that order.
async fn known_user_page(
    state: &AppState,
    id: &str,
    q: &ListParams,
) -> Result<(u64, usize, Option<u64>), ApiError> {
    let id = parse_id(id)?;
    let (limit, cursor) = q.parse()?;
    if !state.graph.exists(id).await? {
        return Err(ApiError::NotFound("user not found"));
    }
    Ok((id, limit, cursor))
}

/// A page of users with the `Link` of the next page.
pub(crate) async fn user_page(
    state: &AppState,
    uri: &Uri,
    page: IdPage,
) -> Result<Page<UserList>, ApiError> {
    let link = page.next.map(|n| n.to_string());
    let Json(list) = user_list(state, page).await?;
    Ok(Page::new(uri, link.as_deref().map(|n| ("cursor", n)), list))
}

#[utoipa::path(put, path = "/v1/following/{id}", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id")),
    responses((status = 204, description = "following (idempotent)"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "blocked", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "one cannot follow oneself", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn follow(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let already = state.graph.is_following(me, id).await?;
    state.graph.follow(me, id).await?;
    feed_sees(&state, &[(me, id)]).await;
    if !already {
        crate::notifications::notify(&state, id, NotificationKind::Follow, me, None, None).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/following/{id}", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id")),
    responses((status = 204, description = "not following (idempotent)"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn unfollow(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state.graph.unfollow(me, id).await?;
    feed_sees(&state, &[(me, id)]).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/users/{id}/followers", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id"), crate::extract::ListParams),
    responses((status = 200, description = "a page of followers", body = UserList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn followers(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<String>,
    uri: Uri,
    Query(q): Query<ListParams>,
) -> Result<Page<UserList>, ApiError> {
    let (id, limit, cursor) = known_user_page(&state, &id, &q).await?;
    let page = state.graph.followers(id, cursor, limit).await?;
    user_page(&state, &uri, page).await
}

#[utoipa::path(get, path = "/v1/users/{id}/following", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id"), crate::extract::ListParams),
    responses((status = 200, description = "a page of followed users", body = UserList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn following(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<String>,
    uri: Uri,
    Query(q): Query<ListParams>,
) -> Result<Page<UserList>, ApiError> {
    let (id, limit, cursor) = known_user_page(&state, &id, &q).await?;
    let page = state.graph.following(id, cursor, limit).await?;
    user_page(&state, &uri, page).await
}

#[utoipa::path(post, path = "/v1/friend-requests", tag = "graph", security(("bearer" = [])), request_body = NewRequest,
    responses((status = 201, description = "request sent", body = RequestView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "blocked", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "one cannot befriend oneself", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn request_friend(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(b): JsonBody<NewRequest>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let to = parse_id(&b.to)?;
    let r = state.graph.request_friend(me, to).await?;
    crate::notifications::notify(&state, to, NotificationKind::FriendRequest, me, None, None).await;
    Ok((StatusCode::CREATED, Json(r.into())))
}

/// `?direction=&limit=&cursor=` of the friend-request lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RequestListParams {
    /// `incoming` (addressed to the caller; the default) or `outgoing` (sent by the caller).
    #[param(value_type = Option<String>, pattern = "^(incoming|outgoing)$")]
    direction: Option<String>,
    /// 1–100, default 20.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page (or its `Link: rel="next"`).
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    cursor: Option<String>,
}

/// A page of pending friend requests.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct RequestList {
    items: Vec<RequestView>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/friend-requests", tag = "graph", security(("bearer" = [])), params(RequestListParams),
    description = "The caller's pending friend requests, by request id: addressed to them (`direction=incoming`, the default) or sent by them (`outgoing`). Accepted, declined and cancelled requests are not listed.",
    responses((status = 200, description = "a page of pending requests", body = RequestList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_friend_requests(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    uri: Uri,
    Query(q): Query<RequestListParams>,
) -> Result<Page<RequestList>, ApiError> {
    let incoming = match q.direction.as_deref() {
        None | Some("incoming") => true,
        Some("outgoing") => false,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "direction is incoming or outgoing".into(),
            ));
        }
    };
    let (limit, cursor) = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .parse()?;
    let (requests, next) = state
        .graph
        .friend_requests(me, incoming, cursor, limit)
        .await?;
    let next = next.map(|n| n.to_string());
    let list = RequestList {
        items: requests.into_iter().map(RequestView::from).collect(),
        next_cursor: next.clone(),
    };
    let link = next.as_deref().map(|n| ("cursor", n));
    Ok(Page::new(&uri, link, list))
}

#[utoipa::path(post, path = "/v1/friend-requests/{id}/decline", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "request id")),
    responses((status = 204, description = "declined: the request is deleted"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not the addressee", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown request (or declined or cancelled already)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "accepted already", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn decline_friend(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .graph
        .withdraw_friend_request(parse_id(&id)?, me, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/friend-requests/{id}", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "request id")),
    responses((status = 204, description = "cancelled: the request is deleted"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not the sender", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown request (or declined or cancelled already)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "accepted already", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn cancel_friend(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .graph
        .withdraw_friend_request(parse_id(&id)?, me, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/friend-requests/{id}/accept", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "request id")),
    responses((status = 200, description = "accepted: mutual follow and friendship", body = RequestView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not the addressee", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown request", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn accept_friend(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let r = state.graph.accept_friend(parse_id(&id)?, me).await?;
    feed_sees(&state, &[(r.from, r.to), (r.to, r.from)]).await;
    crate::notifications::notify(
        &state,
        r.from,
        NotificationKind::FriendAccept,
        me,
        None,
        None,
    )
    .await;
    Ok(Json(r.into()))
}

#[utoipa::path(get, path = "/v1/friends", tag = "graph", security(("bearer" = [])), params(crate::extract::ListParams),
    responses((status = 200, description = "a page of friends", body = UserList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn friends(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    uri: Uri,
    Query(q): Query<ListParams>,
) -> Result<Page<UserList>, ApiError> {
    let (limit, cursor) = q.parse()?;
    let page = state.graph.friends(me, cursor, limit).await?;
    user_page(&state, &uri, page).await
}

#[utoipa::path(put, path = "/v1/blocks/{id}", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id")),
    responses((status = 204, description = "blocked; follows removed both ways"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "one cannot block oneself", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn block(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state.graph.block(me, id).await?;
    feed_sees(&state, &[(me, id), (id, me)]).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/blocks/{id}", tag = "graph", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id")),
    responses((status = 204, description = "unblocked"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn unblock(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.graph.unblock(me, parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
