//! Errors of the key-value layer.

use crate::record::Kind;
use std::path::PathBuf;

/// Everything a store operation can fail with. Bad input has its own variants so callers can map
/// it to a 4xx; engine failures carry their source for the logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is empty.
    #[error("empty key")]
    EmptyKey,
    /// The key is longer than the configured maximum.
    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge {
        /// Length of the refused key.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The value is longer than the configured maximum.
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge {
        /// Length of the refused value.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// An operation of one kind was applied to a key holding another kind.
    #[error("key holds a {found:?}, not a {expected:?}")]
    KindMismatch {
        /// The kind the operation works on.
        expected: Kind,
        /// The kind stored at the key.
        found: Kind,
    },
    /// A limit or argument outside its range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Stored bytes that do not decode: the data directory is damaged.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The data directory holds something that is not a Starling store.
    #[error(
        "{path} is not a Starling data directory (it is not empty and has no STARLING_STORE marker); refusing to touch it"
    )]
    ForeignDataDir {
        /// The directory.
        path: PathBuf,
    },
    /// The data directory was written by an incompatible format version.
    #[error("{path} holds store format {found:?}, this build reads {expected:?}")]
    IncompatibleFormat {
        /// The directory.
        path: PathBuf,
        /// What the marker says.
        found: String,
        /// What this build writes.
        expected: &'static str,
    },
    /// The embedded engine failed (I/O, a damaged journal, a poisoned database).
    #[error("embedded engine: {0}")]
    Engine(#[from] fjall::Error),
    /// File-system error outside the engine (the data directory itself).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A value failed to encode or decode with the typed helpers.
    #[error("value codec: {0}")]
    Codec(#[from] postcard::Error),
    /// The owner of a key (for CAS) cannot be reached: its region is down or cut off.
    #[error("the owner of this key in region {region} is unreachable")]
    OwnerUnreachable {
        /// The owner region.
        region: String,
    },
    /// A remote node failed an operation it was asked to run.
    #[error("remote node failed: {0}")]
    Remote(String),
    /// The database cluster behind the store (ScyllaDB/Cassandra) failed, refused the schema or
    /// cannot be reached; transient failures were already retried.
    #[error("database cluster: {0}")]
    Cluster(String),
    /// A background task the operation waited for is gone (the store is shutting down).
    #[error("store is shutting down")]
    Closed,
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
