//! Starling's versioned key-value layer.
//!
//! Every piece of Starling's data is a key whose value is a small CRDT [`Record`]: versioned by a
//! dotted version vector, stamped by a hybrid logical clock, merged by its [`Kind`]'s rule. The
//! [`Store`] trait is the one interface above it; engines implement it:
//! - [`open_memory`]: sharded maps, for tests and caches;
//! - [`open_embedded`]: fjall on local disk, the default, nothing to install;
//! - `open_scylla` (feature `scylla`): a ScyllaDB or Cassandra cluster.
//!
//! Modules: [`node`] (node and region ids), [`hlc`] (clock), [`version`] (dots, version vectors),
//! [`ids`] (Snowflake ids), [`record`] (the CRDT and its merge), [`key`] (keys, keyspaces), [`codec`] (encodings),
//! [`contract`] (the trait and its types), [`lane`] (where one caller's blocking store work runs), [`consumer`] (resumable change-feed consumers), [`counted`] (sets' elements counted exactly by a consumer), [`trim`] (the feed trimmed below them), `settings` (feature `clap`: the value types of settings groups declared with clap), [`digest`] (anti-entropy digests), `engine` (the
//! shared write path over raw backends), [`conformance`] (the suite every engine passes).

pub mod codec;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod consumer;
pub mod contract;
pub mod counted;
pub mod digest;
mod engine;
pub mod error;
pub mod hlc;
pub mod ids;
pub mod key;
pub mod lane;
pub mod node;
pub mod record;
#[cfg(feature = "clap")]
pub mod settings;
pub mod tombstones;
pub mod trim;
pub mod version;

pub use consumer::{FeedConsumer, Wake, drive};
pub use contract::{
    ApplyReport, BucketHashes, BulkLoad, BulkReport, BulkRun, CallHandler, CasOutcome, CasRouter,
    Change, Delta, Limits, LocalCas, MemoryStats, Mutation, Origin, ScanPage, ScanRequest, Store,
    StoreExt, load_runs,
};
pub use digest::DigestTree;
#[cfg(feature = "scylla")]
pub use engine::scylla::{Consistency, Replication, ScyllaOptions, Writers, open_scylla};
pub use engine::{
    EmbeddedOptions, FsyncPolicy, forget_tombstone_index, open_embedded, open_memory,
    open_memory_plain_keys, open_memory_sharded_feed,
};
pub use error::{Result, StoreError};
pub use hlc::{Hlc, HlcClock};
pub use ids::IdGenerator;
pub use key::{Key, Keyspace};
pub use lane::{LaneStats, StoreLane};
pub use node::{NodeId, RegionId};
pub use record::{Kind, Record, Versioned};
pub use tombstones::{Collected, Tombstone, TombstoneIndex};
#[cfg(feature = "clap")]
pub use trim::TrimSettings;
pub use trim::{TrimConfig, TrimStats, Trimmer};
pub use version::{Dot, VersionVector};
