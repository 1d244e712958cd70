//! The WebSocket wire protocol (version 1): one JSON object per text frame, tagged by `"type"`.
//! Ids travel as decimal strings, seqs as numbers. Parsing is in one place ([`parse`]) and tells
//! bad JSON, unknown types and missing fields apart, so the client gets a precise `error`.
//! These are wire types: they change only with a new protocol version.

use crate::model::{Message, MessageKind, Role};
use bytes::Bytes;
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};

/// A frame from a client (defined once, in `starling_wire`, for the server and its clients).
pub use starling_wire::ClientFrame;

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

/// Every frame type a client may send (the AsyncAPI document lists each; a test checks).
pub const CLIENT_TYPES: [&str; 7] = ["send", "resume", "typing", "read", "ping", "edit", "delete"];

/// Every frame type the server sends (see [`ServerFrame::type_name`]).
pub const SERVER_TYPES: [&str; 12] = [
    "ack",
    "message",
    "edited",
    "deleted",
    "removed",
    "resumed",
    "typing",
    "read",
    "presence",
    "error",
    "pong",
    "notification",
];

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
    if !CLIENT_TYPES.contains(&kind.as_str()) {
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

/// An id as the JSON string the protocol gives every id, written straight into the frame.
fn id_string<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A frame to a client. Serialize with [`encode`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// The sender's send is stored (durably, at the configured level).
    Ack {
        /// Conversation id (a JSON string, written without a `String` of its own: one ack a
        /// message).
        #[serde(serialize_with = "id_string")]
        conv: u64,
        /// The client's id of the send.
        client_id: &'a str,
        /// Assigned seq.
        seq: u64,
        /// Message id (a JSON string, as `conv`).
        #[serde(serialize_with = "id_string")]
        id: u64,
    },
    /// A message of a conversation.
    Message(MessageView<'a>),
    /// End of a resume's history: live messages follow.
    Resumed {
        /// Conversation id.
        conv: String,
        /// The last seq sent so far.
        last_seq: u64,
        /// The first seq the conversation keeps (1: nothing trimmed; entries below it are past
        /// the history retention, never sent).
        first_seq: u64,
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
    /// One of the user's notifications, as `GET /v1/notifications` lists it (the API builds
    /// the item: `id`, `type`, `actors`, `post`?, `created_at`, `read`).
    Notification(&'a serde_json::Map<String, serde_json::Value>),
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
    /// A message was edited (log entry `log_seq` of kind `edit`).
    Edited {
        /// Conversation id.
        conv: String,
        /// The edited message's seq.
        seq: u64,
        /// The edit's own seq in the log.
        log_seq: u64,
        /// Who edited (the message's sender).
        sender: String,
        /// The sender's account was deleted since (see [`MessageView::sender_deleted`]).
        sender_deleted: bool,
        /// The new text.
        body: &'a str,
        /// RFC 3339.
        edited_at: String,
    },
    /// A message was deleted (log entry `log_seq` of kind `delete`).
    Deleted {
        /// Conversation id.
        conv: String,
        /// The deleted message's seq.
        seq: u64,
        /// The delete's own seq in the log.
        log_seq: u64,
        /// Who deleted it.
        by: String,
    },
    /// The connection's user was removed from (or left) the conversation at `seq`: nothing
    /// later reaches them.
    Removed {
        /// Conversation id.
        conv: String,
        /// The removal's seq.
        seq: u64,
    },
}

impl ServerFrame<'_> {
    /// The frame's `type` (every one is in [`SERVER_TYPES`]).
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Message(_) => "message",
            ServerFrame::Resumed { .. } => "resumed",
            ServerFrame::Typing { .. } => "typing",
            ServerFrame::Read { .. } => "read",
            ServerFrame::Presence { .. } => "presence",
            ServerFrame::Error { .. } => "error",
            ServerFrame::Pong => "pong",
            ServerFrame::Edited { .. } => "edited",
            ServerFrame::Deleted { .. } => "deleted",
            ServerFrame::Removed { .. } => "removed",
            ServerFrame::Notification(_) => "notification",
        }
    }
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
    /// `text`, a membership or metadata event, `edit` or `delete` (see [`MessageKind`]).
    pub kind: &'static str,
    /// The user a membership event concerns.
    pub target: Option<String>,
    /// The entry an `edit` or `delete` applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_seq: Option<u64>,
    /// The role a `role_changed` gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A `renamed` event's new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// A `renamed` event's new topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    /// When the text was last edited (RFC 3339), or null.
    pub edited_at: Option<String>,
    /// Deleted: the body is gone.
    pub deleted: bool,
    /// The sender's account was deleted: the entry reads as from a deleted user (its `sender`
    /// id resolves to nothing; the body is kept). Set by whoever builds the frame from the
    /// deletion records ([`message_frame`]'s caller); false through [`From`].
    pub sender_deleted: bool,
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        let renamed = (m.kind == MessageKind::Renamed)
            .then_some(m.state.as_deref())
            .flatten();
        MessageView {
            conv: m.conv.to_string(),
            seq: m.seq,
            id: m.id.to_string(),
            sender: m.sender.to_string(),
            body: &m.body,
            client_id: &m.client_id,
            sent_at: rfc3339(m.sent_at_ms),
            kind: m.kind.as_str(),
            target: m.target.map(|t| t.to_string()),
            target_seq: m.target_seq,
            role: m.role.map(Role::as_str),
            name: renamed.map(|c| c.name.as_str()),
            topic: renamed.map(|c| c.topic.as_str()),
            edited_at: m.edited_at_ms.map(rfc3339),
            deleted: m.deleted,
            sender_deleted: false,
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

/// The frame of a log entry: `message`, or `edited` / `deleted` for an edit or delete entry.
/// `sender_deleted`: the entry's sender deleted their account (a `message` or `edited` frame
/// says so; the caller reads the deletion record).
pub fn message_frame(m: &Message, sender_deleted: bool) -> Bytes {
    match (m.kind, m.target_seq) {
        (MessageKind::Edit, Some(target)) => encode(&ServerFrame::Edited {
            conv: m.conv.to_string(),
            seq: target,
            log_seq: m.seq,
            sender: m.sender.to_string(),
            sender_deleted,
            body: &m.body,
            edited_at: rfc3339(m.sent_at_ms),
        }),
        (MessageKind::Delete, Some(target)) => encode(&ServerFrame::Deleted {
            conv: m.conv.to_string(),
            seq: target,
            log_seq: m.seq,
            by: m.sender.to_string(),
        }),
        _ => encode(&ServerFrame::Message(MessageView {
            sender_deleted,
            ..m.into()
        })),
    }
}

/// The `removed` frame for the user a removal or leave entry concerns.
pub fn removed_frame(m: &Message) -> Bytes {
    encode(&ServerFrame::Removed {
        conv: m.conv.to_string(),
        seq: m.seq,
    })
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
    fn an_ack_writes_its_ids_as_json_strings() {
        let f = encode(&ServerFrame::Ack {
            conv: 7,
            client_id: "c\"1",
            seq: 3,
            id: u64::MAX,
        });
        assert_eq!(
            std::str::from_utf8(&f).unwrap(),
            r#"{"type":"ack","conv":"7","client_id":"c\"1","seq":3,"id":"18446744073709551615"}"#
        );
    }

    #[test]
    fn every_server_frame_type_is_listed_and_encoded_under_its_name() {
        let m = Message::text(1, "c", 1, "b");
        let item = serde_json::Map::from_iter([("id".to_string(), "5".into())]);
        let frames = [
            ServerFrame::Ack {
                conv: 1,
                client_id: "c",
                seq: 1,
                id: 2,
            },
            ServerFrame::Message((&m).into()),
            ServerFrame::Resumed {
                conv: "1".into(),
                last_seq: 0,
                first_seq: 1,
            },
            ServerFrame::Typing {
                conv: "1".into(),
                user: "2".into(),
            },
            ServerFrame::Read {
                conv: "1".into(),
                user: "2".into(),
                seq: 1,
            },
            ServerFrame::Presence {
                user: "2".into(),
                online: true,
            },
            ServerFrame::Error {
                code: "x",
                message: "y",
                reference: None,
            },
            ServerFrame::Pong,
            ServerFrame::Edited {
                conv: "1".into(),
                seq: 1,
                log_seq: 2,
                sender: "3".into(),
                sender_deleted: false,
                body: "b",
                edited_at: rfc3339(0),
            },
            ServerFrame::Deleted {
                conv: "1".into(),
                seq: 1,
                log_seq: 2,
                by: "3".into(),
            },
            ServerFrame::Removed {
                conv: "1".into(),
                seq: 1,
            },
            ServerFrame::Notification(&item),
        ];
        let mut names: Vec<&str> = frames.iter().map(ServerFrame::type_name).collect();
        for f in &frames {
            let v: serde_json::Value = serde_json::from_slice(&encode(f)).unwrap();
            assert_eq!(v["type"], f.type_name());
        }
        names.sort_unstable();
        let mut listed = SERVER_TYPES.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed);
        for t in CLIENT_TYPES {
            assert_ne!(
                parse(&format!(r#"{{"type":"{t}"}}"#)).map_err(|e| e.code),
                Err("unknown_type")
            );
        }
    }

    #[test]
    fn frames_have_the_documented_shape() {
        let mut m = Message::text(2, "c", 1, "hi");
        m.seq = 7;
        m.id = 9;
        let v: serde_json::Value = serde_json::from_slice(&message_frame(&m, false)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"message","conv":"1","seq":7,"id":"9","sender":"2",
                "body":"hi","client_id":"c","sent_at":"1970-01-01T00:00:00.000Z",
                "kind":"text","target":null,"edited_at":null,"deleted":false,
                "sender_deleted":false})
        );
        let v: serde_json::Value = serde_json::from_slice(&message_frame(&m, true)).unwrap();
        assert_eq!(
            (&v["sender_deleted"], &v["body"]),
            (&serde_json::json!(true), &serde_json::json!("hi"))
        );
        let mut e = Message::text(2, "e", 1, "better");
        e.seq = 8;
        e.kind = MessageKind::Edit;
        e.target_seq = Some(7);
        let v: serde_json::Value = serde_json::from_slice(&message_frame(&e, false)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"edited","conv":"1","seq":7,"log_seq":8,"sender":"2",
                "sender_deleted":false,"body":"better","edited_at":"1970-01-01T00:00:00.000Z"})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&error_frame("bad_json", "x", None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"bad_json","message":"x"})
        );
    }
}
