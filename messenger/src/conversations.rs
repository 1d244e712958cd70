//! Conversations: create (a 1:1 pair is deduplicated by a pair key CAS-created in the pair
//! region), read (cached by epoch: a newer state replaces an older one, never the reverse),
//! change a group (an entry of its log), list a user's, and authorize.

use crate::error::MessengerError;
use crate::keys;
use crate::model::{Conversation, ConversationKind, Member, Role};
use crate::send::{Change, Draft, Item, Sent};
use crate::{Messenger, now_ms};
use bytes::Bytes;
use starling_graph::GraphError;
use starling_store::{CasOutcome, ScanRequest, StoreExt, codec};
use std::sync::Arc;

/// A page of a user's conversations, newest first.
#[derive(Clone, Debug)]
pub struct ConversationsPage {
    /// The conversations.
    pub items: Vec<Arc<Conversation>>,
    /// Cursor of the next page (the last conversation's id).
    pub next: Option<u64>,
}

fn graph_err(e: GraphError) -> MessengerError {
    match e {
        GraphError::Store(s) => MessengerError::Store(s),
        GraphError::NotFound(_) => MessengerError::Invalid("unknown user"),
        _ => MessengerError::Invalid("user lookup failed"),
    }
}

impl Messenger {
    /// Creates a conversation of `creator` with `others`. One other user and no name makes a
    /// 1:1 conversation, returned again (`false`) if the pair already has one; a name or more
    /// others make a group, owned by its creator. The home region is the creator's.
    pub async fn create(
        &self,
        creator: u64,
        others: &[u64],
    ) -> Result<(Arc<Conversation>, bool), MessengerError> {
        self.create_group(creator, others, None, String::new(), None)
            .await
    }

    /// [`Messenger::create`] with a group's name (`Some`: always a group), topic and avatar.
    pub async fn create_group(
        &self,
        creator: u64,
        others: &[u64],
        name: Option<String>,
        topic: String,
        avatar: Option<u64>,
    ) -> Result<(Arc<Conversation>, bool), MessengerError> {
        let rename = Item {
            client_id: "create".into(),
            draft: Draft::Change(Change::Rename {
                name: name.clone(),
                topic: Some(topic.clone()),
                avatar: None,
            }),
        };
        crate::send::validate_item(&rename)?;
        let mut members: Vec<u64> = others.iter().copied().filter(|&u| u != creator).collect();
        members.sort_unstable();
        members.dedup();
        if members.is_empty() && name.is_none() {
            return Err(MessengerError::Invalid(
                "a conversation needs another member, or a name (a group)",
            ));
        }
        if members.len() + 1 > self.cfg.max_group_members {
            return Err(MessengerError::TooManyMembers(self.cfg.max_group_members));
        }
        for &m in &members {
            if !self.graph.exists(m).await.map_err(graph_err)? {
                return Err(MessengerError::UnknownUser(m));
            }
        }
        let home_region = self.graph.user(creator).await.map_err(graph_err)?.region;
        let kind = if members.len() == 1 && name.is_none() {
            ConversationKind::Direct
        } else {
            ConversationKind::Group
        };
        if kind == ConversationKind::Direct && (!topic.is_empty() || avatar.is_some()) {
            return Err(MessengerError::Invalid(
                "a 1:1 conversation has no topic or avatar (give a name to make a group)",
            ));
        }
        if kind == ConversationKind::Direct
            && self
                .graph
                .blocked_either(creator, members[0])
                .await
                .map_err(graph_err)?
        {
            return Err(MessengerError::Blocked);
        }
        members.push(creator);
        members.sort_unstable();
        let members = members
            .into_iter()
            .map(|user| Member {
                user,
                role: if user == creator && kind == ConversationKind::Group {
                    Role::Owner
                } else {
                    Role::Member
                },
                since: 1,
            })
            .collect();
        let conv = Conversation {
            id: self.ids.next_id(),
            kind,
            members,
            home_region,
            created_by: creator,
            created_at_ms: now_ms(),
            name: name.unwrap_or_default(),
            topic,
            avatar,
            epoch: 0,
            past: Vec::new(),
        };
        if kind == ConversationKind::Direct {
            // The pair key decides: it holds the whole conversation, so the loser of a race
            // learns the winner's from the CAS answer even before the record replicates here.
            let pk = keys::pair(conv.members[0].user, conv.members[1].user);
            let value = codec::to_value(&conv)?;
            match self
                .cas
                .cas_at(&self.cfg.pair_region, &pk, None, Some(value))
                .await?
            {
                CasOutcome::Applied(_) => {}
                CasOutcome::Conflict(Some(v)) => {
                    let Some(b) = v.value else {
                        return Err(MessengerError::Invalid("pair key was deleted"));
                    };
                    let existing: Conversation = codec::from_value(&b)?;
                    // Make sure the record and memberships exist here (idempotent writes):
                    // the creator of the winning attempt may have crashed before writing them.
                    self.persist(&existing).await?;
                    return Ok((Arc::new(existing), false));
                }
                CasOutcome::Conflict(None) => return Err(MessengerError::Contended),
            }
        }
        self.persist(&conv).await?;
        Ok((Arc::new(conv), true))
    }

    /// Writes the conversation record and each member's list element.
    async fn persist(&self, conv: &Conversation) -> Result<(), MessengerError> {
        self.store
            .put_typed(&keys::conversation(conv.id), conv)
            .await?;
        for m in &conv.members {
            self.store
                .add(&keys::by_user(m.user, conv.id), Bytes::new())
                .await?;
        }
        self.remember(conv.clone());
        Ok(())
    }

    /// Caches `conv` unless the cache holds a newer state of it; returns the newest.
    pub(crate) fn remember(&self, conv: Conversation) -> Arc<Conversation> {
        let conv = Arc::new(conv);
        let entry = self.cache.entry(conv.id).and_upsert_with(|old| match old {
            Some(o) if o.value().epoch >= conv.epoch => o.into_value(),
            _ => conv.clone(),
        });
        entry.into_value()
    }

    /// A conversation by id, in its newest state known here (the node's cache, else the
    /// store's record).
    pub async fn conversation(&self, id: u64) -> Result<Arc<Conversation>, MessengerError> {
        if let Some(c) = self.cache.get(&id) {
            return Ok(c);
        }
        self.reload(id).await
    }

    /// Reads the record from the store (it replicated, or changed) into the cache.
    pub async fn reload(&self, id: u64) -> Result<Arc<Conversation>, MessengerError> {
        let conv = self
            .store
            .get_typed::<Conversation>(&keys::conversation(id))
            .await?
            .and_then(|v| v.value)
            .ok_or(MessengerError::NotFound)?;
        Ok(self.remember(conv))
    }

    /// The state an entry was written under (or a newer one, which answers the same for it):
    /// the one it carries, the cached one, or the change entry it names.
    pub async fn state_for(&self, m: &crate::Message) -> Result<Arc<Conversation>, MessengerError> {
        if let Some(s) = &m.state {
            return Ok(self.remember((**s).clone()));
        }
        let mut known = self.conversation(m.conv).await?;
        if known.epoch >= m.epoch {
            return Ok(known);
        }
        let conv = known.clone();
        self.state_at(&conv, m.epoch, &mut known).await
    }

    /// Changes a group: one entry of its log, made by `actor` (the caller authorized them as a
    /// member). `Ok(None)`: it changes nothing (already a member, already gone, the same name).
    /// Membership lists (`cu`) follow.
    pub async fn change(
        &self,
        conv: &Conversation,
        actor: u64,
        change: Change,
    ) -> Result<Option<Sent>, MessengerError> {
        if let Change::Add(user) = change
            && !self.graph.exists(user).await.map_err(graph_err)?
        {
            return Err(MessengerError::UnknownUser(user));
        }
        let item = Item {
            client_id: format!("chg-{}", self.ids.next_id()),
            draft: Draft::Change(change.clone()),
        };
        let sent = match self.append(conv, actor, vec![item]).await.pop() {
            Some(r) => r?,
            None => return Err(MessengerError::Contended),
        };
        let (user, member) = match change {
            Change::Add(u) => (u, true),
            Change::Remove(u) => (u, false),
            Change::Leave => (actor, false),
            Change::Rename { .. } | Change::SetRole { .. } => return Ok(sent),
        };
        let key = keys::by_user(user, conv.id);
        if member {
            self.store.add(&key, Bytes::new()).await?;
        } else {
            self.store.remove(&key).await?;
        }
        Ok(sent)
    }

    /// The conversation if `user` may read some of it: a member now, or a former member (who
    /// reads up to their removal); `NotMember` otherwise (`NotFound` if unknown).
    pub async fn authorize_read(
        &self,
        user: u64,
        conv: u64,
    ) -> Result<Arc<Conversation>, MessengerError> {
        let c = self.conversation(conv).await?;
        if c.is_member(user) || c.past.iter().any(|p| p.user == user) {
            Ok(c)
        } else {
            Err(MessengerError::NotMember)
        }
    }

    /// The conversation if `user` is a member; `NotMember` otherwise (`NotFound` if unknown).
    pub async fn authorize(
        &self,
        user: u64,
        conv: u64,
    ) -> Result<Arc<Conversation>, MessengerError> {
        let c = self.conversation(conv).await?;
        if c.is_member(user) {
            Ok(c)
        } else {
            Err(MessengerError::NotMember)
        }
    }

    /// May `sender` send in `conv` now: a member, and for a 1:1 no block either way.
    pub async fn authorize_send(
        &self,
        sender: u64,
        conv: u64,
    ) -> Result<Arc<Conversation>, MessengerError> {
        let c = self.authorize(sender, conv).await?;
        if c.kind == ConversationKind::Direct {
            let other = c.members.iter().map(|m| m.user).find(|&m| m != sender);
            if let Some(o) = other
                && self
                    .graph
                    .blocked_either(sender, o)
                    .await
                    .map_err(graph_err)?
            {
                return Err(MessengerError::Blocked);
            }
        }
        Ok(c)
    }

    /// A page of `user`'s conversations, newest first, after conversation `after`.
    pub async fn conversations_of(
        &self,
        user: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<ConversationsPage, MessengerError> {
        let mut req = ScanRequest::prefix(keys::by_user_prefix(user), limit.clamp(1, 1000));
        req.after = after.map(|c| keys::by_user(user, c));
        let page = self.store.scan(&req).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for (k, _) in &page.items {
            let p = keys::BY_USER.prefix_len() + 8;
            let Some(id) = starling_store::key::read_u64(k.as_bytes(), p).map(|v| !v) else {
                continue;
            };
            match self.conversation(id).await {
                Ok(c) if c.is_member(user) => items.push(c),
                Ok(_) => {}
                // The membership replicated before the record: skip it for now.
                Err(MessengerError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let next = if page.next.is_some() && items.len() == limit {
            items.last().map(|c| c.id)
        } else {
            None
        };
        Ok(ConversationsPage { items, next })
    }

    /// The users who share a conversation with `user` (among its newest `max_convs`), for
    /// presence.
    pub async fn contacts_of(
        &self,
        user: u64,
        max_convs: usize,
    ) -> Result<Vec<u64>, MessengerError> {
        let page = self.conversations_of(user, None, max_convs).await?;
        let mut out: Vec<u64> = page
            .items
            .iter()
            .flat_map(|c| c.members.iter().map(|m| m.user))
            .filter(|&m| m != user)
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod forget_tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use crate::keys;
    use crate::tests::setup;
    use starling_store::StoreExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forgetting_the_cache_reads_a_change_made_elsewhere() {
        let (m, u) = setup(3).await;
        let (g, _) = m.create(u[0], &[u[1], u[2]]).await.unwrap();
        // Another node removes u[2]: its record reaches this node's store, not its cache.
        let mut elsewhere = (*g).clone();
        elsewhere.members.retain(|x| x.user != u[2]);
        elsewhere.epoch += 1;
        m.store()
            .put_typed(&keys::conversation(g.id), &elsewhere)
            .await
            .unwrap();
        let cached = m.conversation(g.id).await.unwrap();
        assert!(
            cached.members.iter().any(|x| x.user == u[2]),
            "still cached"
        );
        m.forget_cached();
        let read = m.conversation(g.id).await.unwrap();
        assert_eq!(read.epoch, elsewhere.epoch);
        assert!(!read.members.iter().any(|x| x.user == u[2]));
    }
}
