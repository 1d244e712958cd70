//! A user's own account: the index of their sessions, and a password change that revokes every
//! session but the caller's.
//!
//! A session is keyed by its token's digest alone (`gs`), so a user's sessions cannot be found
//! from the user; each session is therefore also an element `gsu/user/digest` (its expiry as
//! payload), written before the session itself. A revocation walks that index a page at a time
//! and deletes each session and its element: both are replicated tombstones, so a revoked token
//! stops working in every region once the deletes arrive there. Where the session cache is on
//! ([`crate::session_cache`]) each delete drops its token from it at once. A session created
//! in another region and not yet replicated here when the password changes is not seen, and
//! survives.
//! Sessions created by builds before this index are not in it (they expire after their TTL).

use crate::keys::{CREDENTIALS, SESSIONS, USER_SESSIONS};
use crate::users::{check_password, token_digest};
use crate::{Graph, GraphError};
use bytes::Bytes;
use starling_store::{Key, ScanRequest, StoreExt};

/// Sessions read per page of a revocation.
const REVOKE_PAGE: usize = 256;

fn index_key(user: u64, digest: &[u8]) -> Key {
    USER_SESSIONS.key().u64(user).raw(digest).finish()
}

impl Graph {
    /// Lists a new session under its user (see the module doc).
    pub(crate) async fn index_session(
        &self,
        user: u64,
        digest: &[u8; 32],
        expires_at_ms: u64,
    ) -> Result<(), GraphError> {
        let payload = Bytes::copy_from_slice(&expires_at_ms.to_be_bytes());
        self.store.add(&index_key(user, digest), payload).await?;
        Ok(())
    }

    /// Takes a revoked session off its user's list.
    pub(crate) async fn unindex_session(
        &self,
        user: u64,
        digest: &[u8; 32],
    ) -> Result<(), GraphError> {
        self.store.remove(&index_key(user, digest)).await?;
        Ok(())
    }

    /// Checks `password` against the user's stored credentials.
    pub(crate) async fn password_matches(
        &self,
        user: u64,
        password: &str,
    ) -> Result<bool, GraphError> {
        let ck = CREDENTIALS.key().u64(user).finish();
        let Some(phc) = self.store.get(&ck).await?.and_then(|v| v.value) else {
            return Ok(false);
        };
        let phc = String::from_utf8_lossy(&phc).to_string();
        self.verify_password(password.to_string(), phc).await
    }

    /// Changes `user`'s password from `old` to `new` and revokes every session of theirs but
    /// `keep_token`'s (the caller's). `Forbidden` when `old` is wrong (nothing changes);
    /// `WeakPassword` when `new` breaks the rules. Returns how many sessions were revoked.
    pub async fn change_password(
        &self,
        user: u64,
        keep_token: &str,
        old: &str,
        new: &str,
    ) -> Result<u64, GraphError> {
        check_password(new)?;
        if !self.password_matches(user, old).await? {
            return Err(GraphError::Forbidden("wrong password"));
        }
        let phc = self.hash_password(new.to_string()).await?;
        let ck = CREDENTIALS.key().u64(user).finish();
        self.store.put(&ck, Bytes::from(phc)).await?;
        self.revoke_sessions(user, Some(&token_digest(keep_token)))
            .await
    }

    /// Deletes every session of `user` listed here, but `keep`'s; returns how many. Walks the
    /// index a page at a time (each page is one bounded scan).
    pub async fn revoke_sessions(
        &self,
        user: u64,
        keep: Option<&[u8; 32]>,
    ) -> Result<u64, GraphError> {
        let prefix = USER_SESSIONS.key().u64(user).finish();
        let skip = prefix.as_bytes().len();
        let mut req = ScanRequest::prefix(prefix, REVOKE_PAGE.min(self.store.limits().max_scan));
        let mut revoked = 0;
        loop {
            let page = self.store.scan(&req).await?;
            for (k, _) in &page.items {
                let digest = &k.as_bytes()[skip..];
                if keep.is_some_and(|d| d.as_slice() == digest) {
                    continue;
                }
                self.store
                    .delete(&SESSIONS.key().raw(digest).finish())
                    .await?;
                self.session_revoked(digest);
                self.store.remove(k).await?;
                revoked += 1;
            }
            match page.next {
                Some(n) => req.after = Some(n),
                None => return Ok(revoked),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::GraphError;
    use crate::users::tests::graph;

    #[tokio::test]
    async fn a_new_password_revokes_every_other_session() {
        let g = graph();
        let (u, s1) = g
            .sign_up("carol", "first password", None, None)
            .await
            .unwrap();
        let s2 = g.login("carol", "first password").await.unwrap();
        let s3 = g.login("carol", "first password").await.unwrap();
        let (_, other) = g
            .sign_up("dave", "dave password", None, None)
            .await
            .unwrap();
        // A logged-out session is off the index: nothing left to revoke for it.
        g.logout(&s3.token).await.unwrap();

        assert!(matches!(
            g.change_password(u.id, &s1.token, "not the password", "second password")
                .await,
            Err(GraphError::Forbidden(_))
        ));
        assert!(matches!(
            g.change_password(u.id, &s1.token, "first password", "short")
                .await,
            Err(GraphError::WeakPassword(_))
        ));
        assert_eq!(
            g.authenticate(&s2.token).await.unwrap(),
            u.id,
            "nothing changed"
        );

        let revoked = g
            .change_password(u.id, &s1.token, "first password", "second password")
            .await
            .unwrap();
        assert_eq!(revoked, 1);
        assert_eq!(g.authenticate(&s1.token).await.unwrap(), u.id);
        assert!(matches!(
            g.authenticate(&s2.token).await,
            Err(GraphError::InvalidToken)
        ));
        assert_eq!(g.authenticate(&other.token).await.unwrap(), other.user_id);
        assert!(matches!(
            g.login("carol", "first password").await,
            Err(GraphError::WrongCredentials)
        ));
        g.login("carol", "second password").await.unwrap();
    }
}
