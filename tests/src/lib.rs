//! Cross-crate, multi-process and simulation tests of Starling.
//!
//! The tests live in `tests/`; `src/bin` holds the small helper programs they drive as child
//! processes (for example `kv-writer`, which writes to an embedded store and reports each
//! acknowledged write so a test can `kill -9` it and check that nothing acknowledged was lost).
//! This library holds what those programs and tests share.

use starling_store::{Key, Keyspace};

/// Keyspace of the durability test's registers.
pub const REGISTERS: Keyspace = Keyspace::new("dur-r");
/// Keyspace of the durability test's set elements.
pub const ELEMENTS: Keyspace = Keyspace::new("dur-s");
/// Keyspace of the durability test's CAS chain.
pub const CAS: Keyspace = Keyspace::new("dur-c");

/// The counter key of the durability test.
pub fn counter_key() -> Key {
    Keyspace::new("dur-n").key().finish()
}

/// The register key of write number `i`.
pub fn register_key(i: u64) -> Key {
    REGISTERS.key().u64(i).finish()
}

/// The value written at `i`: deterministic, sized 1..=2000 bytes so writes span journal blocks.
pub fn register_value(i: u64) -> Vec<u8> {
    let len = 1 + (i.wrapping_mul(2_654_435_761) % 2000) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}
