//! Message history in Discord's layout: partition `(conversation, time bucket)`, clustering by
//! message id descending.
//!
//! Message ids are Snowflakes ([`crate::ids`]): their top 41 bits are milliseconds, so the bucket
//! of a message is its id's time divided by [`BUCKET_MS`] (10 days, as Discord). A partition then
//! holds at most ten days of one conversation: bounded however long the conversation lives, and
//! "the newest 50 messages" is one single-partition read of the newest bucket (rarely two). Older
//! pages walk buckets backwards down to the conversation's own bucket — a conversation id is a
//! Snowflake too, minted before any of its messages, so it bounds the walk.
//!
//! The table is created by the engine's schema (migration 1). The messenger keeps its
//! conversations in the KV store today; this is the append-only history it can move to (the
//! KV record per message costs a version vector and a read-modify-write per message; this costs
//! one plain insert).

use super::cql::{bad_rows, retry};
use super::{ScyllaOptions, connect, schema};
use crate::error::{Result, StoreError};
use bytes::Bytes;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

/// Width of a history bucket: ten days of milliseconds.
pub const BUCKET_MS: u64 = 10 * 24 * 3600 * 1000;
/// Bits of a Snowflake below its milliseconds.
const TIME_SHIFT: u32 = 22;

/// The bucket of a Snowflake id.
pub fn bucket_of(id: u64) -> i32 {
    ((id >> TIME_SHIFT) / BUCKET_MS) as i32
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The conversation (a Snowflake).
    pub conversation: u64,
    /// The message id (a Snowflake; time-ordered).
    pub id: u64,
    /// The author's user id.
    pub author: u64,
    /// The encoded message.
    pub body: Bytes,
}

/// The message-history table of one keyspace.
#[derive(Debug, Clone)]
pub struct MessageHistory {
    session: Arc<Session>,
    insert: PreparedStatement,
    newest: PreparedStatement,
    before: PreparedStatement,
}

impl MessageHistory {
    /// Connects to the keyspace of `opts` (creating or migrating its schema).
    pub async fn open(opts: &ScyllaOptions) -> Result<Self> {
        let session = Arc::new(connect(opts).await?);
        schema::migrate(&session, &opts.keyspace, &opts.replication.cql()).await?;
        let ks = &opts.keyspace;
        let p = |cql: String| {
            let session = session.clone();
            async move {
                session
                    .prepare(cql.clone())
                    .await
                    .map_err(|e| StoreError::Cluster(format!("preparing `{cql}`: {e}")))
            }
        };
        let cols = "conversation, message_id, author, body";
        Ok(MessageHistory {
            insert: p(format!(
                "INSERT INTO {ks}.messages (conversation, bucket, message_id, author, body) \
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            newest: p(format!(
                "SELECT {cols} FROM {ks}.messages WHERE conversation = ? AND bucket = ? LIMIT ?"
            ))
            .await?,
            before: p(format!(
                "SELECT {cols} FROM {ks}.messages WHERE conversation = ? AND bucket = ? \
                 AND message_id < ? LIMIT ?"
            ))
            .await?,
            session,
        })
    }

    /// Stores a message (idempotent: the same id twice is one row).
    pub async fn append(&self, m: &StoredMessage) -> Result<()> {
        let values = (
            m.conversation as i64,
            bucket_of(m.id),
            m.id as i64,
            m.author as i64,
            m.body.as_ref(),
        );
        retry("appending a message", || {
            self.session.execute_unpaged(&self.insert, values)
        })
        .await
        .map(drop)
    }

    /// Up to `limit` messages of a conversation, newest first, older than `before` (all when
    /// `None`).
    pub async fn page(
        &self,
        conversation: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let start = before.map_or_else(now_bucket, bucket_of);
        let floor = bucket_of(conversation);
        let mut out = Vec::with_capacity(limit);
        let mut bucket = start;
        while out.len() < limit && bucket >= floor {
            let want = (limit - out.len()) as i32;
            let conv = conversation as i64;
            let res = match before {
                Some(b) if bucket == start => {
                    retry("reading messages", || {
                        self.session
                            .execute_unpaged(&self.before, (conv, bucket, b as i64, want))
                    })
                    .await?
                }
                _ => {
                    retry("reading messages", || {
                        self.session
                            .execute_unpaged(&self.newest, (conv, bucket, want))
                    })
                    .await?
                }
            };
            let rows = res
                .into_rows_result()
                .map_err(|e| bad_rows("messages", e))?;
            for row in rows
                .rows::<(i64, i64, i64, Vec<u8>)>()
                .map_err(|e| bad_rows("messages", e))?
            {
                let (c, id, author, body) = row.map_err(|e| bad_rows("messages", e))?;
                out.push(StoredMessage {
                    conversation: c as u64,
                    id: id as u64,
                    author: author as u64,
                    body: Bytes::from(body),
                });
            }
            bucket -= 1;
        }
        Ok(out)
    }
}

fn now_bucket() -> i32 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Snowflake time counts from the id epoch.
    ((ms.saturating_sub(crate::ids::EPOCH_MS)) / BUCKET_MS) as i32
}
