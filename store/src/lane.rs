//! Store lanes: where one caller's blocking store work runs, and how long it waited there.
//!
//! The embedded engine runs its blocking work (fjall reads, commits, group flushes) on tokio's
//! blocking pool, which the whole process shares: under load its queue holds the store calls of
//! every API request in flight, and a caller that awaits one call after another — the gossip
//! core loop: a push reads the change feed, then each changed record — waits for that whole
//! queue at every step. A [`StoreLane::dedicated`] lane gives such a caller a thread of its own:
//! [`Store::on_lane`](crate::Store::on_lane) returns a view of the same store (same data, same
//! locks, same change feed) whose blocking work runs there. [`StoreLane::shared`] keeps tokio's
//! pool (the path before lanes, for comparison) and measures the same.
//!
//! Both count, in [`LaneStats`], every call, how long it waited before it started (its queue)
//! and how long it ran. The dedicated lane's queue is bounded ([`StoreLane::QUEUE`]): a caller
//! finding it full waits for room (its own backpressure; the gossip core loop has one call in
//! flight at a time, so it never fills). The thread stops when the lane is dropped (its channel
//! closes once the last view holding it is gone).

use crate::error::{Result, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

/// Where a lane runs its calls.
#[derive(Debug)]
enum Runner {
    /// tokio's blocking pool, shared with the rest of the process.
    Shared,
    /// A thread of its own, fed through a bounded channel.
    Dedicated(mpsc::Sender<Job>),
}

/// Counters of a lane's calls (microseconds).
#[derive(Debug, Default)]
pub struct LaneStats {
    /// Calls started.
    pub calls: AtomicU64,
    /// Calls waiting or running now.
    pub in_flight: AtomicU64,
    /// Total time calls waited before they ran (the queue).
    pub wait_us: AtomicU64,
    /// The longest wait of one call.
    pub wait_max_us: AtomicU64,
    /// Total time calls ran.
    pub run_us: AtomicU64,
    /// The longest run of one call.
    pub run_max_us: AtomicU64,
}

impl LaneStats {
    fn record(&self, waited: u64, ran: u64) {
        self.wait_us.fetch_add(waited, Ordering::Relaxed);
        self.wait_max_us.fetch_max(waited, Ordering::Relaxed);
        self.run_us.fetch_add(ran, Ordering::Relaxed);
        self.run_max_us.fetch_max(ran, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where one caller's blocking store work runs (see the module doc).
#[derive(Debug)]
pub struct StoreLane {
    runner: Runner,
    stats: Arc<LaneStats>,
}

impl StoreLane {
    /// Calls queued for a dedicated lane's thread, at most, before a caller waits for room.
    pub const QUEUE: usize = 64;

    /// A lane with a thread of its own, named `name`.
    pub fn dedicated(name: &str) -> Result<Arc<Self>> {
        let (tx, mut rx) = mpsc::channel::<Job>(Self::QUEUE);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job();
                }
            })
            .map_err(|source| StoreError::Io {
                context: format!("starting the store lane {name}"),
                source,
            })?;
        Ok(Arc::new(StoreLane {
            runner: Runner::Dedicated(tx),
            stats: Arc::default(),
        }))
    }

    /// A lane on tokio's blocking pool, shared with every other caller (measured all the same).
    pub fn shared() -> Arc<Self> {
        Arc::new(StoreLane {
            runner: Runner::Shared,
            stats: Arc::default(),
        })
    }

    /// Whether the lane has a thread of its own.
    pub fn is_dedicated(&self) -> bool {
        matches!(self.runner, Runner::Dedicated(_))
    }

    /// Its counters.
    pub fn stats(&self) -> &LaneStats {
        &self.stats
    }

    /// Runs `f` on the lane and returns what it returned; a panic in `f` resumes in the caller.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let stats = self.stats.clone();
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let queued = Instant::now();
        let timed = move || {
            let started = Instant::now();
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            stats.record(
                micros(started.duration_since(queued)),
                micros(started.elapsed()),
            );
            out
        };
        let out = match &self.runner {
            Runner::Shared => match tokio::task::spawn_blocking(timed).await {
                Ok(out) => out,
                Err(_) => return Err(StoreError::Closed),
            },
            Runner::Dedicated(tx) => {
                let (done, answer) = oneshot::channel();
                let job: Job = Box::new(move || {
                    let _ = done.send(timed());
                });
                if tx.send(job).await.is_err() {
                    self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                    return Err(StoreError::Closed);
                }
                answer.await.map_err(|_| StoreError::Closed)?
            }
        };
        match out {
            Ok(v) => Ok(v),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dedicated_lane_runs_calls_on_its_own_thread_and_counts_them() {
        let lane = StoreLane::dedicated("test-lane").unwrap();
        let name = lane
            .run(|| std::thread::current().name().map(String::from))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("test-lane"));
        let s = lane.stats();
        assert_eq!(s.calls.load(Ordering::Relaxed), 1);
        assert_eq!(s.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dedicated_lane_does_not_wait_for_a_full_blocking_pool() {
        // tokio's blocking pool with one thread, held by another job: a call on the shared
        // pool would wait for it, a dedicated lane's does not. (The timeout only turns the
        // deadlock a regression would cause into a failure; it asserts no timing.)
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (started, running) = oneshot::channel();
            let blocker = tokio::task::spawn_blocking(move || {
                let _ = started.send(());
                held.recv()
            });
            running.await.unwrap();
            let lane = StoreLane::dedicated("test-lane-2").unwrap();
            let answer = tokio::time::timeout(std::time::Duration::from_secs(60), lane.run(|| 7))
                .await
                .expect("the lane call waited for the blocking pool");
            assert_eq!(answer.unwrap(), 7);
            release.send(()).unwrap();
            blocker.await.unwrap().unwrap();
        });
    }

    #[tokio::test]
    async fn a_panic_on_the_lane_reaches_the_caller_and_the_lane_keeps_running() {
        let lane = StoreLane::dedicated("test-lane-3").unwrap();
        let caught = tokio::spawn({
            let lane = lane.clone();
            async move { lane.run(|| panic!("boom")).await }
        })
        .await;
        assert!(caught.unwrap_err().is_panic());
        assert_eq!(lane.run(|| 1).await.unwrap(), 1);
        assert_eq!(lane.stats().in_flight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_shared_lane_counts_its_calls_too() {
        let lane = StoreLane::shared();
        assert!(!lane.is_dedicated());
        assert_eq!(lane.run(|| 3).await.unwrap(), 3);
        assert_eq!(lane.stats().calls.load(Ordering::Relaxed), 1);
    }
}
