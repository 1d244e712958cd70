//! Node configuration: defaults, then a TOML file, then the environment, then flags.
//!
//! Every setting of `starling serve` is declared once, in [`ServeArgs`]: its flag, its
//! `STARLING_<FLAG>` variable (clap layers flags over the environment) and its key in the
//! `--config` TOML file (serde, the same name with `_`) come from that one field, and one generic
//! merge layers what clap read over the file. Each field's type ([`values`]) parses and checks
//! its value, with one parser for the flag, the variable and the file, and its default is declared
//! on it (`default_value`), so a new setting is its field and its doc. A default that depends on
//! other settings is one method of [`ServeArgs`] ([`node_name`](ServeArgs::node_name),
//! [`handle_region`](ServeArgs::handle_region), [`otlp_endpoint`](ServeArgs::otlp_endpoint)).
//! [`ServeConfig::resolve`] layers the sources, checks what involves several settings
//! (`--tls-cert` with `--tls-key`, `--seeds` with `--gossip-listen`, …) and holds the settings as
//! they are ([`ServeConfig::settings`]).
//!
//! A group of settings one part of the node reads ([`WriteQuotas`](crate::write_limits::WriteQuotas),
//! [`ConnLimits`](crate::accept::ConnLimits), [`ChatSettings`], [`Housekeeping`], and, declared
//! in their own crates under their `clap` feature, [`FeedSettings`](starling_feed::FeedSettings),
//! [`TrimSettings`](starling_store::TrimSettings), [`EmbeddedSettings`](starling_store::settings::EmbeddedSettings)
//! and [`GossipSettings`](starling_gossip::settings::GossipSettings);
//! [`TlsSettings`](crate::tls::TlsSettings), [`WebSettings`](crate::web::WebSettings) and
//! [`MediaSettings`](crate::media::MediaSettings) beside the code they configure) is a `clap::Args` struct flattened into
//! [`ServeArgs`], its fields typed and given their defaults (`default_value`) where they are
//! declared: that struct, as parsed and layered, *is* the part's configuration (or the part's
//! `From` it), so a new setting of a group is its field and its doc, and nothing in
//! [`ServeConfig::resolve`]. A group's
//! `Default` is what clap gives it from no flags ([`defaults`]). What the command line or the
//! environment gave is told apart from a default by clap ([`CommandLine`]), so it wins over the
//! file and a default does not.

pub mod values;

pub use values::StoreKind;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use starling_store::{NodeId, RegionId};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use values::{
    AtLeastOne, Lifetime, LogFormat, Name, Origins, PerMinute, RedisUrl, Rtts, Span, Timeout,
    Within,
};

/// Settings of `starling serve`: flags, environment variables and the TOML file's keys. Each
/// field carries its default (a flattened group's fields too; an optional one is off or derived
/// without it), and `Default` is what clap gives from no flags ([`defaults`]). A key of the file
/// that is no setting is refused by [`from_file`] (serde's `deny_unknown_fields` does not work
/// with flattened groups).
#[derive(Args, Deserialize, Serialize, Debug, Clone)]
#[serde(default)]
pub struct ServeArgs {
    /// Address the HTTP API listens on (default 127.0.0.1:8080).
    #[arg(
        long,
        env = "STARLING_LISTEN",
        default_value = "127.0.0.1:8080",
        hide_default_value = true
    )]
    pub listen: SocketAddr,
    /// Directory of the embedded store (default ./starling-data).
    #[arg(
        long,
        env = "STARLING_DATA_DIR",
        default_value = "./starling-data",
        hide_default_value = true
    )]
    pub data_dir: PathBuf,
    /// Region this node serves (default local).
    #[arg(
        long,
        env = "STARLING_REGION",
        default_value = "local",
        hide_default_value = true
    )]
    pub region: Name,
    /// Name of this node (unique in its region); default `node-PORT`, PORT being the port of
    /// `--listen`.
    #[arg(long, env = "STARLING_NODE_ID")]
    pub node_id: Option<Name>,
    /// Store engine: `embedded` (on disk, default), `memory` (nothing persists), or a ScyllaDB
    /// cluster as `scylla://HOST:PORT[,HOST:PORT…]/KEYSPACE[?replication=…&consistency=…]`
    /// (see the README).
    #[arg(
        long,
        env = "STARLING_STORE",
        default_value = "embedded",
        hide_default_value = true
    )]
    pub store: StoreKind,
    /// The embedded store's fsync, block cache and memtables (`--fsync`, …).
    #[command(flatten)]
    #[serde(flatten)]
    pub embedded: starling_store::settings::EmbeddedSettings,
    /// Clustering: the gossip listener, seeds, cluster secret and transport (`--gossip-listen`,
    /// …).
    #[command(flatten)]
    #[serde(flatten)]
    pub gossip: starling_gossip::settings::GossipSettings,
    /// Token of the admin endpoints (`/v1/cluster`, `/v1/admin/*`); they are disabled without.
    #[arg(long, env = "STARLING_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Media: its directory or bucket and its URLs' secret (`--media-dir`, …).
    #[command(flatten)]
    #[serde(flatten)]
    pub media: crate::media::MediaSettings,
    /// Region whose owner node arbitrates unique handles; the same on every node of a cluster
    /// (default: this node's region).
    #[arg(long, env = "STARLING_HANDLE_REGION")]
    pub handle_region: Option<String>,
    /// Sign-ups and logins allowed per client address and minute (default 60).
    #[arg(
        long,
        env = "STARLING_AUTH_PER_MINUTE",
        default_value = "60",
        hide_default_value = true
    )]
    pub auth_per_minute: PerMinute,
    /// Per-user write quotas (`--posts-per-minute`, …).
    #[command(flatten)]
    #[serde(flatten)]
    pub write_quotas: crate::write_limits::WriteQuotas,
    /// Log format: `human` (default) or `json`.
    #[arg(
        long,
        env = "STARLING_LOG_FORMAT",
        default_value = "human",
        hide_default_value = true
    )]
    pub log_format: LogFormat,
    /// In how many regions a write must be held before it is acknowledged (default 1: durable
    /// on this node).
    #[arg(
        long,
        env = "STARLING_DURABLE_REGIONS",
        default_value = "1",
        hide_default_value = true
    )]
    pub durable_regions: Within<1, 16>,
    /// Simulated round trips between regions, e.g. `us-eu=100,us-ap=250,eu-ap=180` (ms).
    #[arg(long, env = "STARLING_WAN_RTT")]
    pub wan_rtt: Option<Rtts>,
    /// Redis of the region, `redis://HOST:PORT`: the shared cache of timelines and post bodies,
    /// and the pub/sub bus of chat events between the region's gateway nodes. Without it,
    /// everything is cached and fanned out in process (messages still reach other nodes by
    /// replication).
    #[arg(long, env = "STARLING_REDIS")]
    pub redis: Option<RedisUrl>,
    /// Home timelines (`--feed-cap`, …).
    #[command(flatten)]
    #[serde(flatten)]
    pub feed: starling_feed::FeedSettings,
    /// The messenger's and WebSocket gateway's limits (`--ws-max-per-user`, …).
    #[command(flatten)]
    #[serde(flatten)]
    pub chat: ChatSettings,
    /// Connection caps and the header-read timeout (`--max-connections`, …).
    #[command(flatten)]
    #[serde(flatten)]
    pub conn: crate::accept::ConnLimits,
    /// Deadline of a request, body upload included, e.g. `30s`; past it the answer is 503
    /// (default 30s).
    #[arg(
        long,
        env = "STARLING_REQUEST_TIMEOUT",
        default_value = "30s",
        hide_default_value = true
    )]
    pub request_timeout: Timeout,
    /// How long a session token from sign-up or login is valid, e.g. `30d` (default 30d).
    #[arg(
        long,
        env = "STARLING_SESSION_TTL",
        default_value = "30d",
        hide_default_value = true
    )]
    pub session_ttl: Lifetime,
    /// The change feed's trimmer (`--feed-trim-interval`, `--feed-retain`).
    #[command(flatten)]
    #[serde(flatten)]
    pub trim: starling_store::TrimSettings,
    /// The tombstone reaper's and the account sweeper's times (`--gc-interval`, …).
    #[command(flatten)]
    #[serde(flatten)]
    pub housekeeping: Housekeeping,
    /// The web client (`--no-web`, `--web-dir`).
    #[command(flatten)]
    #[serde(flatten)]
    pub web: crate::web::WebSettings,
    /// The keyspace-wide feed's lease (`--keyspace-lease-ttl`).
    #[command(flatten)]
    #[serde(flatten)]
    pub keyspace_feed: crate::keyspace_feed::KeyspaceFeedSettings,
    /// HTTPS (`--tls-cert`, `--tls-key`, `--tls-watch-interval`).
    #[command(flatten)]
    #[serde(flatten)]
    pub tls: crate::tls::TlsSettings,
    /// Export traces over OTLP/HTTP (protobuf) to this collector, e.g. `http://127.0.0.1:4318`
    /// (spans go to `/v1/traces` under it); else `OTEL_EXPORTER_OTLP_ENDPOINT`; off without.
    #[arg(long, env = "STARLING_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Origins browsers may call the API from, comma-separated (`https://app.example`), or
    /// `*`; CORS is off without.
    #[arg(long, env = "STARLING_CORS_ORIGINS")]
    pub cors_origins: Option<Origins>,
    /// A TOML file with any of these settings (names as the flags, `-` as `_`).
    #[arg(long, env = "STARLING_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl Default for ServeArgs {
    /// What clap gives from no flags and no environment: each setting's declared default.
    fn default() -> Self {
        defaults()
    }
}

impl ServeArgs {
    /// This node's name: `--node-id`, else `node-PORT` with the HTTP listen port.
    pub fn node_name(&self) -> String {
        self.node_id
            .as_ref()
            .map_or_else(|| format!("node-{}", self.listen.port()), Name::to_string)
    }

    /// The region arbitrating handles: `--handle-region`, else this node's region.
    pub fn handle_region(&self) -> &str {
        self.handle_region
            .as_deref()
            .unwrap_or_else(|| self.region.as_str())
    }

    /// The OTLP/HTTP collector traces are exported to: `--otlp-endpoint`, else
    /// `$OTEL_EXPORTER_OTLP_ENDPOINT`; `None` (off) without either, or when it is blank.
    pub fn otlp_endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|e| !e.trim().is_empty())
    }

    /// Sign-ups and logins allowed per client address and minute (the type's bound fits a
    /// `u32`).
    pub fn auth_per_minute(&self) -> u32 {
        u32::try_from(self.auth_per_minute.get()).unwrap_or(u32::MAX)
    }
}

/// The resolved, validated configuration of a node: the settings as layered and checked
/// together, and what is derived from several of them.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Every setting, flags and environment over the `--config` file over the declared
    /// defaults; the TLS files paired ([`TlsSettings::checked`](crate::tls::TlsSettings::checked)),
    /// the web client's directory checked.
    pub settings: ServeArgs,
    /// Clustering, when enabled ([`GossipSettings::cluster`](starling_gossip::settings::GossipSettings::cluster)).
    pub gossip: Option<starling_gossip::settings::Cluster>,
}

/// Limits of the messenger and its WebSocket gateway: a group of `starling serve`'s settings
/// (flags, `STARLING_<FLAG>` and `--config` keys, each declared once here), and two the server
/// sets (not settings).
#[derive(Args, Serialize, Deserialize, Clone, Copy, Debug)]
#[serde(default)]
pub struct ChatSettings {
    /// WebSocket connections one user may hold on this node (default 16).
    #[arg(
        long,
        env = "STARLING_WS_MAX_PER_USER",
        default_value = "16",
        hide_default_value = true
    )]
    pub ws_max_per_user: AtLeastOne,
    /// WebSocket connections this node accepts (default 200000).
    #[arg(
        long,
        env = "STARLING_WS_MAX_CONNECTIONS",
        default_value = "200000",
        hide_default_value = true
    )]
    pub ws_max_connections: AtLeastOne,
    /// Bytes a WebSocket connection's send queue may hold before it is closed as too slow
    /// (4008; default 1048576).
    #[arg(
        long,
        env = "STARLING_WS_QUEUE_BYTES",
        default_value = "1048576",
        hide_default_value = true
    )]
    pub ws_queue_bytes: Within<16_384, { u64::MAX }>,
    /// Most members of a group conversation (default 1000).
    #[arg(
        long,
        env = "STARLING_MAX_GROUP_MEMBERS",
        default_value = "1000",
        hide_default_value = true
    )]
    pub max_group_members: Within<2, 100_000>,
    /// Chat claims through the sequencer's group commit (default true); false: each send batch
    /// takes its turn on its claim stripe, the path before it (for side-by-side measurement).
    #[arg(
        long,
        env = "STARLING_CHAT_GROUP_COMMIT",
        action = clap::ArgAction::Set,
        default_value = "true",
        hide_default_value = true
    )]
    pub chat_group_commit: bool,
    /// Chat entries each conversation keeps, the oldest trimmed off the send path (0, the
    /// default: every entry is kept; else 100 to 10^9).
    #[arg(
        long,
        env = "STARLING_CHAT_HISTORY_MAX",
        default_value = "0",
        hide_default_value = true
    )]
    pub chat_history_max: starling_messenger::retention::HistoryMax,
    /// Chat entries older than this are trimmed too, all but each conversation's newest (such
    /// as 90d; at least 1s; default off).
    #[arg(long, env = "STARLING_CHAT_HISTORY_MAX_AGE")]
    pub chat_history_max_age: Option<Lifetime>,
    /// The holder id of this node's seq leases (`None`: the store's node id): set by the server
    /// from the embedded store's data directory, so a restarted node takes its leases again at
    /// once (`starling_messenger::lease::holder_in`).
    #[arg(skip)]
    #[serde(skip)]
    pub lease_holder: Option<u64>,
    /// Step 1 of a chat send skips its client-id index read for a client id this node's store
    /// certainly never saw (`starling_messenger::cids`): set by the server for one node on its
    /// own store (memory or embedded engine, no cluster), where every entry is written here.
    #[arg(skip)]
    #[serde(skip)]
    pub client_id_filter: bool,
}

impl Default for ChatSettings {
    fn default() -> Self {
        defaults()
    }
}

/// The times of the tombstone reaper (`starling_gossip::reaper`), of the sweeper of deleted
/// accounts ([`crate::deletion`]) and of gossip's anti-entropy: a group of `starling serve`'s
/// settings (flags, `STARLING_<FLAG>` and `--config` keys, each declared once here).
#[derive(Args, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct Housekeeping {
    /// Time between passes of the tombstone reaper, e.g. `60s` (default 60s).
    #[arg(
        long,
        env = "STARLING_GC_INTERVAL",
        default_value = "60s",
        hide_default_value = true
    )]
    pub gc_interval: Span,
    /// How old a tombstone must be, and how long every member must have been alive, before it
    /// is collected, e.g. `1h` (default 1h).
    #[arg(
        long,
        env = "STARLING_GC_GRACE",
        default_value = "1h",
        hide_default_value = true
    )]
    pub gc_grace: Span,
    /// How long a deleted account's handle stays taken (and its edges are swept for late
    /// replicas), e.g. `30d` (default 30d).
    #[arg(
        long,
        env = "STARLING_HANDLE_GRACE",
        default_value = "30d",
        hide_default_value = true
    )]
    pub handle_grace: Span,
    /// Time between passes of the sweeper of deleted accounts, e.g. `10s` (default 10s).
    #[arg(
        long,
        env = "STARLING_DELETION_INTERVAL",
        default_value = "10s",
        hide_default_value = true
    )]
    pub deletion_interval: Span,
    /// Time between anti-entropy rounds while they repair something, e.g. `1s` (default 1s;
    /// idle rounds back off to 8 s, or to this when longer): a long one leaves a write a push
    /// missed unrepaired that long (a test's way to turn anti-entropy off).
    #[arg(
        long,
        env = "STARLING_AE_INTERVAL",
        default_value = "1s",
        hide_default_value = true
    )]
    pub ae_interval: Span,
}

impl Default for Housekeeping {
    fn default() -> Self {
        defaults()
    }
}

impl ServeConfig {
    /// Layers flags/environment (`args`) over the file named in them over the defaults.
    pub fn resolve(args: impl Into<CommandLine<ServeArgs>>) -> anyhow::Result<Self> {
        let mut args = layered(args.into())?;
        args.tls = args.tls.checked()?;
        if args.gossip.gossip_listen.is_none() && args.durable_regions.get() > 1 {
            bail!("--durable-regions above 1 needs a cluster (--gossip-listen)");
        }
        let gossip = args.gossip.cluster()?;
        let cfg = ServeConfig {
            settings: args,
            gossip,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses values that cannot work, with a message naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(web) = self.settings.web.clone().source() {
            web.check()?;
        }
        Ok(())
    }

    /// This node's id in the store: derived from its region and name.
    pub fn node(&self) -> NodeId {
        NodeId::from_names(self.settings.region.as_str(), &self.settings.node_name())
    }

    /// This node's region id.
    pub fn region_id(&self) -> RegionId {
        RegionId::from_name(self.settings.region.as_str())
    }
}

/// Settings as clap read them (flags over the environment over the declared defaults), with the
/// ids of those the command line or the environment gave: those win over the `--config` file, a
/// default does not. `From<T>`: settings built in code, none of them given.
#[derive(Debug, Clone, Default)]
pub struct CommandLine<T> {
    /// The settings.
    pub args: T,
    /// Ids of the settings given on the command line or in the environment.
    pub given: BTreeSet<String>,
}

impl<T> From<T> for CommandLine<T> {
    fn from(args: T) -> Self {
        CommandLine {
            args,
            given: BTreeSet::new(),
        }
    }
}

impl<T: FromArgMatches> FromArgMatches for CommandLine<T> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let given = m
            .ids()
            .filter(|id| {
                matches!(
                    m.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.to_string())
            .collect();
        Ok(CommandLine {
            args: T::from_arg_matches(m)?,
            given,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl<T: Args> Args for CommandLine<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        T::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        T::augment_args_for_update(cmd)
    }

    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

/// A group of settings as clap gives it from no flags and no environment: the groups' `Default`.
pub use starling_store::settings::defaults;

/// `args` (flags over environment over defaults, as clap read them) over the file `--config`
/// names: what the command line or the environment gave wins, the file fills the rest.
fn layered(args: CommandLine<ServeArgs>) -> anyhow::Result<ServeArgs> {
    let CommandLine { args, given } = args;
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let file = from_file(&text).with_context(|| format!("config file {}", path.display()))?;
    let (Value::Object(mut merged), Value::Object(read)) =
        (serde_json::to_value(&file)?, serde_json::to_value(&args)?)
    else {
        bail!("settings are not a map");
    };
    for (key, value) in read {
        if given.contains(&key) {
            merged.insert(key, value);
        }
    }
    let mut out: ServeArgs = serde_json::from_value(Value::Object(merged))?;
    out.config = Some(path);
    Ok(out)
}

/// The settings of a `--config` file: a key that is no setting is refused (serde's message,
/// naming the key and its line), each group is read alone first so that a refused value's message
/// names its key and line as well (a flattened group's values reach it without their place), then
/// the whole.
fn from_file(text: &str) -> Result<ServeArgs, toml::de::Error> {
    toml::from_str::<KnownKeys>(text)?;
    toml::from_str::<crate::write_limits::WriteQuotas>(text)?;
    toml::from_str::<crate::accept::ConnLimits>(text)?;
    toml::from_str::<ChatSettings>(text)?;
    toml::from_str::<Housekeeping>(text)?;
    toml::from_str::<starling_feed::FeedSettings>(text)?;
    toml::from_str::<starling_store::settings::EmbeddedSettings>(text)?;
    toml::from_str::<starling_store::TrimSettings>(text)?;
    toml::from_str::<crate::tls::TlsSettings>(text)?;
    toml::from_str::<crate::web::WebSettings>(text)?;
    toml::from_str::<crate::media::MediaSettings>(text)?;
    toml::from_str::<crate::keyspace_feed::KeyspaceFeedSettings>(text)?;
    toml::from_str::<starling_gossip::settings::GossipSettings>(text)?;
    toml::from_str(text)
}

/// Every setting's id (a file key), in declaration order, `--config` left out.
fn setting_ids() -> &'static [&'static str] {
    static IDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    IDS.get_or_init(|| {
        ServeArgs::augment_args(clap::Command::new("serve"))
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| *id != "config")
            .map(|id| &*Box::leak(id.to_owned().into_boxed_str()))
            .collect()
    })
}

/// A table whose keys are all settings' ids (values unread).
struct KnownKeys;

impl<'de> Deserialize<'de> for KnownKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("ServeArgs", setting_ids(), KnownKeys)
    }
}

impl<'de> Visitor<'de> for KnownKeys {
    type Value = KnownKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a table of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KnownKeys, A::Error> {
        while map.next_key_seed(KnownKey)?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(KnownKeys)
    }
}

/// One key of [`KnownKeys`]: refused as serde's `deny_unknown_fields` would.
struct KnownKey;

impl<'de> DeserializeSeed<'de> for KnownKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let key = String::deserialize(d)?;
        if setting_ids().contains(&key.as_str()) {
            Ok(())
        } else {
            Err(de::Error::unknown_field(&key, setting_ids()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_store::{EmbeddedOptions, FsyncPolicy};
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    /// The feed's configuration a resolved node runs with.
    fn feed_of(c: &ServeConfig) -> starling_feed::FeedConfig {
        c.settings.feed.into()
    }

    /// The trimmer's configuration a resolved node runs with.
    fn trim_of(c: &ServeConfig) -> starling_store::TrimConfig {
        c.settings.trim.into()
    }

    /// The web client a resolved node serves.
    fn web_of(c: &ServeConfig) -> Option<crate::web::Source> {
        c.settings.web.clone().source()
    }

    #[test]
    fn defaults_need_no_flags() {
        let c = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert_eq!(c.settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.settings.data_dir, PathBuf::from("./starling-data"));
        assert_eq!(c.settings.store, StoreKind::Embedded);
        assert_eq!(c.settings.embedded.fsync.0, FsyncPolicy::default());
    }

    #[test]
    fn top_level_settings_carry_their_defaults_and_derive_the_rest_in_one_place() {
        // The defaults resolve filled in before they were declared on the fields.
        let s = ServeConfig::resolve(ServeArgs::default()).unwrap().settings;
        assert_eq!(s.region.as_str(), "local");
        assert_eq!(s.request_timeout.get(), crate::limits::REQUEST_DEADLINE);
        assert_eq!(s.session_ttl.get(), 30 * DAY);
        assert_eq!((s.auth_per_minute(), s.durable_regions.usize()), (60, 1));
        assert_eq!(s.log_format, LogFormat::Human);
        assert!(s.redis.is_none() && s.cors_origins.is_none());

        // Derived from the settings they derive from, unless given.
        for (args, node, handles) in [
            (&[][..], "node-8080", "local"),
            (
                &["--listen", "127.0.0.1:9001", "--region", "eu"][..],
                "node-9001",
                "eu",
            ),
            (
                &["--node-id", "n1", "--handle-region", "us"][..],
                "n1",
                "us",
            ),
        ] {
            let s = parse(args).unwrap().args;
            let derived = (s.node_name(), s.handle_region().to_string());
            assert_eq!(derived, (node.into(), handles.into()), "{args:?}");
        }
        let s = parse(&["--otlp-endpoint", "http://c:4318"]).unwrap().args;
        assert_eq!(s.otlp_endpoint().as_deref(), Some("http://c:4318"));
        let s = parse(&["--otlp-endpoint", " "]).unwrap().args;
        assert_eq!(s.otlp_endpoint(), None, "blank is off");

        // The file fills what flags leave; a flag at its default still wins.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("starling.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nsession_ttl = \"2d\"\nlog_format = \"json\"\n\
             auth_per_minute = 7\nredis = \"redis://r:6379\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s =
            ServeConfig::resolve(parse(&["--config", path, "--listen", "127.0.0.1:8080"]).unwrap())
                .unwrap()
                .settings;
        assert_eq!(s.listen.port(), 8080, "the flag wins");
        assert_eq!(
            (s.session_ttl.get(), s.log_format),
            (2 * DAY, LogFormat::Json)
        );
        assert_eq!(s.auth_per_minute(), 7);
        assert_eq!(
            s.redis.as_ref().map(RedisUrl::as_str),
            Some("redis://r:6379")
        );
        assert_eq!(s.node_name(), "node-8080");
    }

    #[test]
    fn a_scylla_url_selects_the_scylla_engine() {
        let url = "scylla://10.0.0.1:9042,10.0.0.2:9042/starling?consistency=one";
        let c = ServeConfig::resolve(ServeArgs {
            store: url.parse().unwrap(),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.settings.store, StoreKind::Scylla(url.into()));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("starling.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nregion = \"eu\"\nfsync = \"always\"\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let c =
            ServeConfig::resolve(parse(&["--region", "us", "--config", file]).unwrap()).unwrap();
        assert_eq!(c.settings.region.as_str(), "us", "the flag wins");
        assert_eq!(
            c.settings.listen.port(),
            9000,
            "the file fills what flags leave"
        );
        assert_eq!(c.settings.embedded.fsync.0, FsyncPolicy::Always);
    }

    #[test]
    fn a_group_is_its_part_of_the_configuration_with_its_defaults() {
        // The defaults before the groups were declared with clap (the parts' Default impls).
        let conn = crate::accept::ConnLimits::default();
        assert_eq!(conn.max_connections.usize(), 250_000);
        assert_eq!(conn.max_connections_per_ip.usize(), 50_000);
        assert_eq!(conn.header_read_timeout.get(), Duration::from_secs(30));
        let quotas = crate::write_limits::WriteQuotas::default();
        for q in [
            quotas.posts_per_minute,
            quotas.likes_per_minute,
            quotas.follows_per_minute,
            quotas.chat_sends_per_minute,
            quotas.marks_per_minute,
        ] {
            assert_eq!(q.get(), 6_000);
        }
        let chat = ChatSettings::default();
        assert_eq!(chat.ws_max_per_user.usize(), 16);
        assert_eq!(chat.ws_max_connections.usize(), 200_000);
        assert_eq!(chat.ws_queue_bytes.usize(), 1 << 20);
        assert_eq!(chat.max_group_members.usize(), 1000);
        assert!(chat.chat_group_commit);
        assert_eq!((chat.lease_holder, chat.client_id_filter), (None, false));
        let c = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert_eq!((c.settings.conn, c.settings.write_quotas), (conn, quotas));
        assert_eq!(c.settings.chat.max_group_members, chat.max_group_members);
        let h = Housekeeping::default();
        assert_eq!(h.gc_interval.get(), Duration::from_secs(60));
        assert_eq!(h.gc_grace.get(), Duration::from_secs(3600));
        assert_eq!(h.handle_grace.get(), Duration::from_secs(30 * 24 * 3600));
        assert_eq!(h.deletion_interval.get(), Duration::from_secs(10));
        // Gossip's own default (GossipConfig::wan).
        assert_eq!(h.ae_interval.get(), Duration::from_secs(1));
        assert_eq!(c.settings.housekeeping, h);
        let store = (
            c.settings.embedded.store_cache,
            c.settings.embedded.store_memtable,
        );
        assert_eq!(store.0.get(), EmbeddedOptions::DEFAULT_CACHE_BYTES);
        assert_eq!(store.1.get(), EmbeddedOptions::DEFAULT_MEMTABLE_BYTES);
        let trim = starling_store::TrimConfig::default();
        assert_eq!(trim_of(&c), trim);
        assert_eq!((trim.interval, trim.retain), (Duration::from_secs(10), 0));
        assert_eq!(
            (feed_of(&c).cap, feed_of(&c).celebrity_followers),
            (800, 10_000)
        );
        assert_eq!(feed_of(&c).inactive_after, 30 * DAY);
        assert_eq!(
            (feed_of(&c).post_cache_entries, feed_of(&c).shared_ttl),
            (200_000, None)
        );

        // A flag sets its group's field; the file fills what flags leave, a flag set to its
        // default still wins over the file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("starling.toml");
        std::fs::write(
            &file,
            "max_connections_per_ip = 7\nlikes_per_minute = 9\nmarks_per_minute = 11\n\
             chat_group_commit = true\nws_max_per_user = 3\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(
            parse(&[
                "--config",
                file.to_str().unwrap(),
                "--header-read-timeout",
                "5s",
                "--marks-per-minute",
                "6000",
                "--chat-group-commit",
                "false",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(c.settings.conn.max_connections_per_ip.get(), 7);
        assert_eq!(c.settings.conn.max_connections.get(), 250_000);
        assert_eq!(
            c.settings.conn.header_read_timeout.get(),
            Duration::from_secs(5)
        );
        assert_eq!(c.settings.write_quotas.likes_per_minute.get(), 9);
        assert_eq!(
            c.settings.write_quotas.marks_per_minute.get(),
            6_000,
            "the flag wins"
        );
        assert!(
            !c.settings.chat.chat_group_commit,
            "a flag set to false wins too"
        );
        assert_eq!(c.settings.chat.ws_max_per_user.get(), 3);

        // The groups declared in the feed's and the store's crates layer the same way.
        std::fs::write(
            &file,
            "feed_cap = 40\nfeed_inactive_days = 2\nfeed_retain = 7\nfeed_trim_interval = \"1m\"\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(
            parse(&[
                "--config",
                file.to_str().unwrap(),
                "--feed-retain",
                "3",
                "--feed-shared-ttl",
                "2s",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!((feed_of(&c).cap, feed_of(&c).inactive_after), (40, 2 * DAY));
        assert_eq!(feed_of(&c).shared_ttl, Some(Duration::from_secs(2)));
        assert_eq!(trim_of(&c).retain, 3, "the flag wins");
        assert_eq!(trim_of(&c).interval, Duration::from_secs(60));

        // A group's refused value in the file names its key and line, as any other.
        for (text, key, why) in [
            (
                "posts_per_minute = 0\n",
                "posts_per_minute",
                "expected 1 to",
            ),
            (
                "\nheader_read_timeout = \"1ms\"\n",
                "header_read_timeout",
                "between",
            ),
            (
                "\n\nfeed_trim_interval = \"1ms\"\n",
                "feed_trim_interval",
                "between",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = ServeConfig::resolve(parse(&["--config", file.to_str().unwrap()]).unwrap())
                .unwrap_err();
            let err = format!("{err:#}");
            assert!(err.contains(key) && err.contains(why), "{err}");
            assert!(err.contains("line"), "{err}");
        }
    }

    #[test]
    fn the_tls_group_defaults_layers_and_refuses_a_lone_file() {
        let tls = crate::tls::TlsSettings::default();
        assert_eq!(
            (tls.files(), tls.watch_interval()),
            (None, Duration::from_secs(5))
        );
        assert_eq!(
            ServeConfig::resolve(ServeArgs::default())
                .unwrap()
                .settings
                .tls,
            tls
        );

        // The file fills what flags leave; a flag wins, even one set to the default.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("starling.toml");
        std::fs::write(
            &file,
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_watch_interval = \"9s\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c = ServeConfig::resolve(parse(&["--config", path, "--tls-key", "o.pem"]).unwrap())
            .unwrap();
        let files = c
            .settings
            .tls
            .files()
            .map(|(c, k)| (c.to_owned(), k.to_owned()));
        assert_eq!(files, Some(("c.pem".into(), "o.pem".into())));
        assert_eq!(c.settings.tls.watch_interval(), Duration::from_secs(9));
        let c =
            ServeConfig::resolve(parse(&["--config", path, "--tls-watch-interval", "5s"]).unwrap())
                .unwrap();
        assert_eq!(
            c.settings.tls.watch_interval(),
            Duration::from_secs(5),
            "the flag wins"
        );

        // One file without the other is refused, from a flag or from the file.
        for (args, text) in [
            (&["--tls-cert", "c.pem"][..], ""),
            (&["--tls-key", "k.pem"][..], ""),
            (&[][..], "tls_key = \"k.pem\"\n"),
        ] {
            std::fs::write(&file, text).unwrap();
            let args: Vec<&str> = ["--config", path].iter().chain(args).copied().collect();
            let err = ServeConfig::resolve(parse(&args).unwrap()).unwrap_err();
            assert_eq!(format!("{err:#}"), "--tls-cert and --tls-key go together");
        }
        std::fs::write(&file, "\ntls_watch_interval = \"1ms\"\n").unwrap();
        let err = ServeConfig::resolve(parse(&["--config", path]).unwrap()).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("tls_watch_interval") && err.contains("line 2"),
            "{err}"
        );
        assert!(err.contains("between"), "{err}");
    }

    #[test]
    fn the_web_group_defaults_layers_and_refuses_a_dir_without_its_page() {
        let web = crate::web::WebSettings::default();
        assert_eq!(web, defaults(), "Default is what clap gives from no flags");
        assert_eq!((web.no_web, web.web_dir.as_deref()), (false, None));
        let c = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert!(matches!(web_of(&c), Some(crate::web::Source::Embedded)));

        // The file fills what flags leave, a flag wins.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        let file = dir.path().join("starling.toml");
        let web_dir = dir.path().to_str().unwrap();
        std::fs::write(&file, format!("web_dir = {web_dir:?}\n")).unwrap();
        let path = file.to_str().unwrap();
        let c = ServeConfig::resolve(parse(&["--config", path]).unwrap()).unwrap();
        assert!(matches!(&web_of(&c), Some(crate::web::Source::Dir(d)) if d == dir.path()));
        let c = ServeConfig::resolve(parse(&["--config", path, "--no-web"]).unwrap()).unwrap();
        assert!(
            web_of(&c).is_none(),
            "--no-web wins over the file's directory"
        );
        let other = tempfile::tempdir().unwrap();
        let other_dir = other.path().to_str().unwrap();
        std::fs::write(other.path().join("index.html"), "<!doctype html>").unwrap();
        let c = ServeConfig::resolve(parse(&["--config", path, "--web-dir", other_dir]).unwrap())
            .unwrap();
        assert!(matches!(&web_of(&c), Some(crate::web::Source::Dir(d)) if d == other.path()));

        // A directory without index.html is refused, from a flag or from the file.
        let empty = tempfile::tempdir().unwrap();
        let empty_dir = empty.path().to_str().unwrap();
        let want = format!(
            "--web-dir {empty_dir}: no index.html there (give the repository's web/ directory)"
        );
        let err = ServeConfig::resolve(parse(&["--web-dir", empty_dir]).unwrap()).unwrap_err();
        assert_eq!(format!("{err:#}"), want);
        std::fs::write(&file, format!("web_dir = {empty_dir:?}\n")).unwrap();
        let err = ServeConfig::resolve(parse(&["--config", path]).unwrap()).unwrap_err();
        assert_eq!(format!("{err:#}"), want);
        std::fs::write(&file, "\n\nno_web = \"yes\"\n").unwrap();
        let err = ServeConfig::resolve(parse(&["--config", path]).unwrap()).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("no_web") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn the_media_group_defaults_layers_and_refuses_a_bad_value() {
        let media = crate::media::MediaSettings::default();
        assert_eq!(
            media,
            defaults(),
            "Default is what clap gives from no flags"
        );
        let c = ServeConfig::resolve(parse(&["--data-dir", "/srv/d"]).unwrap()).unwrap();
        assert_eq!(c.settings.media, media);
        assert_eq!(
            c.settings.media.dir(&c.settings.data_dir),
            PathBuf::from("/srv/d/media")
        );
        assert_eq!(c.settings.media.media_store, None);
        assert_eq!(c.settings.media.url_secret(None), None, "a random key");
        let cluster = Some("the-cluster-secret-0123");
        assert_eq!(c.settings.media.url_secret(cluster), cluster);

        // The file fills what flags leave, a flag wins; the directory is the file's, not the
        // data directory's, once given.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("starling.toml");
        std::fs::write(
            &file,
            "media_dir = \"/m\"\nmedia_store = \"s3://file\"\n\
             media_url_secret = \"file-secret-0123456\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c =
            ServeConfig::resolve(parse(&["--config", path, "--media-store", "s3://flag"]).unwrap())
                .unwrap();
        assert_eq!(
            c.settings.media.dir(&c.settings.data_dir),
            PathBuf::from("/m")
        );
        assert_eq!(
            c.settings.media.media_store.as_ref().map(|b| b.as_str()),
            Some("s3://flag")
        );
        assert_eq!(
            c.settings.media.url_secret(cluster),
            Some("file-secret-0123456")
        );

        // A bad value is refused from a flag (naming it) and from the file (key and line).
        for (flag, value) in [("--media-store", "bucket"), ("--media-url-secret", "short")] {
            let err = parse(&[flag, value]).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
        for (text, key, why) in [
            (
                "\nmedia_store = \"bucket\"\n",
                "media_store",
                "expected s3://BUCKET",
            ),
            (
                "\nmedia_url_secret = \"short\"\n",
                "media_url_secret",
                "at least 16",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = ServeConfig::resolve(parse(&["--config", path]).unwrap()).unwrap_err();
            let err = format!("{err:#}");
            assert!(err.contains(key) && err.contains(why), "{err}");
            assert!(err.contains("line 2"), "{err}");
        }
    }

    #[test]
    fn every_flag_is_documented_in_the_readme() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let cmd = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
        let missing: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .filter(|flag| {
                // The flag, not a longer one it begins.
                !readme.match_indices(flag.as_str()).any(|(i, _)| {
                    let next = readme[i + flag.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                })
            })
            .collect();
        assert!(missing.is_empty(), "not in README.md: {missing:?}");
    }

    #[test]
    fn every_flag_is_a_file_key_and_the_file_fills_what_flags_leave() {
        // One declaration: each flag's id is the file's key (and the environment's
        // STARLING_<ID>), so nothing can be settable one way and not the other.
        let cmd = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
        let mut flags: Vec<String> = cmd
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| id != "config")
            .collect();
        let Value::Object(keys) = serde_json::to_value(ServeArgs::default()).unwrap() else {
            panic!("settings are a map")
        };
        let mut keys: Vec<String> = keys.keys().cloned().collect();
        flags.sort();
        keys.sort();
        assert_eq!(flags, keys);
        for a in cmd.get_arguments().filter(|a| a.get_id() != "config") {
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            let want = format!("STARLING_{}", a.get_id().as_str().to_uppercase());
            assert_eq!(env.as_deref(), Some(want.as_str()), "{}", a.get_id());
        }

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("starling.toml");
        std::fs::write(
            &file,
            "no_web = true\nseeds = [\"a:1\", \"b:2\"]\ngossip_listen = \"127.0.0.1:7000\"\n\
             cluster_secret = \"0123456789abcdef\"\nrequest_timeout = \"3s\"\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(
            parse(&[
                "--config",
                file.to_str().unwrap(),
                "--request-timeout",
                "4s",
            ])
            .unwrap(),
        )
        .unwrap();
        assert!(
            web_of(&c).is_none(),
            "a switch off on the command line leaves the file's"
        );
        assert_eq!(c.gossip.unwrap().seeds, ["a:1", "b:2"]);
        assert_eq!(
            c.settings.request_timeout.get(),
            Duration::from_secs(4),
            "the flag wins"
        );
        std::fs::write(&file, "config = \"other.toml\"\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("config"), "{err:#}");
    }

    /// `starling serve ARGS` as clap reads it (flags over `STARLING_*` variables).
    fn parse(args: &[&str]) -> Result<CommandLine<ServeArgs>, clap::Error> {
        let cmd = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
        CommandLine::from_arg_matches(
            &cmd.try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))?,
        )
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        for (flag, value) in [
            ("--store", "postgres"),
            ("--store", "scylla://h:9042/bad-name"),
            ("--fsync", "sometimes"),
            ("--region", "us east"),
            ("--node-id", ""),
            ("--store-cache", "1KiB"),
            ("--feed-cap", "5"),
            ("--auth-per-minute", "0"),
            ("--ws-queue-bytes", "100"),
            ("--durable-regions", "17"),
            ("--request-timeout", "1ms"),
            ("--gc-grace", "31d"),
            ("--session-ttl", "10ms"),
            ("--log-format", "xml"),
            ("--gossip-store-lane", "other"),
            ("--gossip-store-work", "other"),
            ("--seeds", "under_score:7946"),
            ("--gossip-advertise", "no port"),
            ("--cluster-secret", "short"),
            ("--media-store", "bucket"),
            ("--redis", "http://x"),
            ("--wan-rtt", "us-us=5"),
            ("--cors-origins", "ftp://x"),
        ] {
            let err = parse(&[flag, value]).unwrap_err().to_string();
            assert!(err.contains(flag), "{flag} {value}: {err}");
        }
        let ok = parse(&[
            "--store-cache",
            "8MiB",
            "--gc-grace",
            "2h",
            "--feed-cap",
            "20",
        ])
        .unwrap();
        let c = ServeConfig::resolve(ok).unwrap();
        assert_eq!(c.settings.embedded.store_cache.get(), 8 << 20);
        assert_eq!(
            c.settings.housekeeping.gc_grace.get(),
            Duration::from_secs(7200)
        );
        assert_eq!(feed_of(&c).cap, 20);
        for (args, needle) in [
            (&["--tls-cert", "c.pem"][..], "--tls-key"),
            (&["--seeds", "a:1"][..], "--gossip-listen"),
            (
                &["--gossip-listen", "127.0.0.1:7000"][..],
                "--cluster-secret",
            ),
        ] {
            let err = ServeConfig::resolve(parse(args).unwrap()).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("unknown field `lisen`, expected one of `listen`, `data_dir`,")
                && err.contains("line 1"),
            "{err}"
        );
        std::fs::write(&file, "feed_cap = 5\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("feed_cap") && err.contains("20 to 100000"),
            "{err}"
        );
    }

    #[test]
    fn the_gossip_group_defaults_layers_and_refuses_as_before() {
        use starling_gossip::settings::GossipSettings;
        use starling_gossip::wire::Encryption;
        let g = GossipSettings::default();
        assert_eq!(g, defaults(), "Default is what clap gives from no flags");
        let c = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert!(
            c.gossip.is_none(),
            "clustering is off without --gossip-listen"
        );

        // The file fills what flags leave, a flag wins.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("starling.toml");
        std::fs::write(
            &file,
            "gossip_listen = \"127.0.0.1:7000\"\ncluster_secret = \"0123456789abcdef\"\n\
             gossip_store_lane = \"shared\"\ngossip_encryption = \"optional\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let args = [
            "--config",
            path,
            "--gossip-listen",
            "127.0.0.1:7001",
            "--gossip-store-work",
            "inline",
        ];
        let g = ServeConfig::resolve(parse(&args).unwrap())
            .unwrap()
            .gossip
            .unwrap();
        assert_eq!(
            (g.listen.port(), g.advertise.as_str()),
            (7001, "127.0.0.1:7001")
        );
        assert_eq!(g.secret, "0123456789abcdef");
        assert_eq!(g.encryption, Encryption::Optional);
        assert!(!g.dedicated_store_lane && g.store_work_inline && g.separate_membership);

        // The refusals, word for word, from a flag or from the file, in the order before.
        let seeds = "--seeds needs --gossip-listen: a node joins a cluster by gossip";
        let secret =
            "--gossip-listen needs --cluster-secret: nodes of a cluster authenticate each other";
        let durable = "--durable-regions above 1 needs a cluster (--gossip-listen)";
        for (args, text, want) in [
            (&["--seeds", "a:1"][..], "", seeds),
            (&[][..], "seeds = [\"a:1\"]\n", seeds),
            (&["--gossip-listen", "127.0.0.1:7000"][..], "", secret),
            (&[][..], "gossip_listen = \"127.0.0.1:7000\"\n", secret),
            (
                &["--durable-regions", "2"][..],
                "seeds = [\"a:1\"]\n",
                durable,
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let args: Vec<&str> = ["--config", path].iter().chain(args).copied().collect();
            let err = ServeConfig::resolve(parse(&args).unwrap()).unwrap_err();
            assert_eq!(format!("{err:#}"), want, "{args:?} {text:?}");
        }
        std::fs::write(&file, "\ngossip_membership = \"x\"\n").unwrap();
        let err = ServeConfig::resolve(parse(&["--config", path]).unwrap()).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("gossip_membership") && err.contains("line 2"),
            "{err}"
        );
        assert!(err.contains("expected `separate` or `inline`"), "{err}");
    }

    #[test]
    fn seeds_may_be_names_and_listening_everywhere_is_allowed() {
        let c = ServeConfig::resolve(
            parse(&[
                "--gossip-listen",
                "0.0.0.0:7946",
                "--gossip-advertise",
                "10.0.0.5:7946",
                "--seeds",
                "starling-us-gossip.starling.svc.cluster.local:7946,10.0.0.6:7946",
                "--cluster-secret",
                "a-secret-of-16-chars",
            ])
            .unwrap(),
        )
        .unwrap();
        let g = c.gossip.unwrap();
        assert_eq!(g.listen.to_string(), "0.0.0.0:7946");
        assert_eq!(g.advertise, "10.0.0.5:7946");
        assert_eq!(g.seeds.len(), 2);
    }
}
