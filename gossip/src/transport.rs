//! The tokio layer around the sans-IO core: TCP, timers, the WAN delay, and a handle for the
//! rest of the node.
//!
//! Tasks, all owned by [`GossipService`] and stopped when it is shut down or dropped:
//! - the **membership loop** (with [`TransportConfig::separate_membership`], the default) fires
//!   SWIM's timers every 100 ms and answers SWIM packets through a [`SwimDriver`]: it never
//!   awaits the store, so probes and suspicion keep their times while the core loop waits on a
//!   slow read or write (without it, the core loop does this too, between its store calls). It
//!   runs on a `gossip-swim` thread with a runtime of its own, and writes through connections
//!   of its own, so neither busy tokio workers nor a queue of pushes delays a tick or a probe;
//! - the **core loop** owns the [`GossipNode`]: it takes inbound envelopes, ticks every 100 ms,
//!   pushes new local writes (the store's change-feed watch) at most every [`PUSH_LINGER`] —
//!   a burst of writes is one push, one read of the feed and its records — runs CAS commands, and
//!   routes every outbound message through the [`Wan`] (drop, or deliver after a delay). It never
//!   awaits the store (with [`TransportConfig::store_work_inline`] off, the default): the store
//!   work the core asks for ([`StoreJob`]) goes to the store worker, and each answer comes back
//!   as an event of the loop; while [`MAX_STORE_JOBS`] jobs are outstanding the loop takes no
//!   new message or command (ticks, answers and SWIM go on);
//! - the **store worker** runs those jobs one after another, in order, on the `gossip-store`
//!   lane ([`TransportConfig::dedicated_store_lane`]);
//! - the **listener** accepts peers; each connection gets a reader that opens frames and closes
//!   the connection on the first bad one (counted in `frames_refused`);
//! - one **writer per peer address** (and per loop: the membership loop's are its own) keeps a
//!   connection, reconnects with backoff, and sends each frame no earlier than its WAN delivery
//!   time. Its queue is bounded: when full, the message is
//!   dropped (counted) — gossip tolerates loss, anti-entropy repairs it.

use crate::node::{
    CallStart, CasError, CasStart, GossipConfig, GossipMetrics, GossipNode, IncomingCall, Outbound,
    StoreDone, StoreJob, SwimDriver,
};
use crate::peer::Peer;
use crate::wan::{Route, Wan};
use crate::wire::{Envelope, FrameCodec, MAX_FRAME, Message};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use starling_store::{CallHandler, CasOutcome, Key, Store, StoreLane, VersionVector};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

const TICK: Duration = Duration::from_millis(100);
/// Local writes are pushed at most this often. Without it the loop woke for every write and
/// read the feed and its records each time (about 4 000 store calls a second at 2 500 writes a
/// second, RELIABILITY.md "Soak"); with it a push carries what came in the last few
/// milliseconds, for a few milliseconds more replication delay on a path whose floor is the WAN.
const PUSH_LINGER: Duration = Duration::from_millis(5);
/// How late a tick may come before the core loop counts as stalled.
const STALL: Duration = Duration::from_millis(100);
/// How late a tick may come before the stall counts as a long one: a loop falling behind its
/// store calls (seconds to minutes, RELIABILITY.md "Soak"), not a busy machine's scheduling.
const LONG_STALL: Duration = Duration::from_secs(1);
const INBOUND_QUEUE: usize = 4096;
/// SWIM packets waiting for the membership loop; past it one is dropped (counted in
/// `queue_dropped`; SWIM takes a lost packet for a missed probe and asks again).
const SWIM_QUEUE: usize = 1024;
const PEER_QUEUE: usize = 1024;
const COMMAND_QUEUE: usize = 1024;
/// Store jobs the core has made and not yet had answered, past which its loop takes no new
/// message or command: each of those makes a job or two, so the jobs waiting (and the memory
/// they hold) stay bounded; ticks make at most a push, a cursor save and a member save. A job
/// holds the records of a push or an apply (up to a push batch of 256), so this bound is also
/// the loop's memory under a slow store: at 256 the fault suite's soak, run beside the other
/// fault tests, saw a node's RSS grow 33-46 MiB (its limit 24) in three runs; at 32, 14-22.
pub const MAX_STORE_JOBS: usize = 32;
/// The store worker's queue, and its answers' (the rest wait in the core loop's own queue,
/// bounded by [`MAX_STORE_JOBS`]).
const STORE_JOB_QUEUE: usize = 64;
/// Calls from other nodes running here at once, at most; past it a call is refused at once
/// (the caller sees the owner fail, as for a CAS it could not execute).
const MAX_SERVING: usize = 1024;

/// The handlers this node serves calls with, by service name.
type Handlers = Arc<RwLock<HashMap<String, Arc<dyn CallHandler>>>>;

/// Settings of the transport.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node as peers see it: its `addr` is where peers reach it (a name is resolved to an
    /// IP address at start).
    pub me: Peer,
    /// Where to listen (may differ from `me.addr`, e.g. `0.0.0.0:7946`).
    pub listen: SocketAddr,
    /// Peers to join through, as `HOST:PORT` (an IP or a DNS name, resolved again on every
    /// join attempt; every address of a name is used, see [`crate::seeds`]).
    pub seeds: Vec<String>,
    /// The cluster secret: frames are encrypted and authenticated with it.
    pub secret: Vec<u8>,
    /// Whether frames in clear are still taken from and sent to builds before encryption
    /// (the first roll of an upgrade; see [`crate::wire`]).
    pub encryption: crate::wire::Encryption,
    /// The WAN between regions at start.
    pub wan: Wan,
    /// Protocol settings.
    pub gossip: GossipConfig,
    /// The store's clock.
    pub clock: Arc<starling_store::HlcClock>,
    /// Whether the core loop's store calls run on a thread of their own (a [`StoreLane`]) rather
    /// than on tokio's blocking pool, where they wait behind every API request's store calls
    /// (false: the path before, kept to compare; both are measured).
    pub dedicated_store_lane: bool,
    /// Whether SWIM's timers and packets run on a membership loop of their own, which never
    /// awaits the store (false: on the core loop between its store calls, the path before;
    /// kept to compare the two under the same load).
    pub separate_membership: bool,
    /// Whether the core loop runs the store work its core asks for itself, awaiting each job
    /// in the step that made it (true: the path before, kept to compare), rather than handing
    /// it to the store worker and taking the answers as events.
    pub store_work_inline: bool,
}

/// Transport counters.
#[derive(Debug, Default)]
pub struct TransportMetrics {
    /// Frames refused (bad secret, malformed, too large): the connection was closed.
    pub frames_refused: AtomicU64,
    /// Frames received and accepted.
    pub frames_in: AtomicU64,
    /// Of those, frames that came in clear (from builds before encryption, or announcing
    /// themselves): when it stops growing everywhere, the upgrade's second roll may begin.
    pub frames_in_clear: AtomicU64,
    /// Frames written to peers.
    pub frames_out: AtomicU64,
    /// Bytes written to peers.
    pub bytes_out: AtomicU64,
    /// Messages dropped by the simulated WAN (loss or partition).
    pub wan_dropped: AtomicU64,
    /// Messages dropped because a peer's queue was full.
    pub queue_dropped: AtomicU64,
    /// Peers (host and version) refused for speaking a protocol version this node does not
    /// accept.
    pub incompatible_peers: AtomicU64,
    /// The longest time between two 100 ms ticks of the loop that fires SWIM's timers (the
    /// membership loop's, or the core loop's without one), in ms: a loop busy with one message
    /// (or awaiting the store) delays the next tick by as much.
    pub tick_gap_max_ms: AtomicU64,
    /// Those ticks that came more than [`STALL`] late: the loop was stalled that long.
    pub stalls: AtomicU64,
    /// Those ticks that came more than [`LONG_STALL`] late.
    pub long_stalls: AtomicU64,
    /// When that loop last ticked (ms since the Unix epoch): a loop stuck in one step
    /// shows here at once, where the tick gaps show it only once it ticks again.
    pub last_tick_unix_ms: AtomicU64,
    /// The same four for the core loop's own ticks (push, anti-entropy, expiries), whose steps
    /// await the store: equal to the above without a membership loop.
    pub core_tick_gap_max_ms: AtomicU64,
    /// Core loop ticks more than [`STALL`] late.
    pub core_stalls: AtomicU64,
    /// Core loop ticks more than [`LONG_STALL`] late.
    pub core_long_stalls: AtomicU64,
    /// When the core loop last ticked (ms since the Unix epoch).
    pub core_last_tick_unix_ms: AtomicU64,
    /// 1 when SWIM runs on a membership loop of its own ([`TransportConfig::separate_membership`]).
    pub separate_membership: AtomicU64,
    /// Store jobs the core made ([`StoreJob`]), run inline or by the store worker.
    pub store_jobs: AtomicU64,
    /// Of those, made and not yet answered (a gauge), and its highest value.
    pub store_jobs_pending: AtomicU64,
    /// The highest number of store jobs outstanding at once.
    pub store_jobs_pending_max: AtomicU64,
    /// Times the core loop stopped taking messages and commands because [`MAX_STORE_JOBS`]
    /// jobs were outstanding.
    pub store_backpressure: AtomicU64,
    /// Time the store worker spent running jobs (µs), and its longest job.
    pub store_job_us: AtomicU64,
    /// The longest single store job (µs).
    pub store_job_max_us: AtomicU64,
    /// 1 when the core loop runs its store work inline ([`TransportConfig::store_work_inline`]).
    pub store_work_inline: AtomicU64,
    /// Where the core loop's time goes, by [`Step`]: total and longest time of one step (µs),
    /// store calls included (the store lane's own counters split those into queue and run).
    pub step_us: [AtomicU64; Step::COUNT],
    /// The longest single step of each kind (µs).
    pub step_max_us: [AtomicU64; Step::COUNT],
    /// Those peers, to log each once (bounded: past [`MAX_INCOMPATIBLE`] they are counted again).
    incompatible_seen: Mutex<std::collections::HashSet<(std::net::IpAddr, u8)>>,
}

/// What one turn of the core loop did, for [`TransportMetrics::step_us`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A tick: timers, the push of new changes, an anti-entropy round, saving state.
    Tick,
    /// A push of local writes (the change feed's watch).
    LocalWrites,
    /// A message from a peer.
    Message,
    /// A command from this node (a routed CAS or call, a durability wait) or a call's answer.
    Command,
    /// The answer to a store job ([`StoreDone`]).
    StoreDone,
}

impl Step {
    /// Kinds of steps.
    pub const COUNT: usize = 5;
    /// Every kind, in index order.
    pub const ALL: [Step; Step::COUNT] = [
        Step::Tick,
        Step::LocalWrites,
        Step::Message,
        Step::Command,
        Step::StoreDone,
    ];

    /// Its name in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Tick => "tick",
            Step::LocalWrites => "local_writes",
            Step::Message => "message",
            Step::Command => "command",
            Step::StoreDone => "store_done",
        }
    }
}

/// Most incompatible peers remembered for logging once.
const MAX_INCOMPATIBLE: usize = 1024;

impl TransportMetrics {
    /// Notes a peer refused for its version; whether it is a new one (to log).
    fn incompatible(&self, ip: std::net::IpAddr, version: u8) -> bool {
        let mut seen = self.incompatible_seen.lock();
        if seen.len() >= MAX_INCOMPATIBLE {
            seen.clear();
        }
        let new = seen.insert((ip, version));
        if new {
            self.incompatible_peers.fetch_add(1, Ordering::Relaxed);
        }
        new
    }
}

/// Errors of the gossip service.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The listen address could not be bound.
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The advertised address is a name that does not resolve.
    #[error("the advertised gossip address {addr} does not resolve: {reason}")]
    Advertise {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The service has stopped.
    #[error("the gossip service has stopped")]
    Stopped,
    /// The core loop's store lane could not start its thread.
    #[error("cannot start the gossip store lane: {0}")]
    Lane(#[source] starling_store::StoreError),
    /// The membership loop's thread or runtime could not start.
    #[error("cannot start the gossip membership thread: {0}")]
    MembershipThread(#[source] std::io::Error),
}

/// The address this node is known by: `addr` itself if it is an IP address, else the first
/// address its name resolves to now. Peers that join through a seed name announce to the
/// addresses the name resolves to, and the membership protocol takes an announce only when it is
/// addressed to the receiver's own address: so a node is known by an IP address, not a name.
async fn identity_address(addr: &str) -> Result<String, TransportError> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(addr.to_string());
    }
    let bad = |reason: String| TransportError::Advertise {
        addr: addr.to_string(),
        reason,
    };
    let mut found = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| bad(e.to_string()))?;
    found
        .next()
        .map(|a| a.to_string())
        .ok_or_else(|| bad("no address".into()))
}

enum Command {
    Durable {
        key: Key,
        version: VersionVector,
        regions: usize,
        reply: oneshot::Sender<Result<(), crate::NotDurable>>,
    },
    Cas {
        region: String,
        key: Key,
        expected: Option<VersionVector>,
        new: Option<Bytes>,
        reply: oneshot::Sender<Result<CasOutcome, CasError>>,
    },
    Call {
        region: String,
        route: Key,
        service: String,
        body: Bytes,
        reply: oneshot::Sender<Result<Bytes, CasError>>,
    },
    PushToRegions {
        deltas: Vec<starling_store::Delta>,
        reply: oneshot::Sender<usize>,
    },
}

/// A cheap, cloneable handle to the running gossip service.
#[derive(Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
    handlers: Handlers,
    store: Arc<dyn Store>,
    /// Whether the core lets a CAS this node owns run straight on the store: out of the
    /// start-up grace and of the repair window (refreshed every tick; `GossipNode::cas_direct`).
    ready: watch::Receiver<bool>,
    members: watch::Receiver<Vec<Peer>>,
    membership: watch::Receiver<Vec<(Peer, crate::MemberState)>>,
    protocol: watch::Receiver<GossipMetrics>,
    wan: Arc<RwLock<Wan>>,
    metrics: Arc<TransportMetrics>,
    reaper: Arc<crate::reaper::ReaperStats>,
    /// Where the core loop's store calls run, and its counters.
    store_lane: Arc<StoreLane>,
    me: Peer,
}

impl std::fmt::Debug for GossipHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipHandle")
            .field("me", &self.me)
            .field("services", &self.handlers.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl GossipHandle {
    /// This node.
    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// The live members other than this node.
    pub fn members(&self) -> Vec<Peer> {
        self.members.borrow().clone()
    }

    /// Every known member other than this node, with its SWIM state.
    pub fn membership(&self) -> Vec<(Peer, crate::MemberState)> {
        self.membership.borrow().clone()
    }

    /// Protocol counters.
    pub fn protocol_metrics(&self) -> GossipMetrics {
        self.protocol.borrow().clone()
    }

    /// The tombstone reaper's counters.
    pub fn reaper_stats(&self) -> &crate::reaper::ReaperStats {
        &self.reaper
    }

    /// Transport counters.
    pub fn transport_metrics(&self) -> &TransportMetrics {
        &self.metrics
    }

    /// Where the core loop's store calls run ([`TransportConfig::dedicated_store_lane`]), with
    /// their counts, queue waits and run times.
    pub fn store_lane(&self) -> &StoreLane {
        &self.store_lane
    }

    /// The current WAN table.
    pub fn wan(&self) -> Wan {
        self.wan.read().clone()
    }

    /// Replaces links of the WAN table at run time.
    pub fn set_wan(&self, links: Vec<crate::wan::WanLink>) -> Result<(), crate::wan::WanError> {
        self.wan.write().set(links)
    }

    /// Waits until `version` of `key`, written on this node, is held in `regions` regions (this
    /// one included).
    pub async fn wait_durable(
        &self,
        key: Key,
        version: VersionVector,
        regions: usize,
    ) -> Result<(), crate::NotDurable> {
        if regions <= 1 {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let stopped = crate::NotDurable {
            reached: 1,
            wanted: regions,
        };
        let cmd = Command::Durable {
            key,
            version,
            regions,
            reply: tx,
        };
        self.commands.send(cmd).await.map_err(|_| stopped.clone())?;
        rx.await.map_err(|_| stopped)?
    }

    /// Compare-and-swap at the key's owner in `region`.
    pub async fn cas(
        &self,
        region: &str,
        key: Key,
        expected: Option<VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome, CasError> {
        // This node owns the key: run it here, on the caller's task, rather than queue it
        // behind everything the core loop does (pushes, anti-entropy, applying replicas). The
        // store's watch wakes the core loop to push the result, as for any local write. The
        // view is the core's, at most one tick old: the same window as any membership change
        // (see ARCHITECTURE.md, "CAS routing").
        if self.owns(region, &key) {
            let span = trace_span("cas", region, "local", "internal");
            return self
                .store
                .cas(&key, expected.as_ref(), new)
                .instrument(span)
                .await
                .map_err(|e| CasError::Failed(e.to_string()));
        }
        let span = trace_span("cas", region, "forwarded", "client");
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Cas {
            region: region.to_string(),
            key,
            expected,
            new,
            reply: tx,
        };
        self.through_core(cmd, rx).instrument(span).await
    }

    /// Queues `cmd` for the core loop and waits for its answer on `rx` (its `reply`); a core
    /// loop that has stopped fails it.
    async fn through_core<T>(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<T, CasError>>,
    ) -> Result<T, CasError> {
        let stopped = || CasError::Failed("the gossip service has stopped".into());
        self.commands.send(cmd).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Whether this node owns `key` in `region` in the latest view and may run its CAS here,
    /// on the caller's task (out of the start-up grace and the repair window).
    fn owns(&self, region: &str, key: &Key) -> bool {
        if region != self.me.region || !*self.ready.borrow() {
            return false;
        }
        let members = self.members.borrow();
        crate::node::rendezvous_owner(members.iter().chain(std::iter::once(&self.me)), region, key)
            .is_some_and(|o| o.node == self.me.node)
    }

    /// Serves calls of `service` on this node with `handler` (replacing an earlier one).
    pub fn serve(&self, service: &str, handler: Arc<dyn CallHandler>) {
        self.handlers.write().insert(service.to_string(), handler);
    }

    /// Runs `service` with `body` on the owner of `route` in `region` (this node, if it is the
    /// owner) and returns the handler's answer. A region without live members fails at once,
    /// an owner that does not answer within the call timeout as unreachable.
    pub async fn call(
        &self,
        region: &str,
        route: Key,
        service: &str,
        body: Bytes,
    ) -> Result<Bytes, CasError> {
        let span = trace_span("call", region, service, "client");
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Call {
            region: region.to_string(),
            route,
            service: service.to_string(),
            body,
            reply: tx,
        };
        self.through_core(cmd, rx).instrument(span).await
    }

    /// Pushes `deltas` to one live member of each other region (see
    /// `GossipNode::push_to_regions_step`): the keyspace-wide feed's partition holders call it
    /// with the records their batches name. Returns how many regions they were sent to; `None`
    /// once the gossip service has stopped.
    pub async fn push_to_regions(&self, deltas: Vec<starling_store::Delta>) -> Option<usize> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::PushToRegions { deltas, reply: tx };
        self.commands.send(cmd).await.ok()?;
        rx.await.ok()
    }
}

/// The trace span of a CAS or routed call (`what`) at `region`'s owner: `how` is `local` (this
/// node owns the key) or `forwarded` for a CAS, the service for a call. Of the target
/// `starling_trace`, which only the OTLP exporter's layer wants (`starling-api`'s telemetry
/// module): disabled, so nearly free, when traces are off. The owner does not continue the
/// trace: the frame carries no trace context (see ARCHITECTURE.md, "Traces").
fn trace_span(what: &'static str, region: &str, how: &str, kind: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: "starling_trace",
        "gossip",
        otel.name = %format_args!("{what} {how} {region}"),
        otel.kind = kind,
        starling.region = %region,
        starling.route = %how,
    )
}

/// Runs one call through this node's handler for its service.
async fn serve_call(handlers: &Handlers, service: &str, body: Bytes) -> Result<Bytes, String> {
    let handler = handlers.read().get(service).cloned();
    match handler {
        Some(h) => h.handle(body).await,
        None => Err(format!("no handler for {service} on this node")),
    }
}

/// The running service; dropping it stops every task.
#[derive(Debug)]
pub struct GossipService {
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
    handle: GossipHandle,
    local_addr: SocketAddr,
}

impl GossipService {
    /// Binds the listener, joins through the seeds and starts the tasks. A `me.addr` given as
    /// a name is resolved here, once: the membership protocol matches announces by address.
    pub async fn start(
        mut cfg: TransportConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self, TransportError> {
        cfg.me.addr = identity_address(&cfg.me.addr).await?;
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| TransportError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let codec = FrameCodec::with_encryption(&cfg.secret, cfg.encryption);
        let metrics = Arc::new(TransportMetrics::default());
        let wan = Arc::new(RwLock::new(cfg.wan.clone()));
        let (shutdown, _) = watch::channel(false);
        let (inbound_tx, inbound_rx) = mpsc::channel::<Envelope>(INBOUND_QUEUE);
        let (swim_tx, swim_rx) = if cfg.separate_membership {
            let (tx, rx) = mpsc::channel::<Envelope>(SWIM_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        metrics
            .separate_membership
            .store(u64::from(cfg.separate_membership), Ordering::Relaxed);
        // The one clock of the core and the membership loop: SWIM's timers are kept on it.
        let clock_start = Instant::now();
        let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(COMMAND_QUEUE);
        let (members_tx, members_rx) = watch::channel(Vec::new());
        let (membership_tx, membership_rx) = watch::channel(Vec::new());
        let (proto_tx, proto_rx) = watch::channel(GossipMetrics::default());
        let (ready_tx, ready_rx) = watch::channel(false);
        let (collectable_tx, collectable_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        // The tombstone reaper: a task of its own, never on the core loop.
        let reaper = Arc::new(crate::reaper::ReaperStats::default());
        tasks.spawn(
            crate::reaper::Reaper::new(
                store.clone(),
                cfg.clock.clone(),
                (&cfg.gossip).into(),
                reaper.clone(),
            )
            .run(
                cfg.gossip.gc_interval,
                move || *collectable_rx.borrow(),
                shutdown.subscribe(),
            ),
        );

        tasks.spawn(accept_loop(
            listener,
            codec.clone(),
            Inbound {
                core: inbound_tx,
                swim: swim_tx,
            },
            metrics.clone(),
            shutdown.subscribe(),
        ));

        let seed = xxhash_rust::xxh3::xxh3_64(cfg.me.addr.as_bytes()) ^ cfg.me.incarnation;
        let store_for_handle = store.clone();
        // The core loop awaits its store calls one after another: on tokio's blocking pool each
        // one queued behind every API request's (RELIABILITY.md, "Soak": ticks seconds late).
        // On a lane of its own it waits only for its own work.
        let store_lane = if cfg.dedicated_store_lane {
            StoreLane::dedicated("gossip-store").map_err(TransportError::Lane)?
        } else {
            StoreLane::shared()
        };
        let core_store = store
            .on_lane(store_lane.clone())
            .unwrap_or_else(|| store.clone());
        let core = GossipNode::new(
            cfg.me.clone(),
            cfg.gossip.clone(),
            core_store.clone(),
            cfg.clock.clone(),
            seed,
        );
        metrics
            .store_work_inline
            .store(u64::from(cfg.store_work_inline), Ordering::Relaxed);
        let (job_tx, job_rx) = mpsc::channel::<StoreJob>(STORE_JOB_QUEUE);
        let (done_tx, done_rx) = mpsc::channel::<StoreDone>(STORE_JOB_QUEUE);
        // Ends when the core loop drops its end of the queue.
        tasks.spawn(store_worker(
            core_store,
            cfg.gossip.clone(),
            job_rx,
            done_tx,
            metrics.clone(),
        ));
        let outbox = Outbox {
            me: cfg.me.clone(),
            codec,
            wan: wan.clone(),
            writers: Mutex::new(HashMap::new()),
            metrics: metrics.clone(),
            rng: Mutex::new(SmallRng::seed_from_u64(seed ^ 0x0a7)),
            shutdown: shutdown.subscribe(),
        };
        let seeds = cfg.seeds.clone();
        let handlers = Handlers::default();
        let outbox = Arc::new(outbox);
        if let Some(swim_rx) = swim_rx {
            // Its own connections: a probe never waits in a peer's queue behind a push.
            let swim_outbox = Arc::new(outbox.with_own_writers(seed ^ 0x5e1f));
            let ended = spawn_membership_thread(
                core.swim_driver(),
                swim_rx,
                swim_outbox,
                clock_start,
                shutdown.subscribe(),
            )
            .map_err(TransportError::MembershipThread)?;
            // The service's tasks end when the thread has.
            tasks.spawn(async move {
                let _ = ended.await;
            });
        }
        tasks.spawn(core_loop(CoreLoop {
            core,
            ready: ready_tx,
            collectable: collectable_tx,
            handlers: handlers.clone(),
            store,
            outbox,
            start: clock_start,
            separate_membership: cfg.separate_membership,
            store_work_inline: cfg.store_work_inline,
            jobs: job_tx,
            answers: done_rx,
            inbound: inbound_rx,
            commands: cmd_rx,
            members: members_tx,
            membership: membership_tx,
            protocol: proto_tx,
            seeds,
            shutdown: shutdown.subscribe(),
        }));
        let handle = GossipHandle {
            commands: cmd_tx,
            handlers,
            store: store_for_handle,
            ready: ready_rx,
            members: members_rx,
            membership: membership_rx,
            protocol: proto_rx,
            wan,
            metrics,
            reaper,
            store_lane,
            me: cfg.me,
        };
        Ok(GossipService {
            tasks,
            shutdown,
            handle,
            local_addr,
        })
    }

    /// The handle for the rest of the node.
    pub fn handle(&self) -> GossipHandle {
        self.handle.clone()
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Leaves the cluster and stops every task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for GossipService {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.tasks.abort_all();
    }
}

/// Where a reader hands the frames it opened: SWIM packets to the membership loop when there
/// is one, everything else to the core loop.
#[derive(Clone)]
struct Inbound {
    core: mpsc::Sender<Envelope>,
    swim: Option<mpsc::Sender<Envelope>>,
}

async fn accept_loop(
    listener: TcpListener,
    codec: FrameCodec,
    inbound: Inbound,
    metrics: Arc<TransportMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    readers.spawn(read_frames(stream, peer, codec.clone(), inbound.clone(), metrics.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a peer failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
    readers.abort_all();
}

/// Reads frames until the peer closes or sends a bad one.
async fn read_frames(
    mut stream: TcpStream,
    peer: SocketAddr,
    codec: FrameCodec,
    inbound: Inbound,
    metrics: Arc<TransportMetrics>,
) {
    let mut buf = Vec::new();
    loop {
        let len = match stream.read_u32().await {
            Ok(l) => l as usize,
            Err(_) => return,
        };
        if len > MAX_FRAME {
            metrics.frames_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, len, "frame over the cap; closing the connection");
            return;
        }
        buf.resize(len, 0);
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        match codec.open(&buf) {
            Ok(env) => {
                metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                if buf.first().is_some_and(|&v| v < crate::wire::ENCRYPTED) {
                    metrics.frames_in_clear.fetch_add(1, Ordering::Relaxed);
                }
                let is_swim = matches!(env.msg, Message::Swim(_));
                match &inbound.swim {
                    // Never behind the core loop's queue: probes keep their times.
                    Some(swim) if is_swim => match swim.try_send(env) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics.queue_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    _ => {
                        if inbound.core.send(env).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Err(crate::wire::WireError::Version(v)) => {
                metrics.frames_refused.fetch_add(1, Ordering::Relaxed);
                // One line per peer host and version, however often it reconnects.
                if metrics.incompatible(peer.ip(), v) {
                    if v < crate::wire::ENCRYPTED {
                        tracing::error!(
                            %peer,
                            theirs = v,
                            ours = crate::wire::PROTOCOL_VERSION,
                            "refusing a peer that sends gossip frames in clear (a build before encryption); run the upgraded nodes with --gossip-encryption optional until every node is upgraded"
                        );
                    } else {
                        tracing::error!(
                            %peer,
                            theirs = v,
                            ours = crate::wire::PROTOCOL_VERSION,
                            accepted = ?codec.accepts(),
                            "refusing a peer of an incompatible gossip protocol version; upgrade one version at a time"
                        );
                    }
                }
                return;
            }
            Err(e) => {
                metrics.frames_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, error = %e, "refused a frame; closing the connection");
                return;
            }
        }
    }
}

/// Routes outbound messages through the WAN to per-peer writers.
struct Outbox {
    me: Peer,
    codec: FrameCodec,
    wan: Arc<RwLock<Wan>>,
    writers: Mutex<HashMap<String, mpsc::Sender<(Instant, Bytes)>>>,
    metrics: Arc<TransportMetrics>,
    rng: Mutex<SmallRng>,
    shutdown: watch::Receiver<bool>,
}

impl Outbox {
    /// The same node's outbox (identity, codec, WAN, metrics, shutdown) with connections of
    /// its own and its own WAN draws, seeded with `rng_seed`.
    fn with_own_writers(&self, rng_seed: u64) -> Self {
        Outbox {
            me: self.me.clone(),
            codec: self.codec.clone(),
            wan: self.wan.clone(),
            writers: Mutex::new(HashMap::new()),
            metrics: self.metrics.clone(),
            rng: Mutex::new(SmallRng::seed_from_u64(rng_seed)),
            shutdown: self.shutdown.clone(),
        }
    }

    fn send(&self, out: Vec<Outbound>, tasks: &mut JoinSet<()>) {
        for Outbound { to, msg } in out {
            let route = if to.region.is_empty() {
                Route::Deliver(Duration::ZERO)
            } else {
                let wan = self.wan.read();
                wan.route(&self.me.region, &to.region, &mut *self.rng.lock())
            };
            let Route::Deliver(delay) = route else {
                self.metrics.wan_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let env = Envelope {
                from: self.me.clone(),
                msg,
            };
            let frame = match self.codec.seal_for(&to, &env) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "cannot seal a frame");
                    continue;
                }
            };
            let mut writers = self.writers.lock();
            let tx = writers.entry(to.addr.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PEER_QUEUE);
                tasks.spawn(write_frames(
                    to.addr.clone(),
                    rx,
                    self.metrics.clone(),
                    self.shutdown.clone(),
                ));
                tx
            });
            if tx.try_send((Instant::now() + delay, frame)).is_err() {
                self.metrics.queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Keeps one connection to a peer and writes its frames at their delivery time.
async fn write_frames(
    addr: String,
    mut rx: mpsc::Receiver<(Instant, Bytes)>,
    metrics: Arc<TransportMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let (at, frame) = tokio::select! {
            _ = shutdown.changed() => return,
            next = rx.recv() => match next {
                Some(item) => item,
                None => return,
            },
        };
        tokio::time::sleep_until(at).await;
        if conn.is_none() {
            match TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "peer unreachable; dropping a frame");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        if let Some(s) = conn.as_mut() {
            if s.write_all(&frame).await.is_ok() {
                metrics.frames_out.fetch_add(1, Ordering::Relaxed);
                metrics
                    .bytes_out
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
            } else {
                conn = None;
            }
        }
    }
}

struct CoreLoop {
    core: GossipNode,
    ready: watch::Sender<bool>,
    /// Whether the reaper may collect ([`GossipNode::collectable`]), refreshed every tick.
    collectable: watch::Sender<bool>,
    handlers: Handlers,
    store: Arc<dyn Store>,
    outbox: Arc<Outbox>,
    /// The clock shared with the membership loop.
    start: Instant,
    /// SWIM runs on the membership loop: the core loop's ticks are not the ones that keep
    /// probes on time, and are counted apart.
    separate_membership: bool,
    /// Run the store work in the step that asked for it ([`TransportConfig::store_work_inline`]).
    store_work_inline: bool,
    /// To the store worker, and its answers.
    jobs: mpsc::Sender<StoreJob>,
    answers: mpsc::Receiver<StoreDone>,
    inbound: mpsc::Receiver<Envelope>,
    commands: mpsc::Receiver<Command>,
    members: watch::Sender<Vec<Peer>>,
    membership: watch::Sender<Vec<(Peer, crate::MemberState)>>,
    protocol: watch::Sender<GossipMetrics>,
    /// The seeds as given: names are resolved on each join attempt.
    seeds: Vec<String>,
    shutdown: watch::Receiver<bool>,
}

/// Runs the [`membership_loop`] on a thread of its own, with a single-threaded runtime of its
/// own (its timer, its connections): on tokio's shared workers its ticks waited behind API
/// requests whenever the machine was saturated (RELIABILITY.md, "Soak": ticks 259 and 282 ms
/// apart in a 20-minute soak). The receiver is answered when the loop has ended.
fn spawn_membership_thread(
    driver: SwimDriver,
    swim_in: mpsc::Receiver<Envelope>,
    outbox: Arc<Outbox>,
    start: Instant,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ended_tx, ended_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("gossip-swim".into())
        .spawn(move || {
            runtime.block_on(membership_loop(driver, swim_in, outbox, start, shutdown));
            let _ = ended_tx.send(());
        })?;
    Ok(ended_rx)
}

/// Fires SWIM's timers every tick and answers SWIM packets, never waiting on the store; what
/// it sees of the membership the core takes on its next step.
async fn membership_loop(
    driver: SwimDriver,
    mut swim_in: mpsc::Receiver<Envelope>,
    outbox: Arc<Outbox>,
    start: Instant,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut writers = JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    loop {
        let out = tokio::select! {
            _ = shutdown.changed() => break,
            _ = ticker.tick() => {
                let m = &outbox.metrics;
                note_tick(
                    last_tick.elapsed(),
                    [&m.tick_gap_max_ms, &m.stalls, &m.long_stalls, &m.last_tick_unix_ms],
                );
                last_tick = Instant::now();
                driver.tick(start.elapsed())
            }
            Some(env) = swim_in.recv() => match env.msg {
                Message::Swim(data) => driver.handle(start.elapsed(), &env.from, &data),
                _ => Vec::new(),
            },
            Some(_) = writers.join_next(), if !writers.is_empty() => Vec::new(),
        };
        outbox.send(out, &mut writers);
    }
    // Let the frames queued last go out before the writers stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    writers.abort_all();
}

/// Counts one tick that came `gap` after the one before in `[gap max, stalls, long stalls,
/// last tick]`.
fn note_tick(gap: Duration, [gap_max, stalls, long_stalls, last]: [&AtomicU64; 4]) {
    last.store(unix_ms(), Ordering::Relaxed);
    gap_max.fetch_max(gap.as_millis() as u64, Ordering::Relaxed);
    if gap > TICK + STALL {
        stalls.fetch_add(1, Ordering::Relaxed);
    }
    if gap > TICK + LONG_STALL {
        long_stalls.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the core's store jobs one after another, in the order they were made, and sends back
/// each answer; ends when the core loop is gone.
async fn store_worker(
    store: Arc<dyn Store>,
    cfg: GossipConfig,
    mut jobs: mpsc::Receiver<StoreJob>,
    answers: mpsc::Sender<StoreDone>,
    metrics: Arc<TransportMetrics>,
) {
    while let Some(job) = jobs.recv().await {
        let began = Instant::now();
        let done = job.run(&store, &cfg).await;
        let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        metrics.store_job_us.fetch_add(us, Ordering::Relaxed);
        metrics.store_job_max_us.fetch_max(us, Ordering::Relaxed);
        if answers.send(done).await.is_err() {
            break;
        }
    }
}

async fn core_loop(mut l: CoreLoop) {
    let start = l.start;
    let mut writers = JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = l.store.subscribe();
    let mut pending: HashMap<u64, oneshot::Sender<Result<CasOutcome, CasError>>> = HashMap::new();
    let mut durable: HashMap<u64, oneshot::Sender<Result<(), crate::NotDurable>>> = HashMap::new();
    let mut calls: HashMap<u64, oneshot::Sender<Result<Bytes, CasError>>> = HashMap::new();
    // Calls running here: other nodes' (answered when done) and this node's own.
    let mut serving: JoinSet<(Peer, u64, Result<Bytes, String>)> = JoinSet::new();
    let mut local_calls: JoinSet<()> = JoinSet::new();
    let mut rejoin_at = Instant::now();
    let mut last_tick = Instant::now();
    // At most one resolution of the seeds at a time; its addresses are announced to when done.
    let mut resolving: JoinSet<Vec<String>> = JoinSet::new();
    // When the local writes seen since the last push are pushed (none waiting: `None`).
    let mut push_at: Option<Instant> = None;
    let mut last_push = Instant::now();
    // Store jobs made and not yet handed to the worker, and made and not yet answered.
    let mut queue: VecDeque<StoreJob> = VecDeque::new();
    let mut outstanding: usize = 0;
    let inline = l.store_work_inline;
    let mut accepting = true;
    loop {
        let was_accepting = accepting;
        accepting = outstanding < MAX_STORE_JOBS;
        if was_accepting && !accepting {
            l.outbox
                .metrics
                .store_backpressure
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut ticked = false;
        // What this turn does and when it started (after the select: the wait is not work).
        let mut step = Step::Command;
        let began: Instant;
        let out = tokio::select! {
            _ = l.shutdown.changed() => {
                let out = l.core.leave();
                l.outbox.send(out, &mut writers);
                // Give the leave message a moment to go out.
                tokio::time::sleep(Duration::from_millis(50)).await;
                break;
            }
            _ = ticker.tick() => {
                ticked = true;
                (step, began) = (Step::Tick, Instant::now());
                if inline {
                    l.core.tick(start.elapsed()).await
                } else {
                    l.core.tick_step(start.elapsed())
                }
            }
            Ok(()) = changes.changed(), if push_at.is_none() => {
                push_at = Some((last_push + PUSH_LINGER).max(Instant::now()));
                continue;
            }
            () = tokio::time::sleep_until(push_at.unwrap_or(last_push)), if push_at.is_some() => {
                push_at = None;
                (step, began) = (Step::LocalWrites, Instant::now());
                last_push = began;
                if inline {
                    l.core.on_local_writes(start.elapsed()).await
                } else {
                    l.core.on_local_writes_step(start.elapsed())
                }
            }
            Some(env) = l.inbound.recv(), if accepting => {
                (step, began) = (Step::Message, Instant::now());
                if inline {
                    l.core.handle(start.elapsed(), env.from, env.msg).await
                } else {
                    l.core.handle_step(start.elapsed(), env.from, env.msg)
                }
            }
            Ok(permit) = l.jobs.reserve(), if !queue.is_empty() => {
                if let Some(job) = queue.pop_front() {
                    permit.send(job);
                }
                continue;
            }
            Some(done) = l.answers.recv() => {
                (step, began) = (Step::StoreDone, Instant::now());
                outstanding = outstanding.saturating_sub(1);
                l.core.store_done(start.elapsed(), done)
            }
            Some(cmd) = l.commands.recv(), if accepting => { began = Instant::now(); match cmd {
                Command::Durable { key, version, regions, reply } => {
                    let (id, out) = l.core.wait_durable(start.elapsed(), key, version, regions);
                    durable.insert(id, reply);
                    out
                }
                Command::Cas { region, key, expected, new, reply } => {
                    let (started, out) = if inline {
                        l.core.cas(start.elapsed(), &region, key, expected, new).await
                    } else {
                        l.core.cas_step(start.elapsed(), &region, key, expected, new)
                    };
                    match started {
                        CasStart::Done(r) => { let _ = reply.send(r); }
                        CasStart::Pending(id) => { pending.insert(id, reply); }
                    }
                    out
                }
                Command::Call { region, route, service, body, reply } => {
                    let (started, out) = l.core.call(start.elapsed(), &region, &route, &service, &body);
                    match started {
                        CallStart::Local => {
                            let handlers = l.handlers.clone();
                            local_calls.spawn(async move {
                                let r = serve_call(&handlers, &service, body).await;
                                let _ = reply.send(r.map_err(CasError::Failed));
                            });
                        }
                        CallStart::Failed(e) => { let _ = reply.send(Err(e)); }
                        CallStart::Pending(id) => { calls.insert(id, reply); }
                    }
                    out
                }
                Command::PushToRegions { deltas, reply } => {
                    let (regions, out) = l.core.push_to_regions_step(start.elapsed(), deltas);
                    let _ = reply.send(regions);
                    out
                }
            }},
            Some(done) = serving.join_next(), if !serving.is_empty() => { began = Instant::now(); match done {
                Ok((to, id, reply)) => l.core.answer_call(to, id, reply),
                Err(e) => {
                    // Its caller times out.
                    tracing::error!(error = %e, "a call handler panicked");
                    Vec::new()
                }
            }},
            Some(_) = local_calls.join_next(), if !local_calls.is_empty() => { began = Instant::now(); Vec::new() }
            Some(_) = writers.join_next(), if !writers.is_empty() => { began = Instant::now(); Vec::new() }
            Some(resolved) = resolving.join_next(), if !resolving.is_empty() => { began = Instant::now(); match resolved {
                Ok(addrs) => {
                    let seeds: Vec<Peer> = addrs.into_iter().map(Peer::seed).collect();
                    l.core.join(start.elapsed(), &seeds)
                }
                Err(e) => {
                    tracing::error!(error = %e, "resolving the seeds panicked");
                    Vec::new()
                }
            }},
        };
        let busy = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        let m = &l.outbox.metrics;
        m.step_us[step as usize].fetch_add(busy, Ordering::Relaxed);
        m.step_max_us[step as usize].fetch_max(busy, Ordering::Relaxed);
        // The store work this step asked for (none inline: it ran in the step).
        let jobs = l.core.take_store_jobs();
        outstanding += jobs.len();
        queue.extend(jobs);
        m.store_jobs
            .store(l.core.store_jobs_made(), Ordering::Relaxed);
        m.store_jobs_pending
            .store(outstanding as u64, Ordering::Relaxed);
        m.store_jobs_pending_max
            .fetch_max(outstanding as u64, Ordering::Relaxed);
        l.outbox.send(out, &mut writers);
        for (id, r) in l.core.take_completions() {
            if let Some(tx) = pending.remove(&id) {
                let _ = tx.send(r);
            }
        }
        for (id, r) in l.core.take_call_completions() {
            if let Some(tx) = calls.remove(&id) {
                let _ = tx.send(r);
            }
        }
        for IncomingCall {
            from,
            id,
            service,
            body,
        } in l.core.take_incoming_calls()
        {
            if serving.len() >= MAX_SERVING {
                let out = l
                    .core
                    .answer_call(from, id, Err("too many calls in progress".into()));
                l.outbox.send(out, &mut writers);
                continue;
            }
            let handlers = l.handlers.clone();
            serving.spawn(async move {
                let r = serve_call(&handlers, &service, body).await;
                (from, id, r)
            });
        }
        for (id, r) in l.core.take_durable() {
            if let Some(tx) = durable.remove(&id) {
                let _ = tx.send(r);
            }
        }
        if ticked {
            let gap = last_tick.elapsed();
            last_tick = Instant::now();
            let m = &l.outbox.metrics;
            note_tick(
                gap,
                [
                    &m.core_tick_gap_max_ms,
                    &m.core_stalls,
                    &m.core_long_stalls,
                    &m.core_last_tick_unix_ms,
                ],
            );
            if !l.separate_membership {
                note_tick(
                    gap,
                    [
                        &m.tick_gap_max_ms,
                        &m.stalls,
                        &m.long_stalls,
                        &m.last_tick_unix_ms,
                    ],
                );
            }
            // Views for the rest of the node, refreshed every tick rather than after every
            // message: building them walks the whole membership.
            let members = l.core.members();
            // Keep announcing to the seeds while alone (they may start after us).
            // Names are resolved again each time: the pods behind them come and go.
            if members.is_empty()
                && Instant::now() >= rejoin_at
                && !l.seeds.is_empty()
                && resolving.is_empty()
            {
                let seeds = l.seeds.clone();
                resolving.spawn(async move { crate::seeds::resolve(&seeds).await });
                rejoin_at = Instant::now() + Duration::from_secs(1);
            }
            if *l.members.borrow() != members {
                l.members.send_replace(members);
            }
            let membership = l.core.membership();
            if *l.membership.borrow() != membership {
                l.membership.send_replace(membership);
            }
            let collectable = l.core.collectable();
            if *l.collectable.borrow() != collectable {
                l.collectable.send_replace(collectable);
            }
            let ready = l.core.cas_direct();
            if *l.ready.borrow() != ready {
                l.ready.send_replace(ready);
            }
            if *l.protocol.borrow() != *l.core.metrics() {
                l.protocol.send_replace(l.core.metrics().clone());
            }
        }
    }
    writers.abort_all();
    resolving.abort_all();
    serving.abort_all();
    local_calls.abort_all();
    // Handlers hold services that hold this handle: let them go with the service.
    l.handlers.write().clear();
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait::async_trait]
impl starling_store::CasRouter for GossipHandle {
    async fn cas_at(
        &self,
        region: &str,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> starling_store::Result<CasOutcome> {
        self.cas(region, key.clone(), expected.cloned(), new)
            .await
            .map_err(store_error)
    }

    fn local_region(&self) -> Option<&str> {
        Some(&self.me.region)
    }

    /// By the latest membership view alone (a node in its start-up grace or repair window
    /// still owns the key: it runs the key's CASes on its core loop then, not on the caller's
    /// task).
    fn owns_key(&self, region: &str, key: &Key) -> bool {
        if region != self.me.region {
            return false;
        }
        let members = self.members.borrow();
        crate::node::rendezvous_owner(members.iter().chain(std::iter::once(&self.me)), region, key)
            .is_some_and(|o| o.node == self.me.node)
    }

    async fn call_at(
        &self,
        region: &str,
        route: &Key,
        service: &str,
        body: Bytes,
    ) -> starling_store::Result<Bytes> {
        self.call(region, route.clone(), service, body)
            .await
            .map_err(store_error)
    }
}

fn store_error(e: CasError) -> starling_store::StoreError {
    match e {
        CasError::OwnerUnreachable { region } => {
            starling_store::StoreError::OwnerUnreachable { region }
        }
        CasError::Failed(reason) => starling_store::StoreError::Remote(reason),
    }
}
