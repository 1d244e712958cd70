//! Deterministic simulations of the gossip layer: seeded, virtual time, real frames over a
//! simulated WAN (regions 100–250 ms apart). Each scenario reads like the failure it tests.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use starling_gossip::sim::{Sim, SimConfig};
use starling_gossip::{Envelope, FrameCodec, Message, Peer, Wan};
use starling_store::{Delta, Key, Keyspace, Kind, NodeId, Record, RegionId, VersionVector};
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
