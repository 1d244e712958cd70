//! The sweeper of deleted accounts: a background pass every `--deletion-interval` that finishes
//! what `DELETE /v1/users/me` started (see `starling_graph::deletion`).
//!
//! A pass reads at most [`DELETIONS_PER_PASS`] unfinished deletions and gives each at most
//! [`STEP`] removals: their posts (through the posts service, as if the author deleted each), the
//! likes they gave (each taken back as an unlike, so the posts' counts move down once on every
//! node: [`starling_posts::liked`]; an index element whose like has not reached this node yet,
//! and a repost or quote whose counted element has not, wait for it until the grace period is
//! over), then their edges, sessions and friend requests
//! ([`starling_graph::Graph::sweep_account`]). A
//! deletion whose step found nothing left, once its grace period (`--handle-grace`) is over, has
//! its handle freed and is marked finished. The deletion records replicate, so every node sweeps
//! every deletion: the removals are idempotent, and a node killed mid-sweep resumes from what is
//! left. Metrics: `starling_account_deletions_pending` (unfinished deletions seen by the last
//! pass), `starling_account_deletion_removals_total`, `starling_account_deletions_finished_total`,
//! `starling_account_deletion_waiting` (likes indexed here whose like has not arrived, and
//! reposts, quotes and replies whose counted element has not, as of the last pass).
//!
//! The same pass takes a step of the cleanup of deleted posts ([`starling_posts::cleanup`]: their
//! likes and reposts taken off on this node, then the count consumer's shadows of them, then its
//! counters at zero): steps of
//! at most [`POST_CLEANUP_STEP`] removals each, at most [`POST_CLEANUP_STEPS`], walking the
//! queue from where the last pass stopped (from its start again once a pass reached its end):
//! `starling_deleted_posts_pending` (the queued posts the last pass looked at: at most 8 192) and
//! `starling_deleted_post_removals_total`. And, until it has read every
//! like once, a step of the backfill of the likes' liker index for likes written before it
//! existed ([`starling_posts::liked`]), [`BACKFILL_STEP`] likes a pass:
//! `starling_like_index_backfilled_total`.

use crate::AppState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use starling_posts::PostError;
use starling_posts::liked::Unseen;
use std::time::Duration;
use tokio::sync::watch;

/// Deletions looked at per pass.
pub const DELETIONS_PER_PASS: usize = 64;
/// Removals per deletion and pass.
pub const STEP: usize = 256;
/// Removals of deleted posts' likes, reposts and shadows per step (one write batch each).
pub const POST_CLEANUP_STEP: usize = 1024;
/// Cleanup steps per pass at most: a pass looks at up to 8 192 queued posts, about 800 deleted
/// posts a second at the default interval (10 s), each taking two passes (its likes off, then
/// its shadows once the counting consumer has counted the removals). At 16 steps that re-read
/// the queue's head, a soak deleting ~200 posts a second queued 196 000 in 16 minutes.
pub const POST_CLEANUP_STEPS: usize = 32;
/// Likes the liker index's backfill reads per pass.
pub const BACKFILL_STEP: usize = 1000;

/// The sweeper's metrics.
#[derive(Clone, Debug, Default)]
pub struct SweepMetrics {
    pending: Gauge,
    removals: Counter,
    finished: Counter,
    waiting: Gauge,
    posts_pending: Gauge,
    post_removals: Counter,
    backfilled: Counter,
}

impl SweepMetrics {
    /// Registers the metrics in `r`.
    pub fn register(r: &mut prometheus_client::registry::Registry) -> Self {
        let m = SweepMetrics::default();
        r.register(
            "starling_account_deletions_pending",
            "Deleted accounts not swept clean yet (as of the last pass)",
            m.pending.clone(),
        );
        r.register(
            "starling_account_deletion_removals",
            "Posts, edges, sessions and requests of deleted accounts removed by the sweeper",
            m.removals.clone(),
        );
        r.register(
            "starling_account_deletions_finished",
            "Deleted accounts swept clean with their handle freed",
            m.finished.clone(),
        );
        r.register(
            "starling_account_deletion_waiting",
            "Likes (indexed), reposts, quotes and replies of deleted users whose counted element has not reached this node yet (as of the last pass)",
            m.waiting.clone(),
        );
        r.register(
            "starling_deleted_posts_pending",
            "Deleted posts whose likes, reposts and count shadows this node has not taken off yet (as far as the last pass looked; at most 8 192)",
            m.posts_pending.clone(),
        );
        r.register(
            "starling_deleted_post_removals",
            "Likes, reposts, count shadows and counters at zero of deleted posts taken off by this node",
            m.post_removals.clone(),
        );
        r.register(
            "starling_like_index_backfilled",
            "Index elements added by liker for likes written before the index existed",
            m.backfilled.clone(),
        );
        m
    }
}

/// Runs a pass every `interval` until `shutdown` turns true.
pub async fn run(state: AppState, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    // Where the next pass goes on in the queue of deleted posts (`None`: its start).
    let mut cleanup = None;
    loop {
        if let Err(e) = pass(&state, &mut cleanup).await {
            tracing::warn!(error = %e, "account deletion sweep failed; retrying next pass");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One pass (see the module doc); its cleanup of deleted posts goes on from `cleanup` (where the
/// last pass's stopped), which it moves on.
pub async fn pass(
    state: &AppState,
    cleanup: &mut Option<u64>,
) -> Result<(), crate::problem::ApiError> {
    let (pending, _) = state
        .graph
        .pending_deletions(None, DELETIONS_PER_PASS)
        .await?;
    state.sweep.pending.set(pending.len() as i64);
    let grace = state.graph.config().handle_grace.as_millis() as u64;
    let now = now_ms();
    let mut waiting = 0;
    for d in pending {
        let graced = now >= d.deleted_at_ms.saturating_add(grace);
        let unseen = if graced { Unseen::Forget } else { Unseen::Wait };
        let (mut removed, posts_waiting) = sweep_posts(state, d.user, STEP, unseen).await?;
        waiting += posts_waiting;
        let likes = state
            .posts
            .sweep_likes(d.user, STEP.saturating_sub(removed), unseen)
            .await?;
        removed += likes.removed;
        waiting += likes.waiting;
        removed += state
            .graph
            .sweep_account(d.user, STEP.saturating_sub(removed))
            .await?;
        state.sweep.removals.inc_by(removed as u64);
        if removed == 0 && graced {
            state.graph.release_handle(&d).await?;
            state.sweep.finished.inc();
            tracing::info!(user = d.user, "deleted account swept; handle freed");
        }
    }
    state.sweep.waiting.set(waiting as i64);
    let step = state
        .posts
        .clean_deleted_posts_pass(*cleanup, POST_CLEANUP_STEP, POST_CLEANUP_STEPS)
        .await?;
    *cleanup = step.next;
    state.sweep.posts_pending.set(step.pending as i64);
    state
        .sweep
        .post_removals
        .inc_by((step.removed + step.counters) as u64);
    let backfill = state.posts.backfill_like_index(BACKFILL_STEP).await?;
    state.sweep.backfilled.inc_by(backfill.indexed as u64);
    Ok(())
}

/// Deletes posts of `user`, newest first, looking at up to `budget` of them; returns how many it
/// deleted and how many wait. A list entry whose post is gone already is passed over (its post's
/// own deletion removes it); a repost, quote or reply whose counted element has not reached this
/// node waits for it (unless `unseen` says to forget), so the deletion takes the element off
/// ([`starling_posts::liked`]).
async fn sweep_posts(
    state: &AppState,
    user: u64,
    budget: usize,
    unseen: Unseen,
) -> Result<(usize, usize), PostError> {
    let (mut done, mut waiting) = (0, 0);
    let mut before = None;
    while done + waiting < budget {
        let ids = state
            .posts
            .ids_by_author(user, before, budget - done - waiting)
            .await?;
        let Some(&last) = ids.last() else { break };
        for id in ids {
            let post = match state.posts.get(id).await {
                Ok(p) => p,
                Err(PostError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if unseen == Unseen::Wait && !state.posts.elements_here(&post).await? {
                waiting += 1;
                continue;
            }
            match state.posts.delete(id, user).await {
                Ok(()) => done += 1,
                Err(PostError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        before = Some(last);
    }
    Ok((done, waiting))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
