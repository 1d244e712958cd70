//! The client-id filter: which client-id index entries (`mc/conv/sender/client_id`) this node's
//! store may hold, so that step 1 of a send ([`crate::send`]) skips its point read for a client
//! id the store has never seen (nearly every send: a client id is new until it is retried).
//!
//! A Bloom filter over the entries' keys: a fixed array of bits ([`BITS`], 2 MiB), [`HASHES`]
//! bits an entry from one xxh3 of the key (double hashing), set atomically. It answers "maybe"
//! (then the index is read, as before) or "certainly not" (the read is skipped); never a wrong
//! "not". So it is exact only while every entry the store holds went through it:
//! - every entry this node writes is inserted **before** its write ([`ClientIds::insert`]: the
//!   claim walk's index entries, in one commit with their slot or in the group's batch);
//! - the entries already in the store when the node starts are inserted by one scan of the
//!   index ([`crate::Messenger::load_client_ids`]); until it ends every answer is "maybe";
//! - entries other nodes write reach a store behind this node's back, so the filter is used
//!   only where there are none: one node on its own store (memory or embedded engine, no
//!   cluster, [`crate::MessengerConfig::client_id_filter`]). Elsewhere every answer is "maybe".
//!
//! Bounded by construction: the bits never grow; as entries accumulate more answers are
//! "maybe" (false positives: the read that was always made), counted in
//! [`ClientIdStats::maybe`] against [`ClientIdStats::skipped`]. Nothing is ever removed (a
//! removed entry only costs a read).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bits of the filter (2^24: 2 MiB; at a million entries about 0.3 % false positives).
pub const BITS: usize = 1 << 24;
/// Bits set per entry.
pub const HASHES: u64 = 4;

/// Counters of the filter, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ClientIdStats {
    /// Entries inserted (writes of this node and the start-up scan).
    pub inserted: AtomicU64,
    /// Lookups answered "certainly not" (an index read skipped).
    pub skipped: AtomicU64,
    /// Lookups answered "maybe" (the index read made): a retry, a false positive, or the filter
    /// not in use (a cluster, or the start-up scan not done).
    pub maybe: AtomicU64,
}

/// The filter (see the module's documentation).
pub struct ClientIds {
    bits: Box<[AtomicU64]>,
    /// Whether "certainly not" may be answered: in use here and loaded.
    ready: AtomicBool,
    stats: ClientIdStats,
}

impl std::fmt::Debug for ClientIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIds")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for ClientIds {
    fn default() -> Self {
        ClientIds {
            bits: (0..BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicBool::new(false),
            stats: ClientIdStats::default(),
        }
    }
}

impl ClientIds {
    /// A filter that is never used (no bits: every answer "maybe"), for a node where it may
    /// not be ([`crate::MessengerConfig::client_id_filter`] off).
    pub fn unused() -> Self {
        ClientIds {
            bits: Box::default(),
            ready: AtomicBool::new(false),
            stats: ClientIdStats::default(),
        }
    }

    /// The bit positions of `key`.
    fn positions(key: &[u8]) -> impl Iterator<Item = usize> {
        let h = xxhash_rust::xxh3::xxh3_128(key);
        let (a, b) = (h as u64, ((h >> 64) as u64) | 1);
        (0..HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % BITS as u64) as usize)
    }

    /// Notes that the store may hold the index entry `key` (call before writing it).
    pub fn insert(&self, key: &[u8]) {
        if self.bits.is_empty() {
            return;
        }
        for p in Self::positions(key) {
            self.bits[p / 64].fetch_or(1 << (p % 64), Ordering::SeqCst);
        }
        self.stats.inserted.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the store may hold the index entry `key` (`false`: certainly not).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let maybe = !self.ready.load(Ordering::SeqCst)
            || Self::positions(key)
                .all(|p| self.bits[p / 64].load(Ordering::SeqCst) & (1 << (p % 64)) != 0);
        let counter = if maybe {
            &self.stats.maybe
        } else {
            &self.stats.skipped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        maybe
    }

    /// From now on "certainly not" may be answered (every entry of the store is in).
    pub(crate) fn set_ready(&self) {
        if self.bits.is_empty() {
            return;
        }
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Whether "certainly not" is answered.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The counters.
    pub fn stats(&self) -> &ClientIdStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_maybe_until_ready_then_never_a_wrong_no() {
        let f = ClientIds::default();
        assert!(f.may_contain(b"absent"), "not loaded: maybe");
        f.set_ready();
        assert!(!f.may_contain(b"absent"));
        let keys: Vec<String> = (0..10_000).map(|i| format!("mc/1/2/c{i}")).collect();
        for k in &keys {
            f.insert(k.as_bytes());
        }
        assert!(keys.iter().all(|k| f.may_contain(k.as_bytes())));
        let false_positives = (0..10_000)
            .filter(|i| f.may_contain(format!("mc/1/2/other{i}").as_bytes()))
            .count();
        assert!(false_positives < 10, "{false_positives} false positives");
        assert_eq!(f.stats().inserted.load(Ordering::Relaxed), 10_000);
        assert!(f.stats().skipped.load(Ordering::Relaxed) >= 9_990);
    }

    #[test]
    fn an_unused_filter_always_answers_maybe() {
        let f = ClientIds::unused();
        f.insert(b"k");
        f.set_ready();
        assert!(!f.is_ready());
        assert!(f.may_contain(b"k") && f.may_contain(b"other"));
        assert_eq!(f.stats().inserted.load(Ordering::Relaxed), 0);
    }
}
