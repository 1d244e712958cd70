//! Identities of nodes and regions.
//!
//! A [`NodeId`] is a 64-bit number whose top 16 bits name the node's [`RegionId`], so every dot and
//! every version vector entry says in which region a write was accepted without a lookup table.
//! Region ids are derived from region names by a stable hash; the cluster configuration checks
//! that the names it uses do not collide.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A region, as the 16-bit id derived from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegionId(pub u16);

impl RegionId {
    /// The id of a region name: a stable hash (xxh3), the same on every node and every build.
    pub fn from_name(name: &str) -> Self {
        let h = xxhash_rust::xxh3::xxh3_64(name.as_bytes());
        RegionId((h >> 48) as u16)
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{:04x}", self.0)
    }
}

/// A node of the cluster: region in the top 16 bits, a per-region number in the low 48.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    const LOCAL_MASK: u64 = (1 << 48) - 1;

    /// A node id from its region and its number inside the region (truncated to 48 bits).
    pub fn new(region: RegionId, local: u64) -> Self {
        NodeId((u64::from(region.0) << 48) | (local & Self::LOCAL_MASK))
    }

    /// A node id derived from region and node names by a stable hash: the default when an
    /// operator names nodes rather than numbering them.
    pub fn from_names(region: &str, node: &str) -> Self {
        let local = xxhash_rust::xxh3::xxh3_64(node.as_bytes());
        Self::new(RegionId::from_name(region), local)
    }

    /// The region this node lives in.
    pub fn region(self) -> RegionId {
        RegionId((self.0 >> 48) as u16)
    }

    /// The node's number inside its region.
    pub fn local(self) -> u64 {
        self.0 & Self::LOCAL_MASK
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:012x}", self.region(), self.local())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_round_trips_through_node_id() {
        let r = RegionId::from_name("eu");
        let n = NodeId::new(r, 42);
        assert_eq!(n.region(), r);
        assert_eq!(n.local(), 42);
        assert_eq!(NodeId::from_names("eu", "a").region(), r);
    }

    #[test]
    fn region_ids_are_stable_and_distinct_for_default_names() {
        let us = RegionId::from_name("us");
        assert_eq!(us, RegionId::from_name("us"));
        assert_ne!(us, RegionId::from_name("eu"));
        assert_ne!(RegionId::from_name("eu"), RegionId::from_name("ap"));
    }
}
