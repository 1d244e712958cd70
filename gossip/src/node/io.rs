//! The core's store work as requests and answers: the core never awaits the store.
//!
//! Where the core needs the store (a push reads the change feed and its records, a received
//! record is applied, a CAS it owns runs, anti-entropy and fetches read buckets and records, the
//! push cursor and the members are saved), it queues a [`StoreJob`] and goes on; the driver
//! takes the jobs ([`GossipNode::take_store_jobs`]), runs each on the store ([`StoreJob::run`],
//! in the order they were queued) and hands back the [`StoreDone`] answer
//! ([`GossipNode::store_done`]), which carries on where the request left off: the push sends
//! what it read, an apply pushes what changed, a CAS answers its caller.
//!
//! The transport runs the jobs on a worker of their own (the `gossip-store` lane), so no timer,
//! SWIM packet or CAS command waits on a store call; the simulation and the async wrappers
//! ([`GossipNode::tick`], [`GossipNode::handle`], …) run them at once, one after another,
//! which is what the core did before it was split this way.
//!
//! What keeps the work bounded: at most one push, one cursor save and one member save are in
//! flight (a push asked for meanwhile runs once when the one in flight is done); every other job
//! answers one message or command, and the transport stops taking those while too many jobs are
//! outstanding.

use super::*;

/// One piece of store work the core asked for. Opaque: run it ([`StoreJob::run`]) and give the
/// answer back to the node that made it ([`GossipNode::store_done`]).
#[derive(Debug)]
pub struct StoreJob(Job);

/// The answer to a [`StoreJob`].
#[derive(Debug)]
pub struct StoreDone(Done);

#[derive(Debug)]
pub(super) enum Job {
    /// The members saved before a restart, and the push cursor.
    Restore,
    /// Save the members (`ids` is what they are compared by).
    SaveMembers {
        members: Vec<Peer>,
        ids: Vec<(NodeId, String)>,
    },
    /// Save the push cursor.
    SaveCursor { seq: u64 },
    /// Read up to `batches` batches of the feed after `from` and their records.
    Push {
        from: u64,
        batch: usize,
        batches: usize,
    },
    /// Apply each set of records (a tombstone older than `horizon` only if it deletes
    /// something live here); what then happens is the core's.
    Apply {
        sets: Vec<Vec<Delta>>,
        horizon: Hlc,
        then: AfterApply,
    },
    /// Run a CAS this node owns.
    Cas {
        key: Key,
        expected: Option<VersionVector>,
        new: Option<Bytes>,
        answer: HeldAnswer,
    },
    /// Read and send `to` what it asked for.
    Answer { to: Peer, read: Read },
}

/// A read whose answer is messages to one peer.
#[derive(Debug)]
pub(super) enum Read {
    /// A fetch of keys (CAS repair).
    Fetch { id: u64, keys: Vec<Key> },
    /// A have-request (durability wait).
    Have { id: u64, key: Key },
    /// Summaries of the buckets whose leaves differ.
    Summaries(Vec<u32>),
    /// Records that differ from an asker's summaries, and a want of the asker's.
    Reconcile(Vec<BucketSummary>),
    /// Records asked for by key hash.
    Wanted(Vec<(u32, Vec<u64>)>),
    /// Whole buckets (earlier builds' `AeWant`).
    Buckets(Vec<u32>),
}

/// What an apply's answer goes on to.
#[derive(Debug)]
pub(super) enum AfterApply {
    /// A push `hops` away whose newest record was written at `newest` (ms).
    Push { hops: u8, newest: u64 },
    /// Anti-entropy records: the settled set, then the young one.
    Repair,
    /// A fetch answer for held CAS `id`; `done`: the last one it waited for.
    Fetch { id: u64, done: bool },
}

#[derive(Debug)]
pub(super) enum Done {
    Restore {
        members: Vec<Peer>,
        cursor: Option<u64>,
    },
    SaveMembers {
        ids: Vec<(NodeId, String)>,
        ok: bool,
    },
    SaveCursor {
        seq: u64,
        ok: bool,
    },
    /// Each batch read: its last sequence number and the records still there.
    Push {
        batches: Vec<(u64, Vec<Delta>)>,
    },
    Apply {
        changed: Vec<u64>,
        then: AfterApply,
    },
    Cas {
        result: Result<CasOutcome, CasError>,
        answer: HeldAnswer,
    },
    Answer {
        to: Peer,
        msgs: Vec<Message>,
        summary_keys: u64,
        records_sent: u64,
    },
}

impl StoreJob {
    /// Runs the job on `store` (the node's own, or the same store on another lane) with the
    /// node's settings.
    pub async fn run(self, store: &Arc<dyn Store>, cfg: &GossipConfig) -> StoreDone {
        StoreDone(match self.0 {
            Job::Restore => restore(store).await,
            Job::SaveMembers { members, ids } => {
                let ok = match postcard::to_allocvec(&members) {
                    Ok(v) => match store.put(&REMEMBERED.key().finish(), Bytes::from(v)).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "saving the members failed");
                            false
                        }
                    },
                    Err(_) => false,
                };
                Done::SaveMembers { ids, ok }
            }
            Job::SaveCursor { seq } => {
                let ok = match FeedConsumer::new(store.clone(), PUSH_CONSUMER)
                    .commit(seq)
                    .await
                {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "saving the push cursor failed");
                        false
                    }
                };
                Done::SaveCursor { seq, ok }
            }
            Job::Push {
                from,
                batch,
                batches,
            } => Done::Push {
                batches: read_push(store.as_ref(), from, batch, batches).await,
            },
            Job::Apply {
                sets,
                horizon,
                then,
            } => {
                let mut changed = Vec::with_capacity(sets.len());
                for set in &sets {
                    changed.push(apply(store.as_ref(), set, horizon).await);
                }
                Done::Apply { changed, then }
            }
            Job::Cas {
                key,
                expected,
                new,
                answer,
            } => Done::Cas {
                result: store
                    .cas(&key, expected.as_ref(), new)
                    .await
                    .map_err(|e: StoreError| CasError::Failed(e.to_string())),
                answer,
            },
            Job::Answer { to, read } => {
                let mut r = Reader {
                    store: store.as_ref(),
                    cfg,
                    msgs: Vec::new(),
                    summary_keys: 0,
                    records_sent: 0,
                };
                r.read(read).await;
                Done::Answer {
                    to,
                    msgs: r.msgs,
                    summary_keys: r.summary_keys,
                    records_sent: r.records_sent,
                }
            }
        })
    }
}

async fn restore(store: &Arc<dyn Store>) -> Done {
    let key = REMEMBERED.key().finish();
    let members: Vec<Peer> = match store.get(&key).await {
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
    let cursor = match FeedConsumer::new(store.clone(), PUSH_CONSUMER)
        .position()
        .await
    {
        Ok(at) => Some(at),
        Err(e) => {
            tracing::warn!(error = %e, "reading the push cursor failed");
            None
        }
    };
    Done::Restore { members, cursor }
}

/// Up to `batches` batches of the feed after `from`, each with its records (one store call for
/// a batch's records). A batch whose records cannot be read is given empty: anti-entropy
/// repairs what it would have pushed.
async fn read_push(
    store: &dyn Store,
    mut from: u64,
    batch: usize,
    batches: usize,
) -> Vec<(u64, Vec<Delta>)> {
    let mut out = Vec::new();
    for _ in 0..batches.max(1) {
        let changes = match store.changes(from, batch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reading the change feed failed");
                break;
            }
        };
        let Some(last) = changes.last() else { break };
        from = last.seq;
        let keys: Vec<Key> = changes
            .into_iter()
            .map(|c| c.key)
            .collect::<BTreeSet<Key>>()
            .into_iter()
            .collect();
        let deltas: Vec<Delta> = match records_of(store, &keys).await {
            Ok(deltas) => deltas,
            Err(e) => {
                tracing::error!(error = %e, "reading changed records failed");
                Vec::new()
            }
        };
        out.push((from, deltas));
    }
    out
}

/// This node's records of `keys` as deltas, in one store call; a key without a record (never
/// written, or purged since it was listed) is left out.
pub async fn records_of(store: &dyn Store, keys: &[Key]) -> Result<Vec<Delta>, StoreError> {
    let records = store.get_records(keys).await?;
    Ok(keys
        .iter()
        .zip(records)
        .filter_map(|(key, r)| {
            r.map(|record| Delta {
                key: key.clone(),
                record,
            })
        })
        .collect())
}

/// Applies `deltas`; how many changed the store. A tombstone past the grace period is garbage
/// — unless it deletes something still live here (this node missed the delete): only then is
/// it taken.
async fn apply(store: &dyn Store, deltas: &[Delta], horizon: Hlc) -> u64 {
    let old = |d: &Delta| d.record.is_tombstone() && d.record.max_hlc() < horizon;
    let mut kept: Vec<Delta> = Vec::new();
    let deltas = if deltas.iter().any(old) {
        for d in deltas {
            if old(d) {
                let live_here = matches!(
                    store.get_record(&d.key).await,
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
    if deltas.is_empty() {
        return 0;
    }
    match store.apply(deltas).await {
        Ok(r) => r.changed as u64,
        Err(e) => {
            tracing::error!(error = %e, "applying remote records failed");
            0
        }
    }
}

/// The reads that answer a peer: what it produces are messages to that peer.
struct Reader<'a> {
    store: &'a dyn Store,
    cfg: &'a GossipConfig,
    msgs: Vec<Message>,
    summary_keys: u64,
    records_sent: u64,
}

impl Reader<'_> {
    async fn read(&mut self, read: Read) {
        match read {
            Read::Fetch { id, keys } => {
                let keys: Vec<Key> = keys.into_iter().take(self.cfg.ae_chunk.max(1)).collect();
                let deltas: Vec<Delta> = match records_of(self.store, &keys).await {
                    Ok(deltas) => deltas,
                    Err(e) => {
                        tracing::warn!(error = %e, "answering a fetch failed");
                        Vec::new()
                    }
                };
                self.msgs.push(Message::FetchResponse { id, deltas });
            }
            Read::Have { id, key } => {
                let version = match self.store.get_record(&key).await {
                    Ok(r) => r.map(|r| r.context().clone()),
                    Err(e) => {
                        tracing::warn!(error = %e, "answering a have-request failed");
                        None
                    }
                };
                self.msgs.push(Message::HaveResponse { id, version });
            }
            Read::Summaries(buckets) => self.send_summaries(&buckets).await,
            Read::Reconcile(summaries) => self.reconcile(&summaries).await,
            Read::Wanted(wanted) => self.send_wanted(&wanted).await,
            Read::Buckets(buckets) => self.send_buckets(&buckets).await,
        }
    }

    /// This node's summaries of `buckets`: whole buckets while `ae_max_summary` allows (the
    /// first one cut at it if it is larger), `ae_summary_chunk` keys a message.
    async fn send_summaries(&mut self, buckets: &[u32]) {
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
                self.msgs.push(Message::AeSummary { buckets });
                keys = 0;
            }
            budget -= mine.len();
            keys += mine.len();
            self.summary_keys += mine.len() as u64;
            batch.push(reconcile::summarize(b, &mine, complete));
        }
        if !batch.is_empty() {
            self.msgs.push(Message::AeSummary { buckets: batch });
        }
    }

    /// Up to `limit` of this node's (key, entry hash) pairs of `bucket`, in key order, and
    /// whether they are all of them; `None` (logged) if the store fails.
    async fn read_bucket(&self, bucket: u32, limit: usize) -> Option<(Vec<(Key, u64)>, bool)> {
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

    /// Answers an asker's summaries: ships this node's records that differ from (or are
    /// missing in) the asker's, and asks for the asker's that differ from (or are missing in)
    /// its own, at most `ae_max_records` each way.
    async fn reconcile(&mut self, summaries: &[BucketSummary]) {
        let (mut send, mut wants, mut wanted) = (Vec::new(), Vec::new(), 0);
        for s in summaries {
            if s.bucket as usize >= LEAVES {
                tracing::warn!("anti-entropy summary of a bucket out of range");
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
        self.send_records(&send).await;
        if !wants.is_empty() {
            self.msgs.push(Message::AeWantKeys { buckets: wants });
        }
    }

    /// This node's records of the keys asked for by hash, at most `ae_max_records`.
    async fn send_wanted(&mut self, wanted: &[(u32, Vec<u64>)]) {
        let mut keys = Vec::new();
        for (b, hashes) in wanted {
            if *b as usize >= LEAVES {
                tracing::warn!("anti-entropy want of a bucket out of range");
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
        self.send_records(&keys).await;
    }

    /// This node's records of `keys`, `ae_chunk` a message.
    async fn send_records(&mut self, keys: &[Key]) {
        for chunk in keys.chunks(self.cfg.ae_chunk.max(1)) {
            // One store call a chunk; a record purged since it was listed is left out.
            let deltas: Vec<Delta> = match records_of(self.store, chunk).await {
                Ok(deltas) => deltas,
                Err(e) => {
                    tracing::error!(error = %e, "reading records to repair failed");
                    return;
                }
            };
            if !deltas.is_empty() {
                self.records_sent += deltas.len() as u64;
                self.msgs.push(Message::AeRecords { deltas });
            }
        }
    }

    /// This node's records of `buckets`, chunked, capped per exchange (the answer to
    /// [`Message::AeWant`] of earlier builds).
    async fn send_buckets(&mut self, buckets: &[u32]) {
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
                    self.records_sent += chunk.len() as u64;
                    let deltas = std::mem::take(&mut chunk);
                    self.msgs.push(Message::AeRecords { deltas });
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        if !chunk.is_empty() {
            self.records_sent += chunk.len() as u64;
            self.msgs.push(Message::AeRecords { deltas: chunk });
        }
    }
}

impl GossipNode {
    /// Queues store work (see the module documentation).
    pub(super) fn job(&mut self, job: Job) {
        self.jobs_made += 1;
        self.jobs.push_back(StoreJob(job));
    }

    /// The store work asked for since the last call, in order: run each ([`StoreJob::run`])
    /// and give its answer to [`GossipNode::store_done`], in the same order.
    pub fn take_store_jobs(&mut self) -> Vec<StoreJob> {
        self.jobs.drain(..).collect()
    }

    /// Store jobs made since this node started (for a driver's metrics).
    pub fn store_jobs_made(&self) -> u64 {
        self.jobs_made
    }

    /// Takes the answer to one of this node's [`StoreJob`]s and carries on from it.
    pub fn store_done(&mut self, now: Duration, done: StoreDone) -> Vec<Outbound> {
        self.set_now(now);
        match done.0 {
            Done::Restore { members, cursor } => {
                self.restore_members(members);
                if let Some(at) = cursor {
                    self.restore_cursor(at);
                }
                self.resumed = true;
                let arrived = self.push_wanted.take().unwrap_or(Arrival::LOCAL);
                self.push_changes(arrived);
            }
            Done::SaveMembers { ids, ok } => {
                self.saving_members = false;
                if ok {
                    self.saved = ids;
                }
            }
            Done::SaveCursor { seq, ok } => {
                self.saving_cursor = false;
                if ok {
                    self.cursor_saved = (seq, self.now);
                }
            }
            Done::Push { batches } => self.pushed(batches),
            Done::Apply { changed, then } => self.applied(&changed, then),
            Done::Cas { result, answer } => {
                // Answered once the push of its result has gone out (see `pushed`).
                self.after_push_next.push((answer, result));
                self.push_changes(Arrival::LOCAL);
            }
            Done::Answer {
                to,
                msgs,
                summary_keys,
                records_sent,
            } => {
                self.metrics.ae_summary_keys_sent += summary_keys;
                self.metrics.ae_records_sent += records_sent;
                for msg in msgs {
                    self.send(to.clone(), msg);
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Runs the queued store work here, one job after another, until none is left (the async
    /// wrappers and the simulation): the outbound messages it leads to go to `out`.
    pub(super) async fn run_store_jobs(&mut self, out: &mut Vec<Outbound>) {
        while let Some(job) = self.jobs.pop_front() {
            let done = job.run(&self.store, &self.cfg).await;
            let now = self.now;
            out.extend(self.store_done(now, done));
        }
    }
}
