//! Posts: create (idempotent by client key), read, edit, delete, per-author lists newest first,
//! and the media references a post carries.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `pp` | post id | register (LWW: the last edit wins) | [`Post`] |
//! | `pa` | author, post id (descending) | set element | — (the author's list, newest first) |
//! | `pi` | author, idempotency key | register, written by CAS in the author's home region | post id |
//! | `pm` | media id | register | [`MediaRef`] |
//!
//! A delete is a tombstone of the post and of its list entry: gone in every region once
//! replicated. Talks only to `starling_store`.

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
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn post_key(id: u64) -> Key {
    POSTS.key().u64(id).finish()
}

fn list_key(author: u64, id: u64) -> Key {
    BY_AUTHOR.key().u64(author).u64_desc(id).finish()
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
        Posts { store, cas, ids }
    }

    /// Publishes a post. With an idempotency key, a retry returns the original post and writes
    /// nothing new; the key is claimed by CAS in the author's home region.
    pub async fn create(
        &self,
        author: u64,
        author_region: &str,
        text: &str,
        media: &[u64],
        idempotency_key: Option<&str>,
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
        if let Some(ik) = &idem
            && let Some(original) = self.claimed(ik).await?
        {
            return Ok((original, false));
        }
        let post = Post {
            id: self.ids.next_id(),
            author,
            text: text.to_string(),
            media: media.to_vec(),
            created_at_ms: now_ms(),
            edited_at_ms: None,
        };
        self.store.put_typed(&post_key(post.id), &post).await?;
        self.store
            .add(&list_key(author, post.id), Bytes::new())
            .await?;
        if let Some(ik) = &idem {
            let claim = Bytes::copy_from_slice(&post.id.to_be_bytes());
            match self.cas.cas_at(author_region, ik, None, Some(claim)).await {
                Ok(CasOutcome::Applied(_)) => {}
                other => {
                    // Another attempt claimed the key first (or the owner is unreachable):
                    // take this post back and answer with the original.
                    self.store.delete(&post_key(post.id)).await?;
                    self.store.remove(&list_key(author, post.id)).await?;
                    other?;
                    return match self.claimed(ik).await? {
                        Some(original) => Ok((original, false)),
                        None => Err(PostError::InProgress),
                    };
                }
            }
        }
        Ok((post, true))
    }

    /// The post an idempotency key was claimed for, if it is there yet.
    async fn claimed(&self, ik: &Key) -> Result<Option<Post>, PostError> {
        let Some(id) = self
            .store
            .get(ik)
            .await?
            .and_then(|v| v.value)
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
        else {
            return Ok(None);
        };
        match self.get(id).await {
            Ok(p) => Ok(Some(p)),
            Err(PostError::NotFound) => Err(PostError::InProgress),
            Err(e) => Err(e),
        }
    }

    /// A post; `NotFound` if unknown or deleted.
    pub async fn get(&self, id: u64) -> Result<Post, PostError> {
        self.store
            .get_typed::<Post>(&post_key(id))
            .await?
            .and_then(|v| v.value)
            .ok_or(PostError::NotFound)
    }

    /// Edits the text (author only).
    pub async fn edit(&self, id: u64, caller: u64, text: &str) -> Result<Post, PostError> {
        check_text(text)?;
        let mut post = self.get(id).await?;
        if post.author != caller {
            return Err(PostError::Forbidden);
        }
        post.text = text.to_string();
        post.edited_at_ms = Some(now_ms());
        self.store.put_typed(&post_key(id), &post).await?;
        Ok(post)
    }

    /// Deletes a post (author only): tombstones replicate everywhere.
    pub async fn delete(&self, id: u64, caller: u64) -> Result<(), PostError> {
        let post = self.get(id).await?;
        if post.author != caller {
            return Err(PostError::Forbidden);
        }
        self.store.delete(&post_key(id)).await?;
        self.store.remove(&list_key(post.author, id)).await?;
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
        let mut posts = Vec::with_capacity(page.items.len());
        for (k, _) in &page.items {
            let Some(id) = starling_store::key::read_u64(k.as_bytes(), off).map(|d| !d) else {
                continue;
            };
            match self.get(id).await {
                Ok(p) => posts.push(p),
                Err(PostError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
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
/// load (`starling seed`): the posts, and each author's list.
pub fn seed_runs(posts: &[Post]) -> Result<Vec<starling_store::BulkRun<'_>>, PostError> {
    for p in posts {
        check_text(&p.text)?;
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
        starling_store::BulkRun {
            prefix: POSTS.prefix(),
            items: Box::new(posts.iter().map(|p| {
                let v = starling_store::codec::to_value(p)?;
                Ok((post_key(p.id), Mutation::Put(v)))
            })),
        },
        starling_store::BulkRun {
            prefix: BY_AUTHOR.prefix(),
            items: Box::new(
                listed
                    .into_iter()
                    .map(|(author, id)| Ok((list_key(author, id.0), Mutation::Add(Bytes::new())))),
            ),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_store::{HlcClock, Limits, LocalCas, NodeId, RegionId, open_memory};

    fn posts() -> Posts {
        let node = NodeId::new(RegionId::from_name("us"), 1);
        let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
        Posts::new(
            store.clone(),
            Arc::new(LocalCas(store)),
            Arc::new(IdGenerator::new(node)),
        )
    }

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
