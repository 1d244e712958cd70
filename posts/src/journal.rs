//! The post-counts consumer's redo journal: one batch's writes, made safe to repeat.
//!
//! A consumer batch moves counters and writes shadows — several keys, each written atomically,
//! the lot not. A crash between them used to leave a counter moved without its shadow, and the
//! replayed batch moved it again (a like counted twice). So before it writes anything the
//! consumer saves the whole batch as one record (one atomic write): for every counter its value
//! *before* the batch and the move, for every shadow its new value, and the feed position the
//! batch ends at. [`Journal::apply`] then writes it, and after a crash the consumer applies the
//! saved journal again before it reads on. Applying is idempotent: shadows are plain puts, and a
//! counter is moved only while it still holds its `before` value (the consumer is the only
//! writer of its counters, one pass at a time, so a counter holds either `before` or
//! `before + move`).
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `plj` (local) | — | register | the last batch's journal (see [`Journal::encode`]) |

use bytes::{Buf, BufMut, Bytes, BytesMut};
use starling_store::{Key, Keyspace, Mutation, Store, StoreError, StoreExt, counted};

/// `plj` → the last batch's journal (local).
const JOURNAL: Keyspace = Keyspace::local("plj");

fn journal_key() -> Key {
    JOURNAL.key().finish()
}

/// One batch's writes and where it ends in the change feed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Journal {
    /// The seq of the batch's last change.
    pub(crate) upto: u64,
    /// Counter key, its value before the batch, the move.
    pub(crate) counters: Vec<(Key, i64, i64)>,
    /// Shadow key, whether its element is counted.
    pub(crate) shadows: Vec<(Key, bool)>,
}

impl Journal {
    /// `upto`, then each counter (key length u16, key, before i64, move i64) after their number
    /// (u32), then each shadow (key length u16, key, one byte) after theirs; big-endian.
    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u64(self.upto);
        b.put_u32(u32::try_from(self.counters.len()).unwrap_or(u32::MAX));
        for (k, before, d) in &self.counters {
            put_key(&mut b, k);
            b.put_i64(*before);
            b.put_i64(*d);
        }
        b.put_u32(u32::try_from(self.shadows.len()).unwrap_or(u32::MAX));
        for (k, v) in &self.shadows {
            put_key(&mut b, k);
            b.put_u8(u8::from(*v));
        }
        b.freeze()
    }

    /// The journal `encode` wrote, or `None` for bytes that are not one.
    pub(crate) fn decode(mut b: &[u8]) -> Option<Journal> {
        let mut j = Journal::default();
        if b.remaining() < 12 {
            return None;
        }
        j.upto = b.get_u64();
        let n = b.get_u32();
        for _ in 0..n {
            let k = get_key(&mut b)?;
            if b.remaining() < 16 {
                return None;
            }
            j.counters.push((k, b.get_i64(), b.get_i64()));
        }
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32();
        for _ in 0..n {
            let k = get_key(&mut b)?;
            if !b.has_remaining() {
                return None;
            }
            j.shadows.push((k, b.get_u8() == 1));
        }
        b.is_empty().then_some(j)
    }

    /// Saves the journal (one atomic write), replacing the previous batch's.
    pub(crate) async fn save(&self, store: &dyn Store) -> Result<(), StoreError> {
        store.put(&journal_key(), self.encode()).await?;
        Ok(())
    }

    /// The saved journal, if any.
    pub(crate) async fn load(store: &dyn Store) -> Result<Option<Journal>, StoreError> {
        let Some(v) = store.get(&journal_key()).await?.and_then(|v| v.value) else {
            return Ok(None);
        };
        match Journal::decode(&v) {
            Some(j) => Ok(Some(j)),
            None => {
                tracing::error!("the post-counts journal is unreadable; ignored");
                Ok(None)
            }
        }
    }

    /// Writes the batch: each counter moved unless it already was, every shadow. Safe to repeat.
    pub(crate) async fn apply(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut writes = Vec::with_capacity(self.counters.len() + self.shadows.len());
        for (k, before, d) in &self.counters {
            let now = store.counter(k).await?;
            if now == *before {
                writes.push((k.clone(), Mutation::Count(*d)));
            } else if now != before + d {
                // Only this consumer writes its counters: not reachable unless the store was
                // edited by hand. Leave the counter as it is rather than guess.
                tracing::error!(
                    now,
                    before,
                    delta = d,
                    "a post counter moved outside its consumer"
                );
            }
        }
        for (k, v) in &self.shadows {
            writes.push((k.clone(), Mutation::Put(counted::shadow_value(*v))));
        }
        store.mutate_many(&writes).await
    }
}

fn put_key(b: &mut BytesMut, k: &Key) {
    let bytes = k.as_bytes();
    // Keys are at most `Limits::max_key` (1 KiB) long.
    b.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    b.put_slice(bytes);
}

fn get_key(b: &mut &[u8]) -> Option<Key> {
    if b.remaining() < 2 {
        return None;
    }
    let n = usize::from(b.get_u16());
    if b.remaining() < n {
        return None;
    }
    let k = Key::from(b[..n].to_vec());
    b.advance(n);
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncations() {
        let j = Journal {
            upto: 42,
            counters: vec![(Key::from("plc/a"), 3, -1), (Key::from("prc/b"), 0, 2)],
            shadows: vec![(Key::from("pls/x"), true), (Key::from("pls/y"), false)],
        };
        let b = j.encode();
        assert_eq!(Journal::decode(&b), Some(j));
        for cut in 0..b.len() {
            assert_eq!(Journal::decode(&b[..cut]), None, "cut at {cut}");
        }
    }
}
