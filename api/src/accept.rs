//! The HTTP accept loop: connection caps, a header-read timeout, and graceful shutdown.
//!
//! `axum::serve` sets no timer on hyper, so hyper's header-read timeout never fires there and a
//! client that trickles its request head byte by byte (slowloris) holds a connection forever;
//! it has no connection cap either. This loop serves the same router over hyper's HTTP/1
//! builder with a timer, so:
//! - a request head not complete within [`ConnLimits::header_read_timeout`] closes the
//!   connection (this also bounds an idle keep-alive connection and an upgrade request that is
//!   never finished);
//! - a request body not read within the request deadline is answered 503 by the router's
//!   deadline layer (tower-http's `TimeoutLayer`, in [`crate::router_with_deadline`]);
//! - at most [`ConnLimits::max_connections`] sockets are open, and at most
//!   [`ConnLimits::max_connections_per_ip`] from one client address: a socket over either cap is accepted and
//!   closed at once (so the kernel's backlog never fills and other clients are still served).
//!   The count covers a socket's whole life, WebSocket included (the guard travels with the IO);
//! - with TLS ([`crate::tls`]), each socket's handshake runs in its own task within the
//!   header-read timeout, so a client that never finishes one holds nothing else up.

use crate::config::values::{AtLeastOne, Timeout};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Limits of the accept loop: a group of `starling serve`'s settings (flags, `STARLING_<FLAG>`
/// and `--config` keys, each declared once here; see [`crate::config`]).
#[derive(clap::Args, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct ConnLimits {
    /// Open HTTP and WebSocket sockets this node accepts; more are closed at once
    /// (default 250000).
    #[arg(
        long,
        env = "STARLING_MAX_CONNECTIONS",
        default_value = "250000",
        hide_default_value = true
    )]
    pub max_connections: AtLeastOne,
    /// Open sockets from one client address; more are closed at once (default 50000).
    #[arg(
        long,
        env = "STARLING_MAX_CONNECTIONS_PER_IP",
        default_value = "50000",
        hide_default_value = true
    )]
    pub max_connections_per_ip: AtLeastOne,
    /// Time a client has to send a whole request head, e.g. `30s` (also how long an idle
    /// keep-alive connection stays open; default 30s).
    #[arg(
        long,
        env = "STARLING_HEADER_READ_TIMEOUT",
        default_value = "30s",
        hide_default_value = true
    )]
    pub header_read_timeout: Timeout,
}

impl Default for ConnLimits {
    fn default() -> Self {
        crate::config::defaults()
    }
}

/// Open sockets, in total and per client address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The socket counter shared by the loop and the connections' guards.
#[derive(Debug, Clone)]
struct Tally {
    counts: Arc<Mutex<Counts>>,
    limits: ConnLimits,
}

impl Tally {
    /// Counts a new socket from `ip`, unless a cap is reached.
    fn admit(&self, ip: IpAddr) -> Option<ConnGuard> {
        // A poisoned lock only means a panic elsewhere while counting: the counts are still
        // plain integers, so go on with them.
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= self.limits.max_connections.usize()
            || from_ip >= self.limits.max_connections_per_ip.usize()
        {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, from_ip + 1);
        Some(ConnGuard {
            tally: self.clone(),
            ip,
        })
    }
}

/// Releases a socket's place in the counts when dropped.
#[derive(Debug)]
struct ConnGuard {
    tally: Tally,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = self.tally.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that holds its place in the counts for as long as it lives.
#[derive(Debug)]
struct CountedStream {
    inner: TcpStream,
    _guard: ConnGuard,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets every
/// connection finish its request in flight (hyper's graceful shutdown), and returns when they
/// are all closed. Upgraded (WebSocket) connections are not waited for here: their sessions
/// are closed through the hub.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let tally = Tally {
        counts: Arc::default(),
        limits,
    };
    // Each connection task holds a receiver; `closed()` below waits for them all to drop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(guard) = tally.admit(remote.ip()) else {
            tracing::debug!(%remote, "connection refused: connection cap reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = CountedStream {
            inner: stream,
            _guard: guard,
        };
        let (app, stop) = (app.clone(), stop_rx.clone());
        let timeout = limits.header_read_timeout.get();
        match &tls {
            None => {
                tokio::spawn(serve_connection(
                    TokioIo::new(stream),
                    app,
                    remote,
                    timeout,
                    stop,
                ));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_connection(TokioIo::new(tls), app, remote, timeout, stop).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
}

async fn serve_connection<S>(
    io: TokioIo<S>,
    app: Router,
    remote: SocketAddr,
    header_read_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let mut app = app.clone();
        async move { tower::Service::call(&mut app, req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                break;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_sockets_in_total_and_per_address() {
        let tally = Tally {
            counts: Arc::default(),
            limits: ConnLimits {
                max_connections: "3".parse().unwrap(),
                max_connections_per_ip: "2".parse().unwrap(),
                header_read_timeout: "1s".parse().unwrap(),
            },
        };
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = tally.admit(a).expect("first from a");
        let _a2 = tally.admit(a).expect("second from a");
        assert!(tally.admit(a).is_none(), "a is at its cap");
        let _b1 = tally.admit(b).expect("b has room");
        assert!(tally.admit(b).is_none(), "the node is at its cap");
        drop(a1);
        assert!(tally.admit(b).is_some(), "a closed socket frees its place");
    }
}
