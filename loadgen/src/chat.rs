//! WebSocket chatters: the wire frames of `GET /v1/ws` (API.md), the delivery bookkeeping, and
//! the chat runner.
//!
//! Every chatter holds one connection. A dispatcher sends messages at a fixed open-loop rate from
//! random members of the conversations (1:1 with `group_size` 2, groups above). The body stamps
//! the intended send time (`t=<µs since the epoch>`), so receivers measure delivery latency end to
//! end (`chat_deliver`); the sender measures the ack (`chat_send`). The [`DeliveryBook`] then checks
//! that every acknowledged message reached every other member exactly once after dedup by id.
//! Receivers measure with their own clock: across machines the clocks must be synchronised.
//!
//! The same runner speaks Centrifugo's protocol ([`Protocol::Centrifugo`], module
//! [`crate::centrifugo`]): conversations are channels, sends are publishes, acks are their replies,
//! so one schedule and one set of histograms measure both servers. Every connection is ready
//! before the first send (Starling: resumed its conversations from seq 0, so registered with the
//! hub and delivering each conversation from its first message; Centrifugo: connected and
//! subscribed with recovery), and with `server_pid` the report charges the server's CPU time over the
//! measured window to the deliveries received in it.
//!
//! With several targets (`--target a,b`: users round-robin over them, conversations of consecutive
//! users) a 1:1 conversation has its members on different targets, and a group has members on each;
//! every delivery is then also booked as `chat_deliver_cross` (the sender's target is not the
//! receiver's: it crossed between nodes, or regions of a `starling cluster`) or
//! `chat_deliver_local` ([`Placement`]).

use crate::LoadError;
use crate::acked::{Acked, AckedKind, AckedLog, now_us};
use crate::api;
use crate::centrifugo;
use crate::error::RequestError;
use crate::http::Http;
use crate::procstat;
use crate::report::ChatReport;
use crate::schedule::{Arrivals, Schedule};
use crate::stats::Stats;
use crate::users::User;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A frame the client sends (the public protocol's type, shared with the server).
pub use starling_wire::ClientFrame;

/// A frame the server sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The server stored the sender's message.
    Ack {
        /// Conversation id.
        conv: String,
        /// The client's id of the message.
        client_id: String,
        /// Its sequence number in the conversation.
        seq: u64,
        /// Its id.
        id: String,
    },
    /// A message of one of the user's conversations.
    Message {
        /// Conversation id.
        conv: String,
        /// Sequence number, gap-free from 1.
        seq: u64,
        /// Message id.
        id: String,
        /// Sender's user id.
        sender: String,
        /// The text.
        body: String,
        /// The sender's client id.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The end of a resume's catch-up.
    Resumed {
        /// Conversation id.
        conv: String,
        /// The last stored seq.
        last_seq: u64,
    },
    /// Answer to a ping.
    Pong,
    /// A bad frame was refused; the connection stays open.
    Error {
        /// Machine-readable code.
        #[serde(default)]
        code: serde_json::Value,
        /// Human-readable text.
        #[serde(default)]
        message: String,
    },
    /// Typing, read markers, presence and frames added later: ignored by the load generator.
    #[serde(other)]
    Other,
}

impl ServerFrame {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, RequestError> {
        serde_json::from_str(text).map_err(|e| RequestError::Decode(format!("ws frame: {e}")))
    }
}

/// The body of a load message: the intended send time, then padding to `len` bytes.
pub fn stamp_body(sent_us: u64, len: usize) -> String {
    let mut b = format!("t={sent_us} ");
    while b.len() < len {
        b.push('x');
    }
    b
}

/// The send time stamped in a body by [`stamp_body`].
pub fn parse_stamp(body: &str) -> Option<u64> {
    body.strip_prefix("t=")?.split(' ').next()?.parse().ok()
}

/// Who must receive what, and who did: every acknowledged message must reach every member of
/// its conversation except the sender exactly once (deliveries are deduplicated by message id).
#[derive(Debug, Default)]
pub struct DeliveryBook {
    members: HashMap<String, Vec<String>>,
    sent: u64,
    /// Acked message id → (conversation, sender).
    acked: HashMap<String, (String, String)>,
    /// (message id, receiving member) seen.
    seen: HashSet<(String, String)>,
    duplicates: u64,
}

impl DeliveryBook {
    /// Declares a conversation and its members.
    pub fn conversation(&mut self, conv: &str, members: Vec<String>) {
        self.members.insert(conv.to_string(), members);
    }

    /// A message was sent.
    pub fn on_sent(&mut self) {
        self.sent += 1;
    }

    /// The sender got the ack for message `id`.
    pub fn on_ack(&mut self, conv: &str, id: &str, sender: &str) {
        self.acked
            .insert(id.to_string(), (conv.to_string(), sender.to_string()));
    }

    /// `member` received message `id`; returns whether it was the first time.
    pub fn on_delivery(&mut self, member: &str, id: &str) -> bool {
        let first = self.seen.insert((id.to_string(), member.to_string()));
        if !first {
            self.duplicates += 1;
        }
        first
    }

    /// The check.
    pub fn report(&self) -> ChatReport {
        let mut expected = 0u64;
        let mut delivered = 0u64;
        for (id, (conv, sender)) in &self.acked {
            for m in self.members.get(conv).into_iter().flatten() {
                if m == sender {
                    continue;
                }
                expected += 1;
                if self.seen.contains(&(id.clone(), m.clone())) {
                    delivered += 1;
                }
            }
        }
        let unacked_delivered = self
            .seen
            .iter()
            .filter(|(id, _)| !self.acked.contains_key(id))
            .map(|(id, _)| id)
            .collect::<HashSet<_>>()
            .len() as u64;
        ChatReport {
            sent: self.sent,
            acked: self.acked.len() as u64,
            expected_deliveries: expected,
            delivered,
            missing: expected - delivered,
            duplicates: self.duplicates,
            unacked_delivered,
            ..ChatReport::default()
        }
    }

    /// Acks and distinct deliveries booked so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.acked.len() as u64, self.seen.len() as u64)
    }
}

/// Which server's chat protocol the runner speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Starling's `GET /v1/ws` (docs/asyncapi.json); conversations made over REST.
    #[default]
    Starling,
    /// Centrifugo's JSON protocol at `/connection/websocket`; conversations are channels.
    Centrifugo,
}

impl FromStr for Protocol {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, LoadError> {
        match s {
            "starling" => Ok(Protocol::Starling),
            "centrifugo" => Ok(Protocol::Centrifugo),
            other => Err(LoadError::config(
                "protocol",
                format!("{other:?}: starling or centrifugo"),
            )),
        }
    }
}

/// How to drive the chat scenario.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Members per conversation (2 = 1:1).
    pub group_size: usize,
    /// Messages per second over all conversations.
    pub rate: f64,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Time to wait for the last deliveries after the last send.
    pub grace: Duration,
    /// Body length in bytes.
    pub body_bytes: usize,
    /// Per-connection send queue (frames); a full queue drops the send (counted).
    pub queue: usize,
    /// Seed.
    pub seed: u64,
    /// The server's protocol.
    pub protocol: Protocol,
    /// The server process, whose CPU time over the measured window the report gives.
    pub server_pid: Option<u32>,
}

/// How long a connection may take to open and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The WebSocket URL of a user's target: `http://h:p` → `ws://h:p/v1/ws?token=…`.
pub fn ws_url(target: &str, token: &str) -> String {
    let base = target
        .strip_prefix("http://")
        .map_or_else(|| target.to_string(), |rest| format!("ws://{rest}"));
    format!("{base}/v1/ws?token={token}")
}

/// Which target each user talks to, to tell a delivery that crossed between targets from one
/// that stayed on the sender's.
#[derive(Debug, Default)]
pub struct Placement {
    /// User id → index of its target among the distinct targets.
    target_of: HashMap<String, usize>,
    /// Distinct targets.
    targets: usize,
}

impl Placement {
    /// The placement of `users`.
    pub fn new(users: &[User]) -> Self {
        let mut distinct: Vec<&str> = Vec::new();
        let mut target_of = HashMap::with_capacity(users.len());
        for u in users {
            let k = match distinct.iter().position(|t| *t == u.target) {
                Some(k) => k,
                None => {
                    distinct.push(&u.target);
                    distinct.len() - 1
                }
            };
            target_of.insert(u.id.clone(), k);
        }
        Placement {
            target_of,
            targets: distinct.len(),
        }
    }

    /// The op a delivery from `sender` to `receiver` is also booked under: `None` with one
    /// target (or a user not in the run), else `chat_deliver_cross` or `chat_deliver_local`.
    pub fn split_op(&self, sender: &str, receiver: &str) -> Option<&'static str> {
        if self.targets < 2 {
            return None;
        }
        let (a, b) = (self.target_of.get(sender)?, self.target_of.get(receiver)?);
        Some(if a == b {
            "chat_deliver_local"
        } else {
            "chat_deliver_cross"
        })
    }
}

/// State shared by the connections; the lock is never held across an await.
#[derive(Debug)]
struct Shared {
    book: DeliveryBook,
    placement: Placement,
    stats: Stats,
    /// client_id → (intended send, whether it is measured).
    pending: HashMap<String, (Instant, bool)>,
}

/// Runs the chat scenario: creates the conversations, connects every member, sends at the
/// configured rate, waits `grace`, and returns the measurements and the delivery check.
pub async fn run_chat(
    http: &Http,
    users: Arc<Vec<User>>,
    cfg: &ChatConfig,
    acked: Option<AckedLog>,
) -> Result<(Stats, ChatReport), LoadError> {
    let g = cfg.group_size.max(2);
    if users.len() < g {
        return Err(LoadError::config(
            "users",
            format!("chat needs at least group-size ({g}) users"),
        ));
    }
    // Conversations: consecutive users in groups of g.
    let mut convs: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, chunk) in (0..users.len()).collect::<Vec<_>>().chunks(g).enumerate() {
        if chunk.len() < g {
            break;
        }
        let conv = match cfg.protocol {
            Protocol::Starling => {
                let owner = &users[chunk[0]];
                let others: Vec<String> = chunk[1..].iter().map(|&i| users[i].id.clone()).collect();
                api::create_conversation(http, &owner.target, &owner.token, &others)
                    .await
                    .map_err(|e| LoadError::setup(format!("conversation of {}", owner.handle), e))?
            }
            Protocol::Centrifugo => centrifugo::channel(k),
        };
        convs.push((conv, chunk.to_vec()));
    }
    let shared = Arc::new(Mutex::new(Shared {
        book: DeliveryBook::default(),
        placement: Placement::new(&users),
        stats: Stats::new(),
        pending: HashMap::new(),
    }));
    {
        let mut s = shared.lock();
        for (conv, members) in &convs {
            let ids = members.iter().map(|&i| users[i].id.clone()).collect();
            s.book.conversation(conv, ids);
        }
        s.stats.op("chat_send");
        s.stats.op("chat_deliver");
        if s.placement.targets > 1 {
            s.stats.op("chat_deliver_cross");
            s.stats.op("chat_deliver_local");
        }
    }

    // One connection per member of a conversation, each ready before the first send.
    let mut senders: HashMap<usize, mpsc::Sender<ClientFrame>> = HashMap::new();
    let mut conns = JoinSet::new();
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(64);
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    for (conv, members) in &convs {
        for &i in members {
            let (tx, rx) = mpsc::channel(cfg.queue.max(1));
            senders.insert(i, tx);
            let c = Conn {
                user: users[i].clone(),
                channels: vec![conv.clone()],
                protocol: cfg.protocol,
                shared: shared.clone(),
                acked: acked.clone(),
            };
            conns.spawn(connection(c, rx, ready_tx.clone(), go_rx.clone()));
        }
    }
    drop(ready_tx);
    // Every connection reports once, ready or failed (bounded by its own timeout).
    while ready_rx.recv().await.is_some() {}

    let start = Instant::now();
    let measure = start + cfg.warmup;
    let end = measure + cfg.duration;
    let _ = go_tx.send(Some(measure));
    let window = tokio::spawn({
        let (shared, pid) = (shared.clone(), cfg.server_pid);
        async move {
            let sample = || {
                let (acks, deliveries) = shared.lock().book.counts();
                let server = pid.and_then(procstat::cpu_us);
                (acks, deliveries, server, procstat::self_cpu_us())
            };
            tokio::time::sleep_until(measure).await;
            let a = sample();
            tokio::time::sleep_until(end).await;
            let b = sample();
            let diff = |x: Option<u64>, y: Option<u64>| Some(y?.saturating_sub(x?));
            (b.0 - a.0, b.1 - a.1, diff(a.2, b.2), diff(a.3, b.3))
        }
    });

    let mut schedule = Schedule::new(cfg.rate, cfg.arrivals, cfg.seed);
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(17));
    let mut n = 0u64;
    // Client ids unique across runs over the same users: a repeated one gets the original ack.
    let run_tag = now_us() % 0x100_0000_0000;
    loop {
        let intended = start + schedule.next_offset();
        if intended >= end {
            break;
        }
        tokio::time::sleep_until(intended).await;
        let (conv, members) = &convs[rng.random_range(0..convs.len())];
        let who = members[rng.random_range(0..members.len())];
        let client_id = format!("{}-{run_tag:x}-{n}", users[who].id);
        n += 1;
        let stamp =
            now_us().saturating_sub(u64::try_from(intended.elapsed().as_micros()).unwrap_or(0));
        let frame = ClientFrame::Send {
            conv: conv.clone(),
            client_id: client_id.clone(),
            body: stamp_body(stamp, cfg.body_bytes),
        };
        let Some(tx) = senders.get(&who) else {
            continue;
        };
        let mut s = shared.lock();
        s.book.on_sent();
        match tx.try_send(frame) {
            Ok(()) => {
                s.pending.insert(client_id, (intended, intended >= measure));
            }
            Err(_) if intended >= measure => {
                let at = Instant::now().saturating_duration_since(measure);
                s.stats
                    .record_error("chat_send", &RequestError::Dropped.kind(), at);
            }
            Err(_) => {}
        }
    }
    tokio::time::sleep(cfg.grace).await;
    drop(senders);
    while conns.join_next().await.is_some() {}
    let window = window.await.ok();
    let s = shared.lock();
    let mut report = s.book.report();
    if let Some((acks, deliveries, server, client)) = window {
        report.window_acks = acks;
        report.window_deliveries = deliveries;
        report.server_cpu_us = server;
        report.client_cpu_us = client;
    }
    Ok((s.stats.clone(), report))
}

/// What a member's connection needs.
struct Conn {
    user: User,
    /// The conversations to resume (Starling) or channels to subscribe to (Centrifugo).
    channels: Vec<String>,
    protocol: Protocol,
    shared: Arc<Mutex<Shared>>,
    acked: Option<AckedLog>,
}

/// An open WebSocket of the load generator.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `user`'s connection and makes it ready to chat. Starling's resumes each conversation of
/// `channels` after seq 0 and waits for every `resumed` (the session is registered with the hub
/// before it reads, and a resumed conversation is delivered from its first message, in seq
/// order: without a resume a connection starts at whichever live message reaches it first, and
/// drops an older one that arrives after it); with no conversation it waits for the answer to a
/// ping. Centrifugo's connects and subscribes to the `channels` with recovery. The error is a
/// [`RequestError::kind`]-style label and the cause.
pub async fn open(
    protocol: Protocol,
    user: &User,
    channels: &[String],
    session: &mut centrifugo::Session,
) -> Result<Ws, (String, String)> {
    let url = match protocol {
        Protocol::Starling => ws_url(&user.target, &user.token),
        Protocol::Centrifugo => centrifugo::ws_url(&user.target),
    };
    let connect = tokio::time::timeout(READY_TIMEOUT, tokio_tungstenite::connect_async(url));
    let mut ws = match connect.await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => {
            let status = r.status().as_u16();
            let e = RequestError::Status {
                status,
                body: String::new(),
            };
            return Err((e.kind(), format!("upgrade answered {status}")));
        }
        Ok(Err(e)) => {
            let e = RequestError::Connect(e.to_string());
            return Err((e.kind(), e.to_string()));
        }
        Err(_) => return Err(("timeout".into(), "connect timed out".into())),
    };
    let ready = match protocol {
        Protocol::Starling => starling_ready(&mut ws, channels).await,
        Protocol::Centrifugo => {
            centrifugo::handshake(&mut ws, session, &user.token, channels, READY_TIMEOUT).await
        }
    };
    match ready {
        Ok(()) => Ok(ws),
        Err(e) => Err(("handshake".into(), e)),
    }
}

/// Resumes `convs` from seq 0 (or, with none, pings), one after the other, each until its
/// answer. A conversation not found is tried again every 100 ms until the deadline: across
/// regions its record may not have replicated to this node yet.
async fn starling_ready(ws: &mut Ws, convs: &[String]) -> Result<(), String> {
    let frames: Vec<ClientFrame> = if convs.is_empty() {
        vec![ClientFrame::Ping]
    } else {
        convs
            .iter()
            .map(|c| ClientFrame::Resume {
                conv: c.clone(),
                after_seq: 0,
            })
            .collect()
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    for f in &frames {
        let text = serde_json::to_string(f).map_err(|e| e.to_string())?;
        loop {
            ws.send(WsMessage::text(text.clone()))
                .await
                .map_err(|e| format!("resume: {e}"))?;
            match ready_answer(ws, deadline).await? {
                None => break,
                Some(code) if code.starts_with("not_found") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(code) => return Err(format!("resume refused: {code}")),
            }
        }
    }
    Ok(())
}

/// The answer to one resume or ping: `None` for `resumed` / `pong`, the code and message of an
/// `error`.
async fn ready_answer(ws: &mut Ws, deadline: Instant) -> Result<Option<String>, String> {
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "an answer to resume/ping missing".to_string())?;
        match msg {
            Some(Ok(WsMessage::Text(t))) => match ServerFrame::parse(t.as_str()) {
                Ok(ServerFrame::Pong | ServerFrame::Resumed { .. }) => return Ok(None),
                Ok(ServerFrame::Error { code, message }) => {
                    return Ok(Some(format!("{} {message}", code.as_str().unwrap_or("?"))));
                }
                _ => {}
            },
            Some(Ok(WsMessage::Close(f))) => {
                return Err(format!(
                    "closed: {}",
                    f.map_or_else(|| "1005".into(), |f| format!("{} {}", f.code, f.reason))
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        }
    }
}

/// One member's connection: opens it, reports ready (or failed), waits for the start, then
/// writes the frames it is given and reads acks and messages, until its sender is dropped (then
/// closes) or the server closes.
async fn connection(
    c: Conn,
    mut rx: mpsc::Receiver<ClientFrame>,
    ready: mpsc::Sender<()>,
    mut go: watch::Receiver<Option<Instant>>,
) {
    let Conn {
        user,
        channels,
        protocol,
        shared,
        acked,
    } = c;
    let mut session = centrifugo::Session::default();
    let opened = open(protocol, &user, &channels, &mut session).await;
    let _ = ready.send(()).await;
    drop(ready);
    let ws = match opened {
        Ok(ws) => ws,
        Err((kind, _)) => {
            shared
                .lock()
                .stats
                .record_error("chat_connect", &kind, Duration::ZERO);
            return;
        }
    };
    let Ok(Some(measure)) = go.wait_for(Option::is_some).await.map(|m| *m) else {
        return;
    };
    let since = |t: Instant| t.saturating_duration_since(measure);
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else {
                    let _ = sink.close().await;
                    return;
                };
                let text = match protocol {
                    Protocol::Starling => match serde_json::to_string(&frame) {
                        Ok(t) => t,
                        Err(_) => continue,
                    },
                    Protocol::Centrifugo => match session.publish(&frame, &user.id) {
                        Some(t) => t,
                        None => continue,
                    },
                };
                if sink.send(WsMessage::text(text)).await.is_err() {
                    shared.lock().stats.record_error("chat_send", "transport", since(Instant::now()));
                    return;
                }
            }
            msg = stream.next() => {
                let now = Instant::now();
                let text = match msg {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(frame))) => {
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        shared.lock().stats.record_error(
                            "chat_connect", &RequestError::WsClose(code).kind(), since(now));
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        shared.lock().stats.record_error("chat_connect", "transport", since(now));
                        return;
                    }
                };
                let mut pong = false;
                let frames = match protocol {
                    Protocol::Starling => vec![ServerFrame::parse(text.as_str())],
                    Protocol::Centrifugo => match centrifugo::parse_frame(text.as_str()) {
                        Ok(ms) => {
                            let mut v = Vec::with_capacity(ms.len());
                            for m in ms {
                                if m == centrifugo::Incoming::Ping {
                                    pong = true;
                                } else if let Some(f) = session.translate(m) {
                                    v.push(Ok(f));
                                }
                            }
                            v
                        }
                        Err(e) => vec![Err(e)],
                    },
                };
                if pong && sink.send(WsMessage::text("{}")).await.is_err() {
                    shared.lock().stats.record_error("chat_connect", "transport", since(now));
                    return;
                }
                for frame in frames {
                    let record = handle_frame(&user, frame, now, measure, &shared);
                    if let (Some(log), Some(a)) = (&acked, record) {
                        log.record(a).await;
                    }
                }
            }
        }
    }
}

/// Books one server frame; returns the acked-log entry of an ack.
fn handle_frame(
    user: &User,
    frame: Result<ServerFrame, RequestError>,
    now: Instant,
    measure: Instant,
    shared: &Mutex<Shared>,
) -> Option<Acked> {
    let since = |t: Instant| t.saturating_duration_since(measure);
    let mut s = shared.lock();
    match frame {
        Ok(ServerFrame::Ack {
            conv,
            client_id,
            id,
            seq,
        }) => {
            s.book.on_ack(&conv, &id, &user.id);
            if let Some((intended, measured)) = s.pending.remove(&client_id) {
                if measured {
                    s.stats
                        .record_ok("chat_send", since(intended), since(intended), since(now));
                }
                let sent_us = now_us().saturating_sub(
                    u64::try_from(now.saturating_duration_since(intended).as_micros()).unwrap_or(0),
                );
                let message = AckedKind::Message;
                return Some(Acked {
                    conv: Some(conv),
                    seq: Some(seq),
                    ..Acked::acked_now(message, id, &user.id, &user.target, sent_us)
                });
            }
            None
        }
        Ok(ServerFrame::Message {
            id, body, sender, ..
        }) => {
            if sender != user.id
                && s.book.on_delivery(&user.id, &id)
                && let Some(stamp) = parse_stamp(&body)
            {
                let latency = Duration::from_micros(now_us().saturating_sub(stamp));
                let sent = now.checked_sub(latency).unwrap_or(now);
                if sent >= measure {
                    let (at, done) = (since(sent), since(now));
                    s.stats.record_ok("chat_deliver", at, at, done);
                    if let Some(op) = s.placement.split_op(&sender, &user.id) {
                        s.stats.record_ok(op, at, at, done);
                    }
                }
            }
            None
        }
        Ok(ServerFrame::Error { .. }) => {
            s.stats
                .record_error("chat_send", "ws_error_frame", since(now));
            None
        }
        Ok(_) => None,
        Err(e) => {
            s.stats.record_error("chat_send", &e.kind(), since(now));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_serialize_as_in_the_protocol() {
        let f = ClientFrame::Send {
            conv: "7".into(),
            client_id: "c1".into(),
            body: "hi".into(),
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"type":"send","conv":"7","client_id":"c1","body":"hi"})
        );
        let f = ClientFrame::Resume {
            conv: "7".into(),
            after_seq: 3,
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"type":"resume","conv":"7","after_seq":3}"#
        );
    }

    #[test]
    fn server_frames_parse() {
        let ack =
            ServerFrame::parse(r#"{"type":"ack","conv":"7","client_id":"c1","seq":4,"id":"99"}"#);
        assert_eq!(
            ack.unwrap(),
            ServerFrame::Ack {
                conv: "7".into(),
                client_id: "c1".into(),
                seq: 4,
                id: "99".into()
            }
        );
        let m = ServerFrame::parse(
            r#"{"type":"message","conv":"7","seq":4,"id":"99","sender":"5","body":"t=1 x","client_id":"c1","sent_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert!(matches!(m, ServerFrame::Message { seq: 4, ref sender, .. } if sender == "5"));
        assert_eq!(
            ServerFrame::parse(r#"{"type":"presence","user":"5","online":true}"#).unwrap(),
            ServerFrame::Other
        );
        assert!(matches!(
            ServerFrame::parse(r#"{"type":"error","code":"bad_frame","message":"no"}"#).unwrap(),
            ServerFrame::Error { .. }
        ));
        assert_eq!(ServerFrame::parse("{}").unwrap_err().kind(), "decode");
    }

    #[test]
    fn bodies_carry_the_send_time() {
        let b = stamp_body(1_700_000_000_123_456, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_stamp(&b), Some(1_700_000_000_123_456));
        assert_eq!(parse_stamp("hello"), None);
        assert_eq!(
            ws_url("http://127.0.0.1:80", "tok"),
            "ws://127.0.0.1:80/v1/ws?token=tok"
        );
    }

    fn user(i: usize, target: &str) -> User {
        User {
            index: i,
            handle: format!("u{i}"),
            id: format!("id{i}"),
            token: String::new(),
            target: target.into(),
            conv: None,
            group: None,
            live: Arc::default(),
        }
    }

    #[test]
    fn deliveries_are_split_by_whether_they_crossed_targets() {
        // One target: no split.
        let one: Vec<User> = (0..4).map(|i| user(i, "http://a")).collect();
        assert_eq!(Placement::new(&one).split_op("id0", "id1"), None);
        // Two targets, round-robin as the setup places users: consecutive users (a 1:1
        // conversation) are on different targets, every other user on the same one.
        let two: Vec<User> = (0..4)
            .map(|i| user(i, ["http://a", "http://b"][i % 2]))
            .collect();
        let p = Placement::new(&two);
        assert_eq!(p.split_op("id0", "id1"), Some("chat_deliver_cross"));
        assert_eq!(p.split_op("id3", "id2"), Some("chat_deliver_cross"));
        assert_eq!(p.split_op("id0", "id2"), Some("chat_deliver_local"));
        assert_eq!(p.split_op("id1", "id3"), Some("chat_deliver_local"));
        // A sender outside the run (another client's message) is not split.
        assert_eq!(p.split_op("stranger", "id1"), None);
    }

    #[test]
    fn the_book_counts_missing_and_duplicate_deliveries() {
        let mut book = DeliveryBook::default();
        book.conversation("c", vec!["a".into(), "b".into(), "c".into()]);
        for _ in 0..3 {
            book.on_sent();
        }
        book.on_ack("c", "m1", "a");
        book.on_ack("c", "m2", "b");
        // m1 reaches b twice (at-least-once delivery) and c once; m2 reaches a only.
        assert!(book.on_delivery("b", "m1"));
        assert!(!book.on_delivery("b", "m1"));
        assert!(book.on_delivery("c", "m1"));
        assert!(book.on_delivery("a", "m2"));
        // m3 was delivered but its ack never came back.
        assert!(book.on_delivery("b", "m3"));
        let r = book.report();
        assert_eq!(r.sent, 3);
        assert_eq!(r.acked, 2);
        assert_eq!(r.expected_deliveries, 4);
        assert_eq!(r.delivered, 3);
        assert_eq!(r.missing, 1);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.unacked_delivered, 1);
    }
}
