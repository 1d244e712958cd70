//! `/metrics`: Prometheus/OpenMetrics text, read on each scrape from the store and the gossip
//! service (a collector of constant metrics: nothing is kept twice).

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use starling_gossip::GossipHandle;
use starling_store::Store;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Reads the node's counters at scrape time.
#[derive(Debug)]
struct NodeCollector {
    store: Arc<dyn Store>,
    gossip: Option<GossipHandle>,
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut enc;
        gauge(
            e,
            "starling_store_change_seq",
            "Last sequence number of the store's change feed",
            i64::try_from(self.store.last_seq()).unwrap_or(i64::MAX),
        )?;
        if let Some(live) = crate::heap::live_bytes() {
            gauge(
                e,
                "starling_heap_live_bytes",
                "Bytes the program holds from its allocator (the RSS also holds what the allocator keeps for reuse)",
                i64::try_from(live).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(m) = self.store.memory() {
            for (name, help, v) in [
                (
                    "starling_store_memtable_bytes",
                    "Bytes in the store's memtables, active and sealed",
                    m.memtable_bytes,
                ),
                (
                    "starling_store_block_cache_bytes",
                    "Bytes in the store's block cache",
                    m.cache_bytes,
                ),
                (
                    "starling_store_block_cache_capacity_bytes",
                    "The store's block cache capacity",
                    m.cache_capacity,
                ),
                (
                    "starling_store_pinned_bytes",
                    "Bytes of index and filter blocks the store holds outside its block cache",
                    m.pinned_bytes,
                ),
                (
                    "starling_store_tables",
                    "Tables (sorted files) of the store",
                    m.tables,
                ),
                (
                    "starling_store_journal_bytes",
                    "Bytes on disk of the store's write-ahead journals (the embedded engine's, bounded at 64 MiB before its spaces are flushed)",
                    m.journal_bytes,
                ),
                (
                    "starling_store_journals",
                    "Journal files of the store on disk",
                    m.journals,
                ),
            ] {
                gauge(e, name, help, i64::try_from(v).unwrap_or(i64::MAX))?;
            }
        }
        if let Some(w) = self.store.writer_stats() {
            lane_metrics(
                e,
                "starling_store_writer",
                "writes of the store's writer thread (the embedded engine's commits and group flushes)",
                w,
            )?;
        }
        let Some(g) = &self.gossip else {
            return Ok(());
        };
        gauge(
            e,
            "starling_gossip_members",
            "Live members seen, this node excluded",
            g.members().len() as i64,
        )?;
        let membership = g.membership();
        for (state, name, help) in [
            (
                starling_gossip::MemberState::Suspect,
                "starling_gossip_members_suspect",
                "Members suspected of being down",
            ),
            (
                starling_gossip::MemberState::Down,
                "starling_gossip_members_down",
                "Members declared down, not yet removed",
            ),
        ] {
            let n = membership.iter().filter(|(_, s)| *s == state).count();
            gauge(e, name, help, n as i64)?;
        }
        let p = g.protocol_metrics();
        gauge(
            e,
            "starling_gossip_convergence_lag_ms",
            "Age on arrival of the newest record of the last push that changed this replica",
            i64::try_from(p.convergence_lag_ms).unwrap_or(i64::MAX),
        )?;
        let r = g.reaper_stats();
        gauge(
            e,
            "starling_gossip_reaper_last_pass_us",
            "How long the tombstone reaper's last pass took, in microseconds",
            i64::try_from(r.last_pass_us.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_gossip_reaper_position_ppm",
            "How far the reaper's sweep of the key space is, in millionths",
            i64::try_from(r.position_ppm.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        for (name, help, v) in [
            (
                "starling_gossip_reaper_index_length",
                "Entries of the store's tombstone index after the reaper's last pass (an estimate on disk)",
                &r.index_len,
            ),
            (
                "starling_gossip_reaper_oldest_tombstone_age_ms",
                "Age of the oldest indexed tombstone after the reaper's last pass, in milliseconds (0: none)",
                &r.oldest_ms,
            ),
            (
                "starling_gossip_reaper_mode",
                "How the reaper's last pass found tombstones: 0 from the index, 1 backfilling it, 2 sweeping every record",
                &r.mode,
            ),
        ] {
            gauge(
                e,
                name,
                help,
                i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            )?;
        }
        for (name, help, v) in [
            (
                "starling_gossip_deltas_pushed",
                "Records sent in pushes",
                p.deltas_pushed,
            ),
            (
                "starling_gossip_deltas_received",
                "Records received in pushes",
                p.deltas_received,
            ),
            (
                "starling_gossip_keyspace_pushed",
                "Records of the keyspace-wide feed this node pushed to the other regions as a partition's holder (once each)",
                p.keyspace_pushed,
            ),
            (
                "starling_gossip_deltas_applied",
                "Received records that changed the store",
                p.deltas_applied,
            ),
            (
                "starling_gossip_ae_rounds",
                "Anti-entropy rounds started",
                p.ae_rounds,
            ),
            (
                "starling_gossip_ae_records_sent",
                "Records shipped by anti-entropy",
                p.ae_records_sent,
            ),
            (
                "starling_gossip_ae_summary_keys_sent",
                "Keys listed in anti-entropy bucket summaries sent",
                p.ae_summary_keys_sent,
            ),
            (
                "starling_gossip_ae_buckets_differing",
                "Digest buckets anti-entropy found to differ from a peer's",
                p.ae_buckets_differing,
            ),
            (
                "starling_gossip_ae_repairs",
                "Records repaired by anti-entropy",
                p.ae_repairs,
            ),
            (
                "starling_gossip_ae_repairs_settled",
                "Records repaired by anti-entropy that were older than the settle time (writes pushes missed)",
                p.ae_repairs_settled,
            ),
            (
                "starling_gossip_messages_out",
                "Messages handed to the transport",
                p.messages_out,
            ),
            (
                "starling_gossip_tombstones_collected",
                "Tombstones collected by the reaper",
                g.reaper_stats().collected.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_passes",
                "Passes of the tombstone reaper",
                g.reaper_stats().passes.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_skipped",
                "Reaper passes that collected nothing because a member was not alive or the grace had not passed",
                g.reaper_stats().skipped.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_sweeps",
                "Sweeps of the whole key space the reaper finished",
                g.reaper_stats().sweeps.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_failures",
                "Reaper passes that failed (logged)",
                g.reaper_stats().failures.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_behind",
                "Reaper passes that stopped at their page limit with due tombstones left (the next came a second later)",
                g.reaper_stats().behind.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_pages",
                "Pages the reaper read (of the tombstone index, or of records while sweeping)",
                g.reaper_stats().pages.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_scanned",
                "Records the reaper read (one per index entry it consumed, every record of a sweep)",
                g.reaper_stats().scanned.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_stale",
                "Tombstone index entries dropped because their key was written again",
                g.reaper_stats().stale.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_reaper_backfilled",
                "Tombstones the reaper's backfill of the tombstone index indexed",
                g.reaper_stats().backfilled.load(Ordering::Relaxed),
            ),
            (
                "starling_gossip_calls_sent",
                "Calls sent to a node of another region or this one (e.g. chat sends forwarded to their home region)",
                p.calls_sent,
            ),
            (
                "starling_gossip_calls_served",
                "Calls run here for another node",
                p.calls_served,
            ),
            (
                "starling_gossip_cas_repair_reads",
                "CASes owned here that first read their key from the region (after a restart)",
                p.cas_repair_reads,
            ),
            (
                "starling_gossip_cas_repaired",
                "Records those reads brought that changed the store (CASes saved from a stale value)",
                p.cas_repaired,
            ),
            (
                "starling_gossip_cas_repair_timeouts",
                "Those reads that ran out of time with a member silent",
                p.cas_repair_timeouts,
            ),
        ] {
            counter(e, name, help, v)?;
        }
        let t = g.transport_metrics();
        gauge(
            e,
            "starling_gossip_tick_gap_max_ms",
            "Longest time between two ticks of the loop that fires SWIM's timers (the membership loop, or the core loop with --gossip-membership inline; 100 ms apart when it is not stalled)",
            i64::try_from(t.tick_gap_max_ms.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_gossip_core_tick_gap_max_ms",
            "Longest time between two ticks of the gossip core loop (push, anti-entropy, expiries; its steps await the store)",
            i64::try_from(t.core_tick_gap_max_ms.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_gossip_membership_separate",
            "1 when SWIM's timers and packets run on a membership loop that never awaits the store, 0 on the core loop (--gossip-membership)",
            i64::try_from(t.separate_membership.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        for (name, help, v) in [
            (
                "starling_gossip_stalls",
                "Ticks of the loop that fires SWIM's timers that came more than 100 ms late",
                &t.stalls,
            ),
            (
                "starling_gossip_long_stalls",
                "Ticks of the loop that fires SWIM's timers that came more than 1 s late",
                &t.long_stalls,
            ),
            (
                "starling_gossip_core_stalls",
                "Ticks of the gossip core loop that came more than 100 ms late",
                &t.core_stalls,
            ),
            (
                "starling_gossip_core_long_stalls",
                "Ticks of the gossip core loop that came more than 1 s late",
                &t.core_long_stalls,
            ),
            (
                "starling_gossip_frames_refused",
                "Frames refused (bad secret, malformed, too large)",
                &t.frames_refused,
            ),
            ("starling_gossip_frames_in", "Frames accepted", &t.frames_in),
            (
                "starling_gossip_frames_in_clear",
                "Frames accepted in clear, not encrypted (from builds before gossip encryption, during an upgrade)",
                &t.frames_in_clear,
            ),
            (
                "starling_gossip_frames_out",
                "Frames written",
                &t.frames_out,
            ),
            (
                "starling_gossip_bytes_out",
                "Bytes written to peers",
                &t.bytes_out,
            ),
            (
                "starling_gossip_wan_dropped",
                "Messages dropped by the simulated WAN",
                &t.wan_dropped,
            ),
            (
                "starling_gossip_queue_dropped",
                "Messages dropped on a full peer queue",
                &t.queue_dropped,
            ),
            (
                "starling_gossip_incompatible_peers",
                "Peers (host and protocol version) refused for a gossip protocol version this node does not accept",
                &t.incompatible_peers,
            ),
        ] {
            counter(e, name, help, v.load(Ordering::Relaxed))?;
        }
        gossip_loop(e, g)
    }
}

/// The gossip core's store work (`--gossip-store-work`): jobs made, outstanding (bounded), the
/// times the core loop held messages back for them, and the store worker's time.
fn gossip_store_work(
    e: &mut DescriptorEncoder,
    t: &starling_gossip::transport::TransportMetrics,
) -> std::fmt::Result {
    let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        e,
        "starling_gossip_store_work_inline",
        "1 when the gossip core loop awaits its store work in the step that asked for it, 0 when a store worker runs it and the loop takes the answers as events (--gossip-store-work)",
        int(load(&t.store_work_inline)),
    )?;
    gauge(
        e,
        "starling_gossip_store_jobs_pending",
        "Store jobs the gossip core made and has not had answered (past 256 its loop takes no new message or command)",
        int(load(&t.store_jobs_pending)),
    )?;
    gauge(
        e,
        "starling_gossip_store_jobs_pending_max",
        "The most store jobs of the gossip core outstanding at once",
        int(load(&t.store_jobs_pending_max)),
    )?;
    gauge(
        e,
        "starling_gossip_store_job_max_us",
        "The longest single store job of the gossip store worker (µs)",
        int(load(&t.store_job_max_us)),
    )?;
    for (name, help, v) in [
        (
            "starling_gossip_store_jobs",
            "Store jobs the gossip core made (pushes, applies, CASes, anti-entropy and fetch reads, saves)",
            &t.store_jobs,
        ),
        (
            "starling_gossip_store_backpressure",
            "Times the gossip core loop stopped taking messages and commands because 256 store jobs were outstanding",
            &t.store_backpressure,
        ),
        (
            "starling_gossip_store_job_us",
            "Time the gossip store worker spent running jobs (µs)",
            &t.store_job_us,
        ),
    ] {
        counter(e, name, help, load(v))?;
    }
    Ok(())
}

/// Where the gossip core loop's time goes: each kind of step's total and longest time, and its
/// store lane (calls, in flight, queue wait and run time, total and longest).
fn gossip_loop(e: &mut DescriptorEncoder, g: &GossipHandle) -> std::fmt::Result {
    let t = g.transport_metrics();
    for (name, help, last) in [
        (
            "starling_gossip_tick_age_ms",
            "Time since the loop that fires SWIM's timers last ticked (ms; about 100 at most while it keeps up, 0 before its first tick): a loop stuck in one step shows here before its tick gap does",
            &t.last_tick_unix_ms,
        ),
        (
            "starling_gossip_core_tick_age_ms",
            "Time since the gossip core loop last ticked (ms; 0 before its first tick)",
            &t.core_last_tick_unix_ms,
        ),
    ] {
        let last = last.load(Ordering::Relaxed);
        gauge(
            e,
            name,
            help,
            if last == 0 {
                0
            } else {
                i64::try_from(starling_gossip::transport::unix_ms().saturating_sub(last))
                    .unwrap_or(i64::MAX)
            },
        )?;
    }
    for step in starling_gossip::transport::Step::ALL {
        let i = step as usize;
        let name = step.as_str();
        counter(
            e,
            &format!("starling_gossip_loop_{name}_us"),
            &format!(
                "Time the gossip core loop spent in {name} steps, store calls included with --gossip-store-work inline (µs)"
            ),
            t.step_us[i].load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            &format!("starling_gossip_loop_{name}_max_us"),
            &format!("The longest single {name} step of the gossip core loop (µs)"),
            i64::try_from(t.step_max_us[i].load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
    }
    gossip_store_work(e, t)?;
    let lane = g.store_lane();
    let s = lane.stats();
    gauge(
        e,
        "starling_gossip_store_lane_dedicated",
        "1 when the gossip core loop's store calls run on a thread of their own, 0 on tokio's shared blocking pool (--gossip-store-lane)",
        i64::from(lane.is_dedicated()),
    )?;
    lane_metrics(
        e,
        "starling_gossip_store",
        "store calls of the gossip core loop",
        s,
    )
}

/// A store lane's counters as `{prefix}_in_flight` (its queue holds
/// [`starling_store::StoreLane::QUEUE`] calls at most), `{prefix}_calls`, `{prefix}_wait_us`,
/// `{prefix}_run_us` and the longest wait and run (`{prefix}_wait_max_us`, `{prefix}_run_max_us`);
/// `what` names the calls in the help texts.
fn lane_metrics(
    e: &mut DescriptorEncoder,
    prefix: &str,
    what: &str,
    s: &starling_store::LaneStats,
) -> std::fmt::Result {
    let max = |v: &std::sync::atomic::AtomicU64| {
        i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    };
    gauge(
        e,
        &format!("{prefix}_in_flight"),
        &format!(
            "The {what} queued or running now (the queue holds {} at most)",
            starling_store::StoreLane::QUEUE
        ),
        max(&s.in_flight),
    )?;
    for (name, help, v) in [
        ("calls", format!("The {what}"), &s.calls),
        (
            "wait_us",
            format!("Time the {what} waited before they ran (µs)"),
            &s.wait_us,
        ),
        ("run_us", format!("Time the {what} ran (µs)"), &s.run_us),
    ] {
        counter(
            e,
            &format!("{prefix}_{name}"),
            &help,
            v.load(Ordering::Relaxed),
        )?;
    }
    for (name, help, v) in [
        (
            "wait_max_us",
            format!("The longest wait of one of the {what} before it ran (µs)"),
            &s.wait_max_us,
        ),
        (
            "run_max_us",
            format!("The longest run of one of the {what} (µs)"),
            &s.run_max_us,
        ),
    ] {
        gauge(e, &format!("{prefix}_{name}"), &help, max(v))?;
    }
    Ok(())
}

/// Reads the feed's cache state at scrape time.
#[derive(Debug)]
struct FeedCollector(starling_feed::Feed);

impl Collector for FeedCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut enc;
        gauge(
            e,
            "starling_feed_timelines_cached",
            "Home timelines held in the in-process cache (approximate)",
            i64::try_from(self.0.cached_timelines()).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_feed_follower_lists_cached",
            "Authors' follower lists the fan-out worker holds (approximate)",
            i64::try_from(self.0.cached_follower_lists()).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_feed_author_lists_cached",
            "Pulled (large) accounts whose recent post ids are held in process for the read-time merge (approximate)",
            i64::try_from(self.0.cached_author_lists()).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_feed_author_summaries_cached",
            "Users whose summary (handle, display name, avatar) is held in process for hydrated post views",
            i64::try_from(self.0.cached_authors()).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_post_counts_cached",
            "Posts whose counters (likes, replies, reposts, quotes) are held in process for hydrated post views",
            i64::try_from(self.0.cached_post_counts()).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "starling_viewer_flags_cached",
            "(post, viewer) pairs whose liked/reposted flags are held in process for hydrated post views",
            i64::try_from(self.0.cached_viewer_flags()).unwrap_or(i64::MAX),
        )?;
        let (hits, misses) = self.0.viewer_flag_hits_misses();
        counter(
            e,
            "starling_viewer_flag_hits",
            "Viewer-flag lookups of hydrated post views answered from the in-process cache",
            hits,
        )?;
        counter(
            e,
            "starling_viewer_flag_misses",
            "Viewer-flag lookups of hydrated post views read from the viewer's like and repost elements",
            misses,
        )?;
        counter(
            e,
            "starling_feed_author_list_reads",
            "Pulled accounts' post lists read from the store by feed reads (list misses, retired lists, pages deeper than a list)",
            self.0.author_list_reads(),
        )?;
        let redis = match self.0.cache_tier() {
            starling_feed::CacheTier::LocalOnly => -1,
            starling_feed::CacheTier::RedisDown => 0,
            starling_feed::CacheTier::RedisUp => 1,
        };
        gauge(
            e,
            "starling_feed_redis_up",
            "1: the Redis tier answers; 0: configured but down (reads degrade to the local cache); -1: not configured",
            redis,
        )
    }
}

/// Adds the feed's gauges to a registry.
pub fn register_feed(r: &mut Registry, feed: starling_feed::Feed) {
    r.register_collector(Box::new(FeedCollector(feed)));
}

/// Reads the change feed's trimmer at scrape time.
#[derive(Debug)]
struct TrimCollector(Arc<starling_store::TrimStats>);

impl Collector for TrimCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut enc;
        let t = &self.0;
        let v = |a: &std::sync::atomic::AtomicU64| {
            i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
        };
        gauge(
            e,
            "starling_change_feed_length",
            "Entries in the store's change feed after the trimmer's last pass",
            v(&t.length),
        )?;
        gauge(
            e,
            "starling_change_feed_oldest_age_ms",
            "Age of the change feed's oldest entry after the trimmer's last pass (at least; to within one trim interval)",
            v(&t.oldest_age_ms),
        )?;
        counter(
            e,
            "starling_change_feed_trimmed",
            "Change-feed entries removed below the slowest consumer",
            t.trimmed.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "starling_change_feed_trim_passes",
            "Passes of the change feed's trimmer",
            t.passes.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "starling_change_feed_trim_failures",
            "Passes of the change feed's trimmer that failed (logged)",
            t.failures.load(Ordering::Relaxed),
        )
    }
}

/// Adds the change-feed trimmer's gauges and counters to a registry.
pub fn register_trim(r: &mut Registry, stats: Arc<starling_store::TrimStats>) {
    r.register_collector(Box::new(TrimCollector(stats)));
}

/// A registry with the node's collector.
pub fn registry(store: Arc<dyn Store>, gossip: Option<GossipHandle>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(NodeCollector { store, gossip }));
    r.register_collector(Box::new(crate::telemetry::ProcessCollector));
    r
}

/// Chat gauges and counters, read at scrape time from the hub and the bus.
#[derive(Debug)]
struct ChatCollector {
    fanout: starling_messenger::Fanout,
}

impl Collector for ChatCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut enc;
        gauge(
            e,
            "starling_chat_connections",
            "WebSocket connections held by this node",
            self.fanout.hub.connections() as i64,
        )?;
        let (dropped, published) = self.fanout.bus.counters();
        counter(
            e,
            "starling_chat_bus_published",
            "Chat events published on the in-region Redis bus",
            published,
        )?;
        counter(
            e,
            "starling_chat_bus_dropped",
            "Chat events dropped because the bus publisher's queue was full or Redis failed",
            dropped,
        )?;
        let c = self.fanout.messenger.cache_entries();
        for (name, help, v) in [
            (
                "starling_chat_conversations_cached",
                "Conversations held in process in their newest state (approximate; at most 100 000)",
                c.conversations,
            ),
            (
                "starling_chat_heads_cached",
                "Conversation heads held in process for inboxes (approximate; at most 100 000)",
                c.heads,
            ),
            (
                "starling_chat_tail_entries_cached",
                "Slots remembered across the conversations' claim tails (approximate; at most 1 048 576)",
                c.tail_entries,
            ),
        ] {
            gauge(e, name, help, i64::try_from(v).unwrap_or(i64::MAX))?;
        }
        let p = self.fanout.messenger.pipeline_stats();
        counter(
            e,
            "starling_chat_pipeline_waits",
            "Send batches whose claims waited here for their connection's previous batch to the conversation",
            p.waited.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "starling_chat_pipeline_timeouts",
            "Send batches answered busy because their connection's previous batch did not end its claims here in time",
            p.timed_out.load(Ordering::Relaxed),
        )?;
        let s = self.fanout.messenger.sequencer_stats();
        counter(
            e,
            "starling_chat_sequencer_groups",
            "Groups of send batches claimed together (one client-id index write each)",
            s.groups.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "starling_chat_sequencer_batches",
            "Send batches claimed in the sequencer's groups",
            s.batches.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "starling_chat_sequencer_index_entries",
            "Client-id index entries written in the groups' store batches",
            s.index_entries.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "starling_chat_sequencer_joined_slots",
            "Slots stored in one commit with their client-id index entry (a single node's claims)",
            s.joined.load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            "starling_chat_sequencer_queued",
            "Send batches queued behind a running group now",
            i64::try_from(s.queued.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        counter(
            e,
            "starling_chat_sequencer_refused",
            "Send batches answered busy because their lane's queue was full",
            s.refused.load(Ordering::Relaxed),
        )?;
        if let Some(b) = self.fanout.messenger.graph().block_cache() {
            counter(
                e,
                "starling_block_cache_hits",
                "Block checks (either way, e.g. a 1:1 chat send's) answered from the block cache",
                b.stats().hits.load(Ordering::Relaxed),
            )?;
            counter(
                e,
                "starling_block_cache_misses",
                "Block checks that read the store (then cached)",
                b.stats().misses.load(Ordering::Relaxed),
            )?;
            gauge(
                e,
                "starling_block_cache_pairs",
                "User pairs in the block cache (at most 200 000)",
                i64::try_from(b.entries()).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(c) = self.fanout.messenger.graph().session_cache() {
            counter(
                e,
                "starling_session_cache_hits",
                "Bearer-token checks answered from the session cache",
                c.stats().hits.load(Ordering::Relaxed),
            )?;
            counter(
                e,
                "starling_session_cache_misses",
                "Bearer-token checks that read the store (a valid session then cached)",
                c.stats().misses.load(Ordering::Relaxed),
            )?;
            gauge(
                e,
                "starling_session_cache_sessions",
                "Sessions in the session cache (at most 100 000)",
                i64::try_from(c.entries()).unwrap_or(i64::MAX),
            )?;
        }
        let f = self.fanout.messenger.client_ids();
        for (name, help, v) in [
            (
                "starling_chat_client_id_filter_inserted",
                "Client-id index entries put in the send path's filter (this node's writes and the start-up scan)",
                &f.stats().inserted,
            ),
            (
                "starling_chat_client_id_filter_skipped",
                "Sends whose client-id index read the filter skipped (the store certainly had no entry)",
                &f.stats().skipped,
            ),
            (
                "starling_chat_client_id_filter_maybe",
                "Sends that read the client-id index (a retry, a false positive, or the filter not in use)",
                &f.stats().maybe,
            ),
        ] {
            counter(e, name, help, v.load(Ordering::Relaxed))?;
        }
        gauge(
            e,
            "starling_chat_client_id_filter_bytes",
            "Bytes of the send path's client-id filter (fixed)",
            i64::try_from(starling_messenger::cids::BITS / 8).unwrap_or(i64::MAX),
        )?;
        let r = self.fanout.messenger.retention_stats();
        for (name, help, v) in [
            (
                "starling_chat_history_trimmed",
                "Chat log entries deleted by history retention (--chat-history-max, --chat-history-max-age)",
                &r.trimmed,
            ),
            (
                "starling_chat_history_queued",
                "Conversations queued for a retention pass (by the send path's check or the sweep)",
                &r.queued,
            ),
            (
                "starling_chat_history_queue_dropped",
                "Conversations not queued for a retention pass: the queue was full (queued again later)",
                &r.dropped,
            ),
            (
                "starling_chat_history_passes",
                "Retention passes run on conversations this node claims seqs for",
                &r.passes,
            ),
            (
                "starling_chat_history_failed",
                "Retention passes that failed (a store error; the conversation is queued again later)",
                &r.failed,
            ),
        ] {
            counter(e, name, help, v.load(Ordering::Relaxed))?;
        }
        gauge(
            e,
            "starling_chat_history_queue",
            "Conversations waiting for a retention pass (at most 4096)",
            i64::try_from(self.fanout.messenger.retention_queue().len()).unwrap_or(i64::MAX),
        )?;
        let l = self.fanout.messenger.lease_stats();
        gauge(
            e,
            "starling_chat_leases_held",
            "Seq-assignment leases this node holds now (at most 65 536)",
            i64::try_from(l.held.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        for (name, help, v) in [
            (
                "starling_chat_lease_acquired",
                "Seq-assignment leases taken here (each a new epoch)",
                &l.acquired,
            ),
            (
                "starling_chat_lease_renewed",
                "Seq-assignment lease renewals applied",
                &l.renewed,
            ),
            (
                "starling_chat_lease_renew_failed",
                "Seq-assignment lease renewals that failed or were left for the next pass",
                &l.renew_failed,
            ),
            (
                "starling_chat_lease_fenced",
                "Seq-assignment leases lost to a higher epoch",
                &l.fenced,
            ),
            (
                "starling_chat_lease_busy",
                "Claims answered busy while another node's seq-assignment lease may be in force",
                &l.busy,
            ),
            (
                "starling_chat_lease_expired_in_claim",
                "Sends answered outcome-unknown because the lease lapsed during their claims",
                &l.expired_in_claim,
            ),
        ] {
            counter(e, name, help, v.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

/// Adds the chat metrics to a registry.
pub fn register_chat(r: &mut Registry, fanout: starling_messenger::Fanout) {
    r.register_collector(Box::new(ChatCollector { fanout }));
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "the node's metrics in the OpenMetrics text format (store, gossip, feed, chat, HTTP)", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &state.metrics) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    // The consumers' positions are store reads (async), so this gauge is written here rather
    // than by a collector, before the closing `# EOF`.
    let backlog = consumer_backlog(
        &state.store,
        state.gossip.is_some(),
        state.keyspace_feed.active(),
    )
    .await;
    match body.rfind("# EOF") {
        Some(at) => body.insert_str(at, &backlog),
        None => body.push_str(&backlog),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// The change-feed consumers of a node: the queues of derived state, the chat tail and, in a
/// cluster, the gossip push. `/metrics` shows their backlog, and the trimmer never passes them.
pub fn feed_consumers(gossip: bool) -> Vec<&'static str> {
    let mut c = vec![
        starling_feed::fanout::CONSUMER,
        starling_graph::counts::CONSUMER,
        starling_posts::likes::CONSUMER,
        starling_messenger::tail::CONSUMER,
    ];
    if gossip {
        c.push(starling_gossip::PUSH_CONSUMER);
    }
    c
}

/// `starling_consumer_backlog{consumer}`: change-feed entries a consumer has not processed yet
/// (the change feed is their durable queue; a soak checks that it does not grow).
/// With the keyspace-wide feed (`keyspace`), the consumers it drives are not shown: their
/// positions are its partitions' cursors (`starling_keyspace_feed_lag`).
async fn consumer_backlog(store: &Arc<dyn Store>, gossip: bool, keyspace: bool) -> String {
    let mut out = String::from(
        "# HELP starling_consumer_backlog Change-feed entries a consumer has not processed yet\n\
         # TYPE starling_consumer_backlog gauge\n",
    );
    let last = store.last_seq();
    for name in crate::keyspace_feed::node_local(feed_consumers(gossip), keyspace) {
        match starling_store::FeedConsumer::new(store.clone(), name)
            .position()
            .await
        {
            Ok(at) => out.push_str(&format!(
                "starling_consumer_backlog{{consumer=\"{name}\"}} {}\n",
                last.saturating_sub(at)
            )),
            Err(e) => tracing::warn!(error = %e, consumer = name, "reading a consumer position"),
        }
    }
    out
}
