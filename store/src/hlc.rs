//! Hybrid logical clock (Kulkarni et al., 2014).
//!
//! A stamp is one `u64`: milliseconds since the Unix epoch in the high 48 bits and a logical
//! counter in the low 16. Stamps issued by one clock are strictly increasing, and a clock that has
//! observed a stamp issues only larger ones afterwards, so causally later writes carry larger
//! stamps even across nodes whose wall clocks disagree. Observing a stamp further in the future
//! than [`HlcClock::MAX_DRIFT_MS`] does not drag this clock along (it is reported instead), so one
//! node with a broken clock cannot push the whole cluster into the future.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One hybrid-logical-clock stamp.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc(pub u64);

impl Hlc {
    /// The smallest stamp.
    pub const ZERO: Hlc = Hlc(0);

    /// A stamp from wall-clock milliseconds and a logical counter.
    pub fn new(millis: u64, logical: u16) -> Self {
        Hlc((millis << 16) | u64::from(logical))
    }

    /// Wall-clock milliseconds of this stamp.
    pub fn millis(self) -> u64 {
        self.0 >> 16
    }

    /// The logical counter of this stamp.
    pub fn logical(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis(), self.logical())
    }
}

/// A shared hybrid logical clock: cheap, lock-free, safe to call from any thread.
#[derive(Debug, Default)]
pub struct HlcClock {
    last: AtomicU64,
    /// A wall clock set by hand (simulations); `None` reads the system clock.
    manual: Option<std::sync::Arc<AtomicU64>>,
}

impl HlcClock {
    /// How far ahead of the local wall clock an observed stamp may be before it is not followed.
    pub const MAX_DRIFT_MS: u64 = 60_000;

    /// A clock on the system's wall clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock whose wall time is whatever `wall_ms` holds: a simulation moves it with its
    /// virtual time, so stamps and ages follow the simulated world.
    pub fn manual(wall_ms: std::sync::Arc<AtomicU64>) -> Self {
        HlcClock {
            last: AtomicU64::new(0),
            manual: Some(wall_ms),
        }
    }

    /// Wall-clock milliseconds since the Unix epoch, as this clock sees them.
    pub fn wall_millis(&self) -> u64 {
        match &self.manual {
            Some(m) => m.load(Ordering::Acquire),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    fn wall(&self) -> u64 {
        Hlc::new(self.wall_millis(), 0).0
    }

    /// A new stamp, strictly larger than every stamp issued or observed before.
    pub fn now(&self) -> Hlc {
        let wall = self.wall();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = if wall > last { wall } else { last + 1 };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Hlc(next),
                Err(actual) => last = actual,
            }
        }
    }

    /// Takes note of a stamp seen in a message or a stored record. Returns `false` (and leaves the
    /// clock alone) when the stamp is more than [`Self::MAX_DRIFT_MS`] ahead of the wall clock.
    pub fn observe(&self, seen: Hlc) -> bool {
        let wall = self.wall();
        if seen.millis() > Hlc(wall).millis() + Self::MAX_DRIFT_MS {
            return false;
        }
        self.last.fetch_max(seen.0, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase() {
        let c = HlcClock::new();
        let mut prev = c.now();
        for _ in 0..10_000 {
            let n = c.now();
            assert!(n > prev);
            prev = n;
        }
    }

    #[test]
    fn observing_a_later_stamp_moves_the_clock_past_it() {
        let c = HlcClock::new();
        let ahead = Hlc(c.now().0 + (5_000 << 16));
        assert!(c.observe(ahead));
        assert!(c.now() > ahead);
    }

    #[test]
    fn a_stamp_far_in_the_future_is_not_followed() {
        let c = HlcClock::new();
        let far = Hlc::new(c.now().millis() + HlcClock::MAX_DRIFT_MS * 10, 0);
        assert!(!c.observe(far));
        assert!(c.now() < far);
    }
}
