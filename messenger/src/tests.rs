//! Domain tests of the seq/idempotency protocol and of conversations, on the memory engine.

use crate::test_support::{beside, messenger_on_memory};
use crate::{Messenger, MessengerConfig, MessengerError};
use starling_store::conformance::feed_keys;
use starling_store::{LocalCas, StoreExt};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A messenger on a memory store with `users` signed-up users (also used by the lease tests).
pub(crate) async fn setup(users: usize) -> (Messenger, Vec<u64>) {
    setup_with(users, false).await
}

/// [`setup`] over a graph with its block cache on or off (`GraphConfig::block_cache`): the
/// set-up `benches/chat_path.rs` uses too ([`crate::test_support`]).
async fn setup_with(users: usize, block_cache: bool) -> (Messenger, Vec<u64>) {
    messenger_on_memory(users, block_cache, MessengerConfig::new("r")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_and_retries_make_one_gap_free_log() {
    let (m, users) = setup(4).await;
    let (conv, _) = m.create(users[0], &users[1..]).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (t, &sender) in users.iter().enumerate() {
        let (m, conv) = (m.clone(), conv.clone());
        tasks.spawn(async move {
            for i in 0..60 {
                // Every client id is sent twice, the second time concurrently with others.
                let cid = format!("t{t}-{i}");
                let a = m.send(&conv, sender, &cid, "x").await.unwrap();
                let b = m.send(&conv, sender, &cid, "x").await.unwrap();
                assert!(a.new && !b.new);
                assert_eq!(a.message, b.message);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let log = m.after(conv.id, 0, 1000, true).await.unwrap();
    assert_eq!(log.len(), 240);
    assert!(
        log.iter()
            .enumerate()
            .all(|(i, msg)| msg.seq == i as u64 + 1)
    );
    let distinct: BTreeSet<(u64, &str)> = log
        .iter()
        .map(|x| (x.sender, x.client_id.as_str()))
        .collect();
    assert_eq!(distinct.len(), 240, "each send stored once");
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 240);
    let page = m.before(conv.id, Some(11), 3).await.unwrap();
    assert_eq!(
        page.iter().map(|x| x.seq).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_has_one_conversation_and_groups_are_capped() {
    let (m, u) = setup(3).await;
    let (a, new) = m.create(u[0], &[u[1]]).await.unwrap();
    assert!(new);
    let (b, new) = m.create(u[1], &[u[0], u[1]]).await.unwrap();
    assert!(!new);
    assert_eq!(a.id, b.id);
    let (g, _) = m.create(u[0], &[u[1], u[2]]).await.unwrap();
    assert_ne!(g.id, a.id);
    assert!(matches!(
        m.create(u[0], &[u[0]]).await,
        Err(MessengerError::Invalid(_))
    ));
    assert!(matches!(
        m.create(u[0], &[12345]).await,
        Err(MessengerError::UnknownUser(12345))
    ));
    assert!(matches!(
        m.authorize(u[2], a.id).await,
        Err(MessengerError::NotMember)
    ));
    let page = m.conversations_of(u[1], None, 10).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].id, g.id, "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_attempts_with_one_client_id_store_one_message() {
    let (m, u) = setup(2).await;
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    for i in 0..50 {
        let cid = format!("race-{i}");
        let (m1, m2, c1, c2) = (m.clone(), m.clone(), conv.clone(), conv.clone());
        let (k1, k2) = (cid.clone(), cid.clone());
        let s = u[0];
        let a = tokio::spawn(async move { m1.send(&c1, s, &k1, "once").await.unwrap() });
        let b = tokio::spawn(async move { m2.send(&c2, s, &k2, "once").await.unwrap() });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!(a.message, b.message, "round {i}");
        assert!(a.new != b.new || !a.new, "at most one stored it");
    }
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 50);
}

/// A router for a node in region `eu` whose calls run the home region's handler in-process,
/// over the same store (the "home node" of this test): the forwarding path without a network.
#[derive(Debug)]
struct Foreign {
    cas: LocalCas,
    home: std::sync::OnceLock<crate::send::SendHandler>,
    calls: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl starling_store::CasRouter for Foreign {
    async fn cas_at(
        &self,
        region: &str,
        key: &starling_store::Key,
        expected: Option<&starling_store::VersionVector>,
        new: Option<bytes::Bytes>,
    ) -> starling_store::Result<starling_store::CasOutcome> {
        self.cas.cas_at(region, key, expected, new).await
    }

    fn local_region(&self) -> Option<&str> {
        Some("eu")
    }

    async fn call_at(
        &self,
        region: &str,
        _route: &starling_store::Key,
        service: &str,
        body: bytes::Bytes,
    ) -> starling_store::Result<bytes::Bytes> {
        use starling_store::CallHandler;
        assert_eq!((region, service), ("r", crate::send::SEND_SERVICE));
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let h = self.home.get().expect("the home handler is set");
        h.handle(body)
            .await
            .map_err(starling_store::StoreError::Remote)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_from_another_region_are_forwarded_and_share_one_gap_free_log() {
    let (home, users) = setup(2).await;
    let (conv, _) = home.create(users[0], &[users[1]]).await.unwrap();
    let router = Arc::new(Foreign {
        cas: LocalCas(home.store().clone()),
        home: std::sync::OnceLock::new(),
        calls: std::sync::atomic::AtomicU64::new(0),
    });
    let _ = router.home.set(home.send_handler());
    let foreign = beside(&home, Some(router.clone()), MessengerConfig::new("r"));
    let mut tasks = tokio::task::JoinSet::new();
    for (t, m) in [home.clone(), foreign.clone()].into_iter().enumerate() {
        let conv = conv.clone();
        let sender = users[t];
        tasks.spawn(async move {
            for i in 0..40 {
                let cid = format!("c{t}-{i}");
                let a = m.send(&conv, sender, &cid, "x").await.unwrap();
                let b = m.send(&conv, sender, &cid, "x").await.unwrap();
                assert!(a.new && !b.new, "{cid}");
                assert_eq!(a.message, b.message);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let log = home.after(conv.id, 0, 1000, true).await.unwrap();
    assert_eq!(log.len(), 80);
    assert!(log.iter().enumerate().all(|(i, m)| m.seq == i as u64 + 1));
    // Every new foreign send was one call; its retries were answered from the index here.
    assert_eq!(router.calls.load(std::sync::atomic::Ordering::Relaxed), 40);
    // The home node checks what it is handed.
    use starling_store::CallHandler;
    assert!(
        home.send_handler()
            .handle(bytes::Bytes::from_static(b"\xff"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_cache_finds_entries_other_nodes_claimed() {
    let (m, u) = setup(2).await;
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    for i in 0..3 {
        m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
    }
    // Another node claimed slot 4 and died before writing its client-id index: this node's
    // cache has not seen it, the replica has.
    let mut orphan = crate::Message::text(u[1], "theirs", conv.id, "from elsewhere");
    orphan.seq = 4;
    orphan.id = 99;
    let applied = m
        .store()
        .cas(
            &crate::keys::message(conv.id, 4),
            None,
            Some(starling_store::codec::to_value(&orphan).unwrap()),
        )
        .await
        .unwrap();
    assert!(matches!(applied, starling_store::CasOutcome::Applied(_)));
    let retry = m
        .send(&conv, u[1], "theirs", "from elsewhere")
        .await
        .unwrap();
    assert!(!retry.new);
    assert_eq!((retry.message.seq, retry.message.id), (4, 99));
    let next = m.send(&conv, u[0], "c3", "x").await.unwrap();
    assert_eq!(
        next.message.seq, 5,
        "the cache moved past the slot it had not claimed"
    );
    // A retry of this node's own claim is found in the cache (the index is gone: the crash).
    m.store()
        .delete(&crate::keys::client_id(conv.id, u[0], "c1"))
        .await
        .unwrap();
    let again = m.send(&conv, u[0], "c1", "x").await.unwrap();
    assert_eq!((again.new, again.message.seq), (false, 2));
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 5);
}

fn text_items(prefix: &str, n: usize) -> Vec<crate::Item> {
    (0..n)
        .map(|i| crate::Item {
            client_id: format!("{prefix}-{i}"),
            draft: crate::Draft::Text(format!("{prefix} {i}")),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_batch_that_arrives_first_still_lands_after_the_one_it_follows() {
    use crate::Order;
    let (m, u) = setup(2).await;
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    let first = m.batch_token();
    let second = m.batch_token();
    // The second batch starts first: it must wait for the first.
    let early = {
        let (m, conv, sender) = (m.clone(), conv.clone(), u[0]);
        tokio::spawn(async move {
            let order = Order {
                token: second,
                after: Some(first),
            };
            m.append_in_order(&conv, sender, text_items("b", 3), order)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let order = Order {
        token: first,
        after: None,
    };
    let a = m
        .append_in_order(&conv, u[0], text_items("a", 3), order)
        .await;
    let b = early.await.unwrap();
    let seqs = |r: Vec<crate::ItemResult>| -> Vec<u64> {
        r.into_iter()
            .map(|x| x.unwrap().unwrap().message.seq)
            .collect()
    };
    assert_eq!(seqs(a), vec![1, 2, 3]);
    assert_eq!(seqs(b), vec![4, 5, 6]);
    let stats = m.pipeline_stats();
    assert_eq!(stats.waited.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        stats.timed_out.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_batch_whose_predecessor_never_comes_is_busy_and_stores_nothing() {
    use crate::Order;
    let (m, u) = setup(2).await;
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    let order = Order {
        token: m.batch_token(),
        after: Some(m.batch_token()),
    };
    let r = m
        .append_in_order(&conv, u[0], text_items("c", 2), order)
        .await;
    assert!(
        r.iter()
            .all(|x| matches!(x, Err(MessengerError::Contended)))
    );
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 0);
    // Its own token is ended all the same: a batch after it is not held up.
    let next = Order {
        token: m.batch_token(),
        after: Some(order.token),
    };
    let r = m
        .append_in_order(&conv, u[0], text_items("d", 1), next)
        .await;
    assert_eq!(r[0].as_ref().unwrap().as_ref().unwrap().message.seq, 1);
    let stats = m.pipeline_stats();
    assert_eq!(
        stats.timed_out.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn the_head_of_a_conversation_only_moves_forward() {
    let (m, users) = setup(2).await;
    let (conv, _) = m.create(users[0], &users[1..]).await.unwrap();
    let a = m.send(&conv, users[0], "a", "one").await.unwrap().message;
    let b = m.send(&conv, users[1], "b", "two").await.unwrap().message;
    m.note_head(&b);
    m.note_head(&a);
    assert_eq!(m.head(conv.id).await.unwrap().unwrap().seq, b.seq);
    let c = m.send(&conv, users[0], "c", "three").await.unwrap().message;
    m.note_head(&c);
    assert_eq!(m.head(conv.id).await.unwrap().unwrap().body, "three");
    // A shared entry is kept as it is (not copied), and only if it is newer.
    let d = Arc::new(m.send(&conv, users[1], "d", "four").await.unwrap().message);
    m.note_head_shared(&d);
    assert!(Arc::ptr_eq(&m.head(conv.id).await.unwrap().unwrap(), &d));
    m.note_head_shared(&Arc::new(c));
    assert!(Arc::ptr_eq(&m.head(conv.id).await.unwrap().unwrap(), &d));
}

/// A single node's router whose CASes wait while the test holds the gate shut: a claim can be
/// held in the middle of its group while other sends arrive.
#[derive(Debug)]
struct Gated {
    cas: LocalCas,
    gate: tokio::sync::Semaphore,
}

/// Permits of [`Gated::gate`]: the test shuts it by taking them all.
const GATE: u32 = 1 << 20;

#[async_trait::async_trait]
impl starling_store::CasRouter for Gated {
    async fn cas_at(
        &self,
        region: &str,
        key: &starling_store::Key,
        expected: Option<&starling_store::VersionVector>,
        new: Option<bytes::Bytes>,
    ) -> starling_store::Result<starling_store::CasOutcome> {
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| starling_store::StoreError::Closed)?;
        drop(permit);
        self.cas.cas_at(region, key, expected, new).await
    }
}

/// Two users on a messenger whose claims pass `Gated`'s gate, and their 1:1.
async fn gated_pair() -> (Messenger, Vec<u64>, Arc<crate::Conversation>, Arc<Gated>) {
    let (m, u) = setup(2).await;
    let gated = Arc::new(Gated {
        cas: LocalCas(m.store().clone()),
        gate: tokio::sync::Semaphore::new(GATE as usize),
    });
    let m = beside(&m, Some(gated.clone()), MessengerConfig::new("r"));
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    (m, u, conv, gated)
}

/// A send on a task of its own ([`spawn_send`]).
type SendTask = tokio::task::JoinHandle<Result<crate::Sent, MessengerError>>;

/// The send `spawn` starts, once it leads a new group of its lane on `m` (behind a shut gate it
/// then waits in its CAS while the test goes on).
async fn lead_group(m: &Messenger, spawn: impl FnOnce() -> SendTask) -> SendTask {
    let stats = m.sequencer_stats();
    let groups = stats.groups.load(std::sync::atomic::Ordering::Relaxed);
    let lead = spawn();
    until(|| stats.groups.load(std::sync::atomic::Ordering::Relaxed) == groups + 1).await;
    lead
}

/// `sender`'s send of `client_id` into `conv` on a task of its own (a gated one waits in its CAS
/// while the test goes on).
fn spawn_send(
    m: &Messenger,
    conv: &Arc<crate::Conversation>,
    sender: u64,
    client_id: &str,
    body: &'static str,
) -> SendTask {
    let (m, conv, client_id) = (m.clone(), conv.clone(), client_id.to_string());
    tokio::spawn(async move { m.send(&conv, sender, &client_id, body).await })
}

/// Waits (without a deadline of its own: the test runner's applies) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_that_arrive_during_a_claim_are_one_group_with_one_index_batch() {
    use std::sync::atomic::Ordering::Relaxed;
    let (m, u, conv, gated) = gated_pair().await;
    let shut = gated.gate.acquire_many(GATE).await.unwrap();
    let stats = m.sequencer_stats();
    let groups = stats.groups.load(Relaxed);
    // The first send leads its lane's group and waits in its CAS.
    let lead = lead_group(&m, || spawn_send(&m, &conv, u[0], "a0", "first")).await;
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(spawn_send(&m, &conv, u[1], &format!("b{i}"), "then"));
        until(|| stats.queued.load(Relaxed) == i + 1).await;
    }
    // A retry of the first send, while the first is still being claimed.
    let retry = spawn_send(&m, &conv, u[0], "a0", "first");
    until(|| stats.queued.load(Relaxed) == 6).await;
    let entries = stats.index_entries.load(Relaxed);
    drop(shut);
    let first = lead.await.unwrap().unwrap();
    assert_eq!((first.new, first.message.seq), (true, 1));
    for (i, t) in queued.into_iter().enumerate() {
        let s = t.await.unwrap().unwrap();
        assert!(s.new);
        assert_eq!(
            s.message.seq,
            i as u64 + 2,
            "queued sends keep their arrival order"
        );
    }
    let again = retry.await.unwrap().unwrap();
    assert!(!again.new, "the retry in the later group got the original");
    assert_eq!(again.message, first.message);
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 6);
    // Two groups: the leader's, then the six queued run by one task, one index batch each.
    assert_eq!(stats.groups.load(Relaxed), groups + 2);
    assert_eq!(stats.index_entries.load(Relaxed), entries + 7);
    assert_eq!(stats.queued.load(Relaxed), 0);
    for (sender, cid, seq) in [(u[0], "a0", 1u64), (u[1], "b0", 2), (u[1], "b4", 6)] {
        let v = m
            .store()
            .get(&crate::keys::client_id(conv.id, sender, cid))
            .await
            .unwrap()
            .and_then(|v| v.value)
            .unwrap();
        assert_eq!(
            v.as_ref(),
            seq.to_be_bytes(),
            "the index names {cid}'s slot"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_dropped_mid_group_hands_its_lane_on_and_nothing_is_doubled() {
    use std::sync::atomic::Ordering::Relaxed;
    let (m, u, conv, gated) = gated_pair().await;
    let shut = gated.gate.acquire_many(GATE).await.unwrap();
    let stats = m.sequencer_stats();
    let lead = lead_group(&m, || spawn_send(&m, &conv, u[0], "gone", "x")).await;
    let queued = spawn_send(&m, &conv, u[1], "stays", "y");
    until(|| stats.queued.load(Relaxed) == 1).await;
    // The leader's connection closes: its task is dropped while it waits in its CAS.
    lead.abort();
    assert!(lead.await.unwrap_err().is_cancelled());
    drop(shut);
    let s = queued.await.unwrap().unwrap();
    assert!(s.new);
    // The abandoned send never reached its CAS: a retry stores it once, after the other.
    let r = m.send(&conv, u[0], "gone", "x").await.unwrap();
    let again = m.send(&conv, u[0], "gone", "x").await.unwrap();
    assert_eq!(r.message, again.message);
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_group_commit_the_same_sends_make_the_same_log() {
    let (m, u) = setup(3).await;
    let mut cfg = MessengerConfig::new("r");
    cfg.group_commit = false;
    let m = beside(&m, None, cfg);
    let (conv, _) = m.create(u[0], &u[1..]).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for &sender in &u {
        let (m, conv) = (m.clone(), conv.clone());
        tasks.spawn(async move {
            let mut last = 0;
            for i in 0..40 {
                let s = m
                    .send(&conv, sender, &format!("{sender}-{i}"), "x")
                    .await
                    .unwrap();
                assert!(s.message.seq > last, "one sender's order");
                last = s.message.seq;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 120);
    assert_eq!(
        m.sequencer_stats()
            .groups
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn on_one_node_a_slot_and_its_index_entry_are_one_commit() {
    use std::sync::atomic::Ordering::Relaxed;
    let (m, u) = setup(2).await;
    let store = m.store().clone();
    let (conv, _) = m.create(u[0], &u[1..]).await.unwrap();
    let start = store.last_seq();
    let mut sent = Vec::new();
    for i in 0..3 {
        let s = m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
        assert!(s.new);
        sent.push(s.message);
    }
    let stats = m.sequencer_stats();
    assert_eq!(stats.joined.load(Relaxed), 3);
    assert_eq!(
        stats.index_entries.load(Relaxed),
        0,
        "no separate index write"
    );
    // In the change feed, each slot is followed at once by its index entry: one append.
    let feed = feed_keys(&*store, start).await;
    for msg in &sent {
        let slot = feed
            .iter()
            .position(|k| *k == crate::keys::message(conv.id, msg.seq))
            .unwrap();
        let idx = crate::keys::client_id(conv.id, u[0], &msg.client_id);
        assert_eq!(feed.get(slot + 1), Some(&idx), "seq {}", msg.seq);
        let named = store.get(&idx).await.unwrap().unwrap().value.unwrap();
        assert_eq!(named.as_ref(), msg.seq.to_be_bytes());
    }
    // Retries get the originals and store nothing.
    let before = store.last_seq();
    for msg in &sent {
        let r = m.send(&conv, u[0], &msg.client_id, "x").await.unwrap();
        assert!(!r.new);
        assert_eq!(&r.message, msg);
    }
    assert_eq!(store.last_seq(), before);

    // Another writer takes the next slot: the swap conflicts, writes no index entry, and the
    // message lands above it with its entry naming the slot it got.
    let mut other = sent[2].clone();
    other.seq = 4;
    other.sender = u[1];
    other.client_id = "theirs".into();
    let value = starling_store::codec::to_value(&other).unwrap();
    let taken = store
        .cas(&crate::keys::message(conv.id, 4), None, Some(value))
        .await
        .unwrap();
    assert!(matches!(taken, starling_store::CasOutcome::Applied(_)));
    let at = store.last_seq();
    let s = m.send(&conv, u[0], "after", "x").await.unwrap();
    assert_eq!(s.message.seq, 5);
    let feed = feed_keys(&*store, at).await;
    assert_eq!(
        feed,
        vec![
            crate::keys::message(conv.id, 5),
            crate::keys::client_id(conv.id, u[0], "after")
        ],
        "the conflict at seq 4 wrote nothing"
    );
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 5);

    // The path before (the swap, then the group's index batch) reads the same log.
    let mut cfg = MessengerConfig::new("r");
    cfg.one_commit = false;
    let before = beside(&m, None, cfg);
    let s = before.send(&conv, u[1], "b1", "y").await.unwrap();
    assert_eq!(s.message.seq, 6);
    let stats = before.sequencer_stats();
    assert_eq!(
        (
            stats.joined.load(Relaxed),
            stats.index_entries.load(Relaxed)
        ),
        (0, 1)
    );
    let r = m.send(&conv, u[1], "b1", "y").await.unwrap();
    assert_eq!(r.message, s.message, "either path's index answers a retry");
}

/// A messenger over `m`'s store with the client-id filter on, as a node (re)started on it.
fn filtered(m: &Messenger) -> Messenger {
    let mut cfg = MessengerConfig::new("r");
    cfg.client_id_filter = true;
    beside(m, None, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_id_filter_skips_the_index_read_and_a_retry_after_a_restart_finds_the_original()
{
    use std::sync::atomic::Ordering::Relaxed;
    let (m0, u) = setup(2).await;
    // Off (the default, and in a cluster): never in use.
    assert_eq!(m0.load_client_ids().await.unwrap(), 0);
    assert!(!m0.client_ids().is_ready());
    let m = filtered(&m0);
    assert_eq!(m.load_client_ids().await.unwrap(), 0);
    assert!(m.client_ids().is_ready());
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    // More than the dedup window (64): the first ones are found only through the index.
    let n = 100;
    for i in 0..n {
        let s = m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
        assert_eq!((s.new, s.message.seq), (true, i + 1));
    }
    let stats = m.client_ids().stats();
    assert_eq!(
        stats.skipped.load(Relaxed),
        n,
        "every new client id skipped its read"
    );
    assert_eq!(stats.inserted.load(Relaxed), n);
    let again = m.send(&conv, u[0], "c0", "x").await.unwrap();
    assert_eq!((again.new, again.message.seq), (false, 1));
    // Restarted on the same store: until the filter is loaded every send reads the index…
    let m = filtered(&m0);
    assert!(!m.client_ids().is_ready());
    let again = m.send(&conv, u[0], "c1", "x").await.unwrap();
    assert_eq!((again.new, again.message.seq), (false, 2));
    // …and once loaded, a retry of the previous run's send finds the original.
    assert_eq!(m.load_client_ids().await.unwrap(), n);
    for (cid, seq) in [("c2", 3), ("c30", 31), ("c99", 100)] {
        let again = m.send(&conv, u[0], cid, "x").await.unwrap();
        assert_eq!((again.new, again.message.seq), (false, seq), "{cid}");
    }
    let fresh = m.send(&conv, u[0], "new", "x").await.unwrap();
    assert_eq!((fresh.new, fresh.message.seq), (true, n + 1));
    assert!(m.client_ids().stats().skipped.load(Relaxed) >= 1);
    let log = m.after(conv.id, 0, 1000, true).await.unwrap();
    assert_eq!(log.len() as u64, n + 1, "no second copy of any message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_block_cache_a_block_and_a_removal_take_effect_on_the_next_send() {
    let (m, u) = setup_with(3, true).await;
    let graph = m.graph.clone();
    let (dm, _) = m.create(u[0], &[u[1]]).await.unwrap();
    // Asked twice: the second answer is the cache's.
    for _ in 0..2 {
        m.authorize_send(u[0], dm.id).await.unwrap();
        m.authorize_send(u[1], dm.id).await.unwrap();
    }
    let hits = || {
        graph
            .block_cache()
            .unwrap()
            .stats()
            .hits
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(hits() >= 2, "{}", hits());
    graph.block(u[1], u[0]).await.unwrap();
    for sender in [u[0], u[1]] {
        assert!(matches!(
            m.authorize_send(sender, dm.id).await,
            Err(MessengerError::Blocked)
        ));
    }
    graph.unblock(u[1], u[0]).await.unwrap();
    m.authorize_send(u[0], dm.id).await.unwrap();
    // A member removed from a group cannot send the next message.
    let (group, _) = m.create(u[0], &[u[1], u[2]]).await.unwrap();
    m.authorize_send(u[2], group.id).await.unwrap();
    m.send(&group, u[2], "before", "x").await.unwrap();
    m.change(&group, u[0], crate::Change::Remove(u[2]))
        .await
        .unwrap();
    assert!(matches!(
        m.authorize_send(u[2], group.id).await,
        Err(MessengerError::NotMember)
    ));
}

/// A messenger on a memory store keeping `max` entries per conversation.
async fn with_retention(users: usize, max: u64) -> (Messenger, Vec<u64>) {
    let mut cfg = MessengerConfig::new("r");
    cfg.retention = crate::Retention { max, max_age: None };
    messenger_on_memory(users, false, cfg).await
}

/// Live (not deleted) slots of `conv` in the store, and its client-id index entries.
async fn stored(m: &Messenger, conv: u64) -> (Vec<u64>, usize) {
    let slots = m
        .store()
        .scan(&starling_store::ScanRequest::prefix(
            crate::keys::messages_prefix(conv),
            1000,
        ))
        .await
        .unwrap();
    let mut seqs: Vec<u64> = slots
        .items
        .iter()
        .filter_map(|(k, _)| crate::keys::parse_message(k).map(|(_, s)| s))
        .collect();
    seqs.sort_unstable();
    let cids = m
        .store()
        .scan(&starling_store::ScanRequest::prefix(
            crate::keys::CLIENT_IDS.key().u64(conv).finish(),
            1000,
        ))
        .await
        .unwrap();
    (seqs, cids.items.len())
}

/// `actor` renames group `conv` to `name` (an entry of its log).
async fn rename(m: &Messenger, conv: &crate::Conversation, actor: u64, name: &str) {
    let change = crate::send::Change::Rename {
        name: Some(name.into()),
        topic: None,
        avatar: None,
    };
    m.change(conv, actor, change).await.unwrap().unwrap();
}

/// Runs the queued retention passes until none is left.
async fn drain_trims(m: &Messenger) {
    while let Some(conv) = m.retention_queue().pop() {
        m.trim(conv).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_history_forgets_the_former_memberships_it_no_longer_holds() {
    // Every change entry carries the whole state, former memberships included (up to
    // MAX_PAST): with 10 entries kept, a stretch that ended below the oldest kept reads nothing.
    let (m, u) = with_retention(3, 10).await;
    let (conv, _) = m
        .create_group(u[0], &[u[1]], Some("g".into()), String::new(), None)
        .await
        .unwrap();
    use crate::Change::{Add, Remove};
    for _ in 0..30 {
        for change in [Add(u[2]), Remove(u[1]), Add(u[1]), Remove(u[2])] {
            m.change(&conv, u[0], change).await.unwrap().unwrap();
        }
    }
    let now = m.conversation(conv.id).await.unwrap();
    let ends: Vec<u64> = now.past.iter().map(|p| p.until).collect();
    let e = now.epoch;
    assert_eq!(
        ends,
        vec![e - 8, e - 6, e - 4, e - 2, e],
        "the removals among the last 10 entries (every other one), not the 55 before"
    );
    // The removed member still reads the stretch kept; a stretch forgotten is refused.
    assert!(m.authorize_read(u[2], conv.id).await.is_ok());
    let (other, _) = m
        .create_group(u[0], &[u[2]], Some("h".into()), String::new(), None)
        .await
        .unwrap();
    m.change(&other, u[0], crate::Change::Remove(u[2]))
        .await
        .unwrap()
        .unwrap();
    for i in 0..9 {
        rename(&m, &other, u[0], &format!("h{i}")).await;
    }
    assert!(
        m.authorize_read(u[2], other.id).await.is_ok(),
        "the removal is still among the last 10 entries"
    );
    rename(&m, &other, u[0], "last").await;
    assert!(matches!(
        m.authorize_read(u[2], other.id).await,
        Err(MessengerError::NotMember)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_past_the_bound_keeps_exactly_the_last_n_from_its_floor() {
    let (m, u) = with_retention(2, 100).await;
    let (conv, _) = m
        .create_group(u[0], &[u[1]], Some("g".into()), String::new(), None)
        .await
        .unwrap();
    // Entry 1 is a change (every later entry is written under its state), then 299 texts.
    rename(&m, &conv, u[0], "h").await;
    let conv = m.conversation(conv.id).await.unwrap();
    for i in 2..=300 {
        m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
    }
    assert_eq!(
        m.retention_queue().len(),
        1,
        "queued once by the send path's checks"
    );
    drain_trims(&m).await;
    assert_eq!(m.floor(conv.id).await.unwrap(), 201);
    let history = m.after(conv.id, 0, 1000, true).await.unwrap();
    assert_eq!(
        history.iter().map(|x| x.seq).collect::<Vec<_>>(),
        (201..=300).collect::<Vec<_>>(),
        "exactly the last 100, from the floor"
    );
    let newest = m.before(conv.id, None, 1000).await.unwrap();
    assert_eq!(newest.first().map(|x| x.seq), Some(201));
    assert_eq!(newest.len(), 100);
    // In the store: the 100 and the change entry they were written under; their index entries.
    let (seqs, cids) = stored(&m, conv.id).await;
    let mut expect = vec![1];
    expect.extend(201..=300);
    assert_eq!(seqs, expect);
    assert_eq!(
        cids, 101,
        "the trimmed messages' client-id index entries are gone (the kept change's stays)"
    );
    // Unread counts what exists: from the floor for a marker below it.
    let inbox = m.inbox(u[1], None, 10).await.unwrap();
    assert_eq!(inbox.items[0].unread, 100);
    // Edits of a trimmed message: refused as trimmed; above the floor: as before.
    assert!(matches!(
        m.edit(&conv, u[0], 150, "y", "e1").await,
        Err(MessengerError::Trimmed(201))
    ));
    assert!(matches!(
        m.delete_message(&conv, u[0], 5, "d1").await,
        Err(MessengerError::Trimmed(201))
    ));
    m.edit(&conv, u[0], 250, "y", "e2").await.unwrap();
    // Another change, then past the bound again: the old change entry goes, the new one stays.
    rename(&m, &conv, u[0], "i").await;
    let conv = m.conversation(conv.id).await.unwrap();
    let head = m.last_seq(conv.id).await.unwrap();
    for i in head + 1..=500 {
        m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
    }
    drain_trims(&m).await;
    assert_eq!(m.floor(conv.id).await.unwrap(), 401);
    let (seqs, cids) = stored(&m, conv.id).await;
    let mut expect = vec![302];
    expect.extend(401..=500);
    assert_eq!(
        seqs, expect,
        "the change entry at 302 stays, the one at 1 is gone"
    );
    assert_eq!(cids, 101);
    let history = m.after(conv.id, 150, 1000, true).await.unwrap();
    assert_eq!(history.first().map(|x| x.seq), Some(401));
    assert_eq!(history.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_resumes_after_a_restart_from_the_sweep() {
    let (m, u) = setup(2).await;
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    for i in 1..=300 {
        m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
    }
    // The floor was raised and the node stopped before deleting (the window a pass leaves).
    let mut cfg = MessengerConfig::new("r");
    cfg.retention = crate::Retention {
        max: 100,
        max_age: None,
    };
    let before = beside(&m, None, cfg.clone());
    before.raise_floor(conv.id, 150).await.unwrap();
    assert_eq!(
        before.after(conv.id, 0, 10, true).await.unwrap()[0].seq,
        150
    );
    // Restarted with retention on and no send: the sweep finds the conversation.
    let restarted = beside(&m, None, cfg);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = {
        let r = restarted.clone();
        tokio::spawn(async move {
            r.run_retention(std::time::Duration::from_millis(10), rx)
                .await;
        })
    };
    while stored(&m, conv.id).await.0.len() != 100 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(restarted.floor(conv.id).await.unwrap(), 201);
    assert_eq!(stored(&m, conv.id).await.0, (201..=300).collect::<Vec<_>>());
    assert!(
        restarted
            .retention_stats()
            .trimmed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_age_bound_trims_all_but_the_newest_entry() {
    let mut cfg = MessengerConfig::new("r");
    cfg.retention = crate::Retention {
        max: 0,
        max_age: Some(std::time::Duration::from_millis(1)),
    };
    let (m, u) = messenger_on_memory(2, false, cfg).await;
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    for i in 1..=10 {
        m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
    }
    // Every entry is older than 1 ms once a millisecond has passed.
    while crate::now_ms() <= m.message(conv.id, 10).await.unwrap().unwrap().sent_at_ms + 1 {
        tokio::task::yield_now().await;
    }
    m.trim(conv.id).await.unwrap();
    assert_eq!(m.floor(conv.id).await.unwrap(), 10);
    assert_eq!(stored(&m, conv.id).await.0, vec![10]);
    // The next send lands after the head: no seq is reused.
    let next = m.send(&conv, u[0], "c11", "x").await.unwrap();
    assert_eq!(next.message.seq, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_keeps_pace_past_more_tombstones_than_a_scan_walks() {
    // The memory engine keeps every tombstone (no reaper here), and a scan gives up after
    // walking 4 x its limit of them: a pass that scanned from the oldest slot would stall.
    let (m, u) = with_retention(2, 100).await;
    let (conv, _) = m.create(u[0], &[u[1]]).await.unwrap();
    for i in 1..=1500u64 {
        m.send(&conv, u[0], &format!("c{i}"), "x").await.unwrap();
        if i % 64 == 0 {
            drain_trims(&m).await;
        }
    }
    m.queue_trim(conv.id);
    drain_trims(&m).await;
    assert_eq!(m.floor(conv.id).await.unwrap(), 1401);
    assert_eq!(
        stored(&m, conv.id).await.0,
        (1401..=1500).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_refused_retried_and_new_entries_answers_each_in_its_place() {
    let (m, u) = setup(2).await;
    let (conv, _) = m.create(u[0], &u[1..]).await.unwrap();
    let first = m.send(&conv, u[0], "a", "first").await.unwrap();
    let text = |cid: &str, body: &str| crate::Item {
        client_id: cid.into(),
        draft: crate::Draft::Text(body.into()),
    };
    // Refused, new, the original of "a" (step 1), new, refused, and "b" again in the batch.
    let items = vec![
        text("x", " "),
        text("b", "second"),
        text("a", "first"),
        text("c", "third"),
        text("", "no client id"),
        text("b", "second"),
    ];
    let r = m
        .append_in_order(&conv, u[0], items, Default::default())
        .await;
    assert_eq!(r.len(), 6);
    assert!(matches!(r[0], Err(MessengerError::Invalid(_))));
    assert!(matches!(r[4], Err(MessengerError::Invalid(_))));
    let sent = |i: usize| r[i].as_ref().unwrap().as_ref().unwrap();
    assert_eq!((sent(1).message.seq, sent(1).new), (2, true));
    assert_eq!(sent(1).message.body, "second");
    assert_eq!(sent(2).message, first.message);
    assert!(!sent(2).new);
    assert_eq!((sent(3).message.seq, sent(3).new), (3, true));
    assert_eq!(sent(3).message.body, "third");
    assert_eq!(sent(5).message, sent(1).message);
    assert!(!sent(5).new);
    assert_eq!(m.last_seq(conv.id).await.unwrap(), 3);
}
