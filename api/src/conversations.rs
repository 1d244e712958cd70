//! `/v1/conversations` and `/v1/conversations/{id}/messages`: the REST side of chat. A message
//! posted here is stored, acknowledged and fanned out exactly like one sent over the WebSocket.

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::{JsonBody, ListParams, Path, Query, parse_id, rfc3339};
use crate::paging::Page;
use crate::problem::ApiError;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, patch, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use starling_messenger::{Change, Conversation, Message, Role};
use std::sync::Arc;

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct MemberView {
    id: String,
    /// `owner`, `admin` or `member` (both members of a 1:1 are `member`).
    role: &'static str,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct ConversationView {
    id: String,
    /// `direct` (1:1) or `group`.
    kind: &'static str,
    /// A group's name ("" for none).
    name: String,
    /// A group's topic ("" for none).
    topic: String,
    /// A group's avatar (a media id), or null.
    avatar: Option<String>,
    members: Vec<MemberView>,
    members_count: usize,
    home_region: String,
    created_at: String,
    /// The seq of the newest change of the conversation (0: as created).
    epoch: u64,
    /// The newest seq this node holds (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seq: Option<u64>,
    /// The caller's read-up-to marker (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    read_seq: Option<u64>,
    /// Others' messages after the marker (lists only; exact up to 100 entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    unread_count: Option<u64>,
    /// The newest entry (lists only; null when there is none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message: Option<Option<MessageView>>,
    /// The newest entry's time, else the creation's (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_activity_at: Option<String>,
}

impl ConversationView {
    fn new(c: &Conversation) -> Self {
        ConversationView {
            id: c.id.to_string(),
            kind: match c.kind {
                starling_messenger::ConversationKind::Direct => "direct",
                starling_messenger::ConversationKind::Group => "group",
            },
            name: c.name.clone(),
            topic: c.topic.clone(),
            avatar: c.avatar.map(|a| a.to_string()),
            members: c
                .members
                .iter()
                .map(|m| MemberView {
                    id: m.user.to_string(),
                    role: m.role.as_str(),
                })
                .collect(),
            members_count: c.members.len(),
            home_region: c.home_region.clone(),
            created_at: rfc3339(c.created_at_ms),
            epoch: c.epoch,
            last_seq: None,
            read_seq: None,
            unread_count: None,
            last_message: None,
            last_activity_at: None,
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct MessageView {
    conv: String,
    seq: u64,
    id: String,
    sender: String,
    body: String,
    client_id: String,
    sent_at: String,
    /// `text`; `member_added`, `member_removed`, `member_left`, `renamed`, `role_changed` (events
    /// of the group, `target` the user concerned); `edit`, `delete` (of entry `target_seq`).
    kind: &'static str,
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// When the text was last edited, or null.
    edited_at: Option<String>,
    /// Deleted: the body is gone.
    deleted: bool,
    /// The sender's account was deleted: the entry reads as from a deleted user. Its `sender` id
    /// resolves to nothing (`GET /v1/users/{id}` is 404: no handle or profile is given anywhere)
    /// and its body is kept, so the other members' history keeps every seq and its text.
    sender_deleted: bool,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            conv: m.conv.to_string(),
            seq: m.seq,
            id: m.id.to_string(),
            sender: m.sender.to_string(),
            body: m.body.clone(),
            client_id: m.client_id.clone(),
            sent_at: rfc3339(m.sent_at_ms),
            kind: m.kind.as_str(),
            target: m.target.map(|t| t.to_string()),
            target_seq: m.target_seq,
            role: m.role.map(Role::as_str),
            edited_at: m.edited_at_ms.map(rfc3339),
            deleted: m.deleted,
            sender_deleted: false,
        }
    }
}

/// Which of `senders` have deleted their accounts: one read of each distinct sender's deletion
/// record (a page of history has a few).
pub(crate) async fn deleted_senders(
    state: &AppState,
    senders: impl IntoIterator<Item = u64>,
) -> Result<std::collections::HashSet<u64>, ApiError> {
    let distinct: std::collections::BTreeSet<u64> = senders.into_iter().collect();
    let mut out = std::collections::HashSet::new();
    for id in distinct {
        if state.graph.is_deleted(id).await? {
            out.insert(id);
        }
    }
    Ok(out)
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        (&m).into()
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct ConversationList {
    /// Most recent activity first.
    items: Vec<ConversationView>,
    /// The next (older) page's `cursor`, or null on the last page.
    #[schema(pattern = "^[0-9]{1,19}\\.[0-9]{1,19}$")]
    next_cursor: Option<String>,
    /// The position of this page's newest item (or the request's `since` when it has none):
    /// pass it as `since` later to get only the conversations with newer activity.
    #[schema(pattern = "^[0-9]{1,19}\\.[0-9]{1,19}$")]
    since_cursor: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct MessageList {
    /// Ascending by seq.
    items: Vec<MessageView>,
    /// The first seq the conversation keeps (1: nothing trimmed). Entries below it are past the
    /// history retention (`--chat-history-max`, `--chat-history-max-age`): a page never holds
    /// them, and an `after_seq` below it reads from it.
    #[schema(minimum = 1)]
    first_seq: u64,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewConversation {
    /// The other members' ids (the caller is always a member). One id and no name: a 1:1
    /// conversation; a name or more ids: a group owned by the caller.
    #[schema(value_type = Vec<crate::contract::Id>)]
    members: Vec<String>,
    /// A group's name (up to 100 characters, no control characters).
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{0,100}$")]
    name: Option<String>,
    /// A group's topic (up to 500 characters, no control characters).
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{0,500}$")]
    topic: Option<String>,
    /// A group's avatar (a media id the caller uploaded).
    #[schema(value_type = Option<crate::contract::Id>)]
    avatar: Option<String>,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMessage {
    /// 1–4000 characters, not only spaces, no NUL.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = "^[^\\x00]*[^\\s\\x00][^\\x00]*$",
        example = "hi!"
    )]
    body: String,
    /// The sender's idempotency key (1–64 bytes, no NUL): a retry with it answers the original.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00]*$",
        example = "c-1"
    )]
    client_id: String,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationPatch {
    /// New name (up to 100 characters, no control characters).
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{0,100}$")]
    name: Option<String>,
    /// New topic (up to 500 characters, no control characters).
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{0,500}$")]
    topic: Option<String>,
    /// New avatar (a media id the caller uploaded; null removes it).
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<crate::contract::Id>)]
    avatar: Option<Option<String>>,
}

/// A present field, null or not (`Some(None)` for null); absent stays `None` by `default`.
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleChange {
    /// `admin`, `member`, or `owner` (transfers ownership: the caller becomes an admin).
    #[schema(pattern = "^(owner|admin|member)$", example = "admin")]
    role: String,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadMarker {
    /// Read up to this seq (markers never move backwards; capped at the newest seq).
    #[serde(deserialize_with = "crate::extract::integral_u63")]
    seq: u64,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageEdit {
    /// The new text (1–4000 characters, not only spaces, no NUL).
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = "^[^\\x00]*[^\\s\\x00][^\\x00]*$",
        example = "hi!"
    )]
    body: String,
    /// Idempotency key (1–64 bytes, no NUL): a retry with it answers the same edit.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00]*$",
        example = "c-1"
    )]
    client_id: Option<String>,
}

#[derive(Deserialize, Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessageParams {
    /// Messages with a larger seq (ascending from there; with `before_seq` too, those between).
    #[param(value_type = Option<u64>, minimum = 0)]
    after_seq: Option<String>,
    /// Messages with a smaller seq (the newest page when neither is given).
    #[param(value_type = Option<u64>, minimum = 0)]
    before_seq: Option<String>,
    /// 1–100, default 20.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", get(list).post(create))
        .route("/v1/conversations/{id}", get(read).patch(update))
        .route(
            "/v1/conversations/{id}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .route("/v1/conversations/{id}/members/{user}/role", put(set_role))
        .route("/v1/conversations/{id}/read", put(mark_read))
        .route("/v1/conversations/{id}/messages", get(messages).post(send))
        .route(
            "/v1/conversations/{id}/messages/{seq}",
            patch(edit_message).delete(delete_message),
        )
}

#[utoipa::path(post, path = "/v1/conversations", tag = "chat", security(("bearer" = [])), request_body = NewConversation,
    responses((status = 201, description = "created", body = ConversationView), (status = 200, description = "the existing 1:1 conversation of this pair", body = ConversationView),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "a block forbids a 1:1", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation or user", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "no other member, over the member cap, or a name/topic too long", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(b): JsonBody<NewConversation>,
) -> Result<(StatusCode, Json<ConversationView>), ApiError> {
    let members = b
        .members
        .iter()
        .map(|m| parse_id(m))
        .collect::<Result<Vec<u64>, _>>()?;
    let avatar = b.avatar.as_deref().map(parse_id).transpose()?;
    check_avatar(&state, me, avatar).await?;
    let (conv, new) = state
        .messenger
        .create_group(me, &members, b.name, b.topic.unwrap_or_default(), avatar)
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ConversationView::new(&conv))))
}

/// A group's avatar is a media id the caller uploaded (as a post's media must be).
async fn check_avatar(state: &AppState, me: u64, avatar: Option<u64>) -> Result<(), ApiError> {
    let Some(id) = avatar else { return Ok(()) };
    match state.posts.media(id).await? {
        Some(m) if m.owner == me => Ok(()),
        _ => Err(ApiError::Invalid(format!("unknown media id {id}"))),
    }
}

/// `?limit=&cursor=` of the inbox (the cursor is opaque: the last item's activity and id).
#[derive(Deserialize, Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InboxParams {
    /// 1–100, default 20.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Opaque cursor from a previous page's `next_cursor` (or its `Link: rel="next"`).
    #[param(pattern = "^[0-9]{1,19}\\.[0-9]{1,19}$")]
    cursor: Option<String>,
    /// A previous answer's `since_cursor`: only conversations with activity after it (a new
    /// message, a change, a new conversation); the pages end where they reach it.
    #[param(pattern = "^[0-9]{1,19}\\.[0-9]{1,19}$")]
    since: Option<String>,
}

fn parse_inbox_cursor(c: &str) -> Option<(u64, u64)> {
    let (t, id) = c.split_once('.')?;
    Some((parse_id(t).ok()?, parse_id(id).ok()?))
}

#[utoipa::path(get, path = "/v1/conversations", tag = "chat", security(("bearer" = [])), params(InboxParams),
    responses((status = 200, description = "the caller's conversations, most recent activity first, each with its newest seq and message, the caller's read marker and unread count", body = ConversationList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    uri: Uri,
    Query(p): Query<InboxParams>,
) -> Result<Page<ConversationList>, ApiError> {
    let (limit, _) = ListParams {
        limit: p.limit.clone(),
        cursor: None,
    }
    .parse()?;
    let cursor = match p.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            parse_inbox_cursor(c).ok_or_else(|| ApiError::BadRequest("invalid cursor".into()))?,
        ),
    };
    let since = match p.since.as_deref() {
        None => None,
        Some(c) => Some(
            parse_inbox_cursor(c).ok_or_else(|| ApiError::BadRequest("invalid since".into()))?,
        ),
    };
    let page = state.messenger.inbox(me, cursor, limit).await?;
    let gone = deleted_senders(
        &state,
        page.items
            .iter()
            .filter_map(|i| i.last.as_deref().map(|m| m.sender)),
    )
    .await?;
    // Most recent first: once a page reaches `since`, nothing after it is newer.
    let newer = |at: (u64, u64)| since.is_none_or(|s| at > s);
    let mut next = page.next;
    if page
        .items
        .iter()
        .any(|i| !newer((i.activity_ms, i.conv.id)))
        || next.is_some_and(|n| !newer(n))
    {
        next = None;
    }
    let since_cursor = page
        .items
        .first()
        .map(|i| (i.activity_ms, i.conv.id))
        .filter(|&at| newer(at))
        .or(since)
        .map(|(t, id)| format!("{t}.{id}"));
    let items = page
        .items
        .iter()
        .filter(|i| newer((i.activity_ms, i.conv.id)))
        .map(|i| {
            let mut v = ConversationView::new(&i.conv);
            v.last_seq = Some(i.last_seq);
            v.read_seq = Some(i.read_seq);
            v.unread_count = Some(i.unread);
            v.last_message = Some(i.last.as_deref().map(|m| MessageView {
                sender_deleted: gone.contains(&m.sender),
                ..MessageView::from(m)
            }));
            v.last_activity_at = Some(rfc3339(i.activity_ms));
            v
        })
        .collect();
    let next = next.map(|(t, id)| format!("{t}.{id}"));
    let link = next.as_deref().map(|n| ("cursor", n));
    Ok(Page::new(
        &uri,
        link,
        ConversationList {
            items,
            next_cursor: next.clone(),
            since_cursor,
        },
    ))
}

#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id")),
    responses((status = 200, description = "the conversation with its members and their roles", body = ConversationView),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    let conv = state.messenger.authorize_read(me, parse_id(&id)?).await?;
    Ok(Json(ConversationView::new(&conv)))
}

/// Runs one change of a group by `me` and fans out its entry.
async fn change(
    state: &AppState,
    me: u64,
    conv: u64,
    change: Change,
) -> Result<Option<Message>, ApiError> {
    let c = state.messenger.authorize(me, conv).await?;
    let r = state
        .messenger
        .change(&c, me, change)
        .await
        .map_err(ApiError::from);
    match crate::ws::deliver(state, vec![r]).await.pop() {
        Some(r) => r.map(|m| m.map(Arc::unwrap_or_clone)),
        None => Ok(None),
    }
}

#[utoipa::path(patch, path = "/v1/conversations/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id")), request_body = ConversationPatch,
    responses((status = 200, description = "renamed (a `renamed` entry in the log), or unchanged", body = ConversationView),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member, or the caller's role does not allow it", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "not a group, over the member cap, or an invalid name, topic or role", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ConversationPatch>,
) -> Result<Json<ConversationView>, ApiError> {
    let conv = parse_id(&id)?;
    let avatar = match b.avatar {
        None => None,
        Some(None) => Some(None),
        Some(Some(a)) => Some(Some(parse_id(&a)?)),
    };
    check_avatar(&state, me, avatar.flatten()).await?;
    let rename = Change::Rename {
        name: b.name,
        topic: b.topic,
        avatar,
    };
    let done = change(&state, me, conv, rename).await?;
    let c = match done.and_then(|m| m.state) {
        Some(s) => *s,
        None => (*state.messenger.conversation(conv).await?).clone(),
    };
    Ok(Json(ConversationView::new(&c)))
}

#[utoipa::path(put, path = "/v1/conversations/{id}/members/{user}", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id"), ("user" = crate::contract::Id, Path, description = "the user to add")),
    responses((status = 204, description = "a member (a `member_added` entry in the log, unless already one)"),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member, or the caller's role does not allow it", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation or user", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "not a group, over the member cap, or an invalid name, topic or role", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn add_member(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (conv, user) = (parse_id(&id)?, parse_id(&user)?);
    change(&state, me, conv, Change::Add(user)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/conversations/{id}/members/{user}", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id"), ("user" = crate::contract::Id, Path, description = "the member to remove (oneself: leave)")),
    responses((status = 204, description = "not a member any more (a `member_removed` or `member_left` entry, unless already gone); they read nothing after it"),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member, or the caller's role does not allow it", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "the owner transfers ownership before leaving", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "not a group, over the member cap, or an invalid name, topic or role", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (conv, user) = (parse_id(&id)?, parse_id(&user)?);
    let op = if user == me {
        Change::Leave
    } else {
        Change::Remove(user)
    };
    change(&state, me, conv, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/conversations/{id}/members/{user}/role", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id"), ("user" = crate::contract::Id, Path, description = "the member")), request_body = RoleChange,
    responses((status = 204, description = "the member has the role (a `role_changed` entry, unless they had it)"),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member, or the caller's role does not allow it", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation, or the user is not a member of it", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "not a group, over the member cap, or an invalid name, topic or role", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn set_role(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
    JsonBody(b): JsonBody<RoleChange>,
) -> Result<StatusCode, ApiError> {
    let (conv, user) = (parse_id(&id)?, parse_id(&user)?);
    let role = Role::parse(&b.role)
        .ok_or_else(|| ApiError::Invalid("role is owner, admin or member".into()))?;
    // The path names a member: one that is not there is 404, as any unknown resource.
    let c = state.messenger.authorize(me, conv).await?;
    if !c.is_member(user) {
        return Err(ApiError::NotFound("not a member of this conversation"));
    }
    change(&state, me, conv, Change::SetRole { user, role }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/conversations/{id}/read", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id")), request_body = ReadMarker,
    responses((status = 204, description = "the marker is at least there (it never moves backwards); the caller's other devices get a `read` frame"),
        (status = 422, description = "seq is not a non-negative integer", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ReadMarker>,
) -> Result<StatusCode, ApiError> {
    let c = state.messenger.authorize(me, parse_id(&id)?).await?;
    let (seq, moved) = state.messenger.mark_read(me, c.id, b.seq).await?;
    if moved {
        state.fanout.read(&c, me, seq);
    }
    Ok(StatusCode::NO_CONTENT)
}

fn parse_seq(s: &Option<String>, name: &str) -> Result<Option<u64>, ApiError> {
    s.as_deref()
        .map(|v| {
            parse_id(v)
                .ok()
                .filter(|s| i64::try_from(*s).is_ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{name} is an integer of 0 to 2^63 - 1"))
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id"), MessageParams),
    responses((status = 200, description = "log entries the caller may read, ascending by seq, in their current state (edited text, deleted bodies gone); with after_seq, contiguous from it (from `first_seq`, the history retention's floor, when after_seq is below it). A former member reads up to their removal. A full page has a `Link` to the next: the entries after it with after_seq, else those before it", body = MessageList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    uri: Uri,
    Query(p): Query<MessageParams>,
) -> Result<Page<MessageList>, ApiError> {
    let conv = parse_id(&id)?;
    let limit = ListParams {
        limit: p.limit.clone(),
        cursor: None,
    }
    .parse()?
    .0;
    let after = parse_seq(&p.after_seq, "after_seq")?;
    let before = parse_seq(&p.before_seq, "before_seq")?;
    let c = state.messenger.authorize_read(me, conv).await?;
    let first_seq = state.messenger.floor(conv).await?;
    // A former member reads up to their last removal, nothing after it.
    let until = (!c.is_member(me)).then(|| {
        c.past
            .iter()
            .filter(|x| x.user == me)
            .map(|x| x.until)
            .max()
            .unwrap_or(0)
    });
    let items = match (after, before) {
        (Some(a), b) => {
            if until.is_some_and(|u| a >= u) {
                return Err(ApiError::Forbidden("removed from this conversation"));
            }
            let mut items = state.messenger.after(conv, a, limit, true).await?;
            // Both: the entries between them (the first page of a gap a client fills).
            if let Some(b) = b {
                items.retain(|m| m.seq < b);
            }
            items
        }
        (None, b) => {
            let b = match (b, until) {
                (Some(b), Some(u)) => Some(b.min(u + 1)),
                (None, Some(u)) => Some(u + 1),
                (b, None) => b,
            };
            state.messenger.before(conv, b, limit).await?
        }
    };
    // A full page may have more: after it (ascending from after_seq), or before it (the newest
    // page and before_seq page towards the oldest).
    let next = match (after, items.first(), items.last()) {
        _ if items.len() < limit => None,
        (Some(_), _, Some(last)) if before.is_none_or(|b| last.seq + 1 < b) => {
            Some(("after_seq", last.seq))
        }
        (None, Some(first), _) if first.seq > first_seq => Some(("before_seq", first.seq)),
        _ => None,
    };
    let gone = deleted_senders(&state, items.iter().map(|m| m.sender)).await?;
    let mut out = Vec::with_capacity(items.len());
    for m in &items {
        if until.is_some_and(|u| m.seq > u) {
            break;
        }
        if state.messenger.visible(me, &c, m).await? {
            out.push(MessageView {
                sender_deleted: gone.contains(&m.sender),
                ..MessageView::from(m)
            });
        }
    }
    let seq = next.map(|(_, s)| s.to_string());
    let link = next.zip(seq.as_deref()).map(|((name, _), s)| (name, s));
    Ok(Page::new(
        &uri,
        link,
        MessageList {
            items: out,
            first_seq,
        },
    ))
}

#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id")), request_body = NewMessage,
    responses((status = 201, description = "stored (durably) and fanned out; a repeated client_id answers the original message", body = MessageView),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member, or blocked", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid body or client_id, or not a text message", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn send(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<NewMessage>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let conv = parse_id(&id)?;
    let m = crate::ws::send_and_fan_out(&state, me, conv, &b.client_id, &b.body).await?;
    Ok((StatusCode::CREATED, Json(m.as_ref().into())))
}

#[utoipa::path(patch, path = "/v1/conversations/{id}/messages/{seq}", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id"), ("seq" = u64, Path, description = "the message's seq")), request_body = MessageEdit,
    responses((status = 200, description = "the message as edited (an `edit` entry in the log; members get an `edited` frame)", body = MessageView),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member, or not the message's sender (nor a group's owner/admin, for a delete)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation or message, or a message past the history retention (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "the message was deleted", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid body or client_id, or not a text message", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn edit_message(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, seq)): Path<(String, String)>,
    JsonBody(b): JsonBody<MessageEdit>,
) -> Result<Json<MessageView>, ApiError> {
    let conv = parse_id(&id)?;
    let seq = parse_seq(&Some(seq), "seq")?.unwrap_or(0);
    let c = state.messenger.authorize_send(me, conv).await?;
    let client_id = b
        .client_id
        .unwrap_or_else(|| starling_messenger::edit::fresh_client_id(&state.messenger));
    let r = state
        .messenger
        .edit(&c, me, seq, &b.body, &client_id)
        .await
        .map(Some)
        .map_err(ApiError::from);
    let entry = match crate::ws::deliver(&state, vec![r]).await.pop() {
        Some(Ok(Some(m))) => Arc::unwrap_or_clone(m),
        Some(Err(e)) => return Err(e),
        _ => return Err(ApiError::Busy("the edit changed nothing; retry".into())),
    };
    let mut m = state
        .messenger
        .message(conv, seq)
        .await?
        .ok_or(ApiError::NotFound("message not found"))?;
    if m.edited_at_ms.is_none_or(|t| t < entry.sent_at_ms) {
        // This replica has not received the rewritten slot yet: show what the edit made.
        m.body = entry.body;
        m.edited_at_ms = Some(entry.sent_at_ms);
    }
    Ok(Json(m.into()))
}

#[utoipa::path(delete, path = "/v1/conversations/{id}/messages/{seq}", tag = "chat", security(("bearer" = [])),
    params(("id" = crate::contract::Id, Path, description = "conversation id"), ("seq" = u64, Path, description = "the message's seq")),
    responses((status = 204, description = "deleted (a `delete` entry in the log; members get a `deleted` frame)"),
        (status = 400, description = "malformed input (an id, a seq, JSON)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not a member, or not the message's sender (nor a group's owner/admin, for a delete)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown conversation or message, or a message past the history retention (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid body or client_id, or not a text message", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete_message(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, seq)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let conv = parse_id(&id)?;
    let seq = parse_seq(&Some(seq), "seq")?.unwrap_or(0);
    let c = state.messenger.authorize(me, conv).await?;
    let client_id = starling_messenger::edit::delete_client_id(seq);
    let r = state
        .messenger
        .delete_message(&c, me, seq, &client_id)
        .await
        .map(Some)
        .map_err(ApiError::from);
    match crate::ws::deliver(&state, vec![r]).await.pop() {
        Some(Err(e)) => Err(e),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}
