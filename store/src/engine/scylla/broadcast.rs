//! The keyspace-wide change feed, broadcast side: every node of a region reads **every**
//! partition of the feed, without a lease, from cursors it keeps in memory only — to learn which
//! keys the region's other nodes changed (its caches, its sockets), not to derive state.
//!
//! - **Cursors.** One per writer (a writer's numbers are unique across partitions), starting at
//!   the writers' marks at the first poll: a node starts with empty caches, so nothing older
//!   concerns it. A writer first seen later is read from its start.
//! - **Reading.** Like a holder, only up to each writer's published mark (nothing below a cursor
//!   appears later), at most `window` of a writer's numbers a poll, every partition in one
//!   query per writer and chunk (`part IN ?`, in groups of [`PARTS_PER_QUERY`]); a writer whose
//!   mark did not move costs nothing but the read of the marks. A writer silent past its mark
//!   (killed mid-write) is not read past it: its last writes are seen when it restarts.
//! - **Falling behind.** The holders trim the feed but keep [`super::lease::RETAINED`] numbers of
//!   each writer below their cursors. A reader further than [`MAX_LAG`] (half of that) behind a
//!   writer's mark may have lost entries: the poll skips to the marks and says so
//!   ([`TailPoll::reset`]); its caller must then forget what it caches. So does a failed poll's
//!   caller ([`KeyspaceTail::restart`]): the next poll starts at the marks.

use super::cql::retry;
use super::kfeed::CHUNK_BITS;
use super::lease::{KeyspaceChange, RETAINED, rows};
use super::{ScyllaOptions, connect};
use crate::error::{Result, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::BTreeMap;

/// Partitions named in one read (`part IN ?`).
pub(crate) const PARTS_PER_QUERY: u32 = 64;
/// How far a reader may lag behind a writer's mark before it resets (half the numbers the feed
/// retains below a holder's cursor: the rest is the margin for writes made during a poll).
pub const MAX_LAG: u64 = RETAINED / 2;

/// What one poll read.
#[derive(Clone, Debug, Default)]
pub struct TailPoll {
    /// The entries read, ordered by writer then sequence number.
    pub changes: Vec<KeyspaceChange>,
    /// Numbers between the cursors and the writers' marks left after this poll.
    pub lag: u64,
    /// The reader was too far behind (or restarted): it skipped to the writers' marks, and
    /// entries may have been missed. Forget what is cached.
    pub reset: bool,
}

/// A node's broadcast reader of the keyspace-wide feed (see the module's documentation).
pub struct KeyspaceTail {
    session: Session,
    writers: PreparedStatement,
    read: PreparedStatement,
    partitions: u32,
    /// Per writer: the last number read. `None` before the first poll or after a restart.
    cursors: parking_lot::Mutex<Option<BTreeMap<i64, i64>>>,
    restarted: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for KeyspaceTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyspaceTail")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl KeyspaceTail {
    /// A reader of the keyspace in `opts` (opened by the ScyllaDB engine first: the schema and
    /// the partition count come from it), on a session of its own.
    pub async fn open(opts: &ScyllaOptions) -> Result<Self> {
        let session = connect(opts).await?;
        let ks = &opts.keyspace;
        let partitions = super::kfeed::agree_partitions(&session, ks, opts.feed_partitions).await?;
        let prepare = |cql: String| {
            let s = &session;
            async move {
                s.prepare(cql.clone())
                    .await
                    .map_err(|e| StoreError::Cluster(format!("preparing `{cql}`: {e}")))
            }
        };
        let writers = prepare(format!("SELECT writer, mark FROM {ks}.kfeed_writers")).await?;
        let read = prepare(format!(
            "SELECT part, seq, k, origin FROM {ks}.kfeed \
             WHERE part IN ? AND writer = ? AND chunk = ? AND seq > ? AND seq <= ?"
        ))
        .await?;
        Ok(KeyspaceTail {
            session,
            writers,
            read,
            partitions,
            cursors: parking_lot::Mutex::new(None),
            restarted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The next poll starts at the writers' marks and reports a reset (call it after a failed
    /// poll: what it would have read may be gone by the next).
    pub fn restart(&self) {
        *self.cursors.lock() = None;
        self.restarted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads, for each writer, its entries after the cursor up to its mark, at most `window`
    /// numbers of each writer, and moves the cursors past them (only if every read succeeded).
    pub async fn poll(&self, window: u64) -> Result<TailPoll> {
        let res = retry("reading the feed writers", || {
            self.session.execute_unpaged(&self.writers, ())
        })
        .await?;
        let marks: BTreeMap<i64, i64> = rows::<(i64, Option<i64>)>(res, "kfeed_writers")?
            .into_iter()
            .map(|(w, m)| (w, m.unwrap_or(0)))
            .collect();
        let start = self.cursors.lock().clone();
        let Some(mut cursors) = start else {
            *self.cursors.lock() = Some(marks);
            let reset = self
                .restarted
                .swap(false, std::sync::atomic::Ordering::Relaxed);
            return Ok(TailPoll {
                reset,
                ..TailPoll::default()
            });
        };
        let behind = marks
            .iter()
            .any(|(w, m)| m.saturating_sub(cursors.get(w).copied().unwrap_or(0)) as u64 > MAX_LAG);
        if behind {
            *self.cursors.lock() = Some(marks);
            return Ok(TailPoll {
                reset: true,
                ..TailPoll::default()
            });
        }
        let mut out = TailPoll::default();
        let window = i64::try_from(window.max(1)).unwrap_or(i64::MAX);
        for (&w, &mark) in &marks {
            let cursor = cursors.get(&w).copied().unwrap_or(0);
            let upto = mark.min(cursor.saturating_add(window));
            if upto > cursor {
                self.read_into(w, cursor, upto, &mut out.changes).await?;
            }
            out.lag += mark.saturating_sub(upto.max(cursor)) as u64;
            cursors.insert(w, upto.max(cursor));
        }
        out.changes.sort_by_key(|c| (c.writer, c.seq));
        *self.cursors.lock() = Some(cursors);
        Ok(out)
    }

    /// `writer`'s entries in `(from, upto]` of every partition, into `out`.
    async fn read_into(
        &self,
        writer: i64,
        from: i64,
        upto: i64,
        out: &mut Vec<KeyspaceChange>,
    ) -> Result<()> {
        let parts: Vec<i32> = (0..self.partitions as i32).collect();
        for chunk in ((from + 1) >> CHUNK_BITS)..=(upto >> CHUNK_BITS) {
            for group in parts.chunks(PARTS_PER_QUERY as usize) {
                let res = retry("reading the keyspace feed", || {
                    self.session
                        .execute_unpaged(&self.read, (group, writer, chunk, from, upto))
                })
                .await?;
                for (part, seq, k, origin) in rows::<(i32, i64, Vec<u8>, i8)>(res, "kfeed")? {
                    out.push(KeyspaceChange::of_row(part as u32, writer, seq, k, origin));
                }
            }
        }
        Ok(())
    }
}
