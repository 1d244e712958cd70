//! The feed's settings of `starling serve` (feature `clap`): a clap group (flags,
//! `STARLING_<FLAG>` variables and `--config` keys, each declared once here, typed and
//! defaulted) that the server flattens into its command line; [`FeedConfig`] from it.

use crate::FeedConfig;
use serde::{Deserialize, Serialize};
use starling_store::settings::{Span, Within};
use std::time::Duration;

/// The home timelines' settings of `starling serve`; the rest of [`FeedConfig`] keeps its
/// defaults.
#[derive(clap::Args, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct FeedSettings {
    /// Entries kept per home timeline (default 800).
    #[arg(
        long,
        env = "STARLING_FEED_CAP",
        default_value = "800",
        hide_default_value = true
    )]
    pub feed_cap: Within<20, 100_000>,
    /// Authors with more followers are pulled at read time, not fanned out (default 10000).
    #[arg(
        long,
        env = "STARLING_FEED_CELEBRITY_FOLLOWERS",
        default_value = "10000",
        hide_default_value = true
    )]
    pub feed_celebrity_followers: Within<1, { i64::MAX as u64 }>,
    /// Users who have not read their feed for this many days are skipped by fan-out and
    /// rebuilt on their next read (default 30).
    #[arg(
        long,
        env = "STARLING_FEED_INACTIVE_DAYS",
        default_value = "30",
        hide_default_value = true
    )]
    pub feed_inactive_days: Within<1, { u64::MAX / 86_400 }>,
    /// Post bodies kept in this process for feed pages (default 200000).
    #[arg(
        long,
        env = "STARLING_FEED_POST_CACHE",
        default_value = "200000",
        hide_default_value = true
    )]
    pub feed_post_cache: Within<100, 100_000_000>,
    /// With `--store scylla://…` (several nodes on one keyspace): how long this node keeps a
    /// timeline or a pulled author's list in process, e.g. `5s` (default 5s). With `--redis`
    /// the node that changes one tells the others to drop their copies at once, so this only
    /// bounds what a lost message leaves stale.
    #[arg(long, env = "STARLING_FEED_SHARED_TTL")]
    pub feed_shared_ttl: Option<Span>,
}

impl Default for FeedSettings {
    fn default() -> Self {
        starling_store::settings::defaults()
    }
}

impl From<FeedSettings> for FeedConfig {
    /// The settings' values, the other tunables' defaults. `shared_ttl` is the flag's value as
    /// given: the server decides whether the node shares a keyspace and its default then.
    fn from(s: FeedSettings) -> Self {
        FeedConfig {
            cap: s.feed_cap.usize(),
            celebrity_followers: i64::try_from(s.feed_celebrity_followers.get())
                .unwrap_or(i64::MAX),
            inactive_after: Duration::from_secs(s.feed_inactive_days.get() * 86_400),
            post_cache_entries: s.feed_post_cache.get(),
            shared_ttl: s.feed_shared_ttl.map(Span::get),
            ..FeedConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_defaults_are_the_configs() {
        let (from, default) = (
            FeedConfig::from(FeedSettings::default()),
            FeedConfig::default(),
        );
        assert_eq!(from.cap, default.cap);
        assert_eq!(from.celebrity_followers, default.celebrity_followers);
        assert_eq!(from.inactive_after, default.inactive_after);
        assert_eq!(from.post_cache_entries, default.post_cache_entries);
        assert_eq!(from.shared_ttl, default.shared_ttl);
    }
}
