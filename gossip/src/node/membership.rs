//! Membership: SWIM through foca (its timers fired by `tick`), the members saved across restarts,
//! and the start-up grace before this node owns keys.

use super::*;

impl GossipNode {
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

    /// Whether this node is still in its start-up grace and must not execute CASes as owner
    /// (see [`GossipConfig::owner_grace`]).
    pub(super) fn owner_grace(&self) -> bool {
        !self.fresh && self.now < self.grace_ends()
    }

    /// When the start-up grace ends (or would, for a node that has none).
    pub(super) fn grace_ends(&self) -> Duration {
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
    pub(super) async fn restore_members(&mut self) {
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

    /// Saves the members under [`REMEMBERED`] when they changed (node or address).
    pub(super) async fn save_members(&mut self) {
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

    pub(super) fn drain_swim(&mut self) {
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
}
