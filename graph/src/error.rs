//! Errors of the graph.

use starling_store::StoreError;

/// What a graph operation can fail with; the API maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The handle is not 3–30 characters of `[a-z0-9_]`.
    #[error("a handle is 3 to 30 characters of a-z, 0-9 and _")]
    InvalidHandle,
    /// Someone has the handle.
    #[error("the handle is taken")]
    HandleTaken,
    /// The password does not meet the rules.
    #[error("{0}")]
    WeakPassword(&'static str),
    /// A field is out of its bounds.
    #[error("{0}")]
    Invalid(&'static str),
    /// Wrong handle or password (never says which).
    #[error("wrong handle or password")]
    WrongCredentials,
    /// The token is unknown, expired or revoked.
    #[error("invalid or expired token")]
    InvalidToken,
    /// No such user or request.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A block forbids it.
    #[error("blocked")]
    Blocked,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The store failed (or a needed owner is unreachable).
    #[error(transparent)]
    Store(#[from] StoreError),
}
