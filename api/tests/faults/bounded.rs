//! The bounded run: what a node keeps doing for months, in a minute and a half with its
//! housekeeping compressed. 2 regions × 1 node run the fault mix (posts, follows and unfollows,
//! chat sends, membership changes, edits) for `STARLING_BOUNDED_SECS` (75) with the change feed
//! trimmed every second and tombstones collected every second after a 5 s grace
//! (`--feed-trim-interval`, `--gc-interval`, `--gc-grace`). Sampling each node's `/metrics`
//! every 3 s, it asserts: the change feed's length stays bounded (its largest sample in the last
//! third at most twice the largest in the first third, plus 2 000 entries — a feed that is never
//! trimmed grows with every write, about 10 000 entries over such a run), entries were trimmed,
//! the reaper made passes and collected tombstones (unfollows and membership removals leave
//! them), and, once the load stops, the replicas converge and every acknowledged write reads
//! back from both nodes. Failed requests are printed (per operation), not asserted.

use crate::harness::{Cluster, Options, Watchdog, metric};
use crate::traffic::{Traffic, counts};
use crate::{check_acked, env_u64, load, seed};
use std::time::{Duration, Instant};

/// Housekeeping of months, compressed.
const COMPRESSED: &str = "--feed-trim-interval 1s --gc-interval 1s --gc-grace 5s";

const LENGTH: &str = "starling_change_feed_length";
const TRIMMED: &str = "starling_change_feed_trimmed_total";
const PASSES: &str = "starling_gossip_reaper_passes_total";
const COLLECTED: &str = "starling_gossip_tombstones_collected_total";
const TICK_GAP: &str = "starling_gossip_tick_gap_max_ms";
const STALLS: &str = "starling_gossip_stalls_total";

pub(crate) fn run() {
    let secs = env_u64("STARLING_BOUNDED_SECS", 75);
    let _w = Watchdog::arm("bounded_run", Duration::from_secs(secs + 300));
    let seed = seed(27);
    let c = Cluster::start(&Options {
        regions: &["us", "eu"],
        per_region: 1,
        rtt_ms: 20,
        handle_region: "us",
        redis: vec![],
        extra: COMPRESSED
            .split_whitespace()
            .map(String::from)
            .chain(crate::account_flags())
            .collect(),
    });
    let mut t = Traffic::start(
        load(c.urls(|_| true), 16, 80.0, seed),
        c.dir.path(),
        "bounded",
    );
    let start = Instant::now();
    // (seconds since the start, node, feed length)
    let mut lengths: Vec<(f64, String, f64)> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(3));
        for m in &c.members {
            if let Some(l) = metric(m.port, LENGTH) {
                lengths.push((start.elapsed().as_secs_f64(), m.name.clone(), l));
            }
        }
    }
    let reports = t.finish();
    let total = counts(&reports["bounded"]);
    eprintln!("bounded_run:\n{}", reports["bounded"].table());
    let converged = c.converge(Duration::from_secs(120));
    let checked = check_acked("bounded_run", &c, &t);
    let third = secs as f64 / 3.0;
    for m in &c.members {
        let max_in = |lo: f64, hi: f64| {
            lengths
                .iter()
                .filter(|(at, n, _)| *n == m.name && *at >= lo && *at < hi)
                .map(|(_, _, l)| *l)
                .fold(0.0, f64::max)
        };
        let (first, last) = (max_in(0.0, third), max_in(2.0 * third, f64::MAX));
        let trimmed = metric(m.port, TRIMMED).unwrap_or(0.0);
        let passes = metric(m.port, PASSES).unwrap_or(0.0);
        let collected = metric(m.port, COLLECTED).unwrap_or(0.0);
        // Reported, not asserted (a timing): the longest gap between two core-loop ticks.
        let gap = metric(m.port, TICK_GAP).unwrap_or(0.0);
        let stalls = metric(m.port, STALLS).unwrap_or(0.0);
        eprintln!(
            "bounded_run (seed {seed}) {}: feed length max {first} in the first third, {last} in the last; {trimmed} entries trimmed; {passes} reaper passes, {collected} tombstones collected; gossip loop: longest tick gap {gap} ms, {stalls} ticks over 100 ms late",
            m.name
        );
        assert!(
            last <= 2.0 * first + 2000.0,
            "{}: the change feed grew from {first} to {last} entries",
            m.name
        );
        assert!(trimmed > 0.0, "{}: nothing was trimmed", m.name);
        assert!(passes > 0.0, "{}: the reaper made no pass", m.name);
        assert!(collected > 0.0, "{}: no tombstone was collected", m.name);
    }
    // Failed requests are printed, not asserted: what this run checks is that nothing
    // acknowledged was lost while the housekeeping ran (the soak holds the zero-failure bar).
    eprintln!(
        "bounded_run (seed {seed}): {secs} s, {} ok, {} failed; digests equal {converged:?} after the load; {checked} acknowledged writes checked",
        total.ok, total.errors
    );
}
