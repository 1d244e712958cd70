//! Keys and typed keyspaces.
//!
//! A key is bytes. Domain crates build them with [`Keyspace::key`], which starts with the
//! keyspace's name and appends order-preserving segments (the FoundationDB tuple idea): `u64` as
//! 8 big-endian bytes, so numeric order is byte order, and strings with `0x00` escaped as
//! `0x00 0xFF` and terminated by `0x00`, so a string segment never runs into the next one and
//! prefixes of a key are prefixes of its bytes. "Indexes are keys too": an index is a keyspace
//! whose keys end in the indexed id.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// A key of the store.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub Bytes);

impl Key {
    /// A key from raw bytes.
    pub fn from_bytes(b: impl Into<Bytes>) -> Self {
        Key(b.into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (never valid in a store).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this key starts with `prefix`.
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        self.0.starts_with(prefix)
    }

    /// Whether this key is node-local derived state ([`Keyspace::local`]): never logged in the
    /// change feed, never in digests, never replicated.
    pub fn is_local(&self) -> bool {
        self.0.first() == Some(&LOCAL_PREFIX)
    }
}

/// First byte of every node-local key.
pub const LOCAL_PREFIX: u8 = 0xff;

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(\"{}\")", self.0.escape_ascii())
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Vec<u8>> for Key {
    fn from(v: Vec<u8>) -> Self {
        Key(Bytes::from(v))
    }
}

/// A named family of keys. The name is the first segment of each key; names must be unique and
/// are best kept short (they are stored in every key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keyspace {
    name: &'static str,
    local: bool,
}

impl Keyspace {
    /// A replicated keyspace. `name` must not contain `0x00`.
    pub const fn new(name: &'static str) -> Self {
        Keyspace { name, local: false }
    }

    /// A node-local keyspace: derived state this node computes for itself (counts, cursors).
    /// Its keys start with [`LOCAL_PREFIX`]; the store never logs, digests or replicates them.
    pub const fn local(name: &'static str) -> Self {
        Keyspace { name, local: true }
    }

    /// Bytes before the first segment of every key of this keyspace.
    pub fn prefix_len(&self) -> usize {
        usize::from(self.local) + self.name.len() + 1
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts a key in this keyspace.
    pub fn key(&self) -> KeyBuilder {
        let mut b = KeyBuilder {
            buf: BytesMut::with_capacity(32),
        };
        if self.local {
            b.buf.put_u8(LOCAL_PREFIX);
        }
        b.buf.put_slice(self.name.as_bytes());
        b.buf.put_u8(0);
        b
    }

    /// The prefix every key of this keyspace starts with.
    pub fn prefix(&self) -> Key {
        self.key().finish()
    }
}

/// Appends segments to a key; see the module documentation for the encoding.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    buf: BytesMut,
}

impl KeyBuilder {
    /// Appends a number; numeric order is key order.
    pub fn u64(mut self, v: u64) -> Self {
        self.buf.put_u64(v);
        self
    }

    /// Appends a number whose order is reversed: larger numbers sort first ("newest first" lists).
    pub fn u64_desc(mut self, v: u64) -> Self {
        self.buf.put_u64(!v);
        self
    }

    /// Appends a string (or any bytes), escaped and terminated.
    pub fn str(mut self, s: impl AsRef<[u8]>) -> Self {
        for &b in s.as_ref() {
            self.buf.put_u8(b);
            if b == 0 {
                self.buf.put_u8(0xff);
            }
        }
        self.buf.put_u8(0);
        self
    }

    /// Appends raw bytes with no framing: only as the last segment.
    pub fn raw(mut self, b: impl AsRef<[u8]>) -> Self {
        self.buf.put_slice(b.as_ref());
        self
    }

    /// The key.
    pub fn finish(self) -> Key {
        Key(self.buf.freeze())
    }
}

/// Reads back a big-endian `u64` at `offset` of a key, as written by [`KeyBuilder::u64`].
pub fn read_u64(key: &[u8], offset: usize) -> Option<u64> {
    let b: [u8; 8] = key.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: Keyspace = Keyspace::new("u");

    #[test]
    fn numbers_sort_numerically() {
        let a = USERS.key().u64(2).finish();
        let b = USERS.key().u64(10).finish();
        assert!(a < b);
        let a = USERS.key().u64_desc(2).finish();
        let b = USERS.key().u64_desc(10).finish();
        assert!(a > b);
        assert_eq!(
            read_u64(USERS.key().u64(77).finish().as_bytes(), 2),
            Some(77)
        );
    }

    #[test]
    fn local_keyspaces_are_marked() {
        let l = Keyspace::local("cnt").key().u64(3).finish();
        assert!(l.is_local());
        assert!(!USERS.key().u64(3).finish().is_local());
        assert_eq!(
            read_u64(l.as_bytes(), Keyspace::local("cnt").prefix_len()),
            Some(3)
        );
    }

    #[test]
    fn strings_are_prefix_free_and_ordered() {
        let ab = USERS.key().str("ab").u64(1).finish();
        let abc = USERS.key().str("abc").u64(0).finish();
        let nul = USERS.key().str(b"a\0b").finish();
        assert!(ab < abc);
        assert!(ab.starts_with(USERS.prefix().as_bytes()));
        assert_ne!(nul, USERS.key().str("a").str("b").finish());
    }
}
