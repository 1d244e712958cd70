//! The CQL schema and its versioned, idempotent migrations, applied at open.
//!
//! `schema_version` holds one row per applied migration. At open the engine creates the keyspace
//! if missing, reads the highest applied version, refuses a keyspace written by a newer build,
//! and applies the missing migrations in order; each statement is `IF NOT EXISTS`, so two nodes
//! starting together, or a start interrupted half-way, converge on the same schema.
//!
//! Tables (in the configured keyspace):
//! - `kv (p, k, rec)`: the records. Partition `p` = the key's namespace and entity id (see
//!   [`super::layout`]), clustering `k` = the full key in byte order, `rec` = the encoded record
//!   (value, dots, version vector: the same bytes as the embedded engine stores).
//! - `kv_parts (ns, p)`: the partitions of each namespace in order, for scans whose prefix is
//!   shorter than a partition. Written when a key is created.
//! - `kv_buckets (bucket, k)`: the keys of each of the 4096 digest buckets, for anti-entropy.
//!   Written when a key is created, removed when it is purged.
//! - `changes ((node, chunk), seq, k, origin)`: each node's change feed, in chunks of 2^16
//!   sequence numbers so no partition grows without bound; `feed_meta (node, trimmed)`.
//! - Migration 2, the keyspace-wide feed: `kfeed_config (id, partitions)` (P, fixed at the
//!   keyspace's first open), `kfeed ((part, writer, chunk), seq, k, origin)` (every writer's
//!   entries by key-hash partition, expiring after 7 days), `kfeed_writers (writer, mark, beat)`
//!   (each writer's finished-up-to mark and heartbeat), `kfeed_members (member, beat)` (live
//!   consumers) and `kfeed_leases (part, owner, epoch, expires, pos)` (a partition's lease, its
//!   fencing epoch and its cursor vector, one row so a cursor write is fenced by one LWT).
//! - Migration 3, the keyspace's digests (see [`super::kdigest`]): `kdigest_config (id,
//!   complete)` (whether the rows cover every key: the keyspace was empty at migration 3),
//!   `kdigest_keys ((part, sub), bucket, k, h)` (per key, the hash folded into its feed
//!   partition's digests) and `kdigest_parts (part, gen, leaves)` (each feed partition's 4096
//!   leaves, published by its holder).
//! - Migration 4, the digests' backfill (see [`super::backfill`]): `kdigest_backfill (id, page,
//!   written, reached)` (how far the scan that builds the rows of a keyspace written before migration
//!   3 has come: the driver's paging state, keys written, the token of the last row).
//! - Migration 5, the tombstone index (see [`super::tombs`]): `tombs ((bucket), hlc, k)` (each
//!   stored tombstone by the 10-minute bucket and stamp of its last write), `tomb_buckets ((id),
//!   bucket)` (the buckets that may hold entries) and `tomb_config (id, complete)` (whether every
//!   tombstone is indexed: the keyspace was empty at migration 5, or the reaper's backfill ended).
//!
//! Keyspaces made by earlier builds also hold an empty `messages` table (a message-history layout
//! the messenger never adopted; migration 1 no longer creates it): nothing reads it, and an
//! operator may drop it.

use super::cql::retry;
use crate::error::{Result, StoreError};
use scylla::client::session::Session;
use scylla::statement::Statement;
use std::time::Duration;

/// Schema changes wait for every node to agree: slower than a request, longer timeout.
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i32 = 5;

/// Migration `i + 1` is `MIGRATIONS[i]`; `{ks}` is replaced by the keyspace.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS {ks}.kv (p blob, k blob, rec blob, PRIMARY KEY ((p), k)) \
     WITH CLUSTERING ORDER BY (k ASC)",
        "CREATE TABLE IF NOT EXISTS {ks}.kv_parts (ns blob, p blob, PRIMARY KEY ((ns), p)) \
     WITH CLUSTERING ORDER BY (p ASC)",
        "CREATE TABLE IF NOT EXISTS {ks}.kv_buckets (bucket int, k blob, PRIMARY KEY ((bucket), k))",
        "CREATE TABLE IF NOT EXISTS {ks}.changes (node bigint, chunk bigint, seq bigint, k blob, \
     origin tinyint, PRIMARY KEY ((node, chunk), seq))",
        "CREATE TABLE IF NOT EXISTS {ks}.feed_meta (node bigint PRIMARY KEY, trimmed bigint)",
    ],
    &[
        // 2: the keyspace-wide change feed (see `super::kfeed` and `super::lease`).
        "CREATE TABLE IF NOT EXISTS {ks}.kfeed_config (id int PRIMARY KEY, partitions int)",
        "CREATE TABLE IF NOT EXISTS {ks}.kfeed (part int, writer bigint, chunk bigint, seq bigint, \
     k blob, origin tinyint, PRIMARY KEY ((part, writer, chunk), seq)) \
     WITH default_time_to_live = 604800",
        "CREATE TABLE IF NOT EXISTS {ks}.kfeed_writers (writer bigint PRIMARY KEY, mark bigint, \
     beat bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.kfeed_members (member bigint PRIMARY KEY, beat bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.kfeed_leases (part int PRIMARY KEY, owner bigint, \
     epoch bigint, expires bigint, pos map<bigint, bigint>)",
    ],
    &[
        // 3: the keyspace's digests (see `super::kdigest`); `kdigest_config` is written by
        // `migrate` once these exist.
        "CREATE TABLE IF NOT EXISTS {ks}.kdigest_config (id int PRIMARY KEY, complete boolean)",
        "CREATE TABLE IF NOT EXISTS {ks}.kdigest_keys (part int, sub int, bucket int, k blob, \
     h bigint, PRIMARY KEY ((part, sub), bucket, k))",
        "CREATE TABLE IF NOT EXISTS {ks}.kdigest_parts (part int PRIMARY KEY, gen bigint, \
     leaves blob)",
    ],
    &[
        // 4: the digests' backfill position (see `super::backfill`).
        "CREATE TABLE IF NOT EXISTS {ks}.kdigest_backfill (id int PRIMARY KEY, page blob, \
     written bigint, reached bigint)",
    ],
    &[
        // 5: the tombstone index (see `super::tombs`); `tomb_config` is written by `migrate`.
        "CREATE TABLE IF NOT EXISTS {ks}.tombs (bucket bigint, hlc bigint, k blob, \
     PRIMARY KEY ((bucket), hlc, k)) WITH gc_grace_seconds = 3600",
        "CREATE TABLE IF NOT EXISTS {ks}.tomb_buckets (id int, bucket bigint, \
     PRIMARY KEY ((id), bucket)) WITH gc_grace_seconds = 3600",
        "CREATE TABLE IF NOT EXISTS {ks}.tomb_config (id int PRIMARY KEY, complete boolean)",
    ],
];

fn cluster_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Cluster(format!("{what}: {e}"))
}

/// Runs one idempotent schema statement, retrying transient failures (a timed-out `CREATE … IF
/// NOT EXISTS` may be sent again).
async fn ddl(s: &Session, what: &str, cql: String) -> Result<()> {
    let mut stmt = Statement::new(cql);
    stmt.set_request_timeout(Some(DDL_TIMEOUT));
    retry("changing the schema", || s.query_unpaged(stmt.clone(), ()))
        .await
        .map(drop)
        .map_err(|e| match e {
            StoreError::Cluster(m) => StoreError::Cluster(format!("{what}: {m}")),
            other => other,
        })
}

/// Creates or migrates the keyspace's schema.
pub(crate) async fn migrate(s: &Session, ks: &str, replication: &str) -> Result<()> {
    ddl(
        s,
        &format!("creating keyspace {ks}"),
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"),
    )
    .await?;
    ddl(
        s,
        "creating schema_version",
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_version \
             (component text, version int, applied_at timestamp, PRIMARY KEY ((component), version))"
        ),
    )
    .await?;
    let current = current_version(s, ks).await?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Cluster(format!(
            "keyspace {ks} has schema version {current}, this build knows up to {SCHEMA_VERSION}; \
             upgrade this node"
        )));
    }
    for (i, stmts) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        if version <= current {
            continue;
        }
        for stmt in *stmts {
            ddl(
                s,
                &format!("schema migration {version}"),
                stmt.replace("{ks}", ks),
            )
            .await?;
        }
        if version == 3 {
            record_coverage(s, ks, "kdigest_config").await?;
        }
        if version == 5 {
            record_coverage(s, ks, "tomb_config").await?;
        }
        s.query_unpaged(
            format!(
                "INSERT INTO {ks}.schema_version (component, version, applied_at) \
                 VALUES ('store', ?, toTimestamp(now()))"
            ),
            (version,),
        )
        .await
        .map_err(|e| cluster_err("recording the schema version", e))?;
        tracing::info!(keyspace = ks, version, "applied schema migration");
    }
    Ok(())
}

/// Records in `table` (`id`, `complete`), once per keyspace, whether the rows a migration adds
/// will cover every key: only if the keyspace holds no record yet. Migration 3's digest rows
/// (`kdigest_config`: keys written before have no row; such a keyspace keeps per-node digests
/// until the backfill) and migration 5's tombstone index (`tomb_config`: tombstones written
/// before have no entry until the reaper's backfill). The first node to decide wins (`IF NOT
/// EXISTS`); a node deciding while another writes already sees a record and says no, the safe
/// answer.
async fn record_coverage(s: &Session, ks: &str, table: &str) -> Result<()> {
    let empty = s
        .query_unpaged(format!("SELECT k FROM {ks}.kv LIMIT 1"), ())
        .await
        .map_err(|e| cluster_err("reading kv", e))?
        .into_rows_result()
        .map_err(|e| cluster_err("reading kv", e))?
        .rows_num()
        == 0;
    retry("recording the digests' coverage", || {
        s.query_unpaged(
            format!("INSERT INTO {ks}.{table} (id, complete) VALUES (0, ?) IF NOT EXISTS"),
            (empty,),
        )
    })
    .await
    .map(drop)
}

async fn current_version(s: &Session, ks: &str) -> Result<i32> {
    let rows = s
        .query_unpaged(
            format!(
                "SELECT version FROM {ks}.schema_version WHERE component = 'store' \
                 ORDER BY version DESC LIMIT 1"
            ),
            (),
        )
        .await
        .map_err(|e| cluster_err("reading schema_version", e))?
        .into_rows_result()
        .map_err(|e| cluster_err("reading schema_version", e))?;
    let v = rows
        .maybe_first_row::<(i32,)>()
        .map_err(|e| cluster_err("reading schema_version", e))?;
    Ok(v.map_or(0, |(v,)| v))
}
