//! What a run measured: per operation, an HDR histogram of latency from the intended start
//! (coordinated-omission corrected), one of service time from the actual send, errors counted by
//! kind, and a per-second timeline. Workers record into their own [`Stats`] or a shared one;
//! [`Stats::merge`] adds them up.
//!
//! Time is passed in as offsets from the start of measurement (the end of the warm-up), so the
//! accounting is testable without a clock.

use crate::LoadError;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies are recorded in microseconds, from 1 µs to one hour, 3 significant digits.
const MAX_US: u64 = 3_600_000_000;

fn histogram(sigfig: u8) -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_US, sigfig) {
        Ok(h) => h,
        // Only reachable with sigfig > 5 or bad bounds; every caller passes constants.
        Err(e) => unreachable!("histogram bounds are constants: {e:?}"),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US)
}

/// One second of the timeline (by completion time).
#[derive(Debug, Clone)]
pub struct Second {
    /// Successful operations completed in this second.
    pub ok: u64,
    /// Failed operations completed in this second.
    pub errors: u64,
    /// Latency (from intended start) of the successes, 2 significant digits.
    pub latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            ok: 0,
            errors: 0,
            latency: histogram(2),
        }
    }
}

/// The measurements of one operation.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency of each success from its intended start, in µs.
    pub latency: Histogram<u64>,
    /// Time from the actual send to the answer, in µs: what a closed-loop tool would report.
    pub service: Histogram<u64>,
    /// Failures by [`crate::error::RequestError::kind`].
    pub errors: BTreeMap<String, u64>,
    /// Per-second counts and latencies, indexed by seconds since measurement started.
    pub timeline: Vec<Second>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: histogram(3),
            service: histogram(3),
            errors: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }
}

impl OpStats {
    /// Successful operations.
    pub fn ok(&self) -> u64 {
        self.latency.len()
    }

    /// Failed operations.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn second(&mut self, at: Duration) -> &mut Second {
        let i = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(86_400);
        if self.timeline.len() <= i {
            self.timeline.resize_with(i + 1, Second::default);
        }
        &mut self.timeline[i]
    }

    fn merge(&mut self, other: &OpStats) -> Result<(), LoadError> {
        let err = |e: hdrhistogram::AdditionError| LoadError::Histogram(format!("{e:?}"));
        self.latency.add(&other.latency).map_err(err)?;
        self.service.add(&other.service).map_err(err)?;
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline
                .resize_with(other.timeline.len(), Second::default);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
            mine.latency.add(&theirs.latency).map_err(err)?;
        }
        Ok(())
    }
}

/// Measurements of every operation of a run, by operation name.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Per operation name.
    pub ops: BTreeMap<String, OpStats>,
}

impl Stats {
    /// An empty set of measurements.
    pub fn new() -> Self {
        Stats::default()
    }

    /// The operation's measurements, created empty on first use (so an operation of the mix
    /// that never completed still appears in the report).
    pub fn op(&mut self, op: &str) -> &mut OpStats {
        self.ops.entry(op.to_string()).or_default()
    }

    /// Records a success. `intended`, `sent` and `done` are offsets from the start of
    /// measurement; the latency is `done - intended`, so the time a request waited for its turn
    /// behind a stall counts.
    pub fn record_ok(&mut self, op: &str, intended: Duration, sent: Duration, done: Duration) {
        let s = self.op(op);
        let latency = micros(done.saturating_sub(intended));
        s.latency.saturating_record(latency);
        s.service
            .saturating_record(micros(done.saturating_sub(sent)));
        let sec = s.second(done);
        sec.ok += 1;
        sec.latency.saturating_record(latency);
    }

    /// Records a failure of `kind` completed at `done`.
    pub fn record_error(&mut self, op: &str, kind: &str, done: Duration) {
        let s = self.op(op);
        *s.errors.entry(kind.to_string()).or_default() += 1;
        s.second(done).errors += 1;
    }

    /// Adds `other`'s measurements to these.
    pub fn merge(&mut self, other: &Stats) -> Result<(), LoadError> {
        for (name, theirs) in &other.ops {
            self.op(name).merge(theirs)?;
        }
        Ok(())
    }

    /// Successes plus failures over every operation.
    pub fn total(&self) -> (u64, u64) {
        self.ops
            .values()
            .fold((0, 0), |(ok, err), s| (ok + s.ok(), err + s.error_count()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A server that answers in 1 ms but stalls for one second at t = 1 s, driven at 100 req/s by
    /// a single connection: requests scheduled during the stall are sent late. Measured from the
    /// intended start, about half of the two seconds' requests see the stall; measured from the
    /// send (what a closed-loop tool reports), only one does.
    #[test]
    fn latency_from_the_intended_start_shows_a_stall_that_service_time_hides() {
        let mut stats = Stats::new();
        let mut free_at = Duration::ZERO;
        for k in 0..200u64 {
            let intended = ms(10 * k);
            let sent = intended.max(free_at);
            let took = if k == 100 { ms(1000) } else { ms(1) };
            let done = sent + took;
            free_at = done;
            stats.record_ok("read", intended, sent, done);
        }
        let s = &stats.ops["read"];
        assert_eq!(s.ok(), 200);
        assert!(s.service.value_at_quantile(0.99) < 2_000, "service p99");
        assert!(s.service.max() >= 999_000);
        // Requests 100..=199 were all scheduled before the stall ended: the upper half of the
        // latencies is the queue behind it (110 ms to 1 s).
        assert!(
            s.latency.value_at_quantile(0.55) >= 100_000,
            "p55 sees the queue"
        );
        assert!(
            s.latency.value_at_quantile(0.75) >= 500_000,
            "p75 sees the stall"
        );
        // The timeline attributes completions to their second: nothing completes during the stall.
        assert_eq!(s.timeline[0].ok, 100);
        assert_eq!(s.timeline[1].ok, 0);
        assert_eq!(s.timeline[2].ok, 100);
    }

    #[test]
    fn merging_adds_counts_histograms_errors_and_timelines() {
        let mut a = Stats::new();
        a.record_ok("read", ms(0), ms(0), ms(5));
        a.record_error("read", "http_5xx", ms(1500));
        let mut b = Stats::new();
        b.record_ok("read", ms(2000), ms(2000), ms(2010));
        b.record_ok("post", ms(0), ms(0), ms(3));
        b.record_error("read", "http_5xx", ms(10));
        b.record_error("read", "timeout", ms(10));
        a.merge(&b).unwrap();
        let r = &a.ops["read"];
        assert_eq!(r.ok(), 2);
        assert_eq!(r.error_count(), 3);
        assert_eq!(r.errors["http_5xx"], 2);
        assert_eq!(r.errors["timeout"], 1);
        assert_eq!(r.timeline.len(), 3);
        assert_eq!((r.timeline[0].ok, r.timeline[0].errors), (1, 2));
        assert_eq!((r.timeline[1].ok, r.timeline[1].errors), (0, 1));
        assert_eq!(r.timeline[2].ok, 1);
        assert!(r.latency.max() >= 9_900);
        assert_eq!(a.ops["post"].ok(), 1);
        assert_eq!(a.total(), (3, 3));
    }
}
