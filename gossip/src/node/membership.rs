//! Membership: SWIM through foca (its timers fired by `tick`, or by a [`SwimDriver`] on a task of
//! its own that never waits on the store), the members saved across restarts, and the start-up
//! grace before this node owns keys.

use super::*;

/// foca's state and its timers: shared by the core and a [`SwimDriver`] behind a lock that is
/// held for one synchronous step at a time (never across a store call).
pub(super) struct Swimmer {
    pub(super) swim: Swim,
    rt: AccumulatingRuntime<Peer>,
    timers: BTreeMap<(Duration, u64), Timer<Peer>>,
    timer_seq: u64,
    /// Packets a driver sent since the core last counted them in `messages_out`.
    sent_by_driver: u64,
}

impl Swimmer {
    pub(super) fn new(swim: Swim) -> Self {
        Swimmer {
            swim,
            rt: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            sent_by_driver: 0,
        }
    }

    /// Fires the timers due at `now`.
    fn fire(&mut self, now: Duration) {
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
    }

    /// Moves what foca asked for into the timer queue (due from `now`) and returns its packets.
    fn take_sends(&mut self, now: Duration) -> Vec<(Peer, Vec<u8>)> {
        let mut sends = Vec::new();
        while let Some((to, data)) = self.rt.to_send() {
            sends.push((to, data.to_vec()));
        }
        while let Some((after, timer)) = self.rt.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        sends
    }
}

/// Drives SWIM — probes, suspicion and announce timers, and the membership packets — apart from
/// the core's store work, so that a slow store read or write never holds a probe back (a member
/// that misses probes because this node is busy is suspected and declared down by others).
/// Membership changes it sees are left for the core, which takes them on its next step.
/// The caller gives both the same clock (`now` since the same start).
#[derive(Clone)]
pub struct SwimDriver {
    swim: Arc<parking_lot::Mutex<Swimmer>>,
}

impl std::fmt::Debug for SwimDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwimDriver").finish_non_exhaustive()
    }
}

impl SwimDriver {
    /// Fires the SWIM timers due at `now`; returns the packets to send.
    pub fn tick(&self, now: Duration) -> Vec<Outbound> {
        let mut s = self.swim.lock();
        s.fire(now);
        Self::packets(&mut s, now)
    }

    /// Handles one SWIM packet from `from`; returns the packets to send.
    pub fn handle(&self, now: Duration, from: &Peer, data: &[u8]) -> Vec<Outbound> {
        let mut s = self.swim.lock();
        let Swimmer { swim, rt, .. } = &mut *s;
        if let Err(e) = swim.handle_data(data, rt) {
            tracing::debug!(from = %from.addr, error = %e, "swim packet refused");
        }
        Self::packets(&mut s, now)
    }

    fn packets(s: &mut Swimmer, now: Duration) -> Vec<Outbound> {
        let out: Vec<Outbound> = s
            .take_sends(now)
            .into_iter()
            .map(|(to, data)| Outbound {
                to,
                msg: Message::Swim(data),
            })
            .collect();
        s.sent_by_driver += out.len() as u64;
        out
    }
}

impl GossipNode {
    /// Every member the membership knows, other than this node, with its SWIM state: one entry
    /// per node (its newest incarnation).
    pub fn membership(&self) -> Vec<(Peer, MemberState)> {
        let mut by_node: BTreeMap<starling_store::NodeId, (Peer, MemberState)> = BTreeMap::new();
        let s = self.swim.lock();
        for m in s.swim.iter_membership_state() {
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
        self.swim
            .lock()
            .swim
            .iter_members()
            .map(|m| m.id().clone())
            .collect()
    }

    /// A driver of this node's SWIM timers and packets for a task of its own ([`SwimDriver`]).
    pub fn swim_driver(&self) -> SwimDriver {
        SwimDriver {
            swim: self.swim.clone(),
        }
    }

    /// Announces this node to the seeds (known by address or fully).
    pub fn join(&mut self, now: Duration, seeds: &[Peer]) -> Vec<Outbound> {
        self.set_now(now);
        for s in seeds {
            if s.addr == self.me.addr {
                continue;
            }
            let r = {
                let mut g = self.swim.lock();
                let Swimmer { swim, rt, .. } = &mut *g;
                swim.announce(s.clone(), rt)
            };
            match r {
                Ok(()) => self.announced = true,
                Err(e) => tracing::warn!(seed = %s.addr, error = %e, "announce failed"),
            }
        }
        self.drain_swim();
        std::mem::take(&mut self.out)
    }

    /// Leaves the cluster gracefully.
    pub fn leave(&mut self) -> Vec<Outbound> {
        let r = {
            let mut g = self.swim.lock();
            let Swimmer { swim, rt, .. } = &mut *g;
            swim.leave_cluster(rt)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "leave failed");
        }
        self.drain_swim();
        std::mem::take(&mut self.out)
    }

    /// Whether this node is still in its start-up grace and must not execute CASes as owner
    /// (see [`GossipConfig::owner_grace`]).
    pub(super) fn owner_grace(&self) -> bool {
        // Not before the members saved before a restart were read back (a store job).
        !self.fresh && (!self.resumed || self.now < self.grace_ends())
    }

    /// When the start-up grace ends (or would, for a node that has none).
    pub(super) fn grace_ends(&self) -> Duration {
        let longest = self.started.unwrap_or(self.now) + self.cfg.owner_grace;
        // A member of this region seen before the restart and not yet back in the view would
        // make this node take its keys for its own.
        let missing = {
            let s = self.swim.lock();
            self.expected
                .iter()
                .any(|n| !s.swim.iter_members().any(|m| m.id().node == *n))
        };
        if missing {
            return longest;
        }
        // A member learned from a probe is one member; a seed's answer to the join is all.
        let joined = self.first_member_at.filter(|_| self.announced);
        joined.map_or(longest, |t| (t + Duration::from_secs(1)).min(longest))
    }

    /// Takes the members saved before a restart (read by a store job): announces itself to
    /// each (a seed that is sure to know this region) and expects those of its region back
    /// before owning keys.
    pub(super) fn restore_members(&mut self, peers: Vec<Peer>) {
        for p in peers.into_iter().filter(|p| p.node != self.me.node) {
            if p.region == self.me.region {
                self.expected.insert(p.node);
            }
            let r = {
                let mut g = self.swim.lock();
                let Swimmer { swim, rt, .. } = &mut *g;
                swim.announce(p.clone(), rt)
            };
            match r {
                Ok(()) => self.announced = true,
                Err(e) => tracing::debug!(member = %p.addr, error = %e, "announce failed"),
            }
        }
        self.drain_swim();
    }

    /// Saves the members under [`REMEMBERED`] when they changed (node or address): a store
    /// job, one at a time.
    pub(super) fn save_members(&mut self) {
        if self.saving_members {
            return;
        }
        let members = self.members();
        let mut ids: Vec<(NodeId, String)> =
            members.iter().map(|p| (p.node, p.addr.clone())).collect();
        ids.sort();
        if ids == self.saved || members.is_empty() {
            return;
        }
        self.saving_members = true;
        self.job(super::io::Job::SaveMembers { members, ids });
    }

    /// Fires the SWIM timers due now (a [`SwimDriver`] may have fired them already).
    pub(super) fn fire_swim_timers(&mut self) {
        self.swim.lock().fire(self.now);
    }

    /// Handles a SWIM packet here (when no [`SwimDriver`] takes them).
    pub(super) fn handle_swim(&mut self, from: &Peer, data: &[u8]) {
        {
            let mut g = self.swim.lock();
            let Swimmer { swim, rt, .. } = &mut *g;
            if let Err(e) = swim.handle_data(data, rt) {
                tracing::debug!(from = %from.addr, error = %e, "swim packet refused");
            }
        }
        self.drain_swim();
    }

    /// Sends what foca asked to, schedules its timers and takes the membership changes it saw
    /// (here or in a [`SwimDriver`]).
    pub(super) fn drain_swim(&mut self) {
        let (sends, notes, by_driver) = {
            let mut g = self.swim.lock();
            let sends = g.take_sends(self.now);
            let mut notes = Vec::new();
            while let Some(n) = g.rt.to_notify() {
                notes.push(n);
            }
            (sends, notes, std::mem::take(&mut g.sent_by_driver))
        };
        self.metrics.messages_out += by_driver;
        for (to, data) in sends {
            self.send(to, Message::Swim(data));
        }
        for n in notes {
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
}
