//! The chat send path's per-message steps beside the code they replaced, in one run (the
//! machine is shared: read the ratios). `cargo bench -p starling-messenger --bench chat_path`.
//!
//! - `note_head`: the inbox's head of a conversation, noted on every delivery: a slot per
//!   conversation replaced in place (now) against a `moka` upsert per message (before);
//! - `batch_tokens`: a pipelined batch's end noted and looked up by its follower: sharded
//!   bounded sets (now) against a `moka` cache with a time to live (before);
//! - `send`: the whole append of one message (index lookup, claim by CAS on the memory engine,
//!   client-id index) and its head noted, one at a time, on each claim path: the sequencer
//!   with each slot and its index entry in one store commit (`Store::cas_with`, now), the
//!   sequencer with the slot's swap then the group's index batch (before), and each batch's
//!   turn on its claim stripe with one index put per entry (before that);
//! - `send_concurrent`: 64 senders at once over 2 worker threads, each sending 16 messages to
//!   its own 1:1 conversation, per message, on the same three paths.
//!
//! - `send_lease`: one message at a time over 64 conversations with the seq lease (its
//!   in-memory checks, the epoch in each slot) against without it, ABAB in one run.
//! - `send_lease_shards`: one message at a time over 1 000 1:1 conversations (the side-by-side
//!   benchmark's load) with the seq leases on shards of conversations (now) against one lease
//!   per conversation (`MessengerConfig::lease_per_conversation`, before), ABAB in one run;
//!   process CPU time per message. Before the timings it prints, for each, the store writes of
//!   one second of that load at 1 000 msg/s: one message to each conversation (a slot commit
//!   each) and the lease renewals a second, counted (`renewed`) over six seconds of that load
//!   in real time with the renewal task running, and the leases taken, and the heap bytes a
//!   warm send allocates (the allocator is counted: `cap`).
//! - `send_filter`: the same with the client-id filter (`MessengerConfig::client_id_filter`:
//!   step 1's index read skipped for a new client id) against without it, ABAB in one run.
//! - `send_retention`: the same with chat history retention (100 entries a conversation; its
//!   background passes on the same runtime, so their CPU counts) against without it, ABAB.
//! - `authorize_send`: a 1:1 send's check (member, no block either way) over 64 conversations
//!   with the graph's block cache (`GraphConfig::block_cache`) against without it (two store
//!   reads a check, before), ABAB in one run.
//!
//! `send` and `send_concurrent` measure the process's CPU time (every thread's,
//! `CLOCK_PROCESS_CPUTIME_ID`), not wall time.

use criterion::{Criterion, criterion_group, criterion_main};
use starling_messenger::pipeline::EndedTokens;
use starling_messenger::test_support::messenger_on_memory;
use starling_messenger::{Conversation, Message, Messenger, MessengerConfig};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// The allocator, counted (`cap`'s statistics): `send_lease_shards` prints the bytes a warm
/// send allocates.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// CPU time of this process so far, every thread's (`CLOCK_PROCESS_CPUTIME_ID`).
fn cpu_now() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}

/// Conversations the steps rotate over (the side-by-side benchmark's 1:1 load).
const CONVS: u64 = 1000;

/// The claim paths measured side by side: (name, group commit, one commit).
const PATHS: [(&str, bool, bool); 3] = [
    ("sequencer_one_commit", true, true),
    ("sequencer_swap_then_index_before", true, false),
    ("stripe_turns_before", false, false),
];

fn messenger(rt: &tokio::runtime::Runtime, users: usize) -> (Messenger, Vec<u64>) {
    messenger_with(rt, users, true, true)
}

fn messenger_with(
    rt: &tokio::runtime::Runtime,
    users: usize,
    group_commit: bool,
    one_commit: bool,
) -> (Messenger, Vec<u64>) {
    let mut mcfg = MessengerConfig::new("r");
    mcfg.group_commit = group_commit;
    mcfg.one_commit = one_commit;
    // The claim paths without the seq lease (its own A/B is `send_lease`).
    mcfg.lease = false;
    bench_messenger(rt, users, false, mcfg)
}

/// The one set-up of every step here, the unit tests' (`starling_messenger::test_support`): a
/// messenger configured by `mcfg` on the memory engine, over a graph with its block cache on or
/// off and `users` signed-up users (their ids); the client-id filter loaded where `mcfg` turns
/// it on.
fn bench_messenger(
    rt: &tokio::runtime::Runtime,
    users: usize,
    block_cache: bool,
    mcfg: MessengerConfig,
) -> (Messenger, Vec<u64>) {
    rt.block_on(messenger_on_memory(users, block_cache, mcfg))
}

fn note_head(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (m, _) = messenger(&rt, 0);
    let mut msg = Message::text(
        1,
        "client-id-0123456789",
        0,
        "a 64-byte body, the size the side-by-side load sends, padded out..",
    );
    let old: moka::sync::Cache<u64, Arc<Message>> = moka::sync::Cache::new(100_000);
    let mut g = c.benchmark_group("note_head");
    let mut seq = 0u64;
    g.bench_function("slot_in_place", |b| {
        b.iter(|| {
            seq += 1;
            msg.conv = seq % CONVS;
            msg.seq = seq;
            m.note_head(black_box(&msg));
        })
    });
    let mut seq = 0u64;
    g.bench_function("moka_upsert_before", |b| {
        b.iter(|| {
            seq += 1;
            msg.conv = seq % CONVS;
            msg.seq = seq;
            let new = Arc::new(black_box(&msg).clone());
            old.entry(new.conv).and_upsert_with(|o| match o {
                Some(o) if o.value().seq >= new.seq => o.into_value(),
                _ => new.clone(),
            });
        })
    });
    g.finish();
}

fn batch_tokens(c: &mut Criterion) {
    let now = EndedTokens::default();
    let old: moka::sync::Cache<u64, ()> = moka::sync::Cache::builder()
        .max_capacity(1 << 16)
        .time_to_live(Duration::from_secs(60))
        .build();
    let mut g = c.benchmark_group("batch_tokens");
    let mut t = 1u64;
    g.bench_function("sharded_sets", |b| {
        b.iter(|| {
            t += 1;
            now.insert(black_box(t));
            black_box(now.contains(t - 1))
        })
    });
    let mut t = 1u64;
    g.bench_function("moka_ttl_before", |b| {
        b.iter(|| {
            t += 1;
            old.insert(black_box(t), ());
            black_box(old.contains_key(&(t - 1)))
        })
    });
    g.finish();
}

fn send(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("send");
    for (name, group_commit, one_commit) in PATHS {
        let (m, users) = messenger_with(&rt, 2, group_commit, one_commit);
        let conv = rt
            .block_on(m.create(users[0], &users[1..]))
            .expect("conversation")
            .0;
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = cpu_now();
                for _ in 0..iters {
                    i += 1;
                    let cid = format!("c{i}");
                    let sent = rt
                        .block_on(m.send(&conv, users[(i % 2) as usize], &cid, "a 64-byte body"))
                        .expect("send");
                    m.note_head(&sent.message);
                }
                cpu_now().saturating_sub(start)
            })
        });
    }
    g.finish();
}

/// Senders at once in `send_concurrent`, and messages each sends per iteration.
const SENDERS: usize = 64;
const PER_SENDER: usize = 16;

fn send_concurrent(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("send_concurrent");
    g.throughput(criterion::Throughput::Elements(
        (SENDERS * PER_SENDER) as u64,
    ));
    for (name, group_commit, one_commit) in PATHS {
        let (m, users) = messenger_with(&rt, SENDERS + 1, group_commit, one_commit);
        let convs = one_to_ones(&rt, &m, &users);
        let convs = Arc::new(convs);
        let mut round = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = cpu_now();
                for _ in 0..iters {
                    round += 1;
                    rt.block_on(async {
                        let mut tasks = tokio::task::JoinSet::new();
                        for (k, &sender) in users[1..].iter().enumerate() {
                            let (m, convs) = (m.clone(), convs.clone());
                            tasks.spawn(async move {
                                for j in 0..PER_SENDER {
                                    let cid = format!("r{round}-{j}");
                                    m.send(&convs[k], sender, &cid, "a 64-byte body")
                                        .await
                                        .expect("send");
                                }
                            });
                        }
                        while tasks.join_next().await.is_some() {}
                    });
                }
                cpu_now().saturating_sub(start)
            })
        });
    }
    g.finish();
}

/// A messenger on the memory engine with the seq lease (`MessengerConfig::lease`) and the
/// client-id filter on or off.
fn lease_filter_messenger(
    rt: &tokio::runtime::Runtime,
    users: usize,
    lease: bool,
    filter: bool,
) -> (Messenger, Vec<u64>) {
    let mut mcfg = MessengerConfig::new("r");
    mcfg.lease = lease;
    mcfg.client_id_filter = filter;
    bench_messenger(rt, users, false, mcfg)
}

/// A messenger on the memory engine with the seq leases on shards of conversations (`false`,
/// now) or one per conversation (`true`, before).
fn lease_unit_messenger(
    rt: &tokio::runtime::Runtime,
    users: usize,
    per_conversation: bool,
) -> (Messenger, Vec<u64>) {
    let mut mcfg = MessengerConfig::new("r");
    mcfg.lease_per_conversation = per_conversation;
    bench_messenger(rt, users, false, mcfg)
}

/// `send_lease_shards`: see the module's doc.
fn send_lease_shards(c: &mut Criterion) {
    let variants = [
        ("shards_a", false),
        ("per_conversation_before_a", true),
        ("shards_b", false),
        ("per_conversation_before_b", true),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let n = CONVS as usize;
    for (name, per_conversation) in variants {
        let (m, users) = lease_unit_messenger(&rt, n + 1, per_conversation);
        let convs = one_to_ones(&rt, &m, &users);
        let stats = m.lease_stats();
        let (acquired, held) = rt.block_on(async {
            use std::sync::atomic::Ordering::Relaxed;
            let a0 = stats.acquired.load(Relaxed);
            for (k, conv) in convs.iter().enumerate() {
                m.send(conv, users[k + 1], "w", "a 64-byte body")
                    .await
                    .expect("send");
            }
            (stats.acquired.load(Relaxed) - a0, stats.held.load(Relaxed))
        });
        // RENEW_SECS seconds of that load in real time (each second a message to each
        // conversation), the renewal task running beside it: its CASes are counted.
        let renewals = rt.block_on(async {
            use std::sync::atomic::Ordering::Relaxed;
            let r0 = stats.renewed.load(Relaxed);
            let start = tokio::time::Instant::now();
            for s in 1..=RENEW_SECS {
                for (k, conv) in convs.iter().enumerate() {
                    m.send(conv, users[k + 1], &format!("r{s}"), "a 64-byte body")
                        .await
                        .expect("send");
                }
                tokio::time::sleep_until(start + Duration::from_secs(s)).await;
            }
            stats.renewed.load(Relaxed) - r0
        });
        let renewed = renewals as f64 / RENEW_SECS as f64;
        // A second message to each (warm: tail caches built, leases held), allocations counted.
        let allocated = rt.block_on(async {
            let b0 = ALLOCATOR.total_allocated();
            for (k, conv) in convs.iter().enumerate() {
                let sent = m
                    .send(conv, users[k + 1], "w2", "a 64-byte body")
                    .await
                    .expect("send");
                m.note_head(&sent.message);
            }
            ALLOCATOR.total_allocated() - b0
        });
        println!(
            "send_lease_shards/{name}: one second at 1 000 msg/s over {n} conversations: \
             {n} slot commits + {renewed:.1} lease renewals ({renewals} in {RENEW_SECS} s, \
             {held} leases held) = {:.1} store writes ({:.3} a message); {acquired} leases \
             taken; a warm send allocates {} bytes",
            n as f64 + renewed,
            (n as f64 + renewed) / n as f64,
            allocated / n,
        );
    }
    sends_ab(
        c,
        "send_lease_shards",
        n,
        variants,
        |rt, per_conversation| lease_unit_messenger(rt, n + 1, per_conversation),
    );
}

/// Seconds of real time `send_lease_shards` counts the lease renewals over.
const RENEW_SECS: u64 = 6;

/// Conversations `send_lease` rotates over (each holds its own lease).
const LEASE_CONVS: usize = 64;

/// `send_lease`: one message at a time over 64 1:1 conversations, through the sequencer, with
/// the seq lease (its check before and after the claim, the epoch in the slot) against without
/// it (the slots' CAS alone, before), ABAB in one run; process CPU time per message.
fn send_lease(c: &mut Criterion) {
    sends_ab(
        c,
        "send_lease",
        LEASE_CONVS,
        [
            ("lease_a", true),
            ("no_lease_before_a", false),
            ("lease_b", true),
            ("no_lease_before_b", false),
        ],
        |rt, lease| lease_filter_messenger(rt, LEASE_CONVS + 1, lease, false),
    );
}

/// `send_filter`: `send_lease`'s load (with the lease, the default) with the client-id filter
/// against without it (the index read on every send, before), ABAB in one run; process CPU
/// time per message.
fn send_filter(c: &mut Criterion) {
    sends_ab(
        c,
        "send_filter",
        LEASE_CONVS,
        [
            ("filter_a", true),
            ("no_filter_before_a", false),
            ("filter_b", true),
            ("no_filter_before_b", false),
        ],
        |rt, filter| lease_filter_messenger(rt, LEASE_CONVS + 1, true, filter),
    );
}

/// `send_retention`: `send_lease`'s load with chat history retention (`MessengerConfig::
/// retention`, 100 entries a conversation: the send path's check every 64th seq, the queue, and
/// the background task's passes trimming on the same runtime) against without it (before), ABAB
/// in one run; process CPU time per message, so the trimming's own work counts too.
fn send_retention(c: &mut Criterion) {
    sends_ab(
        c,
        "send_retention",
        LEASE_CONVS,
        [
            ("retention_a", true),
            ("unbounded_before_a", false),
            ("retention_b", true),
            ("unbounded_before_b", false),
        ],
        |rt, on| {
            let mut mcfg = MessengerConfig::new("r");
            if on {
                mcfg.retention = starling_messenger::Retention {
                    max: 100,
                    max_age: None,
                };
            }
            let (m, users) = bench_messenger(rt, LEASE_CONVS + 1, false, mcfg);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let trimmer = m.clone();
            rt.spawn(async move {
                let _stop = stop;
                trimmer.run_retention(Duration::from_secs(5), stopped).await;
            });
            (m, users)
        },
    );
}

/// A 1:1 conversation of each user after the first with the first.
fn one_to_ones(
    rt: &tokio::runtime::Runtime,
    m: &Messenger,
    users: &[u64],
) -> Vec<Arc<Conversation>> {
    rt.block_on(async {
        let mut out = Vec::new();
        for &u in &users[1..] {
            out.push(m.create(u, &[users[0]]).await.expect("conversation").0);
        }
        out
    })
}

/// One message at a time over `n` 1:1 conversations for each of `variants` (its name and the
/// switch `make` builds the messenger with, with `n + 1` users at least), in their order;
/// process CPU time per message.
fn sends_ab(
    c: &mut Criterion,
    group: &str,
    n: usize,
    variants: [(&str, bool); 4],
    make: impl Fn(&tokio::runtime::Runtime, bool) -> (Messenger, Vec<u64>),
) {
    // A worker thread for the lease's renewal task (a current-thread runtime would run it only
    // while a send waits, which a send on the memory engine never does).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group(group);
    for (name, on) in variants {
        let (m, users) = make(&rt, on);
        let convs = one_to_ones(&rt, &m, &users);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = cpu_now();
                for _ in 0..iters {
                    i += 1;
                    let k = i % n;
                    let cid = format!("c{i}");
                    let sent = rt
                        .block_on(m.send(&convs[k], users[k + 1], &cid, "a 64-byte body"))
                        .expect("send");
                    m.note_head(&sent.message);
                }
                cpu_now().saturating_sub(start)
            })
        });
    }
    g.finish();
}

/// `authorize_send`: the check of every 1:1 send, with and without the block cache, ABAB;
/// process CPU time per check.
fn authorize_send(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("authorize_send");
    for (name, cache) in [
        ("block_cache_a", true),
        ("two_reads_before_a", false),
        ("block_cache_b", true),
        ("two_reads_before_b", false),
    ] {
        let (m, users) = bench_messenger(&rt, LEASE_CONVS + 1, cache, MessengerConfig::new("r"));
        let convs = one_to_ones(&rt, &m, &users);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = cpu_now();
                for _ in 0..iters {
                    i += 1;
                    let k = i % LEASE_CONVS;
                    black_box(
                        rt.block_on(m.authorize_send(users[k + 1], convs[k].id))
                            .expect("authorized"),
                    );
                }
                cpu_now().saturating_sub(start)
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    note_head,
    batch_tokens,
    send,
    send_concurrent,
    send_lease,
    send_lease_shards,
    send_filter,
    send_retention,
    authorize_send
);
criterion_main!(benches);
