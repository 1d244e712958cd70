//! The keyspace-wide change feed, writer side: every Starling node writing the keyspace appends
//! each change to `kfeed`, in one of P partitions by key hash, under its own writer id and its
//! local sequence number, and publishes how far its writes have finished (its *mark*).
//!
//! A partition is thus a set of per-writer sub-streams, each ordered by its writer's sequence
//! numbers. A writer's numbers are handed out before its writes and finish out of order, so a
//! reader of another node cannot tell a hole from a write in flight; the writer therefore
//! publishes its watermark (every number at or below it is written, record included, or
//! abandoned) to `kfeed_writers` with a heartbeat, at most every `mark_interval`. Readers
//! ([`super::lease`]) read a sub-stream only up to its writer's mark, so a cursor never passes a
//! write in flight. A writer that restarts (same node id) publishes its whole previous feed as
//! finished at open: the process that handed those numbers out is gone.

use super::cql::{bad_rows, retry};
use crate::error::{Result, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Keyspace-feed partitions of a new keyspace unless the options say otherwise.
pub const DEFAULT_PARTITIONS: u32 = 32;
/// Entries of one writer's sub-stream per `kfeed` partition row set (`chunk = seq >> 16`).
pub(crate) const CHUNK_BITS: u32 = 16;
/// The hash seed of the partition choice (not the digest buckets' hash: the two are unrelated).
const SEED: u64 = 0x6b66_6565_6432_3801;
/// How often a writer beats while it writes nothing.
pub(crate) const BEAT: Duration = Duration::from_secs(1);

/// The keyspace-feed partition of `key` among `partitions`.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(key, SEED) % u64::from(partitions.max(1))) as u32
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The keyspace's partition count: `wanted` if this open is the first, else what the first open
/// stored (every node must agree; a different `wanted` is refused rather than ignored).
pub(crate) async fn agree_partitions(s: &Session, ks: &str, wanted: Option<u32>) -> Result<u32> {
    let first = wanted.unwrap_or(DEFAULT_PARTITIONS);
    if !(1..=4096).contains(&first) {
        return Err(StoreError::InvalidArgument(
            "feed partitions must be between 1 and 4096",
        ));
    }
    let res = retry("agreeing on the feed partitions", || {
        s.query_unpaged(
            format!("INSERT INTO {ks}.kfeed_config (id, partitions) VALUES (0, ?) IF NOT EXISTS"),
            (first as i32,),
        )
    })
    .await?;
    let rows = res
        .into_rows_result()
        .map_err(|e| bad_rows("kfeed_config", e))?;
    let specs: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let row: scylla::value::Row = rows.first_row().map_err(|e| bad_rows("kfeed_config", e))?;
    let mut stored = first;
    for (name, v) in specs.iter().zip(row.columns) {
        if let ("partitions", Some(scylla::value::CqlValue::Int(p))) = (name.as_str(), v) {
            stored = p as u32;
        }
    }
    if wanted.is_some_and(|w| w != stored) {
        return Err(StoreError::Cluster(format!(
            "keyspace {ks} has a change feed of {stored} partitions; this node asked for {first}"
        )));
    }
    Ok(stored)
}

/// Publishes `writer`'s mark once (at open, before any write of this process).
pub(crate) async fn publish(
    s: &Session,
    st: &PreparedStatement,
    writer: i64,
    mark: u64,
) -> Result<()> {
    retry("publishing the feed mark", || {
        s.execute_unpaged(st, (writer, mark as i64, now_ms()))
    })
    .await
    .map(drop)
}

/// Publishes the mark whenever the watermark moves (at most every `interval`) and beats every
/// [`BEAT`] otherwise, until the engine (the watermark's sender) is dropped. One row write per
/// interval at most: bounded whatever the write rate.
pub(crate) fn spawn_marker(
    s: Arc<Session>,
    st: PreparedStatement,
    writer: i64,
    mut mark: watch::Receiver<u64>,
    interval: Duration,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = mark.changed() => if r.is_err() { return },
                () = tokio::time::sleep(BEAT) => {}
            }
            tokio::time::sleep(interval).await;
            let m = *mark.borrow_and_update();
            if let Err(e) = publish(&s, &st, writer, m).await {
                tracing::warn!(error = %e, "publishing the keyspace feed mark failed");
            }
        }
    });
}

/// The values of one `kfeed` row: `(part, writer, chunk, seq, k, origin)`.
pub(crate) fn entry(
    key: &[u8],
    partitions: u32,
    writer: i64,
    seq: u64,
    origin: i8,
) -> (i32, i64, i64, i64, &[u8], i8) {
    (
        partition_of(key, partitions) as i32,
        writer,
        (seq >> CHUNK_BITS) as i64,
        seq as i64,
        key,
        origin,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_keys_and_stay_in_range() {
        let mut counts = [0u32; 16];
        for i in 0..16_000u32 {
            let p = partition_of(format!("key/{i}").as_bytes(), 16);
            counts[p as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (700..1300).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(partition_of(b"x", 1), 0);
        assert_eq!(partition_of(b"x", 0), 0, "0 partitions is treated as 1");
    }
}
