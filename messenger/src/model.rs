//! The domain types as stored (postcard through the store's codec). Wire types are in
//! [`crate::protocol`] and in the API crate.

use serde::{Deserialize, Serialize};

/// 1:1 or group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationKind {
    /// Two users; the same pair always has the same conversation.
    Direct,
    /// Up to the configured member cap.
    Group,
}

/// A conversation. Immutable once created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Time-ordered id.
    pub id: u64,
    /// 1:1 or group.
    pub kind: ConversationKind,
    /// Member user ids, sorted, without duplicates.
    pub members: Vec<u64>,
    /// The region whose owner nodes assign the sequence (the creator's home region).
    pub home_region: String,
    /// Who created it.
    pub created_by: u64,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
}

impl Conversation {
    /// Whether `user` is a member.
    pub fn is_member(&self, user: u64) -> bool {
        self.members.binary_search(&user).is_ok()
    }
}

/// A message: the value of its sequence slot. `sender` and `client_id` come first so the
/// idempotency search can decode just them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Sender's user id.
    pub sender: u64,
    /// The sender's idempotency key.
    pub client_id: String,
    /// Conversation id.
    pub conv: u64,
    /// Position in the conversation: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// Time-ordered id (unique across conversations).
    pub id: u64,
    /// Text.
    pub body: String,
    /// When the slot was claimed, ms since the epoch.
    pub sent_at_ms: u64,
}

/// The first two fields of a stored [`Message`], decoded without the rest and without copying.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageHead<'a> {
    pub(crate) sender: u64,
    pub(crate) client_id: &'a str,
}
