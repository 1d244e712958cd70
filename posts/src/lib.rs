//! Posts: create (idempotent by client key), read, edit, delete, per-author lists newest first,
//! and the media references a post carries.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `pp` | post id | register (LWW: the last edit wins) | [`Post`], then a reply's parent (`Stored`) |
//! | `pa` | author, post id (descending) | set element | — (the author's list, newest first) |
//! | `pi` | author, idempotency key | register, written by CAS in the author's home region | post id |
//! | `pm` | media id | register | [`MediaRef`] |
//! | `px` | post id | register | — (the create of this post, under an idempotency key, failed after its claim may have landed: see [`Posts::create`]) |
//!
//! A delete is a tombstone of the post and of its list entry: gone in every region once
//! replicated; its likes and reposts follow in bounded background steps ([`cleanup`]). Likes and their counts live in [`likes`], replies and threads in [`replies`], users'
//! notifications in [`notifications`]. Talks only to `starling_store`.

pub mod bulk;
pub mod cleanup;
mod journal;
pub mod liked;
pub mod likes;
pub mod mentions;
pub mod notifications;
pub mod replies;
pub mod reposts;
#[cfg(test)]
mod test_support;
pub mod viewer;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use starling_store::{
    CasOutcome, CasRouter, IdGenerator, Key, Keyspace, Mutation, ScanRequest, Store, StoreError,
    StoreExt,
};
use std::sync::Arc;

/// The posts keyspace (public: the feed tails it).
pub const POSTS: Keyspace = Keyspace::new("pp");
const BY_AUTHOR: Keyspace = Keyspace::new("pa");
const IDEMPOTENCY: Keyspace = Keyspace::new("pi");
const MEDIA: Keyspace = Keyspace::new("pm");
const ABANDONED: Keyspace = Keyspace::new("px");

/// How long an idempotency claim may point to a post this region has not received yet (the
/// post and the claim replicate separately) before a retry takes the post as gone; also how
/// long a retry waits for a failed attempt to take its post back.
pub const IDEMPOTENCY_GRACE_MS: u64 = 60_000;

/// Longest post, in characters.
pub const MAX_TEXT: usize = 5000;
/// Most media a post carries.
pub const MAX_MEDIA: usize = 4;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// A post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    /// Time-ordered id.
    pub id: u64,
    /// Author's user id.
    pub author: u64,
    /// 1–5000 characters.
    pub text: String,
    /// Media ids (owned by the author).
    pub media: Vec<u64>,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
    /// Last edit, if any.
    pub edited_at_ms: Option<u64>,
    /// The post this one reposts ([`reposts`]): a repost has no text or media of its own.
    /// Absent from posts stored before reposts existed (see [`lenient`]).
    #[serde(default, deserialize_with = "lenient")]
    pub repost_of: Option<u64>,
    /// The post this one quotes.
    #[serde(default, deserialize_with = "lenient")]
    pub quote_of: Option<u64>,
}

/// A post as its record holds it: the post's fields, then the parent of a reply (as given when it
/// was published; [`replies`] links it). Postcard encodes the fields in order without names, so a
/// reader of [`Post`] reads such a record and leaves the tail; a record stored before the tail
/// existed (every post before it, and seeded posts loaded before [`seed_runs`] wrote it) reads
/// `reply_to` as `None`, and its parent, if any, is only in `pr`. Kept out of [`Post`] so that its shape, built in many places,
/// is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored<P> {
    pub(crate) post: P,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) reply_to: Option<u64>,
}

/// What a new post answers: the post it quotes, the post it replies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Links {
    /// The quoted post.
    pub quote_of: Option<u64>,
    /// The parent of a reply.
    pub reply_to: Option<u64>,
}

impl Links {
    /// A post that quotes `quote_of` (when there is one) and answers none.
    pub fn quoting(quote_of: impl Into<Option<u64>>) -> Self {
        Self {
            quote_of: quote_of.into(),
            reply_to: None,
        }
    }
}

/// Reads an optional id added after the first posts were stored: a record written before the
/// field existed ends where the field would start, so postcard (which encodes fields in order,
/// without names) fails to read it; that is taken as `None`. JSON (the body cache) omits it.
fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(d).unwrap_or(None))
}

/// What the KV holds for an uploaded blob (the bytes live in the blob store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    /// Unguessable id.
    pub id: u64,
    /// Uploader.
    pub owner: u64,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Path in the blob store.
    pub path: String,
}

/// Errors of posts.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Text, media list or key out of bounds.
    #[error("{0}")]
    Invalid(&'static str),
    /// No such post (or deleted).
    #[error("post not found")]
    NotFound,
    /// Not the author.
    #[error("only the author may change a post")]
    Forbidden,
    /// A media id the author does not own (or that does not exist).
    #[error("unknown media id {0}")]
    UnknownMedia(u64),
    /// The first request with this idempotency key is still being applied.
    #[error("a request with this idempotency key is in progress")]
    InProgress,
    /// The post created with this idempotency key was deleted: a retry does not publish it again.
    #[error(
        "the post created with this idempotency key was deleted; use a new key to publish again"
    )]
    Gone,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of posts, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostPage {
    /// The posts.
    pub posts: Vec<Post>,
    /// Cursor of the next page (the last post's id).
    pub next: Option<u64>,
}

/// The posts service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Posts {
    store: Arc<dyn Store>,
    cas: Arc<dyn CasRouter>,
    ids: Arc<IdGenerator>,
    likes: likes::Likes,
    notifications: notifications::Notifications,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn post_key(id: u64) -> Key {
    POSTS.key().u64(id).finish()
}

fn abandoned_key(id: u64) -> Key {
    ABANDONED.key().u64(id).finish()
}

/// What an idempotency claim leads to.
enum Claimed {
    /// The post it was claimed for.
    Original(Post),
    /// The attempt that claimed it failed and took its post back: a retry publishes it, under
    /// the claimed id.
    Abandoned(u64),
}

fn list_key(author: u64, id: u64) -> Key {
    BY_AUTHOR.key().u64(author).u64_desc(id).finish()
}

/// The post id a claim holds.
fn claim_id(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}

fn check_text(text: &str) -> Result<(), PostError> {
    let n = text.chars().count();
    if n == 0 || n > MAX_TEXT || text.trim().is_empty() {
        return Err(PostError::Invalid(
            "text is 1 to 5000 characters, not only spaces",
        ));
    }
    if text.contains('\0') {
        return Err(PostError::Invalid("text may not contain NUL"));
    }
    Ok(())
}

impl Posts {
    /// Posts over `store`; idempotency keys are claimed through `cas`.
    pub fn new(store: Arc<dyn Store>, cas: Arc<dyn CasRouter>, ids: Arc<IdGenerator>) -> Self {
        Posts {
            likes: likes::Likes::new(store.clone()),
            notifications: notifications::Notifications::new(store.clone(), ids.clone()),
            store,
            cas,
            ids,
        }
    }

    /// Likes of posts, and their counts.
    pub fn likes(&self) -> &likes::Likes {
        &self.likes
    }

    /// Users' notifications.
    pub fn notifications(&self) -> &notifications::Notifications {
        &self.notifications
    }

    /// Publishes a post. With an idempotency key, a retry returns the original post and writes
    /// nothing new; the key is claimed by CAS in the author's home region. The rule of a retry
    /// whose key is claimed but whose post is not there:
    /// - the first attempt failed after its claim may have landed (its CAS answered an error)
    ///   and took its post back, leaving a `px` mark: the retry publishes the post under the
    ///   claimed id (`created`); while that post is still live (the take-back not done yet,
    ///   under [`IDEMPOTENCY_GRACE_MS`]) the retry is [`PostError::InProgress`];
    /// - the post is a tombstone without a mark: the author deleted it, [`PostError::Gone`];
    /// - no record of the post at all: it has not replicated here yet, [`PostError::InProgress`]
    ///   for [`IDEMPOTENCY_GRACE_MS`] after the claim, then [`PostError::Gone`] (its tombstone
    ///   was collected, or it was lost) — never "in progress" for good.
    pub async fn create(
        &self,
        author: u64,
        author_region: &str,
        text: &str,
        media: &[u64],
        idempotency_key: Option<&str>,
    ) -> Result<(Post, bool), PostError> {
        let links = Links::default();
        self.create_linked(author, author_region, text, media, idempotency_key, links)
            .await
    }

    /// [`Posts::create`] of a post that quotes a post or replies to one, or both (the caller
    /// checks that they exist and may be answered; [`Posts::link_quote`] and
    /// [`Posts::link_reply`] then list it). The reply's parent is also in the post's record.
    pub async fn create_linked(
        &self,
        author: u64,
        author_region: &str,
        text: &str,
        media: &[u64],
        idempotency_key: Option<&str>,
        links: Links,
    ) -> Result<(Post, bool), PostError> {
        check_text(text)?;
        if media.len() > MAX_MEDIA {
            return Err(PostError::Invalid("a post carries at most 4 media"));
        }
        for &m in media {
            match self.media(m).await? {
                Some(r) if r.owner == author => {}
                _ => return Err(PostError::UnknownMedia(m)),
            }
        }
        let idem = match idempotency_key {
            Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY => {
                return Err(PostError::Invalid("Idempotency-Key is 1 to 128 bytes"));
            }
            Some(k) => Some(IDEMPOTENCY.key().u64(author).str(k).finish()),
            None => None,
        };
        if let Some(ik) = &idem {
            match self.claimed(ik).await? {
                None => {}
                Some(Claimed::Original(original)) => return Ok((original, false)),
                Some(Claimed::Abandoned(id)) => {
                    let post = self.republish(id, author, text, media, links).await?;
                    return Ok((post, true));
                }
            }
        }
        let post = Post {
            id: self.ids.next_id(),
            author,
            text: text.to_string(),
            media: media.to_vec(),
            created_at_ms: now_ms(),
            edited_at_ms: None,
            repost_of: None,
            quote_of: links.quote_of,
        };
        self.put_post(&post, links.reply_to).await?;
        if let Err(e) = self
            .store
            .add(&list_key(author, post.id), Bytes::new())
            .await
        {
            // Unlisted and unclaimed: take it back (best effort) so no retry duplicates it.
            let _ = self.store.delete(&post_key(post.id)).await;
            return Err(e.into());
        }
        if let Some(ik) = &idem {
            let claim = Bytes::copy_from_slice(&post.id.to_be_bytes());
            match self.cas.cas_at(author_region, ik, None, Some(claim)).await {
                Ok(CasOutcome::Applied(_)) => {}
                Ok(CasOutcome::Conflict(current)) => {
                    // Another attempt claimed the key first: take this post back and answer
                    // with the original.
                    self.take_back(author, post.id).await?;
                    let claimed = current.and_then(|v| Some((claim_id(v.value.as_ref()?)?, v.hlc)));
                    let resolved = match claimed {
                        Some((id, hlc)) => self.resolve(id, hlc.millis()).await?,
                        None => self.claimed(ik).await?.ok_or(PostError::InProgress)?,
                    };
                    return match resolved {
                        Claimed::Original(original) => Ok((original, false)),
                        Claimed::Abandoned(id) => {
                            Ok((self.republish(id, author, text, media, links).await?, true))
                        }
                    };
                }
                Err(e) => {
                    // The owner did not answer: the claim may have landed all the same. Mark
                    // the post abandoned before taking it back, so a retry that finds the
                    // claim publishes it again rather than taking it for deleted.
                    self.store
                        .put(&abandoned_key(post.id), Bytes::new())
                        .await?;
                    self.take_back(author, post.id).await?;
                    return Err(e.into());
                }
            }
        }
        Ok((post, true))
    }

    /// Deletes a post this attempt wrote and could not keep.
    async fn take_back(&self, author: u64, id: u64) -> Result<(), PostError> {
        self.store.delete(&post_key(id)).await?;
        self.store.remove(&list_key(author, id)).await?;
        Ok(())
    }

    /// Publishes, under `id`, the post an abandoned attempt claimed `id` for (a retry carries
    /// the same body), and clears the mark.
    async fn republish(
        &self,
        id: u64,
        author: u64,
        text: &str,
        media: &[u64],
        links: Links,
    ) -> Result<Post, PostError> {
        let post = Post {
            id,
            author,
            text: text.to_string(),
            media: media.to_vec(),
            created_at_ms: now_ms(),
            edited_at_ms: None,
            repost_of: None,
            quote_of: links.quote_of,
        };
        self.put_post(&post, links.reply_to).await?;
        self.store.add(&list_key(author, id), Bytes::new()).await?;
        self.store.delete(&abandoned_key(id)).await?;
        Ok(post)
    }

    /// What the claim of an idempotency key leads to; `None` if the key is not claimed (here).
    async fn claimed(&self, ik: &Key) -> Result<Option<Claimed>, PostError> {
        let Some((id, hlc)) = self
            .store
            .get(ik)
            .await?
            .and_then(|v| Some((claim_id(v.value.as_ref()?)?, v.hlc)))
        else {
            return Ok(None);
        };
        self.resolve(id, hlc.millis()).await.map(Some)
    }

    /// The rule of [`Posts::create`] for a key claimed, at `claimed_at_ms`, for post `id`.
    async fn resolve(&self, id: u64, claimed_at_ms: u64) -> Result<Claimed, PostError> {
        let record = self.store.get(&post_key(id)).await?;
        let live = match record.as_ref().and_then(|v| v.value.as_ref()) {
            Some(b) => Some(starling_store::codec::from_value::<Post>(b)?),
            None => None,
        };
        let mark = self.store.get(&abandoned_key(id)).await?;
        let marked_at = mark.filter(|v| v.value.is_some()).map(|v| v.hlc.millis());
        let since = |t: u64| now_ms().saturating_sub(t);
        match (live, marked_at) {
            (Some(p), None) => Ok(Claimed::Original(p)),
            // The failed attempt has not taken its post back yet.
            (Some(_), Some(t)) if since(t) < IDEMPOTENCY_GRACE_MS => Err(PostError::InProgress),
            // It never will (it died): the post stands.
            (Some(p), Some(_)) => {
                let _ = self.store.delete(&abandoned_key(id)).await;
                Ok(Claimed::Original(p))
            }
            (None, Some(_)) => Ok(Claimed::Abandoned(id)),
            (None, None) if record.is_some() => Err(PostError::Gone),
            (None, None) if since(claimed_at_ms) < IDEMPOTENCY_GRACE_MS => {
                Err(PostError::InProgress)
            }
            (None, None) => Err(PostError::Gone),
        }
    }

    /// Writes `post`'s record, naming the parent of a reply.
    async fn put_post(&self, post: &Post, reply_to: Option<u64>) -> Result<(), PostError> {
        let stored = Stored { post, reply_to };
        self.store.put_typed(&post_key(post.id), &stored).await?;
        Ok(())
    }

    /// A post and, if its record names one, the parent it replies to; `NotFound` if unknown or
    /// deleted.
    pub(crate) async fn get_stored(&self, id: u64) -> Result<Stored<Post>, PostError> {
        self.store
            .get_typed::<Stored<Post>>(&post_key(id))
            .await?
            .and_then(|v| v.value)
            .ok_or(PostError::NotFound)
    }

    /// A post; `NotFound` if unknown or deleted.
    pub async fn get(&self, id: u64) -> Result<Post, PostError> {
        self.store
            .get_typed::<Post>(&post_key(id))
            .await?
            .and_then(|v| v.value)
            .ok_or(PostError::NotFound)
    }

    /// The posts of `ids` that exist, in order: an unknown or deleted one is left out (a list's
    /// element can outlive its post until the deletion's sweep reaches it).
    pub(crate) async fn live_posts(&self, ids: Vec<u64>) -> Result<Vec<Post>, PostError> {
        let mut posts = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(id).await {
                Ok(p) => posts.push(p),
                Err(PostError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(posts)
    }

    /// Edits the text (author only).
    pub async fn edit(&self, id: u64, caller: u64, text: &str) -> Result<Post, PostError> {
        check_text(text)?;
        let Stored { mut post, reply_to } = self.get_stored(id).await?;
        if post.author != caller {
            return Err(PostError::Forbidden);
        }
        if post.repost_of.is_some() {
            return Err(PostError::Invalid("a repost has no text to edit"));
        }
        post.text = text.to_string();
        post.edited_at_ms = Some(now_ms());
        self.put_post(&post, reply_to).await?;
        Ok(post)
    }

    /// Deletes a post (author only): tombstones replicate everywhere. Its likes and reposts are
    /// taken off afterwards, on every node, by [`cleanup`].
    pub async fn delete(&self, id: u64, caller: u64) -> Result<(), PostError> {
        let Stored { post, reply_to } = self.get_stored(id).await?;
        if post.author != caller {
            return Err(PostError::Forbidden);
        }
        self.store.delete(&post_key(id)).await?;
        self.store.remove(&list_key(post.author, id)).await?;
        self.unlink_reply(id, reply_to).await?;
        self.unlink_repost_or_quote(&post).await?;
        Ok(())
    }

    /// The ids of an author's posts, newest first, older than post `before` (exclusive): the
    /// list index alone, without reading the posts (the feed's rebuilds and merges).
    pub async fn ids_by_author(
        &self,
        author: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, PostError> {
        let prefix = BY_AUTHOR.key().u64(author).finish();
        let mut req = ScanRequest::prefix(prefix, limit.clamp(1, 1000));
        req.after = before.map(|id| list_key(author, id));
        let page = self.store.scan(&req).await?;
        let off = BY_AUTHOR.name().len() + 1 + 8;
        Ok(page
            .items
            .iter()
            .filter_map(|(k, _)| starling_store::key::read_u64(k.as_bytes(), off).map(|d| !d))
            .collect())
    }

    /// An author's posts, newest first, after the post `before` (exclusive).
    pub async fn by_author(
        &self,
        author: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<PostPage, PostError> {
        let prefix = BY_AUTHOR.key().u64(author).finish();
        let mut req = ScanRequest::prefix(prefix, limit.clamp(1, 100));
        req.after = before.map(|id| list_key(author, id));
        let page = self.store.scan(&req).await?;
        let off = BY_AUTHOR.name().len() + 1 + 8;
        let ids: Vec<u64> = (page.items.iter())
            .filter_map(|(k, _)| starling_store::key::read_u64(k.as_bytes(), off).map(|d| !d))
            .collect();
        let posts = self.live_posts(ids).await?;
        let next = page
            .next
            .as_ref()
            .and_then(|k| starling_store::key::read_u64(k.as_bytes(), off))
            .map(|d| !d);
        Ok(PostPage { posts, next })
    }

    /// Records an uploaded blob's reference.
    pub async fn put_media(&self, media: &MediaRef) -> Result<(), PostError> {
        self.store
            .put_typed(&MEDIA.key().u64(media.id).finish(), media)
            .await?;
        Ok(())
    }

    /// A blob's reference.
    pub async fn media(&self, id: u64) -> Result<Option<MediaRef>, PostError> {
        Ok(self
            .store
            .get_typed::<MediaRef>(&MEDIA.key().u64(id).finish())
            .await?
            .and_then(|v| v.value))
    }
}

/// The keys of `posts` (ascending ids, text checked, no media, no idempotency key) for a bulk
/// load (`starling seed`): the posts, and each author's list. `parents` are the replies among
/// them as (reply, parent), ascending ([`bulk::SeedEngagement::reply_parents`]): a reply's
/// record names its parent as one the API stores does ([`Stored`]).
pub fn seed_runs<'a>(
    posts: &'a [Post],
    parents: &'a [(u64, u64)],
) -> Result<Vec<starling_store::BulkRun<'a>>, PostError> {
    if !parents.is_sorted() {
        return Err(PostError::Invalid(
            "seeded replies' parents must come in ascending reply order",
        ));
    }
    for p in posts {
        // A repost has no text of its own.
        if p.repost_of.is_none() {
            check_text(&p.text)?;
        }
    }
    if !posts.windows(2).all(|w| w[0].id < w[1].id) {
        return Err(PostError::Invalid(
            "seeded posts must come in ascending id order",
        ));
    }
    let mut listed: Vec<(u64, std::cmp::Reverse<u64>)> = posts
        .iter()
        .map(|p| (p.author, std::cmp::Reverse(p.id)))
        .collect();
    listed.sort_unstable();
    Ok(vec![
        starling_store::BulkRun::new(
            POSTS.prefix(),
            posts.iter().map(|p| {
                let reply_to =
                    (parents.binary_search_by_key(&p.id, |&(r, _)| r).ok()).map(|i| parents[i].1);
                let v = starling_store::codec::to_value(&Stored { post: p, reply_to })?;
                Ok((post_key(p.id), Mutation::Put(v)))
            }),
        ),
        starling_store::BulkRun::new(
            BY_AUTHOR.prefix(),
            listed
                .into_iter()
                .map(|(author, id)| Ok((list_key(author, id.0), Mutation::Add(Bytes::new())))),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::posts;
    use starling_store::{HlcClock, Limits, LocalCas, NodeId, RegionId, open_memory};

    #[tokio::test]
    async fn create_edit_delete_and_list_newest_first() {
        let p = posts();
        let mut ids = Vec::new();
        for i in 0..5 {
            let (post, created) = p
                .create(1, "us", &format!("post {i}"), &[], None)
                .await
                .unwrap();
            assert!(created);
            ids.push(post.id);
        }
        let page = p.by_author(1, None, 3).await.unwrap();
        let got: Vec<u64> = page.posts.iter().map(|x| x.id).collect();
        assert_eq!(got, vec![ids[4], ids[3], ids[2]]);
        let page2 = p.by_author(1, page.next, 3).await.unwrap();
        let got2: Vec<u64> = page2.posts.iter().map(|x| x.id).collect();
        assert_eq!(got2, vec![ids[1], ids[0]]);
        assert!(matches!(
            p.edit(ids[0], 2, "hijack").await,
            Err(PostError::Forbidden)
        ));
        let e = p.edit(ids[0], 1, "edited").await.unwrap();
        assert_eq!(e.text, "edited");
        assert!(e.edited_at_ms.is_some());
        assert!(matches!(
            p.delete(ids[0], 2).await,
            Err(PostError::Forbidden)
        ));
        p.delete(ids[0], 1).await.unwrap();
        assert!(matches!(p.get(ids[0]).await, Err(PostError::NotFound)));
        assert_eq!(p.by_author(1, None, 100).await.unwrap().posts.len(), 4);
    }

    #[tokio::test]
    async fn idempotency_key_returns_the_original() {
        let p = posts();
        let (a, created) = p.create(1, "us", "hello", &[], Some("k1")).await.unwrap();
        assert!(created);
        let (b, created) = p.create(1, "us", "hello", &[], Some("k1")).await.unwrap();
        assert!(!created);
        assert_eq!(a, b);
        // Keys are per user.
        let (c, created) = p.create(2, "us", "hello", &[], Some("k1")).await.unwrap();
        assert!(created);
        assert_ne!(c.id, a.id);
        assert_eq!(p.by_author(1, None, 10).await.unwrap().posts.len(), 1);
    }

    #[tokio::test]
    async fn a_retry_after_the_original_was_deleted_is_gone_not_in_progress() {
        let p = posts();
        let (a, _) = p.create(1, "us", "hello", &[], Some("k1")).await.unwrap();
        p.delete(a.id, 1).await.unwrap();
        for _ in 0..3 {
            assert!(matches!(
                p.create(1, "us", "hello", &[], Some("k1")).await,
                Err(PostError::Gone)
            ));
        }
        // Nothing was published again; a new key publishes.
        assert!(p.by_author(1, None, 10).await.unwrap().posts.is_empty());
        let (b, created) = p.create(1, "us", "hello", &[], Some("k2")).await.unwrap();
        assert!(created);
        assert_ne!(a.id, b.id);
    }

    /// A CAS router whose owner applies the claim but whose answer is lost, once.
    #[derive(Debug)]
    struct LostAnswer {
        store: Arc<dyn Store>,
        lose: std::sync::atomic::AtomicBool,
    }

    // `CasRouter` is an `async_trait`: its method, desugared (posts has no async-trait).
    impl CasRouter for LostAnswer {
        fn cas_at<'a, 'b, 'c, 'd, 't>(
            &'a self,
            _region: &'b str,
            key: &'c Key,
            expected: Option<&'d starling_store::VersionVector>,
            new: Option<Bytes>,
        ) -> std::pin::Pin<Box<dyn Future<Output = starling_store::Result<CasOutcome>> + Send + 't>>
        where
            'a: 't,
            'b: 't,
            'c: 't,
            'd: 't,
            Self: 't,
        {
            Box::pin(async move {
                let out = self.store.cas(key, expected, new).await?;
                if self.lose.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    return Err(StoreError::Remote("the answer was lost".into()));
                }
                Ok(out)
            })
        }
    }

    #[tokio::test]
    async fn a_retry_after_a_failed_create_publishes_it_once() {
        let node = NodeId::new(RegionId::from_name("us"), 1);
        let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
        let cas = Arc::new(LostAnswer {
            store: store.clone(),
            lose: true.into(),
        });
        let p = Posts::new(store, cas, Arc::new(IdGenerator::new(node)));
        // The claim landed, the answer did not: the attempt fails and takes its post back.
        assert!(matches!(
            p.create(1, "us", "hello", &[], Some("k1")).await,
            Err(PostError::Store(StoreError::Remote(_)))
        ));
        assert!(p.by_author(1, None, 10).await.unwrap().posts.is_empty());
        // The retry completes the create under the claimed id; the next returns it.
        let (a, created) = p.create(1, "us", "hello", &[], Some("k1")).await.unwrap();
        assert!(created);
        let (b, created) = p.create(1, "us", "hello", &[], Some("k1")).await.unwrap();
        assert!(!created);
        assert_eq!(a, b);
        assert_eq!(p.get(a.id).await.unwrap(), a);
        let listed = p.by_author(1, None, 10).await.unwrap().posts;
        assert_eq!(listed, vec![a.clone()]);
        // Deleted afterwards: gone, not published a third time.
        p.delete(a.id, 1).await.unwrap();
        assert!(matches!(
            p.create(1, "us", "hello", &[], Some("k1")).await,
            Err(PostError::Gone)
        ));
    }

    #[tokio::test]
    async fn a_claim_whose_post_never_arrives_is_in_progress_then_gone() {
        // The claim of post 42, which never reaches this store: in progress while young...
        let p = posts();
        let ik = IDEMPOTENCY.key().u64(1).str("k1").finish();
        let claim = Bytes::copy_from_slice(&42u64.to_be_bytes());
        p.store.cas(&ik, None, Some(claim.clone())).await.unwrap();
        assert!(matches!(
            p.create(1, "us", "hello", &[], Some("k1")).await,
            Err(PostError::InProgress)
        ));
        // ... and gone once older than the grace.
        let wall = Arc::new(std::sync::atomic::AtomicU64::new(
            now_ms() - IDEMPOTENCY_GRACE_MS - 1000,
        ));
        let node = NodeId::new(RegionId::from_name("us"), 1);
        let store = open_memory(node, Arc::new(HlcClock::manual(wall)), Limits::default());
        store.cas(&ik, None, Some(claim)).await.unwrap();
        let p = Posts::new(
            store.clone(),
            Arc::new(LocalCas(store)),
            Arc::new(IdGenerator::new(node)),
        );
        assert!(matches!(
            p.create(1, "us", "hello", &[], Some("k1")).await,
            Err(PostError::Gone)
        ));
    }

    /// A record with the reply's parent reads as a post (the tail left), and a post's record
    /// without it (every record before it) reads as not naming a parent.
    #[test]
    fn a_stored_reply_reads_as_a_post_and_an_old_record_as_not_a_reply() {
        let post = Post {
            id: 5,
            author: 6,
            text: "reply".into(),
            media: vec![1],
            created_at_ms: 7,
            edited_at_ms: None,
            repost_of: None,
            quote_of: Some(3),
        };
        let codec = |v: &Stored<&Post>| starling_store::codec::to_value(v).unwrap();
        let stored = codec(&Stored {
            post: &post,
            reply_to: Some(9),
        });
        let read: Post = starling_store::codec::from_value(&stored).unwrap();
        assert_eq!(read, post);
        let back: Stored<Post> = starling_store::codec::from_value(&stored).unwrap();
        assert_eq!((back.post, back.reply_to), (post.clone(), Some(9)));
        let old = starling_store::codec::to_value(&post).unwrap();
        let back: Stored<Post> = starling_store::codec::from_value(&old).unwrap();
        assert_eq!((back.post, back.reply_to), (post, None));
    }

    #[tokio::test]
    async fn bad_posts_are_refused() {
        let p = posts();
        for t in ["", "   ", &"x".repeat(MAX_TEXT + 1), "nul\0"] {
            assert!(matches!(
                p.create(1, "us", t, &[], None).await,
                Err(PostError::Invalid(_))
            ));
        }
        assert!(
            p.create(1, "us", &"é".repeat(MAX_TEXT), &[], None)
                .await
                .is_ok()
        );
        assert!(matches!(
            p.create(1, "us", "x", &[42], None).await,
            Err(PostError::UnknownMedia(42))
        ));
        let m = MediaRef {
            id: 7,
            owner: 2,
            content_type: "image/png".into(),
            size: 1,
            path: "x".into(),
        };
        p.put_media(&m).await.unwrap();
        assert!(matches!(
            p.create(1, "us", "x", &[7], None).await,
            Err(PostError::UnknownMedia(7))
        ));
        assert!(p.create(2, "us", "x", &[7], None).await.is_ok());
    }
}
