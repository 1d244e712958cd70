//! Fuzz target of the REST body parsers: every route that reads a body gets bytes from bolero
//! through the whole router (`oneshot`, no socket), for a bounded number of inputs in
//! `cargo test` (`BOLERO_RANDOM_ITERATIONS` overrides; a failure prints the
//! `BOLERO_RANDOM_SEED` that replays it; files under `src/__fuzz__/<target>/corpus` or
//! `crashes` are replayed first).
//!
//! Inputs are raw bytes, or a valid body of the route with one field replaced by a generated
//! value of any JSON type (or removed), so they reach the handlers' validation and not only the
//! JSON syntax check. Property: the answer is a documented status — never 5xx — and every
//! error is problem+json.

use crate::router;
use crate::testing::{ADMIN, state};
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use starling_store::{HlcClock, Limits, NodeId, RegionId, open_memory};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;

/// Inputs in `cargo test`.
const ITERATIONS: usize = 4_000;
/// Every status a body may get (2xx for the bodies that happen to be valid).
const DOCUMENTED: [u16; 11] = [200, 201, 204, 400, 401, 403, 404, 409, 413, 422, 429];

/// (route, how to build the body, raw bytes, a string, an integer, a bool)
type Input = (u8, u8, Vec<u8>, String, i64, bool);

#[test]
fn fuzz_rest_bodies() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = open_memory(
        NodeId::new(RegionId::from_name("t"), 1),
        Arc::new(HlcClock::new()),
        Limits::default(),
    );
    let app = router(state(store));
    let call = |method: Method, path: &str, token: Option<&str>, ct: &str, body: Vec<u8>| {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let app = app.clone();
        rt.block_on(async move {
            let resp = app
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, ct, bytes)
        })
    };
    let json_ct = "application/json";
    let sign_up = |handle: &str| -> Value {
        let body = json!({ "handle": handle, "password": "password1" });
        let (_, _, v) = call(
            Method::POST,
            "/v1/users",
            None,
            json_ct,
            body.to_string().into(),
        );
        serde_json::from_slice(&v).unwrap()
    };
    let token = sign_up("fuzzer")["token"].as_str().unwrap().to_string();
    let bob = sign_up("target")["id"].as_str().unwrap().to_string();
    let (_, _, p) = call(
        Method::POST,
        "/v1/posts",
        Some(&token),
        json_ct,
        br#"{"text":"seed"}"#.to_vec(),
    );
    let post = serde_json::from_slice::<Value>(&p).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, c) = call(
        Method::POST,
        "/v1/conversations",
        Some(&token),
        json_ct,
        json!({"members":[bob]}).to_string().into_bytes(),
    );
    let conv = serde_json::from_slice::<Value>(&c).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // (method, path, token, a valid body)
    let routes: Vec<(Method, String, Option<&str>, Value)> = vec![
        (
            Method::POST,
            "/v1/users".into(),
            None,
            json!({"handle":"h","password":"password1","display_name":"d","region":"t"}),
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            None,
            json!({"handle":"fuzzer","password":"password1"}),
        ),
        (
            Method::PATCH,
            "/v1/users/me".into(),
            Some(&token),
            json!({"display_name":"d"}),
        ),
        (
            Method::POST,
            "/v1/friend-requests".into(),
            Some(&token),
            json!({"to": bob}),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(&token),
            json!({"text":"t","media":[]}),
        ),
        (
            Method::PATCH,
            format!("/v1/posts/{post}"),
            Some(&token),
            json!({"text":"t"}),
        ),
        (
            Method::POST,
            "/v1/conversations".into(),
            Some(&token),
            json!({"members":[bob]}),
        ),
        (
            Method::POST,
            format!("/v1/conversations/{conv}/messages"),
            Some(&token),
            json!({"body":"b","client_id":"c"}),
        ),
        (
            Method::PUT,
            "/v1/admin/wan".into(),
            Some(ADMIN),
            json!({"links":[]}),
        ),
        (Method::POST, "/v1/media".into(), Some(&token), Value::Null),
    ];
    let execs = AtomicUsize::new(0);
    // The router and the runtime hold cells: a panic inside fails the test, nothing reuses them.
    let call = std::panic::AssertUnwindSafe(call);
    let mut by_status =
        std::panic::AssertUnwindSafe(std::collections::BTreeMap::<u16, usize>::new());
    bolero::check!()
        .with_type::<Input>()
        .with_iterations(ITERATIONS)
        .cloned()
        .for_each(|(route, mode, bytes, s, n, flag): Input| {
            execs.fetch_add(1, Ordering::Relaxed);
            let (method, path, token, valid) = &routes[usize::from(route) % routes.len()];
            let generated = match mode % 7 {
                0 => Value::String(s.clone()),
                1 => json!(n),
                2 => json!(flag),
                3 => Value::Null,
                4 => json!([s.clone(), n]),
                5 => json!({ "k": s.clone() }),
                _ => json!(n as f64 / 3.0),
            };
            let body = match (mode / 7) % 3 {
                _ if valid.is_null() => bytes.clone(),
                0 => bytes.clone(),
                1 => s.clone().into_bytes(),
                _ => {
                    let mut v = valid.clone();
                    let obj = v.as_object_mut().unwrap();
                    let keys: Vec<String> = obj.keys().cloned().collect();
                    let k = &keys[usize::from(mode) % keys.len()];
                    if flag {
                        obj.insert(k.clone(), generated);
                    } else {
                        obj.remove(k);
                    }
                    v.to_string().into_bytes()
                }
            };
            let ct = if valid.is_null() {
                "image/png"
            } else {
                json_ct
            };
            let (status, rct, resp) = call(method.clone(), path, *token, ct, body);
            assert!(
                DOCUMENTED.contains(&status),
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&resp)
            );
            if status >= 400 {
                assert_eq!(rct, "application/problem+json", "{method} {path}");
            }
            *by_status.entry(status).or_default() += 1;
        });
    eprintln!(
        "fuzz_rest_bodies: {} execs, by status {:?}",
        execs.load(Ordering::Relaxed),
        *by_status
    );
}
