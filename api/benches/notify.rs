//! Notification delivery latency: the time from a like, reply or follow request to the
//! `notification` frame at the recipient's WebSocket, at a fixed rate, for the real `starling`
//! binary — beside, in the same run and at the same rate, a chat message sent over REST to the
//! same recipient (the peer figure: the messenger's live delivery).
//!
//! ```text
//! cargo bench -p starling-api --bench notify -- --starling target/release/starling --rate 100 --secs 20
//! ```
//! `--pairs` actor/recipient pairs (default 50); each recipient is connected over WebSocket and
//! has posts for its actor to like; events go round robin over the pairs and, per pair, over
//! the four kinds (like a new post, reply, follow — unfollowed right after, unmeasured — and a
//! chat message), so each kind runs at a quarter of `--rate`. Latency is measured from the
//! request's send and from its acknowledgement (the answer read) to the frame's receipt; both
//! ends are in this process (one clock). A frame can arrive before the answer is read (the
//! notification is written before the answer and delivered by the change-feed tail): the
//! from-answer figure then counts 0 and the run counts those frames. `infra/bench-notify.sh`
//! runs it and writes `bench/notifications.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: fail loudly

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const KINDS: [&str; 4] = ["like", "reply", "follow", "chat message (peer)"];

struct Args {
    starling: String,
    rate: u64,
    secs: u64,
    pairs: usize,
}

fn args() -> Option<Args> {
    let mut a = Args {
        starling: String::new(),
        rate: 100,
        secs: 20,
        pairs: 50,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(x) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number")
        };
        match x.as_str() {
            "--starling" => a.starling = it.next().expect("--starling PATH"),
            "--rate" => a.rate = num().max(1),
            "--secs" => a.secs = num().max(1),
            "--pairs" => a.pairs = num().max(1) as usize,
            _ => {}
        }
    }
    (!a.starling.is_empty()).then_some(a)
}

fn main() {
    // `cargo bench` with no arguments (or `cargo test --benches`): nothing to do.
    let Some(a) = args() else {
        eprintln!("usage: notify --starling PATH [--rate 100] [--secs 20] [--pairs 50]");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&a));
}

#[path = "../../gossip/tests/common/port.rs"]
mod port;
#[path = "common/process.rs"]
mod process;

/// One blocking JSON call (on the blocking pool): the answer's JSON (null when none).
async fn call(
    agent: &ureq::Agent,
    method: &'static str,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (agent, auth) = (agent.clone(), token.map(|t| format!("Bearer {t}")));
    tokio::task::spawn_blocking(move || {
        let resp = match method {
            "POST" => {
                let mut r = agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send_json(body.unwrap_or(Value::Null))
            }
            "PUT" => {
                let mut r = agent.put(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send_empty()
            }
            _ => {
                let mut r = agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        assert!(
            (200..300).contains(&status),
            "{method} {url}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    })
    .await
    .unwrap()
}

struct Pair {
    actor_token: String,
    recipient: String,
    recipient_token: String,
    posts: Vec<String>,
    conv: String,
}

/// Frames received, by key: `like:POST`, `reply:REPLY`, `follow:RECIPIENT:K` (the Kth follow
/// frame of the recipient), `msg:CONV:SEQ`; the receipt time in µs since the epoch.
type Receipts = Arc<parking_lot::Mutex<HashMap<String, u64>>>;

/// Events sent: (kind, key, sent µs, answered µs).
type Events = Arc<parking_lot::Mutex<Vec<(usize, String, u64, u64)>>>;

async fn run(a: &Args) {
    let server = process::start(
        &a.starling,
        &["serve", "--store", "memory", "--auth-per-minute", "1000000"],
        true,
    );
    let base = format!("http://{}", server.addr);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let per_pair_likes = (a.rate * a.secs).div_ceil(4 * a.pairs as u64) as usize + 4;
    let nonce = std::process::id();
    let mut pairs = Vec::new();
    for i in 0..a.pairs {
        let sign_up = |who: &str| {
            let body = json!({"handle": format!("{who}{nonce}_{i}"), "password": "password1"});
            call(&agent, "POST", format!("{base}/v1/users"), None, Some(body))
        };
        let actor = sign_up("na").await;
        let recipient = sign_up("nr").await;
        let (at, rt) = (
            actor["token"].as_str().unwrap().to_string(),
            recipient["token"].as_str().unwrap().to_string(),
        );
        let mut posts = Vec::new();
        for k in 0..per_pair_likes {
            let p = call(
                &agent,
                "POST",
                format!("{base}/v1/posts"),
                Some(&rt),
                Some(json!({"text": format!("post {k} to like")})),
            )
            .await;
            posts.push(p["id"].as_str().unwrap().to_string());
        }
        let conv = call(
            &agent,
            "POST",
            format!("{base}/v1/conversations"),
            Some(&at),
            Some(json!({"members": [recipient["id"]]})),
        )
        .await;
        pairs.push(Pair {
            actor_token: at,
            recipient: recipient["id"].as_str().unwrap().to_string(),
            recipient_token: rt,
            posts,
            conv: conv["id"].as_str().unwrap().to_string(),
        });
    }
    let epoch = Instant::now();
    let receipts: Receipts = Arc::default();
    let mut readers = tokio::task::JoinSet::new();
    let ws_base = base.replace("http://", "ws://");
    for p in &pairs {
        let url = format!("{ws_base}/v1/ws?token={}", p.recipient_token);
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
        let (receipts, recipient) = (receipts.clone(), p.recipient.clone());
        readers.spawn(async move {
            let mut follows = 0u64;
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let now = epoch.elapsed().as_micros() as u64;
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                let key = match (v["type"].as_str(), v["notification_type"].as_str()) {
                    (Some("notification"), Some("like")) => format!("like:{}", v["post"]),
                    (Some("notification"), Some("reply")) => format!("reply:{}", v["subject"]),
                    (Some("notification"), Some("follow")) => {
                        follows += 1;
                        format!("follow:{recipient}:{follows}")
                    }
                    (Some("message"), _) => format!("msg:{}:{}", v["conv"], v["seq"]),
                    _ => continue,
                };
                receipts.lock().insert(key, now);
            }
        });
    }
    let events: Events = Arc::default();
    let pairs = Arc::new(pairs);
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / a.rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = a.rate * a.secs;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for n in 0..total {
        tick.tick().await;
        let (i, round) = ((n % a.pairs as u64) as usize, n / a.pairs as u64);
        let kind = (round % 4) as usize;
        let k = (round / 4) as usize;
        let (pairs, events, agent, base) =
            (pairs.clone(), events.clone(), agent.clone(), base.clone());
        tasks.spawn(async move {
            let p = &pairs[i];
            let tok = Some(p.actor_token.as_str());
            let t0 = epoch.elapsed().as_micros() as u64;
            let key = match kind {
                0 => {
                    let post = &p.posts[k % p.posts.len()];
                    call(
                        &agent,
                        "PUT",
                        format!("{base}/v1/posts/{post}/like"),
                        tok,
                        None,
                    )
                    .await;
                    format!("like:\"{post}\"")
                }
                1 => {
                    let body = json!({"text": format!("reply {k}"), "reply_to": p.posts[0]});
                    let r = call(&agent, "POST", format!("{base}/v1/posts"), tok, Some(body)).await;
                    format!("reply:{}", r["id"])
                }
                2 => {
                    let url = format!("{base}/v1/following/{}", p.recipient);
                    call(&agent, "PUT", url.clone(), tok, None).await;
                    let t1 = epoch.elapsed().as_micros() as u64;
                    let key = format!("follow:{}:{}", p.recipient, k + 1);
                    events.lock().push((kind, key, t0, t1));
                    call(&agent, "DELETE", url, tok, None).await;
                    return;
                }
                _ => {
                    let body = json!({"body": format!("m{k}"), "client_id": format!("c{i}-{k}")});
                    let url = format!("{base}/v1/conversations/{}/messages", p.conv);
                    let r = call(&agent, "POST", url, tok, Some(body)).await;
                    format!("msg:{}:{}", Value::from(p.conv.clone()), r["seq"])
                }
            };
            let t1 = epoch.elapsed().as_micros() as u64;
            events.lock().push((kind, key, t0, t1));
        });
    }
    while tasks.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_secs(3)).await;
    readers.abort_all();
    let receipts = receipts.lock();
    let events = events.lock();
    let hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    println!(
        "Rate {} events/s ({:.0}/s of each kind) for {} s over {} pairs; load average before: {}",
        a.rate,
        a.rate as f64 / 4.0,
        a.secs,
        a.pairs,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!(
        "| event | sent | delivered | from send p50 ms | p99 ms | from answer p50 ms | p99 ms | max ms | frame before answer |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (kind, name) in KINDS.iter().enumerate() {
        let (mut send, mut ack) = (hist(), hist());
        let (mut sent, mut got, mut early) = (0, 0, 0);
        for (k, key, t0, t1) in events.iter() {
            if *k != kind {
                continue;
            }
            sent += 1;
            if let Some(&t2) = receipts.get(key) {
                got += 1;
                let _ = send.record(t2.saturating_sub(*t0).max(1));
                let _ = ack.record(t2.saturating_sub(*t1).max(1));
                early += usize::from(t2 < *t1);
            }
        }
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {name} | {sent} | {got} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {early} |",
            ms(&send, 0.5),
            ms(&send, 0.99),
            ms(&ack, 0.5),
            ms(&ack, 0.99),
            ack.max() as f64 / 1000.0,
        );
    }
}
