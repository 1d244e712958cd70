//! In-region fan-out between gateway nodes.
//!
//! [`Bus::in_process`] (the default, one node per region or no Redis): nothing leaves the node;
//! messages still reach the region's other nodes through replication of the log, ephemeral
//! events (typing, read, presence) stay on the node. [`Bus::redis`]: every event is published on
//! the region's Redis channel `starling:chat:<region>` and each node delivers what the others
//! published (its own are skipped by origin). Publishing never waits: events go through a
//! bounded queue (64 Ki events) to one publisher task that pipelines them; when the queue is
//! full the event is dropped and counted — messages still arrive by replication, ephemeral
//! events are best-effort by design.

use crate::error::MessengerError;
use crate::fanout::Fanout;
use crate::model::Message;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events queued for the publisher before new ones are dropped.
const QUEUE: usize = 65_536;
/// Events per pipelined round trip.
const BATCH: usize = 256;

/// What travels between the nodes of a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusEvent {
    /// A stored message.
    Message(Message),
    /// Typing in a conversation.
    Typing {
        /// Conversation.
        conv: u64,
        /// Who.
        user: u64,
    },
    /// A read-up-to marker.
    Read {
        /// Conversation.
        conv: u64,
        /// Who.
        user: u64,
        /// Up to.
        seq: u64,
    },
    /// Presence of `user`, for `to`.
    Presence {
        /// Who.
        user: u64,
        /// Online now.
        online: bool,
        /// Whom to tell.
        to: Vec<u64>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: u64,
    event: BusEvent,
}

#[derive(Debug)]
struct RedisSide {
    tx: mpsc::Sender<Bytes>,
    origin: u64,
    dropped: AtomicU64,
    published: AtomicU64,
}

/// The bus: cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Bus {
    redis: Option<Arc<RedisSide>>,
}

/// The receiving side of a Redis bus: run it with [`BusReceiver::run`].
#[derive(Debug)]
pub struct BusReceiver {
    client: redis::Client,
    channel: String,
    origin: u64,
}

impl Bus {
    /// The in-process bus: events stay on this node.
    pub fn in_process() -> Self {
        Bus::default()
    }

    /// A bus over Redis pub/sub on the channel of `region`. Connects once now (a bad URL or an
    /// unreachable server is an error at start); `origin` identifies this node's events.
    pub async fn redis(
        url: &str,
        region: &str,
        origin: u64,
    ) -> Result<(Bus, BusReceiver), MessengerError> {
        let client = redis::Client::open(url).map_err(|e| MessengerError::Redis(e.to_string()))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| MessengerError::Redis(format!("{url} did not answer within 5 s")))?
        .map_err(|e| MessengerError::Redis(e.to_string()))?;
        let channel = format!("starling:chat:{region}");
        let (tx, rx) = mpsc::channel(QUEUE);
        let side = Arc::new(RedisSide {
            tx,
            origin,
            dropped: AtomicU64::new(0),
            published: AtomicU64::new(0),
        });
        // The publisher stops when every `Bus` clone is gone (its queue closes).
        tokio::spawn(publish_loop(
            client.clone(),
            conn,
            channel.clone(),
            rx,
            Arc::downgrade(&side),
        ));
        Ok((
            Bus { redis: Some(side) },
            BusReceiver {
                client,
                channel,
                origin,
            },
        ))
    }

    /// Whether events leave the node.
    pub fn is_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Events dropped because the publisher's queue was full, and events published.
    pub fn counters(&self) -> (u64, u64) {
        self.redis.as_ref().map_or((0, 0), |r| {
            (
                r.dropped.load(Ordering::Relaxed),
                r.published.load(Ordering::Relaxed),
            )
        })
    }

    /// Publishes an event to the region's other nodes (never waits).
    pub fn publish(&self, event: BusEvent) {
        let Some(r) = &self.redis else { return };
        let env = Envelope {
            origin: r.origin,
            event,
        };
        let Ok(bytes) = serde_json::to_vec(&env) else {
            return;
        };
        if r.tx.try_send(Bytes::from(bytes)).is_err() {
            r.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn publish_loop(
    client: redis::Client,
    mut conn: redis::aio::MultiplexedConnection,
    channel: String,
    mut rx: mpsc::Receiver<Bytes>,
    side: std::sync::Weak<RedisSide>,
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
                if let Some(s) = side.upgrade() {
                    s.published.fetch_add(n, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis publish failed; reconnecting");
                if let Some(s) = side.upgrade() {
                    s.dropped.fetch_add(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(c) = client.get_multiplexed_async_connection().await {
                    conn = c;
                }
            }
        }
    }
}

impl BusReceiver {
    /// Delivers what the region's other nodes publish, until `shutdown` turns true; resubscribes
    /// after a lost connection.
    pub async fn run(self, fanout: Fanout, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if let Err(e) = pubsub.subscribe(&self.channel).await {
                        tracing::warn!(error = %e, "redis subscribe failed");
                    } else {
                        let mut stream = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = shutdown.changed() => return,
                                m = stream.next() => {
                                    let Some(m) = m else { break };
                                    self.handle(&fanout, m.get_payload_bytes()).await;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "redis connection for pub/sub failed"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn handle(&self, fanout: &Fanout, payload: &[u8]) {
        let Ok(env) = serde_json::from_slice::<Envelope>(payload) else {
            tracing::debug!("undecodable bus event dropped");
            return;
        };
        if env.origin == self.origin {
            return;
        }
        if let Err(e) = fanout.from_bus(env.event).await {
            tracing::debug!(error = %e, "bus event not delivered");
        }
    }
}
