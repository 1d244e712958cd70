//! Bulk loads ([`Store::bulk_load`](crate::Store::bulk_load)): a fresh store filled from one
//! ascending stream of keys, the way `starling seed` loads a million-user graph.
//!
//! The regular write path costs, per key, a read, a stripe lock, a journal append and a feed
//! entry; a bulk load skips all of it. Records are encoded once per distinct mutation (every
//! follow edge of a seed is the same record, only its key differs) and handed in chunks to a
//! writer thread that streams them into the backend as one sorted run (fjall: new tables,
//! no journal). Digest-bucket index entries (`bucket ‖ key` → the record's entry hash) are appended to one buffer per
//! bucket — keys arrive ascending, so each buffer is already in index order — and every
//! [`INDEX_RUN`] keys written as a run of their own by another thread, bucket after bucket.
//! Digests are toggled as keys pass.
//! No change-feed entry is written: consumers and peers never replay a load; replicas loaded
//! with the same stream hold byte-identical records and agree by digest without a transfer.

use super::Shared;
use super::backend::{Backend, Sink, Space};
use super::rules;
use crate::codec::encode_record;
use crate::contract::{BulkLoad, BulkReport, Mutation};
use crate::digest::{LEAVES, bucket_of, entry_hash};
use crate::error::{Result, StoreError};
use crate::key::{Key, LOCAL_PREFIX};
use crate::record::Record;
use crate::version::Dot;
use bytes::Bytes;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Records per chunk handed to the data writer.
const CHUNK: usize = if cfg!(test) { 100 } else { 16 * 1024 };
/// Chunks queued ahead of the data writer.
const QUEUE: usize = 8;
/// Index entries per sorted index run (small in tests, so they cover several runs).
const INDEX_RUN: usize = if cfg!(test) { 1000 } else { 32 << 20 };

type Writer = JoinHandle<Result<()>>;

/// Index entries waiting for their run, already in index order: one buffer per digest bucket,
/// each entry a key's length (u32, little-endian), its bytes and its record's entry hash (u64,
/// big-endian), appended in key order — so the run is written by walking the buckets in turn,
/// with no sort and sequential reads.
struct IndexBuckets {
    buckets: Vec<Vec<u8>>,
    entries: usize,
}

impl IndexBuckets {
    fn new() -> Self {
        IndexBuckets {
            buckets: vec![Vec::new(); LEAVES],
            entries: 0,
        }
    }

    fn push(&mut self, bucket: u32, key: &[u8], hash: u64) {
        let buf = &mut self.buckets[bucket as usize];
        // Keys are bounded by `Limits::max_key`, far below u32::MAX.
        buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        buf.extend_from_slice(key);
        buf.extend_from_slice(&hash.to_be_bytes());
        self.entries += 1;
    }

    /// Writes every entry, `bucket (u16, big-endian) ‖ key` → the record's entry hash (u64,
    /// big-endian), in order.
    fn write_to(&self, sink: &mut dyn Sink) -> Result<()> {
        let mut entry = Vec::with_capacity(2 + 1024);
        for (bucket, buf) in self.buckets.iter().enumerate() {
            let mut rest = &buf[..];
            while let Some((len, tail)) = rest.split_first_chunk::<4>() {
                let len = u32::from_le_bytes(*len) as usize;
                let (key, tail) = tail.split_at(len.min(tail.len()));
                let (hash, tail) = tail.split_at(8.min(tail.len()));
                entry.clear();
                entry.extend_from_slice(&(bucket as u16).to_be_bytes());
                entry.extend_from_slice(key);
                sink.write(&entry, hash)?;
                rest = tail;
            }
        }
        Ok(())
    }
}

/// A bulk load into an engine.
pub(super) struct Loader<B: Backend> {
    shared: Arc<Shared<B>>,
    dot: Dot,
    last: Option<Key>,
    /// The last mutation and its encoded record, reused while mutations repeat.
    encoded: Option<(Mutation, Bytes)>,
    chunk: Vec<(Bytes, Bytes)>,
    data_tx: Option<SyncSender<Vec<(Bytes, Bytes)>>>,
    data: Option<Writer>,
    index: IndexBuckets,
    index_writer: Option<Writer>,
    report: BulkReport,
}

impl<B: Backend> Loader<B> {
    /// Starts a load, refused unless the store holds no replicated record and fed no change.
    pub(super) fn start(shared: Arc<Shared<B>>, dot: Dot) -> Result<Self> {
        let replicated = shared.backend.scan(
            Space::Data,
            (
                Bound::Unbounded,
                Bound::Excluded(Bytes::from_static(&[LOCAL_PREFIX])),
            ),
            false,
            1,
        )?;
        if !replicated.is_empty() || *shared.commit.lock() != 0 {
            return Err(StoreError::InvalidArgument(
                "a bulk load needs a store that holds no replicated record yet",
            ));
        }
        shared.clock.observe(dot.hlc);
        let (tx, rx) = sync_channel::<Vec<(Bytes, Bytes)>>(QUEUE);
        let writer = shared.clone();
        let data = std::thread::Builder::new()
            .name("bulk-data".into())
            .spawn(move || {
                writer.backend.ingest(Space::Data, &mut |sink| {
                    for chunk in rx.iter() {
                        for (k, v) in &chunk {
                            sink.write(k, v)?;
                        }
                    }
                    Ok(())
                })
            })
            .map_err(|source| StoreError::Io {
                context: "starting the bulk-load writer".into(),
                source,
            })?;
        Ok(Loader {
            shared,
            dot,
            last: None,
            encoded: None,
            chunk: Vec::with_capacity(CHUNK),
            data_tx: Some(tx),
            data: Some(data),
            index: IndexBuckets::new(),
            index_writer: None,
            report: BulkReport::default(),
        })
    }

    fn encode(&mut self, m: Mutation) -> Result<Bytes> {
        if let Some((last, bytes)) = &self.encoded
            && *last == m
        {
            return Ok(bytes.clone());
        }
        let mut r = Record::empty(m.kind());
        rules::write(&mut r, self.dot, m.clone(), None)?;
        let bytes = encode_record(&r)?;
        self.encoded = Some((m, bytes.clone()));
        Ok(bytes)
    }

    fn send_chunk(&mut self) -> Result<()> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let sent = self
            .data_tx
            .as_ref()
            .is_some_and(|tx| tx.send(chunk).is_ok());
        if sent {
            return Ok(());
        }
        // The writer stopped: its error says why.
        self.data_tx = None;
        match self.data.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Err(e),
            _ => Err(StoreError::Corrupt("the bulk-load writer stopped".into())),
        }
    }

    /// Writes the buffered index entries as one run, after the previous run is done.
    fn write_index(&mut self) -> Result<()> {
        join(self.index_writer.take())?;
        if self.index.entries == 0 {
            return Ok(());
        }
        let index = std::mem::replace(&mut self.index, IndexBuckets::new());
        let shared = self.shared.clone();
        let writer = std::thread::Builder::new()
            .name("bulk-index".into())
            .spawn(move || {
                shared
                    .backend
                    .ingest(Space::Index, &mut |sink| index.write_to(sink))
            })
            .map_err(|source| StoreError::Io {
                context: "starting the bulk-load index writer".into(),
                source,
            })?;
        self.index_writer = Some(writer);
        Ok(())
    }
}

fn join(writer: Option<Writer>) -> Result<()> {
    match writer.map(JoinHandle::join) {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(_)) => Err(StoreError::Corrupt("a bulk-load writer panicked".into())),
    }
}

impl<B: Backend> BulkLoad for Loader<B> {
    fn push(&mut self, key: Key, mutation: Mutation) -> Result<()> {
        rules::check_mutation(&self.shared.limits, &key, &mutation)?;
        if matches!(mutation, Mutation::Delete | Mutation::Remove) {
            // The tombstone index is written by the regular path only; a seed deletes nothing.
            return Err(StoreError::InvalidArgument(
                "a bulk load writes no tombstones",
            ));
        }
        if self.last.as_ref().is_some_and(|last| key <= *last) {
            return Err(StoreError::InvalidArgument(
                "bulk-load keys must come in strictly ascending order",
            ));
        }
        let value = self.encode(mutation)?;
        self.report.keys += 1;
        self.report.bytes += (key.len() + value.len()) as u64;
        if !key.is_local() {
            self.report.replicated += 1;
            let bucket = bucket_of(key.as_bytes());
            let hash = entry_hash(key.as_bytes(), &value);
            self.shared.digests.toggle_in(bucket, hash);
            self.index.push(bucket, key.as_bytes(), hash);
            if self.index.entries >= INDEX_RUN {
                self.write_index()?;
            }
        }
        self.chunk.push((key.0.clone(), value));
        self.last = Some(key);
        if self.chunk.len() >= CHUNK {
            self.send_chunk()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<BulkReport> {
        if !self.chunk.is_empty() {
            self.send_chunk()?;
        }
        self.data_tx = None;
        join(self.data.take())?;
        self.write_index()?;
        join(self.index_writer.take())?;
        self.shared.backend.sync()?;
        self.shared.save_digests()?;
        Ok(self.report)
    }
}

#[cfg(test)]
mod tests {
    use crate::contract::{Mutation, Store};
    use crate::digest::LEAVES;
    use crate::engine::{EmbeddedOptions, open_embedded, open_memory};
    use crate::hlc::{Hlc, HlcClock};
    use crate::key::{Key, Keyspace};
    use crate::node::NodeId;
    use crate::version::Dot;
    use crate::{Limits, StoreExt};
    use bytes::Bytes;
    use std::sync::Arc;

    const USERS: Keyspace = Keyspace::new("u");
    const EDGES: Keyspace = Keyspace::new("e");
    const COUNTS: Keyspace = Keyspace::local("n");

    fn dot() -> Dot {
        Dot {
            hlc: Hlc::new(1_700_000_000_000, 0),
            node: NodeId::from_names("local", "seed"),
        }
    }

    /// A load in key order: edges (one repeated record), users, local counts.
    fn items(n: u64) -> Vec<(Key, Mutation)> {
        let mut out = Vec::new();
        for a in 0..n {
            for b in (0..n).filter(|b| (a + b) % 3 == 0) {
                let k = EDGES.key().u64(a).u64(b).finish();
                out.push((k, Mutation::Add(Bytes::from_static(b"t"))));
            }
        }
        for a in 0..n {
            let v = Bytes::from(format!("user {a}"));
            out.push((USERS.key().u64(a).finish(), Mutation::Put(v)));
        }
        for a in 0..n {
            out.push((COUNTS.key().u64(a).finish(), Mutation::Count(a as i64)));
        }
        out
    }

    fn load(store: &dyn Store, items: &[(Key, Mutation)]) -> crate::contract::BulkReport {
        let mut l = store.bulk_load(dot()).unwrap();
        for (k, m) in items {
            l.push(k.clone(), m.clone()).unwrap();
        }
        l.finish().unwrap()
    }

    async fn check(store: &dyn Store, items: &[(Key, Mutation)]) {
        for (k, m) in items {
            match m {
                Mutation::Count(c) => {
                    let r = store.get_record(k).await.unwrap().unwrap();
                    assert_eq!(r.count(), *c);
                }
                Mutation::Put(v) | Mutation::Add(v) => {
                    let got = store.get(k).await.unwrap().unwrap();
                    assert_eq!(got.value.as_ref(), Some(v), "{k:?}");
                    assert_eq!(got.hlc, dot().hlc);
                }
                _ => unreachable!(),
            }
        }
        assert!(
            store.changes(0, 10).await.unwrap().is_empty(),
            "no feed entry"
        );
    }

    /// Every replicated key of the store, through the digest-bucket index.
    async fn by_buckets(store: &dyn Store) -> Vec<crate::contract::Delta> {
        let mut out = Vec::new();
        for b in 0..LEAVES as u32 {
            let mut after = None;
            loop {
                let (page, next) = store.bucket(b, after.as_ref(), 7).await.unwrap();
                out.extend(page);
                match next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn a_load_reads_back_indexes_and_digests_like_replicated_records() {
        let items = items(60);
        let loaded = open_memory(NodeId(1), Arc::new(HlcClock::new()), Limits::default());
        let report = load(loaded.as_ref(), &items);
        assert_eq!(report.keys, items.len() as u64);
        assert_eq!(report.replicated, items.len() as u64 - 60);
        check(loaded.as_ref(), &items).await;

        // The index lists every replicated key (several index runs at this size), and a replica
        // that merges them holds the same digests.
        let deltas = by_buckets(loaded.as_ref()).await;
        assert_eq!(deltas.len() as u64, report.replicated);
        let replica = open_memory(NodeId(2), Arc::new(HlcClock::new()), Limits::default());
        replica.apply(&deltas).await.unwrap();
        assert_eq!(replica.digests(), loaded.digests());

        // Later writes are stamped after the load.
        let k = USERS.key().u64(3).finish();
        loaded.put(&k, Bytes::from_static(b"new")).await.unwrap();
        let v = loaded.get(&k).await.unwrap().unwrap();
        assert_eq!(v.value.as_deref(), Some(&b"new"[..]));
        assert!(v.hlc > dot().hlc);
    }

    #[tokio::test]
    async fn two_stores_loaded_alike_agree_without_a_transfer() {
        let items = items(30);
        let a = open_memory(NodeId(1), Arc::new(HlcClock::new()), Limits::default());
        let b = open_memory(NodeId(2), Arc::new(HlcClock::new()), Limits::default());
        load(a.as_ref(), &items);
        load(b.as_ref(), &items);
        assert_eq!(a.digests(), b.digests());
    }

    #[tokio::test]
    async fn out_of_order_keys_and_loaded_stores_are_refused() {
        let store = open_memory(NodeId(1), Arc::new(HlcClock::new()), Limits::default());
        let mut l = store.bulk_load(dot()).unwrap();
        let put = || Mutation::Put(Bytes::from_static(b"v"));
        l.push(Key::from("b"), put()).unwrap();
        assert!(l.push(Key::from("b"), put()).is_err(), "a repeated key");
        assert!(l.push(Key::from("a"), put()).is_err(), "a smaller key");
        l.finish().unwrap();
        assert!(
            store.bulk_load(dot()).is_err(),
            "the store holds records now"
        );

        let written = open_memory(NodeId(1), Arc::new(HlcClock::new()), Limits::default());
        written
            .put(&Key::from("x"), Bytes::from_static(b"v"))
            .await
            .unwrap();
        assert!(
            written.bulk_load(dot()).is_err(),
            "the store has a change feed"
        );
    }

    #[tokio::test]
    async fn an_embedded_load_survives_a_reopen_with_the_same_digests() {
        let dir = tempfile::tempdir().unwrap();
        let items = items(60);
        let node = NodeId::from_names("local", "n1");
        let opts = EmbeddedOptions::new(dir.path());
        let digests = {
            let store = open_embedded(node, Arc::new(HlcClock::new()), &opts).unwrap();
            load(store.as_ref(), &items);
            check(store.as_ref(), &items).await;
            store.digests()
        };
        let store = open_embedded(node, Arc::new(HlcClock::new()), &opts).unwrap();
        check(store.as_ref(), &items).await;
        assert_eq!(store.digests(), digests, "digests rebuilt from the files");
        let deltas = by_buckets(store.as_ref()).await;
        assert_eq!(deltas.len(), items.len() - 60);
    }
}
