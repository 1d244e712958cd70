//! The one HTTP client of the tests and benches (ureq, blocking; [`send_async`] runs it on
//! tokio's blocking pool) and the one `/metrics` reader. A connection a request, never pooled
//! (as the hand-written clients before it: a test counting a node's connections sees only its
//! own). Tests that must send malformed bytes keep their raw sockets (`bad_input.rs`).
//!
//! Included by `tests/common/mod.rs` and, with `#[path]`, by benches.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test and bench files

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::OnceLock;
use std::time::Duration;

/// An answer: its status, its head as text (`HTTP/1.1 200 OK` then `name: value` lines) and
/// its body (chunked bodies joined).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (null when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections(0)
            .timeout_recv_response(Some(Duration::from_secs(10)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .build()
            .into()
    })
}

/// One request to `addr` (`HOST:PORT`) with these request headers (e.g. `("Authorization",
/// "Bearer …")`, `("Range", "bytes=0-1")`); panics when no answer comes.
pub fn send(
    addr: impl Display,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let url = format!("http://{addr}{path}");
    let a = agent();
    let mut req = match method {
        "POST" => a.post(&url),
        "PUT" => a.put(&url),
        "PATCH" => a.patch(&url),
        "GET" => a.get(&url).force_send_body(),
        "DELETE" => a.delete(&url).force_send_body(),
        "HEAD" => a.head(&url).force_send_body(),
        "OPTIONS" => a.options(&url).force_send_body(),
        other => panic!("method {other}: not one the tests use"),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut res = req
        .send(body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
    let status = res.status();
    let mut head = format!("HTTP/1.1 {status}");
    for (k, v) in res.headers() {
        head.push_str(&format!(
            "\r\n{k}: {}",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    let body = res
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: the body: {e}"));
    Reply {
        status: status.as_u16(),
        head,
        body,
    }
}

/// [`send`] from async code: on tokio's blocking pool, so an in-process server on the same
/// runtime goes on serving.
pub async fn send_async(
    addr: impl Display,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let (addr, method, path, body) = (
        addr.to_string(),
        method.to_string(),
        path.to_string(),
        body.to_vec(),
    );
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        send(addr, &method, &path, &headers, &body)
    })
    .await
    .unwrap()
}

/// A JSON call from async code with the bearer `token` if any and `body` (none when `None`):
/// (status, the answer as JSON, null when it is not JSON).
pub async fn json_async(
    addr: impl Display,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(auth.as_deref().map(|a| ("Authorization", a)));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let r = send_async(addr, method, path, &headers, body.as_bytes()).await;
    (r.status, r.json())
}

/// The value of response header `name` (any case) in a response head.
pub fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A node's `/metrics`, read once: each series (its name with its labels, as written, e.g.
/// `starling_write_rate_limited_total{write="Post"}`) to its value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub HashMap<String, f64>);

impl Metrics {
    /// Reads the node at `addr`; `None` when it does not answer 200.
    pub fn read(addr: impl Display) -> Option<Metrics> {
        let r = send(addr, "GET", "/metrics", &[], b"");
        (r.status == 200).then(|| Metrics::parse(&String::from_utf8_lossy(&r.body)))
    }

    /// [`Metrics::read`] from async code.
    pub async fn read_async(addr: impl Display) -> Option<Metrics> {
        let r = send_async(addr, "GET", "/metrics", &[], b"").await;
        (r.status == 200).then(|| Metrics::parse(&String::from_utf8_lossy(&r.body)))
    }

    /// The text exposition format: `series value` lines, `#` lines skipped.
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.trim().rsplit_once(' ')?;
                    Some((series.trim().to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The value of `series` (name and labels as written), if present.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }
}
