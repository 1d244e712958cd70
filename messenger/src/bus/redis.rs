//! The pub/sub role over Redis: one channel per region, published to by one task that
//! pipelines a bounded queue of payloads, subscribed to on a connection of its own.

use super::{Payloads, PubSub};
use crate::error::MessengerError;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Payloads queued for the publisher before new ones are dropped.
const QUEUE: usize = 65_536;
/// Payloads per pipelined round trip.
const BATCH: usize = 256;

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    published: AtomicU64,
}

/// A Redis channel. Publishing never waits: payloads go through a bounded queue to one task
/// that pipelines them (it stops when this value is dropped); a full queue drops and counts.
#[derive(Debug)]
pub struct RedisPubSub {
    client: redis::Client,
    channel: String,
    tx: mpsc::Sender<Bytes>,
    counters: Arc<Counters>,
}

fn err(e: impl std::fmt::Display) -> MessengerError {
    MessengerError::Redis(e.to_string())
}

impl RedisPubSub {
    /// Connects to `url` once now (a bad URL or an unreachable server is an error at start)
    /// and starts the publisher of `channel`.
    pub async fn connect(url: &str, channel: String) -> Result<Self, MessengerError> {
        let client = redis::Client::open(url).map_err(err)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| MessengerError::Redis(format!("{url} did not answer within 5 s")))?
        .map_err(err)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(publish_loop(
            client.clone(),
            conn,
            channel.clone(),
            rx,
            counters.clone(),
        ));
        Ok(RedisPubSub {
            client,
            channel,
            tx,
            counters,
        })
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    fn publish(&self, payload: Bytes) {
        if self.tx.try_send(payload).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn subscribe(&self) -> Result<Payloads, MessengerError> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(err)?;
        pubsub.subscribe(&self.channel).await.map_err(err)?;
        Ok(pubsub
            .into_on_message()
            .map(|m| Bytes::copy_from_slice(m.get_payload_bytes()))
            .boxed())
    }

    fn counters(&self) -> (u64, u64) {
        (
            self.counters.dropped.load(Ordering::Relaxed),
            self.counters.published.load(Ordering::Relaxed),
        )
    }
}

async fn publish_loop(
    client: redis::Client,
    mut conn: redis::aio::MultiplexedConnection,
    channel: String,
    mut rx: mpsc::Receiver<Bytes>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for b in &batch {
            pipe.cmd("PUBLISH").arg(&channel).arg(b.as_ref()).ignore();
        }
        let n = batch.len() as u64;
        batch.clear();
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                counters.published.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis publish failed; reconnecting");
                counters.dropped.fetch_add(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(c) = client.get_multiplexed_async_connection().await {
                    conn = c;
                }
            }
        }
    }
}
