//! The sans-IO gossip core of one node.
//!
//! A [`GossipNode`] owns no socket and no clock, and never awaits its store: the caller feeds it
//! messages ([`GossipNode::handle_step`]) and the time ([`GossipNode::tick_step`]), sends the
//! [`Outbound`] messages it returns, and runs the store work it asks for
//! ([`GossipNode::take_store_jobs`], `io`) and hands back each answer
//! ([`GossipNode::store_done`]). The async forms ([`GossipNode::tick`], [`GossipNode::handle`], …)
//! run that work at once, one job after another: the simulation in `crate::sim` drives them, the
//! tokio transport runs the jobs on a worker of its own. Its state is protocol bookkeeping over
//! the node's store, so the same code runs under both.
//!
//! What it does:
//! - **Membership**: SWIM through `foca`; foca's timers are kept here and fired by `tick`.
//! - **Push**: every change in the store's change feed (local writes, and remote records that were
//!   new here) is sent at once to `fanout` peers: one in another region, the rest preferably in this
//!   one. Records that change nothing are not logged, so they are not forwarded: a rumor dies when
//!   everyone has it.
//! - **Anti-entropy**: every `ae_interval`, one peer gets this node's digests at [`AE_DEPTH`]; the
//!   peer answers with the leaves of the ranges that differ; this node sends its summaries of
//!   the differing buckets (a key hash and an entry hash per key, [`crate::reconcile`]); the peer
//!   ships its records of the keys that differ and asks for this node's. Each exchange is capped
//!   (`ae_max_ranges`, `ae_max_summary`, `ae_max_records`) and chunked (`ae_summary_chunk`,
//!   `ae_chunk`), so a large repair spreads over several rounds.
//!   Rounds that repair nothing settled back off (the interval doubles up to
//!   `ae_max_interval`): under a steady write load the digests always differ by the writes
//!   still in flight, and each round finds only those.
//! - **CAS routing**: a CAS runs at its owner: the live member of the owner region with the highest
//!   rendezvous score for the key. For `cas_repair` after its start-up grace, an owner first
//!   reads the key from the other live members of its region ([`Message::FetchRequest`]) and
//!   merges what they hold, so a replica that is catching up after a restart does not execute
//!   CASes against values it has not received yet.
//!
//! One job per module: `membership`, `push`, `anti_entropy`, `cas` (routing, repair, calls),
//! `durability` (waits for K regions), `collection` (whether the reaper may collect) and `io`
//! (the store work as requests and answers); this module holds the state, the time, and the
//! dispatch of messages (`tick_step`, `handle_step`).

use crate::peer::Peer;
use crate::reconcile::{self, BucketSummary};
use crate::wire::{CasReply, Message};
use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use starling_store::digest::{LEAF_BITS, LEAVES};
use starling_store::{
    CasOutcome, Delta, FeedConsumer, Hlc, HlcClock, Key, Keyspace, NodeId, Store, StoreError,
    StoreExt, VersionVector, Versioned,
};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

mod anti_entropy;
mod cas;
mod collection;
mod durability;
mod io;
mod membership;
mod push;

pub use cas::rendezvous_owner;
use cas::{expire, reply_to_outcome};
use io::{AfterApply, Read};
pub use io::{StoreDone, StoreJob, records_of};
pub use membership::SwimDriver;
use membership::Swimmer;

/// Depth of the digest tree exchanged first: 2^6 = 64 ranges of 64 buckets.
pub const AE_DEPTH: u32 = 6;
const RANGE_WIDTH: usize = 1 << (LEAF_BITS - AE_DEPTH);
/// (key, entry hash) pairs read from the store per call while reading a bucket.
const BUCKET_PAGE: usize = 4096;

/// Tuning of the protocol.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// Least number of peers each new record is pushed to. The effective fanout grows with the
    /// cluster: `max(fanout, ⌈ln(N + 1)⌉ + 1)`, so the share of nodes a push misses (about
    /// e^-fanout for push-once gossip) stays small as N grows; anti-entropy catches the rest.
    pub fanout: usize,
    /// Changes read from the feed per push batch.
    pub push_batch: usize,
    /// Push batches per step of the core loop, at most (the rest is pushed on the next tick or
    /// local write): a step that drains a long feed holds every timer back.
    pub push_batches: usize,
    /// Time between anti-entropy rounds while they repair something.
    pub ae_interval: Duration,
    /// Longest time between rounds: after each round that repaired no settled record, the
    /// interval doubles up to this; a settled repair or a membership change brings it back to
    /// `ae_interval`.
    pub ae_max_interval: Duration,
    /// How old a record must be for its repair to count as settled: younger ones are most
    /// likely still on their way by push (a repair race, not a lost write).
    pub ae_settle: Duration,
    /// Ranges whose leaves are sent in one answer.
    pub ae_max_ranges: usize,
    /// Records per anti-entropy message.
    pub ae_chunk: usize,
    /// Records shipped per anti-entropy exchange, each way.
    pub ae_max_records: usize,
    /// Keys summarized per exchange (whole buckets while they fit; at 20 bytes a key at most,
    /// a summary stays far below [`crate::wire::MAX_FRAME`]).
    pub ae_max_summary: usize,
    /// Keys per summary message (a bucket is never split, so a larger one goes alone).
    pub ae_summary_chunk: usize,
    /// How long a routed CAS waits for its owner.
    pub cas_timeout: Duration,
    /// How long a routed call ([`GossipNode::call`]) waits for its answer. Longer than a CAS:
    /// the handler at the other end may run several CASes of its own region.
    pub call_timeout: Duration,
    /// How long after a restart this node refuses to act as a CAS owner, at most. A node that
    /// just restarted knows few members yet, takes itself for the owner of keys another member
    /// of its region owns, and would execute CASes against a replica that lacks their latest
    /// values: two messages claimed the same sequence slot, and one acknowledged message was
    /// lost, in the `kill -9` fault test (`api/tests/faults`). The grace ends 1 s after the
    /// first member is learned when the node announced itself to seeds, or after this long,
    /// longer than the periodic announce (10 s), for a node started without seeds. A seed's
    /// answer need not list every member (a seed that restarted itself a moment ago knows few):
    /// so a node saves the members it sees (node-local key `gm`), announces itself to them too
    /// after a restart, and its grace lasts, up to this long, until every member of its region
    /// it remembers is back in its view. A node whose store was empty at start (a new cluster)
    /// has none: it owned nothing before.
    pub owner_grace: Duration,
    /// How long after its start-up grace, and after anti-entropy last repaired a write pushes
    /// had missed here, a node, before it executes a CAS as owner, reads the key from every
    /// other live member of its region and merges what they hold. A node back
    /// from a crash owns keys again as soon as its grace ends, but its replica lacks what the
    /// member that owned them meanwhile wrote until anti-entropy brings it: executed against
    /// that replica, a create-CAS of a chat slot the other member had filled was applied a
    /// second time (two messages in one slot; the `kill -9` fault test lost an acknowledged
    /// message that way about one run in fifteen). A replica still catching up keeps finding
    /// missed writes, which keeps the window open; inside it a CAS costs one round trip in the
    /// region more (and runs in the core loop, not on the caller's task).
    pub cas_repair: Duration,
    /// How long such a read waits for the members that have not answered. Past it the CAS
    /// fails (503 to a client): a member dead but not yet declared down may hold the key's
    /// newest value (the `kill -9` test lost a message when the CAS ran without it).
    pub cas_repair_timeout: Duration,
    /// How long a write waits to be durable in K regions before it is reported as not.
    pub durability_timeout: Duration,
    /// SWIM settings.
    pub swim: foca::Config,
    /// Time between passes of the tombstone reaper ([`crate::reaper`]).
    pub gc_interval: Duration,
    /// Age after which a tombstone may be collected, and how long every member must have been
    /// alive, with none joining or returning, before any is.
    pub gc_grace: Duration,
    /// Records the reaper reads per page.
    pub gc_page: usize,
    /// Pages the reaper reads per pass.
    pub gc_pages: usize,
    /// Keep a log of when and after how many hops records arrived (simulation and benchmarks).
    pub record_arrivals: bool,
    /// The store is a keyspace this region's nodes share, whose keyspace-wide feed's partition
    /// holders push each write to the other regions ([`GossipNode::push_to_regions_step`]):
    /// the push of this node's own feed then sends nothing (the region's other nodes read the
    /// same keyspace) and only moves its cursor.
    pub keyspace_push: bool,
}

impl GossipConfig {
    /// Settings for regions 100–250 ms apart: SWIM probes tolerate WAN round trips.
    pub fn wan(expected_nodes: u32) -> Self {
        let mut swim = foca::Config::new_wan(
            NonZeroU32::new(expected_nodes.max(1)).unwrap_or(NonZeroU32::MIN),
        );
        swim.probe_period = Duration::from_secs(2);
        swim.probe_rtt = Duration::from_secs(1);
        swim.suspect_to_down_after = Duration::from_secs(10);
        swim.remove_down_after = Some(Duration::from_secs(300));
        swim.max_packet_size =
            std::num::NonZeroUsize::new(64 * 1024).unwrap_or(std::num::NonZeroUsize::MIN);
        if let Some(p) = swim.periodic_announce_to_down_members.as_mut() {
            p.frequency = Duration::from_secs(5);
        }
        if let Some(p) = swim.periodic_announce.as_mut() {
            p.frequency = Duration::from_secs(10);
        }
        GossipConfig {
            fanout: 3,
            push_batch: 256,
            push_batches: 4,
            ae_interval: Duration::from_millis(1000),
            ae_max_interval: Duration::from_secs(8),
            ae_settle: Duration::from_secs(2),
            ae_max_ranges: 16,
            ae_chunk: 256,
            ae_max_records: 8192,
            ae_max_summary: 65_536,
            ae_summary_chunk: 8192,
            cas_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(3),
            owner_grace: Duration::from_secs(12),
            cas_repair: Duration::from_secs(30),
            cas_repair_timeout: Duration::from_millis(500),
            durability_timeout: Duration::from_secs(5),
            swim,
            gc_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(3600),
            gc_page: 1000,
            gc_pages: 16,
            record_arrivals: false,
            keyspace_push: false,
        }
    }
}

/// A member's state as SWIM sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed probes; not yet declared down.
    Suspect,
    /// Declared down (kept until removed after the grace period).
    Down,
}

impl MemberState {
    /// Lower-case name, as the cluster API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

/// A message to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    /// The receiver.
    pub to: Peer,
    /// The message.
    pub msg: Message,
}

/// Why a routed CAS failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CasError {
    /// No live member of the owner region answered in time.
    #[error("the owner of the key in region {region} is unreachable")]
    OwnerUnreachable {
        /// The owner region.
        region: String,
    },
    /// The owner refused or failed the operation.
    #[error("the owner failed the operation: {0}")]
    Failed(String),
}

/// A write that did not become durable in the regions asked for in time.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("the write is durable in {reached} region(s), {wanted} were asked for")]
pub struct NotDurable {
    /// Regions known to hold the write (this one included).
    pub reached: usize,
    /// Regions asked for.
    pub wanted: usize,
}

struct PendingDurability {
    key: Key,
    version: VersionVector,
    wanted: usize,
    reached: BTreeSet<String>,
    deadline: Duration,
    next_ask: Duration,
}

/// How a CAS request started.
#[derive(Debug)]
pub enum CasStart {
    /// Executed here (this node is the owner) or refused at once.
    Done(Result<CasOutcome, CasError>),
    /// Sent to the owner; the answer comes as a completion with this id.
    Pending(u64),
}

/// How a routed call started.
#[derive(Debug)]
pub enum CallStart {
    /// This node is the owner of the route key: run the handler here.
    Local,
    /// Refused at once (no live member in the region).
    Failed(CasError),
    /// Sent to the owner; the answer comes as a call completion with this id.
    Pending(u64),
}

/// A call another node asked this one to run ([`GossipNode::take_incoming_calls`]); its answer
/// goes back through [`GossipNode::answer_call`].
#[derive(Debug)]
pub struct IncomingCall {
    /// Who asked (the answer goes there).
    pub from: Peer,
    /// The asker's request id.
    pub id: u64,
    /// Which handler.
    pub service: String,
    /// Its input.
    pub body: Bytes,
}

/// Counters for `/metrics` and the benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipMetrics {
    /// Records sent in pushes.
    pub deltas_pushed: u64,
    /// Records received in pushes.
    pub deltas_received: u64,
    /// Records of the keyspace-wide feed this node pushed to the other regions as a partition's
    /// holder ([`GossipNode::push_to_regions_step`]), each counted once whatever the regions.
    pub keyspace_pushed: u64,
    /// Received records that changed the local store.
    pub deltas_applied: u64,
    /// Anti-entropy rounds started.
    pub ae_rounds: u64,
    /// Records shipped by anti-entropy.
    pub ae_records_sent: u64,
    /// Keys listed in the anti-entropy summaries sent.
    pub ae_summary_keys_sent: u64,
    /// Digest buckets found to differ from a peer's (each then reconciled by summaries): what
    /// anti-entropy works on, zero between replicas that agree.
    pub ae_buckets_differing: u64,
    /// Records received by anti-entropy that changed the local store (repairs).
    pub ae_repairs: u64,
    /// Of those, records older than `ae_settle`: writes that pushes had missed.
    pub ae_repairs_settled: u64,
    /// Messages handed to the transport.
    pub messages_out: u64,
    /// Calls sent to another node ([`GossipNode::call`]).
    pub calls_sent: u64,
    /// Calls other nodes asked this one to run.
    pub calls_served: u64,
    /// Age, on arrival, of the newest record of the last push that changed something here (ms):
    /// how far behind the writer this replica was.
    pub convergence_lag_ms: u64,
    /// CASes this node held, as owner, to read the key from its region first
    /// ([`GossipConfig::cas_repair`]).
    pub cas_repair_reads: u64,
    /// Records those reads brought that changed the local store: CASes that would have run
    /// against a stale value.
    pub cas_repaired: u64,
    /// Reads that ran out of time with a member still silent (the CAS failed).
    pub cas_repair_timeouts: u64,
}

struct PendingCas {
    deadline: Duration,
    region: String,
}

/// The push's position in the change feed, as a [`FeedConsumer`]: the feed is trimmed below it
/// (`starling_store::trim`), and a restarted node pushes what it had not pushed yet.
pub const PUSH_CONSUMER: &str = "gossip-push";

/// How often the push cursor is saved, at most.
const CURSOR_SAVE_EVERY: Duration = Duration::from_secs(1);

/// Node-local: the members this node last saw (postcard `Vec<Peer>`), so that after a restart it
/// announces itself to them and holds its start-up grace until those of its region are back in
/// its view (see [`GossipConfig::owner_grace`]).
const REMEMBERED: Keyspace = Keyspace::local("gm");

/// A CAS this node owns, held until the other live members of its region have answered a
/// fetch of its key or `cas_repair_timeout` has passed ([`GossipConfig::cas_repair`]).
struct HeldCas {
    deadline: Duration,
    /// Members yet to answer.
    waiting: BTreeSet<NodeId>,
    key: Key,
    expected: Option<VersionVector>,
    new: Option<Bytes>,
    answer: HeldAnswer,
}

/// Where the outcome of a held CAS goes.
#[derive(Debug)]
enum HeldAnswer {
    /// A `CasResponse` to the member that routed it here.
    Remote { to: Peer, id: u64 },
    /// A completion of this node's own CAS `id` ([`GossipNode::take_completions`]).
    Local { id: u64 },
}

type Swim = Foca<Peer, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// The protocol state of one node. See the module documentation.
pub struct GossipNode {
    me: Peer,
    cfg: GossipConfig,
    store: Arc<dyn Store>,
    /// The store's clock: tombstone ages are measured on it.
    clock: Arc<HlcClock>,
    /// foca and its timers, shared with a [`SwimDriver`] when one runs them on a task of its own.
    swim: Arc<parking_lot::Mutex<Swimmer>>,
    rng: SmallRng,
    cursor: u64,
    /// The push cursor as last saved ([`PUSH_CONSUMER`]), and when.
    cursor_saved: (u64, Duration),
    now: Duration,
    next_ae: Duration,
    /// Anti-entropy rounds in a row that repaired nothing settled (the back-off exponent).
    ae_idle_rounds: u32,
    pending: BTreeMap<u64, PendingCas>,
    /// CASes owned here waiting for their region's fetch answers, by fetch id.
    held: BTreeMap<u64, HeldCas>,
    completions: Vec<(u64, Result<CasOutcome, CasError>)>,
    calls: BTreeMap<u64, PendingCas>,
    call_completions: Vec<(u64, Result<Bytes, CasError>)>,
    incoming_calls: Vec<IncomingCall>,
    next_cas_id: u64,
    durability: BTreeMap<u64, PendingDurability>,
    durable: Vec<(u64, Result<(), NotDurable>)>,
    /// Have-requests in flight: request id → (durability wait, region asked).
    have_asked: BTreeMap<u64, (u64, String)>,
    metrics: GossipMetrics,
    out: Vec<Outbound>,
    arrivals: Vec<Arrival>,
    /// Since when every known member has been alive, with no member joining or returning.
    settled_since: Option<Duration>,
    /// The store was empty at start: no CAS result of this node can be missing from it.
    fresh: bool,
    /// When the first member was learned (see [`GossipConfig::owner_grace`]).
    first_member_at: Option<Duration>,
    /// The caller's time when this node was first given one: the start-up grace, the repair
    /// window and the first timers count from it (a simulated node restarts late in a run).
    started: Option<Duration>,
    /// When anti-entropy last repaired a settled record here (a write pushes had missed).
    last_settled_repair: Option<Duration>,
    /// The members of this region remembered from before the restart, by node id.
    expected: BTreeSet<NodeId>,
    /// The remembered members were read (on the first tick).
    restored: bool,
    /// The members (node, address) last saved under [`REMEMBERED`].
    saved: Vec<(NodeId, String)>,
    /// This node announced itself to a seed, whose answer lists every member.
    announced: bool,
    /// The saved members and push cursor were read back (no push or cursor save before).
    resumed: bool,
    /// Store work asked for and not yet taken by the driver ([`io`]).
    jobs: VecDeque<StoreJob>,
    /// Store jobs made since start.
    jobs_made: u64,
    /// A push's read is in flight; `push_wanted`: another was asked for meanwhile (how its
    /// changes arrived); `push_arrived`: how the one in flight's did.
    push_in_flight: bool,
    push_wanted: Option<u8>,
    push_arrived: u8,
    /// CAS outcomes answered once the push in flight, or the next one, has gone out.
    after_push_current: Vec<(HeldAnswer, Result<CasOutcome, CasError>)>,
    after_push_next: Vec<(HeldAnswer, Result<CasOutcome, CasError>)>,
    /// A save of the cursor, or of the members, is in flight.
    saving_cursor: bool,
    saving_members: bool,
}

/// When a record reached this node, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The key.
    pub key: Key,
    /// Push hops it travelled ([`Arrival::LOCAL`] for a local write, [`Arrival::REPAIR`] when
    /// anti-entropy brought it).
    pub hops: u8,
    /// The node's time when it arrived.
    pub at: Duration,
}

impl Arrival {
    /// Written here.
    pub const LOCAL: u8 = 0;
    /// Brought by anti-entropy.
    pub const REPAIR: u8 = u8::MAX;
}

impl std::fmt::Debug for GossipNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipNode")
            .field("me", &self.me)
            .field("members", &self.swim.lock().swim.num_members())
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl GossipNode {
    /// A node for `me` over `store`. `seed` makes its random choices reproducible. Pushing starts
    /// from the store's current change-feed position: what was written before is left to
    /// anti-entropy.
    pub fn new(
        me: Peer,
        cfg: GossipConfig,
        store: Arc<dyn Store>,
        clock: Arc<HlcClock>,
        seed: u64,
    ) -> Self {
        let swim = Foca::new(
            me.clone(),
            cfg.swim.clone(),
            SmallRng::seed_from_u64(seed ^ 0x5eed),
            PostcardCodec,
        );
        let cursor = store.last_seq();
        let mut rng = SmallRng::seed_from_u64(seed);
        let first_ae =
            Duration::from_millis(rng.random_range(0..=cfg.ae_interval.as_millis() as u64));
        GossipNode {
            me,
            cfg,
            store,
            clock,
            swim: Arc::new(parking_lot::Mutex::new(Swimmer::new(swim))),
            rng,
            cursor,
            cursor_saved: (0, Duration::ZERO),
            now: Duration::ZERO,
            next_ae: first_ae,
            ae_idle_rounds: 0,
            pending: BTreeMap::new(),
            held: BTreeMap::new(),
            completions: Vec::new(),
            calls: BTreeMap::new(),
            call_completions: Vec::new(),
            incoming_calls: Vec::new(),
            next_cas_id: 1,
            durability: BTreeMap::new(),
            durable: Vec::new(),
            have_asked: BTreeMap::new(),
            metrics: GossipMetrics::default(),
            out: Vec::new(),
            arrivals: Vec::new(),
            settled_since: Some(Duration::ZERO),
            fresh: cursor == 0,
            first_member_at: None,
            started: None,
            last_settled_repair: None,
            expected: BTreeSet::new(),
            restored: false,
            saved: Vec::new(),
            announced: false,
            resumed: false,
            jobs: VecDeque::new(),
            jobs_made: 0,
            push_in_flight: false,
            push_wanted: None,
            push_arrived: Arrival::LOCAL,
            after_push_current: Vec::new(),
            after_push_next: Vec::new(),
            saving_cursor: false,
            saving_members: false,
        }
    }

    /// Takes the caller's time; the first one starts the node's clocks.
    fn set_now(&mut self, now: Duration) {
        self.now = now;
        if self.started.is_none() {
            self.started = Some(now);
            self.next_ae += now;
        }
    }

    /// This node.
    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// The store this node replicates.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Counters.
    pub fn metrics(&self) -> &GossipMetrics {
        &self.metrics
    }

    /// Arrivals logged since the last call (only with `record_arrivals`).
    pub fn take_arrivals(&mut self) -> Vec<Arrival> {
        std::mem::take(&mut self.arrivals)
    }

    /// [`GossipNode::tick_step`], then the store work it asked for, run here.
    pub async fn tick(&mut self, now: Duration) -> Vec<Outbound> {
        let mut out = self.tick_step(now);
        self.run_store_jobs(&mut out).await;
        out
    }

    /// [`GossipNode::on_local_writes_step`], then the store work it asked for, run here.
    pub async fn on_local_writes(&mut self, now: Duration) -> Vec<Outbound> {
        let mut out = self.on_local_writes_step(now);
        self.run_store_jobs(&mut out).await;
        out
    }

    /// [`GossipNode::handle_step`], then the store work it asked for, run here.
    pub async fn handle(&mut self, now: Duration, from: Peer, msg: Message) -> Vec<Outbound> {
        let mut out = self.handle_step(now, from, msg);
        self.run_store_jobs(&mut out).await;
        out
    }

    /// Advances time: fires SWIM timers, asks for a push of new changes, starts anti-entropy,
    /// expires CAS. The first one asks for the saved members and push cursor.
    pub fn tick_step(&mut self, now: Duration) -> Vec<Outbound> {
        self.set_now(now);
        if !self.restored {
            self.restored = true;
            self.job(io::Job::Restore);
        }
        if self.resumed {
            self.save_members();
        }
        self.fire_swim_timers();
        self.drain_swim();
        self.push_changes(Arrival::LOCAL);
        if now >= self.next_ae {
            self.start_anti_entropy();
            let interval = self
                .cfg
                .ae_interval
                .saturating_mul(1 << self.ae_idle_rounds.min(16))
                .min(self.cfg.ae_max_interval.max(self.cfg.ae_interval));
            let jitter = self.rng.random_range(0..=interval.as_millis() as u64 / 5);
            self.next_ae = now + interval + Duration::from_millis(jitter);
            // Reset by a settled repair before the next round.
            self.ae_idle_rounds = self.ae_idle_rounds.saturating_add(1);
        }
        self.watch_settled();
        self.save_cursor();
        self.progress_durability();
        self.fail_expired_holds();
        for (id, region) in expire(&mut self.pending, now) {
            self.completions
                .push((id, Err(CasError::OwnerUnreachable { region })));
        }
        for (id, region) in expire(&mut self.calls, now) {
            self.call_completions
                .push((id, Err(CasError::OwnerUnreachable { region })));
        }
        std::mem::take(&mut self.out)
    }

    /// Asks for a push of what the store logged since the last push (call after local writes
    /// for the lowest latency; `tick_step` does it too).
    pub fn on_local_writes_step(&mut self, now: Duration) -> Vec<Outbound> {
        self.set_now(now);
        self.push_changes(Arrival::LOCAL);
        std::mem::take(&mut self.out)
    }

    /// Handles one message from `from`; the store work it needs is asked for
    /// ([`GossipNode::take_store_jobs`]).
    pub fn handle_step(&mut self, now: Duration, from: Peer, msg: Message) -> Vec<Outbound> {
        self.set_now(now);
        match msg {
            Message::Swim(data) => self.handle_swim(&from, &data),
            Message::Push { deltas, hops } => {
                self.metrics.deltas_received += deltas.len() as u64;
                let newest = deltas.iter().map(|d| d.record.max_hlc()).max();
                let newest = newest.map_or(0, Hlc::millis);
                self.apply(vec![deltas], AfterApply::Push { hops, newest });
            }
            Message::AeDigest { level } => self.answer_digest(from, &level),
            Message::AeLeaves { ranges } => self.compare_leaves(from, &ranges),
            Message::AeWant { buckets } => self.answer(from, Read::Buckets(buckets)),
            Message::AeSummary { buckets } => self.answer(from, Read::Reconcile(buckets)),
            Message::AeWantKeys { buckets } => self.answer(from, Read::Wanted(buckets)),
            Message::AeRecords { deltas } => {
                let settled_before = self
                    .clock
                    .wall_millis()
                    .saturating_sub(self.cfg.ae_settle.as_millis() as u64);
                let (settled, young): (Vec<Delta>, Vec<Delta>) = deltas
                    .into_iter()
                    .partition(|d| d.record.max_hlc().millis() <= settled_before);
                self.apply(vec![settled, young], AfterApply::Repair);
            }
            Message::CasRequest {
                id,
                key,
                expected,
                new,
            } => {
                // Only the owner executes: a sender whose membership view is behind is told to
                // retry rather than having two nodes swap the same key.
                let owner = self.owner(&self.me.region.clone(), &key);
                if owner.as_ref().map(|o| o.node) != Some(self.me.node) || self.owner_grace() {
                    let reason = if self.owner_grace() {
                        "just started: not yet a CAS owner".to_string()
                    } else {
                        "not the owner of this key in my view".to_string()
                    };
                    self.send(
                        from,
                        Message::CasResponse {
                            id,
                            reply: CasReply::Failed { reason },
                        },
                    );
                    return std::mem::take(&mut self.out);
                }
                let held = HeldCas {
                    deadline: self.now + self.cfg.cas_repair_timeout,
                    waiting: BTreeSet::new(),
                    key,
                    expected,
                    new,
                    answer: HeldAnswer::Remote { to: from, id },
                };
                if let Some(held) = self.hold(held) {
                    self.execute(held);
                }
            }
            Message::FetchRequest { id, keys } => self.answer(from, Read::Fetch { id, keys }),
            Message::FetchResponse { id, deltas } => {
                let Some(held) = self.held.get_mut(&id) else {
                    return std::mem::take(&mut self.out);
                };
                if !held.waiting.remove(&from.node) {
                    return std::mem::take(&mut self.out);
                }
                // Only the held key: a fetch answers nothing else.
                let key = held.key.clone();
                let done = held.waiting.is_empty();
                let ours: Vec<Delta> = deltas.into_iter().filter(|d| d.key == key).collect();
                self.apply(vec![ours], AfterApply::Fetch { id, done });
            }
            Message::HaveRequest { id, key } => self.answer(from, Read::Have { id, key }),
            Message::HaveResponse { id, version } => {
                if let Some((wait, region)) = self.have_asked.remove(&id)
                    && let Some(p) = self.durability.get_mut(&wait)
                    && version.is_some_and(|v| v.dominates(&p.version))
                {
                    p.reached.insert(region);
                }
                self.progress_durability();
            }
            Message::CasResponse { id, reply } => {
                if self.pending.remove(&id).is_some() {
                    self.completions.push((id, reply_to_outcome(reply)));
                }
            }
            Message::CallRequest { id, service, body } => {
                self.metrics.calls_served += 1;
                self.incoming_calls.push(IncomingCall {
                    from,
                    id,
                    service,
                    body,
                });
            }
            Message::CallResponse { id, reply } => {
                if self.calls.remove(&id).is_some() {
                    self.call_completions
                        .push((id, reply.map_err(CasError::Failed)));
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    fn send(&mut self, to: Peer, msg: Message) {
        self.metrics.messages_out += 1;
        self.out.push(Outbound { to, msg });
    }
}
