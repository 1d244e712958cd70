//! The pub/sub role in process: a bounded broadcast channel that every clone shares, so
//! several nodes run in one process (tests, embedders) share a region's events as they would
//! through Redis. A subscriber that falls more than the channel's capacity behind loses the
//! oldest payloads, counted as dropped.

use super::{Payloads, PubSub};
use crate::error::MessengerError;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// Payloads a subscriber may fall behind by.
const CAPACITY: usize = 4096;

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    published: AtomicU64,
}

/// An in-process channel. Cheap to clone; clones are the same channel.
#[derive(Clone, Debug)]
pub struct LocalPubSub {
    tx: broadcast::Sender<Bytes>,
    counters: Arc<Counters>,
}

impl Default for LocalPubSub {
    fn default() -> Self {
        LocalPubSub::new()
    }
}

impl LocalPubSub {
    /// A new channel with no subscriber.
    pub fn new() -> Self {
        LocalPubSub {
            tx: broadcast::Sender::new(CAPACITY),
            counters: Arc::default(),
        }
    }
}

#[async_trait]
impl PubSub for LocalPubSub {
    fn publish(&self, payload: Bytes) {
        // With no subscriber the payload reaches nobody, as a Redis PUBLISH would.
        let _ = self.tx.send(payload);
        self.counters.published.fetch_add(1, Ordering::Relaxed);
    }

    async fn subscribe(&self) -> Result<Payloads, MessengerError> {
        let counters = self.counters.clone();
        let rx = self.tx.subscribe();
        Ok(futures_util::stream::unfold(rx, move |mut rx| {
            let counters = counters.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(b) => return Some((b, rx)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            counters.dropped.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed())
    }

    fn counters(&self) -> (u64, u64) {
        (
            self.counters.dropped.load(Ordering::Relaxed),
            self.counters.published.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_pub_sub_conformance_suite() {
        let a = LocalPubSub::new();
        let b = a.clone();
        crate::bus::conformance::run_all(&a, &b).await;
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_counts_what_it_lost() {
        let a = LocalPubSub::new();
        let mut s = a.subscribe().await.unwrap_or_else(|_| unreachable!());
        for i in 0..CAPACITY + 10 {
            a.publish(Bytes::from(i.to_string()));
        }
        let first = s.next().await;
        assert_eq!(first, Some(Bytes::from("10")), "the oldest ten were lost");
        assert_eq!(a.counters(), (10, (CAPACITY + 10) as u64));
    }
}
