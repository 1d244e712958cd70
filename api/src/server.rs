//! Starting and stopping a node: open the store, bind, serve until a shutdown signal.

use crate::config::{ServeConfig, StoreKind};
use crate::{AppState, NodeParts};
use anyhow::Context;
use starling_gossip::settings::Cluster;
use starling_gossip::{GossipConfig, GossipService, Peer, Wan};
use starling_graph::GraphConfig;
use starling_store::{
    HlcClock, Limits, ScyllaOptions, Store, open_embedded, open_memory, open_scylla,
};
use std::sync::Arc;

/// Opens the configured store; a bad data directory or an unreachable cluster is one clear error.
pub async fn open_store(cfg: &ServeConfig, clock: Arc<HlcClock>) -> anyhow::Result<Arc<dyn Store>> {
    match &cfg.settings.store {
        StoreKind::Memory => Ok(open_memory(cfg.node(), clock, Limits::default())),
        StoreKind::Scylla(url) => {
            let mut opts =
                ScyllaOptions::from_url(url).with_context(|| format!("--store {url}"))?;
            // Every node on a keyspace runs its share of the keyspace feed (`serve`), whose
            // holders keep the keyspace's digests: anti-entropy compares keyspaces (unless the
            // URL asks for `digests=node`).
            let per_node = url
                .split_once('?')
                .is_some_and(|(_, q)| q.split('&').any(|p| p == "digests=node"));
            opts.keyspace_digests = !per_node;
            open_scylla(cfg.node(), clock, &opts)
                .await
                .with_context(|| format!("opening the ScyllaDB store {url}"))
        }
        StoreKind::Embedded => {
            let opts = cfg.settings.embedded.options(&cfg.settings.data_dir);
            open_embedded(cfg.node(), clock, &opts).with_context(|| {
                format!("opening the store in {}", cfg.settings.data_dir.display())
            })
        }
    }
}

/// Runs a node until Ctrl-C or SIGTERM, then stops accepting, finishes requests in flight, and
/// closes the store (which fsyncs it).
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let clock = Arc::new(HlcClock::new());
    let store = open_store(&cfg, clock.clone()).await?;
    // The seq leases' holder id, kept in the embedded store's data directory (held by this
    // process now): the next run on it takes this run's leases again at once.
    let mut chat_settings = cfg.settings.chat;
    if matches!(cfg.settings.store, StoreKind::Embedded) {
        let id =
            starling_messenger::lease::holder_in(&cfg.settings.data_dir).with_context(|| {
                format!("the lease holder id in {}", cfg.settings.data_dir.display())
            })?;
        chat_settings.lease_holder = Some(id);
    }
    // On ScyllaDB the derived state comes from the keyspace-wide feed, shared by every node on
    // the keyspace (`keyspace_feed`).
    let shared = matches!(cfg.settings.store, StoreKind::Scylla(_));
    // One node on its own store (no cluster, not a shared keyspace): every record of the store
    // is written through this node, so its client-id filter and block cache see every write.
    let sole_writer = cfg.gossip.is_none() && !shared;
    chat_settings.client_id_filter = sole_writer;
    let listener = tokio::net::TcpListener::bind(cfg.settings.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.settings.listen))?;
    let addr = listener.local_addr().context("local address")?;
    let tls = match cfg.settings.tls.files() {
        Some((cert, key)) => {
            Some(crate::tls::Tls::load(cert, key).context("loading --tls-cert/--tls-key")?)
        }
        None => None,
    };
    let gossip = match &cfg.gossip {
        Some(g) => Some(start_gossip(&cfg, g, store.clone(), clock).await?),
        None => None,
    };
    let media = open_media(&cfg).await?;
    let feed = starling_feed::FeedConfig::from(cfg.settings.feed);
    let l2 = match &cfg.settings.redis {
        Some(url) => Some(
            starling_feed::Feed::connect_redis(url.as_str(), "starling:", &feed)
                .await
                .with_context(|| format!("redis at {url} does not answer (--redis)"))?,
        ),
        None => None,
    };
    let (bus, bus_rx) = match &cfg.settings.redis {
        Some(url) => {
            let region = cfg.settings.region.as_str();
            let (bus, rx) = starling_messenger::Bus::redis(url.as_str(), region, cfg.node().0)
                .await
                .with_context(|| format!("connecting to redis at {url}"))?;
            (bus, Some(rx))
        }
        None => (starling_messenger::Bus::in_process(), None),
    };
    let state = AppState::new(NodeParts {
        store: store.clone(),
        graph: {
            let mut g = GraphConfig::new(
                cfg.settings.region.to_string(),
                cfg.settings.handle_region().to_string(),
            );
            g.session_ttl = cfg.settings.session_ttl.get();
            g.handle_grace = cfg.settings.housekeeping.handle_grace.get();
            g.keyspace_feed = shared;
            g.block_cache = sole_writer;
            // Revocations made elsewhere reach it through this node's own change feed, or on a
            // shared keyspace through its broadcast reader (`keyspace_tail`), rechecked at
            // least every SESSION_RECHECK in case that reader is down.
            g.session_cache = true;
            g.session_recheck = shared.then_some(crate::keyspace_tail::SESSION_RECHECK);
            g
        },
        media,
        gossip: gossip.as_ref().map(GossipService::handle),
        admin_token: cfg.settings.admin_token.clone(),
        durable_regions: cfg.settings.durable_regions.usize(),
        auth_per_minute: cfg.settings.auth_per_minute(),
        feed: {
            let mut f = feed;
            f.shared_ttl = shared.then(|| f.shared_ttl.unwrap_or(crate::keyspace_feed::SHARED_TTL));
            f
        },
        l2,
        chat: chat_settings,
        bus,
    })
    .with_media_url_key(media_url_key(&cfg))
    .with_write_quotas(cfg.settings.write_quotas);
    // Follower counts are derived per node from the replicated edge sets: keep them current
    // with what replication brings, until shutdown.
    let (stop_counts, stopped) = tokio::sync::watch::channel(false);
    let mut cache_bus = None;
    let mut keyspace_tail = None;
    let keyspace_feed = match &cfg.settings.store {
        StoreKind::Scylla(url) => {
            // Every node reads the whole feed for the keys the region's other nodes wrote:
            // its caches, sessions, and (without Redis) chat and notification sockets.
            let tail = crate::keyspace_tail::open(url).await?;
            keyspace_tail = Some(tokio::spawn(crate::keyspace_tail::run(
                state.clone(),
                tail,
                crate::keyspace_tail::TailConfig {
                    interval: cfg.settings.keyspace_feed.keyspace_tail_interval.get(),
                    me: cfg.node(),
                    redis: cfg.settings.redis.is_some(),
                },
                stopped.clone(),
            )));
            let lease = cfg.settings.keyspace_feed.lease_config();
            let kf = crate::keyspace_feed::open(url, cfg.node(), lease).await?;
            state.keyspace_feed.set(kf.clone());
            state.posts.likes().shared();
            // The region's nodes drop each other's stale cached copies over their Redis.
            let bus = match &cfg.settings.redis {
                Some(r) => crate::cache_bus::CacheBus::redis(
                    r.as_str(),
                    cfg.settings.region.as_str(),
                    cfg.node().0,
                )
                .await
                .with_context(|| format!("connecting to redis at {r}"))?,
                None => crate::cache_bus::CacheBus::default(),
            };
            state.keyspace_feed.set_bus(bus.clone());
            cache_bus = Some(tokio::spawn(
                bus.clone().run(state.clone(), stopped.clone()),
            ));
            Some(tokio::spawn(crate::keyspace_feed::run(
                state.clone(),
                kf,
                lease,
                state.keyspace_feed.clone(),
                bus,
                stopped.clone(),
            )))
        }
        _ => None,
    };
    let (counts, fan_out, like_counts) = if keyspace_feed.is_some() {
        (None, None, None)
    } else {
        (
            Some(tokio::spawn(
                state.graph.clone().run_counts(stopped.clone()),
            )),
            Some(tokio::spawn(state.feed.clone().run(stopped.clone()))),
            // Like counts, derived per node from the replicated likes the same way.
            Some(tokio::spawn(
                state.posts.likes().clone().run(stopped.clone()),
            )),
        )
    };
    // Deleted accounts are swept in bounded steps, off the request path.
    let sweeper = tokio::spawn(crate::deletion::run(
        state.clone(),
        cfg.settings.housekeeping.deletion_interval.get(),
        stopped.clone(),
    ));
    // The change feed is trimmed below the slowest of its consumers, off the request path.
    let trimmer = tokio::spawn(
        starling_store::Trimmer::new(
            store.clone(),
            &crate::keyspace_feed::node_local(
                crate::metrics::feed_consumers(gossip.is_some()),
                keyspace_feed.is_some(),
            ),
            starling_store::TrimConfig::from(cfg.settings.trim),
            state.trim.clone(),
        )
        .run(stopped.clone()),
    );
    let redis_health = state.feed.l2().cloned().map(|r| {
        let stopped = stopped.clone();
        tokio::spawn(async move { r.watch_health(stopped).await })
    });
    let mut chat = crate::start_chat(&state, bus_rx, stopped);
    let hub = state.fanout.hub.clone();
    let mut app = crate::router_with_deadline(state, cfg.settings.request_timeout.get());
    if let Some(source) = cfg.settings.web.clone().source() {
        app = app.merge(crate::web::routes(source));
    }
    // Outside the router: a preflight is answered before routing (no route has OPTIONS).
    if let Some(origins) = cfg.settings.cors_origins.as_ref().map(|o| &o.parsed) {
        app = app.layer(origins.layer());
    }
    let (stop_tls, tls_stopped) = tokio::sync::watch::channel(false);
    let tls_reload = tls.clone().map(|t| {
        (
            tokio::spawn(t.clone().reload_on_sighup(tls_stopped.clone())),
            tokio::spawn(t.reload_on_change(cfg.settings.tls.watch_interval(), tls_stopped)),
        )
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let data = match &cfg.settings.store {
        StoreKind::Embedded => format!("embedded store in {}", cfg.settings.data_dir.display()),
        StoreKind::Memory => "memory store (nothing persists)".to_string(),
        StoreKind::Scylla(url) => format!("ScyllaDB store {url}"),
    };
    tracing::info!(
        node = %cfg.node(),
        region = %cfg.settings.region,
        "starling listening on {scheme}://{addr} ({data})"
    );
    let acceptor = tls.as_ref().map(|t| t.acceptor().clone());
    crate::accept::serve(listener, app, cfg.settings.conn, acceptor, {
        let hub = hub.clone();
        async move {
            shutdown_signal().await;
            // WebSocket sessions outlive their HTTP connection: tell them to close (1001).
            hub.close_all();
        }
    })
    .await;
    let _ = stop_tls.send(true);
    if let Some((hup, change)) = tls_reload {
        let _ = hup.await;
        let _ = change.await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while hub.connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = stop_counts.send(true);
    for task in [
        counts,
        fan_out,
        like_counts,
        keyspace_feed,
        cache_bus,
        keyspace_tail,
    ]
    .into_iter()
    .flatten()
    {
        let _ = task.await;
    }
    let _ = sweeper.await;
    let _ = trimmer.await;
    if let Some(h) = redis_health {
        let _ = h.await;
    }
    while chat.join_next().await.is_some() {}
    if let Some(g) = gossip {
        g.shutdown().await;
    }
    store.close().await.context("closing the store")?;
    tracing::info!("starling stopped");
    Ok(())
}

/// The key of signed media URLs: from `--media-url-secret`, else the cluster secret, else
/// random (URLs then open media on this process only, which is logged).
fn media_url_key(cfg: &ServeConfig) -> crate::media::UrlSigner {
    match cfg
        .settings
        .media
        .url_secret(cfg.gossip.as_ref().map(|g| g.secret.as_str()))
    {
        Some(s) => crate::media::UrlSigner::from_secret(s),
        None => {
            tracing::info!(
                "signed media URLs use a random key: they open media on this node only \
                 (set --media-url-secret on every node of the region to share one)"
            );
            crate::media::UrlSigner::random()
        }
    }
}

/// Opens the media blob store: a local directory, or an S3-compatible bucket that must answer
/// at start (one clear error otherwise).
pub async fn open_media(cfg: &ServeConfig) -> anyhow::Result<Arc<dyn object_store::ObjectStore>> {
    let Some(url) = &cfg.settings.media.media_store else {
        let media_dir = cfg.settings.media.dir(&cfg.settings.data_dir);
        std::fs::create_dir_all(&media_dir)
            .with_context(|| format!("creating the media directory {}", media_dir.display()))?;
        let dir = object_store::local::LocalFileSystem::new_with_prefix(&media_dir)
            .with_context(|| format!("opening the media directory {}", media_dir.display()))?;
        return Ok(Arc::new(dir));
    };
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .with_retry(object_store::RetryConfig {
            max_retries: 1,
            retry_timeout: std::time::Duration::from_secs(3),
            ..Default::default()
        })
        .build()
        .with_context(|| format!("media store {url}"))?;
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        object_store::ObjectStore::list_with_delimiter(&s3, None),
    )
    .await;
    match probe {
        Ok(Ok(_)) => Ok(Arc::new(s3)),
        Ok(Err(e)) => Err(anyhow::anyhow!("media store {url} is not reachable: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "media store {url} did not answer within 10 s"
        )),
    }
}

/// Starts the gossip transport and joins the cluster through the seeds.
async fn start_gossip(
    cfg: &ServeConfig,
    g: &Cluster,
    store: Arc<dyn Store>,
    clock: Arc<HlcClock>,
) -> anyhow::Result<GossipService> {
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let me = Peer {
        node: cfg.node(),
        region: cfg.settings.region.to_string(),
        addr: g.advertise.clone(),
        incarnation,
    };
    // The simulated round trips between regions (`--wan-rtt`).
    let pairs = cfg
        .settings
        .wan_rtt
        .as_ref()
        .map_or(&[][..], |r| r.0.as_slice());
    let mut regions: Vec<&str> = pairs
        .iter()
        .flat_map(|(a, b, _)| [a.as_str(), b.as_str()])
        .collect();
    regions.sort_unstable();
    regions.dedup();
    let rtts: Vec<(&str, &str, u64)> = pairs
        .iter()
        .map(|(a, b, ms)| (a.as_str(), b.as_str(), *ms))
        .collect();
    let wan = Wan::with_rtts(&regions, &rtts, 0);
    let mut protocol = GossipConfig::wan(16);
    protocol.gc_interval = cfg.settings.housekeeping.gc_interval.get();
    protocol.gc_grace = cfg.settings.housekeeping.gc_grace.get();
    protocol.ae_interval = cfg.settings.housekeeping.ae_interval.get();
    // The keyspace-wide feed's holders push to the other regions (crate::keyspace_feed): the
    // own feed's push sends nothing.
    protocol.keyspace_push = matches!(cfg.settings.store, StoreKind::Scylla(_));
    let service = GossipService::start(g.transport(me, wan, protocol, clock), store).await?;
    tracing::info!(
        gossip = %service.local_addr(),
        advertise = %g.advertise,
        seeds = ?g.seeds,
        "gossip listening"
    );
    Ok(service)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
