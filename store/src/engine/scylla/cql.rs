//! The engine's prepared statements, and running them with retries of transient failures.
//!
//! Every statement is prepared once at open: the driver then routes each execution to a replica
//! of its partition (token-aware, the default load-balancing policy) and sends only the bound
//! values.

use crate::error::{Result, StoreError};
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::Consistency as CqlConsistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use std::future::Future;
use std::time::Duration;

/// Attempts of a statement that failed transiently (timeouts, overload, a lost connection).
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(25);

/// The prepared statements of one keyspace.
pub(crate) struct Statements {
    pub(crate) get: PreparedStatement,
    pub(crate) get_serial: PreparedStatement,
    pub(crate) put: PreparedStatement,
    pub(crate) insert_if_absent: PreparedStatement,
    pub(crate) update_if: PreparedStatement,
    pub(crate) delete: PreparedStatement,
    pub(crate) delete_if: PreparedStatement,
    pub(crate) scan_from_asc: PreparedStatement,
    pub(crate) scan_from_desc: PreparedStatement,
    pub(crate) scan_after_asc: PreparedStatement,
    pub(crate) parts_from_asc: PreparedStatement,
    pub(crate) parts_from_desc: PreparedStatement,
    pub(crate) parts_after_asc: PreparedStatement,
    pub(crate) add_part: PreparedStatement,
    pub(crate) add_bucket: PreparedStatement,
    pub(crate) del_bucket: PreparedStatement,
    pub(crate) bucket_first: PreparedStatement,
    pub(crate) bucket_after: PreparedStatement,
    pub(crate) log: PreparedStatement,
    /// An entry of the keyspace-wide feed, and a writer's published mark.
    pub(crate) kfeed_log: PreparedStatement,
    pub(crate) kfeed_mark: PreparedStatement,
    pub(crate) changes: PreparedStatement,
    pub(crate) last_in_chunk: PreparedStatement,
    pub(crate) trim_chunk: PreparedStatement,
    pub(crate) trim_range: PreparedStatement,
    pub(crate) set_trimmed: PreparedStatement,
    pub(crate) get_trimmed: PreparedStatement,
    pub(crate) all_records: PreparedStatement,
    pub(crate) all_namespaces: PreparedStatement,
    /// Single-writer commits as one LOGGED batch, record first (the batch is routed by its
    /// first statement's token): record + feed entries (this node's and the keyspace's) +
    /// partition and bucket index rows (a new replicated key), record + feed entries (an existing
    /// one), record + partition row (a new node-local key).
    pub(crate) batch_new: Batch,
    pub(crate) batch_logged: Batch,
    /// The same two without the keyspace feed's entry (`ScyllaOptions::keyspace_feed` off).
    pub(crate) batch_new_nokf: Batch,
    pub(crate) batch_logged_nokf: Batch,
    pub(crate) batch_local_new: Batch,
}

impl std::fmt::Debug for Statements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statements").finish_non_exhaustive()
    }
}

impl Statements {
    pub(crate) async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: String| async move {
            s.prepare(cql.clone())
                .await
                .map_err(|e| StoreError::Cluster(format!("preparing `{cql}`: {e}")))
        };
        let scan = "SELECT k, rec FROM {ks}.kv WHERE p = ? AND k >= ? AND k < ?";
        let parts = "SELECT p FROM {ks}.kv_parts WHERE ns = ? AND p >= ? AND p < ?";
        let q = |t: &str| t.replace("{ks}", ks);
        let mut get_serial = p(q("SELECT rec FROM {ks}.kv WHERE p = ? AND k = ?")).await?;
        get_serial.set_consistency(CqlConsistency::LocalSerial);
        let mut all_records = p(q("SELECT k, rec FROM {ks}.kv")).await?;
        all_records.set_page_size(1000);
        let mut all_namespaces = p(q("SELECT DISTINCT ns FROM {ks}.kv_parts")).await?;
        all_namespaces.set_page_size(1000);
        let put = p(q("INSERT INTO {ks}.kv (p, k, rec) VALUES (?, ?, ?)")).await?;
        let log = p(q(
            "INSERT INTO {ks}.changes (node, chunk, seq, k, origin) VALUES (?, ?, ?, ?, ?)",
        ))
        .await?;
        let kfeed_log = p(q(
            "INSERT INTO {ks}.kfeed (part, writer, chunk, seq, k, origin) VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .await?;
        let add_part = p(q("INSERT INTO {ks}.kv_parts (ns, p) VALUES (?, ?)")).await?;
        let add_bucket = p(q("INSERT INTO {ks}.kv_buckets (bucket, k) VALUES (?, ?)")).await?;
        let batch = |stmts: &[&PreparedStatement]| {
            let mut b = Batch::new(BatchType::Logged);
            for s in stmts {
                b.append_statement((*s).clone());
            }
            b
        };
        Ok(Statements {
            batch_new: batch(&[&put, &log, &kfeed_log, &add_part, &add_bucket]),
            batch_logged: batch(&[&put, &log, &kfeed_log]),
            batch_new_nokf: batch(&[&put, &log, &add_part, &add_bucket]),
            batch_logged_nokf: batch(&[&put, &log]),
            batch_local_new: batch(&[&put, &add_part]),
            get: p(q("SELECT rec FROM {ks}.kv WHERE p = ? AND k = ?")).await?,
            get_serial,
            put,
            insert_if_absent: p(q(
                "INSERT INTO {ks}.kv (p, k, rec) VALUES (?, ?, ?) IF NOT EXISTS",
            ))
            .await?,
            update_if: p(q(
                "UPDATE {ks}.kv SET rec = ? WHERE p = ? AND k = ? IF rec = ?",
            ))
            .await?,
            delete: p(q("DELETE FROM {ks}.kv WHERE p = ? AND k = ?")).await?,
            delete_if: p(q("DELETE FROM {ks}.kv WHERE p = ? AND k = ? IF rec = ?")).await?,
            scan_from_asc: p(q(&format!("{scan} LIMIT ?"))).await?,
            scan_from_desc: p(q(&format!("{scan} ORDER BY k DESC LIMIT ?"))).await?,
            scan_after_asc: p(q(
                "SELECT k, rec FROM {ks}.kv WHERE p = ? AND k > ? AND k < ? LIMIT ?",
            ))
            .await?,
            parts_from_asc: p(q(&format!("{parts} LIMIT ?"))).await?,
            parts_from_desc: p(q(&format!("{parts} ORDER BY p DESC LIMIT ?"))).await?,
            parts_after_asc: p(q(
                "SELECT p FROM {ks}.kv_parts WHERE ns = ? AND p > ? AND p < ? LIMIT ?",
            ))
            .await?,
            add_part,
            add_bucket,
            del_bucket: p(q("DELETE FROM {ks}.kv_buckets WHERE bucket = ? AND k = ?")).await?,
            bucket_first: p(q("SELECT k FROM {ks}.kv_buckets WHERE bucket = ? LIMIT ?")).await?,
            bucket_after: p(q(
                "SELECT k FROM {ks}.kv_buckets WHERE bucket = ? AND k > ? LIMIT ?",
            ))
            .await?,
            log,
            kfeed_log,
            kfeed_mark: p(q(
                "INSERT INTO {ks}.kfeed_writers (writer, mark, beat) VALUES (?, ?, ?)",
            ))
            .await?,
            changes: p(q("SELECT seq, k, origin FROM {ks}.changes \
                 WHERE node = ? AND chunk = ? AND seq > ? AND seq <= ? LIMIT ?"))
            .await?,
            last_in_chunk: p(q(
                "SELECT seq FROM {ks}.changes WHERE node = ? AND chunk = ? \
                 ORDER BY seq DESC LIMIT 1",
            ))
            .await?,
            trim_chunk: p(q("DELETE FROM {ks}.changes WHERE node = ? AND chunk = ?")).await?,
            trim_range: p(q(
                "DELETE FROM {ks}.changes WHERE node = ? AND chunk = ? AND seq <= ?",
            ))
            .await?,
            set_trimmed: p(q(
                "INSERT INTO {ks}.feed_meta (node, trimmed) VALUES (?, ?)",
            ))
            .await?,
            get_trimmed: p(q("SELECT trimmed FROM {ks}.feed_meta WHERE node = ?")).await?,
            all_records,
            all_namespaces,
        })
    }
}

/// Whether a failed request may succeed if sent again.
fn transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
        ),
        ExecutionError::LastAttemptError(
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId,
        ) => true,
        _ => false,
    }
}

/// Runs `f`, retrying transient failures with exponential backoff; a lasting failure becomes
/// [`StoreError::Cluster`] naming `what`. Only for idempotent requests, or conditional ones whose
/// caller checks the outcome (a timed-out LWT may have applied).
pub(crate) async fn retry<T, F, Fut>(what: &'static str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, ExecutionError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                tracing::warn!(error = %e, attempt, "{what}: transient failure, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 4;
                attempt += 1;
            }
            Err(e) => return Err(StoreError::Cluster(format!("{what}: {e}"))),
        }
    }
}

/// A decoding failure of a result (a schema that is not ours).
pub(crate) fn bad_rows(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Cluster(format!("{what}: unexpected result: {e}"))
}

/// Prepares `cql` with `{ks}` replaced by keyspace `ks`; an error names the statement.
pub(crate) async fn prepare(s: &Session, ks: &str, cql: &str) -> Result<PreparedStatement> {
    let cql = cql.replace("{ks}", ks);
    s.prepare(cql.clone())
        .await
        .map_err(|e| StoreError::Cluster(format!("preparing `{cql}`: {e}")))
}
