//! Idle authenticated sockets and what they cost the server: `starling-load run --scenario idle
//! --conns N --server-pid PID` opens N sockets ready to chat (Starling: authenticated by a
//! session token, registered with the hub, answered a ping; Centrifugo: connected with a JWT and subscribed to
//! one channel, two sockets per channel as in a 1:1), holds them, and reports the growth of the
//! server's resident memory divided by the sockets open.
//!
//! Socket `k` belongs to user `k mod users`. Each socket's task reads what arrives (answering
//! Centrifugo's pings) until the measurement ends; then every socket is dropped.

use crate::LoadError;
use crate::centrifugo::{self, Incoming};
use crate::chat::{Protocol, open};
use crate::procstat;
use crate::users::User;
use futures_util::{SinkExt, StreamExt, stream};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// How to run the idle measurement.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// The server's protocol.
    pub protocol: Protocol,
    /// Sockets to open.
    pub conns: usize,
    /// Sockets being opened at a time.
    pub concurrency: usize,
    /// How long to hold them all open before reading the server's memory.
    pub hold: Duration,
    /// The server process.
    pub server_pid: u32,
}

/// What the idle measurement found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IdleReport {
    /// `starling` or `centrifugo`.
    pub protocol: String,
    /// Sockets asked for.
    pub wanted: usize,
    /// Sockets open and ready when memory was read.
    pub open: usize,
    /// Sockets that failed, by kind.
    pub failed: BTreeMap<String, u64>,
    /// Server RSS before the first socket, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with every socket open, KiB.
    pub rss_after_kib: u64,
    /// (after − before) / open, bytes.
    pub bytes_per_socket: f64,
    /// Time to open them all, s.
    pub connect_s: f64,
}

impl IdleReport {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        format!(
            "idle {}: {}/{} sockets open in {:.1} s, server RSS {} → {} KiB, {:.0} bytes per socket{}",
            self.protocol,
            self.open,
            self.wanted,
            self.connect_s,
            self.rss_before_kib,
            self.rss_after_kib,
            self.bytes_per_socket,
            if self.failed.is_empty() {
                String::new()
            } else {
                format!(", failed: {:?}", self.failed)
            }
        )
    }
}

/// Opens the sockets, holds them, reads the server's memory, closes them.
pub async fn run_idle(users: &[User], cfg: &IdleConfig) -> Result<IdleReport, LoadError> {
    if users.is_empty() {
        return Err(LoadError::config("users", "idle needs at least one user"));
    }
    let rss = |what: &str| {
        procstat::rss_kib(cfg.server_pid).ok_or_else(|| {
            LoadError::config(
                "server-pid",
                format!("no /proc/{}/status {what}", cfg.server_pid),
            )
        })
    };
    // A server that just signed users up (argon2id's buffers) or finished a run returns memory
    // to the system for a while: wait until its RSS holds still (±1 % over 1 s, at most 20 s).
    let mut rss_before_kib = rss("before")?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = rss("before")?;
        let still = now.abs_diff(rss_before_kib) * 100 <= rss_before_kib;
        rss_before_kib = now;
        if still {
            break;
        }
    }
    let started = Instant::now();
    let protocol = cfg.protocol;
    let opened: Vec<_> = stream::iter(0..cfg.conns)
        .map(|k| {
            let user = &users[k % users.len()];
            async move {
                let mut session = centrifugo::Session::default();
                // Starling's idle users have no conversation: the socket waits for a pong.
                let channels = match protocol {
                    Protocol::Starling => vec![],
                    Protocol::Centrifugo => vec![centrifugo::channel(k / 2)],
                };
                open(protocol, user, &channels, &mut session).await
            }
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    let connect_s = started.elapsed().as_secs_f64();
    let mut failed = BTreeMap::new();
    let mut sockets = JoinSet::new();
    for r in opened {
        match r {
            Ok(ws) => {
                sockets.spawn(hold(ws, protocol));
            }
            Err((kind, _)) => *failed.entry(kind).or_insert(0) += 1,
        }
    }
    tokio::time::sleep(cfg.hold).await;
    // Sockets the server closed while held do not count.
    let mut open_now = sockets.len();
    while let Some(Ok(())) = sockets.try_join_next() {
        open_now -= 1;
        *failed.entry("closed_while_idle".into()).or_insert(0) += 1;
    }
    let rss_after_kib = rss("after")?;
    sockets.abort_all();
    while sockets.join_next().await.is_some() {}
    Ok(IdleReport {
        protocol: match protocol {
            Protocol::Starling => "starling",
            Protocol::Centrifugo => "centrifugo",
        }
        .into(),
        wanted: cfg.conns,
        open: open_now,
        failed,
        rss_before_kib,
        rss_after_kib,
        bytes_per_socket: (rss_after_kib.saturating_sub(rss_before_kib) * 1024) as f64
            / open_now.max(1) as f64,
        connect_s,
    })
}

/// Reads one idle socket until the server closes it, answering Centrifugo's pings.
async fn hold(mut ws: crate::chat::Ws, protocol: Protocol) {
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            WsMessage::Text(t) if protocol == Protocol::Centrifugo => {
                let ping = centrifugo::parse_frame(t.as_str())
                    .is_ok_and(|ms| ms.contains(&Incoming::Ping));
                if ping && ws.send(WsMessage::text("{}")).await.is_err() {
                    return;
                }
            }
            WsMessage::Close(_) => return,
            _ => {}
        }
    }
}
