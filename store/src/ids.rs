//! 64-bit time-ordered ids minted without coordination (Snowflake).
//!
//! Layout: 41 bits of milliseconds since 2024-01-01 (good until 2093), 10 bits of node (a hash of
//! the node id), 12 bits of sequence within the millisecond. Ids from one generator strictly
//! increase; ids from different nodes differ in their node bits. Sorting ids sorts by creation
//! time to the millisecond, which is what "newest first" lists rely on.

use crate::node::NodeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const EPOCH_MS: u64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;

/// Mints ids for one node. Lock-free; safe to share.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    /// The last id handed out.
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator for `node`.
    pub fn new(node: NodeId) -> Self {
        let h = xxhash_rust::xxh3::xxh3_64(&node.0.to_be_bytes());
        IdGenerator {
            node: h & ((1 << NODE_BITS) - 1),
            last: AtomicU64::new(0),
        }
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(EPOCH_MS)
    }

    /// A new id, larger than every id this generator minted before.
    pub fn next_id(&self) -> u64 {
        let base = (Self::now_ms() << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // Same millisecond (or a clock step back): take the next sequence number, borrowing
            // from the next millisecond when 4096 ids were minted in this one.
            let next = if base > last {
                base
            } else {
                let seq = (last & ((1 << SEQ_BITS) - 1)) + 1;
                if seq < (1 << SEQ_BITS) {
                    last + 1
                } else {
                    ((last >> (NODE_BITS + SEQ_BITS)) + 1) << (NODE_BITS + SEQ_BITS)
                        | (self.node << SEQ_BITS)
                }
            };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Consecutive ids for `node` from Unix millisecond `ms` on (4096 a millisecond), the same
    /// on every run: for deterministic bulk loads (`starling seed`), whose ids must not depend
    /// on the clock. Never draw from it and from [`IdGenerator::next_id`] of the same node.
    pub fn sequence(node: NodeId, ms: u64) -> impl Iterator<Item = u64> {
        let node = IdGenerator::new(node).node;
        let start = ms.saturating_sub(EPOCH_MS);
        (0u64..).map(move |i| {
            ((start + (i >> SEQ_BITS)) << (NODE_BITS + SEQ_BITS))
                | (node << SEQ_BITS)
                | (i & ((1 << SEQ_BITS) - 1))
        })
    }

    /// Milliseconds since the Unix epoch at which an id was minted.
    pub fn millis_of(id: u64) -> u64 {
        (id >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::RegionId;

    #[test]
    fn a_sequence_is_fixed_increasing_and_timed() {
        let node = NodeId::new(RegionId(1), 7);
        let at = EPOCH_MS + 86_400_000;
        let a: Vec<u64> = IdGenerator::sequence(node, at).take(10_000).collect();
        let b: Vec<u64> = IdGenerator::sequence(node, at).take(10_000).collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(IdGenerator::millis_of(a[0]), at);
        assert_eq!(IdGenerator::millis_of(a[9_999]), at + 2);
    }

    #[test]
    fn ids_increase_and_carry_their_time() {
        let g = IdGenerator::new(NodeId::new(RegionId(1), 7));
        let mut prev = 0;
        for _ in 0..20_000 {
            let id = g.next_id();
            assert!(id > prev);
            prev = id;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(IdGenerator::millis_of(prev).abs_diff(now) < 5_000);
    }

    #[test]
    fn nodes_do_not_collide() {
        let a = IdGenerator::new(NodeId::new(RegionId(1), 1));
        let b = IdGenerator::new(NodeId::new(RegionId(1), 2));
        let xs: std::collections::HashSet<u64> = (0..1000).map(|_| a.next_id()).collect();
        assert!((0..1000).all(|_| !xs.contains(&b.next_id())));
    }
}
