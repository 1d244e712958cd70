//! Friend requests and friendships. A request is a register; accepting it (by its addressee
//! only) makes both users follow each other and adds the friendship both ways (set elements).

use crate::keys::{FRIENDS, REQUESTS, pair};
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
        Ok(req)
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
    }
}
