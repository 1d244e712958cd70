//! `GET /v1/ws`: the chat WebSocket gateway (protocol in `../shared/API.md` and
//! [`starling_messenger::protocol`]).
//!
//! The upgrade is always accepted; a bad or expired token is then closed with 4001 (a browser
//! cannot read an HTTP status of a refused upgrade), and so are the connection caps (1013).
//! Deliveries to a connection start at its first frame (send `resume`s first for an exact
//! seam, or a `ping`).
//! Buffers are set explicitly and small: tungstenite's default 128 KiB read buffer would cost a
//! gigabyte at 10 k idle sockets; writes gather up to 4 KiB (one write call per outbox drain). Frames and messages over [`MAX_FRAME`] close with 1009.

mod session;

use crate::AppState;
use crate::auth::bearer;
use crate::extract::Query;
use crate::problem::ApiError;
use axum::Extension;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use starling_messenger::{Conversation, Draft, Item, Message as ChatMessage, Order, Sent};
use std::sync::Arc;
use std::time::Duration;

/// Largest frame and message a client may send (a 4000-character body in JSON fits).
pub const MAX_FRAME: usize = 32 * 1024;
/// tungstenite's read buffer per connection (grows for a larger frame, then is reused).
pub const READ_BUFFER: usize = 1024;
/// Bytes tungstenite gathers before it writes to the socket: the frames of one outbox drain go
/// out in one write call (the session flushes after each drain). The buffer is allocated only
/// once a connection is written to, and grows to about this size.
pub const WRITE_BUFFER: usize = 4 * 1024;
/// Bytes tungstenite may buffer for writing before a write waits on the socket.
pub const MAX_WRITE_BUFFER: usize = 256 * 1024;

/// Close codes of the protocol.
pub mod close {
    /// Bad or expired token.
    pub const BAD_TOKEN: u16 = 4001;
    /// The send queue overflowed: the client was too slow.
    pub const TOO_SLOW: u16 = 4008;
    /// A frame or message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// A text frame that is not UTF-8.
    pub const BAD_DATA: u16 = 1007;
    /// A WebSocket framing violation (RFC 6455).
    pub const PROTOCOL: u16 = 1002;
    /// Repeated protocol abuse.
    pub const POLICY: u16 = 1008;
    /// Connection caps reached; try again later.
    pub const TRY_LATER: u16 = 1013;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

/// The routes of this module. Every connection shares `shared`: one copy of the node's state
/// for all of them (a clone of [`AppState`] is hundreds of bytes, which an idle socket would
/// otherwise hold for its whole life).
pub fn routes(shared: Arc<AppState>) -> Router<AppState> {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .layer(Extension(shared))
}

/// The upgrade of the chat WebSocket. Frames are described by the AsyncAPI document
/// `docs/asyncapi.json`.
#[utoipa::path(get, path = "/v1/ws", tag = "chat",
    description = "Upgrades to the chat WebSocket (RFC 6455). The frames of the protocol are described by the AsyncAPI 3 document `docs/asyncapi.json` of the repository. The token is the `Authorization: Bearer` header or, for a browser, the `token` query parameter; a bad or expired one is closed with code 4001 after the upgrade (a browser cannot read the status of a refused upgrade), and so are the connection caps (1013).",
    security((), ("bearer" = [])),
    params(("token" = Option<String>, Query, description = "the session token, for clients that cannot set a header")),
    responses((status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "not a WebSocket upgrade request (missing `Connection: upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` or `Sec-WebSocket-Key`), or a repeated query parameter", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn upgrade(
    Extension(state): Extension<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let mut parts = axum::http::Request::new(());
    *parts.headers_mut() = headers;
    let (parts, ()) = parts.into_parts();
    let token = bearer(&parts).map(str::to_string).or(query.token);
    let user = match token {
        Some(t) => state.graph.authenticate(&t).await.ok(),
        None => None,
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            match user {
                Some(u) => session::run(socket, state, u).await,
                None => close_with(socket, close::BAD_TOKEN, "bad or expired token").await,
            }
        })
}

/// Sends a close frame and waits briefly for the client's.
pub(crate) async fn close_with(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Authorizes, stores (durably, at the configured level) and fans out a message; a retry
/// returns the original. Shared by `POST …/messages` and (through [`append_and_fan_out`]) the
/// WebSocket `send`.
pub async fn send_and_fan_out(
    state: &AppState,
    sender: u64,
    conv: u64,
    client_id: &str,
    body: &str,
) -> Result<Arc<ChatMessage>, ApiError> {
    let item = Item {
        client_id: client_id.to_string(),
        draft: Draft::Text(body.to_string()),
    };
    match append_and_fan_out(state, sender, conv, vec![item], Order::default())
        .await
        .pop()
    {
        Some(Ok(Some(m))) => Ok(m),
        Some(Ok(None)) | None => Err(ApiError::Busy("the send changed nothing; retry".into())),
        Some(Err(e)) => Err(e),
    }
}

/// Authorizes `sender` to send in `conv`, appends `items` in this order (one sender's order;
/// `order` places the batch in its connection's pipeline), waits until each stored entry is
/// durable at the configured level, and fans them out in order. One result per item
/// (`Ok(None)`: a change that changed nothing).
pub async fn append_and_fan_out(
    state: &AppState,
    sender: u64,
    conv: u64,
    items: Vec<Item>,
    order: Order,
) -> Vec<Result<Option<Arc<ChatMessage>>, ApiError>> {
    let n = items.len();
    let c = match state.messenger.authorize_send(sender, conv).await {
        Ok(c) => c,
        Err(e) => {
            let e = ApiError::from(e);
            return (0..n).map(|_| Err(e.clone())).collect();
        }
    };
    let results = state
        .messenger
        .append_in_order(&c, sender, items, order)
        .await;
    deliver_under(
        state,
        results
            .into_iter()
            .map(|r| r.map_err(ApiError::from))
            .collect(),
        Some(&c),
    )
    .await
}

/// Waits for the durability of each newly stored entry (together), then fans out every stored
/// one in order: a retry fans out again, harmless (cursors drop duplicates), and it delivers
/// the entry if the first attempt died between storing and fanning out. The entries are
/// answered as shared: the same one is the conversation's head here (no copy a message).
pub async fn deliver(
    state: &AppState,
    results: Vec<Result<Option<Sent>, ApiError>>,
) -> Vec<Result<Option<Arc<ChatMessage>>, ApiError>> {
    deliver_under(state, results, None).await
}

/// [`deliver`] of entries appended to `known` (the conversation as the sender was authorized
/// in): an entry that changes nothing of it and landed at an epoch `known` has reached fans out
/// to `known`'s members (the state it was written under, or a newer one, as
/// `Messenger::state_for` answers) without a second look-up of the conversation.
async fn deliver_under(
    state: &AppState,
    results: Vec<Result<Option<Sent>, ApiError>>,
    known: Option<&Arc<Conversation>>,
) -> Vec<Result<Option<Arc<ChatMessage>>, ApiError>> {
    let waits = results.iter().map(|r| async move {
        match (r, &state.gossip) {
            (Ok(Some(sent)), Some(g)) => match &sent.version {
                Some(version) => g
                    .wait_durable(
                        starling_messenger::keys::message(sent.message.conv, sent.message.seq),
                        version.clone(),
                        state.durable_regions,
                    )
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string())),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    });
    let durable = futures_util::future::join_all(waits).await;
    let mut out = Vec::with_capacity(results.len());
    for (r, d) in results.into_iter().zip(durable) {
        out.push(match (r, d) {
            (Ok(Some(sent)), Ok(())) => {
                let m = Arc::new(sent.message);
                let conv = match known {
                    Some(c) if m.state.is_none() && c.epoch >= m.epoch => Ok(c.clone()),
                    _ => state.messenger.state_for(&m).await,
                };
                match conv {
                    Ok(conv) => state.fanout.message(&conv, &m),
                    Err(e) => tracing::debug!(error = %e, "entry stored, not fanned out here"),
                }
                Ok(Some(m))
            }
            (Ok(Some(_)), Err(e)) => Err(e),
            (Ok(None), _) => Ok(None),
            (Err(e), _) => Err(e),
        });
    }
    out
}
