//! The log of every write the server acknowledged (`--acked-log acked.jsonl`), one JSON object a
//! line, so a fault test can check afterwards that none was lost ([`crate::verify`]). Follows,
//! unfollows, likes, unlikes, reposts and their undoing, group membership changes and message edits whose request failed without telling
//! whether the server applied it (the connection broke, a 5xx, a timeout) are logged too, as
//! [`Outcome::Unknown`] or [`Outcome::TimedOut`]: a node killed between its commit and its answer
//! leaves such a write in the store, and it decides an edge's (a membership's, a message's text's)
//! final state as much as an acknowledged one.
//!
//! Lines are appended through a bounded channel by a writer task that owns the file; when the
//! channel is full the recording operation waits (the log must be complete, so nothing is
//! dropped), which shows up in that operation's latency rather than as a silent gap.

use crate::LoadError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What kind of write was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckedKind {
    /// A sign-up: `id` (and `user`) is the new user's id.
    User,
    /// A post: `id` is the post's id.
    Post,
    /// A post deleted by its author (`user`): `id` is the post's id.
    Unpost,
    /// A follow: `id` is the followee.
    Follow,
    /// An unfollow: `id` is the former followee.
    Unfollow,
    /// A chat message: `id` is the message id; `conv` and `seq` say where it is.
    Message,
    /// A group membership change by `user` (the group's owner): `id` is the user added or
    /// removed, `conv` the group, `added` which of the two.
    Member,
    /// An edit of a chat message by its sender: `id` is the message id, `conv` and `seq` say
    /// where it is, `body` is its new text.
    Edit,
    /// A like: `id` is the post liked.
    Like,
    /// An unlike: `id` is the post.
    Unlike,
    /// A repost: `id` is the post reposted.
    Repost,
    /// An undone repost: `id` is the post.
    Unrepost,
    /// A notification mark-read: `id` is the `up_to` id (the marker only moves forward).
    MarkRead,
    /// A password change by `user`: `id` is a second session token of theirs, made just before
    /// the change (which must have revoked it), `body` the password it replaced.
    Password,
    /// An account deletion: `id` is the deleted user (a spare account of the load user `user`,
    /// whom it followed), `body` its handle (its password is
    /// [`crate::users::spare_password`] of it).
    Delete,
}

/// Whether the server is known to have applied a logged write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: applied, and durable where the server says so.
    #[default]
    Acked,
    /// Failed after it was sent (broken connection, 5xx, an answer that did not decode): the
    /// server may have applied it, no later than `acked_us` (when the failure was seen).
    Unknown,
    /// Timed out: the server may have applied it, even after `acked_us`.
    TimedOut,
}

impl Outcome {
    /// Acknowledged.
    pub fn is_acked(&self) -> bool {
        *self == Outcome::Acked
    }
}

/// One acknowledged write (or, for edges, memberships and edits, one whose outcome is unknown: see
/// [`Outcome`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// The kind of write.
    pub kind: AckedKind,
    /// The id it concerns (see [`AckedKind`]).
    pub id: String,
    /// The user who made it.
    pub user: String,
    /// The target it was sent to.
    pub target: String,
    /// When it was sent, µs since the Unix epoch.
    pub sent_us: u64,
    /// When the acknowledgement (or the failure) arrived, µs since the Unix epoch.
    pub acked_us: u64,
    /// Whether it was acknowledged (absent in the log: it was).
    #[serde(default, skip_serializing_if = "Outcome::is_acked")]
    pub outcome: Outcome,
    /// Chat messages and edits: the conversation; membership changes: the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv: Option<String>,
    /// Chat messages and edits: the message's sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Membership changes: `true` for an addition, `false` for a removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<bool>,
    /// Edits: the message's new text; password changes: the password replaced; deletions: the
    /// deleted account's handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl Acked {
    /// A write of `kind` on `id` that `user` sent to `target` at `sent_us` (µs since the Unix
    /// epoch), acknowledged now; what only some kinds carry is unset.
    pub fn acked_now(kind: AckedKind, id: String, user: &str, target: &str, sent_us: u64) -> Acked {
        Acked {
            kind,
            id,
            user: user.to_string(),
            target: target.to_string(),
            sent_us,
            acked_us: now_us(),
            outcome: Outcome::Acked,
            conv: None,
            seq: None,
            added: None,
            body: None,
        }
    }
}

/// Now, in µs since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A handle to the acked log: cheap to clone; [`AckedLog::close`] flushes it.
#[derive(Debug, Clone)]
pub struct AckedLog {
    tx: mpsc::Sender<Acked>,
}

/// The writer task of an acked log; [`AckedWriter::finish`] waits until every line is on disk.
#[derive(Debug)]
pub struct AckedWriter {
    task: JoinHandle<Result<u64, LoadError>>,
}

impl AckedLog {
    /// Creates (truncates) `path` and starts its writer task.
    pub fn create(path: &Path) -> Result<(AckedLog, AckedWriter), LoadError> {
        let file = std::fs::File::create(path).map_err(|e| LoadError::io(path, e))?;
        let (tx, mut rx) = mpsc::channel::<Acked>(4096);
        let path: PathBuf = path.into();
        let task = tokio::task::spawn_blocking(move || {
            let mut out = BufWriter::new(file);
            let mut n = 0u64;
            while let Some(a) = rx.blocking_recv() {
                serde_json::to_writer(&mut out, &a).map_err(|source| LoadError::Json {
                    path: path.clone(),
                    line: n as usize + 1,
                    source,
                })?;
                out.write_all(b"\n").map_err(|e| LoadError::io(&path, e))?;
                n += 1;
            }
            out.flush().map_err(|e| LoadError::io(&path, e))?;
            out.get_ref()
                .sync_all()
                .map_err(|e| LoadError::io(&path, e))?;
            Ok(n)
        });
        Ok((AckedLog { tx }, AckedWriter { task }))
    }

    /// Appends one acknowledged write (waits while the writer is behind).
    pub async fn record(&self, a: Acked) {
        // The writer only stops after every handle is dropped, so a send cannot fail while
        // `self` is alive unless the writer died on an I/O error, which `finish` reports.
        let _ = self.tx.send(a).await;
    }
}

impl AckedWriter {
    /// Waits for the writer once every [`AckedLog`] handle is dropped; returns the lines written.
    pub async fn finish(self) -> Result<u64, LoadError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(LoadError::io(
                "acked log",
                std::io::Error::other(e.to_string()),
            )),
        }
    }
}

/// Reads an acked log.
pub fn read(path: &Path) -> Result<Vec<Acked>, LoadError> {
    let file = std::fs::File::open(path).map_err(|e| LoadError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| LoadError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|source| LoadError::Json {
                path: path.into(),
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acked_log_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.jsonl");
        let (log, writer) = AckedLog::create(&path).unwrap();
        let mut written = Vec::new();
        for (i, kind) in [
            AckedKind::Post,
            AckedKind::Follow,
            AckedKind::Unfollow,
            AckedKind::Member,
            AckedKind::Edit,
        ]
        .into_iter()
        .cycle()
        .take(5000)
        .enumerate()
        {
            let a = Acked {
                kind,
                id: format!("{}", 7_301_000_000_000 + i as u64),
                user: format!("{}", i % 7),
                target: "http://127.0.0.1:8080".into(),
                sent_us: i as u64,
                acked_us: i as u64 + 10,
                outcome: if i % 11 == 3 {
                    Outcome::Unknown
                } else {
                    Outcome::Acked
                },
                conv: (kind == AckedKind::Post).then(|| "c".into()),
                seq: (kind == AckedKind::Post).then_some(i as u64),
                added: (kind == AckedKind::Member).then_some(i % 2 == 0),
                body: (kind == AckedKind::Edit).then(|| format!("edited {i}")),
            };
            let log = log.clone();
            written.push(a.clone());
            log.record(a).await;
        }
        drop(log);
        assert_eq!(writer.finish().await.unwrap(), 5000);
        assert_eq!(read(&path).unwrap(), written);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"post","id":"7301000000000""#),
            "{text:.80}"
        );
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.jsonl");
        std::fs::write(
            &path,
            "{\"kind\":\"post\",\"id\":\"1\",\"user\":\"2\",\"target\":\"t\",\"sent_us\":1,\"acked_us\":2}\n\nnot json\n",
        )
        .unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
