//! The load generator against the real `starling serve` binary: a short mixed open-loop run
//! through the `starling-loadgen` library, then its report, plots and acked-write verification.
//! Nothing here asserts a timing: only counts, files and what reads back.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, free_port};
use starling_loadgen::acked::{self, AckedKind, AckedLog};
use starling_loadgen::http::Http;
use starling_loadgen::report::{Report, RunInfo};
use starling_loadgen::run::{RunConfig, run};
use starling_loadgen::schedule::{Arrivals, Mix, Rate, Schedule};
use starling_loadgen::users::{Setup, setup};
use starling_loadgen::{plot, verify};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_mixed_open_loop_run_records_every_op_and_loses_no_acked_write() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Sign-ups are rate limited per address by default; the test signs up a handful of users.
    let node = Node::start(
        dir.path(),
        port,
        &["--auth-per-minute".into(), "100000".into()],
    );
    let target = format!("http://127.0.0.1:{port}");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let acked_path = out.join("acked.jsonl");

    let rate = 40.0;
    let (warmup, duration, seed) = (Duration::from_millis(500), Duration::from_secs(3), 7);
    let mix: Mix = "read=6,post=2,follow=1,unfollow=1".parse().unwrap();
    let rt = common::runtime();
    let (report, late) = rt.block_on(async {
        let http = Http::new(Duration::from_secs(20), 64);
        let (log, writer) = AckedLog::create(&acked_path).unwrap();
        let cfg = Setup {
            users: 6,
            handles: "lt{run}_{i}".into(),
            password: "password1".into(),
            login_only: false,
            follows: 2,
            posts: 1,
            concurrency: 4,
            run_tag: "x".into(),
            conversations: false,
            groups: false,
            spares: 0,
        };
        let users = setup(&http, std::slice::from_ref(&target), &cfg, Some(&log))
            .await
            .unwrap();
        assert_eq!(users.len(), 6);
        let run_cfg = RunConfig {
            mix: mix.clone(),
            rate: Rate::Fixed(rate),
            arrivals: Arrivals::Poisson,
            concurrency: 64,
            duration,
            warmup,
            seed,
            feed_limit: 20,
            progress: false,
            origin: None,
        };
        let users = Arc::new(users);
        let stats = run(&http, users.clone(), &run_cfg, Some(log))
            .await
            .unwrap();
        let logged = writer.finish().await.unwrap();
        // A run whose time zero is already 2 s past (a chunk of a steady load that starts late):
        // it still sends every arrival of its window, the missed ones at once, and measures
        // their latency from their intended start rather than from when they went out.
        let late = RunConfig {
            mix: "health=1".parse().unwrap(),
            warmup: Duration::ZERO,
            // Room for the ~80 arrivals that are due at once.
            concurrency: 256,
            origin: Some(tokio::time::Instant::now() - Duration::from_secs(2)),
            ..run_cfg.clone()
        };
        let late_stats = run(&http, users, &late, None).await.unwrap();
        assert!(
            logged >= 6 * 2 + 6,
            "setup follows and posts are logged: {logged}"
        );
        let info = RunInfo {
            scenario: "read=6,post=2,follow=1,unfollow=1".into(),
            targets: vec![target.clone()],
            mode: "open".into(),
            rate: Some(rate),
            concurrency: 64,
            duration_s: duration.as_secs_f64(),
            warmup_s: warmup.as_secs_f64(),
            users: 6,
        };
        (Report::new(info, &stats), late_stats)
    });
    let mut schedule = Schedule::new(rate, Arrivals::Poisson, seed);
    let window = std::iter::from_fn(|| Some(schedule.next_offset()))
        .take_while(|t| *t < duration)
        .count() as u64;
    assert_eq!(
        late.total(),
        (window, 0),
        "the late run sent its whole window"
    );
    let max_us = late.ops["health"].latency.max();
    assert!(
        max_us >= 1_900_000,
        "the first arrivals were due 2 s before they went out: max latency {max_us} us"
    );

    // Zero errors, and every scheduled request of the measured window was recorded.
    assert_eq!(report.total_errors(), 0, "{}", report.table());
    let mut schedule = Schedule::new(rate, Arrivals::Poisson, seed);
    let measured = std::iter::from_fn(|| Some(schedule.next_offset()))
        .take_while(|t| *t < warmup + duration)
        .filter(|t| *t >= warmup)
        .count() as u64;
    let recorded: u64 = report.ops.values().map(|o| o.ok).sum();
    assert_eq!(recorded, measured, "{}", report.table());
    for op in ["read", "post", "follow", "unfollow"] {
        let o = &report.ops[op];
        assert!(o.ok > 0, "{op} recorded: {}", report.table());
        assert!(o.latency_us.p50 > 0 && o.latency_us.p50 <= o.latency_us.max);
        assert_eq!(o.timeline.iter().map(|p| p.ok).sum::<u64>(), o.ok);
    }

    // The JSON report parses back; the plots exist.
    let json = out.join("report.json");
    report.write_json(&json).unwrap();
    let back: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(back["ops"]["read"]["latency_us"]["p99"].as_u64().is_some());
    assert_eq!(Report::read_json(&json).unwrap(), report);
    for png in plot::plot(&report, &out, "").unwrap() {
        assert!(
            std::fs::metadata(&png).unwrap().len() > 0,
            "{}",
            png.display()
        );
    }

    // Every acknowledged write reads back.
    let entries = acked::read(&acked_path).unwrap();
    let posts = entries.iter().filter(|a| a.kind == AckedKind::Post).count();
    assert!(posts > 6, "setup and run posts: {posts}");
    let verification = rt.block_on(async {
        let http = Http::new(Duration::from_secs(20), 16);
        verify::verify_log(&http, std::slice::from_ref(&target), &acked_path, 8)
            .await
            .unwrap()
    });
    assert_eq!(verification.posts, posts as u64);
    assert!(verification.edges > 0);
    assert!(verification.ok(), "missing: {:?}", verification.missing);
    assert!(node.terminate().success());
}
