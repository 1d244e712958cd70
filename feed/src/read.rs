//! The read side: a page of a home timeline.
//!
//! 1. The timeline comes from L1; on a miss from L2 (Redis), and on a miss there it is rebuilt:
//!    the newest `backfill` posts of each followee, the floor raised to the newest of their
//!    last-read posts so the result is complete above it. A rebuild does `rebuild_budget`
//!    followees inline; if more remain, a background task finishes and the pages served
//!    meanwhile say `partial` (HTTP 206).
//! 2. Candidates for a page below cursor `before`: the timeline's entries down to its floor,
//!    plus the recent posts of the followed accounts that are pulled rather than fanned out,
//!    from the in-process lists of [`crate::recent`] (no store read unless a list is missing
//!    or the page is deeper than it). One k-way merge over these sorted runs stops once the page
//!    is full: a read costs O(pulled + limit · log pulled) in memory, whatever the authors'
//!    histories. When that does not fill the page, it continues below the floor with a merge
//!    of every followee's own post list — so the feed has no hard end at the cap, and no gap.
//! 3. The newest `limit` candidates are hydrated from the post cache; deleted posts are
//!    skipped, but the cursor moves past them. A cursor is a post id and every source is
//!    filtered by it, so paging while posts arrive never skips or repeats one.
//! 4. Reposts (posts with `repost_of`) bring the post they repost, and quotes the post they
//!    quote, hydrated in one more batch from the same cache. A post is shown once a page: a
//!    repost of a post the page already holds is dropped (the fan-out already inserts a repost
//!    only into timelines without that post, see [`crate::fanout`]; this covers timelines
//!    rebuilt from post lists and the read-time merge).

use crate::l1::{Slot, SlotRef};
use crate::recent::{Recent, merge_newest};
use crate::timeline::{Entry, Timeline};
use crate::{Feed, FeedError, FeedPage};
use starling_posts::Post;
use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::sync::Arc;

/// What a page needs from a timeline, copied out under its lock.
struct View {
    entries: Vec<Entry>,
    floor: u64,
    celebs: Vec<u64>,
    building: bool,
}

/// A pulled author's posts for one page, newest first.
enum Pulled {
    /// A range of the in-process list.
    Cached(Arc<Recent>, Range<usize>),
    /// Read from the store (a page deeper than the list).
    Read(Vec<u64>),
}

impl Pulled {
    fn ids(&self) -> &[u64] {
        match self {
            Pulled::Cached(list, range) => &list.ids()[range.clone()],
            Pulled::Read(ids) => ids,
        }
    }
}

impl Feed {
    /// A page of `user`'s home timeline, newest first, older than post `before`.
    pub async fn page(
        &self,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<FeedPage, FeedError> {
        let limit = limit.clamp(1, 100);
        let slot = self.timeline_of(user).await?;
        let now = self.now_ms();
        let recent = &self.inner.recent;
        let (view, mut lists) = {
            let mut s = slot.lock();
            s.last_read_ms = now;
            // The lists the last read used, where still current: no cache lookup for them.
            let lists: Vec<Option<Arc<Recent>>> = s
                .celebs
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    s.lists
                        .get(i)
                        .filter(|(a, l)| a == c && recent.is_current(*c, l))
                        .map(|(_, l)| l.clone())
                })
                .collect();
            let view = View {
                entries: s.timeline.page(before, limit, s.building),
                floor: if s.building { 0 } else { s.timeline.floor },
                celebs: s.celebs.clone(),
                building: s.building,
            };
            (view, lists)
        };
        self.touch_l2(user, &slot, now).await;
        let timeline: Vec<u64> = view.entries.iter().map(|e| e.0).collect();
        let mut fetched = false;
        for (c, list) in view.celebs.iter().zip(lists.iter_mut()) {
            if list.is_none() {
                *list = Some(self.recent_list(*c).await?);
                fetched = true;
            }
        }
        let lists: Vec<Arc<Recent>> = lists.into_iter().flatten().collect();
        let mut pulled = Vec::with_capacity(lists.len());
        for (c, list) in view.celebs.iter().zip(&lists) {
            pulled.push(self.pulled_posts(*c, list, before, limit).await?);
        }
        if fetched {
            let mut s = slot.lock();
            if s.celebs == view.celebs {
                s.lists = view.celebs.iter().copied().zip(lists).collect();
            }
        }
        let mut runs: Vec<&[u64]> = Vec::with_capacity(pulled.len() + 1);
        runs.push(&timeline);
        runs.extend(pulled.iter().map(Pulled::ids));
        let mut page = merge_newest(&runs, view.floor, limit);
        if !view.building && view.floor > 0 && page.len() < limit {
            // Everything merged so far is at or above the floor, everything below it is older.
            let below = before.map_or(view.floor, |b| b.min(view.floor));
            let more = self.merge_below(user, below, limit - page.len()).await?;
            page.extend(more.into_iter().rev());
        }
        let next = if page.len() == limit {
            page.last().copied()
        } else {
            None
        };
        let posts = self.inner.bodies.hydrate(&page).await?;
        let (posts, originals) = self.with_originals(posts).await?;
        Ok(FeedPage {
            posts,
            originals,
            next,
            partial: view.building,
        })
    }

    /// The page's posts with each post shown once — a repost of a post the page already shows
    /// (itself, or by an earlier repost) is dropped, newest first, and so is a repost of a
    /// deleted post — and the posts they repost or quote, hydrated from the same cache in one
    /// batch.
    async fn with_originals(
        &self,
        posts: Vec<Arc<Post>>,
    ) -> Result<(Vec<Arc<Post>>, Vec<Arc<Post>>), FeedError> {
        let mut wanted: Vec<u64> = posts
            .iter()
            .filter_map(|p| p.repost_of.or(p.quote_of))
            .collect();
        if wanted.is_empty() {
            return Ok((posts, Vec::new()));
        }
        wanted.sort_unstable();
        wanted.dedup();
        let originals = self.inner.bodies.hydrate(&wanted).await?;
        let found: HashSet<u64> = originals.iter().map(|p| p.id).collect();
        let mut shown = HashSet::with_capacity(posts.len());
        let posts = posts
            .into_iter()
            .filter(|p| match p.repost_of {
                Some(o) => found.contains(&o) && shown.insert(o),
                None => shown.insert(p.id),
            })
            .collect();
        Ok((posts, originals))
    }

    /// The current list of `author`'s recent posts: cached, or read from the store.
    async fn recent_list(&self, author: u64) -> Result<Arc<Recent>, FeedError> {
        let recent = &self.inner.recent;
        if let Some(list) = recent.get(author) {
            return Ok(list);
        }
        let stamp = recent.stamp(author);
        let depth = recent.depth();
        let mut ids = self
            .inner
            .posts
            .ids_by_author(author, None, depth + 1)
            .await?;
        let complete = ids.len() <= depth;
        ids.truncate(depth);
        let list = Arc::new(Recent::new(ids, complete, stamp));
        recent.insert(author, list.clone());
        Ok(list)
    }

    /// The newest `limit` posts of pulled author `author` below `before`: a range of its
    /// in-process `list`, or read from the store for a page deeper than the list.
    async fn pulled_posts(
        &self,
        author: u64,
        list: &Arc<Recent>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Pulled, FeedError> {
        if let Some(range) = list.below(before, limit) {
            return Ok(Pulled::Cached(list.clone(), range));
        }
        self.inner.recent.note_read();
        let ids = self
            .inner
            .posts
            .ids_by_author(author, before, limit)
            .await?;
        Ok(Pulled::Read(ids))
    }

    /// Pushes back the L2 expiry of an active reader's timeline, at most every hour.
    async fn touch_l2(&self, user: u64, slot: &SlotRef, now: u64) {
        let Some(l2) = self.inner.l2.as_ref().filter(|l| l.is_healthy()) else {
            return;
        };
        let due = {
            let mut s = slot.lock();
            let due = !s.building && now.saturating_sub(s.l2_touched_ms) > 3_600_000;
            if due {
                s.l2_touched_ms = now;
            }
            due
        };
        if due {
            let _ = l2.touch(user).await;
        }
    }

    /// The newest `limit` post ids below `below` across every followee.
    async fn merge_below(
        &self,
        user: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>, FeedError> {
        let mut out: BTreeSet<u64> = BTreeSet::new();
        for f in self.followees(user).await? {
            for id in self
                .inner
                .posts
                .ids_by_author(f, Some(below), limit)
                .await?
            {
                out.insert(id);
                if out.len() > limit {
                    out.pop_first();
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Everyone `user` follows, in id order.
    async fn followees(&self, user: u64) -> Result<Vec<u64>, FeedError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.inner.graph.following(user, after, 1000).await?;
            all.extend(page.ids);
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// The L1 slot of `user`'s timeline: cached, loaded from L2, or rebuilt.
    async fn timeline_of(&self, user: u64) -> Result<SlotRef, FeedError> {
        if let Some(slot) = self.inner.l1.slot(user) {
            return Ok(slot);
        }
        if let Some(l2) = self.inner.l2.as_ref().filter(|l| l.is_healthy())
            && let Ok(Some(t)) = l2.load(user).await
        {
            let celebs = self.pulled_followees(user).await?;
            let now = self.now_ms();
            let (slot, _) = self.inner.l1.slot_or_insert(user, || Slot {
                timeline: t,
                celebs,
                last_read_ms: now,
                building: false,
                l2_touched_ms: now,
                lists: Vec::new(),
                reposted: Default::default(),
            });
            return Ok(slot);
        }
        self.rebuild(user).await
    }

    /// The followees of `user` that are pulled at read time.
    async fn pulled_followees(&self, user: u64) -> Result<Vec<u64>, FeedError> {
        let mut celebs = Vec::new();
        for f in self.followees(user).await? {
            if self.is_celebrity(f).await? {
                celebs.push(f);
            }
        }
        Ok(celebs)
    }

    /// Rebuilds `user`'s timeline from follows and posts: `rebuild_budget` followees now, the
    /// rest in a background task. A second reader during a rebuild shares the same slot.
    async fn rebuild(&self, user: u64) -> Result<SlotRef, FeedError> {
        let now = self.now_ms();
        let (slot, fresh) = self.inner.l1.slot_or_insert(user, || Slot {
            building: true,
            last_read_ms: now,
            ..Slot::default()
        });
        if !fresh {
            return Ok(slot);
        }
        let mut followees = match self.followees(user).await {
            Ok(f) => f,
            Err(e) => {
                self.inner.l1.evict(user);
                return Err(e);
            }
        };
        let budget = self.inner.cfg.rebuild_budget.max(1).min(followees.len());
        let rest = followees.split_off(budget);
        if let Err(e) = self.rebuild_part(&slot, &followees).await {
            self.inner.l1.evict(user);
            return Err(e);
        }
        if rest.is_empty() {
            self.finish_rebuild(user, &slot).await;
        } else {
            let feed = self.clone();
            let bg = slot.clone();
            tokio::spawn(async move {
                match feed.rebuild_part(&bg, &rest).await {
                    Ok(()) => feed.finish_rebuild(user, &bg).await,
                    Err(e) => {
                        tracing::warn!(error = %e, user, "timeline rebuild failed; the next read retries");
                        feed.inner.l1.evict(user);
                    }
                }
            });
        }
        Ok(slot)
    }

    /// Reads `followees`' recent posts into a building timeline.
    async fn rebuild_part(&self, slot: &SlotRef, followees: &[u64]) -> Result<(), FeedError> {
        let k = self.inner.cfg.backfill;
        let mut part = Vec::new();
        let mut floor = 0;
        let mut celebs = Vec::new();
        for f in followees {
            if self.is_celebrity(*f).await? {
                celebs.push(*f);
                continue;
            }
            let ids = self.inner.posts.ids_by_author(*f, None, k).await?;
            if ids.len() == k
                && let Some(last) = ids.last()
            {
                floor = floor.max(*last);
            }
            part.extend(ids.into_iter().map(|id| (id, *f)));
        }
        let cap = self.inner.cfg.cap;
        let built = Timeline::from_entries(part, floor, cap);
        let mut s = slot.lock();
        s.timeline.merge(&built, cap);
        for c in celebs {
            if !s.celebs.contains(&c) {
                s.celebs.push(c);
            }
        }
        Ok(())
    }

    /// Marks a rebuilt timeline ready and stores it in L2.
    async fn finish_rebuild(&self, user: u64, slot: &SlotRef) {
        let snapshot = {
            let mut s = slot.lock();
            s.building = false;
            s.l2_touched_ms = self.now_ms();
            s.timeline.clone()
        };
        if let Some(l2) = self.inner.l2.as_ref().filter(|l| l.is_healthy())
            && let Err(e) = l2.save(user, &snapshot).await
        {
            tracing::debug!(error = %e, user, "could not store a rebuilt timeline in redis");
        }
    }
}

#[cfg(test)]
impl Feed {
    /// The cached timeline of `user`, if any (tests).
    pub(crate) fn cached(&self, user: u64) -> Option<Timeline> {
        self.inner.l1.slot(user).map(|s| s.lock().timeline.clone())
    }
}
