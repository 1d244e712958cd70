//! Store engines against their baselines, side by side in one process: for each operation the
//! raw engine the embedded store wraps (fjall) and a plain in-memory map run beside our engines
//! on the same keys and values. `infra/bench.sh` turns the figures into ratios in `bench/`.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fjall::{Database, KeyspaceCreateOptions};
use starling_store::{
    CasOutcome, EmbeddedOptions, FeedConsumer, FsyncPolicy, HlcClock, Keyspace, Limits, NodeId,
    RegionId, ScanRequest, Store, StoreExt, StoreLane, Wake, drive, open_embedded, open_memory,
};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;

const N: u64 = 100_000;
const KS: Keyspace = Keyspace::new("bench");
const VALUE: [u8; 100] = [7u8; 100];
/// CAS runs on a hot set of keys (handles, sequence counters are hot).
const CAS_KEYS: u64 = 1000;
/// Concurrent clients in the contended CAS benchmark.
const TASKS: u64 = 64;

/// CPU time of this process so far, every thread's (`CLOCK_PROCESS_CPUTIME_ID`).
fn cpu_now() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}

/// The wall time of `task(t, per)` run on [`TASKS`] tasks of `mt` at once (`t` the task's number),
/// `iters` shared out among them (`per` each).
fn on_tasks<Fut>(
    mt: &tokio::runtime::Runtime,
    iters: u64,
    task: impl Fn(u64, u64) -> Fut,
) -> std::time::Duration
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let per = iters.div_ceil(TASKS);
    let start = std::time::Instant::now();
    mt.block_on(async {
        let tasks: Vec<_> = (0..TASKS).map(|t| tokio::spawn(task(t, per))).collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    start.elapsed()
}

fn key(i: u64) -> Bytes {
    KS.key().u64(i).finish().0
}

/// A cheap deterministic sequence of key indices.
struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % N
    }
}

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    rt: tokio::runtime::Runtime,
    raw: fjall::Keyspace,
    hash: HashMap<Bytes, Bytes>,
    btree: BTreeMap<Bytes, Bytes>,
    embedded: Arc<dyn Store>,
    /// The same engine with its calls on the caller's thread (no blocking-pool hop): the
    /// baseline of what running fjall off tokio's workers costs.
    inline: Arc<dyn Store>,
    memory: Arc<dyn Store>,
}

impl Fixture {
    /// The three engines every store row measures, by row name.
    fn stores(&self) -> [(&'static str, &Arc<dyn Store>); 3] {
        [
            ("embedded", &self.embedded),
            ("embedded-inline", &self.inline),
            ("memory", &self.memory),
        ]
    }
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let d1 = tempfile::tempdir().expect("tempdir");
    let d2 = tempfile::tempdir().expect("tempdir");
    let d3 = tempfile::tempdir().expect("tempdir");
    let db = Database::builder(d1.path())
        .cache_size(EmbeddedOptions::DEFAULT_CACHE_BYTES) // the same cache as the engine's
        .open()
        .expect("fjall");
    let raw = db
        .keyspace("bench", KeyspaceCreateOptions::default)
        .expect("keyspace");
    let node = NodeId::new(RegionId::from_name("bench"), 1);
    let mut opts = EmbeddedOptions::new(d2.path());
    opts.fsync = FsyncPolicy::Never; // raw fjall below also only flushes to the OS per write
    let embedded = open_embedded(node, Arc::new(HlcClock::new()), &opts).expect("embedded");
    opts.dir = d3.path().to_path_buf();
    opts.inline = true;
    let inline = open_embedded(node, Arc::new(HlcClock::new()), &opts).expect("embedded");
    let memory = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
    let mut hash = HashMap::new();
    let mut btree = BTreeMap::new();
    let v = Bytes::from_static(&VALUE);
    rt.block_on(async {
        for i in 0..N {
            let k = key(i);
            raw.insert(k.as_ref(), &VALUE[..]).expect("raw insert");
            hash.insert(k.clone(), v.clone());
            btree.insert(k.clone(), v.clone());
            let k = starling_store::Key(k);
            embedded.put(&k, v.clone()).await.expect("put");
            inline.put(&k, v.clone()).await.expect("put");
            memory.put(&k, v.clone()).await.expect("put");
        }
    });
    Fixture {
        _dirs: vec![d1, d2, d3],
        rt,
        raw,
        hash,
        btree,
        embedded,
        inline,
        memory,
    }
}

fn benches(c: &mut Criterion) {
    let mut f = fixture();
    let v = Bytes::from_static(&VALUE);

    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    let mut x = Xorshift(1);
    g.bench_function("hashmap", |b| {
        b.iter(|| black_box(f.hash.get(&key(x.next()))))
    });
    g.bench_function("raw-fjall", |b| {
        b.iter(|| black_box(f.raw.get(key(x.next())).expect("get")))
    });
    for (name, s) in f.stores() {
        g.bench_function(name, |b| {
            b.iter(|| {
                let k = starling_store::Key(key(x.next()));
                black_box(f.rt.block_on(s.get(&k)).expect("get"))
            })
        });
    }
    // The same engine on a store lane: a thread of its own instead of tokio's blocking pool
    // (the gossip core loop's store calls).
    let lane = StoreLane::dedicated("bench-lane").expect("lane");
    let on_lane = f
        .embedded
        .on_lane(lane)
        .expect("the embedded engine runs on lanes");
    g.bench_function("embedded-lane", |b| {
        b.iter(|| {
            let k = starling_store::Key(key(x.next()));
            black_box(f.rt.block_on(on_lane.get(&k)).expect("get"))
        })
    });
    g.finish();

    // 256 records read one call a key (the gossip push before `get_records`) against one call
    // for all of them; per record.
    let mut g = c.benchmark_group("get-256-records");
    g.throughput(Throughput::Elements(256));
    let batch = |x: &mut Xorshift| -> Vec<starling_store::Key> {
        (0..256)
            .map(|_| starling_store::Key(key(x.next())))
            .collect()
    };
    for (name, s) in [
        ("embedded", &f.embedded),
        ("embedded-inline", &f.inline),
        ("embedded-lane", &on_lane),
    ] {
        g.bench_function(format!("{name}-one-call-a-key"), |b| {
            b.iter(|| {
                let keys = batch(&mut x);
                f.rt.block_on(async {
                    for k in &keys {
                        black_box(s.get_record(k).await.expect("get"));
                    }
                })
            })
        });
        g.bench_function(format!("{name}-get-records"), |b| {
            b.iter(|| {
                let keys = batch(&mut x);
                black_box(f.rt.block_on(s.get_records(&keys)).expect("get"))
            })
        });
    }
    g.finish();

    // CAS from many concurrent clients (sequence numbers and handles are hit by many
    // connections at once): 64 tasks on a 2-worker runtime, each on its own keys.
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("cas-64-clients");
    g.throughput(Throughput::Elements(1));
    let raw = f.raw.clone();
    g.bench_function("raw-fjall", |b| {
        b.iter_custom(|iters| {
            on_tasks(&mt, iters, |t, per| {
                let raw = raw.clone();
                async move {
                    for j in 0..per {
                        let k = key((t * 16 + j % 16) % CAS_KEYS);
                        let cur = raw.get(&k).expect("get");
                        if cur.is_some() {
                            raw.insert(k.as_ref(), &VALUE[..]).expect("insert");
                        }
                    }
                }
            })
        })
    });
    for (name, s) in f.stores() {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                on_tasks(&mt, iters, |t, per| {
                    let s = s.clone();
                    async move {
                        let mut n = 0;
                        while n < per {
                            let k = starling_store::Key(key((t * 16 + n % 16) % CAS_KEYS));
                            let cur = s.get(&k).await.expect("get").expect("seeded");
                            let next = Bytes::from_static(&VALUE);
                            if let CasOutcome::Applied(_) = s
                                .cas(&k, Some(&cur.version), Some(next))
                                .await
                                .expect("cas")
                            {
                                n += 1;
                            }
                        }
                    }
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("scan100");
    g.throughput(Throughput::Elements(100));
    g.bench_function("btreemap", |b| {
        b.iter(|| {
            let start = key(x.next());
            black_box(f.btree.range(start..).take(100).count())
        })
    });
    g.bench_function("raw-fjall", |b| {
        b.iter(|| {
            let start = key(x.next());
            let n = f
                .raw
                .range(start..)
                .take(100)
                .map(|g| g.into_inner().expect("kv").1.len())
                .sum::<usize>();
            black_box(n)
        })
    });
    for (name, s) in f.stores() {
        g.bench_with_input(BenchmarkId::from_parameter(name), s, |b, s| {
            b.iter(|| {
                let mut req = ScanRequest::prefix(KS.prefix(), 100);
                req.after = Some(starling_store::Key(key(x.next())));
                black_box(f.rt.block_on(s.scan(&req)).expect("scan").items.len())
            })
        });
    }
    g.finish();
    // Anti-entropy's read of one digest bucket (~24 keys here): the keys' entry hashes from the
    // bucket index (`bucket_hashes`, all a summary needs) against the records (`bucket`, what
    // shipping whole buckets read).
    let mut g = c.benchmark_group("bucket");
    g.throughput(Throughput::Elements(1));
    g.bench_function("records", |b| {
        b.iter(|| {
            let bucket = (x.next() % starling_store::digest::LEAVES as u64) as u32;
            let page = f.rt.block_on(f.embedded.bucket(bucket, None, 1000));
            black_box(page.expect("bucket").0.len())
        })
    });
    g.bench_function("hashes", |b| {
        b.iter(|| {
            let bucket = (x.next() % starling_store::digest::LEAVES as u64) as u32;
            let page = f.rt.block_on(f.embedded.bucket_hashes(bucket, None, 1000));
            black_box(page.expect("bucket").0.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("put");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hashmap", |b| {
        b.iter(|| black_box(f.hash.insert(key(x.next()), v.clone())))
    });
    g.bench_function("raw-fjall", |b| {
        b.iter(|| {
            f.raw
                .insert(key(x.next()).as_ref(), &VALUE[..])
                .expect("insert")
        })
    });
    for (name, s) in f.stores() {
        g.bench_function(name, |b| {
            b.iter(|| {
                let k = starling_store::Key(key(x.next()));
                black_box(f.rt.block_on(s.put(&k, v.clone())).expect("put"))
            })
        });
    }
    g.finish();

    // CAS: the raw baseline is the least a CAS must do on fjall (read, compare, write).
    let mut g = c.benchmark_group("cas");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw-fjall", |b| {
        b.iter(|| {
            let k = key(x.next() % CAS_KEYS);
            let cur = f.raw.get(&k).expect("get");
            if cur.as_deref().map(|c| c.len()) == Some(VALUE.len()) {
                f.raw.insert(k.as_ref(), &VALUE[..]).expect("insert");
            }
        })
    });
    g.bench_function("hashmap", |b| {
        b.iter(|| {
            let k = key(x.next() % CAS_KEYS);
            if f.hash.get(&k).map(|c| c.len()) == Some(VALUE.len()) {
                f.hash.insert(k, v.clone());
            }
        })
    });
    for (name, s) in f.stores() {
        // Each key's current version is known, as in a read-then-swap loop: every CAS applies.
        let mut versions: Vec<starling_store::VersionVector> = (0..CAS_KEYS)
            .map(|i| {
                let k = starling_store::Key(key(i));
                f.rt.block_on(s.get(&k))
                    .expect("get")
                    .expect("seeded")
                    .version
            })
            .collect();
        g.bench_function(name, |b| {
            b.iter(|| {
                let i = x.next() % CAS_KEYS;
                let k = starling_store::Key(key(i));
                let expected = &versions[i as usize];
                match f.rt.block_on(s.cas(&k, Some(expected), Some(v.clone()))) {
                    Ok(CasOutcome::Applied(new)) => versions[i as usize] = new.version,
                    other => panic!("cas did not apply: {other:?}"),
                }
            })
        });
    }
    g.finish();

    // A new slot created by CAS with an index entry naming it (the messenger's send): the swap
    // then a put of the entry, two commits (before), against both in one commit (`cas_with`).
    // Measured in CPU time of the process (every thread: the embedded engine's blocking pool
    // too), not wall time: on a shared machine, others' preemption is not the store's cost.
    let slots = Keyspace::new("bench-slot");
    let index = Keyspace::new("bench-idx");
    let mut g = c.benchmark_group("cas_with_entry");
    g.throughput(Throughput::Elements(1));
    for (name, s) in [("embedded", &f.embedded), ("memory", &f.memory)] {
        for joined in [false, true] {
            let label = if joined {
                format!("{name}-one-commit")
            } else {
                format!("{name}-cas-then-put")
            };
            let mut n = 0u64;
            g.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let start = cpu_now();
                    for _ in 0..iters {
                        n += 1;
                        let slot = slots.key().u64(u64::from(joined)).u64(n).finish();
                        let entry = (
                            index.key().u64(u64::from(joined)).u64(n).finish(),
                            starling_store::Mutation::Put(Bytes::copy_from_slice(&n.to_be_bytes())),
                        );
                        let out = f.rt.block_on(async {
                            if joined {
                                s.cas_with(&slot, None, Some(v.clone()), &[entry]).await
                            } else {
                                let out = s.cas(&slot, None, Some(v.clone())).await?;
                                s.mutate_many(&[entry]).await?;
                                Ok(out)
                            }
                        });
                        assert!(matches!(out, Ok(CasOutcome::Applied(_))), "{out:?}");
                    }
                    cpu_now().saturating_sub(start)
                })
            });
        }
    }
    g.finish();

    drop(f.hash.drain());
}

/// Change-feed consumers of a single node `feed` reads beside the writes: the chat's tail, the
/// notifications' tail, the graph's counts, the likes' counts, the feed's fan-out.
const FEED_CONSUMERS: usize = 5;
/// Messages between two reads of the feed by each consumer (a consumer lingers, then reads the
/// burst).
const READ_EVERY: u64 = 16;
/// Messages between two trims of the feed below the slowest consumer.
const TRIM_EVERY: u64 = 1024;

/// `feed`: a chat message's writes on the memory engine — its slot swapped in with its
/// client-id entry in one commit (`cas_with`, two change-feed entries) — with what the node's
/// feed consumers do beside them: [`FEED_CONSUMERS`] readers each reading the new entries every
/// [`READ_EVERY`] messages, a trim every [`TRIM_EVERY`]. The engine as it is (`now`: the feed
/// in one ordered deque, the maps' keys with their first bytes inline) against its layouts
/// before: the feed in 16 hash shards like the data (`shards_before`: an append a B-tree
/// insert, a read a merge of 16 ranges) and the maps' keys as plain buffers (`plain_keys_before`:
/// every B-tree comparison follows a pointer), in turns (ABC ABC) in one run, each on a fresh
/// store; process CPU time per message.
fn feed(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let slots = Keyspace::new("mm");
    let index = Keyspace::new("mc");
    let v = Bytes::from_static(&VALUE);
    let node = NodeId::new(RegionId::from_name("bench"), 1);
    let mut g = c.benchmark_group("feed");
    g.throughput(Throughput::Elements(1));
    type Open = fn(NodeId, Arc<HlcClock>, Limits) -> Arc<dyn Store>;
    let layouts: [(&str, Open); 3] = [
        ("now", open_memory),
        ("shards_before", starling_store::open_memory_sharded_feed),
        ("plain_keys_before", starling_store::open_memory_plain_keys),
    ];
    for (name, open) in ["a", "b"]
        .into_iter()
        .flat_map(|turn| layouts.map(|(name, open)| (format!("{name}_{turn}"), open)))
    {
        let clock = Arc::new(HlcClock::new());
        let s = open(node, clock, Limits::default());
        let mut at = [s.last_seq(); FEED_CONSUMERS];
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = cpu_now();
                rt.block_on(async {
                    for _ in 0..iters {
                        n += 1;
                        let conv = n % 1000;
                        let slot = slots.key().u64(conv).u64(n).finish();
                        let entry = (
                            index
                                .key()
                                .u64(conv)
                                .u64(n % 7)
                                .str("client-id")
                                .u64(n)
                                .finish(),
                            starling_store::Mutation::Put(Bytes::copy_from_slice(&n.to_be_bytes())),
                        );
                        let out = s.cas_with(&slot, None, Some(v.clone()), &[entry]).await;
                        assert!(matches!(out, Ok(CasOutcome::Applied(_))), "{out:?}");
                        if n.is_multiple_of(READ_EVERY) {
                            for pos in &mut at {
                                for ch in s.changes(*pos, 1000).await.expect("changes") {
                                    *pos = black_box(ch).seq;
                                }
                            }
                        }
                        if n.is_multiple_of(TRIM_EVERY) {
                            let upto = at.iter().copied().min().unwrap_or(0);
                            s.trim_changes(upto).await.expect("trim");
                        }
                    }
                });
                cpu_now().saturating_sub(start)
            })
        });
    }
    g.finish();
}

/// Entries trimmed before the measured part of [`trim_history`]'s "behind" store.
const TRIMMED_BEFORE: u64 = 300_000;

/// The change feed's trimming does not slow with the entries trimmed before: an embedded store
/// whose feed already had [`TRIMMED_BEFORE`] entries written and trimmed ("behind") against a
/// fresh one, each write followed, every 4 096, by a trim to the last entry (the trimmer's step),
/// in turns (AB AB); process CPU time per write. An LSM keeps a removed entry as a tombstone
/// until a compaction drops it, so a trim that scans from the feed's start reads them all: the
/// ratio behind / fresh was what a soak node paid for it (35 % of its CPU, 2026-12-07).
/// Caveat: the behind store also holds `N` keys the fresh one only gains as it runs, and both
/// stores' compaction threads count in the process's CPU time, so the ratio is an upper bound
/// on what the history costs (first run, 2026-12-07, beside a CI run: 2.15× and 1.78×, with
/// the trim from the last trim point); a measurement of the trim call alone is still to write.
fn trim_history(c: &mut Criterion) {
    const STEP: u64 = 4096;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let node = NodeId::new(RegionId::from_name("bench"), 1);
    let v = Bytes::from_static(&VALUE);
    let mut dirs = Vec::new();
    let mut open = |history: u64| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = EmbeddedOptions::new(dir.path());
        opts.fsync = FsyncPolicy::Never;
        let s = open_embedded(node, Arc::new(HlcClock::new()), &opts).expect("embedded");
        dirs.push(dir);
        rt.block_on(async {
            for i in 0..history {
                s.put(&KS.key().u64(i % N).finish(), v.clone())
                    .await
                    .expect("put");
                if (i + 1) % STEP == 0 {
                    s.trim_changes(s.last_seq()).await.expect("trim");
                }
            }
            s.trim_changes(s.last_seq()).await.expect("trim");
        });
        s
    };
    let stores = [("fresh", open(0)), ("behind", open(TRIMMED_BEFORE))];
    let mut g = c.benchmark_group("trim_history");
    g.throughput(Throughput::Elements(1));
    for turn in ["a", "b"] {
        for (name, s) in &stores {
            let mut n = 0u64;
            g.bench_function(format!("{name}_{turn}"), |b| {
                b.iter_custom(|iters| {
                    let start = cpu_now();
                    rt.block_on(async {
                        for _ in 0..iters {
                            n += 1;
                            s.put(&KS.key().u64(n % N).finish(), v.clone())
                                .await
                                .expect("put");
                            if n.is_multiple_of(STEP) {
                                s.trim_changes(s.last_seq()).await.expect("trim");
                            }
                        }
                    });
                    cpu_now().saturating_sub(start)
                })
            });
        }
    }
    g.finish();
}

/// The keyspace [`feed_wake`]'s readers read (the graph's edges, say): never written there.
const READ_BY_READERS: &[Keyspace] = &[Keyspace::new("gfo")];

/// Readers of the change feed woken only by the keys they read ([`Wake::On`]) against woken by
/// every commit ([`Wake::Every`], the baseline): chat-like writes at a steady 5 000 a second on a
/// memory store with four consumers of another keyspace (as the graph's and the likes' counters,
/// the fan-out and the notifications' tail are of chat), each step one read of its position, one
/// of the feed and one write of its position, as theirs are; process CPU time per write, in
/// turns (AB AB). The readers' positions still follow the feed (every [`SWEEP`]).
///
/// [`SWEEP`]: starling_store::consumer::SWEEP
fn feed_wake(c: &mut Criterion) {
    const RATE: f64 = 5000.0;
    const READERS: usize = 4;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let slots = Keyspace::new("mm");
    let v = Bytes::from_static(&VALUE);
    let node = NodeId::new(RegionId::from_name("bench"), 1);
    let mut g = c.benchmark_group("feed_wake");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(1));
    for turn in ["a", "b"] {
        for (name, wake) in [
            ("every", Wake::Every),
            ("by_keys", Wake::On(READ_BY_READERS)),
        ] {
            let s = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            let readers: Vec<_> = (0..READERS)
                .map(|i| {
                    let consumer = FeedConsumer::new(s.clone(), &format!("reader{i}"));
                    rt.spawn(drive(s.clone(), wake, shutdown.clone(), move || {
                        let c = consumer.clone();
                        async move {
                            let mut at = c.position().await.expect("position");
                            loop {
                                let changes = c.batch(at, 1024).await.expect("batch");
                                let Some(last) = changes.last() else { break };
                                at = last.seq;
                                black_box(&changes);
                                c.commit(at).await.expect("commit");
                            }
                        }
                    }))
                })
                .collect();
            let mut n = 0u64;
            g.bench_function(format!("{name}_{turn}"), |b| {
                b.iter_custom(|iters| {
                    let start = cpu_now();
                    rt.block_on(async {
                        let mut tick =
                            tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / RATE));
                        for _ in 0..iters {
                            tick.tick().await;
                            n += 1;
                            s.put(&slots.key().u64(n % 1000).u64(n).finish(), v.clone())
                                .await
                                .expect("put");
                        }
                    });
                    cpu_now().saturating_sub(start)
                })
            });
            stop.send(true).expect("readers");
            for r in readers {
                rt.block_on(r).expect("reader");
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = kv;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = benches, feed, trim_history, feed_wake
}
criterion_main!(kv);
