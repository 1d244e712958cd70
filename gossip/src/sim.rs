//! A seeded discrete-event simulation of a cluster: many [`GossipNode`]s, one clock, one WAN.
//!
//! Time is virtual and only advances from event to event, so minutes of cluster life run in
//! milliseconds and every run with the same seed is identical. The nodes' clocks read the
//! virtual time too (from a fixed epoch), so stamps and tombstone ages follow the simulation. Each node has a memory store; every
//! message is sealed into a real frame (HMAC and all), routed through the [`Wan`] (latency,
//! jitter, loss, partitions), optionally duplicated and reordered, then opened by the receiver.
//! Nodes can be killed (their store survives, as a disk would) and restarted with a new
//! incarnation. Tests build scenarios from these operations.

use crate::node::{GossipConfig, GossipMetrics, GossipNode, Outbound};
use crate::peer::Peer;
use crate::wan::{Route, Wan};
use crate::wire::{Envelope, FrameCodec};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use starling_store::codec::encode_record;
use starling_store::digest::LEAVES;
use starling_store::{HlcClock, Key, Limits, NodeId, Store, StoreExt, VersionVector, open_memory};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Wall-clock time at virtual time zero: 2026-01-01T00:00:00Z, so runs are reproducible.
const EPOCH_MS: u64 = 1_767_225_600_000;

/// Settings of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random choice (network and nodes).
    pub seed: u64,
    /// How often each node ticks.
    pub tick: Duration,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Extra random delay (0..=this) per message, which reorders them.
    pub reorder: Duration,
    /// Protocol settings of every node.
    pub gossip: GossipConfig,
}

impl SimConfig {
    /// WAN protocol settings, 100 ms ticks, no duplication or reordering.
    pub fn new(seed: u64, expected_nodes: u32) -> Self {
        SimConfig {
            seed,
            tick: Duration::from_millis(100),
            duplicate: 0.0,
            reorder: Duration::ZERO,
            // The scenarios start every node at time 0 and CAS at once; the start-up grace is
            // exercised by the multi-process kill -9 test instead.
            gossip: GossipConfig {
                owner_grace: Duration::ZERO,
                ..GossipConfig::wan(expected_nodes)
            },
        }
    }
}

/// Traffic counters of a simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames delivered.
    pub delivered: u64,
    /// Frames lost to loss or partitions, or sent to dead nodes.
    pub dropped: u64,
    /// Frames refused by the receiver (bad secret, malformed).
    pub refused: u64,
    /// Bytes of delivered frames.
    pub bytes: u64,
    /// Bytes of delivered frames between regions.
    pub wan_bytes: u64,
    /// Frames refused for a protocol version the receiver does not accept.
    pub incompatible: u64,
    /// Frames delivered in clear (below [`crate::wire::ENCRYPTED`]).
    pub in_clear: u64,
}

/// The simulated cluster's secret.
const SECRET: &[u8] = b"simulated cluster secret";

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: Duration,
    seq: u64,
    kind: EventKind,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    Deliver { to: String, frame: Bytes },
    Tick { addr: String, incarnation: u64 },
}

struct SimNode {
    peer: Peer,
    store: Arc<dyn Store>,
    clock: Arc<HlcClock>,
    core: Option<GossipNode>,
    /// Its frame codec: the protocol versions it speaks and accepts, and what it heard.
    codec: FrameCodec,
    /// The reaper's counters (they outlive restarts; its position is in the store).
    reaper: Arc<crate::reaper::ReaperStats>,
    /// When the reaper next runs.
    next_gc: Duration,
}

/// The simulated cluster.
pub struct Sim {
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Event>>,
    nodes: BTreeMap<String, SimNode>,
    wan: Wan,
    rng: SmallRng,
    codec: FrameCodec,
    cfg: SimConfig,
    stats: NetStats,
    /// The wall clock every node reads: the start epoch plus virtual time.
    wall: Arc<AtomicU64>,
    epoch_ms: u64,
    next_cas: BTreeMap<(String, u64), Option<Result<starling_store::CasOutcome, crate::CasError>>>,
    durable: BTreeMap<(String, u64), Result<(), crate::NotDurable>>,
    calls: BTreeMap<(String, u64), Option<Result<Bytes, crate::CasError>>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// An empty cluster over `wan`.
    pub fn new(cfg: SimConfig, wan: Wan) -> Self {
        Sim {
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: BTreeMap::new(),
            wan,
            rng: SmallRng::seed_from_u64(cfg.seed),
            codec: FrameCodec::new(SECRET),
            cfg,
            stats: NetStats::default(),
            wall: Arc::new(AtomicU64::new(EPOCH_MS)),
            epoch_ms: EPOCH_MS,
            next_cas: BTreeMap::new(),
            durable: BTreeMap::new(),
            calls: BTreeMap::new(),
        }
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Traffic so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// The WAN, to cut, heal or degrade links.
    pub fn wan_mut(&mut self) -> &mut Wan {
        &mut self.wan
    }

    /// The codec of the cluster (to forge frames in tests).
    pub fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    /// Addresses of all nodes, dead or alive.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Addresses of the live nodes.
    pub fn live(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.core.is_some())
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Addresses of the nodes of a region.
    pub fn region(&self, region: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.peer.region == region)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// A node's store (alive or dead).
    pub fn store(&self, addr: &str) -> Arc<dyn Store> {
        self.node(addr).store.clone()
    }

    /// A node's reaper counters.
    pub fn reaper_stats(&self, addr: &str) -> Arc<crate::reaper::ReaperStats> {
        self.node(addr).reaper.clone()
    }

    /// A live node's protocol counters.
    pub fn metrics(&self, addr: &str) -> Option<GossipMetrics> {
        self.node(addr).core.as_ref().map(|c| c.metrics().clone())
    }

    /// Every member a live node knows, with its state.
    pub fn membership_seen_by(&self, addr: &str) -> Vec<(Peer, crate::MemberState)> {
        self.node(addr)
            .core
            .as_ref()
            .map(|c| c.membership())
            .unwrap_or_default()
    }

    /// The members a live node sees.
    pub fn members_seen_by(&self, addr: &str) -> Vec<Peer> {
        self.node(addr)
            .core
            .as_ref()
            .map(|c| c.members())
            .unwrap_or_default()
    }

    /// Arrivals a live node logged since the last call (needs `record_arrivals`).
    pub fn take_arrivals(&mut self, addr: &str) -> Vec<crate::node::Arrival> {
        self.nodes
            .get_mut(addr)
            .and_then(|n| n.core.as_mut())
            .map(|c| c.take_arrivals())
            .unwrap_or_default()
    }

    /// Who a live node thinks owns `key` in `region`.
    pub fn owner_of(&self, addr: &str, region: &str, key: &Key) -> Option<Peer> {
        self.node(addr)
            .core
            .as_ref()
            .and_then(|c| c.owner(region, key))
    }

    fn node(&self, addr: &str) -> &SimNode {
        match self.nodes.get(addr) {
            Some(n) => n,
            None => panic!("no simulated node {addr}"),
        }
    }

    fn push(&mut self, at: Duration, kind: EventKind) {
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
        }));
    }

    /// Adds a node `name` in `region` and has it join through up to three live nodes.
    pub async fn add_node(&mut self, region: &str, name: &str) -> String {
        let c = FrameCodec::new(SECRET);
        self.add_node_speaking(region, name, c.speaks(), c.accepts())
            .await
    }

    /// [`Sim::add_node`] for a build that speaks protocol version `speaks` and accepts
    /// `accepts`.
    pub async fn add_node_speaking(
        &mut self,
        region: &str,
        name: &str,
        speaks: u8,
        accepts: std::ops::RangeInclusive<u8>,
    ) -> String {
        let node = NodeId::from_names(region, name);
        let clock = Arc::new(HlcClock::manual(self.wall.clone()));
        let store = open_memory(node, clock.clone(), Limits::default());
        let peer = Peer {
            node,
            region: region.to_string(),
            addr: name.to_string(),
            incarnation: 1,
        };
        self.nodes.insert(
            name.to_string(),
            SimNode {
                peer,
                store,
                clock,
                core: None,
                codec: FrameCodec::with_versions(SECRET, speaks, accepts),
                reaper: Arc::default(),
                next_gc: Duration::ZERO,
            },
        );
        self.start(name).await;
        name.to_string()
    }

    async fn start(&mut self, addr: &str) {
        self.start_with(addr, true).await;
    }

    async fn start_with(&mut self, addr: &str, with_seeds: bool) {
        let seeds: Vec<Peer> = if !with_seeds {
            Vec::new()
        } else {
            let live: Vec<Peer> = self
                .nodes
                .values()
                .filter(|n| n.core.is_some() && n.peer.addr != addr)
                .map(|n| n.peer.clone())
                .collect();
            let mut picked = Vec::new();
            for _ in 0..3.min(live.len()) {
                let i = self.rng.random_range(0..live.len());
                if !picked.contains(&live[i]) {
                    picked.push(live[i].clone());
                }
            }
            picked
        };
        let seed = self.rng.random::<u64>();
        let n = self
            .nodes
            .get_mut(addr)
            .unwrap_or_else(|| panic!("no node {addr}"));
        let mut core = GossipNode::new(
            n.peer.clone(),
            self.cfg.gossip.clone(),
            n.store.clone(),
            n.clock.clone(),
            seed,
        );
        let out = core.join(self.now, &seeds);
        n.next_gc = self.now + self.cfg.gossip.gc_interval;
        let incarnation = n.peer.incarnation;
        n.core = Some(core);
        let from = n.peer.clone();
        let first =
            Duration::from_millis(self.rng.random_range(1..=self.cfg.tick.as_millis() as u64));
        self.push(
            self.now + first,
            EventKind::Tick {
                addr: addr.to_string(),
                incarnation,
            },
        );
        self.dispatch(&from, out);
    }

    /// Sets the protocol versions a node speaks and accepts, from now on (a rolling upgrade:
    /// [`Sim::kill`], this, [`Sim::restart`]); it forgets what it heard.
    pub fn set_protocol(&mut self, addr: &str, speaks: u8, accepts: std::ops::RangeInclusive<u8>) {
        if let Some(n) = self.nodes.get_mut(addr) {
            n.codec = FrameCodec::with_versions(SECRET, speaks, accepts);
        }
    }

    /// Makes a node this build, in the given encryption mode, from now on (as
    /// [`Sim::set_protocol`]).
    pub fn set_encryption(&mut self, addr: &str, mode: crate::wire::Encryption) {
        if let Some(n) = self.nodes.get_mut(addr) {
            n.codec = FrameCodec::with_encryption(SECRET, mode);
        }
    }

    /// Stops a node abruptly; its store survives.
    pub fn kill(&mut self, addr: &str) {
        if let Some(n) = self.nodes.get_mut(addr) {
            n.core = None;
        }
    }

    /// Restarts a killed node with a new incarnation over its old store.
    pub async fn restart(&mut self, addr: &str) {
        if let Some(n) = self.nodes.get_mut(addr) {
            if n.core.is_some() {
                return;
            }
            n.peer.incarnation += 1;
        }
        self.start(addr).await;
    }

    /// Restarts a killed node like [`Sim::restart`] but with no seeds: it can only find the
    /// cluster through the members it remembers from before.
    pub async fn restart_without_seeds(&mut self, addr: &str) {
        if let Some(n) = self.nodes.get_mut(addr) {
            if n.core.is_some() {
                return;
            }
            n.peer.incarnation += 1;
        }
        self.start_with(addr, false).await;
    }

    /// Kills every node of a region.
    pub fn kill_region(&mut self, region: &str) {
        for a in self.region(region) {
            self.kill(&a);
        }
    }

    /// Restarts every node of a region.
    pub async fn restart_region(&mut self, region: &str) {
        for a in self.region(region) {
            self.restart(&a).await;
        }
    }

    /// A local write on a live node, pushed at once. Returns the new version.
    pub async fn write(&mut self, addr: &str, key: &Key, value: &[u8]) -> VersionVector {
        let store = self.store(addr);
        let v = store
            .put(key, Bytes::copy_from_slice(value))
            .await
            .unwrap_or_else(|e| panic!("write on {addr}: {e}"));
        self.after_local_write(addr).await;
        v
    }

    /// A local write acknowledged only once `regions` regions hold it: returns a handle for
    /// [`Sim::durable_result`].
    pub async fn write_durable(
        &mut self,
        addr: &str,
        key: &Key,
        value: &[u8],
        regions: usize,
    ) -> (String, u64) {
        let version = self.write(addr, key, value).await;
        let now = self.now;
        let (from, core) = self.live_core(addr);
        let (id, out) = core.wait_durable(now, key.clone(), version, regions);
        self.dispatch(&from, out);
        self.collect_completions(addr);
        (addr.to_string(), id)
    }

    /// A live node's identity and protocol core; panics (a test bug) if it is unknown or dead.
    fn live_core(&mut self, addr: &str) -> (Peer, &mut GossipNode) {
        let n = self
            .nodes
            .get_mut(addr)
            .unwrap_or_else(|| panic!("no node {addr}"));
        let core = n.core.as_mut().unwrap_or_else(|| panic!("{addr} is dead"));
        (n.peer.clone(), core)
    }

    /// The outcome of a durable write, once known.
    pub fn durable_result(&self, handle: &(String, u64)) -> Option<Result<(), crate::NotDurable>> {
        self.durable.get(handle).cloned()
    }

    /// Tells a live node that its store has new local writes.
    pub async fn after_local_write(&mut self, addr: &str) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(addr) else {
            return;
        };
        let from = n.peer.clone();
        let Some(core) = n.core.as_mut() else { return };
        let out = core.on_local_writes(now).await;
        self.dispatch(&from, out);
    }

    /// Starts a routed CAS at a live node; poll [`Sim::cas_result`] with the returned handle.
    pub async fn cas(
        &mut self,
        addr: &str,
        region: &str,
        key: Key,
        expected: Option<VersionVector>,
        new: Option<Bytes>,
    ) -> (String, u64) {
        let now = self.now;
        let (from, core) = self.live_core(addr);
        let (start, out) = core.cas(now, region, key, expected, new).await;
        let handle = match start {
            crate::CasStart::Done(r) => {
                self.seq += 1;
                let h = (addr.to_string(), u64::MAX - self.seq);
                self.next_cas.insert(h.clone(), Some(r));
                h
            }
            crate::CasStart::Pending(id) => {
                let h = (addr.to_string(), id);
                self.next_cas.insert(h.clone(), None);
                h
            }
        };
        self.dispatch(&from, out);
        handle
    }

    /// The result of a CAS started with [`Sim::cas`], once it is known.
    pub fn cas_result(
        &mut self,
        handle: &(String, u64),
    ) -> Option<Result<starling_store::CasOutcome, crate::CasError>> {
        self.next_cas.get(handle).cloned().flatten()
    }

    /// Starts a routed call ([`GossipNode::call`]) at a live node; poll [`Sim::call_result`].
    /// Every simulated node serves one service, [`SIM_ECHO`]: it answers `name:body`, where
    /// `name` is its own (so a test sees which node ran it); any other service fails.
    pub fn call(
        &mut self,
        addr: &str,
        region: &str,
        route: &Key,
        service: &str,
        body: Bytes,
    ) -> (String, u64) {
        let now = self.now;
        let (from, core) = self.live_core(addr);
        let (start, out) = core.call(now, region, route, service, &body);
        self.seq += 1;
        let local = (addr.to_string(), u64::MAX - self.seq);
        let handle = match start {
            crate::CallStart::Local => {
                self.calls.insert(
                    local.clone(),
                    Some(sim_serve(addr, service, &body).map_err(crate::CasError::Failed)),
                );
                local
            }
            crate::CallStart::Failed(e) => {
                self.calls.insert(local.clone(), Some(Err(e)));
                local
            }
            crate::CallStart::Pending(id) => {
                let h = (addr.to_string(), id);
                self.calls.insert(h.clone(), None);
                h
            }
        };
        self.dispatch(&from, out);
        handle
    }

    /// The result of a call started with [`Sim::call`], once it is known.
    pub fn call_result(&self, handle: &(String, u64)) -> Option<Result<Bytes, crate::CasError>> {
        self.calls.get(handle).cloned().flatten()
    }

    fn collect_completions(&mut self, addr: &str) {
        let Some(core) = self.nodes.get_mut(addr).and_then(|n| n.core.as_mut()) else {
            return;
        };
        for (id, r) in core.take_completions() {
            self.next_cas.insert((addr.to_string(), id), Some(r));
        }
        for (id, r) in core.take_durable() {
            self.durable.insert((addr.to_string(), id), r);
        }
        for (id, r) in core.take_call_completions() {
            self.calls.insert((addr.to_string(), id), Some(r));
        }
        let mut answers = Vec::new();
        for c in core.take_incoming_calls() {
            let reply = sim_serve(addr, &c.service, &c.body);
            answers.extend(core.answer_call(c.from, c.id, reply));
        }
        if !answers.is_empty()
            && let Some(me) = self.nodes.get(addr).map(|n| n.peer.clone())
        {
            self.dispatch(&me, answers);
        }
    }

    /// Delivers raw bytes as a frame to a node, as an attacker or a broken peer would.
    pub fn inject(&mut self, to: &str, frame: Bytes) {
        self.push(
            self.now,
            EventKind::Deliver {
                to: to.to_string(),
                frame,
            },
        );
    }

    fn dispatch(&mut self, from: &Peer, out: Vec<Outbound>) {
        for Outbound { to, msg } in out {
            // Seeds may be known by address only: the simulation knows every region.
            let Some(to_region) = self.nodes.get(&to.addr).map(|n| n.peer.region.clone()) else {
                self.stats.dropped += 1;
                continue;
            };
            let env = Envelope {
                from: from.clone(),
                msg,
            };
            let sealed = match self.nodes.get(&from.addr) {
                Some(n) => n.codec.seal_for(&to, &env),
                None => self.codec.seal(&env),
            };
            let frame = match sealed {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "frame could not be sealed");
                    continue;
                }
            };
            let copies = if self.cfg.duplicate > 0.0 && self.rng.random_bool(self.cfg.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                match self.wan.route(&from.region, &to_region, &mut self.rng) {
                    Route::Drop => self.stats.dropped += 1,
                    Route::Deliver(delay) => {
                        let extra = if self.cfg.reorder.is_zero() {
                            Duration::ZERO
                        } else {
                            Duration::from_micros(
                                self.rng
                                    .random_range(0..=self.cfg.reorder.as_micros() as u64),
                            )
                        };
                        if to_region != from.region {
                            self.stats.wan_bytes += frame.len() as u64;
                        }
                        self.push(
                            self.now + delay + extra,
                            EventKind::Deliver {
                                to: to.addr.clone(),
                                frame: frame.clone(),
                            },
                        );
                    }
                }
            }
        }
    }

    fn set_now(&mut self, now: Duration) {
        self.now = now;
        self.wall
            .store(self.epoch_ms + now.as_millis() as u64, Ordering::Release);
    }

    async fn step(&mut self, ev: Event) {
        self.set_now(ev.at);
        match ev.kind {
            EventKind::Tick { addr, incarnation } => {
                let now = self.now;
                let Some(n) = self.nodes.get_mut(&addr) else {
                    return;
                };
                if n.peer.incarnation != incarnation {
                    return;
                }
                let from = n.peer.clone();
                let Some(core) = n.core.as_mut() else { return };
                let out = core.tick(now).await;
                // The reaper runs beside the core (a task of its own under the transport).
                if now >= n.next_gc {
                    n.next_gc = now + self.cfg.gossip.gc_interval;
                    let allowed = core.collectable();
                    let reaper = crate::reaper::Reaper::new(
                        n.store.clone(),
                        n.clock.clone(),
                        (&self.cfg.gossip).into(),
                        n.reaper.clone(),
                    );
                    if let Err(e) = reaper.pass(|| allowed).await {
                        tracing::warn!(node = %addr, error = %e, "reaper pass failed");
                    }
                }
                self.dispatch(&from, out);
                self.collect_completions(&addr);
                let next = self.now + self.cfg.tick;
                self.push(next, EventKind::Tick { addr, incarnation });
            }
            EventKind::Deliver { to, frame } => {
                let now = self.now;
                let Some(n) = self.nodes.get_mut(&to) else {
                    self.stats.dropped += 1;
                    return;
                };
                let me = n.peer.clone();
                let Some(core) = n.core.as_mut() else {
                    self.stats.dropped += 1;
                    return;
                };
                if frame.len() < 4 {
                    self.stats.refused += 1;
                    return;
                }
                let env = match n.codec.open(&frame[4..]) {
                    Ok(env) => env,
                    Err(crate::wire::WireError::Version(v)) => {
                        tracing::debug!(to = %to, version = v, "frame of an incompatible version");
                        self.stats.refused += 1;
                        self.stats.incompatible += 1;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(to = %to, error = %e, "frame refused");
                        self.stats.refused += 1;
                        return;
                    }
                };
                self.stats.delivered += 1;
                self.stats.bytes += frame.len() as u64;
                if frame[4] < crate::wire::ENCRYPTED {
                    self.stats.in_clear += 1;
                }
                let out = core.handle(now, env.from, env.msg).await;
                self.dispatch(&me, out);
                self.collect_completions(&to);
            }
        }
    }

    /// Runs the cluster for `d` of virtual time.
    pub async fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(Reverse(ev)) = self.queue.peek() {
            if ev.at > until {
                break;
            }
            let Some(Reverse(ev)) = self.queue.pop() else {
                break;
            };
            self.step(ev).await;
        }
        self.set_now(until);
    }

    /// Runs until every live node holds the same records (equal digests), checking every
    /// `every`; returns how long it took, or `None` if not within `max`.
    pub async fn run_until_converged(
        &mut self,
        every: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start <= max {
            if self.converged() {
                return Some(self.now - start);
            }
            self.run_for(every).await;
        }
        None
    }

    /// Whether every live node's digests are equal.
    pub fn converged(&self) -> bool {
        let mut roots = self
            .nodes
            .values()
            .filter(|n| n.core.is_some())
            .map(|n| n.store.digests());
        match roots.next() {
            Some(first) => roots.all(|d| d == first),
            None => true,
        }
    }

    /// Every record a node holds, encoded: equal dumps mean byte-identical replicas.
    pub async fn dump(&self, addr: &str) -> Vec<(Key, Bytes)> {
        let store = self.store(addr);
        let mut out = Vec::new();
        for b in 0..LEAVES as u32 {
            let mut after: Option<Key> = None;
            loop {
                let (page, next) = store
                    .bucket(b, after.as_ref(), 1000)
                    .await
                    .unwrap_or_else(|e| panic!("dump of {addr}: {e}"));
                for d in page {
                    let bytes = encode_record(&d.record).unwrap_or_else(|e| panic!("{e}"));
                    out.push((d.key, bytes));
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        out.sort();
        out
    }
}

/// The one service simulated nodes serve (see [`Sim::call`]).
pub const SIM_ECHO: &str = "echo";

fn sim_serve(node: &str, service: &str, body: &[u8]) -> Result<Bytes, String> {
    if service != SIM_ECHO {
        return Err(format!("no handler for {service} on this node"));
    }
    let mut out = format!("{node}:").into_bytes();
    out.extend_from_slice(body);
    Ok(Bytes::from(out))
}
