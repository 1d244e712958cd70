//! The REST scenario runner. Open loop (`Rate::Fixed`): one dispatcher task sleeps until each
//! request's intended start from the [`Schedule`] and spawns it, never waiting for answers; up
//! to `concurrency` requests are in flight, and a request that finds the limit reached is
//! counted as a `dropped` error rather than delayed (a delay would bend the schedule). Closed
//! loop (`Rate::Max`): `concurrency` workers each send their next request when the previous one
//! is answered. Requests whose intended start falls in the warm-up run but are not measured.
//!
//! A user's `group` operations run one at a time: one that finds the user's previous membership
//! change still in flight waits for it (the wait counts in its latency, measured from its
//! intended start, as any other queueing), so each member's last acknowledged change is well
//! defined. The `edit` operation takes a chat message the user's `chat` operations had
//! acknowledged, each at most once (when there is none, it sends one first). The `like` and
//! `unlike` operations, per target (a post its own node acknowledged, so a like never waits on
//! replication from another region), take half their posts from one hot post (the first acknowledged
//! post) and half from the last [`RECENT_POSTS`] acknowledged ones: the skew of a real network,
//! where a few posts draw most likes. [`run_on_posts`] sends them to given posts instead (one
//! post liked from every region, or many: the like benchmarks).

use crate::LoadError;
use crate::acked::{Acked, AckedKind, AckedLog, Outcome, now_us};
use crate::api;
use crate::error::RequestError;
use crate::http::Http;
use crate::schedule::{Arrivals, Mix, Op, Rate, Schedule};
use crate::stats::Stats;
use crate::users::User;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Acknowledged posts the `like` and `unlike` operations choose from (besides the hot post).
pub const RECENT_POSTS: usize = 1024;

/// Posts that left the window of recent ones, kept for the `unpost` operation, at most.
pub const RETIRED_POSTS: usize = 65_536;

/// How long after a post left the window of recent ones `unpost` may delete it: longer than any
/// request's timeout, so no like or repost that picked it is still in flight.
pub const UNPOST_AFTER: Duration = Duration::from_secs(30);

/// The posts likes go to: the hot one and a bounded window of recent ones (with their authors,
/// by index in the run's users); and the posts that left the window, oldest first, when they
/// left it (the `unpost` operation deletes them).
#[derive(Debug, Default)]
struct LikedPosts {
    hot: Option<String>,
    recent: std::collections::VecDeque<(usize, String)>,
    retired: std::collections::VecDeque<(Instant, usize, String)>,
}

/// The posts a run's likes, unlikes, reposts and deletions (`unpost`) go to, per target — its
/// hot post, its window of recent ones and the posts that left it, waiting to be deleted — with
/// the window's size and how long a post that left it waits. Clones share one state: a load run
/// as consecutive [`run_keeping`] chunks (the fault suite's soak runs one a second) keeps them
/// from one chunk to the next. Each [`run`] starts an empty one of its own, so a run shorter
/// than the window's filling plus the wait deletes nothing (a 1-second chunk never does).
#[derive(Debug, Clone)]
pub struct LikedWindow {
    posts: Arc<Mutex<HashMap<String, LikedPosts>>>,
    recent: usize,
    unpost_after: Duration,
}

impl Default for LikedWindow {
    /// [`RECENT_POSTS`] recent posts, deleted [`UNPOST_AFTER`] after they left the window.
    fn default() -> Self {
        LikedWindow::new(RECENT_POSTS, UNPOST_AFTER)
    }
}

impl LikedWindow {
    /// A window of `recent` posts per target (at least 1), each deleted by `unpost` no sooner
    /// than `unpost_after` after it left the window: longer than any request's timeout, so no
    /// like or repost that picked it is still in flight (it would meet a 404).
    pub fn new(recent: usize, unpost_after: Duration) -> Self {
        LikedWindow {
            posts: Arc::new(Mutex::new(HashMap::new())),
            recent: recent.max(1),
            unpost_after,
        }
    }

    /// Posts that left the window and wait for `unpost`, over every target (at most
    /// [`RETIRED_POSTS`] a target).
    pub fn waiting(&self) -> usize {
        self.posts.lock().values().map(|l| l.retired.len()).sum()
    }
}

impl LikedPosts {
    fn add(&mut self, author: usize, id: &str, now: Instant, window: usize) {
        if self.hot.is_none() {
            self.hot = Some(id.to_string());
        }
        if self.recent.len() >= window
            && let Some((by, old)) = self.recent.pop_front()
            && self.hot.as_deref() != Some(old.as_str())
        {
            if self.retired.len() == RETIRED_POSTS {
                // Left undeleted: `unpost` is weighted below `post`.
                self.retired.pop_front();
            }
            self.retired.push_back((now, by, old));
        }
        self.recent.push_back((author, id.to_string()));
    }

    /// Even `n`: the hot post; odd: a recent one.
    fn pick(&self, n: u64) -> Option<String> {
        if n.is_multiple_of(2) || self.recent.is_empty() {
            return self.hot.clone();
        }
        let i = usize::try_from(n / 2).unwrap_or(0) % self.recent.len();
        self.recent.get(i).map(|(_, id)| id.clone())
    }

    /// The oldest post that left the window at least `after` before `now`, and its author.
    fn take_retired(&mut self, now: Instant, after: Duration) -> Option<(usize, String)> {
        let (at, _, _) = self.retired.front()?;
        if now.saturating_duration_since(*at) < after {
            return None;
        }
        self.retired.pop_front().map(|(_, by, id)| (by, id))
    }
}

/// How to drive the REST scenario.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Which operations, by weight.
    pub mix: Mix,
    /// Fixed open-loop rate or closed-loop max.
    pub rate: Rate,
    /// Arrival process of the open loop.
    pub arrivals: Arrivals,
    /// Closed loop: workers. Open loop: the in-flight limit.
    pub concurrency: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Seed of the schedule and of the choices of users and operations.
    pub seed: u64,
    /// `limit` of feed reads.
    pub feed_limit: u32,
    /// Show progress bars on the terminal.
    pub progress: bool,
    /// Open loop: the schedule's time zero (`None`: now). A load run as consecutive chunks
    /// passes each chunk its own slot (the previous chunk's origin plus its duration), so a chunk
    /// that starts late, after waiting for the previous chunk's last answers, sends the requests
    /// it missed at once and measures their latency from their intended start: the wait is not
    /// a silent gap in the load (coordinated omission).
    pub origin: Option<Instant>,
}

/// One request, chosen by the dispatcher.
#[derive(Debug, Clone, Copy)]
struct Pick {
    op: Op,
    user: usize,
    other: usize,
    n: u64,
}

fn pick(mix: &Mix, users: usize, rng: &mut StdRng, n: u64) -> Pick {
    let op = mix.pick(rng);
    let user = rng.random_range(0..users);
    // Another user than `user` when there is one.
    let other = if users > 1 {
        (user + rng.random_range(1..users)) % users
    } else {
        user
    };
    Pick { op, user, other, n }
}

/// How far below its conversation's highest acknowledged seq a message may be for the `edit`
/// operation: half the server's smallest chat history bound (`--chat-history-max` is 0 or at
/// least 100), leaving the other half for entries the run has not seen acknowledged yet.
pub const EDIT_WINDOW: u64 = 50;

/// What the requests share.
#[derive(Debug)]
struct Ctx {
    http: Http,
    users: Arc<Vec<User>>,
    acked: Option<AckedLog>,
    feed_limit: u32,
    /// Chat client ids are `ld-{run}-{n}`: unique per run (a repeated client id would get the
    /// original message back), whatever the seed.
    run: u64,
    chats: AtomicU64,
    /// The mix has edits: acknowledged chat messages are kept for them.
    edits: bool,
    /// With edits: the highest seq acknowledged in each conversation (every user's), so an edit
    /// never takes a message more than [`EDIT_WINDOW`] entries below it. One entry a
    /// conversation of the run's users.
    heads: parking_lot::Mutex<std::collections::HashMap<String, u64>>,
    /// Posts for the `like` and `unlike` operations (a lock held for a push or a pick, never
    /// across an await).
    /// Per target: a like goes to a post acknowledged by the liker's own node, so it never
    /// depends on replication from another region (which a partition or a region loss stops).
    liked: LikedWindow,
    /// When not empty, the posts the like, unlike, repost and unrepost operations go to (the
    /// `n`th to `n % len`), whatever node serves the user.
    given: Vec<String>,
    ok: AtomicU64,
    errors: AtomicU64,
}

impl Ctx {
    /// Executes one request and logs it if it was an acknowledged write.
    async fn execute(&self, p: Pick) -> Result<(), RequestError> {
        let u = &self.users[p.user];
        let other = &self.users[p.other];
        let sent_us = now_us();
        let mut placed = None;
        let write = match p.op {
            Op::Read => {
                api::feed(&self.http, &u.target, &u.token, self.feed_limit).await?;
                None
            }
            Op::Health => {
                api::health(&self.http, &u.target).await?;
                None
            }
            Op::Post => {
                let text = format!("load post {} by {}", p.n, u.handle);
                let id = self.post_to_be_liked(u, p.user, &text).await?;
                Some((AckedKind::Post, id))
            }
            Op::Unpost => {
                self.unpost(u).await?;
                None
            }
            Op::Like | Op::Unlike | Op::Repost | Op::Unrepost => {
                let post = self.post_to_like(u, p.user, p.n).await?;
                let sent_us = now_us();
                let (kind, on) = match p.op {
                    Op::Like => (AckedKind::Like, true),
                    Op::Unlike => (AckedKind::Unlike, false),
                    Op::Repost => (AckedKind::Repost, true),
                    _ => (AckedKind::Unrepost, false),
                };
                let (http, target, token) = (&self.http, &u.target, &u.token);
                let r = if matches!(p.op, Op::Like | Op::Unlike) {
                    api::like(http, target, token, &post, on).await
                } else {
                    api::repost(http, target, token, &post, on).await
                };
                self.write_done(kind, post, u, sent_us, r).await?;
                None
            }
            Op::Follow => {
                let r = api::follow(&self.http, &u.target, &u.token, &other.id).await;
                self.edge_done(AckedKind::Follow, u, other, sent_us, r)
                    .await?;
                None
            }
            Op::Unfollow => {
                let r = api::unfollow(&self.http, &u.target, &u.token, &other.id).await;
                self.edge_done(AckedKind::Unfollow, u, other, sent_us, r)
                    .await?;
                None
            }
            Op::Chat => {
                let (conv, m) = self.chat(u, p.n).await?;
                if self.edits {
                    self.saw_head(&conv, m.seq);
                    u.live.editable(&conv, m.seq, &m.id);
                }
                placed = Some((conv, m.seq));
                Some((AckedKind::Message, m.id))
            }
            Op::Group => {
                self.toggle_member(u, p).await?;
                None
            }
            Op::Edit => {
                self.edit(u, p.n).await?;
                None
            }
            Op::Notify => {
                let (items, _) =
                    api::notifications(&self.http, &u.target, &u.token, 20, None).await?;
                if let Some((newest, _)) = items.into_iter().next() {
                    let sent_us = now_us();
                    api::mark_read(&self.http, &u.target, &u.token, &newest).await?;
                    self.log_write(
                        AckedKind::MarkRead,
                        newest,
                        u,
                        sent_us,
                        Outcome::Acked,
                        None,
                    )
                    .await;
                }
                None
            }
            Op::Password => {
                self.change_password(u).await?;
                None
            }
            Op::Delete => {
                self.delete_spare(u).await?;
                None
            }
        };
        if let Some((kind, id)) = write {
            self.log_write(kind, id, u, sent_us, Outcome::Acked, placed)
                .await;
        }
        Ok(())
    }

    /// Sends a chat message from `u` into their 1:1 conversation; returns the conversation and
    /// the stored message.
    async fn chat(&self, u: &User, n: u64) -> Result<(String, api::StoredMessage), RequestError> {
        let conv = u.conv.as_deref().ok_or_else(|| {
            RequestError::Decode(
                "the chat and edit operations need conversations in the setup".into(),
            )
        })?;
        let k = self.chats.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("ld-{:x}-{k}", self.run);
        let text = format!("load message {n} by {}", u.handle);
        let m = api::send_message(&self.http, &u.target, &u.token, conv, &client_id, &text).await?;
        Ok((conv.to_string(), m))
    }

    /// Adds one of the candidates of `u`'s group if it is not a member as last requested,
    /// removes it if it is; logs the change if it was acknowledged or its outcome is unknown.
    async fn toggle_member(&self, u: &User, p: Pick) -> Result<(), RequestError> {
        let group = u.group.as_deref().ok_or_else(|| {
            RequestError::Decode("the group operation needs groups in the setup".into())
        })?;
        // Held until the change is answered: one membership change of the user in flight.
        let mut members = u.live.members.lock().await;
        if members.is_empty() {
            return Err(RequestError::Decode("a group with no candidates".into()));
        }
        let k = p.other % members.len();
        let (target, was) = members[k].clone();
        let sent_us = now_us();
        let result = api::set_member(&self.http, &u.target, &u.token, group, &target, !was).await;
        let outcome = match &result {
            Ok(()) => Some(Outcome::Acked),
            Err(e) => e.write_outcome(),
        };
        if let Some(outcome) = outcome {
            // Applied, or maybe: the next change of this member goes the other way (both are
            // idempotent, so one that finds it done already changes nothing).
            members[k].1 = !was;
            if let Some(log) = &self.acked {
                let mut a = entry(AckedKind::Member, target, u, sent_us, outcome);
                a.conv = Some(group.to_string());
                a.added = Some(!was);
                log.record(a).await;
            }
        }
        result
    }

    /// Notes an acknowledged entry of `conv` at `seq` (for [`Ctx::recent_editable`]).
    fn saw_head(&self, conv: &str, seq: u64) {
        let mut heads = self.heads.lock();
        let head = heads.entry(conv.to_string()).or_insert(0);
        *head = (*head).max(seq);
    }

    /// The newest of `u`'s acknowledged messages not edited yet that is within [`EDIT_WINDOW`]
    /// entries of its conversation's highest acknowledged seq in this run; older ones, and those
    /// an earlier run queued, are dropped (the queue takes the newest first, so an old one can
    /// wait there while its conversation moves on past the server's history retention).
    fn recent_editable(&self, u: &User) -> Option<(String, u64, String)> {
        let mut q = u.live.editable.lock();
        let heads = self.heads.lock();
        while let Some((conv, seq, id)) = q.pop_back() {
            // No head known: the message was queued by an earlier run on the same users (the
            // soak's capacity measurement), whose conversations may have moved on since.
            if heads
                .get(&conv)
                .is_some_and(|head| head.saturating_sub(seq) < EDIT_WINDOW)
            {
                return Some((conv, seq, id));
            }
        }
        None
    }

    /// Edits the newest of `u`'s acknowledged chat messages not edited yet, within
    /// [`EDIT_WINDOW`] entries of its conversation's head (sending one first when there is
    /// none), so that it is never past the server's chat history retention
    /// (`--chat-history-max`, at least 100 entries; an older one may be trimmed, and its edit
    /// refused); logs the edit if it was acknowledged or its outcome is unknown.
    async fn edit(&self, u: &User, n: u64) -> Result<(), RequestError> {
        let taken = self.recent_editable(u);
        let (conv, seq, id) = match taken {
            Some(m) => m,
            None => {
                let sent_us = now_us();
                let (conv, m) = self.chat(u, n).await?;
                self.saw_head(&conv, m.seq);
                let placed = Some((conv.clone(), m.seq));
                self.log_write(
                    AckedKind::Message,
                    m.id.clone(),
                    u,
                    sent_us,
                    Outcome::Acked,
                    placed,
                )
                .await;
                (conv, m.seq, m.id)
            }
        };
        let k = self.chats.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("ld-{:x}-e{k}", self.run);
        let body = format!("edited {n} by {}", u.handle);
        let sent_us = now_us();
        let result = api::edit_message(
            &self.http, &u.target, &u.token, &conv, seq, &client_id, &body,
        )
        .await;
        let result = match result {
            Ok(m) if m.seq != seq || m.id != id || m.body != body => Err(RequestError::Decode(
                format!("the edit of {conv}/{seq} answered {m:?}"),
            )),
            r => r.map(drop),
        };
        let outcome = match &result {
            Ok(()) => Some(Outcome::Acked),
            Err(e) => e.write_outcome(),
        };
        if let (Some(outcome), Some(log)) = (outcome, &self.acked) {
            let mut a = entry(AckedKind::Edit, id, u, sent_us, outcome);
            a.conv = Some(conv);
            a.seq = Some(seq);
            a.body = Some(body);
            log.record(a).await;
        }
        result
    }

    /// Changes `u`'s password from the one that signs in (of those `u` may have) to a new one,
    /// through `u`'s own session, after opening a second session the change must revoke; logs
    /// the change (its second session and the password it replaced) if it was acknowledged.
    /// Holds `u`'s passwords throughout: one change per user in flight.
    async fn change_password(&self, u: &User) -> Result<(), RequestError> {
        let mut passwords = u.live.passwords.lock().await;
        let mut second = None;
        for (i, pw) in passwords.iter().enumerate() {
            match api::log_in(&self.http, &u.target, &u.handle, pw).await {
                Ok(s) => {
                    second = Some((i, s));
                    break;
                }
                Err(e) if e.status() == Some(401) => {}
                Err(e) => return Err(e),
            }
        }
        let Some((i, second)) = second else {
            return Err(RequestError::Decode(format!(
                "none of the {} passwords {} may have signs in",
                passwords.len(),
                u.handle
            )));
        };
        let old = passwords[i].clone();
        let k = self.chats.fetch_add(1, Ordering::Relaxed);
        let new = format!("pw-{:x}-{k}", self.run);
        let sent_us = now_us();
        let result = api::change_password(&self.http, &u.target, &u.token, &old, &new).await;
        let outcome = match &result {
            Ok(()) => Some(Outcome::Acked),
            Err(e) => e.write_outcome(),
        };
        match outcome {
            // Changed: the new password is the one.
            Some(Outcome::Acked) => *passwords = vec![new],
            // Maybe changed (and a timed-out change may land later): either.
            Some(_) => *passwords = vec![new, old.clone()],
            None => {}
        }
        if let (Some(outcome), Some(log)) = (outcome, &self.acked) {
            let mut a = entry(AckedKind::Password, second.token, u, sent_us, outcome);
            a.body = Some(old);
            log.record(a).await;
        }
        result
    }

    /// Deletes one of `u`'s spare accounts, or when none is left one of another user's of the
    /// same target (signing one up for `u` when there is none at all); logs the deletion, as of
    /// the spare's user, if it was acknowledged. A spare is taken once, whatever the outcome.
    async fn delete_spare(&self, u: &User) -> Result<(), RequestError> {
        // One lock at a time: the user's own pool is among the others (a parking_lot mutex
        // is not reentrant).
        let own = u.live.spares.lock().pop();
        let taken = match own {
            Some(s) => Some((u, s)),
            None => self
                .users
                .iter()
                .filter(|o| o.target == u.target)
                .find_map(|o| {
                    let s = o.live.spares.lock().pop();
                    s.map(|s| (o, s))
                }),
        };
        let (owner, spare) = match taken {
            Some(t) => t,
            None => {
                let k = u.live.spares_made.fetch_add(1, Ordering::Relaxed);
                let handle = format!("{}y{:x}{k}", u.handle, self.run & 0xffff);
                let spare = crate::users::make_spare(&self.http, u, handle)
                    .await
                    .map_err(|e| RequestError::Decode(e.to_string()))?;
                (u, spare)
            }
        };
        let pw = crate::users::spare_password(&spare.handle);
        let sent_us = now_us();
        let result = api::delete_account(&self.http, &u.target, &spare.token, &pw).await;
        if let (Ok(()), Some(log)) = (&result, &self.acked) {
            let mut a = entry(AckedKind::Delete, spare.id, owner, sent_us, Outcome::Acked);
            a.body = Some(spare.handle);
            log.record(a).await;
        }
        result
    }

    /// Records a write of `kind` on `id` by `u`, sent at `sent_us`, in the acked log (when
    /// there is one), with its chat placement (conversation, seq) when it has one.
    async fn log_write(
        &self,
        kind: AckedKind,
        id: String,
        u: &User,
        sent_us: u64,
        outcome: Outcome,
        placed: Option<(String, u64)>,
    ) {
        if let Some(log) = &self.acked {
            let mut a = entry(kind, id, u, sent_us, outcome);
            a.seq = placed.as_ref().map(|(_, s)| *s);
            a.conv = placed.map(|(c, _)| c);
            log.record(a).await;
        }
    }

    /// Logs a follow or unfollow of `other` by `u` that was acknowledged, or that failed in a
    /// way that leaves unknown whether the server applied it, and passes its result on.
    async fn edge_done(
        &self,
        kind: AckedKind,
        u: &User,
        other: &User,
        sent_us: u64,
        result: Result<(), RequestError>,
    ) -> Result<(), RequestError> {
        self.write_done(kind, other.id.clone(), u, sent_us, result)
            .await
    }

    /// Logs an idempotent write of `kind` on `id` by `u` that was acknowledged, or that failed
    /// in a way that leaves unknown whether the server applied it, and passes its result on.
    async fn write_done(
        &self,
        kind: AckedKind,
        id: String,
        u: &User,
        sent_us: u64,
        result: Result<(), RequestError>,
    ) -> Result<(), RequestError> {
        let outcome = match &result {
            Ok(()) => Some(Outcome::Acked),
            Err(e) => e.write_outcome(),
        };
        if let Some(outcome) = outcome {
            self.log_write(kind, id, u, sent_us, outcome, None).await;
        }
        result
    }

    /// Deletes, as its author, the oldest post of `u`'s node that left the window of recent
    /// ones its window's wait ago ([`UNPOST_AFTER`] by default; nothing when there is none yet).
    async fn unpost(&self, u: &User) -> Result<(), RequestError> {
        let ready = self
            .liked
            .posts
            .lock()
            .get_mut(&u.target)
            .and_then(|l| l.take_retired(Instant::now(), self.liked.unpost_after));
        let Some((author, post)) = ready else {
            return Ok(());
        };
        let a = &self.users[author];
        let sent_us = now_us();
        let r = api::delete_post(&self.http, &a.target, &a.token, &post).await;
        self.write_done(AckedKind::Unpost, post, a, sent_us, r)
            .await
    }

    /// `u` (the `user`th) posts `text`; the post is among those likes and reposts through its
    /// target go to.
    async fn post_to_be_liked(
        &self,
        u: &User,
        user: usize,
        text: &str,
    ) -> Result<String, RequestError> {
        let id = api::post(&self.http, &u.target, &u.token, text).await?;
        self.liked
            .posts
            .lock()
            .entry(u.target.clone())
            .or_default()
            .add(user, &id, Instant::now(), self.liked.recent);
        Ok(id)
    }

    /// The post the `n`th like or unlike goes to; `u` (the `user`th) posts one first when the
    /// run has none.
    async fn post_to_like(&self, u: &User, user: usize, n: u64) -> Result<String, RequestError> {
        if !self.given.is_empty() {
            let i = usize::try_from(n % self.given.len() as u64).unwrap_or(0);
            return Ok(self.given[i].clone());
        }
        let picked = (self.liked.posts.lock())
            .get(&u.target)
            .and_then(|l| l.pick(n));
        if let Some(id) = picked {
            return Ok(id);
        }
        let sent_us = now_us();
        let text = format!("load post {n} by {} to like", u.handle);
        let id = self.post_to_be_liked(u, user, &text).await?;
        self.log_write(
            AckedKind::Post,
            id.clone(),
            u,
            sent_us,
            Outcome::Acked,
            None,
        )
        .await;
        Ok(id)
    }

    /// Executes and records one request, measured from `intended` if that is after `measure`.
    async fn execute_and_record(
        &self,
        p: Pick,
        intended: Instant,
        measure: Instant,
        stats: &Mutex<Stats>,
    ) {
        let sent = Instant::now();
        let result = self.execute(p).await;
        let done = Instant::now();
        match &result {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.errors.fetch_add(1, Ordering::Relaxed),
        };
        if intended < measure {
            return;
        }
        let off = |t: Instant| t.saturating_duration_since(measure);
        // The lock is held for a few histogram updates, never across an await.
        let mut s = stats.lock();
        match result {
            Ok(()) => s.record_ok(p.op.name(), off(intended), off(sent), off(done)),
            Err(e) => s.record_error(p.op.name(), &e.kind(), off(done)),
        }
    }
}

/// A progress bar over the whole run (warm-up included), updated by a task it owns.
struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(show: bool, total: Duration, ctx: Arc<Ctx>, label: String) -> Self {
        let bar = if show {
            ProgressBar::new(total.as_secs().max(1))
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} s {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(label);
        let b = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                b.set_position(started.elapsed().as_secs());
                b.set_message(format!(
                    "ok {} err {}",
                    ctx.ok.load(Ordering::Relaxed),
                    ctx.errors.load(Ordering::Relaxed)
                ));
            }
        });
        Progress { bar, ticker }
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Runs the scenario and returns what was measured. Every operation of the mix appears in the
/// result, even one that never completed.
pub async fn run(
    http: &Http,
    users: Arc<Vec<User>>,
    cfg: &RunConfig,
    acked: Option<AckedLog>,
) -> Result<Stats, LoadError> {
    run_on_posts(http, users, cfg, acked, Vec::new()).await
}

/// [`run`], with the like, unlike, repost and unrepost operations on `posts` (round robin by
/// the request's number) instead of posts of the run's own: every post must exist on every
/// target. Empty: as [`run`].
pub async fn run_on_posts(
    http: &Http,
    users: Arc<Vec<User>>,
    cfg: &RunConfig,
    acked: Option<AckedLog>,
    posts: Vec<String>,
) -> Result<Stats, LoadError> {
    run_keeping(http, users, cfg, acked, posts, &LikedWindow::default()).await
}

/// [`run_on_posts`] with the posts its likes and deletions go to kept in `liked`, shared with
/// the runs before and after it that are given a clone of it: a load run as consecutive
/// chunks deletes posts written in earlier chunks ([`LikedWindow`]).
pub async fn run_keeping(
    http: &Http,
    users: Arc<Vec<User>>,
    cfg: &RunConfig,
    acked: Option<AckedLog>,
    posts: Vec<String>,
    liked: &LikedWindow,
) -> Result<Stats, LoadError> {
    if users.is_empty() {
        return Err(LoadError::config("users", "at least one user"));
    }
    if cfg.concurrency == 0 {
        return Err(LoadError::config("concurrency", "at least 1"));
    }
    let ctx = Arc::new(Ctx {
        http: http.clone(),
        users,
        acked,
        feed_limit: cfg.feed_limit,
        run: now_us(),
        chats: AtomicU64::new(0),
        edits: cfg.mix.ops().any(|op| op == Op::Edit),
        heads: parking_lot::Mutex::new(std::collections::HashMap::new()),
        liked: liked.clone(),
        given: posts,
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let label = match cfg.rate {
        Rate::Fixed(r) => format!("{r}/s"),
        Rate::Max => format!("max×{}", cfg.concurrency),
    };
    let progress = Progress::start(cfg.progress, cfg.warmup + cfg.duration, ctx.clone(), label);
    let mut stats = match cfg.rate {
        Rate::Fixed(rate) => open_loop(ctx, cfg, rate).await,
        Rate::Max => closed_loop(ctx, cfg).await,
    }?;
    progress.finish();
    for op in cfg.mix.ops() {
        stats.op(op.name());
    }
    Ok(stats)
}

async fn open_loop(ctx: Arc<Ctx>, cfg: &RunConfig, rate: f64) -> Result<Stats, LoadError> {
    let stats = Arc::new(Mutex::new(Stats::new()));
    let start = cfg.origin.unwrap_or_else(Instant::now);
    let measure = start + cfg.warmup;
    let end = measure + cfg.duration;
    let mut schedule = Schedule::new(rate, cfg.arrivals, cfg.seed);
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(0x9e37_79b9));
    let limit = Arc::new(Semaphore::new(cfg.concurrency));
    let mut tasks = JoinSet::new();
    let mut n = 0u64;
    loop {
        let intended = start + schedule.next_offset();
        if intended >= end {
            break;
        }
        tokio::time::sleep_until(intended).await;
        let p = pick(&cfg.mix, ctx.users.len(), &mut rng, n);
        n += 1;
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let (ctx, stats) = (ctx.clone(), stats.clone());
                tasks.spawn(async move {
                    ctx.execute_and_record(p, intended, measure, &stats).await;
                    drop(permit);
                });
            }
            Err(_) => {
                ctx.errors.fetch_add(1, Ordering::Relaxed);
                if intended >= measure {
                    let at = Instant::now().saturating_duration_since(measure);
                    stats
                        .lock()
                        .record_error(p.op.name(), &RequestError::Dropped.kind(), at);
                }
            }
        }
        // Reap finished requests so the set stays the size of what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let s = stats.lock().clone();
    Ok(s)
}

async fn closed_loop(ctx: Arc<Ctx>, cfg: &RunConfig) -> Result<Stats, LoadError> {
    let start = Instant::now();
    let measure = start + cfg.warmup;
    let end = measure + cfg.duration;
    let mut workers = JoinSet::new();
    for w in 0..cfg.concurrency {
        let ctx = ctx.clone();
        let mix = cfg.mix.clone();
        let seed = cfg.seed.wrapping_add(w as u64);
        workers.spawn(async move {
            // Each worker records into its own stats; they are merged at the end.
            let stats = Mutex::new(Stats::new());
            let mut rng = StdRng::seed_from_u64(seed);
            let mut n = 0u64;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let p = pick(&mix, ctx.users.len(), &mut rng, n);
                n += 1;
                ctx.execute_and_record(p, now, measure, &stats).await;
            }
            stats.into_inner()
        });
    }
    let mut total = Stats::new();
    while let Some(s) = workers.join_next().await {
        let s = s.map_err(|e| LoadError::io("worker", std::io::Error::other(e.to_string())))?;
        total.merge(&s)?;
    }
    Ok(total)
}

/// The acked-log entry of a write of `kind` on `id` by `u`, sent at `sent_us` and answered now,
/// without a chat placement, membership direction or text (the callers add theirs).
fn entry(kind: AckedKind, id: String, u: &User, sent_us: u64, outcome: Outcome) -> Acked {
    Acked {
        outcome,
        ..Acked::acked_now(kind, id, &u.id, &u.target, sent_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likes_go_half_to_the_hot_post_and_the_window_is_bounded() {
        let mut l = LikedPosts::default();
        assert_eq!(l.pick(1), None);
        let t0 = Instant::now();
        for i in 0..RECENT_POSTS + 10 {
            l.add(i % 3, &format!("p{i}"), t0, RECENT_POSTS);
        }
        assert_eq!(l.recent.len(), RECENT_POSTS);
        assert_eq!(l.pick(0).as_deref(), Some("p0"));
        assert_eq!(l.pick(2).as_deref(), Some("p0"));
        assert_eq!(l.pick(1).as_deref(), Some("p10"), "the oldest kept");
        assert!((0..100).filter_map(|n| l.pick(n)).all(|p| p != "p5"));
        // The posts that left the window, not the hot one, go to `unpost` in order, with their
        // authors, only once they left it long enough ago.
        assert_eq!(l.retired.len(), 9, "p1..=p9");
        assert_eq!(l.take_retired(t0, UNPOST_AFTER), None, "too recent");
        let later = t0 + UNPOST_AFTER;
        assert_eq!(l.take_retired(later, UNPOST_AFTER), Some((1, "p1".into())));
        assert_eq!(l.take_retired(later, UNPOST_AFTER), Some((2, "p2".into())));
        let left: Vec<String> = std::iter::from_fn(|| l.take_retired(later, UNPOST_AFTER))
            .map(|(_, id)| id)
            .collect();
        assert_eq!(left.len(), 7);
        assert!(
            left.iter()
                .all(|p| l.pick(1).as_deref() != Some(p.as_str()))
        );
        assert_eq!(
            l.pick(0).as_deref(),
            Some("p0"),
            "the hot post is never deleted"
        );
    }

    #[test]
    fn a_liked_window_is_shared_by_its_clones_and_sized_by_its_owner() {
        // What one chunk of a load adds, the next (a clone) deletes: the fault suite's soak runs
        // a chunk a second, and a state of each chunk's own never let a post wait 30 s.
        let window = LikedWindow::new(2, Duration::ZERO);
        let chunk = window.clone();
        let t0 = Instant::now();
        for i in 0..5 {
            let mut posts = chunk.posts.lock();
            posts
                .entry("node".into())
                .or_default()
                .add(0, &format!("p{i}"), t0, chunk.recent);
        }
        // p0 is the hot post; p1 and p2 left the window of 2 (p3, p4).
        assert_eq!(window.waiting(), 2);
        let next = window.clone();
        let taken = next
            .posts
            .lock()
            .get_mut("node")
            .and_then(|l| l.take_retired(t0, next.unpost_after));
        assert_eq!(taken, Some((0, "p1".into())));
        assert_eq!(window.waiting(), 1);
        assert_eq!(LikedWindow::new(0, Duration::ZERO).recent, 1);
    }
}
