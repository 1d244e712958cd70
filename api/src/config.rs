//! Node configuration: defaults, then a TOML file, then the environment, then flags.
//!
//! Every setting of `starling serve` is declared once, in [`ServeArgs`]: its flag, its
//! `STARLING_<FLAG>` variable (clap layers flags over the environment) and its key in the
//! `--config` TOML file (serde, the same name with `_`) come from that one field, and one generic
//! merge layers what clap read over the file. [`ServeConfig::resolve`] turns the layered settings
//! into typed values with their defaults, and [`ServeConfig::validate`] refuses bad values with
//! one clear message each.

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use starling_store::{EmbeddedOptions, FsyncPolicy, NodeId, RegionId, ScyllaOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of `starling serve`: flags, environment variables and the TOML file's keys. Every
/// field is optional here: what is not given falls back to the file, then to the default.
#[derive(Args, Deserialize, Serialize, Debug, Default, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "STARLING_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded store.
    #[arg(long, env = "STARLING_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Region this node serves.
    #[arg(long, env = "STARLING_REGION")]
    pub region: Option<String>,
    /// Name of this node (unique in its region); defaults to the host name and port.
    #[arg(long, env = "STARLING_NODE_ID")]
    pub node_id: Option<String>,
    /// Store engine: `embedded` (on disk, default), `memory` (nothing persists), or a ScyllaDB
    /// cluster as `scylla://HOST:PORT[,HOST:PORT…]/KEYSPACE[?replication=…&consistency=…]`
    /// (see the README).
    #[arg(long, env = "STARLING_STORE")]
    pub store: Option<String>,
    /// When writes are fsynced: `always` (before each acknowledgement), `never`, or an interval
    /// in milliseconds (default 100). Every acknowledged write survives a process crash anyway.
    #[arg(long, env = "STARLING_FSYNC")]
    pub fsync: Option<String>,
    /// Block cache of the embedded store, e.g. `1GiB` (default 256MiB).
    #[arg(long, env = "STARLING_STORE_CACHE")]
    pub store_cache: Option<String>,
    /// Most bytes of each of the embedded store's four memtables before it is flushed to disk,
    /// e.g. `16MiB` (default 16MiB); applies to a new data directory.
    #[arg(long, env = "STARLING_STORE_MEMTABLE")]
    pub store_memtable: Option<String>,
    /// Address the gossip transport listens on, e.g. `0.0.0.0:7946`; enables clustering.
    #[arg(long, env = "STARLING_GOSSIP_LISTEN")]
    pub gossip_listen: Option<SocketAddr>,
    /// `HOST:PORT` peers reach this node's gossip at (default: the listen address when it is
    /// not `0.0.0.0`/`::`, else `$POD_IP` with the listen port, else this host name's address).
    #[arg(long, env = "STARLING_GOSSIP_ADVERTISE")]
    pub gossip_advertise: Option<String>,
    /// Gossip addresses of nodes to join through, comma-separated `HOST:PORT`; a host may be a
    /// DNS name (e.g. a headless Service), resolved again on each join attempt, every A/AAAA
    /// record used.
    #[arg(long, env = "STARLING_SEEDS", value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// Secret shared by the nodes of a cluster; frames without it are refused. Required with
    /// `--gossip-listen`.
    #[arg(long, env = "STARLING_CLUSTER_SECRET")]
    pub cluster_secret: Option<String>,
    /// Gossip frames are encrypted with the cluster secret: `required` (the default) refuses
    /// peers that send frames in clear; `optional` still talks in clear to builds before
    /// encryption, for the first roll of an upgrade from them (then roll again with `required`).
    #[arg(long, env = "STARLING_GOSSIP_ENCRYPTION")]
    pub gossip_encryption: Option<String>,
    /// Where the gossip core loop's store calls run: `dedicated` (the default: a thread of its
    /// own, so its ticks never wait behind the API's store calls) or `shared` (tokio's blocking
    /// pool, the path before; kept to compare the two under the same load).
    #[arg(long, env = "STARLING_GOSSIP_STORE_LANE")]
    pub gossip_store_lane: Option<String>,
    /// Token of the admin endpoints (`/v1/cluster`, `/v1/admin/*`); they are disabled without.
    #[arg(long, env = "STARLING_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Directory of the media blob store (default: DATA_DIR/media).
    #[arg(long, env = "STARLING_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,
    /// An S3-compatible bucket for media instead of the directory, as `s3://BUCKET`; endpoint
    /// and credentials from the usual AWS_* variables (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, …).
    #[arg(long, env = "STARLING_MEDIA_STORE")]
    pub media_store: Option<String>,
    /// Secret the signed media URLs are derived from (at least 16 characters; the same on every
    /// node of a region). Default: the cluster secret; without either, a random key per process
    /// (a URL then opens the media on the node that signed it only).
    #[arg(long, env = "STARLING_MEDIA_URL_SECRET")]
    pub media_url_secret: Option<String>,
    /// Region whose owner node arbitrates unique handles; the same on every node of a cluster
    /// (default: this node's region).
    #[arg(long, env = "STARLING_HANDLE_REGION")]
    pub handle_region: Option<String>,
    /// Sign-ups and logins allowed per client address and minute.
    #[arg(long, env = "STARLING_AUTH_PER_MINUTE")]
    pub auth_per_minute: Option<u32>,
    /// Posts and reposts (and undone reposts) one user may make per minute on this node (bursts
    /// of a quarter; default 6000).
    #[arg(long, env = "STARLING_POSTS_PER_MINUTE")]
    pub posts_per_minute: Option<u32>,
    /// Likes and unlikes per user and minute (default 6000).
    #[arg(long, env = "STARLING_LIKES_PER_MINUTE")]
    pub likes_per_minute: Option<u32>,
    /// Follows and unfollows per user and minute (default 6000).
    #[arg(long, env = "STARLING_FOLLOWS_PER_MINUTE")]
    pub follows_per_minute: Option<u32>,
    /// Chat sends (REST and WebSocket) per user and minute (default 6000).
    #[arg(long, env = "STARLING_CHAT_SENDS_PER_MINUTE")]
    pub chat_sends_per_minute: Option<u32>,
    /// Notification mark-reads per user and minute (default 6000).
    #[arg(long, env = "STARLING_MARKS_PER_MINUTE")]
    pub marks_per_minute: Option<u32>,
    /// Log format: `human` (default) or `json`.
    #[arg(long, env = "STARLING_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// In how many regions a write must be held before it is acknowledged (default 1: durable
    /// on this node).
    #[arg(long, env = "STARLING_DURABLE_REGIONS")]
    pub durable_regions: Option<usize>,
    /// Simulated round trips between regions, e.g. `us-eu=100,us-ap=250,eu-ap=180` (ms).
    #[arg(long, env = "STARLING_WAN_RTT")]
    pub wan_rtt: Option<String>,
    /// Redis of the region, `redis://HOST:PORT`: the shared cache of timelines and post bodies,
    /// and the pub/sub bus of chat events between the region's gateway nodes. Without it,
    /// everything is cached and fanned out in process (messages still reach other nodes by
    /// replication).
    #[arg(long, env = "STARLING_REDIS")]
    pub redis: Option<String>,
    /// Entries kept per home timeline (default 800).
    #[arg(long, env = "STARLING_FEED_CAP")]
    pub feed_cap: Option<usize>,
    /// Authors with more followers are pulled at read time, not fanned out (default 10000).
    #[arg(long, env = "STARLING_FEED_CELEBRITY_FOLLOWERS")]
    pub feed_celebrity_followers: Option<i64>,
    /// Users who have not read their feed for this many days are skipped by fan-out and
    /// rebuilt on their next read (default 30).
    #[arg(long, env = "STARLING_FEED_INACTIVE_DAYS")]
    pub feed_inactive_days: Option<u64>,
    /// Post bodies kept in this process for feed pages (default 200000).
    #[arg(long, env = "STARLING_FEED_POST_CACHE")]
    pub feed_post_cache: Option<u64>,
    /// WebSocket connections one user may hold on this node (default 16).
    #[arg(long, env = "STARLING_WS_MAX_PER_USER")]
    pub ws_max_per_user: Option<usize>,
    /// WebSocket connections this node accepts (default 200000).
    #[arg(long, env = "STARLING_WS_MAX_CONNECTIONS")]
    pub ws_max_connections: Option<usize>,
    /// Bytes a WebSocket connection's send queue may hold before it is closed as too slow
    /// (4008; default 1048576).
    #[arg(long, env = "STARLING_WS_QUEUE_BYTES")]
    pub ws_queue_bytes: Option<usize>,
    /// Most members of a group conversation (default 1000).
    #[arg(long, env = "STARLING_MAX_GROUP_MEMBERS")]
    pub max_group_members: Option<usize>,
    /// Chat claims through the sequencer's group commit (default true); false: each send batch
    /// takes its turn on its claim stripe, the path before it (for side-by-side measurement).
    #[arg(long, env = "STARLING_CHAT_GROUP_COMMIT")]
    pub chat_group_commit: Option<bool>,
    /// Open HTTP and WebSocket sockets this node accepts; more are closed at once
    /// (default 250000).
    #[arg(long, env = "STARLING_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open sockets from one client address; more are closed at once (default 50000).
    #[arg(long, env = "STARLING_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Time a client has to send a whole request head, e.g. `30s` (also how long an idle
    /// keep-alive connection stays open; default 30s).
    #[arg(long, env = "STARLING_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// Deadline of a request, body upload included, e.g. `30s`; past it the answer is 503
    /// (default 30s).
    #[arg(long, env = "STARLING_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// How long a session token from sign-up or login is valid, e.g. `30d` (default 30d).
    #[arg(long, env = "STARLING_SESSION_TTL")]
    pub session_ttl: Option<String>,
    /// Time between passes of the change feed's trimmer, e.g. `10s` (default 10s).
    #[arg(long, env = "STARLING_FEED_TRIM_INTERVAL")]
    pub feed_trim_interval: Option<String>,
    /// Change-feed entries kept behind its slowest consumer (default 0).
    #[arg(long, env = "STARLING_FEED_RETAIN")]
    pub feed_retain: Option<u64>,
    /// Time between passes of the tombstone reaper, e.g. `60s` (default 60s).
    #[arg(long, env = "STARLING_GC_INTERVAL")]
    pub gc_interval: Option<String>,
    /// How old a tombstone must be, and how long every member must have been alive, before it
    /// is collected, e.g. `1h` (default 1h).
    #[arg(long, env = "STARLING_GC_GRACE")]
    pub gc_grace: Option<String>,
    /// How long a deleted account's handle stays taken (and its edges are swept for late
    /// replicas), e.g. `30d` (default 30d).
    #[arg(long, env = "STARLING_HANDLE_GRACE")]
    pub handle_grace: Option<String>,
    /// Time between passes of the sweeper of deleted accounts, e.g. `10s` (default 10s).
    #[arg(long, env = "STARLING_DELETION_INTERVAL")]
    pub deletion_interval: Option<String>,
    /// Do not serve the web client at `/` (the API is served either way).
    #[arg(long, env = "STARLING_NO_WEB")]
    pub no_web: bool,
    /// Serve the web client's files from this directory (the repository's `web/`) instead of
    /// the copy embedded in the binary: for working on the client without rebuilding.
    #[arg(long, env = "STARLING_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS and WSS instead of HTTP (with `--tls-key`); both
    /// files are read again on SIGHUP and when their content changes.
    #[arg(long, env = "STARLING_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "STARLING_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How often the TLS files are checked for a change, e.g. `5s` (default 5s, 100ms-1h).
    #[arg(long, env = "STARLING_TLS_WATCH_INTERVAL")]
    pub tls_watch_interval: Option<String>,
    /// Export traces over OTLP/HTTP (protobuf) to this collector, e.g. `http://127.0.0.1:4318`
    /// (spans go to `/v1/traces` under it); else `OTEL_EXPORTER_OTLP_ENDPOINT`; off without.
    #[arg(long, env = "STARLING_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Origins browsers may call the API from, comma-separated (`https://app.example`), or
    /// `*`; CORS is off without.
    #[arg(long, env = "STARLING_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// A TOML file with any of these settings (names as the flags, `-` as `_`).
    #[arg(long, env = "STARLING_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// Which store engine a node runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// fjall on local disk.
    Embedded,
    /// In memory; for trying things out and tests.
    Memory,
    /// A ScyllaDB (or Cassandra) cluster; the `scylla://` URL, checked at resolve.
    Scylla(String),
}

/// The resolved, validated configuration of a node.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Region name.
    pub region: String,
    /// Node name.
    pub node_name: String,
    /// Store engine.
    pub store: StoreKind,
    /// Fsync policy of the embedded store.
    pub fsync: FsyncPolicy,
    /// Block cache of the embedded store, in bytes.
    pub store_cache: u64,
    /// Memtable bound of each space of the embedded store, in bytes.
    pub store_memtable: u64,
    /// Clustering, when enabled.
    pub gossip: Option<GossipSettings>,
    /// HTTPS: the certificate chain and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often the TLS files are checked for a change.
    pub tls_watch: Duration,
    /// The OTLP/HTTP collector traces are exported to (off: `None`).
    pub otlp_endpoint: Option<String>,
    /// CORS, when enabled.
    pub cors: Option<crate::cors::CorsOrigins>,
    /// Admin token.
    pub admin_token: Option<String>,
    /// Regions a write must reach before it is acknowledged.
    pub durable_regions: usize,
    /// Media blob directory.
    pub media_dir: PathBuf,
    /// An S3 bucket URL for media, instead of the directory.
    pub media_store: Option<String>,
    /// The secret of signed media URLs, when one is set (else the cluster secret's).
    pub media_url_secret: Option<String>,
    /// Region arbitrating handles.
    pub handle_region: String,
    /// Sign-ups and logins per address and minute.
    pub auth_per_minute: u32,
    /// Per-user write limits.
    pub write_quotas: crate::write_limits::WriteQuotas,
    /// Logs as JSON lines.
    pub json_logs: bool,
    /// Redis URL of the region: feed cache tier and chat bus.
    pub redis: Option<String>,
    /// Home-timeline settings.
    pub feed: starling_feed::FeedConfig,
    /// Chat limits.
    pub chat: ChatSettings,
    /// Connection caps and the header-read timeout of the accept loop.
    pub conn: crate::accept::ConnLimits,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// Lifetime of a session token.
    pub session_ttl: Duration,
    /// The change feed's trimmer.
    pub trim: starling_store::TrimConfig,
    /// Time between passes of the tombstone reaper.
    pub gc_interval: Duration,
    /// Age of a collectable tombstone, and how long the membership must be settled first.
    pub gc_grace: Duration,
    /// How long a deleted account's handle stays taken.
    pub handle_grace: Duration,
    /// Time between passes of the sweeper of deleted accounts.
    pub deletion_interval: Duration,
    /// The web client served at `/`, from the binary or a directory; `None`: `--no-web`.
    pub web: Option<crate::web::Source>,
}

/// Limits of the messenger and its WebSocket gateway.
#[derive(Clone, Copy, Debug)]
pub struct ChatSettings {
    /// Connections per user on this node.
    pub max_per_user: usize,
    /// Connections on this node.
    pub max_connections: usize,
    /// Send-queue budget of one connection, in bytes.
    pub queue_bytes: usize,
    /// Largest group.
    pub max_group_members: usize,
    /// Claims through the sequencer's group commit.
    pub group_commit: bool,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_per_user: 16,
            max_connections: 200_000,
            queue_bytes: 1 << 20,
            max_group_members: 1000,
            group_commit: true,
        }
    }
}

/// How this node joins a cluster.
#[derive(Clone, Debug)]
pub struct GossipSettings {
    /// Where the gossip transport listens (may be `0.0.0.0:PORT`).
    pub listen: SocketAddr,
    /// `HOST:PORT` peers reach this node at.
    pub advertise: String,
    /// Nodes to join through.
    pub seeds: Vec<String>,
    /// The cluster secret.
    pub secret: String,
    /// Whether frames in clear are still taken (`--gossip-encryption`).
    pub encryption: starling_gossip::wire::Encryption,
    /// Whether the core loop's store calls have a thread of their own (`--gossip-store-lane`).
    pub dedicated_store_lane: bool,
    /// Round trips between region pairs, in ms.
    pub rtts: Vec<(String, String, u64)>,
}

impl ServeConfig {
    /// Layers flags/environment (`args`) over the file named in them over the defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let args = layered(args)?;
        let listen = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let node_name = args
            .node_id
            .unwrap_or_else(|| format!("node-{}", listen.port()));
        let data_dir = args
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./starling-data"));
        let region = args.region.unwrap_or_else(|| "local".into());
        let cfg = ServeConfig {
            listen,
            media_dir: args.media_dir.unwrap_or_else(|| data_dir.join("media")),
            media_store: match args.media_store {
                Some(u) if !u.starts_with("s3://") || u.len() <= 5 => {
                    bail!("--media-store {u:?}: expected s3://BUCKET")
                }
                other => other,
            },
            media_url_secret: match args.media_url_secret {
                Some(s) if s.len() < 16 => {
                    bail!("--media-url-secret: use at least 16 characters")
                }
                other => other,
            },
            handle_region: args.handle_region.unwrap_or_else(|| region.clone()),
            auth_per_minute: args.auth_per_minute.unwrap_or(60),
            write_quotas: {
                let d = crate::write_limits::WriteQuotas::default();
                crate::write_limits::WriteQuotas {
                    posts: args.posts_per_minute.unwrap_or(d.posts),
                    likes: args.likes_per_minute.unwrap_or(d.likes),
                    follows: args.follows_per_minute.unwrap_or(d.follows),
                    chat_sends: args.chat_sends_per_minute.unwrap_or(d.chat_sends),
                    marks: args.marks_per_minute.unwrap_or(d.marks),
                }
            },
            json_logs: match args.log_format.as_deref() {
                None | Some("human") => false,
                Some("json") => true,
                Some(other) => bail!("--log-format {other:?}: expected `human` or `json`"),
            },
            data_dir,
            region,
            node_name,
            store: parse_store(args.store.as_deref())?,
            fsync: parse_fsync(args.fsync.as_deref())?,
            store_cache: parse_size(
                "--store-cache",
                args.store_cache.as_deref(),
                EmbeddedOptions::DEFAULT_CACHE_BYTES,
            )?,
            store_memtable: parse_size(
                "--store-memtable",
                args.store_memtable.as_deref(),
                EmbeddedOptions::DEFAULT_MEMTABLE_BYTES,
            )?,
            gossip: None,
            tls: match (args.tls_cert, args.tls_key) {
                (None, None) => None,
                (Some(c), Some(k)) => Some((c, k)),
                _ => bail!("--tls-cert and --tls-key go together"),
            },
            tls_watch: parse_timeout(
                "--tls-watch-interval",
                args.tls_watch_interval.as_deref(),
                Duration::from_secs(5),
            )?,
            otlp_endpoint: args
                .otlp_endpoint
                .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
                .filter(|e| !e.trim().is_empty()),
            cors: args
                .cors_origins
                .map(|o| crate::cors::CorsOrigins::parse(&o))
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))?,
            admin_token: args.admin_token,
            durable_regions: args.durable_regions.unwrap_or(1),
            redis: match args.redis {
                Some(u) if !u.starts_with("redis://") => {
                    bail!("--redis {u:?}: expected redis://HOST:PORT")
                }
                other => other,
            },
            feed: feed_config(
                args.feed_cap,
                args.feed_celebrity_followers,
                args.feed_inactive_days,
                args.feed_post_cache,
            )?,
            conn: {
                let d = crate::accept::ConnLimits::default();
                crate::accept::ConnLimits {
                    max_connections: args.max_connections.unwrap_or(d.max_connections),
                    max_per_ip: args.max_connections_per_ip.unwrap_or(d.max_per_ip),
                    header_read_timeout: parse_timeout(
                        "--header-read-timeout",
                        args.header_read_timeout.as_deref(),
                        d.header_read_timeout,
                    )?,
                }
            },
            session_ttl: match args.session_ttl {
                None => Duration::from_secs(30 * 24 * 3600),
                Some(s) => {
                    let d = humantime::parse_duration(s.trim()).map_err(|e| {
                        anyhow::anyhow!(
                            "--session-ttl {s:?}: expected a duration such as 30d ({e})"
                        )
                    })?;
                    if d < Duration::from_secs(1) {
                        bail!("--session-ttl {s:?}: at least 1s");
                    }
                    d
                }
            },
            web: if args.no_web {
                None
            } else {
                Some(match args.web_dir {
                    Some(dir) => crate::web::Source::Dir(dir),
                    None => crate::web::Source::Embedded,
                })
            },
            trim: starling_store::TrimConfig {
                interval: parse_span(
                    "--feed-trim-interval",
                    args.feed_trim_interval.as_deref(),
                    starling_store::TrimConfig::default().interval,
                )?,
                retain: args.feed_retain.unwrap_or(0),
                ..starling_store::TrimConfig::default()
            },
            gc_interval: parse_span(
                "--gc-interval",
                args.gc_interval.as_deref(),
                Duration::from_secs(60),
            )?,
            gc_grace: parse_span(
                "--gc-grace",
                args.gc_grace.as_deref(),
                Duration::from_secs(3600),
            )?,
            handle_grace: parse_span(
                "--handle-grace",
                args.handle_grace.as_deref(),
                Duration::from_secs(30 * 24 * 3600),
            )?,
            deletion_interval: parse_span(
                "--deletion-interval",
                args.deletion_interval.as_deref(),
                Duration::from_secs(10),
            )?,
            request_timeout: parse_timeout(
                "--request-timeout",
                args.request_timeout.as_deref(),
                crate::limits::REQUEST_DEADLINE,
            )?,
            chat: {
                let d = ChatSettings::default();
                ChatSettings {
                    max_per_user: args.ws_max_per_user.unwrap_or(d.max_per_user),
                    max_connections: args.ws_max_connections.unwrap_or(d.max_connections),
                    queue_bytes: args.ws_queue_bytes.unwrap_or(d.queue_bytes),
                    max_group_members: args.max_group_members.unwrap_or(d.max_group_members),
                    group_commit: args.chat_group_commit.unwrap_or(d.group_commit),
                }
            },
        };
        if cfg.conn.max_connections == 0 || cfg.conn.max_per_ip == 0 {
            bail!("--max-connections and --max-connections-per-ip: at least 1");
        }
        if cfg.chat.max_per_user == 0 || cfg.chat.max_connections == 0 {
            bail!("--ws-max-per-user and --ws-max-connections: at least 1");
        }
        if cfg.chat.queue_bytes < 16 * 1024 {
            bail!("--ws-queue-bytes: at least 16384 (one largest message must fit)");
        }
        if !(2..=100_000).contains(&cfg.chat.max_group_members) {
            bail!("--max-group-members: 2 to 100000");
        }
        if cfg.auth_per_minute == 0 {
            bail!("--auth-per-minute: at least 1");
        }
        let q = cfg.write_quotas;
        for (flag, v) in [
            ("--posts-per-minute", q.posts),
            ("--likes-per-minute", q.likes),
            ("--follows-per-minute", q.follows),
            ("--chat-sends-per-minute", q.chat_sends),
            ("--marks-per-minute", q.marks),
        ] {
            if v == 0 {
                bail!("{flag}: at least 1");
            }
        }
        if !(1..=16).contains(&cfg.durable_regions) {
            bail!(
                "--durable-regions {}: expected 1 to 16",
                cfg.durable_regions
            );
        }
        let rtts = parse_rtts(args.wan_rtt.as_deref())?;
        let secret = args.cluster_secret;
        let seeds = args.seeds.unwrap_or_default();
        let cfg = match args.gossip_listen {
            None => {
                if cfg.durable_regions > 1 {
                    bail!("--durable-regions above 1 needs a cluster (--gossip-listen)");
                }
                if !seeds.is_empty() {
                    bail!("--seeds needs --gossip-listen: a node joins a cluster by gossip");
                }
                cfg
            }
            Some(listen) => {
                let Some(secret) = secret else {
                    bail!(
                        "--gossip-listen needs --cluster-secret: nodes of a cluster authenticate each other"
                    );
                };
                if secret.len() < 16 {
                    bail!("--cluster-secret: use at least 16 characters");
                }
                if let Some(bad) = seeds
                    .iter()
                    .find(|s| !starling_gossip::seeds::is_well_formed(s))
                {
                    bail!("--seeds {bad:?}: expected HOST:PORT (an IP address or a DNS name)");
                }
                let advertise = advertise_address(
                    args.gossip_advertise,
                    listen,
                    std::env::var("POD_IP").ok(),
                    host_address,
                )?;
                let encryption = match args.gossip_encryption.as_deref() {
                    None | Some("required") => starling_gossip::wire::Encryption::Required,
                    Some("optional") => starling_gossip::wire::Encryption::Optional,
                    Some(other) => {
                        bail!("--gossip-encryption {other:?}: expected required or optional")
                    }
                };
                let dedicated_store_lane = match args.gossip_store_lane.as_deref() {
                    None | Some("dedicated") => true,
                    Some("shared") => false,
                    Some(other) => {
                        bail!("--gossip-store-lane {other:?}: expected dedicated or shared")
                    }
                };
                ServeConfig {
                    gossip: Some(GossipSettings {
                        listen,
                        advertise,
                        seeds,
                        secret,
                        encryption,
                        dedicated_store_lane,
                        rtts,
                    }),
                    ..cfg
                }
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses values that cannot work, with a message naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(crate::web::Source::Dir(d)) = &self.web
            && !d.join("index.html").is_file()
        {
            bail!(
                "--web-dir {}: no index.html there (give the repository's web/ directory)",
                d.display()
            );
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(&self.region) {
            bail!(
                "--region {:?}: use 1-64 characters of [A-Za-z0-9_-]",
                self.region
            );
        }
        if !name_ok(&self.node_name) {
            bail!(
                "--node-id {:?}: use 1-64 characters of [A-Za-z0-9_-]",
                self.node_name
            );
        }
        Ok(())
    }

    /// This node's id in the store: derived from its region and name.
    pub fn node(&self) -> NodeId {
        NodeId::from_names(&self.region, &self.node_name)
    }

    /// This node's region id.
    pub fn region_id(&self) -> RegionId {
        RegionId::from_name(&self.region)
    }
}

/// The gossip address peers reach this node at: `--gossip-advertise` if given; else the listen
/// address unless it is unspecified (`0.0.0.0`, `::`); else `$POD_IP` (Kubernetes' downward
/// API) with the listen port; else what this host's name resolves to (`host_ip(port)`, a
/// container's address on compose networks).
fn advertise_address(
    flag: Option<String>,
    listen: SocketAddr,
    pod_ip: Option<String>,
    host_ip: impl Fn(u16) -> Option<SocketAddr>,
) -> anyhow::Result<String> {
    if let Some(a) = flag {
        let a = a.trim().to_string();
        if !starling_gossip::seeds::is_well_formed(&a) {
            bail!("--gossip-advertise {a:?}: expected HOST:PORT (an IP address or a DNS name)");
        }
        if a.parse::<SocketAddr>()
            .is_ok_and(|s| s.ip().is_unspecified())
        {
            bail!("--gossip-advertise {a}: give the address peers reach this node at");
        }
        return Ok(a);
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    if let Some(ip) = pod_ip.filter(|p| !p.trim().is_empty()) {
        let ip: std::net::IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("$POD_IP {ip:?}: not an IP address"))?;
        return Ok(SocketAddr::new(ip, listen.port()).to_string());
    }
    match host_ip(listen.port()) {
        Some(a) => Ok(a.to_string()),
        None => bail!(
            "--gossip-listen {listen}: give --gossip-advertise HOST:PORT, the address peers reach this node at"
        ),
    }
}

/// The first address other than loopback this host's name resolves to, with `port`.
fn host_address(port: u16) -> Option<SocketAddr> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    std::net::ToSocketAddrs::to_socket_addrs(&(name.trim(), port))
        .ok()?
        .find(|a| !a.ip().is_loopback() && !a.ip().is_unspecified())
}

/// `args` (flags over environment, as clap read them) over the file `--config` names: what the
/// command line or the environment gives wins, the file fills the rest. A switch that is off
/// (`false`) leaves the file's value.
fn layered(args: ServeArgs) -> anyhow::Result<ServeArgs> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let file: ServeArgs =
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
    let (Value::Object(mut merged), Value::Object(given)) =
        (serde_json::to_value(&file)?, serde_json::to_value(&args)?)
    else {
        bail!("settings are not a map");
    };
    for (key, value) in given {
        if !matches!(value, Value::Null | Value::Bool(false)) {
            merged.insert(key, value);
        }
    }
    let mut out: ServeArgs = serde_json::from_value(Value::Object(merged))?;
    out.config = Some(path);
    Ok(out)
}

fn parse_rtts(s: Option<&str>) -> anyhow::Result<Vec<(String, String, u64)>> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let bad = || anyhow::anyhow!("--wan-rtt {pair:?}: expected REGION-REGION=MILLISECONDS");
            let (regions, ms) = pair.trim().split_once('=').ok_or_else(bad)?;
            let (a, b) = regions.split_once('-').ok_or_else(bad)?;
            let ms: u64 = ms.trim_end_matches("ms").parse().map_err(|_| bad())?;
            if a.is_empty() || b.is_empty() || a == b || ms > 60_000 {
                return Err(bad());
            }
            Ok((a.to_string(), b.to_string(), ms))
        })
        .collect()
}

fn parse_store(s: Option<&str>) -> anyhow::Result<StoreKind> {
    match s.unwrap_or("embedded") {
        "embedded" => Ok(StoreKind::Embedded),
        "memory" => Ok(StoreKind::Memory),
        url if url.starts_with("scylla://") => match ScyllaOptions::from_url(url) {
            Ok(_) => Ok(StoreKind::Scylla(url.to_string())),
            Err(e) => bail!("--store {url:?}: {e}"),
        },
        other => bail!(
            "--store {other:?}: expected `embedded`, `memory` or `scylla://HOST:PORT/KEYSPACE`"
        ),
    }
}

/// A duration such as `30s` or `500ms`, between 100 ms and one hour.
fn parse_timeout(flag: &str, s: Option<&str>, default: Duration) -> anyhow::Result<Duration> {
    let Some(s) = s else { return Ok(default) };
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| anyhow::anyhow!("{flag} {s:?}: expected a duration such as 30s ({e})"))?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        bail!("{flag} {s:?}: between 100ms and 1h");
    }
    Ok(d)
}

/// A period of housekeeping such as `10s` or `1h`, between 100 ms and 30 days (short ones
/// compress time in tests).
fn parse_span(flag: &str, s: Option<&str>, default: Duration) -> anyhow::Result<Duration> {
    let Some(s) = s else { return Ok(default) };
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| anyhow::anyhow!("{flag} {s:?}: expected a duration such as 10s ({e})"))?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(30 * 24 * 3600) {
        bail!("{flag} {s:?}: between 100ms and 30d");
    }
    Ok(d)
}

/// A size in bytes such as `64MiB`, `512KiB`, `1GiB` or `1048576`, between 1 MiB and 64 GiB.
fn parse_size(flag: &str, s: Option<&str>, default: u64) -> anyhow::Result<u64> {
    let Some(s) = s else { return Ok(default) };
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let unit: u64 = match t[digits..].trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => bail!("{flag} {s:?}: expected a size such as 64MiB (units B, KiB, MiB, GiB)"),
    };
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {s:?}: expected a size such as 64MiB"))?;
    match n.checked_mul(unit) {
        Some(b) if ((1 << 20)..=(64 << 30)).contains(&b) => Ok(b),
        _ => bail!("{flag} {s:?}: between 1MiB and 64GiB"),
    }
}

fn parse_fsync(s: Option<&str>) -> anyhow::Result<FsyncPolicy> {
    match s {
        None => Ok(FsyncPolicy::default()),
        Some("always") => Ok(FsyncPolicy::Always),
        Some("never") => Ok(FsyncPolicy::Never),
        Some(ms) => match ms.parse::<u64>() {
            Ok(ms) if (1..=60_000).contains(&ms) => {
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
            _ => bail!(
                "--fsync {ms:?}: expected `always`, `never` or milliseconds between 1 and 60000"
            ),
        },
    }
}

/// Home-timeline settings from the feed flags.
fn feed_config(
    cap: Option<usize>,
    celebrity: Option<i64>,
    inactive_days: Option<u64>,
    post_cache: Option<u64>,
) -> anyhow::Result<starling_feed::FeedConfig> {
    let mut f = starling_feed::FeedConfig::default();
    if let Some(c) = cap {
        if !(20..=100_000).contains(&c) {
            bail!("--feed-cap {c}: expected 20 to 100000");
        }
        f.cap = c;
    }
    if let Some(c) = celebrity {
        if c < 1 {
            bail!("--feed-celebrity-followers {c}: at least 1");
        }
        f.celebrity_followers = c;
    }
    if let Some(d) = inactive_days {
        if d == 0 {
            bail!("--feed-inactive-days: at least 1");
        }
        f.inactive_after = std::time::Duration::from_secs(d * 86_400);
    }
    if let Some(n) = post_cache {
        if !(100..=100_000_000).contains(&n) {
            bail!("--feed-post-cache {n}: expected 100 to 100000000");
        }
        f.post_cache_entries = n;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_flags() {
        let c = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./starling-data"));
        assert_eq!(c.store, StoreKind::Embedded);
        assert_eq!(c.fsync, FsyncPolicy::default());
    }

    #[test]
    fn a_scylla_url_selects_the_scylla_engine() {
        let url = "scylla://10.0.0.1:9042,10.0.0.2:9042/starling?consistency=one";
        let c = ServeConfig::resolve(ServeArgs {
            store: Some(url.into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.store, StoreKind::Scylla(url.into()));
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
        let args = ServeArgs {
            region: Some("us".into()),
            config: Some(file),
            ..ServeArgs::default()
        };
        let c = ServeConfig::resolve(args).unwrap();
        assert_eq!(c.region, "us", "the flag wins");
        assert_eq!(c.listen.port(), 9000, "the file fills what flags leave");
        assert_eq!(c.fsync, FsyncPolicy::Always);
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
        let c = ServeConfig::resolve(ServeArgs {
            config: Some(file.clone()),
            request_timeout: Some("4s".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert!(
            c.web.is_none(),
            "a switch off on the command line leaves the file's"
        );
        assert_eq!(c.gossip.unwrap().seeds, ["a:1", "b:2"]);
        assert_eq!(c.request_timeout, Duration::from_secs(4), "the flag wins");
        std::fs::write(&file, "config = \"other.toml\"\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("config"), "{err:#}");
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        for (args, needle) in [
            (
                ServeArgs {
                    store: Some("postgres".into()),
                    ..ServeArgs::default()
                },
                "--store",
            ),
            (
                ServeArgs {
                    store: Some("scylla://h:9042/bad-name".into()),
                    ..ServeArgs::default()
                },
                "--store",
            ),
            (
                ServeArgs {
                    fsync: Some("sometimes".into()),
                    ..ServeArgs::default()
                },
                "--fsync",
            ),
            (
                ServeArgs {
                    region: Some("us east".into()),
                    ..ServeArgs::default()
                },
                "--region",
            ),
        ] {
            let err = ServeConfig::resolve(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }

    #[test]
    fn the_gossip_advertise_address_defaults_to_what_peers_can_reach() {
        let any: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        let none = |_| None;
        let given = advertise_address(Some("starling-us-0.gossip:7946".into()), any, None, none);
        assert_eq!(given.unwrap(), "starling-us-0.gossip:7946");
        let lo: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(
            advertise_address(None, lo, None, none).unwrap(),
            "127.0.0.1:7001"
        );
        let pod = advertise_address(None, any, Some("10.1.2.3".into()), none);
        assert_eq!(pod.unwrap(), "10.1.2.3:7946");
        let pod6 = advertise_address(None, any, Some("fd00::7".into()), none);
        assert_eq!(pod6.unwrap(), "[fd00::7]:7946");
        let host = advertise_address(None, any, None, |p| {
            Some(SocketAddr::from(([10, 89, 0, 4], p)))
        });
        assert_eq!(host.unwrap(), "10.89.0.4:7946");
        for (flag, pod, needle) in [
            (None, None, "--gossip-advertise"),
            (Some("0.0.0.0:7946"), None, "--gossip-advertise"),
            (Some("no port"), None, "--gossip-advertise"),
            (None, Some("not-an-ip"), "POD_IP"),
        ] {
            let err = advertise_address(flag.map(Into::into), any, pod.map(Into::into), none)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn seeds_may_be_names_and_listening_everywhere_is_allowed() {
        let c = ServeConfig::resolve(ServeArgs {
            gossip_listen: Some("0.0.0.0:7946".parse().unwrap()),
            gossip_advertise: Some("10.0.0.5:7946".into()),
            seeds: Some(vec![
                "starling-us-gossip.starling.svc.cluster.local:7946".into(),
            ]),
            cluster_secret: Some("a-secret-of-16-chars".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        let g = c.gossip.unwrap();
        assert_eq!(g.listen.to_string(), "0.0.0.0:7946");
        assert_eq!(g.advertise, "10.0.0.5:7946");
        let err = ServeConfig::resolve(ServeArgs {
            gossip_listen: Some("127.0.0.1:7946".parse().unwrap()),
            seeds: Some(vec!["under_score:7946".into()]),
            cluster_secret: Some("a-secret-of-16-chars".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("--seeds"), "{err}");
    }

    #[test]
    fn store_memory_sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_size("--x", None, 7).unwrap(), 7);
        assert_eq!(parse_size("--x", Some("64MiB"), 0).unwrap(), 64 << 20);
        assert_eq!(parse_size("--x", Some(" 2 GiB "), 0).unwrap(), 2 << 30);
        assert_eq!(parse_size("--x", Some("1024K"), 0).unwrap(), 1 << 20);
        assert_eq!(parse_size("--x", Some("1048576"), 0).unwrap(), 1 << 20);
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
            let err = parse_size("--store-cache", Some(bad), 0).unwrap_err();
            assert!(
                err.to_string().starts_with("--store-cache"),
                "{bad:?}: {err}"
            );
        }
        let c = ServeConfig::resolve(ServeArgs {
            store_cache: Some("8MiB".into()),
            store_memtable: Some("2MiB".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!((c.store_cache, c.store_memtable), (8 << 20, 2 << 20));
    }
}
