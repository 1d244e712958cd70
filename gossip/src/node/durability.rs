//! Durability waits: a write acknowledged once K regions hold it ([`GossipNode::wait_durable`]).
//!
//! One have-request to a random member of each region not yet known to hold the version,
//! again every 250 ms until enough regions answer with a version that dominates it or the
//! wait times out.

use super::*;

impl GossipNode {
    /// Finished durability waits since the last call.
    pub fn take_durable(&mut self) -> Vec<(u64, Result<(), NotDurable>)> {
        std::mem::take(&mut self.durable)
    }

    /// Waits until `version` of `key` (written here) is held in `regions` regions, this one
    /// included. With `regions <= 1` it is done at once: the write is durable locally already.
    /// Returns a wait id whose result comes from [`GossipNode::take_durable`].
    pub fn wait_durable(
        &mut self,
        now: Duration,
        key: Key,
        version: VersionVector,
        regions: usize,
    ) -> (u64, Vec<Outbound>) {
        self.set_now(now);
        let id = self.next_cas_id;
        self.next_cas_id += 1;
        let mut reached = BTreeSet::new();
        reached.insert(self.me.region.clone());
        self.durability.insert(
            id,
            PendingDurability {
                key,
                version,
                wanted: regions.max(1),
                reached,
                deadline: now + self.cfg.durability_timeout,
                next_ask: now,
            },
        );
        self.progress_durability();
        (id, std::mem::take(&mut self.out))
    }

    /// Finishes satisfied or expired durability waits, and asks again where needed.
    pub(super) fn progress_durability(&mut self) {
        let now = self.now;
        let members = self.members();
        let ids: Vec<u64> = self.durability.keys().copied().collect();
        for id in ids {
            let Some(p) = self.durability.get_mut(&id) else {
                continue;
            };
            if p.reached.len() >= p.wanted {
                self.durable.push((id, Ok(())));
                self.durability.remove(&id);
                continue;
            }
            if now >= p.deadline {
                let e = NotDurable {
                    reached: p.reached.len(),
                    wanted: p.wanted,
                };
                self.durable.push((id, Err(e)));
                self.durability.remove(&id);
                continue;
            }
            if now < p.next_ask {
                continue;
            }
            p.next_ask = now + Duration::from_millis(250);
            let key = p.key.clone();
            // Ask one random member of every region not yet known to hold it.
            let mut by_region: BTreeMap<&str, Vec<&Peer>> = BTreeMap::new();
            for m in &members {
                if !p.reached.contains(&m.region) {
                    by_region.entry(m.region.as_str()).or_default().push(m);
                }
            }
            let asks: Vec<Peer> = by_region
                .values()
                .filter_map(|ms| ms.choose(&mut self.rng).map(|p| (*p).clone()))
                .collect();
            for to in asks {
                let rid = self.next_cas_id;
                self.next_cas_id += 1;
                self.have_asked.insert(rid, (id, to.region.clone()));
                self.send(
                    to,
                    Message::HaveRequest {
                        id: rid,
                        key: key.clone(),
                    },
                );
            }
        }
        // Forget answers nobody waits for any more.
        let live = &self.durability;
        self.have_asked
            .retain(|_, (wait, _)| live.contains_key(wait));
    }
}
