//! The value types of settings declared with clap (feature `clap`): a number in a range
//! ([`Within`]) and a duration in a range ([`Period`]), each one parser for a flag, its
//! `STARLING_*` variable (clap calls `FromStr`) and a TOML file (serde calls the same check), and
//! [`defaults`], a group's values from no flags. They live here, the crate every other one builds
//! on, so a crate declares its own settings group beside the code that reads it (the store's
//! trimmer, the feed) and `starling serve` flattens the groups into its command line.

use clap::{Args, FromArgMatches};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A whole number from `MIN` to `MAX`; in the file a TOML integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Within<const MIN: u64, const MAX: u64>(u64);

/// A count of at least one that fits a `u32` (the per-minute limits).
pub type PerMinute = Within<1, { u32::MAX as u64 }>;
/// A count of at least one.
pub type AtLeastOne = Within<1, { u64::MAX }>;

impl<const MIN: u64, const MAX: u64> Within<MIN, MAX> {
    /// `n` if it is in range, else what the range is.
    pub fn new(n: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&n) {
            Ok(Within(n))
        } else if MAX == u64::MAX {
            Err(format!("{n}: at least {MIN}"))
        } else {
            Err(format!("{n}: expected {MIN} to {MAX}"))
        }
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The number as a `usize` (saturating: the bounds of every such setting fit).
    pub fn usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> FromStr for Within<MIN, MAX> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n = s
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("{s:?}: expected a whole number ({e})"))?;
        Self::new(n)
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Within<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Within<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Within<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A duration such as `30s`, `500ms` or `30d`, from `MIN_MS` to `MAX_MS` milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period<const MIN_MS: u64, const MAX_MS: u64>(Duration);

/// A timeout, 100 ms to an hour.
pub type Timeout = Period<100, 3_600_000>;
/// A period of housekeeping, 100 ms (short ones compress time in tests) to 30 days.
pub type Span = Period<100, { 30 * 86_400_000 }>;
/// A lifetime of at least a second.
pub type Lifetime = Period<1000, { u64::MAX }>;

impl<const MIN_MS: u64, const MAX_MS: u64> Period<MIN_MS, MAX_MS> {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<const MIN_MS: u64, const MAX_MS: u64> FromStr for Period<MIN_MS, MAX_MS> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("{s:?}: expected a duration such as 30s ({e})"))?;
        let (min, max) = (Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS));
        if d < min || d > max {
            let min = humantime::format_duration(min);
            return Err(if MAX_MS == u64::MAX {
                format!("{s:?}: at least {min}")
            } else {
                format!(
                    "{s:?}: between {min} and {}",
                    humantime::format_duration(max)
                )
            });
        }
        Ok(Period(d))
    }
}

impl<const MIN_MS: u64, const MAX_MS: u64> fmt::Display for Period<MIN_MS, MAX_MS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<const MIN_MS: u64, const MAX_MS: u64> Serialize for Period<MIN_MS, MAX_MS> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const MIN_MS: u64, const MAX_MS: u64> Deserialize<'de> for Period<MIN_MS, MAX_MS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A group of settings as clap gives it from no flags and no environment: each field's declared
/// `default_value`. The groups' `Default`.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults")).mut_args(|a| a.env(None::<&str>));
    cmd.try_get_matches_from(["defaults"])
        .and_then(|m| T::from_arg_matches(&m))
        .unwrap_or_else(|e| panic!("a setting's declared default does not parse: {e}"))
}
