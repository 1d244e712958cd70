//! Replies and threads: a post may answer another (`reply_to`); a thread is the post's ancestors
//! (oldest first), the post, and its direct replies page by page (oldest first).
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `pr` | reply id | register | the parent's id (8 bytes big-endian) |
//! | `pt` | parent id, reply id | set element (add-wins) | — (the parent's replies, by id) |
//!
//! Both are written after the reply itself, and again by a retry (idempotent), so a crash between
//! them leaves a post that a retry with the same idempotency key links. The reply's record names
//! its parent too (`crate::Stored`, absent from posts stored before it): a node that holds the
//! reply knows it is one without `pr`, so a deleted account's sweep can wait for the `pt` element
//! before deleting the reply ([`Posts::elements_here`]) instead of leaving it counted. A deleted reply leaves its
//! parent's list; a deleted parent leaves its replies readable: the thread shows it as a
//! placeholder ([`ThreadPost::Deleted`]). Reply counts are derived per node by the consumer of
//! [`crate::likes`], from the `pt` elements.

use crate::{Post, PostError, Posts, post_key};
use bytes::Bytes;
use starling_store::{Key, Keyspace, ScanRequest, StoreExt};

/// `pr/reply` → parent.
pub(crate) const PARENT: Keyspace = Keyspace::new("pr");
/// `pt/parent/reply`: the parent's replies.
pub(crate) const REPLIES: Keyspace = Keyspace::new("pt");

/// Most ancestors a thread shows (the nearest ones).
pub const MAX_ANCESTORS: usize = 50;
/// Largest page of replies.
pub const MAX_PAGE: usize = 100;

pub(crate) fn parent_key(reply: u64) -> Key {
    PARENT.key().u64(reply).finish()
}

pub(crate) fn reply_key(parent: u64, reply: u64) -> Key {
    REPLIES.key().u64(parent).u64(reply).finish()
}

/// A post of a thread: there, or deleted (a placeholder that keeps the thread's shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadPost {
    /// The post.
    Post(Post),
    /// A post that was deleted (its id).
    Deleted(u64),
}

impl ThreadPost {
    /// The post's id.
    pub fn id(&self) -> u64 {
        match self {
            ThreadPost::Post(p) => p.id,
            ThreadPost::Deleted(id) => *id,
        }
    }
}

/// A page of replies and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyPage {
    /// Replies, oldest first.
    pub posts: Vec<Post>,
    /// The cursor of the next page (the last reply's id).
    pub next: Option<u64>,
}

impl Posts {
    /// Records that `reply` answers `parent`. Idempotent.
    pub async fn link_reply(&self, reply: u64, parent: u64) -> Result<(), PostError> {
        let pk = parent_key(reply);
        let linked = self.store.get(&pk).await?.and_then(|v| v.value);
        if linked.as_deref() != Some(&parent.to_be_bytes()[..]) {
            self.store
                .put(&pk, Bytes::copy_from_slice(&parent.to_be_bytes()))
                .await?;
        }
        let rk = reply_key(parent, reply);
        let listed = self.store.get(&rk).await?.and_then(|v| v.value).is_some();
        if !listed {
            self.store.add(&rk, Bytes::new()).await?;
        }
        Ok(())
    }

    /// Takes a deleted reply out of its parent's list: the parent its record names, else (a
    /// post stored before records named it) the one `pr` holds.
    pub(crate) async fn unlink_reply(
        &self,
        reply: u64,
        recorded: Option<u64>,
    ) -> Result<(), PostError> {
        let parent = match recorded {
            Some(p) => Some(p),
            None => self.reply_to(reply).await?,
        };
        if let Some(parent) = parent {
            self.store.remove(&reply_key(parent, reply)).await?;
        }
        Ok(())
    }

    /// The post `id` answers, if it is a reply (its parent may be deleted).
    pub async fn reply_to(&self, id: u64) -> Result<Option<u64>, PostError> {
        Ok(self
            .store
            .get(&parent_key(id))
            .await?
            .and_then(|v| v.value)
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    /// A post of a thread: the post, a placeholder if it was deleted (a tombstone), `NotFound` if
    /// it never existed here.
    pub async fn thread_post(&self, id: u64) -> Result<ThreadPost, PostError> {
        match self.store.get(&post_key(id)).await? {
            Some(v) => match v.value {
                Some(b) => Ok(ThreadPost::Post(starling_store::codec::from_value(&b)?)),
                None => Ok(ThreadPost::Deleted(id)),
            },
            None => Err(PostError::NotFound),
        }
    }

    /// The nearest [`MAX_ANCESTORS`] ancestors of `id`, oldest first; deleted ones (and ones not
    /// replicated here yet) as placeholders.
    pub async fn ancestors(&self, id: u64) -> Result<Vec<ThreadPost>, PostError> {
        let mut out = Vec::new();
        let mut at = id;
        while out.len() < MAX_ANCESTORS {
            let Some(parent) = self.reply_to(at).await? else {
                break;
            };
            out.push(match self.thread_post(parent).await {
                Ok(p) => p,
                Err(PostError::NotFound) => ThreadPost::Deleted(parent),
                Err(e) => return Err(e),
            });
            at = parent;
        }
        out.reverse();
        Ok(out)
    }

    /// A page of at most `limit` (1 ..= [`MAX_PAGE`]) direct replies to `id`, oldest first,
    /// after the reply `after`.
    pub async fn replies(
        &self,
        id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<ReplyPage, PostError> {
        let mut req = ScanRequest::prefix(REPLIES.key().u64(id).finish(), limit.clamp(1, MAX_PAGE));
        req.after = after.map(|a| reply_key(id, a));
        let page = self.store.scan(&req).await?;
        let at = REPLIES.prefix_len() + 8;
        let ids: Vec<u64> = (page.items.iter())
            .filter_map(|(k, _)| starling_store::key::read_u64(k.as_bytes(), at))
            .collect();
        let posts = self.live_posts(ids).await?;
        let next = page
            .next
            .as_ref()
            .and_then(|k| starling_store::key::read_u64(k.as_bytes(), at));
        Ok(ReplyPage { posts, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::posts;

    async fn reply(p: &Posts, author: u64, parent: u64, text: &str) -> u64 {
        let (r, _) = p.create(author, "us", text, &[], None).await.unwrap();
        p.link_reply(r.id, parent).await.unwrap();
        p.link_reply(r.id, parent).await.unwrap(); // a retry links nothing twice
        r.id
    }

    #[tokio::test]
    async fn a_thread_is_its_ancestors_then_its_replies_and_a_deleted_parent_is_a_placeholder() {
        let p = posts();
        let (root, _) = p.create(1, "us", "root", &[], None).await.unwrap();
        let a = reply(&p, 2, root.id, "a").await;
        let b = reply(&p, 3, root.id, "b").await;
        let a1 = reply(&p, 1, a, "a1").await;
        assert_eq!(p.reply_to(a1).await.unwrap(), Some(a));
        assert_eq!(p.reply_to(root.id).await.unwrap(), None);
        let ids = |v: Vec<ThreadPost>| v.iter().map(ThreadPost::id).collect::<Vec<_>>();
        assert_eq!(ids(p.ancestors(a1).await.unwrap()), vec![root.id, a]);
        assert!(p.ancestors(root.id).await.unwrap().is_empty());
        // Direct replies only, oldest first, one per page.
        let first = p.replies(root.id, None, 1).await.unwrap();
        assert_eq!(
            first.posts.iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![a]
        );
        let second = p.replies(root.id, first.next, 1).await.unwrap();
        assert_eq!(
            second.posts.iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![b]
        );
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().reply_count(root.id).await.unwrap(), 2);
        assert_eq!(p.likes().reply_count(a).await.unwrap(), 1);
        // The middle post is deleted: a placeholder above a1, which stays readable; it leaves
        // the root's replies and count.
        p.delete(a, 2).await.unwrap();
        let anc = p.ancestors(a1).await.unwrap();
        assert!(matches!(anc[0], ThreadPost::Post(ref x) if x.id == root.id));
        assert_eq!(anc[1], ThreadPost::Deleted(a));
        assert_eq!(p.thread_post(a).await.unwrap(), ThreadPost::Deleted(a));
        assert_eq!(p.replies(a, None, 10).await.unwrap().posts[0].id, a1);
        let left = p.replies(root.id, None, 10).await.unwrap();
        assert_eq!(left.posts.iter().map(|x| x.id).collect::<Vec<_>>(), vec![b]);
        p.likes().catch_up().await.unwrap();
        assert_eq!(p.likes().reply_count(root.id).await.unwrap(), 1);
        assert!(matches!(
            p.thread_post(424242).await,
            Err(PostError::NotFound)
        ));
    }
}
