//! Account deletion: a tombstone for the user at once, their edges swept in bounded steps, their
//! handle freed after a grace period.
//!
//! [`Graph::delete_account`] (the password required) writes the deletion record `gd/user` first,
//! then revokes every session, deletes the credentials and the user record: from then on the user
//! reads as unknown, cannot log in and nobody can follow or befriend them. Everything else is the
//! work of a background sweeper (`starling_api::deletion`), in steps of at most a given number of
//! writes: [`Graph::sweep_account`] takes off the user's follows both ways, friendships, pending
//! friend requests (both lists and the request), the blocks they made, and what the request left
//! undone after a crash. Edges go through the same set-element removals as an unfollow, so the
//! follower counts of others move by the per-node count consumer, exactly once per edge.
//!
//! The record replicates, and so does the account's element of the sweeper's list `gdp/user`
//! (written before the record, taken off once finished), so a node of any region can sweep; removals are idempotent.
//! The element carries the deletion itself: two keys replicate in no set order (a partition's
//! repair sends them apart), so a node may see the element before the record, and then writes the
//! record from it (the same content) rather than dropping the element — which, replicated, once
//! took the deletion off every node's list and left its handle taken for good. The sweep
//! goes on until the grace period (`--handle-grace`) has passed, which also takes off an edge that
//! another region wrote before it saw the deletion; then [`Graph::release_handle`] frees the
//! handle by CAS at the handle region's owner (only if it still names this user) and the record is
//! marked finished. It stays as the user's tombstone: [`Graph::is_deleted`] answers from it.
//! Blocks others made of the deleted user stay (they block nobody any more).

use crate::keys::{
    self, BLOCKS, CREDENTIALS, DELETIONS, FOLLOWERS, FOLLOWING, FRIENDS, HANDLES,
    PENDING_DELETIONS, REQUESTS, REQUESTS_IN, REQUESTS_OUT, USER_SESSIONS, pair, pair_prefix,
    second,
};
use crate::{Graph, GraphError, now_ms};
use serde::{Deserialize, Serialize};
use starling_store::{CasOutcome, Key, Keyspace, ScanRequest, StoreExt};

/// A deleted account, as the record `gd/user` keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// The deleted user.
    pub user: u64,
    /// Their handle, freed after the grace period.
    pub handle: String,
    /// When the account was deleted, ms since the epoch.
    pub deleted_at_ms: u64,
    /// Swept clean after the grace period and the handle freed: nothing left to do.
    pub finished: bool,
}

/// The edge keyspaces a deletion sweeps, each with the keyspace of its reverse element (if any).
const EDGES: [(Keyspace, Option<Keyspace>); 4] = [
    (FOLLOWING, Some(FOLLOWERS)),
    (FOLLOWERS, Some(FOLLOWING)),
    (FRIENDS, Some(FRIENDS)),
    (BLOCKS, None),
];

fn deletion_key(user: u64) -> Key {
    DELETIONS.key().u64(user).finish()
}

fn pending_key(user: u64) -> Key {
    PENDING_DELETIONS.key().u64(user).finish()
}

impl Graph {
    /// Deletes `user`'s account if `password` is theirs (`Forbidden` else, and nothing changes).
    /// The rest of the account goes in the background (see the module doc).
    pub async fn delete_account(&self, user: u64, password: &str) -> Result<(), GraphError> {
        let rec = self
            .user_record(user)
            .await?
            .ok_or(GraphError::NotFound("user"))?;
        if !self.password_matches(user, password).await? {
            return Err(GraphError::Forbidden("wrong password"));
        }
        let d = Deletion {
            user,
            handle: rec.handle,
            deleted_at_ms: now_ms(),
            finished: false,
        };
        // On the sweeper's list (with the deletion: see the module doc), then the record: a
        // crash after it leaves the rest to the sweeper, never a half-deleted account nobody will
        // finish.
        self.store
            .add(&pending_key(user), starling_store::codec::to_value(&d)?)
            .await?;
        self.store.put_typed(&deletion_key(user), &d).await?;
        self.revoke_sessions(user, None).await?;
        self.store
            .delete(&CREDENTIALS.key().u64(user).finish())
            .await?;
        self.store.delete(&keys::user(user)).await?;
        Ok(())
    }

    /// Whether `user`'s account was deleted (as far as this replica knows).
    pub async fn is_deleted(&self, user: u64) -> Result<bool, GraphError> {
        Ok(self.deletion(user).await?.is_some())
    }

    /// The deletion record of `user`, if the account was deleted.
    pub async fn deletion(&self, user: u64) -> Result<Option<Deletion>, GraphError> {
        Ok(self
            .store
            .get_typed::<Deletion>(&deletion_key(user))
            .await?
            .and_then(|v| v.value))
    }

    /// Up to `limit` deletions not finished yet, by user id after `after`, and where the next
    /// page starts. Reads the pending list (`gdp`), never the finished tombstones, so a pass costs
    /// what is pending however many accounts were ever deleted. An entry whose record is finished
    /// is taken off the list; one whose record is missing here (not replicated yet, or a deletion
    /// that crashed before writing it) writes the record from the deletion the entry carries (an
    /// entry of a build before that carries none, and is taken off).
    pub async fn pending_deletions(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Deletion>, Option<u64>), GraphError> {
        let mut req = ScanRequest::prefix(
            PENDING_DELETIONS.prefix(),
            limit.clamp(1, self.store.limits().max_scan),
        );
        req.after = after.map(pending_key);
        let page = self.store.scan(&req).await?;
        let user_of =
            |k: &Key| starling_store::key::read_u64(k.as_bytes(), PENDING_DELETIONS.prefix_len());
        let mut out = Vec::new();
        for (k, v) in &page.items {
            let Some(user) = user_of(k) else { continue };
            let carried = v
                .value
                .as_deref()
                .and_then(|b| starling_store::codec::from_value::<Deletion>(b).ok())
                .filter(|d| d.user == user);
            match (self.deletion(user).await?, carried) {
                (Some(d), _) if !d.finished => out.push(d),
                (None, Some(d)) => {
                    self.store.put_typed(&deletion_key(user), &d).await?;
                    out.push(d);
                }
                _ => {
                    self.store.remove(k).await?;
                }
            }
        }
        Ok((out, page.next.as_ref().and_then(user_of)))
    }

    /// One step of sweeping `user`'s account: at most `budget` removals. Returns how many it
    /// made; 0 when nothing of the account is left.
    pub async fn sweep_account(&self, user: u64, budget: usize) -> Result<usize, GraphError> {
        let mut done = 0;
        // What the request did not get to before a crash (each a read when already done).
        for key in [keys::user(user), CREDENTIALS.key().u64(user).finish()] {
            if self
                .store
                .get(&key)
                .await?
                .is_some_and(|v| v.value.is_some())
            {
                self.store.delete(&key).await?;
                done += 1;
            }
        }
        if self.has_any(USER_SESSIONS, user).await? {
            done += self.revoke_sessions(user, None).await? as usize;
        }
        for (ks, reverse) in EDGES {
            done += self
                .sweep_pairs(ks, user, budget.saturating_sub(done), |other| {
                    reverse.map(|r| pair(r, other, user))
                })
                .await?;
            if done >= budget {
                break;
            }
        }
        for ks in [REQUESTS_IN, REQUESTS_OUT] {
            if done >= budget {
                break;
            }
            done += self.sweep_requests(ks, user, budget - done).await?;
        }
        if done > 0 {
            self.catch_up_counts().await?;
        }
        Ok(done)
    }

    async fn has_any(&self, ks: Keyspace, user: u64) -> Result<bool, GraphError> {
        let page = self
            .store
            .scan(&ScanRequest::prefix(pair_prefix(ks, user), 1))
            .await?;
        Ok(!page.items.is_empty() || page.next.is_some())
    }

    /// Removes up to `budget` elements `ks/user/*`, each after its reverse element.
    async fn sweep_pairs(
        &self,
        ks: Keyspace,
        user: u64,
        budget: usize,
        reverse: impl Fn(u64) -> Option<Key>,
    ) -> Result<usize, GraphError> {
        let mut done = 0;
        let mut req = ScanRequest::prefix(
            pair_prefix(ks, user),
            budget.clamp(1, self.store.limits().max_scan),
        );
        while done < budget {
            let page = self.store.scan(&req).await?;
            for (k, _) in &page.items {
                let Some(other) = second(k, ks) else { continue };
                // The other user's element first, like an unfollow: what is left after a crash
                // is this user's own list, which the next step finds.
                if let Some(r) = reverse(other) {
                    self.store.remove(&r).await?;
                }
                let removed = self.store.remove(k).await;
                // (A block element among them: the block cache forgets the pair.)
                self.block_changed(user, other);
                removed?;
                done += 1;
            }
            match page.next {
                Some(n) => req.after = Some(n),
                None => break,
            }
        }
        Ok(done)
    }

    /// Ends up to `budget` pending friend requests listed under `user` in `ks`.
    async fn sweep_requests(
        &self,
        ks: Keyspace,
        user: u64,
        budget: usize,
    ) -> Result<usize, GraphError> {
        let page = self.id_page(ks, user, None, budget.max(1)).await?;
        let mut done = 0;
        for id in page.ids {
            let rk = REQUESTS.key().u64(id).finish();
            if let Ok(req) = self.friend_request(id).await {
                self.store.remove(&pair(REQUESTS_IN, req.to, id)).await?;
                self.store.remove(&pair(REQUESTS_OUT, req.from, id)).await?;
                self.store.delete(&rk).await?;
            } else {
                self.store.remove(&pair(ks, user, id)).await?;
            }
            done += 1;
        }
        Ok(done)
    }

    /// Frees `d`'s handle if it still names `d.user` (a CAS at the handle region's owner: a
    /// handle someone else claimed since is left alone), and marks the deletion finished.
    pub async fn release_handle(&self, d: &Deletion) -> Result<(), GraphError> {
        let hk = HANDLES.key().str(&d.handle).finish();
        let mine = d.user.to_be_bytes();
        // From this replica's version; the owner's answer gives the version to try next.
        let here = self.store.get(&hk).await?;
        // Free here already, or someone else's since: nothing of this user's to free.
        let mut freed = here
            .as_ref()
            .is_some_and(|v| v.value.as_deref() != Some(&mine[..]));
        let mut expected = here.map(|v| v.version);
        for _ in 0..3 {
            if freed {
                break;
            }
            match self
                .cas
                .cas_at(&self.cfg.handle_region, &hk, expected.as_ref(), None)
                .await?
            {
                CasOutcome::Applied(_) => {
                    freed = true;
                    break;
                }
                CasOutcome::Conflict(Some(cur)) if cur.value.as_deref() == Some(&mine[..]) => {
                    expected = Some(cur.version);
                }
                // Free already, or someone else's since.
                CasOutcome::Conflict(_) => {
                    freed = true;
                    break;
                }
            }
        }
        if !freed {
            return Err(GraphError::Invalid(
                "the handle kept changing while being freed",
            ));
        }
        let done = Deletion {
            finished: true,
            ..d.clone()
        };
        self.store.put_typed(&deletion_key(d.user), &done).await?;
        self.store.remove(&pending_key(d.user)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::GraphError;
    use crate::users::tests::graph;

    #[tokio::test]
    async fn a_deleted_account_is_swept_in_bounded_steps_and_its_handle_freed() {
        let g = graph();
        let (a, at) = g
            .sign_up("alice", "alice password", None, None)
            .await
            .unwrap();
        let (b, _) = g.sign_up("bob", "bob password", None, None).await.unwrap();
        let (c, _) = g
            .sign_up("carol", "carol password", None, None)
            .await
            .unwrap();
        g.follow(a.id, b.id).await.unwrap();
        g.follow(b.id, a.id).await.unwrap();
        g.follow(c.id, a.id).await.unwrap();
        g.follow(c.id, b.id).await.unwrap();
        let r = g.request_friend(a.id, c.id).await.unwrap();
        g.block(a.id, b.id).await.ok();
        g.follow(b.id, a.id).await.ok();
        let before = g.user(c.id).await.unwrap().following_count;

        assert!(matches!(
            g.delete_account(a.id, "not the password").await,
            Err(GraphError::Forbidden(_))
        ));
        assert!(g.exists(a.id).await.unwrap(), "nothing changed");
        g.delete_account(a.id, "alice password").await.unwrap();
        assert!(matches!(
            g.authenticate(&at.token).await,
            Err(GraphError::InvalidToken)
        ));
        assert!(matches!(g.user(a.id).await, Err(GraphError::NotFound(_))));
        assert!(matches!(
            g.login("alice", "alice password").await,
            Err(GraphError::WrongCredentials)
        ));
        assert!(matches!(
            g.follow(b.id, a.id).await,
            Err(GraphError::NotFound(_))
        ));
        assert!(matches!(
            g.sign_up("alice", "another password", None, None).await,
            Err(GraphError::HandleTaken)
        ));
        assert!(g.is_deleted(a.id).await.unwrap());

        let mut steps = 0;
        while g.sweep_account(a.id, 2).await.unwrap() > 0 {
            steps += 1;
            assert!(steps < 20, "a sweep ends");
        }
        assert!(steps >= 2, "bounded steps: {steps}");
        assert_eq!(g.user(c.id).await.unwrap().following_count, before - 1);
        let bob = g.user(b.id).await.unwrap();
        assert_eq!((bob.followers_count, bob.following_count), (1, 0));
        assert!(g.followers(b.id, None, 10).await.unwrap().ids == vec![c.id]);
        assert!(
            g.friend_requests(c.id, true, None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert!(matches!(
            g.friend_request(r.id).await,
            Err(GraphError::NotFound(_))
        ));
        assert!(!g.has_blocked(a.id, b.id).await.unwrap());

        let (pending, _) = g.pending_deletions(None, 10).await.unwrap();
        assert_eq!(
            pending.iter().map(|d| d.user).collect::<Vec<_>>(),
            vec![a.id]
        );
        g.release_handle(&pending[0]).await.unwrap();
        assert!(g.pending_deletions(None, 10).await.unwrap().0.is_empty());
        assert!(g.is_deleted(a.id).await.unwrap());
        let (again, _) = g
            .sign_up("ALICE", "another password", None, None)
            .await
            .unwrap();
        assert_ne!(again.id, a.id);
        // Freeing again leaves the new owner's handle alone.
        g.release_handle(&pending[0]).await.unwrap();
        assert_eq!(g.user_by_handle("alice").await.unwrap().id, again.id);
    }

    /// A node that holds a deletion's list entry but not yet its record (the two keys replicate
    /// apart) sweeps it, rather than taking the entry off (which, replicated, would leave the
    /// account unswept and its handle taken on every node).
    #[tokio::test]
    async fn a_list_entry_that_arrives_before_its_record_is_swept() {
        use starling_store::{Delta, StoreExt};
        let origin = graph();
        let (a, _) = origin
            .sign_up("dora", "dora password", None, None)
            .await
            .unwrap();
        origin.delete_account(a.id, "dora password").await.unwrap();
        // Another node: the entry replicated, the record not yet.
        let other = graph();
        let entry = super::pending_key(a.id);
        let record = origin.store().get_record(&entry).await.unwrap().unwrap();
        other
            .store()
            .apply(&[Delta {
                key: entry.clone(),
                record,
            }])
            .await
            .unwrap();
        assert!(other.deletion(a.id).await.unwrap().is_none());
        let (pending, _) = other.pending_deletions(None, 10).await.unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|d| (d.user, d.handle.as_str()))
                .collect::<Vec<_>>(),
            [(a.id, "dora")]
        );
        assert!(other.is_deleted(a.id).await.unwrap(), "the record written");
        assert!(
            other
                .store()
                .get(&entry)
                .await
                .unwrap()
                .is_some_and(|v| v.value.is_some()),
            "the entry kept"
        );
        // An entry carrying nothing (a build before) and no record: taken off.
        other
            .store()
            .add(&super::pending_key(a.id + 1), bytes::Bytes::new())
            .await
            .unwrap();
        let (pending, _) = other.pending_deletions(None, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert!(
            other
                .store()
                .get(&super::pending_key(a.id + 1))
                .await
                .unwrap()
                .is_none_or(|v| v.value.is_none())
        );
    }
}
