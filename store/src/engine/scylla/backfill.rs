//! The keyspace digests' backfill: builds the digest rows ([`super::kdigest`]) of a keyspace that
//! held records before its schema migration 3 from the records themselves, so an upgraded
//! region gets the keyspace's digests too.
//!
//! A scan of `kv` in token order, one bounded page per step
//! ([`super::KeyspaceFeed::backfill_digests`]): each replicated key's row is written
//! ([`super::kdigest::backfill_key`]), then the driver's paging state is saved in
//! `kdigest_backfill` by a lightweight transaction conditioned on the state the page started
//! from, so two backfillers (around a hand-over) never move it backwards, and a page done twice
//! writes the same rows. A restarted or new backfiller resumes from the saved page. When the
//! scan ends, `kdigest_config.complete` turns true: the feed's holders rescan their partitions'
//! leaves and publish them, engines answer the keyspace's digests.
//!
//! Writes made during the backfill are folded by the holders as usual; their rows, stamped with
//! a lease epoch, win over the backfill's (epoch 0), so a change made meanwhile is never
//! overwritten by the older record the scan read.

use super::cql::{bad_rows, prepare, retry};
use super::kdigest::{self, DigestStatements, FOLD_CONCURRENCY};
use super::kfeed::partition_of;
use super::lwt_applied;
use crate::error::{Result, StoreError};
use scylla::client::session::Session;
use scylla::response::PagingState;
use scylla::statement::prepared::PreparedStatement;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Where the backfill of a keyspace's digests stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillProgress {
    /// The digest rows cover every key: nothing is left to backfill.
    pub done: bool,
    /// Keys whose rows the backfill wrote, by every backfiller of the keyspace.
    pub keys: u64,
    /// How far the scan has come through the token ring, in millionths.
    pub ring_ppm: u32,
}

/// The saved position: the driver's paging state (empty: from the start), keys written, the
/// token of the last row read.
type Position = (Vec<u8>, i64, i64);

/// The saved page once the scan has ended (a real paging state is longer).
const END: &[u8] = &[0xff];

/// Millionths of the token ring at or below `token`.
fn ring_ppm(token: i64) -> u32 {
    let below = i128::from(token) - i128::from(i64::MIN);
    (below * 1_000_000 / (1i128 << 64)) as u32
}

/// The backfill's statements.
#[derive(Debug)]
pub(crate) struct BackfillStatements {
    start: PreparedStatement,
    position: PreparedStatement,
    scan: PreparedStatement,
    save: PreparedStatement,
    complete: PreparedStatement,
}

impl BackfillStatements {
    pub(crate) async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: &'static str| prepare(s, ks, cql);
        let mut position =
            p("SELECT page, written, reached FROM {ks}.kdigest_backfill WHERE id = 0").await?;
        position.set_consistency(scylla::statement::Consistency::LocalSerial);
        Ok(BackfillStatements {
            start: p(
                "INSERT INTO {ks}.kdigest_backfill (id, page, written, reached) \
                 VALUES (0, 0x, 0, -9223372036854775808) IF NOT EXISTS",
            )
            .await?,
            position,
            scan: p("SELECT token(p), k, rec FROM {ks}.kv").await?,
            save: p(
                "UPDATE {ks}.kdigest_backfill SET page = ?, written = ?, reached = ? \
                 WHERE id = 0 IF page = ?",
            )
            .await?,
            complete: p(
                "UPDATE {ks}.kdigest_config SET complete = true WHERE id = 0 \
                 IF complete = false",
            )
            .await?,
        })
    }
}

/// The saved position (written at its start the first time).
async fn position(s: &Session, st: &BackfillStatements) -> Result<Position> {
    let read = || async {
        let res = retry("reading the digests' backfill position", || {
            s.execute_unpaged(&st.position, ())
        })
        .await?;
        res.into_rows_result()
            .map_err(|e| bad_rows("kdigest_backfill", e))?
            .maybe_first_row::<(Option<Vec<u8>>, Option<i64>, Option<i64>)>()
            .map_err(|e| bad_rows("kdigest_backfill", e))
    };
    let row = match read().await? {
        Some(row) => row,
        None => {
            retry("starting the digests' backfill", || {
                s.execute_unpaged(&st.start, ())
            })
            .await?;
            read().await?.unwrap_or_default()
        }
    };
    let (page, keys, token) = row;
    Ok((
        page.unwrap_or_default(),
        keys.unwrap_or(0),
        token.unwrap_or(i64::MIN),
    ))
}

/// The backfill's progress as saved (`done`: the rows cover every key).
pub(crate) async fn progress(
    s: &Session,
    st: &BackfillStatements,
    done: bool,
) -> Result<BackfillProgress> {
    let (_, keys, token) = position(s, st).await?;
    Ok(BackfillProgress {
        done,
        keys: keys.max(0) as u64,
        ring_ppm: if done { 1_000_000 } else { ring_ppm(token) },
    })
}

/// One step of the backfill: reads the page of at most `page` records after the saved
/// position, writes their keys' rows, saves the position after it (and, after the last page,
/// marks the rows complete). Returns the progress and how many rows this step wrote (0 when
/// another backfiller moved the position first: its page is then done again, harmlessly).
pub(crate) async fn step(
    s: &Arc<Session>,
    st: &BackfillStatements,
    dst: &Arc<DigestStatements>,
    partitions: u32,
    page: usize,
) -> Result<(BackfillProgress, u64)> {
    let (from, keys, _) = position(s, st).await?;
    if from == END {
        // Ended, but the completion may not have been written (a backfiller stopped between).
        retry("completing the digests' backfill", || {
            s.execute_unpaged(&st.complete, ())
        })
        .await?;
        return Ok((progress(s, st, true).await?, 0));
    }
    let paging = if from.is_empty() {
        PagingState::start()
    } else {
        PagingState::new_from_raw_bytes(from.as_slice())
    };
    let mut scan = st.scan.clone();
    scan.set_page_size(page.clamp(1, 10_000) as i32);
    let (res, next) = retry("scanning records to backfill their digests", || {
        s.execute_single_page(&scan, (), paging.clone())
    })
    .await?;
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = res
        .into_rows_result()
        .map_err(|e| bad_rows("kv", e))?
        .rows::<(i64, Vec<u8>, Vec<u8>)>()
        .map_err(|e| bad_rows("kv", e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad_rows("kv", e))?;
    let last = rows.last().map(|(t, _, _)| *t);
    let mut todo = rows
        .into_iter()
        .filter(|(_, k, _)| k.first() != Some(&crate::key::LOCAL_PREFIX));
    let mut running = tokio::task::JoinSet::new();
    let mut written = 0u64;
    loop {
        while running.len() < FOLD_CONCURRENCY {
            let Some((_, k, rec)) = todo.next() else {
                break;
            };
            let part = partition_of(&k, partitions);
            running.spawn(kdigest::backfill_key(s.clone(), dst.clone(), part, k, rec));
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        done.map_err(|e| StoreError::Cluster(format!("backfilling a key: {e}")))??;
        written += 1;
    }
    let (to, token) = match next.into_paging_control_flow() {
        ControlFlow::Continue(p) => (
            p.as_bytes_slice().map(|b| b.to_vec()).unwrap_or_default(),
            last.unwrap_or(i64::MIN),
        ),
        // The end: a page state no scan resumes from (the rows are complete from here on).
        ControlFlow::Break(()) => (END.to_vec(), i64::MAX),
    };
    let keys = keys + written as i64;
    let saved = retry("saving the digests' backfill position", || {
        s.execute_unpaged(&st.save, (&to, keys, token, &from))
    })
    .await?;
    if !lwt_applied(saved)? {
        return Ok((progress(s, st, false).await?, 0));
    }
    let done = token == i64::MAX;
    if done {
        retry("completing the digests' backfill", || {
            s.execute_unpaged(&st.complete, ())
        })
        .await?;
        tracing::info!(keys, "the keyspace's digests are backfilled");
    }
    Ok((
        BackfillProgress {
            done,
            keys: keys.max(0) as u64,
            ring_ppm: if done { 1_000_000 } else { ring_ppm(token) },
        },
        written,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_runs_from_none_to_all_of_it() {
        assert_eq!(ring_ppm(i64::MIN), 0);
        assert_eq!(ring_ppm(0), 500_000);
        assert_eq!(ring_ppm(i64::MAX), 999_999);
    }
}
