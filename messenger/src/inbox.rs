//! Read-up-to markers and the inbox.
//!
//! A marker is a set element `rd/user/conv/seq` (seq descending, so the first element is the
//! marker): adding one merges as a max across devices and regions (elements only add up; a
//! writer removes those below its own, which can never remove a higher one), so a marker never
//! moves backwards and every region agrees once the elements replicate.
//!
//! The inbox is a user's conversations (`cu`, at most [`MAX_INBOX`] of them) ordered by last
//! activity, newest first: the time of each one's newest entry, from the node's cache of heads
//! (kept by every delivery through this node, see [`crate::fanout`]) or one read of the log.

use crate::Messenger;
use crate::error::MessengerError;
use crate::keys;
use crate::model::{Conversation, Message, MessageKind};
use bytes::Bytes;
use starling_store::{ScanRequest, StoreExt, codec};
use std::sync::Arc;

/// Conversations of one user the inbox orders.
pub const MAX_INBOX: usize = 1000;
/// Entries an unread count reads; beyond, each newer entry counts.
pub const UNREAD_EXACT: usize = 100;

/// One conversation of an inbox page.
#[derive(Clone, Debug)]
pub struct InboxItem {
    /// The conversation.
    pub conv: Arc<Conversation>,
    /// Its newest entry here.
    pub last: Option<Arc<Message>>,
    /// Its newest seq here (0: none).
    pub last_seq: u64,
    /// The user's read-up-to marker.
    pub read_seq: u64,
    /// Entries after the marker the user would count as unread: others' text messages, not
    /// deleted (exact up to [`UNREAD_EXACT`] entries, then every newer entry counts), none below
    /// the retention floor (a marker below it counts from the floor).
    pub unread: u64,
    /// Last activity, ms since the epoch (the newest entry, else the creation).
    pub activity_ms: u64,
}

/// A page of an inbox.
#[derive(Clone, Debug)]
pub struct InboxPage {
    /// Most recent activity first.
    pub items: Vec<InboxItem>,
    /// The cursor after the last item: (activity, conversation id).
    pub next: Option<(u64, u64)>,
}

impl Messenger {
    /// `user`'s read-up-to marker in `conv` (0: none).
    pub async fn read_marker(&self, user: u64, conv: u64) -> Result<u64, MessengerError> {
        let page = self
            .store
            .scan(&ScanRequest::prefix(keys::read_prefix(user, conv), 1))
            .await?;
        Ok(page
            .items
            .first()
            .and_then(|(k, _)| keys::parse_read(k))
            .map_or(0, |(_, _, s)| s))
    }

    /// Moves `user`'s marker in `conv` up to `seq` (at most the newest seq held here); never
    /// backwards. Returns the marker now and whether it moved.
    pub async fn mark_read(
        &self,
        user: u64,
        conv: u64,
        seq: u64,
    ) -> Result<(u64, bool), MessengerError> {
        let seq = seq.min(self.last_seq(conv).await?);
        let current = self.read_marker(user, conv).await?;
        if seq <= current {
            return Ok((current, false));
        }
        self.store
            .add(&keys::read(user, conv, seq), Bytes::new())
            .await?;
        // The elements below the new one: bounded per write (a few at most in steady state).
        let mut req = ScanRequest::prefix(keys::read_prefix(user, conv), 64);
        req.after = Some(keys::read(user, conv, seq));
        for (k, _) in self.store.scan(&req).await?.items {
            self.store.remove(&k).await?;
        }
        Ok((seq, true))
    }

    /// Notes `m` as the newest entry of its conversation if it is (for the inbox).
    ///
    /// Every delivery through this node calls this: the conversation's slot is looked up (a
    /// cache read) and its entry replaced under the slot's lock; the cache itself is written
    /// only when the slot is new (a cache write per message cost 8 % of a node's CPU at
    /// 10 000 msg/s).
    pub fn note_head(&self, m: &Message) {
        self.note_head_with(m.conv, m.seq, || Arc::new(m.clone()));
    }

    /// [`Messenger::note_head`] of an entry already shared: kept as it is, not copied (the
    /// delivery path's entry; a copy was three allocations a message).
    pub fn note_head_shared(&self, m: &Arc<Message>) {
        self.note_head_with(m.conv, m.seq, || m.clone());
    }

    fn note_head_with(&self, conv: u64, seq: u64, entry: impl Fn() -> Arc<Message>) {
        let slot = match self.heads.get(&conv) {
            Some(slot) => slot,
            None => self
                .heads
                .entry(conv)
                .or_insert_with(|| Arc::new(parking_lot::Mutex::new(entry())))
                .into_value(),
        };
        let mut head = slot.lock();
        if head.seq < seq {
            *head = entry();
        }
    }

    /// The newest entry of `conv` here.
    pub async fn head(&self, conv: u64) -> Result<Option<Arc<Message>>, MessengerError> {
        if let Some(slot) = self.heads.get(&conv) {
            return Ok(Some(slot.lock().clone()));
        }
        let page = self
            .store
            .scan(&ScanRequest::prefix(keys::messages_prefix(conv), 1))
            .await?;
        let Some((_, v)) = page.items.into_iter().next() else {
            return Ok(None);
        };
        let Some(b) = v.value else { return Ok(None) };
        let m: Message = codec::from_value(&b)?;
        self.note_head(&m);
        Ok(self.heads.get(&conv).map(|slot| slot.lock().clone()))
    }

    /// A page of `user`'s inbox after `cursor` (activity, conversation id).
    pub async fn inbox(
        &self,
        user: u64,
        cursor: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<InboxPage, MessengerError> {
        let page = self.conversations_of(user, None, MAX_INBOX).await?;
        let mut all = Vec::with_capacity(page.items.len());
        for conv in page.items {
            let last = self.head(conv.id).await?;
            let activity_ms = last.as_ref().map_or(conv.created_at_ms, |m| m.sent_at_ms);
            all.push((activity_ms, conv, last));
        }
        all.sort_by_key(|(t, c, _)| std::cmp::Reverse((*t, c.id)));
        let after = all
            .into_iter()
            .filter(|(t, c, _)| cursor.is_none_or(|cur| (*t, c.id) < cur));
        let mut items = Vec::new();
        let mut more = false;
        for (activity_ms, conv, last) in after {
            if items.len() == limit {
                more = true;
                break;
            }
            let last_seq = last.as_ref().map_or(0, |m| m.seq);
            let read_seq = self.read_marker(user, conv.id).await?;
            let unread = self.unread(user, conv.id, read_seq, last_seq).await?;
            items.push(InboxItem {
                conv,
                last,
                last_seq,
                read_seq,
                unread,
                activity_ms,
            });
        }
        let next = if more {
            items.last().map(|i| (i.activity_ms, i.conv.id))
        } else {
            None
        };
        Ok(InboxPage { items, next })
    }

    async fn unread(
        &self,
        user: u64,
        conv: u64,
        mut read: u64,
        last: u64,
    ) -> Result<u64, MessengerError> {
        if last <= read {
            return Ok(0);
        }
        if last - read > UNREAD_EXACT as u64 {
            // Trimmed entries are not unread: they no longer exist (see `crate::retention`).
            read = read.max(self.floor(conv).await? - 1);
        }
        let newer = last - read;
        let from = last.saturating_sub(UNREAD_EXACT as u64).max(read);
        let counted = self
            .after(conv, from, UNREAD_EXACT, false)
            .await?
            .iter()
            .filter(|m| m.kind == MessageKind::Text && !m.deleted && m.sender != user)
            .count() as u64;
        Ok(counted + newer.saturating_sub(UNREAD_EXACT as u64))
    }
}
