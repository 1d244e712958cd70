//! Starling's HTTP server: the axum router, its state and the node's start-up.
//!
//! At this stage the router serves the operations endpoints (`/healthz`, `/readyz`) and the
//! operator endpoints (`/v1/cluster`, `/v1/admin/wan`, `/v1/admin/digest`, `/v1/admin/kv/{key}`); the REST API of the
//! domain crates joins it issue by issue. [`router`] builds the whole router from an
//! [`AppState`] so tests can call it with `oneshot`, without a socket.

pub mod accept;
pub mod account;
pub mod admin;
pub mod auth;
pub mod cache_bus;
pub mod cluster;
pub mod config;
pub mod contract;
pub mod conversations;
pub mod cors;
pub mod deletion;
pub mod extract;
pub mod feed;
pub mod fragments;
#[cfg(test)]
mod fuzz_tests;
pub mod heap;
pub mod http_metrics;
pub mod hydrate;
pub mod keyspace_feed;
pub mod keyspace_tail;
pub mod likes;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod ops;
pub mod paging;
pub mod posts;
pub mod problem;
#[cfg(test)]
mod rest_tests;
pub mod seed;
pub mod server;
pub mod social;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod threads;
pub mod tls;
pub mod users;
pub mod web;
pub mod write_limits;
pub mod ws;

use object_store::ObjectStore;
use starling_gossip::GossipHandle;
use starling_graph::Graph;
use starling_posts::Posts;
use starling_store::Store;
use std::sync::Arc;

/// What every handler can reach: one reference-counted [`NodeState`], so a clone (axum takes one
/// per `State` extractor and per middleware layer, several a request) is one atomic increment. It
/// held the parts by value, whose clone was some fifty reference counts: a profile of `/healthz`
/// at 32 connections spent a third of the server's CPU cloning and dropping it.
#[derive(Clone, Debug)]
pub struct AppState(Arc<NodeState>);

impl std::ops::Deref for AppState {
    type Target = NodeState;

    fn deref(&self) -> &NodeState {
        &self.0
    }
}

/// The parts of a node every handler can reach, behind [`AppState`].
#[derive(Clone, Debug)]
pub struct NodeState {
    /// The node's store.
    pub store: Arc<dyn Store>,
    /// Users, sessions and the social graph.
    pub graph: Graph,
    /// Posts and media references.
    pub posts: Posts,
    /// Home timelines.
    pub feed: starling_feed::Feed,
    /// Pre-serialized posts for feed pages ([`fragments`]).
    pub fragments: fragments::Fragments,
    /// Where media bytes live.
    pub media: Arc<dyn ObjectStore>,
    /// Signs and checks media URLs (a random key until [`AppState::with_media_url_key`]).
    pub media_urls: media::UrlSigner,
    /// The region this node serves.
    pub region: String,
    /// The gossip service, when the node is part of a cluster.
    pub gossip: Option<GossipHandle>,
    /// The admin token; admin endpoints are disabled without one.
    pub admin_token: Option<String>,
    /// In how many regions a write must be before it is acknowledged (1: here).
    pub durable_regions: usize,
    /// Metrics served at `/metrics`.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// The consumer of the ScyllaDB keyspace-wide feed, once [`keyspace_feed::run`] runs it.
    pub keyspace_feed: keyspace_feed::Slot,
    /// Rate limit of sign-up and login per client address.
    pub auth_limit: limits::AuthRateLimit,
    /// Conversations and messages.
    pub messenger: starling_messenger::Messenger,
    /// Chat fan-out: this node's WebSocket hub and the in-region bus.
    pub fanout: starling_messenger::Fanout,
    /// Chat limits.
    pub chat: config::ChatSettings,
    /// What the change feed's trimmer reports (`/metrics`); the trimmer runs beside the server
    /// ([`server::serve`]).
    pub trim: Arc<starling_store::TrimStats>,
    /// Per-route HTTP metrics (requests, latency, in flight).
    pub http: http_metrics::HttpMetrics,
    /// The metrics of the sweeper of deleted accounts ([`deletion`]).
    pub sweep: deletion::SweepMetrics,
    /// Per-user write rate limits ([`write_limits`]; the defaults until
    /// [`AppState::with_write_quotas`]).
    pub write_limits: write_limits::WriteLimits,
}

/// What a node is made of, to build its [`AppState`].
#[derive(Debug)]
pub struct NodeParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Graph settings (region, handle region, argon2 cost).
    pub graph: starling_graph::GraphConfig,
    /// The blob store for media.
    pub media: Arc<dyn ObjectStore>,
    /// The gossip service, in a cluster.
    pub gossip: Option<GossipHandle>,
    /// The admin token.
    pub admin_token: Option<String>,
    /// Regions a write must reach before it is acknowledged.
    pub durable_regions: usize,
    /// Sign-ups and logins per client address and minute (bursts of a fifth of it).
    pub auth_per_minute: u32,
    /// Home-timeline settings.
    pub feed: starling_feed::FeedConfig,
    /// The region's shared timeline cache (L2: Redis), connected.
    pub l2: Option<Arc<dyn starling_feed::RegionalTier>>,
    /// Chat limits.
    pub chat: config::ChatSettings,
    /// The in-region chat bus (in-process, or Redis).
    pub bus: starling_messenger::Bus,
}

impl NodeParts {
    /// A node of one process over `store`, for tests and benchmarks: media in memory, argon2 at
    /// its cheapest (not a cost to deploy), no cluster, no admin token, a million sign-ups a
    /// minute per address, the in-process bus, every other setting its default.
    pub fn for_tests(store: Arc<dyn Store>) -> NodeParts {
        let mut graph = starling_graph::GraphConfig::new("t", "t");
        graph.argon2_memory_kib = 64;
        graph.argon2_passes = 1;
        NodeParts {
            store,
            graph,
            media: Arc::new(object_store::memory::InMemory::new()),
            gossip: None,
            admin_token: None,
            durable_regions: 1,
            auth_per_minute: 1_000_000,
            feed: starling_feed::FeedConfig::default(),
            l2: None,
            chat: config::ChatSettings::default(),
            bus: starling_messenger::Bus::in_process(),
        }
    }
}

impl AppState {
    /// The state of a node.
    pub fn new(p: NodeParts) -> Self {
        let mut registry = metrics::registry(p.store.clone(), p.gossip.clone());
        let cas: Arc<dyn starling_store::CasRouter> = match &p.gossip {
            Some(g) => Arc::new(g.clone()),
            None => Arc::new(starling_store::LocalCas(p.store.clone())),
        };
        let ids = Arc::new(starling_store::IdGenerator::new(p.store.node()));
        let region = p.graph.region.clone();
        let mut chat_cfg = starling_messenger::MessengerConfig::new(p.graph.handle_region.clone());
        chat_cfg.max_group_members = p.chat.max_group_members.usize();
        chat_cfg.group_commit = p.chat.chat_group_commit;
        chat_cfg.lease_holder = p.chat.lease_holder;
        chat_cfg.client_id_filter = p.chat.client_id_filter && p.gossip.is_none();
        chat_cfg.retention = starling_messenger::Retention {
            max: p.chat.chat_history_max.get(),
            max_age: p.chat.chat_history_max_age.map(|a| a.get()),
        };
        let graph = Graph::new(p.store.clone(), cas.clone(), ids.clone(), p.graph);
        let posts = Posts::new(p.store.clone(), cas.clone(), ids.clone());
        let messenger =
            starling_messenger::Messenger::new(p.store.clone(), cas, ids, graph.clone(), chat_cfg);
        if let Some(g) = &p.gossip {
            g.serve(
                starling_messenger::send::SEND_SERVICE,
                Arc::new(messenger.send_handler()),
            );
        }
        let hub = starling_messenger::Hub::new(starling_messenger::HubLimits {
            max_per_user: p.chat.ws_max_per_user.usize(),
            max_connections: p.chat.ws_max_connections.usize(),
            outbox_bytes: p.chat.ws_queue_bytes.usize(),
        });
        let fanout = starling_messenger::Fanout::new(messenger.clone(), hub, p.bus);
        metrics::register_chat(&mut registry, fanout.clone());
        notifications::live::register(&mut registry, posts.notifications().clone());
        let feed = match p.l2 {
            Some(r) => starling_feed::Feed::with_l2(
                p.store.clone(),
                graph.clone(),
                posts.clone(),
                p.feed,
                r,
            ),
            None => starling_feed::Feed::new(p.store.clone(), graph.clone(), posts.clone(), p.feed),
        };
        metrics::register_feed(&mut registry, feed.clone());
        let trim = Arc::new(starling_store::TrimStats::default());
        metrics::register_trim(&mut registry, trim.clone());
        let http = http_metrics::HttpMetrics::register(&mut registry);
        let fragments = fragments::Fragments::register(&mut registry);
        let sweep = deletion::SweepMetrics::register(&mut registry);
        let write_limits =
            write_limits::WriteLimits::new(write_limits::WriteQuotas::default(), &mut registry);
        let keyspace_feed = keyspace_feed::Slot::default();
        keyspace_feed.register(&mut registry);
        let metrics = Arc::new(registry);
        AppState(Arc::new(NodeState {
            keyspace_feed,
            messenger,
            fanout,
            chat: p.chat,
            feed,
            fragments,
            graph,
            posts,
            media: p.media,
            media_urls: media::UrlSigner::random(),
            store: p.store,
            region,
            gossip: p.gossip,
            admin_token: p.admin_token,
            durable_regions: p.durable_regions,
            metrics,
            trim,
            http,
            sweep,
            write_limits,
            auth_limit: limits::AuthRateLimit::new(
                p.auth_per_minute,
                (p.auth_per_minute / 5).max(1),
            ),
        }))
    }
}

impl AppState {
    /// The state with per-user write limits of `quotas`.
    #[must_use]
    pub fn with_write_quotas(mut self, quotas: write_limits::WriteQuotas) -> Self {
        let node = Arc::make_mut(&mut self.0);
        node.write_limits = node.write_limits.with_quotas(quotas);
        self
    }

    /// The state with media URLs signed by `key` (the same on every node of a region, so a URL
    /// one node signed opens the media on any of them).
    #[must_use]
    pub fn with_media_url_key(mut self, key: media::UrlSigner) -> Self {
        Arc::make_mut(&mut self.0).media_urls = key;
        self
    }
}

/// Starts the node's chat background work: the change-feed tail that delivers replicated
/// messages, the one that delivers notifications live ([`notifications::live`]), and the Redis
/// bus receiver when there is one. Both stop when `shutdown` turns true.
pub fn start_chat(
    state: &AppState,
    bus: Option<starling_messenger::BusReceiver>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(starling_messenger::tail::run(
        state.fanout.clone(),
        state.store.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(notifications::live::run(state.clone(), shutdown.clone()));
    // The client-id filter of chat sends, loaded from the store's index (until then every send
    // reads the index, as without it).
    let messenger = state.messenger.clone();
    tasks.spawn(async move {
        match messenger.load_client_ids().await {
            Ok(n) => tracing::debug!(entries = n, "chat client-id filter loaded"),
            Err(e) => {
                tracing::warn!(error = %e, "chat client-id filter not loaded: sends read the index")
            }
        }
    });
    // Chat history retention: queued conversations trimmed, every conversation swept by.
    let messenger = state.messenger.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move { messenger.run_retention(RETENTION_SWEEP, stop).await });
    if let Some(rx) = bus {
        tasks.spawn(rx.run(state.fanout.clone(), shutdown));
    }
    tasks
}

/// How often chat retention queues the next page of conversations (256): an idle conversation
/// is trimmed by age, and a restarted node resumes every conversation's trimming without a send.
const RETENTION_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole HTTP API of a node, with the default request deadline.
pub fn router(state: AppState) -> axum::Router {
    router_with_deadline(state, limits::REQUEST_DEADLINE)
}

/// The whole HTTP API of a node; a request not answered within `deadline` gets 503.
pub fn router_with_deadline(state: AppState, deadline: std::time::Duration) -> axum::Router {
    ops::routes()
        .merge(admin::routes())
        .merge(openapi::routes())
        .merge(users::routes(state.auth_limit.clone()))
        .merge(account::routes())
        .merge(social::routes())
        .merge(posts::routes())
        .merge(likes::routes())
        .merge(threads::routes())
        .merge(notifications::routes())
        .merge(feed::routes())
        .merge(conversations::routes())
        .merge(ws::routes(Arc::new(state.clone())))
        // Per-user write limits, after routing (the route says which write it is).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            write_limits::limit,
        ))
        // The router's own answers are problems too: an unknown path 404, a known path with
        // another method 405 (axum adds `Allow`), and any `text/plain` rejection left.
        .fallback(problem::no_route)
        .method_not_allowed_fallback(problem::method_not_allowed)
        // The request deadline: a slow handler, or a body never finished (it is read inside),
        // gets a bodiless 503, which the next layer turns into a problem.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            deadline,
        ))
        .layer(axum::middleware::map_response(
            problem::plain_errors_as_problems,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(extract::MAX_JSON_BODY))
        .layer(axum::middleware::from_fn(limits::declared_size))
        // Outermost: counts every answer, the deadline's 503 and the size limits' 413 too.
        .layer(axum::middleware::from_fn_with_state(
            state.http.clone(),
            http_metrics::track,
        ))
        .with_state(state)
}
