//! When requests start and which operation each one is, decided without any clock or socket.
//!
//! An open-loop run asks a [`Schedule`] for the *intended* start of every request, as an offset
//! from the start of the run, and measures each latency from that intended start: when the server
//! stalls, requests queue up behind it and every one of them records the stall (the correction
//! for coordinated omission that wrk2 introduced). The [`Mix`] picks the operation of each request
//! by weight. Both are seeded, so a run's schedule is reproducible.

use crate::LoadError;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How arrivals are spread in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Exactly every 1/rate seconds.
    Uniform,
    /// A Poisson process: exponential gaps of mean 1/rate (independent users).
    Poisson,
}

impl FromStr for Arrivals {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<Self, LoadError> {
        match s {
            "uniform" => Ok(Arrivals::Uniform),
            "poisson" => Ok(Arrivals::Poisson),
            _ => Err(LoadError::config("arrivals", "uniform or poisson")),
        }
    }
}

/// The rate control: a fixed open-loop rate, or as fast as `concurrency` workers go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Requests per second, scheduled regardless of how fast the server answers.
    Fixed(f64),
    /// Closed loop: each worker sends its next request when the previous one is answered.
    Max,
}

impl FromStr for Rate {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<Self, LoadError> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::Fixed(r)),
            _ => Err(LoadError::config(
                "rate",
                format!("{s:?}: a positive number of requests per second, or max"),
            )),
        }
    }
}

/// The intended start times of an open-loop run, as offsets from its start.
#[derive(Debug)]
pub struct Schedule {
    rate: f64,
    arrivals: Arrivals,
    rng: StdRng,
    issued: u64,
    next_secs: f64,
}

impl Schedule {
    /// A schedule of `rate` requests per second (must be > 0).
    pub fn new(rate: f64, arrivals: Arrivals, seed: u64) -> Self {
        Schedule {
            rate,
            arrivals,
            rng: StdRng::seed_from_u64(seed),
            issued: 0,
            next_secs: 0.0,
        }
    }

    /// The intended start of the next request. Uniform offsets are `k / rate` exactly (no
    /// accumulated rounding); Poisson offsets add exponential gaps.
    pub fn next_offset(&mut self) -> Duration {
        let at = match self.arrivals {
            Arrivals::Uniform => self.issued as f64 / self.rate,
            Arrivals::Poisson => {
                let at = self.next_secs;
                // 1 - u is in (0, 1], so the logarithm is finite.
                let u: f64 = self.rng.random();
                self.next_secs += -(1.0 - u).ln() / self.rate;
                at
            }
        };
        self.issued += 1;
        Duration::from_secs_f64(at)
    }
}

/// A named REST operation of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `GET /v1/feed`.
    Read,
    /// `POST /v1/posts`.
    Post,
    /// `DELETE /v1/posts/{id}`, as its author, of the oldest post that left the like window
    /// (the last `RECENT_POSTS` of its node) 30 s ago or more; nothing when none has yet. So
    /// posts are deleted as fast as they are written once the window is full, when weighted as
    /// `post` (the soak's mix).
    Unpost,
    /// `PUT /v1/following/{id}`.
    Follow,
    /// `DELETE /v1/following/{id}`.
    Unfollow,
    /// `GET /healthz`: the baseline with no application work.
    Health,
    /// `POST /v1/conversations/{id}/messages` into the user's 1:1 conversation (REST chat
    /// sends; needs `Setup::conversations`).
    Chat,
    /// `PUT` or `DELETE /v1/conversations/{id}/members/{user}`: the user toggles one member of
    /// the group they own (needs `Setup::groups`); one change per user in flight at a time.
    Group,
    /// `PATCH /v1/conversations/{id}/messages/{seq}`: the user edits one of their acknowledged
    /// chat messages not edited yet (sending one first when there is none; needs
    /// `Setup::conversations`).
    Edit,
    /// `PUT /v1/posts/{id}/like`: half on the run's hot post (its first acknowledged post),
    /// half on one of its recent acknowledged posts (posting one first when there is none).
    Like,
    /// `DELETE /v1/posts/{id}/like`, on a post chosen as for [`Op::Like`].
    Unlike,
    /// `PUT /v1/posts/{id}/repost`, on a post chosen as for [`Op::Like`].
    Repost,
    /// `DELETE /v1/posts/{id}/repost`, on a post chosen as for [`Op::Like`].
    Unrepost,
    /// `GET /v1/notifications`, then `PUT /v1/notifications/read` up to its newest item (when
    /// it has one).
    Notify,
    /// `POST /v1/sessions` (a second session), then `PUT /v1/users/me/password` from the
    /// user's current password to a new one with the user's own session (which stays): the
    /// second session must be revoked. One change per user in flight at a time.
    Password,
    /// `DELETE /v1/users/me` of one of the user's spare accounts (which follows them), or of
    /// another user's of the same target when the user has none left (one is signed up first
    /// when none is left at all).
    Delete,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 16] = [
        Op::Read,
        Op::Post,
        Op::Unpost,
        Op::Follow,
        Op::Unfollow,
        Op::Health,
        Op::Chat,
        Op::Group,
        Op::Edit,
        Op::Like,
        Op::Unlike,
        Op::Repost,
        Op::Unrepost,
        Op::Notify,
        Op::Password,
        Op::Delete,
    ];

    /// The name used in `--mix`, the report and the plots.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Post => "post",
            Op::Unpost => "unpost",
            Op::Follow => "follow",
            Op::Unfollow => "unfollow",
            Op::Health => "health",
            Op::Chat => "chat",
            Op::Group => "group",
            Op::Edit => "edit",
            Op::Like => "like",
            Op::Unlike => "unlike",
            Op::Repost => "repost",
            Op::Unrepost => "unrepost",
            Op::Notify => "notify",
            Op::Password => "password",
            Op::Delete => "delete",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<Self, LoadError> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Op::ALL.iter().map(|op| op.name()).collect();
                LoadError::config(
                    "mix",
                    format!("unknown operation {s:?} ({})", names.join(", ")),
                )
            })
    }
}

/// Operations with integer weights, e.g. `read=99,post=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Op, u32)>,
    total: u32,
}

impl Mix {
    /// A mix of one operation.
    pub fn only(op: Op) -> Self {
        Mix {
            weights: vec![(op, 1)],
            total: 1,
        }
    }

    /// The operations with a weight above zero.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.weights.iter().map(|(op, _)| *op)
    }

    /// Picks an operation with probability weight / total.
    pub fn pick(&self, rng: &mut impl rand::Rng) -> Op {
        let mut x = rng.random_range(0..self.total);
        for &(op, w) in &self.weights {
            if x < w {
                return op;
            }
            x -= w;
        }
        // Unreachable: x < total = the sum of the weights.
        self.weights[0].0
    }
}

impl FromStr for Mix {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<Self, LoadError> {
        let mut weights: Vec<(Op, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part.split_once('=').unwrap_or((part, "1"));
            let op: Op = name.trim().parse()?;
            let w: u32 = w.trim().parse().map_err(|_| {
                LoadError::config("mix", format!("{part:?}: the weight is an integer"))
            })?;
            if weights.iter().any(|(o, _)| *o == op) {
                return Err(LoadError::config("mix", format!("{name} appears twice")));
            }
            if w > 0 {
                weights.push((op, w));
            }
        }
        let total = weights
            .iter()
            .try_fold(0u32, |t, (_, w)| t.checked_add(*w))
            .ok_or_else(|| LoadError::config("mix", "weights too large"))?;
        if total == 0 {
            return Err(LoadError::config(
                "mix",
                "at least one operation with a weight above 0",
            ));
        }
        Ok(Mix { weights, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_offsets_are_exact_multiples_of_the_interval() {
        let mut s = Schedule::new(1000.0, Arrivals::Uniform, 1);
        let offs: Vec<Duration> = (0..5).map(|_| s.next_offset()).collect();
        assert_eq!(
            offs,
            (0..5u64).map(Duration::from_millis).collect::<Vec<_>>()
        );
        let mut s = Schedule::new(3.0, Arrivals::Uniform, 1);
        let last = (0..=3000).map(|_| s.next_offset()).last();
        assert_eq!(
            last,
            Some(Duration::from_secs(1000)),
            "no accumulated drift"
        );
    }

    #[test]
    fn poisson_is_seeded_increasing_and_has_the_right_mean_rate() {
        let offsets = |seed| {
            let mut s = Schedule::new(500.0, Arrivals::Poisson, seed);
            (0..20_000).map(|_| s.next_offset()).collect::<Vec<_>>()
        };
        let a = offsets(7);
        assert_eq!(a, offsets(7), "same seed, same schedule");
        assert_ne!(a, offsets(8));
        assert_eq!(a[0], Duration::ZERO);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        let rate = 20_000.0 / a[19_999].as_secs_f64();
        assert!((rate - 500.0).abs() < 25.0, "mean rate {rate}");
    }

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>().ok(), Some(Rate::Max));
        assert_eq!("250".parse::<Rate>().ok(), Some(Rate::Fixed(250.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let mix: Mix = "read=99, post=1".parse().unwrap();
        assert_eq!(mix.ops().collect::<Vec<_>>(), vec![Op::Read, Op::Post]);
        let mut rng = StdRng::seed_from_u64(3);
        let posts = (0..100_000)
            .filter(|_| mix.pick(&mut rng) == Op::Post)
            .count();
        assert!((700..1300).contains(&posts), "{posts} posts in 100k");
        assert_eq!("read".parse::<Mix>().unwrap(), Mix::only(Op::Read));
        let mix: Mix = "read=70,post=10,chat=10,group=5,edit=5".parse().unwrap();
        assert_eq!(
            mix.ops().collect::<Vec<_>>(),
            [Op::Read, Op::Post, Op::Chat, Op::Group, Op::Edit]
        );
        assert!("read=0".parse::<Mix>().is_err());
        assert!("read=1,read=2".parse::<Mix>().is_err());
        assert!("write=1".parse::<Mix>().is_err());
        assert!("read=x".parse::<Mix>().is_err());
    }
}
