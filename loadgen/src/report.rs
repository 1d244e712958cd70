//! The report of a run: per operation the count, rate, errors by kind, latency percentiles (from
//! the intended start) and service-time percentiles, a per-second timeline, and the chat
//! delivery check. Written as JSON (`--report`), printed as a table, and read back by tests and
//! the bench script.

use crate::LoadError;
use crate::stats::{OpStats, Stats};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// How the run was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// The scenario: the mix or `chat`.
    pub scenario: String,
    /// Base URLs of the targets.
    pub targets: Vec<String>,
    /// `open` (fixed rate) or `closed` (max rate).
    pub mode: String,
    /// The open-loop rate, requests per second.
    pub rate: Option<f64>,
    /// The closed-loop workers, or the open-loop in-flight limit.
    pub concurrency: usize,
    /// Measured seconds (the warm-up excluded).
    pub duration_s: f64,
    /// Warm-up seconds, not measured.
    pub warmup_s: f64,
    /// Users taking part.
    pub users: usize,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of `h` (zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            // One decimal: enough for µs, and it survives a JSON round trip exactly.
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// One second of an operation's timeline.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TimelinePoint {
    /// Seconds since measurement started.
    pub t: u64,
    /// Successes completed in this second (the throughput).
    pub ok: u64,
    /// Failures completed in this second.
    pub errors: u64,
    /// Latency percentiles of this second's successes, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

/// The results of one operation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OpReport {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub errors: u64,
    /// Successes per second of measurement.
    pub rate: f64,
    /// Failures by kind (`http_5xx`, `timeout`, `connect`, `ws_close_4008`, …).
    pub error_kinds: BTreeMap<String, u64>,
    /// Latency from the intended start (coordinated-omission corrected), µs.
    pub latency_us: Percentiles,
    /// Time from the actual send to the answer, µs.
    pub service_us: Percentiles,
    /// Per second.
    pub timeline: Vec<TimelinePoint>,
}

impl OpReport {
    fn of(s: &OpStats, duration_s: f64) -> Self {
        OpReport {
            ok: s.ok(),
            errors: s.error_count(),
            rate: if duration_s > 0.0 {
                s.ok() as f64 / duration_s
            } else {
                0.0
            },
            error_kinds: s.errors.clone(),
            latency_us: Percentiles::of(&s.latency),
            service_us: Percentiles::of(&s.service),
            timeline: s
                .timeline
                .iter()
                .enumerate()
                .map(|(t, sec)| {
                    let p = Percentiles::of(&sec.latency);
                    TimelinePoint {
                        t: t as u64,
                        ok: sec.ok,
                        errors: sec.errors,
                        p50_us: p.p50,
                        p90_us: p.p90,
                        p99_us: p.p99,
                        max_us: p.max,
                    }
                })
                .collect(),
        }
    }
}

/// The chat delivery check: every acknowledged message must reach every member of its
/// conversation exactly once (after dedup by message id).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatReport {
    /// Messages sent.
    pub sent: u64,
    /// Messages acknowledged by the server.
    pub acked: u64,
    /// Acknowledged messages × members of their conversation.
    pub expected_deliveries: u64,
    /// Distinct (message, member) deliveries seen.
    pub delivered: u64,
    /// Expected deliveries never seen.
    pub missing: u64,
    /// Deliveries of a message a member had already received.
    pub duplicates: u64,
    /// Deliveries of messages that were never acknowledged to the sender (sent but no ack).
    pub unacked_delivered: u64,
    /// Acks received during the measured window.
    #[serde(default)]
    pub window_acks: u64,
    /// Distinct deliveries received during the measured window.
    #[serde(default)]
    pub window_deliveries: u64,
    /// CPU time (user + system) of the server process (`--server-pid`) over the measured
    /// window, µs.
    #[serde(default)]
    pub server_cpu_us: Option<u64>,
    /// CPU time of the load generator over the measured window, µs.
    #[serde(default)]
    pub client_cpu_us: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// How the run was made.
    pub run: RunInfo,
    /// Per operation name.
    pub ops: BTreeMap<String, OpReport>,
    /// The chat delivery check, for chat scenarios.
    pub chat: Option<ChatReport>,
}

impl Report {
    /// Builds the report of `stats`, measured over `run.duration_s`.
    pub fn new(run: RunInfo, stats: &Stats) -> Self {
        let ops = stats
            .ops
            .iter()
            .map(|(name, s)| (name.clone(), OpReport::of(s, run.duration_s)))
            .collect();
        Report {
            run,
            ops,
            chat: None,
        }
    }

    /// Failures over every operation.
    pub fn total_errors(&self) -> u64 {
        self.ops.values().map(|o| o.errors).sum()
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| LoadError::Json {
            path: path.into(),
            line: 1,
            source,
        })?;
        std::fs::write(path, json).map_err(|e| LoadError::io(path, e))
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn read_json(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
            path: path.into(),
            line: 1,
            source,
        })
    }

    /// The terminal table: one row per operation, latencies in milliseconds.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let r = &self.run;
        let rate = r.rate.map_or_else(
            || format!("max, {} workers", r.concurrency),
            |x| format!("{x}/s"),
        );
        let _ = writeln!(
            out,
            "{} on {} target(s), {} users, {} loop at {rate}, {:.1} s measured",
            r.scenario,
            r.targets.len(),
            r.users,
            r.mode,
            r.duration_s
        );
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}  errors",
            "op", "ok", "err", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let ms = |us: u64| us as f64 / 1000.0;
        for (name, o) in &self.ops {
            let kinds: Vec<String> = o
                .error_kinds
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            let l = &o.latency_us;
            let _ = writeln!(
                out,
                "{name:<12} {:>9} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}",
                o.ok,
                o.errors,
                o.rate,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max),
                kinds.join(" ")
            );
        }
        if let Some(c) = &self.chat {
            let _ = writeln!(
                out,
                "chat: {} sent, {} acked, {}/{} deliveries, {} missing, {} duplicates, {} unacked delivered",
                c.sent,
                c.acked,
                c.delivered,
                c.expected_deliveries,
                c.missing,
                c.duplicates,
                c.unacked_delivered
            );
            if let Some(cpu) = c.server_cpu_us {
                let per = cpu as f64 / c.window_deliveries.max(1) as f64;
                let client = c.client_cpu_us.map_or_else(String::new, |u| {
                    format!("; load generator {:.2} s", u as f64 / 1e6)
                });
                let _ = writeln!(
                    out,
                    "server CPU: {:.2} s over the window, {per:.1} µs per delivery ({} deliveries, {} acks in it){client}",
                    cpu as f64 / 1e6,
                    c.window_deliveries,
                    c.window_acks
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Report {
        let mut stats = Stats::new();
        for k in 0..1000u64 {
            let at = Duration::from_millis(k * 2);
            stats.record_ok("read", at, at, at + Duration::from_micros(500 + k));
        }
        stats.record_error("post", "http_5xx", Duration::from_millis(100));
        let run = RunInfo {
            scenario: "read=99,post=1".into(),
            targets: vec!["http://127.0.0.1:1".into()],
            mode: "open".into(),
            rate: Some(500.0),
            concurrency: 64,
            duration_s: 2.0,
            warmup_s: 0.0,
            users: 4,
        };
        Report::new(run, &stats)
    }

    #[test]
    fn report_counts_rates_percentiles_and_timeline() {
        let r = sample();
        let read = &r.ops["read"];
        assert_eq!(read.ok, 1000);
        assert!((read.rate - 500.0).abs() < 1e-9);
        assert!(read.latency_us.p50 >= 990 && read.latency_us.p50 <= 1010);
        assert!(read.latency_us.p50 <= read.latency_us.p99);
        assert!(read.latency_us.p99 <= read.latency_us.max);
        assert_eq!(read.timeline.len(), 2);
        assert_eq!(read.timeline.iter().map(|p| p.ok).sum::<u64>(), 1000);
        assert_eq!(r.ops["post"].error_kinds["http_5xx"], 1);
        assert_eq!(r.total_errors(), 1);
        let table = r.table();
        assert!(
            table.contains("read") && table.contains("http_5xx=1"),
            "{table}"
        );
    }

    #[test]
    fn json_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut r = sample();
        r.chat = Some(ChatReport {
            sent: 3,
            acked: 3,
            expected_deliveries: 6,
            delivered: 6,
            ..ChatReport::default()
        });
        r.write_json(&path).unwrap();
        assert_eq!(Report::read_json(&path).unwrap(), r);
    }
}
