//! The AsyncAPI document of the WebSocket protocol (`docs/asyncapi.json`; the AsyncAPI parser
//! checks it in `infra/asyncapi.sh`) lists exactly the frame types the server knows, so the two
//! cannot drift apart. The document describes the server: the messages of its `receive`
//! operation are the client frames ([`CLIENT_TYPES`]), those of its `send` operation the server
//! frames ([`SERVER_TYPES`]); a frame type is the `const` of its payload's `type` property.
//! `typing` and `read` are frames in both directions.

use serde_json::Value;
use starling_messenger::protocol::{CLIENT_TYPES, SERVER_TYPES};
use std::collections::BTreeSet;
use std::path::Path;

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/asyncapi.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Follows local references (`{"$ref": "#/json/pointer"}`) to the value they name.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference}: only references inside the document are used"));
        value = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference}: nothing there in the document"));
    }
    panic!("references nested more than 32 deep (a cycle?)")
}

/// The frame type of a message: the `const` of its payload's `type` property.
fn frame_type(doc: &Value, message: &Value) -> String {
    let message = resolve(doc, message);
    let name = message.get("name").and_then(Value::as_str).unwrap_or("?");
    let payload = resolve(
        doc,
        message
            .get("payload")
            .unwrap_or_else(|| panic!("message {name}: no payload")),
    );
    let ty = payload
        .get("properties")
        .map(|p| resolve(doc, p))
        .and_then(|p| p.get("type"))
        .map(|t| resolve(doc, t))
        .unwrap_or_else(|| panic!("message {name}: its payload has no `type` property"));
    ty.get("const")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("message {name}: its payload's `type` is not a string const"))
        .to_string()
}

/// The messages of the operations whose action is `action` (an operation that lists none has
/// every message of its channel, as AsyncAPI 3 says).
fn operation_messages<'a>(doc: &'a Value, action: &str) -> Vec<&'a Value> {
    let operations = doc
        .get("operations")
        .and_then(Value::as_object)
        .expect("the document has no operations");
    let mut messages = Vec::new();
    let mut found = false;
    for (id, operation) in operations {
        let operation = resolve(doc, operation);
        if operation.get("action").and_then(Value::as_str) != Some(action) {
            continue;
        }
        found = true;
        let listed = match operation.get("messages") {
            Some(list) => list
                .as_array()
                .unwrap_or_else(|| panic!("operation {id}: `messages` is not an array"))
                .iter()
                .collect::<Vec<_>>(),
            None => {
                let channel = resolve(
                    doc,
                    operation
                        .get("channel")
                        .unwrap_or_else(|| panic!("operation {id}: no channel")),
                );
                channel
                    .get("messages")
                    .and_then(Value::as_object)
                    .map(|m| m.values().collect())
                    .unwrap_or_default()
            }
        };
        messages.extend(listed.into_iter().map(|m| resolve(doc, m)));
    }
    assert!(
        found,
        "the document has no operation with action {action:?}"
    );
    messages
}

fn types_of(doc: &Value, messages: &[&Value]) -> BTreeSet<String> {
    messages.iter().map(|m| frame_type(doc, m)).collect()
}

fn set(types: &[&str]) -> BTreeSet<String> {
    types.iter().map(|t| t.to_string()).collect()
}

/// Fails with what is missing on either side.
fn assert_same(direction: &str, documented: &BTreeSet<String>, server: &BTreeSet<String>) {
    let missing: Vec<_> = server.difference(documented).collect();
    let extra: Vec<_> = documented.difference(server).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{direction} frames: the server has {missing:?} that docs/asyncapi.json lacks, and the \
         document has {extra:?} that the server does not know"
    );
}

#[test]
fn the_receive_operation_has_exactly_the_client_frames() {
    let doc = document();
    let documented = types_of(&doc, &operation_messages(&doc, "receive"));
    assert_same("client → server", &documented, &set(&CLIENT_TYPES));
}

#[test]
fn the_send_operation_has_exactly_the_server_frames() {
    let doc = document();
    let documented = types_of(&doc, &operation_messages(&doc, "send"));
    assert_same("server → client", &documented, &set(&SERVER_TYPES));
}

#[test]
fn every_message_of_the_document_is_a_frame_of_an_operation() {
    let doc = document();
    let mut used = operation_messages(&doc, "receive");
    used.extend(operation_messages(&doc, "send"));
    let known: BTreeSet<String> = set(&CLIENT_TYPES)
        .union(&set(&SERVER_TYPES))
        .cloned()
        .collect();

    // Every message the document defines, in components and in channels.
    let mut defined: Vec<(String, &Value)> = Vec::new();
    if let Some(messages) = doc
        .pointer("/components/messages")
        .and_then(Value::as_object)
    {
        defined.extend(
            messages
                .iter()
                .map(|(k, m)| (format!("components/messages/{k}"), m)),
        );
    }
    if let Some(channels) = doc.get("channels").and_then(Value::as_object) {
        for (c, channel) in channels {
            let channel = resolve(&doc, channel);
            assert_eq!(
                channel.get("address").and_then(Value::as_str),
                Some("/v1/ws"),
                "channel {c}: the protocol has one channel, GET /v1/ws"
            );
            if let Some(messages) = channel.get("messages").and_then(Value::as_object) {
                defined.extend(
                    messages
                        .iter()
                        .map(|(k, m)| (format!("channels/{c}/messages/{k}"), m)),
                );
            }
        }
    }
    assert!(!defined.is_empty(), "the document defines no message");
    for (place, message) in defined {
        let message = resolve(&doc, message);
        let ty = frame_type(&doc, message);
        assert!(
            known.contains(&ty),
            "{place}: frame type {ty:?} is neither in CLIENT_TYPES nor in SERVER_TYPES"
        );
        assert!(
            used.iter().any(|u| std::ptr::eq(*u, message)),
            "{place} (frame type {ty:?}) is in no operation: is it sent or received?"
        );
    }
}

/// The documented payload of the server frame of type `ty`.
fn server_payload<'a>(doc: &'a Value, ty: &str) -> &'a Value {
    let message = operation_messages(doc, "send")
        .into_iter()
        .find(|m| frame_type(doc, m) == ty)
        .unwrap_or_else(|| panic!("no documented server frame {ty:?}"));
    resolve(
        doc,
        message.get("payload").expect("a payload (checked above)"),
    )
}

/// The frames the server builds from log entries (`message`, `edited`, `deleted`; a deleted
/// user's too) carry every property their payload requires, and nothing it does not describe:
/// a field added to a frame (such as `sender_deleted`) must be added to the document.
#[test]
fn log_entry_frames_have_exactly_the_documented_properties() {
    use starling_messenger::protocol::message_frame;
    use starling_messenger::{Message, MessageKind, Role};
    let doc = document();
    let mut text = Message::text(2, "c-1", 1, "hi");
    (text.seq, text.id) = (7, 9);
    let mut event = Message::text(2, "role-1", 1, "");
    (event.seq, event.kind, event.target, event.role) =
        (8, MessageKind::RoleChanged, Some(3), Some(Role::Admin));
    let mut edit = Message::text(2, "e-1", 1, "better");
    (edit.seq, edit.kind, edit.target_seq) = (9, MessageKind::Edit, Some(7));
    let mut delete = Message::text(2, "d-1", 1, "");
    (delete.seq, delete.kind, delete.target_seq) = (10, MessageKind::Delete, Some(7));
    for m in [&text, &event, &edit, &delete] {
        for sender_deleted in [false, true] {
            let frame: Value = serde_json::from_slice(&message_frame(m, sender_deleted)).unwrap();
            let ty = frame["type"].as_str().unwrap().to_string();
            let payload = server_payload(&doc, &ty);
            let properties = resolve(&doc, &payload["properties"])
                .as_object()
                .unwrap_or_else(|| panic!("{ty}: payload without properties"));
            let fields = frame.as_object().unwrap();
            for required in payload["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                assert!(
                    fields.contains_key(required),
                    "{ty} frame {frame}: lacks {required:?}, which docs/asyncapi.json requires"
                );
            }
            for field in fields.keys() {
                assert!(
                    properties.contains_key(field),
                    "{ty} frame {frame}: {field:?} is not described in docs/asyncapi.json"
                );
            }
            if ty != "deleted" {
                assert_eq!(frame["sender_deleted"], sender_deleted, "{frame}");
            }
        }
    }
}
