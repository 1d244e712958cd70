//! `/v1/conversations` and `/v1/conversations/{id}/messages`: the REST side of chat. A message
//! posted here is stored, acknowledged and fanned out exactly like one sent over the WebSocket.

use crate::AppState;
use crate::auth::AuthUser;
use crate::json::{JsonBody, ListParams, parse_id, rfc3339};
use crate::problem::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use starling_messenger::{Conversation, Message};

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct ConversationView {
    id: String,
    /// `direct` (1:1) or `group`.
    kind: &'static str,
    members: Vec<String>,
    home_region: String,
    created_at: String,
    /// The newest seq this node holds (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seq: Option<u64>,
}

impl ConversationView {
    fn new(c: &Conversation, last_seq: Option<u64>) -> Self {
        ConversationView {
            id: c.id.to_string(),
            kind: match c.kind {
                starling_messenger::ConversationKind::Direct => "direct",
                starling_messenger::ConversationKind::Group => "group",
            },
            members: c.members.iter().map(u64::to_string).collect(),
            home_region: c.home_region.clone(),
            created_at: rfc3339(c.created_at_ms),
            last_seq,
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
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        MessageView {
            conv: m.conv.to_string(),
            seq: m.seq,
            id: m.id.to_string(),
            sender: m.sender.to_string(),
            body: m.body,
            client_id: m.client_id,
            sent_at: rfc3339(m.sent_at_ms),
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct ConversationList {
    items: Vec<ConversationView>,
    next_cursor: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct MessageList {
    /// Ascending by seq.
    items: Vec<MessageView>,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewConversation {
    /// The other members' ids (the caller is always a member). One id: a 1:1 conversation.
    members: Vec<String>,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMessage {
    body: String,
    client_id: String,
}

#[derive(Deserialize, Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessageParams {
    /// Messages with a larger seq (ascending from there).
    after_seq: Option<String>,
    /// Messages with a smaller seq (the newest page when neither is given).
    before_seq: Option<String>,
    /// 1–100, default 20.
    limit: Option<String>,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", get(list).post(create))
        .route("/v1/conversations/{id}/messages", get(messages).post(send))
}

#[utoipa::path(post, path = "/v1/conversations", tag = "chat", security(("bearer" = [])), request_body = NewConversation,
    responses((status = 201, description = "created", body = ConversationView), (status = 200, description = "the existing 1:1 conversation of this pair", body = ConversationView),
        (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "a block forbids a 1:1", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown member", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "no other member, or over the member cap", body = crate::problem::Problem, content_type = "application/problem+json")))]
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
    let (conv, new) = state.messenger.create(me, &members).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ConversationView::new(&conv, None))))
}

#[utoipa::path(get, path = "/v1/conversations", tag = "chat", security(("bearer" = [])), params(ListParams),
    responses((status = 200, description = "the caller's conversations, newest first, with the newest seq held here", body = ConversationList),
        (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(p): Query<ListParams>,
) -> Result<Json<ConversationList>, ApiError> {
    let (limit, cursor) = p.parse()?;
    let page = state.messenger.conversations_of(me, cursor, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for c in &page.items {
        let last = state.messenger.last_seq(c.id).await?;
        items.push(ConversationView::new(c, Some(last)));
    }
    Ok(Json(ConversationList {
        items,
        next_cursor: page.next.map(|n| n.to_string()),
    }))
}

fn parse_seq(s: &Option<String>, name: &str) -> Result<Option<u64>, ApiError> {
    s.as_deref()
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{name} is a non-negative integer")))
        })
        .transpose()
}

#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id"), MessageParams),
    responses((status = 200, description = "messages ascending by seq; with after_seq, contiguous from it", body = MessageList),
        (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a member", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Query(p): Query<MessageParams>,
) -> Result<Json<MessageList>, ApiError> {
    let conv = parse_id(&id)?;
    let limit = ListParams {
        limit: p.limit.clone(),
        cursor: None,
    }
    .parse()?
    .0;
    let after = parse_seq(&p.after_seq, "after_seq")?;
    let before = parse_seq(&p.before_seq, "before_seq")?;
    state.messenger.authorize(me, conv).await?;
    let items = match (after, before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give after_seq or before_seq, not both".into(),
            ));
        }
        (Some(a), None) => state.messenger.after(conv, a, limit, true).await?,
        (None, b) => state.messenger.before(conv, b, limit).await?,
    };
    Ok(Json(MessageList {
        items: items.into_iter().map(MessageView::from).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id")), request_body = NewMessage,
    responses((status = 201, description = "stored (durably) and fanned out; a repeated client_id answers the original message", body = MessageView),
        (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a member, or blocked", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown conversation", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid body or client_id", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the home region's owner is unreachable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn send(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<NewMessage>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let conv = parse_id(&id)?;
    let m = crate::ws::send_and_fan_out(&state, me, conv, &b.client_id, &b.body).await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}
