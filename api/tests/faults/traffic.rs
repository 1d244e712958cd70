//! Load for the fault tests, through the `starling-loadgen` library: a setup (users, a follow
//! graph, posts, a 1:1 conversation per user, and a group per user when the mix has `group`)
//! then open-loop chunks of the mixed REST scenario (feed reads, posts, follows, unfollows, chat
//! sends, and in the fault tests' mix group membership changes and message edits) until
//! stopped, every acknowledged write in an acked log (membership changes and edits of unknown
//! outcome too). Each chunk's counts go to the *phase* that was current when it started, so a
//! test can tell the requests made during a fault from the others. Then [`verify`] reads every
//! acknowledged write back from every node: users, posts, edges, every chat message at its seq
//! in a gap-free history, every acknowledged edit's text in its message, and every group's
//! members as its last acknowledged changes left them.

use parking_lot::Mutex;
use starling_loadgen::acked::{self, AckedLog};
use starling_loadgen::http::Http;
use starling_loadgen::report::{Report, RunInfo};
use starling_loadgen::run::{LikedWindow, RunConfig, run_keeping};
use starling_loadgen::schedule::{Arrivals, Mix, Op, Rate};
use starling_loadgen::stats::Stats;
use starling_loadgen::users::{Setup, User, setup};
use starling_loadgen::verify::{self, Verification};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What to run.
pub(crate) struct Load {
    pub(crate) targets: Vec<String>,
    pub(crate) users: usize,
    pub(crate) mix: &'static str,
    /// Requests per second (open loop); 0: half the capacity measured first (a closed loop of
    /// 32 workers for `STARLING_SOAK_CAPACITY_SECS`, default 20, after 5 s of warm-up). A
    /// burst of a few seconds on an empty store overstates what the nodes sustain: the
    /// replication and fan-out work a burst leaves behind is done after it. 5 s measured 11.8 k
    /// req/s, of which half saturated the nodes within a minute (11 % of the requests dropped
    /// by the load generator in the 30-minute soak).
    pub(crate) rate: f64,
    pub(crate) seed: u64,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
    /// How the open loop runs on from one chunk to the next.
    pub(crate) pacing: Pacing,
    /// With a rate derived from the capacity: how long to measure the sustained capacity
    /// ([`sustained_capacity`]), the rate's base then. Zero: the empty store's burst capacity.
    pub(crate) grow: Duration,
    /// The posts likes, reposts and `unpost` go to, kept from the capacity measurement through
    /// every chunk of the load (each chunk a run of its own: with a window of each chunk's own,
    /// `unpost` never found a post that had waited long enough, and deleted nothing).
    pub(crate) liked: LikedWindow,
}

/// How the open loop runs on from one chunk to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// Each chunk restarts the schedule once the previous chunk's last answer is in, with at most
    /// [`FAULT_IN_FLIGHT`] requests in flight (more are dropped, counted): a fault's timeouts
    /// (10 s) pause the load rather than turn into a burst once the fault is over. The fault
    /// tests and, by default, the soak.
    PerChunk,
    /// A strict open loop: one schedule across the chunks (a chunk that starts late sends what
    /// it missed at once, latency measured from each request's intended start, so no arrival is
    /// skipped) and up to [`STEADY_IN_FLIGHT`] of arrivals (at least [`FAULT_IN_FLIGHT`]) in
    /// flight, over a pool that keeps as many connections. A stall shows as latency and backlog,
    /// and a request is dropped only when the nodes are that far behind. The soak's
    /// `STARLING_SOAK_PACING=steady`: it showed that the per-chunk cap (60 ms of arrivals at
    /// 4 255 req/s) sheds the load of the stalls, and that without it the nodes fall behind at
    /// 4 454 req/s (RELIABILITY.md, "Soak").
    Steady,
}

/// Requests in flight at most, per chunk, under [`Pacing::PerChunk`].
const FAULT_IN_FLIGHT: usize = 256;
/// Arrivals in flight at most under [`Pacing::Steady`], as time at the load's rate.
const STEADY_IN_FLIGHT: Duration = Duration::from_secs(1);

/// Counts of one phase.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
}

impl Counts {
    pub(crate) fn success(&self) -> f64 {
        self.ok as f64 / (self.ok + self.errors).max(1) as f64
    }
}

struct Shared {
    phase: Mutex<String>,
    stats: Mutex<BTreeMap<String, Stats>>,
    stop: AtomicBool,
}

/// A load running in its own thread and runtime until [`Traffic::finish`].
pub(crate) struct Traffic {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    pub(crate) users: Vec<User>,
    pub(crate) acked_path: PathBuf,
    /// The open-loop rate, and the measured capacity when the rate was derived from it.
    pub(crate) rate: f64,
    pub(crate) capacity: Option<f64>,
    /// The open loop's in-flight limit.
    pub(crate) in_flight: usize,
    targets: Vec<String>,
}

const CHUNK: Duration = Duration::from_secs(1);

/// The capacity in ok/s: the closed loop ([`closed_loop`]) for `STARLING_SOAK_CAPACITY_SECS`
/// (20) after 5 s of warm-up; its writes go to `log` when given.
async fn capacity(
    http: &Http,
    users: Arc<Vec<User>>,
    mix: &Mix,
    seed: u64,
    log: Option<AckedLog>,
    liked: &LikedWindow,
) -> f64 {
    let measure = Duration::from_secs(crate::env_u64("STARLING_SOAK_CAPACITY_SECS", 20));
    let cfg = closed_loop(mix, measure, Duration::from_secs(5), seed);
    let stats = run_keeping(http, users, &cfg, log, Vec::new(), liked)
        .await
        .unwrap();
    let ok: u64 = stats.ops.values().map(|o| o.ok()).sum();
    ok as f64 / measure.as_secs_f64()
}

/// What [`sustained_capacity`] measured.
struct Sustained {
    rps: f64,
    ok: u64,
    failed: u64,
    /// From the end of the closed loop until every consumer backlog was 0.
    drain: Duration,
    /// Whether they reached 0 within [`DRAIN_CAP`].
    drained: bool,
}

/// The longest wait for the consumers to drain after the sustained-capacity loop.
const DRAIN_CAP: Duration = Duration::from_secs(300);

/// The capacity the nodes sustain: a closed loop of 32 workers at the maximum rate for `load.grow`
/// (the store grows through it), then a wait until every node's change-feed consumers
/// (fan-out, follower counts) have caught up; its successes over both times. A short burst
/// leaves that work, and the peers' merges and the compactions, for after it.
async fn sustained_capacity(
    http: &Http,
    users: Arc<Vec<User>>,
    mix: &Mix,
    seed: u64,
    log: Option<AckedLog>,
    load: &Load,
) -> Sustained {
    let (secs, targets) = (load.grow, &load.targets);
    let cfg = closed_loop(mix, secs, Duration::ZERO, seed);
    let stats = run_keeping(http, users, &cfg, log, Vec::new(), &load.liked)
        .await
        .unwrap();
    let (ok, failed) = stats.total();
    let ports: Vec<u16> = targets
        .iter()
        .map(|t| {
            let port = t
                .trim_end_matches('/')
                .rsplit(':')
                .next()
                .unwrap_or_default();
            port.parse().unwrap()
        })
        .collect();
    let stopped = tokio::time::Instant::now();
    let drained = loop {
        let ports = ports.clone();
        let idle = tokio::task::spawn_blocking(move || {
            ports.iter().all(|&p| {
                crate::soak::BACKLOGS
                    .iter()
                    .all(|b| crate::harness::metric(p, b) == Some(0.0))
            })
        })
        .await
        .unwrap();
        if idle {
            break true;
        }
        if stopped.elapsed() >= DRAIN_CAP {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drain = stopped.elapsed();
    Sustained {
        rps: ok as f64 / (secs + drain).as_secs_f64(),
        ok,
        failed,
        drain,
        drained,
    }
}

/// The capacity measurements' closed loop: 32 workers at the maximum rate for `duration`
/// after `warmup` (the open loop's config otherwise).
fn closed_loop(mix: &Mix, duration: Duration, warmup: Duration, seed: u64) -> RunConfig {
    RunConfig {
        rate: Rate::Max,
        warmup,
        ..open_loop(mix, 1.0, 32, duration, seed, None)
    }
}

/// An open-loop run of `mix` at `rate` (Poisson arrivals, no warm-up).
fn open_loop(
    mix: &Mix,
    rate: f64,
    in_flight: usize,
    duration: Duration,
    seed: u64,
    origin: Option<tokio::time::Instant>,
) -> RunConfig {
    RunConfig {
        mix: mix.clone(),
        rate: Rate::Fixed(rate),
        arrivals: Arrivals::Poisson,
        concurrency: in_flight,
        duration,
        warmup: Duration::ZERO,
        seed,
        feed_limit: 20,
        progress: false,
        origin,
    }
}

/// The open loop's in-flight limit at `rate` under `pacing`.
fn in_flight(pacing: Pacing, rate: f64) -> usize {
    match pacing {
        Pacing::PerChunk => FAULT_IN_FLIGHT,
        // A float to a count: the rate is finite and positive, far below usize::MAX.
        Pacing::Steady => {
            FAULT_IN_FLIGHT.max((rate * STEADY_IN_FLIGHT.as_secs_f64()).ceil() as usize)
        }
    }
}

impl Traffic {
    /// Sets the users up (blocking), then starts the load in phase `phase`.
    pub(crate) fn start(load: Load, dir: &Path, phase: &str) -> Traffic {
        // Every request in flight is a socket: a soft limit of 1 024 open files (many CI
        // machines) is below what a steady load of a few thousand req/s may hold.
        rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit");
        let acked_path = dir.join(format!("acked-{}.jsonl", load.seed));
        let shared = Arc::new(Shared {
            phase: Mutex::new(phase.to_string()),
            stats: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let (sh, path, targets) = (shared.clone(), acked_path.clone(), load.targets.clone());
        let thread = std::thread::spawn(move || {
            let rt = crate::common::runtime();
            rt.block_on(async move {
                let http = Http::new(load.timeout, FAULT_IN_FLIGHT);
                let (log, writer) = AckedLog::create(&path).unwrap();
                let mix: Mix = load.mix.parse().unwrap();
                let cfg = Setup {
                    users: load.users,
                    handles: "ft{run}_{i}".into(),
                    password: "password1".into(),
                    login_only: false,
                    follows: 3,
                    posts: 1,
                    concurrency: 8,
                    run_tag: format!("{:x}", load.seed),
                    conversations: true,
                    groups: mix.ops().any(|op| op == Op::Group),
                    // Enough for the `delete` operations of a fault test's few thousand requests
                    // (about 30 in the partition's; a user with none left takes another's of
                    // the same node, and only when none is left signs one up, which a partition
                    // or a region loss may refuse).
                    spares: if mix.ops().any(|op| op == Op::Delete) { 4 } else { 0 },
                };
                let users = Arc::new(setup(&http, &load.targets, &cfg, Some(&log)).await.unwrap());
                let (rate, capacity) = if load.rate > 0.0 {
                    (load.rate, None)
                } else {
                    let mut cap =
                        capacity(&http, users.clone(), &mix, load.seed, Some(log.clone()), &load.liked)
                            .await;
                    if !load.grow.is_zero() {
                        // The load runs at half of what the nodes sustain, not of a burst.
                        let burst = cap;
                        let s = sustained_capacity(
                            &http,
                            users.clone(),
                            &mix,
                            load.seed ^ 0x6772_6f77,
                            Some(log.clone()),
                            &load,
                        )
                        .await;
                        cap = s.rps;
                        eprintln!(
                            "load: capacity {burst:.0} req/s in a 20 s burst on the empty store; sustained {cap:.0} req/s: {} ok ({} failed) in {:?} of a closed loop, the consumers drained {:.1} s after it{}",
                            s.ok,
                            s.failed,
                            load.grow,
                            s.drain.as_secs_f64(),
                            if s.drained { "" } else { " (not drained: capped)" }
                        );
                    }
                    ((cap / 2.0).max(1.0), Some(cap))
                };
                let in_flight = in_flight(load.pacing, rate);
                // As many idle connections kept as may be in flight: a pool smaller than that
                // closes the connections a burst opened and opens them again at the next one.
                let http = if in_flight > FAULT_IN_FLIGHT {
                    Http::new(load.timeout, in_flight)
                } else {
                    http
                };
                tx.send((users.as_ref().clone(), rate, capacity, in_flight))
                    .unwrap();
                let first = tokio::time::Instant::now();
                let mut round = 0u64;
                while !sh.stop.load(Ordering::Relaxed) {
                    let phase = sh.phase.lock().clone();
                    let origin = (load.pacing == Pacing::Steady)
                        .then(|| first + CHUNK * u32::try_from(round).unwrap_or(u32::MAX));
                    let seed = load.seed.wrapping_mul(1_000_003).wrapping_add(round);
                    let cfg = open_loop(&mix, rate, in_flight, CHUNK, seed, origin);
                    let stats = run_keeping(
                        &http,
                        users.clone(),
                        &cfg,
                        Some(log.clone()),
                        Vec::new(),
                        &load.liked,
                    )
                    .await
                    .unwrap();
                    sh.stats
                        .lock()
                        .entry(phase)
                        .or_default()
                        .merge(&stats)
                        .unwrap();
                    round += 1;
                }
                drop(log);
                writer.finish().await.unwrap();
            });
        });
        let (users, rate, capacity, in_flight) =
            rx.recv().expect("the load's setup failed (see its panic)");
        Traffic {
            shared,
            thread: Some(thread),
            users,
            acked_path,
            rate,
            capacity,
            in_flight,
            targets,
        }
    }

    /// The capacity now (after [`Traffic::finish`]: on the store the load has grown), measured
    /// as at the start; its writes are not logged as acknowledged.
    pub(crate) fn capacity_now(&self, mix: &str, seed: u64) -> f64 {
        let mix: Mix = mix.parse().unwrap();
        let users = Arc::new(self.users.clone());
        crate::common::runtime().block_on(async {
            let http = Http::new(Duration::from_secs(10), FAULT_IN_FLIGHT);
            capacity(&http, users, &mix, seed, None, &LikedWindow::default()).await
        })
    }

    /// Successes and failures so far, every phase together (chunks that finished).
    pub(crate) fn so_far(&self) -> Counts {
        let stats = self.shared.stats.lock();
        let mut c = Counts::default();
        for op in stats.values().flat_map(|s| s.ops.values()) {
            c.ok += op.ok();
            c.errors += op.error_count();
        }
        c
    }

    /// Every phase's and operation's latencies so far (µs from each request's intended start)
    /// in one histogram: the soak takes an interval's quantiles from the difference of two.
    pub(crate) fn latency_so_far(&self) -> hdrhistogram::Histogram<u64> {
        let stats = self.shared.stats.lock();
        let mut h = hdrhistogram::Histogram::<u64>::new(2).unwrap();
        for op in stats.values().flat_map(|s| s.ops.values()) {
            h.add(&op.latency).unwrap();
        }
        h
    }

    /// Chunks that start from now on count in `phase`.
    pub(crate) fn phase(&self, phase: &str) {
        *self.shared.phase.lock() = phase.to_string();
    }

    /// Stops the load (waits for the chunk in progress) and returns the report of each phase.
    pub(crate) fn finish(&mut self) -> BTreeMap<String, Report> {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the load thread panicked");
        }
        let stats = self.shared.stats.lock();
        stats
            .iter()
            .map(|(phase, s)| {
                let info = RunInfo {
                    scenario: phase.clone(),
                    targets: self.targets.clone(),
                    mode: "open".into(),
                    rate: Some(self.rate),
                    concurrency: self.in_flight,
                    duration_s: 0.0,
                    warmup_s: 0.0,
                    users: self.users.len(),
                };
                (phase.clone(), Report::new(info, s))
            })
            .collect()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// Counts of a report.
pub(crate) fn counts(r: &Report) -> Counts {
    Counts {
        ok: r.ops.values().map(|o| o.ok).sum(),
        errors: r.total_errors(),
    }
}

/// Everything the acked log holds, read back from every target (users, posts, edges; chat
/// messages, edits and group memberships through their writers' sessions).
pub(crate) fn verify(targets: &[String], acked_path: &Path, users: &[User]) -> Verification {
    let rt = crate::common::runtime();
    rt.block_on(async {
        let http = Http::new(Duration::from_secs(20), 32);
        let mut v = verify::verify_log(&http, targets, acked_path, 16)
            .await
            .unwrap();
        let ex = verify::expectations(&acked::read(acked_path).unwrap());
        let tokens: HashMap<String, String> = users
            .iter()
            .map(|u| (u.id.clone(), u.token.clone()))
            .collect();
        let m = verify::verify_messages(&http, targets, &ex, &tokens, 16)
            .await
            .unwrap();
        v.messages = m.messages;
        v.conversations = m.conversations;
        v.trimmed = m.trimmed;
        v.edits = m.edits;
        v.edits_ambiguous = m.edits_ambiguous;
        v.groups = m.groups;
        v.memberships = m.memberships;
        v.memberships_ambiguous = m.memberships_ambiguous;
        v.memberships_unknown = m.memberships_unknown;
        v.skipped = m.skipped;
        v.missing.extend(m.missing);
        let a = verify::verify_accounts(&http, targets, &ex, &tokens, 16)
            .await
            .unwrap();
        v.marks = a.marks;
        v.marked_read = a.marked_read;
        v.passwords = a.passwords;
        v.deletions = a.deletions;
        v.skipped += a.skipped;
        v.missing.extend(a.missing);
        v
    })
}
