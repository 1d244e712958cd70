//! Users, credentials, handles and sessions.
//!
//! Sign-up writes the user's record and credentials first (invisible until a handle points at
//! them), then claims the handle by CAS at the handle region's owner; a lost race deletes the
//! orphan records and answers `HandleTaken`. Passwords are argon2id (hashing runs on the blocking
//! pool, one computation per core at a time). A session token is 32 random bytes shown once to
//! the client; the store keeps only its SHA-256, so a leaked store does not leak usable tokens.
//! Sessions replicate: a token works in every region. Logout deletes the session (a tombstone
//! that replicates too).

use crate::keys::{self, CREDENTIALS, HANDLES, SESSIONS};
use crate::session_cache::{Cached, SessionCache};
use crate::{Graph, GraphError, now_ms};
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use starling_store::{CasOutcome, Key, StoreExt};

/// What is stored for a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserRecord {
    pub(crate) id: u64,
    pub(crate) handle: String,
    pub(crate) display_name: String,
    pub(crate) region: String,
    pub(crate) created_at_ms: u64,
}

/// A user as readers see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Time-ordered id.
    pub id: u64,
    /// Unique handle, lower case.
    pub handle: String,
    /// Shown name.
    pub display_name: String,
    /// Home region.
    pub region: String,
    /// Sign-up time, ms since the epoch.
    pub created_at_ms: u64,
    /// Followers (never negative).
    pub followers_count: i64,
    /// Followed users (never negative).
    pub following_count: i64,
}

/// A session handed to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The bearer token (shown once; the store keeps its hash).
    pub token: String,
    /// Whose session.
    pub user_id: u64,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    user_id: u64,
    expires_at_ms: u64,
}

/// Lower-cases and checks a handle: 3–30 characters of `[a-z0-9_]`.
pub fn normalize_handle(h: &str) -> Result<String, GraphError> {
    let h = h.to_ascii_lowercase();
    let ok = (3..=30).contains(&h.len())
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(h)
    } else {
        Err(GraphError::InvalidHandle)
    }
}

/// A password is 8 to 256 characters.
pub(crate) fn check_password(password: &str) -> Result<(), GraphError> {
    if (8..=256).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(GraphError::WeakPassword(
            "a password is 8 to 256 characters",
        ))
    }
}

fn check_display_name(name: &str) -> Result<(), GraphError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(GraphError::Invalid(
            "display_name is 1 to 64 characters, no control characters",
        ));
    }
    Ok(())
}

fn check_region(region: &str) -> Result<(), GraphError> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(GraphError::Invalid(
            "region is 1 to 64 characters of A-Z, a-z, 0-9, - and _",
        ))
    }
}

fn handle_key(h: &str) -> Key {
    HANDLES.key().str(h).finish()
}

/// The SHA-256 of a token: what the store keys a session by.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn token_key(token: &str) -> Key {
    SESSIONS.key().raw(token_digest(token)).finish()
}

fn new_token() -> Result<String, GraphError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| GraphError::Invalid("no randomness available"))?;
    let mut s = String::with_capacity(67);
    s.push_str("st_");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    Ok(s)
}

impl Graph {
    fn argon2(&self) -> Result<Argon2<'static>, GraphError> {
        let params = Params::new(self.cfg.argon2_memory_kib, self.cfg.argon2_passes, 1, None)
            .map_err(|_| GraphError::Invalid("bad argon2 parameters"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Runs one argon2id computation on the blocking pool, at most one per core at a time.
    ///
    /// Each computation holds `argon2_memory_kib` (19 MiB) while it runs: unbounded, a burst of
    /// sign-ups or logins grows the process by that much per request (32 at once peaked at
    /// 650 MiB), for no throughput, since the work is CPU-bound. Waiters queue on the semaphore,
    /// which the request deadline bounds.
    async fn argon2_job<T: Send + 'static>(
        &self,
        what: &'static str,
        job: impl FnOnce(Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, GraphError> {
        let a = self.argon2()?;
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| GraphError::Invalid(what))?;
        tokio::task::spawn_blocking(move || job(a))
            .await
            .map_err(|_| GraphError::Invalid(what))
    }

    pub(crate) async fn hash_password(&self, password: String) -> Result<String, GraphError> {
        self.argon2_job("password hashing was interrupted", move |a| {
            a.hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| GraphError::Invalid("password cannot be hashed"))
        })
        .await?
    }

    /// [`Graph::hash_password`] with a given salt, for bulk loads that must be reproducible.
    pub(crate) async fn hash_password_salted(
        &self,
        password: String,
        salt: Vec<u8>,
    ) -> Result<String, GraphError> {
        self.argon2_job("password hashing was interrupted", move |a| {
            a.hash_password_with_salt(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| GraphError::Invalid("password cannot be hashed"))
        })
        .await?
    }

    pub(crate) async fn verify_password(
        &self,
        password: String,
        phc: String,
    ) -> Result<bool, GraphError> {
        self.argon2_job("password check was interrupted", move |a| {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return false;
            };
            a.verify_password(password.as_bytes(), &parsed).is_ok()
        })
        .await
    }

    /// Creates a user and a first session.
    pub async fn sign_up(
        &self,
        handle: &str,
        password: &str,
        display_name: Option<&str>,
        region: Option<&str>,
    ) -> Result<(User, Session), GraphError> {
        let handle = normalize_handle(handle)?;
        check_password(password)?;
        let display_name = display_name.unwrap_or(&handle).to_string();
        check_display_name(&display_name)?;
        let region = region.unwrap_or(&self.cfg.region).to_string();
        check_region(&region)?;
        let hk = handle_key(&handle);
        // Cheap early answer for the common case; the CAS below is what decides.
        if let Some(v) = self.store.get(&hk).await?
            && v.value.is_some()
        {
            return Err(GraphError::HandleTaken);
        }
        let phc = self.hash_password(password.to_string()).await?;
        let id = self.ids.next_id();
        let rec = UserRecord {
            id,
            handle: handle.clone(),
            display_name,
            region,
            created_at_ms: now_ms(),
        };
        self.store.put_typed(&keys::user(id), &rec).await?;
        let ck = CREDENTIALS.key().u64(id).finish();
        self.store.put(&ck, Bytes::from(phc)).await?;
        let claim = Bytes::copy_from_slice(&id.to_be_bytes());
        let mut expected = None;
        loop {
            let out = self
                .cas
                .cas_at(
                    &self.cfg.handle_region,
                    &hk,
                    expected.as_ref(),
                    Some(claim.clone()),
                )
                .await;
            match out {
                Ok(CasOutcome::Applied(_)) => break,
                // A released handle (tombstone): claim it over its version.
                Ok(CasOutcome::Conflict(Some(cur)))
                    if cur.value.is_none() && expected.is_none() =>
                {
                    expected = Some(cur.version);
                }
                Ok(CasOutcome::Conflict(_)) | Err(_) => {
                    // Lost the race (or could not ask): leave nothing behind.
                    self.store.delete(&keys::user(id)).await?;
                    self.store.delete(&ck).await?;
                    return match out {
                        Err(e) => Err(e.into()),
                        Ok(_) => Err(GraphError::HandleTaken),
                    };
                }
            }
        }
        let session = self.create_session(id).await?;
        let user = self.user(id).await?;
        Ok((user, session))
    }

    async fn create_session(&self, user_id: u64) -> Result<Session, GraphError> {
        let token = new_token()?;
        let expires_at_ms = now_ms() + self.cfg.session_ttl.as_millis() as u64;
        let rec = SessionRecord {
            user_id,
            expires_at_ms,
        };
        // The user's index first: a crash in between leaves an entry without a session, which
        // a revocation skips, never a session that a revocation cannot find.
        self.index_session(user_id, &token_digest(&token), expires_at_ms)
            .await?;
        self.store.put_typed(&token_key(&token), &rec).await?;
        Ok(Session {
            token,
            user_id,
            expires_at_ms,
        })
    }

    /// Checks a handle and password; answers a new session. Never says which of the two was
    /// wrong.
    pub async fn login(&self, handle: &str, password: &str) -> Result<Session, GraphError> {
        let Ok(handle) = normalize_handle(handle) else {
            return Err(GraphError::WrongCredentials);
        };
        let Some(id) = self.user_id_by_handle(&handle).await? else {
            return Err(GraphError::WrongCredentials);
        };
        let ck = CREDENTIALS.key().u64(id).finish();
        let Some(phc) = self.store.get(&ck).await?.and_then(|v| v.value) else {
            return Err(GraphError::WrongCredentials);
        };
        let phc = String::from_utf8_lossy(&phc).to_string();
        if !self.verify_password(password.to_string(), phc).await? {
            return Err(GraphError::WrongCredentials);
        }
        self.create_session(id).await
    }

    /// The user a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<u64, GraphError> {
        if !token.starts_with("st_") || token.len() != 67 {
            return Err(GraphError::InvalidToken);
        }
        let digest = token_digest(token);
        let cache = self.sessions.as_deref();
        if let Some(s) = cache.and_then(|c| c.get(&digest))
            && s.recheck_at_ms > now_ms()
        {
            return if s.expires_at_ms > now_ms() {
                Ok(s.user)
            } else {
                Err(GraphError::InvalidToken)
            };
        }
        let seen = cache.map(SessionCache::generation);
        let rec: Option<SessionRecord> = self
            .store
            .get_typed(&SESSIONS.key().raw(digest).finish())
            .await?
            .and_then(|v| v.value);
        match rec {
            Some(s) if s.expires_at_ms > now_ms() => {
                if let (Some(c), Some(seen)) = (cache, seen) {
                    let recheck = self.cfg.session_recheck.map_or(u64::MAX, |d| {
                        now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    });
                    let cached = Cached {
                        user: s.user_id,
                        expires_at_ms: s.expires_at_ms,
                        recheck_at_ms: recheck,
                    };
                    c.offer(digest, seen, cached);
                }
                Ok(s.user_id)
            }
            _ => Err(GraphError::InvalidToken),
        }
    }

    /// The session of `digest` was deleted here: the session cache forgets it.
    pub(crate) fn session_revoked(&self, digest: &[u8]) {
        if let Some(cache) = &self.sessions {
            cache.revoked(digest);
        }
    }

    /// The session cache, where it is on (its counters and size, for `/metrics`).
    pub fn session_cache(&self) -> Option<&SessionCache> {
        self.sessions.as_deref()
    }

    /// Revokes a token.
    pub async fn logout(&self, token: &str) -> Result<(), GraphError> {
        let user = self.authenticate(token).await?;
        self.store.delete(&token_key(token)).await?;
        self.session_revoked(&token_digest(token));
        self.unindex_session(user, &token_digest(token)).await?;
        Ok(())
    }

    pub(crate) async fn user_record(&self, id: u64) -> Result<Option<UserRecord>, GraphError> {
        Ok(self
            .store
            .get_typed::<UserRecord>(&keys::user(id))
            .await?
            .and_then(|v| v.value))
    }

    /// Whether a user exists.
    pub async fn exists(&self, id: u64) -> Result<bool, GraphError> {
        Ok(self.user_record(id).await?.is_some())
    }

    /// A user with their counts.
    pub async fn user(&self, id: u64) -> Result<User, GraphError> {
        let rec = self
            .user_record(id)
            .await?
            .ok_or(GraphError::NotFound("user"))?;
        let followers = self.count(id, "followers").await?;
        let following = self.count(id, "following").await?;
        Ok(User {
            id: rec.id,
            handle: rec.handle,
            display_name: rec.display_name,
            region: rec.region,
            created_at_ms: rec.created_at_ms,
            followers_count: followers,
            following_count: following,
        })
    }

    async fn user_id_by_handle(&self, handle: &str) -> Result<Option<u64>, GraphError> {
        let v = self.store.get(&handle_key(handle)).await?;
        Ok(v.and_then(|v| v.value)
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    /// A user by handle (any case).
    pub async fn user_by_handle(&self, handle: &str) -> Result<User, GraphError> {
        let handle = normalize_handle(handle).map_err(|_| GraphError::NotFound("user"))?;
        let id = self
            .user_id_by_handle(&handle)
            .await?
            .ok_or(GraphError::NotFound("user"))?;
        self.user(id).await
    }

    /// Changes a user's display name.
    pub async fn set_display_name(&self, id: u64, name: &str) -> Result<User, GraphError> {
        check_display_name(name)?;
        let mut rec = self
            .user_record(id)
            .await?
            .ok_or(GraphError::NotFound("user"))?;
        rec.display_name = name.to_string();
        self.store.put_typed(&keys::user(id), &rec).await?;
        self.user(id).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::GraphConfig;
    use starling_store::{HlcClock, IdGenerator, Limits, LocalCas, NodeId, RegionId, open_memory};
    use std::sync::Arc;

    pub(crate) fn graph() -> Graph {
        graph_with(Limits::default())
    }

    /// A graph over a memory store with `limits`.
    pub(crate) fn graph_with(limits: Limits) -> Graph {
        graph_on(limits, false)
    }

    /// A graph over a memory store with the one-node caches (blocks, sessions) on or off.
    pub(crate) fn graph_cached(block_cache: bool) -> Graph {
        graph_on(Limits::default(), block_cache)
    }

    fn graph_on(limits: Limits, block_cache: bool) -> Graph {
        let node = NodeId::new(RegionId::from_name("us"), 1);
        let store = open_memory(node, Arc::new(HlcClock::new()), limits);
        let mut cfg = GraphConfig::new("us", "us");
        cfg.argon2_memory_kib = 64;
        cfg.argon2_passes = 1;
        cfg.block_cache = block_cache;
        cfg.session_cache = block_cache;
        Graph::new(
            store.clone(),
            Arc::new(LocalCas(store)),
            Arc::new(IdGenerator::new(node)),
            cfg,
        )
    }

    #[tokio::test]
    async fn sign_up_login_and_sessions() {
        let g = graph();
        let (u, s) = g
            .sign_up("Alice_1", "correct horse", None, None)
            .await
            .unwrap();
        assert_eq!(u.handle, "alice_1");
        assert_eq!(u.region, "us");
        assert_eq!(g.authenticate(&s.token).await.unwrap(), u.id);
        assert!(matches!(
            g.sign_up("ALICE_1", "another pass", None, None).await,
            Err(GraphError::HandleTaken)
        ));
        let s2 = g.login("alice_1", "correct horse").await.unwrap();
        assert_ne!(s2.token, s.token);
        assert!(matches!(
            g.login("alice_1", "wrong horse!").await,
            Err(GraphError::WrongCredentials)
        ));
        assert!(matches!(
            g.login("nobody", "correct horse").await,
            Err(GraphError::WrongCredentials)
        ));
        g.logout(&s.token).await.unwrap();
        assert!(matches!(
            g.authenticate(&s.token).await,
            Err(GraphError::InvalidToken)
        ));
        assert_eq!(g.authenticate(&s2.token).await.unwrap(), u.id);
        assert_eq!(g.user_by_handle("ALICE_1").await.unwrap().id, u.id);
        let u2 = g.set_display_name(u.id, "Alice").await.unwrap();
        assert_eq!(u2.display_name, "Alice");
    }

    #[tokio::test]
    async fn bad_input_is_refused() {
        let g = graph();
        for h in ["ab", "a b c", "ünïcode", &"x".repeat(31)] {
            assert!(matches!(
                g.sign_up(h, "password1", None, None).await,
                Err(GraphError::InvalidHandle)
            ));
        }
        assert!(matches!(
            g.sign_up("bob", "short", None, None).await,
            Err(GraphError::WeakPassword(_))
        ));
        assert!(matches!(
            g.sign_up("bob", "password1", Some(""), None).await,
            Err(GraphError::Invalid(_))
        ));
        assert!(matches!(
            g.sign_up("bob", "password1", None, Some("no spaces")).await,
            Err(GraphError::Invalid(_))
        ));
        assert!(matches!(
            g.authenticate("st_nope").await,
            Err(GraphError::InvalidToken)
        ));
        assert!(matches!(g.user(42).await, Err(GraphError::NotFound(_))));
    }
}
