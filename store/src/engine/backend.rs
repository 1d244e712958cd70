//! The raw ordered key-value interface the versioned engine is built on.
//!
//! A backend knows nothing of versions: it stores bytes in five spaces and commits batches
//! atomically. Everything about records, merges, the change feed and digests lives once, in
//! [`super::Engine`], for every backend.

use crate::error::Result;
use bytes::Bytes;
use std::fmt::Debug;
use std::ops::Bound;

/// The separate key spaces of one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    /// key → encoded record.
    Data,
    /// bucket (u16, big-endian) ‖ key → the record's entry hash (u64, big-endian; empty in
    /// entries written before it was kept): the keys of each digest bucket.
    Index,
    /// seq (u64, big-endian) → encoded change.
    Changes,
    /// Engine bookkeeping (the change feed's trim point).
    Meta,
    /// The tombstone index: the tombstone's last write (its record's `max_hlc`, u64,
    /// big-endian) ‖ key → nothing. One entry per stored tombstone, oldest first, so the reaper
    /// reads the tombstones due and nothing else.
    Tombs,
}

impl Space {
    pub(crate) const ALL: [Space; 5] = [
        Space::Data,
        Space::Index,
        Space::Changes,
        Space::Meta,
        Space::Tombs,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Space::Data => "data",
            Space::Index => "index",
            Space::Changes => "changes",
            Space::Meta => "meta",
            Space::Tombs => "tombs",
        }
    }
}

/// One write of a batch: a put (`Some`) or a removal (`None`).
#[derive(Debug)]
pub(crate) struct Op {
    pub(crate) space: Space,
    pub(crate) key: Bytes,
    pub(crate) value: Option<Bytes>,
}

impl Op {
    pub(crate) fn put(space: Space, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Op {
            space,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    pub(crate) fn remove(space: Space, key: impl Into<Bytes>) -> Self {
        Op {
            space,
            key: key.into(),
            value: None,
        }
    }
}

/// Where [`Backend::ingest`] writes a run's entries.
pub(crate) trait Sink {
    /// The next entry (keys strictly ascending).
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
}

/// A function writing one entry.
pub(crate) type WriteFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// A [`Sink`] that calls a function.
pub(crate) struct FnSink<'a, 'f>(pub(crate) &'a mut WriteFn<'f>);

impl Sink for FnSink<'_, '_> {
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        (self.0)(key, value)
    }
}

/// The default [`Sink`]: batches of [`INGEST_BATCH`] committed ops.
struct BatchSink<'a, B: ?Sized> {
    backend: &'a B,
    space: Space,
    ops: Vec<Op>,
}

impl<B: Backend + ?Sized> Sink for BatchSink<'_, B> {
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.ops.push(Op::put(
            self.space,
            Bytes::copy_from_slice(key),
            Bytes::copy_from_slice(value),
        ));
        if self.ops.len() == INGEST_BATCH {
            let ops = std::mem::replace(&mut self.ops, Vec::with_capacity(INGEST_BATCH));
            self.backend.commit(ops)?;
        }
        Ok(())
    }
}

/// Ops per batch of the default [`Backend::ingest`].
const INGEST_BATCH: usize = 4096;

/// A range of raw keys, owned.
pub(crate) type RawRange = (Bound<Bytes>, Bound<Bytes>);

/// An ordered byte store with atomic batches.
pub(crate) trait Backend: Send + Sync + Debug + 'static {
    /// Whether calls may wait on the disk: the engine then runs them on the blocking pool, off
    /// tokio's workers.
    fn blocking(&self) -> bool {
        false
    }

    /// What the backend holds in memory (`None`: it does not say).
    fn memory(&self) -> Option<crate::contract::MemoryStats> {
        None
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>>;

    /// Applies every op or none (a crash in the middle leaves none applied).
    fn commit(&self, ops: Vec<Op>) -> Result<()>;

    /// Up to `max` entries of `range`, in key order (or reverse).
    fn scan(
        &self,
        space: Space,
        range: RawRange,
        reverse: bool,
        max: usize,
    ) -> Result<Vec<(Bytes, Bytes)>>;

    /// Writes one sorted run (a bulk load: see `super::bulk`): `fill` hands every entry to the
    /// sink, in strictly ascending key order. Durable once [`Backend::sync`] returns after it.
    /// The default commits batches.
    fn ingest(
        &self,
        space: Space,
        fill: &mut dyn FnMut(&mut dyn Sink) -> Result<()>,
    ) -> Result<()> {
        let mut sink = BatchSink {
            backend: self,
            space,
            ops: Vec::with_capacity(INGEST_BATCH),
        };
        fill(&mut sink)?;
        let ops = std::mem::take(&mut sink.ops);
        if !ops.is_empty() {
            self.commit(ops)?;
        }
        Ok(())
    }

    /// How many entries `space` holds, or an estimate (fjall counts from its tables' metadata:
    /// removals not yet compacted away may still count).
    fn approximate_len(&self, space: Space) -> u64;

    /// Hands committed batches to the operating system (they then survive a process crash).
    fn flush(&self) -> Result<()>;

    /// Makes committed batches durable on stable storage.
    fn sync(&self) -> Result<()>;
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
pub(crate) fn prefix_end(prefix: &[u8]) -> Bound<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bound::Excluded(Bytes::from(end));
        }
    }
    Bound::Unbounded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(
            prefix_end(b"ab"),
            Bound::Excluded(Bytes::from_static(b"ac"))
        );
        assert_eq!(
            prefix_end(b"a\xff"),
            Bound::Excluded(Bytes::from_static(b"b"))
        );
        assert_eq!(prefix_end(b"\xff\xff"), Bound::Unbounded);
    }
}
