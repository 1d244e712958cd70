//! The soak: mixed load at half the measured capacity for `STARLING_SOAK_SECS` (60 in CI;
//! `infra/soak.sh` runs 1800) against 2 regions × 1 node, sampling every
//! `STARLING_SOAK_SAMPLE_SECS` (3) each node's RSS (`/proc/PID/status`) and its change-feed
//! consumer backlogs (`starling_consumer_backlog` in `/metrics`: the fan-out and follower-count
//! queues). After a warm-up (`STARLING_SOAK_WARMUP_SECS`, default a quarter of the run) it
//! asserts: zero failed requests, RSS growth below `STARLING_SOAK_RSS_GROWTH` per node from the
//! end of the warm-up to the end (0.05 for runs of 10 minutes or more, as `infra/soak.sh`; 0.10
//! for shorter ones, whose 45 measured seconds still see the stores' memtables and caches fill:
//! +4.9 % in the first CI-length run, growth that is not a leak), and no growing queue (the backlogs' mean over the last
//! third at most twice that of the first third plus 256 entries, and drained to 0 once the load
//! stops). With `STARLING_SOAK_OUT=DIR` it writes `DIR/soak-samples.csv` and `DIR/soak.json`.

use crate::harness::{Cluster, Options, Watchdog, metric, rss_kib};
use crate::traffic::{Load, Traffic, counts};
use crate::{MIX, env_u64, seed};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const BACKLOGS: [&str; 2] = [
    "starling_consumer_backlog{consumer=\"feed-fan-out\"}",
    "starling_consumer_backlog{consumer=\"graph-counts\"}",
];

#[derive(Debug, Clone)]
struct Sample {
    at: f64,
    node: String,
    rss_kib: u64,
    backlog: [f64; 2],
    ok: u64,
    errors: u64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

pub(crate) fn run() {
    let secs = env_u64("STARLING_SOAK_SECS", 60);
    let every = Duration::from_secs(env_u64("STARLING_SOAK_SAMPLE_SECS", 3).max(1));
    let warmup = Duration::from_secs(env_u64("STARLING_SOAK_WARMUP_SECS", secs / 4));
    let limit: f64 = std::env::var("STARLING_SOAK_RSS_GROWTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if secs >= 600 { 0.05 } else { 0.10 });
    let duration = Duration::from_secs(secs);
    let _w = Watchdog::arm("soak", duration + Duration::from_secs(300));
    let seed = seed(19);
    let c = Cluster::start(&Options {
        regions: &["us", "eu"],
        per_region: 1,
        rtt_ms: 40,
        handle_region: "us",
        redis: vec![],
    });
    let mut t = Traffic::start(
        Load {
            targets: c.urls(|_| true),
            users: 32,
            mix: MIX,
            rate: 0.0,
            seed,
            timeout: Duration::from_secs(10),
        },
        c.dir.path(),
        "soak",
    );
    eprintln!(
        "soak (seed {seed}): capacity {:.0} req/s measured, running at {:.0} req/s for {duration:?} (warm-up {warmup:?})",
        t.capacity.unwrap_or(0.0),
        t.rate
    );
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    while start.elapsed() < duration {
        std::thread::sleep(every);
        let so_far = t.so_far();
        for m in &c.members {
            let pid = m.pid().unwrap();
            samples.push(Sample {
                at: start.elapsed().as_secs_f64(),
                node: m.name.clone(),
                rss_kib: rss_kib(pid).unwrap(),
                backlog: BACKLOGS.map(|b| metric(m.port, b).unwrap()),
                ok: so_far.ok,
                errors: so_far.errors,
            });
        }
    }
    let reports = t.finish();
    let total = counts(&reports["soak"]);
    eprintln!("soak:\n{}", reports["soak"].table());

    // Queues drain once the load stops.
    let drained = crate::common::eventually(Duration::from_secs(60), || {
        c.members
            .iter()
            .all(|m| BACKLOGS.iter().all(|b| metric(m.port, b) == Some(0.0)))
    });

    let mut summary = String::new();
    let mut failures = Vec::new();
    for m in &c.members {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.node == m.name).collect();
        let measured: Vec<&Sample> = mine
            .iter()
            .copied()
            .filter(|s| s.at >= warmup.as_secs_f64())
            .collect();
        assert!(measured.len() >= 3, "too few samples after the warm-up");
        let (first, last) = (measured[0].rss_kib, measured[measured.len() - 1].rss_kib);
        let peak = measured.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let growth = last as f64 / first as f64 - 1.0;
        let third = (measured.len() / 3).max(1);
        let mut queues = String::new();
        for (q, name) in ["fan-out", "counts"].iter().enumerate() {
            let early: Vec<f64> = measured[..third].iter().map(|s| s.backlog[q]).collect();
            let late: Vec<f64> = measured[measured.len() - third..]
                .iter()
                .map(|s| s.backlog[q])
                .collect();
            let max = measured.iter().map(|s| s.backlog[q]).fold(0.0, f64::max);
            let _ = write!(
                queues,
                " {name} backlog mean {:.1} → {:.1} (max {max:.0});",
                mean(&early),
                mean(&late)
            );
            if mean(&late) > 2.0 * mean(&early) + 256.0 {
                failures.push(format!("{}: the {name} backlog grows", m.name));
            }
        }
        let _ = writeln!(
            summary,
            "{}: RSS {:.1} MiB after the warm-up → {:.1} MiB at the end ({:+.2} %, peak {:.1} MiB);{queues}",
            m.name,
            first as f64 / 1024.0,
            last as f64 / 1024.0,
            100.0 * growth,
            peak as f64 / 1024.0
        );
        if growth >= limit {
            failures.push(format!(
                "{}: RSS grew {:.2} % (limit {:.2} %)",
                m.name,
                100.0 * growth,
                100.0 * limit
            ));
        }
    }
    eprintln!(
        "soak (seed {seed}): {secs} s at {:.0} req/s (capacity {:.0}): {} ok, {} failed; queues drained after the load: {drained}\n{summary}",
        t.rate,
        t.capacity.unwrap_or(0.0),
        total.ok,
        total.errors
    );
    if let Ok(dir) = std::env::var("STARLING_SOAK_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv =
            String::from("seconds,node,rss_kib,fanout_backlog,counts_backlog,ok,errors\n");
        for s in &samples {
            let _ = writeln!(
                csv,
                "{:.1},{},{},{},{},{},{}",
                s.at, s.node, s.rss_kib, s.backlog[0], s.backlog[1], s.ok, s.errors
            );
        }
        std::fs::write(dir.join("soak-samples.csv"), csv).unwrap();
        let json = serde_json::json!({
            "seconds": secs, "warmup_seconds": warmup.as_secs(), "seed": seed,
            "capacity_rps": t.capacity, "rate_rps": t.rate,
            "ok": total.ok, "errors": total.errors, "queues_drained": drained,
            "summary": summary, "failures": failures,
        });
        std::fs::write(
            dir.join("soak.json"),
            serde_json::to_vec_pretty(&json).unwrap(),
        )
        .unwrap();
    }
    assert_eq!(total.errors, 0, "zero failed requests in the soak");
    assert!(drained, "the consumer backlogs drain once the load stops");
    assert!(failures.is_empty(), "{failures:?}");
}
