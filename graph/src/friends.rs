//! Friend requests and friendships. A request is a register; accepting it (by its addressee
//! only) makes both users follow each other and adds the friendship both ways (set elements).
//! While it is pending it is listed under both users (`gri` by addressee, `gro` by sender);
//! accepting, declining (the addressee) or cancelling (the sender) takes it off both lists, and
//! the last two delete it.

use crate::keys::{FRIENDS, REQUESTS, REQUESTS_IN, REQUESTS_OUT, pair};
use crate::{Graph, GraphError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use starling_store::StoreExt;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    /// Waiting for the addressee.
    Pending,
    /// Accepted: the two are friends.
    Accepted,
}

/// A friend request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequest {
    /// Its id.
    pub id: u64,
    /// Who asked.
    pub from: u64,
    /// Who is asked.
    pub to: u64,
    /// Where it stands.
    pub state: RequestState,
}

impl Graph {
    /// `from` asks `to` to be friends.
    pub async fn request_friend(&self, from: u64, to: u64) -> Result<FriendRequest, GraphError> {
        if from == to {
            return Err(GraphError::Invalid("one cannot befriend oneself"));
        }
        if !self.exists(to).await? {
            return Err(GraphError::NotFound("user"));
        }
        if self.blocked_either(from, to).await? {
            return Err(GraphError::Blocked);
        }
        let req = FriendRequest {
            id: self.ids.next_id(),
            from,
            to,
            state: RequestState::Pending,
        };
        self.store
            .put_typed(&REQUESTS.key().u64(req.id).finish(), &req)
            .await?;
        self.store
            .add(&pair(REQUESTS_IN, to, req.id), Bytes::new())
            .await?;
        self.store
            .add(&pair(REQUESTS_OUT, from, req.id), Bytes::new())
            .await?;
        Ok(req)
    }

    /// A request, if it exists (and was not declined or cancelled).
    pub async fn friend_request(&self, id: u64) -> Result<FriendRequest, GraphError> {
        self.store
            .get_typed(&REQUESTS.key().u64(id).finish())
            .await?
            .and_then(|v| v.value)
            .ok_or(GraphError::NotFound("friend request"))
    }

    /// Takes a request off both users' pending lists.
    async fn unlist(&self, req: &FriendRequest) -> Result<(), GraphError> {
        self.store
            .remove(&pair(REQUESTS_IN, req.to, req.id))
            .await?;
        self.store
            .remove(&pair(REQUESTS_OUT, req.from, req.id))
            .await?;
        Ok(())
    }

    /// Ends a pending request: declined by its addressee (`by_sender` false) or cancelled by its
    /// sender (true). Anyone else is refused; an accepted request is no longer pending.
    pub async fn withdraw_friend_request(
        &self,
        id: u64,
        caller: u64,
        by_sender: bool,
    ) -> Result<(), GraphError> {
        let req = self.friend_request(id).await?;
        let party = if by_sender { req.from } else { req.to };
        if party != caller {
            return Err(GraphError::Forbidden(if by_sender {
                "only the sender cancels a friend request"
            } else {
                "only the addressee declines a friend request"
            }));
        }
        if req.state != RequestState::Pending {
            return Err(GraphError::Invalid(
                "the friend request was accepted already",
            ));
        }
        self.unlist(&req).await?;
        self.store.delete(&REQUESTS.key().u64(id).finish()).await?;
        Ok(())
    }

    /// `user`'s pending requests, `incoming` (addressed to them) or outgoing, by request id.
    pub async fn friend_requests(
        &self,
        user: u64,
        incoming: bool,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<FriendRequest>, Option<u64>), GraphError> {
        let ks = if incoming { REQUESTS_IN } else { REQUESTS_OUT };
        let page = self
            .id_page(ks, user, after, limit.clamp(1, crate::follows::API_PAGE))
            .await?;
        let mut out = Vec::with_capacity(page.ids.len());
        for id in page.ids {
            match self.friend_request(id).await {
                Ok(r) if r.state == RequestState::Pending => out.push(r),
                Ok(_) | Err(GraphError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((out, page.next))
    }

    /// The addressee accepts: mutual follow and friendship. Accepting twice is harmless.
    pub async fn accept_friend(&self, id: u64, caller: u64) -> Result<FriendRequest, GraphError> {
        let key = REQUESTS.key().u64(id).finish();
        let mut req: FriendRequest = self
            .store
            .get_typed(&key)
            .await?
            .and_then(|v| v.value)
            .ok_or(GraphError::NotFound("friend request"))?;
        if req.to != caller {
            return Err(GraphError::Forbidden(
                "only the addressee accepts a friend request",
            ));
        }
        if self.blocked_either(req.from, req.to).await? {
            return Err(GraphError::Blocked);
        }
        self.follow(req.from, req.to).await?;
        self.follow(req.to, req.from).await?;
        self.store
            .add(&pair(FRIENDS, req.from, req.to), Bytes::new())
            .await?;
        self.store
            .add(&pair(FRIENDS, req.to, req.from), Bytes::new())
            .await?;
        req.state = RequestState::Accepted;
        self.store.put_typed(&key, &req).await?;
        self.unlist(&req).await?;
        Ok(req)
    }

    /// Ends a friendship both ways (follows stay as they are).
    pub(crate) async fn unfriend(&self, a: u64, b: u64) -> Result<(), GraphError> {
        self.store.remove(&pair(FRIENDS, a, b)).await?;
        self.store.remove(&pair(FRIENDS, b, a)).await?;
        Ok(())
    }

    /// `id`'s friends, by id.
    pub async fn friends(
        &self,
        id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<crate::follows::IdPage, GraphError> {
        self.id_page(FRIENDS, id, after, limit.clamp(1, crate::follows::API_PAGE))
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::GraphError;
    use crate::users::tests::graph;

    #[tokio::test]
    async fn accepting_makes_friends_who_follow_each_other() {
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        let (c, _) = g.sign_up("carol", "password1", None, None).await.unwrap();
        let r = g.request_friend(a.id, b.id).await.unwrap();
        assert!(matches!(
            g.accept_friend(r.id, a.id).await,
            Err(GraphError::Forbidden(_))
        ));
        assert!(matches!(
            g.accept_friend(r.id, c.id).await,
            Err(GraphError::Forbidden(_))
        ));
        g.accept_friend(r.id, b.id).await.unwrap();
        assert!(g.is_following(a.id, b.id).await.unwrap());
        assert!(g.is_following(b.id, a.id).await.unwrap());
        assert_eq!(g.friends(a.id, None, 10).await.unwrap().ids, vec![b.id]);
        assert_eq!(g.friends(b.id, None, 10).await.unwrap().ids, vec![a.id]);
        assert!(matches!(
            g.accept_friend(999, b.id).await,
            Err(GraphError::NotFound(_))
        ));
        // Accepted: on nobody's pending list, and neither declined nor cancelled any more.
        assert!(
            g.friend_requests(b.id, true, None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert!(matches!(
            g.withdraw_friend_request(r.id, b.id, false).await,
            Err(GraphError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn pending_requests_are_listed_both_ways_until_declined_or_cancelled() {
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        let (b, _) = g.sign_up("bob", "password1", None, None).await.unwrap();
        let (c, _) = g.sign_up("carol", "password1", None, None).await.unwrap();
        let ab = g.request_friend(a.id, b.id).await.unwrap();
        let cb = g.request_friend(c.id, b.id).await.unwrap();
        let ids = |v: Vec<super::FriendRequest>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let (incoming, _) = g.friend_requests(b.id, true, None, 10).await.unwrap();
        assert_eq!(ids(incoming), vec![ab.id, cb.id]);
        let (first, next) = g.friend_requests(b.id, true, None, 1).await.unwrap();
        assert_eq!(ids(first), vec![ab.id]);
        assert_eq!(
            ids(g.friend_requests(b.id, true, next, 1).await.unwrap().0),
            vec![cb.id]
        );
        assert_eq!(
            ids(g.friend_requests(a.id, false, None, 10).await.unwrap().0),
            vec![ab.id]
        );
        assert!(
            g.friend_requests(a.id, true, None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        // Only the addressee declines, only the sender cancels.
        for (caller, by_sender) in [(a.id, false), (b.id, true), (c.id, false)] {
            assert!(matches!(
                g.withdraw_friend_request(ab.id, caller, by_sender).await,
                Err(GraphError::Forbidden(_))
            ));
        }
        g.withdraw_friend_request(ab.id, b.id, false).await.unwrap();
        g.withdraw_friend_request(cb.id, c.id, true).await.unwrap();
        assert!(
            g.friend_requests(b.id, true, None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert!(
            g.friend_requests(a.id, false, None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert!(matches!(
            g.accept_friend(ab.id, b.id).await,
            Err(GraphError::NotFound(_))
        ));
        assert!(!g.is_following(a.id, b.id).await.unwrap());
    }
}
