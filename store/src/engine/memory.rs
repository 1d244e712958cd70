//! In-memory backend: sharded ordered maps, for tests and caches. Nothing survives the process.
//!
//! The data and index spaces spread keys over [`SHARDS`] `RwLock<BTreeMap>`s by hash so writers
//! to different keys rarely contend; a scan merges the shards' ordered ranges. The change feed
//! is one ordered deque ([`Log`]): its keys are sequence numbers the engine appends in order
//! under its commit lock (so shards would spread no contention) and removes from the front when
//! it trims, and every consumer reads it in order — an append, a trim and a read are then a
//! push, a pop and one contiguous run instead of B-tree inserts, removals and a merge of
//! [`SHARDS`] ranges. The meta space (a few bookkeeping keys) is one map. Locks are
//! `parking_lot` and are never held across an `.await`.
//!
//! The maps' keys are [`InlineKey`]s: the first [`HEAD`] bytes of the key inline, in the
//! B-tree's node, before the shared buffer. A search compares a node's keys one after another;
//! with the key bytes behind a pointer each comparison was a cache miss (`memcmp` on cold
//! memory was 8 % of the server's CPU at 10 000 chat messages a second), with the head inline
//! almost every comparison is decided in the node (a message slot's key, 27 bytes, is all
//! head). `MemoryBackend<Bytes>` keeps the plain keys, only to measure against.

use super::backend::{Backend, Op, RawRange, Space};
use crate::error::Result;
use bytes::Bytes;
use parking_lot::RwLock;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::ops::Bound;

const SHARDS: usize = 16;

/// Bytes of a key kept inline in [`InlineKey`].
pub(crate) const HEAD: usize = 32;

type Shard<K> = RwLock<BTreeMap<K, Bytes>>;

/// How the maps of a [`MemoryBackend`] hold their keys.
pub(crate) trait MapKey: Ord + Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The map key of `b`.
    fn from_bytes(b: Bytes) -> Self;
    /// The key's bytes.
    fn bytes(&self) -> &Bytes;
    /// The value of `key` in `map`.
    fn lookup<'a>(map: &'a BTreeMap<Self, Bytes>, key: &[u8]) -> Option<&'a Bytes>;
    /// Removes `key` from `map`.
    fn remove(map: &mut BTreeMap<Self, Bytes>, key: Bytes);
}

/// Plain keys: every comparison follows the pointer to the key's bytes (the layout before
/// [`InlineKey`], kept to measure against).
impl MapKey for Bytes {
    fn from_bytes(b: Bytes) -> Self {
        b
    }
    fn bytes(&self) -> &Bytes {
        self
    }
    fn lookup<'a>(map: &'a BTreeMap<Self, Bytes>, key: &[u8]) -> Option<&'a Bytes> {
        map.get(key)
    }
    fn remove(map: &mut BTreeMap<Self, Bytes>, key: Bytes) {
        map.remove(&key);
    }
}

/// A key with its first [`HEAD`] bytes inline (zero-padded, as big-endian words) beside its
/// bytes. Ordered as its bytes are: two heads that differ order their keys (a key shorter than
/// the head is padded with zeros, which sort it before any longer key it is a prefix of, as
/// byte order does), equal heads fall back to the bytes.
#[derive(Clone, Debug)]
pub(crate) struct InlineKey {
    head: [u64; HEAD / 8],
    bytes: Bytes,
}

impl InlineKey {
    fn new(bytes: Bytes) -> Self {
        let mut buf = [0u8; HEAD];
        let n = bytes.len().min(HEAD);
        buf[..n].copy_from_slice(&bytes[..n]);
        let mut head = [0u64; HEAD / 8];
        for (w, c) in head.iter_mut().zip(buf.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *w = u64::from_be_bytes(b);
        }
        InlineKey { head, bytes }
    }
}

impl PartialEq for InlineKey {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.bytes == other.bytes
    }
}

impl Eq for InlineKey {}

impl PartialOrd for InlineKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InlineKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.bytes.cmp(&other.bytes))
    }
}

impl MapKey for InlineKey {
    fn from_bytes(b: Bytes) -> Self {
        InlineKey::new(b)
    }
    fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    fn lookup<'a>(map: &'a BTreeMap<Self, Bytes>, key: &[u8]) -> Option<&'a Bytes> {
        // The probe's copy of the key is one small allocation; the search it saves misses
        // the cache once per comparison.
        map.get(&InlineKey::new(Bytes::copy_from_slice(key)))
    }
    fn remove(map: &mut BTreeMap<Self, Bytes>, key: Bytes) {
        map.remove(&InlineKey::new(key));
    }
}

/// The memory backend (keys held as `K`: [`InlineKey`], or plain [`Bytes`] to measure against).
#[derive(Debug)]
pub(crate) struct MemoryBackend<K: MapKey = InlineKey> {
    /// Data, index, meta and tombs: [`SHARDS`] shards for the first two, one for each of the
    /// others (the tombstone index is read from its start: one ordered map, no merge).
    spaces: [Box<[Shard<K>]>; 4],
    /// The change feed (see [`Log`]); `None`: in shards like the others (the layout before, kept
    /// to measure against: `store/benches/kv.rs`).
    changes: Option<RwLock<Log>>,
    /// The change feed's shards when `changes` is `None`.
    changes_sharded: Box<[Shard<K>]>,
}

impl MemoryBackend<InlineKey> {
    pub(crate) fn new() -> Self {
        Self::with_layout(true)
    }
}

impl<K: MapKey> MemoryBackend<K> {
    /// `log`: the change feed in one ordered deque (the default); otherwise in [`SHARDS`]
    /// hash shards like the data (the layout before).
    pub(crate) fn with_layout(log: bool) -> Self {
        let shards = |n: usize| (0..n).map(|_| RwLock::new(BTreeMap::new())).collect();
        MemoryBackend {
            spaces: [shards(SHARDS), shards(SHARDS), shards(1), shards(1)],
            changes: log.then(|| RwLock::new(Log::default())),
            changes_sharded: shards(if log { 0 } else { SHARDS }),
        }
    }

    /// The shards of a space kept in shards.
    fn shards(&self, space: Space) -> &[Shard<K>] {
        match space {
            Space::Data => &self.spaces[0],
            Space::Index => &self.spaces[1],
            Space::Meta => &self.spaces[2],
            Space::Tombs => &self.spaces[3],
            Space::Changes => &self.changes_sharded,
        }
    }

    fn shard(&self, space: Space, key: &[u8]) -> &Shard<K> {
        let shards = self.shards(space);
        if shards.len() == 1 {
            return &shards[0];
        }
        let i = (xxhash_rust::xxh3::xxh3_64(key) % shards.len() as u64) as usize;
        &shards[i]
    }

    /// The change feed's deque, when it is kept in one.
    fn log(&self, space: Space) -> Option<&RwLock<Log>> {
        match space {
            Space::Changes => self.changes.as_ref(),
            _ => None,
        }
    }
}

impl<K: MapKey> Backend for MemoryBackend<K> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(log) = self.log(space) {
            return Ok(log.read().get(key));
        }
        Ok(K::lookup(&self.shard(space, key).read(), key).cloned())
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        for op in ops {
            if let Some(log) = self.log(op.space) {
                let mut log = log.write();
                match op.value {
                    Some(v) => log.put(op.key, v),
                    None => log.remove(&op.key),
                }
                continue;
            }
            let mut shard = self.shard(op.space, &op.key).write();
            match op.value {
                Some(v) => {
                    shard.insert(K::from_bytes(op.key), v);
                }
                None => K::remove(&mut shard, op.key),
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        space: Space,
        range: RawRange,
        reverse: bool,
        max: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        if let Some(log) = self.log(space) {
            return Ok(log.read().scan(&range, reverse, max));
        }
        let shards = self.shards(space);
        let key = |b: &Bound<Bytes>| match b {
            Bound::Included(k) => Bound::Included(K::from_bytes(k.clone())),
            Bound::Excluded(k) => Bound::Excluded(K::from_bytes(k.clone())),
            Bound::Unbounded => Bound::Unbounded,
        };
        let range = (key(&range.0), key(&range.1));
        let pair = |(k, v): (&K, &Bytes)| (k.bytes().clone(), v.clone());
        if let [one] = shards {
            let g = one.read();
            let it = g.range::<K, _>(range);
            return Ok(if reverse {
                it.rev().take(max).map(pair).collect()
            } else {
                it.take(max).map(pair).collect()
            });
        }
        // A k-way merge of the shards' ordered ranges: O(max · log SHARDS) after the seeks.
        let guards: Vec<_> = shards.iter().map(|s| s.read()).collect();
        let mut iters: Vec<Box<dyn Iterator<Item = (&K, &Bytes)>>> = guards
            .iter()
            .map(|g| {
                let it = g.range::<K, _>(range.clone());
                if reverse {
                    Box::new(it.rev()) as Box<dyn Iterator<Item = _>>
                } else {
                    Box::new(it)
                }
            })
            .collect();
        let mut heads: BinaryHeap<(Ordered<'_, K>, usize)> = BinaryHeap::new();
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(kv) = it.next() {
                heads.push((Ordered { kv, reverse }, i));
            }
        }
        let mut out = Vec::with_capacity(max.min(1024));
        while out.len() < max {
            let Some((Ordered { kv: (k, v), .. }, i)) = heads.pop() else {
                break;
            };
            out.push(pair((k, v)));
            if let Some(kv) = iters[i].next() {
                heads.push((Ordered { kv, reverse }, i));
            }
        }
        Ok(out)
    }

    fn approximate_len(&self, space: Space) -> u64 {
        if let Some(log) = self.log(space) {
            return log.read().entries.len() as u64;
        }
        self.shards(space)
            .iter()
            .map(|s| s.read().len() as u64)
            .sum()
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// An ordered map kept as a deque sorted by key, for keys that arrive in ascending order and
/// leave from the front (the change feed's sequence numbers): a put above the last key is a
/// push at the back, the removal of the first key a pop at the front, a lookup or the start of
/// a scan a binary search. Any other put or removal is still correct (a binary search and a
/// shift of the deque), only slower; the engine makes none.
#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<(Bytes, Bytes)>,
}

impl Log {
    fn find(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }

    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.find(key).ok().map(|i| self.entries[i].1.clone())
    }

    fn put(&mut self, key: Bytes, value: Bytes) {
        if self.entries.back().is_none_or(|(last, _)| *last < key) {
            self.entries.push_back((key, value));
            return;
        }
        match self.find(&key) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if self
            .entries
            .front()
            .is_some_and(|(first, _)| first.as_ref() == key)
        {
            self.entries.pop_front();
        } else if let Ok(i) = self.find(key) {
            self.entries.remove(i);
        }
        // A trimmed feed gives back what a burst grew it to.
        if self.entries.capacity() > 4096 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }

    /// Up to `max` entries of `range`, in key order (or reverse).
    fn scan(&self, range: &RawRange, reverse: bool, max: usize) -> Vec<(Bytes, Bytes)> {
        let from = match &range.0 {
            Bound::Included(s) => self.entries.partition_point(|(k, _)| k < s),
            Bound::Excluded(s) => self.entries.partition_point(|(k, _)| k <= s),
            Bound::Unbounded => 0,
        };
        let to = match &range.1 {
            Bound::Included(e) => self.entries.partition_point(|(k, _)| k <= e),
            Bound::Excluded(e) => self.entries.partition_point(|(k, _)| k < e),
            Bound::Unbounded => self.entries.len(),
        };
        if from >= to {
            return Vec::new();
        }
        let run = self.entries.range(from..to);
        if reverse {
            run.rev().take(max).cloned().collect()
        } else {
            run.take(max).cloned().collect()
        }
    }
}

/// A shard's head entry, ordered so the max-heap pops the next key in scan order.
struct Ordered<'a, K> {
    kv: (&'a K, &'a Bytes),
    reverse: bool,
}

impl<K: Ord> PartialEq for Ordered<'_, K> {
    fn eq(&self, other: &Self) -> bool {
        self.kv.0 == other.kv.0
    }
}

impl<K: Ord> Eq for Ordered<'_, K> {}

impl<K: Ord> PartialOrd for Ordered<'_, K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord> Ord for Ordered<'_, K> {
    fn cmp(&self, other: &Self) -> Ordering {
        let natural = self.kv.0.cmp(other.kv.0);
        // Forward scans pop the smallest key first, reverse scans the largest.
        if self.reverse {
            natural
        } else {
            natural.reverse()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u64) -> Bytes {
        Bytes::copy_from_slice(&i.to_be_bytes())
    }

    /// What a scan of `range` answers from a plain map.
    fn model_scan(
        model: &BTreeMap<Bytes, Bytes>,
        range: &RawRange,
        reverse: bool,
        max: usize,
    ) -> Vec<(Bytes, Bytes)> {
        let mut want: Vec<_> = model
            .range::<Bytes, _>(range.clone())
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        if reverse {
            want.reverse();
        }
        want.truncate(max);
        want
    }

    /// Every operation on both layouts of the change feed, and on a plain map: the same answers.
    #[test]
    fn the_feeds_deque_answers_as_the_sharded_maps_do() {
        let log = MemoryBackend::<InlineKey>::with_layout(true);
        let sharded = MemoryBackend::<Bytes>::with_layout(false);
        let mut model = BTreeMap::new();
        let put = |i: u64, v: u64| Op::put(Space::Changes, k(i), k(v));
        // Appends, an overwrite, an insert below the last key, removals at the front and in
        // the middle, a removal of a key that is not there.
        let batches: Vec<Vec<(u64, Option<u64>)>> = vec![
            (1..=50).map(|i| (i, Some(i))).collect(),
            vec![(10, Some(99)), (7, None), (1, None), (2, None)],
            vec![(60, Some(60)), (55, Some(55)), (200, None), (3, None)],
            (61..=70).map(|i| (i, Some(i))).collect(),
        ];
        for batch in batches {
            let ops = || -> Vec<Op> {
                batch
                    .iter()
                    .map(|&(i, v)| match v {
                        Some(v) => put(i, v),
                        None => Op::remove(Space::Changes, k(i)),
                    })
                    .collect()
            };
            log.commit(ops()).unwrap();
            sharded.commit(ops()).unwrap();
            for &(i, v) in &batch {
                match v {
                    Some(v) => model.insert(k(i), k(v)),
                    None => model.remove(&k(i)),
                };
            }
        }
        let ranges: Vec<RawRange> = vec![
            (Bound::Unbounded, Bound::Unbounded),
            (Bound::Included(k(5)), Bound::Unbounded),
            (Bound::Excluded(k(5)), Bound::Included(k(60))),
            (Bound::Included(k(7)), Bound::Excluded(k(8))),
            (Bound::Excluded(k(70)), Bound::Unbounded),
            (Bound::Unbounded, Bound::Included(k(4))),
            (
                Bound::Included(Bytes::from_static(b"\0\0")),
                Bound::Unbounded,
            ),
        ];
        for range in ranges {
            for reverse in [false, true] {
                for max in [0, 1, 3, usize::MAX] {
                    let want = model_scan(&model, &range, reverse, max);
                    let a = log
                        .scan(Space::Changes, range.clone(), reverse, max)
                        .unwrap();
                    let b = sharded
                        .scan(Space::Changes, range.clone(), reverse, max)
                        .unwrap();
                    assert_eq!(a, want, "deque {range:?} reverse {reverse} max {max}");
                    assert_eq!(b, want, "shards {range:?} reverse {reverse} max {max}");
                }
            }
        }
        for i in 0..=71 {
            let want = model.get(&k(i)).cloned();
            assert_eq!(log.get(Space::Changes, &k(i)).unwrap(), want);
            assert_eq!(sharded.get(Space::Changes, &k(i)).unwrap(), want);
        }
    }

    /// Keys of 0 to 40 bytes over an alphabet with 0x00 and 0xff, around the inline head's
    /// length: their inline keys order as their bytes do, and both key layouts answer every
    /// get and scan of the data space as a plain map does.
    #[test]
    fn inline_keys_order_and_answer_as_their_bytes() {
        let alphabet = [0u8, 1, 0x7f, 0xfe, 0xff];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut keys: Vec<Bytes> = (0..600)
            .map(|_| {
                let len = match next() % 4 {
                    0 => HEAD - 1 + (next() % 3) as usize,
                    _ => (next() % 41) as usize,
                };
                // Shared prefixes, as keys of one keyspace have.
                let shared = (next() % 3) as usize * 12;
                (0..len)
                    .map(|i| {
                        if i < shared {
                            7
                        } else {
                            alphabet[(next() % alphabet.len() as u64) as usize]
                        }
                    })
                    .collect::<Vec<u8>>()
                    .into()
            })
            .collect();
        keys.push(Bytes::new());
        keys.push(Bytes::from(vec![0u8; HEAD]));
        keys.push(Bytes::from(vec![0u8; HEAD + 1]));
        for a in &keys {
            for b in &keys {
                let (x, y) = (InlineKey::new(a.clone()), InlineKey::new(b.clone()));
                assert_eq!(x.cmp(&y), a.cmp(b), "{a:?} {b:?}");
                assert_eq!(x == y, a == b);
            }
        }
        let inline = MemoryBackend::<InlineKey>::new();
        let plain = MemoryBackend::<Bytes>::with_layout(true);
        let mut model = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let ops = || {
                if i % 5 == 4 {
                    vec![Op::remove(Space::Data, keys[i - 2].clone())]
                } else {
                    vec![Op::put(Space::Data, k.clone(), self::k(i as u64))]
                }
            };
            inline.commit(ops()).unwrap();
            plain.commit(ops()).unwrap();
            if i % 5 == 4 {
                model.remove(&keys[i - 2]);
            } else {
                model.insert(k.clone(), self::k(i as u64));
            }
        }
        for k in &keys {
            let want = model.get(k).cloned();
            assert_eq!(inline.get(Space::Data, k).unwrap(), want);
            assert_eq!(plain.get(Space::Data, k).unwrap(), want);
        }
        for w in keys.windows(2).take(100) {
            let (lo, hi) = if w[0] <= w[1] {
                (w[0].clone(), w[1].clone())
            } else {
                (w[1].clone(), w[0].clone())
            };
            for range in [
                (Bound::Included(lo.clone()), Bound::Included(hi.clone())),
                (Bound::Included(lo.clone()), Bound::Unbounded),
                (Bound::Unbounded, Bound::Excluded(hi.clone())),
            ] {
                for reverse in [false, true] {
                    let want = model_scan(&model, &range, reverse, 50);
                    let a = inline
                        .scan(Space::Data, range.clone(), reverse, 50)
                        .unwrap();
                    let b = plain.scan(Space::Data, range.clone(), reverse, 50).unwrap();
                    assert_eq!(a, want, "inline {range:?} reverse {reverse}");
                    assert_eq!(b, want, "plain {range:?} reverse {reverse}");
                }
            }
        }
    }

    #[test]
    fn a_trimmed_deque_gives_its_memory_back() {
        let mut log = Log::default();
        for i in 0..100_000u64 {
            log.put(k(i), Bytes::new());
        }
        let grown = log.entries.capacity();
        for i in 0..99_990u64 {
            log.remove(&k(i));
        }
        assert_eq!(log.entries.len(), 10);
        assert!(
            log.entries.capacity() <= 4096 && log.entries.capacity() < grown / 10,
            "{} of {grown}",
            log.entries.capacity()
        );
        assert_eq!(
            log.scan(&(Bound::Unbounded, Bound::Unbounded), false, 1)[0].0,
            k(99_990)
        );
    }
}
