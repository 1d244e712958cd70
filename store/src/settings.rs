//! The value types of settings declared with clap (feature `clap`): a number in a range
//! ([`Within`]), a duration in a range ([`Period`]), a size ([`Bytes`]) and an fsync policy
//! ([`Fsync`]), text checked once and kept as given (`checked_text!`), each one parser for a flag, its
//! `STARLING_*` variable (clap calls `FromStr`) and a TOML file (serde calls the same check), and
//! [`defaults`], a group's values from no flags. They live here, the crate every other one builds
//! on, so a crate declares its own settings group beside the code that reads it (the store's
//! trimmer, the embedded engine's [`EmbeddedSettings`], the feed) and `starling serve` flattens
//! the groups into its command line.

use crate::{EmbeddedOptions, FsyncPolicy};
use clap::{Args, FromArgMatches};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Serde through `Display` and `FromStr` for the types named: a file's value is read by the
/// parser a flag's is. The caller depends on `serde`.
#[macro_export]
macro_rules! serde_via_str {
    ($($t:ty),* $(,)?) => {$(
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as ::serde::Deserialize>::deserialize(d)?
                    .parse()
                    .map_err(::serde::de::Error::custom)
            }
        }
    )*};
}

/// A text setting kept as given once `check` (a `fn(&str) -> Result<(), String>`) accepts it:
/// `FromStr`, `Display`, serde through the text and the text back out (`as_str`,
/// `From<_> for String`); `Debug` is the caller's (a secret's must not show it). The caller
/// depends on `serde`.
#[macro_export]
macro_rules! checked_text {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// The text as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(s)?;
                Ok($name(s.to_string()))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        $crate::serde_via_str!($name);
    };
}

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

/// The whole number a flag, a variable or a file's text gives (surrounding white space allowed),
/// or a message naming the text: the first check of every whole-number setting, before its range.
pub fn whole_number(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|e| format!("{s:?}: expected a whole number ({e})"))
}

impl<const MIN: u64, const MAX: u64> FromStr for Within<MIN, MAX> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(whole_number(s)?)
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

/// A size in bytes such as `64MiB`, `512KiB`, `1GiB` or `1048576`, from 1 MiB to 64 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(u64);

impl Bytes {
    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let unit: u64 = match t[digits..].trim() {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            _ => {
                return Err(format!(
                    "{s:?}: expected a size such as 64MiB (units B, KiB, MiB, GiB)"
                ));
            }
        };
        let n: u64 = t[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: expected a size such as 64MiB"))?;
        match n.checked_mul(unit) {
            Some(b) if ((1 << 20)..=(64 << 30)).contains(&b) => Ok(Bytes(b)),
            _ => Err(format!("{s:?}: between 1MiB and 64GiB")),
        }
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b % (1 << 30) == 0 => write!(f, "{}GiB", b >> 30),
            b if b % (1 << 20) == 0 => write!(f, "{}MiB", b >> 20),
            b if b % (1 << 10) == 0 => write!(f, "{}KiB", b >> 10),
            b => write!(f, "{b}"),
        }
    }
}

/// When the embedded store fsyncs: `always`, `never`, or an interval in milliseconds (1 to
/// 60000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fsync(pub FsyncPolicy);

impl FromStr for Fsync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Fsync(FsyncPolicy::Always)),
            "never" => Ok(Fsync(FsyncPolicy::Never)),
            ms => match ms.parse::<u64>() {
                Ok(ms) if (1..=60_000).contains(&ms) => {
                    Ok(Fsync(FsyncPolicy::Interval(Duration::from_millis(ms))))
                }
                _ => Err(format!(
                    "{ms:?}: expected `always`, `never` or milliseconds between 1 and 60000"
                )),
            },
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(d) => write!(f, "{}", d.as_millis()),
        }
    }
}

serde_via_str!(Bytes, Fsync);

/// The embedded engine's settings of `starling serve`: a clap group (flags, `STARLING_<FLAG>`
/// variables and `--config` keys, each declared once here, typed and defaulted) that the server
/// flattens into its command line; [`EmbeddedOptions`] from it ([`EmbeddedSettings::options`]).
#[derive(Args, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct EmbeddedSettings {
    /// When writes are fsynced: `always` (before each acknowledgement), `never`, or an interval
    /// in milliseconds (default 100). Every acknowledged write survives a process crash anyway.
    #[arg(
        long,
        env = "STARLING_FSYNC",
        default_value = "100",
        hide_default_value = true
    )]
    pub fsync: Fsync,
    /// Block cache of the embedded store, e.g. `1GiB` (default 256MiB).
    #[arg(
        long,
        env = "STARLING_STORE_CACHE",
        default_value = "256MiB",
        hide_default_value = true
    )]
    pub store_cache: Bytes,
    /// Most bytes of each of the embedded store's four memtables before it is flushed to disk,
    /// e.g. `16MiB` (default 16MiB); applies to a new data directory.
    #[arg(
        long,
        env = "STARLING_STORE_MEMTABLE",
        default_value = "16MiB",
        hide_default_value = true
    )]
    pub store_memtable: Bytes,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        defaults()
    }
}

impl EmbeddedSettings {
    /// The options of an embedded store in `dir` with these settings, the rest default.
    pub fn options(&self, dir: impl Into<PathBuf>) -> EmbeddedOptions {
        EmbeddedOptions {
            fsync: self.fsync.0,
            cache_bytes: self.store_cache.get(),
            memtable_bytes: self.store_memtable.get(),
            ..EmbeddedOptions::new(dir)
        }
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
