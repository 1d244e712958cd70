//! Digests of the keyspace, not of one node's writes: kept by the holders of the keyspace-wide
//! feed's partitions ([`super::lease`]) and read by every node of the region.
//!
//! A digest bucket is the XOR of `entry_hash(key, record)` over its keys ([`crate::digest`]):
//! order-free, so whoever reads a key's entries may fold them in, but folding a new record in
//! needs the hash folded in before (XOR it out). So:
//! - **Per key, the hash folded in** (`kdigest_keys`, partition `(part, sub)` with `part` the
//!   key's feed partition and `sub` the top 4 bits of its digest bucket, clustering
//!   `(bucket, k)`). Only the holder of the key's feed partition writes it: for every key of a
//!   batch it reads the record and this row, and when they differ writes the record's hash (or
//!   deletes the row: the record was purged) and XORs the difference into the partition's
//!   leaves. A key is re-read whenever the feed delivers it again, so the rows converge to the
//!   stored records; redelivery finds them equal and changes nothing.
//! - **Per feed partition, its 4096 leaves** (the XOR of its keys' rows per bucket) in the
//!   holder's memory, computed by a scan of the partition's rows when it claims the partition
//!   (and again after a write whose outcome is unknown), and published to `kdigest_parts` (32
//!   KiB) at most once per rebalance when they changed.
//! - **The keyspace's digest** is the XOR of the P published leaf vectors: every engine opened
//!   with [`super::ScyllaOptions::keyspace_digests`] re-reads the partitions whose generation
//!   moved every [`REFRESH`] and answers [`crate::Store::digests`] from it. Two nodes of a region
//!   thus answer the same tree, and two regions compare region against region.
//!
//! Fencing: the holder's writes carry a write timestamp built from its lease epoch
//! ([`stamp`]), so a holder that lost its lease (paused past it) loses every row the next holder
//! writes, whatever the order they arrive in. What it writes after the claim and before it learns
//! of the loss, to a key the new holder has not written yet, leaves that key's row ahead of the
//! new holder's leaves until its next claim scan (the same window as the counts').
//!
//! Coverage: the holders write rows for the keys the feed delivers. A keyspace that held data
//! before its migration 3 (`kdigest_config.complete = false`) gets the rows of its older keys
//! from a backfill ([`super::backfill`]); until it sets `complete`, the holders fold keys but
//! publish nothing and engines answer their per-node digests. Backfill rows are stamped with
//! epoch 0 ([`backfill_stamp`]): any holder's row, written under an epoch from 1 on, wins.

use super::cql::{bad_rows, prepare, retry};
use super::layout;
use crate::digest::{DigestTree, LEAVES, bucket_of, entry_hash};
use crate::error::Result;
use scylla::client::session::Session;
use scylla::response::PagingState;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often an engine re-reads the published leaves.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);
/// Keys of a batch folded concurrently.
pub(crate) const FOLD_CONCURRENCY: usize = 32;
/// Bits of an epoch's counter in a write timestamp.
const STAMP_BITS: u32 = 44;

/// The `sub` of a digest bucket's rows (16 per feed partition, so none grows past a sixteenth).
fn sub_of(bucket: u32) -> i32 {
    (bucket >> 8) as i32
}

/// The write timestamp of a holder's `n`-th digest write under lease `epoch`: a later epoch
/// always wins.
pub(crate) fn stamp(epoch: i64, n: u64) -> i64 {
    (epoch << STAMP_BITS) | (n & ((1 << STAMP_BITS) - 1)) as i64
}

/// The statements of the digest's writers and readers.
#[derive(Debug)]
pub(crate) struct DigestStatements {
    get_rec: PreparedStatement,
    get_key: PreparedStatement,
    put_key: PreparedStatement,
    del_key: PreparedStatement,
    scan_sub: PreparedStatement,
    publish: PreparedStatement,
    gens: PreparedStatement,
    leaves: PreparedStatement,
    config: PreparedStatement,
    bucket_keys: PreparedStatement,
    bucket_rows: PreparedStatement,
}

impl DigestStatements {
    pub(crate) async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: &'static str| prepare(s, ks, cql);
        Ok(DigestStatements {
            get_rec: p("SELECT rec FROM {ks}.kv WHERE p = ? AND k = ?").await?,
            get_key: p("SELECT h FROM {ks}.kdigest_keys \
                 WHERE part = ? AND sub = ? AND bucket = ? AND k = ?")
            .await?,
            put_key: p("INSERT INTO {ks}.kdigest_keys (part, sub, bucket, k, h) \
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?")
            .await?,
            del_key: p("DELETE FROM {ks}.kdigest_keys USING TIMESTAMP ? \
                 WHERE part = ? AND sub = ? AND bucket = ? AND k = ?")
            .await?,
            scan_sub: p("SELECT bucket, h FROM {ks}.kdigest_keys WHERE part = ? AND sub = ?")
                .await?,
            publish: p(
                "INSERT INTO {ks}.kdigest_parts (part, gen, leaves) VALUES (?, ?, ?) \
                 USING TIMESTAMP ?",
            )
            .await?,
            gens: p("SELECT part, gen FROM {ks}.kdigest_parts").await?,
            leaves: p("SELECT gen, leaves FROM {ks}.kdigest_parts WHERE part = ?").await?,
            config: p("SELECT complete FROM {ks}.kdigest_config WHERE id = 0").await?,
            bucket_keys: p("SELECT k FROM {ks}.kv_buckets WHERE bucket = ?").await?,
            bucket_rows: p("SELECT k, h FROM {ks}.kdigest_keys \
                 WHERE part = ? AND sub = ? AND bucket = ?")
            .await?,
        })
    }
}

/// A backfill write's timestamp: epoch 0 (below every holder's), milliseconds since the Unix
/// epoch after it, at least `after + 1`, so a backfiller's later write wins over its earlier.
pub(crate) fn backfill_stamp(after: i64) -> i64 {
    stamp(0, super::kfeed::now_ms() as u64).max(after + 1)
}

/// Whether the keyspace's digest rows cover every replicated key: its migration 3 found it
/// empty, or a backfill finished.
pub(crate) async fn covered(s: &Session, st: &DigestStatements) -> Result<bool> {
    let res = retry("reading the digest configuration", || {
        s.execute_unpaged(&st.config, ())
    })
    .await?;
    let row = res
        .into_rows_result()
        .map_err(|e| bad_rows("kdigest_config", e))?
        .maybe_first_row::<(Option<bool>,)>()
        .map_err(|e| bad_rows("kdigest_config", e))?;
    Ok(row.and_then(|(c,)| c).unwrap_or(false))
}

/// Writes the row of `key` (feed partition `part`) from a backfill that read `rec` for it, then
/// reads the record again and, when it changed meanwhile, writes the row again from what it
/// reads now. Both writes are [`backfill_stamp`]ed, so a holder's row always wins; the second
/// read covers a change whose fold ran before the first write and wrote nothing (a purge: no
/// record, no row).
pub(crate) async fn backfill_key(
    s: Arc<Session>,
    st: Arc<DigestStatements>,
    part: u32,
    key: Vec<u8>,
    rec: Vec<u8>,
) -> Result<()> {
    let bucket = bucket_of(&key);
    let (b, sub, p) = (bucket as i32, sub_of(bucket), part as i32);
    let h = entry_hash(&key, &rec);
    let ts = backfill_stamp(0);
    retry("backfilling a key's digest", || {
        s.execute_unpaged(&st.put_key, (p, sub, b, &key, h as i64, ts))
    })
    .await?;
    let lp = layout::partition(&key);
    let now = retry("reading a record to digest", || {
        s.execute_unpaged(&st.get_rec, (lp, &key))
    })
    .await?
    .into_rows_result()
    .map_err(|e| bad_rows("kv", e))?
    .maybe_first_row::<(Option<Vec<u8>>,)>()
    .map_err(|e| bad_rows("kv", e))?
    .and_then(|(r,)| r);
    let h2 = now.as_deref().map_or(0, |r| entry_hash(&key, r));
    if h2 != h {
        let ts = backfill_stamp(ts);
        if h2 == 0 {
            retry("backfilling a key's digest", || {
                s.execute_unpaged(&st.del_key, (ts, p, sub, b, &key))
            })
            .await?;
        } else {
            retry("backfilling a key's digest", || {
                s.execute_unpaged(&st.put_key, (p, sub, b, &key, h2 as i64, ts))
            })
            .await?;
        }
    }
    Ok(())
}

/// Folds one key of feed partition `part`: reads its record and the hash folded in for it, and
/// when they differ writes the new one (stamped `ts`). Returns the bucket and the XOR to apply
/// to the partition's leaves, or `None` when nothing changed.
pub(crate) async fn fold_key(
    s: Arc<Session>,
    st: Arc<DigestStatements>,
    part: u32,
    key: Vec<u8>,
    ts: i64,
) -> Result<Option<(u32, u64)>> {
    let bucket = bucket_of(&key);
    let (b, sub, p) = (bucket as i32, sub_of(bucket), part as i32);
    let lp = layout::partition(&key);
    let (rec, old) = tokio::join!(
        retry("reading a record to digest", || {
            s.execute_unpaged(&st.get_rec, (lp, &key))
        }),
        retry("reading a key's digest", || {
            s.execute_unpaged(&st.get_key, (p, sub, b, &key))
        })
    );
    let rec = rec?
        .into_rows_result()
        .map_err(|e| bad_rows("kv", e))?
        .maybe_first_row::<(Option<Vec<u8>>,)>()
        .map_err(|e| bad_rows("kv", e))?
        .and_then(|(r,)| r);
    let old = old?
        .into_rows_result()
        .map_err(|e| bad_rows("kdigest_keys", e))?
        .maybe_first_row::<(Option<i64>,)>()
        .map_err(|e| bad_rows("kdigest_keys", e))?
        .and_then(|(h,)| h)
        .map_or(0, |h| h as u64);
    let new = rec.as_deref().map_or(0, |r| entry_hash(&key, r));
    if new == old {
        return Ok(None);
    }
    if new == 0 {
        retry("deleting a key's digest", || {
            s.execute_unpaged(&st.del_key, (ts, p, sub, b, &key))
        })
        .await?;
    } else {
        retry("writing a key's digest", || {
            s.execute_unpaged(&st.put_key, (p, sub, b, &key, new as i64, ts))
        })
        .await?;
    }
    Ok(Some((bucket, old ^ new)))
}

/// The leaves of feed partition `part`: the XOR of its keys' rows per bucket (a scan of its 16
/// CQL partitions, O(its keys)).
pub(crate) async fn scan_part(s: &Session, st: &DigestStatements, part: u32) -> Result<Vec<u64>> {
    let mut leaves = vec![0u64; LEAVES];
    for sub in 0..(LEAVES >> 8) as i32 {
        let mut paging = PagingState::start();
        loop {
            let (res, next) = retry("scanning a partition's digests", || {
                s.execute_single_page(&st.scan_sub, (part as i32, sub), paging.clone())
            })
            .await?;
            let rows = res
                .into_rows_result()
                .map_err(|e| bad_rows("kdigest_keys", e))?;
            for row in rows
                .rows::<(i32, Option<i64>)>()
                .map_err(|e| bad_rows("kdigest_keys", e))?
            {
                let (b, h) = row.map_err(|e| bad_rows("kdigest_keys", e))?;
                if let Some(l) = leaves.get_mut(b as usize) {
                    *l ^= h.unwrap_or(0) as u64;
                }
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => break,
                ControlFlow::Continue(p) => paging = p,
            }
        }
    }
    Ok(leaves)
}

/// Pages through one statement's rows (bound to `values`), collecting them.
async fn all_rows<T, V>(
    s: &Session,
    st: &PreparedStatement,
    values: V,
    what: &'static str,
) -> Result<Vec<T>>
where
    T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    V: scylla::serialize::row::SerializeRow + Clone,
{
    let mut out = Vec::new();
    let mut paging = PagingState::start();
    loop {
        let (res, next) = retry("checking the keyspace's digests", || {
            s.execute_single_page(st, values.clone(), paging.clone())
        })
        .await?;
        let rows = res.into_rows_result().map_err(|e| bad_rows(what, e))?;
        for row in rows.rows::<T>().map_err(|e| bad_rows(what, e))? {
            out.push(row.map_err(|e| bad_rows(what, e))?);
        }
        match next.into_paging_control_flow() {
            ControlFlow::Break(()) => return Ok(out),
            ControlFlow::Continue(p) => paging = p,
        }
    }
}

/// The keys of digest bucket `bucket`: those with a record (`kv_buckets`, every feed
/// partition's) and those with a row in feed partition `parts`' rows of it.
pub(crate) async fn bucket_keys(
    s: &Session,
    st: &DigestStatements,
    bucket: u32,
    parts: &[u32],
) -> Result<std::collections::BTreeSet<Vec<u8>>> {
    let mut keys: std::collections::BTreeSet<Vec<u8>> =
        all_rows::<(Vec<u8>,), _>(s, &st.bucket_keys, (bucket as i32,), "kv_buckets")
            .await?
            .into_iter()
            .map(|(k,)| k)
            .collect();
    for part in parts {
        let rows = all_rows::<(Vec<u8>, Option<i64>), _>(
            s,
            &st.bucket_rows,
            (*part as i32, sub_of(bucket), bucket as i32),
            "kdigest_keys",
        )
        .await?;
        keys.extend(rows.into_iter().map(|(k, _)| k));
    }
    Ok(keys)
}

/// The XOR of feed partition `part`'s rows in digest bucket `bucket`: its leaf, as the rows say.
pub(crate) async fn bucket_leaf(
    s: &Session,
    st: &DigestStatements,
    part: u32,
    bucket: u32,
) -> Result<u64> {
    let rows = all_rows::<(Vec<u8>, Option<i64>), _>(
        s,
        &st.bucket_rows,
        (part as i32, sub_of(bucket), bucket as i32),
        "kdigest_keys",
    )
    .await?;
    Ok(rows
        .into_iter()
        .fold(0, |x, (_, h)| x ^ h.unwrap_or(0) as u64))
}

/// Publishes feed partition `part`'s leaves (generation and write timestamp `ts`).
pub(crate) async fn publish(
    s: &Session,
    st: &DigestStatements,
    part: u32,
    leaves: &[u64],
    ts: i64,
) -> Result<()> {
    let blob: Vec<u8> = leaves.iter().flat_map(|l| l.to_le_bytes()).collect();
    retry("publishing a partition's digests", || {
        s.execute_unpaged(&st.publish, (part as i32, ts, &blob, ts))
    })
    .await
    .map(drop)
}

fn decode_leaves(b: &[u8]) -> Option<Vec<u64>> {
    (b.len() == LEAVES * 8).then(|| {
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    })
}

/// An engine's view of the keyspace's digest: the XOR of the partitions' published leaves.
#[derive(Debug)]
pub(crate) struct KeyspaceDigests {
    /// The keyspace's rows cover every key (else the engine answers its per-node digests; the
    /// refresher reads the configuration again until they do).
    covered: std::sync::atomic::AtomicBool,
    tree: parking_lot::RwLock<DigestTree>,
    /// Per feed partition: the generation and leaves last read (P x 32 KiB).
    parts: parking_lot::Mutex<HashMap<i32, (i64, Vec<u64>)>>,
}

impl KeyspaceDigests {
    pub(crate) fn new(covered: bool) -> Self {
        KeyspaceDigests {
            covered: std::sync::atomic::AtomicBool::new(covered),
            tree: parking_lot::RwLock::new(DigestTree::zero()),
            parts: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The keyspace's digest, or `None` while its rows do not cover every key yet.
    pub(crate) fn tree(&self) -> Option<DigestTree> {
        self.covered
            .load(std::sync::atomic::Ordering::Acquire)
            .then(|| self.tree.read().clone())
    }

    /// Reads the partitions' generations and the leaves of those that moved; returns how many
    /// moved. While the rows do not cover every key, reads only whether they do now.
    pub(crate) async fn refresh(&self, s: &Session, st: &DigestStatements) -> Result<usize> {
        use std::sync::atomic::Ordering;
        if !self.covered.load(Ordering::Acquire) {
            if !covered(s, st).await? {
                return Ok(0);
            }
            tracing::info!("the keyspace's digests cover every key: answering them");
        }
        let res = retry("reading the digests' generations", || {
            s.execute_unpaged(&st.gens, ())
        })
        .await?;
        let gens: Vec<(i32, Option<i64>)> = res
            .into_rows_result()
            .map_err(|e| bad_rows("kdigest_parts", e))?
            .rows::<(i32, Option<i64>)>()
            .map_err(|e| bad_rows("kdigest_parts", e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad_rows("kdigest_parts", e))?;
        let moved: Vec<i32> = {
            let parts = self.parts.lock();
            gens.iter()
                .filter(|(p, g)| parts.get(p).map(|(pg, _)| *pg) != Some(g.unwrap_or(0)))
                .map(|(p, _)| *p)
                .collect()
        };
        for p in &moved {
            let res = retry("reading a partition's digests", || {
                s.execute_unpaged(&st.leaves, (*p,))
            })
            .await?;
            let row = res
                .into_rows_result()
                .map_err(|e| bad_rows("kdigest_parts", e))?
                .maybe_first_row::<(Option<i64>, Option<Vec<u8>>)>()
                .map_err(|e| bad_rows("kdigest_parts", e))?;
            let Some((Some(g), Some(blob))) = row else {
                continue;
            };
            let Some(leaves) = decode_leaves(&blob) else {
                tracing::warn!(
                    part = p,
                    "a partition's published digests have the wrong size"
                );
                continue;
            };
            self.parts.lock().insert(*p, (g, leaves));
        }
        if !moved.is_empty() {
            let mut total = vec![0u64; LEAVES];
            for (_, leaves) in self.parts.lock().values() {
                for (t, l) in total.iter_mut().zip(leaves) {
                    *t ^= l;
                }
            }
            *self.tree.write() = DigestTree::from_vec(total);
        }
        self.covered.store(true, Ordering::Release);
        Ok(moved.len())
    }
}

/// Refreshes `digests` every [`REFRESH`] until the engine holding it is dropped.
pub(crate) fn spawn_refresher(
    s: Arc<Session>,
    st: Arc<DigestStatements>,
    digests: Weak<KeyspaceDigests>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH).await;
            let Some(d) = digests.upgrade() else { return };
            if let Err(e) = d.refresh(&s, &st).await {
                tracing::warn!(error = %e, "refreshing the keyspace's digests failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_epoch_always_stamps_later() {
        assert!(stamp(2, 0) > stamp(1, (1 << STAMP_BITS) - 1));
        assert!(stamp(1, 5) > stamp(1, 4));
        assert_eq!(
            stamp(1, 1 << STAMP_BITS),
            stamp(1, 0),
            "the counter wraps within its bits"
        );
    }

    #[test]
    fn leaves_round_trip_and_a_wrong_size_is_refused() {
        let leaves: Vec<u64> = (0..LEAVES as u64).map(|i| i * 0x9e37_79b9).collect();
        let blob: Vec<u8> = leaves.iter().flat_map(|l| l.to_le_bytes()).collect();
        assert_eq!(decode_leaves(&blob), Some(leaves));
        assert_eq!(decode_leaves(&blob[1..]), None);
        assert_eq!(sub_of(4095), 15);
        assert_eq!(sub_of(0), 0);
    }
}
