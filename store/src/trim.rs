//! Trimming the change feed: the feed is a queue, and what every consumer has read goes.
//!
//! Each consumer of the feed keeps its position under a node-local key ([`FeedConsumer`]). The
//! trimmer, a background task, reads the positions of the consumers it is told about, and
//! removes the entries below the slowest one (less `retain` entries kept behind it), at most
//! `step` entries a batch with a yield between batches, so a large backlog is trimmed in many
//! small writes beside the traffic rather than one long one. A consumer that has no position
//! yet counts as at 0: nothing is trimmed before every consumer has started.
//!
//! Peers are not consumers here: a push that a peer missed (it was down) is never sent again
//! from the feed, whatever its length; anti-entropy repairs that peer from the records.

use crate::consumer::FeedConsumer;
use crate::contract::Store;
use crate::error::Result;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Settings of the trimmer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrimConfig {
    /// Time between passes.
    pub interval: Duration,
    /// Entries kept behind the slowest consumer (0: trim up to it).
    pub retain: u64,
    /// Entries removed per batch.
    pub step: u64,
}

impl Default for TrimConfig {
    /// A pass every 10 s, nothing retained behind the slowest consumer, 4 096 entries a batch.
    fn default() -> Self {
        TrimConfig {
            interval: Duration::from_secs(10),
            retain: 0,
            step: 4096,
        }
    }
}

/// The trimmer's settings of `starling serve` (feature `clap`): a clap group (flags,
/// `STARLING_<FLAG>` variables and `--config` keys, each declared once here, typed and
/// defaulted) that the server flattens into its command line; [`TrimConfig`] from it.
#[cfg(feature = "clap")]
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct TrimSettings {
    /// Time between passes of the change feed's trimmer, e.g. `10s` (default 10s).
    #[arg(
        long,
        env = "STARLING_FEED_TRIM_INTERVAL",
        default_value = "10s",
        hide_default_value = true
    )]
    pub feed_trim_interval: crate::settings::Span,
    /// Change-feed entries kept behind its slowest consumer (default 0).
    #[arg(
        long,
        env = "STARLING_FEED_RETAIN",
        default_value = "0",
        hide_default_value = true
    )]
    pub feed_retain: u64,
}

#[cfg(feature = "clap")]
impl Default for TrimSettings {
    fn default() -> Self {
        crate::settings::defaults()
    }
}

#[cfg(feature = "clap")]
impl From<TrimSettings> for TrimConfig {
    /// The settings' interval and retention, the default batch.
    fn from(s: TrimSettings) -> Self {
        TrimConfig {
            interval: s.feed_trim_interval.get(),
            retain: s.feed_retain,
            ..TrimConfig::default()
        }
    }
}

/// Most `(last seq, time)` samples kept to tell the oldest entry's age; past it every other one
/// is dropped (the resolution halves, the memory stays bounded).
const MAX_SAMPLES: usize = 1024;

/// What the trimmer reports, read by `/metrics`.
#[derive(Debug, Default)]
pub struct TrimStats {
    /// Entries in the feed after the last pass.
    pub length: AtomicU64,
    /// Age of the oldest entry after the last pass, in ms: at least this old, to within one
    /// interval (the feed's entries carry no time; the trimmer samples the last sequence number
    /// each pass). 0 for an empty feed; counted from the process start after a restart.
    pub oldest_age_ms: AtomicU64,
    /// Entries removed since start.
    pub trimmed: AtomicU64,
    /// Passes since start.
    pub passes: AtomicU64,
    /// Passes that failed (a store error; logged).
    pub failures: AtomicU64,
    samples: Mutex<VecDeque<(u64, Instant)>>,
}

impl TrimStats {
    /// Records that the last sequence number was `seq` at `at`, and forgets what is older than
    /// the sample just below `oldest`.
    fn sample(&self, seq: u64, at: Instant, oldest: u64) -> Option<Instant> {
        let mut s = self.samples.lock();
        if s.back().is_none_or(|(last, _)| *last != seq) {
            s.push_back((seq, at));
        }
        while s.len() >= 2 && s[1].0 < oldest {
            s.pop_front();
        }
        if s.len() > MAX_SAMPLES {
            let kept: VecDeque<_> = s
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 0 || *i == s.len() - 1)
                .map(|(_, x)| *x)
                .collect();
            *s = kept;
        }
        // The oldest entry was written by the first sample that reached it.
        s.iter().find(|(seq, _)| *seq >= oldest).map(|(_, t)| *t)
    }
}

/// The outcome of one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrimPass {
    /// Entries removed.
    pub trimmed: u64,
    /// Entries left.
    pub length: u64,
}

/// The trimmer of one store, gated by the consumers named.
#[derive(Debug)]
pub struct Trimmer {
    store: Arc<dyn Store>,
    consumers: Vec<FeedConsumer>,
    cfg: TrimConfig,
    stats: Arc<TrimStats>,
}

impl Trimmer {
    /// A trimmer of `store` that never passes the position of any of `consumers`.
    pub fn new(
        store: Arc<dyn Store>,
        consumers: &[&str],
        cfg: TrimConfig,
        stats: Arc<TrimStats>,
    ) -> Self {
        let consumers = consumers
            .iter()
            .map(|n| FeedConsumer::new(store.clone(), n))
            .collect();
        Trimmer {
            store,
            consumers,
            cfg,
            stats,
        }
    }

    /// The sequence number of the oldest entry in the feed (`last_seq + 1` when it is empty).
    async fn oldest(&self) -> Result<u64> {
        Ok(match self.store.changes(0, 1).await?.first() {
            Some(c) => c.seq,
            None => self.store.last_seq() + 1,
        })
    }

    /// One pass: trims below the slowest consumer, `step` entries a batch.
    pub async fn pass(&self) -> Result<TrimPass> {
        let mut slowest = self.store.last_seq();
        for c in &self.consumers {
            slowest = slowest.min(c.position().await?);
        }
        let target = slowest.saturating_sub(self.cfg.retain);
        let mut oldest = self.oldest().await?;
        let mut trimmed = 0;
        while oldest <= target {
            let upto = target.min(oldest.saturating_add(self.cfg.step.max(1) - 1));
            self.store.trim_changes(upto).await?;
            trimmed += upto + 1 - oldest;
            self.stats
                .trimmed
                .fetch_add(upto + 1 - oldest, Ordering::Relaxed);
            oldest = upto + 1;
            tokio::task::yield_now().await;
        }
        // Entries may be missing below the target (a bulk load writes none): ask the feed.
        let oldest = self.oldest().await?;
        let last = self.store.last_seq();
        let length = (last + 1).saturating_sub(oldest);
        let now = Instant::now();
        let age = match self.stats.sample(last, now, oldest) {
            Some(t) if length > 0 => now.duration_since(t).as_millis() as u64,
            _ => 0,
        };
        self.stats.length.store(length, Ordering::Relaxed);
        self.stats.oldest_age_ms.store(age, Ordering::Relaxed);
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        Ok(TrimPass { trimmed, length })
    }

    /// Runs a pass every interval until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.pass().await {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "trimming the change feed failed");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(self.cfg.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory_for_tests as store;
    use crate::{Key, StoreExt};
    use bytes::Bytes;

    #[tokio::test]
    async fn trims_below_the_slowest_consumer_only_in_steps() {
        let s = store();
        for i in 0..100u64 {
            s.put(&Key::from(format!("k{i}").as_str()), Bytes::new())
                .await
                .unwrap();
        }
        let stats = Arc::new(TrimStats::default());
        let cfg = TrimConfig {
            step: 7,
            retain: 5,
            ..TrimConfig::default()
        };
        let t = Trimmer::new(s.clone(), &["a", "b"], cfg, stats.clone());
        assert_eq!(t.pass().await.unwrap().trimmed, 0, "b has no position yet");
        FeedConsumer::new(s.clone(), "a").commit(90).await.unwrap();
        FeedConsumer::new(s.clone(), "b").commit(40).await.unwrap();
        let p = t.pass().await.unwrap();
        assert_eq!(
            p,
            TrimPass {
                trimmed: 35,
                length: 65
            }
        );
        assert_eq!(s.changes(0, 1).await.unwrap()[0].seq, 36);
        FeedConsumer::new(s.clone(), "b").commit(100).await.unwrap();
        let p = t.pass().await.unwrap();
        assert_eq!(p.trimmed, 85 - 35);
        assert_eq!(p.length, 15);
        assert_eq!(stats.trimmed.load(Ordering::Relaxed), 85);
        assert_eq!(stats.length.load(Ordering::Relaxed), 15);
        assert_eq!(stats.passes.load(Ordering::Relaxed), 3);
        // A consumer reading from before the trim point gets what is left.
        let rest = FeedConsumer::new(s.clone(), "late")
            .batch(0, 1000)
            .await
            .unwrap();
        assert_eq!(rest.first().map(|c| c.seq), Some(86));
        assert_eq!(rest.len(), 15);
    }

    #[test]
    fn samples_stay_bounded_and_date_the_oldest_entry() {
        let stats = TrimStats::default();
        let t0 = Instant::now();
        for i in 0..5000u64 {
            stats.sample(i * 10, t0 + Duration::from_millis(i), 0);
        }
        assert!(stats.samples.lock().len() <= MAX_SAMPLES + 1);
        // Entry 25 000 was first covered by the sample of seq 25 000 (or a later one kept).
        let at = stats
            .sample(49_990, t0 + Duration::from_millis(4999), 25_000)
            .unwrap();
        let ms = at.duration_since(t0).as_millis();
        assert!((2500..2600).contains(&ms), "{ms}");
        assert!(stats.samples.lock().front().unwrap().0 < 25_000);
    }
}
