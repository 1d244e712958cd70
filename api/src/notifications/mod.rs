//! `GET /v1/notifications` (newest first, likes and reposts of one post grouped, the unread
//! count) and `PUT /v1/notifications/read` (the read-up-to marker), over
//! [`starling_posts::notifications`]. [`notify`] is how the other handlers create them;
//! [`live`] delivers each to the recipient's WebSocket connections.

pub(crate) mod live;
mod notify;

pub(crate) use notify::{notify, post_created};

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::{JsonBody, ListParams, Query, parse_id, rfc3339};
use crate::paging::Page;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use starling_posts::notifications::Group;

/// Actors shown on one grouped item (the newest); `actors_count` says how many there were.
pub const MAX_ACTORS: usize = 8;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/notifications", get(list))
        .route("/v1/notifications/read", put(mark_read))
}

/// Who did something: a user summary.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
pub(crate) struct ActorView {
    #[schema(value_type = crate::contract::Id)]
    pub(crate) id: String,
    pub(crate) handle: String,
    pub(crate) display_name: String,
    /// The avatar's media id, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::contract::Id>)]
    pub(crate) avatar: Option<String>,
}

/// One notification, or several likes (reposts) of one post folded into one.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct NotificationView {
    /// The (newest folded) notification's id: `PUT /v1/notifications/read` takes it.
    #[schema(value_type = crate::contract::Id)]
    id: String,
    /// What happened.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(follow|friend_request|friend_accept|like|reply|repost|quote|mention)$", example = "like")]
    kind: &'static str,
    /// Who, newest first (at most 8; a user who was deleted is left out).
    actors: Vec<ActorView>,
    /// How many users the item folds (more than `actors` holds when over 8).
    actors_count: usize,
    /// The caller's post concerned (liked, replied to, reposted, quoted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::contract::Id>)]
    post: Option<String>,
    /// The post the actor wrote (the reply, the quote, the post that mentions).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::contract::Id>)]
    subject: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// At or below the caller's read marker.
    read: bool,
}

/// A page of notifications.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct NotificationList {
    items: Vec<NotificationView>,
    #[schema(value_type = Option<String>)]
    next_cursor: Option<String>,
    /// The caller's notifications newer than their read marker (of the newest 400 kept).
    unread_count: u64,
}

/// `?limit=&cursor=&since=` of the notifications.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NotificationParams {
    /// 1–100, default 20.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Opaque cursor from a previous page's `next_cursor` (or its `Link: rel="next"`).
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    cursor: Option<String>,
    /// Only notifications newer than this notification id: the pages end where they reach it.
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    since: Option<String>,
}

/// `{"up_to"}` of `PUT /v1/notifications/read`.
#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadUpTo {
    /// The newest notification read (an item's `id`).
    #[schema(value_type = crate::contract::Id)]
    up_to: String,
}

/// The summary of `id`, or `None` for a user who is gone.
async fn actor(state: &AppState, id: u64) -> Result<Option<ActorView>, ApiError> {
    let user = match state.graph.user(id).await {
        Ok(u) => u,
        Err(starling_graph::GraphError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let avatar = state.graph.profile(id).await?.avatar;
    Ok(Some(ActorView {
        id: user.id.to_string(),
        handle: user.handle,
        display_name: user.display_name,
        avatar: avatar.map(|a| a.to_string()),
    }))
}

/// The view of a group for `viewer` (whose read marker is `marker`); `None` when every actor
/// is now blocked either way (nothing is shown across a block) or deleted their account.
pub(crate) async fn view(
    state: &AppState,
    viewer: u64,
    g: &Group,
    marker: u64,
) -> Result<Option<NotificationView>, ApiError> {
    let mut actors = Vec::new();
    let mut count = 0;
    for &a in &g.actors {
        // Nothing across a block, nothing from a deleted account.
        if state.graph.blocked_either(viewer, a).await? || state.graph.is_deleted(a).await? {
            continue;
        }
        count += 1;
        if actors.len() < MAX_ACTORS
            && let Some(v) = actor(state, a).await?
        {
            actors.push(v);
        }
    }
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(NotificationView {
        id: g.id.to_string(),
        kind: g.kind.name(),
        actors,
        actors_count: count,
        post: g.post.map(|p| p.to_string()),
        subject: g.subject.map(|p| p.to_string()),
        created_at: rfc3339(g.created_at_ms),
        read: g.id <= marker,
    }))
}

#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])), params(NotificationParams),
    description = "The caller's notifications, newest first: follows, friend requests and acceptances, likes, replies, reposts, quotes and mentions of the caller (never from a user either side has blocked). Likes (reposts) of one post within a page are one item with several `actors`, at the place of the newest. The newest 400 notifications are kept. `unread_count` counts those newer than the read marker.",
    responses((status = 200, description = "a page of notifications", body = NotificationList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 400, description = "bad limit, cursor or since, or a repeated query parameter", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    uri: Uri,
    Query(q): Query<NotificationParams>,
) -> Result<Page<NotificationList>, ApiError> {
    let (limit, cursor) = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .parse()?;
    let since = crate::extract::parse_since(q.since.as_deref(), "notification")?;
    let n = state.posts.notifications();
    let page = n.page(me, cursor, since, limit).await?;
    let marker = n.read_marker(me).await?;
    let mut items = Vec::new();
    for g in starling_posts::notifications::group(&page.items) {
        if let Some(v) = view(&state, me, &g, marker).await? {
            items.push(v);
        }
    }
    let next = page.next.map(|n| n.to_string());
    let list = NotificationList {
        items,
        next_cursor: next.clone(),
        unread_count: n.unread(me).await?,
    };
    Ok(Page::new(
        &uri,
        next.as_deref().map(|c| ("cursor", c)),
        list,
    ))
}

#[utoipa::path(put, path = "/v1/notifications/read", tag = "notifications", security(("bearer" = [])), request_body = ReadUpTo,
    description = "Marks the caller's notifications up to `up_to` (an item's id) read. The marker only moves forward: an older id changes nothing (204 all the same); marks made in two regions at once merge to the newer.",
    responses((status = 204, description = "marked"), (status = 400, description = "malformed body or id", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "not an object, or a missing or unknown field", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(b): JsonBody<ReadUpTo>,
) -> Result<StatusCode, ApiError> {
    let up_to = parse_id(&b.up_to)?;
    state.posts.notifications().mark_read(me, up_to).await?;
    Ok(StatusCode::NO_CONTENT)
}
