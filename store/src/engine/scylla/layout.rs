//! How keys map onto CQL partitions, so the scans the application does are single-partition
//! range reads, and every other scan can still be answered in key order.
//!
//! A key's *namespace* is its first segment: the bytes up to and including the first `0x00`
//! (the keyspace name and its terminator, see [`crate::key`]), or its first [`NS_MAX`] bytes
//! when there is no `0x00` there. Its *partition* is the namespace plus the next [`ENTITY`]
//! bytes (the entity id: a user id, a post id — one `u64` segment), or the whole key when it is
//! shorter. The rest of the key is the clustering key, in byte order.
//!
//! Two facts make ordered scans work across partitions: a partition is a prefix of each of its
//! keys, so partitions in byte order followed by keys in byte order inside each one is the
//! global key order; and every key under a prefix `P` lives either in `P`'s own partition (when
//! `P` is long enough to fix it, see [`fixed_partition`]) or in a partition that starts with
//! `P`. The `kv_parts` table lists the partitions of each namespace in order, so a short-prefix
//! scan walks them.

/// Longest namespace, when a key has no `0x00` early.
pub(crate) const NS_MAX: usize = 32;
/// Bytes of the key after the namespace that belong to the partition.
pub(crate) const ENTITY: usize = 8;

/// Length of the namespace of `key`, and whether it is final (the key was long enough to tell:
/// its `0x00` was seen, or it reached [`NS_MAX`]).
fn ns_len(key: &[u8]) -> (usize, bool) {
    let head = &key[..key.len().min(NS_MAX)];
    match head.iter().position(|&b| b == 0) {
        Some(i) => (i + 1, true),
        None => (head.len(), head.len() == NS_MAX),
    }
}

/// The namespace of a key.
pub(crate) fn namespace(key: &[u8]) -> &[u8] {
    &key[..ns_len(key).0]
}

/// The partition a key is stored in.
pub(crate) fn partition(key: &[u8]) -> &[u8] {
    let (ns, _) = ns_len(key);
    &key[..key.len().min(ns + ENTITY)]
}

/// The one partition holding every key under `prefix`, when the prefix is long enough to fix it.
pub(crate) fn fixed_partition(prefix: &[u8]) -> Option<&[u8]> {
    let (ns, done) = ns_len(prefix);
    (done && prefix.len() >= ns + ENTITY).then(|| &prefix[..ns + ENTITY])
}

/// The namespace of every key under `prefix`, when the prefix fixes it.
pub(crate) fn fixed_namespace(prefix: &[u8]) -> Option<&[u8]> {
    let (ns, done) = ns_len(prefix);
    done.then(|| &prefix[..ns])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Keyspace;

    #[test]
    fn keyspace_keys_partition_by_entity() {
        let ks = Keyspace::new("follows");
        let k = ks.key().u64(42).u64(7).finish();
        assert_eq!(namespace(k.as_bytes()), b"follows\0");
        assert_eq!(
            partition(k.as_bytes()),
            ks.key().u64(42).finish().as_bytes()
        );
        // The scan of one user's follows is a single-partition read…
        let p = ks.key().u64(42).finish();
        assert_eq!(fixed_partition(p.as_bytes()), Some(p.as_bytes()));
        // …the scan of the whole keyspace walks its partitions.
        assert_eq!(fixed_partition(ks.prefix().as_bytes()), None);
        assert_eq!(
            fixed_namespace(ks.prefix().as_bytes()),
            Some(&b"follows\0"[..])
        );
        assert_eq!(fixed_namespace(b"foll"), None);
    }

    #[test]
    fn short_and_unsegmented_keys() {
        assert_eq!(partition(b"ab\0c"), b"ab\0c");
        assert_eq!(partition(b"ops\0readyz-probe"), b"ops\0readyz-p");
        let long = [b'x'; 50];
        assert_eq!(namespace(&long).len(), NS_MAX);
        assert_eq!(partition(&long).len(), NS_MAX + ENTITY);
        assert_eq!(fixed_partition(&long), Some(&long[..NS_MAX + ENTITY]));
        let local = Keyspace::local("cnt").key().u64(3).finish();
        assert_eq!(namespace(local.as_bytes()), b"\xffcnt\0");
    }

    #[test]
    fn partitions_are_prefixes_of_their_keys() {
        for k in [&b"a"[..], b"ab\0", b"ab\x00123456789", b"\0\0\0"] {
            assert!(k.starts_with(partition(k)));
            assert!(partition(k).starts_with(namespace(k)));
        }
    }
}
