//! Chat benchmark: delivery latency at fixed send rates, and memory per idle WebSocket
//! connection, for the real `starling` binary and, side by side in the same run, a bare
//! tokio-tungstenite relay (the baseline: no auth, no storage, no ordering — a frame in, the
//! same frame out to the addressee).
//!
//! ```text
//! cargo bench -p starling-api --bench chat -- latency --starling target/release/starling --rates 1000,10000,20000 --secs 5
//! cargo bench -p starling-api --bench chat -- idle --starling target/release/starling --conns 19000
//! cargo bench -p starling-api --bench chat -- members --starling target/release/starling --conns 1000 --secs 20
//! ```
//! `members`: a group of `--conns` members, each connected; the owner adds and removes one
//! more user `--secs` times each, and sends as many text messages over REST beside them (the
//! baseline in the same run): the time from the request to each member's receipt of the entry,
//! and to the last member's.
//! `infra/bench-chat.sh` runs both against both servers and writes `bench/chat.md`.
//! Latency is measured from the sender's `send` to the receiver reading the `message` frame;
//! both ends are in this process (one clock). Memory is the server process's RSS growth divided
//! by the connections opened (user space only: kernel socket buffers are not in RSS).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)] // a benchmark tool: fail loudly; the handshake callback type is tungstenite's

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Sender/receiver pairs of the latency run.
const PAIRS: usize = 50;

struct Args {
    mode: String,
    starling: Option<String>,
    server: String,
    rates: Vec<u64>,
    secs: u64,
    conns: usize,
    listen: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        mode: String::new(),
        starling: None,
        server: "starling".into(),
        rates: vec![1000, 10_000, 20_000],
        secs: 5,
        conns: 10_000,
        listen: None,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(x) = it.next() {
        match x.as_str() {
            "--starling" => a.starling = it.next(),
            "--server" => a.server = it.next().unwrap(),
            "--rates" => {
                a.rates = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|r| r.parse().unwrap())
                    .collect()
            }
            "--secs" => a.secs = it.next().unwrap().parse().unwrap(),
            "--conns" => a.conns = it.next().unwrap().parse().unwrap(),
            "--listen" => a.listen = it.next(),
            m if a.mode.is_empty() => a.mode = m.to_string(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match a.mode.as_str() {
        "baseline-serve" => rt.block_on(baseline_serve(a.listen.clone().unwrap())),
        "latency" => rt.block_on(latency(&a)),
        "idle" => rt.block_on(idle(&a)),
        "members" => rt.block_on(members(&a)),
        // `cargo bench` with no arguments (or `cargo test --benches`): nothing to do.
        _ => eprintln!("usage: chat latency|idle --starling PATH [--server starling|baseline]"),
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

#[path = "../../gossip/tests/common/port.rs"]
mod port;
#[path = "common/process.rs"]
mod process;
use process::Server;

fn start_server(a: &Args) -> Server {
    if a.server == "baseline" {
        return process::start(std::env::current_exe().unwrap(), &["baseline-serve"], false);
    }
    process::start(
        a.starling.as_deref().expect("--starling PATH"),
        &[
            "serve",
            "--store",
            "memory",
            "--auth-per-minute",
            "1000000",
            "--ws-max-per-user",
            "1000000",
            "--ws-max-connections",
            "1000000",
            "--max-group-members",
            "100000",
        ],
        true,
    )
}

/// The baseline: a bare tokio-tungstenite relay. `ws://addr/?id=N` registers connection N; a
/// text frame with `"conv":"M"` is forwarded unchanged to connection M.
async fn baseline_serve(listen: String) {
    type Peers = Arc<parking_lot::Mutex<HashMap<u64, tokio::sync::mpsc::Sender<Message>>>>;
    let peers: Peers = Arc::default();
    let l = tokio::net::TcpListener::bind(&listen).await.unwrap();
    println!("baseline listening on {listen}");
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        let peers = peers.clone();
        tokio::spawn(async move {
            let mut id = 0u64;
            let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                id = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("id="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok(resp)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(s, cb).await else {
                return;
            };
            let (mut tx, mut rx) = ws.split();
            let (qtx, mut qrx) = tokio::sync::mpsc::channel::<Message>(1024);
            peers.lock().insert(id, qtx);
            let writer = tokio::spawn(async move {
                while let Some(m) = qrx.recv().await {
                    if tx.send(m).await.is_err() {
                        break;
                    }
                }
            });
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(t) = &m {
                    let to = serde_json::from_str::<Value>(t.as_str())
                        .ok()
                        .and_then(|v| v["conv"].as_str().and_then(|c| c.parse::<u64>().ok()));
                    if let Some(to) = to {
                        let q = peers.lock().get(&to).cloned();
                        if let Some(q) = q {
                            let _ = q.try_send(m);
                        }
                    } else {
                        // ping → pong
                        let q = peers.lock().get(&id).cloned();
                        if let Some(q) = q {
                            let _ = q.try_send(Message::text(r#"{"type":"pong"}"#));
                        }
                    }
                }
            }
            peers.lock().remove(&id);
            writer.abort();
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

#[path = "../tests/common/http.rs"]
mod client;

/// A JSON call: the answer's body as JSON (null when it is not).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    client::json_async(addr, method, path, token, Some(&body))
        .await
        .1
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn connect(url: &str, from: Option<std::net::IpAddr>) -> Ws {
    let target: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        sock.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let s = sock.connect(target).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(s))
        .await
        .unwrap();
    ws
}

async fn ping(ws: &mut Ws) {
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m
            && t.as_str().contains("pong")
        {
            return;
        }
    }
    panic!("no pong");
}

struct Pair {
    conv: String,
    sender_url: String,
    receiver_url: String,
}

async fn setup_pairs(a: &Args, addr: SocketAddr) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        if a.server == "baseline" {
            let (s, r) = (2 * i as u64 + 1, 2 * i as u64 + 2);
            pairs.push(Pair {
                conv: r.to_string(),
                sender_url: format!("ws://{addr}/?id={s}"),
                receiver_url: format!("ws://{addr}/?id={r}"),
            });
            continue;
        }
        let nonce = std::process::id();
        let s = http(
            addr,
            "POST",
            "/v1/users",
            None,
            json!({"handle": format!("s{nonce}_{i}"), "password": "password1"}),
        )
        .await;
        let r = http(
            addr,
            "POST",
            "/v1/users",
            None,
            json!({"handle": format!("r{nonce}_{i}"), "password": "password1"}),
        )
        .await;
        let (st, rt) = (s["token"].as_str().unwrap(), r["token"].as_str().unwrap());
        let c = http(
            addr,
            "POST",
            "/v1/conversations",
            Some(st),
            json!({"members": [r["id"]]}),
        )
        .await;
        pairs.push(Pair {
            conv: c["id"].as_str().unwrap().to_string(),
            sender_url: format!("ws://{addr}/v1/ws?token={st}"),
            receiver_url: format!("ws://{addr}/v1/ws?token={rt}"),
        });
    }
    pairs
}

async fn latency(a: &Args) {
    let server = start_server(a);
    let pairs = setup_pairs(a, server.addr).await;
    let epoch = Instant::now();
    println!(
        "| server | target msg/s | sent | delivered | achieved msg/s | p50 µs | p99 µs | p99.9 µs | max µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &rate in &a.rates {
        let hist = Arc::new(parking_lot::Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
        ));
        let delivered = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let run = Duration::from_secs(a.secs);
        let mut tasks = tokio::task::JoinSet::new();
        let per_pair = rate as f64 / PAIRS as f64;
        for (i, p) in pairs.iter().enumerate() {
            let mut rx = connect(&p.receiver_url, None).await;
            ping(&mut rx).await;
            let mut tx = connect(&p.sender_url, None).await;
            ping(&mut tx).await;
            let (hist, delivered, sent) = (hist.clone(), delivered.clone(), sent.clone());
            let conv = p.conv.clone();
            tasks.spawn(async move {
                let until = Instant::now() + run;
                while let Ok(Some(Ok(m))) =
                    tokio::time::timeout_at((until + Duration::from_secs(2)).into(), rx.next())
                        .await
                {
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    let Some(ns) = v["body"].as_str().and_then(|b| b.parse::<u64>().ok()) else {
                        continue;
                    };
                    let now = epoch.elapsed().as_nanos() as u64;
                    let _ = hist.lock().record((now.saturating_sub(ns) / 1000).max(1));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            });
            tasks.spawn(async move {
                let (mut w, mut r) = tx.split();
                // Drain acks and the sender's own copies.
                let drain = tokio::spawn(async move { while let Some(Ok(_)) = r.next().await {} });
                let period = Duration::from_secs_f64(1.0 / per_pair);
                let mut tick = tokio::time::interval_at(
                    (Instant::now() + period.mul_f64(i as f64 / PAIRS as f64)).into(),
                    period,
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let until = Instant::now() + run;
                let mut n = 0u64;
                while Instant::now() < until {
                    tick.tick().await;
                    let ns = epoch.elapsed().as_nanos() as u64;
                    let f = json!({"type":"send","conv":conv,"client_id":format!("{i}-{n}-{ns}"),"body":ns.to_string()});
                    if w.send(Message::text(f.to_string())).await.is_err() {
                        break;
                    }
                    n += 1;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = w.close().await;
                drain.abort();
            });
        }
        while tasks.join_next().await.is_some() {}
        let h = hist.lock();
        let (s, d) = (
            sent.load(Ordering::Relaxed),
            delivered.load(Ordering::Relaxed),
        );
        println!(
            "| {} | {rate} | {s} | {d} | {:.0} | {} | {} | {} | {} |",
            a.server,
            d as f64 / a.secs as f64,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn idle(a: &Args) {
    let server = start_server(a);
    let url = if a.server == "baseline" {
        format!("ws://{}/?id=", server.addr)
    } else {
        let u = http(
            server.addr,
            "POST",
            "/v1/users",
            None,
            json!({"handle": format!("idle{}", std::process::id()), "password": "password1"}),
        )
        .await;
        format!(
            "ws://{}/v1/ws?token={}&n=",
            server.addr,
            u["token"].as_str().unwrap()
        )
    };
    // Warm up: one connection, so lazily made structures are there before the baseline RSS.
    let mut first = connect(&format!("{url}0"), None).await;
    ping(&mut first).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(server.child.id());
    let opened = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(128));
    let mut conns = tokio::task::JoinSet::new();
    let (hold_tx, hold_rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    for i in 0..a.conns {
        let permit = sem.clone().acquire_owned().await.unwrap();
        // Spread over source addresses: one (src ip, dst) pair has ~28 k ports.
        let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8));
        let u = format!("{url}{}", i + 1);
        let opened = opened.clone();
        let mut hold = hold_rx.clone();
        conns.spawn(async move {
            let mut ws = connect(&u, Some(from)).await;
            ping(&mut ws).await;
            opened.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            let _ = hold.changed().await;
            drop(ws);
        });
    }
    while opened.load(Ordering::Relaxed) < a.conns as u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server.child.id());
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / a.conns as f64;
    println!(
        "| server | connections | RSS before KiB | RSS after KiB | bytes per connection | connect time s |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {before} | {after} | {per:.0} | {:.1} |",
        a.server,
        a.conns,
        took.as_secs_f64()
    );
    let _ = hold_tx.send(true);
    while conns.join_next().await.is_some() {}
    drop(first);
}

// ---------------------------------------------------------------------------------------------
// Membership changes of a large group

/// Signs up `n` users (`prefix{i}`), a few at a time; their ids and tokens.
async fn sign_up_many(addr: SocketAddr, prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let batch = chunk.iter().map(|i| async move {
            let v = http(
                addr,
                "POST",
                "/v1/users",
                None,
                json!({"handle": format!("{prefix}{i}"), "password": "password1"}),
            )
            .await;
            (
                v["id"].as_str().unwrap().to_string(),
                v["token"].as_str().unwrap().to_string(),
            )
        });
        out.extend(futures_util::future::join_all(batch).await);
    }
    out
}

async fn members(a: &Args) {
    let server = start_server(a);
    let addr = server.addr;
    let n = a.conns.max(2);
    let rounds = a.secs.max(1) as usize;
    let nonce = std::process::id();
    let users = sign_up_many(addr, &format!("m{nonce}_"), n).await;
    let extra = sign_up_many(addr, &format!("x{nonce}_"), 1).await.remove(0);
    let (owner, owner_token) = users[0].clone();
    let others: Vec<&str> = users[1..].iter().map(|(id, _)| id.as_str()).collect();
    let conv = http(
        addr,
        "POST",
        "/v1/conversations",
        Some(&owner_token),
        json!({"members": others, "name": "big"}),
    )
    .await["id"]
        .as_str()
        .expect("group created")
        .to_string();
    let _ = owner;
    // Each member connected and resumed: receipts by seq, as time since `epoch`.
    let epoch = Instant::now();
    let receipts: Arc<parking_lot::Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let mut readers = tokio::task::JoinSet::new();
    for (_, token) in &users {
        let mut ws = connect(&format!("ws://{addr}/v1/ws?token={token}"), None).await;
        ws.send(Message::text(
            json!({"type":"resume","conv":conv,"after_seq":0}).to_string(),
        ))
        .await
        .unwrap();
        let receipts = receipts.clone();
        readers.spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "message"
                    && let Some(seq) = v["seq"].as_u64()
                {
                    let now = epoch.elapsed().as_micros() as u64;
                    receipts.lock().entry(seq).or_default().push(now);
                }
            }
        });
    }
    // Wait until every member is live (the first entry reaches all of them).
    let warm = http(
        addr,
        "POST",
        &format!("/v1/conversations/{conv}/messages"),
        Some(&owner_token),
        json!({"body": "warm-up", "client_id": "warm"}),
    )
    .await;
    let warm_seq = warm["seq"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while receipts.lock().get(&warm_seq).map_or(0, Vec::len) < n {
        assert!(Instant::now() < deadline, "members never all live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut answers = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut change_at: Vec<(u64, u64)> = Vec::new();
    let mut text_at: Vec<(u64, u64)> = Vec::new();
    for r in 0..rounds {
        for method in ["PUT", "DELETE"] {
            let t0 = epoch.elapsed().as_micros() as u64;
            http(
                addr,
                method,
                &format!("/v1/conversations/{conv}/members/{}", extra.0),
                Some(&owner_token),
                Value::Null,
            )
            .await;
            let _ = answers.record(
                (epoch.elapsed().as_micros() as u64)
                    .saturating_sub(t0)
                    .max(1),
            );
            // The change's seq is the conversation's epoch now.
            let seq = http(
                addr,
                "GET",
                &format!("/v1/conversations/{conv}"),
                Some(&owner_token),
                Value::Null,
            )
            .await["epoch"]
                .as_u64()
                .expect("the conversation");
            change_at.push((seq, t0));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let t0 = epoch.elapsed().as_micros() as u64;
        let sent = http(
            addr,
            "POST",
            &format!("/v1/conversations/{conv}/messages"),
            Some(&owner_token),
            json!({"body": "text", "client_id": format!("t{r}")}),
        )
        .await;
        let _ = answers.record(
            (epoch.elapsed().as_micros() as u64)
                .saturating_sub(t0)
                .max(1),
        );
        text_at.push((sent["seq"].as_u64().expect("a message"), t0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    readers.abort_all();
    let receipts = receipts.lock();
    let summarize = |events: &[(u64, u64)]| {
        let mut each = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut last = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut got = 0usize;
        for (seq, t0) in events {
            let r = receipts.get(seq).cloned().unwrap_or_default();
            got += r.len();
            for t in &r {
                let _ = each.record(t.saturating_sub(*t0).max(1));
            }
            if let Some(m) = r.iter().max() {
                let _ = last.record(m.saturating_sub(*t0).max(1));
            }
        }
        (each, last, got, events.len() * n)
    };
    println!(
        "| entry | members | events | delivered | each member p50 ms | p99 ms | last member p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, events) in [
        ("member added / removed", &change_at),
        ("text message (baseline)", &text_at),
    ] {
        let (each, last, got, want) = summarize(events);
        // The removed user is not connected: each entry reaches the n connected members.
        println!(
            "| {name} | {n} | {} | {got}/{want} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            events.len(),
            each.value_at_quantile(0.5) as f64 / 1000.0,
            each.value_at_quantile(0.99) as f64 / 1000.0,
            last.value_at_quantile(0.5) as f64 / 1000.0,
            last.value_at_quantile(0.99) as f64 / 1000.0,
            last.max() as f64 / 1000.0,
        );
    }
    println!(
        "\nThe REST answers themselves (stored, before the fan-out's deliveries): p50 {:.2} ms, p99 {:.2} ms.",
        answers.value_at_quantile(0.5) as f64 / 1000.0,
        answers.value_at_quantile(0.99) as f64 / 1000.0
    );
}
