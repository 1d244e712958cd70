//! Fuzz targets of the WebSocket protocol parser (`protocol::parse`, every client frame goes
//! through it) and of the error-frame encoder, run by `cargo test` for a bounded number of
//! inputs (bolero's random engine; `BOLERO_RANDOM_ITERATIONS` overrides the count, a failure
//! prints the `BOLERO_RANDOM_SEED` that replays it, and files under
//! `tests/__fuzz__/<target>/corpus` or `crashes` are replayed first).
//!
//! Properties: no text makes the parser panic, and every refusal carries one of the documented
//! codes with a bounded `ref`; a frame built from valid fields parses back to the same frame
//! (the parser's inverse of what clients send); an error frame is valid JSON that carries its
//! code, message and reference unchanged.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use starling_messenger::protocol::{ClientFrame, error_frame, parse};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Inputs per target in `cargo test`.
const ITERATIONS: usize = 20_000;

#[test]
fn fuzz_parse_arbitrary_text() {
    let execs = AtomicUsize::new(0);
    bolero::check!()
        .with_iterations(ITERATIONS)
        .for_each(|bytes: &[u8]| {
            execs.fetch_add(1, Ordering::Relaxed);
            // Raw bytes as the text a client could send (tungstenite only hands over UTF-8).
            let text = String::from_utf8_lossy(bytes);
            if let Err(e) = parse(&text) {
                assert!(
                    ["bad_json", "bad_frame", "unknown_type"].contains(&e.code),
                    "{}",
                    e.code
                );
                assert!(e.reference.as_ref().is_none_or(|r| r.chars().count() <= 64));
            }
        });
    eprintln!(
        "fuzz_parse_arbitrary_text: {} execs",
        execs.load(Ordering::Relaxed)
    );
}

/// (which frame, conv, client id, body, a number, an extra field's value, mutate a field)
type Parts = (u8, String, String, String, u64, i64, u8);

#[test]
fn fuzz_parse_structured_frames() {
    let execs = AtomicUsize::new(0);
    bolero::check!()
        .with_type::<Parts>()
        .with_iterations(ITERATIONS)
        .cloned()
        .for_each(|(kind, conv, client_id, body, n, extra, mutate): Parts| {
            execs.fetch_add(1, Ordering::Relaxed);
            let (mut v, want) = match kind % 5 {
                0 => (
                    json!({"type":"send","conv":conv,"client_id":client_id,"body":body}),
                    ClientFrame::Send {
                        conv: conv.clone(),
                        client_id,
                        body,
                    },
                ),
                1 => (
                    json!({"type":"resume","conv":conv,"after_seq":n}),
                    ClientFrame::Resume {
                        conv: conv.clone(),
                        after_seq: n,
                    },
                ),
                2 => (
                    json!({"type":"typing","conv":conv}),
                    ClientFrame::Typing { conv: conv.clone() },
                ),
                3 => (
                    json!({"type":"read","conv":conv,"seq":n}),
                    ClientFrame::Read {
                        conv: conv.clone(),
                        seq: n,
                    },
                ),
                _ => (json!({"type":"ping"}), ClientFrame::Ping),
            };
            // Unknown fields are ignored: clients may add `ref`.
            v["ref"] = json!(extra);
            assert_eq!(parse(&v.to_string()), Ok(want), "{v}");
            // One field of the wrong type, or missing: refused as bad_frame, never a panic.
            let obj = v.as_object_mut().unwrap();
            let field = ["conv", "client_id", "body", "after_seq", "seq"][usize::from(mutate) % 5];
            if obj.contains_key(field) {
                match mutate / 5 % 4 {
                    0 => obj.remove(field),
                    1 => obj.insert(field.into(), json!(extra)),
                    2 => obj.insert(field.into(), json!([conv])),
                    _ => obj.insert(field.into(), Value::Null),
                };
                let numeric = field == "after_seq" || field == "seq";
                let still_valid = matches!(mutate / 5 % 4, 1) && numeric && extra >= 0;
                let got = parse(&v.to_string());
                if still_valid {
                    assert!(got.is_ok(), "{v}");
                } else {
                    assert_eq!(got.map_err(|e| e.code), Err("bad_frame"), "{v}");
                }
            }
        });
    eprintln!(
        "fuzz_parse_structured_frames: {} execs",
        execs.load(Ordering::Relaxed)
    );
}

#[test]
fn fuzz_error_frames_are_json_that_round_trips() {
    let execs = AtomicUsize::new(0);
    bolero::check!()
        .with_type::<(String, String, Option<String>)>()
        .with_iterations(ITERATIONS)
        .for_each(
            |(code, message, reference): &(String, String, Option<String>)| {
                execs.fetch_add(1, Ordering::Relaxed);
                let f = error_frame(code, message, reference.as_deref());
                let v: Value = serde_json::from_slice(&f).unwrap();
                assert_eq!(v["type"], "error");
                assert_eq!(v["code"], code.as_str());
                assert_eq!(v["message"], message.as_str());
                match reference {
                    Some(r) => assert_eq!(v["ref"], r.as_str()),
                    None => assert!(v.get("ref").is_none_or(Value::is_null)),
                }
            },
        );
    eprintln!(
        "fuzz_error_frames_are_json_that_round_trips: {} execs",
        execs.load(Ordering::Relaxed)
    );
}
