//! Replication of the store between nodes and regions (issue: gossip).
//!
//! Will own: SWIM membership and failure detection (foca) with each member's region; push of new
//! deltas from the store's change feed to random peers (always one in another region); periodic
//! anti-entropy over the store's digest tree; CAS routing to a key's owner; the simulated WAN
//! (latency, jitter, loss, partitions between regions); the authenticated wire format. It knows
//! nothing of users or posts: it moves `starling_store::Delta`s.
