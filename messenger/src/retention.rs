//! Chat history retention: each conversation keeps its newest [`Retention::max`] entries (and,
//! with [`Retention::max_age`], none older than that but its newest), the rest trimmed off the
//! send path.
//!
//! - **The check** ([`Messenger::retention_check`]): a claim that creates a slot whose seq is a
//!   multiple of [`CHECK_EVERY`] queues its conversation when the bound may be passed. The
//!   queue ([`TrimQueue`]) is bounded ([`QUEUE_CAP`] conversations, each once); a full queue
//!   drops (counted) and the next check, or the sweep, queues it again.
//! - **The floor** (`mf/conv/seq`, set elements, seq descending like the read markers): the
//!   first seq readers are answered from. Elements only add up and the first is the floor, so it
//!   merges as a maximum across nodes and regions and never moves back. It is written *before*
//!   the slots below it are deleted, so a reader never meets a hole above the floor; a restart
//!   between the two leaves slots below the floor, which the next pass deletes (a pass scans
//!   from the node's swept mark, below).
//! - **A pass** ([`Messenger::trim`]), run by a node of the conversation's home region (the
//!   one that claimed the slot, or the owner of its key there for the sweep): moves the floor up to
//!   `head - max + 1` (and past entries older than the age bound, never past the head), then
//!   deletes the live slots below it, oldest first, at most `MAX_PAGES` pages of [`PAGE`] a
//!   pass (queued again for the rest), each by a compare-and-swap to a tombstone at the
//!   slot's owner from the version read there (so it sees every rewrite an edit made: the
//!   tombstone's causal context covers them, and a late replicated put of an older version is
//!   dropped by the merge instead of bringing the message back), with the slot's client-id
//!   index entry. On one node (every swap on this node's store) a page's slots and index
//!   entries are instead one blind delete batch, one commit: it replaces every version the store
//!   holds, which are all there are, and an edit's swap after it fails on the tombstone.
//!   Tombstones replicate like any delete and the reaper collects them after its
//!   grace period. The change entry the floor's entry was written under (its `epoch`) is kept
//!   while it is below the floor, so a replica whose conversation record lags can still read
//!   that state; a later pass deletes it once the floor's epoch moves on. The scan starts at
//!   the node's **swept mark** (`mfs/conv`, node-local: every slot below it but the kept change
//!   entry is deleted), so a pass never walks the tombstones of earlier passes (the reaper's
//!   grace keeps them for an hour by default); a node with no mark (another took over the
//!   conversation, or its memory store restarted) starts from the oldest slot and follows the
//!   scan's `next` past a budget spent among tombstones. A slot whose swap an edit won stops the
//!   pass there (the mark stays below it; the next pass takes it again).
//! - **The sweep** ([`Messenger::run_retention`]): the conversations are walked a page at a
//!   time and queued, so an idle conversation is trimmed by age and a restart resumes every
//!   conversation's trimming without a send.
//!
//! A retry of a message already trimmed finds no client-id index entry and is stored again: the
//! idempotency window is the retention.

use crate::error::MessengerError;
use crate::keys;
use crate::model::{Conversation, Message};
use crate::{Messenger, now_ms};
use bytes::Bytes;
use starling_store::{CasOutcome, Mutation, ScanRequest, StoreExt};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A claim checks the bound at every seq that is a multiple of this.
pub const CHECK_EVERY: u64 = 64;
/// Most conversations waiting for a pass.
pub const QUEUE_CAP: usize = 4096;
/// Slots a pass reads at a time (at most `MAX_PAGES` pages; a conversation with more is queued
/// again).
pub const PAGE: usize = 256;
/// Fewest entries a bounded conversation keeps (`max` is 0, unbounded, or at least this): above
/// the claims' dedup window, so the newest entries a send searches are never trimmed.
pub const MIN_MAX: u64 = 100;
/// Conversations the sweep queues at a time.
const SWEEP_PAGE: usize = 256;

/// How much history a conversation keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Entries kept per conversation (0: unbounded).
    pub max: u64,
    /// Entries older than this are trimmed too, all but the newest (`None`: no age bound).
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Whether anything is ever trimmed.
    pub fn on(&self) -> bool {
        self.max > 0 || self.max_age.is_some()
    }
}

/// Most entries a bounded conversation may be told to keep.
pub const MAX_MAX: u64 = 1_000_000_000;

/// The setting of [`Retention::max`]: 0 (unbounded) or [`MIN_MAX`] to [`MAX_MAX`]; read from a
/// flag or a variable (`FromStr`) or a file (a number, the same check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryMax(u64);

impl HistoryMax {
    /// `n` if it is 0 or in range, else why not.
    pub fn new(n: u64) -> Result<Self, String> {
        if n == 0 || (MIN_MAX..=MAX_MAX).contains(&n) {
            Ok(HistoryMax(n))
        } else {
            Err(format!(
                "{n}: expected 0 (unbounded) or {MIN_MAX} to {MAX_MAX} entries"
            ))
        }
    }

    /// The number (0: unbounded).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for HistoryMax {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(starling_store::settings::whole_number(s)?)
    }
}

impl std::fmt::Display for HistoryMax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for HistoryMax {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for HistoryMax {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The counters of retention (for `/metrics`).
#[derive(Debug, Default)]
pub struct RetentionStats {
    /// Slots deleted (messages and entries trimmed).
    pub trimmed: AtomicU64,
    /// Conversations queued for a pass.
    pub queued: AtomicU64,
    /// Conversations not queued because the queue was full.
    pub dropped: AtomicU64,
    /// Passes run.
    pub passes: AtomicU64,
    /// Passes that failed (a store error; the conversation is queued again later).
    pub failed: AtomicU64,
}

/// The conversations waiting for a pass: each at most once, at most [`QUEUE_CAP`].
#[derive(Debug, Default)]
pub struct TrimQueue {
    inner: parking_lot::Mutex<(VecDeque<u64>, HashSet<u64>)>,
    ready: tokio::sync::Notify,
}

impl TrimQueue {
    /// Queues `conv` unless it is queued already; `false` if the queue is full.
    fn push(&self, conv: u64) -> bool {
        let mut q = self.inner.lock();
        if q.1.contains(&conv) {
            return true;
        }
        if q.0.len() >= QUEUE_CAP {
            return false;
        }
        q.0.push_back(conv);
        q.1.insert(conv);
        drop(q);
        self.ready.notify_one();
        true
    }

    pub(crate) fn pop(&self) -> Option<u64> {
        let mut q = self.inner.lock();
        let conv = q.0.pop_front()?;
        q.1.remove(&conv);
        Some(conv)
    }

    /// Conversations waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().0.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A floor element: `conv`'s entries below `seq` are trimmed.
fn floor_key(conv: u64, seq: u64) -> starling_store::Key {
    keys::FLOORS.key().u64(conv).u64_desc(seq).finish()
}

fn floor_prefix(conv: u64) -> starling_store::Key {
    keys::FLOORS.key().u64(conv).finish()
}

/// Where a node's passes over `conv` have deleted up to (node-local, not replicated).
fn swept_key(conv: u64) -> starling_store::Key {
    SWEPT.key().u64(conv).finish()
}

/// The node-local marks of [`Messenger::trim`]: conv → (swept up to, change entry kept).
const SWEPT: starling_store::Keyspace = starling_store::Keyspace::local("mfs");

/// Pages of slots one pass reads at most (each at most [`PAGE`] slots).
const MAX_PAGES: usize = 4;

/// The client-id index entry of a stored slot's entry (`None`: undecodable or without one).
fn index_key(conv: u64, slot: &[u8]) -> Option<starling_store::Key> {
    let (h, _) = postcard::take_from_bytes::<crate::model::MessageHead>(slot).ok()?;
    (!h.client_id.is_empty()).then(|| keys::client_id(conv, h.sender, h.client_id))
}

/// What deleting one slot did.
enum Deleted {
    /// Swapped to a tombstone.
    Yes,
    /// Not there (deleted already, or never replicated here).
    Gone,
    /// A rewrite (an edit) won the swap.
    Raced,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// The floor after it.
    pub floor: u64,
    /// Slots it deleted.
    pub trimmed: u64,
    /// Slots below the floor may be left (the conversation was queued again).
    pub more: bool,
}

impl Messenger {
    /// The retention in force.
    pub fn retention(&self) -> Retention {
        self.cfg.retention
    }

    /// Retention's counters.
    pub fn retention_stats(&self) -> &RetentionStats {
        &self.retention_stats
    }

    /// Conversations waiting for a pass.
    pub fn retention_queue(&self) -> &TrimQueue {
        &self.trim_queue
    }

    /// The first seq of `conv` kept here (1: nothing trimmed). Entries below it are trimmed.
    pub async fn floor(&self, conv: u64) -> Result<u64, MessengerError> {
        let page = self
            .store
            .scan(&ScanRequest::prefix(floor_prefix(conv), 1))
            .await?;
        Ok(page
            .items
            .first()
            .and_then(|(k, _)| {
                let b = k.as_bytes();
                let p = keys::FLOORS.prefix_len();
                starling_store::key::read_u64(b, p + 8).map(|s| !s)
            })
            .map_or(1, |s| s.max(1)))
    }

    /// Moves `conv`'s floor up to `seq` (never down): one element, those below it removed.
    pub(crate) async fn raise_floor(&self, conv: u64, seq: u64) -> Result<(), MessengerError> {
        self.store.add(&floor_key(conv, seq), Bytes::new()).await?;
        let mut req = ScanRequest::prefix(floor_prefix(conv), 64);
        req.after = Some(floor_key(conv, seq));
        for (k, _) in self.store.scan(&req).await?.items {
            self.store.remove(&k).await?;
        }
        Ok(())
    }

    /// The send path's check: queues `conv` when slot `seq` may take it past the bound.
    pub(crate) fn retention_check(&self, conv: u64, seq: u64) {
        let r = self.cfg.retention;
        if !seq.is_multiple_of(CHECK_EVERY) || !r.on() || (r.max_age.is_none() && seq <= r.max) {
            return;
        }
        self.queue_trim(conv);
    }

    /// Queues `conv` for a pass (counted; dropped, and counted, when the queue is full).
    pub fn queue_trim(&self, conv: u64) {
        if self.trim_queue.push(conv) {
            self.retention_stats.queued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.retention_stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether this node may run `conv`'s passes: a node of its home region (where its slots
    /// are swapped). The send path queues it on the node that claimed the slot; the sweep on
    /// the owner of the conversation's key there (`sweeps`). Two passes at once are safe: the
    /// floor merges as a maximum and each slot's swap applies once.
    async fn trims_here(&self, conv: u64) -> Result<bool, MessengerError> {
        match self.cas.local_region() {
            None => Ok(true),
            Some(here) => Ok(self.conversation(conv).await?.home_region == here),
        }
    }

    /// Whether the sweep queues `conv` here: its key's owner in its home region.
    fn sweeps(&self, conv: &Conversation) -> bool {
        match self.cas.local_region() {
            None => true,
            Some(here) => {
                conv.home_region == here
                    && self
                        .cas
                        .owns_key(&conv.home_region, &keys::conversation(conv.id))
            }
        }
    }

    /// One bounded pass over `conv` (see the module's documentation); queues it again when
    /// slots below the floor are left.
    pub async fn trim(&self, conv: u64) -> Result<Pass, MessengerError> {
        let r = self.cfg.retention;
        let floor = self.floor(conv).await?;
        let mut pass = Pass {
            floor,
            ..Pass::default()
        };
        if !r.on() || !self.trims_here(conv).await? {
            return Ok(pass);
        }
        let head = self.last_seq(conv).await?;
        let mut target = if r.max > 0 && head > r.max {
            head - r.max + 1
        } else {
            1
        };
        if target == 1 && floor == 1 && r.max_age.is_none() {
            // Within the bound and never trimmed: nothing to do.
            return Ok(pass);
        }
        self.retention_stats.passes.fetch_add(1, Ordering::Relaxed);
        if let Some(age) = r.max_age {
            let cutoff = now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(0));
            // The oldest live entries from the floor up, one page: the age bound moves the
            // floor past those older than the cutoff (a later pass goes on).
            for m in self.after(conv, target.max(floor) - 1, PAGE, true).await? {
                if m.seq >= head || m.sent_at_ms >= cutoff {
                    break;
                }
                target = target.max(m.seq + 1);
            }
        }
        let target = target.max(floor);
        // The state the floor's entry was written under stays readable (its change entry).
        let keep = match self.message(conv, target).await? {
            Some(m) => m.epoch,
            // Not here (yet): the floor waits for it.
            None if target > 1 => return Ok(pass),
            None => 0,
        };
        if target > floor {
            self.raise_floor(conv, target).await?;
            pass.floor = target;
        }
        let home = self.conversation(conv).await?.home_region.clone();
        let (swept, kept) = self.swept(conv).await?;
        // The change entry kept by an earlier pass goes once the floor's epoch moved past it.
        if kept != 0 && kept != keep && kept < swept {
            if let Deleted::Raced = self.delete_slot(&home, conv, kept).await? {
                self.queue_trim(conv);
                return Ok(pass);
            }
            pass.trimmed += 1;
        }
        // The live slots from the swept mark up to the floor, oldest first, a page at a time
        // (tombstones below the mark are never walked again).
        let mut req = ScanRequest {
            prefix: keys::messages_prefix(conv),
            after: Some(keys::message(conv, swept.saturating_sub(1))),
            limit: PAGE,
            reverse: true,
            include_tombstones: false,
        };
        let mut mark = swept;
        let mut done = false;
        let mut pages = 0;
        // One node: every swap runs on this store, so a blind delete (one commit a page) does
        // what the swaps do: it replaces every version here, and an edit's swap after it fails.
        let local = self.cas.local_store().is_some();
        while pages < MAX_PAGES && !done {
            pages += 1;
            let page = self.store.scan(&req).await?;
            let mut batch = Vec::new();
            let mut upto = mark;
            for (k, v) in &page.items {
                let Some((_, seq)) = keys::parse_message(k) else {
                    continue;
                };
                if seq >= target {
                    done = true;
                    break;
                }
                if seq != keep {
                    batch.push((seq, v.value.clone()));
                }
                upto = seq + 1;
            }
            if local {
                let mut muts = Vec::with_capacity(batch.len() * 2);
                for (seq, value) in &batch {
                    muts.push((keys::message(conv, *seq), Mutation::Delete));
                    if let Some(idx) = value.as_deref().and_then(|b| index_key(conv, b)) {
                        muts.push((idx, Mutation::Delete));
                    }
                }
                if !muts.is_empty() {
                    self.store.mutate_many(&muts).await?;
                }
                pass.trimmed += batch.len() as u64;
                mark = upto;
            } else {
                let mut raced = false;
                for (seq, _) in &batch {
                    match self.delete_slot(&home, conv, *seq).await? {
                        Deleted::Yes => pass.trimmed += 1,
                        Deleted::Gone => {}
                        // An edit's rewrite won the swap: the mark stays below it, and the
                        // next pass takes it again.
                        Deleted::Raced => {
                            raced = true;
                            break;
                        }
                    }
                    mark = seq + 1;
                }
                if raced {
                    done = false;
                    break;
                }
                mark = upto;
            }
            if done {
                break;
            }
            match page.next {
                Some(next) => {
                    // Past the scan's budget among tombstones: on from where it stopped.
                    if let Some((_, seq)) = keys::parse_message(&next) {
                        mark = mark.max(seq.min(target));
                    }
                    req.after = Some(next);
                }
                None => done = true,
            }
        }
        let mark = if done { target } else { mark };
        self.set_swept(conv, mark, keep).await?;
        self.retention_stats
            .trimmed
            .fetch_add(pass.trimmed, Ordering::Relaxed);
        if !done {
            pass.more = true;
            self.queue_trim(conv);
        }
        Ok(pass)
    }

    /// How far this node's passes deleted `conv`'s slots (every slot below the first but the
    /// second, the change entry kept, is gone): node-local, `(1, 0)` when none ran here.
    async fn swept(&self, conv: u64) -> Result<(u64, u64), MessengerError> {
        let v = self
            .store
            .get(&swept_key(conv))
            .await?
            .and_then(|v| v.value);
        Ok(match v.as_deref() {
            Some(b) if b.len() == 16 => {
                let mut d = [0u8; 8];
                let mut e = [0u8; 8];
                d.copy_from_slice(&b[..8]);
                e.copy_from_slice(&b[8..]);
                (u64::from_be_bytes(d).max(1), u64::from_be_bytes(e))
            }
            _ => (1, 0),
        })
    }

    async fn set_swept(&self, conv: u64, swept: u64, kept: u64) -> Result<(), MessengerError> {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&swept.to_be_bytes());
        b.extend_from_slice(&kept.to_be_bytes());
        self.store.put(&swept_key(conv), Bytes::from(b)).await?;
        Ok(())
    }

    /// Deletes slot `seq` by a swap to a tombstone at its owner, and its client-id index entry.
    async fn delete_slot(
        &self,
        home: &str,
        conv: u64,
        seq: u64,
    ) -> Result<Deleted, MessengerError> {
        let key = keys::message(conv, seq);
        let Some((bytes, version)) = self.read_at_owner(home, &key).await? else {
            return Ok(Deleted::Gone);
        };
        let (m, _): (Message, u64) = crate::lease::decode_slot(&bytes)?;
        match self.cas.cas_at(home, &key, Some(&version), None).await? {
            CasOutcome::Applied(_) => {}
            CasOutcome::Conflict(_) => return Ok(Deleted::Raced),
        }
        if !m.client_id.is_empty() {
            self.store
                .delete(&keys::client_id(conv, m.sender, &m.client_id))
                .await?;
        }
        Ok(Deleted::Yes)
    }

    /// The background task of retention: runs a pass for each queued conversation, and sweeps
    /// the conversations (a page of them each `sweep_every`) into the queue, until `shutdown`.
    /// Does nothing when retention is off.
    pub async fn run_retention(
        &self,
        sweep_every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if !self.cfg.retention.on() {
            return;
        }
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut after: Option<starling_store::Key> = None;
        loop {
            while let Some(conv) = self.trim_queue.pop() {
                if *shutdown.borrow() {
                    return;
                }
                if let Err(e) = self.trim(conv).await {
                    self.retention_stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(conv, error = %e, "chat retention: a pass failed");
                }
                tokio::task::yield_now().await;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.trim_queue.ready.notified() => {}
                _ = sweep.tick() => after = self.sweep_page(after).await,
            }
        }
    }

    /// Queues one page of conversations after `after`; where the next page starts.
    async fn sweep_page(&self, after: Option<starling_store::Key>) -> Option<starling_store::Key> {
        let mut req = ScanRequest::prefix(keys::CONVERSATIONS.prefix(), SWEEP_PAGE);
        req.after = after;
        match self.store.scan(&req).await {
            Ok(page) => {
                for (_, v) in &page.items {
                    let Some(b) = &v.value else { continue };
                    if let Ok(c) = starling_store::codec::from_value::<Conversation>(b)
                        && self.sweeps(&c)
                    {
                        self.queue_trim(c.id);
                    }
                }
                page.next
            }
            Err(e) => {
                tracing::warn!(error = %e, "chat retention: the sweep could not read");
                None
            }
        }
    }
}
