//! `starling-load verify`: reads every acknowledged write of an acked log back from every target
//! and reports those that are missing: posts that do not exist, follows whose edge is absent,
//! unfollows whose edge is still there.
//!
//! Follows and unfollows of the same edge can race in an open-loop run. The expected state of an
//! edge is its last acknowledged operation, unless an operation of the other kind was still in
//! flight when that last one was sent (its ack came after the last one's send): then the server
//! may have applied them in either order, and the edge is counted as ambiguous, not checked.

use crate::LoadError;
use crate::acked::{Acked, AckedKind};
use crate::api;
use crate::http::Http;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// What must hold after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// Post ids that must exist.
    pub posts: Vec<String>,
    /// (follower, followee) → whether the edge must exist.
    pub edges: BTreeMap<(String, String), bool>,
    /// Edges whose final state depends on an order the client could not see.
    pub ambiguous: u64,
    /// Acked writes of kinds `verify` does not read back (chat messages).
    pub skipped: u64,
}

/// Derives what must hold from an acked log.
pub fn expectations(acked: &[Acked]) -> Expectations {
    let mut ex = Expectations::default();
    let mut by_edge: BTreeMap<(String, String), Vec<&Acked>> = BTreeMap::new();
    for a in acked {
        match a.kind {
            AckedKind::Post => ex.posts.push(a.id.clone()),
            AckedKind::Follow | AckedKind::Unfollow => by_edge
                .entry((a.user.clone(), a.id.clone()))
                .or_default()
                .push(a),
            AckedKind::Message => ex.skipped += 1,
        }
    }
    for (edge, mut ops) in by_edge {
        ops.sort_by_key(|a| a.acked_us);
        let Some(last) = ops.last() else { continue };
        let raced = ops
            .iter()
            .any(|o| o.kind != last.kind && o.acked_us > last.sent_us);
        if raced {
            ex.ambiguous += 1;
        } else {
            ex.edges.insert(edge, last.kind == AckedKind::Follow);
        }
    }
    ex
}

/// One write that did not read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// `post`, `follow` (edge absent) or `unfollow` (edge still present).
    pub kind: String,
    /// The post id or the followee.
    pub id: String,
    /// The follower, for edges.
    pub user: Option<String>,
    /// Where it was missing.
    pub target: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Targets checked.
    pub targets: usize,
    /// Posts checked per target.
    pub posts: u64,
    /// Edges checked per target.
    pub edges: u64,
    /// Edges not checked because their final state is ambiguous.
    pub ambiguous: u64,
    /// Acked writes not read back (chat messages).
    pub skipped: u64,
    /// Every write that did not read back, per target.
    pub missing: Vec<Missing>,
}

impl Verification {
    /// True when nothing is missing.
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Reads back every expectation at every target, with `concurrency` requests in flight,
/// authenticated as `reader` (any user: posts and follow lists are readable by every user).
pub async fn verify(
    http: &Http,
    targets: &[String],
    reader: &api::Session,
    ex: &Expectations,
    concurrency: usize,
) -> Result<Verification, LoadError> {
    let mut out = Verification {
        targets: targets.len(),
        posts: ex.posts.len() as u64,
        edges: ex.edges.len() as u64,
        ambiguous: ex.ambiguous,
        skipped: ex.skipped,
        missing: Vec::new(),
    };
    let token = reader.token.as_str();
    for target in targets {
        let missing_posts: Vec<Missing> = stream::iter(ex.posts.iter())
            .map(|id| async move {
                let there = api::post_exists(http, target, token, id)
                    .await
                    .map_err(|e| LoadError::setup(format!("reading post {id} at {target}"), e))?;
                Ok::<_, LoadError>((!there).then(|| Missing {
                    kind: "post".into(),
                    id: id.clone(),
                    user: None,
                    target: target.clone(),
                }))
            })
            .buffer_unordered(concurrency.max(1))
            .try_filter_map(|m| async move { Ok(m) })
            .try_collect()
            .await?;
        out.missing.extend(missing_posts);

        let mut by_user: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
        for ((user, followee), want) in &ex.edges {
            by_user
                .entry(user.as_str())
                .or_default()
                .push((followee.as_str(), *want));
        }
        let missing_edges: Vec<Vec<Missing>> = stream::iter(by_user)
            .map(|(user, edges)| async move {
                let have: HashSet<String> = api::following(http, target, token, user)
                    .await
                    .map_err(|e| {
                        LoadError::setup(format!("reading who {user} follows at {target}"), e)
                    })?
                    .into_iter()
                    .collect();
                Ok::<_, LoadError>(
                    edges
                        .into_iter()
                        .filter(|(followee, want)| have.contains(*followee) != *want)
                        .map(|(followee, want)| Missing {
                            kind: if want { "follow" } else { "unfollow" }.into(),
                            id: followee.to_string(),
                            user: Some(user.to_string()),
                            target: target.clone(),
                        })
                        .collect(),
                )
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        out.missing.extend(missing_edges.into_iter().flatten());
    }
    Ok(out)
}

/// Reads an acked log, signs up a reader at the first target, and verifies every write.
pub async fn verify_log(
    http: &Http,
    targets: &[String],
    log: &std::path::Path,
    concurrency: usize,
) -> Result<Verification, LoadError> {
    let entries = crate::acked::read(log)?;
    let ex = expectations(&entries);
    let first = targets
        .first()
        .ok_or_else(|| LoadError::config("target", "at least one target"))?;
    let handle = format!("vf{:x}", crate::acked::now_us() & 0xff_ffff_ffff);
    let reader = api::sign_up(http, first, &handle, "verify-password")
        .await
        .map_err(|e| LoadError::setup(format!("signing up the reader {handle} at {first}"), e))?;
    verify(http, targets, &reader, &ex, concurrency).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: AckedKind, user: &str, id: &str, sent_us: u64, acked_us: u64) -> Acked {
        Acked {
            kind,
            id: id.into(),
            user: user.into(),
            target: "t".into(),
            sent_us,
            acked_us,
        }
    }

    #[test]
    fn the_last_acknowledged_operation_of_an_edge_decides_unless_it_raced() {
        use AckedKind::*;
        let log = vec![
            op(Post, "1", "p1", 0, 5),
            op(Follow, "1", "2", 0, 10),
            op(Unfollow, "1", "2", 20, 30), // after the follow: must be absent
            op(Follow, "1", "3", 0, 10),
            op(Follow, "1", "3", 5, 12), // same kind overlapping: still must exist
            op(Follow, "2", "3", 0, 50),
            op(Unfollow, "2", "3", 10, 40), // in flight together: ambiguous
            op(Message, "1", "m1", 0, 1),
        ];
        let ex = expectations(&log);
        assert_eq!(ex.posts, vec!["p1".to_string()]);
        assert_eq!(ex.edges.len(), 2);
        assert!(!ex.edges[&("1".to_string(), "2".to_string())]);
        assert!(ex.edges[&("1".to_string(), "3".to_string())]);
        assert_eq!(ex.ambiguous, 1);
        assert_eq!(ex.skipped, 1);
    }
}
