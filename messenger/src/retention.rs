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
//!   the conversation's live slots from its oldest).
//! - **A pass** ([`Messenger::trim`]), run by a node of the conversation's home region (the
//!   one that claimed the slot, or the owner of its key there for the sweep): moves the floor up to
//!   `head - max + 1` (and past entries older than the age bound, never past the head), then
//!   deletes up to [`PAGE`] live slots below it, each by a compare-and-swap to a tombstone at the
//!   slot's owner from the version read there (so it sees every rewrite an edit made: the
//!   tombstone's causal context covers them, and a late replicated put of an older version is
//!   dropped by the merge instead of bringing the message back), with the slot's client-id
//!   index entry. Tombstones replicate like any delete and the reaper collects them after its
//!   grace period. The change entry the floor's entry was written under (its `epoch`) is kept
//!   while it is below the floor, so a replica whose conversation record lags can still read
//!   that state; a later pass deletes it once the floor's epoch moves on.
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
use starling_store::{CasOutcome, ScanRequest, StoreExt};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A claim checks the bound at every seq that is a multiple of this.
pub const CHECK_EVERY: u64 = 64;
/// Most conversations waiting for a pass.
pub const QUEUE_CAP: usize = 4096;
/// Most slots one pass deletes (a conversation with more is queued again).
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
        let n = s
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("{s:?}: expected a whole number ({e})"))?;
        Self::new(n)
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
            None if target > floor => return Ok(pass),
            None => 0,
        };
        if target > floor {
            self.raise_floor(conv, target).await?;
            pass.floor = target;
        }
        let conv_rec = self.conversation(conv).await?;
        let req = ScanRequest {
            prefix: keys::messages_prefix(conv),
            after: None,
            limit: PAGE,
            reverse: true,
            include_tombstones: false,
        };
        let page = self.store.scan(&req).await?;
        let mut below = 0usize;
        for (k, _) in &page.items {
            let Some((_, seq)) = keys::parse_message(k) else {
                continue;
            };
            if seq >= target {
                break;
            }
            below += 1;
            if seq == keep {
                continue;
            }
            if self.delete_slot(&conv_rec.home_region, conv, seq).await? {
                pass.trimmed += 1;
            }
        }
        self.retention_stats
            .trimmed
            .fetch_add(pass.trimmed, Ordering::Relaxed);
        // A full page of slots below the floor: more may follow.
        if below == PAGE && page.next.is_some() {
            pass.more = true;
            self.queue_trim(conv);
        }
        Ok(pass)
    }

    /// Deletes slot `seq` by a swap to a tombstone at its owner, and its client-id index entry.
    /// `false`: gone already, or a rewrite raced the swap (the next pass tries again).
    async fn delete_slot(&self, home: &str, conv: u64, seq: u64) -> Result<bool, MessengerError> {
        let key = keys::message(conv, seq);
        let Some((bytes, version)) = self.read_at_owner(home, &key).await? else {
            return Ok(false);
        };
        let (m, _): (Message, u64) = crate::lease::decode_slot(&bytes)?;
        match self.cas.cas_at(home, &key, Some(&version), None).await? {
            CasOutcome::Applied(_) => {}
            CasOutcome::Conflict(_) => return Ok(false),
        }
        if !m.client_id.is_empty() {
            self.store
                .delete(&keys::client_id(conv, m.sender, &m.client_id))
                .await?;
        }
        Ok(true)
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
