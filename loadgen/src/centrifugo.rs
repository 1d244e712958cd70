//! Centrifugo's client protocol (v6, JSON over WebSocket at `/connection/websocket`), so the chat
//! scenario measures Starling and Centrifugo with one runner, one schedule and one set of
//! histograms (`starling-load run --scenario chat --protocol centrifugo`).
//!
//! A conversation is a channel `chat:<k>` of a namespace with history and forced recovery; a
//! member is a connection authenticated by an HS256 JWT (`sub` = `u<i>`) or, without a secret,
//! none (the server then runs in insecure client mode). The wire, one JSON object per line, several
//! lines per WebSocket frame (Centrifugo batches its writes):
//!
//! ```text
//! → {"id":1,"connect":{"token":"…"}}                       ← {"id":1,"connect":{"client":"…",…}}
//! → {"id":2,"subscribe":{"channel":"chat:7","recover":true}} ← {"id":2,"subscribe":{…}}
//! → {"id":3,"publish":{"channel":"chat:7","data":{…}}}     ← {"id":3,"publish":{}}      (the ack)
//!                            ← {"push":{"channel":"chat:7","pub":{"data":{…},"offset":5}}} (delivery)
//! ← {}   (the server's ping)                                → {}   (the client's pong)
//! ```
//!
//! A publication's data is `{"client_id","sender","body"}`: the client id is the message's id
//! (unique in a run), so the [`crate::chat::DeliveryBook`] checks deliveries as for Starling, and
//! the body carries the stamp of the intended send time. [`Session`] turns publishes into
//! commands and replies and pushes into the [`ServerFrame`]s the chat runner already books.

use crate::chat::{ClientFrame, ServerFrame};
use crate::error::RequestError;
use crate::users::User;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

/// The channel namespace `infra/centrifugo.sh` configures (history, forced recovery,
/// client-side publish for subscribers).
pub const NAMESPACE: &str = "chat";

/// The channel of conversation `k`.
pub fn channel(k: usize) -> String {
    format!("{NAMESPACE}:{k}")
}

/// The WebSocket endpoint of a target: `ws://h:p` or `http://h:p` → `ws://h:p/connection/websocket`.
pub fn ws_url(target: &str) -> String {
    let base = target.trim_end_matches('/');
    let base = base
        .strip_prefix("http://")
        .map_or_else(|| base.to_string(), |rest| format!("ws://{rest}"));
    format!("{base}/connection/websocket")
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A connection token: an HS256 JWT with `sub` and `exp` (seconds since the epoch), signed with
/// the `client.token.hmac_secret_key` of the server's configuration.
pub fn token(secret: &str, sub: &str, exp: u64) -> String {
    let head = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64url(json!({"sub": sub, "exp": exp}).to_string().as_bytes());
    let signed = format!("{head}.{claims}");
    let sig = sign(secret, &signed);
    format!("{signed}.{sig}")
}

/// The HS256 signature of a JWT's signing input, base64url.
fn sign(secret: &str, input: &str) -> String {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(input.as_bytes());
            b64url(&mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length.
        Err(_) => String::new(),
    }
}

/// The members of a Centrifugo run: users `u0 … u{n-1}` spread over the targets, each with a
/// token valid for a day (an empty token without a secret: insecure client mode).
pub fn users(n: usize, targets: &[String], secret: Option<&str>) -> Vec<User> {
    let exp = crate::acked::now_us() / 1_000_000 + 86_400;
    (0..n)
        .map(|i| {
            let id = format!("u{i}");
            User {
                index: i,
                handle: id.clone(),
                token: secret.map_or_else(String::new, |s| token(s, &id, exp)),
                id,
                target: targets
                    .get(i % targets.len().max(1))
                    .cloned()
                    .unwrap_or_default(),
                conv: None,
                group: None,
                live: Arc::default(),
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct RawError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct RawPub {
    data: PubData,
    #[serde(default)]
    offset: u64,
}

#[derive(Debug, Deserialize)]
struct RawPush {
    #[serde(default)]
    channel: String,
    #[serde(rename = "pub")]
    publication: Option<RawPub>,
}

/// One line of a server frame as it is on the wire.
#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    id: u32,
    error: Option<RawError>,
    push: Option<RawPush>,
}

/// One message of a server frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The reply to command `id` (`connect`, `subscribe`, `publish`, …), or its error.
    Reply {
        /// The command's id.
        id: u32,
        /// `(code, message)` of a refused command.
        error: Option<(u32, String)>,
    },
    /// A publication in a subscribed channel.
    Publication {
        /// The channel.
        channel: String,
        /// Its offset in the channel's history stream.
        offset: u64,
        /// What the publisher sent.
        data: PubData,
    },
    /// The server's ping (`{}`): the client answers `{}`.
    Ping,
    /// Any other push (join, leave, unsubscribe, disconnect, …): ignored.
    Other,
}

/// Parses one WebSocket text frame: one JSON object per line, empty lines skipped.
pub fn parse_frame(text: &str) -> Result<Vec<Incoming>, RequestError> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let raw: Raw = serde_json::from_str(line)
            .map_err(|e| RequestError::Decode(format!("centrifugo frame: {e}")))?;
        out.push(match (raw.id, raw.push) {
            (id, _) if id > 0 => Incoming::Reply {
                id,
                error: raw.error.map(|e| (e.code, e.message)),
            },
            (
                _,
                Some(RawPush {
                    channel,
                    publication: Some(p),
                }),
            ) => Incoming::Publication {
                channel,
                offset: p.offset,
                data: p.data,
            },
            (_, Some(_)) => Incoming::Other,
            (_, None) if raw.error.is_none() => Incoming::Ping,
            (_, None) => Incoming::Other,
        });
    }
    Ok(out)
}

/// What a publication of the load generator carries (decoded in place, without an
/// intermediate JSON tree: the load generator reads ~100 k of them a second in a group run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PubData {
    /// The sender's id of the message, unique in a run: its id.
    #[serde(default)]
    pub client_id: String,
    /// The sender's user id.
    #[serde(default)]
    pub sender: String,
    /// The text (with the stamp of the intended send time).
    #[serde(default)]
    pub body: String,
}

/// One connection's command ids and the publishes awaiting their reply.
#[derive(Debug, Default)]
pub struct Session {
    next_id: u32,
    /// Command id → (channel, client id) of a publish in flight.
    publishes: HashMap<u32, (String, String)>,
}

impl Session {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// The frame that connects (with `token` unless empty) and subscribes to `channels` with
    /// recovery, one command per line; returns it and the commands' ids.
    pub fn open(&mut self, token: &str, channels: &[String]) -> (String, Vec<u32>) {
        let mut ids = Vec::with_capacity(channels.len() + 1);
        let mut lines = Vec::with_capacity(channels.len() + 1);
        let id = self.id();
        ids.push(id);
        lines.push(if token.is_empty() {
            json!({"id": id, "connect": {"name": "starling-load"}})
        } else {
            json!({"id": id, "connect": {"token": token, "name": "starling-load"}})
        });
        for c in channels {
            let id = self.id();
            ids.push(id);
            lines.push(json!({"id": id, "subscribe": {"channel": c, "recover": true}}));
        }
        let text = lines
            .iter()
            .map(serde_json::Value::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        (text, ids)
    }

    /// The publish command of a `send` by `sender`; `None` for other frames.
    pub fn publish(&mut self, frame: &ClientFrame, sender: &str) -> Option<String> {
        let ClientFrame::Send {
            conv,
            client_id,
            body,
        } = frame
        else {
            return None;
        };
        let id = self.id();
        self.publishes.insert(id, (conv.clone(), client_id.clone()));
        let data = json!({"client_id": client_id, "sender": sender, "body": body});
        Some(json!({"id": id, "publish": {"channel": conv, "data": data}}).to_string())
    }

    /// The chat runner's view of a message: a publish's reply is its ack (or error), a
    /// publication a delivery; `None` for the rest.
    pub fn translate(&mut self, m: Incoming) -> Option<ServerFrame> {
        match m {
            Incoming::Reply { id, error } => {
                let (conv, client_id) = self.publishes.remove(&id)?;
                Some(match error {
                    None => ServerFrame::Ack {
                        conv,
                        id: client_id.clone(),
                        client_id,
                        // Centrifugo's publish result is empty: the offset comes with the push.
                        seq: 0,
                    },
                    Some((code, message)) => ServerFrame::Error {
                        code: json!(code),
                        message,
                    },
                })
            }
            Incoming::Publication {
                channel,
                offset,
                data: d,
            } => Some(ServerFrame::Message {
                conv: channel,
                seq: offset,
                id: d.client_id.clone(),
                sender: d.sender,
                body: d.body,
                client_id: Some(d.client_id),
            }),
            Incoming::Ping | Incoming::Other => None,
        }
    }
}

/// Connects and subscribes on an open WebSocket: sends [`Session::open`]'s frame and waits for
/// every reply (answering pings), at most `timeout`. An error says which command failed.
pub async fn handshake<W>(
    ws: &mut W,
    session: &mut Session,
    token: &str,
    channels: &[String],
    timeout: Duration,
) -> Result<(), String>
where
    W: Sink<WsMessage, Error = tungstenite::Error>
        + Stream<Item = Result<WsMessage, tungstenite::Error>>
        + Unpin,
{
    let (text, ids) = session.open(token, channels);
    ws.send(WsMessage::text(text))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut waiting: Vec<u32> = ids;
    let deadline = Instant::now() + timeout;
    while !waiting.is_empty() {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("{} replies missing after {timeout:?}", waiting.len()))?;
        let text = match msg {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(f))) => {
                return Err(format!(
                    "closed: {}",
                    f.map_or_else(|| "1005".into(), |f| format!("{} {}", f.code, f.reason))
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        };
        for m in parse_frame(text.as_str()).map_err(|e| e.to_string())? {
            match m {
                Incoming::Reply { id, error } => {
                    if let Some((code, message)) = error {
                        return Err(format!("command {id}: error {code} {message}"));
                    }
                    waiting.retain(|&w| w != id);
                }
                Incoming::Ping => {
                    ws.send(WsMessage::text("{}"))
                        .await
                        .map_err(|e| format!("pong: {e}"))?;
                }
                Incoming::Publication { .. } | Incoming::Other => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_holds_several_replies_and_pushes() {
        let frame = concat!(
            r#"{"id":3,"publish":{}}"#,
            "\n",
            r#"{"push":{"channel":"chat:7","pub":{"data":{"client_id":"u1-0","sender":"u1","body":"t=5 x"},"offset":12,"info":{"user":"u1","client":"c"}}}}"#,
            "\n",
            r#"{"id":4,"error":{"code":103,"message":"permission denied"}}"#,
            "\n",
            "{}\n",
            r#"{"push":{"channel":"chat:7","join":{"info":{"user":"u2"}}}}"#,
            "\n"
        );
        let ms = parse_frame(frame).unwrap();
        assert_eq!(ms.len(), 5);
        assert_eq!(ms[0], Incoming::Reply { id: 3, error: None });
        assert!(matches!(
            &ms[1],
            Incoming::Publication { channel, offset: 12, .. } if channel == "chat:7"
        ));
        assert_eq!(
            ms[2],
            Incoming::Reply {
                id: 4,
                error: Some((103, "permission denied".into()))
            }
        );
        assert_eq!(ms[3], Incoming::Ping);
        assert_eq!(ms[4], Incoming::Other);
        assert_eq!(parse_frame("{}").unwrap(), vec![Incoming::Ping]);
        assert_eq!(parse_frame("").unwrap(), vec![]);
        assert_eq!(
            parse_frame("{\"id\":1}\nnot json").unwrap_err().kind(),
            "decode"
        );
    }

    #[test]
    fn a_publish_reply_is_the_ack_and_a_publication_the_delivery() {
        let mut s = Session::default();
        let (open, ids) = s.open("tok", &["chat:7".into()]);
        assert_eq!(ids, vec![1, 2]);
        let lines: Vec<serde_json::Value> = open
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["connect"]["token"], "tok");
        assert_eq!(
            lines[1],
            json!({"id":2,"subscribe":{"channel":"chat:7","recover":true}})
        );
        let send = ClientFrame::Send {
            conv: "chat:7".into(),
            client_id: "u1-0".into(),
            body: "t=5 x".into(),
        };
        let cmd: serde_json::Value =
            serde_json::from_str(&s.publish(&send, "u1").unwrap()).unwrap();
        assert_eq!(
            cmd,
            json!({"id":3,"publish":{"channel":"chat:7","data":{"client_id":"u1-0","sender":"u1","body":"t=5 x"}}})
        );
        assert_eq!(s.publish(&ClientFrame::Ping, "u1"), None);
        let frame = concat!(
            r#"{"push":{"channel":"chat:7","pub":{"data":{"client_id":"u1-0","sender":"u1","body":"t=5 x"},"offset":1}}}"#,
            "\n",
            r#"{"id":3,"publish":{}}"#
        );
        let got: Vec<ServerFrame> = parse_frame(frame)
            .unwrap()
            .into_iter()
            .filter_map(|m| s.translate(m))
            .collect();
        assert_eq!(
            got,
            vec![
                ServerFrame::Message {
                    conv: "chat:7".into(),
                    seq: 1,
                    id: "u1-0".into(),
                    sender: "u1".into(),
                    body: "t=5 x".into(),
                    client_id: Some("u1-0".into()),
                },
                ServerFrame::Ack {
                    conv: "chat:7".into(),
                    client_id: "u1-0".into(),
                    seq: 0,
                    id: "u1-0".into(),
                },
            ]
        );
        // A reply to a command that is not a publish in flight (connect, subscribe, a repeat).
        assert_eq!(s.translate(Incoming::Reply { id: 3, error: None }), None);
        assert_eq!(s.translate(Incoming::Reply { id: 1, error: None }), None);
    }

    #[test]
    fn tokens_are_hs256_jwts() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        // jwt.io's HS256 example token.
        assert_eq!(
            sign(
                "your-256-bit-secret",
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
            ),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
        let t = token("secret", "u1", 2_000_000_000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        assert_eq!(
            parts[2],
            sign("secret", &format!("{}.{}", parts[0], parts[1]))
        );
        let users = users(3, &["ws://127.0.0.1:1".into()], None);
        assert_eq!(users[2].id, "u2");
        assert!(users[2].token.is_empty());
        assert_eq!(
            ws_url("ws://127.0.0.1:8000"),
            "ws://127.0.0.1:8000/connection/websocket"
        );
        assert_eq!(
            ws_url("http://127.0.0.1:8000/"),
            "ws://127.0.0.1:8000/connection/websocket"
        );
        assert_eq!(channel(7), "chat:7");
    }
}
