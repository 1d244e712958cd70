//! The keyspace-wide change feed, consumer side: the region's nodes split the feed's P
//! partitions with leases and read each partition they hold from a durable, fenced cursor.
//!
//! - **Members.** Each consumer beats in `kfeed_members` (a row with a TTL); the live members are
//!   the rows present. Each partition's preferred holder is the live member that wins rendezvous
//!   hashing for it, so every member computes the same split from the same member list, and a
//!   joining or dying member moves only its share.
//! - **Leases.** A partition's row in `kfeed_leases` holds its owner, an epoch and an expiry
//!   (milliseconds, the holder's clock). A lease is claimed by a lightweight transaction on the
//!   epoch it read (`INSERT … IF NOT EXISTS` with epoch 1, or `UPDATE … SET epoch = e + 1 … IF
//!   epoch = e` once expired), renewed with `IF owner = ? AND epoch = ?`, and released early
//!   (expiry 0) when a live member is preferred for it. Epochs only grow: the row is never
//!   deleted.
//! - **Cursors, fenced.** The same row holds the partition's cursor, one position per writer
//!   (`pos`, a map writer → sequence number). A holder moves it with `UPDATE … SET pos = ? IF
//!   owner = ? AND epoch = ?`, so a holder that lost its lease — paused past its expiry while
//!   another member claimed the partition — cannot move the cursor afterwards: its commit is
//!   refused ([`KeyspaceFeed::commit`] returns `false`) and it drops the partition.
//! - **Reading.** A partition's batch holds, for each writer of `kfeed_writers`, its entries
//!   after the cursor and at or below the writer's published mark (the writer finished every
//!   number up to it: nothing below a cursor can appear later). A writer silent for longer than
//!   [`LeaseConfig::writer_expiry`] (killed, or paused) is read past its mark too, up to 2^16
//!   numbers: those entries are delivered *tentatively* — the cursor stays at the mark, so they
//!   are delivered again if the writer comes back and moves its mark over them (its write may
//!   have finished only then), and again after a hand-over. Consumers must therefore be
//!   idempotent: an entry is delivered at least once, and read its key's current record.
//! - **Digests.** A commit first folds the batch's keys into the keyspace's digests and, on a
//!   keyspace whose digest rows cover every key, each rebalance publishes the held partitions'
//!   leaves that changed ([`super::kdigest`]). On a keyspace that held records before its
//!   digest tables, the holder of partition 0 backfills the older keys' rows
//!   ([`KeyspaceFeed::backfill_digests`], [`super::backfill`]); once that completes, every
//!   holder rescans its partitions' leaves and publishes them. [`KeyspaceFeed::check_digests`]
//!   checks a few buckets of the held partitions against the records at a time, repairing
//!   rows and leaves.

use super::backfill::{self, BackfillProgress, BackfillStatements};
use super::cql::{bad_rows, retry};
use super::kdigest::{self, DigestStatements};
use super::kfeed::{CHUNK_BITS, now_ms, partition_of};
use super::{ScyllaOptions, connect, lwt_applied};
use crate::contract::Origin;
use crate::digest::LEAVES;
use crate::error::{Result, StoreError};
use crate::key::Key;
use crate::node::NodeId;
use bytes::Bytes;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Timing of leases and liveness.
#[derive(Clone, Copy, Debug)]
pub struct LeaseConfig {
    /// How long a claimed or renewed lease lasts; call [`KeyspaceFeed::rebalance`] several
    /// times per lease.
    pub lease: Duration,
    /// How long a member row outlives its last beat (the TTL of `kfeed_members`).
    pub member_ttl: Duration,
    /// A writer whose mark has not been published for this long is read past its mark.
    pub writer_expiry: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            lease: Duration::from_secs(10),
            member_ttl: Duration::from_secs(10),
            writer_expiry: Duration::from_secs(5),
        }
    }
}

/// One entry of the keyspace feed: `writer` changed `key` at its sequence number `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceChange {
    /// The partition (key hash modulo P).
    pub part: u32,
    /// The node that wrote it.
    pub writer: NodeId,
    /// The writer's sequence number.
    pub seq: u64,
    /// The key that changed: read it for its state.
    pub key: Key,
    /// Whether the writer accepted it (an API write) or merged it from a peer (gossip).
    pub origin: Origin,
}

impl KeyspaceChange {
    /// The entry of a `kfeed` row of partition `part` and `writer`: its `seq`, key and origin
    /// column (0: accepted by the writer).
    pub(super) fn of_row(part: u32, writer: i64, seq: i64, k: Vec<u8>, origin: i8) -> Self {
        KeyspaceChange {
            part,
            writer: NodeId(writer as u64),
            seq: seq as u64,
            key: Key(Bytes::from(k)),
            origin: super::origin_of_code(origin),
        }
    }
}

impl From<KeyspaceChange> for crate::contract::Change {
    /// The entry as the consumers of a node's own feed see a change: the writer's sequence
    /// number (unique per writer only), the key and the origin.
    fn from(c: KeyspaceChange) -> Self {
        crate::contract::Change {
            seq: c.seq,
            key: c.key,
            origin: c.origin,
        }
    }
}

/// A batch of one held partition, and the cursor that committing it saves.
#[derive(Clone, Debug)]
pub struct PartBatch {
    /// The partition.
    pub part: u32,
    /// The lease epoch the batch was read under (the fencing token of its commit).
    pub epoch: u64,
    /// Entries, ordered by writer then sequence number.
    pub changes: Vec<KeyspaceChange>,
    next: BTreeMap<i64, i64>,
}

/// What a consumer holds and has done, for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Partitions held now.
    pub held: usize,
    /// Partitions claimed from another owner (a hand-over), since start.
    pub handovers: u64,
    /// Leases found lost on renewal or commit (fenced), since start.
    pub fenced: u64,
    /// Per held partition: entries between its cursor and its writers' marks at the last read.
    pub lag: BTreeMap<u32, u64>,
    /// `kfeed` chunks deleted below the cursors ([`KeyspaceFeed::trim`]), since start.
    pub trimmed: u64,
    /// Keys whose hash in the keyspace's digests this member changed, since start.
    pub digest_folded: u64,
    /// Held partitions' leaves published, since start.
    pub digest_published: u64,
    /// Held partitions' leaves recomputed by a scan (at a claim, or after a failed fold).
    pub digest_scans: u64,
    /// Whether the keyspace's digest rows cover every key (else a backfill is under way).
    pub digests_covered: bool,
    /// Keys whose digest rows this member backfilled, since start.
    pub digest_backfilled: u64,
    /// How far the keyspace's backfill has come through the token ring, in millionths, as this
    /// member last read or moved it (1 000 000 once covered).
    pub digest_backfill_ppm: u32,
    /// Digest buckets of the held partitions checked against the records
    /// ([`KeyspaceFeed::check_digests`]), since start.
    pub digest_checked_buckets: u64,
    /// Digest rows a check found not matching their record and rewrote, since start.
    pub digest_rows_repaired: u64,
    /// Held partitions' leaves a check found not matching their rows and replaced, since start.
    pub digest_leaves_repaired: u64,
}

#[derive(Debug)]
struct Held {
    epoch: i64,
    pos: BTreeMap<i64, i64>,
    /// Per expired writer: the last entry delivered past its mark.
    tentative: BTreeMap<i64, i64>,
    lag: u64,
    /// Per writer: its chunks below this one are trimmed, or were below the cursor when this
    /// member claimed the partition (left to the holder before, or to the rows' TTL).
    trimmed: BTreeMap<i64, i64>,
    /// The partition's digest leaves (the XOR of its keys' rows per bucket); `None` until a
    /// scan computed them, or after a fold whose writes may have half applied.
    leaves: Option<Vec<u64>>,
    /// The leaves changed since they were last published.
    dirty: bool,
}

/// Statements of the consumer side.
struct LeaseStatements {
    member_beat: PreparedStatement,
    members: PreparedStatement,
    writers: PreparedStatement,
    leases: PreparedStatement,
    claim_new: PreparedStatement,
    claim: PreparedStatement,
    renew: PreparedStatement,
    release: PreparedStatement,
    commit: PreparedStatement,
    cursor: PreparedStatement,
    read: PreparedStatement,
    trim: PreparedStatement,
}

/// A consumer of the keyspace-wide feed for one member (a Starling node).
pub struct KeyspaceFeed {
    session: Arc<Session>,
    st: LeaseStatements,
    member: i64,
    partitions: u32,
    cfg: LeaseConfig,
    held: parking_lot::Mutex<BTreeMap<u32, Held>>,
    handovers: AtomicU64,
    fenced: AtomicU64,
    trimmed: AtomicU64,
    /// The keyspace's digests' statements (`None`: [`KeyspaceFeed::without_digests`]).
    digest: Option<Arc<DigestStatements>>,
    /// The backfill's statements (with `digest`).
    backfill: Option<BackfillStatements>,
    /// The keyspace's digest rows cover every key: leaves are scanned and published.
    covered: AtomicBool,
    backfilled: AtomicU64,
    backfill_ppm: AtomicU32,
    /// The next digest bucket [`KeyspaceFeed::check_digests`] checks (modulo 4096).
    check_next: AtomicU32,
    checked: AtomicU64,
    rows_repaired: AtomicU64,
    leaves_repaired: AtomicU64,
    /// Digest writes made, for their write timestamps ([`kdigest::stamp`]).
    stamps: AtomicU64,
    folded: AtomicU64,
    published: AtomicU64,
    scans: AtomicU64,
}

impl std::fmt::Debug for KeyspaceFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyspaceFeed")
            .field("member", &self.member)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

/// A lease row as read: owner, epoch, expiry.
type LeaseRow = (Option<i64>, Option<i64>, Option<i64>);
/// Sequence numbers per writer.
type Positions = BTreeMap<i64, i64>;

/// Rendezvous weight of `member` for partition `part`.
fn weight(part: u32, member: i64) -> u64 {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&part.to_be_bytes());
    b[4..].copy_from_slice(&member.to_be_bytes());
    xxhash_rust::xxh3::xxh3_64(&b)
}

/// The chunks of one writer's sub-stream that lie wholly at or below its cursor `pos`, from
/// `from` on (chunk `c` holds the numbers `c << CHUNK_BITS ..= ((c + 1) << CHUNK_BITS) - 1`),
/// but the last of them: the feed keeps at least [`RETAINED`] numbers of each writer below
/// every cursor, for the nodes' broadcast readers ([`super::broadcast`]).
fn trimmable(from: i64, pos: i64) -> std::ops::Range<i64> {
    from..(((pos + 1) >> CHUNK_BITS) - 1).max(from)
}

/// Numbers of a writer's sub-stream the feed keeps below a holder's cursor, at least: a chunk.
pub(crate) const RETAINED: u64 = 1 << CHUNK_BITS;

/// The live member preferred for `part`.
fn preferred(part: u32, members: &[i64]) -> Option<i64> {
    members
        .iter()
        .copied()
        .max_by_key(|&m| (weight(part, m), m))
}

pub(super) fn rows<T>(
    res: scylla::response::query_result::QueryResult,
    what: &'static str,
) -> Result<Vec<T>>
where
    T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    res.into_rows_result()
        .map_err(|e| bad_rows(what, e))?
        .rows::<T>()
        .map_err(|e| bad_rows(what, e))?
        .collect::<std::result::Result<Vec<T>, _>>()
        .map_err(|e| bad_rows(what, e))
}

impl KeyspaceFeed {
    /// A consumer for `member` of the keyspace in `opts` (opened by the ScyllaDB engine first:
    /// the schema and the partition count come from it). Holds nothing until
    /// [`KeyspaceFeed::rebalance`].
    pub async fn open(opts: &ScyllaOptions, member: NodeId, cfg: LeaseConfig) -> Result<Self> {
        let session = Arc::new(connect(opts).await?);
        let ks = &opts.keyspace;
        let partitions = super::kfeed::agree_partitions(&session, ks, opts.feed_partitions).await?;
        let p = |cql: String| {
            let s = session.clone();
            async move {
                s.prepare(cql.clone())
                    .await
                    .map_err(|e| StoreError::Cluster(format!("preparing `{cql}`: {e}")))
            }
        };
        let t = |c: &str| c.replace("{ks}", ks);
        let st = LeaseStatements {
            member_beat: p(t(
                "INSERT INTO {ks}.kfeed_members (member, beat) VALUES (?, ?) USING TTL ?",
            ))
            .await?,
            members: p(t("SELECT member FROM {ks}.kfeed_members")).await?,
            writers: p(t("SELECT writer, mark, beat FROM {ks}.kfeed_writers")).await?,
            leases: p(t("SELECT part, owner, epoch, expires FROM {ks}.kfeed_leases")).await?,
            claim_new: p(t(
                "INSERT INTO {ks}.kfeed_leases (part, owner, epoch, expires, pos) \
                 VALUES (?, ?, 1, ?, {}) IF NOT EXISTS",
            ))
            .await?,
            claim: p(t(
                "UPDATE {ks}.kfeed_leases SET owner = ?, epoch = ?, expires = ? \
                 WHERE part = ? IF epoch = ?",
            ))
            .await?,
            renew: p(t(
                "UPDATE {ks}.kfeed_leases SET expires = ? WHERE part = ? IF owner = ? AND epoch = ?",
            ))
            .await?,
            release: p(t(
                "UPDATE {ks}.kfeed_leases SET expires = 0 WHERE part = ? IF owner = ? AND epoch = ?",
            ))
            .await?,
            commit: p(t(
                "UPDATE {ks}.kfeed_leases SET pos = ?, expires = ? \
                 WHERE part = ? IF owner = ? AND epoch = ? AND expires > 0",
            ))
            .await?,
            cursor: {
                let mut c = p(t("SELECT pos FROM {ks}.kfeed_leases WHERE part = ?")).await?;
                c.set_consistency(scylla::statement::Consistency::LocalSerial);
                c
            },
            read: p(t(
                "SELECT seq, k, origin FROM {ks}.kfeed \
                 WHERE part = ? AND writer = ? AND chunk = ? AND seq > ? AND seq <= ? LIMIT ?",
            ))
            .await?,
            trim: p(t(
                "DELETE FROM {ks}.kfeed WHERE part = ? AND writer = ? AND chunk = ?",
            ))
            .await?,
        };
        let digest = Arc::new(DigestStatements::prepare(&session, ks).await?);
        let covered = kdigest::covered(&session, &digest).await?;
        Ok(KeyspaceFeed {
            backfill: Some(BackfillStatements::prepare(&session, ks).await?),
            digest: Some(digest),
            covered: AtomicBool::new(covered),
            backfilled: AtomicU64::new(0),
            check_next: AtomicU32::new(0),
            checked: AtomicU64::new(0),
            rows_repaired: AtomicU64::new(0),
            leaves_repaired: AtomicU64::new(0),
            backfill_ppm: AtomicU32::new(if covered { 1_000_000 } else { 0 }),
            stamps: AtomicU64::new(0),
            folded: AtomicU64::new(0),
            published: AtomicU64::new(0),
            scans: AtomicU64::new(0),
            session,
            st,
            member: member.0 as i64,
            partitions,
            cfg,
            held: parking_lot::Mutex::new(BTreeMap::new()),
            handovers: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            trimmed: AtomicU64::new(0),
        })
    }

    /// The keyspace feed's partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partitions this member holds (as far as it knows: a lease lost meanwhile shows at the
    /// next renewal or commit).
    pub fn held(&self) -> Vec<u32> {
        self.held.lock().keys().copied().collect()
    }

    /// Counters and gauges for `/metrics`.
    pub fn stats(&self) -> FeedStats {
        let held = self.held.lock();
        FeedStats {
            held: held.len(),
            handovers: self.handovers.load(Ordering::Relaxed),
            fenced: self.fenced.load(Ordering::Relaxed),
            lag: held.iter().map(|(p, h)| (*p, h.lag)).collect(),
            trimmed: self.trimmed.load(Ordering::Relaxed),
            digest_folded: self.folded.load(Ordering::Relaxed),
            digest_published: self.published.load(Ordering::Relaxed),
            digest_scans: self.scans.load(Ordering::Relaxed),
            digests_covered: self.covered.load(Ordering::Acquire),
            digest_backfilled: self.backfilled.load(Ordering::Relaxed),
            digest_backfill_ppm: self.backfill_ppm.load(Ordering::Relaxed),
            digest_checked_buckets: self.checked.load(Ordering::Relaxed),
            digest_rows_repaired: self.rows_repaired.load(Ordering::Relaxed),
            digest_leaves_repaired: self.leaves_repaired.load(Ordering::Relaxed),
        }
    }

    /// Whether this member keeps the keyspace's digests (its rows cover every key).
    pub fn keeps_digests(&self) -> bool {
        self.digest.is_some() && self.covered.load(Ordering::Acquire)
    }

    /// One bounded step of the backfill of the keyspace's digest rows ([`super::backfill`]):
    /// when they do not cover every key yet and this member holds feed partition 0 (one
    /// backfiller per keyspace; the next holder resumes from the saved position), writes the
    /// rows of at most `page` records after the saved position and saves the position after
    /// them. Returns the progress; `done` once the rows cover every key (nothing to do then).
    pub async fn backfill_digests(&self, page: usize) -> Result<BackfillProgress> {
        let (Some(dst), Some(bst)) = (&self.digest, &self.backfill) else {
            return Ok(BackfillProgress::default());
        };
        if self.covered.load(Ordering::Acquire) {
            return Ok(BackfillProgress {
                done: true,
                keys: 0,
                ring_ppm: 1_000_000,
            });
        }
        let p = if self.held.lock().contains_key(&0) {
            let (p, written) =
                backfill::step(&self.session, bst, dst, self.partitions, page).await?;
            self.backfilled.fetch_add(written, Ordering::Relaxed);
            p
        } else {
            backfill::progress(&self.session, bst, false).await?
        };
        self.backfill_ppm.store(p.ring_ppm, Ordering::Relaxed);
        if p.done {
            self.now_covered();
        }
        Ok(p)
    }

    /// The keyspace's rows cover every key from now on: the held partitions' leaves are scanned
    /// (and published) at the next rebalance.
    fn now_covered(&self) {
        if !self.covered.swap(true, Ordering::AcqRel) {
            self.backfill_ppm.store(1_000_000, Ordering::Relaxed);
            for h in self.held.lock().values_mut() {
                h.leaves = None;
            }
        }
    }

    /// This consumer without the keyspace's digests: its commits fold nothing and its
    /// rebalances publish nothing. Exists to measure what they cost
    /// (`store/benches/scylla_feed.rs`): on a region's keyspace the digests of the partitions
    /// it holds would go stale.
    pub fn without_digests(mut self) -> Self {
        self.digest = None;
        self.backfill = None;
        self
    }

    fn stamp(&self, epoch: i64) -> i64 {
        kdigest::stamp(epoch, self.stamps.fetch_add(1, Ordering::Relaxed))
    }

    /// Scans the held partitions whose leaves are unknown and publishes those that changed.
    async fn digest_pass(&self) -> Result<()> {
        let Some(st) = &self.digest else {
            return Ok(());
        };
        if !self.covered.load(Ordering::Acquire) {
            // A backfill is under way (here or on another member): learn when it completes.
            if !kdigest::covered(&self.session, st).await? {
                return Ok(());
            }
            self.now_covered();
        }
        let todo: Vec<(u32, i64, bool)> = self
            .held
            .lock()
            .iter()
            .filter(|(_, h)| h.leaves.is_none() || h.dirty)
            .map(|(p, h)| (*p, h.epoch, h.leaves.is_none()))
            .collect();
        for (part, epoch, scan) in todo {
            if scan {
                let leaves = kdigest::scan_part(&self.session, st, part).await?;
                self.scans.fetch_add(1, Ordering::Relaxed);
                match self.held.lock().get_mut(&part) {
                    Some(h) if h.epoch == epoch && h.leaves.is_none() => {
                        h.leaves = Some(leaves);
                        h.dirty = true;
                    }
                    _ => continue,
                }
            }
            let leaves = match self.held.lock().get_mut(&part) {
                Some(h) if h.epoch == epoch => {
                    h.dirty = false;
                    h.leaves.clone()
                }
                _ => None,
            };
            let Some(leaves) = leaves else { continue };
            let res = kdigest::publish(&self.session, st, part, &leaves, self.stamp(epoch)).await;
            if let Err(e) = res {
                if let Some(h) = self.held.lock().get_mut(&part) {
                    h.dirty = true;
                }
                return Err(e);
            }
            self.published.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Folds `batch`'s keys into the keyspace's digests: each key's record hash replaces the
    /// one folded in for it, and the difference goes into the partition's leaves. A key whose
    /// write failed leaves the partition's leaves unknown (scanned again at the next rebalance).
    async fn fold(&self, st: &Arc<DigestStatements>, batch: &PartBatch) -> Result<()> {
        let keys: std::collections::BTreeSet<&[u8]> =
            batch.changes.iter().map(|c| c.key.as_bytes()).collect();
        let keys = keys.into_iter().map(<[u8]>::to_vec);
        self.fold_keys(st, batch.part, batch.epoch as i64, keys)
            .await
            .map(drop)
    }

    /// Folds `keys` of held partition `part` (under lease `epoch`; nothing if it is no longer
    /// held so), 32 at a time; returns how many rows changed.
    async fn fold_keys(
        &self,
        st: &Arc<DigestStatements>,
        part: u32,
        epoch: i64,
        mut keys: impl Iterator<Item = Vec<u8>>,
    ) -> Result<u64> {
        if self.held.lock().get(&part).is_none_or(|h| h.epoch != epoch) {
            return Ok(0); // the commit will be refused
        }
        let mut running = tokio::task::JoinSet::new();
        let mut failed = None;
        let mut changed = 0;
        loop {
            while running.len() < kdigest::FOLD_CONCURRENCY {
                let Some(k) = keys.next() else { break };
                running.spawn(kdigest::fold_key(
                    self.session.clone(),
                    st.clone(),
                    part,
                    k,
                    self.stamp(epoch),
                ));
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let done = done.map_err(|e| StoreError::Cluster(format!("folding a key: {e}")));
            match done.and_then(|r| r) {
                Ok(None) => {}
                Ok(Some((bucket, x))) => {
                    changed += 1;
                    self.folded.fetch_add(1, Ordering::Relaxed);
                    if let Some(h) = self.held.lock().get_mut(&part)
                        && h.epoch == epoch
                        && let Some(l) = h.leaves.as_mut()
                    {
                        l[bucket as usize] ^= x;
                        h.dirty = true;
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            None => Ok(changed),
            Some(e) => {
                if let Some(h) = self.held.lock().get_mut(&part) {
                    h.leaves = None;
                }
                Err(e)
            }
        }
    }

    /// Checks the next `buckets` of the 4096 digest buckets (in turn, from where the last call
    /// stopped) of the partitions this member holds against the records: every key of a bucket
    /// with a record, or with a row in a held partition, is folded again (its row rewritten when
    /// it does not match the record: a lost fold; a key whose feed entry is still on its way
    /// counts too), then each held partition's leaf of the bucket is compared with the XOR of
    /// its rows and replaced when it differs (published at the next rebalance). Costs per
    /// bucket one read of its keys (`kv_buckets`, about keys / 4096), one of its rows per held
    /// partition, and two point reads per held key. Nothing while the rows do not cover every
    /// key.
    pub async fn check_digests(&self, buckets: u32) -> Result<()> {
        let Some(st) = &self.digest else {
            return Ok(());
        };
        if !self.covered.load(Ordering::Acquire) {
            return Ok(());
        }
        for _ in 0..buckets.min(LEAVES as u32) {
            let held: BTreeMap<u32, i64> = self
                .held
                .lock()
                .iter()
                .filter(|(_, h)| h.leaves.is_some())
                .map(|(p, h)| (*p, h.epoch))
                .collect();
            if held.is_empty() {
                return Ok(());
            }
            let bucket = self.check_next.fetch_add(1, Ordering::Relaxed) % LEAVES as u32;
            let parts: Vec<u32> = held.keys().copied().collect();
            let mut by_part: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
            for k in kdigest::bucket_keys(&self.session, st, bucket, &parts).await? {
                let part = partition_of(&k, self.partitions);
                if held.contains_key(&part) {
                    by_part.entry(part).or_default().push(k);
                }
            }
            for (part, keys) in by_part {
                let changed = self
                    .fold_keys(st, part, held[&part], keys.into_iter())
                    .await?;
                self.rows_repaired.fetch_add(changed, Ordering::Relaxed);
            }
            for (part, epoch) in held {
                let leaf = kdigest::bucket_leaf(&self.session, st, part, bucket).await?;
                if let Some(h) = self.held.lock().get_mut(&part)
                    && h.epoch == epoch
                    && let Some(l) = h.leaves.as_mut()
                    && l[bucket as usize] != leaf
                {
                    l[bucket as usize] = leaf;
                    h.dirty = true;
                    self.leaves_repaired.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.checked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn expiry(&self) -> i64 {
        now_ms() + self.cfg.lease.as_millis() as i64
    }

    fn lost(&self, part: u32) {
        if self.held.lock().remove(&part).is_some() {
            self.fenced.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Beats, renews what this member should keep, releases what a live member is preferred
    /// for, and claims the expired or unclaimed partitions it is preferred for (or whose
    /// preferred member is not live). Call it every third of a lease or so.
    pub async fn rebalance(&self) -> Result<()> {
        let ttl = self.cfg.member_ttl.as_secs().max(1) as i32;
        retry("beating as a feed member", || {
            self.session
                .execute_unpaged(&self.st.member_beat, (self.member, now_ms(), ttl))
        })
        .await?;
        let res = retry("listing the feed members", || {
            self.session.execute_unpaged(&self.st.members, ())
        })
        .await?;
        let mut members: Vec<i64> = rows::<(i64,)>(res, "kfeed_members")?
            .into_iter()
            .map(|(m,)| m)
            .collect();
        if !members.contains(&self.member) {
            members.push(self.member);
        }
        members.sort_unstable();
        let res = retry("reading the feed leases", || {
            self.session.execute_unpaged(&self.st.leases, ())
        })
        .await?;
        let leases: HashMap<u32, LeaseRow> =
            rows::<(i32, Option<i64>, Option<i64>, Option<i64>)>(res, "kfeed_leases")?
                .into_iter()
                .map(|(p, o, e, x)| (p as u32, (o, e, x)))
                .collect();
        let now = now_ms();
        for part in 0..self.partitions {
            let want = preferred(part, &members);
            let mine = self.held.lock().get(&part).map(|h| h.epoch);
            match mine {
                Some(epoch) if want != Some(self.member) => {
                    let res = retry("releasing a feed lease", || {
                        self.session
                            .execute_unpaged(&self.st.release, (part as i32, self.member, epoch))
                    })
                    .await?;
                    self.held.lock().remove(&part);
                    if !lwt_applied(res)? {
                        self.fenced.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(epoch) => {
                    let res = retry("renewing a feed lease", || {
                        self.session.execute_unpaged(
                            &self.st.renew,
                            (self.expiry(), part as i32, self.member, epoch),
                        )
                    })
                    .await?;
                    if !lwt_applied(res)? {
                        self.lost(part);
                    }
                }
                None => {
                    let row = leases.get(&part);
                    // (claimed partitions get their digest leaves in `digest_pass`, below)
                    let (owner, epoch, expires) = row.copied().unwrap_or((None, None, None));
                    let orphaned = owner.is_none_or(|o| !members.contains(&o));
                    let expired = expires.is_none_or(|x| x < now);
                    if !(want == Some(self.member) || (orphaned && expired)) {
                        continue;
                    }
                    if row.is_some() && !expired && owner != Some(self.member) {
                        continue;
                    }
                    self.claim(part, owner, epoch).await?;
                }
            }
        }
        self.digest_pass().await
    }

    /// Claims `part`, last seen with `owner` at `epoch` (`None`: no row yet).
    async fn claim(&self, part: u32, owner: Option<i64>, epoch: Option<i64>) -> Result<()> {
        let (res, new_epoch) = match epoch {
            None => {
                let res = retry("claiming a feed lease", || {
                    self.session.execute_unpaged(
                        &self.st.claim_new,
                        (part as i32, self.member, self.expiry()),
                    )
                })
                .await?;
                (res, 1)
            }
            Some(e) => {
                let res = retry("claiming a feed lease", || {
                    self.session.execute_unpaged(
                        &self.st.claim,
                        (self.member, e + 1, self.expiry(), part as i32, e),
                    )
                })
                .await?;
                (res, e + 1)
            }
        };
        if !lwt_applied(res)? {
            return Ok(()); // another member got there first
        }
        if owner.is_some_and(|o| o != self.member) {
            self.handovers.fetch_add(1, Ordering::Relaxed);
        }
        // The cursor is read after the claim: a commit by the previous holder is refused from
        // the moment the epoch moved.
        let res = retry("reading a feed cursor", || {
            self.session
                .execute_unpaged(&self.st.cursor, (part as i32,))
        })
        .await?;
        let pos = rows::<(Option<BTreeMap<i64, i64>>,)>(res, "kfeed_leases")?
            .into_iter()
            .next()
            .and_then(|(p,)| p)
            .unwrap_or_default();
        let trimmed = pos.iter().map(|(w, s)| (*w, s >> CHUNK_BITS)).collect();
        self.held.lock().insert(
            part,
            Held {
                epoch: new_epoch,
                pos,
                tentative: BTreeMap::new(),
                lag: 0,
                trimmed,
                leaves: None,
                dirty: false,
            },
        );
        Ok(())
    }

    /// Reads up to `limit` entries of each held partition after its cursor (see the module
    /// documentation for which entries). Commit each batch once its entries are processed; a
    /// batch without entries needs no commit (its cursor moves in memory).
    pub async fn poll(&self, limit: usize) -> Result<Vec<PartBatch>> {
        let res = retry("reading the feed writers", || {
            self.session.execute_unpaged(&self.st.writers, ())
        })
        .await?;
        let now = now_ms();
        let expiry = self.cfg.writer_expiry.as_millis() as i64;
        let writers: Vec<(i64, i64, bool)> =
            rows::<(i64, Option<i64>, Option<i64>)>(res, "kfeed_writers")?
                .into_iter()
                .map(|(w, m, b)| (w, m.unwrap_or(0), b.is_some_and(|b| now - b < expiry)))
                .collect();
        let parts: Vec<(u32, i64, Positions, Positions)> = self
            .held
            .lock()
            .iter()
            .map(|(p, h)| (*p, h.epoch, h.pos.clone(), h.tentative.clone()))
            .collect();
        let mut out = Vec::with_capacity(parts.len());
        for (part, epoch, pos, mut tentative) in parts {
            let mut changes = Vec::new();
            let mut next = pos.clone();
            let mut lag = 0u64;
            for &(w, mark, alive) in &writers {
                let cursor = pos.get(&w).copied().unwrap_or(0);
                lag += mark.saturating_sub(cursor) as u64;
                let room = limit.saturating_sub(changes.len());
                if room == 0 {
                    continue;
                }
                let (from, upto) = if alive {
                    tentative.remove(&w);
                    (cursor, mark)
                } else {
                    let from = cursor.max(tentative.get(&w).copied().unwrap_or(0));
                    (from, mark.max(cursor) + (1 << CHUNK_BITS))
                };
                let got = self.read(part, w, from, upto, room).await?;
                let last = got.last().map(|c| c.seq as i64);
                let full = got.len() == room;
                changes.extend(got);
                let reached = if full { last.unwrap_or(from) } else { upto };
                if alive {
                    next.insert(w, reached.max(cursor));
                } else {
                    next.insert(w, reached.min(mark).max(cursor));
                    if let Some(l) = last {
                        tentative.insert(w, l);
                    }
                }
            }
            if let Some(h) = self.held.lock().get_mut(&part) {
                h.tentative = tentative;
                h.lag = lag;
                if changes.is_empty() && h.epoch == epoch {
                    // Nothing between the cursor and the marks: move the cursor here without a
                    // commit (a lightweight transaction), so the next poll does not read the same
                    // empty ranges again. The saved cursor lags; after a hand-over the next holder
                    // reads those empty ranges once.
                    for (w, s) in &next {
                        let p = h.pos.entry(*w).or_insert(0);
                        *p = (*p).max(*s);
                    }
                }
            }
            out.push(PartBatch {
                part,
                epoch: epoch as u64,
                changes,
                next,
            });
        }
        Ok(out)
    }

    /// `writer`'s entries of `part` in `(from, upto]`, at most `limit`.
    async fn read(
        &self,
        part: u32,
        writer: i64,
        from: i64,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<KeyspaceChange>> {
        let mut out = Vec::new();
        if upto <= from {
            return Ok(out);
        }
        let mut chunk = (from + 1) >> CHUNK_BITS;
        while out.len() < limit && chunk <= upto >> CHUNK_BITS {
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let res = retry("reading the keyspace feed", || {
                self.session.execute_unpaged(
                    &self.st.read,
                    (part as i32, writer, chunk, from, upto, want),
                )
            })
            .await?;
            for (seq, k, origin) in rows::<(i64, Vec<u8>, i8)>(res, "kfeed")? {
                out.push(KeyspaceChange::of_row(part, writer, seq, k, origin));
            }
            chunk += 1;
        }
        Ok(out)
    }

    /// Deletes the `kfeed` chunks of the held partitions that lie wholly below their cursors, but
    /// the last such chunk of each writer ([`RETAINED`], for the nodes' broadcast readers) (a
    /// partition delete each: one tombstone, whatever the chunk held), at most `budget` per call
    /// so that one call stays short; returns how many. Each holder trims from where the cursor
    /// was when it claimed the partition: chunks below that are the previous holder's to trim,
    /// or expire with the table's TTL (7 days). Nothing above a cursor is deleted, and a cursor
    /// only passes entries that were delivered (or ranges that were empty), so a hand-over
    /// loses nothing.
    pub async fn trim(&self, budget: usize) -> Result<u64> {
        let mut todo: Vec<(u32, i64, std::ops::Range<i64>)> = Vec::new();
        {
            let held = self.held.lock();
            let mut left = budget as i64;
            for (part, h) in held.iter() {
                for (w, s) in &h.pos {
                    let chunks = trimmable(h.trimmed.get(w).copied().unwrap_or(0), *s);
                    let n = (chunks.end - chunks.start).min(left);
                    if n > 0 {
                        todo.push((*part, *w, chunks.start..chunks.start + n));
                        left -= n;
                    }
                }
            }
        }
        let mut done = 0;
        for (part, w, chunks) in todo {
            for chunk in chunks {
                retry("trimming the keyspace feed", || {
                    self.session
                        .execute_unpaged(&self.st.trim, (part as i32, w, chunk))
                })
                .await?;
                done += 1;
                self.trimmed.fetch_add(1, Ordering::Relaxed);
                if let Some(h) = self.held.lock().get_mut(&part) {
                    h.trimmed.insert(w, chunk + 1);
                }
            }
        }
        Ok(done)
    }

    /// Saves `batch`'s cursor, fenced by its epoch: `Ok(false)` when this member no longer holds
    /// the partition at that epoch, or released it meanwhile (the cursor is unchanged; the
    /// partition is dropped here, and its entries will be delivered again to the next holder).
    /// A commit also renews the lease, but never a released one (`expires > 0`).
    pub async fn commit(&self, batch: &PartBatch) -> Result<bool> {
        if let Some(st) = &self.digest {
            self.fold(st, batch).await?;
        }
        let epoch = batch.epoch as i64;
        let res = retry("saving a feed cursor", || {
            self.session.execute_unpaged(
                &self.st.commit,
                (
                    &batch.next,
                    self.expiry(),
                    batch.part as i32,
                    self.member,
                    epoch,
                ),
            )
        })
        .await?;
        if lwt_applied(res)? {
            if let Some(h) = self.held.lock().get_mut(&batch.part)
                && h.epoch == epoch
            {
                for (w, s) in &batch.next {
                    let p = h.pos.entry(*w).or_insert(0);
                    *p = (*p).max(*s);
                }
            }
            Ok(true)
        } else {
            self.lost(batch.part);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunks_wholly_below_the_cursor_are_trimmable() {
        let c = 1i64 << CHUNK_BITS;
        assert_eq!(trimmable(0, 0), 0..0);
        assert_eq!(trimmable(0, c - 2), 0..0, "chunk 0 is not finished");
        assert_eq!(
            trimmable(0, c - 1),
            0..0,
            "finished, but the last one is kept"
        );
        assert_eq!(trimmable(0, 2 * c - 1), 0..1, "chunk 1 finished: 0 goes");
        assert_eq!(trimmable(0, 3 * c + 5), 0..2);
        assert_eq!(trimmable(1, 3 * c + 5), 1..2, "from where it stopped");
        assert_eq!(trimmable(5, 3 * c + 5), 5..5, "never backwards");
        // Whatever is trimmed lies at least RETAINED numbers below the cursor.
        for pos in [c - 1, 2 * c - 1, 2 * c, 3 * c + 5, 7 * c - 1] {
            let r = trimmable(0, pos);
            assert!(
                (r.end << CHUNK_BITS) - 1 <= pos - RETAINED as i64,
                "{pos}: {r:?}"
            );
        }
    }

    #[test]
    fn rendezvous_moves_only_the_share_of_a_member_that_joins() {
        let before = [1i64, 2, 3];
        let after = [1i64, 2, 3, 4];
        let mut moved = 0;
        for part in 0..256 {
            let (a, b) = (preferred(part, &before), preferred(part, &after));
            if a != b {
                assert_eq!(b, Some(4), "a partition only moves to the new member");
                moved += 1;
            }
        }
        assert!((32..=96).contains(&moved), "about a quarter moves: {moved}");
        assert_eq!(preferred(0, &[]), None);
    }
}
