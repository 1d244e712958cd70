//! One reaper pass over a store of N live records and M due tombstones: the sweep of every
//! record (the reaper before the tombstone index, and still ScyllaDB's) against the index, in
//! the same run, alternated A B A B, on the memory and embedded engines. Before each timed pass
//! M keys are deleted again (untimed) and the clock moves past them (a zero grace), so each pass
//! has the same M tombstones due. Prints, per engine and variant, the median process CPU time and
//! wall time of a pass and the records it read, then the ratios sweep / index.
//!
//! `nice -n 19 cargo bench -p starling-gossip --bench reaper`; `REAPER_BENCH_N` (100 000),
//! `REAPER_BENCH_M` (100), `REAPER_BENCH_ROUNDS` (4 rounds of A B) and `REAPER_BENCH_PASSES`
//! (5 passes a measurement) override.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use bytes::Bytes;
use nix::time::{ClockId, clock_gettime};
use starling_gossip::reaper::{Reaper, ReaperConfig, ReaperPass};
use starling_store::{
    EmbeddedOptions, HlcClock, Key, Limits, Mutation, NodeId, RegionId, Store, open_embedded,
    open_memory,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: usize) -> Key {
    Key::from(format!("k{i:08}").as_str())
}

fn cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// N live records, spread so the M tombstones fall among them.
async fn fill(s: &Arc<dyn Store>, n: usize) {
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(1000) {
        let puts: Vec<_> = chunk
            .iter()
            .map(|&i| (key(i), Mutation::Put(Bytes::from_static(b"a live record"))))
            .collect();
        s.mutate_many(&puts).await.unwrap();
    }
}

/// Deletes the M keys (ids `n + j·stride`, between the live ones' keys), then waits until
/// the wall clock is past them.
async fn due(s: &Arc<dyn Store>, clock: &HlcClock, n: usize, m: usize) {
    let dels: Vec<_> = (0..m).map(|j| (key(n + j), Mutation::Delete)).collect();
    s.mutate_many(&dels).await.unwrap();
    let now = clock.now().millis();
    while clock.wall_millis() <= now {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Clone, Copy)]
struct Sample {
    cpu: Duration,
    wall: Duration,
    pass: ReaperPass,
}

fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by_key(|s| s.cpu);
    v[v.len() / 2]
}

async fn measure(
    s: &Arc<dyn Store>,
    clock: &Arc<HlcClock>,
    (n, m, passes): (usize, usize, usize),
    sweep: bool,
) -> Sample {
    let cfg = ReaperConfig {
        grace: Duration::ZERO,
        page: 1000,
        // One pass covers the whole key space, or the whole index.
        pages: (n + m) / 1000 + 2,
    };
    let r = Reaper::new(s.clone(), clock.clone(), cfg, Arc::default());
    let mut out = Vec::with_capacity(passes);
    for _ in 0..passes {
        due(s, clock, n, m).await;
        let (c0, w0) = (cpu(), Instant::now());
        let pass = if sweep {
            r.sweep_pass(|| true).await.unwrap()
        } else {
            r.pass(|| true).await.unwrap()
        };
        let sample = Sample {
            cpu: cpu() - c0,
            wall: w0.elapsed(),
            pass,
        };
        assert_eq!(pass.collected, m as u64, "each pass collects the M due");
        out.push(sample);
    }
    median(out)
}

fn main() {
    let n = env("REAPER_BENCH_N", 100_000);
    let m = env("REAPER_BENCH_M", 100);
    let rounds = env("REAPER_BENCH_ROUNDS", 4);
    let passes = env("REAPER_BENCH_PASSES", 5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let node = NodeId::new(RegionId(1), 1);
        let clock = Arc::new(HlcClock::new());
        let engines: [(&str, Arc<dyn Store>); 2] = [
            ("memory", open_memory(node, clock.clone(), Limits::default())),
            (
                "embedded",
                open_embedded(node, clock.clone(), &EmbeddedOptions::new(dir.path())).unwrap(),
            ),
        ];
        println!("reaper pass: {n} live records, {m} due tombstones, {rounds} rounds A B, median of {passes} passes");
        for (name, s) in engines {
            fill(&s, n).await;
            let mut ratios = Vec::new();
            for round in 0..rounds {
                let a = measure(&s, &clock, (n, m, passes), true).await;
                let b = measure(&s, &clock, (n, m, passes), false).await;
                for (variant, x) in [("sweep", a), ("index", b)] {
                    println!(
                        "{name:8} round {round} {variant}: cpu {:>9.3} ms  wall {:>9.3} ms  records read {:>7}  collected {}",
                        x.cpu.as_secs_f64() * 1e3,
                        x.wall.as_secs_f64() * 1e3,
                        x.pass.scanned,
                        x.pass.collected,
                    );
                }
                ratios.push((
                    a.cpu.as_secs_f64() / b.cpu.as_secs_f64().max(1e-9),
                    a.wall.as_secs_f64() / b.wall.as_secs_f64().max(1e-9),
                    a.pass.scanned as f64 / b.pass.scanned.max(1) as f64,
                ));
            }
            for (round, (c, w, r)) in ratios.iter().enumerate() {
                println!(
                    "{name:8} round {round} sweep / index: cpu {c:.1}x  wall {w:.1}x  records read {r:.0}x"
                );
            }
        }
    });
}
