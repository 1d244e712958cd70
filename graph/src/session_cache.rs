//! The session cache: [`crate::Graph::authenticate`] answered from memory for tokens seen before
//! (every authenticated request asks it: a store read, on the embedded store a trip to the
//! blocking pool, without it).
//!
//! Exact, not eventually right: a revocation takes effect on the next request.
//! - Every deletion of a session through this node ([`crate::Graph::logout`], a password change's
//!   and an account deletion's [`crate::Graph::revoke_sessions`]) calls [`SessionCache::revoked`]
//!   after the store's delete: it bumps a generation and drops the token, under one lock.
//! - A miss notes the generation **before** reading the store and caches what it read only if
//!   the generation is still the same, under that lock ([`SessionCache::offer`]): a session read
//!   before a revocation is either cached before the revocation's drop (and dropped by it) or not
//!   cached.
//! - An entry keeps the session's expiry: an expired session is refused as the store's is.
//!   Unknown tokens are not cached (a stream of made-up tokens cannot fill it).
//! - A revocation made on another node (of the region or of another region) reaches this node's
//!   store by replication, as a session record's tombstone, which its change feed lists: the
//!   follower counts' consumer ([`crate::Graph::count_changes`], which reads every batch of the
//!   node's feed) hands each batch to [`crate::Graph::sessions_changed`] first, which drops every
//!   token a change names (creations too: a drop is never wrong) and bumps the generation. So on
//!   every node a revoked token is refused once its tombstone has reached the node's store and
//!   the consumer has read it (its feed lag, milliseconds when it keeps up), never later: a miss
//!   that read the session before the tombstone arrived is not cached after the drop.
//! - So it is used wherever this node's own change feed lists every session record's change: one
//!   node on its own store, or a gossip cluster of nodes each on its own store
//!   ([`crate::GraphConfig::session_cache`], set by the server). On a keyspace shared by several
//!   nodes the feed is split between them: there every node's broadcast reader of the keyspace
//!   feed hands it the keys the region's other nodes wrote (`sessions_changed` again, within
//!   the reader's poll interval, and [`crate::Graph::forget_sessions`] when the reader fell
//!   behind or failed), and an entry is trusted for [`crate::GraphConfig::session_recheck`] at
//!   most before the store is read again: the bound if that reader is down.
//!
//! Bounded: at most [`SESSIONS`] sessions, least recently used out (a session read again after
//! its eviction is read from the store); counted in [`SessionCacheStats`]. Keyed by the token's
//! digest, as the store is: the token itself is not kept.

use crate::exact_cache::{ExactCache, ExactCacheStats};
use crate::keys::SESSIONS as SESSION_RECORDS;
use starling_store::Change;

/// Sessions kept at most.
pub const SESSIONS: u64 = 100_000;

/// Counters of the session cache, read by `/metrics`.
pub type SessionCacheStats = ExactCacheStats;

/// A cached session: its user, expiry, and when to read the store again (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    pub(crate) user: u64,
    pub(crate) expires_at_ms: u64,
    /// Past this, the entry is read again from the store ([`crate::GraphConfig::session_recheck`];
    /// `u64::MAX` without one).
    pub(crate) recheck_at_ms: u64,
}

/// The cache (see the module's documentation): token digest → its session.
pub struct SessionCache(ExactCache<[u8; 32], Cached>);

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("sessions", &self.0.entries())
            .finish_non_exhaustive()
    }
}

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache(ExactCache::new(SESSIONS))
    }
}

impl SessionCache {
    /// The cached session of the token whose digest is `digest`, if any (counted as a hit or a
    /// miss).
    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<Cached> {
        self.0.get(digest)
    }

    /// The generation now: note it before reading the store for [`SessionCache::offer`].
    pub(crate) fn generation(&self) -> u64 {
        self.0.generation()
    }

    /// Caches `session` for `digest`, read from the store after [`SessionCache::generation`]
    /// answered `seen`, unless a session was revoked since.
    pub(crate) fn offer(&self, digest: [u8; 32], seen: u64, session: Cached) {
        self.0.offer(digest, seen, session);
    }

    /// The session of `digest` was deleted (call after the store's delete). A digest of another
    /// length (a malformed index entry) forgets every session.
    pub(crate) fn revoked(&self, digest: &[u8]) {
        match <[u8; 32]>::try_from(digest) {
            Ok(d) => self.0.changed(&d),
            Err(_) => self.0.changed_all(),
        }
    }

    /// Sessions cached now (approximate).
    pub fn entries(&self) -> u64 {
        self.0.entries()
    }

    /// The counters.
    pub fn stats(&self) -> &SessionCacheStats {
        self.0.stats()
    }
}

impl crate::Graph {
    /// Forgets every cached session (a broadcast reader that may have missed revocations).
    pub fn forget_sessions(&self) {
        if let Some(cache) = self.session_cache() {
            cache.0.changed_all();
        }
    }

    /// Drops from the session cache every session a change of `changes` names (a batch of this
    /// node's change feed, replicated revocations included, or the keys another node of a
    /// shared keyspace wrote); returns how many it named. Nothing without the cache.
    pub fn sessions_changed(&self, changes: &[Change]) -> usize {
        let Some(cache) = self.session_cache() else {
            return 0;
        };
        let prefix = SESSION_RECORDS.prefix();
        let mut named = 0;
        for c in changes {
            if let Some(digest) = c.key.as_bytes().strip_prefix(prefix.as_bytes()) {
                cache.revoked(digest);
                named += 1;
            }
        }
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GraphError;
    use crate::users::tests::graph_cached;
    use starling_store::StoreExt;
    use std::sync::atomic::Ordering;

    fn hits(g: &crate::Graph) -> u64 {
        g.session_cache()
            .unwrap()
            .stats()
            .hits
            .load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_logout_a_password_change_and_an_account_deletion_take_effect_on_the_next_request() {
        let g = graph_cached(true);
        let (u, s1) = g.sign_up("carol", "password1", None, None).await.unwrap();
        let s2 = g.login("carol", "password1").await.unwrap();
        let s3 = g.login("carol", "password1").await.unwrap();
        for s in [&s1, &s2, &s3] {
            assert_eq!(g.authenticate(&s.token).await.unwrap(), u.id);
        }
        assert_eq!(g.authenticate(&s3.token).await.unwrap(), u.id);
        assert_eq!(hits(&g), 1, "the second check of s3 came from the cache");

        g.logout(&s3.token).await.unwrap();
        assert!(matches!(
            g.authenticate(&s3.token).await,
            Err(GraphError::InvalidToken)
        ));
        g.change_password(u.id, &s1.token, "password1", "password2")
            .await
            .unwrap();
        assert!(matches!(
            g.authenticate(&s2.token).await,
            Err(GraphError::InvalidToken)
        ));
        assert_eq!(g.authenticate(&s1.token).await.unwrap(), u.id, "kept");
        // An account deletion revokes every session, the caller's too.
        g.revoke_sessions(u.id, None).await.unwrap();
        assert!(matches!(
            g.authenticate(&s1.token).await,
            Err(GraphError::InvalidToken)
        ));
        // Made-up tokens are not cached.
        let fake = format!("st_{}", "0".repeat(64));
        for _ in 0..2 {
            assert!(g.authenticate(&fake).await.is_err());
        }
        g.session_cache().unwrap().0.settle();
        assert_eq!(g.session_cache().unwrap().entries(), 0);
    }

    #[tokio::test]
    async fn a_deletion_not_made_through_this_graph_is_dropped_by_the_feed_consumer() {
        let g = graph_cached(true);
        let (u, s) = g.sign_up("erin", "password1", None, None).await.unwrap();
        let (_, other) = g.sign_up("fred", "password1", None, None).await.unwrap();
        // The sign-ups' session records are in the feed: reading them drops nothing cached yet.
        g.catch_up_counts().await.unwrap();
        for t in [&s.token, &other.token] {
            g.authenticate(t).await.unwrap();
        }
        assert_eq!(g.authenticate(&s.token).await.unwrap(), u.id);
        // The session's record deleted underneath (as a replicated tombstone is applied): the
        // cache still answers from memory until the feed consumer reads the change.
        let key = SESSION_RECORDS
            .key()
            .raw(crate::users::token_digest(&s.token))
            .finish();
        g.store().delete(&key).await.unwrap();
        assert_eq!(g.authenticate(&s.token).await.unwrap(), u.id, "stale");
        g.catch_up_counts().await.unwrap();
        assert!(matches!(
            g.authenticate(&s.token).await,
            Err(GraphError::InvalidToken)
        ));
        let before = hits(&g);
        assert_eq!(g.authenticate(&other.token).await.unwrap(), other.user_id);
        assert_eq!(hits(&g), before + 1, "another session stays cached");
    }

    #[test]
    fn a_session_read_before_a_revocation_is_not_cached_after_it() {
        let c = SessionCache::default();
        let d = [7u8; 32];
        let s = Cached {
            user: 1,
            expires_at_ms: u64::MAX,
            recheck_at_ms: u64::MAX,
        };
        assert_eq!(c.get(&d), None);
        let seen = c.generation();
        // The session is revoked between the read and the offer.
        c.revoked(&d);
        c.offer(d, seen, s);
        assert_eq!(c.get(&d), None, "the revoked session was not cached");
        let seen = c.generation();
        c.offer(d, seen, s);
        assert_eq!(c.get(&d), Some(s));
        c.revoked(&d[..31]);
        assert_eq!(c.get(&d), None, "a malformed digest forgets everything");
        assert_eq!(c.stats().hits.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats().misses.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn an_expired_session_is_refused_from_the_cache() {
        let g = graph_cached(true);
        let (u, s) = g.sign_up("dave", "password1", None, None).await.unwrap();
        assert_eq!(g.authenticate(&s.token).await.unwrap(), u.id);
        let c = g.session_cache().unwrap();
        let d = crate::users::token_digest(&s.token);
        c.offer(
            d,
            c.generation(),
            Cached {
                user: u.id,
                expires_at_ms: 1,
                recheck_at_ms: u64::MAX,
            },
        );
        assert!(matches!(
            g.authenticate(&s.token).await,
            Err(GraphError::InvalidToken)
        ));
    }

    /// An entry past its recheck time, or forgotten, is read again from the store (an entry
    /// naming another user stands for a revocation the cache did not hear of).
    #[tokio::test]
    async fn a_session_past_its_recheck_or_forgotten_is_read_again() {
        let g = graph_cached(true);
        let (u, s) = g.sign_up("erin", "password1", None, None).await.unwrap();
        let c = g.session_cache().unwrap();
        let d = crate::users::token_digest(&s.token);
        let stale = |recheck_at_ms| Cached {
            user: 999,
            expires_at_ms: u64::MAX,
            recheck_at_ms,
        };
        c.offer(d, c.generation(), stale(u64::MAX));
        assert_eq!(
            g.authenticate(&s.token).await.unwrap(),
            999,
            "from the cache"
        );
        g.forget_sessions();
        assert_eq!(g.authenticate(&s.token).await.unwrap(), u.id, "forgotten");
        c.offer(d, c.generation(), stale(1));
        assert_eq!(
            g.authenticate(&s.token).await.unwrap(),
            u.id,
            "past its recheck"
        );
    }
}
