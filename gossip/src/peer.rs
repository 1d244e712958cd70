//! A member of the cluster as the membership protocol knows it.

use serde::{Deserialize, Serialize};
use starling_store::NodeId;

/// A member: its store node id, region, transport address and incarnation. A restarted node
/// comes back with a larger incarnation, so the cluster takes it for the same node, renewed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    /// The node's id in the store (its region is in the top bits).
    pub node: NodeId,
    /// The region's name.
    pub region: String,
    /// Where to reach it (`host:port` for TCP, a name in the simulation).
    pub addr: String,
    /// Bumped on every restart and rejoin.
    pub incarnation: u64,
}

impl Peer {
    /// A placeholder for a seed known only by address: the membership protocol learns its real
    /// identity from the answer.
    pub fn seed(addr: impl Into<String>) -> Self {
        Peer {
            node: NodeId(0),
            region: String::new(),
            addr: addr.into(),
            incarnation: 0,
        }
    }
}

impl foca::Identity for Peer {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Peer {
            incarnation: self.incarnation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}
