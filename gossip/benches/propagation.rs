//! Propagation in the simulated cluster, next to the ⌈log2 N⌉ bound: for 8 … 128 nodes over 3–5
//! regions 100–250 ms apart, how many push hops ("rounds") and how long until a write reaches
//! every node; cross-region delivery percentiles; and gossip bytes per node per second idle and
//! under writes (bandwidth should follow the write rate, not the state size).
//!
//! Writes `bench/gossip.md`, `bench/gossip.json` and `bench/gossip-rounds.svg`.
//! Run: `cargo bench -p starling-gossip --bench propagation` (about a minute on 2 cores).

use plotters::prelude::*;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use starling_gossip::sim::{Sim, SimConfig};
use starling_gossip::{Arrival, Wan};
use starling_store::Keyspace;
use std::collections::HashMap;
use std::time::Duration;

const KS: Keyspace = Keyspace::new("bench");
const WRITES: usize = 40;

#[derive(Serialize, Debug)]
struct Row {
    nodes: usize,
    regions: usize,
    log2_bound: u32,
    rounds_median: f64,
    rounds_p99: f64,
    reach_all_ms_median: f64,
    reach_all_ms_p99: f64,
    cross_region_ms_p50: f64,
    cross_region_ms_p99: f64,
    reached_by_push_pct: f64,
    idle_bytes_per_node_s: f64,
    bytes_per_node_s_at_20_writes_s: f64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn wan(regions: &[&str]) -> Wan {
    let rtts = [
        ("us", "eu", 100),
        ("us", "ap", 170),
        ("us", "sa", 120),
        ("us", "af", 220),
        ("eu", "ap", 200),
        ("eu", "sa", 200),
        ("eu", "af", 130),
        ("ap", "sa", 250),
        ("ap", "af", 250),
        ("sa", "af", 250),
    ];
    Wan::with_rtts(regions, &rtts, 200)
}

async fn measure(n: usize, regions: &[&str], seed: u64) -> Row {
    let mut cfg = SimConfig::new(seed, n as u32);
    cfg.gossip.record_arrivals = true;
    let mut sim = Sim::new(cfg, wan(regions));
    for i in 0..n {
        let r = regions[i % regions.len()];
        sim.add_node(r, &format!("{r}-{i}")).await;
    }
    sim.run_for(Duration::from_secs(30)).await;
    let addrs = sim.live();
    let region_of: HashMap<String, String> = addrs
        .iter()
        .map(|a| {
            (
                a.clone(),
                a.split('-').next().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for a in &addrs {
        sim.take_arrivals(a);
    }
    let idle_start = (sim.stats().bytes, sim.now());
    sim.run_for(Duration::from_secs(10)).await;
    let idle = (sim.stats().bytes - idle_start.0) as f64 / n as f64 / 10.0;

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut rounds = Vec::new();
    let mut reach = Vec::new();
    let mut cross = Vec::new();
    let (mut by_push, mut total) = (0usize, 0usize);
    for w in 0..WRITES {
        let at = addrs[rng.random_range(0..addrs.len())].clone();
        let key = KS.key().u64(w as u64).finish();
        let t0 = sim.now();
        sim.write(&at, &key, b"v").await;
        sim.run_for(Duration::from_secs(3)).await;
        let (mut max_hops, mut last) = (0u8, Duration::ZERO);
        let mut reached = 0;
        for a in &addrs {
            let arr: Vec<Arrival> = sim.take_arrivals(a);
            let Some(first) = arr.iter().find(|x| x.key == key) else {
                continue;
            };
            if a == &at {
                continue;
            }
            reached += 1;
            total += 1;
            if first.hops != Arrival::REPAIR {
                by_push += 1;
                max_hops = max_hops.max(first.hops);
            }
            let d = first.at - t0;
            last = last.max(d);
            if region_of[a] != region_of[&at] {
                cross.push(d.as_secs_f64() * 1000.0);
            }
        }
        if reached == addrs.len() - 1 {
            rounds.push(f64::from(max_hops));
            reach.push(last.as_secs_f64() * 1000.0);
        }
    }
    // Bandwidth under 20 writes per second for 10 s.
    let start = sim.stats().bytes;
    for w in 0..200u64 {
        let at = addrs[rng.random_range(0..addrs.len())].clone();
        sim.write(&at, &KS.key().u64(1_000 + w).finish(), b"v")
            .await;
        sim.run_for(Duration::from_millis(50)).await;
    }
    let busy = (sim.stats().bytes - start) as f64 / n as f64 / 10.0;
    Row {
        nodes: n,
        regions: regions.len(),
        log2_bound: (n as f64).log2().ceil() as u32,
        rounds_median: pct(&mut rounds.clone(), 0.5),
        rounds_p99: pct(&mut rounds, 0.99),
        reach_all_ms_median: pct(&mut reach.clone(), 0.5),
        reach_all_ms_p99: pct(&mut reach, 0.99),
        cross_region_ms_p50: pct(&mut cross.clone(), 0.5),
        cross_region_ms_p99: pct(&mut cross, 0.99),
        reached_by_push_pct: 100.0 * by_push as f64 / total.max(1) as f64,
        idle_bytes_per_node_s: idle,
        bytes_per_node_s_at_20_writes_s: busy,
    }
}

fn plot(rows: &[Row], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_y = rows
        .iter()
        .map(|r| r.rounds_p99.max(f64::from(r.log2_bound) + 2.0))
        .fold(0.0, f64::max)
        + 1.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Push rounds until a write reaches every node",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(40)
        .build_cartesian_2d(0f64..7.5f64, 0f64..max_y)?;
    chart
        .configure_mesh()
        .x_desc("log2(nodes)")
        .y_desc("rounds (hops)")
        .draw()?;
    let xs: Vec<f64> = rows.iter().map(|r| (r.nodes as f64).log2()).collect();
    let series = |f: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> {
        xs.iter().zip(rows).map(|(x, r)| (*x, f(r))).collect()
    };
    chart
        .draw_series(LineSeries::new(
            series(&|r| f64::from(r.log2_bound) + 2.0),
            &RED,
        ))?
        .label("bound: ceil(log2 N) + 2")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    chart
        .draw_series(LineSeries::new(series(&|r| r.rounds_median), &BLUE))?
        .label("median")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(&|r| r.rounds_p99), &GREEN))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN));
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo test --benches` runs bench binaries with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let three = ["us", "eu", "ap"];
    let five = ["us", "eu", "ap", "sa", "af"];
    let mut rows = Vec::new();
    for (n, regions) in [
        (8, &three[..]),
        (16, &three[..]),
        (32, &five[..]),
        (64, &five[..]),
        (128, &five[..]),
    ] {
        let row = rt.block_on(measure(n, regions, 42 + n as u64));
        eprintln!("{row:?}");
        rows.push(row);
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench");
    std::fs::write(
        format!("{root}/gossip.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    plot(&rows, &format!("{root}/gossip-rounds.svg"))?;
    let mut md = String::from(
        "# Gossip propagation (gossip/benches/propagation.rs)\n\n\
         Seeded simulation: regions 100–250 ms apart (RTT), fanout max(3, ⌈ln(N+1)⌉ + 1) with one peer in another region, \
         anti-entropy every second. A round is one push hop. Each row: 40 writes at random nodes; \
         bandwidth counts every frame (SWIM, pushes, anti-entropy).\n\n\
         | nodes | regions | ⌈log2 N⌉ + 2 | rounds median | rounds p99 | reach all median | reach all p99 | cross-region p50 | cross-region p99 | by push | idle B/node/s | B/node/s at 20 writes/s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} % | {:.0} | {:.0} |\n",
            r.nodes,
            r.regions,
            r.log2_bound + 2,
            r.rounds_median,
            r.rounds_p99,
            r.reach_all_ms_median,
            r.reach_all_ms_p99,
            r.cross_region_ms_p50,
            r.cross_region_ms_p99,
            r.reached_by_push_pct,
            r.idle_bytes_per_node_s,
            r.bytes_per_node_s_at_20_writes_s
        ));
    }
    md.push_str("\n![rounds](gossip-rounds.svg)\n");
    std::fs::write(format!("{root}/gossip.md"), md)?;
    Ok(())
}
