//! The tombstone index's answers: whether an engine keeps one ([`TombstoneIndex`]) and what a
//! collection from it did ([`Collected`]).
//!
//! Every engine writes, with each tombstone (the same batch; ScyllaDB's shared writers: the same
//! round trip, see `engine/scylla/tombs.rs`), an entry ordered by the tombstone's last write (its
//! record's `max_hlc`), and removes it when the key is written again or purged: the index holds
//! exactly the stored tombstones, oldest first. The
//! reaper (`starling_gossip::reaper`) reads it up to its grace horizon instead of every record,
//! so a pass costs what is due, whatever the data. See ARCHITECTURE.md, "Tombstone index".

use crate::hlc::Hlc;
use crate::key::Key;

/// Whether a store keeps a tombstone index, and whether it holds every tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TombstoneIndex {
    /// The store keeps none (the trait's default; every engine of this crate keeps one): find
    /// tombstones by scanning the records.
    Absent,
    /// It keeps one, but a store written before it did may hold tombstones it lacks: scan
    /// every record once, indexing the tombstones found ([`crate::Store::index_tombstones`]),
    /// then say so ([`crate::Store::tombstones_indexed`]).
    Partial,
    /// Every stored tombstone is in it.
    Complete,
}

/// One entry of the tombstone index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The tombstone's last write (its record's `max_hlc` when it was indexed).
    pub hlc: Hlc,
    /// Its key.
    pub key: Key,
}

/// What one page of [`crate::Store::collect_indexed`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Index entries read (each is consumed: purged with its record, or dropped as stale).
    pub read: u64,
    /// Tombstones removed.
    pub purged: u64,
    /// Entries whose key was no longer that tombstone (written again since): dropped alone.
    pub stale: u64,
    /// The page was full: more entries may be due.
    pub more: bool,
}
