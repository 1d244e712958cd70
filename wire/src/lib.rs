//! Starling's public wire types, written once for the server (which parses them,
//! `starling_messenger::protocol`) and for clients such as the load generator (which send
//! them): the frames a client sends on `GET /v1/ws` (`docs/asyncapi.json` describes them).
//!
//! Types only, no I/O and no dependency on the rest of Starling, so a client that uses them
//! still sees the server only through its public interface.

use serde::{Deserialize, Serialize};

/// A frame from a client: JSON with a `type` tag, `snake_case`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message.
    Send {
        /// Conversation id.
        conv: String,
        /// Idempotency key chosen by the client (a retry with it gets the original ack).
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
    /// Edit one's own message.
    Edit {
        /// Conversation id.
        conv: String,
        /// The message's seq.
        seq: u64,
        /// The new text.
        body: String,
        /// Idempotency key (default: derived from the seq and the text).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Delete one's own message (or any, for a group's owner and admins).
    Delete {
        /// Conversation id.
        conv: String,
        /// The message's seq.
        seq: u64,
        /// Idempotency key (default: derived from the seq).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_what_they_write() {
        let frames = [
            ClientFrame::Send {
                conv: "1".into(),
                client_id: "c".into(),
                body: "hi".into(),
            },
            ClientFrame::Resume {
                conv: "1".into(),
                after_seq: 3,
            },
            ClientFrame::Typing { conv: "1".into() },
            ClientFrame::Read {
                conv: "1".into(),
                seq: 2,
            },
            ClientFrame::Ping,
            ClientFrame::Edit {
                conv: "1".into(),
                seq: 2,
                body: "b".into(),
                client_id: None,
            },
            ClientFrame::Delete {
                conv: "1".into(),
                seq: 2,
                client_id: Some("d".into()),
            },
        ];
        for f in frames {
            let text = serde_json::to_string(&f).unwrap();
            assert_eq!(
                serde_json::from_str::<ClientFrame>(&text).unwrap(),
                f,
                "{text}"
            );
        }
    }

    #[test]
    fn the_wire_form_is_tagged_snake_case() {
        let send = ClientFrame::Send {
            conv: "5".into(),
            client_id: "a".into(),
            body: "x".into(),
        };
        assert_eq!(
            serde_json::to_string(&send).unwrap(),
            r#"{"type":"send","conv":"5","client_id":"a","body":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&ClientFrame::Ping).unwrap(),
            r#"{"type":"ping"}"#
        );
        let edit = ClientFrame::Edit {
            conv: "5".into(),
            seq: 1,
            body: "y".into(),
            client_id: None,
        };
        assert_eq!(
            serde_json::to_string(&edit).unwrap(),
            r#"{"type":"edit","conv":"5","seq":1,"body":"y"}"#,
            "an absent client_id is left out"
        );
    }
}
