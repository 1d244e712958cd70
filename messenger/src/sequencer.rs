//! The sequencer: group commit of the claims that reach a node at the same time.
//!
//! Claims run in lanes (by conversation id): a batch that finds its lane idle becomes the lane's
//! *leader* and runs, on its own task, every batch queued there meanwhile as one group; a batch
//! that finds the lane busy queues itself (bounded: [`MAX_QUEUED`] batches a lane, beyond that
//! it is answered `busy` and stores nothing) and waits for its results. Within a group each
//! batch runs the claim walk of [`crate::send`] in arrival order, seqs are taken from the tail
//! cache held in memory, each slot is still created by CAS at its owner (the fence: two
//! sequencers, or a sequencer and a node that claims directly, can never both create one seq),
//! and the client-id index entries of the whole group are written as **one** store batch
//! ([`starling_store::Store::mutate_many`]: one commit and one wait for durability under the
//! store's fsync policy) before any sender of the group is answered. On a single node, where
//! every swap runs on this node's own store, a slot and its index entry are instead **one**
//! commit ([`starling_store::Store::cas_with`]: the index entry is written only if the slot's
//! swap applies, in the same batch and change-feed append), so a new message costs one store
//! write; only the index entries of retries found in the tail go into the group's batch. One lane runs one group at a time, so
//! the claims of one conversation never race each other on a node; a sender's next batch to a
//! conversation starts only once its previous one ended ([`crate::pipeline`]), so it keeps its
//! order.
//!
//! A leader that is dropped mid-group (its connection closed) hands the lane to a task of its
//! own when batches are queued; the batches of the abandoned group are answered with an error
//! whose outcome is unknown (a retry with the same client id gets the original if it was
//! stored). After its group, a leader hands the lane to a task when more batches queued
//! meanwhile, so one sender's ack never waits for an unbounded stream of others'.

use crate::Messenger;
use crate::error::MessengerError;
use crate::model::Conversation;
use crate::send::{Item, ItemResult};
use starling_store::{Key, Mutation, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// Lanes of the sequencer (by conversation id).
pub(crate) const LANES: usize = 64;

/// Most batches queued in one lane; beyond it a batch is answered `busy`.
pub const MAX_QUEUED: usize = 4096;

/// Counters of the sequencer, read by `/metrics`.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Groups run.
    pub groups: AtomicU64,
    /// Batches run in them.
    pub batches: AtomicU64,
    /// Client-id index entries written, one store batch a group.
    pub index_entries: AtomicU64,
    /// Batches queued behind a running group now (all lanes).
    pub queued: AtomicU64,
    /// Batches answered `busy` because their lane's queue was full.
    pub refused: AtomicU64,
    /// Slots stored in one commit with their client-id index entry (a single node's claims;
    /// these entries are not in the group's batch).
    pub joined: AtomicU64,
}

/// One batch waiting in a lane.
pub(crate) struct Pending {
    conv: Arc<Conversation>,
    sender: u64,
    items: Vec<Item>,
    reply: oneshot::Sender<Vec<ItemResult>>,
}

#[derive(Default)]
pub(crate) struct Lane {
    running: bool,
    queue: Vec<Pending>,
}

/// The lanes.
pub(crate) struct Lanes {
    lanes: Box<[parking_lot::Mutex<Lane>]>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes {
            lanes: (0..LANES).map(|_| parking_lot::Mutex::default()).collect(),
        }
    }
}

/// The client-id index entries a group writes, and which results depend on them.
#[derive(Default)]
pub(crate) struct IndexBatch {
    pub(crate) entries: Vec<(Key, Mutation)>,
}

impl IndexBatch {
    /// Notes that `idx` names `seq`.
    pub(crate) fn push(&mut self, idx: Key, seq: u64) {
        self.entries.push(index_entry(idx, seq));
    }
}

/// The client-id index write that makes `idx` name `seq`.
pub(crate) fn index_entry(idx: Key, seq: u64) -> (Key, Mutation) {
    (
        idx,
        Mutation::Put(bytes::Bytes::copy_from_slice(&seq.to_be_bytes())),
    )
}

/// Gives the lane back when its leader ends, however it ends.
struct Leading<'a> {
    messenger: &'a Messenger,
    lane: usize,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.messenger.release_lane(self.lane);
    }
}

impl Messenger {
    /// The sequencer's counters.
    pub fn sequencer_stats(&self) -> &SequencerStats {
        &self.sequencer
    }

    /// Runs `items` (a batch whose pipeline turn came) in the group commit of its lane.
    pub(crate) async fn sequenced(
        &self,
        conv: &Arc<Conversation>,
        sender: u64,
        items: Vec<Item>,
    ) -> Vec<ItemResult> {
        let lane = (conv.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % LANES;
        let n = items.len();
        // Moved into the queue, or kept for this task's own group.
        let mut items = Some(items);
        let others = {
            let mut l = self.lanes.lanes[lane].lock();
            if l.running {
                if l.queue.len() >= MAX_QUEUED {
                    self.sequencer.refused.fetch_add(1, Ordering::Relaxed);
                    return (0..n).map(|_| Err(MessengerError::Contended)).collect();
                }
                let (reply, rx) = oneshot::channel();
                l.queue.push(Pending {
                    conv: conv.clone(),
                    sender,
                    items: items.take().unwrap_or_default(),
                    reply,
                });
                self.sequencer.queued.fetch_add(1, Ordering::Relaxed);
                Err(rx)
            } else {
                l.running = true;
                Ok(std::mem::take(&mut l.queue))
            }
        };
        let others = match others {
            Ok(others) => others,
            Err(rx) => return rx.await.unwrap_or_else(|_| abandoned(n)),
        };
        let _leading = Leading {
            messenger: self,
            lane,
        };
        self.note_dequeued(others.len());
        // Those queued before this one first, in arrival order.
        self.run_group(others, Some((conv, sender, items.unwrap_or_default())))
            .await
            .unwrap_or_else(|| abandoned(n))
    }

    fn note_dequeued(&self, n: usize) {
        if n > 0 {
            self.sequencer.queued.fetch_sub(n as u64, Ordering::Relaxed);
        }
    }

    /// A lane's leader ended: hand the lane to a task when batches queued meanwhile.
    fn release_lane(&self, lane: usize) {
        let mut l = self.lanes.lanes[lane].lock();
        if l.queue.is_empty() {
            l.running = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let m = self.clone();
                rt.spawn(async move { m.drain(lane).await });
            }
            Err(_) => {
                // No runtime (shutting down): the queued batches are answered "unknown".
                let n = l.queue.len();
                l.queue.clear();
                l.running = false;
                drop(l);
                self.note_dequeued(n);
            }
        }
    }

    /// Runs a lane's queue until it is empty (the lane is this task's).
    async fn drain(self, lane: usize) {
        let _leading = Leading {
            messenger: &self,
            lane,
        };
        loop {
            let group = std::mem::take(&mut self.lanes.lanes[lane].lock().queue);
            if group.is_empty() {
                return;
            }
            self.note_dequeued(group.len());
            self.run_group(group, None).await;
        }
    }

    /// One group: every batch's claims in order (`queued`, then the leader's own batch `mine`),
    /// then the group's client-id index entries in one store batch, then every answer. Returns
    /// the answer of `mine`.
    async fn run_group(
        &self,
        queued: Vec<Pending>,
        mine: Option<(&Arc<Conversation>, u64, Vec<Item>)>,
    ) -> Option<Vec<ItemResult>> {
        self.sequencer.groups.fetch_add(1, Ordering::Relaxed);
        self.sequencer.batches.fetch_add(
            (queued.len() + usize::from(mine.is_some())) as u64,
            Ordering::Relaxed,
        );
        let mut index = IndexBatch::default();
        // The queued batches' answers (none allocated for a leader alone) and the leader's own.
        let mut done = Vec::with_capacity(queued.len());
        for p in queued {
            let r = self
                .claim_items(&p.conv, p.sender, p.items, Some(&mut index), true)
                .await;
            done.push((p.reply, r));
        }
        let mut own = match mine {
            Some((conv, sender, items)) => Some(
                self.claim_items(conv, sender, items, Some(&mut index), true)
                    .await,
            ),
            None => None,
        };
        if !index.entries.is_empty() {
            self.sequencer
                .index_entries
                .fetch_add(index.entries.len() as u64, Ordering::Relaxed);
            if let Err(e) = self.store.mutate_many(&index.entries).await {
                // The entries are stored, their index is not: a retry finds them in the tail
                // (the crash window of the protocol); this answer says nothing was confirmed.
                let reason = e.to_string();
                for r in done.iter_mut().map(|(_, r)| r).chain(own.as_mut()) {
                    for x in r.iter_mut() {
                        if matches!(x, Ok(Some(_))) {
                            *x = Err(StoreError::Remote(reason.clone()).into());
                        }
                    }
                }
            }
        }
        for (reply, r) in done {
            let _ = reply.send(r);
        }
        own
    }
}

/// The answer of a batch whose group was abandoned: stored or not, unknown.
fn abandoned(n: usize) -> Vec<ItemResult> {
    (0..n)
        .map(|_| {
            Err(
                StoreError::Remote("the claiming task ended; retry with the same client id".into())
                    .into(),
            )
        })
        .collect()
}
