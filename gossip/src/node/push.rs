//! Push: every change in the store's change feed goes at once to `fanout` peers (one in another
//! region), from a cursor saved as the `gossip-push` feed consumer.

use super::*;

impl GossipNode {
    /// Resumes pushing where the last run stopped: what was written and not pushed before a
    /// crash goes out now rather than waiting for anti-entropy. (A node whose feed was trimmed
    /// past it, or that never saved a cursor, starts at the feed's end.)
    pub(super) async fn restore_cursor(&mut self) {
        match FeedConsumer::new(self.store.clone(), PUSH_CONSUMER)
            .position()
            .await
        {
            Ok(at) => {
                if at > 0 && at < self.cursor {
                    self.cursor = at;
                }
                // Saved within a second if it differs (a position never saved holds the
                // trimmer back).
                self.cursor_saved = (at, self.now);
            }
            Err(e) => tracing::warn!(error = %e, "reading the push cursor failed"),
        }
    }

    /// Saves the push cursor, when it moved, at most every [`CURSOR_SAVE_EVERY`].
    pub(super) async fn save_cursor(&mut self) {
        let (saved, at) = self.cursor_saved;
        if self.cursor == saved || self.now < at + CURSOR_SAVE_EVERY {
            return;
        }
        match FeedConsumer::new(self.store.clone(), PUSH_CONSUMER)
            .commit(self.cursor)
            .await
        {
            Ok(()) => self.cursor_saved = (self.cursor, self.now),
            Err(e) => tracing::warn!(error = %e, "saving the push cursor failed"),
        }
    }

    pub(super) async fn apply(&mut self, deltas: &[Delta]) -> u64 {
        // A tombstone past the grace period is garbage — unless it deletes something still live
        // here (this node missed the delete): only then is it taken.
        let horizon = self.gc_horizon();
        let old = |d: &Delta| d.record.is_tombstone() && d.record.max_hlc() < horizon;
        let mut kept: Vec<Delta> = Vec::new();
        let deltas = if deltas.iter().any(old) {
            for d in deltas {
                if old(d) {
                    let live_here = matches!(
                        self.store.get_record(&d.key).await,
                        Ok(Some(r)) if !r.is_tombstone()
                    );
                    if !live_here {
                        continue;
                    }
                }
                kept.push(d.clone());
            }
            &kept[..]
        } else {
            deltas
        };
        match self.store.apply(deltas).await {
            Ok(r) => r.changed as u64,
            Err(e) => {
                tracing::error!(error = %e, "applying remote records failed");
                0
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

    /// Pushes what the change feed holds past the cursor, at most `push_batches` batches: the
    /// rest goes on the next call (every tick, every local write). `arrived` says how those
    /// changes came: [`Arrival::LOCAL`], after that many push hops, or [`Arrival::REPAIR`].
    ///
    /// Bounded because it runs on the core loop: pushing until the feed was empty, one store
    /// call a record, kept a node's loop in one step for 80 s under load (the writes came faster
    /// than it read them), so no tick, membership probe or anti-entropy round ran meanwhile.
    pub(super) async fn push_changes(&mut self, arrived: u8) {
        for _ in 0..self.cfg.push_batches.max(1) {
            let changes = match self.store.changes(self.cursor, self.cfg.push_batch).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "reading the change feed failed");
                    return;
                }
            };
            let Some(last) = changes.last() else { return };
            self.cursor = last.seq;
            let keys: Vec<Key> = changes
                .into_iter()
                .map(|c| c.key)
                .collect::<BTreeSet<Key>>()
                .into_iter()
                .collect();
            // One store call for the batch: the core loop waits for each call it makes.
            let deltas: Vec<Delta> = match self.store.get_records(&keys).await {
                Ok(records) => keys
                    .into_iter()
                    .zip(records)
                    .filter_map(|(key, r)| r.map(|record| Delta { key, record }))
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, "reading changed records failed");
                    Vec::new()
                }
            };
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
    }
}
