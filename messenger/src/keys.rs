//! Keyspaces of the messenger.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `cv` | conv id | register | [`Conversation`](crate::Conversation) |
//! | `cp` | user a, user b (a < b) | register, CAS-created at the pair region | the 1:1 [`Conversation`](crate::Conversation) |
//! | `cu` | user, conv id (descending) | set element | — (a user's conversations, newest first) |
//! | `mm` | conv, bucket (descending), seq (descending) | register, CAS-created at the home region | [`Message`](crate::Message) |
//! | `mc` | conv, sender, client id | register | seq (8 bytes) |
//! | `rd` | user, conv, seq (descending) | set element | — (read-up-to markers: the first is the marker) |
//! | `ms` | home region, shard | register, CAS'd at the home region | [`LeaseRecord`](crate::lease::LeaseRecord): who may assign the seqs of the shard's conversations |
//! | `ml` | conv | register, CAS'd at the home region | [`LeaseRecord`](crate::lease::LeaseRecord) of one conversation (the benchmark's baseline) |
//! | `mf` | conv, seq (descending) | set element | — (retention floors: the first is the first seq kept, [`crate::retention`]) |
//!
//! Messages follow Discord's layout: a partition per (conversation, bucket), rows clustered by
//! seq descending, so "the newest page" is a forward scan from the conversation's prefix and
//! "everything after seq n" is a reverse scan that starts at n. The bucket is `seq / 1024`, not a
//! time window: a slot's key must be a function of its seq alone (it is claimed by CAS), and
//! count buckets bound a partition's size where time buckets do not.

use starling_store::{Key, Keyspace};

/// Conversations by id.
pub const CONVERSATIONS: Keyspace = Keyspace::new("cv");
/// 1:1 pair keys.
pub const PAIRS: Keyspace = Keyspace::new("cp");
/// A user's conversations.
pub const BY_USER: Keyspace = Keyspace::new("cu");
/// The message log (public: the tail recognises its keys).
pub const MESSAGES: Keyspace = Keyspace::new("mm");
/// Client id → seq.
pub const CLIENT_IDS: Keyspace = Keyspace::new("mc");

/// Read-up-to markers.
pub const READ: Keyspace = Keyspace::new("rd");

/// The lease of the right to assign a conversation's seqs ([`crate::lease`]).
pub const LEASES: Keyspace = Keyspace::new("ml");

/// Retention floors ([`crate::retention`]).
pub const FLOORS: Keyspace = Keyspace::new("mf");

/// The lease of `conv`.
pub fn lease(conv: u64) -> Key {
    LEASES.key().u64(conv).finish()
}

/// The leases of shards of conversations ([`crate::lease`]).
pub const SHARD_LEASES: Keyspace = Keyspace::new("ms");

/// The lease of shard `shard` of the conversations whose home is `region`.
pub fn lease_shard(region: &str, shard: u64) -> Key {
    SHARD_LEASES.key().str(region).u64(shard).finish()
}

/// A read-up-to marker element.
pub fn read(user: u64, conv: u64, seq: u64) -> Key {
    READ.key().u64(user).u64(conv).u64_desc(seq).finish()
}

/// The prefix of one user's markers in one conversation.
pub fn read_prefix(user: u64, conv: u64) -> Key {
    READ.key().u64(user).u64(conv).finish()
}

/// The user, conversation and seq of a marker key, if `key` is one.
pub fn parse_read(key: &Key) -> Option<(u64, u64, u64)> {
    let b = key.as_bytes();
    let p = READ.prefix_len();
    if !key.starts_with(READ.prefix().as_bytes()) || b.len() != p + 24 {
        return None;
    }
    let user = starling_store::key::read_u64(b, p)?;
    let conv = starling_store::key::read_u64(b, p + 8)?;
    let seq = !starling_store::key::read_u64(b, p + 16)?;
    Some((user, conv, seq))
}

/// The conversation id of a conversation record's key, if `key` is one.
pub fn parse_conversation(key: &Key) -> Option<u64> {
    let b = key.as_bytes();
    let p = CONVERSATIONS.prefix_len();
    if !key.starts_with(CONVERSATIONS.prefix().as_bytes()) || b.len() != p + 8 {
        return None;
    }
    starling_store::key::read_u64(b, p)
}

/// Messages per bucket (a power of two).
pub const BUCKET_BITS: u32 = 10;

/// The key of a conversation.
pub fn conversation(id: u64) -> Key {
    CONVERSATIONS.key().u64(id).finish()
}

/// The pair key of two users (order does not matter).
pub fn pair(a: u64, b: u64) -> Key {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    PAIRS.key().u64(lo).u64(hi).finish()
}

/// A user's membership element.
pub fn by_user(user: u64, conv: u64) -> Key {
    BY_USER.key().u64(user).u64_desc(conv).finish()
}

/// The prefix of a user's memberships.
pub fn by_user_prefix(user: u64) -> Key {
    BY_USER.key().u64(user).finish()
}

/// The slot of message `seq` of `conv`.
pub fn message(conv: u64, seq: u64) -> Key {
    MESSAGES
        .key()
        .u64(conv)
        .u64_desc(seq >> BUCKET_BITS)
        .u64_desc(seq)
        .finish()
}

/// The prefix of a conversation's log.
pub fn messages_prefix(conv: u64) -> Key {
    MESSAGES.key().u64(conv).finish()
}

/// The conversation and seq of a message key, if `key` is one.
pub fn parse_message(key: &Key) -> Option<(u64, u64)> {
    let b = key.as_bytes();
    let p = MESSAGES.prefix_len();
    if !key.starts_with(MESSAGES.prefix().as_bytes()) || b.len() != p + 24 {
        return None;
    }
    let conv = starling_store::key::read_u64(b, p)?;
    let seq = !starling_store::key::read_u64(b, p + 16)?;
    Some((conv, seq))
}

/// The client-id index entry.
pub fn client_id(conv: u64, sender: u64, client_id: &str) -> Key {
    CLIENT_IDS
        .key()
        .u64(conv)
        .u64(sender)
        .str(client_id)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_newest_first_and_parse_back() {
        let a = message(7, 1);
        let b = message(7, 2);
        let c = message(7, 5000);
        assert!(c < b && b < a, "descending by seq, across buckets");
        assert!(a.starts_with(messages_prefix(7).as_bytes()));
        assert!(!a.starts_with(messages_prefix(8).as_bytes()));
        assert_eq!(parse_message(&c), Some((7, 5000)));
        assert_eq!(parse_message(&conversation(7)), None);
        assert_eq!(pair(3, 1), pair(1, 3));
        assert!(read(1, 7, 9) < read(1, 7, 8), "markers: the highest first");
        assert_eq!(parse_read(&read(1, 7, 9)), Some((1, 7, 9)));
        assert_eq!(parse_read(&a), None);
        assert_eq!(parse_conversation(&conversation(7)), Some(7));
        assert_eq!(parse_conversation(&a), None);
    }
}
