//! The types of `starling serve`'s settings. Each parses and checks its own value, with one
//! parser for all three sources: a flag or a `STARLING_*` variable (clap calls `FromStr`) and the
//! `--config` file (serde calls the same `FromStr`, or the same range check for numbers). So a
//! setting is declared by its field in [`super::ServeArgs`] alone, and a bad value is refused
//! where it is read, with the flag (clap) or the file's line (toml) named. The numbers and
//! durations in a range ([`Within`], [`Period`]), the sizes ([`Bytes`]), the fsync policy
//! ([`Fsync`]) and serde through the text (`serde_via_str!`) are `starling_store::settings`'
//! (the crates' own settings groups use them too).

use crate::cors::CorsOrigins;
use serde::{Deserialize, Serialize};
use starling_store::ScyllaOptions;
use starling_store::{checked_text, serde_via_str};
use std::fmt;
use std::str::FromStr;

pub use starling_gossip::settings::Secret;
pub use starling_store::settings::{
    AtLeastOne, Bytes, Fsync, Lifetime, PerMinute, Period, Span, Timeout, Within,
};

checked_text!(
    /// A region or node name: 1 to 64 characters of `[A-Za-z0-9_-]`.
    Name,
    |s| {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(())
        } else {
            Err("use 1-64 characters of [A-Za-z0-9_-]".into())
        }
    }
);

checked_text!(
    /// An S3 bucket, `s3://BUCKET`.
    S3Bucket,
    |s| {
        if s.starts_with("s3://") && s.len() > 5 {
            Ok(())
        } else {
            Err("expected s3://BUCKET".into())
        }
    }
);

checked_text!(
    /// A Redis URL, `redis://HOST:PORT`.
    RedisUrl,
    |s| {
        if s.starts_with("redis://") {
            Ok(())
        } else {
            Err("expected redis://HOST:PORT".into())
        }
    }
);

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Which store engine a node runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// fjall on local disk.
    Embedded,
    /// In memory; for trying things out and tests.
    Memory,
    /// A ScyllaDB (or Cassandra) cluster; the `scylla://` URL, checked when parsed.
    Scylla(String),
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(StoreKind::Embedded),
            "memory" => Ok(StoreKind::Memory),
            url if url.starts_with("scylla://") => match ScyllaOptions::from_url(url) {
                Ok(_) => Ok(StoreKind::Scylla(url.to_string())),
                Err(e) => Err(format!("{url:?}: {e}")),
            },
            other => Err(format!(
                "{other:?}: expected `embedded`, `memory` or `scylla://HOST:PORT/KEYSPACE`"
            )),
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreKind::Embedded => f.write_str("embedded"),
            StoreKind::Memory => f.write_str("memory"),
            StoreKind::Scylla(url) => f.write_str(url),
        }
    }
}

/// Origins browsers may call the API from: `*` or comma-separated origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origins {
    text: String,
    /// The origins.
    pub parsed: CorsOrigins,
}

impl FromStr for Origins {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Origins {
            text: s.to_string(),
            parsed: CorsOrigins::parse(s)?,
        })
    }
}

impl fmt::Display for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Simulated round trips between regions, `us-eu=100,us-ap=250` (milliseconds, at most 60000).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rtts(pub Vec<(String, String, u64)>);

impl FromStr for Rtts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|pair| {
                let bad = || format!("{pair:?}: expected REGION-REGION=MILLISECONDS");
                let (regions, ms) = pair.trim().split_once('=').ok_or_else(bad)?;
                let (a, b) = regions.split_once('-').ok_or_else(bad)?;
                let ms: u64 = ms.trim_end_matches("ms").parse().map_err(|_| bad())?;
                if a.is_empty() || b.is_empty() || a == b || ms > 60_000 {
                    return Err(bad());
                }
                Ok((a.to_string(), b.to_string(), ms))
            })
            .collect::<Result<_, _>>()
            .map(Rtts)
    }
}

impl fmt::Display for Rtts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b, ms)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{a}-{b}={ms}")?;
        }
        Ok(())
    }
}

serde_via_str!(StoreKind, Origins, Rtts);

// The choices' variants have `//` comments, not docs: a documented variant would turn clap's
// `--help` into its long form for every flag. Their values show as `[possible values: …]`.

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    // Lines for people.
    Human,
    // JSON lines.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_store::FsyncPolicy;
    use std::time::Duration;

    /// Every value a type accepts prints as text it reads back the same: the layered merge
    /// passes the file's and the flags' values through that text.
    fn round_trips<T: FromStr + fmt::Display + PartialEq + fmt::Debug>(s: &str) -> T
    where
        T::Err: fmt::Debug,
    {
        let v: T = s.parse().unwrap();
        assert_eq!(v.to_string().parse::<T>().unwrap(), v, "{s}");
        v
    }

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(round_trips::<Bytes>("64MiB").get(), 64 << 20);
        assert_eq!(round_trips::<Bytes>(" 2 GiB ").get(), 2 << 30);
        assert_eq!(round_trips::<Bytes>("1024K").get(), 1 << 20);
        assert_eq!(round_trips::<Bytes>("1048577").get(), (1 << 20) + 1);
        for bad in [
            "",
            "MiB",
            "12XB",
            "-1MiB",
            "1.5GiB",
            "1KiB",
            "65GiB",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Bytes>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_durations_and_choices_hold_their_ranges() {
        assert_eq!(round_trips::<Within<20, 100>>("20").get(), 20);
        assert!(
            "19".parse::<Within<20, 100>>()
                .unwrap_err()
                .contains("20 to 100")
        );
        assert!(
            "0".parse::<AtLeastOne>()
                .unwrap_err()
                .contains("at least 1")
        );
        assert!("-3".parse::<AtLeastOne>().is_err());
        assert_eq!(round_trips::<Timeout>("30s").get(), Duration::from_secs(30));
        assert_eq!(
            round_trips::<Span>("30d").get(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(
            "50ms"
                .parse::<Timeout>()
                .unwrap_err()
                .contains("between 100ms and 1h")
        );
        assert!("2h".parse::<Timeout>().is_err());
        assert!("31d".parse::<Span>().is_err());
        assert!(
            "500ms"
                .parse::<Lifetime>()
                .unwrap_err()
                .contains("at least 1s")
        );
        assert_eq!(
            round_trips::<Lifetime>("400d").get().as_secs(),
            400 * 86_400
        );
        assert_eq!(round_trips::<Fsync>("always").0, FsyncPolicy::Always);
        assert_eq!(
            round_trips::<Fsync>("250").0,
            FsyncPolicy::Interval(Duration::from_millis(250))
        );
        assert!("0".parse::<Fsync>().is_err());
        assert_eq!(round_trips::<Rtts>("us-eu=100,us-ap=250ms").0.len(), 2);
        assert!("us-us=5".parse::<Rtts>().is_err());
        assert!("us east".parse::<Name>().is_err());
        assert!("s3://".parse::<S3Bucket>().is_err());
        assert!("http://x".parse::<RedisUrl>().is_err());
        round_trips::<Origins>("https://a.example,https://b.example");
        round_trips::<StoreKind>("scylla://h:9042/ks");
    }
}
