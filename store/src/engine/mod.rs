//! The versioned engine: records, merges, the change feed and digests over any [`Backend`].
//!
//! Write path, for one key: take the key's stripe lock, read the stored record, compute the new
//! one (a local mutation or a merge), and commit in one atomic batch the record, the change-feed
//! entry, its digest-bucket index entry and — when a tombstone is written or replaced — its
//! tombstone-index entry ([`crate::tombstones`]). Sequence numbers are assigned under
//! a short commit lock so the feed has no holes a consumer could skip past. Locks are
//! `parking_lot` mutexes held only in synchronous code, never across an `.await`.
//!
//! Durability: before a write returns, its batch is handed to the OS (group flush: one writer
//! flushes, the ones queued behind it find their batch already covered), so it survives a process
//! crash; with [`FsyncPolicy::Always`] it then waits for a shared fsync the same way.

mod backend;
mod bulk;
mod embedded;
mod floor;
mod fsync;
mod interest;
mod memory;
mod rules;
#[cfg(feature = "scylla")]
pub(crate) mod scylla;

pub use embedded::FsyncPolicy;

use crate::codec::{decode_record, encode_record};
use crate::contract::{
    ApplyReport, BucketHashes, BulkLoad, CasOutcome, Change, Delta, Limits, Mutation, Origin,
    ScanPage, ScanRequest, Store,
};
use crate::digest::{DigestTree, Digests, LEAVES, bucket_of, entry_hash};
use crate::error::{Result, StoreError};
use crate::hlc::{Hlc, HlcClock};
use crate::key::Key;
use crate::lane::StoreLane;
use crate::node::NodeId;
use crate::record::{Record, Versioned};
use crate::tombstones::{Collected, Tombstone, TombstoneIndex};
use crate::version::{Dot, VersionVector};
use async_trait::async_trait;
use backend::{Backend, Op, Space, prefix_end};
use bytes::{BufMut, Bytes, BytesMut};
use fsync::Syncer;
use parking_lot::Mutex;
use rules::Written;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::watch;

const KEY_STRIPES: usize = 1024;
const META_TRIMMED: &[u8] = b"changes-trimmed-to";
/// A snapshot of the digests: the clock's stamp (u64) then every leaf (u64), big-endian. Valid
/// while it exists: every write that changes a digest removes it in its own batch.
const META_DIGESTS: &[u8] = b"digests";
/// Present once every stored tombstone is in the tombstone index: written when a store is
/// created empty, or when the reaper's backfill of an older store finishes.
const META_TOMBS_INDEXED: &[u8] = b"tombstones-indexed";

/// Options of an embedded (on-disk) store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// When the journal is fsynced.
    pub fsync: FsyncPolicy,
    /// Block cache size in bytes.
    pub cache_bytes: u64,
    /// Most bytes of one space's memtable before it is flushed to a table; there are five
    /// spaces. Applies to the spaces a new data directory creates (fjall keeps the size a space
    /// was created with).
    pub memtable_bytes: u64,
    /// Size limits.
    pub limits: Limits,
    /// Run store calls on the caller's thread instead of tokio's blocking pool: only to measure
    /// what the pool costs (`store/benches/kv.rs`); a tokio worker then waits on the disk.
    pub inline: bool,
}

impl EmbeddedOptions {
    /// The default block cache: 256 MiB. Every index and filter block goes through it, and
    /// their share grows with the data: at 64 MiB a soak's grown store (20+ tables after 10
    /// minutes) served 62 % of its empty capacity, at 256 MiB about 80 % (RELIABILITY.md).
    pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
    /// The default memtable bound of each space: 16 MiB.
    pub const DEFAULT_MEMTABLE_BYTES: u64 = 16 << 20;

    /// Defaults for a directory: fsync every 100 ms, 256 MiB cache, 16 MiB memtables, default
    /// limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedOptions {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
            memtable_bytes: Self::DEFAULT_MEMTABLE_BYTES,
            limits: Limits::default(),
            inline: false,
        }
    }
}

struct Shared<B> {
    backend: B,
    node: NodeId,
    clock: Arc<HlcClock>,
    stamper: rules::Stamper,
    limits: Limits,
    key_locks: Box<[Mutex<()>]>,
    /// The last sequence number handed out; the lock orders feed entries.
    commit: Mutex<u64>,
    /// The highest sequence number trimmed from the feed ([`META_TRIMMED`]): every entry at or
    /// below it is gone. Reads and trims of the feed start above it, never among the removed
    /// entries' tombstones, which an LSM backend keeps until a compaction drops them.
    trimmed: AtomicU64,
    seq_tx: watch::Sender<u64>,
    /// The feed's readers woken only by the keys they read ([`Store::subscribe_to`]).
    interests: interest::Interests,
    digests: Digests,
    /// Whether a digest snapshot is stored (the next digest-changing write removes it).
    saved_digests: AtomicBool,
    /// Whether every stored tombstone is indexed ([`META_TOMBS_INDEXED`]).
    tombs_indexed: AtomicBool,
    /// Where the tombstone index's entries begin ([`floor`]).
    tombs_floor: floor::Floor,
}

/// A store engine: the versioning logic over a backend. Cheap to share as `Arc<dyn Store>`.
pub(crate) struct Engine<B: Backend> {
    shared: Arc<Shared<B>>,
    /// Shared by every view of the engine ([`Store::on_lane`]); the last one stops it.
    syncer: Arc<Syncer>,
    /// Where blocking work runs: tokio's blocking pool when `None`.
    lane: Option<Arc<StoreLane>>,
    /// Where writes run when this view has no lane of its own: one thread of the engine's
    /// (shared by every view), for a backend whose writes wait ([`Backend::blocking`]).
    writer: Option<Arc<StoreLane>>,
}

impl<B: Backend> std::fmt::Debug for Engine<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.shared.node)
            .field("backend", &self.shared.backend)
            .field("last_seq", &*self.shared.seq_tx.borrow())
            .finish_non_exhaustive()
    }
}

/// An empty in-memory store of node 1 of region 1, with a clock of its own and the default
/// limits: the store of the crate's unit tests.
#[cfg(test)]
pub(crate) fn memory_for_tests() -> Arc<dyn Store> {
    open_memory(
        NodeId::new(crate::RegionId(1), 1),
        Arc::new(HlcClock::new()),
        Limits::default(),
    )
}

/// Opens an in-memory store for `node`.
pub fn open_memory(node: NodeId, clock: Arc<HlcClock>, limits: Limits) -> Arc<dyn Store> {
    let engine = Engine::new(memory::MemoryBackend::new(), node, clock, limits, None);
    match engine {
        Ok(e) => Arc::new(e),
        // An empty memory backend cannot fail to scan; keep the signature infallible.
        Err(e) => unreachable!("empty memory store failed to open: {e}"),
    }
}

/// [`open_memory`] with the change feed in 16 hash shards like the data, the memory engine's
/// layout before its feed was one ordered deque: only to measure against
/// (`store/benches/kv.rs`, `feed`).
#[doc(hidden)]
pub fn open_memory_sharded_feed(
    node: NodeId,
    clock: Arc<HlcClock>,
    limits: Limits,
) -> Arc<dyn Store> {
    let backend = memory::MemoryBackend::<memory::InlineKey>::with_layout(false);
    match Engine::new(backend, node, clock, limits, None) {
        Ok(e) => Arc::new(e),
        Err(e) => unreachable!("empty memory store failed to open: {e}"),
    }
}

/// [`open_memory`] with its maps' keys as plain buffers (every B-tree comparison follows a
/// pointer), the memory engine's layout before its keys carried their first bytes inline:
/// only to measure against (`store/benches/kv.rs`, `feed`).
#[doc(hidden)]
pub fn open_memory_plain_keys(
    node: NodeId,
    clock: Arc<HlcClock>,
    limits: Limits,
) -> Arc<dyn Store> {
    let backend = memory::MemoryBackend::<Bytes>::with_layout(true);
    match Engine::new(backend, node, clock, limits, None) {
        Ok(e) => Arc::new(e),
        Err(e) => unreachable!("empty memory store failed to open: {e}"),
    }
}

/// Opens (or creates) an embedded store in `opts.dir`.
pub fn open_embedded(
    node: NodeId,
    clock: Arc<HlcClock>,
    opts: &EmbeddedOptions,
) -> Result<Arc<dyn Store>> {
    let mut backend =
        embedded::EmbeddedBackend::open(&opts.dir, opts.cache_bytes, opts.memtable_bytes)?;
    backend.inline = opts.inline;
    let e = Engine::new(backend, node, clock, opts.limits, Some(opts.fsync))?;
    Ok(Arc::new(e))
}

/// Makes the store in `opts.dir` look as one written before the tombstone index: every index
/// entry and the mark that the index is complete are removed (the records stay). Only to test
/// the reaper's backfill of such a store (`starling_gossip::reaper`); the store must be closed.
#[doc(hidden)]
pub fn forget_tombstone_index(opts: &EmbeddedOptions) -> Result<()> {
    let backend =
        embedded::EmbeddedBackend::open(&opts.dir, opts.cache_bytes, opts.memtable_bytes)?;
    loop {
        let page = backend.scan(
            Space::Tombs,
            (Bound::Unbounded, Bound::Unbounded),
            false,
            1024,
        )?;
        if page.is_empty() {
            break;
        }
        let ops = page.into_iter().map(|(k, _)| Op::remove(Space::Tombs, k));
        backend.commit(ops.collect())?;
    }
    backend.commit(vec![Op::remove(Space::Meta, META_TOMBS_INDEXED)])?;
    backend.flush()?;
    backend.sync()
}

/// A page of a bucket index: (key, index value) pairs, and the key to continue after.
type IndexPage = (Vec<(Key, Bytes)>, Option<Key>);

/// Owned key bytes for the digest-bucket index: bucket (u16 BE) ‖ key.
fn index_key(key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(2 + key.len());
    b.put_u16(bucket_of(key) as u16);
    b.put_slice(key);
    b.freeze()
}

/// The digest-bucket index's value: the record's [`entry_hash`] (u64 BE). Entries written
/// before the index carried it are empty, and [`decode_index_value`] says so.
fn index_value(hash: u64) -> Bytes {
    Bytes::copy_from_slice(&hash.to_be_bytes())
}

/// The hash an index value carries, if it carries one.
fn decode_index_value(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
}

/// The tombstone index's key of `key` last written at `hlc`: hlc (u64 BE) ‖ key.
fn tomb_key(hlc: Hlc, key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + key.len());
    b.put_u64(hlc.0);
    b.put_slice(key);
    b.freeze()
}

/// The tombstone-index ops of writing `new` over `old` to `key`: the old tombstone's entry
/// goes, the new tombstone's comes; nothing when both are the same entry (or no tombstone).
fn tomb_ops(key: &[u8], old: Option<&Record>, new: &Record) -> [Option<Op>; 2] {
    let old = old.filter(|r| r.is_tombstone()).map(Record::max_hlc);
    let new = new.is_tombstone().then(|| new.max_hlc());
    if old == new {
        return [None, None];
    }
    [
        old.map(|h| Op::remove(Space::Tombs, tomb_key(h, key))),
        new.map(|h| Op::put(Space::Tombs, tomb_key(h, key), Bytes::new())),
    ]
}

fn encode_change(key: &Key, origin: Origin) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + key.len());
    b.put_u8(match origin {
        Origin::Local => 0,
        Origin::Remote => 1,
    });
    b.put_slice(key.as_bytes());
    b.freeze()
}

/// A change-feed entry from its stored key and value; its key shares the value's buffer (no
/// copy: every consumer reads every entry).
fn decode_change(seq_key: &[u8], v: &Bytes) -> Result<Change> {
    let seq: [u8; 8] = seq_key
        .try_into()
        .map_err(|_| StoreError::Corrupt("change feed key is not a u64".into()))?;
    let origin = match v.first() {
        Some(0) => Origin::Local,
        Some(1) => Origin::Remote,
        _ => return Err(StoreError::Corrupt("change feed entry".into())),
    };
    Ok(Change {
        seq: u64::from_be_bytes(seq),
        key: Key(v.slice(1..)),
        origin,
    })
}

/// The stripe of the lock that serializes writes to a key.
fn stripe_of(key: &[u8]) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) % KEY_STRIPES as u64) as usize
}

/// The ops of a batch being built ([`Shared::write_many`]): its backend ops, the replicated
/// keys it feeds (in order) and the digest toggles to make once it is committed.
#[derive(Default)]
struct Staged {
    ops: Vec<Op>,
    feed: Vec<Key>,
    toggles: Vec<(Key, u64)>,
    /// The stamps of the tombstone-index entries it puts.
    tombs: Vec<Hlc>,
    /// The new bytes of each key written so far (a batch's keys are few: a linear search).
    written: Vec<(Key, Bytes)>,
}

impl Staged {
    /// What this batch already wrote to `key`.
    fn pending(&self, key: &Key) -> Option<Bytes> {
        self.written
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
    }

    /// Adds the write of `new` over `old_bytes` (decoded: `old`) to `key`.
    fn stage(
        &mut self,
        key: &Key,
        old_bytes: Option<Bytes>,
        old: Option<&Record>,
        new: &Record,
    ) -> Result<()> {
        let new_bytes = encode_record(new)?;
        self.written.push((key.clone(), new_bytes.clone()));
        if new.is_tombstone() {
            self.tombs.push(new.max_hlc());
        }
        for op in tomb_ops(key.as_bytes(), old, new).into_iter().flatten() {
            // A key written twice in the batch: its first write's entry is dropped from the
            // batch rather than put and removed in it.
            let earlier = self.ops.iter().position(|o| {
                o.space == Space::Tombs
                    && o.key == op.key
                    && o.value.is_some()
                    && op.value.is_none()
            });
            match earlier {
                Some(i) => drop(self.ops.remove(i)),
                None => self.ops.push(op),
            }
        }
        if key.is_local() {
            // Node-local derived state: no change-feed entry, no digest, never replicated.
            self.ops
                .push(Op::put(Space::Data, key.0.clone(), new_bytes));
            return Ok(());
        }
        let new_hash = entry_hash(key.as_bytes(), &new_bytes);
        self.ops.push(Op::put(
            Space::Index,
            index_key(key.as_bytes()),
            index_value(new_hash),
        ));
        self.ops
            .push(Op::put(Space::Data, key.0.clone(), new_bytes));
        self.feed.push(key.clone());
        if let Some(old) = &old_bytes {
            self.toggles
                .push((key.clone(), entry_hash(key.as_bytes(), old)));
        }
        self.toggles.push((key.clone(), new_hash));
        Ok(())
    }
}

impl<B: Backend> Engine<B> {
    fn new(
        backend: B,
        node: NodeId,
        clock: Arc<HlcClock>,
        limits: Limits,
        fsync: Option<FsyncPolicy>,
    ) -> Result<Self> {
        let digests = Digests::new();
        let trimmed = backend
            .get(Space::Meta, META_TRIMMED)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let mut last_seq = trimmed;
        if let Some((k, _)) = backend
            .scan(
                Space::Changes,
                (
                    Bound::Excluded(Bytes::copy_from_slice(&trimmed.to_be_bytes())),
                    Bound::Unbounded,
                ),
                true,
                1,
            )?
            .pop()
        {
            last_seq = last_seq.max(decode_change(&k, &Bytes::from_static(&[0]))?.seq);
        }
        // A store created empty indexes every tombstone from its first; one written before the
        // index existed holds tombstones the index lacks until the reaper's backfill ends.
        let tombs_indexed = backend.get(Space::Meta, META_TOMBS_INDEXED)?.is_some() || {
            let empty = backend
                .scan(Space::Data, (Bound::Unbounded, Bound::Unbounded), false, 1)?
                .is_empty();
            if empty {
                backend.commit(vec![Op::put(Space::Meta, META_TOMBS_INDEXED, vec![1u8])])?;
            }
            empty
        };
        // The digests saved at the last clean close (or bulk load), if no write came since;
        // otherwise rebuilt from the stored records, catching up the clock with them.
        let saved = backend
            .get(Space::Meta, META_DIGESTS)?
            .and_then(|b| load_digests(&b));
        let (digests, saved) = match saved {
            Some((digests, hlc)) => {
                clock.observe(hlc);
                (digests, true)
            }
            None => {
                let mut cursor = Bound::Unbounded;
                let mut max_seen = Hlc::ZERO;
                loop {
                    let page =
                        backend.scan(Space::Data, (cursor, Bound::Unbounded), false, 4096)?;
                    let Some((last, _)) = page.last() else { break };
                    cursor = Bound::Excluded(last.clone());
                    for (k, v) in &page {
                        if k.first() != Some(&crate::key::LOCAL_PREFIX) {
                            digests.toggle(k, entry_hash(k, v));
                        }
                        max_seen = max_seen.max(decode_record(v)?.max_hlc());
                    }
                }
                clock.observe(max_seen);
                (digests, false)
            }
        };
        Self::assemble(
            backend,
            node,
            clock,
            limits,
            fsync,
            digests,
            (last_seq, trimmed, saved, tombs_indexed),
        )
    }

    /// `state`: the feed's last sequence number and the highest one trimmed from it, whether
    /// the digests are saved, whether every tombstone is indexed.
    fn assemble(
        backend: B,
        node: NodeId,
        clock: Arc<HlcClock>,
        limits: Limits,
        fsync: Option<FsyncPolicy>,
        digests: Digests,
        state: (u64, u64, bool, bool),
    ) -> Result<Self> {
        let (last_seq, trimmed, saved, tombs_indexed) = state;
        let (seq_tx, _) = watch::channel(last_seq);
        let shared = Arc::new(Shared {
            backend,
            node,
            stamper: rules::Stamper {
                node,
                clock: clock.clone(),
            },
            clock,
            limits,
            key_locks: (0..KEY_STRIPES).map(|_| Mutex::new(())).collect(),
            commit: Mutex::new(last_seq),
            trimmed: AtomicU64::new(trimmed),
            seq_tx,
            interests: interest::Interests::default(),
            digests,
            saved_digests: AtomicBool::new(saved),
            tombs_indexed: AtomicBool::new(tombs_indexed),
            tombs_floor: floor::Floor::default(),
        });
        let syncer = Arc::new(Syncer::start(shared.clone(), fsync));
        let writer = if shared.backend.blocking() {
            Some(StoreLane::dedicated("store-writer")?)
        } else {
            None
        };
        Ok(Engine {
            shared,
            syncer,
            lane: None,
            writer,
        })
    }
}

/// Decodes a saved digest snapshot: the clock's stamp and the leaves.
fn load_digests(b: &[u8]) -> Option<(Digests, Hlc)> {
    let (hlc, leaves) = b.split_first_chunk::<8>()?;
    if leaves.len() % 8 != 0 {
        return None;
    }
    let leaves = leaves
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()));
    Some((Digests::from_leaves(leaves)?, Hlc(u64::from_be_bytes(*hlc))))
}

/// The sync surface the fsync machinery needs from an engine.
pub(crate) trait Durable: Send + Sync + 'static {
    fn flush(&self) -> Result<()>;
    fn sync(&self) -> Result<()>;
    fn committed(&self) -> u64;
}

impl<B: Backend> Durable for Shared<B> {
    fn flush(&self) -> Result<()> {
        self.backend.flush()
    }
    fn sync(&self) -> Result<()> {
        self.backend.sync()
    }
    fn committed(&self) -> u64 {
        *self.seq_tx.borrow()
    }
}

impl<B: Backend> Shared<B> {
    fn check_key(&self, key: &Key) -> Result<()> {
        rules::check_key(&self.limits, key)
    }

    /// The stripe lock that serializes writes to `key`.
    fn key_lock(&self, key: &[u8]) -> &Mutex<()> {
        &self.key_locks[stripe_of(key)]
    }

    fn load(&self, key: &[u8]) -> Result<Option<Record>> {
        self.backend
            .get(Space::Data, key)?
            .map(|b| decode_record(&b))
            .transpose()
    }

    /// Read-modify-write of one key. `f` returns the new record, or `None` to change nothing.
    fn write_with(
        &self,
        key: &Key,
        origin: Origin,
        f: impl FnOnce(Option<&Record>) -> Result<Option<Record>>,
    ) -> Result<Written> {
        let _key_guard = self.key_lock(key.as_bytes()).lock();
        let old_bytes = self.backend.get(Space::Data, key.as_bytes())?;
        let old = old_bytes.as_deref().map(decode_record).transpose()?;
        let Some(new) = f(old.as_ref())? else {
            return Ok(Written { old, new: None });
        };
        let new_bytes = encode_record(&new)?;
        let tombs = tomb_ops(key.as_bytes(), old.as_ref(), &new);
        if key.is_local() {
            // Node-local derived state: no change-feed entry, no digest, never replicated.
            let mut ops = vec![Op::put(Space::Data, key.0.clone(), new_bytes)];
            ops.extend(tombs.into_iter().flatten());
            self.backend.commit(ops)?;
            self.tomb_written(&new);
            return Ok(Written {
                old,
                new: Some(new),
            });
        }
        let new_hash = entry_hash(key.as_bytes(), &new_bytes);
        let mut ops = Vec::with_capacity(6);
        ops.extend(tombs.into_iter().flatten());
        // The index entry carries the record's digest contribution, so anti-entropy compares
        // a bucket from the index alone (`bucket_hashes`).
        ops.push(Op::put(
            Space::Index,
            index_key(key.as_bytes()),
            index_value(new_hash),
        ));
        ops.push(Op::put(Space::Data, key.0.clone(), new_bytes.clone()));
        self.unsave_digests(&mut ops);
        {
            let mut seq = self.commit.lock();
            let next = *seq + 1;
            ops.push(Op::put(
                Space::Changes,
                next.to_be_bytes().to_vec(),
                encode_change(key, origin),
            ));
            self.backend.commit(ops)?;
            *seq = next;
            self.seq_tx.send_replace(next);
            self.interests.committed(std::iter::once(key), next);
        }
        self.tomb_written(&new);
        if let Some(old_bytes) = &old_bytes {
            self.digests
                .toggle(key.as_bytes(), entry_hash(key.as_bytes(), old_bytes));
        }
        self.digests.toggle(key.as_bytes(), new_hash);
        Ok(Written {
            old,
            new: Some(new),
        })
    }

    /// Writes a batch as one commit: an optional compare-and-swap first, then `muts` in order
    /// (blind, no causal context), all under their keys' stripe locks (taken in stripe order, so
    /// two batches never wait on each other in a cycle), in **one** backend commit with one
    /// change-feed append (consecutive sequence numbers, one wake-up of the feed's readers).
    /// When the swap does not match, nothing is written and the conflict is returned. A key
    /// written twice in a batch sees its first write, as two writes in a row would.
    fn write_many(
        &self,
        cas: Option<(&Key, Option<&VersionVector>, Option<Bytes>)>,
        muts: &[(Key, Mutation)],
    ) -> Result<Option<CasOutcome>> {
        if let Some((key, _, new)) = &cas {
            rules::check_cas(&self.limits, key, new.as_ref())?;
        }
        for (k, m) in muts {
            rules::check_mutation(&self.limits, k, m)?;
        }
        let mut stripes: Vec<usize> = cas
            .iter()
            .map(|(k, _, _)| *k)
            .chain(muts.iter().map(|(k, _)| k))
            .map(|k| stripe_of(k.as_bytes()))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = stripes.iter().map(|&i| self.key_locks[i].lock()).collect();
        let mut batch = Staged::default();
        let mut outcome = None;
        if let Some((key, expected, new)) = cas {
            let old_bytes = self.backend.get(Space::Data, key.as_bytes())?;
            let old = old_bytes.as_deref().map(decode_record).transpose()?;
            match self.stamper.swapped(old.as_ref(), expected, new)? {
                None => return Ok(Some(CasOutcome::Conflict(old.map(|r| r.visible())))),
                Some(r) => {
                    outcome = Some(CasOutcome::Applied(r.visible()));
                    batch.stage(key, old_bytes, old.as_ref(), &r)?;
                }
            }
        }
        for (key, m) in muts {
            let old_bytes = match batch.pending(key) {
                Some(b) => Some(b),
                None => self.backend.get(Space::Data, key.as_bytes())?,
            };
            let old = old_bytes.as_deref().map(decode_record).transpose()?;
            let new = self.stamper.mutated(old.as_ref(), m.clone(), None)?;
            batch.stage(key, old_bytes, old.as_ref(), &new)?;
        }
        let Staged {
            mut ops,
            feed,
            toggles,
            tombs,
            ..
        } = batch;
        if !feed.is_empty() {
            self.unsave_digests(&mut ops);
            let mut seq = self.commit.lock();
            let mut next = *seq;
            for key in &feed {
                next += 1;
                ops.push(Op::put(
                    Space::Changes,
                    next.to_be_bytes().to_vec(),
                    encode_change(key, Origin::Local),
                ));
            }
            self.backend.commit(ops)?;
            *seq = next;
            self.seq_tx.send_replace(next);
            self.interests.committed(feed.iter(), next);
        } else if !ops.is_empty() {
            self.backend.commit(ops)?;
        }
        for hlc in tombs {
            self.tombs_floor.written(hlc);
        }
        for (key, hash) in toggles {
            self.digests.toggle(key.as_bytes(), hash);
        }
        Ok(outcome)
    }

    /// Adds the removal of the saved digest snapshot to a batch that changes a digest.
    fn unsave_digests(&self, ops: &mut Vec<Op>) {
        if self.saved_digests.swap(false, Ordering::AcqRel) {
            ops.push(Op::remove(Space::Meta, META_DIGESTS));
        }
    }

    /// Saves the digests and the clock, so the next open need not scan every record, and makes
    /// them durable. Only when no write runs (a clean close, the end of a bulk load): the next
    /// digest-changing write removes the snapshot in its own batch.
    fn save_digests(&self) -> Result<()> {
        let tree = self.digests.snapshot();
        let leaves = tree.level(crate::digest::LEAF_BITS);
        let mut b = BytesMut::with_capacity(8 * (1 + leaves.len()));
        b.put_u64(self.clock.now().0);
        for leaf in leaves {
            b.put_u64(leaf);
        }
        self.backend
            .commit(vec![Op::put(Space::Meta, META_DIGESTS, b.freeze())])?;
        self.saved_digests.store(true, Ordering::Release);
        self.backend.sync()
    }

    fn mutate(&self, key: &Key, m: Mutation, ctx: Option<&VersionVector>) -> Result<Record> {
        rules::check_mutation(&self.limits, key, &m)?;
        let w = self.write_with(key, Origin::Local, |old| {
            self.stamper.mutated(old, m, ctx).map(Some)
        })?;
        w.mutated()
    }

    fn cas(
        &self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome> {
        rules::check_cas(&self.limits, key, new.as_ref())?;
        let w = self.write_with(key, Origin::Local, |old| {
            self.stamper.swapped(old, expected, new)
        })?;
        Ok(w.cas_outcome())
    }

    fn apply(&self, deltas: &[Delta]) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        for d in deltas {
            if !rules::admit_remote(&self.limits, d, &mut report) {
                continue;
            }
            self.clock.observe(d.record.max_hlc());
            let res = self.write_with(&d.key, Origin::Remote, |old| rules::merged(old, &d.record));
            rules::count_merge(d, res.map(|w| w.new.is_some()), &mut report)?;
        }
        Ok(report)
    }

    fn scan(&self, req: &ScanRequest) -> Result<ScanPage> {
        rules::check_scan(&self.limits, req)?;
        let prefix = req.prefix.0.clone();
        let end = prefix_end(&prefix);
        let mut cursor = req.after.as_ref().map(|k| k.0.clone());
        let mut budget = (req.limit * 4).max(256);
        let mut items = Vec::with_capacity(req.limit);
        loop {
            let range = match (&cursor, req.reverse) {
                (None, _) => (Bound::Included(prefix.clone()), end.clone()),
                (Some(c), false) => (Bound::Excluded(c.clone()), end.clone()),
                (Some(c), true) => (Bound::Included(prefix.clone()), Bound::Excluded(c.clone())),
            };
            let want = (req.limit - items.len()).min(budget);
            let page = self.backend.scan(Space::Data, range, req.reverse, want)?;
            let exhausted = page.len() < want;
            budget -= page.len();
            for (k, v) in page {
                let r = decode_record(&v)?;
                cursor = Some(k.clone());
                if let Some(v) = rules::scan_item(&r, req.include_tombstones) {
                    items.push((Key(k), v));
                }
            }
            if exhausted {
                return Ok(ScanPage { items, next: None });
            }
            if items.len() == req.limit || budget == 0 {
                return Ok(ScanPage {
                    items,
                    next: cursor.map(Key),
                });
            }
        }
    }

    fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        // Nothing is left at or below the trimmed mark: start above it (see `trimmed`).
        let after = after.max(self.trimmed.load(Ordering::Acquire));
        let from = Bytes::copy_from_slice(&after.saturating_add(1).to_be_bytes());
        self.backend
            .scan(
                Space::Changes,
                (Bound::Included(from), Bound::Unbounded),
                false,
                limit,
            )?
            .iter()
            .map(|(k, v)| decode_change(k, v))
            .collect()
    }

    fn trim_changes(&self, upto: u64) -> Result<()> {
        let upto = upto.min(*self.commit.lock());
        let trimmed = self.trimmed.load(Ordering::Acquire);
        if upto <= trimmed {
            return Ok(());
        }
        // Only the entries above the last trim: a scan from the feed's start would read every
        // entry trimmed before, as tombstones, on each call — on the embedded engine that was
        // 35 % of a soak node's CPU (perf, 2-hour soak, 2026-12-07), and growing with the run.
        let mut ops: Vec<Op> = self
            .backend
            .scan(
                Space::Changes,
                (
                    Bound::Excluded(Bytes::copy_from_slice(&trimmed.to_be_bytes())),
                    Bound::Included(Bytes::copy_from_slice(&upto.to_be_bytes())),
                ),
                false,
                usize::MAX,
            )?
            .into_iter()
            .map(|(k, _)| Op::remove(Space::Changes, k))
            .collect();
        ops.push(Op::put(
            Space::Meta,
            META_TRIMMED,
            upto.to_be_bytes().to_vec(),
        ));
        self.backend.commit(ops)?;
        self.trimmed.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// A page of the bucket index of `bucket` after `after`: (key, index value) pairs, and the
    /// key to continue after if the page is full.
    fn index_page(&self, bucket: u32, after: Option<&Key>, limit: usize) -> Result<IndexPage> {
        if bucket as usize >= LEAVES {
            return Err(StoreError::InvalidArgument("bucket out of range"));
        }
        let prefix = (bucket as u16).to_be_bytes();
        let lower = match after {
            Some(k) => Bound::Excluded(index_key(k.as_bytes())),
            None => Bound::Included(Bytes::copy_from_slice(&prefix)),
        };
        let page = self
            .backend
            .scan(Space::Index, (lower, prefix_end(&prefix)), false, limit)?;
        let full = page.len() == limit;
        let page: Vec<(Key, Bytes)> = page
            .into_iter()
            .map(|(ik, v)| (Key(ik.slice(2..)), v))
            .collect();
        let next = if full {
            page.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    fn bucket(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<(Vec<Delta>, Option<Key>)> {
        let (page, next) = self.index_page(bucket, after, limit)?;
        let mut out = Vec::with_capacity(page.len());
        for (key, _) in page {
            if let Some(record) = self.load(key.as_bytes())? {
                out.push(Delta { key, record });
            }
        }
        Ok((out, next))
    }

    fn bucket_hashes(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<BucketHashes> {
        let (page, next) = self.index_page(bucket, after, limit)?;
        let mut out = Vec::with_capacity(page.len());
        for (key, v) in page {
            match decode_index_value(&v) {
                Some(h) => out.push((key, h)),
                // An entry from before the index carried hashes: read the record.
                None => {
                    if let Some(bytes) = self.backend.get(Space::Data, key.as_bytes())? {
                        let h = entry_hash(key.as_bytes(), &bytes);
                        out.push((key, h));
                    }
                }
            }
        }
        Ok((out, next))
    }

    fn purge_tombstones(&self, horizon: Hlc) -> Result<u64> {
        let mut purged = 0;
        let mut cursor = Bound::Unbounded;
        loop {
            let page = self
                .backend
                .scan(Space::Data, (cursor, Bound::Unbounded), false, 1024)?;
            let Some((last, _)) = page.last() else {
                return Ok(purged);
            };
            cursor = Bound::Excluded(last.clone());
            for (k, v) in page {
                let r = decode_record(&v)?;
                if r.is_tombstone() && r.max_hlc() < horizon {
                    purged += u64::from(self.purge_one(&k, Some(&v))?);
                }
            }
        }
    }

    fn purge(&self, keys: &[Key], horizon: Hlc) -> Result<(u64, Vec<Key>)> {
        let mut purged = 0;
        let mut young = Vec::new();
        for k in keys {
            self.check_key(k)?;
            match self.load(k.as_bytes())? {
                Some(r) if r.is_tombstone() && r.max_hlc() < horizon => {
                    purged += u64::from(self.purge_one(&k.0, None)?);
                }
                Some(r) if r.is_tombstone() => young.push(k.clone()),
                _ => {}
            }
        }
        Ok((purged, young))
    }

    fn drop_zero_counters(&self, keys: &[Key]) -> Result<u64> {
        let mut dropped = 0;
        for k in keys {
            self.check_key(k)?;
            if !k.is_local() {
                continue;
            }
            // Under the key's lock, as every write of it: an increment is before or after.
            let _g = self.key_lock(&k.0).lock();
            let Some(now) = self.backend.get(Space::Data, &k.0)? else {
                continue;
            };
            let r = decode_record(&now)?;
            if r.kind() == crate::record::Kind::Counter && r.count() == 0 {
                // A local key has no index entry, feed entry or digest: its record is all.
                self.backend
                    .commit(vec![Op::remove(Space::Data, k.0.clone())])?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Removes one record if it is (still) a tombstone — and, with `seen`, still those bytes.
    fn purge_one(&self, k: &Bytes, seen: Option<&Bytes>) -> Result<bool> {
        let _g = self.key_lock(k).lock();
        // Re-read under the lock: a write may have revived it since the caller looked.
        let Some(now) = self.backend.get(Space::Data, k)? else {
            return Ok(false);
        };
        let r = decode_record(&now)?;
        if seen.is_some_and(|s| *s != now) || !r.is_tombstone() {
            return Ok(false);
        }
        self.purge_locked(k, &now, &r)?;
        Ok(true)
    }

    /// Removes the tombstone `r` (stored as `now`) of `k`, with its index entries; the caller
    /// holds the key's lock.
    fn purge_locked(&self, k: &Bytes, now: &Bytes, r: &Record) -> Result<()> {
        let mut ops = vec![
            Op::remove(Space::Data, k.clone()),
            Op::remove(Space::Index, index_key(k)),
            Op::remove(Space::Tombs, tomb_key(r.max_hlc(), k)),
        ];
        if k.first() != Some(&crate::key::LOCAL_PREFIX) {
            self.unsave_digests(&mut ops);
        }
        self.backend.commit(ops)?;
        if k.first() != Some(&crate::key::LOCAL_PREFIX) {
            self.digests.toggle(k, entry_hash(k, now));
        }
        Ok(())
    }

    /// After a committed write of `new`: a tombstone's index entry may lower the floor.
    fn tomb_written(&self, new: &Record) {
        if new.is_tombstone() {
            self.tombs_floor.written(new.max_hlc());
        }
    }

    /// Up to `limit` tombstone-index entries last written before `before`, oldest first.
    fn tombstones(&self, before: Hlc, limit: usize) -> Result<Vec<Tombstone>> {
        self.tombstones_from(self.tombs_floor.get(), before, limit)
    }

    /// [`Shared::tombstones`] from the stamp `from` (the floor: nothing is stored below it).
    fn tombstones_from(&self, from: Hlc, before: Hlc, limit: usize) -> Result<Vec<Tombstone>> {
        if from >= before {
            return Ok(Vec::new());
        }
        let lower = Bound::Included(Bytes::copy_from_slice(&from.0.to_be_bytes()));
        let upper = Bound::Excluded(Bytes::copy_from_slice(&before.0.to_be_bytes()));
        self.backend
            .scan(Space::Tombs, (lower, upper), false, limit)?
            .into_iter()
            .map(|(k, _)| {
                let hlc = k
                    .first_chunk::<8>()
                    .ok_or_else(|| StoreError::Corrupt("tombstone index key".into()))?;
                Ok(Tombstone {
                    hlc: Hlc(u64::from_be_bytes(*hlc)),
                    key: Key(k.slice(8..)),
                })
            })
            .collect()
    }

    /// Consumes a page of the tombstone index below `horizon`: each entry's record goes if it
    /// still is that tombstone, the entry either way.
    fn collect_indexed(&self, horizon: Hlc, limit: usize) -> Result<Collected> {
        let begun = self.tombs_floor.begin(horizon);
        let page = self.tombstones_from(begun.from, horizon, limit.max(1))?;
        let mut out = Collected {
            read: page.len() as u64,
            more: page.len() >= limit.max(1),
            ..Collected::default()
        };
        // Every entry below this is consumed once the page is: the horizon, or for a full page
        // its last stamp (entries of that stamp may follow).
        let reached = match page.last() {
            Some(t) if out.more => t.hlc,
            _ => horizon,
        };
        for t in page {
            let k = t.key.0;
            let _g = self.key_lock(&k).lock();
            let now = self.backend.get(Space::Data, &k)?;
            let record = now.as_deref().map(decode_record).transpose()?;
            match (now, record) {
                (Some(now), Some(r)) if r.is_tombstone() && r.max_hlc() == t.hlc => {
                    self.purge_locked(&k, &now, &r)?;
                    out.purged += 1;
                }
                // Written again since (a write moves or drops the entry in its own batch, so
                // this is only a safety net): the entry alone goes.
                _ => {
                    self.backend
                        .commit(vec![Op::remove(Space::Tombs, tomb_key(t.hlc, &k))])?;
                    out.stale += 1;
                }
            }
        }
        self.tombs_floor.reached(begun, reached);
        Ok(out)
    }

    /// Indexes those of `keys` that are tombstones (the backfill of an older store).
    fn index_tombstones(&self, keys: &[Key]) -> Result<u64> {
        let mut indexed = 0;
        for k in keys {
            self.check_key(k)?;
            let _g = self.key_lock(&k.0).lock();
            if let Some(r) = self.load(k.as_bytes())?
                && r.is_tombstone()
            {
                let entry = tomb_key(r.max_hlc(), k.as_bytes());
                self.backend
                    .commit(vec![Op::put(Space::Tombs, entry, Bytes::new())])?;
                self.tombs_floor.written(r.max_hlc());
                indexed += 1;
            }
        }
        Ok(indexed)
    }

    /// Records that the tombstone index is complete.
    fn tombstones_indexed(&self) -> Result<()> {
        self.backend
            .commit(vec![Op::put(Space::Meta, META_TOMBS_INDEXED, vec![1u8])])?;
        self.tombs_indexed.store(true, Ordering::Release);
        Ok(())
    }
}

impl<B: Backend> Engine<B> {
    /// Runs a read `f` (point reads, scans, change-feed reads) on the caller's thread. A read
    /// is bounded CPU work over the memtables, the block cache and the OS page cache: it takes
    /// no lock a writer holds across I/O (fjall's reads go through its immutable version and
    /// lock-free memtables), and a miss of both caches is one random read of a table block.
    /// Handing it to the blocking pool cost more than the read itself: about 9 µs and two
    /// thread wake-ups a call, a node's capacity under the soak's mix 0.53-0.63× of reading
    /// here (`bench/kv.md`, RELIABILITY.md "Soak"). Writes, fsyncs and the housekeeping's long
    /// passes stay off the runtime ([`Self::off_runtime`]).
    fn read<T>(&self, f: impl FnOnce(&Shared<B>) -> Result<T>) -> Result<T> {
        f(&self.shared)
    }

    /// Runs `f` on the engine: on tokio's blocking pool (or this view's lane,
    /// [`Store::on_lane`]) for a backend whose calls wait on the disk ([`Backend::blocking`]:
    /// fjall's commits and journal writes, and the housekeeping's long passes), so no tokio
    /// worker waits on the journal's lock, a write or an fsync; inline for one that never
    /// waits (memory).
    async fn off_runtime<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared<B>) -> Result<T> + Send + 'static,
    {
        if !self.shared.backend.blocking() {
            return f(&self.shared);
        }
        let shared = self.shared.clone();
        if let Some(lane) = &self.lane {
            return lane.run(move || f(&shared)).await?;
        }
        match tokio::task::spawn_blocking(move || f(&shared)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Runs a write `f`, hands what it committed to the OS in the same blocking call (group
    /// flush), then waits for the fsync if the policy asks for one before acknowledging.
    /// `durable` says whether the write committed anything that needs it.
    async fn write<T, F>(&self, f: F, durable: fn(&T) -> bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared<B>) -> Result<T> + Send + 'static,
    {
        let flusher = self.syncer.flusher();
        let commit = move |s: &Shared<B>| {
            let out = f(s)?;
            let seq = s.committed();
            if durable(&out) {
                flusher.flush_through(seq)?;
            }
            Ok((out, seq))
        };
        let (out, seq) = match (&self.lane, &self.writer) {
            (None, Some(writer)) => {
                let shared = self.shared.clone();
                writer.run(move || commit(&shared)).await??
            }
            _ => self.off_runtime(commit).await?,
        };
        if durable(&out) {
            self.syncer.wait_synced(seq).await?;
        }
        Ok(out)
    }
}

#[async_trait]
impl<B: Backend> Store for Engine<B> {
    fn node(&self) -> NodeId {
        self.shared.node
    }

    fn memory(&self) -> Option<crate::contract::MemoryStats> {
        self.shared.backend.memory()
    }

    fn limits(&self) -> Limits {
        self.shared.limits
    }

    async fn get(&self, key: &Key) -> Result<Option<Versioned<Bytes>>> {
        self.shared.check_key(key)?;
        self.read(|s| rules::visible(s.load(key.as_bytes())?))
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        self.shared.check_key(key)?;
        self.read(|s| s.load(key.as_bytes()))
    }

    async fn get_records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>> {
        for k in keys {
            self.shared.check_key(k)?;
        }
        self.read(|s| keys.iter().map(|k| s.load(k.as_bytes())).collect())
    }

    async fn mutate(
        &self,
        key: &Key,
        mutation: Mutation,
        ctx: Option<&VersionVector>,
    ) -> Result<Record> {
        let (key, ctx) = (key.clone(), ctx.cloned());
        self.write(move |s| s.mutate(&key, mutation, ctx.as_ref()), |_| true)
            .await
    }

    async fn mutate_many(&self, items: &[(Key, Mutation)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let items = items.to_vec();
        self.write(move |s| s.write_many(None, &items).map(drop), |_| true)
            .await
    }

    async fn cas_with(
        &self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
        with: &[(Key, Mutation)],
    ) -> Result<CasOutcome> {
        let (key, expected, with) = (key.clone(), expected.cloned(), with.to_vec());
        self.write(
            move |s| {
                s.write_many(Some((&key, expected.as_ref(), new)), &with)?
                    .ok_or(StoreError::InvalidArgument(
                        "a batch's swap gave no outcome",
                    ))
            },
            |out| matches!(out, CasOutcome::Applied(_)),
        )
        .await
    }

    fn bulk_load(&self, dot: Dot) -> Result<Box<dyn BulkLoad>> {
        Ok(Box::new(bulk::Loader::start(self.shared.clone(), dot)?))
    }

    async fn cas(
        &self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome> {
        let (key, expected) = (key.clone(), expected.cloned());
        self.write(
            move |s| s.cas(&key, expected.as_ref(), new),
            |out| matches!(out, CasOutcome::Applied(_)),
        )
        .await
    }

    async fn scan(&self, req: &ScanRequest) -> Result<ScanPage> {
        self.read(|s| s.scan(req))
    }

    async fn apply(&self, deltas: &[Delta]) -> Result<ApplyReport> {
        let deltas = deltas.to_vec();
        self.write(move |s| s.apply(&deltas), |r| r.changed > 0)
            .await
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.read(|s| s.changes(after, limit))
    }

    fn last_seq(&self) -> u64 {
        self.shared.committed()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.seq_tx.subscribe()
    }

    fn subscribe_to(&self, prefixes: &[Bytes]) -> watch::Receiver<u64> {
        // Under the commit lock: no commit falls between the number read and the subscription.
        let seq = self.shared.commit.lock();
        self.shared.interests.subscribe(prefixes, *seq)
    }

    async fn trim_changes(&self, upto: u64) -> Result<()> {
        self.off_runtime(move |s| s.trim_changes(upto)).await
    }

    fn digests(&self) -> DigestTree {
        self.shared.digests.snapshot()
    }

    async fn bucket(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<(Vec<Delta>, Option<Key>)> {
        let after = after.cloned();
        self.off_runtime(move |s| s.bucket(bucket, after.as_ref(), limit))
            .await
    }

    async fn bucket_hashes(
        &self,
        bucket: u32,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<BucketHashes> {
        let after = after.cloned();
        self.off_runtime(move |s| s.bucket_hashes(bucket, after.as_ref(), limit))
            .await
    }

    async fn purge_tombstones(&self, horizon: Hlc) -> Result<u64> {
        self.off_runtime(move |s| s.purge_tombstones(horizon)).await
    }

    async fn purge(&self, keys: &[Key], horizon: Hlc) -> Result<(u64, Vec<Key>)> {
        let keys = keys.to_vec();
        self.off_runtime(move |s| s.purge(&keys, horizon)).await
    }

    async fn drop_zero_counters(&self, keys: &[Key]) -> Result<u64> {
        let keys = keys.to_vec();
        self.off_runtime(move |s| s.drop_zero_counters(&keys)).await
    }

    fn tombstone_index(&self) -> TombstoneIndex {
        if self.shared.tombs_indexed.load(Ordering::Acquire) {
            TombstoneIndex::Complete
        } else {
            TombstoneIndex::Partial
        }
    }

    fn tombstone_index_len(&self) -> Option<u64> {
        Some(self.shared.backend.approximate_len(Space::Tombs))
    }

    async fn tombstones(&self, before: Hlc, limit: usize) -> Result<Vec<Tombstone>> {
        self.off_runtime(move |s| s.tombstones(before, limit)).await
    }

    async fn collect_indexed(&self, horizon: Hlc, limit: usize) -> Result<Option<Collected>> {
        self.off_runtime(move |s| s.collect_indexed(horizon, limit).map(Some))
            .await
    }

    async fn index_tombstones(&self, keys: &[Key]) -> Result<u64> {
        let keys = keys.to_vec();
        self.off_runtime(move |s| s.index_tombstones(&keys)).await
    }

    async fn tombstones_indexed(&self) -> Result<()> {
        self.off_runtime(Shared::tombstones_indexed).await
    }

    async fn flush(&self) -> Result<()> {
        self.syncer.sync_now().await
    }

    async fn close(&self) -> Result<()> {
        self.syncer.sync_now().await?;
        self.off_runtime(Shared::save_digests).await
    }

    fn writer_stats(&self) -> Option<&crate::lane::LaneStats> {
        self.writer.as_deref().map(StoreLane::stats)
    }

    fn on_lane(&self, lane: Arc<StoreLane>) -> Option<Arc<dyn Store>> {
        Some(Arc::new(Engine {
            shared: self.shared.clone(),
            syncer: self.syncer.clone(),
            lane: Some(lane),
            writer: self.writer.clone(),
        }))
    }
}

#[cfg(test)]
mod drop_zero_counters_tests {
    use crate::{Key, Keyspace, StoreExt};

    #[tokio::test]
    async fn only_local_counters_at_zero_go() {
        let s = super::memory_for_tests();
        let local = Keyspace::local("t");
        let (zero, one) = (local.key().u64(1).finish(), local.key().u64(2).finish());
        let replicated = Keyspace::new("t").key().u64(1).finish();
        let register = local.key().u64(3).finish();
        for (k, d) in [
            (&zero, 2),
            (&zero, -2),
            (&one, 1),
            (&replicated, 1),
            (&replicated, -1),
        ] {
            s.incr(k, d).await.unwrap();
        }
        s.put(&register, bytes::Bytes::new()).await.unwrap();
        let keys: Vec<Key> = vec![
            zero.clone(),
            one.clone(),
            replicated.clone(),
            register.clone(),
        ];
        assert_eq!(s.drop_zero_counters(&keys).await.unwrap(), 1);
        assert!(s.get_record(&zero).await.unwrap().is_none(), "gone");
        for k in [&one, &replicated, &register] {
            assert!(s.get_record(k).await.unwrap().is_some(), "kept");
        }
        assert_eq!(s.counter(&one).await.unwrap(), 1);
        // A later change starts the dropped counter again from zero.
        assert_eq!(s.incr(&zero, 1).await.unwrap(), 1);
        assert_eq!(s.drop_zero_counters(&keys).await.unwrap(), 0);
    }
}

#[cfg(test)]
mod tombstone_index_tests {
    use super::*;
    use crate::{RegionId, StoreExt};

    /// An entry whose key is no longer that tombstone (written again without its batch moving
    /// the entry: only a fault could do it) is dropped alone; the live record stays.
    #[tokio::test]
    async fn a_stale_entry_is_dropped_and_its_record_kept() {
        let e = Engine::new(
            memory::MemoryBackend::new(),
            NodeId::new(RegionId(1), 1),
            Arc::new(HlcClock::new()),
            Limits::default(),
            None,
        )
        .unwrap();
        let k = Key::from("live");
        e.put(&k, Bytes::from_static(b"v")).await.unwrap();
        let stamp = e.get_record(&k).await.unwrap().unwrap().max_hlc();
        e.shared
            .backend
            .commit(vec![Op::put(
                Space::Tombs,
                tomb_key(stamp, &k.0),
                Bytes::new(),
            )])
            .unwrap();
        let later = Hlc(stamp.0 + 1);
        let c = e.collect_indexed(later, 10).await.unwrap().unwrap();
        assert_eq!((c.read, c.purged, c.stale), (1, 0, 1));
        assert!(e.tombstones(later, 10).await.unwrap().is_empty());
        assert!(e.get(&k).await.unwrap().is_some());
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;
    use crate::{RegionId, StoreExt};

    /// Reads and trims of the feed start above the last trim, never among the entries it
    /// removed (an LSM keeps them as tombstones until a compaction; a scan from the feed's start
    /// read them all on every trim). A stray entry put back below the mark stands in for them:
    /// a scan from the start would return it and trim it again.
    #[tokio::test]
    async fn the_feed_is_read_and_trimmed_from_the_last_trim_up() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Engine::new(
                embedded::EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap(),
                NodeId::new(RegionId(1), 1),
                Arc::new(HlcClock::new()),
                Limits::default(),
                None,
            )
            .unwrap()
        };
        let e = open();
        for i in 0..10u64 {
            e.put(
                &Key::from(format!("k{i}").as_str()),
                Bytes::from_static(b"v"),
            )
            .await
            .unwrap();
        }
        e.trim_changes(5).await.unwrap();
        let first = |e: &Engine<embedded::EmbeddedBackend>| {
            let e = e.shared.clone();
            async move { e.changes(0, 1).unwrap().first().map(|c| c.seq) }
        };
        assert_eq!(first(&e).await, Some(6));
        let stray = Op::put(Space::Changes, 3u64.to_be_bytes().to_vec(), b"x".to_vec());
        e.shared.backend.commit(vec![stray]).unwrap();
        assert_eq!(first(&e).await, Some(6), "read from the mark up");
        e.trim_changes(7).await.unwrap();
        assert_eq!(first(&e).await, Some(8));
        let below = |e: &Engine<embedded::EmbeddedBackend>| {
            e.shared
                .backend
                .get(Space::Changes, &3u64.to_be_bytes())
                .unwrap()
        };
        assert!(below(&e).is_some(), "trimmed from the mark up");
        // A trim to below the mark changes nothing; the mark survives a restart.
        e.trim_changes(2).await.unwrap();
        assert_eq!(first(&e).await, Some(8));
        drop(e);
        let e = open();
        assert_eq!(e.last_seq(), 10);
        assert_eq!(first(&e).await, Some(8));
        assert!(below(&e).is_some());
    }
}
