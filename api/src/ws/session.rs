//! One WebSocket connection: registered with the hub before anything else, it runs one loop
//! that either writes what the hub queued (through the per-conversation cursors) or handles a
//! client frame. Sends, edits and deletes queue in the connection's lane (up to
//! [`MAX_IN_FLIGHT`]) and run as batches in tasks of the session, while reading goes on (a slow
//! CAS across regions never stalls it). Consecutive queued sends to one conversation go as one
//! batch: one claim walk, one forward. Up to [`PIPELINE`] send batches are in flight at once
//! (a send from a region that is not the conversation's home does not wait for the previous
//! one's round trip); each names the connection's previous batch to its conversation, and the
//! claiming node runs them in that order (`starling_messenger::pipeline`), so one connection's
//! messages get seqs in the order it sent them. Acks go out in that order too: each batch hands
//! the turn to write acks to the next. An edit or delete runs alone (nothing else in flight).

use super::{MAX_FRAME, append_and_fan_out, close, close_with, deliver};
use crate::AppState;
use crate::problem::ApiError;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;
use starling_messenger::Order;
use starling_messenger::cursor::Cursors;
use starling_messenger::cursor::Frames;
use starling_messenger::hub::{Conn, Refused};
use starling_messenger::protocol::{self, ClientFrame, ServerFrame};
use starling_messenger::{Draft, Item, MessengerError, OutItem};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Sends, edits and deletes of one connection awaiting their ack.
pub(crate) const MAX_IN_FLIGHT: usize = 256;
/// Send batches of one connection in flight at once.
const PIPELINE: usize = 8;
/// Bad frames within [`STRIKE_WINDOW`] before the connection is closed with 1008.
pub(crate) const MAX_STRIKES: u32 = 10;
const STRIKE_WINDOW: Duration = Duration::from_secs(60);
/// How long one write may wait on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages per history page of a resume.
const RESUME_PAGE: usize = 256;
/// Conversations whose members hear a user's presence.
const PRESENCE_CONVS: usize = 100;

enum End {
    /// The client left (or the socket failed): nothing to send.
    Gone,
    /// Close with this code.
    Close(u16, &'static str),
}

struct Session {
    socket: WebSocket,
    /// The node's state, one copy shared by every connection (memory per socket).
    state: Arc<AppState>,
    user: u64,
    conn: Arc<Conn>,
    cursors: Cursors,
    /// The lane: operations not started yet, in arrival order.
    lane: VecDeque<LaneOp>,
    /// The running batches (≤ [`PIPELINE`]).
    sends: JoinSet<Ended>,
    /// Operations in the running batches.
    running: usize,
    /// An edit or delete is running (nothing starts beside it).
    alone: bool,
    /// The newest running batch to each conversation, by token (≤ [`PIPELINE`] entries).
    newest: Vec<(u64, u64)>,
    /// The turn to write acks: fires when the newest started batch has written its acks.
    acks: Option<oneshot::Receiver<()>>,
    strikes: u32,
    first_strike: Instant,
    items: Vec<OutItem>,
    ready: Vec<Bytes>,
}

/// Runs a connection of `user` until either side ends it.
pub(crate) async fn run(socket: WebSocket, state: Arc<AppState>, user: u64) {
    let handle = match state.fanout.hub.connect(user) {
        Ok(h) => h,
        Err(Refused::PerUser) => {
            return close_with(
                socket,
                close::TRY_LATER,
                "too many connections for this user",
            )
            .await;
        }
        Err(Refused::Node) => {
            return close_with(socket, close::TRY_LATER, "this node is full").await;
        }
    };
    if handle.first {
        presence(&state, user, true);
    }
    let mut s = Session {
        socket,
        state: state.clone(),
        user,
        conn: handle.conn().clone(),
        cursors: Cursors::default(),
        lane: VecDeque::new(),
        sends: JoinSet::new(),
        running: 0,
        alone: false,
        newest: Vec::new(),
        acks: None,
        strikes: 0,
        first_strike: Instant::now(),
        items: Vec::new(),
        ready: Vec::new(),
    };
    let end = s.run().await;
    // Sends in flight finish on their own (their acks go nowhere): a half-done send is what
    // the idempotency protocol is for, but there is no reason to make one.
    s.sends.detach_all();
    if handle.close() {
        presence(&state, user, false);
    }
    if let End::Close(code, reason) = end {
        close_with(s.socket, code, reason).await;
    }
}

fn presence(state: &Arc<AppState>, user: u64, online: bool) {
    let state = state.clone();
    tokio::spawn(async move {
        match state.messenger.contacts_of(user, PRESENCE_CONVS).await {
            Ok(contacts) => state.fanout.presence(user, online, contacts),
            Err(e) => tracing::debug!(error = %e, "presence not sent"),
        }
    });
}

fn text(b: Bytes) -> Option<Message> {
    Utf8Bytes::try_from(b).ok().map(Message::Text)
}

impl Session {
    async fn run(&mut self) -> End {
        loop {
            tokio::select! {
                biased;
                // The handlers' futures are boxed: an idle session's task then holds only this
                // loop's small state, not the largest handler's (memory per idle socket).
                () = self.conn.outbox.ready() => {
                    if let Some(end) = Box::pin(self.flush_outbox()).await {
                        return end;
                    }
                }
                m = self.socket.recv() => {
                    let end = match m {
                        None => Some(End::Gone),
                        Some(Ok(m)) => Box::pin(self.on_frame(m)).await,
                        Some(Err(e)) => Box::pin(self.on_read_error(e)).await,
                    };
                    if let Some(end) = end {
                        return end;
                    }
                    if self.strikes >= MAX_STRIKES {
                        return End::Close(close::POLICY, "too many bad frames");
                    }
                }
                Some(ended) = self.sends.join_next(), if !self.sends.is_empty() => {
                    if let Ok(e) = ended {
                        self.running -= e.ops;
                        self.newest.retain(|&(c, t)| (c, t) != (e.conv, e.token));
                        if e.alone {
                            self.alone = false;
                        }
                    }
                    if self.sends.is_empty() {
                        // A batch that panicked left its counts behind: none is running now.
                        self.running = 0;
                        self.alone = false;
                        self.newest.clear();
                    }
                    self.start_batches();
                }
            }
        }
    }

    /// Writes what the hub queued, in cursor order.
    async fn flush_outbox(&mut self) -> Option<End> {
        if self.state.fanout.hub.is_closing() {
            return Some(End::Close(close::GOING_AWAY, "the server is shutting down"));
        }
        let mut items = std::mem::take(&mut self.items);
        if self.conn.outbox.take(&mut items) {
            return Some(End::Close(close::TOO_SLOW, "too slow: send queue full"));
        }
        let mut ready = std::mem::take(&mut self.ready);
        for it in items.drain(..) {
            match it {
                OutItem::Message {
                    conv,
                    seq,
                    frame,
                    extra,
                    restart,
                } => {
                    let frames = Frames {
                        frame: Some(frame),
                        extra,
                    };
                    if self
                        .cursors
                        .offer(conv, seq, frames, restart, &mut ready)
                        .is_err()
                    {
                        return Some(End::Close(close::TOO_SLOW, "too slow: too far behind"));
                    }
                }
                OutItem::Frame(f) => ready.push(f),
            }
        }
        self.items = items;
        let end = self.write_all(&mut ready).await;
        self.ready = ready;
        end
    }

    /// Writes `frames` with one flush at the end (one write call for many frames when the
    /// socket takes them), within [`WRITE_TIMEOUT`].
    async fn write_all(&mut self, frames: &mut Vec<Bytes>) -> Option<End> {
        if frames.is_empty() {
            return None;
        }
        let socket = &mut self.socket;
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            for f in frames.drain(..) {
                let Some(m) = text(f) else { continue };
                socket.feed(m).await?;
            }
            socket.flush().await
        })
        .await;
        frames.clear();
        match written {
            Ok(Ok(())) => None,
            _ => Some(End::Gone),
        }
    }

    async fn write_one(&mut self, f: Bytes) -> Option<End> {
        let mut v = vec![f];
        self.write_all(&mut v).await
    }

    async fn strike(&mut self, code: &str, message: &str, reference: Option<&str>) -> Option<End> {
        if self.first_strike.elapsed() > STRIKE_WINDOW {
            self.strikes = 0;
            self.first_strike = Instant::now();
        }
        self.strikes += 1;
        self.write_one(protocol::error_frame(code, message, reference))
            .await
    }

    async fn on_read_error(&mut self, e: axum::Error) -> Option<End> {
        use tokio_tungstenite::tungstenite::Error as WsError;
        let inner = e.into_inner();
        match inner.downcast_ref::<WsError>() {
            Some(WsError::Capacity(_)) => Some(End::Close(close::TOO_BIG, "frame too large")),
            // tungstenite cannot go on reading after a bad text payload: RFC 6455 says 1007.
            Some(WsError::Utf8(_)) => Some(End::Close(close::BAD_DATA, "text frames are UTF-8")),
            // A framing violation (a stray continuation, an oversized or fragmented control
            // frame, reserved bits): RFC 6455 fails the connection with 1002.
            Some(WsError::Protocol(_)) => Some(End::Close(close::PROTOCOL, "protocol error")),
            _ => Some(End::Gone),
        }
    }

    async fn on_frame(&mut self, m: Message) -> Option<End> {
        // Deliveries start at the first frame: whatever it is, it is handled before anything
        // queued after this point is written (a `resume` sets its cursor first).
        self.conn.go_live();
        match m {
            Message::Text(t) => {
                if t.len() > MAX_FRAME {
                    return Some(End::Close(close::TOO_BIG, "frame too large"));
                }
                match protocol::parse(t.as_str()) {
                    Ok(f) => self.on_client_frame(f).await,
                    Err(e) => {
                        self.strike(e.code, &e.message, e.reference.as_deref())
                            .await
                    }
                }
            }
            Message::Binary(_) => {
                self.strike(
                    "binary",
                    "frames are JSON text; binary is not supported",
                    None,
                )
                .await
            }
            Message::Close(_) => Some(End::Gone),
            Message::Ping(_) | Message::Pong(_) => None,
        }
    }

    async fn on_client_frame(&mut self, f: ClientFrame) -> Option<End> {
        match f {
            ClientFrame::Ping => self.write_one(protocol::encode(&ServerFrame::Pong)).await,
            ClientFrame::Send {
                conv,
                client_id,
                body,
            } => {
                let item = Item {
                    client_id,
                    draft: Draft::Text(body),
                };
                self.queue(&conv, LaneKind::Append(item)).await
            }
            ClientFrame::Edit {
                conv,
                seq,
                body,
                client_id,
            } => {
                let client_id = client_id.unwrap_or_else(|| {
                    starling_messenger::edit::fresh_client_id(&self.state.messenger)
                });
                let item = Item {
                    client_id,
                    draft: Draft::Edit {
                        target_seq: seq,
                        body,
                    },
                };
                self.queue(&conv, LaneKind::Edit(item)).await
            }
            ClientFrame::Delete {
                conv,
                seq,
                client_id,
            } => {
                let client_id =
                    client_id.unwrap_or_else(|| starling_messenger::edit::delete_client_id(seq));
                let item = Item {
                    client_id,
                    draft: Draft::Delete { target_seq: seq },
                };
                self.queue(&conv, LaneKind::Edit(item)).await
            }
            ClientFrame::Resume { conv, after_seq } => {
                let Ok(conv) = conv.parse::<u64>() else {
                    return self.strike("bad_frame", "conv is an id", None).await;
                };
                self.resume(conv, after_seq).await
            }
            ClientFrame::Typing { conv } => {
                match self.member_conv(&conv).await {
                    Ok(c) => self.state.fanout.typing(&c, self.user),
                    Err(f) => return self.write_one(f).await,
                }
                None
            }
            ClientFrame::Read { conv, seq } => {
                let c = match self.member_conv(&conv).await {
                    Ok(c) => c,
                    Err(f) => return self.write_one(f).await,
                };
                match self.state.messenger.mark_read(self.user, c.id, seq).await {
                    Ok((seq, true)) => self.state.fanout.read(&c, self.user, seq),
                    Ok((_, false)) => {}
                    Err(e) => {
                        let (code, msg) = messenger_error_code(&e);
                        return self
                            .write_one(protocol::error_frame(code, &msg, None))
                            .await;
                    }
                }
                None
            }
        }
    }

    /// Queues an operation in the lane (`busy` past [`MAX_IN_FLIGHT`]).
    async fn queue(&mut self, conv: &str, kind: LaneKind) -> Option<End> {
        let client_id = match &kind {
            LaneKind::Append(i) | LaneKind::Edit(i) => i.client_id.clone(),
        };
        let Ok(conv) = conv.parse::<u64>() else {
            return self
                .strike("bad_frame", "conv is an id", Some(&client_id))
                .await;
        };
        if matches!(kind, LaneKind::Append(_))
            && let Err(wait) = self
                .state
                .write_limits
                .check(crate::write_limits::WriteKind::ChatSend, self.user)
        {
            let msg = format!("rate limited; retry in {} s", wait.as_secs().max(1));
            return self
                .write_one(protocol::error_frame("busy", &msg, Some(&client_id)))
                .await;
        }
        if self.lane.len() + self.running >= MAX_IN_FLIGHT {
            return self
                .write_one(protocol::error_frame(
                    "busy",
                    "too many sends awaiting their ack",
                    Some(&client_id),
                ))
                .await;
        }
        self.lane.push_back(LaneOp { conv, kind });
        self.start_batches();
        None
    }

    /// Starts what the lane holds, front first, as far as it may: consecutive sends to one
    /// conversation as one batch (while fewer than [`PIPELINE`] are running and no edit is),
    /// an edit or delete alone once nothing else runs.
    fn start_batches(&mut self) {
        while let Some(front) = self.lane.front() {
            let edit = matches!(front.kind, LaneKind::Edit(_));
            if !self.sends.is_empty() && (edit || self.alone || self.sends.len() >= PIPELINE) {
                return;
            }
            let Some(op) = self.lane.pop_front() else {
                return;
            };
            let conv = op.conv;
            let mut batch = Batch {
                conv,
                items: Vec::new(),
                alone: false,
                order: Order::default(),
            };
            match op.kind {
                LaneKind::Edit(item) => {
                    batch.items.push(item);
                    batch.alone = true;
                    self.alone = true;
                }
                LaneKind::Append(item) => {
                    batch.items.push(item);
                    while let Some(LaneOp {
                        conv: c,
                        kind: LaneKind::Append(_),
                    }) = self.lane.front()
                    {
                        if *c != conv {
                            break;
                        }
                        if let Some(LaneOp {
                            kind: LaneKind::Append(i),
                            ..
                        }) = self.lane.pop_front()
                        {
                            batch.items.push(i);
                        }
                    }
                    let token = self.state.messenger.batch_token();
                    let after = match self.newest.iter_mut().find(|(c, _)| *c == conv) {
                        Some(entry) => Some(std::mem::replace(&mut entry.1, token)),
                        None => {
                            self.newest.push((conv, token));
                            None
                        }
                    };
                    batch.order = Order { token, after };
                }
            }
            self.running += batch.items.len();
            let (done, next) = oneshot::channel();
            let turn = self.acks.replace(next);
            let state = self.state.clone();
            let conn = self.conn.clone();
            let user = self.user;
            self.sends
                .spawn(async move { run_batch(state, conn, user, batch, turn, done).await });
        }
    }

    /// The conversation if the user is a member, else the `error` frame to answer (takes
    /// `&mut self`: the socket is not `Sync`, so `&self` cannot be held across an await).
    async fn member_conv(
        &mut self,
        conv: &str,
    ) -> Result<Arc<starling_messenger::Conversation>, Bytes> {
        let Ok(id) = conv.parse::<u64>() else {
            return Err(protocol::error_frame("bad_frame", "conv is an id", None));
        };
        let messenger = self.state.messenger.clone();
        messenger.authorize(self.user, id).await.map_err(|e| {
            let (code, msg) = messenger_error_code(&e);
            protocol::error_frame(code, &msg, None)
        })
    }

    /// The conversation if the user may read some of it (a former member too).
    async fn read_conv(
        &mut self,
        conv: u64,
    ) -> Result<Arc<starling_messenger::Conversation>, Bytes> {
        let messenger = self.state.messenger.clone();
        messenger
            .authorize_read(self.user, conv)
            .await
            .map_err(|e| {
                let (code, msg) = messenger_error_code(&e);
                protocol::error_frame(code, &msg, None)
            })
    }

    /// Sends every stored message after `after`, then `resumed`; live ones queued meanwhile
    /// follow through the cursor, which drops what history already sent. An entry of a user
    /// who deleted their account carries `sender_deleted`.
    async fn resume(&mut self, conv: u64, after: u64) -> Option<End> {
        let c = match self.read_conv(conv).await {
            Ok(c) => c,
            Err(f) => return self.write_one(f).await,
        };
        // A former member reads up to their removal.
        let until = (!c.is_member(self.user)).then(|| {
            c.past
                .iter()
                .filter(|x| x.user == self.user)
                .map(|x| x.until)
                .max()
                .unwrap_or(0)
        });
        // Nothing below the retention floor is kept: a resume from below it starts there.
        let first_seq = match self.state.messenger.floor(conv).await {
            Ok(f) => f,
            Err(e) => {
                let (code, msg) = messenger_error_code(&e);
                return self
                    .write_one(protocol::error_frame(code, &msg, None))
                    .await;
            }
        };
        let after = after.max(first_seq - 1);
        self.cursors.resume(conv, after);
        let mut from = after;
        let mut ready = Vec::new();
        loop {
            let page = match self
                .state
                .messenger
                .after(conv, from, RESUME_PAGE, false)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    let (code, msg) = messenger_error_code(&e);
                    return self
                        .write_one(protocol::error_frame(code, &msg, None))
                        .await;
                }
            };
            let n = page.len();
            // A page past a gap: trimmed meanwhile (the floor moved up) or not replicated yet.
            if page.first().is_some_and(|m| m.seq > from + 1)
                && let Ok(floor) = self.state.messenger.floor(conv).await
                && floor > from + 1
            {
                self.cursors.resume(conv, floor - 1);
            }
            // One deletion-record read per distinct sender of the page: a deleted user's
            // entries say so (`sender_deleted`), as the REST history's do.
            let state = self.state.clone();
            let gone =
                match crate::conversations::deleted_senders(&state, page.iter().map(|m| m.sender))
                    .await
                {
                    Ok(g) => g,
                    Err(e) => {
                        let (code, msg) = api_error_code(&e);
                        return self
                            .write_one(protocol::error_frame(code, &msg, None))
                            .await;
                    }
                };
            for m in &page {
                if until.is_some_and(|u| m.seq > u) {
                    break;
                }
                from = m.seq;
                // An entry the user may not read still moves the cursor (no gap to wait on).
                let frames = match self.state.messenger.visible(self.user, &c, m).await {
                    Ok(true) => Frames::one(protocol::message_frame(m, gone.contains(&m.sender))),
                    Ok(false) => Frames::default(),
                    Err(e) => {
                        let (code, msg) = messenger_error_code(&e);
                        return self
                            .write_one(protocol::error_frame(code, &msg, None))
                            .await;
                    }
                };
                if self
                    .cursors
                    .offer(conv, m.seq, frames, false, &mut ready)
                    .is_err()
                {
                    return Some(End::Close(close::TOO_SLOW, "too slow: too far behind"));
                }
            }
            if let Some(end) = self.write_all(&mut ready).await {
                return Some(end);
            }
            if n < RESUME_PAGE || until.is_some_and(|u| from >= u) {
                break;
            }
        }
        let done = protocol::encode(&ServerFrame::Resumed {
            conv: conv.to_string(),
            last_seq: self.cursors.last(conv),
            first_seq,
        });
        self.write_one(done).await
    }
}

fn messenger_error_code(e: &MessengerError) -> (&'static str, String) {
    let code = match e {
        MessengerError::Invalid(_)
        | MessengerError::InvalidMsg(_)
        | MessengerError::TooManyMembers(_) => "invalid",
        MessengerError::NotFound
        | MessengerError::UnknownUser(_)
        | MessengerError::MessageNotFound
        | MessengerError::Trimmed(_) => "not_found",
        MessengerError::NotMember | MessengerError::ForbiddenMsg(_) => "forbidden",
        MessengerError::ConflictMsg(_) => "conflict",
        MessengerError::Blocked => "blocked",
        MessengerError::Contended => "busy",
        MessengerError::Store(starling_store::StoreError::OwnerUnreachable { .. }) => "unavailable",
        MessengerError::Store(_) | MessengerError::Redis(_) => {
            tracing::error!(error = %e, "chat operation failed");
            return ("internal", "the server failed; the error is logged".into());
        }
    };
    (code, e.to_string())
}

fn api_error_code(e: &ApiError) -> (&'static str, String) {
    let code = match e {
        ApiError::Forbidden(m) if *m == "blocked" => "blocked",
        ApiError::Forbidden(_) | ApiError::ForbiddenMsg(_) => "forbidden",
        ApiError::NotFound(_) | ApiError::NotFoundMsg(_) => "not_found",
        ApiError::Invalid(_) | ApiError::BadRequest(_) | ApiError::TooLarge(_) => "invalid",
        ApiError::Conflict(_) => "conflict",
        ApiError::Busy(_) | ApiError::TooManyRequests => "busy",
        ApiError::Unavailable(_) => "unavailable",
        ApiError::Unauthorized => "unauthorized",
        ApiError::Internal(d) => {
            tracing::error!(detail = %d, "chat send failed");
            return ("internal", "the server failed; the error is logged".into());
        }
    };
    (code, e.to_string())
}

/// A batch of the lane: sends to one conversation, or one edit or delete.
struct Batch {
    conv: u64,
    items: Vec<Item>,
    alone: bool,
    order: Order,
}

/// What a batch's task tells the session when it ends.
struct Ended {
    ops: usize,
    conv: u64,
    token: u64,
    alone: bool,
}

/// Runs one batch, then writes its acks (or errors) in order once the batch started before it
/// has written its own (`turn`), and passes the turn on (`done`).
async fn run_batch(
    state: Arc<AppState>,
    conn: Arc<Conn>,
    user: u64,
    batch: Batch,
    turn: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
) -> Ended {
    let Batch {
        conv,
        items,
        alone,
        order,
    } = batch;
    let ended = Ended {
        ops: items.len(),
        conv,
        token: order.token,
        alone,
    };
    let ids: Vec<String> = items.iter().map(|i| i.client_id.clone()).collect();
    let results = if alone {
        let mut r = Vec::with_capacity(1);
        for item in items {
            r.push(edit(&state, user, conv, item).await);
        }
        r
    } else {
        append_and_fan_out(&state, user, conv, items, order).await
    };
    if let Some(turn) = turn {
        // An error means the batch before was dropped (the session ended): go on.
        let _ = turn.await;
    }
    for (client_id, r) in ids.into_iter().zip(results) {
        let frame = match r {
            Ok(Some(m)) => protocol::encode(&ServerFrame::Ack {
                conv,
                client_id: &client_id,
                seq: m.seq,
                id: m.id,
            }),
            Ok(None) => protocol::error_frame(
                "busy",
                "the conversation is too busy; retry",
                Some(&client_id),
            ),
            Err(e) => {
                let (code, msg) = api_error_code(&e);
                protocol::error_frame(code, &msg, Some(&client_id))
            }
        };
        conn.outbox.push(OutItem::Frame(frame));
    }
    let _ = done.send(());
    ended
}

/// One operation of a connection's lane.
struct LaneOp {
    conv: u64,
    kind: LaneKind,
}

enum LaneKind {
    /// A send: batched with the sends right after it to the same conversation.
    Append(Item),
    /// An edit or delete: alone.
    Edit(Item),
}

/// Runs an edit or delete entry (its draft says which) and fans it out.
async fn edit(
    state: &AppState,
    user: u64,
    conv: u64,
    item: Item,
) -> Result<Option<Arc<starling_messenger::Message>>, ApiError> {
    let c = state.messenger.authorize_send(user, conv).await?;
    let r = match item.draft {
        Draft::Edit { target_seq, body } => {
            state
                .messenger
                .edit(&c, user, target_seq, &body, &item.client_id)
                .await
        }
        Draft::Delete { target_seq } => {
            state
                .messenger
                .delete_message(&c, user, target_seq, &item.client_id)
                .await
        }
        Draft::Text(_) | Draft::Change(_) => return Ok(None),
    };
    deliver(state, vec![r.map(Some).map_err(ApiError::from)])
        .await
        .pop()
        .unwrap_or(Ok(None))
}
