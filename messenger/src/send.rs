//! Appending to a conversation's log: gap-free sequence numbers by CAS, idempotent by client id,
//! in the order one sender submits, each entry checked against the conversation as it is at the
//! slot it lands in.
//!
//! The protocol (ARCHITECTURE.md, "Messenger", says why each step is there), for a batch of
//! entries from one sender to one conversation, in order:
//! 1. Look up each entry's client-id index `mc/conv/sender/client_id`: present → the original
//!    (not read when the client-id filter, [`crate::cids`], knows the store has no such entry).
//! 2. Read the local head (the newest stored seq) and search the newest `dedup_window` stored
//!    entries for (sender, client id): found → the original (this closes the crash window
//!    between step 3 and 4 for retries that reach a replica holding the entry). The head entry
//!    also tells the *epoch* the next slot lands under (the newest conversation change).
//! 3. For each entry in turn, claim slot `head + 1` by CAS-creating `mm/conv/bucket/seq` at the
//!    owner of that key in the home region, with the *whole entry* as the value, after checking
//!    it against the conversation as of the epoch of the slot below (is the sender a member
//!    there; for a change, what it changes). The slot is the entry: no counter to advance, so no
//!    crash leaves a claimed seq without an entry (no gap), and a slot is only attempted when the
//!    one below is known to exist. A conflict answers the slot's current entry: ours (same
//!    sender and client id: a concurrent retry won) → the original; another → its epoch is now
//!    the one below, try the next slot. The next entry of the batch starts above this one, so
//!    one sender's entries keep the order they were submitted in.
//! 4. Write each client-id index entry (a plain replicated put; losing it is step 2's case).
//!    Through the [`crate::sequencer`] (the default), the entries of every batch claimed in one
//!    group are one store batch, written before any of them is answered; on a single node a new
//!    slot's entry rides in the slot's own commit instead (`Store::cas_with`).
//!
//! **Tail cache.** Step 2's scan decodes up to `dedup_window` entries per claim. A node keeps,
//! per conversation, what its claims have seen of the newest slots: the head, its epoch, and
//! (sender, hash of the client id, seq) of the newest `dedup_window` entries, built from one
//! scan and then advanced slot by slot (every slot a claim passes is its own CAS or a CAS
//! conflict that showed the entry), so it holds exactly what the scan would hold from the same
//! head. A claim reads only the slot above the cached head here (one point read): when it is
//! here, the replica is ahead of the cache (other nodes claimed) and the cache is rebuilt by a
//! scan; a higher slot that arrived out of order is met by the CAS walk, which inspects every
//! slot from the head up. A hash match is confirmed by reading the slot.
//!
//! Because each slot is checked against the state of the slot below it, a membership change
//! racing a send cannot let a removed member's message in after the removal: whichever claims
//! the higher slot was checked against a state that includes the other.
//!
//! A batch that arrives in another region than the conversation's home is *forwarded* after
//! step 1: steps 2–4 run on a node of the home region ([`SEND_SERVICE`], served by
//! [`SendHandler`] through the cluster's call routing), so the batch crosses the WAN once.

use crate::error::MessengerError;
use crate::keys;
use crate::model::{Conversation, ConversationKind, Message, MessageHead, MessageKind, Role};
use crate::pipeline::{EndOnDrop, Order};
use crate::sequencer::{IndexBatch, index_entry};
use crate::{Messenger, now_ms};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use starling_store::{
    CallHandler, CasOutcome, Key, ScanRequest, StoreError, StoreExt, VersionVector, codec,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Longest message body, in characters.
pub const MAX_BODY: usize = 4000;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID: usize = 64;
/// Longest group name, in characters.
pub const MAX_NAME: usize = 100;
/// Longest group topic, in characters.
pub const MAX_TOPIC: usize = 500;
/// Slots tried before giving up on a very busy conversation.
const MAX_ATTEMPTS: usize = 10_000;

/// The call service of a batch forwarded to its conversation's home region.
pub const SEND_SERVICE: &str = "chat.send";

/// The outcome of an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The stored entry (the original one for a retry).
    pub message: Message,
    /// Whether this call stored it (`false`: a retry answered with the original).
    pub new: bool,
    /// The slot's version when this call stored it (to wait for K-region durability).
    pub version: Option<VersionVector>,
}

/// A change of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Add a member (owner/admin).
    Add(u64),
    /// Remove a member (owner/admin; only the owner removes an admin; nobody the owner).
    Remove(u64),
    /// The sender leaves (an owner transfers ownership first, unless alone).
    Leave,
    /// Rename (owner/admin): each field given replaces the current one.
    Rename {
        /// New name.
        name: Option<String>,
        /// New topic.
        topic: Option<String>,
        /// New avatar (`Some(None)`: remove it).
        avatar: Option<Option<u64>>,
    },
    /// Give `user` a role (owner only; `Owner` transfers ownership, the old owner becomes admin).
    SetRole {
        /// Whom.
        user: u64,
        /// The role.
        role: Role,
    },
}

/// What one log entry will be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Draft {
    /// A text message.
    Text(String),
    /// The record that entry `target_seq` was edited to `body` (the slot itself is rewritten
    /// first, by [`Messenger::edit`]).
    Edit {
        /// The edited entry.
        target_seq: u64,
        /// Its new text.
        body: String,
    },
    /// The record that entry `target_seq` was deleted.
    Delete {
        /// The deleted entry.
        target_seq: u64,
    },
    /// A change of the group.
    Change(Change),
}

/// One entry to append, with its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The sender's idempotency key (1–64 bytes).
    pub client_id: String,
    /// The entry.
    pub draft: Draft,
}

/// A batch forwarded to the home region: everything the claims need, the conversation included
/// (it may not have replicated there yet).
#[derive(Serialize, Deserialize)]
struct Forwarded {
    conv: Conversation,
    sender: u64,
    items: Vec<Item>,
    order: Order,
}

/// The home region's answer to one entry of a [`Forwarded`] batch.
#[derive(Serialize, Deserialize)]
enum ForwardReply {
    Sent(Sent),
    Unchanged,
    Refused(Refusal),
    Contended,
    Unreachable(String),
    Failed(String),
}

/// Refusals that travel back from the home region as they are.
#[derive(Serialize, Deserialize)]
enum Refusal {
    NotMember,
    Forbidden(String),
    Conflict(String),
    Invalid(String),
    TooManyMembers(usize),
}

/// Checks a body and a client id.
pub fn validate(body: &str, client_id: &str) -> Result<(), MessengerError> {
    let n = body.chars().count();
    if n == 0 || n > MAX_BODY || body.trim().is_empty() {
        return Err(MessengerError::Invalid(
            "body is 1 to 4000 characters, not only spaces",
        ));
    }
    validate_client_id(client_id)?;
    if body.contains('\0') {
        return Err(MessengerError::Invalid("NUL is not allowed"));
    }
    Ok(())
}

/// Checks a client id.
pub fn validate_client_id(client_id: &str) -> Result<(), MessengerError> {
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID {
        return Err(MessengerError::Invalid("client_id is 1 to 64 bytes"));
    }
    if client_id.contains('\0') {
        return Err(MessengerError::Invalid("NUL is not allowed"));
    }
    Ok(())
}

pub(crate) fn validate_item(item: &Item) -> Result<(), MessengerError> {
    validate_client_id(&item.client_id)?;
    match &item.draft {
        Draft::Text(body) | Draft::Edit { body, .. } => validate(body, &item.client_id),
        Draft::Delete { .. } => Ok(()),
        Draft::Change(Change::Rename { name, topic, .. }) => {
            if name.is_none() && topic.is_none() {
                return Ok(());
            }
            for (v, max, what) in [
                (
                    name,
                    MAX_NAME,
                    "name is at most 100 characters, without control characters",
                ),
                (
                    topic,
                    MAX_TOPIC,
                    "topic is at most 500 characters, without control characters",
                ),
            ] {
                if let Some(s) = v
                    && (s.chars().count() > max || s.chars().any(char::is_control))
                {
                    return Err(MessengerError::Invalid(what));
                }
            }
            Ok(())
        }
        Draft::Change(_) => Ok(()),
    }
}

/// The outcome of one entry of a batch: stored (or the original), or a change that changes
/// nothing (`Ok(None)`: already a member, already removed, the same name…).
pub type ItemResult = Result<Option<Sent>, MessengerError>;

impl Messenger {
    /// Sends `body` from `sender` to `conv` (the caller authorized it). A retry with the same
    /// client id returns the original message and stores nothing.
    pub async fn send(
        &self,
        conv: &Arc<Conversation>,
        sender: u64,
        client_id: &str,
        body: &str,
    ) -> Result<Sent, MessengerError> {
        let item = Item {
            client_id: client_id.to_string(),
            draft: Draft::Text(body.to_string()),
        };
        match self
            .append_in_order(conv, sender, vec![item], Order::default())
            .await
            .pop()
        {
            Some(Ok(Some(sent))) => Ok(sent),
            Some(Ok(None)) | None => Err(MessengerError::Contended),
            Some(Err(e)) => Err(e),
        }
    }

    /// Appends `items` from `sender` to `conv`'s log, in this order (the caller authorized the
    /// sender to act in `conv`). One result per item, in the same order; an item after a
    /// refused one is still tried. (The claims hold the conversation shared: a caller that
    /// holds it so calls [`Messenger::append_in_order`] and saves the copy made here.)
    pub async fn append(
        &self,
        conv: &Conversation,
        sender: u64,
        items: Vec<Item>,
    ) -> Vec<ItemResult> {
        self.append_in_order(&Arc::new(conv.clone()), sender, items, Order::default())
            .await
    }

    /// [`Messenger::append`] for a batch of a sender's pipeline (see [`crate::pipeline`]): its
    /// claims start after those of the batch `order.after` names, wherever they run. `conv` is
    /// the conversation as the caller authorized the sender in (the node's cached state, as
    /// [`Messenger::authorize_send`] answers): the claims check each slot against it, or a newer
    /// state where a slot lands above its epoch, without looking it up again.
    pub async fn append_in_order(
        &self,
        conv: &Arc<Conversation>,
        sender: u64,
        items: Vec<Item>,
        order: Order,
    ) -> Vec<ItemResult> {
        let n = items.len();
        // The items step 1 answers (refused, or the original), by position: usually none, and
        // then the batch goes on to the claims as it came (no copy, no merge).
        let mut settled: SmallVec<[(usize, ItemResult); 1]> = SmallVec::new();
        for (i, item) in items.iter().enumerate() {
            if let Err(e) = validate_item(item) {
                settled.push((i, Err(e)));
                continue;
            }
            let idx = keys::client_id(conv.id, sender, &item.client_id);
            match self.original(conv.id, &idx).await {
                Ok(Some(sent)) => settled.push((i, Ok(Some(sent)))),
                Ok(None) => {}
                Err(e) => settled.push((i, Err(e))),
            }
        }
        let todo: Vec<Item> = if settled.is_empty() {
            items
        } else {
            let mut at = settled.iter().map(|(i, _)| *i).peekable();
            items
                .into_iter()
                .enumerate()
                .filter(|(i, _)| at.next_if_eq(i).is_none())
                .map(|(_, item)| item)
                .collect()
        };
        let mut results = Vec::new();
        // A pipelined batch with nothing left to claim still goes where its claims would have
        // run, so that a batch following it there does not wait for it in vain.
        if !todo.is_empty() || order.token != 0 {
            results = match self.cas.local_region() {
                Some(here) if here != conv.home_region => {
                    self.forward(conv, sender, todo, order).await
                }
                // Under the lease, the claims run where the lease is taken: on the owner of
                // the lease's key (its shard's) in the home region.
                Some(_)
                    if self.cfg.lease
                        && !self
                            .cas
                            .owns_key(&conv.home_region, &self.claim_route(conv)) =>
                {
                    self.forward(conv, sender, todo, order).await
                }
                _ => self.claim_batch(conv, sender, todo, order).await,
            };
        }
        if settled.is_empty() && results.len() == n {
            return results;
        }
        // The claims' results in the places step 1 left (one missing: `busy`).
        let mut claimed = results.into_iter();
        let mut settled = settled.into_iter().peekable();
        (0..n)
            .map(|i| match settled.next_if(|(at, _)| *at == i) {
                Some((_, r)) => r,
                None => claimed.next().unwrap_or(Err(MessengerError::Contended)),
            })
            .collect()
    }

    /// Step 1: the entry already stored under this client id, if the index here has it (not
    /// read when the client-id filter knows it has not: [`crate::cids`]).
    pub(crate) async fn original(
        &self,
        conv: u64,
        idx: &Key,
    ) -> Result<Option<Sent>, MessengerError> {
        if !self.cids.may_contain(idx.as_bytes()) {
            return Ok(None);
        }
        if let Some(seq) = self.indexed(idx).await?
            && let Some(m) = self.message(conv, seq).await?
        {
            return Ok(Some(Sent {
                message: m,
                new: false,
                version: None,
            }));
        }
        Ok(None)
    }

    /// Steps 2–4 run by a node of the home region, through the cluster's call routing (to the
    /// owner of the conversation's key there).
    async fn forward(
        &self,
        conv: &Conversation,
        sender: u64,
        items: Vec<Item>,
        order: Order,
    ) -> Vec<ItemResult> {
        let n = items.len();
        let req = Forwarded {
            conv: conv.clone(),
            sender,
            items,
            order,
        };
        let answer = async {
            let body = codec::to_value(&req)?;
            let answer = self
                .cas
                .call_at(
                    &conv.home_region,
                    &self.claim_route(conv),
                    SEND_SERVICE,
                    body,
                )
                .await?;
            Ok::<_, MessengerError>(codec::from_value::<Vec<ForwardReply>>(&answer)?)
        }
        .await;
        let replies = match answer {
            Ok(r) if r.len() == n => r,
            Ok(_) => {
                return (0..n)
                    .map(|_| Err(StoreError::Remote("malformed forward reply".into()).into()))
                    .collect();
            }
            Err(e) => {
                let reason = e.to_string();
                let unreachable = match &e {
                    MessengerError::Store(StoreError::OwnerUnreachable { region }) => {
                        Some(region.clone())
                    }
                    _ => None,
                };
                return (0..n)
                    .map(|_| match &unreachable {
                        Some(region) => Err(StoreError::OwnerUnreachable {
                            region: region.clone(),
                        }
                        .into()),
                        None => Err(StoreError::Remote(reason.clone()).into()),
                    })
                    .collect();
            }
        };
        replies
            .into_iter()
            .map(|r| match r {
                ForwardReply::Sent(sent) => Ok(Some(sent)),
                ForwardReply::Unchanged => Ok(None),
                ForwardReply::Refused(r) => Err(match r {
                    Refusal::NotMember => MessengerError::NotMember,
                    Refusal::Forbidden(m) => MessengerError::ForbiddenMsg(m),
                    Refusal::Conflict(m) => MessengerError::ConflictMsg(m),
                    Refusal::Invalid(m) => MessengerError::InvalidMsg(m),
                    Refusal::TooManyMembers(n) => MessengerError::TooManyMembers(n),
                }),
                ForwardReply::Contended => Err(MessengerError::Contended),
                ForwardReply::Unreachable(region) => {
                    Err(StoreError::OwnerUnreachable { region }.into())
                }
                ForwardReply::Failed(reason) => Err(StoreError::Remote(reason).into()),
            })
            .collect()
    }

    /// Steps 2–4 (step 1 was done by the caller): claims the next slots from this replica's
    /// head in the home region, one item after the other.
    async fn claim_batch(
        &self,
        conv: &Arc<Conversation>,
        sender: u64,
        items: Vec<Item>,
        order: Order,
    ) -> Vec<ItemResult> {
        // Fibonacci hashing: the top bits of id × 2^64/φ, well spread whatever the id's layout.
        let stripe =
            (conv.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % crate::CLAIM_STRIPES;
        let _ended = EndOnDrop {
            messenger: self,
            stripe,
            order,
        };
        if !self.batch_turn(stripe, order).await {
            return items
                .iter()
                .map(|_| Err(MessengerError::Contended))
                .collect();
        }
        if items.is_empty() {
            return Vec::new();
        }
        if self.cfg.group_commit {
            return self.sequenced(conv, sender, items).await;
        }
        let _turn = self.claims[stripe].lock().await;
        self.claim_items(conv, sender, items, None, false).await
    }

    /// The claim walk of one batch (the caller holds its conversation's turn): step 2 from the
    /// tail cache, step 3 slot by slot, step 4 into `index` (the sequencer's group batch) or,
    /// without one, one put per entry. `no_probe`: skip the point read of the slot above the
    /// cached head on a single node (nothing else claims there; a stale cache is still safe,
    /// as the CAS walk inspects every slot from the cached head up).
    pub(crate) async fn claim_items(
        &self,
        conv: &Arc<Conversation>,
        sender: u64,
        items: Vec<Item>,
        mut index: Option<&mut IndexBatch>,
        no_probe: bool,
    ) -> Vec<ItemResult> {
        // The lease first: a tail cache built under another epoch is rebuilt, so the claims of
        // a new holding start after the highest seq this replica holds.
        let unit = self.lease_unit(conv);
        let token = if self.cfg.lease {
            match self.lease_token(conv).await {
                Ok(t) => Some(t),
                Err(e) => return items.iter().map(|_| Err(same_error(&e))).collect(),
            }
        } else {
            None
        };
        let probe = !(no_probe && self.cas.local_region().is_none());
        let stamp = token.unwrap_or(0);
        let (slot, mut found) = match self.tail_for(conv.id, sender, &items, probe, stamp).await {
            Ok(t) => t,
            Err(e) => {
                let reason = e.to_string();
                return items
                    .iter()
                    .map(|_| Err(StoreError::Remote(reason.clone()).into()))
                    .collect();
            }
        };
        // The caller's state (a newer one is looked up by `state_at` only where a slot lands
        // above its epoch).
        let mut known = conv.clone();
        let mut slot = Slot {
            lease: token.map(|t| (unit, t)),
            ..slot
        };
        let mut out = Vec::with_capacity(items.len());
        // Only a batch of several entries can repeat a client id (no copy of a lone entry).
        let several = items.len() > 1;
        for item in items {
            if let Some(m) = found.remove(&item.client_id) {
                let idx = keys::client_id(conv.id, sender, &item.client_id);
                let r = self
                    .index_or_defer(index.as_deref_mut(), idx, m.seq)
                    .await
                    .map(|()| {
                        Some(Sent {
                            message: m,
                            new: false,
                            version: None,
                        })
                    });
                out.push(r);
                continue;
            }
            let r = self
                .claim_one(
                    conv,
                    sender,
                    &item,
                    &mut slot,
                    &mut known,
                    index.as_deref_mut(),
                )
                .await;
            if several && let Ok(Some(s)) = &r {
                // A second item of this batch with the same client id gets this one.
                found.insert(item.client_id.clone(), s.message.clone());
            }
            out.push(r);
        }
        if let Some(t) = token
            && !self.leases.in_force(unit, t)
        {
            // The lease lapsed (or was fenced) during these claims: none of the slots they
            // created is acknowledged (a retry with the same client id gets the original).
            for r in &mut out {
                if matches!(r, Ok(Some(s)) if s.new) {
                    self.leases
                        .stats()
                        .expired_in_claim
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    *r = Err(StoreError::Remote(
                        "the seq lease lapsed during the claim; retry with the same client id"
                            .into(),
                    )
                    .into());
                }
            }
        }
        out
    }

    /// Step 4 for one entry: into the group's batch, or a put now.
    async fn index_or_defer(
        &self,
        index: Option<&mut IndexBatch>,
        idx: Key,
        seq: u64,
    ) -> Result<(), MessengerError> {
        // Into the client-id filter before the store (see `crate::cids`).
        self.cids.insert(idx.as_bytes());
        match index {
            Some(batch) => {
                batch.push(idx, seq);
                Ok(())
            }
            None => self.index(&idx, seq).await,
        }
    }

    /// Claims one slot for `item` from `slot` upwards.
    async fn claim_one(
        &self,
        conv: &Conversation,
        sender: u64,
        item: &Item,
        slot: &mut Slot,
        known: &mut Arc<Conversation>,
        mut index: Option<&mut IndexBatch>,
    ) -> ItemResult {
        let idx = keys::client_id(conv.id, sender, &item.client_id);
        for _ in 0..MAX_ATTEMPTS {
            let state = self.state_at(conv, slot.epoch, known).await?;
            let Some(msg) = self.draft_entry(&state, sender, item, slot.seq)? else {
                return Ok(None);
            };
            // The slot carries the lease's epoch (its fencing token).
            let value = match slot.lease {
                Some((_, t)) => crate::lease::encode_slot(&msg, t)?,
                None => codec::to_value(&msg)?,
            };
            let key = keys::message(conv.id, slot.seq);
            // Through the sequencer on a single node: the slot and its index entry in one
            // commit (the entry is written only if the swap applies).
            let joined = match self.cas.local_store() {
                Some(store) if index.is_some() && self.cfg.one_commit => Some(store),
                _ => None,
            };
            let outcome = match joined {
                Some(store) => {
                    self.cids.insert(idx.as_bytes());
                    let entry = index_entry(idx.clone(), msg.seq);
                    store.cas_with(&key, None, Some(value), &[entry]).await?
                }
                None => {
                    self.cas
                        .cas_at(&conv.home_region, &key, None, Some(value))
                        .await?
                }
            };
            match outcome {
                CasOutcome::Applied(v) => {
                    self.saw(
                        &slot.tail,
                        msg.seq,
                        msg.epoch,
                        Some((sender, &msg.client_id)),
                    );
                    self.retention_check(conv.id, msg.seq);
                    slot.seq += 1;
                    slot.epoch = msg.epoch;
                    if joined.is_some() {
                        self.sequencer.joined.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.index_or_defer(index.as_deref_mut(), idx.clone(), msg.seq)
                            .await?;
                    }
                    if let Some(s) = &msg.state {
                        *known = self.remember((**s).clone());
                        self.store_record(s).await?;
                    }
                    return Ok(Some(Sent {
                        message: msg,
                        new: true,
                        version: Some(v.version),
                    }));
                }
                CasOutcome::Conflict(Some(v)) => {
                    slot.seq += 1;
                    if let Some(b) = v.value {
                        let (other, epoch) = crate::lease::decode_slot(&b)?;
                        if let Some((unit, t)) = slot.lease
                            && epoch > t
                        {
                            // A later holder created it: this lease is fenced.
                            self.leases.saw_epoch(unit, epoch);
                            return Err(MessengerError::Contended);
                        }
                        self.saw(
                            &slot.tail,
                            other.seq,
                            other.epoch,
                            Some((other.sender, &other.client_id)),
                        );
                        if other.sender == sender && other.client_id == item.client_id {
                            self.index_or_defer(index.as_deref_mut(), idx.clone(), other.seq)
                                .await?;
                            return Ok(Some(Sent {
                                message: other,
                                new: false,
                                version: None,
                            }));
                        }
                        slot.epoch = other.epoch;
                        if let Some(s) = other.state {
                            *known = self.remember(*s);
                        }
                    }
                }
                CasOutcome::Conflict(None) => {
                    self.saw(&slot.tail, slot.seq, slot.epoch, None);
                    slot.seq += 1;
                }
            }
        }
        Err(MessengerError::Contended)
    }

    /// Where the next claim starts and, among the newest `dedup_window` entries, those from
    /// `sender` with the client id of one of `items`: from the tail cache when it was built
    /// under the claim's lease epoch `stamp` and the replica here is not ahead of it, else from
    /// a scan that rebuilds it.
    async fn tail_for(
        &self,
        conv: u64,
        sender: u64,
        items: &[Item],
        probe: bool,
        stamp: u64,
    ) -> Result<(Slot, HashMap<String, Message>), MessengerError> {
        let cached = self.tails.get(&conv).and_then(|tail| {
            let t = tail.lock();
            (t.lease == stamp).then(|| {
                let slot = Slot {
                    seq: t.head + 1,
                    epoch: t.epoch,
                    lease: None,
                    tail: tail.clone(),
                };
                // On the stack for a batch of a few (a lone message, mostly).
                let wanted: SmallVec<[u64; 4]> =
                    items.iter().map(|i| cid_hash(&i.client_id)).collect();
                let candidates: SmallVec<[u64; 4]> = t
                    .recent
                    .iter()
                    .filter(|e| e.sender == sender && wanted.contains(&e.cid))
                    .map(|e| e.seq)
                    .collect();
                (slot, candidates)
            })
        });
        if let Some((slot, candidates)) = cached {
            // One point read (a scan costs a range search in every shard of the memory engine):
            // the slot above the cache's head is not here, so this replica is not ahead of
            // it (a higher slot that arrived out of order is met by the CAS walk).
            if !probe
                || self
                    .store
                    .get(&keys::message(conv, slot.seq))
                    .await?
                    .is_none()
            {
                let mut found = HashMap::new();
                for seq in candidates {
                    if let Some(m) = self.message(conv, seq).await?
                        && m.sender == sender
                        && has_client_id(items, &m.client_id)
                    {
                        found.entry(m.client_id.clone()).or_insert(m);
                    }
                }
                return Ok((slot, found));
            }
        }
        let (head, found, recent) = self.search_tail(conv, sender, items).await?;
        let (seq, epoch) = (
            head.as_ref().map_or(1, |m| m.seq + 1),
            head.as_ref().map_or(0, |m| m.epoch),
        );
        let tail = Arc::new(parking_lot::Mutex::new(Tail {
            head: seq - 1,
            epoch,
            lease: stamp,
            recent,
        }));
        self.tails.insert(conv, tail.clone());
        let slot = Slot {
            seq,
            epoch,
            lease: None,
            tail,
        };
        Ok((slot, found))
    }

    /// Notes slot `seq` (and its entry's sender and client id, when it has one) in `tail`, the
    /// conversation's tail cache entry its claim started from (no second cache look-up; an
    /// entry evicted meanwhile is noted and dropped), if it has reached the slot below it (so
    /// it stays contiguous).
    fn saw(
        &self,
        tail: &parking_lot::Mutex<Tail>,
        seq: u64,
        epoch: u64,
        entry: Option<(u64, &str)>,
    ) {
        let mut t = tail.lock();
        if seq != t.head + 1 {
            return;
        }
        t.head = seq;
        t.epoch = epoch;
        if let Some((sender, client_id)) = entry {
            t.recent.push_back(Seen {
                sender,
                cid: cid_hash(client_id),
                seq,
            });
        }
        while t.recent.len() > self.cfg.dedup_window.max(1) {
            t.recent.pop_front();
        }
    }

    /// The entry `item` makes at `seq` under `state`, or `None` for a change that changes
    /// nothing; refused if `sender` may not make it there.
    fn draft_entry(
        &self,
        state: &Conversation,
        sender: u64,
        item: &Item,
        seq: u64,
    ) -> Result<Option<Message>, MessengerError> {
        let Some(me) = state.member(sender) else {
            return Err(MessengerError::NotMember);
        };
        let mut m = Message::text(sender, &item.client_id, state.id, "");
        m.seq = seq;
        m.id = self.ids.next_id();
        m.sent_at_ms = now_ms();
        m.epoch = state.epoch;
        match &item.draft {
            Draft::Text(body) => m.body.clone_from(body),
            Draft::Edit { target_seq, body } => {
                m.kind = MessageKind::Edit;
                m.target_seq = Some(*target_seq);
                m.body.clone_from(body);
            }
            Draft::Delete { target_seq } => {
                m.kind = MessageKind::Delete;
                m.target_seq = Some(*target_seq);
            }
            Draft::Change(change) => {
                let Some((kind, target, role, mut next)) =
                    self.changed(state, me.role, sender, change, seq)?
                else {
                    return Ok(None);
                };
                // The state is written whole into this entry, past memberships and all (up to
                // `MAX_PAST`, 13 KiB): with a bounded history, those that ended below the
                // oldest entry kept once this one is in read nothing, so they go.
                let max = self.cfg.retention.max;
                if max > 0 {
                    next.forget_past_below((seq + 1).saturating_sub(max));
                }
                m.kind = kind;
                m.target = target;
                m.role = role;
                m.epoch = seq;
                m.state = Some(Box::new(next));
            }
        }
        Ok(Some(m))
    }

    /// What `change` by `sender` (of role `my_role`) makes of `state` at `seq`: the entry's
    /// kind, target, role and the new state; `None` if it changes nothing.
    #[allow(clippy::type_complexity)]
    fn changed(
        &self,
        state: &Conversation,
        my_role: Role,
        sender: u64,
        change: &Change,
        seq: u64,
    ) -> Result<Option<(MessageKind, Option<u64>, Option<Role>, Conversation)>, MessengerError>
    {
        if state.kind == ConversationKind::Direct {
            return Err(MessengerError::Invalid(
                "a 1:1 conversation has no members to change or name",
            ));
        }
        let forbidden = |m: &str| Err(MessengerError::ForbiddenMsg(m.to_string()));
        let mut next = state.clone();
        next.epoch = seq;
        let out = match change {
            Change::Add(user) => {
                if my_role < Role::Admin {
                    return forbidden("only the owner and admins add members");
                }
                if state.is_member(*user) {
                    return Ok(None);
                }
                if state.members.len() + 1 > self.cfg.max_group_members {
                    return Err(MessengerError::TooManyMembers(self.cfg.max_group_members));
                }
                next.add_member(*user, Role::Member, seq);
                (MessageKind::MemberAdded, Some(*user), None)
            }
            Change::Remove(user) if *user == sender => {
                return self.changed(state, my_role, sender, &Change::Leave, seq);
            }
            Change::Remove(user) => {
                if my_role < Role::Admin {
                    return forbidden("only the owner and admins remove members");
                }
                let Some(them) = state.member(*user) else {
                    return Ok(None);
                };
                if them.role >= my_role {
                    return forbidden("the owner is never removed; only the owner removes admins");
                }
                next.remove_member(*user, seq);
                (MessageKind::MemberRemoved, Some(*user), None)
            }
            Change::Leave => {
                if my_role == Role::Owner && state.members.len() > 1 {
                    return Err(MessengerError::ConflictMsg(
                        "the owner transfers ownership before leaving".into(),
                    ));
                }
                next.remove_member(sender, seq);
                (MessageKind::MemberLeft, Some(sender), None)
            }
            Change::Rename {
                name,
                topic,
                avatar,
            } => {
                if my_role < Role::Admin {
                    return forbidden("only the owner and admins rename a group");
                }
                if let Some(n) = name {
                    next.name.clone_from(n);
                }
                if let Some(t) = topic {
                    next.topic.clone_from(t);
                }
                if let Some(a) = avatar {
                    next.avatar = *a;
                }
                if (&next.name, &next.topic, next.avatar)
                    == (&state.name, &state.topic, state.avatar)
                {
                    return Ok(None);
                }
                (MessageKind::Renamed, None, None)
            }
            Change::SetRole { user, role } => {
                if my_role != Role::Owner {
                    return forbidden("only the owner changes roles");
                }
                if *user == sender {
                    return Err(MessengerError::Invalid(
                        "the owner gives ownership to another member instead",
                    ));
                }
                let Some(them) = state.member(*user) else {
                    return Err(MessengerError::InvalidMsg("not a member".into()));
                };
                if them.role == *role {
                    return Ok(None);
                }
                for m in &mut next.members {
                    if m.user == *user {
                        m.role = *role;
                    } else if *role == Role::Owner && m.user == sender {
                        m.role = Role::Admin;
                    }
                }
                (MessageKind::RoleChanged, Some(*user), Some(*role))
            }
        };
        Ok(Some((out.0, out.1, out.2, next)))
    }

    /// The conversation as of `epoch` (a state at a later epoch stands for it: a slot landing
    /// under it is taken, so the CAS will say so). Reads the change entry at `epoch` when
    /// `known` is older: here first, else at its owner in the home region.
    pub(crate) async fn state_at(
        &self,
        conv: &Conversation,
        epoch: u64,
        known: &mut Arc<Conversation>,
    ) -> Result<Arc<Conversation>, MessengerError> {
        if known.epoch >= epoch {
            return Ok(known.clone());
        }
        if let Ok(c) = self.conversation(conv.id).await
            && c.epoch >= epoch
        {
            *known = c.clone();
            return Ok(c);
        }
        let key = keys::message(conv.id, epoch);
        let entry = match self.message(conv.id, epoch).await? {
            Some(m) => Some(m),
            None => self
                .read_at_owner(&conv.home_region, &key)
                .await?
                .map(|(b, _)| codec::from_value::<Message>(&b))
                .transpose()?,
        };
        let Some(state) = entry.and_then(|m| m.state) else {
            return Err(StoreError::Remote(format!(
                "conversation {} lacks its change at seq {epoch}",
                conv.id
            ))
            .into());
        };
        let c = self.remember(*state);
        self.store_record(&c).await?;
        *known = c.clone();
        Ok(c)
    }

    /// Reads `key` at its owner in `region` without writing (a CAS that cannot match).
    pub(crate) async fn read_at_owner(
        &self,
        region: &str,
        key: &Key,
    ) -> Result<Option<(Bytes, VersionVector)>, MessengerError> {
        let never = VersionVector::default();
        match self.cas.cas_at(region, key, Some(&never), None).await? {
            CasOutcome::Conflict(Some(v)) => Ok(v.value.map(|b| (b, v.version))),
            CasOutcome::Conflict(None) => Ok(None),
            CasOutcome::Applied(_) => Err(StoreError::Remote(
                "a read at the owner wrote; the store's CAS is broken".into(),
            )
            .into()),
        }
    }

    /// Moves the conversation record forward to `state` (never backwards: by CAS at its owner in
    /// the home region, from whatever epoch it holds).
    pub(crate) async fn store_record(&self, state: &Conversation) -> Result<(), MessengerError> {
        let key = keys::conversation(state.id);
        let value = codec::to_value(state)?;
        for _ in 0..16 {
            let current = self.read_at_owner(&state.home_region, &key).await?;
            let expected = match &current {
                Some((b, v)) => {
                    if let Ok(c) = codec::from_value::<Conversation>(b)
                        && c.epoch >= state.epoch
                    {
                        return Ok(());
                    }
                    Some(v)
                }
                None => None,
            };
            if let CasOutcome::Applied(_) = self
                .cas
                .cas_at(&state.home_region, &key, expected, Some(value.clone()))
                .await?
            {
                return Ok(());
            }
        }
        Err(MessengerError::Contended)
    }

    /// The handler of [`SEND_SERVICE`] for this node (register it with the cluster's router).
    pub fn send_handler(&self) -> SendHandler {
        SendHandler(self.clone())
    }

    async fn indexed(&self, idx: &Key) -> Result<Option<u64>, MessengerError> {
        Ok(self
            .store
            .get(idx)
            .await?
            .and_then(|v| v.value)
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    async fn index(&self, idx: &Key, seq: u64) -> Result<(), MessengerError> {
        self.store
            .put(idx, Bytes::copy_from_slice(&seq.to_be_bytes()))
            .await?;
        Ok(())
    }

    /// The newest stored entry here (`None`: none), among the newest `dedup_window` entries
    /// those from `sender` with the client id of one of `items`, and what the tail cache keeps
    /// of them.
    async fn search_tail(
        &self,
        conv: u64,
        sender: u64,
        items: &[Item],
    ) -> Result<(Option<Message>, HashMap<String, Message>, VecDeque<Seen>), MessengerError> {
        let window = self.cfg.dedup_window.max(1);
        let page = self
            .store
            .scan(&ScanRequest::prefix(keys::messages_prefix(conv), window))
            .await?;
        let mut head: Option<Message> = None;
        let mut found = HashMap::new();
        let mut recent = VecDeque::with_capacity(page.items.len());
        for (k, v) in &page.items {
            let Some((_, seq)) = keys::parse_message(k) else {
                continue;
            };
            let Some(b) = &v.value else { continue };
            if head.as_ref().is_none_or(|h| h.seq < seq) {
                head = Some(codec::from_value(b)?);
            }
            if let Ok((h, _)) = postcard::take_from_bytes::<MessageHead>(b) {
                // Newest first here: the cache keeps them oldest first.
                recent.push_front(Seen {
                    sender: h.sender,
                    cid: cid_hash(h.client_id),
                    seq,
                });
                if h.sender == sender
                    && has_client_id(items, h.client_id)
                    && !found.contains_key(h.client_id)
                {
                    let m: Message = codec::from_value(b)?;
                    found.insert(m.client_id.clone(), m);
                }
            }
        }
        Ok((head, found, recent))
    }
}

/// `e` again, for each entry of a batch that failed as a whole.
fn same_error(e: &MessengerError) -> MessengerError {
    match e {
        MessengerError::Contended => MessengerError::Contended,
        MessengerError::Store(StoreError::OwnerUnreachable { region }) => {
            StoreError::OwnerUnreachable {
                region: region.clone(),
            }
            .into()
        }
        e => StoreError::Remote(e.to_string()).into(),
    }
}

/// Where the next claim of a batch starts: the slot, and the epoch of the slot below it; and
/// what the seq lease the claims run under covers and its epoch (`None`: without a lease); and
/// the conversation's tail cache entry the claims note each slot they pass in.
struct Slot {
    seq: u64,
    epoch: u64,
    lease: Option<(crate::lease::Unit, u64)>,
    tail: Arc<parking_lot::Mutex<Tail>>,
}

/// What this node's claims have seen of a conversation's newest slots (the tail cache).
#[derive(Debug)]
pub struct Tail {
    /// Every slot up to this one exists and was seen.
    head: u64,
    /// The epoch of slot `head`.
    epoch: u64,
    /// The seq lease epoch it was built under (0: without a lease).
    lease: u64,
    /// The newest `dedup_window` entries, oldest first.
    pub(crate) recent: VecDeque<Seen>,
}

/// One entry of a [`Tail`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    sender: u64,
    /// xxh3 of the client id (a match is confirmed by reading the slot).
    cid: u64,
    seq: u64,
}

/// Whether one of `items` has `client_id`.
fn has_client_id(items: &[Item], client_id: &str) -> bool {
    items.iter().any(|i| i.client_id == client_id)
}

fn cid_hash(client_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(client_id.as_bytes())
}

/// Serves batches forwarded from other regions: runs the claims (steps 2–4) here, in the
/// conversation's home region. The caller authorized the sender and validated the input where
/// the request arrived; the input is checked again (a peer holds the cluster secret, but a bug
/// there must not store what a client could not).
#[derive(Clone, Debug)]
pub struct SendHandler(Messenger);

#[async_trait::async_trait]
impl CallHandler for SendHandler {
    async fn handle(&self, body: Bytes) -> Result<Bytes, String> {
        let req: Forwarded =
            codec::from_value(&body).map_err(|e| format!("malformed forwarded send: {e}"))?;
        let mut items = Vec::with_capacity(req.items.len());
        let mut refused = Vec::with_capacity(req.items.len());
        for item in req.items {
            refused.push(validate_item(&item).err());
            items.push(item);
        }
        let valid: Vec<Item> = items
            .iter()
            .zip(&refused)
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| i.clone())
            .collect();
        let mut results = self
            .0
            .claim_batch(&Arc::new(req.conv), req.sender, valid, req.order)
            .await
            .into_iter();
        let replies: Vec<ForwardReply> = refused
            .into_iter()
            .map(|r| match r {
                Some(e) => ForwardReply::Refused(Refusal::Invalid(e.to_string())),
                None => match results.next() {
                    Some(r) => reply_of(r),
                    None => ForwardReply::Failed("lost a result".into()),
                },
            })
            .collect();
        codec::to_value(&replies).map_err(|e| e.to_string())
    }
}

fn reply_of(r: ItemResult) -> ForwardReply {
    match r {
        Ok(Some(sent)) => ForwardReply::Sent(sent),
        Ok(None) => ForwardReply::Unchanged,
        Err(e) => match e {
            MessengerError::NotMember => ForwardReply::Refused(Refusal::NotMember),
            MessengerError::ForbiddenMsg(m) => ForwardReply::Refused(Refusal::Forbidden(m)),
            MessengerError::ConflictMsg(m) => ForwardReply::Refused(Refusal::Conflict(m)),
            MessengerError::Invalid(m) => ForwardReply::Refused(Refusal::Invalid(m.into())),
            MessengerError::InvalidMsg(m) => ForwardReply::Refused(Refusal::Invalid(m)),
            MessengerError::TooManyMembers(n) => ForwardReply::Refused(Refusal::TooManyMembers(n)),
            MessengerError::Contended => ForwardReply::Contended,
            MessengerError::Store(StoreError::OwnerUnreachable { region }) => {
                ForwardReply::Unreachable(region)
            }
            e => ForwardReply::Failed(e.to_string()),
        },
    }
}
