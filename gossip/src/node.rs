//! The sans-IO gossip core of one node.
//!
//! A [`GossipNode`] owns no socket and no clock: the caller feeds it messages ([`GossipNode::handle`])
//! and the time ([`GossipNode::tick`]), and sends the [`Outbound`] messages it returns. Its state is
//! the node's store plus protocol bookkeeping, so the same code runs under the tokio transport and
//! under the deterministic simulation in `crate::sim`.
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
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

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
    /// Received records that changed the local store.
    pub deltas_applied: u64,
    /// Anti-entropy rounds started.
    pub ae_rounds: u64,
    /// Records shipped by anti-entropy.
    pub ae_records_sent: u64,
    /// Keys listed in the anti-entropy summaries sent.
    pub ae_summary_keys_sent: u64,
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
    swim: Swim,
    rt: AccumulatingRuntime<Peer>,
    timers: BTreeMap<(Duration, u64), Timer<Peer>>,
    timer_seq: u64,
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
            .field("members", &self.swim.num_members())
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
            swim,
            rt: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
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

    /// Every member the membership knows, other than this node, with its SWIM state: one entry
    /// per node (its newest incarnation).
    pub fn membership(&self) -> Vec<(Peer, MemberState)> {
        let mut by_node: BTreeMap<starling_store::NodeId, (Peer, MemberState)> = BTreeMap::new();
        for m in self.swim.iter_membership_state() {
            let state = match m.state() {
                foca::State::Alive => MemberState::Alive,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down => MemberState::Down,
            };
            let p = m.id().clone();
            if p.node == self.me.node {
                continue;
            }
            match by_node.get(&p.node) {
                Some((old, _)) if old.incarnation >= p.incarnation => {}
                _ => {
                    by_node.insert(p.node, (p, state));
                }
            }
        }
        by_node.into_values().collect()
    }

    /// The live members other than this node.
    pub fn members(&self) -> Vec<Peer> {
        self.swim.iter_members().map(|m| m.id().clone()).collect()
    }

    /// Announces this node to the seeds (known by address or fully).
    pub fn join(&mut self, now: Duration, seeds: &[Peer]) -> Vec<Outbound> {
        self.set_now(now);
        for s in seeds {
            if s.addr == self.me.addr {
                continue;
            }
            match self.swim.announce(s.clone(), &mut self.rt) {
                Ok(()) => self.announced = true,
                Err(e) => tracing::warn!(seed = %s.addr, error = %e, "announce failed"),
            }
        }
        self.drain_swim();
        std::mem::take(&mut self.out)
    }

    /// Leaves the cluster gracefully.
    pub fn leave(&mut self) -> Vec<Outbound> {
        if let Err(e) = self.swim.leave_cluster(&mut self.rt) {
            tracing::warn!(error = %e, "leave failed");
        }
        self.drain_swim();
        std::mem::take(&mut self.out)
    }

    /// Arrivals logged since the last call (only with `record_arrivals`).
    pub fn take_arrivals(&mut self) -> Vec<Arrival> {
        std::mem::take(&mut self.arrivals)
    }

    /// Finished durability waits since the last call.
    pub fn take_durable(&mut self) -> Vec<(u64, Result<(), NotDurable>)> {
        std::mem::take(&mut self.durable)
    }

    /// Waits until `version` of `key` (written here) is held in `regions` regions, this one
    /// included. With `regions <= 1` it is done at once: the write is durable locally already.
    /// Returns a wait id whose result comes from [`GossipNode::take_durable`].
    pub fn wait_durable(
        &mut self,
        now: Duration,
        key: Key,
        version: VersionVector,
        regions: usize,
    ) -> (u64, Vec<Outbound>) {
        self.set_now(now);
        let id = self.next_cas_id;
        self.next_cas_id += 1;
        let mut reached = BTreeSet::new();
        reached.insert(self.me.region.clone());
        self.durability.insert(
            id,
            PendingDurability {
                key,
                version,
                wanted: regions.max(1),
                reached,
                deadline: now + self.cfg.durability_timeout,
                next_ask: now,
            },
        );
        self.progress_durability();
        (id, std::mem::take(&mut self.out))
    }

    /// Finishes satisfied or expired durability waits, and asks again where needed.
    fn progress_durability(&mut self) {
        let now = self.now;
        let members = self.members();
        let ids: Vec<u64> = self.durability.keys().copied().collect();
        for id in ids {
            let Some(p) = self.durability.get_mut(&id) else {
                continue;
            };
            if p.reached.len() >= p.wanted {
                self.durable.push((id, Ok(())));
                self.durability.remove(&id);
                continue;
            }
            if now >= p.deadline {
                let e = NotDurable {
                    reached: p.reached.len(),
                    wanted: p.wanted,
                };
                self.durable.push((id, Err(e)));
                self.durability.remove(&id);
                continue;
            }
            if now < p.next_ask {
                continue;
            }
            p.next_ask = now + Duration::from_millis(250);
            let key = p.key.clone();
            // Ask one random member of every region not yet known to hold it.
            let mut by_region: BTreeMap<&str, Vec<&Peer>> = BTreeMap::new();
            for m in &members {
                if !p.reached.contains(&m.region) {
                    by_region.entry(m.region.as_str()).or_default().push(m);
                }
            }
            let asks: Vec<Peer> = by_region
                .values()
                .filter_map(|ms| ms.choose(&mut self.rng).map(|p| (*p).clone()))
                .collect();
            for to in asks {
                let rid = self.next_cas_id;
                self.next_cas_id += 1;
                self.have_asked.insert(rid, (id, to.region.clone()));
                self.send(
                    to,
                    Message::HaveRequest {
                        id: rid,
                        key: key.clone(),
                    },
                );
            }
        }
        // Forget answers nobody waits for any more.
        let live = &self.durability;
        self.have_asked
            .retain(|_, (wait, _)| live.contains_key(wait));
    }

    /// Completed routed CAS requests since the last call.
    pub fn take_completions(&mut self) -> Vec<(u64, Result<CasOutcome, CasError>)> {
        std::mem::take(&mut self.completions)
    }

    /// Completed routed calls since the last call.
    pub fn take_call_completions(&mut self) -> Vec<(u64, Result<Bytes, CasError>)> {
        std::mem::take(&mut self.call_completions)
    }

    /// Calls other nodes asked this one to run since the last call.
    pub fn take_incoming_calls(&mut self) -> Vec<IncomingCall> {
        std::mem::take(&mut self.incoming_calls)
    }

    /// The answer to an [`IncomingCall`].
    pub fn answer_call(
        &mut self,
        to: Peer,
        id: u64,
        reply: Result<Bytes, String>,
    ) -> Vec<Outbound> {
        self.send(to, Message::CallResponse { id, reply });
        std::mem::take(&mut self.out)
    }

    /// Starts a call of `service` at the owner of `route` in `region` (the same rendezvous
    /// choice as a CAS of that key). The answer comes back as a call completion; a call the
    /// owner does not answer within [`GossipConfig::call_timeout`] fails as unreachable.
    pub fn call(
        &mut self,
        now: Duration,
        region: &str,
        route: &Key,
        service: &str,
        body: &Bytes,
    ) -> (CallStart, Vec<Outbound>) {
        self.set_now(now);
        let Some(owner) = self.owner(region, route) else {
            return (
                CallStart::Failed(CasError::OwnerUnreachable {
                    region: region.to_string(),
                }),
                Vec::new(),
            );
        };
        if owner.node == self.me.node {
            return (CallStart::Local, Vec::new());
        }
        let (id, waiting) = self.request(now + self.cfg.call_timeout, region);
        self.calls.insert(id, waiting);
        self.metrics.calls_sent += 1;
        let (service, body) = (service.to_string(), body.clone());
        self.send(owner, Message::CallRequest { id, service, body });
        (CallStart::Pending(id), std::mem::take(&mut self.out))
    }

    /// Advances time: fires SWIM timers, pushes new changes, starts anti-entropy, expires CAS.
    pub async fn tick(&mut self, now: Duration) -> Vec<Outbound> {
        self.set_now(now);
        if !self.restored {
            self.restored = true;
            self.restore_members().await;
            self.restore_cursor().await;
        }
        self.save_members().await;
        while let Some((&(at, seq), _)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            if let Some(timer) = self.timers.remove(&(at, seq))
                && let Err(e) = self.swim.handle_timer(timer, &mut self.rt)
            {
                tracing::debug!(error = %e, "swim timer");
            }
        }
        self.drain_swim();
        self.push_changes(Arrival::LOCAL).await;
        if now >= self.next_ae {
            self.start_anti_entropy().await;
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
        self.save_cursor().await;
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

    /// Pushes what the store logged since the last push (call after local writes for the lowest
    /// latency; `tick` does it too).
    pub async fn on_local_writes(&mut self, now: Duration) -> Vec<Outbound> {
        self.set_now(now);
        self.push_changes(Arrival::LOCAL).await;
        std::mem::take(&mut self.out)
    }

    /// Handles one message from `from`.
    pub async fn handle(&mut self, now: Duration, from: Peer, msg: Message) -> Vec<Outbound> {
        self.set_now(now);
        match msg {
            Message::Swim(data) => {
                if let Err(e) = self.swim.handle_data(&data, &mut self.rt) {
                    tracing::debug!(from = %from.addr, error = %e, "swim packet refused");
                }
                self.drain_swim();
            }
            Message::Push { deltas, hops } => {
                self.metrics.deltas_received += deltas.len() as u64;
                let changed = self.apply(&deltas).await;
                self.metrics.deltas_applied += changed;
                if changed > 0 {
                    let newest = deltas.iter().map(|d| d.record.max_hlc()).max();
                    let written = newest.map_or(0, Hlc::millis);
                    self.metrics.convergence_lag_ms =
                        self.clock.wall_millis().saturating_sub(written);
                }
                self.push_changes(hops.clamp(1, Arrival::REPAIR - 1)).await;
            }
            Message::AeDigest { level } => self.answer_digest(from, &level),
            Message::AeLeaves { ranges } => self.compare_leaves(from, &ranges).await,
            Message::AeWant { buckets } => self.send_buckets(&from, &buckets).await,
            Message::AeSummary { buckets } => self.reconcile(from, &buckets).await,
            Message::AeWantKeys { buckets } => self.send_wanted(&from, &buckets).await,
            Message::AeRecords { deltas } => {
                let settled_before = self
                    .clock
                    .wall_millis()
                    .saturating_sub(self.cfg.ae_settle.as_millis() as u64);
                let (settled, young): (Vec<Delta>, Vec<Delta>) = deltas
                    .into_iter()
                    .partition(|d| d.record.max_hlc().millis() <= settled_before);
                let repaired = self.apply(&settled).await;
                self.metrics.ae_repairs += repaired + self.apply(&young).await;
                self.metrics.ae_repairs_settled += repaired;
                if repaired > 0 {
                    self.ae_hurry();
                    self.last_settled_repair = Some(self.now);
                }
                self.push_changes(Arrival::REPAIR).await;
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
                if let Some(now) = self.hold(held) {
                    self.execute(now).await;
                }
            }
            Message::FetchRequest { id, keys } => {
                let mut deltas = Vec::with_capacity(keys.len());
                for key in keys.into_iter().take(self.cfg.ae_chunk.max(1)) {
                    match self.store.get_record(&key).await {
                        Ok(Some(record)) => deltas.push(Delta { key, record }),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "answering a fetch failed"),
                    }
                }
                self.send(from, Message::FetchResponse { id, deltas });
            }
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
                self.metrics.cas_repaired += self.apply(&ours).await;
                if done && let Some(held) = self.held.remove(&id) {
                    self.execute(held).await;
                }
            }
            Message::HaveRequest { id, key } => {
                let version = match self.store.get_record(&key).await {
                    Ok(r) => r.map(|r| r.context().clone()),
                    Err(e) => {
                        tracing::warn!(error = %e, "answering a have-request failed");
                        None
                    }
                };
                self.send(from, Message::HaveResponse { id, version });
            }
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

    /// Starts a compare-and-swap at the owner of `key` in `region`.
    pub async fn cas(
        &mut self,
        now: Duration,
        region: &str,
        key: Key,
        expected: Option<VersionVector>,
        new: Option<Bytes>,
    ) -> (CasStart, Vec<Outbound>) {
        self.set_now(now);
        let Some(owner) = self.owner(region, &key) else {
            return (
                CasStart::Done(Err(CasError::OwnerUnreachable {
                    region: region.to_string(),
                })),
                Vec::new(),
            );
        };
        if owner.node == self.me.node {
            if self.owner_grace() {
                return (
                    CasStart::Done(Err(CasError::OwnerUnreachable {
                        region: region.to_string(),
                    })),
                    Vec::new(),
                );
            }
            let id = self.next_cas_id;
            self.next_cas_id += 1;
            let held = HeldCas {
                deadline: now + self.cfg.cas_repair_timeout,
                waiting: BTreeSet::new(),
                key,
                expected,
                new,
                answer: HeldAnswer::Local { id },
            };
            let start = match self.hold(held) {
                None => CasStart::Pending(id),
                Some(h) => CasStart::Done(self.run_cas(&h.key, h.expected.as_ref(), h.new).await),
            };
            return (start, std::mem::take(&mut self.out));
        }
        let (id, waiting) = self.request(now + self.cfg.cas_timeout, region);
        self.pending.insert(id, waiting);
        self.send(
            owner,
            Message::CasRequest {
                id,
                key,
                expected,
                new,
            },
        );
        (CasStart::Pending(id), std::mem::take(&mut self.out))
    }

    /// Whether this node is still in its start-up grace and must not execute CASes as owner
    /// (see [`GossipConfig::owner_grace`]).
    fn owner_grace(&self) -> bool {
        !self.fresh && self.now < self.grace_ends()
    }

    /// When the start-up grace ends (or would, for a node that has none).
    fn grace_ends(&self) -> Duration {
        let longest = self.started.unwrap_or(self.now) + self.cfg.owner_grace;
        // A member of this region seen before the restart and not yet back in the view would
        // make this node take its keys for its own.
        let missing = self
            .expected
            .iter()
            .any(|n| !self.swim.iter_members().any(|m| m.id().node == *n));
        if missing {
            return longest;
        }
        // A member learned from a probe is one member; a seed's answer to the join is all.
        let joined = self.first_member_at.filter(|_| self.announced);
        joined.map_or(longest, |t| (t + Duration::from_secs(1)).min(longest))
    }

    /// Reads the members saved before a restart: announces itself to each (a seed that is
    /// sure to know this region) and expects those of its region back before owning keys.
    async fn restore_members(&mut self) {
        let key = REMEMBERED.key().finish();
        let peers: Vec<Peer> = match self.store.get(&key).await {
            Ok(Some(v)) => v
                .value
                .and_then(|b| postcard::from_bytes(&b).ok())
                .unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the remembered members failed");
                Vec::new()
            }
        };
        for p in peers.into_iter().filter(|p| p.node != self.me.node) {
            if p.region == self.me.region {
                self.expected.insert(p.node);
            }
            match self.swim.announce(p.clone(), &mut self.rt) {
                Ok(()) => self.announced = true,
                Err(e) => tracing::debug!(member = %p.addr, error = %e, "announce failed"),
            }
        }
        self.drain_swim();
    }

    /// Resumes pushing where the last run stopped: what was written and not pushed before a
    /// crash goes out now rather than waiting for anti-entropy. (A node whose feed was trimmed
    /// past it, or that never saved a cursor, starts at the feed's end.)
    async fn restore_cursor(&mut self) {
        match FeedConsumer::new(self.store.clone(), PUSH_CONSUMER)
            .position()
            .await
        {
            Ok(at) => {
                if at > 0 && at < self.cursor {
                    self.cursor = at;
                }
                // Saved within a second if it differs (a position never saved holds the
                // trimmer back).
                self.cursor_saved = (at, self.now);
            }
            Err(e) => tracing::warn!(error = %e, "reading the push cursor failed"),
        }
    }

    /// Saves the push cursor, when it moved, at most every [`CURSOR_SAVE_EVERY`].
    async fn save_cursor(&mut self) {
        let (saved, at) = self.cursor_saved;
        if self.cursor == saved || self.now < at + CURSOR_SAVE_EVERY {
            return;
        }
        match FeedConsumer::new(self.store.clone(), PUSH_CONSUMER)
            .commit(self.cursor)
            .await
        {
            Ok(()) => self.cursor_saved = (self.cursor, self.now),
            Err(e) => tracing::warn!(error = %e, "saving the push cursor failed"),
        }
    }

    /// Saves the members under [`REMEMBERED`] when they changed (node or address).
    async fn save_members(&mut self) {
        let members = self.members();
        let mut now: Vec<(NodeId, String)> =
            members.iter().map(|p| (p.node, p.addr.clone())).collect();
        now.sort();
        if now == self.saved || members.is_empty() {
            return;
        }
        let value = match postcard::to_allocvec(&members) {
            Ok(v) => Bytes::from(v),
            Err(_) => return,
        };
        match self.store.put(&REMEMBERED.key().finish(), value).await {
            Ok(_) => self.saved = now,
            Err(e) => tracing::warn!(error = %e, "saving the members failed"),
        }
    }

    /// Whether a CAS owned here is still preceded by a read of its key from the region (see
    /// [`GossipConfig::cas_repair`]): until `cas_repair` has passed since the start-up grace
    /// ended and since anti-entropy last found a write this replica had missed. A fresh node
    /// too: its empty replica is the stalest.
    fn cas_repairing(&self) -> bool {
        let since = self
            .last_settled_repair
            .map_or(self.grace_ends(), |t| t.max(self.grace_ends()));
        self.now < since + self.cfg.cas_repair
    }

    /// Whether a CAS this node owns may run straight on its store, outside this core (the
    /// transport's fast path): out of the start-up grace and of the repair window.
    pub fn cas_direct(&self) -> bool {
        !self.owner_grace() && !self.cas_repairing()
    }

    /// Inside the repair window, with other live members in the region: asks them for the
    /// CAS's key and holds it until they answer (`None`). Otherwise gives it back to run now.
    fn hold(&mut self, mut held: HeldCas) -> Option<HeldCas> {
        let peers: Vec<Peer> = if self.cas_repairing() {
            self.members()
                .into_iter()
                .filter(|p| p.region == self.me.region)
                .collect()
        } else {
            Vec::new()
        };
        if peers.is_empty() {
            return Some(held);
        }
        let id = self.next_cas_id;
        self.next_cas_id += 1;
        self.metrics.cas_repair_reads += 1;
        held.waiting = peers.iter().map(|p| p.node).collect();
        for peer in peers {
            let keys = vec![held.key.clone()];
            self.send(peer, Message::FetchRequest { id, keys });
        }
        self.held.insert(id, held);
        None
    }

    /// Executes a CAS owned here on the store and pushes its result.
    async fn run_cas(
        &mut self,
        key: &Key,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome, CasError> {
        let r = self
            .store
            .cas(key, expected, new)
            .await
            .map_err(|e: StoreError| CasError::Failed(e.to_string()));
        self.push_changes(Arrival::LOCAL).await;
        r
    }

    /// Executes a CAS owned here and sends or records its outcome.
    async fn execute(&mut self, held: HeldCas) {
        let r = self
            .run_cas(&held.key, held.expected.as_ref(), held.new)
            .await;
        match held.answer {
            HeldAnswer::Local { id } => self.completions.push((id, r)),
            HeldAnswer::Remote { to, id } => {
                let reply = match r {
                    Ok(CasOutcome::Applied(v)) => CasReply::Applied { version: v.version },
                    Ok(CasOutcome::Conflict(cur)) => CasReply::Conflict {
                        value: cur.as_ref().and_then(|v| v.value.clone()),
                        version: cur.map(|v| v.version),
                    },
                    Err(CasError::Failed(reason)) => CasReply::Failed { reason },
                    Err(e) => CasReply::Failed {
                        reason: e.to_string(),
                    },
                };
                self.send(to, Message::CasResponse { id, reply });
            }
        }
    }

    /// Runs the held CASes whose silent members ran out of time.
    /// Fails the held CASes whose read of the region ran out of time: a member that does not
    /// answer (dead, not yet declared down) may be the one holding the key's newest value, so
    /// executing without it could apply a CAS against a stale one. The caller sees the owner
    /// fail (a 503 to a client) and may retry once the member answers or is declared down.
    fn fail_expired_holds(&mut self) {
        let now = self.now;
        let expired: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(held) = self.held.remove(&id) else {
                continue;
            };
            self.metrics.cas_repair_timeouts += 1;
            let reason = format!(
                "{} member(s) of region {} did not answer the read before the CAS",
                held.waiting.len(),
                self.me.region
            );
            match held.answer {
                HeldAnswer::Local { id } => {
                    self.completions.push((id, Err(CasError::Failed(reason))));
                }
                HeldAnswer::Remote { to, id } => self.send(
                    to,
                    Message::CasResponse {
                        id,
                        reply: CasReply::Failed { reason },
                    },
                ),
            }
        }
    }

    /// The owner of `key` in `region`: the live member there (this node included) with the
    /// highest rendezvous score.
    pub fn owner(&self, region: &str, key: &Key) -> Option<Peer> {
        let me = std::iter::once(&self.me);
        rendezvous_owner(
            self.swim.iter_members().map(|m| m.id()).chain(me),
            region,
            key,
        )
        .cloned()
    }

    /// A new request id (unique at this node across CASes and calls) and what waits for its
    /// answer until `deadline`.
    fn request(&mut self, deadline: Duration, region: &str) -> (u64, PendingCas) {
        let id = self.next_cas_id;
        self.next_cas_id += 1;
        let waiting = PendingCas {
            deadline,
            region: region.to_string(),
        };
        (id, waiting)
    }

    fn send(&mut self, to: Peer, msg: Message) {
        self.metrics.messages_out += 1;
        self.out.push(Outbound { to, msg });
    }

    fn drain_swim(&mut self) {
        while let Some((to, data)) = self.rt.to_send() {
            self.send(to, Message::Swim(data.to_vec()));
        }
        while let Some((after, timer)) = self.rt.to_schedule() {
            self.timer_seq += 1;
            self.timers
                .insert((self.now + after, self.timer_seq), timer);
        }
        while let Some(n) = self.rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(p) => {
                    tracing::info!(member = %p.addr, region = %p.region, "member up");
                    self.ae_hurry();
                    // A (re)joining member may lack tombstones: give it a whole grace to catch up.
                    self.settled_since = Some(self.now);
                    self.first_member_at.get_or_insert(self.now);
                }
                OwnedNotification::MemberDown(p) => {
                    tracing::info!(member = %p.addr, region = %p.region, "member down");
                    self.ae_hurry();
                    self.settled_since = None;
                }
                OwnedNotification::Rejoin(p) => {
                    tracing::info!(me = %p.addr, incarnation = p.incarnation, "rejoined");
                    self.me = p;
                }
                _ => {}
            }
        }
    }

    async fn apply(&mut self, deltas: &[Delta]) -> u64 {
        // A tombstone past the grace period is garbage — unless it deletes something still live
        // here (this node missed the delete): only then is it taken.
        let horizon = self.gc_horizon();
        let old = |d: &Delta| d.record.is_tombstone() && d.record.max_hlc() < horizon;
        let mut kept: Vec<Delta> = Vec::new();
        let deltas = if deltas.iter().any(old) {
            for d in deltas {
                if old(d) {
                    let live_here = matches!(
                        self.store.get_record(&d.key).await,
                        Ok(Some(r)) if !r.is_tombstone()
                    );
                    if !live_here {
                        continue;
                    }
                }
                kept.push(d.clone());
            }
            &kept[..]
        } else {
            deltas
        };
        match self.store.apply(deltas).await {
            Ok(r) => r.changed as u64,
            Err(e) => {
                tracing::error!(error = %e, "applying remote records failed");
                0
            }
        }
    }

    /// Peers for one push: one in another region (if any is live), the rest preferably here.
    fn push_targets(&mut self) -> Vec<Peer> {
        let members = self.members();
        let (local, remote): (Vec<Peer>, Vec<Peer>) = members
            .into_iter()
            .partition(|p| p.region == self.me.region);
        let n = (local.len() + remote.len() + 1) as f64;
        let fanout = self.cfg.fanout.max((n + 1.0).ln().ceil() as usize + 1);
        let mut chosen: Vec<Peer> = remote.choose(&mut self.rng).into_iter().cloned().collect();
        let want = fanout.saturating_sub(chosen.len());
        chosen.extend(local.sample(&mut self.rng, want).cloned());
        if chosen.len() < fanout {
            let more: Vec<Peer> = remote
                .iter()
                .filter(|p| !chosen.contains(p))
                .cloned()
                .collect();
            let want = fanout - chosen.len();
            chosen.extend(more.sample(&mut self.rng, want).cloned());
        }
        chosen
    }

    /// Pushes what the change feed holds past the cursor. `arrived` says how those changes came:
    /// [`Arrival::LOCAL`], after that many push hops, or [`Arrival::REPAIR`].
    async fn push_changes(&mut self, arrived: u8) {
        loop {
            let changes = match self.store.changes(self.cursor, self.cfg.push_batch).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "reading the change feed failed");
                    return;
                }
            };
            let Some(last) = changes.last() else { return };
            self.cursor = last.seq;
            let keys: BTreeSet<Key> = changes.into_iter().map(|c| c.key).collect();
            let mut deltas = Vec::with_capacity(keys.len());
            for key in keys {
                match self.store.get_record(&key).await {
                    Ok(Some(record)) => deltas.push(Delta { key, record }),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "reading a changed record failed"),
                }
            }
            if deltas.is_empty() {
                continue;
            }
            if self.cfg.record_arrivals {
                let at = self.now;
                self.arrivals.extend(deltas.iter().map(|d| Arrival {
                    key: d.key.clone(),
                    hops: arrived,
                    at,
                }));
            }
            let hops = if arrived == Arrival::REPAIR {
                1
            } else {
                arrived.saturating_add(1)
            };
            for to in self.push_targets() {
                self.metrics.deltas_pushed += deltas.len() as u64;
                self.send(
                    to,
                    Message::Push {
                        deltas: deltas.clone(),
                        hops,
                    },
                );
            }
        }
    }

    /// Tombstones last written before this are garbage (see the module documentation).
    fn gc_horizon(&self) -> Hlc {
        let wall = self.clock.wall_millis();
        Hlc::new(wall.saturating_sub(self.cfg.gc_grace.as_millis() as u64), 0)
    }

    /// Notes since when every known member has been alive (see [`GossipNode::collectable`]).
    fn watch_settled(&mut self) {
        let all_alive = self
            .swim
            .iter_membership_state()
            .all(|m| m.state() == foca::State::Alive);
        if all_alive {
            self.settled_since.get_or_insert(self.now);
        } else {
            self.settled_since = None;
        }
    }

    /// Whether tombstones older than the grace period may be collected now: every known member
    /// has been alive, with no member joining or returning, for a whole grace period (time for
    /// anti-entropy to bring each of them every tombstone). The reaper ([`crate::reaper`]) asks
    /// before each page; a node that has not yet been given a time says no.
    pub fn collectable(&self) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        // Not before the node has had a whole grace to learn its members.
        self.now.saturating_sub(started) >= self.cfg.gc_grace
            && self
                .settled_since
                .is_some_and(|since| self.now.saturating_sub(since) >= self.cfg.gc_grace)
    }

    /// Back to anti-entropy every `ae_interval`, starting within one: there is something to
    /// repair, or a member came or went.
    fn ae_hurry(&mut self) {
        self.ae_idle_rounds = 0;
        self.next_ae = self.next_ae.min(self.now + self.cfg.ae_interval);
    }

    async fn start_anti_entropy(&mut self) {
        let members = self.members();
        let (local, remote): (Vec<&Peer>, Vec<&Peer>) =
            members.iter().partition(|p| p.region == self.me.region);
        // Mostly a near peer; a far one every third round on average, and whenever no near one.
        let pick = if remote.is_empty() || (!local.is_empty() && self.rng.random_ratio(2, 3)) {
            local.choose(&mut self.rng)
        } else {
            remote.choose(&mut self.rng)
        };
        let Some(peer) = pick.map(|p| (*p).clone()) else {
            return;
        };
        self.metrics.ae_rounds += 1;
        let level = self.store.digests().level(AE_DEPTH);
        self.send(peer, Message::AeDigest { level });
    }

    fn answer_digest(&mut self, from: Peer, theirs: &[u64]) {
        let tree = self.store.digests();
        let mine = tree.level(AE_DEPTH);
        if theirs.len() != mine.len() {
            tracing::warn!(from = %from.addr, "anti-entropy digest of the wrong shape");
            return;
        }
        let differing: Vec<usize> = (0..mine.len()).filter(|&i| mine[i] != theirs[i]).collect();
        if differing.is_empty() {
            return;
        }
        // Start at a random differing range so repeated rounds cover all of them.
        let start = self.rng.random_range(0..differing.len());
        let ranges = differing
            .iter()
            .cycle()
            .skip(start)
            .take(differing.len().min(self.cfg.ae_max_ranges))
            .map(|&r| {
                let leaves = tree.leaves()[r * RANGE_WIDTH..(r + 1) * RANGE_WIDTH].to_vec();
                (r as u32, leaves)
            })
            .collect();
        self.send(from, Message::AeLeaves { ranges });
    }

    async fn compare_leaves(&mut self, from: Peer, ranges: &[(u32, Vec<u64>)]) {
        let tree = self.store.digests();
        let mut buckets = Vec::new();
        for (r, theirs) in ranges {
            let r = *r as usize;
            if theirs.len() != RANGE_WIDTH || (r + 1) * RANGE_WIDTH > LEAVES {
                tracing::warn!(from = %from.addr, "anti-entropy leaves of the wrong shape");
                return;
            }
            let mine = &tree.leaves()[r * RANGE_WIDTH..(r + 1) * RANGE_WIDTH];
            buckets.extend(
                (0..RANGE_WIDTH)
                    .filter(|&i| mine[i] != theirs[i])
                    .map(|i| (r * RANGE_WIDTH + i) as u32),
            );
        }
        if buckets.is_empty() {
            return;
        }
        self.send_summaries(&from, &buckets).await;
    }

    /// Sends `to` this node's summaries of `buckets`: whole buckets while `ae_max_summary`
    /// allows (the first one cut at it if it is larger), `ae_summary_chunk` keys a message.
    async fn send_summaries(&mut self, to: &Peer, buckets: &[u32]) {
        let mut budget = self.cfg.ae_max_summary;
        let (mut batch, mut keys) = (Vec::new(), 0);
        for &b in buckets {
            if budget == 0 || b as usize >= LEAVES {
                break;
            }
            let Some((mine, complete)) = self.read_bucket(b, budget).await else {
                break;
            };
            if !batch.is_empty() && keys + mine.len() > self.cfg.ae_summary_chunk {
                let buckets = std::mem::take(&mut batch);
                self.send(to.clone(), Message::AeSummary { buckets });
                keys = 0;
            }
            budget -= mine.len();
            keys += mine.len();
            self.metrics.ae_summary_keys_sent += mine.len() as u64;
            batch.push(reconcile::summarize(b, &mine, complete));
        }
        if !batch.is_empty() {
            self.send(to.clone(), Message::AeSummary { buckets: batch });
        }
    }

    /// Up to `limit` of this node's (key, entry hash) pairs of `bucket`, in key order, and
    /// whether they are all of them; `None` (logged) if the store fails.
    async fn read_bucket(&self, bucket: u32, limit: usize) -> Option<(Vec<(Key, u64)>, bool)> {
        let mut out = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let want = (limit - out.len()).min(BUCKET_PAGE);
            if want == 0 {
                return Some((out, false));
            }
            match self.store.bucket_hashes(bucket, after.as_ref(), want).await {
                Ok((page, next)) => {
                    out.extend(page);
                    match next {
                        Some(n) => after = Some(n),
                        None => return Some((out, true)),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading a bucket's hashes failed");
                    return None;
                }
            }
        }
    }

    /// Answers an asker's summaries: ships this node's records that differ from (or are missing
    /// in) the asker's, and asks for the asker's that differ from (or are missing in) its own,
    /// at most `ae_max_records` each way.
    async fn reconcile(&mut self, from: Peer, summaries: &[BucketSummary]) {
        let (mut send, mut wants, mut wanted) = (Vec::new(), Vec::new(), 0);
        for s in summaries {
            if s.bucket as usize >= LEAVES {
                tracing::warn!(from = %from.addr, "anti-entropy summary of a bucket out of range");
                return;
            }
            let Some((mine, _)) = self.read_bucket(s.bucket, self.cfg.ae_max_summary).await else {
                break;
            };
            let mut plan = reconcile::plan(&mine, s);
            plan.send
                .truncate(self.cfg.ae_max_records.saturating_sub(send.len()));
            plan.want
                .truncate(self.cfg.ae_max_records.saturating_sub(wanted));
            send.extend(plan.send);
            if !plan.want.is_empty() {
                wanted += plan.want.len();
                wants.push((s.bucket, plan.want));
            }
        }
        self.send_records(&from, &send).await;
        if !wants.is_empty() {
            self.send(from, Message::AeWantKeys { buckets: wants });
        }
    }

    /// Ships `to` this node's records of the keys it asked for by hash, at most `ae_max_records`.
    async fn send_wanted(&mut self, to: &Peer, wanted: &[(u32, Vec<u64>)]) {
        let mut keys = Vec::new();
        for (b, hashes) in wanted {
            if *b as usize >= LEAVES {
                tracing::warn!(from = %to.addr, "anti-entropy want of a bucket out of range");
                return;
            }
            let hashes: HashSet<u64> = hashes.iter().copied().collect();
            let Some((mine, _)) = self.read_bucket(*b, self.cfg.ae_max_summary).await else {
                break;
            };
            keys.extend(
                mine.into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| hashes.contains(&reconcile::key_hash(k.as_bytes()))),
            );
        }
        keys.truncate(self.cfg.ae_max_records);
        self.send_records(to, &keys).await;
    }

    /// Ships `to` this node's records of `keys`, `ae_chunk` a message.
    async fn send_records(&mut self, to: &Peer, keys: &[Key]) {
        for chunk in keys.chunks(self.cfg.ae_chunk.max(1)) {
            let mut deltas = Vec::with_capacity(chunk.len());
            for key in chunk {
                match self.store.get_record(key).await {
                    Ok(Some(record)) => deltas.push(Delta {
                        key: key.clone(),
                        record,
                    }),
                    // Purged since it was listed.
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "reading a record to repair failed");
                        return;
                    }
                }
            }
            if !deltas.is_empty() {
                self.metrics.ae_records_sent += deltas.len() as u64;
                self.send(to.clone(), Message::AeRecords { deltas });
            }
        }
    }

    /// Ships this node's records of `buckets` to `to`, chunked, capped per exchange (the
    /// answer to [`Message::AeWant`] of earlier builds).
    async fn send_buckets(&mut self, to: &Peer, buckets: &[u32]) {
        let mut budget = self.cfg.ae_max_records;
        let mut chunk: Vec<Delta> = Vec::new();
        'buckets: for &b in buckets {
            if b as usize >= LEAVES {
                continue;
            }
            let mut after: Option<Key> = None;
            loop {
                let limit = self.cfg.ae_chunk.min(budget);
                if limit == 0 {
                    break 'buckets;
                }
                let (page, next) = match self.store.bucket(b, after.as_ref(), limit).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "reading a bucket failed");
                        break 'buckets;
                    }
                };
                budget -= page.len();
                chunk.extend(page);
                if chunk.len() >= self.cfg.ae_chunk {
                    self.metrics.ae_records_sent += chunk.len() as u64;
                    let deltas = std::mem::take(&mut chunk);
                    self.send(to.clone(), Message::AeRecords { deltas });
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        if !chunk.is_empty() {
            self.metrics.ae_records_sent += chunk.len() as u64;
            self.send(to.clone(), Message::AeRecords { deltas: chunk });
        }
    }
}

/// Removes the requests past their deadline; returns their ids and owner regions.
fn expire(pending: &mut BTreeMap<u64, PendingCas>, now: Duration) -> Vec<(u64, String)> {
    let expired: Vec<u64> = pending
        .iter()
        .filter(|(_, p)| p.deadline <= now)
        .map(|(id, _)| *id)
        .collect();
    expired
        .into_iter()
        .filter_map(|id| pending.remove(&id).map(|p| (id, p.region)))
        .collect()
}

/// Among `members`, the one of `region` with the highest rendezvous score for `key`: the owner
/// of the key's CASes and calls there.
pub fn rendezvous_owner<'a>(
    members: impl Iterator<Item = &'a Peer>,
    region: &str,
    key: &Key,
) -> Option<&'a Peer> {
    members.filter(|p| p.region == region).max_by_key(|p| {
        (
            xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), p.node.0),
            p.node,
        )
    })
}

fn reply_to_outcome(reply: CasReply) -> Result<CasOutcome, CasError> {
    match reply {
        CasReply::Applied { version } => Ok(CasOutcome::Applied(Versioned {
            value: None,
            version,
            hlc: starling_store::Hlc::ZERO,
            siblings: 1,
        })),
        CasReply::Conflict { value, version } => {
            Ok(CasOutcome::Conflict(version.map(|version| Versioned {
                value,
                version,
                hlc: starling_store::Hlc::ZERO,
                siblings: 1,
            })))
        }
        CasReply::Failed { reason } => Err(CasError::Failed(reason)),
    }
}
