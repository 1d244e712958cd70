//! `starling-load verify`: reads every acknowledged write of an acked log back from every target
//! and reports those that are missing: users and posts that do not exist, follows whose edge is
//! absent, unfollows whose edge is still there. Chat messages need a member's token to read, so
//! [`verify_messages`] checks them for callers that hold the users' sessions (the fault tests):
//! every acknowledged message at its seq, and every conversation's history gap-free from 1.
//!
//! Follows and unfollows of the same edge can race in an open-loop run. The expected state of an
//! edge is its last acknowledged operation, unless an operation of the other kind may have been
//! applied after it: one still in flight when that last one was sent (its ack, or the failure
//! of a request whose outcome is unknown, came after the last one's send), or one that timed out
//! (the server may finish it later). Then the server may have applied them in either order, and
//! the edge is counted as ambiguous, not checked. A node killed between a commit and its answer
//! makes such unknown outcomes: the write it applied is as real as an acknowledged one.

use crate::LoadError;
use crate::acked::{Acked, AckedKind, Outcome};
use crate::api;
use crate::http::Http;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// An acknowledged chat message: `(seq, message id, sender)`.
pub type AckedMessage = (u64, String, String);

/// What must hold after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// User ids that must exist.
    pub users: Vec<String>,
    /// Post ids that must exist.
    pub posts: Vec<String>,
    /// Conversation → its acknowledged messages `(seq, message id, sender)`.
    pub messages: BTreeMap<String, Vec<AckedMessage>>,
    /// (follower, followee) → whether the edge must exist.
    pub edges: BTreeMap<(String, String), bool>,
    /// Edges whose final state depends on an order the client could not see.
    pub ambiguous: u64,
    /// Of those, the edges made ambiguous by an operation whose outcome is unknown.
    pub unknown: u64,
    /// Acked writes that cannot be checked (chat messages logged without their conversation).
    pub skipped: u64,
}

/// Derives what must hold from an acked log.
pub fn expectations(acked: &[Acked]) -> Expectations {
    let mut ex = Expectations::default();
    let mut by_edge: BTreeMap<(String, String), Vec<&Acked>> = BTreeMap::new();
    for a in acked {
        if !a.outcome.is_acked() && !matches!(a.kind, AckedKind::Follow | AckedKind::Unfollow) {
            // Only edges log unknown outcomes; anything else of the kind is not an expectation.
            continue;
        }
        match a.kind {
            AckedKind::User => ex.users.push(a.id.clone()),
            AckedKind::Post => ex.posts.push(a.id.clone()),
            AckedKind::Follow | AckedKind::Unfollow => by_edge
                .entry((a.user.clone(), a.id.clone()))
                .or_default()
                .push(a),
            AckedKind::Message => match (&a.conv, a.seq) {
                (Some(conv), Some(seq)) => ex.messages.entry(conv.clone()).or_default().push((
                    seq,
                    a.id.clone(),
                    a.user.clone(),
                )),
                _ => ex.skipped += 1,
            },
        }
    }
    for (edge, mut ops) in by_edge {
        ops.sort_by_key(|a| a.acked_us);
        let Some(last) = ops.iter().rev().find(|o| o.outcome.is_acked()) else {
            continue; // nothing acknowledged: nothing expected
        };
        let may_follow = |o: &&&Acked| {
            o.kind != last.kind
                && match o.outcome {
                    Outcome::Acked | Outcome::Unknown => o.acked_us > last.sent_us,
                    Outcome::TimedOut => true,
                }
        };
        let raced: Vec<&&Acked> = ops.iter().filter(may_follow).collect();
        if raced.is_empty() {
            ex.edges.insert(edge, last.kind == AckedKind::Follow);
        } else {
            ex.ambiguous += 1;
            if raced.iter().any(|o| !o.outcome.is_acked()) {
                ex.unknown += 1;
            }
        }
    }
    ex
}

/// One write that did not read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// `user`, `post`, `follow` (edge absent), `unfollow` (edge still present), `message`
    /// (not at its seq) or `gap` (a conversation's seqs are not 1, 2, 3, …).
    pub kind: String,
    /// The user, post or message id, the followee, or for a gap the first seq out of place.
    pub id: String,
    /// The follower, for edges; the conversation, for messages and gaps.
    pub user: Option<String>,
    /// Where it was missing.
    pub target: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Targets checked.
    pub targets: usize,
    /// Users checked per target.
    #[serde(default)]
    pub users: u64,
    /// Posts checked per target.
    pub posts: u64,
    /// Chat messages checked per target (by [`verify_messages`]).
    #[serde(default)]
    pub messages: u64,
    /// Conversations whose whole history was checked gap-free per target.
    #[serde(default)]
    pub conversations: u64,
    /// Edges checked per target.
    pub edges: u64,
    /// Edges not checked because their final state is ambiguous.
    pub ambiguous: u64,
    /// Of those, the edges made ambiguous by an operation whose outcome is unknown.
    #[serde(default)]
    pub unknown: u64,
    /// Acked writes not read back (chat messages, unless [`verify_messages`] checked them).
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

/// The ids of `kind` that `exists` does not find at `target`, `concurrency` at a time.
async fn missing_of<'a, I, F, Fut>(
    ids: I,
    kind: &str,
    target: &str,
    concurrency: usize,
    exists: F,
) -> Result<Vec<Missing>, LoadError>
where
    I: IntoIterator<Item = &'a String>,
    F: Fn(&'a String) -> Fut,
    Fut: std::future::Future<Output = Result<bool, crate::error::RequestError>>,
{
    stream::iter(ids)
        .map(|id| {
            let there = exists(id);
            async move {
                let there = there
                    .await
                    .map_err(|e| LoadError::setup(format!("reading {kind} {id} at {target}"), e))?;
                Ok::<_, LoadError>((!there).then(|| Missing {
                    kind: kind.into(),
                    id: id.clone(),
                    user: None,
                    target: target.to_string(),
                }))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_filter_map(|m| async move { Ok(m) })
        .try_collect()
        .await
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
        users: ex.users.len() as u64,
        posts: ex.posts.len() as u64,
        edges: ex.edges.len() as u64,
        ambiguous: ex.ambiguous,
        unknown: ex.unknown,
        skipped: ex.skipped + ex.messages.values().map(|m| m.len() as u64).sum::<u64>(),
        ..Verification::default()
    };
    let token = reader.token.as_str();
    for target in targets {
        wait_for_session(http, target, reader).await?;
        let users = missing_of(&ex.users, "user", target, concurrency, |id| async move {
            api::user_exists(http, target, token, id).await
        });
        out.missing.extend(users.await?);
        let posts = missing_of(&ex.posts, "post", target, concurrency, |id| async move {
            api::post_exists(http, target, token, id).await
        });
        out.missing.extend(posts.await?);

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

/// Waits (≤ 30 s) until `target` knows the reader's session: it was made at another node a
/// moment ago and reaches this one by replication.
async fn wait_for_session(
    http: &Http,
    target: &str,
    reader: &api::Session,
) -> Result<(), LoadError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match api::user_exists(http, target, &reader.token, &reader.user_id).await {
            Err(e) if e.status() == Some(401) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(LoadError::setup(
                    format!("the reader's session at {target}"),
                    e,
                ));
            }
            Ok(_) => return Ok(()),
        }
    }
}

/// Reads every conversation of `ex.messages` back from every target, as one of its senders
/// (`tokens`: user id → a session token), and checks that each acknowledged message is at its
/// seq and that the history's seqs run 1, 2, 3, … without a gap or a repeat. Conversations none
/// of whose senders has a token are counted in `skipped`.
pub async fn verify_messages(
    http: &Http,
    targets: &[String],
    ex: &Expectations,
    tokens: &std::collections::HashMap<String, String>,
    concurrency: usize,
) -> Result<Verification, LoadError> {
    let mut out = Verification {
        targets: targets.len(),
        ..Verification::default()
    };
    let mut checked: Vec<(&String, &str, &Vec<AckedMessage>)> = Vec::new();
    for (conv, acked) in &ex.messages {
        match acked.iter().find_map(|(_, _, who)| tokens.get(who)) {
            Some(token) => checked.push((conv, token.as_str(), acked)),
            None => out.skipped += acked.len() as u64,
        }
    }
    out.conversations = checked.len() as u64;
    out.messages = checked.iter().map(|c| c.2.len() as u64).sum();
    for target in targets {
        let found: Vec<Vec<Missing>> = stream::iter(checked.iter())
            .map(|(conv, token, acked)| async move {
                let history = api::messages(http, target, token, conv)
                    .await
                    .map_err(|e| {
                        LoadError::setup(format!("reading conversation {conv} at {target}"), e)
                    })?;
                Ok::<_, LoadError>(check_history(conv, target, acked, &history))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        out.missing.extend(found.into_iter().flatten());
    }
    Ok(out)
}

/// What is wrong with one conversation's history: gaps or repeats in its seqs, and acknowledged
/// messages not at their seq.
fn check_history(
    conv: &str,
    target: &str,
    acked: &[AckedMessage],
    history: &[api::StoredMessage],
) -> Vec<Missing> {
    let mut out = Vec::new();
    let missing = |kind: &str, id: String| Missing {
        kind: kind.into(),
        id,
        user: Some(conv.to_string()),
        target: target.to_string(),
    };
    if let Some((i, m)) = history
        .iter()
        .enumerate()
        .find(|(i, m)| m.seq != *i as u64 + 1)
    {
        out.push(missing(
            "gap",
            format!("seq {} at position {}", m.seq, i + 1),
        ));
    }
    for (seq, id, _) in acked {
        let at = usize::try_from(*seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|i| history.get(i));
        if at.is_none_or(|m| m.seq != *seq || m.id != *id) {
            out.push(missing("message", id.clone()));
        }
    }
    out
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
    // A sign-up claims the handle by CAS: right after a fault (the case verify is for) its owner
    // may still answer 503 (a restarted owner's grace) or 429; retry those for up to a minute.
    let mut tries = 0;
    let reader = loop {
        match api::sign_up(http, first, &handle, "verify-password").await {
            Err(e) if matches!(e.status(), Some(429 | 503)) && tries < 120 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            r => {
                break r.map_err(|e| {
                    LoadError::setup(format!("signing up the reader {handle} at {first}"), e)
                })?;
            }
        }
    };
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
            outcome: Outcome::Acked,
            conv: None,
            seq: None,
        }
    }

    fn failed(
        outcome: Outcome,
        kind: AckedKind,
        user: &str,
        id: &str,
        sent: u64,
        at: u64,
    ) -> Acked {
        Acked {
            outcome,
            ..op(kind, user, id, sent, at)
        }
    }

    #[test]
    fn a_write_of_unknown_outcome_makes_its_edge_ambiguous_when_it_may_have_come_last() {
        use AckedKind::*;
        use Outcome::*;
        let e = |a: &str, b: &str| (a.to_string(), b.to_string());
        let log = vec![
            // The node died after committing the unfollow: the follow acked after it is undone.
            op(Follow, "1", "2", 0, 10),
            failed(Unknown, Unfollow, "1", "2", 5, 20),
            // An unknown unfollow that failed before the follow was sent cannot come after it.
            failed(Unknown, Unfollow, "1", "3", 0, 4),
            op(Follow, "1", "3", 5, 10),
            // A timed-out unfollow may be finished by the server at any time.
            failed(TimedOut, Unfollow, "1", "4", 0, 4),
            op(Follow, "1", "4", 5, 10),
            // One of the same kind changes nothing; one with nothing acknowledged expects nothing.
            op(Follow, "1", "5", 0, 10),
            failed(Unknown, Follow, "1", "5", 5, 20),
            failed(Unknown, Follow, "1", "6", 5, 20),
            // Only edges log unknown outcomes; a post of unknown outcome is not expected.
            failed(Unknown, Post, "1", "p", 0, 1),
        ];
        let ex = expectations(&log);
        assert_eq!(ex.edges.len(), 2, "{:?}", ex.edges);
        assert!(ex.edges[&e("1", "3")]);
        assert!(ex.edges[&e("1", "5")]);
        assert_eq!((ex.ambiguous, ex.unknown), (2, 2));
        assert!(ex.posts.is_empty());
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
        assert_eq!(ex.skipped, 1, "a message without its conversation");
    }

    #[test]
    fn a_history_with_a_gap_or_a_lost_message_is_reported() {
        let m = |seq: u64, id: &str| api::StoredMessage { seq, id: id.into() };
        let acked = vec![
            (1, "a".to_string(), "u".to_string()),
            (3, "c".into(), "u".into()),
        ];
        assert!(check_history("c1", "t", &acked, &[m(1, "a"), m(2, "b"), m(3, "c")]).is_empty());
        let gap = check_history("c1", "t", &acked, &[m(1, "a"), m(3, "c")]);
        assert_eq!(
            gap.iter().map(|x| x.kind.as_str()).collect::<Vec<_>>(),
            ["gap", "message"],
            "{gap:?}"
        );
        let lost = check_history("c1", "t", &acked, &[m(1, "a"), m(2, "b")]);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].id, "c");
        let other = check_history("c1", "t", &acked, &[m(1, "x"), m(2, "b"), m(3, "c")]);
        assert_eq!(other[0].kind, "message");
    }
}
