//! The node's live heap (`starling_heap_live_bytes`): the bytes the program holds from its
//! allocator, beside the resident set.
//!
//! The resident set (RSS) is not the live heap: an allocator keeps freed pages for reuse, and
//! mimalloc's per-thread pages fill towards a steady state over the first minutes of load (a
//! one-minute soak's node: its arenas' resident pages grew from 5 to 80 MiB while its live heap
//! stayed under 30 MiB, RELIABILITY.md "Soak"). A leak raises the live heap; the allocator's
//! holding raises only the RSS. So a short soak checks the live heap and a long one the RSS.
//!
//! Counting costs a shared atomic add per allocation and per free (`cap::Cap` around the
//! allocator: +15–35 ns per allocation and free with two threads allocating, measured beside the
//! bare allocator), so it is the `heap-count` cargo feature: off in a release build, on in the
//! api's tests (its own dev-dependency turns it on), where the fault suite's soak reads it. The
//! binary installs the counting allocator and registers its reader with [`count_with`].

use std::sync::OnceLock;

static LIVE: OnceLock<fn() -> usize> = OnceLock::new();

/// Makes [`live_bytes`] answer with `read` (the binary's counting allocator). Only the first
/// call counts.
pub fn count_with(read: fn() -> usize) {
    let _ = LIVE.set(read);
}

/// The live heap in bytes; `None` in a build without the `heap-count` feature.
pub fn live_bytes() -> Option<u64> {
    LIVE.get().map(|read| read() as u64)
}
