//! In-memory backend: sharded ordered maps, for tests and caches. Nothing survives the process.
//!
//! Keys are spread over [`SHARDS`] `RwLock<BTreeMap>`s by hash so writers to different keys rarely
//! contend; a scan merges the shards' ordered ranges. Locks are `parking_lot` and are never held
//! across an `.await` (the backend is synchronous).

use super::backend::{Backend, Op, RawRange, Space};
use crate::error::Result;
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::BTreeMap;

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
        let mut all = Vec::new();
        for shard in self.spaces[space as usize].iter() {
            let shard = shard.read();
            let it = shard.range::<Bytes, _>(range.clone());
            let take = |it: &mut dyn Iterator<Item = (&Bytes, &Bytes)>| {
                it.take(max)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            };
            if reverse {
                all.extend(take(&mut it.rev()));
            } else {
                all.extend(take(&mut { it }));
            }
        }
        if reverse {
            all.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        } else {
            all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        all.truncate(max);
        Ok(all)
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
