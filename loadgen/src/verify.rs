//! `starling-load verify`: reads every acknowledged write of an acked log back from every target
//! and reports those that are missing: users and posts that do not exist, follows whose edge is
//! absent, unfollows whose edge is still there, likes not among their post's likers and unlikes
//! still there (resolved like edges), and each liked post whose count never settles on its number
//! of likers (counts are derived a consumer pass behind); reposts likewise, against each post's
//! reposters and repost count. Chat messages, message edits and group
//! memberships need a member's token to read, so [`verify_messages`] checks them for callers that
//! hold the users' sessions (the fault tests): every acknowledged message at its seq, every
//! conversation's history gap-free from 1 (edits, deletes and membership changes are entries of
//! the log with seqs of their own), every acknowledged edit's text in its message, and every
//! group's members as its acknowledged changes left them.
//!
//! Follows and unfollows of the same edge can race in an open-loop run. The expected state of an
//! edge is its last acknowledged operation, unless an operation of the other kind may have been
//! applied after it: one still in flight when that last one was sent (its ack, or the failure
//! of a request whose outcome is unknown, came after the last one's send), or one that timed out
//! (the server may finish it later). Then the server may have applied them in either order, and
//! the edge is counted as ambiguous, not checked. A node killed between a commit and its answer
//! makes such unknown outcomes: the write it applied is as real as an acknowledged one.
//!
//! The same rule ([`resolve`]) decides a group member (the last acknowledged addition or removal
//! of that user, ambiguous when a change the other way of unknown outcome may have come after
//! it) and a message's text (its acknowledged edit; the load edits a message at most once, so an
//! edit of unknown outcome leaves its message's text ambiguous, counted, not checked).
//!
//! Accounts, with the users' sessions too ([`verify_accounts`]): each user's notifications up to
//! their highest acknowledged mark-read read as read (the marker only moves forward, so a
//! mark-read of unknown outcome cannot undo one); each acknowledged password change's replaced
//! password no longer signs in and its revoked session no longer authenticates (passwords are
//! never reused, so this holds whatever the order of changes); each acknowledged deletion's user
//! reads as unknown and cannot sign in, is off the followers of the user it followed, whose
//! count equals their followers there once the sweeper has run, and (once, at the first target)
//! its handle is freed after the grace period: a sign-up takes it.

use crate::LoadError;
use crate::acked::{Acked, AckedKind, Outcome};
use crate::api;
use crate::http::Http;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// An acknowledged chat message: `(seq, message id, sender)`.
pub type AckedMessage = (u64, String, String);

/// An acknowledged edit: `(seq of the message, its new text, the editor)`.
pub type AckedEdit = (u64, String, String);

/// What must hold of a group's members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupExpectation {
    /// Who changed its membership (its owner, a member throughout: the group is read as them).
    pub by: String,
    /// User → whether they must be a member.
    pub members: BTreeMap<String, bool>,
}

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
    /// Conversation → the acknowledged edits whose text its messages must hold.
    pub edits: BTreeMap<String, Vec<AckedEdit>>,
    /// Messages whose text is not checked: an edit of theirs has an unknown outcome.
    pub edits_ambiguous: u64,
    /// Group → what must hold of its members.
    pub groups: BTreeMap<String, GroupExpectation>,
    /// Memberships (group, user) whose final state depends on an order the client could not see.
    pub members_ambiguous: u64,
    /// Of those, the memberships made ambiguous by a change whose outcome is unknown.
    pub members_unknown: u64,
    /// (post, liker) → whether the like must exist (the rule of edges).
    pub likes: BTreeMap<(String, String), bool>,
    /// Likes whose final state depends on an order the client could not see.
    pub likes_ambiguous: u64,
    /// (post, reposter) → whether the repost must exist (the rule of edges).
    pub reposts: BTreeMap<(String, String), bool>,
    /// Reposts whose final state depends on an order the client could not see.
    pub reposts_ambiguous: u64,
    /// User → the highest notification id an acknowledged mark-read marked read.
    pub marks: BTreeMap<String, u64>,
    /// Acknowledged password changes: (user, the session they revoked, the password replaced).
    pub passwords: Vec<(String, String, String)>,
    /// Acknowledged deletions: (deleted user, their handle, the user they followed).
    pub deletions: Vec<(String, String, String)>,
    /// Acked writes that cannot be checked (chat messages logged without their conversation).
    pub skipped: u64,
}

/// The expected final state of one thing that writes set (an edge, a membership, a message's
/// text), from those writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<S> {
    /// Nothing acknowledged: nothing expected.
    Nothing,
    /// The state the last acknowledged write set must hold.
    Expect(S),
    /// A write setting another state may have been applied after the last acknowledged one;
    /// `unknown` when one of those has an unknown outcome (rather than only acknowledged ones
    /// that raced it).
    Ambiguous {
        /// Made ambiguous by a write whose outcome is unknown.
        unknown: bool,
    },
}

/// Resolves the writes of one thing, each with the state it sets: the state of the last
/// acknowledged write (by acknowledgement time), unless a write setting another state may have
/// been applied after it: one whose acknowledgement (or failure of unknown outcome) came after
/// that last write was sent, or one that timed out (the server may finish it at any time).
pub fn resolve<S: PartialEq>(mut ops: Vec<(&Acked, S)>) -> Resolved<S> {
    ops.sort_by_key(|(a, _)| a.acked_us);
    let Some(i) = ops.iter().rposition(|(a, _)| a.outcome.is_acked()) else {
        return Resolved::Nothing;
    };
    let (last, state) = (ops[i].0, &ops[i].1);
    let mut raced = ops.iter().filter(|(o, s)| {
        s != state
            && match o.outcome {
                Outcome::Acked | Outcome::Unknown => o.acked_us > last.sent_us,
                Outcome::TimedOut => true,
            }
    });
    match raced.next() {
        None => Resolved::Expect(ops.swap_remove(i).1),
        Some(first) => Resolved::Ambiguous {
            unknown: std::iter::once(first)
                .chain(raced)
                .any(|(o, _)| !o.outcome.is_acked()),
        },
    }
}

/// Derives what must hold from an acked log.
pub fn expectations(acked: &[Acked]) -> Expectations {
    let mut ex = Expectations::default();
    let mut by_edge: BTreeMap<(String, String), Vec<(&Acked, bool)>> = BTreeMap::new();
    let mut by_member: BTreeMap<(String, String), Vec<(&Acked, bool)>> = BTreeMap::new();
    let mut by_edit: BTreeMap<(String, u64), Vec<(&Acked, String)>> = BTreeMap::new();
    let mut by_like: BTreeMap<(String, String), Vec<(&Acked, bool)>> = BTreeMap::new();
    let mut by_repost: BTreeMap<(String, String), Vec<(&Acked, bool)>> = BTreeMap::new();
    // Posts their authors deleted, or may have (an unknown outcome): not expected to exist.
    let mut unposted: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for a in acked {
        let logs_unknown = matches!(
            a.kind,
            AckedKind::Unpost
                | AckedKind::Follow
                | AckedKind::Unfollow
                | AckedKind::Member
                | AckedKind::Edit
                | AckedKind::Like
                | AckedKind::Unlike
                | AckedKind::Repost
                | AckedKind::Unrepost
        );
        if !a.outcome.is_acked() && !logs_unknown {
            // Only edges, memberships and edits log unknown outcomes; anything else of the kind
            // (a password change) is not an expectation.
            continue;
        }
        match a.kind {
            AckedKind::User => ex.users.push(a.id.clone()),
            AckedKind::Post => ex.posts.push(a.id.clone()),
            AckedKind::Unpost => {
                unposted.insert(a.id.as_str());
            }
            AckedKind::Follow | AckedKind::Unfollow => by_edge
                .entry((a.user.clone(), a.id.clone()))
                .or_default()
                .push((a, a.kind == AckedKind::Follow)),
            AckedKind::Like | AckedKind::Unlike => by_like
                .entry((a.id.clone(), a.user.clone()))
                .or_default()
                .push((a, a.kind == AckedKind::Like)),
            AckedKind::Repost | AckedKind::Unrepost => by_repost
                .entry((a.id.clone(), a.user.clone()))
                .or_default()
                .push((a, a.kind == AckedKind::Repost)),
            AckedKind::Message => match (&a.conv, a.seq) {
                (Some(conv), Some(seq)) => ex.messages.entry(conv.clone()).or_default().push((
                    seq,
                    a.id.clone(),
                    a.user.clone(),
                )),
                _ => ex.skipped += 1,
            },
            AckedKind::Member => match (&a.conv, a.added) {
                (Some(conv), Some(added)) => {
                    ex.groups
                        .entry(conv.clone())
                        .or_insert_with(|| GroupExpectation {
                            by: a.user.clone(),
                            members: BTreeMap::new(),
                        });
                    by_member
                        .entry((conv.clone(), a.id.clone()))
                        .or_default()
                        .push((a, added));
                }
                _ => ex.skipped += 1,
            },
            AckedKind::MarkRead => match a.id.parse::<u64>() {
                Ok(up_to) => {
                    let m = ex.marks.entry(a.user.clone()).or_default();
                    *m = (*m).max(up_to);
                }
                Err(_) => ex.skipped += 1,
            },
            AckedKind::Password => match &a.body {
                Some(old) => ex
                    .passwords
                    .push((a.user.clone(), a.id.clone(), old.clone())),
                None => ex.skipped += 1,
            },
            AckedKind::Delete => match &a.body {
                Some(handle) => ex
                    .deletions
                    .push((a.id.clone(), handle.clone(), a.user.clone())),
                None => ex.skipped += 1,
            },
            AckedKind::Edit => match (&a.conv, a.seq, &a.body) {
                (Some(conv), Some(seq), Some(body)) => by_edit
                    .entry((conv.clone(), seq))
                    .or_default()
                    .push((a, body.clone())),
                _ => ex.skipped += 1,
            },
        }
    }
    for (edge, ops) in by_edge {
        match resolve(ops) {
            Resolved::Nothing => {} // nothing acknowledged: nothing expected
            Resolved::Expect(follows) => {
                ex.edges.insert(edge, follows);
            }
            Resolved::Ambiguous { unknown } => {
                ex.ambiguous += 1;
                ex.unknown += u64::from(unknown);
            }
        }
    }
    for ((conv, user), ops) in by_member {
        match resolve(ops) {
            Resolved::Nothing => {}
            Resolved::Expect(member) => {
                if let Some(g) = ex.groups.get_mut(&conv) {
                    g.members.insert(user, member);
                }
            }
            Resolved::Ambiguous { unknown } => {
                ex.members_ambiguous += 1;
                ex.members_unknown += u64::from(unknown);
            }
        }
    }
    for (like, ops) in by_like {
        match resolve(ops) {
            Resolved::Nothing => {}
            Resolved::Expect(liked) => {
                ex.likes.insert(like, liked);
            }
            Resolved::Ambiguous { .. } => ex.likes_ambiguous += 1,
        }
    }
    for (repost, ops) in by_repost {
        match resolve(ops) {
            Resolved::Nothing => {}
            Resolved::Expect(reposted) => {
                ex.reposts.insert(repost, reposted);
            }
            Resolved::Ambiguous { .. } => ex.reposts_ambiguous += 1,
        }
    }
    for ((conv, seq), ops) in by_edit {
        let editor = ops.first().map(|(a, _)| a.user.clone()).unwrap_or_default();
        match resolve(ops) {
            Resolved::Expect(body) => ex.edits.entry(conv).or_default().push((seq, body, editor)),
            // Edited at most once: an edit of unknown outcome leaves the old or the new text.
            Resolved::Nothing | Resolved::Ambiguous { .. } => ex.edits_ambiguous += 1,
        }
    }
    ex.posts.retain(|p| !unposted.contains(p.as_str()));
    ex
}

/// One write that did not read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// `user`, `post`, `follow` (edge absent), `unfollow` (edge still present), `message`
    /// (not at its seq), `gap` (a conversation's seqs are not 1, 2, 3, …), `edit` (a message
    /// without its acknowledged text), `member_added` (not a member), `member_removed` (still
    /// a member), `like` (not among the post's likers), `unlike` (still among them),
    /// `like_count` (the post's count never settled on its number of likers), or likewise
    /// `repost`, `unrepost` and `repost_count`; `mark_read` (a notification at or below an
    /// acknowledged mark-read reads as unread), `password_old` (a replaced password still signs
    /// in), `password_session` (a revoked session still authenticates), `deleted_user` (a
    /// deleted user still reads), `deleted_login` (still signs in), `deleted_follow` (still
    /// among the followers of the user it followed, or that user's count never settled on their
    /// followers), `handle_freed` (no sign-up could take the handle).
    pub kind: String,
    /// The user, post or message id, the followee, the member; for a gap the first seq out of
    /// place, for an edit the seq and the text found.
    pub id: String,
    /// The follower, for edges; the conversation, for messages, gaps, edits and members.
    pub user: Option<String>,
    /// Where it was missing.
    pub target: String,
}

impl Missing {
    /// A write of this `kind` on `id`, for `user` (if any), missing at `target`.
    fn new(
        kind: impl Into<String>,
        id: impl Into<String>,
        user: Option<String>,
        target: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            user,
            target: target.into(),
        }
    }
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
    /// Acknowledged edits checked per target (by [`verify_messages`]).
    #[serde(default)]
    pub edits: u64,
    /// Edited messages whose text was not checked: an edit of unknown outcome.
    #[serde(default)]
    pub edits_ambiguous: u64,
    /// Groups whose members were read per target (by [`verify_messages`]).
    #[serde(default)]
    pub groups: u64,
    /// Memberships (group, user) checked per target.
    #[serde(default)]
    pub memberships: u64,
    /// Memberships not checked because their final state is ambiguous.
    #[serde(default)]
    pub memberships_ambiguous: u64,
    /// Of those, the memberships made ambiguous by a change whose outcome is unknown.
    #[serde(default)]
    pub memberships_unknown: u64,
    /// Likes (post, liker) checked per target; each liked post's count is checked too.
    #[serde(default)]
    pub likes: u64,
    /// Likes not checked because their final state is ambiguous.
    #[serde(default)]
    pub likes_ambiguous: u64,
    /// Reposts (post, reposter) checked per target; each reposted post's count is checked too.
    #[serde(default)]
    pub reposts: u64,
    /// Reposts not checked because their final state is ambiguous.
    #[serde(default)]
    pub reposts_ambiguous: u64,
    /// Users whose notifications were checked against their mark-reads per target (by
    /// [`verify_accounts`]).
    #[serde(default)]
    pub marks: u64,
    /// Notifications at or below a mark-read found read, over every target.
    #[serde(default)]
    pub marked_read: u64,
    /// Acknowledged password changes checked per target.
    #[serde(default)]
    pub passwords: u64,
    /// Acknowledged account deletions checked per target (and their handles freed).
    #[serde(default)]
    pub deletions: u64,
    /// Acknowledged chat messages below their conversation's history retention floor (trimmed,
    /// not lost), over every target.
    #[serde(default)]
    pub trimmed: u64,
    /// Acked writes not read back (chat messages, edits and memberships, unless
    /// [`verify_messages`] checked them).
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
    all_missing(ids, concurrency, |id| {
        let there = exists(id);
        async move {
            let there = there
                .await
                .map_err(|e| LoadError::setup(format!("reading {kind} {id} at {target}"), e))?;
            Ok::<_, LoadError>(
                (!there).then(|| Missing::new(kind, id.clone(), None, target.to_string())),
            )
        }
    })
    .await
}

/// Runs `check` on every item, `concurrency` (at least one) at a time, and gathers what each
/// found, in the order they finish; the first error ends it. Every check of the verification
/// reads its targets this way.
async fn concurrently<I, C, T, F, Fut>(
    items: I,
    concurrency: usize,
    check: F,
) -> Result<C, LoadError>
where
    I: IntoIterator,
    C: Default + Extend<T>,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = Result<T, LoadError>>,
{
    stream::iter(items)
        .map(check)
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// [`concurrently`] of checks that each find what is missing (a list of them, or one or none):
/// all they found.
async fn all_missing<I, M, F, Fut>(
    items: I,
    concurrency: usize,
    check: F,
) -> Result<Vec<Missing>, LoadError>
where
    I: IntoIterator,
    M: IntoIterator<Item = Missing>,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = Result<M, LoadError>>,
{
    let found: Vec<M> = concurrently(items, concurrency, check).await?;
    Ok(found.into_iter().flatten().collect())
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
        likes: ex.likes.len() as u64,
        likes_ambiguous: ex.likes_ambiguous,
        reposts: ex.reposts.len() as u64,
        reposts_ambiguous: ex.reposts_ambiguous,
        skipped: ex.skipped
            + ex.messages.values().map(|m| m.len() as u64).sum::<u64>()
            + ex.edits.values().map(|e| e.len() as u64).sum::<u64>()
            + ex.groups
                .values()
                .map(|g| g.members.len() as u64)
                .sum::<u64>(),
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
        let found = all_missing(by_user, concurrency, |(user, edges)| async move {
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
                    .map(|(followee, want)| {
                        Missing::new(
                            if want { "follow" } else { "unfollow" },
                            followee.to_string(),
                            Some(user.to_string()),
                            target.clone(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
        out.missing.extend(found);

        for counted in [&LIKES, &REPOSTS] {
            let map = if counted.list == "likes" {
                &ex.likes
            } else {
                &ex.reposts
            };
            let missing = missing_counted(http, target, token, concurrency, counted, map).await?;
            out.missing.extend(missing);
        }
    }
    Ok(out)
}

/// A set of users per post that the verification reads back: likes or reposts.
struct Counted {
    /// The list endpoint (`/v1/posts/{id}/{list}`) and the count (`counts.{list}`).
    list: &'static str,
    /// The kinds of [`Missing`]: present, absent, count.
    on: &'static str,
    off: &'static str,
    count: &'static str,
}

const LIKES: Counted = Counted {
    list: "likes",
    on: "like",
    off: "unlike",
    count: "like_count",
};

const REPOSTS: Counted = Counted {
    list: "reposts",
    on: "repost",
    off: "unrepost",
    count: "repost_count",
};

/// What of `map` ((post, user) → must exist) `target` does not hold, and each post whose count
/// does not settle on its number of users there.
async fn missing_counted(
    http: &Http,
    target: &str,
    token: &str,
    concurrency: usize,
    counted: &Counted,
    map: &BTreeMap<(String, String), bool>,
) -> Result<Vec<Missing>, LoadError> {
    let mut by_post: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
    for ((post, user), want) in map {
        by_post
            .entry(post.as_str())
            .or_default()
            .push((user.as_str(), *want));
    }
    all_missing(by_post, concurrency, |(post, users)| async move {
        let (have, n) = settled(http, target, token, post, counted.list).await?;
        let mut out: Vec<Missing> = users
            .into_iter()
            .filter(|(user, want)| have.contains(*user) != *want)
            .map(|(user, want)| {
                Missing::new(
                    if want { counted.on } else { counted.off },
                    post.to_string(),
                    Some(user.to_string()),
                    target.to_string(),
                )
            })
            .collect();
        if n != have.len() as u64 {
            out.push(Missing::new(
                counted.count,
                format!("{post}: {n} counted, {} {}", have.len(), counted.list),
                None,
                target.to_string(),
            ));
        }
        Ok::<_, LoadError>(out)
    })
    .await
}

/// A post's users of `list` (`likes`, `reposts`) at `target` and its count of them there, once
/// the count (derived a consumer pass behind) equals the number of users, or as last read after
/// 30 s.
async fn settled(
    http: &Http,
    target: &str,
    token: &str,
    post: &str,
    list: &str,
) -> Result<(HashSet<String>, u64), LoadError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let read = |what: &str, e| {
            LoadError::setup(format!("reading the {what} of {post} at {target}"), e)
        };
        let have: HashSet<String> = api::post_users(http, target, token, post, list)
            .await
            .map_err(|e| read(list, e))?
            .into_iter()
            .collect();
        let counted = api::post_count(http, target, token, post, list)
            .await
            .map_err(|e| read("count", e))?;
        if counted == have.len() as u64 || tokio::time::Instant::now() >= deadline {
            return Ok((have, counted));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
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

/// One conversation [`verify_messages`] reads: as whom, and what must hold of it.
struct ConvCheck<'a> {
    conv: &'a str,
    token: &'a str,
    acked: &'a [AckedMessage],
    edits: &'a [AckedEdit],
    group: Option<&'a GroupExpectation>,
}

/// Reads every conversation of `ex.messages`, `ex.edits` and `ex.groups` back from every target,
/// as one who wrote to it (`tokens`: user id → a session token; a group as the one who changed
/// its members, else a sender or an editor), and checks that each acknowledged message is at its
/// seq, that the history's seqs run 1, 2, 3, … without a gap or a repeat (edits and membership
/// changes included: entries of the log with seqs of their own), that each acknowledged edit's
/// text is its message's, and that each group's members are as its acknowledged changes left
/// them (`GET /v1/conversations/{id}`). Conversations none of whose writers has a token are
/// counted in `skipped`.
pub async fn verify_messages(
    http: &Http,
    targets: &[String],
    ex: &Expectations,
    tokens: &std::collections::HashMap<String, String>,
    concurrency: usize,
) -> Result<Verification, LoadError> {
    let mut out = Verification {
        targets: targets.len(),
        edits_ambiguous: ex.edits_ambiguous,
        memberships_ambiguous: ex.members_ambiguous,
        memberships_unknown: ex.members_unknown,
        ..Verification::default()
    };
    let convs: BTreeSet<&String> = ex
        .messages
        .keys()
        .chain(ex.edits.keys())
        .chain(ex.groups.keys())
        .collect();
    let mut checked: Vec<ConvCheck<'_>> = Vec::new();
    for conv in convs {
        let acked = ex.messages.get(conv).map_or(&[][..], Vec::as_slice);
        let edits = ex.edits.get(conv).map_or(&[][..], Vec::as_slice);
        let group = ex.groups.get(conv);
        let token = group
            .and_then(|g| tokens.get(&g.by))
            .or_else(|| acked.iter().find_map(|(_, _, who)| tokens.get(who)))
            .or_else(|| edits.iter().find_map(|(_, _, who)| tokens.get(who)));
        match token {
            Some(token) => checked.push(ConvCheck {
                conv,
                token,
                acked,
                edits,
                group,
            }),
            None => {
                out.skipped += (acked.len() + edits.len()) as u64
                    + group.map_or(0, |g| g.members.len() as u64);
            }
        }
    }
    out.conversations = checked.len() as u64;
    out.messages = checked.iter().map(|c| c.acked.len() as u64).sum();
    out.edits = checked.iter().map(|c| c.edits.len() as u64).sum();
    out.groups = checked.iter().filter(|c| c.group.is_some()).count() as u64;
    out.memberships = checked
        .iter()
        .filter_map(|c| c.group)
        .map(|g| g.members.len() as u64)
        .sum();
    for target in targets {
        let found: Vec<(Vec<Missing>, u64)> =
            concurrently(checked.iter(), concurrency, |c| async move {
                let history = api::messages(http, target, c.token, c.conv)
                    .await
                    .map_err(|e| {
                        LoadError::setup(format!("reading conversation {} at {target}", c.conv), e)
                    })?;
                let first = history.first_seq;
                let (mut missing, trimmed) =
                    check_history_from(first, c.conv, target, c.acked, &history.items);
                missing.extend(check_edits_from(
                    first,
                    c.conv,
                    target,
                    c.edits,
                    &history.items,
                ));
                if let Some(g) = c.group {
                    let members =
                        api::members(http, target, c.token, c.conv)
                            .await
                            .map_err(|e| {
                                LoadError::setup(format!("reading group {} at {target}", c.conv), e)
                            })?;
                    missing.extend(check_members(c.conv, target, &g.members, &members));
                }
                Ok::<_, LoadError>((missing, trimmed))
            })
            .await?;
        for (missing, trimmed) in found {
            out.missing.extend(missing);
            out.trimmed += trimmed;
        }
    }
    Ok(out)
}

/// What is wrong with one conversation's history from `first_seq` (the server's retention
/// floor; 1: nothing trimmed): gaps or repeats in its seqs from there, and acknowledged messages
/// at or above it not at their seq; and how many acknowledged messages are below it (trimmed by
/// the history retention, not lost). Entries that are not chat messages (edits, membership
/// changes) have seqs of their own and count in the gap check like any other.
fn check_history_from(
    first_seq: u64,
    conv: &str,
    target: &str,
    acked: &[AckedMessage],
    history: &[api::StoredMessage],
) -> (Vec<Missing>, u64) {
    let mut out = Vec::new();
    let missing = |kind: &str, id: String| Missing::new(kind, id, Some(conv.to_string()), target);
    if let Some((i, m)) = history
        .iter()
        .enumerate()
        .find(|(i, m)| m.seq != first_seq + *i as u64)
    {
        out.push(missing(
            "gap",
            format!("seq {} at position {}", m.seq, i + 1),
        ));
    }
    let mut trimmed = 0;
    for (seq, id, _) in acked {
        if *seq < first_seq {
            trimmed += 1;
        } else if at_seq(history, first_seq, *seq).is_none_or(|m| m.id != *id || m.kind != "text") {
            out.push(missing("message", id.clone()));
        }
    }
    (out, trimmed)
}

/// The entry of a whole history from `first_seq` at `seq`: at position `seq - first_seq` (none
/// when a gap moved it).
fn at_seq(history: &[api::StoredMessage], first_seq: u64, seq: u64) -> Option<&api::StoredMessage> {
    seq.checked_sub(first_seq)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| history.get(i))
        .filter(|m| m.seq == seq)
}

/// The acknowledged edits of one conversation whose message does not hold their text (those of
/// messages below `first_seq`, trimmed, are not checked).
fn check_edits_from(
    first_seq: u64,
    conv: &str,
    target: &str,
    edits: &[AckedEdit],
    history: &[api::StoredMessage],
) -> Vec<Missing> {
    edits
        .iter()
        .filter(|(seq, _, _)| *seq >= first_seq)
        .filter_map(|(seq, body, _)| {
            let found = at_seq(history, first_seq, *seq).filter(|m| m.kind == "text");
            (found.is_none_or(|m| m.body != *body)).then(|| {
                let id = format!(
                    "seq {seq}: {body:?} expected, {:?} found",
                    found.map(|m| m.body.as_str())
                );
                Missing::new("edit", id, Some(conv.to_string()), target)
            })
        })
        .collect()
}

/// The memberships of one group that are not as `want` says, given its `members` now.
fn check_members(
    conv: &str,
    target: &str,
    want: &BTreeMap<String, bool>,
    members: &[String],
) -> Vec<Missing> {
    let have: HashSet<&str> = members.iter().map(String::as_str).collect();
    want.iter()
        .filter(|(user, must)| have.contains(user.as_str()) != **must)
        .map(|(user, must)| {
            let kind = if *must {
                "member_added"
            } else {
                "member_removed"
            };
            Missing::new(kind, user.clone(), Some(conv.to_string()), target)
        })
        .collect()
}

/// How long [`verify_accounts`] waits for the sweeper of deleted accounts, in all: to take the
/// deleted users off the followers at every target, and to free their handles after the grace
/// period.
pub const SWEEP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks `ex`'s mark-reads, password changes and account deletions at every target (see the
/// module doc), as each user (`tokens`: user id → a session token; a user without one is
/// skipped), then claims each deleted handle once with a sign-up at the first target (it must
/// succeed within [`SWEEP_WAIT`]: the nodes' `--handle-grace` must be short).
pub async fn verify_accounts(
    http: &Http,
    targets: &[String],
    ex: &Expectations,
    tokens: &std::collections::HashMap<String, String>,
    concurrency: usize,
) -> Result<Verification, LoadError> {
    let deadline = tokio::time::Instant::now() + SWEEP_WAIT;
    let mut out = Verification {
        targets: targets.len(),
        ..Verification::default()
    };
    let marks: Vec<(&String, u64, &String)> = ex
        .marks
        .iter()
        .filter_map(|(u, m)| tokens.get(u).map(|t| (u, *m, t)))
        .collect();
    let passwords: Vec<(&String, &String, &String, &String)> = ex
        .passwords
        .iter()
        .filter_map(|(u, revoked, old)| tokens.get(u).map(|t| (u, t, revoked, old)))
        .collect();
    let mut followed: BTreeMap<&String, (&String, Vec<&String>)> = BTreeMap::new();
    for (deleted, _, by) in &ex.deletions {
        if let Some(t) = tokens.get(by) {
            followed
                .entry(by)
                .or_insert((t, Vec::new()))
                .1
                .push(deleted);
        }
    }
    out.skipped += (ex.marks.len() - marks.len() + ex.passwords.len() - passwords.len()) as u64;
    out.marks = marks.len() as u64;
    out.passwords = passwords.len() as u64;
    out.deletions = ex.deletions.len() as u64;
    // The handles of the users who changed their passwords (a login needs one).
    let handles: BTreeMap<&String, String> = concurrently(
        passwords.iter().map(|p| (p.0, p.1)),
        concurrency,
        |(user, token)| async move {
            let first = targets
                .first()
                .ok_or_else(|| LoadError::config("target", "at least one target"))?;
            let h = api::handle_of(http, first, token, user)
                .await
                .map_err(|e| LoadError::setup(format!("the handle of {user}"), e))?;
            Ok::<_, LoadError>((user, h))
        },
    )
    .await?;
    for target in targets {
        let t = target.as_str();
        let read_err = |what: String, e| LoadError::setup(format!("{what} at {t}"), e);
        // Mark-reads: every notification at or below the marker reads as read.
        let found: Vec<(Vec<Missing>, u64)> =
            concurrently(&marks, concurrency, |&(user, up_to, token)| async move {
                let mut missing = Vec::new();
                let mut read = 0;
                let mut cursor: Option<String> = None;
                // 400 kept: five pages of 100 reach the end.
                for _ in 0..5 {
                    let (items, next) = api::notifications(http, t, token, 100, cursor.as_deref())
                        .await
                        .map_err(|e| read_err(format!("the notifications of {user}"), e))?;
                    for (id, is_read) in &items {
                        if id.parse::<u64>().is_ok_and(|id| id <= up_to) {
                            if *is_read {
                                read += 1;
                            } else {
                                missing.push(Missing::new(
                                    "mark_read",
                                    format!("{id} (marked up to {up_to})"),
                                    Some(user.clone()),
                                    t.to_string(),
                                ));
                            }
                        }
                    }
                    match next {
                        Some(n) if !items.is_empty() => cursor = Some(n),
                        _ => break,
                    }
                }
                Ok::<_, LoadError>((missing, read))
            })
            .await?;
        for (m, read) in found {
            out.missing.extend(m);
            out.marked_read += read;
        }
        // Password changes: the replaced password and the revoked session are refused.
        let handles = &handles;
        let found = all_missing(
            &passwords,
            concurrency,
            |&(user, _, revoked, old)| async move {
                let mut missing = Vec::new();
                let miss = |kind: &str| Missing::new(kind, user.clone(), None, t.to_string());
                let session = api::session_status(http, t, revoked)
                    .await
                    .map_err(|e| read_err(format!("a revoked session of {user}"), e))?;
                if session != 401 {
                    missing.push(miss("password_session"));
                }
                if let Some(handle) = handles.get(user) {
                    let login = api::log_in_status(http, t, handle, old)
                        .await
                        .map_err(|e| read_err(format!("a replaced password of {user}"), e))?;
                    if login != 401 {
                        missing.push(miss("password_old"));
                    }
                }
                Ok::<_, LoadError>(missing)
            },
        )
        .await?;
        out.missing.extend(found);
        // Deletions: the user is unknown and cannot sign in.
        let found = all_missing(
            &ex.deletions,
            concurrency,
            |(deleted, handle, by)| async move {
                let mut missing = Vec::new();
                let miss = |kind: &str| {
                    Missing::new(kind, deleted.clone(), Some(by.clone()), t.to_string())
                };
                if let Some(token) = tokens.get(by) {
                    let there = api::user_exists(http, t, token, deleted)
                        .await
                        .map_err(|e| read_err(format!("deleted user {deleted}"), e))?;
                    if there {
                        missing.push(miss("deleted_user"));
                    }
                }
                let login =
                    api::log_in_status(http, t, handle, &crate::users::spare_password(handle))
                        .await
                        .map_err(|e| read_err(format!("signing in as deleted {handle}"), e))?;
                if login != 401 {
                    missing.push(miss("deleted_login"));
                }
                Ok::<_, LoadError>(missing)
            },
        )
        .await?;
        out.missing.extend(found);
        // ... and swept off the followers of whom it followed, whose count follows.
        let found = all_missing(
            &followed,
            concurrency,
            |(by, (token, deleted))| async move {
                loop {
                    let have: HashSet<String> = api::followers(http, t, token, by)
                        .await
                        .map_err(|e| read_err(format!("the followers of {by}"), e))?
                        .into_iter()
                        .collect();
                    let n = api::followers_count(http, t, token, by)
                        .await
                        .map_err(|e| read_err(format!("the followers count of {by}"), e))?;
                    let left: Vec<&&String> = deleted
                        .iter()
                        .filter(|d| have.contains(d.as_str()))
                        .collect();
                    let settled = left.is_empty() && n == have.len() as u64;
                    if settled || tokio::time::Instant::now() >= deadline {
                        let mut missing: Vec<Missing> = left
                            .into_iter()
                            .map(|d| {
                                Missing::new(
                                    "deleted_follow",
                                    d.to_string(),
                                    Some(by.to_string()),
                                    t.to_string(),
                                )
                            })
                            .collect();
                        if n != have.len() as u64 {
                            missing.push(Missing::new(
                                "deleted_follow",
                                format!("{by}: {n} counted, {} followers", have.len()),
                                None,
                                t.to_string(),
                            ));
                        }
                        return Ok::<_, LoadError>(missing);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
        )
        .await?;
        out.missing.extend(found);
    }
    // Handles freed: a sign-up takes each (409 while the grace period lasts).
    if let Some(first) = targets.first() {
        let found = all_missing(&ex.deletions, concurrency, |(_, handle, _)| async move {
            loop {
                let pw = format!("{handle}-reclaimed");
                match api::sign_up(http, first, handle, &pw).await {
                    Ok(_) => return Ok::<_, LoadError>(None),
                    Err(e)
                        if matches!(e.status(), Some(409 | 429 | 503))
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    Err(e) if e.status() == Some(409) => {
                        return Ok(Some(Missing::new(
                            "handle_freed",
                            handle.clone(),
                            None,
                            first.clone(),
                        )));
                    }
                    Err(e) => {
                        return Err(LoadError::setup(format!("claiming {handle} at {first}"), e));
                    }
                }
            }
        })
        .await?;
        out.missing.extend(found);
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
            acked_us,
            ..Acked::acked_now(kind, id.into(), user, "t", sent_us)
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

    fn entry(seq: u64, id: &str, kind: &str, body: &str) -> api::StoredMessage {
        api::StoredMessage {
            seq,
            id: id.into(),
            kind: kind.into(),
            body: body.into(),
        }
    }

    /// A membership change of `member` in group `conv` by its owner `o`.
    fn member(added: bool, member: &str, sent: u64, at: u64) -> Acked {
        Acked {
            conv: Some("g1".into()),
            added: Some(added),
            ..op(AckedKind::Member, "o", member, sent, at)
        }
    }

    /// An edit by `u` of message `seq` of `conv` to `body`.
    fn edit(conv: &str, seq: u64, body: &str, sent: u64, at: u64) -> Acked {
        Acked {
            conv: Some(conv.into()),
            seq: Some(seq),
            body: Some(body.into()),
            ..op(AckedKind::Edit, "u", &format!("m{seq}"), sent, at)
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
        // A post deleted by its author, or perhaps (an unknown outcome), is not expected.
        let mut more = log.clone();
        more.extend([
            op(Post, "1", "p2", 0, 5),
            op(Post, "1", "p3", 0, 5),
            op(Unpost, "1", "p2", 10, 12),
            failed(Outcome::Unknown, Unpost, "1", "p3", 10, 20),
        ]);
        assert_eq!(expectations(&more).posts, vec!["p1".to_string()]);
        assert_eq!(ex.edges.len(), 2);
        assert!(!ex.edges[&("1".to_string(), "2".to_string())]);
        assert!(ex.edges[&("1".to_string(), "3".to_string())]);
        assert_eq!(ex.ambiguous, 1);
        assert_eq!(ex.skipped, 1, "a message without its conversation");
    }

    #[test]
    fn likes_resolve_per_post_and_liker_like_edges() {
        use AckedKind::*;
        use Outcome::*;
        let k = |post: &str, liker: &str| (post.to_string(), liker.to_string());
        let log = vec![
            op(Like, "1", "p1", 0, 10),
            op(Like, "1", "p1", 5, 12), // a retry: still liked
            op(Like, "2", "p1", 0, 10),
            op(Unlike, "2", "p1", 20, 30), // after the like: must be absent
            op(Like, "1", "p2", 0, 50),
            op(Unlike, "1", "p2", 10, 40), // in flight together: ambiguous
            failed(Unknown, Like, "3", "p1", 0, 5), // nothing acknowledged: nothing expected
            op(Follow, "1", "p1", 0, 10),  // an edge, not a like
        ];
        let ex = expectations(&log);
        assert_eq!(ex.likes.len(), 2, "{:?}", ex.likes);
        assert!(ex.likes[&k("p1", "1")]);
        assert!(!ex.likes[&k("p1", "2")]);
        assert_eq!(ex.likes_ambiguous, 1);
        assert_eq!(ex.edges.len(), 1);
        assert!(ex.reposts.is_empty());
    }

    #[test]
    fn account_writes_expect_the_highest_mark_and_only_acknowledged_changes() {
        use AckedKind::*;
        use Outcome::*;
        let with_body = |a: crate::acked::Acked, body: &str| crate::acked::Acked {
            body: Some(body.into()),
            ..a
        };
        let log = vec![
            op(MarkRead, "1", "30", 0, 10),
            op(MarkRead, "1", "20", 5, 12), // an older mark: the marker stays at 30
            op(MarkRead, "2", "7", 0, 10),
            op(MarkRead, "3", "not-an-id", 0, 10),
            with_body(op(Password, "1", "st_second", 0, 10), "password1"),
            // A change of unknown outcome: its old password may still sign in.
            with_body(
                failed(Unknown, Password, "2", "st_other", 0, 10),
                "password1",
            ),
            with_body(op(Delete, "1", "9", 0, 10), "ft_1x0"),
        ];
        let ex = expectations(&log);
        assert_eq!(
            ex.marks.into_iter().collect::<Vec<_>>(),
            [("1".to_string(), 30), ("2".to_string(), 7)]
        );
        assert_eq!(
            ex.passwords,
            [("1".into(), "st_second".into(), "password1".into())]
        );
        assert_eq!(ex.deletions, [("9".into(), "ft_1x0".into(), "1".into())]);
        assert_eq!(ex.skipped, 1, "a mark-read of no id");
        assert!(ex.users.is_empty() && ex.edges.is_empty());
    }

    #[test]
    fn reposts_resolve_apart_from_likes_by_the_same_rule() {
        use AckedKind::*;
        let k = |post: &str, user: &str| (post.to_string(), user.to_string());
        let log = vec![
            op(Repost, "1", "p1", 0, 10),
            op(Repost, "1", "p1", 5, 12), // a retry: still reposted
            op(Like, "1", "p1", 0, 10),   // a like of the same post: apart
            op(Repost, "2", "p1", 0, 10),
            op(Unrepost, "2", "p1", 20, 30), // after the repost: must be absent
            op(Repost, "1", "p2", 0, 50),
            op(Unrepost, "1", "p2", 10, 40), // in flight together: ambiguous
        ];
        let ex = expectations(&log);
        assert_eq!(ex.reposts.len(), 2, "{:?}", ex.reposts);
        assert!(ex.reposts[&k("p1", "1")]);
        assert!(!ex.reposts[&k("p1", "2")]);
        assert_eq!(ex.reposts_ambiguous, 1);
        assert_eq!(ex.likes.len(), 1);
    }

    #[test]
    fn a_history_with_a_gap_or_a_lost_message_is_reported() {
        let m = |seq: u64, id: &str| entry(seq, id, "text", "");
        let acked = vec![
            (1, "a".to_string(), "u".to_string()),
            (3, "c".into(), "u".into()),
        ];
        assert!(
            check_history_from(1, "c1", "t", &acked, &[m(1, "a"), m(2, "b"), m(3, "c")])
                .0
                .is_empty()
        );
        let (gap, _) = check_history_from(1, "c1", "t", &acked, &[m(1, "a"), m(3, "c")]);
        assert_eq!(
            gap.iter().map(|x| x.kind.as_str()).collect::<Vec<_>>(),
            ["gap", "message"],
            "{gap:?}"
        );
        let (lost, _) = check_history_from(1, "c1", "t", &acked, &[m(1, "a"), m(2, "b")]);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].id, "c");
        let (other, _) =
            check_history_from(1, "c1", "t", &acked, &[m(1, "x"), m(2, "b"), m(3, "c")]);
        assert_eq!(other[0].kind, "message");
    }

    #[test]
    fn messages_below_the_retention_floor_are_trimmed_and_a_gap_above_it_is_still_reported() {
        let m = |seq: u64, id: &str| entry(seq, id, "text", "");
        let acked = vec![
            (1, "a".to_string(), "u".to_string()),
            (2, "b".into(), "u".into()),
            (4, "d".into(), "u".into()),
        ];
        // The server keeps from seq 3: 1 and 2 are trimmed, not missing.
        let (missing, trimmed) = check_history_from(3, "c1", "t", &acked, &[m(3, "c"), m(4, "d")]);
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(trimmed, 2);
        // A gap above the floor (3 absent) and a lost message there are still found.
        let (missing, trimmed) = check_history_from(3, "c1", "t", &acked, &[m(4, "d")]);
        assert_eq!(
            missing.iter().map(|x| x.kind.as_str()).collect::<Vec<_>>(),
            ["gap", "message"],
            "{missing:?}"
        );
        assert_eq!(trimmed, 2);
        // Edits of trimmed messages are not checked; above the floor they are.
        let edits = vec![
            (1, "gone".to_string(), "u".to_string()),
            (4, "new".into(), "u".into()),
        ];
        let missing = check_edits_from(3, "c1", "t", &edits, &[m(3, "c"), m(4, "d")]);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].id.starts_with("seq 4"), "{missing:?}");
    }

    #[test]
    fn the_last_acknowledged_membership_change_wins_unless_one_of_unknown_outcome_came_after() {
        let log = vec![
            // The setup's member, removed later: must be absent.
            member(true, "a", 0, 1),
            member(false, "a", 10, 12),
            // The node died after committing the removal: the addition acked before is undone.
            member(true, "b", 0, 1),
            Acked {
                outcome: Outcome::Unknown,
                ..member(false, "b", 10, 15)
            },
            // A removal of unknown outcome that failed before the addition was sent came first.
            Acked {
                outcome: Outcome::Unknown,
                ..member(false, "c", 0, 1)
            },
            member(true, "c", 5, 8),
            // A timed-out removal may be finished by the server at any time.
            Acked {
                outcome: Outcome::TimedOut,
                ..member(false, "d", 0, 10)
            },
            member(true, "d", 20, 25),
            // Nothing acknowledged: nothing expected, not ambiguous.
            Acked {
                outcome: Outcome::Unknown,
                ..member(true, "e", 0, 5)
            },
            // A repeat of the same change of unknown outcome changes nothing (idempotent).
            member(false, "f", 0, 5),
            Acked {
                outcome: Outcome::Unknown,
                ..member(false, "f", 10, 20)
            },
            // A change logged without its group cannot be checked.
            Acked {
                conv: None,
                ..member(true, "g", 0, 1)
            },
        ];
        let ex = expectations(&log);
        let g = &ex.groups["g1"];
        assert_eq!(g.by, "o", "the group is read as the one who changed it");
        let want: BTreeMap<String, bool> = [("a", false), ("c", true), ("f", false)]
            .into_iter()
            .map(|(u, m)| (u.to_string(), m))
            .collect();
        assert_eq!(g.members, want);
        assert_eq!((ex.members_ambiguous, ex.members_unknown), (2, 2));
        assert_eq!(ex.skipped, 1);
        assert!(ex.edges.is_empty());
    }

    #[test]
    fn resolve_takes_the_last_acknowledged_state_by_acknowledgement_time() {
        let a = |sent, at| op(AckedKind::Edit, "u", "m", sent, at);
        let (x, y, z) = (a(15, 30), a(0, 10), a(20, 25));
        // Logged out of order: the acknowledgement times decide. y was acked before x and z
        // were sent.
        assert_eq!(resolve(vec![(&x, "x"), (&y, "y")]), Resolved::Expect("x"));
        assert_eq!(resolve(vec![(&y, "y"), (&z, "z")]), Resolved::Expect("z"));
        // x was acked after z was sent: they raced.
        assert_eq!(
            resolve(vec![(&x, "x"), (&z, "z")]),
            Resolved::Ambiguous { unknown: false }
        );
        assert_eq!(resolve::<&str>(vec![]), Resolved::Nothing);
    }

    #[test]
    fn an_acknowledged_edit_must_hold_and_one_of_unknown_outcome_is_not_checked() {
        let log = vec![
            edit("c1", 2, "edited 1", 0, 5),
            Acked {
                outcome: Outcome::Unknown,
                ..edit("c1", 4, "edited 2", 0, 5)
            },
            Acked {
                outcome: Outcome::TimedOut,
                ..edit("c2", 1, "edited 3", 0, 5)
            },
            // An edit of unknown outcome whose message had no acknowledged edit is not expected.
            Acked {
                outcome: Outcome::Unknown,
                ..op(AckedKind::Post, "u", "p", 0, 1)
            },
        ];
        let ex = expectations(&log);
        assert_eq!(
            ex.edits,
            BTreeMap::from([(
                "c1".to_string(),
                vec![(2, "edited 1".to_string(), "u".to_string())]
            )])
        );
        assert_eq!(ex.edits_ambiguous, 2);
        assert!(ex.posts.is_empty());
    }

    #[test]
    fn entries_other_than_messages_keep_the_history_gap_free_and_edits_read_back() {
        let history = [
            entry(1, "a", "text", "edited 1"),
            entry(2, "x", "member_added", ""),
            entry(3, "b", "text", "load message"),
            entry(4, "y", "edit", "edited 1"),
        ];
        let acked = vec![
            (1, "a".to_string(), "u".to_string()),
            (3, "b".into(), "u".into()),
        ];
        assert!(
            check_history_from(1, "c1", "t", &acked, &history)
                .0
                .is_empty()
        );
        let edited = vec![(1, "edited 1".to_string(), "u".to_string())];
        assert!(check_edits_from(1, "c1", "t", &edited, &history).is_empty());
        // The text not edited, and an edit expected of an entry that is not a message.
        let lost = vec![
            (3, "edited 2".to_string(), "u".to_string()),
            (4, "edited 1".into(), "u".into()),
            (9, "edited 3".into(), "u".into()),
        ];
        let missing = check_edits_from(1, "c1", "t", &lost, &history);
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing.iter().all(|m| m.kind == "edit"));
        assert_eq!(
            missing[0].id,
            r#"seq 3: "edited 2" expected, Some("load message") found"#
        );
        // A message whose seq holds another kind of entry is not there.
        let (moved, _) = check_history_from(1, "c1", "t", &[(2, "x".into(), "u".into())], &history);
        assert_eq!(moved[0].kind, "message");
    }

    #[test]
    fn members_are_checked_both_ways() {
        let want: BTreeMap<String, bool> = [("a", true), ("b", false), ("c", true)]
            .into_iter()
            .map(|(u, m)| (u.to_string(), m))
            .collect();
        let have = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_members("g1", "t", &want, &have(&["o", "a", "c"])).is_empty());
        let wrong = check_members("g1", "t", &want, &have(&["o", "a", "b"]));
        let got: Vec<(&str, &str)> = wrong
            .iter()
            .map(|m| (m.kind.as_str(), m.id.as_str()))
            .collect();
        assert_eq!(got, [("member_removed", "b"), ("member_added", "c")]);
        assert_eq!(wrong[0].user.as_deref(), Some("g1"));
    }
}
