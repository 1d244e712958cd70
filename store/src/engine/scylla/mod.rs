//! The ScyllaDB engine: a region's replica in a ScyllaDB (or Cassandra) cluster, behind the same
//! [`Store`] contract as the embedded engine.
//!
//! The driver is async, so this engine does not run over the sync [`super::backend::Backend`];
//! it does its own read-modify-write and takes every decision about records from
//! [`super::rules`] (the same mutate / CAS / merge code as the other engines).
//!
//! Write path, for one key: take the node's async key-stripe lock, read the stored record bytes,
//! compute the new record, and commit it with its change-feed entry and, for a new key, its
//! partition and digest-bucket index rows. With [`Writers::Single`] that is one LOGGED batch
//! (one client round trip, all or nothing). With [`Writers::Shared`] the record write is a
//! lightweight transaction conditioned on the bytes read (`IF rec = ?`, `IF NOT EXISTS`),
//! re-merged and retried when another writer got there first; an LWT cannot share a batch with
//! other partitions, so the feed and index rows are written first, in parallel. A crash between
//! the two steps leaves at most a spurious feed entry (consumers re-read the key and find no
//! change) or an index entry of an absent key (skipped), never a record the feed or
//! anti-entropy miss.
//!
//! The feed's sequence numbers are handed out locally; `last_seq` only advances over numbers
//! whose writes have finished (a watermark), so a consumer never skips past a write in flight.
//! Digests and the feed position are in-memory caches maintained by this node's writes and
//! rebuilt at open by reading the whole `kv` table (a full scan: the cost of a start is
//! proportional to the data, see ARCHITECTURE.md). With [`ScyllaOptions::keyspace_digests`] the
//! digests answered are the keyspace's instead, as the keyspace feed's holders publish them
//! ([`kdigest`]); purges then log a keyspace feed entry so the holders fold them out.
//!
//! Tombstones are indexed by their last write in tables the region's nodes share ([`tombs`]):
//! a write that stores or replaces a tombstone moves its entry in the same round trip, and the
//! reaper consumes the index a bounded page at a time, each record removed only if it still is
//! that tombstone. The full-scan `purge_tombstones` remains as a fallback, a page at a time.

mod backfill;
mod broadcast;
mod cql;
mod kdigest;
mod kfeed;
mod layout;
mod lease;
mod options;
mod scan;
mod schema;
mod tombs;

pub use backfill::BackfillProgress;
pub use broadcast::{KeyspaceTail, MAX_LAG, TailPoll};
pub use kfeed::{DEFAULT_PARTITIONS, partition_of};
pub use lease::{FeedStats, KeyspaceChange, KeyspaceFeed, LeaseConfig, PartBatch};
pub use options::{Consistency, Replication, ScyllaOptions, Writers};

use super::rules::{self, Stamper, Written};
use crate::codec::{decode_record, encode_record};
use crate::contract::{
    ApplyReport, CasOutcome, Change, Delta, Limits, Mutation, Origin, ScanPage, ScanRequest, Store,
};
use crate::digest::{DigestTree, Digests, LEAVES, bucket_of, entry_hash};
use crate::error::{Result, StoreError};
use crate::hlc::{Hlc, HlcClock};
use crate::key::Key;
use crate::node::NodeId;
use crate::record::{Record, Versioned};
use crate::tombstones::{Collected, Tombstone, TombstoneIndex};
use crate::version::VersionVector;
use async_trait::async_trait;
use bytes::Bytes;
use cql::{Statements, bad_rows, retry};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::PagingState;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency as CqlConsistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::{Mutex as AsyncMutex, watch};

const KEY_STRIPES: usize = 1024;
/// Change-feed entries per `changes` partition.
const CHUNK_BITS: u32 = 16;
/// Conditional-write conflicts on one key before giving up (other writers keep winning).
const MAX_CONFLICTS: usize = 32;

/// Connects to the cluster, creates or migrates the schema, and opens the store for `node`.
/// An unreachable cluster or a refused schema is one error naming the cluster.
pub async fn open_scylla(
    node: NodeId,
    clock: Arc<HlcClock>,
    opts: &ScyllaOptions,
) -> Result<Arc<dyn Store>> {
    let session = Arc::new(connect(opts).await?);
    schema::migrate(&session, &opts.keyspace, &opts.replication.cql()).await?;
    let parts = kfeed::agree_partitions(&session, &opts.keyspace, opts.feed_partitions).await?;
    let st = Statements::prepare(&session, &opts.keyspace).await?;
    let tombs = tombs::TombIndex::open(&session, &opts.keyspace).await?;
    let mut engine = ScyllaEngine::start(session, st, tombs, node, clock, opts, parts).await?;
    if opts.keyspace_digests {
        let dst =
            Arc::new(kdigest::DigestStatements::prepare(&engine.session, &opts.keyspace).await?);
        let covered = kdigest::covered(&engine.session, &dst).await?;
        if !covered {
            tracing::warn!(
                keyspace = %opts.keyspace,
                "the keyspace held records before its digest tables existed: this node's \
                 digests describe its own writes until the keyspace feed's backfill completes"
            );
        }
        let kd = Arc::new(kdigest::KeyspaceDigests::new(covered));
        kd.refresh(&engine.session, &dst).await?;
        kdigest::spawn_refresher(engine.session.clone(), dst, Arc::downgrade(&kd));
        engine.kdigests = Some(kd);
    }
    // Everything this node id logged before (a previous process, now gone) is finished.
    kfeed::publish(
        &engine.session,
        &engine.st.kfeed_mark,
        engine.node_i64,
        engine.feed.watermark(),
    )
    .await?;
    kfeed::spawn_marker(
        engine.session.clone(),
        engine.st.kfeed_mark.clone(),
        engine.node_i64,
        engine.feed.tx.subscribe(),
        opts.feed_mark_interval,
    );
    Ok(Arc::new(engine))
}

/// A driver session for `opts`: token-aware routing (the driver's default policy), the
/// configured consistency, `LOCAL_SERIAL` for lightweight transactions.
pub(crate) async fn connect(opts: &ScyllaOptions) -> Result<Session> {
    let consistency = match opts.consistency {
        Consistency::One => CqlConsistency::One,
        Consistency::LocalOne => CqlConsistency::LocalOne,
        Consistency::LocalQuorum => CqlConsistency::LocalQuorum,
        Consistency::Quorum => CqlConsistency::Quorum,
        Consistency::All => CqlConsistency::All,
    };
    let profile = ExecutionProfile::builder()
        .consistency(consistency)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(opts.request_timeout))
        .build();
    let mut b = SessionBuilder::new()
        .known_nodes(&opts.nodes)
        .connection_timeout(opts.connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if opts.writers == Writers::Single {
        b = b.timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()));
    }
    let nodes = opts.nodes.join(",");
    match tokio::time::timeout(opts.connect_timeout, b.build()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(StoreError::Cluster(format!(
            "cannot connect to the ScyllaDB cluster at {nodes}: {e}"
        ))),
        Err(_) => Err(StoreError::Cluster(format!(
            "the ScyllaDB cluster at {nodes} did not answer within {:?}",
            opts.connect_timeout
        ))),
    }
}

/// The change feed's local sequence numbers and their watermark.
#[derive(Debug)]
struct Feed {
    state: parking_lot::Mutex<FeedState>,
    tx: watch::Sender<u64>,
}

#[derive(Debug)]
struct FeedState {
    /// The last number handed out.
    issued: u64,
    /// Numbers handed out whose writes have not finished.
    pending: BTreeSet<u64>,
    /// Entries up to here were trimmed.
    trimmed: u64,
}

impl Feed {
    fn begin(&self) -> u64 {
        let mut s = self.state.lock();
        s.issued += 1;
        let seq = s.issued;
        s.pending.insert(seq);
        seq
    }

    /// Marks `seq` finished (written, or abandoned: a hole consumers skip) and moves the
    /// watermark to just below the oldest write still in flight.
    fn finish(&self, seq: u64) {
        let mut s = self.state.lock();
        s.pending.remove(&seq);
        let mark = s.pending.first().map_or(s.issued, |p| p - 1);
        if mark > *self.tx.borrow() {
            self.tx.send_replace(mark);
        }
    }

    fn watermark(&self) -> u64 {
        *self.tx.borrow()
    }
}

/// The outcome of writing one record.
enum Committed {
    Applied,
    /// Another writer changed the record since it was read: here is what is stored now.
    Conflict(Option<Bytes>),
}

/// The engine. Cheap to share as `Arc<dyn Store>`.
pub(crate) struct ScyllaEngine {
    session: Arc<Session>,
    st: Statements,
    node: NodeId,
    node_i64: i64,
    clock: Arc<HlcClock>,
    stamper: Stamper,
    limits: Limits,
    writers: Writers,
    /// Serialize this node's writes per key. Async mutexes: held across the cluster round trips
    /// of one read-modify-write (a std lock must never be held across an `.await`).
    key_locks: Box<[AsyncMutex<()>]>,
    feed: Feed,
    digests: Digests,
    /// The keyspace's digests, read from what the keyspace feed's holders publish
    /// ([`ScyllaOptions::keyspace_digests`]); `None`: `digests` (this node's writes).
    kdigests: Option<Arc<kdigest::KeyspaceDigests>>,
    keyspace: String,
    /// Partitions of the keyspace-wide feed (fixed per keyspace).
    kparts: u32,
    /// Whether writes enter the keyspace-wide feed (off only to measure its cost).
    keyspace_feed: bool,
    /// The tombstone index ([`tombs`]).
    tombs: tombs::TombIndex,
}

impl std::fmt::Debug for ScyllaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaEngine")
            .field("node", &self.node)
            .field("keyspace", &self.keyspace)
            .field("writers", &self.writers)
            .field("last_seq", &self.feed.watermark())
            .finish_non_exhaustive()
    }
}

/// The `origin` column of a `changes` or `kfeed` row: 0 accepted by the writer, 1 merged.
fn origin_code(o: Origin) -> i8 {
    match o {
        Origin::Local => 0,
        Origin::Remote => 1,
    }
}

/// The origin an `origin` column holds ([`origin_code`]'s inverse; any code but 0 is a merge).
fn origin_of_code(code: i8) -> Origin {
    if code == 0 {
        Origin::Local
    } else {
        Origin::Remote
    }
}

/// The rows of the `kv` table, `(key, encoded record)`, a page at a time (each page read again
/// on a transient failure): a walk holds one page, whatever the keyspace holds.
struct Records<'a> {
    session: &'a Session,
    st: &'a Statements,
    /// Where the next page starts; `None` past the last.
    paging: Option<PagingState>,
}

impl<'a> Records<'a> {
    fn new(session: &'a Session, st: &'a Statements) -> Self {
        Records {
            session,
            st,
            paging: Some(PagingState::start()),
        }
    }

    /// The next page, or `None` past the last.
    async fn next(&mut self) -> Result<Option<Vec<(Vec<u8>, Vec<u8>)>>> {
        let Some(paging) = self.paging.take() else {
            return Ok(None);
        };
        let (res, next) = retry("reading every record", || {
            self.session
                .execute_single_page(&self.st.all_records, (), paging.clone())
        })
        .await?;
        let page = res
            .into_rows_result()
            .map_err(|e| bad_rows("kv", e))?
            .rows::<(Vec<u8>, Vec<u8>)>()
            .map_err(|e| bad_rows("kv", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad_rows("kv", e))?;
        self.paging = match next.into_paging_control_flow() {
            ControlFlow::Break(()) => None,
            ControlFlow::Continue(p) => Some(p),
        };
        Ok(Some(page))
    }
}

fn blob(v: Option<CqlValue>) -> Option<Bytes> {
    match v {
        Some(CqlValue::Blob(b)) => Some(Bytes::from(b)),
        _ => None,
    }
}

/// `[applied]` and the current `rec` of a lightweight transaction's answer.
fn lwt_outcome(res: QueryResult) -> Result<(bool, Option<Bytes>)> {
    let rows = res
        .into_rows_result()
        .map_err(|e| bad_rows("conditional write", e))?;
    let specs: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let row: Row = rows
        .first_row()
        .map_err(|e| bad_rows("conditional write", e))?;
    let mut applied = false;
    let mut rec = None;
    for (name, v) in specs.iter().zip(row.columns) {
        match (name.as_str(), v) {
            ("[applied]", Some(CqlValue::Boolean(b))) => applied = b,
            ("rec", v) => rec = blob(v),
            _ => {}
        }
    }
    Ok((applied, rec))
}

/// Whether a lightweight transaction applied.
pub(super) fn lwt_applied(res: QueryResult) -> Result<bool> {
    let rows = res
        .into_rows_result()
        .map_err(|e| bad_rows("conditional write", e))?;
    let at = rows
        .column_specs()
        .iter()
        .position(|c| c.name() == "[applied]");
    let row: Row = rows
        .first_row()
        .map_err(|e| bad_rows("conditional write", e))?;
    Ok(matches!(
        at.and_then(|i| row.columns.into_iter().nth(i)),
        Some(Some(CqlValue::Boolean(true)))
    ))
}

impl ScyllaEngine {
    async fn start(
        session: Arc<Session>,
        st: Statements,
        tombs: tombs::TombIndex,
        node: NodeId,
        clock: Arc<HlcClock>,
        opts: &ScyllaOptions,
        kparts: u32,
    ) -> Result<Self> {
        let node_i64 = node.0 as i64;
        let trimmed = session
            .execute_unpaged(&st.get_trimmed, (node_i64,))
            .await
            .map_err(|e| StoreError::Cluster(format!("reading the feed position: {e}")))?
            .into_rows_result()
            .map_err(|e| bad_rows("feed_meta", e))?
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| bad_rows("feed_meta", e))?
            .and_then(|(t,)| t)
            .unwrap_or(0) as u64;
        // The last sequence number: the newest entry of the newest non-empty chunk.
        let mut last = trimmed;
        let mut chunk = (trimmed + 1) >> CHUNK_BITS;
        loop {
            let top = session
                .execute_unpaged(&st.last_in_chunk, (node_i64, chunk as i64))
                .await
                .map_err(|e| StoreError::Cluster(format!("reading the change feed: {e}")))?
                .into_rows_result()
                .map_err(|e| bad_rows("changes", e))?
                .maybe_first_row::<(i64,)>()
                .map_err(|e| bad_rows("changes", e))?;
            match top {
                Some((s,)) => {
                    last = last.max(s as u64);
                    chunk += 1;
                }
                None => break,
            }
        }
        // Rebuild the digests from the stored records, and catch up the clock with them.
        let digests = Digests::new();
        let mut max_seen = Hlc::ZERO;
        let mut records = Records::new(&session, &st);
        while let Some(page) = records.next().await? {
            for (k, v) in page {
                if k.first() != Some(&crate::key::LOCAL_PREFIX) {
                    digests.toggle(&k, entry_hash(&k, &v));
                }
                max_seen = max_seen.max(decode_record(&v)?.max_hlc());
            }
        }
        clock.observe(max_seen);
        let (tx, _) = watch::channel(last);
        Ok(ScyllaEngine {
            session,
            st,
            node,
            node_i64,
            stamper: Stamper {
                node,
                clock: clock.clone(),
            },
            clock,
            limits: opts.limits,
            writers: opts.writers,
            key_locks: (0..KEY_STRIPES).map(|_| AsyncMutex::new(())).collect(),
            feed: Feed {
                state: parking_lot::Mutex::new(FeedState {
                    issued: last,
                    pending: BTreeSet::new(),
                    trimmed,
                }),
                tx,
            },
            digests,
            kdigests: None,
            keyspace: opts.keyspace.clone(),
            kparts,
            keyspace_feed: opts.keyspace_feed,
            tombs,
        })
    }

    fn key_lock(&self, key: &[u8]) -> &AsyncMutex<()> {
        let stripe = (xxhash_rust::xxh3::xxh3_64(key) % KEY_STRIPES as u64) as usize;
        &self.key_locks[stripe]
    }

    /// The stored bytes of a key; `serial`: a linearizable (Paxos) read.
    async fn read(&self, key: &[u8], serial: bool) -> Result<Option<Bytes>> {
        let part = layout::partition(key);
        let st = if serial {
            &self.st.get_serial
        } else {
            &self.st.get
        };
        let res = retry("reading a record", || {
            self.session.execute_unpaged(st, (part, key))
        })
        .await?;
        let row = res
            .into_rows_result()
            .map_err(|e| bad_rows("kv", e))?
            .maybe_first_row::<(Option<Vec<u8>>,)>()
            .map_err(|e| bad_rows("kv", e))?;
        Ok(row.and_then(|(r,)| r).map(Bytes::from))
    }

    async fn load(&self, key: &[u8]) -> Result<Option<Record>> {
        self.read(key, false)
            .await?
            .map(|b| decode_record(&b))
            .transpose()
    }

    /// Read-modify-write of one key. `f` returns the new record, or `None` to change nothing;
    /// it runs again on the fresh record when another writer wins a conditional write.
    async fn write_with(
        &self,
        key: &Key,
        origin: Origin,
        serial_read: bool,
        mut f: impl FnMut(Option<&Record>) -> Result<Option<Record>>,
    ) -> Result<Written> {
        let _key_guard = self.key_lock(key.as_bytes()).lock().await;
        let serial = serial_read && self.writers == Writers::Shared;
        let mut old_bytes = self.read(key.as_bytes(), serial).await?;
        for _ in 0..MAX_CONFLICTS {
            let old = old_bytes.as_deref().map(decode_record).transpose()?;
            let Some(new) = f(old.as_ref())? else {
                return Ok(Written { old, new: None });
            };
            let new_bytes = encode_record(&new)?;
            let edit = tombs::Edit::of(old.as_ref(), &new);
            let seq = (!key.is_local()).then(|| self.feed.begin());
            let done = self
                .commit(key, seq, origin, old_bytes.as_ref(), &new_bytes, &edit)
                .await;
            if let Some(seq) = seq {
                self.feed.finish(seq);
            }
            if done.is_err() {
                self.tombs.failed(&edit);
            }
            match done? {
                Committed::Applied => {
                    self.tombs.applied(&edit);
                    if !key.is_local() {
                        if let Some(o) = &old_bytes {
                            self.digests
                                .toggle(key.as_bytes(), entry_hash(key.as_bytes(), o));
                        }
                        self.digests
                            .toggle(key.as_bytes(), entry_hash(key.as_bytes(), &new_bytes));
                    }
                    return Ok(Written {
                        old,
                        new: Some(new),
                    });
                }
                Committed::Conflict(current) => old_bytes = current,
            }
        }
        Err(StoreError::Cluster(format!(
            "{MAX_CONFLICTS} conflicting writes in a row on {key:?}"
        )))
    }

    /// Single writer: the record, its feed entry, (new key) index rows and (a tombstone written or
    /// replaced) its tombstone-index rows in one LOGGED batch —
    /// one client round trip, all or nothing (the batch log replays a half-applied batch).
    async fn commit_batch(
        &self,
        key: &Key,
        seq: Option<u64>,
        origin: Origin,
        new_key: bool,
        new: &Bytes,
        edit: &tombs::Edit,
    ) -> Result<Committed> {
        if !edit.is_empty() {
            // A write that moves a tombstone-index entry: the same LOGGED batch, built for this
            // write, with the entry's rows ([`tombs::TombIndex::append`]) after the record's.
            let k = key.as_bytes();
            let part = layout::partition(k);
            let st = &self.st;
            let mut parts: Vec<(&PreparedStatement, tombs::Row<'_>)> = Vec::with_capacity(5);
            parts.push((&st.put, Box::new((part, k, new))));
            if let Some(seq) = seq {
                let origin = origin_code(origin);
                let chunk = (seq >> CHUNK_BITS) as i64;
                let log = (self.node_i64, chunk, seq as i64, k, origin);
                parts.push((&st.log, Box::new(log)));
                if self.keyspace_feed {
                    let klog = kfeed::entry(k, self.kparts, self.node_i64, seq, origin);
                    parts.push((&st.kfeed_log, Box::new(klog)));
                }
            }
            if new_key {
                parts.push((&st.add_part, Box::new((layout::namespace(k), part))));
                if seq.is_some() {
                    parts.push((&st.add_bucket, Box::new((bucket_of(k) as i32, k))));
                }
            }
            let mut batch = Batch::new(BatchType::Logged);
            let mut rows = Vec::with_capacity(parts.len() + 3);
            for (stmt, row) in parts {
                batch.append_statement(stmt.clone());
                rows.push(row);
            }
            self.tombs.append(k, edit, &mut batch, &mut rows);
            retry("writing a record", || self.session.batch(&batch, &rows)).await?;
            return Ok(Committed::Applied);
        }
        let k = key.as_bytes();
        let part = layout::partition(k);
        let ns = layout::namespace(k);
        let rec = (part, k, new);
        let st = &self.st;
        let s = &self.session;
        let what = "writing a record";
        match seq {
            Some(seq) => {
                let log = (
                    self.node_i64,
                    (seq >> CHUNK_BITS) as i64,
                    seq as i64,
                    k,
                    origin_code(origin),
                );
                let klog = kfeed::entry(k, self.kparts, self.node_i64, seq, origin_code(origin));
                let bucket = (bucket_of(k) as i32, k);
                match (new_key, self.keyspace_feed) {
                    (true, true) => {
                        let v = (rec, log, klog, (ns, part), bucket);
                        retry(what, || s.batch(&st.batch_new, v)).await?;
                    }
                    (true, false) => {
                        let v = (rec, log, (ns, part), bucket);
                        retry(what, || s.batch(&st.batch_new_nokf, v)).await?;
                    }
                    (false, true) => {
                        retry(what, || s.batch(&st.batch_logged, (rec, log, klog))).await?;
                    }
                    (false, false) => {
                        retry(what, || s.batch(&st.batch_logged_nokf, (rec, log))).await?;
                    }
                }
            }
            None if new_key => {
                retry(what, || s.batch(&st.batch_local_new, (rec, (ns, part)))).await?;
            }
            None => {
                retry(what, || s.execute_unpaged(&st.put, rec)).await?;
            }
        }
        Ok(Committed::Applied)
    }

    /// Writes the record; shared writers: the feed entry and index rows first, then the record
    /// by a lightweight transaction (which cannot share a batch with other partitions).
    async fn commit(
        &self,
        key: &Key,
        seq: Option<u64>,
        origin: Origin,
        old: Option<&Bytes>,
        new: &Bytes,
        edit: &tombs::Edit,
    ) -> Result<Committed> {
        if self.writers == Writers::Single {
            return self
                .commit_batch(key, seq, origin, old.is_none(), new, edit)
                .await;
        }
        let k = key.as_bytes();
        let part = layout::partition(k);
        let log = async {
            let Some(seq) = seq else { return Ok(()) };
            let origin = origin_code(origin);
            let chunk = (seq >> CHUNK_BITS) as i64;
            let klog = kfeed::entry(k, self.kparts, self.node_i64, seq, origin);
            let (mine, keyspace) = tokio::join!(
                retry("writing the change feed", || {
                    self.session.execute_unpaged(
                        &self.st.log,
                        (self.node_i64, chunk, seq as i64, k, origin),
                    )
                }),
                async {
                    if !self.keyspace_feed {
                        return Ok(());
                    }
                    retry("writing the keyspace feed", || {
                        self.session.execute_unpaged(&self.st.kfeed_log, klog)
                    })
                    .await
                    .map(drop)
                }
            );
            mine?;
            keyspace
        };
        let index = async {
            if old.is_some() {
                return Ok(());
            }
            let ns = layout::namespace(k);
            retry("indexing a partition", || {
                self.session.execute_unpaged(&self.st.add_part, (ns, part))
            })
            .await?;
            if !key.is_local() {
                let bucket = bucket_of(k) as i32;
                retry("indexing a digest bucket", || {
                    self.session
                        .execute_unpaged(&self.st.add_bucket, (bucket, k))
                })
                .await?;
            }
            Ok::<_, StoreError>(())
        };
        let tomb = self.tombs.write(&self.session, k, edit);
        let (a, b, c) = tokio::join!(log, index, tomb);
        a?;
        b?;
        c?;
        let res = match old {
            None => {
                retry("writing a record", || {
                    self.session
                        .execute_unpaged(&self.st.insert_if_absent, (part, k, new))
                })
                .await?
            }
            Some(old) => {
                retry("writing a record", || {
                    self.session
                        .execute_unpaged(&self.st.update_if, (new, part, k, old))
                })
                .await?
            }
        };
        Self::conditional(res, new)
    }

    fn conditional(res: QueryResult, new: &Bytes) -> Result<Committed> {
        let (applied, current) = lwt_outcome(res)?;
        // A retried write whose first attempt timed out but applied finds its own bytes.
        if applied || current.as_ref() == Some(new) {
            Ok(Committed::Applied)
        } else {
            Ok(Committed::Conflict(current))
        }
    }

    /// Removes one record if it is (still) a tombstone — and, with `seen`, still those bytes;
    /// with `unindex`, its tombstone-index entry too (a consumer of the index removes a page's
    /// entries together instead).
    async fn purge_one(&self, k: &[u8], seen: Option<&Bytes>, unindex: bool) -> Result<bool> {
        let _g = self.key_lock(k).lock().await;
        let Some(now) = self.read(k, false).await? else {
            return Ok(false);
        };
        let last = decode_record(&now)?;
        if seen.is_some_and(|s| *s != now) || !last.is_tombstone() {
            return Ok(false);
        }
        // The keyspace feed names the purged key, so the holder of its partition folds it out of
        // the keyspace's digests (written first: a crash leaves a spurious entry, never a purge
        // no entry names). A number with no `changes` row: a hole in this node's own feed.
        let replicated = k.first() != Some(&crate::key::LOCAL_PREFIX);
        let seq = (replicated && self.keyspace_feed).then(|| self.feed.begin());
        let done = self.purge_written(k, &now, seq).await;
        if let Some(seq) = seq {
            self.feed.finish(seq);
        }
        if !done? {
            return Ok(false);
        }
        if replicated {
            let bucket = bucket_of(k) as i32;
            retry("unindexing a digest bucket", || {
                self.session
                    .execute_unpaged(&self.st.del_bucket, (bucket, k))
            })
            .await?;
            self.digests.toggle(k, entry_hash(k, &now));
        }
        if unindex {
            self.tombs.remove(&self.session, k, last.max_hlc()).await?;
        }
        Ok(true)
    }

    /// The delete of a purge (after its keyspace feed entry, numbered `seq`): whether it applied.
    async fn purge_written(&self, k: &[u8], now: &Bytes, seq: Option<u64>) -> Result<bool> {
        if let Some(seq) = seq {
            let klog = kfeed::entry(
                k,
                self.kparts,
                self.node_i64,
                seq,
                origin_code(Origin::Local),
            );
            retry("writing the keyspace feed", || {
                self.session.execute_unpaged(&self.st.kfeed_log, klog)
            })
            .await?;
        }
        let part = layout::partition(k);
        match self.writers {
            Writers::Single => {
                retry("purging a record", || {
                    self.session.execute_unpaged(&self.st.delete, (part, k))
                })
                .await?;
            }
            Writers::Shared => {
                let res = retry("purging a record", || {
                    self.session
                        .execute_unpaged(&self.st.delete_if, (part, k, now))
                })
                .await?;
                let (applied, current) = lwt_outcome(res)?;
                if !applied && current.is_some() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl Store for ScyllaEngine {
    fn node(&self) -> NodeId {
        self.node
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    async fn get(&self, key: &Key) -> Result<Option<Versioned<Bytes>>> {
        rules::check_key(&self.limits, key)?;
        rules::visible(self.load(key.as_bytes()).await?)
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        rules::check_key(&self.limits, key)?;
        self.load(key.as_bytes()).await
    }

    async fn mutate(
        &self,
        key: &Key,
        mutation: Mutation,
        ctx: Option<&VersionVector>,
    ) -> Result<Record> {
        rules::check_mutation(&self.limits, key, &mutation)?;
        let w = self
            .write_with(key, Origin::Local, false, |old| {
                self.stamper.mutated(old, mutation.clone(), ctx).map(Some)
            })
            .await?;
        w.mutated()
    }

    async fn cas(
        &self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome> {
        rules::check_cas(&self.limits, key, new.as_ref())?;
        let w = self
            .write_with(key, Origin::Local, true, |old| {
                self.stamper.swapped(old, expected, new.clone())
            })
            .await?;
        Ok(w.cas_outcome())
    }

    async fn scan(&self, req: &ScanRequest) -> Result<ScanPage> {
        rules::check_scan(&self.limits, req)?;
        scan::scan(self, req).await
    }

    async fn apply(&self, deltas: &[Delta]) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        for d in deltas {
            if !rules::admit_remote(&self.limits, d, &mut report) {
                continue;
            }
            self.clock.observe(d.record.max_hlc());
            let res = self
                .write_with(&d.key, Origin::Remote, false, |old| {
                    rules::merged(old, &d.record)
                })
                .await;
            rules::count_merge(d, res.map(|w| w.new.is_some()), &mut report)?;
        }
        Ok(report)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let mark = self.feed.watermark();
        let trimmed = self.feed.state.lock().trimmed;
        let after = after.max(trimmed);
        let mut out = Vec::new();
        if after >= mark || limit == 0 {
            return Ok(out);
        }
        let mut chunk = (after + 1) >> CHUNK_BITS;
        while out.len() < limit && chunk <= mark >> CHUNK_BITS {
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let res = retry("reading the change feed", || {
                self.session.execute_unpaged(
                    &self.st.changes,
                    (self.node_i64, chunk as i64, after as i64, mark as i64, want),
                )
            })
            .await?;
            let rows = res.into_rows_result().map_err(|e| bad_rows("changes", e))?;
            for row in rows
                .rows::<(i64, Vec<u8>, i8)>()
                .map_err(|e| bad_rows("changes", e))?
            {
                let (seq, k, origin) = row.map_err(|e| bad_rows("changes", e))?;
                out.push(Change {
                    seq: seq as u64,
                    key: Key(Bytes::from(k)),
                    origin: origin_of_code(origin),
                });
            }
            chunk += 1;
        }
        Ok(out)
    }

    fn last_seq(&self) -> u64 {
        self.feed.watermark()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.feed.tx.subscribe()
    }

    async fn trim_changes(&self, upto: u64) -> Result<()> {
        let upto = upto.min(self.feed.watermark());
        let from = self.feed.state.lock().trimmed;
        if upto <= from {
            return Ok(());
        }
        let (first, last) = ((from + 1) >> CHUNK_BITS, upto >> CHUNK_BITS);
        for chunk in first..=last {
            let chunk_end = ((chunk + 1) << CHUNK_BITS) - 1;
            if chunk_end <= upto {
                retry("trimming the change feed", || {
                    self.session
                        .execute_unpaged(&self.st.trim_chunk, (self.node_i64, chunk as i64))
                })
                .await?;
            } else {
                retry("trimming the change feed", || {
                    self.session.execute_unpaged(
                        &self.st.trim_range,
                        (self.node_i64, chunk as i64, upto as i64),
                    )
                })
                .await?;
            }
        }
        retry("recording the feed trim point", || {
            self.session
                .execute_unpaged(&self.st.set_trimmed, (self.node_i64, upto as i64))
        })
        .await?;
        let mut s = self.feed.state.lock();
        s.trimmed = s.trimmed.max(upto);
        Ok(())
    }

    fn digests(&self) -> DigestTree {
        match self.kdigests.as_ref().and_then(|k| k.tree()) {
            Some(t) => t,
            None => self.digests.snapshot(),
        }
    }

    async fn bucket(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<(Vec<Delta>, Option<Key>)> {
        if bucket as usize >= LEAVES {
            return Err(StoreError::InvalidArgument("bucket out of range"));
        }
        let want = limit.clamp(1, 10_000) as i32;
        let b = bucket as i32;
        let res = match after {
            Some(a) => {
                retry("reading a digest bucket", || {
                    self.session
                        .execute_unpaged(&self.st.bucket_after, (b, a.as_bytes(), want))
                })
                .await?
            }
            None => {
                retry("reading a digest bucket", || {
                    self.session
                        .execute_unpaged(&self.st.bucket_first, (b, want))
                })
                .await?
            }
        };
        let keys: Vec<Key> = res
            .into_rows_result()
            .map_err(|e| bad_rows("kv_buckets", e))?
            .rows::<(Vec<u8>,)>()
            .map_err(|e| bad_rows("kv_buckets", e))?
            .map(|r| r.map(|(k,)| Key(Bytes::from(k))))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad_rows("kv_buckets", e))?;
        let full = keys.len() == want as usize;
        let mut out = Vec::with_capacity(keys.len());
        for key in &keys {
            if let Some(record) = self.load(key.as_bytes()).await? {
                out.push(Delta {
                    key: key.clone(),
                    record,
                });
            }
        }
        let next = if full { keys.last().cloned() } else { None };
        Ok((out, next))
    }

    /// The full scan: the backfill's fallback, and a store's before its index. It purges page by
    /// page, holding one page of doomed records at a time.
    async fn purge_tombstones(&self, horizon: Hlc) -> Result<u64> {
        let mut purged = 0;
        let mut records = Records::new(&self.session, &self.st);
        while let Some(page) = records.next().await? {
            for (k, v) in page {
                let r = decode_record(&v)?;
                if r.is_tombstone() && r.max_hlc() < horizon {
                    let v = Bytes::from(v);
                    purged += u64::from(self.purge_one(&k, Some(&v), true).await?);
                }
            }
        }
        Ok(purged)
    }

    async fn purge(&self, keys: &[Key], horizon: Hlc) -> Result<(u64, Vec<Key>)> {
        let mut purged = 0;
        let mut young = Vec::new();
        for k in keys {
            rules::check_key(&self.limits, k)?;
            match self.load(k.as_bytes()).await? {
                Some(r) if r.is_tombstone() && r.max_hlc() < horizon => {
                    purged += u64::from(self.purge_one(k.as_bytes(), None, true).await?);
                }
                Some(r) if r.is_tombstone() => young.push(k.clone()),
                _ => {}
            }
        }
        Ok((purged, young))
    }

    fn tombstone_index(&self) -> TombstoneIndex {
        if self.tombs.complete() {
            TombstoneIndex::Complete
        } else {
            TombstoneIndex::Partial
        }
    }

    fn tombstone_index_len(&self) -> Option<u64> {
        Some(self.tombs.estimate())
    }

    async fn tombstones(&self, before: Hlc, limit: usize) -> Result<Vec<Tombstone>> {
        // The reaper asks after each pass: a backfill another node finished shows here.
        self.tombs.refresh(&self.session).await?;
        self.tombs.entries(&self.session, before, limit).await
    }

    async fn collect_indexed(&self, horizon: Hlc, limit: usize) -> Result<Option<Collected>> {
        self.collect_from_index(horizon, limit).await.map(Some)
    }

    async fn index_tombstones(&self, keys: &[Key]) -> Result<u64> {
        self.index_found(keys).await
    }

    async fn tombstones_indexed(&self) -> Result<()> {
        self.tombs.set_complete(&self.session).await
    }

    async fn flush(&self) -> Result<()> {
        // Every acknowledged write is already held by the replicas its consistency level asked
        // for; durability on their disks is ScyllaDB's commit log.
        Ok(())
    }
}
