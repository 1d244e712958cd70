//! Replication of the store between nodes and regions: peer to peer, no master.
//!
//! - [`node`]: the sans-IO protocol core (SWIM membership through foca, push of new records,
//!   anti-entropy over digest trees, CAS routing to a key's owner);
//! - [`reconcile`]: anti-entropy's comparison of a digest bucket by (key hash, entry hash)
//!   summaries, so only the records that differ are shipped;
//! - [`wire`]: authenticated, versioned, size-capped frames;
//! - [`wan`]: the simulated WAN between regions (latency, jitter, loss, partitions);
//! - [`peer`]: a member's identity;
//! - [`reaper`]: the tombstone reaper, bounded passes from a saved position, beside the core;
//! - [`seeds`]: seeds by IP or DNS name, every record used, resolved on every join attempt;
//! - `settings` (cargo feature `clap`): the gossip settings of `starling serve` as a clap group,
//!   checked once into what a node joins its cluster with;
//! - `sim` (cargo feature `sim`, for tests and benchmarks; not in the release library): a seeded
//!   discrete-event simulation that drives many cores over the WAN model;
//! - [`transport`]: the tokio layer (TCP, timers, WAN delays) and the [`GossipHandle`].
//!
//! **Architecture Invariant:** this crate moves `starling_store::Delta`s and knows nothing of
//! users, posts or any other domain type.

pub mod node;
pub mod peer;
pub mod reaper;
pub mod reconcile;
pub mod seeds;
#[cfg(feature = "clap")]
pub mod settings;
#[cfg(feature = "sim")]
pub mod sim;
pub mod transport;
pub mod wan;
pub mod wire;

pub use node::{
    Arrival, CallStart, CasError, CasStart, GossipConfig, GossipMetrics, GossipNode, IncomingCall,
    MemberState, NotDurable, Outbound, PUSH_CONSUMER,
};
pub use peer::Peer;
pub use transport::{GossipHandle, GossipService, TransportConfig, TransportError};
pub use wan::{Route, Wan, WanLink};
pub use wire::{Envelope, FrameCodec, Message, WireError};
