//! Consumers of the change feed whose position survives restarts.
//!
//! Derived state (follower counts, timelines) is built by tailing the store's change feed. A
//! [`FeedConsumer`] keeps its position in a local key of the same store, named by the consumer
//! and the node (nodes sharing a ScyllaDB keyspace share its local rows, while each node's feed
//! has its own numbers), so after a restart it resumes where it stopped; [`drive`] runs a consumer's step whenever the feed grows, until
//! shutdown. A [`Tail`] reads the feed from its end as it grows, for live deliveries.
//!
//! With the ScyllaDB engine (feature `scylla`) a region's nodes can also consume one feed of the
//! whole keyspace, every node's writes, split among them by leases: [`KeyspaceFeed`] (see
//! ARCHITECTURE.md, "The keyspace-wide change feed"); and each node reads all of it, unleased,
//! from cursors in memory, for its caches and sockets: [`KeyspaceTail`].

use crate::contract::{Change, Store, StoreExt};
use crate::error::Result;
use crate::key::{Key, Keyspace};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

#[cfg(feature = "scylla")]
pub use crate::engine::scylla::{
    BackfillProgress, DEFAULT_PARTITIONS, FeedStats, KeyspaceChange, KeyspaceFeed, KeyspaceTail,
    LeaseConfig, MAX_LAG, PartBatch, TailPoll, partition_of,
};

const CURSORS: Keyspace = Keyspace::local("cursor");

/// A named position in the change feed, persisted in the store.
#[derive(Clone, Debug)]
pub struct FeedConsumer {
    store: Arc<dyn Store>,
    key: Key,
    /// Where builds before the node-scoped key kept the position: read while `key` is absent.
    legacy: Key,
}

impl FeedConsumer {
    /// The consumer `name` (unique per kind of derived state) over `store`.
    pub fn new(store: Arc<dyn Store>, name: &str) -> Self {
        let key = CURSORS.key().str(name).u64(store.node().0).finish();
        FeedConsumer {
            store,
            key,
            legacy: CURSORS.key().str(name).finish(),
        }
    }

    /// The last sequence number processed (0 at first).
    pub async fn position(&self) -> Result<u64> {
        let read = |v: Option<crate::record::Versioned<Bytes>>| {
            v.and_then(|v| v.value)
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map(u64::from_be_bytes)
        };
        if let Some(at) = read(self.store.get(&self.key).await?) {
            return Ok(at);
        }
        Ok(read(self.store.get(&self.legacy).await?).unwrap_or(0))
    }

    /// Up to `limit` changes after `after` (pass [`FeedConsumer::position`] first, then the seq of
    /// the last change of the previous batch).
    pub async fn batch(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.store.changes(after, limit).await
    }

    /// Records that everything up to `seq` is processed.
    pub async fn commit(&self, seq: u64) -> Result<()> {
        self.store
            .put(&self.key, Bytes::copy_from_slice(&seq.to_be_bytes()))
            .await?;
        Ok(())
    }
}

/// How long a consumer lets the feed grow after it was woken before it reads: a burst of writes
/// is then one read of the feed, not one per write (at 5 000 chat messages/s the per-write
/// wake-ups cost a tenth of a node's CPU in feed reads). The delay a change waits is at most this.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// How often a reader woken only by some keys ([`Wake::On`]) reads the feed anyway when it grew
/// with others: its position follows the feed within this, so the trimmer
/// ([`crate::trim`]), which removes only what every consumer has read, is never held back by
/// writes the consumer does not read (chat messages, for the follower counts).
pub const SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Which commits wake a reader of the feed.
#[derive(Clone, Copy, Debug)]
pub enum Wake {
    /// Every commit.
    Every,
    /// Commits that write a key of one of these keyspaces; other growth of the feed at most
    /// every [`SWEEP`].
    On(&'static [Keyspace]),
}

impl Wake {
    /// The receiver of the commits that wake the reader.
    fn subscribe(self, store: &dyn Store) -> watch::Receiver<u64> {
        match self {
            Wake::Every => store.subscribe(),
            Wake::On(spaces) => {
                let prefixes: Vec<Bytes> = spaces.iter().map(|ks| ks.prefix().0).collect();
                store.subscribe_to(&prefixes)
            }
        }
    }
}

/// Waits until `woken` says a commit woke the reader, or — every [`SWEEP`] — the feed has grown
/// past `read_to` (the last sequence number the reader has seen): false once `shutdown` turns
/// true (or the store is gone).
async fn woken_or_swept(
    store: &dyn Store,
    woken: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
    read_to: u64,
) -> bool {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return false,
            r = woken.changed() => return r.is_ok(),
            () = tokio::time::sleep(SWEEP) => if store.last_seq() > read_to { return true },
        }
    }
}

/// Calls `step` now and every time the store's change feed grows with a commit `wake` names
/// (at most every [`LINGER`]; other growth at most every [`SWEEP`]), until `shutdown` turns
/// true.
pub async fn drive<F, Fut>(
    store: Arc<dyn Store>,
    wake: Wake,
    mut shutdown: watch::Receiver<bool>,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut woken = wake.subscribe(store.as_ref());
    loop {
        let read_to = store.last_seq();
        step().await;
        if !woken_or_swept(store.as_ref(), &mut woken, &mut shutdown, read_to).await {
            return;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(LINGER) => {}
        }
    }
}

/// Changes a [`Tail`] reads per step.
const TAIL_BATCH: usize = 1000;

/// A reader of the change feed from its end as it grows, for consumers that need not resume
/// after a restart (live deliveries: a client that was away reads what it missed): each
/// [`Tail::next`] is the next batch of changes, read at once while the feed has more, otherwise
/// when it grows again (a burst of writes gathered for the tail's linger: one read, not one per
/// write).
#[derive(Debug)]
pub struct Tail {
    store: Arc<dyn Store>,
    /// Names the tail in its log lines.
    name: &'static str,
    linger: std::time::Duration,
    shutdown: watch::Receiver<bool>,
    woken: watch::Receiver<u64>,
    pos: u64,
    /// The last read emptied the feed: the next one waits for it to grow.
    caught_up: bool,
}

impl Tail {
    /// A tail of `store`'s feed from its end now, woken by the commits `wake` names, waiting
    /// `linger` after a wake-up, until `shutdown` turns true.
    pub fn new(
        store: Arc<dyn Store>,
        name: &'static str,
        wake: Wake,
        linger: std::time::Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let woken = wake.subscribe(store.as_ref());
        let pos = store.last_seq();
        Tail {
            store,
            name,
            linger,
            shutdown,
            woken,
            pos,
            caught_up: false,
        }
    }

    /// The sequence number of the last change read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next batch of changes (empty when reading failed: logged, read again once the feed
    /// grows); `None` once `shutdown` turned true.
    pub async fn next(&mut self) -> Option<Vec<Change>> {
        if !self.wait().await {
            return None;
        }
        Some(self.read().await)
    }

    /// Waits, if the last read emptied the feed, until a commit wakes it (or the feed grew, at the
    /// next [`SWEEP`]) and then for the linger:
    /// false once `shutdown` turned true (or the store is gone). For a caller that acts between
    /// the wait and the read (saves its position); otherwise [`Tail::next`].
    pub async fn wait(&mut self) -> bool {
        if !self.caught_up {
            return true;
        }
        if !woken_or_swept(
            self.store.as_ref(),
            &mut self.woken,
            &mut self.shutdown,
            self.pos,
        )
        .await
        {
            return false;
        }
        tokio::select! {
            _ = self.shutdown.changed() => false,
            () = tokio::time::sleep(self.linger) => true,
        }
    }

    /// The changes after the position, at most a batch, without waiting.
    pub async fn read(&mut self) -> Vec<Change> {
        let changes = match self.store.changes(self.pos, TAIL_BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "{}: reading the change feed failed", self.name);
                Vec::new()
            }
        };
        self.caught_up = changes.len() < TAIL_BATCH;
        if let Some(last) = changes.last() {
            self.pos = last.seq;
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory_for_tests as store;

    #[tokio::test]
    async fn positions_persist_and_are_not_in_the_feed() {
        let s = store();
        s.put(&Key::from("a"), Bytes::new()).await.unwrap();
        s.put(&Key::from("b"), Bytes::new()).await.unwrap();
        let c = FeedConsumer::new(s.clone(), "test");
        assert_eq!(c.position().await.unwrap(), 0);
        let batch = c.batch(0, 10).await.unwrap();
        assert_eq!(batch.len(), 2);
        c.commit(batch[1].seq).await.unwrap();
        let again = FeedConsumer::new(s.clone(), "test");
        assert_eq!(again.position().await.unwrap(), batch[1].seq);
        assert!(
            again.batch(batch[1].seq, 10).await.unwrap().is_empty(),
            "cursors are local keys"
        );
    }

    #[tokio::test]
    async fn a_tail_reads_from_the_end_in_batches_until_shutdown() {
        let s = store();
        s.put(&Key::from("before"), Bytes::new()).await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        let mut tail = Tail::new(s.clone(), "test tail", Wake::Every, LINGER, shutdown);
        for i in 0..=TAIL_BATCH {
            s.put(&Key::from(format!("k{i}").as_str()), Bytes::new())
                .await
                .unwrap();
        }
        let first = tail.next().await.unwrap();
        assert_eq!(first.len(), TAIL_BATCH, "a batch at most");
        assert_eq!(first[0].key, Key::from("k0"), "from the end when made");
        assert_eq!(tail.position(), first[TAIL_BATCH - 1].seq);
        let rest = tail.next().await.unwrap();
        assert_eq!(rest.len(), 1, "the rest, read at once");
        assert_eq!(tail.position(), s.last_seq());
        s.put(&Key::from("later"), Bytes::new()).await.unwrap();
        let later = tail.next().await.unwrap();
        assert_eq!(
            later.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
            vec![Key::from("later")],
            "what the feed grew by"
        );
        stop.send(true).unwrap();
        assert!(tail.next().await.is_none(), "shut down");
    }

    const READ: Keyspace = Keyspace::new("rk");
    const OTHER: Keyspace = Keyspace::new("ok");

    /// A consumer that reads `READ`'s keys: each step takes what the feed holds after its
    /// position, and keeps the changes of `READ` it met.
    fn counting_step(
        s: Arc<dyn Store>,
        met: Arc<parking_lot::Mutex<(u64, Vec<Key>, u32)>>,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static {
        move || {
            let (s, met) = (s.clone(), met.clone());
            Box::pin(async move {
                let after = met.lock().0;
                let changes = s.changes(after, 1000).await.unwrap();
                let mut m = met.lock();
                m.2 += 1;
                if let Some(last) = changes.last() {
                    m.0 = last.seq;
                }
                let read = READ.prefix();
                m.1.extend(
                    changes
                        .into_iter()
                        .filter(|c| c.key.starts_with(read.as_bytes()))
                        .map(|c| c.key),
                );
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_consumer_woken_by_its_keys_steps_for_them_and_sweeps_the_rest() {
        let s = store();
        let met = Arc::new(parking_lot::Mutex::new((0u64, Vec::new(), 0u32)));
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(drive(
            s.clone(),
            Wake::On(&[READ]),
            shutdown,
            counting_step(s.clone(), met.clone()),
        ));
        let settle = || tokio::time::sleep(LINGER * 4);
        settle().await;
        let steps = met.lock().2;
        assert_eq!(steps, 1, "the first step, at once");
        // Writes to other keyspaces do not wake it within the sweep.
        for i in 0..50 {
            s.put(&OTHER.key().u64(i).finish(), Bytes::new())
                .await
                .unwrap();
            tokio::time::sleep(LINGER * 2).await;
        }
        assert!(50 * 2 * LINGER < SWEEP);
        assert_eq!(met.lock().2, steps, "not woken by keys it does not read");
        // One of its keys wakes it (after the linger) and it reads everything up to it.
        s.put(&READ.key().u64(1).finish(), Bytes::new())
            .await
            .unwrap();
        settle().await;
        {
            let m = met.lock();
            assert_eq!(m.2, steps + 1);
            assert_eq!(m.1, vec![READ.key().u64(1).finish()]);
            assert_eq!(
                m.0,
                s.last_seq(),
                "its position passes the other writes too"
            );
        }
        // Other growth alone is read at the next sweep, so its position follows the feed.
        s.put(&OTHER.key().u64(99).finish(), Bytes::new())
            .await
            .unwrap();
        tokio::time::sleep(SWEEP + LINGER * 2).await;
        assert_eq!(met.lock().0, s.last_seq(), "swept");
        let swept = met.lock().2;
        // A feed that does not grow is not read again.
        tokio::time::sleep(SWEEP * 5).await;
        assert_eq!(met.lock().2, swept, "no step without growth");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_tail_woken_by_its_keys_reads_the_others_at_the_sweep() {
        let s = store();
        let (_stop, shutdown) = watch::channel(false);
        let mut tail = Tail::new(s.clone(), "test tail", Wake::On(&[READ]), LINGER, shutdown);
        assert!(tail.next().await.unwrap().is_empty(), "the end, at first");
        s.put(&OTHER.key().u64(1).finish(), Bytes::new())
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let swept = tail.next().await.unwrap();
        assert_eq!(swept.len(), 1);
        assert!(started.elapsed() >= SWEEP, "read at the sweep, not woken");
        s.put(&READ.key().u64(1).finish(), Bytes::new())
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let woken = tail.next().await.unwrap();
        assert_eq!(woken[0].key, READ.key().u64(1).finish());
        assert!(started.elapsed() < SWEEP, "woken by its key");
    }

    #[tokio::test]
    async fn a_position_saved_under_the_old_key_is_read_until_one_is_saved_under_the_new() {
        let s = store();
        let old = CURSORS.key().str("test").finish();
        s.put(&old, Bytes::copy_from_slice(&7u64.to_be_bytes()))
            .await
            .unwrap();
        let c = FeedConsumer::new(s.clone(), "test");
        assert_eq!(c.position().await.unwrap(), 7, "resumes from the old key");
        c.commit(9).await.unwrap();
        assert_eq!(c.position().await.unwrap(), 9);
        assert_eq!(
            FeedConsumer::new(s.clone(), "other")
                .position()
                .await
                .unwrap(),
            0
        );
    }
}
