//! The conformance suite: one set of behavioural checks every engine must pass.
//!
//! An engine's tests call [`run_all`] with a factory that opens a fresh, empty store for a node
//! (as chitchat runs one transport suite against every transport). The suite panics on the first
//! failed check, naming it. Its helpers serve other crates' tests too ([`feed_keys`]: what a
//! write put in the change feed). It is compiled only for tests and with the `conformance`
//! feature.
#![allow(clippy::unwrap_used, clippy::panic)]

use crate::contract::{CasOutcome, Delta, Mutation, Origin, ScanRequest, Store, StoreExt};
use crate::error::StoreError;
use crate::key::{Key, Keyspace};
use crate::node::{NodeId, RegionId};
use crate::version::VersionVector;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;

const KS: Keyspace = Keyspace::new("t");

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The node ids the suite opens stores for.
pub fn nodes() -> [NodeId; 2] {
    [
        NodeId::new(RegionId::from_name("us"), 1),
        NodeId::new(RegionId::from_name("eu"), 2),
    ]
}

/// The keys of the first 100 changes after `after` in `s`'s change feed, oldest first: what a
/// write put in the feed, for a test that checks which keys it names and in what order.
pub async fn feed_keys(s: &dyn Store, after: u64) -> Vec<Key> {
    let changes = s.changes(after, 100).await.unwrap();
    changes.into_iter().map(|c| c.key).collect()
}

/// Runs every check; `open` must return a fresh, empty store for the given node each call.
pub async fn run_all<F, Fut>(open: F)
where
    F: Fn(NodeId) -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let [a, b] = nodes();
    registers(open(a).await).await;
    siblings_and_contexts(open(a).await).await;
    sets_and_counters(open(a).await).await;
    kinds_do_not_mix(open(a).await).await;
    cas_semantics(open(a).await).await;
    cas_under_contention(open(a).await).await;
    scans(open(a).await).await;
    change_feed(open(a).await).await;
    limits(open(a).await).await;
    replication(open(a).await, open(b).await).await;
    anti_entropy_by_buckets(open(a).await, open(b).await).await;
    bucket_hashes_fold_to_digests(open(a).await, open(b).await).await;
    tombstone_purge(open(a).await).await;
    tombstone_index(open(a).await, open(b).await).await;
    local_keys(open(a).await).await;
    batches(open(a).await).await;
    swaps_with_writes(open(a).await, open(b).await).await;
}

/// `cas_with`: the swap and its writes together, in the change feed in order, or nothing.
async fn swaps_with_writes(s: Arc<dyn Store>, replica: Arc<dyn Store>) {
    let slot = KS.key().str("cw-slot").u64(1).finish();
    let idx = KS.key().str("cw-idx").u64(1).finish();
    let set = KS.key().str("cw-set").finish();
    let n = KS.key().str("cw-n").finish();
    let local = Keyspace::local("cw").key().u64(1).finish();
    let with = vec![
        (idx.clone(), Mutation::Put(b("1"))),
        (set.clone(), Mutation::Add(b("e"))),
        (n.clone(), Mutation::Count(2)),
        (n.clone(), Mutation::Count(3)),
        (local.clone(), Mutation::Put(b("here"))),
    ];
    let start = s.last_seq();
    let out = s.cas_with(&slot, None, Some(b("m1")), &with).await.unwrap();
    let CasOutcome::Applied(v) = out else {
        panic!("a swap of an absent key applies: {out:?}")
    };
    assert_eq!(v.value, Some(b("m1")));
    assert_eq!(s.get(&slot).await.unwrap().unwrap().version, v.version);
    assert_eq!(s.get(&idx).await.unwrap().unwrap().value, Some(b("1")));
    assert_eq!(s.get(&set).await.unwrap().unwrap().value, Some(b("e")));
    assert_eq!(
        s.counter(&n).await.unwrap(),
        5,
        "a key written twice sees its first write"
    );
    assert_eq!(s.get(&local).await.unwrap().unwrap().value, Some(b("here")));
    assert_eq!(
        feed_keys(&*s, start).await,
        vec![slot.clone(), idx.clone(), set.clone(), n.clone(), n.clone()],
        "every replicated write in the feed, the swapped key first; no local key"
    );
    assert_eq!(s.last_seq(), start + 5);

    // A swap that does not match writes nothing, its writes included.
    let other = KS.key().str("cw-idx").u64(2).finish();
    let out = s
        .cas_with(
            &slot,
            None,
            Some(b("m2")),
            &[(other.clone(), Mutation::Put(b("2")))],
        )
        .await
        .unwrap();
    match out {
        CasOutcome::Conflict(Some(cur)) => assert_eq!(cur.value, Some(b("m1"))),
        other => panic!("an existing key conflicts: {other:?}"),
    }
    assert_eq!(
        s.get(&other).await.unwrap(),
        None,
        "nothing of a conflict is written"
    );
    assert_eq!(s.last_seq(), start + 5, "a conflict feeds nothing");
    assert_eq!(s.get(&slot).await.unwrap().unwrap().value, Some(b("m1")));

    // A swap from the version read applies, with its writes.
    let out = s
        .cas_with(
            &slot,
            Some(&v.version),
            Some(b("m3")),
            &[(other.clone(), Mutation::Put(b("3")))],
        )
        .await
        .unwrap();
    assert!(matches!(out, CasOutcome::Applied(_)), "{out:?}");
    assert_eq!(s.get(&other).await.unwrap().unwrap().value, Some(b("3")));

    // What the feed names replicates to the same digests.
    let mut deltas = Vec::new();
    for k in feed_keys(&*s, start).await {
        let record = s.get_record(&k).await.unwrap().unwrap();
        deltas.push(Delta { key: k, record });
    }
    replica.apply(&deltas).await.unwrap();
    assert_eq!(
        replica.digests(),
        s.digests(),
        "the batch's digests are its records'"
    );
}

async fn batches(s: Arc<dyn Store>) {
    let seq = s.last_seq();
    let items: Vec<(Key, Mutation)> = (0..50u64)
        .map(|i| (KS.key().str("batch").u64(i).finish(), Mutation::Put(b("x"))))
        .chain([
            (
                KS.key().str("batch-set").u64(1).finish(),
                Mutation::Add(b("e")),
            ),
            (KS.key().str("batch-n").finish(), Mutation::Count(5)),
        ])
        .collect();
    s.mutate_many(&items).await.unwrap();
    for (k, _) in &items[..50] {
        assert_eq!(s.get(k).await.unwrap().unwrap().value, Some(b("x")));
    }
    // Many records in one call: in the order asked, `None` for a key never written.
    let mut keys: Vec<Key> = items[..50].iter().rev().map(|(k, _)| k.clone()).collect();
    keys.insert(3, KS.key().str("batch-missing").finish());
    let records = s.get_records(&keys).await.unwrap();
    assert_eq!(records.len(), keys.len());
    for (k, r) in keys.iter().zip(&records) {
        assert_eq!(r, &s.get_record(k).await.unwrap(), "{k:?}");
    }
    assert!(records[3].is_none() && records.iter().filter(|r| r.is_some()).count() == 50);
    assert_eq!(
        s.counter(&KS.key().str("batch-n").finish()).await.unwrap(),
        5
    );
    assert_eq!(
        s.last_seq(),
        seq + 52,
        "every write of a batch is in the change feed"
    );
    // A key twice in one batch: the second write sees the first.
    let n = KS.key().str("batch-n").finish();
    s.mutate_many(&[
        (n.clone(), Mutation::Count(2)),
        (n.clone(), Mutation::Count(3)),
    ])
    .await
    .unwrap();
    assert_eq!(s.counter(&n).await.unwrap(), 10);
    assert_eq!(s.last_seq(), seq + 54);
}

async fn local_keys(s: Arc<dyn Store>) {
    let ks = Keyspace::local("lc");
    let k = ks.key().u64(1).finish();
    let (seq, digests) = (s.last_seq(), s.digests());
    s.put(&k, b("mine")).await.unwrap();
    s.incr(&ks.key().u64(2).finish(), 3).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap().unwrap().value, Some(b("mine")));
    assert_eq!(s.last_seq(), seq, "local keys are not in the change feed");
    assert_eq!(s.digests(), digests, "local keys are not in the digests");
    let rec = s.get_record(&k).await.unwrap().unwrap();
    let rep = s
        .apply(&[Delta {
            key: k.clone(),
            record: rec,
        }])
        .await
        .unwrap();
    assert_eq!(rep.rejected, 1, "peers may not write local keys");
    let page = s.scan(&ScanRequest::prefix(ks.prefix(), 10)).await.unwrap();
    assert_eq!(page.items.len(), 1, "counters are not listed by scans");
}

async fn registers(s: Arc<dyn Store>) {
    let k = KS.key().str("reg").finish();
    assert_eq!(s.get(&k).await.unwrap(), None, "absent key");
    let v1 = s.put(&k, b("one")).await.unwrap();
    let got = s.get(&k).await.unwrap().unwrap();
    assert_eq!(got.value, Some(b("one")));
    assert_eq!(got.version, v1);
    let v2 = s.put(&k, b("two")).await.unwrap();
    assert!(
        v2.dominates(&v1) && v2 != v1,
        "a later write has a later version"
    );
    s.delete(&k).await.unwrap();
    let dead = s.get(&k).await.unwrap().unwrap();
    assert_eq!(dead.value, None, "a deleted key reads as a tombstone");
    s.put(&k, b("three")).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap().unwrap().value, Some(b("three")));
}

async fn siblings_and_contexts(s: Arc<dyn Store>) {
    let k = KS.key().str("sib").finish();
    let empty = VersionVector::new();
    s.mutate(&k, Mutation::Put(b("x")), Some(&empty))
        .await
        .unwrap();
    // A writer that had seen nothing does not replace "x": both are kept, last writer visible.
    s.mutate(&k, Mutation::Put(b("y")), Some(&empty))
        .await
        .unwrap();
    let v = s.get(&k).await.unwrap().unwrap();
    assert_eq!(v.siblings, 2);
    assert_eq!(v.value, Some(b("y")));
    // A writer that had seen both collapses them.
    s.mutate(&k, Mutation::Put(b("z")), Some(&v.version))
        .await
        .unwrap();
    let v = s.get(&k).await.unwrap().unwrap();
    assert_eq!((v.siblings, v.value), (1, Some(b("z"))));
}

async fn sets_and_counters(s: Arc<dyn Store>) {
    let e = KS.key().str("set").u64(7).finish();
    s.add(&e, Bytes::new()).await.unwrap();
    assert_eq!(s.get(&e).await.unwrap().unwrap().value, Some(Bytes::new()));
    s.remove(&e).await.unwrap();
    assert_eq!(s.get(&e).await.unwrap().unwrap().value, None);
    let c = KS.key().str("count").finish();
    assert_eq!(s.counter(&c).await.unwrap(), 0);
    assert_eq!(s.incr(&c, 5).await.unwrap(), 5);
    assert_eq!(s.incr(&c, -7).await.unwrap(), -2);
    assert_eq!(s.counter(&c).await.unwrap(), -2);
}

async fn kinds_do_not_mix(s: Arc<dyn Store>) {
    let c = KS.key().str("kind").finish();
    s.incr(&c, 1).await.unwrap();
    let err = s.put(&c, b("x")).await.unwrap_err();
    assert!(matches!(err, StoreError::KindMismatch { .. }), "{err}");
    let err = s.get(&c).await.unwrap_err();
    assert!(matches!(err, StoreError::KindMismatch { .. }), "{err}");
    assert_eq!(
        s.counter(&c).await.unwrap(),
        1,
        "a refused write changes nothing"
    );
}

async fn cas_semantics(s: Arc<dyn Store>) {
    let k = KS.key().str("handle").str("alice").finish();
    let CasOutcome::Applied(v1) = s.cas(&k, None, Some(b("u1"))).await.unwrap() else {
        panic!("cas on an absent key with expected None must apply");
    };
    match s.cas(&k, None, Some(b("u2"))).await.unwrap() {
        CasOutcome::Conflict(Some(cur)) => assert_eq!(cur.value, Some(b("u1"))),
        other => panic!("second claim must conflict, got {other:?}"),
    }
    let stale = VersionVector::new();
    assert!(matches!(
        s.cas(&k, Some(&stale), Some(b("u3"))).await.unwrap(),
        CasOutcome::Conflict(_)
    ));
    let CasOutcome::Applied(v2) = s.cas(&k, Some(&v1.version), None).await.unwrap() else {
        panic!("cas with the current version must apply");
    };
    assert_eq!(v2.value, None, "cas to None leaves a tombstone");
    assert_eq!(s.get(&k).await.unwrap().unwrap().value, None);
    let CasOutcome::Applied(_) = s.cas(&k, Some(&v2.version), Some(b("u4"))).await.unwrap() else {
        panic!("a released key can be claimed again with the tombstone's version");
    };
    let c = KS.key().str("kind-cas").finish();
    s.incr(&c, 1).await.unwrap();
    assert!(
        s.cas(&c, None, None).await.is_err(),
        "cas only on registers"
    );
}

async fn cas_under_contention(s: Arc<dyn Store>) {
    // Ten tasks each increment a register 20 times by read + cas + retry: no update is lost.
    let k = KS.key().str("cas-counter").finish();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = s.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..20 {
                loop {
                    let cur = s.get(&k).await.unwrap();
                    let n: u64 = cur
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map_or(0, |b| crate::codec::from_value(b).unwrap());
                    let next = crate::codec::to_value(&(n + 1)).unwrap();
                    match s
                        .cas(&k, cur.as_ref().map(|v| &v.version), Some(next))
                        .await
                    {
                        Ok(CasOutcome::Applied(_)) => break,
                        Ok(CasOutcome::Conflict(_)) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                    tokio::task::yield_now().await;
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v: u64 = s.get_typed(&k).await.unwrap().unwrap().value.unwrap();
    assert_eq!(v, 200, "every successful cas is counted exactly once");
}

async fn scans(s: Arc<dyn Store>) {
    let ks = Keyspace::new("scan");
    for i in 0..50u64 {
        s.put(&ks.key().u64(i).finish(), b(&i.to_string()))
            .await
            .unwrap();
    }
    for i in (0..50u64).step_by(5) {
        s.delete(&ks.key().u64(i).finish()).await.unwrap();
    }
    // Neighbours outside the prefix must never show up.
    s.put(&Keyspace::new("scam").key().u64(1).finish(), b("x"))
        .await
        .unwrap();
    s.put(&Keyspace::new("scao").key().u64(1).finish(), b("x"))
        .await
        .unwrap();
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut req = ScanRequest::prefix(ks.prefix(), 7);
        req.reverse = reverse;
        loop {
            let page = s.scan(&req).await.unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(
                page.items
                    .iter()
                    .map(|(k, _)| crate::key::read_u64(k.as_bytes(), 5).unwrap()),
            );
            match page.next {
                Some(n) => req.after = Some(n),
                None => break,
            }
        }
        let mut want: Vec<u64> = (0..50).filter(|i| i % 5 != 0).collect();
        if reverse {
            want.reverse();
        }
        assert_eq!(
            seen, want,
            "paging visits each live key once, in order (reverse={reverse})"
        );
    }
    let mut req = ScanRequest::prefix(ks.prefix(), 100);
    req.include_tombstones = true;
    let page = s.scan(&req).await.unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(
        page.items.iter().filter(|(_, v)| v.value.is_none()).count(),
        10
    );
    req.limit = 0;
    assert!(s.scan(&req).await.is_err(), "limit 0 is refused");
    req.limit = s.limits().max_scan + 1;
    assert!(
        s.scan(&req).await.is_err(),
        "limit above the cap is refused"
    );
    let mut req = ScanRequest::prefix(ks.prefix(), 10);
    req.after = Some(Key::from("elsewhere"));
    assert!(
        s.scan(&req).await.is_err(),
        "a cursor outside the prefix is refused"
    );
}

async fn change_feed(s: Arc<dyn Store>) {
    let start = s.last_seq();
    let mut rx = s.subscribe();
    let k1 = KS.key().str("feed1").finish();
    let k2 = KS.key().str("feed2").finish();
    s.put(&k1, b("a")).await.unwrap();
    s.put(&k2, b("b")).await.unwrap();
    s.put(&k1, b("c")).await.unwrap();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), start + 3);
    let ch = s.changes(start, 100).await.unwrap();
    assert_eq!(ch.len(), 3);
    assert_eq!(
        ch.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![start + 1, start + 2, start + 3]
    );
    assert_eq!(ch[1].key, k2);
    assert!(ch.iter().all(|c| c.origin == Origin::Local));
    // Resuming from a position returns exactly what follows it.
    let rest = s.changes(start + 1, 100).await.unwrap();
    assert_eq!(rest, ch[1..].to_vec());
    // A write that changes nothing (a duplicate delta) is not logged.
    let rec = s.get_record(&k1).await.unwrap().unwrap();
    let rep = s
        .apply(&[Delta {
            key: k1.clone(),
            record: rec,
        }])
        .await
        .unwrap();
    assert_eq!((rep.changed, rep.unchanged), (0, 1));
    assert_eq!(s.last_seq(), start + 3);
    // Trimming forgets the old entries but never reuses a number.
    s.trim_changes(start + 2).await.unwrap();
    assert_eq!(s.changes(0, 100).await.unwrap(), ch[2..].to_vec());
    s.put(&k2, b("d")).await.unwrap();
    assert_eq!(s.last_seq(), start + 4);
}

async fn limits(s: Arc<dyn Store>) {
    let l = s.limits();
    let long = Key::from(vec![b'k'; l.max_key + 1]);
    assert!(matches!(
        s.put(&long, b("x")).await,
        Err(StoreError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        s.get(&long).await,
        Err(StoreError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        s.put(&Key::from(""), b("x")).await,
        Err(StoreError::EmptyKey)
    ));
    let k = KS.key().str("big").finish();
    let big = Bytes::from(vec![0u8; l.max_value + 1]);
    assert!(matches!(
        s.put(&k, big.clone()).await,
        Err(StoreError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        s.cas(&k, None, Some(big.clone())).await,
        Err(StoreError::ValueTooLarge { .. })
    ));
    assert_eq!(
        s.get(&k).await.unwrap(),
        None,
        "refused writes change nothing"
    );
    // The same limits hold for records arriving from peers.
    let mut r = crate::record::Record::empty(crate::record::Kind::Register);
    let dot = crate::version::Dot {
        hlc: crate::hlc::Hlc(1),
        node: nodes()[1],
    };
    r.write_register(dot, Some(big), None).unwrap();
    let rep = s
        .apply(&[Delta {
            key: k.clone(),
            record: r,
        }])
        .await
        .unwrap();
    assert_eq!(rep.rejected, 1);
    assert_eq!(s.get(&k).await.unwrap(), None);
}

async fn replication(a: Arc<dyn Store>, b_: Arc<dyn Store>) {
    // Concurrent writes on two replicas, then an exchange of every changed record both ways.
    let ks = Keyspace::new("rep");
    for i in 0..20u64 {
        a.put(&ks.key().u64(i).finish(), b(&format!("a{i}")))
            .await
            .unwrap();
        if i % 2 == 0 {
            b_.put(&ks.key().u64(i).finish(), b(&format!("b{i}")))
                .await
                .unwrap();
        }
        if i % 3 == 0 {
            b_.add(&ks.key().str("follows").u64(i).finish(), Bytes::new())
                .await
                .unwrap();
        }
    }
    a.incr(&ks.key().str("n").finish(), 3).await.unwrap();
    b_.incr(&ks.key().str("n").finish(), 4).await.unwrap();
    ship_changes(&a, &b_).await;
    ship_changes(&b_, &a).await;
    assert_eq!(
        a.digests(),
        b_.digests(),
        "replicas converge after exchanging changes"
    );
    assert_eq!(a.counter(&ks.key().str("n").finish()).await.unwrap(), 7);
    for i in 0..20u64 {
        let k = ks.key().u64(i).finish();
        let (x, y) = (
            a.get(&k).await.unwrap().unwrap(),
            b_.get(&k).await.unwrap().unwrap(),
        );
        assert_eq!(x, y, "key {i} reads the same on both replicas");
    }
    // Shipping again is a no-op.
    let before = a.last_seq();
    ship_changes(&b_, &a).await;
    assert_eq!(a.last_seq(), before, "duplicates change nothing");
    // Remote changes are logged as remote.
    let ch = a.changes(0, 10_000).await.unwrap();
    assert!(ch.iter().any(|c| c.origin == Origin::Remote));
}

/// Sends every record `from` has logged to `to`.
async fn ship_changes(from: &Arc<dyn Store>, to: &Arc<dyn Store>) {
    let mut deltas = Vec::new();
    for c in from.changes(0, 100_000).await.unwrap() {
        let record = from.get_record(&c.key).await.unwrap().unwrap();
        deltas.push(Delta { key: c.key, record });
    }
    to.apply(&deltas).await.unwrap();
}

async fn anti_entropy_by_buckets(a: Arc<dyn Store>, b_: Arc<dyn Store>) {
    let ks = Keyspace::new("ae");
    for i in 0..300u64 {
        a.put(&ks.key().u64(i).finish(), b("v")).await.unwrap();
    }
    for i in 250..400u64 {
        b_.put(&ks.key().u64(i).finish(), b("w")).await.unwrap();
    }
    // Only buckets whose digests differ are shipped, in pages.
    for _ in 0..2 {
        let (da, db) = (a.digests(), b_.digests());
        for bucket in da.differing(&db) {
            for (src, dst) in [(&a, &b_), (&b_, &a)] {
                let mut after: Option<Key> = None;
                loop {
                    let (page, next) = src.bucket(bucket, after.as_ref(), 2).await.unwrap();
                    dst.apply(&page).await.unwrap();
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
            }
        }
    }
    assert_eq!(a.digests(), b_.digests());
    assert_eq!(a.digests().root(), b_.digests().root());
    let mut req = ScanRequest::prefix(ks.prefix(), 1000);
    req.include_tombstones = true;
    assert_eq!(b_.scan(&req).await.unwrap().items.len(), 400);
    assert!(a.bucket(u32::MAX, None, 1).await.is_err());
}

/// Every bucket's `bucket_hashes`, read in pages, list its keys (those `bucket` ships) and XOR
/// to its digest leaf, through overwrites, deletes, remote records and purges.
async fn bucket_hashes_fold_to_digests(s: Arc<dyn Store>, other: Arc<dyn Store>) {
    let ks = Keyspace::new("bh");
    let key = |i: u64| ks.key().u64(i).finish();
    for i in 0..120u64 {
        s.put(&key(i), b("v")).await.unwrap();
    }
    for i in 0..40u64 {
        s.put(&key(i), b("overwritten")).await.unwrap();
    }
    for i in 40..60u64 {
        s.delete(&key(i)).await.unwrap();
    }
    for i in 100..140u64 {
        other.put(&key(i), b("remote")).await.unwrap();
    }
    ship_changes(&other, &s).await;
    let later = crate::hlc::Hlc(crate::hlc::HlcClock::new().now().0 + (3_600_000 << 16));
    let doomed: Vec<Key> = (50..60).map(key).collect();
    assert_eq!(s.purge(&doomed, later).await.unwrap().0, 10);
    let digests = s.digests();
    let buckets: std::collections::BTreeSet<u32> = (0..140)
        .map(|i| crate::digest::bucket_of(key(i).as_bytes()))
        .collect();
    let mut listed = 0;
    for &bucket in &buckets {
        let (mut keys, mut xor, mut after) = (Vec::new(), 0u64, None::<Key>);
        loop {
            let (page, next) = s.bucket_hashes(bucket, after.as_ref(), 3).await.unwrap();
            for (k, h) in page {
                xor ^= h;
                keys.push(k);
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(xor, digests.leaves()[bucket as usize], "bucket {bucket}");
        let (shipped, _) = s.bucket(bucket, None, 1000).await.unwrap();
        let shipped: Vec<Key> = shipped.into_iter().map(|d| d.key).collect();
        assert_eq!(keys, shipped, "bucket {bucket}");
        listed += keys.len();
    }
    assert_eq!(listed, 130, "140 keys written, 10 purged");
    assert!(
        (0..crate::digest::LEAVES as u32)
            .filter(|b| !buckets.contains(b))
            .all(|b| digests.leaves()[b as usize] == 0)
    );
    assert!(s.bucket_hashes(u32::MAX, None, 1).await.is_err());
}

async fn tombstone_purge(s: Arc<dyn Store>) {
    let ks = Keyspace::new("gc");
    for i in 0..10u64 {
        s.put(&ks.key().u64(i).finish(), b("v")).await.unwrap();
    }
    for i in 0..5u64 {
        s.delete(&ks.key().u64(i).finish()).await.unwrap();
    }
    let before = s.digests();
    // A horizon before the deletes collects nothing.
    assert_eq!(s.purge_tombstones(crate::hlc::Hlc(1)).await.unwrap(), 0);
    let horizon = crate::hlc::HlcClock::new().now();
    // An hour ahead: later than every write of this check, however slow the engine.
    let later = crate::hlc::Hlc(horizon.0 + (3_600_000 << 16));
    assert_eq!(s.purge_tombstones(later).await.unwrap(), 5);
    assert_ne!(before, s.digests(), "purged records leave the digests");
    assert_eq!(s.get(&ks.key().u64(1).finish()).await.unwrap(), None);
    assert!(s.get(&ks.key().u64(7).finish()).await.unwrap().is_some());
    // Purging named keys removes only tombstones.
    s.delete(&ks.key().u64(9).finish()).await.unwrap();
    let named = [ks.key().u64(8).finish(), ks.key().u64(9).finish()];
    assert_eq!(
        s.purge(&named, crate::hlc::Hlc(1)).await.unwrap(),
        (0, vec![named[1].clone()])
    );
    assert_eq!(s.purge(&named, later).await.unwrap(), (1, vec![]));
    assert!(
        s.get(&named[0]).await.unwrap().is_some(),
        "a live record stays"
    );
    assert_eq!(s.get_record(&named[1]).await.unwrap(), None);
    let mut req = ScanRequest::prefix(ks.prefix(), 100);
    req.include_tombstones = true;
    assert_eq!(s.scan(&req).await.unwrap().items.len(), 4);
}

/// The tombstone index ([`crate::tombstones`]): every tombstone written (local, replicated,
/// a set element's, a node-local key's, in a batch) has one entry at its last write; a write
/// over it moves or drops it; a purge, a full-scan purge and a collection remove it. An engine
/// without an index answers nothing.
async fn tombstone_index(s: Arc<dyn Store>, other: Arc<dyn Store>) {
    use crate::hlc::{Hlc, HlcClock};
    use crate::tombstones::{Tombstone, TombstoneIndex};
    let later = Hlc(HlcClock::new().now().0 + (3_600_000 << 16));
    let ks = Keyspace::new("ti");
    let k = |i: u64| ks.key().u64(i).finish();
    if s.tombstone_index() == TombstoneIndex::Absent {
        s.delete(&k(0)).await.unwrap();
        assert!(s.tombstones(later, 10).await.unwrap().is_empty());
        assert_eq!(s.collect_indexed(later, 10).await.unwrap(), None);
        return;
    }
    assert_eq!(
        s.tombstone_index(),
        TombstoneIndex::Complete,
        "a store created empty indexes every tombstone"
    );
    let entry = |key: &Key, r: &crate::record::Record| Tombstone {
        hlc: r.max_hlc(),
        key: key.clone(),
    };
    let index = || async { s.tombstones(later, 100).await.unwrap() };
    // A delete indexes its tombstone at its last write.
    s.put(&k(1), b("v")).await.unwrap();
    assert!(index().await.is_empty(), "a live record is not indexed");
    s.delete(&k(1)).await.unwrap();
    let r1 = s.get_record(&k(1)).await.unwrap().unwrap();
    assert_eq!(index().await, vec![entry(&k(1), &r1)]);
    // An overwrite drops the entry; a second delete indexes the new tombstone, once.
    s.put(&k(1), b("again")).await.unwrap();
    assert!(
        index().await.is_empty(),
        "a put over a tombstone un-indexes it"
    );
    s.delete(&k(1)).await.unwrap();
    s.delete(&k(1)).await.unwrap();
    let r1 = s.get_record(&k(1)).await.unwrap().unwrap();
    assert_eq!(index().await, vec![entry(&k(1), &r1)], "moved, not doubled");
    // A replicated tombstone, a set element's, a node-local key's, a batch's.
    other.put(&k(2), b("there")).await.unwrap();
    other.delete(&k(2)).await.unwrap();
    let remote = other.get_record(&k(2)).await.unwrap().unwrap();
    s.apply(&[Delta {
        key: k(2),
        record: remote.clone(),
    }])
    .await
    .unwrap();
    let elem = ks.key().str("set").u64(3).finish();
    s.add(&elem, b("e")).await.unwrap();
    s.remove(&elem).await.unwrap();
    let local = Keyspace::local("ti").key().u64(4).finish();
    s.put(&local, b("here")).await.unwrap();
    s.delete(&local).await.unwrap();
    s.mutate_many(&[
        (k(5), Mutation::Put(b("v"))),
        (k(5), Mutation::Delete),
        (k(5), Mutation::Delete),
        (k(6), Mutation::Delete),
        (k(6), Mutation::Put(b("back"))),
    ])
    .await
    .unwrap();
    let mut want = Vec::new();
    for key in [&k(1), &k(2), &elem, &local, &k(5)] {
        let r = s.get_record(key).await.unwrap().unwrap();
        assert!(r.is_tombstone(), "{key:?}");
        want.push(entry(key, &r));
    }
    want.sort_by(|a, b| (a.hlc, &a.key).cmp(&(b.hlc, &b.key)));
    assert_eq!(index().await, want, "oldest first, k6 live");
    // Two nodes' clocks can stamp alike (k1 here, k2 at `other`): the bound is the first
    // stamp above the oldest, and every entry below it comes back.
    let bound = want
        .iter()
        .map(|t| t.hlc)
        .find(|h| *h > want[0].hlc)
        .expect("the batch's tombstones are stamped after the first delete");
    assert_eq!(
        s.tombstones(bound, 100).await.unwrap(),
        want.iter()
            .filter(|t| t.hlc < bound)
            .cloned()
            .collect::<Vec<_>>(),
        "only those written before the bound: {want:?}"
    );
    assert!(s.tombstone_index_len().is_some());
    // Nothing is due before the first write; a page of two, then the rest.
    let none = s.collect_indexed(Hlc(1), 10).await.unwrap().unwrap();
    assert_eq!((none.read, none.purged, none.more), (0, 0, false));
    let first = s.collect_indexed(later, 2).await.unwrap().unwrap();
    assert_eq!((first.read, first.purged, first.stale), (2, 2, 0));
    assert!(first.more);
    assert_eq!(index().await, want[2..].to_vec(), "consumed in order");
    assert_eq!(s.get_record(&want[0].key).await.unwrap(), None, "purged");
    // A purge by name removes its entry; so does the full-scan purge.
    assert_eq!(s.purge(&[k(5)], later).await.unwrap(), (1, vec![]));
    assert!(!index().await.iter().any(|t| t.key == k(5)));
    assert_eq!(
        s.purge_tombstones(later).await.unwrap(),
        want.len() as u64 - 3
    );
    assert!(index().await.is_empty(), "every entry went with its record");
    assert!(s.get(&k(6)).await.unwrap().is_some(), "a live record stays");
    // Indexing again (the backfill) indexes tombstones only, at their last write.
    s.delete(&k(7)).await.unwrap();
    let r7 = s.get_record(&k(7)).await.unwrap().unwrap();
    assert_eq!(s.index_tombstones(&[k(6), k(7), k(8)]).await.unwrap(), 1);
    assert_eq!(index().await, vec![entry(&k(7), &r7)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Limits;
    use crate::engine::{EmbeddedOptions, FsyncPolicy, open_embedded, open_memory};
    use crate::hlc::HlcClock;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_engine_conforms() {
        run_all(
            |node| async move { open_memory(node, Arc::new(HlcClock::new()), Limits::default()) },
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_engine_conforms() {
        let root = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        let root_path = root.path().to_path_buf();
        run_all(|node| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = root_path.join(format!("s{i}"));
            async move {
                let mut o = EmbeddedOptions::new(dir);
                o.cache_bytes = 4 << 20;
                // Alternate policies so both acknowledgement paths run the suite.
                if i.is_multiple_of(2) {
                    o.fsync = FsyncPolicy::Always;
                }
                open_embedded(node, Arc::new(HlcClock::new()), &o).unwrap()
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_engine_on_a_dedicated_lane_conforms() {
        let root = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        let root_path = root.path().to_path_buf();
        let lane = crate::lane::StoreLane::dedicated("conformance-lane").unwrap();
        run_all(|node| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = root_path.join(format!("s{i}"));
            let lane = lane.clone();
            async move {
                let mut o = EmbeddedOptions::new(dir);
                o.cache_bytes = 4 << 20;
                let store = open_embedded(node, Arc::new(HlcClock::new()), &o).unwrap();
                store
                    .on_lane(lane)
                    .expect("the embedded engine runs on lanes")
            }
        })
        .await;
        let calls = lane
            .stats()
            .calls
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(calls > 0, "the suite's calls ran on the lane");
        assert_eq!(
            lane.stats()
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[tokio::test]
    async fn embedded_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let node = nodes()[0];
        let opts = EmbeddedOptions::new(dir.path());
        let k = KS.key().str("persist").finish();
        let (digests, seq) = {
            let s = open_embedded(node, Arc::new(HlcClock::new()), &opts).unwrap();
            s.put(&k, b("kept")).await.unwrap();
            s.incr(&KS.key().str("c").finish(), 9).await.unwrap();
            (s.digests(), s.last_seq())
        };
        let s = open_embedded(node, Arc::new(HlcClock::new()), &opts).unwrap();
        assert_eq!(s.get(&k).await.unwrap().unwrap().value, Some(b("kept")));
        assert_eq!(s.digests(), digests, "digests are rebuilt at open");
        assert_eq!(s.last_seq(), seq, "the change feed resumes where it was");
        s.put(&k, b("again")).await.unwrap();
        assert_eq!(s.last_seq(), seq + 1);
    }
}
