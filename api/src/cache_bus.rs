//! Cross-node cache invalidation for a region of nodes on one ScyllaDB keyspace.
//!
//! Each node keeps timelines, post bodies, pulled authors' lists and author summaries in process,
//! but only the node holding a partition of the keyspace-wide feed applies that partition's
//! changes to them (`keyspace_feed`). After each poll the holder publishes what its batches
//! changed ([`starling_feed::invalidation::Touched`], merged over the poll's batches: one message
//! per poll at most) on the region's Redis channel `starling:cache:<region>`, and every other
//! node drops its own copies of exactly those ([`starling_feed::Feed::drop_cached`]); its next
//! read takes the timeline from the regional L2 (which the holder updated before publishing) or
//! rebuilds it from the store.
//!
//! Bounded: a message lists at most [`starling_feed::invalidation::MAX_NOTED`] ids (past that it
//! says "drop everything"); publishing never waits, through the transport's bounded queue (a
//! message that does not fit is dropped and counted). A lost message — queue full, Redis down or
//! reconnecting, a holder killed between its fan-out and its publish — leaves a copy stale for
//! at most `FeedConfig::shared_ttl` (`--feed-shared-ttl`, 5 s by default), which bounds every
//! in-process copy on a shared keyspace. Without `--redis` there is no bus: each node's reader of
//! the keyspace feed (`crate::keyspace_tail`) drops what the keys it reads name and puts new
//! posts into the timelines held here; that bound is left for a failure there.
//!
//! The same messages carry the notifications a holder's batches wrote (recipient and id, at most
//! [`MAX_NOTIFICATIONS`] a message: more go in further messages), so a `notification` frame
//! reaches the recipient's WebSocket on whichever node of the region it is connected to: the
//! holder delivers to its own sockets, every other node to its own. Then the node-local live tail
//! (`notifications::live`, which sees only this node's own writes) does not run, or a socket on
//! the writing node would hear twice. A lost message loses the live frame only (the
//! notification is listed by `GET /v1/notifications`).
//!
//! `/metrics` (through `keyspace_feed::Slot`): invalidation messages sent, received, dropped,
//! and timelines dropped on their account.

use serde::{Deserialize, Serialize};
use starling_feed::invalidation::Touched;
use starling_messenger::bus::PubSub;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Notifications one message carries at most.
pub const MAX_NOTIFICATIONS: usize = 1024;

/// One message: who sent it, what to drop and what to deliver.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// The sending node (its own messages come back and are skipped).
    o: u64,
    /// Drop everything.
    #[serde(default)]
    all: bool,
    /// Timelines' owners.
    #[serde(default)]
    t: Vec<u64>,
    /// Posts.
    #[serde(default)]
    p: Vec<u64>,
    /// Authors' post lists.
    #[serde(default)]
    l: Vec<u64>,
    /// Author summaries.
    #[serde(default)]
    a: Vec<u64>,
    /// Notifications written: (recipient, id).
    #[serde(default)]
    n: Vec<(u64, u64)>,
}

/// The counters shown on `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages this node published.
    pub sent: u64,
    /// Other nodes' messages this node applied.
    pub received: u64,
    /// Messages dropped: the publisher's queue was full or a publish failed, or one arrived
    /// undecodable.
    pub dropped: u64,
    /// In-process timelines dropped on account of other nodes' messages.
    pub timelines: u64,
}

#[derive(Debug)]
struct Side {
    transport: Arc<dyn PubSub>,
    origin: u64,
    sent: AtomicU64,
    received: AtomicU64,
    undecodable: AtomicU64,
    timelines: AtomicU64,
}

/// The invalidation bus of a region: cheap to clone; the default one sends nothing.
#[derive(Clone, Debug, Default)]
pub struct CacheBus {
    side: Option<Arc<Side>>,
}

impl CacheBus {
    /// A bus over the region's Redis at `url`; `origin` is this node's id. Connects once now.
    pub async fn redis(
        url: &str,
        region: &str,
        origin: u64,
    ) -> Result<Self, starling_messenger::MessengerError> {
        let t =
            starling_messenger::bus::RedisPubSub::connect(url, format!("starling:cache:{region}"))
                .await?;
        Ok(CacheBus::over(Arc::new(t), origin))
    }

    /// A bus over `transport`, shared with the region's other nodes.
    pub fn over(transport: Arc<dyn PubSub>, origin: u64) -> Self {
        CacheBus {
            side: Some(Arc::new(Side {
                transport,
                origin,
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                undecodable: AtomicU64::new(0),
                timelines: AtomicU64::new(0),
            })),
        }
    }

    /// Whether messages leave this node.
    pub fn is_shared(&self) -> bool {
        self.side.is_some()
    }

    /// Tells the region's other nodes to drop what `t` lists and to deliver the notifications
    /// `notes` (never waits; nothing is sent for nothing).
    pub fn publish(&self, t: &Touched, notes: &[(u64, u64)]) {
        let Some(s) = &self.side else { return };
        let mut chunks = notes.chunks(MAX_NOTIFICATIONS);
        let mut w = Wire {
            o: s.origin,
            all: t.all,
            t: t.timelines.iter().copied().collect(),
            p: t.posts.iter().copied().collect(),
            l: t.lists.iter().copied().collect(),
            a: t.authors.iter().copied().collect(),
            n: chunks.next().map(<[_]>::to_vec).unwrap_or_default(),
        };
        if t.is_empty() && w.n.is_empty() {
            return;
        }
        loop {
            if let Ok(bytes) = serde_json::to_vec(&w) {
                s.transport.publish(bytes.into());
                s.sent.fetch_add(1, Ordering::Relaxed);
            }
            let Some(more) = chunks.next() else { return };
            w = Wire {
                o: s.origin,
                all: false,
                t: Vec::new(),
                p: Vec::new(),
                l: Vec::new(),
                a: Vec::new(),
                n: more.to_vec(),
            };
        }
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        let Some(s) = &self.side else {
            return Counters::default();
        };
        let (dropped, _) = s.transport.counters();
        Counters {
            sent: s.sent.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            dropped: dropped + s.undecodable.load(Ordering::Relaxed),
            timelines: s.timelines.load(Ordering::Relaxed),
        }
    }

    /// Applies the other nodes' messages to this node's caches and sockets until `shutdown`
    /// turns true; subscribes again a second after a lost subscription.
    pub async fn run(self, state: crate::AppState, mut shutdown: watch::Receiver<bool>) {
        use futures_util::StreamExt as _;
        let Some(s) = self.side else { return };
        loop {
            match s.transport.subscribe().await {
                Ok(mut stream) => loop {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        m = stream.next() => {
                            let Some(m) = m else { break };
                            apply(&s, &state, &m).await;
                        }
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cache invalidation: subscribing failed"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Drops what one message lists and delivers its notifications, unless this node sent it.
async fn apply(s: &Side, state: &crate::AppState, payload: &[u8]) {
    let Ok(w) = serde_json::from_slice::<Wire>(payload) else {
        s.undecodable.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if w.o == s.origin {
        return;
    }
    let t = Touched {
        all: w.all,
        timelines: w.t.into_iter().collect(),
        posts: w.p.into_iter().collect(),
        lists: w.l.into_iter().collect(),
        authors: w.a.into_iter().collect(),
    };
    let n = state.feed.drop_cached(&t);
    s.received.fetch_add(1, Ordering::Relaxed);
    s.timelines
        .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    deliver(state, &w.n).await;
}

/// Sends the notifications `notes` to their recipients' sockets on this node.
pub async fn deliver(state: &crate::AppState, notes: &[(u64, u64)]) {
    for (recipient, id) in notes {
        if !state.fanout.hub.is_online(*recipient) {
            continue;
        }
        if let Err(e) = crate::notifications::live::deliver(state, *recipient, *id).await {
            tracing::debug!(error = %e, recipient, id, "notification from the bus: not delivered");
        }
    }
}
