//! The raw ordered key-value interface the versioned engine is built on.
//!
//! A backend knows nothing of versions: it stores bytes in four spaces and commits batches
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
    /// bucket (u16, big-endian) ‖ key → nothing: the keys of each digest bucket.
    Index,
    /// seq (u64, big-endian) → encoded change.
    Changes,
    /// Engine bookkeeping (the change feed's trim point).
    Meta,
}

impl Space {
    pub(crate) const ALL: [Space; 4] = [Space::Data, Space::Index, Space::Changes, Space::Meta];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Space::Data => "data",
            Space::Index => "index",
            Space::Changes => "changes",
            Space::Meta => "meta",
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

/// A range of raw keys, owned.
pub(crate) type RawRange = (Bound<Bytes>, Bound<Bytes>);

/// An ordered byte store with atomic batches.
pub(crate) trait Backend: Send + Sync + Debug + 'static {
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
