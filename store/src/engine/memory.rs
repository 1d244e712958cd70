//! In-memory backend: sharded ordered maps, for tests and caches. Nothing survives the process.
//!
//! Keys are spread over [`SHARDS`] `RwLock<BTreeMap>`s by hash so writers to different keys rarely
//! contend; a scan merges the shards' ordered ranges. Locks are `parking_lot` and are never held
//! across an `.await` (the backend is synchronous).

use super::backend::{Backend, Op, RawRange, Space};
use crate::error::Result;
use bytes::Bytes;
use parking_lot::RwLock;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

const SHARDS: usize = 16;

type Shard = RwLock<BTreeMap<Bytes, Bytes>>;

/// The memory backend.
#[derive(Debug)]
pub(crate) struct MemoryBackend {
    spaces: [Box<[Shard]>; 4],
}

impl MemoryBackend {
    pub(crate) fn new() -> Self {
        let space = || (0..SHARDS).map(|_| RwLock::new(BTreeMap::new())).collect();
        MemoryBackend {
            spaces: [space(), space(), space(), space()],
        }
    }

    fn shard(&self, space: Space, key: &[u8]) -> &Shard {
        let i = (xxhash_rust::xxh3::xxh3_64(key) % SHARDS as u64) as usize;
        &self.spaces[space as usize][i]
    }
}

impl Backend for MemoryBackend {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.shard(space, key).read().get(key).cloned())
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        for op in ops {
            let mut shard = self.shard(op.space, &op.key).write();
            match op.value {
                Some(v) => {
                    shard.insert(op.key, v);
                }
                None => {
                    shard.remove(&op.key);
                }
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
        // A k-way merge of the shards' ordered ranges: O(max · log SHARDS) after the seeks.
        let guards: Vec<_> = self.spaces[space as usize]
            .iter()
            .map(|s| s.read())
            .collect();
        let mut iters: Vec<Box<dyn Iterator<Item = (&Bytes, &Bytes)>>> = guards
            .iter()
            .map(|g| {
                let it = g.range::<Bytes, _>(range.clone());
                if reverse {
                    Box::new(it.rev()) as Box<dyn Iterator<Item = _>>
                } else {
                    Box::new(it)
                }
            })
            .collect();
        let mut heads: BinaryHeap<(Ordered<'_>, usize)> = BinaryHeap::new();
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
            out.push((k.clone(), v.clone()));
            if let Some(kv) = iters[i].next() {
                heads.push((Ordered { kv, reverse }, i));
            }
        }
        Ok(out)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// A shard's head entry, ordered so the max-heap pops the next key in scan order.
struct Ordered<'a> {
    kv: (&'a Bytes, &'a Bytes),
    reverse: bool,
}

impl PartialEq for Ordered<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.kv.0 == other.kv.0
    }
}

impl Eq for Ordered<'_> {}

impl PartialOrd for Ordered<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered<'_> {
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
