//! The right to assign a conversation's seqs: a **lease** held by one node at a time, with a
//! **fencing token** (its epoch) stored with every slot it creates.
//!
//! The lease of a conversation is the register `ml/conv` ([`crate::keys::lease`]): holder (this
//! node's [holder id](Messenger::lease_holder)), epoch and expiry (the holder's clock, ms). It is taken by CAS at the owner
//! of that key in the conversation's home region, and every taking raises the epoch by one
//! ([`next_lease`]): nobody, or its own previous holding (a restart, a lapse), at once; another
//! node's only once that holding expired more than [`SKEW_MS`] ago by the taker's clock. So with
//! clocks within [`SKEW_MS`] of each other, a new holder starts after the old one stopped.
//!
//! The holder keeps the lease in memory ([`LeaseTable`]): a claim checks it there (a shard lock
//! and a clock read, no store call), and checks it again after its slots' CASes: a holder paused
//! past its expiry answers those sends "outcome unknown" (a retry with the same client id gets
//! the original), so no send is acknowledged outside a valid lease. On taking a lease the holder
//! forgets its tail cache of the conversation, so it starts after the highest seq its replica
//! holds. Every slot it creates carries its epoch ([`encode_slot`]: a trailer after the
//! [`Message`], which readers that decode only the message ignore); a claim whose CAS meets a
//! slot with a higher epoch has been fenced: it drops the lease and answers `busy`.
//!
//! Renewal is a background task per messenger (one pass every [`RENEW_EVERY_MS`], at most
//! [`MAX_RENEWALS`] CASes a pass, one per lease used within the last [`LEASE_MS`]); a lease
//! not used that long is dropped and left to expire. At most [`MAX_HELD`] leases are held; a
//! claim beyond that is answered `busy`. Counted in [`LeaseStats`].
//!
//! **The holder id across restarts.** Taking one's own holding again at once is safe only if no
//! other live process answers to the same holder id, and useful only if a restarted node still
//! answers to its previous run's: else it waits out the leases of every conversation it sent in
//! during its last [`LEASE_MS`] (plus [`SKEW_MS`]) and answers `busy` meanwhile. So a node on
//! the embedded store uses a random id kept in its data directory ([`holder_in`]), which one
//! process at a time holds (the store locks it), whatever its node name: its next run re-takes
//! its leases at once. Elsewhere (the memory store, ScyllaDB) the holder is the store's node id,
//! stable across restarts under the same `--node-id`. A re-take raises the epoch, so any claim
//! the previous run still had in flight meets a higher epoch and is fenced; the new run's own
//! claims are not: a node runs the claims of one conversation one after the other (its lane in
//! the sequencer, or its claim stripe), and takes the lease only at the start of a claim, so a
//! re-take never overlaps a claim of its own.

use crate::error::MessengerError;
use crate::model::{Conversation, Message};
use crate::{Messenger, keys, now_ms};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use starling_store::{CasOutcome, CasRouter, StoreError, VersionVector, codec};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// How long a taking or renewal holds the lease (from the holder's clock before the CAS).
pub const LEASE_MS: u64 = 4_000;
/// How often held leases are renewed.
pub const RENEW_EVERY_MS: u64 = 1_000;
/// The clock skew between the nodes of a region this lease tolerates: another node takes an
/// expired lease only this long after its expiry.
pub const SKEW_MS: u64 = 1_000;
/// A claim starts under a held lease only with this much of it left (else it takes the lease
/// again, at once: it is its own), so a claim rarely outlives the lease it started under.
pub const CLAIM_HEADROOM_MS: u64 = 500;
/// Most leases a node holds at once.
pub const MAX_HELD: usize = 65_536;
/// Most renewals in one pass.
pub const MAX_RENEWALS: usize = 4_096;
/// Shards of the table.
const SHARDS: usize = 64;

/// The file in a data directory that keeps the node's lease holder id ([`holder_in`]).
pub const HOLDER_FILE: &str = "seq-lease-holder";

/// The lease holder id kept in `dir` (a node's data directory, held by one process at a time):
/// read from [`HOLDER_FILE`], or drawn at random and written there (synced, then renamed into
/// place) on the first call. A file that does not hold an id is an error, not replaced.
pub fn holder_in(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join(HOLDER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a lease holder id ({e})", path.display()),
                )
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The standard library's hasher keys come from the OS's random source.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = std::collections::hash_map::RandomState::new()
        .hash_one((nanos, std::process::id()))
        .max(1);
    let tmp = dir.join(format!("{HOLDER_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{id}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(id)
}

/// The stored lease of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's node id.
    pub holder: u64,
    /// The fencing token: raised by one at every taking.
    pub epoch: u64,
    /// Until when the holder may assign seqs, ms since the Unix epoch (its clock).
    pub expires_ms: u64,
}

/// What node `me` may make of the stored lease `current` at `now` (its clock): the record to
/// CAS in, or `None` while another node's holding may still be in force.
pub fn next_lease(current: Option<LeaseRecord>, me: u64, now: u64) -> Option<LeaseRecord> {
    let epoch = match current {
        None => 1,
        Some(c) if c.holder == me || now > c.expires_ms.saturating_add(SKEW_MS) => {
            c.epoch.saturating_add(1)
        }
        Some(_) => return None,
    };
    Some(LeaseRecord {
        holder: me,
        epoch,
        expires_ms: now.saturating_add(LEASE_MS),
    })
}

/// A slot's value: the message, then the epoch it was created under (postcard varint).
pub fn encode_slot(m: &Message, epoch: u64) -> Result<Bytes, MessengerError> {
    let mut out = postcard::to_allocvec(m).map_err(StoreError::from)?;
    let mut buf = [0u8; 10];
    let tail = postcard::to_slice(&epoch, &mut buf).map_err(StoreError::from)?;
    out.extend_from_slice(tail);
    Ok(Bytes::from(out))
}

/// A slot's message and the epoch it was created under (0: written without a lease).
pub fn decode_slot(b: &[u8]) -> Result<(Message, u64), MessengerError> {
    let (m, rest) = postcard::take_from_bytes::<Message>(b).map_err(StoreError::from)?;
    Ok((m, postcard::from_bytes::<u64>(rest).unwrap_or(0)))
}

/// Counters of the leases, read by `/metrics`.
#[derive(Debug, Default)]
pub struct LeaseStats {
    /// Leases held now.
    pub held: AtomicU64,
    /// Leases taken (each a new epoch).
    pub acquired: AtomicU64,
    /// Renewals applied.
    pub renewed: AtomicU64,
    /// Renewals that failed or were left for the next pass (the lease may lapse).
    pub renew_failed: AtomicU64,
    /// Leases lost to a higher epoch (a renewal's CAS or a claim met one).
    pub fenced: AtomicU64,
    /// Claims answered `busy` because another node's lease may still be in force (or the
    /// table was full).
    pub busy: AtomicU64,
    /// Sends answered "outcome unknown" because the lease expired during their claims.
    pub expired_in_claim: AtomicU64,
}

#[derive(Clone, Debug)]
struct Held {
    region: Arc<str>,
    epoch: u64,
    expires_ms: u64,
    used_ms: u64,
    version: VersionVector,
}

/// The leases this node holds.
#[derive(Debug)]
pub struct LeaseTable {
    shards: Box<[parking_lot::Mutex<HashMap<u64, Held>>]>,
    stats: LeaseStats,
    renewer: AtomicBool,
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable {
            shards: (0..SHARDS)
                .map(|_| parking_lot::Mutex::new(HashMap::new()))
                .collect(),
            stats: LeaseStats::default(),
            renewer: AtomicBool::new(false),
        }
    }
}

impl LeaseTable {
    fn shard(&self, conv: u64) -> &parking_lot::Mutex<HashMap<u64, Held>> {
        &self.shards[(conv.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS]
    }

    /// The epoch of the lease held on `conv`, if in force for [`CLAIM_HEADROOM_MS`] more (marks
    /// it used).
    pub(crate) fn token(&self, conv: u64) -> Option<u64> {
        let now = now_ms();
        let mut s = self.shard(conv).lock();
        let h = s.get_mut(&conv)?;
        if now.saturating_add(CLAIM_HEADROOM_MS) < h.expires_ms {
            h.used_ms = now;
            Some(h.epoch)
        } else {
            None
        }
    }

    /// Whether the lease of `epoch` on `conv` is still in force now.
    pub(crate) fn in_force(&self, conv: u64, epoch: u64) -> bool {
        let now = now_ms();
        self.shard(conv)
            .lock()
            .get(&conv)
            .is_some_and(|h| h.epoch == epoch && now < h.expires_ms)
    }

    /// A slot of `conv` created under `epoch` was seen: a lease held under a lower one is
    /// fenced and dropped. Returns whether it was.
    pub(crate) fn saw_epoch(&self, conv: u64, epoch: u64) -> bool {
        let mut s = self.shard(conv).lock();
        if s.get(&conv).is_some_and(|h| h.epoch < epoch) {
            s.remove(&conv);
            drop(s);
            self.stats.held.fetch_sub(1, Ordering::Relaxed);
            self.stats.fenced.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn insert(&self, conv: u64, h: Held) -> bool {
        let mut s = self.shard(conv).lock();
        let replaced = s.contains_key(&conv);
        if !replaced && self.stats.held.load(Ordering::Relaxed) >= MAX_HELD as u64 {
            return false;
        }
        s.insert(conv, h);
        if !replaced {
            self.stats.held.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// The counters.
    pub fn stats(&self) -> &LeaseStats {
        &self.stats
    }
}

impl Messenger {
    /// The leases' counters.
    pub fn lease_stats(&self) -> &LeaseStats {
        self.leases.stats()
    }

    /// The id this node's leases name as their holder: [`crate::MessengerConfig::lease_holder`],
    /// else the store's node id.
    pub fn lease_holder(&self) -> u64 {
        self.cfg.lease_holder.unwrap_or(self.store.node().0)
    }

    /// The epoch under which this node may assign `conv`'s seqs now: the lease held in memory,
    /// else taken (see [`next_lease`]); `busy` while another node's may be in force.
    pub(crate) async fn lease_token(&self, conv: &Conversation) -> Result<u64, MessengerError> {
        if let Some(epoch) = self.leases.token(conv.id) {
            return Ok(epoch);
        }
        let key = keys::lease(conv.id);
        let me = self.lease_holder();
        for _ in 0..4 {
            let now = now_ms();
            let current = self.read_at_owner(&conv.home_region, &key).await?;
            let (record, version) = match &current {
                Some((b, v)) => (Some(codec::from_value::<LeaseRecord>(b)?), Some(v)),
                None => (None, None),
            };
            let Some(next) = next_lease(record, me, now) else {
                self.leases.stats.busy.fetch_add(1, Ordering::Relaxed);
                return Err(MessengerError::Contended);
            };
            let value = codec::to_value(&next)?;
            if let CasOutcome::Applied(v) = self
                .cas
                .cas_at(&conv.home_region, &key, version, Some(value))
                .await?
            {
                // A new holder starts after the highest seq its replica holds.
                self.tails.invalidate(&conv.id);
                let held = Held {
                    region: Arc::from(conv.home_region.as_str()),
                    epoch: next.epoch,
                    expires_ms: next.expires_ms,
                    used_ms: now,
                    version: v.version,
                };
                if !self.leases.insert(conv.id, held) {
                    self.leases.stats.busy.fetch_add(1, Ordering::Relaxed);
                    return Err(MessengerError::Contended);
                }
                self.leases.stats.acquired.fetch_add(1, Ordering::Relaxed);
                self.start_renewer();
                return Ok(next.epoch);
            }
        }
        self.leases.stats.busy.fetch_add(1, Ordering::Relaxed);
        Err(MessengerError::Contended)
    }

    /// Entry `seq` of `conv` here, noting the epoch its slot was created under: a slot of a
    /// later holder (replicated here) fences the lease this node holds on `conv`.
    pub(crate) async fn message_noting_epoch(
        &self,
        conv: u64,
        seq: u64,
    ) -> Result<Option<Message>, MessengerError> {
        let Some(b) = self
            .store
            .get(&keys::message(conv, seq))
            .await?
            .and_then(|v| v.value)
        else {
            return Ok(None);
        };
        let (m, epoch) = decode_slot(&b)?;
        self.leases.saw_epoch(conv, epoch);
        Ok(Some(m))
    }

    /// Starts the renewal task once (it ends when the messenger is dropped).
    fn start_renewer(&self) {
        if self.leases.renewer.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.leases.renewer.store(false, Ordering::Relaxed);
            return;
        };
        let table = Arc::downgrade(&self.leases);
        let cas = Arc::downgrade(&self.cas);
        let me = self.lease_holder();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(RENEW_EVERY_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once: the lease was just taken.
            tick.tick().await;
            loop {
                tick.tick().await;
                if !renew_pass(&table, &cas, me).await {
                    return;
                }
            }
        });
    }
}

/// One renewal pass: renews the leases used within [`LEASE_MS`] (at most [`MAX_RENEWALS`]),
/// drops the others. `false` once the messenger is gone.
pub(crate) async fn renew_pass(
    table: &Weak<LeaseTable>,
    cas: &Weak<dyn CasRouter>,
    me: u64,
) -> bool {
    let (Some(t), Some(cas)) = (table.upgrade(), cas.upgrade()) else {
        return false;
    };
    let now = now_ms();
    let mut due = Vec::new();
    for shard in t.shards.iter() {
        let mut s = shard.lock();
        let before = s.len();
        s.retain(|_, h| now < h.expires_ms && now.saturating_sub(h.used_ms) < LEASE_MS);
        let dropped = before - s.len();
        if dropped > 0 {
            t.stats.held.fetch_sub(dropped as u64, Ordering::Relaxed);
        }
        for (conv, h) in s.iter() {
            if due.len() >= MAX_RENEWALS {
                t.stats.renew_failed.fetch_add(1, Ordering::Relaxed);
            } else {
                due.push((*conv, h.clone()));
            }
        }
    }
    for (conv, h) in due {
        let now = now_ms();
        let next = LeaseRecord {
            holder: me,
            epoch: h.epoch,
            expires_ms: now.saturating_add(LEASE_MS),
        };
        let Ok(value) = codec::to_value(&next) else {
            continue;
        };
        match cas
            .cas_at(&h.region, &keys::lease(conv), Some(&h.version), Some(value))
            .await
        {
            Ok(CasOutcome::Applied(v)) => {
                t.stats.renewed.fetch_add(1, Ordering::Relaxed);
                if let Some(x) = t.shard(conv).lock().get_mut(&conv)
                    && x.epoch == h.epoch
                {
                    x.expires_ms = next.expires_ms;
                    x.version = v.version;
                }
            }
            Ok(CasOutcome::Conflict(_)) => {
                // Another taking (or a write we did not make): this holding is over.
                // (Counted only if this holding was still held: after this node's own re-take
                // the table holds the next epoch, which this conflict does not end.)
                let mut s = t.shard(conv).lock();
                if s.get(&conv).is_some_and(|x| x.epoch == h.epoch) {
                    s.remove(&conv);
                    t.stats.held.fetch_sub(1, Ordering::Relaxed);
                    t.stats.fenced.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                t.stats.renew_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::MessengerError;
    use crate::tests::setup;
    use starling_store::StoreExt;

    async fn stored_lease(m: &Messenger, conv: u64) -> LeaseRecord {
        let v = m.store.get(&keys::lease(conv)).await.unwrap().unwrap();
        codec::from_value(&v.value.unwrap()).unwrap()
    }

    async fn slot(m: &Messenger, conv: u64, seq: u64) -> (Message, u64) {
        let v = m
            .store
            .get(&keys::message(conv, seq))
            .await
            .unwrap()
            .unwrap();
        decode_slot(&v.value.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_stale_epoch_is_refused_and_the_next_holder_starts_above_the_highest_seq() {
        let (m, u) = setup(2).await;
        let (conv, _) = m.create(u[0], &u[1..]).await.unwrap();
        let me = m.store.node().0;
        let first = m.send(&conv, u[0], "a", "one").await.unwrap();
        assert_eq!(first.message.seq, 1);
        let lease = stored_lease(&m, conv.id).await;
        assert_eq!((lease.holder, lease.epoch), (me, 1));
        assert_eq!(slot(&m, conv.id, 1).await.1, 1, "the slot carries epoch 1");

        // Another node takes the lease (epoch 2) and creates seq 2 under it.
        let theirs = LeaseRecord {
            holder: me + 1,
            epoch: 2,
            expires_ms: now_ms() + LEASE_MS,
        };
        m.store
            .put(&keys::lease(conv.id), codec::to_value(&theirs).unwrap())
            .await
            .unwrap();
        let mut other = first.message.clone();
        other.seq = 2;
        other.sender = u[1];
        other.client_id = "theirs".into();
        let created = m
            .store
            .cas(
                &keys::message(conv.id, 2),
                None,
                Some(encode_slot(&other, 2).unwrap()),
            )
            .await
            .unwrap();
        assert!(matches!(created, CasOutcome::Applied(_)));

        // This node still holds epoch 1 in memory: its claim meets epoch 2 and is refused.
        let r = m.send(&conv, u[0], "b", "two").await;
        assert!(matches!(r, Err(MessengerError::Contended)), "{r:?}");
        assert_eq!(m.lease_stats().fenced.load(Ordering::Relaxed), 1);
        assert_eq!(m.lease_stats().held.load(Ordering::Relaxed), 0);
        // While the other holding may be in force, it does not take the lease back.
        let r = m.send(&conv, u[0], "b", "two").await;
        assert!(matches!(r, Err(MessengerError::Contended)), "{r:?}");
        assert_eq!(m.lease_stats().busy.load(Ordering::Relaxed), 1);
        assert_eq!(slot(&m, conv.id, 2).await.0, other, "seq 2 is still theirs");

        // Once it expired (and the skew margin passed), the next taking is epoch 3, and the
        // claims start above the highest seq here.
        let expired = LeaseRecord {
            expires_ms: now_ms() - SKEW_MS - 1,
            ..theirs
        };
        m.store
            .put(&keys::lease(conv.id), codec::to_value(&expired).unwrap())
            .await
            .unwrap();
        let third = m.send(&conv, u[0], "b", "two").await.unwrap();
        assert!(third.new);
        assert_eq!(third.message.seq, 3);
        assert_eq!(slot(&m, conv.id, 3).await.1, 3, "the slot carries epoch 3");
        assert_eq!(stored_lease(&m, conv.id).await.epoch, 3);
        let again = m.send(&conv, u[0], "b", "two").await.unwrap();
        assert!(!again.new);
        assert_eq!(again.message, third.message);
        let log = m.after(conv.id, 0, 10, true).await.unwrap();
        let seqs: Vec<u64> = log.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3], "gap-free, each seq once");
    }

    #[tokio::test]
    async fn renewal_extends_used_leases_and_drops_idle_ones() {
        let (m, u) = setup(2).await;
        let (conv, _) = m.create(u[0], &u[1..]).await.unwrap();
        m.send(&conv, u[0], "a", "one").await.unwrap();
        let before = stored_lease(&m, conv.id).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let me = m.store.node().0;
        let (table, cas) = (Arc::downgrade(&m.leases), Arc::downgrade(&m.cas));
        // (The background task may renew too: count this pass's renewal as one at least.)
        let renewed = m.lease_stats().renewed.load(Ordering::Relaxed);
        assert!(renew_pass(&table, &cas, me).await);
        let after = stored_lease(&m, conv.id).await;
        assert_eq!(after.epoch, before.epoch, "a renewal keeps the epoch");
        assert!(after.expires_ms > before.expires_ms);
        assert!(m.lease_stats().renewed.load(Ordering::Relaxed) > renewed);
        // The next claim uses the renewed lease: no new taking.
        m.send(&conv, u[0], "b", "two").await.unwrap();
        assert_eq!(m.lease_stats().acquired.load(Ordering::Relaxed), 1);
        // A lease unused for LEASE_MS is dropped, not renewed.
        for h in m.leases.shard(conv.id).lock().values_mut() {
            h.used_ms = 0;
        }
        assert!(renew_pass(&table, &cas, me).await);
        assert_eq!(m.lease_stats().held.load(Ordering::Relaxed), 0);
        assert_eq!(m.leases.token(conv.id), None);
        // Gone with the messenger.
        drop(m);
        assert!(!renew_pass(&table, &cas, me).await);
    }

    /// A restart: the first run sends (its lease stays stored, unexpired) and ends; a run that
    /// answers to another holder id must wait it out (`busy`), the next run under the same
    /// holder id takes it again at once with the next epoch, and so does a later re-take of
    /// its own, without fencing its claims.
    #[tokio::test]
    async fn a_restart_under_the_same_holder_id_takes_its_leases_again_at_once() {
        let (m, u) = setup(2).await;
        let (conv, _) = m.create(u[0], &u[1..]).await.unwrap();
        let first = m.send(&conv, u[0], "a", "one").await.unwrap();
        let holder = m.lease_holder();
        assert_eq!(holder, m.store.node().0, "by default the store's node id");
        let parts = (
            m.store.clone(),
            m.cas.clone(),
            m.ids.clone(),
            m.graph.clone(),
        );
        drop(m);
        let run = |h: u64| {
            let mut cfg = crate::MessengerConfig::new("r");
            cfg.lease_holder = Some(h);
            let (store, cas, ids, graph) = parts.clone();
            Messenger::new(store, cas, ids, graph, cfg)
        };
        let stranger = run(holder + 1);
        let r = stranger.send(&conv, u[0], "b", "two").await;
        assert!(matches!(r, Err(MessengerError::Contended)), "{r:?}");
        assert_eq!(stranger.lease_stats().busy.load(Ordering::Relaxed), 1);
        drop(stranger);

        let again = run(holder);
        let second = again.send(&conv, u[0], "b", "two").await.unwrap();
        assert!(second.new);
        assert_eq!(second.message.seq, 2);
        let stats = again.lease_stats();
        assert_eq!(stats.busy.load(Ordering::Relaxed), 0);
        assert_eq!(stats.acquired.load(Ordering::Relaxed), 1);
        let lease = stored_lease(&again, conv.id).await;
        assert_eq!((lease.holder, lease.epoch), (holder, 2));
        assert_eq!(slot(&again, conv.id, 2).await.1, 2);
        // The first run's message: its retry gets the original, not a second copy.
        let retry = again.send(&conv, u[0], "a", "one").await.unwrap();
        assert!(!retry.new);
        assert_eq!(retry.message, first.message);

        // Its own re-take (the lease dropped from memory as idle, still stored as its own).
        for h in again.leases.shard(conv.id).lock().values_mut() {
            h.used_ms = 0;
        }
        let (table, cas) = (Arc::downgrade(&again.leases), Arc::downgrade(&again.cas));
        assert!(renew_pass(&table, &cas, holder).await);
        assert_eq!(stats.held.load(Ordering::Relaxed), 0);
        let third = again.send(&conv, u[0], "c", "three").await.unwrap();
        assert!(third.new);
        assert_eq!(third.message.seq, 3);
        assert_eq!(slot(&again, conv.id, 3).await.1, 3);
        assert_eq!(stats.acquired.load(Ordering::Relaxed), 2);
        assert_eq!(stats.fenced.load(Ordering::Relaxed), 0);
        assert_eq!(stats.busy.load(Ordering::Relaxed), 0);
        let log = again.after(conv.id, 0, 10, true).await.unwrap();
        let seqs: Vec<u64> = log.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3], "gap-free, each seq once");
    }

    #[test]
    fn the_holder_id_is_kept_in_the_data_directory() {
        let base =
            std::env::temp_dir().join(format!("starling-lease-holder-{}", std::process::id()));
        let (dir, other) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let id = holder_in(&dir).unwrap();
        assert_ne!(id, 0);
        assert_eq!(
            holder_in(&dir).unwrap(),
            id,
            "the same id at the next start"
        );
        assert_ne!(
            holder_in(&other).unwrap(),
            id,
            "another directory, another id"
        );
        std::fs::write(dir.join(HOLDER_FILE), "garbage\n").unwrap();
        assert!(holder_in(&dir).is_err(), "not replaced");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_lease_is_taken_from_nobody_from_itself_or_after_expiry_and_skew() {
        let first = next_lease(None, 7, 1_000).unwrap();
        assert_eq!((first.holder, first.epoch), (7, 1));
        assert_eq!(first.expires_ms, 1_000 + LEASE_MS);
        // Another node while the holding may be in force: no.
        assert_eq!(next_lease(Some(first), 8, first.expires_ms), None);
        assert_eq!(next_lease(Some(first), 8, first.expires_ms + SKEW_MS), None);
        // After expiry and the skew margin: yes, with the next epoch.
        let taken = next_lease(Some(first), 8, first.expires_ms + SKEW_MS + 1).unwrap();
        assert_eq!((taken.holder, taken.epoch), (8, 2));
        // Its own previous holding (a restart): at once, with the next epoch.
        let again = next_lease(Some(taken), 8, 0).unwrap();
        assert_eq!((again.holder, again.epoch), (8, 3));
    }

    #[test]
    fn a_slot_carries_its_epoch_and_still_decodes_as_a_message() {
        let mut m = Message::text(1, "c1", 9, "hi");
        m.seq = 3;
        let b = encode_slot(&m, 300).unwrap();
        let (back, epoch) = decode_slot(&b).unwrap();
        assert_eq!((back, epoch), (m.clone(), 300));
        // Readers that decode only the message are unaffected; slots without a trailer are 0.
        assert_eq!(codec::from_value::<Message>(&b).unwrap(), m);
        let plain = codec::to_value(&m).unwrap();
        assert_eq!(decode_slot(&plain).unwrap().1, 0);
    }

    #[test]
    fn a_higher_epoch_fences_the_lease_held() {
        let t = LeaseTable::default();
        let held = Held {
            region: Arc::from("us"),
            epoch: 4,
            expires_ms: now_ms() + LEASE_MS,
            used_ms: 0,
            version: VersionVector::default(),
        };
        assert!(t.insert(1, held));
        assert_eq!(t.token(1), Some(4));
        assert!(!t.saw_epoch(1, 4), "its own epoch");
        assert!(!t.saw_epoch(1, 3), "an older one");
        assert!(t.saw_epoch(1, 5), "a newer one fences it");
        assert_eq!(t.token(1), None);
        assert!(!t.in_force(1, 4));
        assert_eq!(t.stats.held.load(Ordering::Relaxed), 0);
        assert_eq!(t.stats.fenced.load(Ordering::Relaxed), 1);
    }
}
