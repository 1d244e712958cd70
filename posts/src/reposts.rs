//! Reposts and quotes.
//!
//! A repost is a post of its own (no text, `repost_of` set) in the reposter's list, so the feed
//! fans it out, rebuilds and pulls it like any post; one set element per (post, reposter) says
//! which repost post it is, so reposting is idempotent. A quote is an ordinary post with
//! `quote_of` set, listed among the quoted post's quotes.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `prp` | post id, reposter id | set element (add-wins) | the repost's post id (8 bytes big-endian) |
//! | `pq` | quoted post id, quote id | set element (add-wins) | — |
//!
//! Both sets are counted per node into `prpc` / `pqc` by the post-counts consumer of
//! [`crate::likes`], by the same rule as likes and replies: a retry, or the same repost made in
//! two regions at once, is one element and counts once.
//!
//! **Order and crashes.** A repost writes its element first (naming a fresh id), then the post
//! and its list entry. A crash in between leaves an element whose post is missing: the retry
//! finds the element and writes the post under the id it names, so no retry makes a second
//! repost. Two regions reposting the same post for the same user at the same moment may each
//! write a repost post (the element keeps one of the two ids); the feed shows a post at most
//! once a page whatever reposts it ([`crate::Post::repost_of`]).

use crate::{Post, PostError, Posts, list_key, now_ms, post_key};
use bytes::Bytes;
use starling_store::{Key, Keyspace, ScanRequest, StoreExt};

/// `prp/post/reposter` → the repost's post id.
pub(crate) const REPOSTS: Keyspace = Keyspace::new("prp");
/// `pq/quoted/quote`: the quotes of a post.
pub(crate) const QUOTES: Keyspace = Keyspace::new("pq");

pub(crate) fn repost_key(post: u64, reposter: u64) -> Key {
    REPOSTS.key().u64(post).u64(reposter).finish()
}

fn quote_key(quoted: u64, quote: u64) -> Key {
    QUOTES.key().u64(quoted).u64(quote).finish()
}

pub(crate) fn id_of(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}

impl Posts {
    /// `reposter` reposts `post` (the caller checks that it exists and may be reposted, and that
    /// it is not itself a repost). Idempotent: returns the repost and whether this call made it.
    pub async fn repost(&self, post: u64, reposter: u64) -> Result<(Post, bool), PostError> {
        let key = repost_key(post, reposter);
        let named = self.repost_named(&key).await?;
        let (id, created) = match named {
            Some(id) => match self.get(id).await {
                Ok(p) => return Ok((p, false)),
                // The element landed, the post not (a crash in between): write it now.
                Err(PostError::NotFound) => (id, false),
                Err(e) => return Err(e),
            },
            None => {
                let id = self.ids.next_id();
                self.store
                    .add(&key, Bytes::copy_from_slice(&id.to_be_bytes()))
                    .await?;
                self.likes.forget_viewer(post, reposter);
                (id, true)
            }
        };
        let repost = Post {
            id,
            author: reposter,
            text: String::new(),
            media: Vec::new(),
            created_at_ms: now_ms(),
            edited_at_ms: None,
            repost_of: Some(post),
            quote_of: None,
        };
        self.store.put_typed(&post_key(id), &repost).await?;
        self.store
            .add(&list_key(reposter, id), Bytes::new())
            .await?;
        Ok((repost, created))
    }

    /// `reposter` takes their repost of `post` back. Idempotent; returns the id of the repost
    /// taken back, if there was one.
    pub async fn unrepost(&self, post: u64, reposter: u64) -> Result<Option<u64>, PostError> {
        let key = repost_key(post, reposter);
        let Some(id) = self
            .store
            .get(&key)
            .await?
            .and_then(|v| v.value)
            .and_then(|b| id_of(&b))
        else {
            return Ok(None);
        };
        self.store.remove(&key).await?;
        self.likes.forget_viewer(post, reposter);
        self.store.delete(&post_key(id)).await?;
        self.store.remove(&list_key(reposter, id)).await?;
        Ok(Some(id))
    }

    /// The id of `viewer`'s repost of `post`, if they repost it (read from their element: never
    /// behind).
    pub async fn reposted(&self, post: u64, viewer: u64) -> Result<Option<u64>, PostError> {
        Ok(self
            .store
            .get(&repost_key(post, viewer))
            .await?
            .and_then(|v| v.value)
            .and_then(|b| id_of(&b)))
    }

    /// A page of at most `limit` (1 ..= [`crate::likes::MAX_PAGE`]) users who repost `post`,
    /// ascending by id, after the user `after`.
    pub async fn reposters(
        &self,
        post: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<crate::likes::LikerPage, PostError> {
        let prefix = REPOSTS.key().u64(post).finish();
        let mut req = ScanRequest::prefix(prefix, limit.clamp(1, crate::likes::MAX_PAGE));
        req.after = after.map(|a| repost_key(post, a));
        let page = self.store.scan(&req).await?;
        let at = REPOSTS.prefix_len() + 8;
        let user = |k: &Key| starling_store::key::read_u64(k.as_bytes(), at);
        Ok(crate::likes::LikerPage {
            ids: page.items.iter().filter_map(|(k, _)| user(k)).collect(),
            next: page.next.as_ref().and_then(user),
        })
    }

    /// The repost a reposter's element `key` names (none: not reposted, or unreadable).
    async fn repost_named(&self, key: &Key) -> Result<Option<u64>, PostError> {
        let value = self.store.get(key).await?.and_then(|v| v.value);
        Ok(value.and_then(|b| id_of(&b)))
    }

    /// Records that `quote` quotes `quoted`. Idempotent (written after the quote, and again by a
    /// retry).
    pub async fn link_quote(&self, quote: u64, quoted: u64) -> Result<(), PostError> {
        let key = quote_key(quoted, quote);
        if self.store.get(&key).await?.and_then(|v| v.value).is_none() {
            self.store.add(&key, Bytes::new()).await?;
        }
        Ok(())
    }

    /// A deleted post leaves the set it is counted in: a repost its reposter's element (if the
    /// element still names it), a quote the quoted post's quotes.
    pub(crate) async fn unlink_repost_or_quote(&self, post: &Post) -> Result<(), PostError> {
        if let Some(original) = post.repost_of {
            let key = repost_key(original, post.author);
            let named = self.repost_named(&key).await?;
            if named == Some(post.id) {
                self.store.remove(&key).await?;
                self.likes.forget_viewer(original, post.author);
            }
        }
        if let Some(quoted) = post.quote_of {
            self.store.remove(&quote_key(quoted, post.id)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::posts;

    #[tokio::test]
    async fn a_repost_is_one_listed_post_and_counts_once() {
        let p = posts();
        let (x, _) = p.create(1, "us", "original", &[], None).await.unwrap();
        let (r, created) = p.repost(x.id, 2).await.unwrap();
        assert!(created);
        assert_eq!(r.repost_of, Some(x.id));
        assert_eq!(r.author, 2);
        let (again, created) = p.repost(x.id, 2).await.unwrap();
        assert!(!created);
        assert_eq!(again, r);
        assert_eq!(p.ids_by_author(2, None, 10).await.unwrap(), vec![r.id]);
        assert_eq!(p.reposted(x.id, 2).await.unwrap(), Some(r.id));
        assert_eq!(p.reposted(x.id, 3).await.unwrap(), None);
        p.repost(x.id, 3).await.unwrap();
        assert_eq!(p.reposters(x.id, None, 10).await.unwrap().ids, vec![2, 3]);
        let first = p.reposters(x.id, None, 1).await.unwrap();
        assert_eq!(first.ids, vec![2]);
        assert_eq!(p.reposters(x.id, first.next, 1).await.unwrap().ids, vec![3]);
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().repost_count(x.id).await.unwrap(), 2);
        // Undo: the repost post and its element go; idempotent.
        assert_eq!(p.unrepost(x.id, 2).await.unwrap(), Some(r.id));
        assert_eq!(p.unrepost(x.id, 2).await.unwrap(), None);
        assert!(matches!(p.get(r.id).await, Err(PostError::NotFound)));
        assert!(p.ids_by_author(2, None, 10).await.unwrap().is_empty());
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().repost_count(x.id).await.unwrap(), 1);
        // Deleting the repost post itself undoes it too.
        let (r3, _) = p.repost(x.id, 4).await.unwrap();
        p.delete(r3.id, 4).await.unwrap();
        assert_eq!(p.reposted(x.id, 4).await.unwrap(), None);
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().repost_count(x.id).await.unwrap(), 1);
        // A repost has no text to edit.
        let (r5, _) = p.repost(x.id, 5).await.unwrap();
        assert!(matches!(
            p.edit(r5.id, 5, "text").await,
            Err(PostError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn the_reposters_cached_flag_follows_repost_undo_and_delete_at_once() {
        let p = posts();
        let (x, _) = p.create(1, "us", "original", &[], None).await.unwrap();
        let l = p.likes();
        let reposted = |f: Option<crate::viewer::ViewerFlags>| f.map(|f| f.reposted);
        let read = |post, viewer| async move { l.viewer_flags(viewer, &[post]).await.unwrap()[0] };
        assert!(!read(x.id, 2).await.reposted);
        assert_eq!(reposted(l.viewer_cached(x.id, 2)), Some(false));
        let (r, _) = p.repost(x.id, 2).await.unwrap();
        assert_eq!(l.viewer_cached(x.id, 2), None, "dropped by the repost");
        assert!(read(x.id, 2).await.reposted);
        assert_eq!(reposted(l.viewer_cached(x.id, 2)), Some(true));
        p.unrepost(x.id, 2).await.unwrap();
        assert!(!read(x.id, 2).await.reposted);
        // Deleting the repost post undoes it: dropped too.
        let (r2, _) = p.repost(x.id, 2).await.unwrap();
        assert_ne!(r2.id, r.id);
        assert!(read(x.id, 2).await.reposted);
        p.delete(r2.id, 2).await.unwrap();
        assert_eq!(l.viewer_cached(x.id, 2), None);
        assert!(!read(x.id, 2).await.reposted);
    }

    #[tokio::test]
    async fn a_crash_between_the_element_and_the_post_is_completed_by_the_retry() {
        let p = posts();
        let (x, _) = p.create(1, "us", "original", &[], None).await.unwrap();
        // The crash: the element names id 77, the post was never written.
        p.store
            .add(
                &repost_key(x.id, 2),
                Bytes::copy_from_slice(&77u64.to_be_bytes()),
            )
            .await
            .unwrap();
        let (r, created) = p.repost(x.id, 2).await.unwrap();
        assert!(
            !created,
            "the element was already there: not notified twice"
        );
        assert_eq!(r.id, 77);
        assert_eq!(p.get(77).await.unwrap().repost_of, Some(x.id));
        assert_eq!(p.ids_by_author(2, None, 10).await.unwrap(), vec![77]);
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().repost_count(x.id).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn quotes_are_counted_and_leave_the_count_when_deleted() {
        let p = posts();
        let (x, _) = p.create(1, "us", "original", &[], None).await.unwrap();
        let (q, _) = p
            .create_linked(2, "us", "look", &[], None, crate::Links::quoting(x.id))
            .await
            .unwrap();
        assert_eq!(q.quote_of, Some(x.id));
        assert_eq!(p.get(q.id).await.unwrap().quote_of, Some(x.id));
        p.link_quote(q.id, x.id).await.unwrap();
        p.link_quote(q.id, x.id).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().quote_count(x.id).await.unwrap(), 1);
        p.delete(q.id, 2).await.unwrap();
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().quote_count(x.id).await.unwrap(), 0);
    }

    /// A post stored before reposts existed (its record ends after `edited_at_ms`) still reads.
    #[test]
    fn posts_stored_before_reposts_still_decode() {
        #[derive(serde::Serialize)]
        struct Old {
            id: u64,
            author: u64,
            text: String,
            media: Vec<u64>,
            created_at_ms: u64,
            edited_at_ms: Option<u64>,
        }
        let old = Old {
            id: 5,
            author: 6,
            text: "old".into(),
            media: vec![1],
            created_at_ms: 7,
            edited_at_ms: Some(8),
        };
        let b = starling_store::codec::to_value(&old).unwrap();
        let p: Post = starling_store::codec::from_value(&b).unwrap();
        assert_eq!((p.id, p.text.as_str(), p.edited_at_ms), (5, "old", Some(8)));
        assert_eq!((p.repost_of, p.quote_of), (None, None));
        let json =
            br#"{"id":5,"author":6,"text":"old","media":[],"created_at_ms":7,"edited_at_ms":null}"#;
        let p: Post = serde_json::from_slice(json).unwrap();
        assert_eq!(p.repost_of, None);
        let new = Post {
            repost_of: Some(9),
            quote_of: Some(10),
            ..p
        };
        let back: Post =
            starling_store::codec::from_value(&starling_store::codec::to_value(&new).unwrap())
                .unwrap();
        assert_eq!(back, new);
    }
}
