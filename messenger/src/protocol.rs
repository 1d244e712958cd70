//! The WebSocket wire protocol (version 1): one JSON object per text frame, tagged by `"type"`.
//! Ids travel as decimal strings, seqs as numbers. Parsing is in one place ([`parse`]) and tells
//! bad JSON, unknown types and missing fields apart, so the client gets a precise `error`.
//! These are wire types: they change only with a new protocol version.

use crate::model::Message;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{Duration, UNIX_EPOCH};

/// A frame from a client.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message.
    Send {
        /// Conversation id.
        conv: String,
        /// Idempotency key chosen by the client.
        client_id: String,
        /// Text.
        body: String,
    },
    /// Get every stored message after `after_seq`, then live ones.
    Resume {
        /// Conversation id.
        conv: String,
        /// The last seq the client holds (0: none).
        after_seq: u64,
    },
    /// The user is typing.
    Typing {
        /// Conversation id.
        conv: String,
    },
    /// The user has read up to `seq`.
    Read {
        /// Conversation id.
        conv: String,
        /// Read-up-to marker.
        seq: u64,
    },
    /// Liveness check.
    Ping,
}

/// Why a frame was refused: sent back as an `error` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// Machine-readable code.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// The client's `ref` (or `client_id`) of the frame, if it had one.
    pub reference: Option<String>,
}

const TYPES: [&str; 5] = ["send", "resume", "typing", "read", "ping"];

/// Parses a client frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| FrameError {
        code: "bad_json",
        message: format!("not JSON: {e}"),
        reference: None,
    })?;
    let reference = value
        .get("ref")
        .or_else(|| value.get("client_id"))
        .and_then(|v| v.as_str())
        .map(|s| s.chars().take(64).collect());
    let Some(kind) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        return Err(FrameError {
            code: "bad_frame",
            message: "a frame is a JSON object with a string \"type\"".into(),
            reference,
        });
    };
    if !TYPES.contains(&kind.as_str()) {
        return Err(FrameError {
            code: "unknown_type",
            message: format!(
                "unknown frame type {:?}",
                kind.chars().take(32).collect::<String>()
            ),
            reference,
        });
    }
    serde_json::from_value(value).map_err(|e| FrameError {
        code: "bad_frame",
        message: format!("invalid {kind} frame: {e}"),
        reference,
    })
}

/// A frame to a client. Serialize with [`encode`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// The sender's send is stored (durably, at the configured level).
    Ack {
        /// Conversation id.
        conv: String,
        /// The client's id of the send.
        client_id: &'a str,
        /// Assigned seq.
        seq: u64,
        /// Message id.
        id: String,
    },
    /// A message of a conversation.
    Message(MessageView<'a>),
    /// End of a resume's history: live messages follow.
    Resumed {
        /// Conversation id.
        conv: String,
        /// The last seq sent so far.
        last_seq: u64,
    },
    /// A member is typing.
    Typing {
        /// Conversation id.
        conv: String,
        /// Who.
        user: String,
    },
    /// A member read up to `seq`.
    Read {
        /// Conversation id.
        conv: String,
        /// Who.
        user: String,
        /// Up to which seq.
        seq: u64,
    },
    /// A contact came online or went offline.
    Presence {
        /// Who.
        user: String,
        /// Online now.
        online: bool,
    },
    /// A refused frame; the connection stays open.
    Error {
        /// Machine-readable code.
        code: &'a str,
        /// For a person.
        message: &'a str,
        /// The refused frame's `ref` or `client_id`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    /// Answer to `ping`.
    Pong,
}

/// A message on the wire (also the REST shape).
#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    /// Conversation id.
    pub conv: String,
    /// Seq.
    pub seq: u64,
    /// Message id.
    pub id: String,
    /// Sender id.
    pub sender: String,
    /// Text.
    pub body: &'a str,
    /// The sender's client id.
    pub client_id: &'a str,
    /// RFC 3339.
    pub sent_at: String,
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        MessageView {
            conv: m.conv.to_string(),
            seq: m.seq,
            id: m.id.to_string(),
            sender: m.sender.to_string(),
            body: &m.body,
            client_id: &m.client_id,
            sent_at: rfc3339(m.sent_at_ms),
        }
    }
}

/// RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The JSON text of a frame.
pub fn encode(f: &ServerFrame<'_>) -> Bytes {
    // Serializing these types cannot fail (string keys, no maps of other keys).
    Bytes::from(serde_json::to_vec(f).unwrap_or_default())
}

/// The `message` frame of a message.
pub fn message_frame(m: &Message) -> Bytes {
    encode(&ServerFrame::Message(m.into()))
}

/// The `error` frame of a refused frame.
pub fn error_frame(code: &str, message: &str, reference: Option<&str>) -> Bytes {
    encode(&ServerFrame::Error {
        code,
        message,
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_tells_errors_apart() {
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
        assert_eq!(
            parse(r#"{"type":"resume","conv":"5","after_seq":3}"#),
            Ok(ClientFrame::Resume {
                conv: "5".into(),
                after_seq: 3
            })
        );
        assert_eq!(parse("{nope").unwrap_err().code, "bad_json");
        assert_eq!(parse("[1]").unwrap_err().code, "bad_frame");
        assert_eq!(
            parse(r#"{"type":"dance"}"#).unwrap_err().code,
            "unknown_type"
        );
        let e = parse(r#"{"type":"send","conv":"1","client_id":"c1"}"#).unwrap_err();
        assert_eq!((e.code, e.reference.as_deref()), ("bad_frame", Some("c1")));
    }

    #[test]
    fn frames_have_the_documented_shape() {
        let m = Message {
            sender: 2,
            client_id: "c".into(),
            conv: 1,
            seq: 7,
            id: 9,
            body: "hi".into(),
            sent_at_ms: 0,
        };
        let v: serde_json::Value = serde_json::from_slice(&message_frame(&m)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"message","conv":"1","seq":7,"id":"9","sender":"2",
                "body":"hi","client_id":"c","sent_at":"1970-01-01T00:00:00.000Z"})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&error_frame("bad_json", "x", None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"bad_json","message":"x"})
        );
    }
}
