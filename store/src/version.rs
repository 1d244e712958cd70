//! Dots and version vectors.
//!
//! A [`Dot`] names one write: the node that accepted it and that node's clock stamp at the time.
//! Because a node's stamps only grow, a [`VersionVector`] entry `node → stamp` covers every write
//! that node made to the key up to that stamp: "I have seen these". Using HLC stamps as dot
//! counters (instead of per-key counters) means a dot is never reused, even after a tombstone
//! and its context have been collected.

use crate::hlc::Hlc;
use crate::node::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One write: the accepting node and its clock stamp. Ordered by stamp first, so the largest dot
/// of a set is its last writer by hybrid time (ties broken by node id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// When the write was accepted.
    pub hlc: Hlc,
    /// Which node accepted it.
    pub node: NodeId,
}

/// The causal context of a key: per node, the largest stamp of its writes seen here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<NodeId, Hlc>);

impl VersionVector {
    /// An empty vector: nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `dot` is covered: its node's entry is at or past its stamp.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.0.get(&dot.node).is_some_and(|h| *h >= dot.hlc)
    }

    /// Adds one dot.
    pub fn insert(&mut self, dot: Dot) {
        let e = self.0.entry(dot.node).or_insert(dot.hlc);
        if *e < dot.hlc {
            *e = dot.hlc;
        }
    }

    /// Pointwise maximum with `other`.
    pub fn join(&mut self, other: &VersionVector) {
        for (node, hlc) in &other.0 {
            self.insert(Dot {
                hlc: *hlc,
                node: *node,
            });
        }
    }

    /// Whether every write `other` has seen, this has seen too.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other
            .0
            .iter()
            .all(|(n, h)| self.0.get(n).is_some_and(|m| m >= h))
    }

    /// The entry of one node.
    pub fn get(&self, node: NodeId) -> Option<Hlc> {
        self.0.get(&node).copied()
    }

    /// The largest stamp in the vector.
    pub fn max_hlc(&self) -> Hlc {
        self.0.values().copied().max().unwrap_or(Hlc::ZERO)
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries, by node.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Hlc)> + '_ {
        self.0.iter().map(|(n, h)| (*n, *h))
    }
}

impl FromIterator<Dot> for VersionVector {
    fn from_iter<I: IntoIterator<Item = Dot>>(iter: I) -> Self {
        let mut v = VersionVector::new();
        for d in iter {
            v.insert(d);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::RegionId;

    fn dot(node: u64, t: u64) -> Dot {
        Dot {
            hlc: Hlc(t),
            node: NodeId::new(RegionId(1), node),
        }
    }

    #[test]
    fn contains_and_dominates() {
        let a: VersionVector = [dot(1, 5), dot(2, 3)].into_iter().collect();
        assert!(a.contains(&dot(1, 4)));
        assert!(!a.contains(&dot(1, 6)));
        assert!(!a.contains(&dot(3, 1)));
        let b: VersionVector = [dot(1, 5)].into_iter().collect();
        assert!(a.dominates(&b));
        assert!(!b.dominates(&a));
        let mut c = b.clone();
        c.join(&a);
        assert_eq!(c, a);
    }
}
