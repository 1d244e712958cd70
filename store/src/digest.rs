//! Digests of a replica's contents over key-hash ranges, for anti-entropy.
//!
//! Every key falls in one of [`LEAVES`] buckets by the hash of its bytes. A bucket's digest is the
//! XOR of `xxh3(record bytes, seed = xxh3(key))` over its keys: order-free, updated in O(1) per
//! write (XOR the old record out, the new one in), and equal on two replicas exactly when (with
//! overwhelming probability) they hold the same records in that bucket. A [`DigestTree`] folds the
//! leaves into a Merkle-style tree so two peers find differing buckets by comparing a root, then
//! only the subtrees that differ.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// log2 of the number of leaves.
pub const LEAF_BITS: u32 = 12;
/// Number of key-hash buckets (leaves of the tree).
pub const LEAVES: usize = 1 << LEAF_BITS;

/// The bucket a key belongs to.
pub fn bucket_of(key: &[u8]) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) >> (64 - LEAF_BITS)) as u32
}

/// The digest contribution of one stored record.
pub fn entry_hash(key: &[u8], record_bytes: &[u8]) -> u64 {
    let seed = xxhash_rust::xxh3::xxh3_64(key);
    // Never zero, so a present record always changes its bucket's digest.
    xxhash_rust::xxh3::xxh3_64_with_seed(record_bytes, seed) | 1
}

/// Live per-bucket digests, updated by writers without locks.
#[derive(Debug)]
pub(crate) struct Digests {
    leaves: Box<[AtomicU64]>,
}

impl Digests {
    pub(crate) fn new() -> Self {
        Digests {
            leaves: (0..LEAVES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// XORs `h` into the bucket of `key`.
    pub(crate) fn toggle(&self, key: &[u8], h: u64) {
        self.toggle_in(bucket_of(key), h);
    }

    /// [`Digests::toggle`] for a key whose bucket is known.
    pub(crate) fn toggle_in(&self, bucket: u32, h: u64) {
        self.leaves[bucket as usize].fetch_xor(h, Ordering::AcqRel);
    }

    /// Digests with these leaves (from a saved snapshot); `None` unless there are [`LEAVES`].
    pub(crate) fn from_leaves(leaves: impl ExactSizeIterator<Item = u64>) -> Option<Self> {
        (leaves.len() == LEAVES).then(|| Digests {
            leaves: leaves.map(AtomicU64::new).collect(),
        })
    }

    pub(crate) fn snapshot(&self) -> DigestTree {
        DigestTree {
            leaves: self
                .leaves
                .iter()
                .map(|a| a.load(Ordering::Acquire))
                .collect(),
        }
    }
}

/// A snapshot of a replica's digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestTree {
    leaves: Vec<u64>,
}

impl DigestTree {
    /// The digests of an empty replica.
    #[cfg(feature = "scylla")]
    pub(crate) fn zero() -> Self {
        DigestTree {
            leaves: vec![0; LEAVES],
        }
    }

    /// A tree of these leaves ([`LEAVES`] of them).
    #[cfg(feature = "scylla")]
    pub(crate) fn from_vec(leaves: Vec<u64>) -> Self {
        debug_assert_eq!(leaves.len(), LEAVES);
        DigestTree { leaves }
    }

    /// The leaf digests, one per bucket.
    pub fn leaves(&self) -> &[u64] {
        &self.leaves
    }

    /// The digests at `depth` (0 = root, [`LEAF_BITS`] = leaves): `2^depth` values, each the XOR
    /// of the leaves below it.
    pub fn level(&self, depth: u32) -> Vec<u64> {
        let depth = depth.min(LEAF_BITS);
        let width = 1usize << (LEAF_BITS - depth);
        self.leaves
            .chunks(width)
            .map(|c| c.iter().fold(0, |a, b| a ^ b))
            .collect()
    }

    /// The root digest: equal roots mean equal replicas.
    pub fn root(&self) -> u64 {
        self.leaves.iter().fold(0, |a, b| a ^ b)
    }

    /// Buckets whose digests differ from `other`'s.
    pub fn differing(&self, other: &DigestTree) -> Vec<u32> {
        self.leaves
            .iter()
            .zip(&other.leaves)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_digest_is_order_free_and_reversible() {
        let a = Digests::new();
        let b = Digests::new();
        let items = [(&b"k1"[..], &b"v1"[..]), (b"k2", b"v2"), (b"k3", b"v3")];
        for (k, v) in items {
            a.toggle(k, entry_hash(k, v));
        }
        for (k, v) in items.iter().rev() {
            b.toggle(k, entry_hash(k, v));
        }
        assert_eq!(a.snapshot(), b.snapshot());
        b.toggle(b"k2", entry_hash(b"k2", b"v2"));
        b.toggle(b"k2", entry_hash(b"k2", b"changed"));
        let (sa, sb) = (a.snapshot(), b.snapshot());
        assert_ne!(sa.root(), sb.root());
        assert_eq!(sa.differing(&sb), vec![bucket_of(b"k2")]);
        assert_eq!(sa.level(0), vec![sa.root()]);
        assert_eq!(sa.level(LEAF_BITS).len(), LEAVES);
    }
}
