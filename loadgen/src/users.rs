//! The setup phase: sign up `--users N` users (or log in existing ones, e.g. the `user{i}` graph
//! made by `starling seed`), spread round-robin over the targets, wait until every target sees
//! every user, then optionally build a small follow graph (user i follows the next `follows`
//! users), give everyone a few posts so feeds are not empty, open a 1:1 conversation between each
//! user and the next, and give each user a group of their own (made with the next
//! [`GROUP_MEMBERS`] users; the `group` operation adds and removes the next
//! [`GROUP_CANDIDATES`]), and `spares` spare accounts per user for the `delete` operation (each
//! follows its user). Setup writes are acknowledged writes too and go to the acked log (the spare
//! accounts and their follows are not: the `delete` operation logs their deletion).

use crate::LoadError;
use crate::acked::{Acked, AckedKind, AckedLog, now_us};
use crate::api;
use crate::error::RequestError;
use crate::http::Http;
use futures_util::{StreamExt, TryStreamExt, stream};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// The members a user's group starts with besides its owner: the next users.
pub const GROUP_MEMBERS: usize = 3;
/// The users the `group` operation adds to or removes from a user's group: the next ones.
pub const GROUP_CANDIDATES: usize = 6;
/// Acknowledged chat messages a user keeps for the `edit` operation, at most (the oldest go).
pub const EDITABLE_CAP: usize = 64;

/// A candidate of a user's group: their id, and whether they are a member as last requested.
pub type Candidate = (String, bool);

/// A user taking part in the run.
#[derive(Debug, Clone)]
pub struct User {
    /// Index in the run (0..N).
    pub index: usize,
    /// The handle.
    pub handle: String,
    /// The user's id.
    pub id: String,
    /// A session token.
    pub token: String,
    /// The base URL this user talks to.
    pub target: String,
    /// The 1:1 conversation with the next user, when the setup opened conversations.
    pub conv: Option<String>,
    /// The group this user owns, when the setup made groups.
    pub group: Option<String>,
    /// What the `group` and `edit` operations remember of this user: shared by the clones.
    pub live: Arc<Live>,
}

/// Two users are equal when everything but their [`Live`] state is (that state changes under
/// the load).
impl PartialEq for User {
    fn eq(&self, o: &Self) -> bool {
        (
            self.index,
            &self.handle,
            &self.id,
            &self.token,
            &self.target,
            &self.conv,
            &self.group,
        ) == (
            o.index, &o.handle, &o.id, &o.token, &o.target, &o.conv, &o.group,
        )
    }
}

impl Eq for User {}

/// A spare account of a load user, made to be deleted by the `delete` operation; it follows
/// its user. Its password is [`spare_password`] of its handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spare {
    /// Its id.
    pub id: String,
    /// Its handle.
    pub handle: String,
    /// A session token of it.
    pub token: String,
}

/// The password of a spare account (and of one the `delete` operation signs up when its user
/// has no spare left): derived from the handle, so a verification can try it.
pub fn spare_password(handle: &str) -> String {
    format!("{handle}-spare-password")
}

/// What the `group`, `edit`, `password` and `delete` operations keep of a user from one request
/// to the next, and from one run to the next over the same users (the fault tests run the load as
/// consecutive runs).
#[derive(Debug, Default)]
pub struct Live {
    /// The candidates of the user's group (ids of the next [`GROUP_CANDIDATES`] users), each
    /// with whether it is a member as last requested. The `group` operation holds it for the
    /// whole of its request: one membership change of a user in flight at a time, so the last
    /// acknowledged change of each member is well defined.
    pub members: tokio::sync::Mutex<Vec<Candidate>>,
    /// The user's acknowledged chat messages not edited yet, `(conversation, seq, message id)`,
    /// oldest first: the `edit` operation takes each at most once (the newest), so no two edits
    /// of a message race.
    pub editable: parking_lot::Mutex<VecDeque<(String, u64, String)>>,
    /// The passwords the user's account may have, the likeliest first: the setup's, then each
    /// password change's new one (and its old one too while the change's outcome is unknown).
    /// The `password` operation holds it for the whole of its requests: one change in flight per
    /// user. Empty: the password is not known (users not made by [`setup`]).
    pub passwords: tokio::sync::Mutex<Vec<String>>,
    /// The user's spare accounts not deleted yet.
    pub spares: parking_lot::Mutex<Vec<Spare>>,
    /// Spare accounts the `delete` operation signed up for this user (their handles' suffix).
    pub spares_made: std::sync::atomic::AtomicU64,
}

impl Live {
    /// Remembers an acknowledged chat message for the `edit` operation.
    pub fn editable(&self, conv: &str, seq: u64, id: &str) {
        let mut q = self.editable.lock();
        if q.len() >= EDITABLE_CAP {
            q.pop_front();
        }
        q.push_back((conv.to_string(), seq, id.to_string()));
    }
}

/// The indexes of user `i`'s group candidates among `n` users: the next [`GROUP_CANDIDATES`],
/// without `i` itself or a repeat (fewer when there are fewer users).
pub fn group_candidates(i: usize, n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for k in 1..=GROUP_CANDIDATES {
        let j = (i + k) % n.max(1);
        if j != i && !out.contains(&j) {
            out.push(j);
        }
    }
    out
}

/// How to get the users.
#[derive(Debug, Clone)]
pub struct Setup {
    /// How many users.
    pub users: usize,
    /// Handle pattern: `{i}` is the user's index, `{run}` a random tag of this run
    /// (so repeated runs against one server do not collide), e.g. `ld{run}_{i}` or `user{i}`.
    pub handles: String,
    /// Every user's password.
    pub password: String,
    /// Only log in (the users exist already); otherwise sign up, and log in if the handle is taken.
    pub login_only: bool,
    /// Each user follows this many others.
    pub follows: usize,
    /// Each user writes this many posts.
    pub posts: usize,
    /// Setup requests in flight.
    pub concurrency: usize,
    /// The `{run}` tag.
    pub run_tag: String,
    /// Open a 1:1 conversation between each user and the next (for the `chat` and `edit`
    /// operations).
    pub conversations: bool,
    /// Give each user a group of their own with the next [`GROUP_MEMBERS`] users (for the
    /// `group` operation).
    pub groups: bool,
    /// Spare accounts per user for the `delete` operation (see [`Spare`]).
    pub spares: usize,
}

impl Setup {
    /// The handle of user `i`.
    pub fn handle(&self, i: usize) -> String {
        self.handles
            .replace("{i}", &i.to_string())
            .replace("{run}", &self.run_tag)
    }
}

/// Retries a setup step refused with 429 (auth is rate limited per client address) or 503 (the
/// documented "retry later": a key's owner that could not take the CAS in time, as a node whose
/// region members answer slowly while the setup's sign-ups hash passwords). Only for steps
/// whose retry is harmless: a sign-up (a retry that meets 409 logs in), a login, a follow, a
/// 1:1 conversation (the pair's one conversation is returned again).
async fn with_retry<T, F, Fut>(mut f: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RequestError>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if matches!(e.status(), Some(429 | 503)) && tries < 120 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            r => return r,
        }
    }
}

/// How long a user signed up at one target may take to be visible at the others.
const REPLICATION_WAIT: Duration = Duration::from_secs(60);

/// Waits until every user is visible at every target (`GET /v1/users/{id}` with the token of a
/// user of that target), so that the follows and conversations made next, each at the
/// follower's target, do not meet a 404 for a user signed up elsewhere whose record is still on
/// its way (replication is asynchronous: a CI run's setup followed a user 404 that way).
async fn await_replicated(http: &Http, users: &[User], c: usize) -> Result<(), LoadError> {
    let mut viewers: Vec<&User> = Vec::new();
    for u in users {
        if !viewers.iter().any(|v| v.target == u.target) {
            viewers.push(u);
        }
    }
    let checks: Vec<(&User, &User)> = viewers
        .iter()
        .flat_map(|v| {
            users
                .iter()
                .filter(|u| u.target != v.target)
                .map(move |u| (*v, u))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + REPLICATION_WAIT;
    stream::iter(checks)
        .map(|(viewer, u)| async move {
            let step = || format!("user {} visible at {}", u.handle, viewer.target);
            loop {
                match api::user_exists(http, &viewer.target, &viewer.token, &u.id).await {
                    Ok(true) => return Ok(()),
                    Ok(false) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(false) => return Err(LoadError::setup(step(), RequestError::Timeout)),
                    Err(e) => return Err(LoadError::setup(step(), e)),
                }
            }
        })
        .buffer_unordered(c)
        .try_collect::<()>()
        .await
}

/// Signs up or logs in every user, waits until each is visible at every target, then builds
/// the follow graph, the posts and the conversations.
pub async fn setup(
    http: &Http,
    targets: &[String],
    cfg: &Setup,
    acked: Option<&AckedLog>,
) -> Result<Vec<User>, LoadError> {
    if targets.is_empty() {
        return Err(LoadError::config("target", "at least one target"));
    }
    let c = cfg.concurrency.max(1);
    let mut users: Vec<User> = stream::iter(0..cfg.users)
        .map(|i| {
            let target = targets[i % targets.len()].clone();
            let handle = cfg.handle(i);
            async move {
                let pw = cfg.password.as_str();
                let sent_us = now_us();
                let (session, signed_up) = if cfg.login_only {
                    with_retry(|| api::log_in(http, &target, &handle, pw))
                        .await
                        .map(|s| (s, false))
                } else {
                    match with_retry(|| api::sign_up(http, &target, &handle, pw)).await {
                        Err(e) if e.status() == Some(409) => {
                            with_retry(|| api::log_in(http, &target, &handle, pw))
                                .await
                                .map(|s| (s, false))
                        }
                        r => r.map(|s| (s, true)),
                    }
                }
                .map_err(|e| LoadError::setup(format!("user {handle} at {target}"), e))?;
                if let (Some(log), true) = (acked, signed_up) {
                    let id = session.user_id.clone();
                    let user = &session.user_id;
                    let signed_up = Acked::acked_now(AckedKind::User, id, user, &target, sent_us);
                    log.record(signed_up).await;
                }
                let live = Live {
                    passwords: tokio::sync::Mutex::new(vec![cfg.password.clone()]),
                    ..Live::default()
                };
                Ok::<_, LoadError>(User {
                    index: i,
                    handle,
                    id: session.user_id,
                    token: session.token,
                    target,
                    conv: None,
                    group: None,
                    live: Arc::new(live),
                })
            }
        })
        .buffer_unordered(c)
        .try_collect()
        .await?;
    users.sort_by_key(|u| u.index);
    if cfg.follows > 0 || cfg.conversations || cfg.groups {
        await_replicated(http, &users, c).await?;
    }

    let n = users.len();
    let follows = cfg.follows.min(n.saturating_sub(1));
    let edges: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (1..=follows).map(move |k| (i, (i + k) % n)))
        .collect();
    let users_ref = &users;
    stream::iter(edges)
        .map(|(a, b)| async move {
            let (u, v) = (&users_ref[a], &users_ref[b]);
            let sent_us = now_us();
            with_retry(|| api::follow(http, &u.target, &u.token, &v.id))
                .await
                .map_err(|e| LoadError::setup(format!("{} follows {}", u.handle, v.handle), e))?;
            if let Some(log) = acked {
                let id = v.id.clone();
                let follow = Acked::acked_now(AckedKind::Follow, id, &u.id, &u.target, sent_us);
                log.record(follow).await;
            }
            Ok::<_, LoadError>(())
        })
        .buffer_unordered(c)
        .try_collect::<()>()
        .await?;

    let posts: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (0..cfg.posts).map(move |k| (i, k)))
        .collect();
    stream::iter(posts)
        .map(|(i, k)| async move {
            let u = &users_ref[i];
            let sent_us = now_us();
            let text = format!("setup post {k} by {}", u.handle);
            let id = api::post(http, &u.target, &u.token, &text)
                .await
                .map_err(|e| LoadError::setup(format!("post by {}", u.handle), e))?;
            if let Some(log) = acked {
                let post = Acked::acked_now(AckedKind::Post, id, &u.id, &u.target, sent_us);
                log.record(post).await;
            }
            Ok::<_, LoadError>(())
        })
        .buffer_unordered(c)
        .try_collect::<()>()
        .await?;

    if cfg.conversations && n > 1 {
        let convs: Vec<(usize, String)> = stream::iter(0..n)
            .map(|i| async move {
                let (u, v) = (&users_ref[i], &users_ref[(i + 1) % n]);
                let conv = with_retry(|| {
                    api::create_conversation(http, &u.target, &u.token, std::slice::from_ref(&v.id))
                })
                .await
                .map_err(|e| {
                    LoadError::setup(format!("conversation of {} and {}", u.handle, v.handle), e)
                })?;
                Ok::<_, LoadError>((i, conv))
            })
            .buffer_unordered(c)
            .try_collect()
            .await?;
        for (i, conv) in convs {
            users[i].conv = Some(conv);
        }
    }

    if cfg.groups && n > 1 {
        let users_ref = &users;
        let groups: Vec<(usize, String, Vec<Candidate>)> = stream::iter(0..n)
            .map(|i| async move {
                let u = &users_ref[i];
                let candidates: Vec<Candidate> = group_candidates(i, n)
                    .into_iter()
                    .enumerate()
                    .map(|(k, j)| (users_ref[j].id.clone(), k < GROUP_MEMBERS))
                    .collect();
                let members: Vec<String> = candidates
                    .iter()
                    .filter(|(_, member)| *member)
                    .map(|(id, _)| id.clone())
                    .collect();
                let sent_us = now_us();
                let group = api::create_group(http, &u.target, &u.token, &members, "g")
                    .await
                    .map_err(|e| LoadError::setup(format!("group of {}", u.handle), e))?;
                if let Some(log) = acked {
                    let acked_us = now_us();
                    for m in &members {
                        let member = AckedKind::Member;
                        log.record(Acked {
                            acked_us,
                            conv: Some(group.clone()),
                            added: Some(true),
                            ..Acked::acked_now(member, m.clone(), &u.id, &u.target, sent_us)
                        })
                        .await;
                    }
                }
                Ok::<_, LoadError>((i, group, candidates))
            })
            .buffer_unordered(c)
            .try_collect()
            .await?;
        for (i, group, candidates) in groups {
            users[i].group = Some(group);
            // Nothing else holds a user's state during the setup.
            let live = Arc::get_mut(&mut users[i].live)
                .ok_or_else(|| LoadError::config("setup", "a user's state shared during setup"))?;
            *live.members.get_mut() = candidates;
        }
    }

    if cfg.spares > 0 {
        let users_ref = &users;
        let spares: Vec<(usize, Spare)> = stream::iter(0..n)
            .flat_map(|i| stream::iter((0..cfg.spares).map(move |k| (i, k))))
            .map(|(i, k)| async move {
                let u = &users_ref[i];
                let handle = format!("{}x{k}", u.handle);
                let spare = make_spare(http, u, handle).await?;
                Ok::<_, LoadError>((i, spare))
            })
            .buffer_unordered(c)
            .try_collect()
            .await?;
        for (i, spare) in spares {
            users[i].live.spares.lock().push(spare);
        }
    }
    Ok(users)
}

/// Signs up the spare account `handle` of `u` at `u`'s target and has it follow `u`; a handle
/// taken already (a setup run again) logs in instead.
pub async fn make_spare(http: &Http, u: &User, handle: String) -> Result<Spare, LoadError> {
    let pw = spare_password(&handle);
    let step = || format!("spare account {handle} of {}", u.handle);
    let session = match with_retry(|| api::sign_up(http, &u.target, &handle, &pw)).await {
        Err(e) if e.status() == Some(409) => {
            with_retry(|| api::log_in(http, &u.target, &handle, &pw)).await
        }
        r => r,
    }
    .map_err(|e| LoadError::setup(step(), e))?;
    api::follow(http, &u.target, &session.token, &u.id)
        .await
        .map_err(|e| LoadError::setup(step(), e))?;
    Ok(Spare {
        id: session.user_id,
        handle,
        token: session.token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_follow_the_pattern() {
        let s = Setup {
            users: 3,
            handles: "ld{run}_{i}".into(),
            password: "password1".into(),
            login_only: false,
            follows: 0,
            posts: 0,
            concurrency: 1,
            run_tag: "a1b2c3".into(),
            conversations: false,
            groups: false,
            spares: 0,
        };
        assert_eq!(s.handle(7), "lda1b2c3_7");
        let s = Setup {
            handles: "user{i}".into(),
            ..s
        };
        assert_eq!(s.handle(0), "user0");
    }

    #[test]
    fn group_candidates_are_the_next_users_without_oneself() {
        assert_eq!(group_candidates(0, 16), [1, 2, 3, 4, 5, 6]);
        assert_eq!(group_candidates(14, 16), [15, 0, 1, 2, 3, 4]);
        assert_eq!(group_candidates(1, 4), [2, 3, 0]);
        assert!(group_candidates(0, 1).is_empty());
    }
}
