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
//!
//! The transport is the [`PubSub`] role, with two implementations passing one conformance
//! suite (`bus::conformance`, feature `conformance`): [`RedisPubSub`] (between the nodes of a region) and [`LocalPubSub`]
//! (between nodes run in one process); [`Bus::over`] runs a bus over either.

use crate::error::MessengerError;
use crate::fanout::Fanout;
use crate::model::Message;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod local;
mod redis;

pub use local::LocalPubSub;
pub use redis::RedisPubSub;

/// Payloads arriving on a subscription; the stream ends when the subscription is lost.
pub type Payloads = BoxStream<'static, Bytes>;

/// The pub/sub role: opaque payloads carried to every subscriber of one channel (the
/// publisher's own subscriptions included).
#[async_trait]
pub trait PubSub: Send + Sync + std::fmt::Debug {
    /// Queues `payload` for the channel's subscribers; never waits (a payload that cannot be
    /// queued is dropped and counted).
    fn publish(&self, payload: Bytes);
    /// Subscribes: every payload published from now on, in publishing order per publisher.
    async fn subscribe(&self) -> Result<Payloads, MessengerError>;
    /// Payloads dropped (queue full, publish failed, subscriber too slow) and published.
    fn counters(&self) -> (u64, u64);
}

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
struct Side {
    transport: Arc<dyn PubSub>,
    origin: u64,
}

/// The bus: cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Bus {
    side: Option<Arc<Side>>,
}

/// The receiving side of a bus over a transport: run it with [`BusReceiver::run`].
#[derive(Debug)]
pub struct BusReceiver {
    transport: Arc<dyn PubSub>,
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
        let transport = RedisPubSub::connect(url, format!("starling:chat:{region}")).await?;
        Ok(Bus::over(Arc::new(transport), origin))
    }

    /// A bus over `transport`, shared with the region's other nodes; `origin` identifies this
    /// node's events.
    pub fn over(transport: Arc<dyn PubSub>, origin: u64) -> (Bus, BusReceiver) {
        (
            Bus {
                side: Some(Arc::new(Side {
                    transport: transport.clone(),
                    origin,
                })),
            },
            BusReceiver { transport, origin },
        )
    }

    /// Events dropped because the publisher's queue was full, and events published.
    pub fn counters(&self) -> (u64, u64) {
        self.side
            .as_ref()
            .map_or((0, 0), |s| s.transport.counters())
    }

    /// Whether events reach other nodes (a bus over a transport); the in-process bus drops them.
    pub fn is_shared(&self) -> bool {
        self.side.is_some()
    }

    /// Publishes an event to the region's other nodes (never waits).
    pub fn publish(&self, event: BusEvent) {
        let Some(s) = &self.side else { return };
        let env = Envelope {
            origin: s.origin,
            event,
        };
        let Ok(bytes) = serde_json::to_vec(&env) else {
            return;
        };
        s.transport.publish(Bytes::from(bytes));
    }
}

impl BusReceiver {
    /// Delivers what the region's other nodes publish, until `shutdown` turns true; resubscribes
    /// after a lost connection.
    pub async fn run(self, fanout: Fanout, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.transport.subscribe().await {
                Ok(mut stream) => loop {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        m = stream.next() => {
                            let Some(m) = m else { break };
                            self.handle(&fanout, &m).await;
                        }
                    }
                },
                Err(e) => tracing::warn!(error = %e, "bus subscription failed"),
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
