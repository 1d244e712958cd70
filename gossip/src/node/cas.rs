//! CAS routing and repair, and routed calls: a CAS or call runs at its key's owner in a region
//! (rendezvous hashing over the live members); an owner still catching up reads the key from
//! its region before it executes. The CAS itself runs as a store job ([`super::io`]).

use super::io::Job;
use super::*;

impl GossipNode {
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

    /// Starts a compare-and-swap at the owner of `key` in `region`, running any store work it
    /// needs here at once ([`GossipNode::cas_step`] leaves it to the caller).
    pub async fn cas(
        &mut self,
        now: Duration,
        region: &str,
        key: Key,
        expected: Option<VersionVector>,
        new: Option<Bytes>,
    ) -> (CasStart, Vec<Outbound>) {
        let (start, mut out) = self.cas_step(now, region, key, expected, new);
        self.run_store_jobs(&mut out).await;
        let start = match start {
            CasStart::Pending(id) => {
                match self.completions.iter().position(|(done, _)| *done == id) {
                    Some(i) => CasStart::Done(self.completions.remove(i).1),
                    None => CasStart::Pending(id),
                }
            }
            done => done,
        };
        (start, out)
    }

    /// Starts a compare-and-swap at the owner of `key` in `region`. A CAS this node owns runs
    /// as a store job ([`GossipNode::take_store_jobs`]): it is pending, and its outcome comes
    /// as a completion once the job is done.
    pub fn cas_step(
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
            if let Some(h) = self.hold(held) {
                self.execute(h);
            }
            return (CasStart::Pending(id), std::mem::take(&mut self.out));
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

    /// Whether a CAS owned here is still preceded by a read of its key from the region (see
    /// [`GossipConfig::cas_repair`]): until `cas_repair` has passed since the start-up grace
    /// ended and since anti-entropy last found a write this replica had missed. A fresh node
    /// too: its empty replica is the stalest.
    pub(super) fn cas_repairing(&self) -> bool {
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
    pub(super) fn hold(&mut self, mut held: HeldCas) -> Option<HeldCas> {
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

    /// Executes a CAS owned here (a store job); its outcome is sent or recorded once the push
    /// of its result has gone out ([`GossipNode::answer_cas`]).
    pub(super) fn execute(&mut self, held: HeldCas) {
        self.job(Job::Cas {
            key: held.key,
            expected: held.expected,
            new: held.new,
            answer: held.answer,
        });
    }

    /// Sends or records the outcome of a CAS executed here.
    pub(super) fn answer_cas(&mut self, answer: HeldAnswer, r: Result<CasOutcome, CasError>) {
        match answer {
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
    pub(super) fn fail_expired_holds(&mut self) {
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
        let s = self.swim.lock();
        rendezvous_owner(s.swim.iter_members().map(|m| m.id()).chain(me), region, key).cloned()
    }

    /// A new request id (unique at this node across CASes and calls) and what waits for its
    /// answer until `deadline`.
    pub(super) fn request(&mut self, deadline: Duration, region: &str) -> (u64, PendingCas) {
        let id = self.next_cas_id;
        self.next_cas_id += 1;
        let waiting = PendingCas {
            deadline,
            region: region.to_string(),
        };
        (id, waiting)
    }
}

/// Removes the requests past their deadline; returns their ids and owner regions.
pub(super) fn expire(pending: &mut BTreeMap<u64, PendingCas>, now: Duration) -> Vec<(u64, String)> {
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

pub(super) fn reply_to_outcome(reply: CasReply) -> Result<CasOutcome, CasError> {
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
