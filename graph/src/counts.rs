//! Follower and following counts, as node-local derived state.
//!
//! A count is the size of an edge set, and each replica holds the sets: so each node counts the
//! edges *it* holds, exactly, by tailing its store's change feed. For every change to an edge
//! element it compares the element's visibility with the visibility it last counted (a local
//! shadow; the rule is [`starling_store::counted`]'s, which the posts' counters share) and moves
//! the local count by one when they differ. Counts are therefore exact for the replica's state
//! (two regions following the same pair at once count it once, an unfollow racing a follow
//! resolves with the set), never negative, replicated by nothing (each region derives its own),
//! and resumable: the feed position is persisted. Crashes: a batch's count moves and
//! shadows are one `mutate_many`, which the memory and embedded engines commit as one (all or
//! none), and the position is saved after it: a crash before the save replays the batch, whose
//! changes then find their shadows and move nothing (tested by replaying from an older position).
//! On the ScyllaDB engine `mutate_many` writes key by key, so there a crash between a count's move
//! and its shadow still counts that edge twice (the posts' counters close that with a redo
//! journal, `posts/src/journal.rs`; not done here yet) — a count can be rebuilt from the sets.
//!
//! A bulk load (`starling seed`, [`crate::bulk`]) writes the counts of the graph it loads and,
//! instead of a shadow per edge, one local marker holding the load's dot: an edge without a
//! shadow whose record has seen that dot was loaded, hence counted. A node that was not loaded
//! has no marker, and counts the same edges one by one as they replicate in.

use crate::keys::{FOLLOWERS, FOLLOWING};
use crate::{Graph, GraphError};
use starling_store::{Change, FeedConsumer, Key, Keyspace, StoreExt, Wake, counted, drive};
use tokio::sync::watch;

/// `gn/user/"followers"|"following"` → counter (local).
pub(crate) const COUNTS: Keyspace = Keyspace::local("gn");
/// `gs/edge key` → the visibility last counted, one byte (local).
const SHADOWS: Keyspace = Keyspace::local("gs");
/// `gl` → the dot of the bulk load this node's counts include, if any (local).
pub(crate) const LOADED: Keyspace = Keyspace::local("gl");
/// The counts' name as a change-feed consumer (its saved position).
pub const CONSUMER: &str = "graph-counts";
/// The keyspaces whose changes the counts read: the edges, and the sessions whose revocations
/// the session cache drops ([`Graph::count_changes`]). Only their writes wake the consumer.
const READS: &[Keyspace] = &[FOLLOWERS, FOLLOWING, crate::keys::SESSIONS];

pub(crate) fn count_key(id: u64, which: &str) -> Key {
    COUNTS.key().u64(id).str(which).finish()
}

/// For an edge element key, the counter it moves.
fn counter_of(key: &Key) -> Option<Key> {
    for (ks, which) in [(FOLLOWERS, "followers"), (FOLLOWING, "following")] {
        let prefix = ks.prefix();
        if key.starts_with(prefix.as_bytes()) {
            let owner = starling_store::key::read_u64(key.as_bytes(), ks.prefix_len())?;
            return Some(count_key(owner, which));
        }
    }
    None
}

impl Graph {
    /// Brings the counts up to the store's change feed. Serialized: one catch-up at a time.
    /// Each batch of changes becomes one batch of writes (count moves and shadows), written
    /// with one durability wait before the position moves past it.
    pub async fn catch_up_counts(&self) -> Result<(), GraphError> {
        if self.cfg.keyspace_feed {
            return Ok(());
        }
        let _one = self.counts_lock.lock().await;
        let consumer = FeedConsumer::new(self.store.clone(), CONSUMER);
        let mut cursor = consumer.position().await?;
        loop {
            let changes = consumer.batch(cursor, 1024).await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(());
            };
            self.count_changes(&changes).await?;
            cursor = last;
            consumer.commit(cursor).await?;
        }
    }

    /// Moves the counts for one batch of changes (of this node's feed, or of a partition of the
    /// keyspace-wide feed this node holds): one batch of writes, count moves and shadows.
    /// Idempotent: a change delivered again finds its shadow and moves nothing.
    pub async fn count_changes(&self, changes: &[Change]) -> Result<(), GraphError> {
        // Every batch of the node's feed passes here: the session cache drops the sessions it
        // names (a revocation replicated from another node; see `session_cache`).
        self.sessions_changed(changes);
        let store = self.store.as_ref();
        let loaded = counted::loaded_dot(store, LOADED).await?;
        let writes = counted::tally(store, changes, SHADOWS, loaded.as_ref(), counter_of)
            .await?
            .into_writes();
        if !writes.is_empty() {
            self.store.mutate_many(&writes).await?;
        }
        Ok(())
    }

    /// Keeps the counts current with remote changes until `shutdown` turns true.
    pub async fn run_counts(self, shutdown: watch::Receiver<bool>) {
        let store = self.store.clone();
        drive(store, Wake::On(READS), shutdown, || async {
            if let Err(e) = self.catch_up_counts().await {
                tracing::error!(error = %e, "updating follower counts failed");
            }
        })
        .await;
    }

    /// A user's count (`followers` or `following`) as this node derives it.
    pub(crate) async fn count(&self, id: u64, which: &str) -> Result<i64, GraphError> {
        self.count_of(id, which).await
    }

    /// A user's `followers` or `following` count as this node derives it (never negative).
    pub async fn count_of(&self, id: u64, which: &str) -> Result<i64, GraphError> {
        Ok(self.store.counter(&count_key(id, which)).await?.max(0))
    }
}

#[cfg(test)]
mod tests {
    use crate::users::tests::graph;
    use bytes::Bytes;
    use starling_store::{Delta, Dot, Hlc, Kind, NodeId, Record, RegionId};

    #[tokio::test]
    async fn concurrent_follows_of_the_same_pair_count_once() {
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        g.follow(a.id, b.id).await.unwrap();
        // The same follow, made concurrently in another region, arrives by replication.
        let other = NodeId::new(RegionId::from_name("eu"), 9);
        let mut deltas = Vec::new();
        for key in [
            crate::keys::pair(crate::keys::FOLLOWERS, b.id, a.id),
            crate::keys::pair(crate::keys::FOLLOWING, a.id, b.id),
        ] {
            let mut r = Record::empty(Kind::Set);
            r.add_element(
                Dot {
                    hlc: Hlc(1),
                    node: other,
                },
                Bytes::new(),
                None,
            )
            .unwrap();
            deltas.push(Delta { key, record: r });
        }
        g.store().apply(&deltas).await.unwrap();
        g.catch_up_counts().await.unwrap();
        assert_eq!(g.user(b.id).await.unwrap().followers_count, 1);
        assert_eq!(g.user(a.id).await.unwrap().following_count, 1);
        // Unfollow removes both adds seen; the count follows the set.
        g.unfollow(a.id, b.id).await.unwrap();
        assert_eq!(g.user(b.id).await.unwrap().followers_count, 0);
        g.catch_up_counts().await.unwrap();
        assert_eq!(g.user(b.id).await.unwrap().followers_count, 0);
    }

    /// A crash after a batch's writes but before its position is saved replays the batch: its
    /// changes find their shadows and move nothing.
    #[tokio::test]
    async fn a_batch_replayed_after_a_crash_before_its_position_moves_nothing() {
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        let (c, _) = g.sign_up("carol", "password1", None, None).await.unwrap();
        g.follow(a.id, b.id).await.unwrap();
        g.follow(c.id, b.id).await.unwrap();
        g.unfollow(c.id, b.id).await.unwrap();
        g.catch_up_counts().await.unwrap();
        let consumer = starling_store::FeedConsumer::new(g.store().clone(), super::CONSUMER);
        assert!(consumer.position().await.unwrap() > 0);
        // The position as before the batches: what a crash before its save leaves.
        for _ in 0..2 {
            consumer.commit(0).await.unwrap();
            g.catch_up_counts().await.unwrap();
            assert_eq!(g.user(b.id).await.unwrap().followers_count, 1);
            assert_eq!(g.user(a.id).await.unwrap().following_count, 1);
            assert_eq!(g.user(c.id).await.unwrap().following_count, 0);
        }
    }
}
