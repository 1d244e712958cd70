//! The graph's keyspaces, and the merge policy of each (see ARCHITECTURE.md).
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `gu` | user id | register (LWW) | [`crate::users::UserRecord`] |
//! | `gc` | user id | register (LWW) | argon2id PHC string |
//! | `gh` | handle | register, written only by CAS at the handle region's owner | user id |
//! | `gs` | sha256(token) | register; delete revokes | [`crate::users::SessionRecord`] |
//! | `gsu` | user id, sha256(token) | set element; removed on revocation | expiry ms |
//! | `gfo` | follower, followee | set element (add wins) | followed-at ms |
//! | `gfi` | followee, follower | set element (add wins) | followed-at ms |
//! | local `gn`, `gs`, `gcur` | counts derived per node, their shadows, the feed position | node-local | see [`crate::counts`] |
//! | `gr` | request id | register (LWW) | [`crate::friends::FriendRequest`] |
//! | `gri`, `gro` | addressee or sender, request id | set element (while pending) | — |
//! | `gf` | user, friend | set element | — |
//! | `gb` | blocker, blocked | set element | — |
//! | `gd` | user id | register (LWW) | [`crate::deletion::Deletion`]: the deleted user's tombstone |
//! | `gdp` | user id | set element (while the deletion is not finished) | — |
//! | `gp` | user id | register (LWW) | [`crate::profile::Profile`] |

use starling_store::{Key, Keyspace};

pub(crate) const USERS: Keyspace = Keyspace::new("gu");
pub(crate) const CREDENTIALS: Keyspace = Keyspace::new("gc");
pub(crate) const HANDLES: Keyspace = Keyspace::new("gh");
pub(crate) const SESSIONS: Keyspace = Keyspace::new("gs");
/// Each user's sessions (see [`crate::account`]).
pub(crate) const USER_SESSIONS: Keyspace = Keyspace::new("gsu");
/// The follower → followee edge elements (public: the feed tails them).
pub const FOLLOWING: Keyspace = Keyspace::new("gfo");
/// The followee → follower edge elements (public: the fan-out worker tails them).
pub const FOLLOWERS: Keyspace = Keyspace::new("gfi");
pub(crate) const REQUESTS: Keyspace = Keyspace::new("gr");
/// Pending requests by addressee.
pub(crate) const REQUESTS_IN: Keyspace = Keyspace::new("gri");
/// Pending requests by sender.
pub(crate) const REQUESTS_OUT: Keyspace = Keyspace::new("gro");
pub(crate) const FRIENDS: Keyspace = Keyspace::new("gf");
pub(crate) const BLOCKS: Keyspace = Keyspace::new("gb");
/// Deleted accounts (see [`crate::deletion`]).
pub(crate) const DELETIONS: Keyspace = Keyspace::new("gd");
/// Deleted accounts not swept clean yet: the sweeper's list.
pub(crate) const PENDING_DELETIONS: Keyspace = Keyspace::new("gdp");

pub(crate) fn user(id: u64) -> Key {
    USERS.key().u64(id).finish()
}

pub(crate) fn pair(ks: Keyspace, a: u64, b: u64) -> Key {
    ks.key().u64(a).u64(b).finish()
}

pub(crate) fn pair_prefix(ks: Keyspace, a: u64) -> Key {
    ks.key().u64(a).finish()
}

/// The second id of a pair key.
pub(crate) fn second(key: &Key, ks: Keyspace) -> Option<u64> {
    starling_store::key::read_u64(key.as_bytes(), ks.prefix_len() + 8)
}
