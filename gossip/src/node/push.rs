//! Push: every change in the store's change feed goes at once to `fanout` peers (one in another
//! region), from a cursor saved as the `gossip-push` feed consumer. The feed and its records are
//! read by a store job ([`super::io`]); one push is in flight at a time.
//!
//! On a keyspace the region's nodes share ([`GossipConfig::keyspace_push`]) the own feed's push
//! sends nothing: the holders of the keyspace-wide feed's partitions hand their batches' records
//! to [`GossipNode::push_to_regions_step`], which sends them to one live member of each other
//! region, so a write is pushed once by the region, whichever node accepted it.

use super::io::{AfterApply, Job};
use super::*;

impl GossipNode {
    /// Resumes pushing where the last run stopped (`at`, the saved position): what was written
    /// and not pushed before a crash goes out now rather than waiting for anti-entropy. (A node
    /// whose feed was trimmed past it, or that never saved a cursor, starts at the feed's end.)
    pub(super) fn restore_cursor(&mut self, at: u64) {
        if at > 0 && at < self.cursor {
            self.cursor = at;
        }
        // Saved within a second if it differs (a position never saved holds the trimmer back).
        self.cursor_saved = (at, self.now);
    }

    /// Saves the push cursor, when it moved, at most every [`CURSOR_SAVE_EVERY`], one save at
    /// a time, and not before the saved one was read back.
    pub(super) fn save_cursor(&mut self) {
        let (saved, at) = self.cursor_saved;
        if !self.resumed
            || self.saving_cursor
            || self.cursor == saved
            || self.now < at + CURSOR_SAVE_EVERY
        {
            return;
        }
        self.saving_cursor = true;
        self.job(Job::SaveCursor { seq: self.cursor });
    }

    /// Applies received records (a store job); `then` says what their answer goes on to.
    pub(super) fn apply(&mut self, sets: Vec<Vec<Delta>>, then: AfterApply) {
        let horizon = self.gc_horizon();
        self.job(Job::Apply {
            sets,
            horizon,
            then,
        });
    }

    /// Carries on from an apply's answer: counts what changed and pushes it, or runs the CAS
    /// whose region read it was.
    pub(super) fn applied(&mut self, changed: &[u64], then: AfterApply) {
        let first = changed.first().copied().unwrap_or(0);
        match then {
            AfterApply::Push { hops, newest } => {
                self.metrics.deltas_applied += first;
                if first > 0 {
                    self.metrics.convergence_lag_ms =
                        self.clock.wall_millis().saturating_sub(newest);
                }
                self.push_changes(hops.clamp(1, Arrival::REPAIR - 1));
            }
            AfterApply::Repair => {
                let repaired = first;
                self.metrics.ae_repairs += changed.iter().sum::<u64>();
                self.metrics.ae_repairs_settled += repaired;
                if repaired > 0 {
                    self.ae_hurry();
                    self.last_settled_repair = Some(self.now);
                }
                self.push_changes(Arrival::REPAIR);
            }
            AfterApply::Fetch { id, done } => {
                self.metrics.cas_repaired += first;
                if done && let Some(held) = self.held.remove(&id) {
                    self.execute(held);
                }
            }
        }
    }

    /// Peers for one push: one in another region (if any is live), the rest preferably here.
    pub(super) fn push_targets(&mut self) -> Vec<Peer> {
        let members = self.members();
        let (local, remote): (Vec<Peer>, Vec<Peer>) = members
            .into_iter()
            .partition(|p| p.region == self.me.region);
        let n = (local.len() + remote.len() + 1) as f64;
        let fanout = self.cfg.fanout.max((n + 1.0).ln().ceil() as usize + 1);
        let mut chosen: Vec<Peer> = remote.choose(&mut self.rng).into_iter().cloned().collect();
        let want = fanout.saturating_sub(chosen.len());
        chosen.extend(local.sample(&mut self.rng, want).cloned());
        if chosen.len() < fanout {
            let more: Vec<Peer> = remote
                .iter()
                .filter(|p| !chosen.contains(p))
                .cloned()
                .collect();
            let want = fanout - chosen.len();
            chosen.extend(more.sample(&mut self.rng, want).cloned());
        }
        chosen
    }

    /// Asks for a push of what the change feed holds past the cursor, at most `push_batches`
    /// batches: the rest goes on the next call (every tick, every local write). `arrived` says
    /// how those changes came: [`Arrival::LOCAL`], after that many push hops, or
    /// [`Arrival::REPAIR`]. With a push in flight (or before the saved cursor was read back),
    /// one more runs when it is done.
    ///
    /// Bounded because each step of the core loop must stay short: pushing until the feed was
    /// empty, one store call a record, kept a node's loop in one step for 80 s under load.
    pub(super) fn push_changes(&mut self, arrived: u8) {
        if !self.resumed || self.push_in_flight {
            self.push_wanted.get_or_insert(arrived);
            return;
        }
        if self.cfg.keyspace_push {
            // Nothing to read or send: the keyspace feed's holders push this node's writes. The
            // cursor still moves (the trimmer waits for it) and the CASes waiting are answered.
            self.cursor = self.cursor.max(self.store.last_seq());
            let waiting = std::mem::take(&mut self.after_push_current)
                .into_iter()
                .chain(std::mem::take(&mut self.after_push_next));
            for (answer, result) in waiting.collect::<Vec<_>>() {
                self.answer_cas(answer, result);
            }
            return;
        }
        self.push_in_flight = true;
        self.push_arrived = arrived;
        // The CAS answers waiting for a push go out after this one.
        let waiting = std::mem::take(&mut self.after_push_next);
        self.after_push_current.extend(waiting);
        self.job(Job::Push {
            from: self.cursor,
            batch: self.cfg.push_batch,
            batches: self.cfg.push_batches,
        });
    }

    /// Sends what a push read, answers the CASes that waited for it, and runs the push asked
    /// for meanwhile.
    pub(super) fn pushed(&mut self, batches: Vec<(u64, Vec<Delta>)>) {
        self.push_in_flight = false;
        let arrived = self.push_arrived;
        for (last, deltas) in batches {
            self.cursor = self.cursor.max(last);
            if deltas.is_empty() {
                continue;
            }
            if self.cfg.record_arrivals {
                let at = self.now;
                self.arrivals.extend(deltas.iter().map(|d| Arrival {
                    key: d.key.clone(),
                    hops: arrived,
                    at,
                }));
            }
            let hops = if arrived == Arrival::REPAIR {
                1
            } else {
                arrived.saturating_add(1)
            };
            for to in self.push_targets() {
                self.metrics.deltas_pushed += deltas.len() as u64;
                self.send(
                    to,
                    Message::Push {
                        deltas: deltas.clone(),
                        hops,
                    },
                );
            }
        }
        for (answer, result) in std::mem::take(&mut self.after_push_current) {
            self.answer_cas(answer, result);
        }
        if let Some(arrived) = self.push_wanted.take() {
            self.push_changes(arrived);
        }
    }

    /// Sends `deltas` — records named by a batch of the keyspace-wide feed, read by the holder of
    /// its partition — to one live member of each other region, at most `push_batch` records a
    /// message; returns how many regions they went to. Counted once in
    /// [`GossipMetrics::keyspace_pushed`] whatever the regions.
    pub fn push_to_regions_step(
        &mut self,
        now: Duration,
        deltas: Vec<Delta>,
    ) -> (usize, Vec<Outbound>) {
        self.set_now(now);
        let mut by_region: BTreeMap<String, Vec<Peer>> = BTreeMap::new();
        for p in self.members() {
            if p.region != self.me.region {
                by_region.entry(p.region.clone()).or_default().push(p);
            }
        }
        let targets: Vec<Peer> = by_region
            .values()
            .filter_map(|peers| peers.choose(&mut self.rng).cloned())
            .collect();
        self.metrics.keyspace_pushed += deltas.len() as u64;
        for chunk in deltas.chunks(self.cfg.push_batch.max(1)) {
            for to in &targets {
                self.metrics.deltas_pushed += chunk.len() as u64;
                self.send(
                    to.clone(),
                    Message::Push {
                        deltas: chunk.to_vec(),
                        hops: 1,
                    },
                );
            }
        }
        (targets.len(), std::mem::take(&mut self.out))
    }
}
