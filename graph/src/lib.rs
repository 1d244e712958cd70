//! The social graph (issue: social core): users, sessions and tokens, handles unique by CAS,
//! follows (add-wins set elements), friend requests, blocks, follower/following lists by cursor,
//! counts as CRDT counters. Talks only to `starling_store`.
