//! Deterministic simulations of the gossip layer: seeded, virtual time, real frames over a
//! simulated WAN (regions 100–250 ms apart). Each scenario reads like the failure it tests.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use starling_gossip::sim::{Sim, SimConfig};
use starling_gossip::{Envelope, FrameCodec, Message, Peer, Wan};
use starling_store::{
    Delta, Key, Keyspace, Kind, NodeId, Record, RegionId, StoreExt, VersionVector,
};
use std::time::Duration;

const REGIONS: [&str; 3] = ["us", "eu", "ap"];
const KS: Keyspace = Keyspace::new("sim");
const S: Duration = Duration::from_secs(1);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A cluster of `per_region` nodes in each of the three default regions, joined and settled.
async fn cluster(seed: u64, per_region: usize, cfg: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut c = SimConfig::new(seed, (3 * per_region) as u32);
    cfg(&mut c);
    let mut sim = Sim::new(c, Wan::default_three(REGIONS));
    for i in 0..per_region {
        for r in REGIONS {
            sim.add_node(r, &format!("{r}{i}")).await;
        }
    }
    sim.run_for(15 * S).await;
    for a in sim.live() {
        assert_eq!(
            sim.members_seen_by(&a).len(),
            3 * per_region - 1,
            "{a} sees every other member after joining"
        );
    }
    sim
}

/// An acknowledged write: where, what, and the version the store answered.
struct Acked {
    key: Key,
    version: VersionVector,
}

/// Checks that every acknowledged write is in (or superseded in) every live replica, and that
/// all replicas are byte-identical.
async fn assert_converged_without_loss(sim: &Sim, acked: &[Acked]) {
    assert!(sim.converged(), "digests differ");
    let live = sim.live();
    let first = sim.dump(&live[0]).await;
    assert!(!first.is_empty());
    for a in &live[1..] {
        assert!(sim.dump(a).await == first, "{a} differs from {}", live[0]);
    }
    for a in &live {
        let store = sim.store(a);
        for w in acked {
            let rec = store.get_record(&w.key).await.unwrap();
            let rec = rec.unwrap_or_else(|| panic!("{a} lost {:?}", w.key));
            assert!(
                rec.context().dominates(&w.version),
                "{a} lost an acknowledged write to {:?}",
                w.key
            );
        }
    }
}

async fn random_writes(
    sim: &mut Sim,
    rng: &mut SmallRng,
    n: usize,
    keys: u64,
    nodes: &[String],
) -> Vec<Acked> {
    let mut acked = Vec::new();
    for i in 0..n {
        let at = &nodes[rng.random_range(0..nodes.len())];
        let key = KS.key().u64(rng.random_range(0..keys)).finish();
        let version = sim.write(at, &key, format!("v{i}@{at}").as_bytes()).await;
        acked.push(Acked { key, version });
        sim.run_for(Duration::from_millis(rng.random_range(0..50)))
            .await;
    }
    acked
}

#[test]
fn three_regions_random_writes_converge() {
    rt().block_on(async {
        let mut sim = cluster(1, 3, |_| {}).await;
        let mut rng = SmallRng::seed_from_u64(11);
        let nodes = sim.live();
        let acked = random_writes(&mut sim, &mut rng, 300, 100, &nodes).await;
        let took = sim.run_until_converged(S / 10, 60 * S).await;
        eprintln!(
            "converged after {took:?}; {:?}; {:?}",
            sim.stats(),
            sim.metrics("us0")
        );
        assert!(took.is_some(), "no convergence in 60 s");
        assert_converged_without_loss(&sim, &acked).await;
    });
}

#[test]
fn a_30s_partition_heals_with_nothing_lost() {
    rt().block_on(async {
        let mut sim = cluster(2, 3, |_| {}).await;
        let mut rng = SmallRng::seed_from_u64(22);
        sim.wan_mut().partition("us", "eu", true);
        sim.wan_mut().partition("us", "ap", true);
        let us = sim.region("us");
        let rest: Vec<String> = sim
            .region("eu")
            .into_iter()
            .chain(sim.region("ap"))
            .collect();
        // Both sides write, often to the same keys: concurrent writes must resolve the same way
        // everywhere.
        let mut acked = Vec::new();
        let start = sim.now();
        while sim.now() - start < 30 * S {
            acked.extend(random_writes(&mut sim, &mut rng, 5, 40, &us).await);
            acked.extend(random_writes(&mut sim, &mut rng, 5, 40, &rest).await);
            sim.run_for(S / 2).await;
        }
        assert!(!sim.converged(), "the partition really separated the sides");
        sim.wan_mut().partition("us", "eu", false);
        sim.wan_mut().partition("us", "ap", false);
        let took = sim.run_until_converged(S / 10, 120 * S).await;
        assert!(took.is_some(), "no convergence within 120 s of healing");
        assert_converged_without_loss(&sim, &acked).await;
    });
}

#[test]
fn a_killed_region_catches_up_by_anti_entropy() {
    rt().block_on(async {
        let mut sim = cluster(3, 3, |_| {}).await;
        let mut rng = SmallRng::seed_from_u64(33);
        let nodes = sim.live();
        let mut acked = random_writes(&mut sim, &mut rng, 50, 200, &nodes).await;
        sim.run_for(5 * S).await;
        sim.kill_region("ap");
        let alive: Vec<String> = sim
            .region("us")
            .into_iter()
            .chain(sim.region("eu"))
            .collect();
        for _ in 0..20 {
            acked.extend(random_writes(&mut sim, &mut rng, 10, 200, &alive).await);
            sim.run_for(2 * S).await;
        }
        // The surviving regions kept serving and agree among themselves.
        assert!(sim.converged(), "us and eu converge while ap is down");
        sim.restart_region("ap").await;
        let took = sim.run_until_converged(S / 10, 120 * S).await;
        assert!(took.is_some(), "ap did not catch up in 120 s");
        assert_converged_without_loss(&sim, &acked).await;
        let repairs: u64 = sim
            .region("ap")
            .iter()
            .map(|a| sim.metrics(a).unwrap().ae_repairs)
            .sum();
        assert!(repairs > 0, "the missed writes came by anti-entropy");
    });
}

#[test]
fn loss_duplication_and_reordering_reach_the_same_state() {
    rt().block_on(async {
        let mut sim = cluster(4, 3, |c| {
            c.duplicate = 0.1;
            c.reorder = Duration::from_millis(80);
        })
        .await;
        sim.wan_mut().set_loss_everywhere(0.1);
        let mut rng = SmallRng::seed_from_u64(44);
        let nodes = sim.live();
        let acked = random_writes(&mut sim, &mut rng, 300, 60, &nodes).await;
        let took = sim.run_until_converged(S / 10, 120 * S).await;
        assert!(took.is_some(), "no convergence under 10 % loss in 120 s");
        assert_converged_without_loss(&sim, &acked).await;
        assert!(sim.stats().dropped > 0, "the loss was real");
    });
}

/// Anti-entropy rounds started by every live node so far.
fn ae_rounds(sim: &Sim) -> u64 {
    sim.live()
        .iter()
        .map(|a| sim.metrics(a).unwrap().ae_rounds)
        .sum()
}

#[test]
fn anti_entropy_backs_off_while_it_repairs_nothing_and_hurries_when_it_does() {
    rt().block_on(async {
        let mut sim = cluster(12, 2, |_| {}).await;
        let mut rng = SmallRng::seed_from_u64(121);
        let nodes = sim.live();
        // A steady write load on a lossless WAN: pushes deliver everything, so rounds find
        // only writes in flight and back off (at most one per `ae_max_interval` = 8 s per node,
        // where a fixed 1 s interval gives about 0.9 per second per node).
        let (r0, t0) = (ae_rounds(&sim), sim.now());
        let mut acked = random_writes(&mut sim, &mut rng, 1200, 400, &nodes).await;
        let secs = (sim.now() - t0).as_secs_f64();
        let idle = (ae_rounds(&sim) - r0) as f64 / secs / nodes.len() as f64;
        // Pushes lost: rounds repair settled writes and speed up again.
        sim.wan_mut().set_loss_everywhere(0.3);
        let (r1, t1) = (ae_rounds(&sim), sim.now());
        acked.extend(random_writes(&mut sim, &mut rng, 1200, 400, &nodes).await);
        sim.wan_mut().set_loss_everywhere(0.0);
        let took = sim.run_until_converged(S / 10, 120 * S).await;
        let lossy = (ae_rounds(&sim) - r1) as f64 / (sim.now() - t1).as_secs_f64() / nodes.len() as f64;
        let settled: u64 = nodes
            .iter()
            .map(|a| sim.metrics(a).unwrap().ae_repairs_settled)
            .sum();
        eprintln!("rounds per node per second: {idle:.3} without loss, {lossy:.3} with; {settled} settled repairs; converged after {took:?}");
        assert!(idle < 0.25, "backed off without loss: {idle:.3}");
        assert!(settled > 0, "lost pushes were repaired");
        assert!(lossy > idle, "hurried while repairing: {lossy:.3} vs {idle:.3}");
        // A repair brings the rounds back to every second: the lost writes are not left to
        // 8 s rounds.
        assert!(
            took.is_some_and(|t| t < 20 * S),
            "converged soon after the loss stopped: {took:?}"
        );
        assert_converged_without_loss(&sim, &acked).await;
    });
}

/// Records shipped by anti-entropy from every live node so far.
fn ae_records_sent(sim: &Sim) -> u64 {
    sim.live()
        .iter()
        .map(|a| sim.metrics(a).unwrap().ae_records_sent)
        .sum()
}

#[test]
fn anti_entropy_under_steady_writes_ships_the_writes_in_flight_not_whole_buckets() {
    rt().block_on(async {
        const WRITES: u64 = 10_000;
        let mut sim = cluster(17, 2, |_| {}).await;
        // The same 40 000 records on every replica: about 10 in each digest bucket.
        let seeded = starling_store::Dot {
            hlc: starling_store::Hlc(1 << 20),
            node: NodeId::new(RegionId::from_name("us"), 900),
        };
        let deltas: Vec<Delta> = (0..40_000u64)
            .map(|i| {
                let mut record = Record::empty(Kind::Register);
                record
                    .write_register(seeded, Some(Bytes::from_static(b"seed")), None)
                    .unwrap();
                let key = Keyspace::new("seed").key().u64(i).finish();
                Delta { key, record }
            })
            .collect();
        for a in sim.live() {
            sim.store(&a).apply(&deltas).await.unwrap();
        }
        assert!(sim.run_until_converged(S / 10, 60 * S).await.is_some());
        // A steady write load: every round finds buckets that differ by the writes in flight.
        let (sent0, rounds0) = (ae_records_sent(&sim), ae_rounds(&sim));
        // 250 writes a second for 40 s, so every round meets writes in flight.
        let mut rng = SmallRng::seed_from_u64(171);
        let nodes = sim.live();
        let mut acked = Vec::new();
        for i in 0..WRITES {
            let at = &nodes[rng.random_range(0..nodes.len())];
            let key = KS.key().u64(rng.random_range(0..5000)).finish();
            let version = sim.write(at, &key, format!("v{i}").as_bytes()).await;
            acked.push(Acked { key, version });
            sim.run_for(Duration::from_millis(4)).await;
        }
        let took = sim.run_until_converged(S / 10, 60 * S).await;
        let (sent, rounds) = (ae_records_sent(&sim) - sent0, ae_rounds(&sim) - rounds0);
        eprintln!(
            "{rounds} rounds shipped {sent} records for {WRITES} writes; converged after {took:?}"
        );
        assert!(rounds >= 20, "rounds ran: {rounds}");
        // Shipping whole differing buckets both ways costs ~20 records per bucket per round.
        assert!(
            sent < WRITES / 10,
            "anti-entropy shipped {sent} records in {rounds} rounds for {WRITES} writes"
        );
        assert!(took.is_some());
        assert_converged_without_loss(&sim, &acked).await;
    });
}

#[test]
fn unauthenticated_and_malformed_peers_are_refused_harmlessly() {
    rt().block_on(async {
        let mut sim = cluster(6, 2, |_| {}).await;
        let target = sim.region("us")[0].clone();
        let evil_key = KS.key().str("evil").finish();
        let mut rec = Record::empty(Kind::Register);
        let forged = starling_store::Dot {
            hlc: starling_store::Hlc(u64::MAX / 2),
            node: NodeId::new(RegionId::from_name("us"), 666),
        };
        rec.write_register(forged, Some(Bytes::from_static(b"pwned")), None)
            .unwrap();
        let env = Envelope {
            from: Peer::seed("attacker"),
            msg: Message::Push {
                deltas: vec![Delta {
                    key: evil_key.clone(),
                    record: rec,
                }],
                hops: 1,
            },
        };
        // Without the secret; garbage; truncated; a valid frame with a flipped bit.
        let wrong = FrameCodec::new(b"not the secret").seal(&env).unwrap();
        let good = sim.codec().seal(&env).unwrap();
        let mut flipped = good.to_vec();
        flipped[40] ^= 0x10;
        for frame in [
            wrong,
            Bytes::from_static(b"\x00\x00\x00\x05hello"),
            good.slice(..20),
            Bytes::from(flipped),
        ] {
            sim.inject(&target, frame);
        }
        sim.run_for(S).await;
        assert_eq!(sim.stats().refused, 4, "every bad frame is refused");
        assert_eq!(sim.store(&target).get(&evil_key).await.unwrap(), None);
        // The cluster still works.
        let k = KS.key().str("after").finish();
        let v = sim.write(&target, &k, b"fine").await;
        let took = sim.run_until_converged(S / 10, 30 * S).await;
        assert!(took.is_some());
        assert_converged_without_loss(&sim, &[Acked { key: k, version: v }]).await;
    });
}

// ---- CAS linearizability -------------------------------------------------------------------

/// One CAS as a client saw it: "if the value is `from`, make it `to`".
#[derive(Clone, Debug)]
struct CasOp {
    invoked: Duration,
    /// `None` while unknown (timed out or failed: it may or may not have taken effect).
    returned: Option<Duration>,
    from: Option<String>,
    to: String,
    outcome: CasSeen,
}

#[derive(Clone, Debug, PartialEq)]
enum CasSeen {
    Applied,
    /// Refused; the owner said the value was this.
    Refused(Option<String>),
    Unknown,
}

/// Wing & Gong's search with memoization (as Porcupine does): is there an order of the ops,
/// consistent with real time, in which a single register explains every outcome? Unknown ops
/// may take effect at any point after their invocation, or never.
fn linearizable(ops: &[CasOp], initial: Option<String>) -> bool {
    use std::collections::HashSet;
    fn search(
        ops: &[CasOp],
        done: &mut Vec<bool>,
        state: Option<String>,
        seen: &mut HashSet<(Vec<bool>, Option<String>)>,
    ) -> bool {
        // Finished when every op with a known outcome is linearized.
        if ops
            .iter()
            .zip(done.iter())
            .all(|(o, d)| *d || o.outcome == CasSeen::Unknown)
        {
            return true;
        }
        if !seen.insert((done.clone(), state.clone())) {
            return false;
        }
        // An op may go next only if it was invoked before every pending op returned.
        let horizon = ops
            .iter()
            .zip(done.iter())
            .filter(|(_, d)| !**d)
            .filter_map(|(o, _)| o.returned)
            .min()
            .unwrap_or(Duration::MAX);
        for i in 0..ops.len() {
            if done[i] || ops[i].invoked > horizon {
                continue;
            }
            let op = &ops[i];
            let next = match &op.outcome {
                CasSeen::Applied | CasSeen::Unknown if state == op.from => {
                    Some(Some(op.to.clone()))
                }
                CasSeen::Refused(seen) if *seen == state && state != op.from => Some(state.clone()),
                _ => None,
            };
            if let Some(next) = next {
                done[i] = true;
                if search(ops, done, next, seen) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    let mut done = vec![false; ops.len()];
    search(ops, &mut done, initial, &mut HashSet::new())
}

#[test]
fn the_checker_catches_a_lost_update() {
    let op = |i: u64, r: u64, from: Option<&str>, to: &str, outcome| CasOp {
        invoked: Duration::from_millis(i),
        returned: Some(Duration::from_millis(r)),
        from: from.map(String::from),
        to: to.into(),
        outcome,
    };
    // Two swaps from the same value both applied, one after the other: impossible.
    let bad = [
        op(0, 1, Some("a"), "b", CasSeen::Applied),
        op(2, 3, Some("a"), "c", CasSeen::Applied),
    ];
    assert!(!linearizable(&bad, Some("a".into())));
    // Concurrent, one applied, one refused having seen the other's value: fine.
    let good = [
        op(0, 5, Some("a"), "b", CasSeen::Applied),
        op(1, 4, Some("a"), "c", CasSeen::Refused(Some("b".into()))),
    ];
    assert!(linearizable(&good, Some("a".into())));
}

#[test]
fn cas_under_concurrency_and_owner_failure_is_linearizable() {
    rt().block_on(async {
        let mut sim = cluster(7, 3, |c| {
            c.reorder = Duration::from_millis(5);
        })
        .await;
        let key = KS.key().str("handle").finish();
        let owner = {
            let probe = sim.live()[0].clone();
            sim.owner_of(&probe, "us", &key).unwrap()
        };
        // Five clients spread over the regions, none on the owner (which will be killed).
        let clients: Vec<String> = ["us0", "us1", "us2", "eu0", "ap1", "eu2"]
            .into_iter()
            .filter(|c| *c != owner.addr)
            .take(5)
            .map(String::from)
            .collect();
        let mut ops: Vec<CasOp> = Vec::new();
        let mut inflight: Vec<Option<((String, u64), usize)>> = vec![None; clients.len()];
        let mut n = 0;
        let mut killed = false;
        let start = sim.now();
        while ops.len() < 60 || inflight.iter().any(Option::is_some) {
            assert!(sim.now() - start < 600 * S, "the run does not end");
            if !killed && ops.len() >= 20 {
                sim.kill(&owner.addr);
                killed = true;
            }
            for (c, client) in clients.iter().enumerate() {
                match &inflight[c] {
                    Some((handle, i)) => {
                        let Some(r) = sim.cas_result(handle) else {
                            continue;
                        };
                        let op = &mut ops[*i];
                        match r {
                            Ok(starling_store::CasOutcome::Applied(_)) => {
                                op.outcome = CasSeen::Applied;
                                op.returned = Some(sim.now());
                            }
                            Ok(starling_store::CasOutcome::Conflict(cur)) => {
                                let seen = cur
                                    .and_then(|v| v.value)
                                    .map(|b| String::from_utf8(b.to_vec()).unwrap());
                                op.outcome = CasSeen::Refused(seen);
                                op.returned = Some(sim.now());
                            }
                            Err(_) => {} // unknown: it may or may not have happened
                        }
                        inflight[c] = None;
                    }
                    None if ops.len() < 60 => {
                        // Read this client's local replica (maybe stale), then swap from it.
                        let cur = sim.store(client).get(&key).await.unwrap();
                        let client = client.as_str();
                        let from = cur
                            .as_ref()
                            .and_then(|v| v.value.clone())
                            .map(|b| String::from_utf8(b.to_vec()).unwrap());
                        let to = format!("{client}-{n}");
                        n += 1;
                        let handle = sim
                            .cas(
                                client,
                                "us",
                                key.clone(),
                                cur.map(|v| v.version),
                                Some(Bytes::from(to.clone())),
                            )
                            .await;
                        ops.push(CasOp {
                            invoked: sim.now(),
                            returned: None,
                            from,
                            to,
                            outcome: CasSeen::Unknown,
                        });
                        inflight[c] = Some((handle, ops.len() - 1));
                    }
                    None => {}
                }
            }
            sim.run_for(Duration::from_millis(20)).await;
        }
        let applied = ops.iter().filter(|o| o.outcome == CasSeen::Applied).count();
        let unknown = ops.iter().filter(|o| o.outcome == CasSeen::Unknown).count();
        eprintln!(
            "cas history: {} ops, {applied} applied, {unknown} unknown, ends at {:?}",
            ops.len(),
            sim.now()
        );
        assert!(
            applied >= 5,
            "enough swaps applied to mean something ({applied})"
        );
        assert!(
            linearizable(&ops, None),
            "history is not linearizable: {ops:#?}"
        );
    });
}

/// Runs the simulation until the CAS of `handle` has an outcome (at most 10 s).
async fn cas_outcome(
    sim: &mut Sim,
    handle: &(String, u64),
) -> Result<starling_store::CasOutcome, starling_gossip::CasError> {
    for _ in 0..1000 {
        if let Some(r) = sim.cas_result(handle) {
            return r;
        }
        sim.run_for(Duration::from_millis(10)).await;
    }
    panic!("the CAS {handle:?} has no outcome after 10 s");
}

/// The owner of a key dies; the next member of its region creates the key; the owner comes back
/// on its old store, which lacks the key until anti-entropy brings it, and owns the key again.
/// A create of the key executed there must see the other member's value (the `kill -9` fault
/// test lost an acknowledged chat message to a second create of its slot), or fail when that
/// member has died meanwhile (not yet declared down, it may hold the newest value). With the
/// repair read turned off, the same run applies the second create: the scenario reaches the
/// window.
#[test]
fn a_restarted_owner_reads_its_region_before_a_cas_on_a_key_it_has_not_caught_up_on() {
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Mode {
        Repair,
        RepairFromADeadMember,
        NoRepair,
    }
    for mode in [Mode::Repair, Mode::RepairFromADeadMember, Mode::NoRepair] {
        let (outcome, repaired) = rt().block_on(async {
            let mut sim = cluster(21, 2, |c| {
                if mode == Mode::NoRepair {
                    c.gossip.cas_repair = Duration::ZERO;
                }
            })
            .await;
            let key = KS.key().str("slot").finish();
            let owner = sim.owner_of("eu0", "us", &key).unwrap().addr;
            let other = if owner == "us0" { "us1" } else { "us0" };
            sim.kill(&owner);
            sim.run_for(40 * S).await;
            assert_eq!(sim.owner_of(other, "us", &key).unwrap().addr, other);
            let h = sim
                .cas(
                    other,
                    "us",
                    key.clone(),
                    None,
                    Some(Bytes::from_static(b"first")),
                )
                .await;
            assert!(
                matches!(
                    cas_outcome(&mut sim, &h).await,
                    Ok(starling_store::CasOutcome::Applied(_))
                ),
                "the create at the stand-in owner is applied"
            );
            sim.restart(&owner).await;
            sim.run_for(Duration::from_millis(300)).await;
            assert!(
                sim.members_seen_by(&owner).iter().any(|p| p.addr == other),
                "the restarted owner knows its region again"
            );
            assert_eq!(sim.owner_of(&owner, "us", &key).unwrap().addr, owner);
            assert!(
                sim.store(&owner).get(&key).await.unwrap().is_none(),
                "anti-entropy has not brought the key yet: the window is open"
            );
            if mode == Mode::RepairFromADeadMember {
                sim.kill(other);
            }
            let h = sim
                .cas(
                    &owner,
                    "us",
                    key.clone(),
                    None,
                    Some(Bytes::from_static(b"second")),
                )
                .await;
            let outcome = cas_outcome(&mut sim, &h).await;
            (outcome, sim.metrics(&owner).unwrap().cas_repaired)
        });
        match mode {
            Mode::Repair => {
                match outcome {
                    Ok(starling_store::CasOutcome::Conflict(Some(v))) => {
                        assert_eq!(v.value.as_deref(), Some(&b"first"[..]));
                    }
                    other => panic!("the second create must conflict with the first: {other:?}"),
                }
                assert_eq!(repaired, 1, "the read brought the key");
            }
            Mode::RepairFromADeadMember => assert!(
                matches!(outcome, Err(starling_gossip::CasError::Failed(_))),
                "without the member's answer the CAS fails: {outcome:?}"
            ),
            Mode::NoRepair => assert!(
                matches!(outcome, Ok(starling_store::CasOutcome::Applied(_))),
                "without the read the stale owner applies it: {outcome:?}"
            ),
        }
    }
}

/// A node restarted with no seed finds the cluster again through the members it saved before:
/// a seed that restarted a moment before may not list them all (the `kill -9` test had a node
/// miss the other member of its region that way and take its keys).
#[test]
fn a_restarted_node_announces_itself_to_the_members_it_remembers() {
    rt().block_on(async {
        let mut sim = cluster(22, 2, |_| {}).await;
        sim.kill("eu1");
        sim.run_for(S).await;
        sim.restart_without_seeds("eu1").await;
        sim.run_for(3 * S).await;
        assert_eq!(
            sim.members_seen_by("eu1").len(),
            5,
            "every other member is back in the view"
        );
        assert!(sim.members_seen_by("eu1").iter().any(|p| p.addr == "eu0"));
    });
}

#[test]
fn cas_fails_fast_when_the_owner_region_is_unreachable() {
    rt().block_on(async {
        let mut sim = cluster(8, 2, |_| {}).await;
        sim.wan_mut().partition("us", "eu", true);
        sim.wan_mut().partition("us", "ap", true);
        // Until SWIM declares the region down, a request times out; after, it fails at once.
        sim.run_for(60 * S).await;
        let key = KS.key().str("h").finish();
        let h = sim
            .cas("eu0", "us", key, None, Some(Bytes::from_static(b"x")))
            .await;
        let r = sim.cas_result(&h);
        assert!(
            matches!(
                r,
                Some(Err(starling_gossip::CasError::OwnerUnreachable { .. }))
            ),
            "{r:?}"
        );
    });
}

#[test]
fn calls_run_at_the_route_owner_of_the_region_once_across_the_wan() {
    use starling_gossip::sim::SIM_ECHO;
    rt().block_on(async {
        let mut sim = cluster(9, 3, |_| {}).await;
        for i in 0..20 {
            let route = KS.key().str("conv").u64(i).finish();
            let owner = sim.owner_of("eu0", "us", &route).unwrap();
            let started = sim.now();
            let h = sim.call("eu0", "us", &route, SIM_ECHO, Bytes::from(format!("m{i}")));
            let mut answered = None;
            while answered.is_none() && sim.now() < started + 5 * S {
                sim.run_for(Duration::from_millis(5)).await;
                answered = sim.call_result(&h);
            }
            let expected = format!("{}:m{i}", owner.addr);
            assert_eq!(
                answered.unwrap().unwrap(),
                Bytes::from(expected),
                "run by the owner of the route in us"
            );
            // One WAN round trip (us-eu: 100 ms), not one per anything (virtual time).
            let took = sim.now() - started;
            assert!(took < Duration::from_millis(200), "{took:?}");
        }
        // A node of the region itself runs it locally or in-region.
        let route = KS.key().str("conv").u64(99).finish();
        let h = sim.call("us0", "us", &route, SIM_ECHO, Bytes::from_static(b"x"));
        sim.run_for(S).await;
        assert!(sim.call_result(&h).unwrap().is_ok());
        // An unknown service fails with the owner's reason.
        let h = sim.call("eu0", "us", &route, "nope", Bytes::new());
        sim.run_for(2 * S).await;
        let r = sim.call_result(&h);
        assert!(
            matches!(&r, Some(Err(starling_gossip::CasError::Failed(why))) if why.contains("no handler")),
            "{r:?}"
        );
        // A region cut off: the call times out, then (region declared down) fails at once.
        sim.wan_mut().partition("us", "eu", true);
        let h = sim.call("eu0", "us", &route, SIM_ECHO, Bytes::new());
        sim.run_for(6 * S).await;
        assert!(matches!(
            sim.call_result(&h),
            Some(Err(starling_gossip::CasError::OwnerUnreachable { .. }))
        ));
        sim.wan_mut().partition("us", "ap", true);
        sim.run_for(60 * S).await;
        let h = sim.call("eu0", "us", &route, SIM_ECHO, Bytes::new());
        assert!(matches!(
            sim.call_result(&h),
            Some(Err(starling_gossip::CasError::OwnerUnreachable { .. }))
        ));
    });
}

#[test]
fn tombstones_are_collected_after_the_grace_and_stay_gone() {
    rt().block_on(async {
        let mut sim = cluster(9, 2, |c| {
            c.gossip.gc_interval = 10 * S;
            c.gossip.gc_grace = 20 * S;
        })
        .await;
        let nodes = sim.live();
        let keys: Vec<Key> = (0..40u64)
            .map(|i| KS.key().str("gc").u64(i).finish())
            .collect();
        for (i, k) in keys.iter().enumerate() {
            sim.write(&nodes[i % nodes.len()], k, b"v").await;
        }
        sim.run_for(5 * S).await;
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let at = nodes[(i + 1) % nodes.len()].clone();
            sim.store(&at).delete(k).await.unwrap();
            sim.after_local_write(&at).await;
        }
        // Tombstones spread first, then go everywhere, and anti-entropy does not bring them back.
        sim.run_for(2 * S).await;
        assert!(
            sim.store(&nodes[0])
                .get_record(&keys[0])
                .await
                .unwrap()
                .is_some()
        );
        sim.run_for(60 * S).await;
        for a in &nodes {
            let store = sim.store(a);
            for (i, k) in keys.iter().enumerate() {
                let rec = store.get_record(k).await.unwrap();
                if i % 2 == 0 {
                    assert_eq!(rec, None, "{a} still holds the tombstone of key {i}");
                } else {
                    assert!(
                        rec.is_some_and(|r| !r.is_tombstone()),
                        "{a} lost live key {i}"
                    );
                }
            }
            let reaped = sim.reaper_stats(a);
            assert!(reaped.collected.load(std::sync::atomic::Ordering::Relaxed) > 0);
        }
        assert!(sim.converged());
    });
}

#[test]
fn nothing_is_collected_while_a_member_is_down() {
    rt().block_on(async {
        let mut sim = cluster(10, 2, |c| {
            c.gossip.gc_interval = 5 * S;
            // Longer than SWIM takes to notice a dead member.
            c.gossip.gc_grace = 20 * S;
        })
        .await;
        let k = KS.key().str("kept").finish();
        sim.write("us0", &k, b"v").await;
        sim.run_for(2 * S).await;
        sim.kill("ap1");
        sim.store("us0").delete(&k).await.unwrap();
        sim.after_local_write("us0").await;
        // ap1 missed the delete: while it is down the tombstone must stay, past the grace.
        sim.run_for(60 * S).await;
        for a in sim.live() {
            let rec = sim.store(&a).get_record(&k).await.unwrap();
            assert!(
                rec.is_some_and(|r| r.is_tombstone()),
                "{a} dropped the tombstone early"
            );
        }
        // It comes back, gets the tombstone, and then everyone collects it.
        sim.restart("ap1").await;
        sim.run_for(90 * S).await;
        for a in sim.live() {
            assert_eq!(sim.store(&a).get_record(&k).await.unwrap(), None, "{a}");
        }
    });
}

#[test]
fn writes_can_wait_until_durable_in_k_regions() {
    rt().block_on(async {
        let mut sim = cluster(11, 2, |_| {}).await;
        let k = KS.key().str("durable").finish();
        let h = sim.write_durable("us0", &k, b"v", 3).await;
        sim.run_for(2 * S).await;
        assert_eq!(
            sim.durable_result(&h),
            Some(Ok(())),
            "all three regions hold it"
        );
        // Cut us off: durable in 2 regions cannot be reached, and says how far it got.
        sim.wan_mut().partition("us", "eu", true);
        sim.wan_mut().partition("us", "ap", true);
        let h = sim.write_durable("us1", &k, b"w", 2).await;
        sim.run_for(10 * S).await;
        let r = sim.durable_result(&h);
        assert_eq!(
            r,
            Some(Err(starling_gossip::NotDurable {
                reached: 1,
                wanted: 2
            })),
            "{r:?}"
        );
        // Durable locally is immediate.
        let h = sim.write_durable("us1", &k, b"x", 1).await;
        assert_eq!(sim.durable_result(&h), Some(Ok(())));
    });
}

#[test]
fn a_dead_member_is_suspected_then_declared_down_then_rejoins() {
    rt().block_on(async {
        let mut sim = cluster(12, 2, |_| {}).await;
        let state_of = |sim: &Sim, who: &str| {
            sim.membership_seen_by("us0")
                .into_iter()
                .find(|(p, _)| p.addr == who)
                .map(|(_, s)| s)
        };
        assert_eq!(
            state_of(&sim, "eu1"),
            Some(starling_gossip::MemberState::Alive)
        );
        sim.kill("eu1");
        sim.run_for(60 * S).await;
        assert_eq!(
            state_of(&sim, "eu1"),
            Some(starling_gossip::MemberState::Down)
        );
        assert_eq!(sim.membership_seen_by("us0").len(), 5, "one entry per node");
        sim.restart("eu1").await;
        sim.run_for(20 * S).await;
        assert_eq!(
            state_of(&sim, "eu1"),
            Some(starling_gossip::MemberState::Alive)
        );
    });
}

#[test]
fn a_peer_down_longer_than_the_trimmed_feed_catches_up_by_anti_entropy() {
    use starling_store::{TrimConfig, TrimStats, Trimmer};
    use std::sync::Arc;
    rt().block_on(async {
        let mut sim = cluster(12, 2, |_| {}).await;
        let mut rng = SmallRng::seed_from_u64(121);
        let nodes = sim.live();
        let mut acked = random_writes(&mut sim, &mut rng, 40, 300, &nodes).await;
        sim.run_for(3 * S).await;
        sim.kill("ap1");
        let alive: Vec<String> = sim.live();
        for _ in 0..5 {
            acked.extend(random_writes(&mut sim, &mut rng, 20, 300, &alive).await);
            sim.run_for(2 * S).await;
        }
        // Every live node's feed is trimmed below its push: what ap1 missed is nowhere in any
        // feed any more.
        for a in &alive {
            let store = sim.store(a);
            let stats = Arc::new(TrimStats::default());
            let trimmer = Trimmer::new(
                store.clone(),
                &[starling_gossip::PUSH_CONSUMER],
                TrimConfig::default(),
                stats,
            );
            let pass = trimmer.pass().await.unwrap();
            assert!(pass.trimmed > 0, "{a} trimmed nothing");
            assert!(
                pass.length < 20,
                "{a} kept {} entries behind its push",
                pass.length
            );
        }
        sim.restart("ap1").await;
        let took = sim.run_until_converged(S / 10, 120 * S).await;
        assert!(took.is_some(), "ap1 did not catch up in 120 s");
        assert_converged_without_loss(&sim, &acked).await;
        assert!(sim.metrics("ap1").unwrap().ae_repairs > 0);
    });
}

#[test]
fn an_upgrade_to_encrypted_gossip_in_two_rolls_never_stops_replication() {
    use starling_gossip::wire::Encryption;
    rt().block_on(async {
        let mut c = SimConfig::new(17, 6);
        c.gossip.ae_max_interval = 2 * S;
        let mut sim = Sim::new(c, Wan::default_three(REGIONS));
        // A cluster of the build before encryption: speaks 2, accepts 1 to 3, all in clear.
        for i in 0..2 {
            for r in REGIONS {
                sim.add_node_speaking(r, &format!("{r}{i}"), 2, 1..=3).await;
            }
        }
        sim.run_for(15 * S).await;
        let nodes = sim.live();
        let mut rng = SmallRng::seed_from_u64(171);
        let mut acked = random_writes(&mut sim, &mut rng, 30, 200, &nodes).await;
        // Two rolls, one node at a time, writing everywhere all along: first to this build with
        // encryption optional, then to the default (required).
        for mode in [Encryption::Optional, Encryption::Required] {
            for a in &nodes {
                sim.kill(a);
                sim.set_encryption(a, mode);
                sim.run_for(S).await;
                sim.restart(a).await;
                let live = sim.live();
                acked.extend(random_writes(&mut sim, &mut rng, 20, 200, &live).await);
                sim.run_for(5 * S).await;
            }
            let took = sim.run_until_converged(S / 10, 60 * S).await;
            assert!(
                took.is_some(),
                "the cluster did not converge after the {mode:?} roll"
            );
            assert_converged_without_loss(&sim, &acked).await;
            assert_eq!(
                sim.stats().incompatible,
                0,
                "{mode:?}: every frame understood"
            );
        }
        // After the second roll nothing travels in clear, and replication goes on.
        let before = sim.stats().in_clear;
        let live = sim.live();
        acked.extend(random_writes(&mut sim, &mut rng, 30, 200, &live).await);
        let took = sim.run_until_converged(S / 10, 60 * S).await;
        assert!(took.is_some(), "the encrypted cluster did not converge");
        assert_converged_without_loss(&sim, &acked).await;
        assert_eq!(
            sim.stats().in_clear,
            before,
            "a frame in clear after the upgrade"
        );
        assert!(sim.stats().delivered > 0);
        // A build before encryption is now refused and never becomes a member.
        sim.add_node_speaking("us", "old", 2, 1..=3).await;
        sim.run_for(20 * S).await;
        assert!(sim.stats().incompatible > 0);
        for a in &nodes {
            assert!(
                sim.members_seen_by(a).iter().all(|p| p.addr != "old"),
                "{a} took in a peer sending frames in clear"
            );
        }
    });
}

#[test]
fn a_rolling_upgrade_from_protocol_1_converges_and_a_far_version_is_refused() {
    rt().block_on(async {
        let mut c = SimConfig::new(13, 6);
        c.gossip.ae_max_interval = 2 * S;
        let mut sim = Sim::new(c, Wan::default_three(REGIONS));
        // A cluster of version-1 builds: they speak 1 and accept 1 only.
        for i in 0..2 {
            for r in REGIONS {
                sim.add_node_speaking(r, &format!("{r}{i}"), 1, 1..=1).await;
            }
        }
        sim.run_for(15 * S).await;
        let nodes = sim.live();
        let mut rng = SmallRng::seed_from_u64(131);
        let mut acked = random_writes(&mut sim, &mut rng, 30, 200, &nodes).await;
        // One node at a time: stop, upgrade, start, keep writing everywhere.
        for (i, a) in nodes.iter().enumerate() {
            sim.kill(a);
            sim.set_protocol(a, 2, 1..=3);
            sim.run_for(S).await;
            sim.restart(a).await;
            let live = sim.live();
            acked.extend(random_writes(&mut sim, &mut rng, 20, 200, &live).await);
            sim.run_for(5 * S).await;
            if i == nodes.len() / 2 {
                let took = sim.run_until_converged(S / 10, 60 * S).await;
                assert!(took.is_some(), "a half-upgraded cluster did not converge");
                assert_converged_without_loss(&sim, &acked).await;
            }
        }
        let took = sim.run_until_converged(S / 10, 60 * S).await;
        assert!(took.is_some(), "the upgraded cluster did not converge");
        assert_converged_without_loss(&sim, &acked).await;
        assert_eq!(
            sim.stats().incompatible,
            0,
            "adjacent versions always understood"
        );
        for a in &nodes {
            let mut seen: Vec<String> =
                sim.members_seen_by(a).into_iter().map(|p| p.addr).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), nodes.len() - 1, "{a} sees {seen:?}");
        }
        // A build two versions ahead is refused both ways and never becomes a member.
        sim.add_node_speaking("us", "far", 4, 4..=4).await;
        sim.run_for(20 * S).await;
        assert!(sim.stats().incompatible > 0);
        assert!(sim.members_seen_by("far").is_empty());
        for a in &nodes {
            assert!(
                sim.members_seen_by(a).iter().all(|p| p.addr != "far"),
                "{a} took in a peer of an incompatible version"
            );
        }
    });
}
