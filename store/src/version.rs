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
///
/// Kept as a vector sorted by node (a key is written by few nodes, so this beats a tree map in
/// size and decode time); decoding refuses a vector that is not strictly sorted, so the encoding
/// stays canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<(NodeId, Hlc)>")]
pub struct VersionVector(Vec<(NodeId, Hlc)>);

impl TryFrom<Vec<(NodeId, Hlc)>> for VersionVector {
    type Error = &'static str;
    fn try_from(v: Vec<(NodeId, Hlc)>) -> Result<Self, Self::Error> {
        if v.windows(2).all(|w| w[0].0 < w[1].0) {
            Ok(VersionVector(v))
        } else {
            Err("version vector is not sorted by node")
        }
    }
}

impl VersionVector {
    /// An empty vector: nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, node: NodeId) -> Result<usize, usize> {
        self.0.binary_search_by_key(&node, |(n, _)| *n)
    }

    /// Whether `dot` is covered: its node's entry is at or past its stamp.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.get(dot.node).is_some_and(|h| h >= dot.hlc)
    }

    /// Adds one dot.
    pub fn insert(&mut self, dot: Dot) {
        match self.find(dot.node) {
            Ok(i) => {
                if self.0[i].1 < dot.hlc {
                    self.0[i].1 = dot.hlc;
                }
            }
            Err(i) => self.0.insert(i, (dot.node, dot.hlc)),
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
            .all(|(n, h)| self.get(*n).is_some_and(|m| m >= *h))
    }

    /// The entry of one node.
    pub fn get(&self, node: NodeId) -> Option<Hlc> {
        self.find(node).ok().map(|i| self.0[i].1)
    }

    /// The largest stamp in the vector.
    pub fn max_hlc(&self) -> Hlc {
        self.0.iter().map(|(_, h)| *h).max().unwrap_or(Hlc::ZERO)
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries, by node.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Hlc)> + '_ {
        self.0.iter().copied()
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

    #[test]
    fn decoding_refuses_unsorted_vectors() {
        let good: VersionVector = [dot(2, 1), dot(1, 1)].into_iter().collect();
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<VersionVector>(&bytes).unwrap(), good);
        let bad = vec![(dot(2, 1).node, Hlc(1)), (dot(1, 1).node, Hlc(1))];
        let bytes = postcard::to_allocvec(&bad).unwrap();
        assert!(postcard::from_bytes::<VersionVector>(&bytes).is_err());
    }
}
