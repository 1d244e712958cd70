//! In-process chat servers on `127.0.0.1:0` and real WebSocket clients (tokio-tungstenite).

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use starling_api::config::ChatSettings;
use starling_api::{AppState, NodeParts, router, start_chat};
use starling_messenger::{Bus, BusReceiver};
use starling_store::{HlcClock, Limits, NodeId, RegionId, Store, open_memory};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(20);

/// A node serving HTTP and WebSocket in this process; stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A fresh in-memory store.
pub fn memory_store() -> Arc<dyn Store> {
    open_memory(
        NodeId::new(RegionId(1), 1),
        Arc::new(HlcClock::new()),
        Limits::default(),
    )
}

/// Starts a node over `store` with `chat` limits and `bus`.
pub async fn start_with(
    store: Arc<dyn Store>,
    chat: ChatSettings,
    bus: (Bus, Option<BusReceiver>),
) -> Server {
    let state = AppState::new(NodeParts {
        chat,
        bus: bus.0,
        ..NodeParts::for_tests(store)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = start_chat(&state, bus.1, stopped.clone());
    let app = router(state.clone());
    let mut until = stopped.clone();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = until.changed().await;
        })
        .await;
        while tasks.join_next().await.is_some() {}
    });
    Server { addr, state, stop }
}

/// Starts a node with default limits and the in-process bus.
pub async fn start() -> Server {
    start_with_chat(ChatSettings::default()).await
}

/// Starts a node over a fresh memory store and the in-process bus, with `chat` limits.
pub async fn start_with_chat(chat: ChatSettings) -> Server {
    start_with(memory_store(), chat, (Bus::in_process(), None)).await
}

/// One request with a JSON body (none when `body` is `None`): (status, JSON body or Null).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    super::http::json_async(addr, method, path, token, body.as_ref()).await
}

/// The first 100 messages of conversation `conv` as `token`'s user reads them over REST.
pub async fn history(addr: SocketAddr, token: &str, conv: &str) -> Vec<Value> {
    let (s, items) = messages(addr, token, conv, 0).await;
    assert_eq!(s, 200);
    items
}

/// The status of a page of conversation `conv`'s messages after seq `after` (`limit=100`), and
/// its items (none on an error).
pub async fn messages(addr: SocketAddr, token: &str, conv: &str, after: u64) -> (u16, Vec<Value>) {
    let path = format!("/v1/conversations/{conv}/messages?after_seq={after}&limit=100");
    let (s, v) = http(addr, "GET", &path, Some(token), None).await;
    (s, v["items"].as_array().cloned().unwrap_or_default())
}

/// `POST /v1/conversations/{conv}/messages` of `body` with `client_id`: the status and body.
pub async fn post_message(
    addr: SocketAddr,
    token: &str,
    conv: &str,
    body: &str,
    client_id: &str,
) -> (u16, Value) {
    let path = format!("/v1/conversations/{conv}/messages");
    let body = json!({ "body": body, "client_id": client_id });
    http(addr, "POST", &path, Some(token), Some(body)).await
}

/// `PATCH /v1/conversations/{conv}/messages/{seq}` to `body` as `token`'s user: the status and
/// body.
pub async fn edit_message(
    addr: SocketAddr,
    token: &str,
    conv: &str,
    seq: u64,
    body: &str,
) -> (u16, Value) {
    let path = format!("/v1/conversations/{conv}/messages/{seq}");
    http(
        addr,
        "PATCH",
        &path,
        Some(token),
        Some(json!({ "body": body })),
    )
    .await
}

/// A signed-up user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

pub async fn sign_up(addr: SocketAddr, handle: &str) -> User {
    try_sign_up(addr, handle)
        .await
        .unwrap_or_else(|(s, v)| panic!("sign-up of {handle}: {s} {v}"))
}

/// Signs `handle` up: the user, or the status and body of the refusal.
pub async fn try_sign_up(addr: SocketAddr, handle: &str) -> Result<User, (u16, Value)> {
    let body = json!({"handle": handle, "password": "password1"});
    let (s, v) = http(addr, "POST", "/v1/users", None, Some(body)).await;
    if s != 201 {
        return Err((s, v));
    }
    Ok(User {
        id: v["id"].as_str().unwrap().to_string(),
        token: v["token"].as_str().unwrap().to_string(),
    })
}

/// Creates a conversation of `me` with `others`; returns its id.
pub async fn conversation(addr: SocketAddr, me: &User, others: &[&User]) -> String {
    let members: Vec<&str> = others.iter().map(|u| u.id.as_str()).collect();
    let (s, v) = http(
        addr,
        "POST",
        "/v1/conversations",
        Some(&me.token),
        Some(json!({ "members": members })),
    )
    .await;
    assert!(s == 201 || s == 200, "{s} {v}");
    v["id"].as_str().unwrap().to_string()
}

/// A WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server ended a connection with.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl Client {
    /// Connects and waits until the server has registered the connection (a ping answered):
    /// live delivery starts there; what came before is for `resume`.
    pub async fn connect(addr: SocketAddr, token: &str) -> Client {
        let mut c = Self::connect_only(addr, token).await;
        c.send(serde_json::json!({"type":"ping"})).await;
        c.next_of(&["pong"]).await;
        c
    }

    /// Connects without waiting for anything.
    pub async fn connect_only(addr: SocketAddr, token: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?token={token}"))
            .await
            .unwrap();
        Client { ws }
    }

    /// Connects over a socket with a small receive buffer (a slow reader fills it soon).
    pub async fn connect_small_buffer(addr: SocketAddr, token: &str) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let stream = sock.connect(addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(
            format!("ws://{addr}/v1/ws?token={token}"),
            MaybeTlsStream::Plain(stream),
        )
        .await
        .unwrap();
        Client { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// The next JSON frame (panics on close or after [`FRAME_WAIT`]).
    pub async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a frame");
            match m {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// The next frame of one of `types`, skipping others (presence, typing, read, …).
    pub async fn next_of(&mut self, types: &[&str]) -> Value {
        loop {
            let v = self.next().await;
            if types.contains(&v["type"].as_str().unwrap_or_default()) {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("the end in time")
            {
                None | Some(Err(_)) => return Ended::Dropped,
                Some(Ok(Message::Close(Some(c)))) => return Ended::Closed(u16::from(c.code)),
                Some(Ok(Message::Close(None))) => {
                    return Ended::Closed(u16::from(CloseCode::Status));
                }
                Some(Ok(_)) => {}
            }
        }
    }
}
