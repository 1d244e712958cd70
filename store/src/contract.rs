//! The key-value contract every engine implements: [`Store`], its requests and answers.
//!
//! The trait is object-safe (`Arc<dyn Store>`), async (the ScyllaDB engine talks to a network),
//! and small: typed conveniences live in [`StoreExt`], implemented once for every store.

use crate::digest::DigestTree;
use crate::error::{Result, StoreError};
use crate::hlc::Hlc;
use crate::key::Key;
use crate::node::NodeId;
use crate::record::{Kind, Record, Versioned};
use crate::tombstones::{Collected, Tombstone, TombstoneIndex};
use crate::version::{Dot, VersionVector};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use tokio::sync::watch;

/// A page of one digest bucket's keys, each with its record's entry hash, and the key to
/// continue after (`None`: the bucket's last page). See [`Store::bucket_hashes`].
pub type BucketHashes = (Vec<(Key, u64)>, Option<Key>);

/// Size limits enforced on every write, local or remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes.
    pub max_key: usize,
    /// Longest value, in bytes (blobs belong in the blob store, not here).
    pub max_value: usize,
    /// Largest page a scan returns.
    pub max_scan: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key: 1024,
            max_value: 1 << 20,
            max_scan: 1000,
        }
    }
}

/// A local change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Set a register.
    Put(Bytes),
    /// Delete a register (leaves a tombstone).
    Delete,
    /// Add a set element, with a payload (may be empty).
    Add(Bytes),
    /// Remove a set element (the adds seen; concurrent adds win).
    Remove,
    /// Change a counter.
    Count(i64),
}

impl Mutation {
    /// The kind of record this mutation works on.
    pub fn kind(&self) -> Kind {
        match self {
            Mutation::Put(_) | Mutation::Delete => Kind::Register,
            Mutation::Add(_) | Mutation::Remove => Kind::Set,
            Mutation::Count(_) => Kind::Counter,
        }
    }
}

/// Whether a logged change was made here or arrived from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Accepted by this node.
    Local,
    /// Merged from another replica.
    Remote,
}

/// One entry of the change feed: key `key` changed at local sequence number `seq`. Read the key to
/// get its state; several entries may name the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Local, strictly increasing, persistent sequence number.
    pub seq: u64,
    /// The key that changed.
    pub key: Key,
    /// Where the change came from.
    pub origin: Origin,
}

/// A record shipped between replicas: the unit of replication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The key.
    pub key: Key,
    /// Its full state at the sender.
    pub record: Record,
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Key(Bytes::deserialize(d)?))
    }
}

/// What `apply` did with a batch of deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Deltas that changed the local state.
    pub changed: usize,
    /// Deltas already known (duplicates, older versions).
    pub unchanged: usize,
    /// Deltas refused (over the size limits, or of another kind than the key holds).
    pub rejected: usize,
}

/// The answer of a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The expected version matched; the new value is stored.
    Applied(Versioned<Bytes>),
    /// It did not; here is what is stored now (`None`: the key does not exist).
    Conflict(Option<Versioned<Bytes>>),
}

/// A prefix scan request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    /// Only keys starting with these bytes.
    pub prefix: Key,
    /// Resume after this key (the `next` of the previous page).
    pub after: Option<Key>,
    /// At most this many items (1 ..= `Limits::max_scan`).
    pub limit: usize,
    /// Largest keys first.
    pub reverse: bool,
    /// Also return tombstones (value `None`).
    pub include_tombstones: bool,
}

impl ScanRequest {
    /// The first page of keys under `prefix`, in key order, without tombstones.
    pub fn prefix(prefix: Key, limit: usize) -> Self {
        ScanRequest {
            prefix,
            after: None,
            limit,
            reverse: false,
            include_tombstones: false,
        }
    }
}

/// A page of a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    /// Keys and their visible values, in scan order.
    pub items: Vec<(Key, Versioned<Bytes>)>,
    /// Where to resume; `None` when the prefix is exhausted. A page may be short (even empty)
    /// and still have a `next`, when it stopped at the scan's work budget among tombstones.
    pub next: Option<Key>,
}

/// What an engine holds in memory that grows with use, for `/metrics` and the soak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in memtables, active and sealed (not yet flushed).
    pub memtable_bytes: u64,
    /// Bytes in the block cache.
    pub cache_bytes: u64,
    /// The block cache's capacity.
    pub cache_capacity: u64,
    /// Tables (sorted files) on disk; each keeps a little metadata in memory.
    pub tables: u64,
    /// Index and filter blocks held outside the block cache (pinned), which grow with the data.
    pub pinned_bytes: u64,
    /// On disk: the bytes allocated to the write-ahead journals (the embedded engine's `*.jnl`
    /// files, bounded by its journaling size), and how many there are.
    pub journal_bytes: u64,
    /// Journal files on disk.
    pub journals: u64,
}

/// The versioned key-value store. See ARCHITECTURE.md for the guarantees.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// The node whose writes this store stamps.
    fn node(&self) -> NodeId;

    /// Limits enforced on writes.
    fn limits(&self) -> Limits;

    /// The visible value of a register or set element with its version; `None` if the key was
    /// never written (or its tombstone was collected); `value: None` for a tombstone.
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Bytes>>>;

    /// The full replicated state of a key.
    async fn get_record(&self, key: &Key) -> Result<Option<Record>>;

    /// The full replicated states of `keys`, in their order: one store call for all of them
    /// (the embedded engine: one hop to its blocking thread instead of one a key), for a caller
    /// that reads many records in a row (the gossip push, anti-entropy's repairs).
    async fn get_records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get_record(k).await?);
        }
        Ok(out)
    }

    /// Applies a local change. `ctx` is the version the writer read (the writes it replaces);
    /// `None` replaces everything this replica has seen. Acknowledged (returns) once durable at
    /// the configured level. Returns the key's new state.
    async fn mutate(
        &self,
        key: &Key,
        mutation: Mutation,
        ctx: Option<&VersionVector>,
    ) -> Result<Record>;

    /// Several blind mutations (no causal context), acknowledged together: one wait for
    /// durability for the lot. Each key is written atomically; the memory and embedded engines
    /// also commit the whole batch as one (one backend commit, one change-feed append, every
    /// key still its own feed entry), the default applies them one by one.
    async fn mutate_many(&self, items: &[(Key, Mutation)]) -> Result<()> {
        for (k, m) in items {
            self.mutate(k, m.clone(), None).await?;
        }
        Ok(())
    }

    /// Starts a bulk load into this store, which must hold no replicated record yet (a fresh
    /// node being seeded): records are written straight into the engine's sorted files, every
    /// one stamped with the same `dot`, without change-feed entries (so no consumer or peer
    /// replays them) but with digests, so replicas loaded with the same records agree at once.
    /// Deletes and removals are refused: a load writes no tombstone (nor its index entry).
    /// Nothing else may write to the store while it loads. Engines without such a path return
    /// [`StoreError::InvalidArgument`]; use [`Store::mutate_many`] there.
    fn bulk_load(&self, dot: Dot) -> Result<Box<dyn BulkLoad>> {
        let _ = dot;
        Err(StoreError::InvalidArgument(
            "this engine has no bulk-load path; use mutate_many",
        ))
    }

    /// Writes `new` (a value, or a tombstone for `None`) to a register only if its version is
    /// `expected` (`None`: the key must not exist). Linearizable per key on one replica; the
    /// gossip layer routes it to the key's owner.
    async fn cas(
        &self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome>;

    /// [`Store::cas`], and only if it applies, the blind mutations `with` (no causal context)
    /// too, acknowledged together once durable. The memory and embedded engines write the swap
    /// and `with` in **one** commit (one change-feed append: every key still its own entry, in
    /// order, the swapped key first), so they are stored together or not at all; the default
    /// swaps, then writes `with` by [`Store::mutate_many`] (a crash between the two leaves the
    /// swap alone). A conflict writes nothing. For a caller that owns the swap's key here and
    /// indexes what it stored (the messenger's slot and its client-id index entry).
    async fn cas_with(
        &self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
        with: &[(Key, Mutation)],
    ) -> Result<CasOutcome> {
        let out = self.cas(key, expected, new).await?;
        if matches!(out, CasOutcome::Applied(_)) && !with.is_empty() {
            self.mutate_many(with).await?;
        }
        Ok(out)
    }

    /// A page of keys under a prefix.
    async fn scan(&self, req: &ScanRequest) -> Result<ScanPage>;

    /// Merges records from other replicas. Idempotent: applying a delta twice, or an older one,
    /// changes nothing. The entry point of replication.
    async fn apply(&self, deltas: &[Delta]) -> Result<ApplyReport>;

    /// Up to `limit` changes with `seq > after`, oldest first.
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>>;

    /// The newest sequence number of the change feed.
    fn last_seq(&self) -> u64;

    /// The engine's memory that grows with use (`None`: the engine does not say).
    fn memory(&self) -> Option<MemoryStats> {
        None
    }

    /// A receiver that is told each new last sequence number.
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// A receiver told the last sequence number of each commit that writes a key starting with
    /// one of `prefixes`: for a reader of the feed that derives state from a few keyspaces
    /// ([`crate::consumer::Wake`]). The default, for an engine that does not filter: every
    /// commit, as [`Store::subscribe`].
    fn subscribe_to(&self, prefixes: &[Bytes]) -> watch::Receiver<u64> {
        let _ = prefixes;
        self.subscribe()
    }

    /// Forgets changes with `seq <= upto` (every consumer is past them). Sequence numbers are
    /// never reused.
    async fn trim_changes(&self, upto: u64) -> Result<()>;

    /// The current digests over key-hash buckets.
    fn digests(&self) -> DigestTree;

    /// The records of one digest bucket, in key order, after `after`, for anti-entropy.
    async fn bucket(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<(Vec<Delta>, Option<Key>)>;

    /// The keys of one digest bucket, in key order, after `after`, each with its record's
    /// contribution to the bucket's digest ([`crate::digest::entry_hash`] of the stored bytes):
    /// what anti-entropy compares before it ships a record. The XOR of a whole bucket's hashes
    /// is its leaf in [`Store::digests`]. The default reads every record ([`Store::bucket`]);
    /// an engine that keeps the hashes beside its bucket index answers without reading any.
    async fn bucket_hashes(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<BucketHashes> {
        let (page, next) = self.bucket(bucket, after, limit).await?;
        let mut out = Vec::with_capacity(page.len());
        for d in page {
            let bytes = crate::codec::encode_record(&d.record)?;
            let h = crate::digest::entry_hash(d.key.as_bytes(), &bytes);
            out.push((d.key, h));
        }
        Ok((out, next))
    }

    /// Removes tombstones whose last write is older than `horizon` (every replica has them; the
    /// gossip layer decides). Returns how many were removed. A full scan: run it in the background.
    async fn purge_tombstones(&self, horizon: Hlc) -> Result<u64>;

    /// Removes the records of `keys` that are tombstones last written before `horizon` (the gossip
    /// layer decides every replica has them). Returns how many were removed, and the keys that are
    /// tombstones still too young to go; live records are left alone.
    async fn purge(&self, keys: &[Key], horizon: Hlc) -> Result<(u64, Vec<Key>)>;

    /// Removes the records of `keys` that are node-local counters at zero (a local keyspace's
    /// counter: never replicated or digested, so reading 0 from no record is the same answer,
    /// and a later change starts it again from 0). Returns how many were removed; any other
    /// record (a replicated key, a counter not at zero, another kind) is left alone. A counter
    /// is never a tombstone, so this is how derived state about something deleted can leave
    /// nothing behind. The default removes nothing (the ScyllaDB engine: such counters stay).
    async fn drop_zero_counters(&self, keys: &[Key]) -> Result<u64> {
        let _ = keys;
        Ok(0)
    }

    /// Whether this store keeps a tombstone index ([`crate::tombstones`]). The default: none.
    fn tombstone_index(&self) -> TombstoneIndex {
        TombstoneIndex::Absent
    }

    /// How many entries the tombstone index holds, or an estimate (`None`: no index).
    fn tombstone_index_len(&self) -> Option<u64> {
        None
    }

    /// Up to `limit` entries of the tombstone index last written before `before`, oldest
    /// first (empty without an index).
    async fn tombstones(&self, before: Hlc, limit: usize) -> Result<Vec<Tombstone>> {
        let _ = (before, limit);
        Ok(Vec::new())
    }

    /// Consumes up to `limit` entries of the tombstone index last written before `horizon`,
    /// oldest first: each entry's record is removed if it still is that tombstone (re-checked
    /// under its key's lock, as [`Store::purge`]), and the entry goes either way. `None`
    /// without an index (the default).
    async fn collect_indexed(&self, horizon: Hlc, limit: usize) -> Result<Option<Collected>> {
        let _ = (horizon, limit);
        Ok(None)
    }

    /// Indexes those of `keys` that are tombstones (re-read under each key's lock): the
    /// backfill of a store written before its engine kept the index. Returns how many were
    /// indexed; does nothing without an index (the default).
    async fn index_tombstones(&self, keys: &[Key]) -> Result<u64> {
        let _ = keys;
        Ok(0)
    }

    /// Records that every tombstone is indexed (the backfill's scan finished): from now on
    /// [`Store::tombstone_index`] says [`TombstoneIndex::Complete`], across restarts.
    async fn tombstones_indexed(&self) -> Result<()> {
        Ok(())
    }

    /// Makes every acknowledged write durable on stable storage now (fsync).
    async fn flush(&self) -> Result<()>;

    /// Flushes, and saves what lets the next open start fast (the embedded engine: its digests,
    /// instead of a scan of every record). Call it once nothing writes any more, at shutdown; a
    /// later write simply undoes the saving.
    async fn close(&self) -> Result<()> {
        self.flush().await
    }

    /// The counters of the thread this store's writes run on, for an engine with one (the
    /// embedded engine's writer: every commit and group flush but those of a view on a lane).
    fn writer_stats(&self) -> Option<&crate::lane::LaneStats> {
        None
    }

    /// This store — the same data, locks and change feed — with its blocking work run on `lane`
    /// instead of tokio's blocking pool ([`crate::lane`]), for a caller that must not queue
    /// behind everyone else's store calls (the gossip core loop). `None` for an engine with no
    /// blocking work of its own to move (a remote database's driver is async): keep this one.
    fn on_lane(
        &self,
        _lane: std::sync::Arc<crate::lane::StoreLane>,
    ) -> Option<std::sync::Arc<dyn Store>> {
        None
    }
}

/// Typed conveniences over [`Store`].
#[async_trait]
pub trait StoreExt: Store {
    /// Sets a register, replacing what this replica has seen.
    async fn put(&self, key: &Key, value: Bytes) -> Result<VersionVector> {
        Ok(self
            .mutate(key, Mutation::Put(value), None)
            .await?
            .context()
            .clone())
    }

    /// Deletes a register.
    async fn delete(&self, key: &Key) -> Result<VersionVector> {
        Ok(self
            .mutate(key, Mutation::Delete, None)
            .await?
            .context()
            .clone())
    }

    /// Adds a set element.
    async fn add(&self, key: &Key, payload: Bytes) -> Result<VersionVector> {
        Ok(self
            .mutate(key, Mutation::Add(payload), None)
            .await?
            .context()
            .clone())
    }

    /// Removes a set element.
    async fn remove(&self, key: &Key) -> Result<VersionVector> {
        Ok(self
            .mutate(key, Mutation::Remove, None)
            .await?
            .context()
            .clone())
    }

    /// Changes a counter; returns its new value here.
    async fn incr(&self, key: &Key, delta: i64) -> Result<i64> {
        Ok(self
            .mutate(key, Mutation::Count(delta), None)
            .await?
            .count())
    }

    /// The value of a counter (0 if never written).
    async fn counter(&self, key: &Key) -> Result<i64> {
        Ok(self.get_record(key).await?.map_or(0, |r| r.count()))
    }

    /// Sets a register to a typed value.
    async fn put_typed<T: Serialize + Sync>(&self, key: &Key, value: &T) -> Result<VersionVector> {
        self.put(key, crate::codec::to_value(value)?).await
    }

    /// Reads a typed register value; `None` if absent or deleted.
    async fn get_typed<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<Versioned<T>>> {
        match self.get(key).await? {
            Some(v) if v.value.is_some() => {
                let Versioned {
                    value,
                    version,
                    hlc,
                    siblings,
                } = v;
                let value = match value {
                    Some(b) => Some(crate::codec::from_value::<T>(&b)?),
                    None => None,
                };
                Ok(Some(Versioned {
                    value,
                    version,
                    hlc,
                    siblings,
                }))
            }
            _ => Ok(None),
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Where a linearizable compare-and-swap runs. On one node, the store itself; in a cluster, the
/// key's owner in the region the data belongs to (the gossip layer implements it). The same
/// routing carries calls: a request run by a node of another region (see [`CallHandler`]).
#[async_trait]
pub trait CasRouter: Send + Sync + Debug + 'static {
    /// Compare-and-swap of a register at the owner of `key` in `region`.
    async fn cas_at(
        &self,
        region: &str,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome>;

    /// This node's region; `None` on a single node, where every region is here and nothing is
    /// worth a call.
    fn local_region(&self) -> Option<&str> {
        None
    }

    /// Whether this node owns `key` in `region` in its latest view and would run its CAS
    /// itself (so work that belongs with the key's owner may run here). `true` on one node.
    fn owns_key(&self, _region: &str, _key: &Key) -> bool {
        true
    }

    /// The store every compare-and-swap runs on when that is always this node's own (a single
    /// node: [`LocalCas`]), so a caller may join other local writes to a swap in one commit
    /// ([`Store::cas_with`]); `None` when swaps are routed (a cluster, a test's wrapper).
    fn local_store(&self) -> Option<&std::sync::Arc<dyn Store>> {
        None
    }

    /// Runs the [`CallHandler`] registered as `service` on the owner of `route` in `region`
    /// (the node that owns a CAS of that key) with `body`, and returns its answer. Fails with
    /// [`StoreError::OwnerUnreachable`] when that region does not answer in time.
    async fn call_at(
        &self,
        region: &str,
        _route: &Key,
        service: &str,
        _body: Bytes,
    ) -> Result<Bytes> {
        Err(StoreError::Remote(format!(
            "no cluster to run {service} in region {region}"
        )))
    }
}

/// Serves calls that another node of the cluster routed here ([`CasRouter::call_at`]). The
/// caller holds the cluster secret, so its input is as trusted as a replicated record; its
/// user was authorized where the request arrived.
#[async_trait]
pub trait CallHandler: Send + Sync + 'static {
    /// Answers one call (`Err`: why it failed, for the caller's logs and error).
    async fn handle(&self, body: Bytes) -> std::result::Result<Bytes, String>;
}

/// The single-node [`CasRouter`]: every CAS runs on this store, whatever the region.
#[derive(Debug, Clone)]
pub struct LocalCas(pub std::sync::Arc<dyn Store>);

#[async_trait]
impl CasRouter for LocalCas {
    async fn cas_at(
        &self,
        _region: &str,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome> {
        self.0.cas(key, expected, new).await
    }

    fn local_store(&self) -> Option<&std::sync::Arc<dyn Store>> {
        Some(&self.0)
    }
}

/// A bulk load in progress ([`Store::bulk_load`]). Synchronous: run it on a blocking thread.
pub trait BulkLoad: Send {
    /// Adds one key, written as `mutation` applied to nothing. Keys must come in strictly
    /// ascending byte order over the whole load (node-local keys, which start with `0xff`, last).
    fn push(&mut self, key: Key, mutation: Mutation) -> Result<()>;

    /// Writes what is buffered, waits for every writer and makes the load durable.
    fn finish(self: Box<Self>) -> Result<BulkReport>;
}

/// The keys of one keyspace for a bulk load, in ascending order, all under `prefix`.
pub struct BulkRun<'a> {
    /// The prefix every key of the run starts with.
    pub prefix: Key,
    /// The keys and their mutations, ascending.
    pub items: Box<dyn Iterator<Item = Result<(Key, Mutation)>> + Send + 'a>,
}

impl<'a> BulkRun<'a> {
    /// The run of `items`, all under `prefix`.
    pub fn new(
        prefix: Key,
        items: impl Iterator<Item = Result<(Key, Mutation)>> + Send + 'a,
    ) -> Self {
        BulkRun {
            prefix,
            items: Box::new(items),
        }
    }
}

impl std::fmt::Debug for BulkRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkRun")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Loads runs of disjoint keyspaces: sorted by prefix, then pushed one after the other; calls
/// `progress` with the number of keys pushed every 65 536 keys.
pub fn load_runs(
    load: &mut dyn BulkLoad,
    mut runs: Vec<BulkRun<'_>>,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    runs.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    let mut since = 0u64;
    for run in runs {
        for item in run.items {
            let (key, m) = item?;
            if !key.starts_with(run.prefix.as_bytes()) {
                return Err(StoreError::InvalidArgument(
                    "a bulk-run key outside its prefix",
                ));
            }
            load.push(key, m)?;
            since += 1;
            if since == 1 << 16 {
                progress(since);
                since = 0;
            }
        }
    }
    progress(since);
    Ok(())
}

/// What a bulk load wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// Keys written.
    pub keys: u64,
    /// Of which replicated (the rest are node-local).
    pub replicated: u64,
    /// Bytes of keys and encoded records.
    pub bytes: u64,
}
