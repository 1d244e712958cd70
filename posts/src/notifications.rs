//! Notifications: what happened to a user (a follow, a friend request or its acceptance, a like,
//! a reply, a repost, a quote, a mention), newest first, with a read-up-to marker.
//!
//! | keyspace | key | kind | value |
//! |---|---|---|---|
//! | `nt` | recipient, notification id (descending) | set element | [`Stored`] (postcard) |
//! | `nr` | recipient, id (descending) | set element | — (the read-up-to marker: the highest) |
//!
//! Both are replicated keyspaces, so a user's notifications and marker reach every region; the
//! marker is the highest of its elements (a region that marks less than another never moves it
//! back: concurrent marks merge to the larger). A list is bounded: after every
//! [`TRIM_EVERY`]th notification a node writes, it removes the recipient's notifications past the
//! newest [`KEEP`] (counted in [`Notifications::trimmed`], `/metrics`).
//!
//! Likes and reposts of one post are grouped at read time, like Mastodon's grouped
//! notifications: [`group`] folds the items of one page that share a post and a type into one,
//! newest actor first; the group carries its newest notification's id.
//!
//! Which events notify whom, and the blocks that silence them, are the caller's business (the
//! API): this module stores, lists, trims and marks.

use serde::{Deserialize, Serialize};
use starling_store::{IdGenerator, Key, Keyspace, ScanRequest, Store, StoreError, StoreExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Notifications: `nt/recipient/id desc` (public: the API's live delivery tails it).
pub const NOTIFICATIONS: Keyspace = Keyspace::new("nt");
/// Read markers: `nr/recipient/id desc`.
const READ: Keyspace = Keyspace::new("nr");

/// Notifications kept per user; older ones are trimmed.
pub const KEEP: usize = 400;
/// A node trims the recipient's list after every this many notifications it writes.
pub const TRIM_EVERY: u64 = 16;
/// Largest page.
pub const MAX_PAGE: usize = 100;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationKind {
    /// The actor follows the recipient.
    Follow,
    /// The actor asked the recipient to be friends.
    FriendRequest,
    /// The actor accepted the recipient's friend request.
    FriendAccept,
    /// The actor likes the recipient's post.
    Like,
    /// The actor replied to the recipient's post.
    Reply,
    /// The actor reposted the recipient's post.
    Repost,
    /// The actor quoted the recipient's post.
    Quote,
    /// The actor mentioned the recipient in a post.
    Mention,
}

impl NotificationKind {
    /// The API's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            NotificationKind::Follow => "follow",
            NotificationKind::FriendRequest => "friend_request",
            NotificationKind::FriendAccept => "friend_accept",
            NotificationKind::Like => "like",
            NotificationKind::Reply => "reply",
            NotificationKind::Repost => "repost",
            NotificationKind::Quote => "quote",
            NotificationKind::Mention => "mention",
        }
    }

    /// Whether several of this type on one post fold into one item.
    pub fn groups(self) -> bool {
        matches!(self, NotificationKind::Like | NotificationKind::Repost)
    }
}

/// The stored value of a notification (its id and recipient are in the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// What happened.
    pub kind: NotificationKind,
    /// Who did it.
    pub actor: u64,
    /// The recipient's post it concerns: the one liked, replied to, reposted or quoted.
    pub post: Option<u64>,
    /// The post the actor wrote (the reply, the quote, the post that mentions).
    pub subject: Option<u64>,
    /// Ms since the epoch.
    pub created_at_ms: u64,
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Time-ordered id.
    pub id: u64,
    /// Whose it is.
    pub recipient: u64,
    /// What it says.
    pub stored: Stored,
}

/// Notifications folded for reading: one per event, or several likes (reposts) of one post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The newest notification's id.
    pub id: u64,
    /// What happened.
    pub kind: NotificationKind,
    /// Who, newest first (distinct).
    pub actors: Vec<u64>,
    /// The post concerned.
    pub post: Option<u64>,
    /// The post the actor wrote.
    pub subject: Option<u64>,
    /// The newest notification's time.
    pub created_at_ms: u64,
}

/// A page of notifications and where the next starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<Notification>,
    /// The cursor of the next page (the last id of this one).
    pub next: Option<u64>,
}

pub(crate) fn key(recipient: u64, id: u64) -> Key {
    NOTIFICATIONS.key().u64(recipient).u64_desc(id).finish()
}

/// The recipient and id of a notification key, if `k` is one.
pub fn parse_key(k: &Key) -> Option<(u64, u64)> {
    let p = NOTIFICATIONS.prefix_len();
    if k.len() != p + 16 || !k.starts_with(NOTIFICATIONS.prefix().as_bytes()) {
        return None;
    }
    let b = k.as_bytes();
    Some((
        starling_store::key::read_u64(b, p)?,
        !starling_store::key::read_u64(b, p + 8)?,
    ))
}

/// Notifications over the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifications {
    store: Arc<dyn Store>,
    ids: Arc<IdGenerator>,
    written: Arc<AtomicU64>,
    trimmed: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
}

impl Notifications {
    /// Notifications over `store`, with ids from `ids`.
    pub fn new(store: Arc<dyn Store>, ids: Arc<IdGenerator>) -> Self {
        Notifications {
            store,
            ids,
            written: Arc::new(AtomicU64::new(0)),
            trimmed: Arc::new(AtomicU64::new(0)),
            delivered: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Notifications this node wrote since it started.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Notifications this node trimmed (past [`KEEP`]) since it started.
    pub fn trimmed(&self) -> u64 {
        self.trimmed.load(Ordering::Relaxed)
    }

    /// Live deliveries (frames queued to connections) this node made since it started.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Counts `n` live deliveries (the API's WebSocket tail calls it).
    pub fn count_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Stores a notification for `recipient`; every [`TRIM_EVERY`]th one trims their list.
    pub async fn add(&self, recipient: u64, stored: Stored) -> Result<Notification, StoreError> {
        let id = self.ids.next_id();
        let value = starling_store::codec::to_value(&stored)?;
        self.store.add(&key(recipient, id), value).await?;
        if (self.written.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(TRIM_EVERY) {
            self.trim(recipient).await?;
        }
        Ok(Notification {
            id,
            recipient,
            stored,
        })
    }

    /// Removes `recipient`'s notifications past the newest [`KEEP`]; returns how many.
    pub async fn trim(&self, recipient: u64) -> Result<usize, StoreError> {
        let prefix = NOTIFICATIONS.key().u64(recipient).finish();
        let mut req = ScanRequest::prefix(prefix, KEEP);
        let page = self.store.scan(&req).await?;
        if page.items.len() < KEEP {
            return Ok(0);
        }
        let mut removed = 0;
        req.after = page.items.last().map(|(k, _)| k.clone());
        req.limit = 256;
        loop {
            let old = self.store.scan(&req).await?;
            for (k, _) in &old.items {
                self.store.remove(k).await?;
                removed += 1;
            }
            match old.next {
                Some(n) => req.after = Some(n),
                None => break,
            }
        }
        self.trimmed.fetch_add(removed as u64, Ordering::Relaxed);
        Ok(removed)
    }

    /// The notification `recipient`/`id`, if it is there.
    pub async fn get(&self, recipient: u64, id: u64) -> Result<Option<Notification>, StoreError> {
        let Some(v) = self
            .store
            .get(&key(recipient, id))
            .await?
            .and_then(|v| v.value)
        else {
            return Ok(None);
        };
        Ok(Some(Notification {
            id,
            recipient,
            stored: starling_store::codec::from_value(&v)?,
        }))
    }

    /// A page of at most `limit` (1 ..= [`MAX_PAGE`]) of `recipient`'s notifications, newest
    /// first, older than `before` (a previous page's cursor) and newer than `since`.
    pub async fn page(
        &self,
        recipient: u64,
        before: Option<u64>,
        since: Option<u64>,
        limit: usize,
    ) -> Result<NotificationPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut req = ScanRequest::prefix(NOTIFICATIONS.key().u64(recipient).finish(), limit);
        req.after = before.map(|b| key(recipient, b));
        let mut items = Vec::with_capacity(limit);
        loop {
            let page = self.store.scan(&req).await?;
            let n = page.items.len();
            for (i, (k, v)) in page.items.into_iter().enumerate() {
                let (Some((_, id)), Some(value)) = (parse_key(&k), v.value) else {
                    continue;
                };
                if since.is_some_and(|s| id <= s) {
                    return Ok(NotificationPage { items, next: None });
                }
                let stored = match starling_store::codec::from_value::<Stored>(&value) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, recipient, id, "unreadable notification skipped");
                        continue;
                    }
                };
                items.push(Notification {
                    id,
                    recipient,
                    stored,
                });
                if items.len() == limit {
                    let more = i + 1 < n || page.next.is_some();
                    return Ok(NotificationPage {
                        items,
                        next: more.then_some(id),
                    });
                }
            }
            match page.next {
                Some(n) => req.after = Some(n),
                None => return Ok(NotificationPage { items, next: None }),
            }
        }
    }

    /// `recipient`'s read-up-to marker (0 before the first mark).
    pub async fn read_marker(&self, recipient: u64) -> Result<u64, StoreError> {
        let page = self
            .store
            .scan(&ScanRequest::prefix(READ.key().u64(recipient).finish(), 1))
            .await?;
        Ok(page
            .items
            .first()
            .and_then(|(k, _)| starling_store::key::read_u64(k.as_bytes(), READ.prefix_len() + 8))
            .map_or(0, |v| !v))
    }

    /// Marks `recipient`'s notifications up to `up_to` read. The marker only moves forward;
    /// the element it replaces is removed (a concurrent mark elsewhere may leave two: the
    /// highest counts).
    pub async fn mark_read(&self, recipient: u64, up_to: u64) -> Result<(), StoreError> {
        let now = self.read_marker(recipient).await?;
        if up_to <= now {
            return Ok(());
        }
        self.store
            .add(
                &READ.key().u64(recipient).u64_desc(up_to).finish(),
                bytes::Bytes::new(),
            )
            .await?;
        if now > 0 {
            self.store
                .remove(&READ.key().u64(recipient).u64_desc(now).finish())
                .await?;
        }
        Ok(())
    }

    /// How many of `recipient`'s notifications are newer than their marker (at most [`KEEP`]
    /// are kept, so at most about that many).
    pub async fn unread(&self, recipient: u64) -> Result<u64, StoreError> {
        let marker = self.read_marker(recipient).await?;
        let mut req = ScanRequest::prefix(NOTIFICATIONS.key().u64(recipient).finish(), 200);
        let mut n = 0;
        loop {
            let page = self.store.scan(&req).await?;
            for (k, _) in &page.items {
                match parse_key(k) {
                    Some((_, id)) if id > marker => n += 1,
                    Some(_) => return Ok(n),
                    None => {}
                }
            }
            match page.next {
                Some(next) if n < 2 * KEEP as u64 => req.after = Some(next),
                _ => return Ok(n),
            }
        }
    }
}

/// Folds the likes (reposts) of one post among `items` (newest first) into one group at the
/// place of the newest, its actors newest first and distinct; every other item is a group of
/// one.
pub fn group(items: &[Notification]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::with_capacity(items.len());
    let mut at: std::collections::HashMap<(NotificationKind, u64), usize> =
        std::collections::HashMap::new();
    for n in items {
        let s = &n.stored;
        if s.kind.groups()
            && let Some(post) = s.post
        {
            if let Some(&i) = at.get(&(s.kind, post)) {
                if !out[i].actors.contains(&s.actor) {
                    out[i].actors.push(s.actor);
                }
                continue;
            }
            at.insert((s.kind, post), out.len());
        }
        out.push(Group {
            id: n.id,
            kind: s.kind,
            actors: vec![s.actor],
            post: s.post,
            subject: s.subject,
            created_at_ms: s.created_at_ms,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_store::{HlcClock, Limits, NodeId, RegionId, open_memory};

    fn notifications() -> Notifications {
        let node = NodeId::new(RegionId::from_name("us"), 1);
        let store = open_memory(node, Arc::new(HlcClock::new()), Limits::default());
        Notifications::new(store, Arc::new(IdGenerator::new(node)))
    }

    fn like(actor: u64, post: u64) -> Stored {
        Stored {
            kind: NotificationKind::Like,
            actor,
            post: Some(post),
            subject: None,
            created_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn newest_first_paged_marked_and_counted() {
        let n = notifications();
        let mut ids = Vec::new();
        for a in 1..=5 {
            ids.push(n.add(9, like(a, 100 + a)).await.unwrap().id);
        }
        n.add(8, like(1, 1)).await.unwrap();
        let p = n.page(9, None, None, 2).await.unwrap();
        assert_eq!(
            p.items.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![ids[4], ids[3]]
        );
        let p2 = n.page(9, p.next, None, 10).await.unwrap();
        assert_eq!(p2.items.len(), 3);
        assert_eq!(p2.next, None);
        let since = n.page(9, None, Some(ids[2]), 10).await.unwrap();
        assert_eq!(since.items.len(), 2);
        assert_eq!(n.unread(9).await.unwrap(), 5);
        n.mark_read(9, ids[2]).await.unwrap();
        assert_eq!(n.unread(9).await.unwrap(), 2);
        // The marker never moves back.
        n.mark_read(9, ids[0]).await.unwrap();
        assert_eq!(n.read_marker(9).await.unwrap(), ids[2]);
        n.mark_read(9, ids[4]).await.unwrap();
        assert_eq!(n.unread(9).await.unwrap(), 0);
        assert_eq!(n.unread(8).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn lists_are_trimmed_to_keep() {
        let n = notifications();
        let total = KEEP + 40;
        for a in 0..total {
            n.add(3, like(a as u64, 1)).await.unwrap();
        }
        n.trim(3).await.unwrap();
        let mut seen = 0;
        let mut before = None;
        loop {
            let p = n.page(3, before, None, MAX_PAGE).await.unwrap();
            seen += p.items.len();
            match p.next {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        assert_eq!(seen, KEEP);
        assert_eq!(n.trimmed(), 40);
    }

    #[test]
    fn likes_of_one_post_group() {
        let items: Vec<Notification> = [(1, 7), (2, 8), (3, 7), (1, 7)]
            .iter()
            .enumerate()
            .map(|(i, &(actor, post))| Notification {
                id: 100 - i as u64,
                recipient: 9,
                stored: like(actor, post),
            })
            .chain(std::iter::once(Notification {
                id: 50,
                recipient: 9,
                stored: Stored {
                    kind: NotificationKind::Follow,
                    actor: 4,
                    post: None,
                    subject: None,
                    created_at_ms: 1,
                },
            }))
            .collect();
        let g = group(&items);
        assert_eq!(g.len(), 3);
        assert_eq!((g[0].id, g[0].actors.clone()), (100, vec![1, 3]));
        assert_eq!((g[1].id, g[1].actors.clone()), (99, vec![2]));
        assert_eq!(g[2].kind, NotificationKind::Follow);
        assert_eq!(parse_key(&key(5, 6)), Some((5, 6)));
    }
}
