//! Anti-entropy: digests, then the leaves of the ranges that differ, then key summaries of the
//! buckets that differ, then only the records that differ — each step capped and chunked.

use super::*;

impl GossipNode {
    /// Back to anti-entropy every `ae_interval`, starting within one: there is something to
    /// repair, or a member came or went.
    pub(super) fn ae_hurry(&mut self) {
        self.ae_idle_rounds = 0;
        self.next_ae = self.next_ae.min(self.now + self.cfg.ae_interval);
    }

    pub(super) async fn start_anti_entropy(&mut self) {
        let members = self.members();
        let (local, remote): (Vec<&Peer>, Vec<&Peer>) =
            members.iter().partition(|p| p.region == self.me.region);
        // Mostly a near peer; a far one every third round on average, and whenever no near one.
        let pick = if remote.is_empty() || (!local.is_empty() && self.rng.random_ratio(2, 3)) {
            local.choose(&mut self.rng)
        } else {
            remote.choose(&mut self.rng)
        };
        let Some(peer) = pick.map(|p| (*p).clone()) else {
            return;
        };
        self.metrics.ae_rounds += 1;
        let level = self.store.digests().level(AE_DEPTH);
        self.send(peer, Message::AeDigest { level });
    }

    pub(super) fn answer_digest(&mut self, from: Peer, theirs: &[u64]) {
        let tree = self.store.digests();
        let mine = tree.level(AE_DEPTH);
        if theirs.len() != mine.len() {
            tracing::warn!(from = %from.addr, "anti-entropy digest of the wrong shape");
            return;
        }
        let differing: Vec<usize> = (0..mine.len()).filter(|&i| mine[i] != theirs[i]).collect();
        if differing.is_empty() {
            return;
        }
        // Start at a random differing range so repeated rounds cover all of them.
        let start = self.rng.random_range(0..differing.len());
        let ranges = differing
            .iter()
            .cycle()
            .skip(start)
            .take(differing.len().min(self.cfg.ae_max_ranges))
            .map(|&r| {
                let leaves = tree.leaves()[r * RANGE_WIDTH..(r + 1) * RANGE_WIDTH].to_vec();
                (r as u32, leaves)
            })
            .collect();
        self.send(from, Message::AeLeaves { ranges });
    }

    pub(super) async fn compare_leaves(&mut self, from: Peer, ranges: &[(u32, Vec<u64>)]) {
        let tree = self.store.digests();
        let mut buckets = Vec::new();
        for (r, theirs) in ranges {
            let r = *r as usize;
            if theirs.len() != RANGE_WIDTH || (r + 1) * RANGE_WIDTH > LEAVES {
                tracing::warn!(from = %from.addr, "anti-entropy leaves of the wrong shape");
                return;
            }
            let mine = &tree.leaves()[r * RANGE_WIDTH..(r + 1) * RANGE_WIDTH];
            buckets.extend(
                (0..RANGE_WIDTH)
                    .filter(|&i| mine[i] != theirs[i])
                    .map(|i| (r * RANGE_WIDTH + i) as u32),
            );
        }
        if buckets.is_empty() {
            return;
        }
        self.send_summaries(&from, &buckets).await;
    }

    /// Sends `to` this node's summaries of `buckets`: whole buckets while `ae_max_summary`
    /// allows (the first one cut at it if it is larger), `ae_summary_chunk` keys a message.
    pub(super) async fn send_summaries(&mut self, to: &Peer, buckets: &[u32]) {
        let mut budget = self.cfg.ae_max_summary;
        let (mut batch, mut keys) = (Vec::new(), 0);
        for &b in buckets {
            if budget == 0 || b as usize >= LEAVES {
                break;
            }
            let Some((mine, complete)) = self.read_bucket(b, budget).await else {
                break;
            };
            if !batch.is_empty() && keys + mine.len() > self.cfg.ae_summary_chunk {
                let buckets = std::mem::take(&mut batch);
                self.send(to.clone(), Message::AeSummary { buckets });
                keys = 0;
            }
            budget -= mine.len();
            keys += mine.len();
            self.metrics.ae_summary_keys_sent += mine.len() as u64;
            batch.push(reconcile::summarize(b, &mine, complete));
        }
        if !batch.is_empty() {
            self.send(to.clone(), Message::AeSummary { buckets: batch });
        }
    }

    /// Up to `limit` of this node's (key, entry hash) pairs of `bucket`, in key order, and
    /// whether they are all of them; `None` (logged) if the store fails.
    pub(super) async fn read_bucket(
        &self,
        bucket: u32,
        limit: usize,
    ) -> Option<(Vec<(Key, u64)>, bool)> {
        let mut out = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let want = (limit - out.len()).min(BUCKET_PAGE);
            if want == 0 {
                return Some((out, false));
            }
            match self.store.bucket_hashes(bucket, after.as_ref(), want).await {
                Ok((page, next)) => {
                    out.extend(page);
                    match next {
                        Some(n) => after = Some(n),
                        None => return Some((out, true)),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading a bucket's hashes failed");
                    return None;
                }
            }
        }
    }

    /// Answers an asker's summaries: ships this node's records that differ from (or are missing
    /// in) the asker's, and asks for the asker's that differ from (or are missing in) its own,
    /// at most `ae_max_records` each way.
    pub(super) async fn reconcile(&mut self, from: Peer, summaries: &[BucketSummary]) {
        let (mut send, mut wants, mut wanted) = (Vec::new(), Vec::new(), 0);
        for s in summaries {
            if s.bucket as usize >= LEAVES {
                tracing::warn!(from = %from.addr, "anti-entropy summary of a bucket out of range");
                return;
            }
            let Some((mine, _)) = self.read_bucket(s.bucket, self.cfg.ae_max_summary).await else {
                break;
            };
            let mut plan = reconcile::plan(&mine, s);
            plan.send
                .truncate(self.cfg.ae_max_records.saturating_sub(send.len()));
            plan.want
                .truncate(self.cfg.ae_max_records.saturating_sub(wanted));
            send.extend(plan.send);
            if !plan.want.is_empty() {
                wanted += plan.want.len();
                wants.push((s.bucket, plan.want));
            }
        }
        self.send_records(&from, &send).await;
        if !wants.is_empty() {
            self.send(from, Message::AeWantKeys { buckets: wants });
        }
    }

    /// Ships `to` this node's records of the keys it asked for by hash, at most `ae_max_records`.
    pub(super) async fn send_wanted(&mut self, to: &Peer, wanted: &[(u32, Vec<u64>)]) {
        let mut keys = Vec::new();
        for (b, hashes) in wanted {
            if *b as usize >= LEAVES {
                tracing::warn!(from = %to.addr, "anti-entropy want of a bucket out of range");
                return;
            }
            let hashes: HashSet<u64> = hashes.iter().copied().collect();
            let Some((mine, _)) = self.read_bucket(*b, self.cfg.ae_max_summary).await else {
                break;
            };
            keys.extend(
                mine.into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| hashes.contains(&reconcile::key_hash(k.as_bytes()))),
            );
        }
        keys.truncate(self.cfg.ae_max_records);
        self.send_records(to, &keys).await;
    }

    /// Ships `to` this node's records of `keys`, `ae_chunk` a message.
    pub(super) async fn send_records(&mut self, to: &Peer, keys: &[Key]) {
        for chunk in keys.chunks(self.cfg.ae_chunk.max(1)) {
            // One store call a chunk (the core loop waits for each); a record purged since it
            // was listed is left out.
            let deltas: Vec<Delta> = match self.store.get_records(chunk).await {
                Ok(records) => chunk
                    .iter()
                    .zip(records)
                    .filter_map(|(key, r)| {
                        r.map(|record| Delta {
                            key: key.clone(),
                            record,
                        })
                    })
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, "reading records to repair failed");
                    return;
                }
            };
            if !deltas.is_empty() {
                self.metrics.ae_records_sent += deltas.len() as u64;
                self.send(to.clone(), Message::AeRecords { deltas });
            }
        }
    }

    /// Ships this node's records of `buckets` to `to`, chunked, capped per exchange (the
    /// answer to [`Message::AeWant`] of earlier builds).
    pub(super) async fn send_buckets(&mut self, to: &Peer, buckets: &[u32]) {
        let mut budget = self.cfg.ae_max_records;
        let mut chunk: Vec<Delta> = Vec::new();
        'buckets: for &b in buckets {
            if b as usize >= LEAVES {
                continue;
            }
            let mut after: Option<Key> = None;
            loop {
                let limit = self.cfg.ae_chunk.min(budget);
                if limit == 0 {
                    break 'buckets;
                }
                let (page, next) = match self.store.bucket(b, after.as_ref(), limit).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "reading a bucket failed");
                        break 'buckets;
                    }
                };
                budget -= page.len();
                chunk.extend(page);
                if chunk.len() >= self.cfg.ae_chunk {
                    self.metrics.ae_records_sent += chunk.len() as u64;
                    let deltas = std::mem::take(&mut chunk);
                    self.send(to.clone(), Message::AeRecords { deltas });
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        if !chunk.is_empty() {
            self.metrics.ae_records_sent += chunk.len() as u64;
            self.send(to.clone(), Message::AeRecords { deltas: chunk });
        }
    }
}
