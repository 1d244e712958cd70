//! Pre-serialized posts for hydrated feed pages: the JSON of a post's own fields with its
//! author's summary (`id` … `quote_of`: everything of a feed item that is the same for every
//! viewer), kept so a page splices it with the live parts (the quoted post, counters, the
//! viewer's flags, the repost's fields) instead of formatting ids and times and escaping the
//! text again on every read.
//!
//! **Never stale by construction:** a fragment remembers the post and the author summary it was
//! written from — the very `Arc`s of the feed's post cache and summary cache (held weakly: their
//! allocation stays, so an address is not reused while it is remembered) — and is used only while
//! the caches still hand out those same `Arc`s. An edit or a deletion (the post cache drops the
//! post: the next read brings a new `Arc`), a profile change (the summary cache drops the user),
//! the post cache's TTL: each replaces an `Arc`, and the next page writes the fragment again. It
//! has no invalidation of its own to forget.
//!
//! **One lookup for the post and its author** ([`Fragments::lookup`], the feed's path): a fragment
//! also keeps its author summary's [`Mark`], so a page can take the fragment before it looks up
//! any author and skip the summary lookup of a post whose fragment is still good (the same post
//! `Arc`, the summary's mark still current: [`starling_feed::authors`]), about a fifth of a
//! page's cache lookups.
//!
//! A slot is an [`ArcSwapOption`]: a read takes no lock (a hit costs a reference count, not a
//! mutex a reader on another core may hold), a writer swaps the slot's `Arc` whole.
//!
//! Bounded: a direct-mapped table of [`SLOTS`] slots (a post's id picks its slot, a newcomer
//! replaces the slot's holder), fragments over [`MAX_FRAGMENT`] bytes not kept (written afresh
//! each time): at most `SLOTS × MAX_FRAGMENT` bytes. Metrics:
//! `starling_post_fragments_{hits,misses}_total`, `starling_post_fragments_cached`,
//! `starling_post_fragments_bytes`.

use crate::notifications::ActorView;
use crate::posts::PostView;
use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use starling_feed::authors::{Author, Current, Mark};
use starling_posts::Post;
use std::sync::{Arc, Weak};

/// Slots of the table (a power of two).
pub const SLOTS: usize = 8192;

/// Largest fragment kept, in bytes.
pub const MAX_FRAGMENT: usize = 2048;

/// A post's pre-serialized fields, and what they were written from.
#[derive(Debug)]
pub(crate) struct Fragment {
    post: Weak<Post>,
    author: Option<Weak<Author>>,
    /// The author summary's mark when it was looked up.
    mark: Mark,
    /// `{"id":…` up to the last own field, without the closing brace.
    json: Box<[u8]>,
}

impl Fragment {
    /// The post's own fields and author summary, without the closing brace.
    pub(crate) fn json(&self) -> &[u8] {
        &self.json
    }

    /// Written from exactly `post` and `author` (the same allocations).
    fn is_of(&self, post: &Arc<Post>, author: Option<&Arc<Author>>) -> bool {
        std::ptr::eq(self.post.as_ptr(), Arc::as_ptr(post))
            && match (&self.author, author) {
                (None, None) => true,
                (Some(w), Some(a)) => std::ptr::eq(w.as_ptr(), Arc::as_ptr(a)),
                _ => false,
            }
    }
}

/// The table (see the module's documentation). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fragments(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    slots: Box<[ArcSwapOption<Fragment>]>,
    hits: Counter,
    misses: Counter,
    cached: Gauge,
    bytes: Gauge,
}

impl Fragments {
    /// An empty table whose metrics are registered in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let f = Fragments::default();
        r.register(
            "starling_post_fragments_hits",
            "Feed items whose post and author summary came pre-serialized",
            f.0.hits.clone(),
        );
        r.register(
            "starling_post_fragments_misses",
            "Feed items whose post and author summary were serialized (then kept, if small enough)",
            f.0.misses.clone(),
        );
        r.register(
            "starling_post_fragments_cached",
            "Pre-serialized posts held for feed pages (at most 8 192)",
            f.0.cached.clone(),
        );
        r.register(
            "starling_post_fragments_bytes",
            "Bytes of the pre-serialized posts held for feed pages (at most 16 MiB)",
            f.0.bytes.clone(),
        );
        f
    }

    /// `post`'s fragment, if it was written from this very `post` and its author's summary is
    /// still the one the summary cache answers with (its mark, checked at `now`): no summary
    /// lookup needed. Counted as a hit; a miss is counted by the [`Fragments::write`] that follows.
    pub(crate) fn lookup(&self, post: &Arc<Post>, now: &Current<'_>) -> Option<Arc<Fragment>> {
        let slot = &self.0.slots[slot_of(post.id)];
        let held = slot.load_full()?;
        let good = std::ptr::eq(held.post.as_ptr(), Arc::as_ptr(post))
            && now.is_current(post.author, held.mark);
        good.then(|| {
            self.0.hits.inc();
            held
        })
    }

    /// Appends `post`'s own fields with `author`'s summary (looked up with `mark`) as JSON,
    /// without the closing brace: a [`PostView`] with its viewer-dependent fields left out, as
    /// serde writes it.
    pub(crate) fn write(
        &self,
        post: &Arc<Post>,
        author: Option<&Arc<Author>>,
        mark: Mark,
        out: &mut Vec<u8>,
    ) {
        let slot = &self.0.slots[slot_of(post.id)];
        let held = slot.load();
        // A fragment of the same post and summary under an older mark (another user of the
        // stripe changed) is written again with this one, so the next lookup takes it.
        if let Some(f) = held
            .as_ref()
            .filter(|f| f.is_of(post, author) && f.mark == mark)
        {
            self.0.hits.inc();
            out.extend_from_slice(&f.json);
            return;
        }
        self.0.misses.inc();
        let start = out.len();
        own_fields(post, author, out);
        let json = &out[start..];
        if json.len() > MAX_FRAGMENT {
            return;
        }
        let new = Arc::new(Fragment {
            post: Arc::downgrade(post),
            author: author.map(Arc::downgrade),
            mark,
            json: json.into(),
        });
        let size = i64::try_from(new.json.len()).unwrap_or(i64::MAX);
        drop(held);
        let old = slot.swap(Some(new));
        match old {
            Some(o) => {
                self.0.bytes.inc_by(size - o.json.len() as i64);
            }
            None => {
                self.0.cached.inc();
                self.0.bytes.inc_by(size);
            }
        }
    }
}

impl Fragments {
    /// Items written from a kept fragment so far.
    pub fn hits(&self) -> u64 {
        self.0.hits.get()
    }
}

impl Default for Fragments {
    fn default() -> Self {
        Fragments(Arc::new(Inner {
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hits: Counter::default(),
            misses: Counter::default(),
            cached: Gauge::default(),
            bytes: Gauge::default(),
        }))
    }
}

/// The slot of post `id` (Fibonacci hashing: ids are time-ordered, their low bits alone would
/// cluster).
fn slot_of(id: u64) -> usize {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Writes `post`'s own fields and `author`'s summary, serde's output of the [`PostView`] without
/// its closing brace.
fn own_fields(post: &Post, author: Option<&Arc<Author>>, out: &mut Vec<u8>) {
    let mut v = PostView::from(post);
    v.author_summary = author.map(|a| ActorView::from(&**a));
    let start = out.len();
    // Serializing a struct of strings, numbers and options into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &v).is_ok() && out.last() == Some(&b'}') {
        out.pop();
    } else {
        out.truncate(start);
        out.push(b'{');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_feed::authors::Authors;
    use starling_store::{HlcClock, Limits, NodeId, RegionId, open_memory};

    fn post(id: u64, text: &str) -> Arc<Post> {
        Arc::new(Post {
            id,
            author: 7,
            text: text.into(),
            media: vec![3],
            created_at_ms: 1_700_000_000_000,
            edited_at_ms: None,
            repost_of: None,
            quote_of: Some(5),
        })
    }

    fn author(handle: &str) -> Arc<Author> {
        Arc::new(Author {
            id: 7,
            handle: handle.into(),
            display_name: "Seven".into(),
            avatar: None,
        })
    }

    /// A real summary cache (over an empty memory store: user 7 is gone).
    fn summaries() -> Authors {
        let node = NodeId::new(RegionId::from_name("t"), 1);
        let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
        crate::testing::state(store).feed.authors().clone()
    }

    /// User 7's mark in `authors` now.
    async fn mark(authors: &Authors) -> Mark {
        let mut got = None;
        authors
            .get_many_marked(&[7], |_, _, m| got = Some(m))
            .await
            .unwrap();
        got.unwrap()
    }

    fn written_marked(f: &Fragments, p: &Arc<Post>, a: Option<&Arc<Author>>, m: Mark) -> String {
        let mut out = Vec::new();
        f.write(p, a, m, &mut out);
        out.push(b'}');
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn a_fragment_is_the_post_view_and_follows_the_caches_arcs() {
        let authors = summaries();
        let m = mark(&authors).await;
        let written =
            |f: &Fragments, p: &Arc<Post>, a: Option<&Arc<Author>>| written_marked(f, p, a, m);
        let f = Fragments::default();
        let (p, a) = (post(1, "hello \"you\""), author("seven"));
        let mut view = PostView::from(&*p);
        view.author_summary = Some(ActorView::from(&*a));
        let want = serde_json::to_string(&view).unwrap();
        assert_eq!(written(&f, &p, Some(&a)), want);
        assert_eq!(written(&f, &p, Some(&a)), want, "from the table");
        assert_eq!((f.0.hits.get(), f.0.misses.get()), (1, 1));
        // An edited post (a new Arc in the post cache), a changed profile: written again.
        let edited = post(1, "edited");
        assert!(written(&f, &edited, Some(&a)).contains("\"edited\""));
        let renamed = author("eight");
        assert!(written(&f, &edited, Some(&renamed)).contains("\"eight\""));
        assert!(written(&f, &edited, None).contains("\"edited\""));
        assert_eq!((f.0.hits.get(), f.0.misses.get()), (1, 4));
        assert_eq!(f.0.cached.get(), 1);
        // A large post is written but not kept.
        let big = post(2, &"x".repeat(MAX_FRAGMENT));
        assert!(written(&f, &big, None).len() > MAX_FRAGMENT);
        written(&f, &big, None);
        assert_eq!(f.0.hits.get(), 1);
    }

    /// The one-lookup path: a fragment is found for the very post `Arc` while its author's
    /// mark is current, and not for an edited post (a new `Arc`) or once the author changed.
    #[tokio::test]
    async fn a_lookup_finds_the_fragment_while_the_post_and_its_authors_mark_hold() {
        let authors = summaries();
        let f = Fragments::default();
        let (p, a) = (post(1, "hello"), author("seven"));
        assert!(f.lookup(&p, &authors.current()).is_none(), "empty");
        let want = written_marked(&f, &p, Some(&a), mark(&authors).await);
        let found = f.lookup(&p, &authors.current()).expect("kept and current");
        assert_eq!(String::from_utf8_lossy(found.json()) + "}", want);
        assert_eq!(f.hits(), 1);
        assert!(
            f.lookup(&post(1, "hello"), &authors.current()).is_none(),
            "another Arc"
        );
        authors.invalidate(7);
        assert!(
            f.lookup(&p, &authors.current()).is_none(),
            "the author changed"
        );
        written_marked(&f, &p, Some(&a), mark(&authors).await);
        assert!(f.lookup(&p, &authors.current()).is_some(), "written again");
        authors.invalidate_all();
        assert!(
            f.lookup(&p, &authors.current()).is_none(),
            "every summary dropped"
        );
        assert_eq!(f.hits(), 2);
    }

    #[test]
    fn slots_are_in_range_and_spread() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u64 {
            let s = slot_of((1_700_000_000_000 << 22) + i);
            assert!(s < SLOTS);
            seen.insert(s);
        }
        assert!(seen.len() > 900, "{}", seen.len());
    }
}
