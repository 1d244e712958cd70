//! Anti-entropy's reconciliation of one digest bucket: which records to ship and which to ask
//! for, decided from summaries of (key hash, entry hash) pairs instead of the records.
//!
//! Two replicas whose digests differ in a bucket usually differ in a handful of its keys: under
//! a steady write load, by the writes still on their way by push. Shipping the whole bucket
//! both ways (what anti-entropy did first) costs a read, a transfer and a merge per key, and
//! the buckets grow with the store; a summary costs 16 bytes per key and, with the entry hashes
//! kept in the store's bucket index, no record read. The asker sends its summary; the peer
//! compares it with its own, ships its records of the keys that differ or that the asker lacks,
//! and asks for the asker's records of the keys that differ or that it lacks. Merging is a join
//! (a record received changes nothing it already dominates), so shipping both versions of a
//! differing key makes the two replicas agree on it.

use serde::{Deserialize, Serialize};
use starling_store::Key;
use std::collections::HashMap;

/// One bucket's contents at the sender: a (key hash, entry hash) pair per key, in key order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSummary {
    /// The digest bucket.
    pub bucket: u32,
    /// ([`key_hash`] of the key, [`starling_store::digest::entry_hash`] of its record).
    pub entries: Vec<(u64, u64)>,
    /// Every key of the bucket is listed. A summary cut short at the exchange's cap is not, and
    /// a key it omits is not taken as missing at the sender.
    pub complete: bool,
}

/// What a summary names a key by. Within one bucket a collision would only ship or ask for one
/// record too many (both are harmless): at 2^-52 per pair of keys of a bucket, never.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The outcome of comparing this node's keys of a bucket with a peer's summary of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys whose records this node ships: the peer holds another version, or (when its
    /// summary is complete) none.
    pub send: Vec<Key>,
    /// Key hashes whose records this node asks for: it holds another version, or none.
    pub want: Vec<u64>,
}

/// Compares `mine` (this node's (key, entry hash) pairs of the bucket) with `theirs`.
pub fn plan(mine: &[(Key, u64)], theirs: &BucketSummary) -> Plan {
    let their: HashMap<u64, u64> = theirs.entries.iter().copied().collect();
    let mut mine_by_hash: HashMap<u64, u64> = HashMap::with_capacity(mine.len());
    let mut send = Vec::new();
    for (key, h) in mine {
        let kh = key_hash(key.as_bytes());
        mine_by_hash.insert(kh, *h);
        match their.get(&kh) {
            Some(t) if t == h => {}
            Some(_) => send.push(key.clone()),
            None if theirs.complete => send.push(key.clone()),
            None => {}
        }
    }
    let want = theirs
        .entries
        .iter()
        .filter(|(kh, h)| mine_by_hash.get(kh) != Some(h))
        .map(|(kh, _)| *kh)
        .collect();
    Plan { send, want }
}

/// The summary of `mine` as sent for `bucket`.
pub fn summarize(bucket: u32, mine: &[(Key, u64)], complete: bool) -> BucketSummary {
    BucketSummary {
        bucket,
        entries: mine
            .iter()
            .map(|(k, h)| (key_hash(k.as_bytes()), *h))
            .collect(),
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key(i: u8) -> Key {
        Key(Bytes::from(vec![b'k', i]))
    }

    /// A replica as key → value, merged by max (a join, like the store's merge); the entry
    /// hash of a value is the value itself (any injective hash would do).
    fn entries(r: &BTreeMap<u8, u8>) -> Vec<(Key, u64)> {
        r.iter().map(|(k, v)| (key(*k), u64::from(*v))).collect()
    }

    /// One reconciliation, `a` asking `b`: `b` ships `send` to `a`, `a` ships `b` what it wants.
    fn exchange(a: &mut BTreeMap<u8, u8>, b: &mut BTreeMap<u8, u8>, complete: bool) {
        let mine_a = entries(a);
        let cut = if complete {
            mine_a.len()
        } else {
            mine_a.len() / 2
        };
        let summary = summarize(7, &mine_a[..cut], complete);
        let p = plan(&entries(b), &summary);
        for k in &p.send {
            let v = b[&k.as_bytes()[1]];
            let e = a.entry(k.as_bytes()[1]).or_insert(v);
            *e = (*e).max(v);
        }
        for (k, v) in a.iter() {
            if p.want.contains(&key_hash(key(*k).as_bytes())) {
                let e = b.entry(*k).or_insert(*v);
                *e = (*e).max(*v);
            }
        }
    }

    proptest! {
        /// With complete summaries, one exchange makes the replicas equal.
        #[test]
        fn a_complete_exchange_converges(
            a in prop::collection::btree_map(0u8..40, 0u8..4, 0..30),
            b in prop::collection::btree_map(0u8..40, 0u8..4, 0..30),
        ) {
            let (mut a, mut b) = (a, b);
            let mut expect = a.clone();
            for (k, v) in &b {
                let e = expect.entry(*k).or_insert(*v);
                *e = (*e).max(*v);
            }
            exchange(&mut a, &mut b, true);
            prop_assert_eq!(&a, &expect);
            prop_assert_eq!(&b, &expect);
        }

        /// A cut summary ships nothing the asker may hold beyond the cut, repairs every listed
        /// key, and, repeated with complete summaries, still converges.
        #[test]
        fn a_cut_summary_repairs_what_it_lists(
            a in prop::collection::btree_map(0u8..40, 0u8..4, 0..30),
            b in prop::collection::btree_map(0u8..40, 0u8..4, 0..30),
        ) {
            let (mut a, mut b) = (a, b);
            let listed: Vec<u8> = a.keys().copied().take(a.len() / 2).collect();
            let summary = summarize(7, &entries(&a)[..listed.len()], false);
            let p = plan(&entries(&b), &summary);
            for k in &p.send {
                prop_assert!(listed.contains(&k.as_bytes()[1]), "only listed keys are shipped");
            }
            exchange(&mut a, &mut b, false);
            for k in &listed {
                prop_assert_eq!(a.get(k), b.get(k));
            }
            exchange(&mut a, &mut b, true);
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn equal_buckets_plan_nothing() {
        let mine = vec![(key(1), 10), (key(2), 20)];
        assert_eq!(plan(&mine, &summarize(3, &mine, true)), Plan::default());
    }
}
