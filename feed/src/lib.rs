//! Home timelines (issue: feed): fan-out on write from the store's change feed into capped
//! per-user timelines cached in moka (L1) and Redis sorted sets (L2), hybrid pull for authors
//! with many followers, lazy rebuild for inactive users, cursor pagination that never skips or
//! repeats. Timelines are regional derived state, never replicated.
