//! The ScyllaDB engine's tombstone index ([`crate::tombstones`]): the keyspace's tombstones by
//! their last write, so the reaper reads what is due, a bounded page at a time, instead of every
//! record of the keyspace.
//!
//! Tables (schema migration 5): `tombs ((bucket), hlc, k)` holds one entry per stored tombstone,
//! its partition the 10-minute bucket ([`BUCKET_MILLIS`]) of the tombstone's last write (its
//! record's `max_hlc`), ordered by that stamp and the key; `tomb_buckets ((id), bucket)` lists
//! the buckets that may hold entries, in order, in one small partition; `tomb_config (id,
//! complete)` says whether every tombstone of the keyspace is indexed. "The oldest entries
//! before H, at most N" reads the listed buckets up to H's, oldest first, each from its start:
//! bounded reads whatever the keyspace holds. Both index tables have a short `gc_grace_seconds`
//! (an hour): a deletion there that a replica misses can only bring back an entry, which a
//! consumer drops as stale.
//!
//! Writes: the write of a record moves its entry in the same round trip ([`Edit`]): a single
//! writer adds the entry's row (and the old tombstone's removal) to the record's LOGGED batch;
//! shared writers send them as one unlogged batch beside the feed entries, before the record's
//! lightweight transaction, so a lost race leaves at most an entry no record matches (dropped
//! as stale when consumed). A bucket is registered by a node at most every
//! [`REGISTERED_FOR`]; a write of a live record over a live record touches no index table.
//!
//! Consumption ([`ScyllaEngine::collect_from_index`]) may run on every node of a region at once:
//! each entry's record is removed only if it still is that tombstone (re-read, and for shared
//! writers deleted by `IF rec = ?`), so a second consumer of the same entry finds nothing and
//! counts it stale. A consumed page leaves one range deletion per bucket (`hlc <` the page's
//! last stamp, plus the last stamp's rows), not a deletion per row, so the next page's read does
//! not wade through row tombstones (range markers of one partition merge: the read skips them
//! at the cost of a few markers per sstable, not one per consumed row). A bucket wholly before
//! the horizon and found empty is dropped, partition and list row, by deletions stamped
//! [`UNREGISTER_MARGIN_MICROS`] in the past: a registration or entry written since (a tombstone
//! written into it meanwhile) has a later write time and outlives them. An entry older than the
//! horizon written into a bucket between a consumer's read and its range deletion would go
//! unread (its record then stays, uncollected): only a tombstone reaching this region more than
//! the grace period late, which the collection rule already excludes.
//!
//! A keyspace written before migration 5 holds tombstones without entries: `tomb_config` says
//! so ([`crate::TombstoneIndex::Partial`]) until the reaper's backfill has swept every record
//! through [`crate::Store::index_tombstones`] and called [`crate::Store::tombstones_indexed`].
//! Nodes of an older build still writing the keyspace after that would write tombstones the
//! index lacks: upgrade every node of a region before its backfill ends.

use super::ScyllaEngine;
use super::cql::{bad_rows, prepare, retry};
use crate::codec::decode_record;
use crate::error::Result;
use crate::hlc::Hlc;
use crate::key::Key;
use crate::record::Record;
use crate::tombstones::{Collected, Tombstone};
use bytes::Bytes;
use scylla::client::session::Session;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Width of a bucket of `tombs`: 10 minutes of the HLC's physical time.
const BUCKET_MILLIS: u64 = 600_000;
/// Buckets listed per read of `tomb_buckets`.
const BUCKETS_READ: i32 = 256;
/// How long a node trusts its own registration of a bucket before writing it again.
const REGISTERED_FOR: Duration = Duration::from_secs(30);
/// How far in the past the removal of an empty bucket from the list is stamped: more than
/// [`REGISTERED_FOR`] plus any clock skew between nodes, so a bucket written into since is kept.
const UNREGISTER_MARGIN_MICROS: i64 = 120_000_000;

/// The bucket of a stamp.
fn bucket(h: Hlc) -> i64 {
    (h.millis() / BUCKET_MILLIS) as i64
}

/// A stamp as the `hlc` column (`bigint`; a bound past it, such as `Hlc(u64::MAX)`, is clamped).
fn stamp(h: Hlc) -> i64 {
    h.0.min(i64::MAX as u64) as i64
}

/// One row's values of a batch mixing statements.
pub(super) type Row<'a> = Box<dyn SerializeRow + Send + Sync + 'a>;

/// How a write moves a key's index entry: the stored tombstone's goes, the new one's comes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Edit {
    /// The new record is a tombstone last written at this stamp.
    add: Option<Hlc>,
    /// The stored record is a tombstone last written at this stamp (and the new one differs).
    remove: Option<Hlc>,
}

impl Edit {
    /// The edit of writing `new` over `old`; none when both are the same entry (or no tombstone).
    pub(super) fn of(old: Option<&Record>, new: &Record) -> Edit {
        let old = old.filter(|r| r.is_tombstone()).map(Record::max_hlc);
        let new = new.is_tombstone().then(|| new.max_hlc());
        if old == new {
            Edit::default()
        } else {
            Edit {
                add: new,
                remove: old,
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.add.is_none() && self.remove.is_none()
    }
}

/// The prepared statements of the index.
struct Statements {
    add: PreparedStatement,
    remove: PreparedStatement,
    remove_below: PreparedStatement,
    page: PreparedStatement,
    register: PreparedStatement,
    buckets: PreparedStatement,
    unregister: PreparedStatement,
    drop_bucket: PreparedStatement,
    complete: PreparedStatement,
    set_complete: PreparedStatement,
}

/// The index of one engine: its statements, whether it is complete, and what this node knows.
pub(super) struct TombIndex {
    st: Statements,
    complete: AtomicBool,
    /// Buckets this node registered, and when (pruned past [`REGISTERED_FOR`]: a handful).
    registered: parking_lot::Mutex<Vec<(i64, Instant)>>,
    /// Entries this node added minus those it removed since it opened the keyspace, floored at
    /// zero: the estimate of [`crate::Store::tombstone_index_len`] (with several nodes on one
    /// keyspace, each counts its own share).
    len: AtomicU64,
}

/// One bucket's page of entries, and whether the bucket had no more before the bound.
struct BucketPage {
    bucket: i64,
    entries: Vec<Tombstone>,
    exhausted: bool,
}

impl TombIndex {
    pub(super) async fn open(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: &'static str| prepare(s, ks, cql);
        let st = Statements {
            add: p("INSERT INTO {ks}.tombs (bucket, hlc, k) VALUES (?, ?, ?)").await?,
            remove: p("DELETE FROM {ks}.tombs WHERE bucket = ? AND hlc = ? AND k = ?").await?,
            remove_below: p("DELETE FROM {ks}.tombs WHERE bucket = ? AND hlc < ?").await?,
            page: p("SELECT hlc, k FROM {ks}.tombs WHERE bucket = ? AND hlc < ? LIMIT ?").await?,
            register: p("INSERT INTO {ks}.tomb_buckets (id, bucket) VALUES (0, ?)").await?,
            buckets: p("SELECT bucket FROM {ks}.tomb_buckets WHERE id = 0 AND bucket <= ? LIMIT ?")
                .await?,
            unregister: p("DELETE FROM {ks}.tomb_buckets USING TIMESTAMP ? \
                 WHERE id = 0 AND bucket = ?")
            .await?,
            drop_bucket: p("DELETE FROM {ks}.tombs USING TIMESTAMP ? WHERE bucket = ?").await?,
            complete: p("SELECT complete FROM {ks}.tomb_config WHERE id = 0").await?,
            set_complete: p("INSERT INTO {ks}.tomb_config (id, complete) VALUES (0, true)").await?,
        };
        let index = TombIndex {
            st,
            complete: AtomicBool::new(false),
            registered: parking_lot::Mutex::new(Vec::new()),
            len: AtomicU64::new(0),
        };
        index.refresh(s).await?;
        Ok(index)
    }

    pub(super) fn complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    pub(super) fn estimate(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Reads whether the index is complete (another node's backfill may have ended).
    pub(super) async fn refresh(&self, s: &Session) -> Result<()> {
        if self.complete() {
            return Ok(());
        }
        let done = retry("reading the tombstone index's state", || {
            s.execute_unpaged(&self.st.complete, ())
        })
        .await?
        .into_rows_result()
        .map_err(|e| bad_rows("tomb_config", e))?
        .maybe_first_row::<(Option<bool>,)>()
        .map_err(|e| bad_rows("tomb_config", e))?
        .and_then(|(c,)| c)
        .unwrap_or(false);
        self.complete.store(done, Ordering::Release);
        Ok(())
    }

    /// Records that every tombstone is indexed.
    pub(super) async fn set_complete(&self, s: &Session) -> Result<()> {
        retry("recording the tombstone index complete", || {
            s.execute_unpaged(&self.st.set_complete, ())
        })
        .await?;
        self.complete.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether this node must (re)write bucket `b`'s registration; notes it as written.
    fn to_register(&self, b: i64) -> bool {
        let mut reg = self.registered.lock();
        reg.retain(|(_, at)| at.elapsed() < REGISTERED_FOR);
        if reg.iter().any(|(r, _)| *r == b) {
            return false;
        }
        reg.push((b, Instant::now()));
        true
    }

    /// Forgets the registrations of `edit` (its write failed: it may not have been stored).
    pub(super) fn failed(&self, edit: &Edit) {
        if let Some(h) = edit.add {
            self.registered.lock().retain(|(r, _)| *r != bucket(h));
        }
    }

    /// Counts a stored edit in the length estimate.
    pub(super) fn applied(&self, edit: &Edit) {
        if edit.add.is_some() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        if edit.remove.is_some() {
            self.removed(1);
        }
    }

    fn removed(&self, n: u64) {
        let _ = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(n))
            });
    }

    /// Appends the statements and values of `edit` on key `k` to a batch being built.
    pub(super) fn append<'a>(
        &self,
        k: &'a [u8],
        edit: &Edit,
        batch: &mut Batch,
        rows: &mut Vec<Row<'a>>,
    ) {
        if let Some(h) = edit.remove {
            batch.append_statement(self.st.remove.clone());
            rows.push(Box::new((bucket(h), stamp(h), k)));
        }
        if let Some(h) = edit.add {
            batch.append_statement(self.st.add.clone());
            rows.push(Box::new((bucket(h), stamp(h), k)));
            if self.to_register(bucket(h)) {
                batch.append_statement(self.st.register.clone());
                rows.push(Box::new((bucket(h),)));
            }
        }
    }

    /// Writes `edit` on key `k` alone, as one unlogged batch (shared writers, the backfill).
    pub(super) async fn write(&self, s: &Session, k: &[u8], edit: &Edit) -> Result<()> {
        if edit.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut rows = Vec::new();
        self.append(k, edit, &mut batch, &mut rows);
        let res = retry("writing the tombstone index", || s.batch(&batch, &rows)).await;
        if res.is_err() {
            self.failed(edit);
        }
        res.map(drop)
    }

    /// Removes the entry of `k`'s tombstone last written at `h` (its record was purged).
    pub(super) async fn remove(&self, s: &Session, k: &[u8], h: Hlc) -> Result<()> {
        retry("unindexing a tombstone", || {
            s.execute_unpaged(&self.st.remove, (bucket(h), stamp(h), k))
        })
        .await?;
        self.removed(1);
        Ok(())
    }

    /// Up to `limit` entries before `before`, oldest first, bucket by bucket.
    async fn pages(&self, s: &Session, before: Hlc, limit: usize) -> Result<Vec<BucketPage>> {
        let mut out: Vec<BucketPage> = Vec::new();
        let mut left = limit;
        if left == 0 {
            return Ok(out);
        }
        let listed = retry("listing the tombstone index's buckets", || {
            s.execute_unpaged(&self.st.buckets, (bucket(before), BUCKETS_READ))
        })
        .await?
        .into_rows_result()
        .map_err(|e| bad_rows("tomb_buckets", e))?
        .rows::<(i64,)>()
        .map_err(|e| bad_rows("tomb_buckets", e))?
        .map(|r| r.map(|(b,)| b))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_rows("tomb_buckets", e))?;
        for b in listed {
            let want = left.min(i32::MAX as usize) as i32;
            let rows = retry("reading the tombstone index", || {
                s.execute_unpaged(&self.st.page, (b, stamp(before), want))
            })
            .await?
            .into_rows_result()
            .map_err(|e| bad_rows("tombs", e))?;
            let entries = rows
                .rows::<(i64, Vec<u8>)>()
                .map_err(|e| bad_rows("tombs", e))?
                .map(|r| {
                    r.map(|(h, k)| Tombstone {
                        hlc: Hlc(h as u64),
                        key: Key(Bytes::from(k)),
                    })
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad_rows("tombs", e))?;
            left -= entries.len();
            out.push(BucketPage {
                bucket: b,
                exhausted: entries.len() < want as usize,
                entries,
            });
            if left == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` entries before `before`, oldest first.
    pub(super) async fn entries(
        &self,
        s: &Session,
        before: Hlc,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let pages = self.pages(s, before, limit).await?;
        Ok(pages.into_iter().flat_map(|p| p.entries).collect())
    }

    /// Removes a consumed page's entries: one range deletion below its last stamp, and the rows
    /// of that stamp (more entries of the same stamp may follow it); a bucket wholly before
    /// `horizon` that had nothing more leaves the list, as of `read_at` less the margin.
    async fn consumed(
        &self,
        s: &Session,
        page: &BucketPage,
        horizon: Hlc,
        read_at: i64,
    ) -> Result<()> {
        let b = page.bucket;
        if let Some(last) = page.entries.last().map(|t| t.hlc) {
            retry("removing consumed tombstone-index entries", || {
                s.execute_unpaged(&self.st.remove_below, (b, stamp(last)))
            })
            .await?;
            for t in page.entries.iter().rev().take_while(|t| t.hlc == last) {
                retry("removing consumed tombstone-index entries", || {
                    s.execute_unpaged(&self.st.remove, (b, stamp(last), t.key.as_bytes()))
                })
                .await?;
            }
            self.removed(page.entries.len() as u64);
        }
        let due = (b as u64 + 1).saturating_mul(BUCKET_MILLIS) <= horizon.millis();
        if page.exhausted && due {
            // The whole partition goes too (one partition tombstone: compaction then drops its
            // rows and range markers at once), stamped as the list's removal.
            let at = read_at - UNREGISTER_MARGIN_MICROS;
            retry("dropping an empty tombstone-index bucket", || {
                s.execute_unpaged(&self.st.drop_bucket, (at, b))
            })
            .await?;
            retry("unlisting an empty tombstone-index bucket", || {
                s.execute_unpaged(&self.st.unregister, (at, b))
            })
            .await?;
        }
        Ok(())
    }
}

/// Now as a CQL write time (microseconds since the epoch).
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl ScyllaEngine {
    /// Consumes up to `limit` entries before `horizon`, oldest first: each record is removed if
    /// it still is that tombstone, and the entries go either way.
    pub(super) async fn collect_from_index(&self, horizon: Hlc, limit: usize) -> Result<Collected> {
        let limit = limit.max(1);
        let read_at = now_micros();
        let pages = self.tombs.pages(&self.session, horizon, limit).await?;
        let mut out = Collected::default();
        for page in &pages {
            for t in &page.entries {
                out.read += 1;
                if self.consume(t).await? {
                    out.purged += 1;
                } else {
                    out.stale += 1;
                }
            }
            self.tombs
                .consumed(&self.session, page, horizon, read_at)
                .await?;
        }
        out.more = out.read >= limit as u64;
        Ok(out)
    }

    /// Removes the record of `t` if it still is that tombstone; whether it did.
    async fn consume(&self, t: &Tombstone) -> Result<bool> {
        let k = t.key.as_bytes();
        let Some(now) = self.read(k, false).await? else {
            return Ok(false);
        };
        let r = decode_record(&now)?;
        if !r.is_tombstone() || r.max_hlc() != t.hlc {
            return Ok(false);
        }
        self.purge_one(k, Some(&now), false).await
    }

    /// Indexes those of `keys` that are tombstones, re-read under each key's lock (the backfill).
    pub(super) async fn index_found(&self, keys: &[Key]) -> Result<u64> {
        let mut indexed = 0;
        for key in keys {
            super::rules::check_key(&self.limits, key)?;
            let _g = self.key_lock(key.as_bytes()).lock().await;
            if let Some(r) = self.load(key.as_bytes()).await?
                && r.is_tombstone()
            {
                let edit = Edit::of(None, &r);
                self.tombs
                    .write(&self.session, key.as_bytes(), &edit)
                    .await?;
                self.tombs.applied(&edit);
                indexed += 1;
            }
        }
        Ok(indexed)
    }
}
