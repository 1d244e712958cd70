//! Property tests of the merge rules: the record join is commutative, associative and idempotent,
//! and replicas that receive the same deltas in any order, with duplicates, end byte-identical.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use proptest::prelude::*;
use starling_store::codec::encode_record;
use starling_store::{
    Delta, Dot, Hlc, HlcClock, Key, Kind, Limits, NodeId, Record, RegionId, Store, VersionVector,
    open_memory,
};
use std::collections::BTreeMap;
use std::sync::Arc;

const REPLICAS: usize = 3;
const KINDS: [Kind; 3] = [Kind::Register, Kind::Set, Kind::Counter];

#[derive(Clone, Debug)]
enum Op {
    /// A write on replica `r` to key `k` (meaning depends on the key's kind).
    Write { r: usize, k: usize, v: u8 },
    /// A write that had seen nothing (creates siblings when concurrent).
    StaleWrite { r: usize, k: usize, v: u8 },
    /// A delete / remove / decrement.
    Remove { r: usize, k: usize },
    /// Replica `to` merges everything replica `from` holds.
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..REPLICAS;
    let k = 0..KINDS.len();
    prop_oneof![
        4 => (r.clone(), k.clone(), any::<u8>()).prop_map(|(r, k, v)| Op::Write { r, k, v }),
        1 => (r.clone(), k.clone(), any::<u8>()).prop_map(|(r, k, v)| Op::StaleWrite { r, k, v }),
        2 => (r.clone(), k).prop_map(|(r, k)| Op::Remove { r, k }),
        2 => (r.clone(), r).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

fn node(r: usize) -> NodeId {
    NodeId::new(RegionId(r as u16 + 1), r as u64)
}

/// The record of key `k` on a replica, and the dot of a new local write there at `time`.
fn local_write(
    replica: &mut BTreeMap<usize, Record>,
    k: usize,
    r: usize,
    time: u64,
) -> (&mut Record, Dot) {
    let rec = replica.entry(k).or_insert_with(|| Record::empty(KINDS[k]));
    let dot = Dot {
        hlc: Hlc(time.max(rec.max_hlc().0 + 1)),
        node: node(r),
    };
    (rec, dot)
}

/// Runs a history; returns every record state produced along the way, per key.
fn run(ops: &[Op]) -> Vec<Vec<Record>> {
    let mut replicas: Vec<BTreeMap<usize, Record>> = vec![BTreeMap::new(); REPLICAS];
    let mut produced: Vec<Vec<Record>> = vec![Vec::new(); KINDS.len()];
    let mut time = 0u64;
    for op in ops {
        time += 1;
        match *op {
            Op::Write { r, k, v } | Op::StaleWrite { r, k, v } => {
                let (rec, dot) = local_write(&mut replicas[r], k, r, time);
                let empty = VersionVector::new();
                let ctx = matches!(op, Op::StaleWrite { .. }).then_some(&empty);
                let val = Bytes::copy_from_slice(&[v]);
                match KINDS[k] {
                    Kind::Register => rec.write_register(dot, Some(val), ctx).unwrap(),
                    Kind::Set => rec.add_element(dot, val, ctx).unwrap(),
                    Kind::Counter => rec.add_count(dot, i64::from(v)).unwrap(),
                }
                produced[k].push(rec.clone());
            }
            Op::Remove { r, k } => {
                let (rec, dot) = local_write(&mut replicas[r], k, r, time);
                match KINDS[k] {
                    Kind::Register => rec.write_register(dot, None, None).unwrap(),
                    Kind::Set => rec.remove_element(dot, None).unwrap(),
                    Kind::Counter => rec.add_count(dot, -3).unwrap(),
                }
                produced[k].push(rec.clone());
            }
            Op::Sync { from, to } => {
                let src = replicas[from].clone();
                for (k, rec) in src {
                    let dst = replicas[to]
                        .entry(k)
                        .or_insert_with(|| Record::empty(KINDS[k]));
                    dst.merge(&rec).unwrap();
                    produced[k].push(dst.clone());
                }
            }
        }
    }
    produced
}

fn join(a: &Record, b: &Record) -> Record {
    let mut m = a.clone();
    m.merge(b).unwrap();
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn join_is_commutative_associative_idempotent(
        ops in prop::collection::vec(op(), 1..40),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..8),
    ) {
        let produced = run(&ops);
        for states in produced.iter().filter(|s| !s.is_empty()) {
            for (i, j, l) in &picks {
                let (x, y, z) = (i.get(states), j.get(states), l.get(states));
                prop_assert_eq!(join(x, y), join(y, x), "commutative");
                prop_assert_eq!(join(&join(x, y), z), join(x, &join(y, z)), "associative");
                prop_assert_eq!(join(x, x), x.clone(), "idempotent");
                prop_assert_eq!(join(&join(x, y), y), join(x, y), "absorbs");
            }
        }
    }

    #[test]
    fn stores_fed_the_same_deltas_in_any_order_end_byte_identical(
        ops in prop::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        let produced = run(&ops);
        let mut deltas: Vec<Delta> = Vec::new();
        for (k, states) in produced.iter().enumerate() {
            for r in states {
                deltas.push(Delta { key: Key::from(format!("k{k}").as_str()), record: r.clone() });
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut stores: Vec<Arc<dyn Store>> = Vec::new();
            for i in 0..3 {
                stores.push(open_memory(node(i), Arc::new(HlcClock::new()), Limits::default()));
            }
            // Store 0: in order. Store 1: reversed, each twice. Store 2: a seeded shuffle.
            stores[0].apply(&deltas).await.unwrap();
            let mut rev: Vec<Delta> = deltas.iter().rev().flat_map(|d| [d.clone(), d.clone()]).collect();
            stores[1].apply(&rev).await.unwrap();
            let mut x = seed | 1;
            for i in (1..rev.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                rev.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for chunk in rev.chunks(3) {
                stores[2].apply(chunk).await.unwrap();
            }
            let d0 = stores[0].digests();
            for s in &stores[1..] {
                prop_assert_eq!(&s.digests(), &d0);
            }
            for k in 0..KINDS.len() {
                let key = Key::from(format!("k{k}").as_str());
                let bytes: Vec<Option<Bytes>> = {
                    let mut v = Vec::new();
                    for s in &stores {
                        v.push(s.get_record(&key).await.unwrap().map(|r| encode_record(&r).unwrap()));
                    }
                    v
                };
                prop_assert!(bytes.windows(2).all(|w| w[0] == w[1]), "byte-identical records");
            }
            Ok(())
        })?;
    }
}
