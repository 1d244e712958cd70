//! Chat: 1:1 and group conversations, gap-free per-conversation sequence numbers claimed by CAS
//! at the conversation's home region, idempotent sends by client id, exact resume, ephemeral
//! typing, read markers and presence, and the per-node delivery hub.
//!
//! Modules:
//! - [`model`]: the domain types ([`Conversation`], [`Message`]) as stored;
//! - [`keys`]: the keyspaces and the Discord-like message layout;
//! - [`conversations`]: create (1:1 deduplicated by a CAS'd pair key), read, change a group,
//!   list, authorize;
//! - [`cids`]: which client-id index entries the store may hold (skips step 1's read);
//! - [`send`]: appending to the log: the seq/idempotency protocol, one sender's order, each
//!   entry checked against the membership of its slot (see ARCHITECTURE.md, "Messenger");
//! - [`pipeline`]: one sender's order with several of its batches in flight;
//! - [`sequencer`]: group commit of the claims that reach a node at once;
//! - [`lease`]: the right to assign a conversation's seqs, a lease with a fencing token;
//! - [`edit`]: editing and deleting messages;
//! - [`history`]: reading the log by seq range;
//! - [`retention`]: how much history a conversation keeps, trimmed off the send path;
//! - [`inbox`]: read-up-to markers (max-merging, replicated) and the inbox by last activity;
//! - [`protocol`]: the WebSocket wire frames (JSON, versioned by the `type` tag);
//! - [`outbox`]: a per-connection send queue bounded in bytes;
//! - [`cursor`]: per-connection, per-conversation ordering and dedup (the resume seam);
//! - [`hub`]: per-node registry of connections and fan-out to them;
//! - [`fanout`]: hub + bus + replication: where each kind of event goes;
//! - [`bus`]: in-region fan-out between gateway nodes (in-process, or Redis pub/sub);
//! - [`tail`]: turns messages arriving in the local store (replication) into deliveries;
//! - `test_support` (feature `test-support`): the one set-up of the unit tests and benchmarks.
//!
//! Talks only to `starling_store`, `starling_graph` (users, blocks) and Redis through [`bus`].

pub mod bus;
pub mod cids;
pub mod conversations;
pub mod cursor;
pub mod edit;
pub mod error;
pub mod fanout;
pub mod history;
pub mod hub;
pub mod inbox;
pub mod keys;
pub mod lease;
pub mod model;
pub mod outbox;
pub mod pipeline;
pub mod protocol;
pub mod retention;
pub mod send;
pub mod sequencer;
pub mod tail;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use bus::{Bus, BusEvent, BusReceiver};
pub use conversations::ConversationsPage;
pub use error::MessengerError;
pub use fanout::Fanout;
pub use hub::{ConnHandle, Hub, HubLimits};
pub use inbox::{InboxItem, InboxPage};
pub use lease::LeaseStats;
pub use model::{Conversation, ConversationKind, Member, Message, MessageKind, Role};
pub use outbox::{OutItem, Outbox};
pub use pipeline::{Order, PipelineStats};
pub use retention::{Retention, RetentionStats};
pub use send::{Change, Draft, Item, ItemResult, Sent};
pub use sequencer::SequencerStats;

use starling_graph::Graph;
use starling_store::{CasRouter, IdGenerator, Store};
use std::sync::Arc;

/// Tunables of the messenger.
#[derive(Clone, Debug)]
pub struct MessengerConfig {
    /// Most members of a group (the creator included).
    pub max_group_members: usize,
    /// The region whose owner node arbitrates 1:1 pair keys (the same on every node).
    pub pair_region: String,
    /// How many of the newest stored messages a send searches for its client id when the
    /// client-id index has no entry (the crash window of the protocol; see [`send`]).
    pub dedup_window: usize,
    /// Claims run through the [`sequencer`] (group commit; the default). `false`: each batch
    /// takes its turn on its claim stripe and writes its client-id index entries one by one
    /// (the path before the sequencer, kept as the benchmark's baseline).
    pub group_commit: bool,
    /// Through the sequencer on a single node (every swap on this node's store), each slot and
    /// its client-id index entry are one store commit ([`starling_store::Store::cas_with`]).
    /// `false`: the slot's swap, then the group's index batch (the benchmark's baseline).
    pub one_commit: bool,
    /// Seqs are assigned under a [`lease`] with a fencing token (the default). `false`: by the
    /// slots' CAS alone (the path before the lease, kept as the benchmark's baseline).
    pub lease: bool,
    /// One lease per conversation (`ml/conv`, the path before the shard leases, kept as the
    /// benchmark's baseline) instead of one per shard of conversations ([`lease::shard_of`]).
    /// Every node of a cluster must agree (the server never sets it).
    pub lease_per_conversation: bool,
    /// The holder id of this node's seq leases, stable across its restarts and answered to by
    /// one live process only (the server keeps one in the embedded store's data directory:
    /// [`lease::holder_in`]). `None`: the store's node id.
    pub lease_holder: Option<u64>,
    /// Step 1 of a send skips its read of the client-id index for a client id the store has
    /// certainly never seen ([`cids`]). Only where every index entry of the store is written by
    /// this node: one node on its own store (memory or embedded engine, no cluster; the server
    /// sets it so), and only once [`Messenger::load_client_ids`] has run. `false` (the
    /// default): the index is read on every send.
    pub client_id_filter: bool,
    /// How much history each conversation keeps ([`retention`]; the default keeps all).
    pub retention: Retention,
}

impl MessengerConfig {
    /// Defaults: groups of up to 1000, pairs arbitrated in `pair_region`.
    pub fn new(pair_region: impl Into<String>) -> Self {
        MessengerConfig {
            max_group_members: 1000,
            pair_region: pair_region.into(),
            dedup_window: 64,
            group_commit: true,
            one_commit: true,
            lease: true,
            lease_per_conversation: false,
            lease_holder: None,
            client_id_filter: false,
            retention: Retention::default(),
        }
    }
}

/// The messenger service: a cheap-to-clone handle over the store.
#[derive(Clone, Debug)]
pub struct Messenger {
    store: Arc<dyn Store>,
    cas: Arc<dyn CasRouter>,
    ids: Arc<IdGenerator>,
    graph: Graph,
    cfg: Arc<MessengerConfig>,
    /// Conversations in the newest state seen here (a state only ever replaces an older one:
    /// see [`Messenger::remember`]); bounded, least recently used out.
    cache: moka::sync::Cache<u64, Arc<Conversation>>,
    /// The newest entry of each conversation seen here (for the inbox), bounded likewise: a
    /// slot per conversation whose entry is replaced in place (see [`Messenger::note_head`]).
    heads: moka::sync::Cache<u64, Arc<parking_lot::Mutex<Arc<Message>>>>,
    /// Claims of one conversation on this node take turns (striped by conversation id): claims
    /// racing from one replica all read the same head, and each loser walks on slot by slot, so
    /// k concurrent sends cost k² CASes; in turn, each claim reads the head its predecessor
    /// wrote and its first CAS wins. Races with other nodes are still settled by the CAS.
    claims: Arc<[tokio::sync::Mutex<()>]>,
    /// What this node's claims of each conversation have seen of its newest slots (see
    /// [`send`]'s "tail cache"): saves the scan of the newest `dedup_window` entries per
    /// claim. Bounded by weight (entries remembered), least recently used out.
    tails: moka::sync::Cache<u64, Arc<parking_lot::Mutex<send::Tail>>>,
    /// Batches whose claims ended on this node, by token (see [`pipeline::Order`]): a pipelined
    /// batch waits here until its sender's previous batch to the conversation is in it.
    /// Bounded: the newest [`pipeline::ENDED_TOKENS`].
    batches: Arc<pipeline::EndedTokens>,
    /// Woken (by claim stripe) when a batch's claims end.
    batch_done: Arc<[tokio::sync::Notify]>,
    /// Counters of pipelined batches.
    pipeline: Arc<pipeline::PipelineStats>,
    /// The sequencer's lanes (see [`sequencer`]).
    lanes: Arc<sequencer::Lanes>,
    /// The sequencer's counters.
    sequencer: Arc<sequencer::SequencerStats>,
    /// The seq-assignment leases this node holds (see [`lease`]).
    leases: Arc<lease::LeaseTable>,
    /// The client-id filter (see [`cids`]).
    cids: Arc<cids::ClientIds>,
    /// Conversations waiting for a retention pass (bounded, see [`retention`]).
    trim_queue: Arc<retention::TrimQueue>,
    /// Retention's counters.
    retention_stats: Arc<RetentionStats>,
}

/// Entries remembered across every conversation's [`send::Tail`] (about 24 bytes each).
const TAIL_ENTRIES: u64 = 1 << 20;

/// Stripes of [`Messenger::claims`].
const CLAIM_STRIPES: usize = 1024;

/// Most conversations (and conversation heads) kept in the caches.
const CACHE_CAP: u64 = 100_000;

impl Messenger {
    /// A messenger over `store`; sequence slots and pair keys are claimed through `cas`; users
    /// and blocks come from `graph`.
    pub fn new(
        store: Arc<dyn Store>,
        cas: Arc<dyn CasRouter>,
        ids: Arc<IdGenerator>,
        graph: Graph,
        cfg: MessengerConfig,
    ) -> Self {
        // 2 MiB of bits only where the filter may be used.
        let cids = Arc::new(if cfg.client_id_filter {
            cids::ClientIds::default()
        } else {
            cids::ClientIds::unused()
        });
        Messenger {
            store,
            cas,
            ids,
            graph,
            cfg: Arc::new(cfg),
            cache: moka::sync::Cache::new(CACHE_CAP),
            heads: moka::sync::Cache::new(CACHE_CAP),
            tails: moka::sync::Cache::builder()
                .max_capacity(TAIL_ENTRIES)
                .weigher(|_, t: &Arc<parking_lot::Mutex<send::Tail>>| {
                    u32::try_from(t.lock().recent.len() + 1).unwrap_or(u32::MAX)
                })
                .build(),
            claims: (0..CLAIM_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            batches: Arc::default(),
            batch_done: (0..CLAIM_STRIPES)
                .map(|_| tokio::sync::Notify::new())
                .collect(),
            pipeline: Arc::default(),
            lanes: Arc::default(),
            sequencer: Arc::default(),
            leases: Arc::default(),
            cids,
            trim_queue: Arc::default(),
            retention_stats: Arc::default(),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &MessengerConfig {
        &self.cfg
    }

    /// The graph it asks about users and blocks.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The client-id filter (its counters, whether it is loaded).
    pub fn client_ids(&self) -> &cids::ClientIds {
        &self.cids
    }

    /// Loads the client-id filter from the store's index (one scan of it, a page at a time)
    /// and puts it in use; entries written meanwhile are inserted by their writers. Does
    /// nothing unless [`MessengerConfig::client_id_filter`] is set and swaps run on this node's
    /// own store. Returns the entries loaded.
    pub async fn load_client_ids(&self) -> Result<u64, MessengerError> {
        if !self.cfg.client_id_filter || self.cas.local_store().is_none() {
            return Ok(0);
        }
        let mut req = starling_store::ScanRequest::prefix(keys::CLIENT_IDS.prefix(), 1000);
        req.include_tombstones = true;
        let mut n = 0u64;
        loop {
            let page = self.store.scan(&req).await?;
            for (k, _) in &page.items {
                self.cids.insert(k.as_bytes());
                n += 1;
            }
            match page.next {
                Some(next) => req.after = Some(next),
                None => break,
            }
        }
        self.cids.set_ready();
        Ok(n)
    }

    /// Entries of the in-process caches (approximate), each bounded: conversations and
    /// conversation heads (at most 100 000 each), and the entries of the claims' tails (at most
    /// 2^20 across conversations).
    pub fn cache_entries(&self) -> CacheEntries {
        CacheEntries {
            conversations: self.cache.entry_count(),
            heads: self.heads.entry_count(),
            tail_entries: self.tails.weighted_size(),
        }
    }

    /// Drops the conversations and heads held here, so each is read again from the store on its
    /// next use: for a node that may have missed other nodes' changes (the keyspace reader's
    /// reset on a shared keyspace). The claims' tails stay: they are checked against the seq
    /// lease's epoch on every claim.
    pub fn forget_cached(&self) {
        self.cache.invalidate_all();
        self.heads.invalidate_all();
    }
}

/// What [`Messenger::cache_entries`] reports.
#[derive(Clone, Copy, Debug)]
pub struct CacheEntries {
    /// Conversations held in their newest state seen here.
    pub conversations: u64,
    /// Conversation heads held for the inbox.
    pub heads: u64,
    /// Slots remembered across every conversation's claim tail.
    pub tail_entries: u64,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
