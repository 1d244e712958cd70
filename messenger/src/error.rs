//! Errors of the messenger.

use starling_store::StoreError;

/// What a messenger operation can fail with; the API maps each to a status or an error frame.
#[derive(Debug, thiserror::Error)]
pub enum MessengerError {
    /// A field out of its bounds.
    #[error("{0}")]
    Invalid(&'static str),
    /// No such conversation (or the caller may not know it exists).
    #[error("conversation not found")]
    NotFound,
    /// The caller is not a member.
    #[error("not a member of this conversation")]
    NotMember,
    /// A block between the two users forbids it.
    #[error("blocked")]
    Blocked,
    /// A user named as a member does not exist.
    #[error("unknown user {0}")]
    UnknownUser(u64),
    /// The group would exceed the member cap.
    #[error("a group has at most {0} members")]
    TooManyMembers(usize),
    /// A field out of its bounds (with a computed message).
    #[error("{0}")]
    InvalidMsg(String),
    /// The caller's role does not allow it.
    #[error("{0}")]
    ForbiddenMsg(String),
    /// The current state does not allow it (e.g. an owner leaving without a successor).
    #[error("{0}")]
    ConflictMsg(String),
    /// No such message in the conversation.
    #[error("message not found")]
    MessageNotFound,
    /// The message is below the conversation's retention floor: trimmed ([`crate::retention`]).
    #[error("the message is past the conversation's history retention (first kept seq {0})")]
    Trimmed(u64),
    /// Sequence claims kept losing races; retry.
    #[error("the conversation is too busy; retry")]
    Contended,
    /// The store failed (or the owner is unreachable).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Redis bus failed.
    #[error("redis: {0}")]
    Redis(String),
}
